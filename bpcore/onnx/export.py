"""bp.onnx.export: a model's own forward, traced by ndonnx, checked by onnx and onnxruntime, written atomically."""
from __future__ import annotations

import copy
import dataclasses
import os

import numpy as np

import backends

from .._version import __version__
from ..checkpoint.atomic import replace_atomically
from ..nn.containers import Sequential
from ..nn.module import Layer
from .trace import ExportError, trace

_INSTALL = 'pip install "bpcore[onnx]" (from a source checkout: pip install -e ".[onnx]")'

# How far onnxruntime may differ from the model's own forward, relative to max(1, |output|):
# its kernels sum matmuls in another order and approximate exp/tanh differently than NumPy,
# a few hundred ulps of float32 in a deep net; float64 keeps far more digits.
TOLERANCE = {"float32": 1e-4, "float64": 1e-10}


@dataclasses.dataclass(frozen=True)
class ExportReport:
    """What ``bp.onnx.export`` wrote and how well onnxruntime reproduced the model.

    Attributes:
        path: the file written. opset: the ONNX opset of the default domain. nodes: nodes in the graph.
        max_difference: the largest |onnxruntime - model| on the example.
        input_shape, output_shape: the graph's shapes, "batch" where the batch axis is dynamic.
        dtype: the input's dtype: "float32" or "float64" (the model's), "int64" for a model that
            takes integer indices (an Embedding first). size: the file's size in bytes.
        input_name, output_name: the graph's input and output names (``input_names``, ``output_names``).
    """

    path: str
    opset: int
    nodes: int
    max_difference: float
    input_shape: tuple
    output_shape: tuple
    dtype: str
    size: int
    input_name: str = "input"
    output_name: str = "output"

    def __str__(self):
        return (f"{self.path} ({self.size / 1000:.1f} kB): ONNX opset {self.opset}, {self.nodes} nodes, "
                f"{self.dtype} {self.input_name} {self.input_shape} -> {self.output_name} {self.output_shape}; "
                f"onnxruntime matches the model to {self.max_difference:.3g}")


def export(model, example, path, input_names=("input",), output_names=("output",),
           dynamic_batch: bool = True) -> ExportReport:
    """Write ``model`` as an ONNX file that onnxruntime runs, as ``torch.onnx.export(model, example, path)``.

    A copy of the model, in eval mode, is moved to the onnx backend (its parameters become graph
    constants) and its own ``forward`` runs on an ``ndonnx.argument`` shaped like ``example``:
    that records the graph. The graph must pass ``onnx.checker`` and, run once in onnxruntime on
    ``example``, give the model's own output to float tolerance (:data:`TOLERANCE`). Only then is
    the file written, atomically. ``model`` itself is not changed (mode, device, caches).

    Args:
        model: a bpcore Layer (a Sequential, an mlp, a single layer, a user layer on the Array API).
        example: an input batch, shape (batch, ...), a host NumPy array or an array of the model's backend.
        path: the .onnx file to write; its folder must exist.
        input_names, output_names: the graph's one input name and one output name.
        dynamic_batch: the batch axis is symbolic ("batch"), so any batch size runs; False fixes it
            to the example's.
    Returns:
        :class:`ExportReport` (opset, node count, largest difference, shapes).
    Raises:
        BackendUnavailableError: ndonnx, onnx or onnxruntime is missing (the message gives the install command).
        TypeError: ``model`` is not a Layer, ``example`` is not an array, bad names or path type.
        ValueError: a model without layers, an example of the wrong shape or dtype (the layer's own message).
        FileNotFoundError, NotADirectoryError, PermissionError: the path cannot be written.
        ExportError: a layer cannot be recorded (its name and the call), onnx.checker refuses the graph,
            or onnxruntime's output differs from the model's (the largest difference and where).
    """
    ndx, onnx, onnxruntime = _libraries()
    _check_model(model)
    input_name, output_name = _one_name("input_names", input_names), _one_name("output_names", output_names)
    if input_name == output_name:
        raise ValueError(f"bp.onnx.export: the input and the output need different names, both are {input_name!r}")
    if not isinstance(dynamic_batch, bool):
        raise TypeError(f"bp.onnx.export: dynamic_batch must be True or False, got {dynamic_batch!r}")
    path = _writable(path)

    work = copy.deepcopy(model).eval()          # the user's model keeps its mode, device and caches
    host_example = _host_example(example, work)
    with work.device.activate():
        reference = backends.to_host(work.forward(example))   # checks width and dtype as the model would

    work.to("onnx")
    batch = "batch" if dynamic_batch else host_example.shape[0]
    # the graph's input: floats in the model's dtype, or int64 indices for a model that takes them
    input_dtype = work.dtype if work.input_indices() is None else "int64"
    argument = ndx.argument(shape=(batch, *host_example.shape[1:]), dtype=getattr(ndx, input_dtype))
    output = trace(work, argument, backends.get("onnx"))
    proto = ndx.build({input_name: argument}, {output_name: output})
    feed = host_example.astype(input_dtype, copy=False)
    if dynamic_batch:
        _declare_output_shape(proto, onnxruntime, feed, input_name, output_name)
    proto.producer_name, proto.producer_version = "bpcore", __version__
    proto.doc_string = repr(model)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as error:
        raise ExportError(f"onnx.checker refuses the graph of {model._name()}: {error}") from None
    content = proto.SerializeToString()

    session = onnxruntime.InferenceSession(content, providers=["CPUExecutionProvider"])
    (result,) = session.run([output_name], {input_name: feed})
    difference = _compare(result, reference, work.dtype, model)

    # as every bpcore writer: crash-safe, the old file's mode kept (a new one gets the umask's, as open())
    replace_atomically(path, lambda stream: stream.write(content))
    return ExportReport(path=path, opset=_opset(proto), nodes=len(proto.graph.node), max_difference=difference,
                        input_shape=_shape(proto.graph.input[0]), output_shape=_shape(proto.graph.output[0]),
                        dtype=input_dtype, size=len(content), input_name=input_name, output_name=output_name)


def _libraries():
    try:
        import ndonnx
        import onnx
        import onnxruntime
    except ImportError as error:
        raise backends.BackendUnavailableError(
            f"bp.onnx.export needs ndonnx, onnx and onnxruntime ({error.name or error} is missing): "
            f"{_INSTALL}") from None
    return ndonnx, onnx, onnxruntime


def _check_model(model):
    if not isinstance(model, Layer):
        raise TypeError(f"bp.onnx.export: model must be a bpcore Layer (a Sequential, an mlp, a layer), "
                        f"got {type(model).__name__}")
    if isinstance(model, Sequential) and not model.layers:
        raise ValueError("bp.onnx.export: the model has no layers (an empty Sequential): nothing to export")


def _one_name(what, names) -> str:
    if isinstance(names, str) or not isinstance(names, (tuple, list)) or len(names) != 1:
        raise TypeError(f"bp.onnx.export: {what} must be a tuple of one name (the model has one {what[:-6]}), "
                        f"such as ({what[:-6]!r},), got {names!r}")
    name = names[0]
    if not isinstance(name, str) or not name.strip():
        raise TypeError(f"bp.onnx.export: {what} must hold a non-empty string, got {name!r}")
    return name


def _writable(path) -> str:
    """The path as a string, after checking that its folder exists and may be written."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"bp.onnx.export: path must be a file name (str or os.PathLike), got {type(path).__name__}")
    path = os.fspath(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise IsADirectoryError(f"bp.onnx.export: {path} is a folder; give a file name such as model.onnx")
    if not os.path.exists(directory):
        raise FileNotFoundError(f"bp.onnx.export: cannot write {path}: the folder {directory} does not exist")
    if not os.path.isdir(directory):
        raise NotADirectoryError(f"bp.onnx.export: cannot write {path}: {directory} is not a folder")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PermissionError(f"bp.onnx.export: cannot write {path}: no permission to write in {directory}")
    return path


def _host_example(example, model):
    """The example as a host NumPy array with a batch axis, after the checks export itself needs."""
    if not hasattr(example, "shape") or not hasattr(example, "dtype"):
        raise TypeError(f"bp.onnx.export: example must be an input array (host NumPy, or an array of "
                        f"{model.device.spec}), got {type(example).__name__}; np.asarray(...) it first")
    try:
        host = backends.to_host(example)
    except TypeError as error:
        raise TypeError(f"bp.onnx.export: example: {error}") from None
    if host.ndim < 1 or host.shape[0] < 1:
        raise ValueError(f"bp.onnx.export: example must be a batch of at least one sample, shape (batch, ...), "
                         f"got shape {host.shape}")
    return host


def _compare(result, reference, dtype, model) -> float:
    """The largest |onnxruntime - model|; ExportError when it exceeds the float tolerance."""
    if result.shape != reference.shape:
        raise ExportError(f"onnxruntime's output of {model._name()} has shape {result.shape}, the model's "
                          f"{reference.shape}")
    reference = reference.astype(result.dtype, copy=False)
    difference = np.abs(result.astype("float64") - reference.astype("float64"))
    agree = (result == reference) | (np.isnan(result) & np.isnan(reference))   # equal infinities and NaNs
    difference[agree] = 0.0
    worst = float(np.max(difference, initial=0.0))
    scale = max(1.0, float(np.max(np.abs(reference[np.isfinite(reference)]), initial=0.0)))
    allowed = TOLERANCE[dtype] * scale
    if not worst <= allowed:                  # also catches a NaN difference
        where = tuple(int(i) for i in np.unravel_index(int(np.argmax(np.nan_to_num(difference, nan=np.inf))),
                                                       difference.shape))
        raise ExportError(f"onnxruntime's output of {model._name()} differs from the model's by up to {worst:.3g} "
                          f"at index {where} (onnxruntime {result[where]!r}, model {reference[where]!r}); the "
                          f"{dtype} tolerance is {allowed:.3g}. A layer computes something ONNX does differently")
    return worst


def _declare_output_shape(proto, onnxruntime, feed, input_name, output_name) -> None:
    """Write the output's shape where ndonnx leaves it unknown (it does after some matmuls): "batch"
    for the first axis and the sizes of the others, once onnxruntime shows on two batch sizes that
    the first axis follows the input's batch and the others stay. Otherwise leave it as traced."""
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    batch = feed.shape[0]
    shape, grown = (session.run([output_name], {input_name: x})[0].shape
                    for x in (feed, np.concatenate([feed, feed[:1]])))
    dims = proto.graph.output[0].type.tensor_type.shape.dim
    if len(dims) != len(shape) or shape[:1] != (batch,) or grown != (batch + 1, *shape[1:]):
        return
    if not dims[0].HasField("dim_value"):
        dims[0].dim_param = "batch"
    for dim, size in zip(dims[1:], shape[1:]):
        if not dim.HasField("dim_value"):
            dim.dim_value = size


def _opset(proto) -> int:
    return next((entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx")), 0)


def _shape(value_info) -> tuple:
    dims = value_info.type.tensor_type.shape.dim
    return tuple(dim.dim_value if dim.HasField("dim_value") else (dim.dim_param or "?") for dim in dims)
