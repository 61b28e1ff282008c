"""Floor 6: export to ONNX. The model's own Array API forward, run on ndonnx arrays, is the graph.

    export.py   bp.onnx.export(model, example, path): trace, onnx.checker, onnxruntime, atomic write
    trace.py    running forward on the onnx backend; naming the layer and the call that cannot export

Needs the ``onnx`` extra (ndonnx, onnx, onnxruntime): pip install "bpcore[onnx]".
"""
from __future__ import annotations

from .export import TOLERANCE, ExportReport, export
from .trace import ExportError

__all__ = ["ExportError", "ExportReport", "TOLERANCE", "export"]
