"""Parameter: a trainable array and dL/d(array), the unit every layer and optimizer works on."""
from __future__ import annotations

import backends

FLOAT_DTYPES = ("float32", "float64")


def dtype_name(dtype) -> str:
    """"float32" for numpy.float32, torch.float32, array_api_strict.float32, ..."""
    return str(dtype).rpartition(".")[2]


class Parameter:
    """A trainable array and the gradient of the loss with respect to it.

    Attributes:
        data: the array, on the owning layer's device.
        grad: dL/d(data), same shape and device; zeros until a backward pass
            adds into it, and again after ``zero_grad()``.
    """

    __slots__ = ("data", "_grad", "backend")

    def __init__(self, data, backend: backends.Backend):
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
        """Add ``grad`` into ``.grad`` (the contract's +=). ``grad`` is copied, never kept."""
        with self.backend.activate():
            self._accumulate_new(self.backend.xp.asarray(grad, copy=True) if self._grad is None else grad)

    def _accumulate_new(self, grad):
        """accumulate_grad for a freshly computed array that nothing else holds (x.T @ grad_out):
        the first gradient after zero_grad() is stored as it is, saving a copy and an add."""
        if not self.backend.trains:
            raise backends.InferenceOnlyError(f"a gradient for a parameter on the {self.backend.spec} backend: "
                                              f"export is inference-only; train on another backend")
        if grad.shape != self.data.shape:             # one library's shapes: tuples, or torch.Size
            raise ValueError(f"gradient of shape {tuple(grad.shape)} for a parameter of shape "
                             f"{tuple(self.data.shape)}")
        if self._grad is None:
            self._grad = grad
        else:
            self._grad += grad

    def zero_grad(self):
        self._grad = None

    @property
    def shape(self):
        return tuple(self.data.shape)

    def __repr__(self):
        return f"Parameter(shape={self.shape}, dtype={self.data.dtype}, device={self.backend})"


# The largest finite value of each float dtype (float64 -> float32 casts above it give inf).
_LARGEST = {"float32": float.fromhex("0x1.fffffep+127"), "float64": float.fromhex("0x1.fffffffffffffp+1023")}


def checked_host_cast(value, dtype, what: str):
    """A host NumPy ``value`` cast to ``dtype`` ("float32", "float64" or None: kept), after checks.

    Refused (ValueError naming ``what``): a non-numeric dtype, NaN or infinite values, and
    finite values beyond the range of ``dtype`` (a float64 1e300 would become float32 inf).
    The checks run before the cast, so nothing overflows silently.
    """
    if value.dtype.kind not in "fiub":
        raise ValueError(f"{what} has non-numeric dtype {value.dtype}")
    if value.dtype.kind == "f" and value.size:
        magnitude = abs(value)
        if bool(((value != value) | (magnitude == float("inf"))).any()):
            raise ValueError(f"{what} holds NaN or infinite values")
        largest = float(magnitude.max())
        if dtype is not None and largest > _LARGEST[dtype]:
            raise ValueError(f"{what} holds {largest:.6g}, beyond the largest {dtype} "
                             f"({_LARGEST[dtype]:.6g}): the cast would turn it into inf")
    return value if dtype is None or str(value.dtype) == dtype else value.astype(dtype)
