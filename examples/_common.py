"""What every example shares: its command line and turning --device into a backend."""
from __future__ import annotations

import argparse
import os
import sys

import backends
import bpcore as bp


def parser(description: str, epochs: int | None, seed: int = 0, draws: bool = False) -> argparse.ArgumentParser:
    """--device, --epochs (when the example trains), --seed, and --out (when it draws)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--device", default="cpu",
                   help="cpu (NumPy), cuda[:N] (CuPy), or any backend spec such as torch, "
                        "torch:cuda, array_api_strict (default: cpu)")
    if epochs is not None:
        p.add_argument("--epochs", type=_positive_int, default=epochs, help=f"training epochs (default: {epochs})")
    p.add_argument("--seed", type=_non_negative_int, default=seed,
                   help=f"seed for weights and data (default: {seed})")
    if draws:
        p.add_argument("--out", default="out", help="folder for the PNG figures (default: out)")
    return p


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def resolve_device(spec: str) -> backends.Backend:
    """The backend for --device, or exit 2 with one line saying what is missing."""
    try:
        return backends.get(spec)
    except (backends.BackendUnavailableError, ValueError, TypeError) as error:
        print(f"error: --device {spec}: {error}", file=sys.stderr)
        raise SystemExit(2) from None


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
