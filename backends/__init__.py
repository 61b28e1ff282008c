"""bpcore's backend registry: a device string -> an Array API namespace.

A :class:`Backend` bundles what a layer needs to run on one device: the
namespace ``xp`` (from array-api-compat, or array_api_strict itself), the
device, how to move host NumPy arrays on and off it, how to wait for queued
work, and seeded random numbers (which the Array API standard lacks: ``_random.py`` makes them
from a counter, the same on every backend).

    >>> import backends
    >>> backends.available()            # usable here, e.g. ['numpy', 'array_api_strict', 'torch', 'onnx']
    >>> backends.available(trains=True) # those that train (onnx only records a forward pass for export)
    >>> be = backends.get("cpu")        # or "cuda", "cuda:1", "torch", "torch:cuda", "cupy:1", ...
    >>> a = be.asarray(host_array); host = be.to_numpy(a)

Device strings: ``"cpu"`` is NumPy; ``"cuda"`` / ``"cuda:N"`` is CuPy on GPU N;
a backend name, alone or followed by ``:device`` (``"torch:cuda:0"``), picks
that backend; ``"onnx"`` (ndonnx) records the forward pass as an ONNX graph
(inference only, used by ``bp.onnx.export``). ``register()`` adds a backend
without touching bpcore; ``register_fast_path()`` lets a backend run one of bpcore's operations
(such as the scatter-add behind Embedding's backward, or a convolution's windows) with its own
faster function; ``portable_only()`` turns every fast path off for a while.
"""
from __future__ import annotations

from ._base import Backend, BackendUnavailableError, RandomStream, host_array_from, is_host_array
from ._onnx import InferenceOnlyError
from ._random import GENERATOR as RANDOM_GENERATOR
from ._random import checked_state as checked_random_state
from ._fast_paths import fast_path, fast_paths, portable_only, register_fast_path, unregister_fast_path
from ._registry import accept_array, available, backend_of, get, known, register, status, to_host, unregister

# bpcore checks this marker so that an unrelated PyPI project that is also
# called "backends" is never mistaken for this registry.
IS_BPCORE_BACKENDS = True

__all__ = [
    "Backend",
    "accept_array",
    "BackendUnavailableError",
    "RandomStream",
    "RANDOM_GENERATOR",
    "checked_random_state",
    "available",
    "backend_of",
    "fast_path",
    "fast_paths",
    "get",
    "InferenceOnlyError",
    "host_array_from",
    "is_host_array",
    "known",
    "portable_only",
    "register",
    "register_fast_path",
    "status",
    "to_host",
    "unregister",
    "unregister_fast_path",
]


def _register_builtin():
    from ._cupy import cupy_scatter_add_rows, cupy_spec_of, make_cupy
    from ._numpy import make_numpy, numpy_scatter_add_rows
    from ._onnx import make_onnx
    from ._strict import make_strict, strict_spec_of
    from ._torch import make_torch, torch_scatter_add_rows, torch_spec_of

    register("numpy", make_numpy)
    # "array_api_strict:device1": a simulated second device, so device mistakes fail on the CPU
    register("array_api_strict", make_strict, candidates=["array_api_strict", "array_api_strict:device1"],
             spec_of=strict_spec_of)
    register("torch", make_torch, candidates=["torch", "torch:cuda"], spec_of=torch_spec_of)
    register("cupy", make_cupy, candidates=["cupy"], spec_of=cupy_spec_of)
    register("onnx", make_onnx, trains=False)     # export: records the forward pass as an ONNX graph
    # Embedding's backward: out[indices[k]] += values[k] (bpcore.nn.scatter holds the portable reference)
    register_fast_path("numpy", "scatter_add_rows", numpy_scatter_add_rows)
    register_fast_path("torch", "scatter_add_rows", torch_scatter_add_rows)
    register_fast_path("cupy", "scatter_add_rows", cupy_scatter_add_rows)
    # Convolutions and pooling (bpcore.nn.windows holds the portable references): as_strided windows,
    # max-pool routing with a boolean mask, a convolution's input gradient one kernel offset at a time
    from . import _strided

    for backend_name, paths in (("numpy", _strided.NUMPY_PATHS), ("cupy", _strided.CUPY_PATHS)):
        for operation, function in paths.items():
            register_fast_path(backend_name, operation, function)


_register_builtin()
