"""evaluate and predict: the model in eval mode over a whole data set, in batches."""
from __future__ import annotations

from .._checks import check_finite, check_int
from ..nn.activations import stable_sigmoid
from ..nn.module import Layer
from .inputs import _check_common, _checked_X, _FirstBatchChecks, _on_model_device, _prepare
from .metrics import _resolve_metrics


@_on_model_device
def _evaluate_prepared(model, loss_fn, X, y, batch_size, counters):
    xp = model.xp
    dtype = model.device.dtype(model.dtype)     # not X's: integer indices for an Embedding
    was_training = model.training
    model.eval()
    try:
        with _FirstBatchChecks(loss_fn) as checks:   # y was checked where it entered; pred on the first batch
            values, items = [], dict.fromkeys(counters, 0)
            for start in range(0, X.shape[0], batch_size):
                stop = min(X.shape[0], start + batch_size)
                out = model.forward(X[start:stop, ...])
                row = [loss_fn.forward(out, y[start:stop, ...]) * (stop - start)]
                checks.first_batch_done()
                for name, count in counters.items():
                    correct, total = count(xp, out, y[start:stop, ...])
                    row.append(correct)
                    items[name] += total
                values.append(xp.stack([xp.astype(xp.asarray(v), dtype) for v in row]))
    finally:
        model.train(was_training)
    sums = model.device.to_numpy(xp.sum(xp.stack(values), axis=0)).astype("float64")
    scores = {"loss": float(sums[0]) / X.shape[0]}
    for i, name in enumerate(counters, start=1):
        scores[name] = float(sums[i]) / items[name]
    return scores


def evaluate(model, loss_fn, X, y, metrics=None, batch_size: int = 1024) -> dict:
    """Mean loss (and metrics) over (X, y) in eval mode: {"loss": float, "accuracy": float, ...}."""
    _check_common(model, loss_fn, batch_size, "evaluate")
    X, y = _prepare(model, loss_fn, X, y, "evaluate")
    return _evaluate_prepared(model, loss_fn, X, y, batch_size, _resolve_metrics(metrics, loss_fn))


@_on_model_device
def predict(model, X, batch_size: int = 1024, probabilities: bool = False):
    """The model's outputs for X in eval mode, as a host NumPy array.

    With ``probabilities=True`` the outputs are taken as logits: a sigmoid is applied
    when there is one output column, a softmax over the columns otherwise.
    """
    if not isinstance(model, Layer):
        raise TypeError(f"model must be a bpcore Layer, got {type(model).__name__}")
    check_int("", "batch_size", batch_size)
    X = _checked_X(model, X, "predict")
    xp = model.xp
    if xp.isdtype(X.dtype, "real floating"):
        check_finite(xp, X, "predict: X", "the outputs would be NaN; clean the input (or drop those rows) first")
    was_training = model.training
    model.eval()
    try:
        n = X.shape[0]
        outputs = [model.forward(X[start:min(n, start + batch_size), ...]) for start in range(0, n, batch_size)]
    finally:
        model.train(was_training)
    out = xp.concat(outputs, axis=0) if outputs else model.forward(X)      # an empty X: (0, n_out)
    if probabilities:
        if out.ndim == 2 and out.shape[1] > 1:
            shifted = xp.exp(out - xp.max(out, axis=1, keepdims=True))
            out = shifted / xp.sum(shifted, axis=1, keepdims=True)
        else:
            out = stable_sigmoid(xp, out)
    return model.device.to_numpy(out)
