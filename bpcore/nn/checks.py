"""What every layer checks where arrays meet it: forward's input and backward's grad_out.

``LayerChecks`` is a base of :class:`bpcore.nn.Layer`; its methods read the layer's backend
(``self._backend``), float dtype (``self._dtype``) and name (``self._name()``).
"""
from __future__ import annotations

import backends

from .parameter import dtype_name

# A torch tensor that autograd tracks would attach a graph to every result (memory growing each step).
_TRACKED = ("{} is a torch tensor with requires_grad=True; bpcore computes gradients by hand, and "
            "autograd would record a graph at every step. Pass x.detach()")


class LayerChecks:
    """The input and grad_out checks of a layer, and the errors for a backward that cannot run."""

    def _accept_input(self, x, what="input"):
        """Return ``x`` as an array of this layer's backend and float dtype.

        Host NumPy arrays are moved and cast to the layer's dtype; arrays
        already on the backend must have that dtype when they are floating
        point (no silent up- or down-casts); integer and bool arrays are cast.
        Anything else is refused by ``backends.accept_array`` with the one message.
        """
        backend = self._backend
        dtype = backend.dtype(self._dtype)
        if backend.owns(x) and x.dtype == dtype and not getattr(x, "requires_grad", False):
            return x                    # the common case, first: it runs for every layer of every step
        if getattr(x, "requires_grad", False):
            raise TypeError(_TRACKED.format(f"{self._name()}: {what}"))
        host = backends.is_host_array(x)
        x = backends.accept_array(backend, x, self._name, what, dtype=self._dtype if host else None)
        if x.dtype == dtype:
            return x
        xp = backend.xp
        if xp.isdtype(x.dtype, "real floating"):
            raise TypeError(f"{self._name()}: {what} has dtype {dtype_name(x.dtype)}, but the layer is "
                            f"{self._dtype}; cast it, or call model.astype({dtype_name(x.dtype)!r})")
        if not xp.isdtype(x.dtype, ("integral", "bool")):
            raise TypeError(f"{self._name()}: {what} must be a real-valued array, got dtype {x.dtype}")
        return xp.astype(x, dtype)

    def _check_grad_out(self, grad_out, expected_shape=None):
        """grad_out is checked as forward checks its input: an array of this layer's backend
        (another backend's, a list or None is a TypeError), of the layer's dtype (no silent
        float64 gradients in a float32 model), with the forward output's shape (when given)."""
        backend = self._backend
        if (backend.owns(grad_out) and grad_out.dtype == backend.dtype(self._dtype) and backend.trains
                and (expected_shape is None or grad_out.shape == expected_shape)
                and not getattr(grad_out, "requires_grad", False)):
            return                      # the common case, first; each failure is named below
        if not backend.trains:
            raise self._inference_only()
        if getattr(grad_out, "requires_grad", False):
            raise TypeError(_TRACKED.format(f"{self._name()}: grad_out"))
        if not backend.owns(grad_out):
            backends.accept_array(backend, grad_out, self._name, "grad_out")     # raises, naming both
            raise TypeError(f"{self._name()}: grad_out must be an array of {backend.spec} (the layer's "
                            f"device), got a host array; move it with model.device.asarray(...)")
        if grad_out.dtype != backend.dtype(self._dtype):
            raise TypeError(f"{self._name()}: grad_out has dtype {dtype_name(grad_out.dtype)}, but the layer "
                            f"is {self._dtype}")
        if expected_shape is not None and tuple(grad_out.shape) != tuple(expected_shape):
            raise ValueError(f"{self._name()}: backward expected grad_out of shape "
                             f"{tuple(expected_shape)} (the forward output), got {tuple(grad_out.shape)}")

    def _inference_only(self):
        return backends.InferenceOnlyError(
            f"{self._name()}: backward() on the {self._backend.spec} backend, which only records the forward "
            f"pass: export is inference-only. Train on another backend (model.to('cpu')), then export")

    def _no_forward(self):
        if not self._backend.trains:
            return self._inference_only()
        return RuntimeError(f"{self._name()}: backward() called before forward(); "
                            f"run a forward pass first")
