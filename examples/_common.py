"""What every example shares: its command line and turning --device into a backend."""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import backends
import bpcore as bp


def parser(description: str, epochs: int | None, seed: int = 0, draws: bool = False,
           figures: str = "the PNG figures") -> argparse.ArgumentParser:
    """--device, --epochs (when the example trains), --seed, and --out (when it draws).

    ``epochs=0`` means the example picks its own default (the help says so).
    """
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--device", default="cpu",
                   help="cpu (NumPy), cuda[:N] (CuPy), or any backend spec such as torch, "
                        "torch:cuda, array_api_strict (default: cpu)")
    if epochs is not None:
        default = f"{epochs}" if epochs else "depends on the data set"
        p.add_argument("--epochs", type=positive_int, default=epochs, metavar="N",
                       help=f"training epochs (default: {default})")
    p.add_argument("--seed", type=non_negative_int, default=seed, metavar="N",
                   help=f"seed for weights and data (default: {seed})")
    if draws:
        p.add_argument("--out", default="out", metavar="DIR", type=writable_folder,
                       help=f"folder for {figures}, created if missing (default: out)")
    return p


def _integer(text: str, low: int, what: str) -> int:
    # argparse prints an ArgumentTypeError's message as it is, and a ValueError as
    # "invalid <function name> value", which would show an internal name.
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an int >= 0, with a message that says so."""
    return _integer(text, 0, "a non-negative integer")


def positive_int(text: str) -> int:
    """argparse type: an int >= 1, with a message that says so."""
    return _integer(text, 1, "a positive integer")


def writable_folder(text: str) -> str:
    """argparse type: a folder we can write into, created if missing, checked before any training."""
    try:
        os.makedirs(text, exist_ok=True)
        with tempfile.TemporaryFile(dir=text):
            pass
    except OSError as error:
        raise argparse.ArgumentTypeError(f"cannot write into folder {text!r}: {error.strerror or error}") from None
    return text


def resolve_device(spec: str) -> backends.Backend:
    """The backend for --device, or exit 2 with one line saying what is missing.

    Prints one line with the conditions of the run (backend, BLAS library, its kernel and
    threads): the last digits of the README's figures depend on them.
    """
    try:
        backend = backends.get(spec)
    except (backends.BackendUnavailableError, ValueError, TypeError) as error:
        print(f"error: --device {spec}: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"[{conditions(backend)}]")
    return backend


def conditions(backend) -> str:
    """'numpy 2.3.1 on numpy, BLAS openblas 0.3.31 (SkylakeX kernel, 2 threads)', via threadpoolctl."""
    import numpy

    text = f"numpy {numpy.__version__}, backend {backend.spec}"
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return text + ", BLAS unknown (pip install threadpoolctl to see it)"
    blas = [info for info in threadpool_info() if info.get("user_api") == "blas"]
    for info in blas[:1]:
        kernel = info.get("architecture")
        text += (f", BLAS {info.get('internal_api')} {info.get('version')} ("
                 + (f"{kernel} kernel, " if kernel else "") + f"{info.get('num_threads')} threads)")
    return text


def train_full_batch(model, loss_fn, optimizer, X, y, epochs: int, report_every: int, report):
    """Plain full-batch gradient descent; calls report(epoch, loss, out) every report_every epochs.

    Returns the last loss (a float) and the last output.
    """
    for epoch in range(1, epochs + 1):
        optimizer.zero_grad()
        out = model(X)                           # forward: every layer caches what backward needs
        loss = loss_fn.forward(out, y)
        # backward: dL/dout through every layer, last first (dL/dX itself is not needed)
        model.backward(loss_fn.backward(), input_grad=False)
        optimizer.step()                         # theta -= lr * dL/dtheta
        if epoch % report_every == 0 or epoch == epochs:
            report(epoch, float(loss), out)
    return float(loss), out


def save_figure(draw, out_dir: str, name: str):
    """Call draw(path) to write out_dir/name, or say how to get matplotlib when it is missing."""
    path = os.path.join(out_dir, name)
    try:
        draw(path)
    except ImportError as error:
        print(f"(no {name}: {error})")
        return None
    print(f"wrote {path}")
    return path


class PrintEvery(bp.Callback):
    """Print the epoch's logs every ``every`` epochs (and after the last)."""

    def __init__(self, every: int, epochs: int):
        self.every, self.epochs = max(1, every), epochs

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every == 0 or epoch + 1 == self.epochs:
            shown = "  ".join(f"{k} {v:.4f}" for k, v in logs.items() if k != "lr")
            print(f"epoch {epoch + 1:>5}  {shown}")


def load_digits_or_exit():
    """bp.data.digits(), or exit 2 with one line naming the missing extra."""
    try:
        return bp.data.digits()
    except ImportError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def print_confusion(model, X_test, y_test, classes: int = 10):
    """Print the test confusion matrix (rows: true class, columns: predicted) and return it."""
    import numpy as np

    predicted = bp.predict(model, X_test).argmax(axis=1)
    confusion = np.zeros((classes, classes), dtype=int)
    np.add.at(confusion, (y_test, predicted), 1)
    print("confusion matrix (rows: true digit, columns: predicted)")
    print("     " + "".join(f"{d:>4}" for d in range(classes)))
    for digit in range(classes):
        print(f"  {digit}  " + "".join(f"{count:>4}" for count in confusion[digit]))
    return confusion


def blas_threads(count):
    """Limit NumPy's BLAS to ``count`` threads while an example runs (threadpoolctl, when installed);
    returns the limiter (``.restore_original_limits()`` undoes it) or None. The sequence examples'
    small per-step products run faster on one thread than on BLAS's default."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        print("(threadpoolctl is not installed: BLAS keeps its own thread count; pip install threadpoolctl)")
        return None
    return threadpool_limits(count, user_api="blas")



# -- the text examples (char_rnn.py, tiny_gpt.py) ------------------------------------------------
def read_text(path) -> str:
    """The text at ``path``; None gives Python's own documentation topics (the standard library's
    pydoc_data: offline everywhere). An unreadable file exits with the reason."""
    if path is None:
        from pydoc_data.topics import topics

        return "\n".join(topics[name] for name in sorted(topics))
    try:
        with open(path, encoding="utf-8", errors="replace") as stream:
            return stream.read()
    except OSError as error:
        print(f"error: --text {path}: {error.strerror or error}", file=sys.stderr)
        raise SystemExit(2) from None


def text_windows(text: str, context: int):
    """(vocabulary, codes, training windows, held-out windows) for next-character models: the
    text's characters as integer codes, the last tenth held out, each cut into windows of
    ``context + 1`` codes (inputs ``[:, :-1]``, targets ``[:, 1:]``). A text too short for 20
    windows exits naming --context."""
    if len(text) < 20 * (context + 1):
        print(f"error: the text has {len(text)} characters; it needs at least {20 * (context + 1)} for windows "
              f"of {context} (lower --context)", file=sys.stderr)
        raise SystemExit(2)
    vocab = bp.data.CharVocabulary(text)
    codes = vocab.encode(text)
    cut = int(len(codes) * 0.9)
    return (vocab, codes, bp.data.sliding_windows(codes[:cut], context + 1, step=context),
            bp.data.sliding_windows(codes[cut:], context + 1, step=context))
