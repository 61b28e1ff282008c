"""Random numbers from a counter, written once on the Array API: Threefry-2x32-20.

The standard has no random numbers, and each library's own generator makes different ones
(NumPy's PCG64, torch's Mersenne Twister on the CPU and Philox on CUDA, CuPy's XORWOW), so a
seed alone cannot give the same Dropout masks on two backends. A *counter-based* generator
(Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011; JAX uses the same one)
is a keyed hash instead of a state machine:

    bits(seed, call, i) = word i % 2 of  Threefry-2x32-20(key = seed, counter = (i // 2))
                          with the key first folded with the call number

Threefry is a block cipher built from 32-bit additions, rotations and xors only. So:

- the same seed gives the same bits, bit for bit, on every namespace: the arithmetic is integer
  ``+ ^ & | << >>`` on int64 arrays that hold 32-bit values (torch has almost no uint32
  operations, so uint32 is not used; no intermediate value reaches 2**63, so nothing overflows);
- a stream's position is two integers, ``(seed, calls)``: saving, resuming and
  ``copy.deepcopy`` cost nothing and replay nothing, and there is no limit on the number of draws
  (seeds, calls and element indices each go up to 2**64);
- the numbers are made on the device, from an ``arange`` of block indices.

The same function runs on Python ints (the per-call key) and on arrays (the blocks), since it
uses operators only. Its output is pinned by Random123's known-answer vectors
(tests/test_random.py).
"""
from __future__ import annotations

import math

GENERATOR = "threefry2x32-20"       # names the generator in saved states
WORD = 0xFFFFFFFF                   # 2**32 - 1: the mask that keeps a 32-bit word
_ROTATIONS = (13, 15, 26, 6, 17, 29, 16, 24)
_PARITY = 0x1BD11BDA                # Threefry's key-schedule constant for 32-bit words
_LIMIT = 2 ** 64                    # seeds, call numbers and element indices are below this


def threefry2x32(key0: int, key1: int, x0, x1):
    """Threefry-2x32 with 20 rounds: the two 32-bit words of the counter (x0, x1) enciphered under
    the key (key0, key1).

    Args:
        key0, key1: Python ints in [0, 2**32).
        x0, x1: Python ints or int64 arrays (one namespace, one device), values in [0, 2**32).
    Returns:
        (y0, y1), of the type of the inputs, values in [0, 2**32).

    Every round is x0 += x1; x1 = rotl(x1, r) ^ x0 (mod 2**32), and every fourth round adds the
    key schedule. x0 is masked only where it must be: it grows by less than 2**33 a round, far
    from 2**63, and its high bits are cut wherever they would reach x1.
    """
    keys = (key0, key1, _PARITY ^ key0 ^ key1)
    x0 = x0 + keys[0]                                   # new arrays: the caller's are not written
    x1 = (x1 + keys[1]) & WORD
    for block in range(5):                              # 5 blocks of 4 rounds
        for r in _ROTATIONS[4 * (block % 2):4 * (block % 2) + 4]:
            x0 += x1                                    # in place from here on: a fifth less time
            rotated = x1 << r
            rotated |= x1 >> (32 - r)
            rotated ^= x0
            rotated &= WORD
            x1 = rotated
        s = block + 1                                   # inject the key schedule
        x0 += keys[s % 3]
        x1 += keys[(s + 1) % 3] + s
        x1 &= WORD
    x0 &= WORD
    return x0, x1


def check_seed(seed, owner: str = "random stream") -> int:
    """``seed`` as an int in [0, 2**64); ValueError naming ``owner`` otherwise."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < _LIMIT:
        raise ValueError(f"{owner}: seed must be an int in [0, 2**64), got {seed!r}")
    return seed


def call_key(seed: int, call: int) -> tuple[int, int]:
    """The key of draw number ``call`` of stream ``seed``: the call number enciphered under the
    seed (as JAX's fold_in), so every draw hashes its elements under a key of its own."""
    return threefry2x32(seed & WORD, seed >> 32, call & WORD, call >> 32)


def random_bits(xp, device, seed: int, call: int, shape):
    """Uniform 32-bit words (int64 values in [0, 2**32)) of ``shape``, made on ``device``.

    Element i (in row-major order) is word i % 2 of the block i // 2 of draw ``call`` of stream
    ``seed``: a pure function of (seed, call, i), so the same on every namespace.
    """
    shape = tuple(int(n) for n in shape)
    n = math.prod(shape)
    key0, key1 = call_key(seed, call)
    blocks = (n + 1) // 2
    index = xp.arange(blocks, dtype=xp.int64, device=device)
    # the block counter as two words; below 2**32 blocks (every real array) the high word is 0
    high = 0 if blocks <= WORD else index >> 32
    y0, y1 = threefry2x32(key0, key1, index & WORD, high)
    words = xp.reshape(xp.stack([y0, y1], axis=1), (2 * blocks,))
    return xp.reshape(words[:n] if n < 2 * blocks else words, shape)


def checked_state(state) -> dict:
    """A stream position {"generator", "seed", "calls"} from :meth:`RandomStream.get_state` (or a
    file), checked; ValueError naming what is wrong."""
    if not isinstance(state, dict) or state.get("generator") != GENERATOR or set(state) != {"generator", "seed",
                                                                                         "calls"}:
        raise ValueError(f"not a state of bpcore's {GENERATOR} random stream (expected "
                         f"{{'generator': {GENERATOR!r}, 'seed': int, 'calls': int}}): {str(state)[:120]}")
    check_seed(state["seed"])
    calls = state["calls"]
    if isinstance(calls, bool) or not isinstance(calls, int) or not 0 <= calls < _LIMIT:
        raise ValueError(f"random stream state: calls must be an int in [0, 2**64), got {str(calls)[:40]}")
    return {"generator": GENERATOR, "seed": state["seed"], "calls": calls}


def _dtype_name(dtype) -> str:
    """"float32" for "float32", numpy.float32, torch.float32, ..."""
    return str(dtype).rpartition(".")[2]


class RandomStream:
    """Seeded random numbers made on a backend's device: a seed and a count of draws made.

    Each call (``bits``, ``uniform``, ``normal``) is one draw: it uses the key of the draw number,
    then counts it. The same seed gives the same numbers on every backend (``bits`` and ``uniform``
    bit for bit; ``normal`` up to the library's rounding of log, sqrt and cos).
    """

    def __init__(self, backend, seed: int, calls: int = 0):
        self.backend = backend
        state = checked_state({"generator": GENERATOR, "seed": seed, "calls": calls})
        self.seed, self.calls = state["seed"], state["calls"]

    def bits(self, shape):
        """Uniform 32-bit words of ``shape`` as int64 values in [0, 2**32), on the device."""
        call, self.calls = self.calls, self.calls + 1
        return self.backend.random_bits(self.seed, call, shape)

    def uniform(self, shape, dtype="float32"):
        """Uniform numbers in [0, 1) of ``shape``: 24 random bits each in float32, 53 in float64
        (two words), so every value is exact and the same on every backend."""
        shape, xp = tuple(shape), self.backend.xp
        if _dtype_name(dtype) not in ("float32", "float64"):
            raise ValueError(f"random numbers come as float32 or float64, got dtype {dtype!r}")
        if _dtype_name(dtype) == "float32":
            words = self.bits(shape)
            with self.backend.activate():
                return xp.astype(words >> 8, xp.float32) * (2.0 ** -24)
        words = self.bits((*shape, 2))
        with self.backend.activate():
            high, low = words[..., 0] >> 5, words[..., 1] >> 6        # 27 + 26 = 53 bits
            return xp.astype(high * (2 ** 26) + low, xp.float64) * (2.0 ** -53)

    def normal(self, shape, dtype="float32"):
        """Standard normal numbers of ``shape`` (Box-Muller from two uniform draws)."""
        u1, u2 = self.uniform(shape, dtype), self.uniform(shape, dtype)
        xp = self.backend.xp
        with self.backend.activate():
            radius = xp.sqrt(-2.0 * xp.log(1.0 - u1))           # 1 - u1 is in (0, 1]: log is finite
            return radius * xp.cos((2.0 * math.pi) * u2)

    def get_state(self) -> dict:
        """The stream's position as JSON-able data: {"generator", "seed", "calls"}."""
        return {"generator": GENERATOR, "seed": self.seed, "calls": self.calls}

    def set_state(self, state) -> None:
        """Continue from a position given by :meth:`get_state` (on any backend)."""
        state = checked_state(state)
        self.seed, self.calls = state["seed"], state["calls"]

    def __repr__(self):
        return f"RandomStream({self.backend}, seed={self.seed}, calls={self.calls})"
