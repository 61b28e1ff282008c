"""Initial weights, drawn on the host from a seeded NumPy Generator.

Drawing on the host (and only then moving to the device) is what makes one
seed give the same starting network on NumPy, PyTorch, CuPy and
array_api_strict, so results can be compared across backends exactly. This
is the one place in bpcore's layer code that uses NumPy directly.

Schemes for a weight matrix W of shape (fan_in, fan_out) (for a convolution's W of shape
(OC, C, kH, kW): fan_in = C kH kW, fan_out = OC kH kW, as PyTorch):

    he / kaiming      N(0, 2 / fan_in)                 ReLU-like activations
    he_uniform        U(-a, a), a = sqrt(6 / fan_in)
    lecun             N(0, 1 / fan_in)                 tanh, sigmoid (the lessons' choice)
    lecun_uniform     U(-a, a), a = sqrt(3 / fan_in)
    xavier / glorot   N(0, 2 / (fan_in + fan_out))
    xavier_uniform    U(-a, a), a = sqrt(6 / (fan_in + fan_out))
    zeros             all zeros
"""
from __future__ import annotations

import math

import numpy as np

from .._checks import ArgumentTypeError
from . import budget
from .parameter import Parameter, dtype_name

SCHEMES = ("he", "he_uniform", "kaiming", "lecun", "lecun_uniform",
           "xavier", "xavier_uniform", "glorot", "zeros")
_ALIASES = {"kaiming": "he", "glorot": "xavier"}


def host_rng(seed, owner: str = "") -> np.random.Generator:
    """A NumPy Generator from an int seed, None (fresh entropy) or a Generator (used as is).
    ``owner`` (a layer's or function's name) starts the error message."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        error = ValueError if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) else ArgumentTypeError
        raise error(f"{owner + ': ' if owner else ''}seed must be a non-negative int, None or a numpy Generator, "
                    f"got {seed!r}")
    return np.random.default_rng(seed)


def _too_big(shape, error):
    """A MemoryError that says which array did not fit and how many bytes it needed (float64 host draws)."""
    return MemoryError(f"a weight of shape {tuple(shape)} needs {8 * math.prod(shape):,} bytes on the host, more "
                       f"than this machine can allocate ({error or 'out of memory'}); choose smaller sizes")


def _before_drawing(shape) -> None:
    """Refuse an array of ``shape`` that a file being loaded does not back (budget.py), or that no
    address space holds (NumPy's own error for it says less), before any memory is taken."""
    budget.afford(math.prod(shape), "a weight of shape " + str(shape))
    if 8 * math.prod(shape) >= 2 ** 63:
        raise _too_big(shape, "larger than any address space")


def weight(scheme: str, fan_in: int, fan_out: int, rng: np.random.Generator, shape=None) -> np.ndarray:
    """A float64 host array drawn by ``scheme`` (see the module docstring).

    Its shape is (fan_in, fan_out) unless ``shape`` is given: a convolution's (OC, C, kH, kW)
    with fan_in = C kH kW and fan_out = OC kH kW.
    """
    scheme = _ALIASES.get(scheme, scheme)
    shape = (fan_in, fan_out) if shape is None else tuple(shape)
    _before_drawing(shape)
    try:
        return _draw(scheme, fan_in, fan_out, rng, shape)
    except MemoryError as error:
        raise _too_big(shape, error) from None


def _draw(scheme, fan_in, fan_out, rng, shape):
    if scheme == "zeros":
        return np.zeros(shape)
    if scheme == "he":
        return rng.normal(0.0, math.sqrt(2.0 / fan_in), shape)
    if scheme == "he_uniform":
        return _uniform(rng, math.sqrt(6.0 / fan_in), shape)
    if scheme == "lecun":
        return rng.normal(0.0, math.sqrt(1.0 / fan_in), shape)
    if scheme == "lecun_uniform":
        return _uniform(rng, math.sqrt(3.0 / fan_in), shape)
    if scheme == "xavier":
        return rng.normal(0.0, math.sqrt(2.0 / (fan_in + fan_out)), shape)
    if scheme == "xavier_uniform":
        return _uniform(rng, math.sqrt(6.0 / (fan_in + fan_out)), shape)
    raise ValueError(f"unknown init {scheme!r}; choose one of {', '.join(SCHEMES)}")


def _uniform(rng, limit, shape):
    return rng.uniform(-limit, limit, shape)


def _shape(size) -> tuple:
    """The shape of an array of ``size`` (an int or a tuple)."""
    return tuple(size) if isinstance(size, tuple) else (int(size),)


def zeros(size, dtype="float64") -> np.ndarray:
    """Host zeros of shape ``size`` (biases start at zero)."""
    _before_drawing(_shape(size))
    return np.zeros(size, dtype=dtype)


def ones(size) -> np.ndarray:
    """Host ones of shape ``size`` (normalization scales start at one)."""
    _before_drawing(_shape(size))
    return np.ones(size)


def uniform(shape, bound: float, rng: np.random.Generator) -> np.ndarray:
    """Host U(-bound, bound) numbers of ``shape`` (PyTorch's recurrent layers: bound = 1 / sqrt(hidden))."""
    shape = tuple(shape)
    _before_drawing(shape)
    return rng.uniform(-bound, bound, shape)


def normal(shape, std: float, rng: np.random.Generator) -> np.ndarray:
    """Host N(0, std^2) numbers of ``shape`` (PyTorch's Embedding: std = 1)."""
    shape = tuple(shape)
    _before_drawing(shape)
    return rng.normal(0.0, std, shape)


# -- initializers for existing parameters (PyTorch's torch.nn.init names) ------------------
_GAINS = {"linear": 1.0, "identity": 1.0, "sigmoid": 1.0, "tanh": 5.0 / 3, "relu": math.sqrt(2.0),
          "selu": 3.0 / 4}


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The gain that keeps activations' variance steady through ``nonlinearity`` (as PyTorch).

    linear/identity/sigmoid 1, tanh 5/3, relu sqrt(2), leaky_relu sqrt(2 / (1 + slope^2))
    with slope ``param`` (default 0.01), selu 3/4.
    """
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        if isinstance(slope, bool) or not isinstance(slope, (int, float)):
            raise ValueError(f"calculate_gain: the leaky_relu slope must be a number, got {slope!r}")
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity not in _GAINS:
        raise ValueError(f"calculate_gain: unknown nonlinearity {nonlinearity!r}; choose one of "
                         f"{', '.join(sorted(list(_GAINS) + ['leaky_relu']))}")
    return _GAINS[nonlinearity]


def _fans(param, owner):
    if not isinstance(param, Parameter):
        raise TypeError(f"{owner}: expected a Parameter (such as layer.W), got {type(param).__name__}")
    if len(param.shape) == 4:   # a convolution's W (OC, C, kH, kW), fans as PyTorch counts them
        receptive = param.shape[2] * param.shape[3]
        return param.shape[1] * receptive, param.shape[0] * receptive
    if len(param.shape) != 2:
        raise ValueError(f"{owner}: needs a 2-D weight (n_in, n_out) or a 4-D convolution weight "
                         f"(out_channels, in_channels, kH, kW) to know its fans, got shape {param.shape}")
    return param.shape          # bpcore's W is (fan_in, fan_out)


def _write(param, host_values):
    param.data = param.backend.asarray(host_values, dtype=dtype_name(param.data.dtype), copy=True)
    return param


def kaiming_normal_(param, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu", seed=None):
    """He/Kaiming normal: N(0, std^2), std = gain / sqrt(fan), fan = n_in ("fan_in") or n_out ("fan_out")."""
    fan = _fan_for_mode(param, mode, "kaiming_normal_")
    std = calculate_gain(nonlinearity, a) / math.sqrt(fan)
    return _write(param, host_rng(seed).normal(0.0, std, param.shape))


def kaiming_uniform_(param, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu", seed=None):
    """He/Kaiming uniform: U(-bound, bound), bound = gain * sqrt(3 / fan)."""
    fan = _fan_for_mode(param, mode, "kaiming_uniform_")
    bound = calculate_gain(nonlinearity, a) * math.sqrt(3.0 / fan)
    return _write(param, host_rng(seed).uniform(-bound, bound, param.shape))


def xavier_normal_(param, gain: float = 1.0, seed=None):
    """Xavier/Glorot normal: N(0, std^2), std = gain * sqrt(2 / (n_in + n_out))."""
    fan_in, fan_out = _fans(param, "xavier_normal_")
    return _write(param, host_rng(seed).normal(0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), param.shape))


def xavier_uniform_(param, gain: float = 1.0, seed=None):
    """Xavier/Glorot uniform: U(-bound, bound), bound = gain * sqrt(6 / (n_in + n_out))."""
    fan_in, fan_out = _fans(param, "xavier_uniform_")
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return _write(param, host_rng(seed).uniform(-bound, bound, param.shape))


def zeros_(param):
    """Set a parameter to zeros (any shape)."""
    if not isinstance(param, Parameter):
        raise TypeError(f"zeros_: expected a Parameter, got {type(param).__name__}")
    return _write(param, np.zeros(param.shape))


def _fan_for_mode(param, mode, owner):
    fan_in, fan_out = _fans(param, owner)
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"{owner}: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    return fan_in if mode == "fan_in" else fan_out
