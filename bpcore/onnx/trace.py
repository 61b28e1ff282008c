"""Running a model's forward on ndonnx arrays, and naming the layer and the line when it cannot.

Every built-in layer computes only with its Array API namespace (``self.xp``), so on the onnx
backend each operation becomes an ONNX node. A layer that calls NumPy itself (``np.tanh(x)``)
either fails inside NumPy or hands back a NumPy object array; both are caught here at the
layer that did it, with its source line, instead of a deep trace from inside ndonnx.
"""
from __future__ import annotations

import inspect
import linecache
import os
import re

# Calls of libraries that compute on their own arrays, not on the layer's namespace.
_FOREIGN_CALL = re.compile(r"\b(?:np|numpy|scipy|torch|cupy|cp)\.[A-Za-z_][\w.]*")
_LIBRARY_DIRS = tuple(os.sep + name + os.sep for name in ("ndonnx", "spox", "numpy", "onnx"))


class ExportError(RuntimeError):
    """The model cannot be exported, or onnxruntime disagrees with it; the message says where."""


def trace(model, argument, backend):
    """The graph value of ``model.forward(argument)``, every layer on the onnx ``backend``.

    Each layer's forward is wrapped (on this copy of the model only) so that a failure names the
    innermost layer that was running. Raises ExportError naming the layer and the call.
    """
    running = []

    def watch(layer):
        forward = layer.forward

        def watched(x):
            running.append(layer)
            out = forward(x)
            if not backend.owns(out):
                raise ExportError(f"{layer._name()} cannot be exported: its forward returned a "
                                  f"{type(out).__module__}.{type(out).__name__}, not an array of the onnx "
                                  f"backend{_foreign_calls_in(type(layer).forward)}. {_ADVICE}")
            running.pop()
            return out

        layer.forward = watched

    for layer in model.modules():
        watch(layer)
    try:
        return model.forward(argument)
    except ExportError:
        raise
    except Exception as error:
        layer = running[-1] if running else model
        raise ExportError(f"{layer._name()} cannot be exported: its forward {_failing_line(error)} "
                          f"({type(error).__name__}: {error}). {_ADVICE}") from error


_ADVICE = ("A layer exports when its forward uses only its Array API namespace (self.xp.tanh(x), "
           "not np.tanh(x)): ndonnx records those calls as ONNX nodes")


def _failing_line(error) -> str:
    """'calls np.tanh at file.py:12: `return np.tanh(x)`' for the deepest frame outside the array libraries."""
    found = None
    tb = error.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if not any(part in filename for part in _LIBRARY_DIRS) and filename != __file__:
            found = (filename, tb.tb_lineno)
        tb = tb.tb_next
    if found is None:
        return "fails"
    filename, line = found
    source = linecache.getline(filename, line).strip()
    calls = _FOREIGN_CALL.findall(source)
    head = f"calls {', '.join(dict.fromkeys(calls))}, which ONNX cannot record," if calls else "fails"
    return f"{head} at {os.path.basename(filename)}:{line}: `{source}`"


def _foreign_calls_in(function) -> str:
    """', it calls np.asarray' when the function's source names NumPy (or another library) calls."""
    try:
        source = inspect.getsource(function)
    except (OSError, TypeError):
        return ""
    calls = list(dict.fromkeys(_FOREIGN_CALL.findall(source)))
    return f": it calls {', '.join(calls)}, which ONNX cannot record" if calls else ""
