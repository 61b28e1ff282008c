"""ndonnx: an Array API namespace whose arrays are values of an ONNX graph (export, inference only).

A model moved here (``model.to("onnx")``) holds its parameters and buffers as graph constants.
Running its unchanged ``forward`` on an ``ndx.argument`` records every operation as an ONNX node,
which is how ``bp.onnx.export`` writes a file: no converter per layer. Nothing is computed here
(onnxruntime runs the graph), so there are no gradients and no random numbers: ``backward`` and
training-mode Dropout raise :class:`InferenceOnlyError`.
"""
from __future__ import annotations

import numpy as np

from ._base import Backend, BackendUnavailableError

INSTALL = 'pip install "bpcore[onnx]" (from a source checkout: pip install -e ".[onnx]")'


class InferenceOnlyError(RuntimeError):
    """A training operation (backward, a dropout mask, an optimizer step) on the onnx backend."""


def inference_only(what: str) -> InferenceOnlyError:
    """The one message for anything the onnx backend cannot do."""
    return InferenceOnlyError(
        f"{what} on the onnx backend: export is inference-only (the graph records the forward pass; "
        f"it has no gradients or random numbers). Train on another backend, then bp.onnx.export(model, ...)")


class OnnxBackend(Backend):
    name = "onnx"
    kind = "cpu"
    trains = False

    def __init__(self, ndx):
        self.ndx = ndx
        self._array_type = ndx.Array
        super().__init__(ndx, ndx.asarray(np.zeros(())).device, "onnx")

    def asarray(self, host, dtype=None, copy=False):
        # A host array becomes a constant of the graph (ndonnx copies it into the model).
        return self.ndx.asarray(np.array(host, dtype=dtype, copy=True))

    def to_numpy(self, array):
        try:
            return np.array(array.unwrap_numpy(), copy=True)
        except ValueError:           # a value traced from an argument: only onnxruntime has its numbers
            raise ValueError("this onnx array depends on a graph input, so it has no values until "
                             "onnxruntime runs the graph (bp.onnx.export does)") from None

    def owns(self, array):
        return isinstance(array, self._array_type)

    @property
    def sync_free(self) -> bool:
        # a traced value has no numbers to read (onnxruntime computes them later): never check values
        return False

    def random_bits(self, seed, call, shape):
        raise inference_only("random numbers (a Dropout mask in training mode; call model.eval())")


def make_onnx(device):
    if device not in (None, "cpu"):
        raise ValueError(f"the onnx backend has no devices (onnxruntime picks one when it runs the "
                         f"file), got device {device!r}")
    try:
        import ndonnx
    except ImportError:
        raise BackendUnavailableError(f"ndonnx is not installed: {INSTALL}") from None
    return OnnxBackend(ndonnx)
