"""generate: extend a prompt token by token with a model that maps tokens (N, T) to logits (N, T, V).

Each step runs the model on the last ``context_length`` tokens, takes the logits of the last
position and picks the next token on the device:

    greedy (temperature=0)      argmax of the logits
    sampling (temperature > 0)  z = logits / temperature; with top_k, every logit below the k-th
                                largest is set to -inf; p = softmax(z); the token is the first index
                                whose cumulative probability exceeds u ~ U(0, 1) (inverse CDF)

The new tokens are appended on the device, so nothing is copied to the host until the end: the
whole generation costs one transfer (``count_syncs`` in the tests checks it on a simulated device).
"""
from __future__ import annotations

import math

import backends

from .._checks import check_int, check_number
from ..nn.module import Layer


def _context_length(model):
    """The longest input the model takes: the first ``context_length`` found inside it (bp.gpt's)."""
    for layer in model.modules():
        length = getattr(layer, "context_length", None)
        if isinstance(length, int):
            return length
    return None


def _prompt(model, prompt_tokens):
    """The prompt as an int64 (N, T) array on the model's device, and whether it was given 1-D."""
    backend = model.backend
    if backend.owns(prompt_tokens):
        tokens = prompt_tokens
    else:
        if not backends.is_host_array(prompt_tokens) and not isinstance(prompt_tokens, (list, tuple)):
            try:
                prompt_tokens = backends.to_host(prompt_tokens)
            except TypeError:
                raise TypeError(f"generate: prompt_tokens must be integer tokens (a list, host NumPy or an array "
                                f"of {backend.spec}), got {type(prompt_tokens).__name__}") from None
        host = backends.host_array_from(prompt_tokens, "generate: prompt_tokens")
        if host.size == 0:              # [] is float64 to NumPy: say what is really wrong
            raise ValueError(f"generate: prompt_tokens is empty (shape {host.shape}); give at least one token")
        if host.dtype.kind not in "iu":
            raise TypeError(f"generate: prompt_tokens must be integer token ids, got dtype {host.dtype}")
        tokens = backend.asarray(host.astype("int64"))
    if not backend.isdtype(tokens.dtype, "integral"):
        raise TypeError(f"generate: prompt_tokens must be integer token ids, got dtype {tokens.dtype}")
    if tokens.ndim not in (1, 2) or tokens.shape[-1] == 0:
        raise ValueError(f"generate: prompt_tokens must be a non-empty sequence (T,) or a batch (N, T), "
                         f"got shape {tuple(tokens.shape)}")
    one = tokens.ndim == 1
    if one:
        tokens = backend.xp.reshape(tokens, (1, tokens.shape[0]))
    return backend.xp.astype(tokens, backend.xp.int64), one


def _pick(xp, logits, temperature, top_k, stream):
    """The next token (N,) from the last position's logits (N, V), on the device."""
    if temperature == 0.0:
        return xp.argmax(logits, axis=-1)
    z = logits / temperature
    if top_k is not None and top_k < z.shape[-1]:
        kth = xp.sort(z, axis=-1, descending=True)[:, top_k - 1:top_k]     # (N, 1), the k-th largest
        z = xp.where(z < kth, xp.full(z.shape, -math.inf, dtype=z.dtype, device=z.device), z)
    z = z - xp.max(z, axis=-1, keepdims=True)
    probs = xp.exp(z)
    cdf = xp.cumulative_sum(probs, axis=-1)                               # unnormalised: compare with u * total
    u = stream.uniform((z.shape[0], 1), dtype="float64" if z.dtype == xp.float64 else "float32")
    below = xp.astype(cdf <= u * cdf[:, -1:], xp.int64)                   # 1 for every index before the pick
    return xp.minimum(xp.sum(below, axis=-1), xp.asarray(z.shape[-1] - 1, dtype=xp.int64, device=z.device))


def generate(model, prompt_tokens, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
             seed=None, context_length: int | None = None):
    """Extend ``prompt_tokens`` by ``max_new_tokens`` tokens, one at a time.

    Args:
        model: a Layer mapping integer tokens (N, T) to logits (N, T, V), such as ``bp.gpt(...)``.
        prompt_tokens: integer tokens (T,) or (N, T) (a list, host NumPy, or an array on the model's device).
        max_new_tokens: how many tokens to add (0 returns the prompt).
        temperature: 0 picks the most likely token (greedy); > 0 samples from softmax(logits / temperature)
            (below 1 sharper, above 1 flatter).
        top_k: sample only among the k most likely tokens (None: all).
        seed: seeds the device's random stream (an int, or None for fresh entropy): the same seed gives
            the same tokens on the same backend.
        context_length: the longest input the model takes (default: the model's own ``context_length``,
            as bp.gpt has; a model without one gets the whole sequence); longer inputs keep the last tokens.
    Returns:
        Host NumPy int64 tokens, the prompt followed by the new ones: (T + max_new_tokens,) for a 1-D
        prompt, (N, T + max_new_tokens) for a batch. The model is in eval mode while it runs and then
        back in the mode it was in.
    """
    if not isinstance(model, Layer):
        raise TypeError(f"generate: model must be a bpcore Layer such as bp.gpt(...), got {type(model).__name__}")
    max_new_tokens = check_int("generate", "max_new_tokens", max_new_tokens, minimum=0)
    temperature = check_number("generate", "temperature", temperature)
    if top_k is not None:
        top_k = check_int("generate", "top_k", top_k)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"generate: seed must be a non-negative int or None, got {seed!r}")
    if context_length is None:
        context_length = _context_length(model)
    else:
        context_length = check_int("generate", "context_length", context_length)
    backend = model.backend
    xp = backend.xp
    with backend.activate():
        tokens, one = _prompt(model, prompt_tokens)
        stream = backend.random(seed) if temperature > 0 else None
        was_training = model.training
        model.eval()
        try:
            for _ in range(max_new_tokens):
                length = tokens.shape[1]
                window = tokens if context_length is None or length <= context_length else \
                    tokens[:, length - context_length:]
                logits = model.forward(window)
                if logits.ndim != 3 or logits.shape[:2] != window.shape:
                    raise ValueError(f"generate: the model must map tokens (N, T) to logits (N, T, vocab); "
                                     f"{tuple(window.shape)} gave {tuple(logits.shape)}")
                next_token = _pick(xp, logits[:, -1, :], temperature, top_k, stream)
                tokens = xp.concat((tokens, xp.reshape(xp.astype(next_token, xp.int64), (-1, 1))), axis=1)
        finally:
            model.train(was_training)
            for layer in model.modules():
                layer._saved = None          # what the last step kept for a backward nobody will run
        result = backend.to_numpy(tokens)
    return result[0] if one else result
