"""Parameter: a trainable array and dL/d(array), the unit every layer and optimizer works on."""
from __future__ import annotations

import math
import sys

import backends

from .._checks import FLOAT32_MAX

FLOAT_DTYPES = ("float32", "float64")


def dtype_name(dtype) -> str:
    """"float32" for numpy.float32, torch.float32, array_api_strict.float32, ..."""
    return str(dtype).rpartition(".")[2]


class Parameter:
    """A trainable array and the gradient of the loss with respect to it.

    A layer makes its Parameters in ``__init__`` with ``self.W = self.parameter(host_array)``,
    which puts the values on the layer's device and dtype; building one directly,
    ``Parameter(data, backend)``, needs ``data`` already a floating array of ``backend``.

    Attributes:
        data: the array, on the owning layer's device.
        grad: dL/d(data), same shape and device; zeros until a backward pass
            adds into it, and again after ``zero_grad()``.
        backend: the :class:`backends.Backend` that ``data`` lives on.
    """

    __slots__ = ("data", "_grad", "backend")

    def __init__(self, data, backend: backends.Backend):
        if not isinstance(backend, backends.Backend):
            raise TypeError(f"Parameter: backend must be a backends.Backend (a layer's self.backend), got "
                            f"{type(backend).__name__}; in a layer, make parameters with self.parameter(host_array)")
        if not backend.owns(data) or not backend.xp.isdtype(data.dtype, "real floating"):
            raise TypeError(f"Parameter: data must be a floating array of {backend.spec}, got "
                            f"{type(data).__name__}{' of dtype ' + str(data.dtype) if hasattr(data, 'dtype') else ''}"
                            f"; in a layer, make parameters with self.parameter(host_array)")
        self.data = data
        self.backend = backend
        self._grad = None   # None stands for "all zeros", made only when read

    @property
    def grad(self):
        if self._grad is None:
            with self.backend.activate():      # CuPy allocates on the current GPU, not data's
                self._grad = self.backend.xp.zeros_like(self.data)
        return self._grad

    @grad.setter
    def grad(self, value):
        if value is not None and tuple(value.shape) != tuple(self.data.shape):
            raise ValueError(f"grad must have the parameter's shape {tuple(self.data.shape)}, "
                             f"got {tuple(value.shape)}")
        self._grad = value

    def accumulate_grad(self, grad):
        """Add ``grad`` into ``.grad``: the contract's ``+=``, as a layer's backward does
        (``self.W.accumulate_grad(x.T @ grad_out)``).

        ``grad`` must be an array of the parameter's device, shape and dtype. The first gradient
        after ``zero_grad()`` is kept as it is (no copy: pass a freshly computed array, not one
        you will change in place afterwards); later ones are added into a new array, so an array
        you passed is never changed.

        Raises:
            TypeError: ``grad`` is not an array of this parameter's device, or has another dtype.
            ValueError: ``grad`` has another shape.
        """
        if grad.__class__ is not self.data.__class__ or grad.shape != self.data.shape \
                or grad.dtype != self.data.dtype or self.backend.switches_device:
            self._check_gradient(grad)          # not the everyday case: find what (if anything) is wrong
        if not self.backend.trains:
            raise backends.InferenceOnlyError(f"a gradient for a parameter on the {self.backend.spec} backend: "
                                              f"export is inference-only; train on another backend")
        if self._grad is None:
            self._grad = grad
        else:
            with self.backend.activate():
                self._grad = self._grad + grad

    def _check_gradient(self, grad):
        """Raise the error that says why ``grad`` cannot be added into this parameter's gradient, if
        it cannot (a NumPy scalar from a full reduction, of the right dtype, can)."""
        if not self.backend.owns(grad):
            raise TypeError(f"accumulate_grad: the gradient must be an array of {self.backend.spec} (the "
                            f"parameter's device), got {type(grad).__name__}")
        if tuple(grad.shape) != tuple(self.data.shape):
            raise ValueError(f"accumulate_grad: gradient of shape {tuple(grad.shape)} for a parameter of shape "
                             f"{tuple(self.data.shape)}")
        if grad.dtype != self.data.dtype:
            raise TypeError(f"accumulate_grad: gradient of dtype {dtype_name(grad.dtype)} for a parameter of "
                            f"dtype {dtype_name(self.data.dtype)}")

    def zero_grad(self):
        self._grad = None

    @property
    def shape(self):
        return tuple(self.data.shape)

    def __repr__(self):
        return f"Parameter(shape={self.shape}, dtype={self.data.dtype}, device={self.backend})"


def own_parameters(layer):
    """(name, Parameter) pairs held directly by ``layer`` (not its children), in assignment order."""
    return [(name, value) for name, value in vars(layer).items() if isinstance(value, Parameter)]


# The largest finite value of each float dtype (float64 -> float32 casts above it give inf).
_LARGEST = {"float32": FLOAT32_MAX, "float64": sys.float_info.max}


def checked_host_cast(value, dtype, what: str):
    """A host NumPy ``value`` cast to ``dtype`` ("float32", "float64" or None: kept), after checks.

    Refused (ValueError naming ``what``): a non-numeric dtype, NaN or infinite values, and
    finite values beyond the range of ``dtype`` (a float64 1e300 would become float32 inf).
    The checks run before the cast, so nothing overflows silently.
    """
    if value.dtype.kind not in "fiub":
        raise ValueError(f"{what} has non-numeric dtype {value.dtype}")
    if value.dtype.kind == "f" and value.size:
        low, high = float(value.min()), float(value.max())     # NaN comes out of either; no copy is made
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ValueError(f"{what} holds NaN or infinite values")
        largest = max(-low, high)
        if dtype is not None and largest > _LARGEST[dtype]:
            raise ValueError(f"{what} holds {largest:.6g}, beyond the largest {dtype} "
                             f"({_LARGEST[dtype]:.6g}): the cast would turn it into inf")
    return value if dtype is None or str(value.dtype) == dtype else value.astype(dtype)
