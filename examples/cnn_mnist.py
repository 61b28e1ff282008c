"""A convolutional net on MNIST
============================

A convolutional net on MNIST (or Fashion-MNIST) from the standard IDX files in a folder you have.

.. code-block:: bash

    python examples/cnn_mnist.py --data DIR [--fashion] [--download] [--limit N]
                                 [--device cpu|cuda|torch|...] [--epochs 3] [--seed 0] [--out DIR]

DIR holds train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and
t10k-labels-idx1-ubyte.gz (gzip-compressed or not). Without them the script says where to get
them and exits; --download fetches them into DIR (checked against their SHA-256). The network:
Conv2d(1, 16, 3, padding=1) - BatchNorm2d - ReLU - MaxPool2d(2) - Conv2d(16, 32, 3, padding=1) -
BatchNorm2d - ReLU - MaxPool2d(2) - Flatten - Linear(1568, 10), Adam lr 1e-3, batches of 64.
Prints the layer table and the test accuracy; writes mnist_confusion.png and mnist_filters.png.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bpcore as bp  # noqa: E402
from _common import PrintEvery, parser, positive_int, resolve_device, save_figure  # noqa: E402


def mnist_cnn(seed: int) -> bp.Sequential:
    """28x28 -> 14x14 -> 7x7 with two conv blocks, then a linear classifier."""
    return bp.Sequential(
        bp.Conv2d(1, 16, 3, padding=1, seed=seed), bp.BatchNorm2d(16), bp.ReLU(), bp.MaxPool2d(2),
        bp.Conv2d(16, 32, 3, padding=1, seed=seed + 1), bp.BatchNorm2d(32), bp.ReLU(), bp.MaxPool2d(2),
        bp.Flatten(), bp.Linear(32 * 7 * 7, 10, seed=seed + 2))


def main(argv=None) -> dict:
    p = parser(__doc__.splitlines()[0], epochs=3, draws=True)
    p.add_argument("--data", required=True, metavar="DIR", help="folder holding the four IDX files")
    p.add_argument("--fashion", action="store_true", help="Fashion-MNIST instead of MNIST")
    p.add_argument("--download", action="store_true", help="download missing files into DIR (SHA-256 checked)")
    p.add_argument("--limit", type=positive_int, default=None, metavar="N",
                   help="train on the first N training images only (quick runs)")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    name = "fashion_mnist" if args.fashion else "mnist"
    try:
        (X_train, y_train), (X_test, y_test) = getattr(bp.data, name)(args.data, download=args.download)
    except (FileNotFoundError, NotADirectoryError, ValueError) as error:
        hint = "" if args.download else " (or rerun with --download)"
        print(f"error: {error}{hint}", file=sys.stderr)
        raise SystemExit(2) from None
    if args.limit is not None:
        X_train, y_train = X_train[:args.limit], y_train[:args.limit]
    model = mnist_cnn(args.seed).to(device)
    model.summary(X_train.shape[1:])
    loss_fn = bp.SoftmaxCrossEntropyLoss()
    optimizer = bp.optim.Adam(model.parameters(), lr=1e-3)
    print(f"{name}: {len(X_train)} training and {len(X_test)} test images of 1x28x28, on {device}")
    bp.fit(model, loss_fn, optimizer, X_train, y_train, epochs=args.epochs, batch_size=64, seed=args.seed,
           metrics=["accuracy"], callbacks=[PrintEvery(1, args.epochs)], progress=False)
    test = bp.evaluate(model, loss_fn, X_test, y_test, metrics=["accuracy"])
    print(f"test accuracy {test['accuracy']:.4f} (loss {test['loss']:.4f})")
    save_figure(lambda path: bp.viz.confusion_matrix(model, X_test, y_test, path=path), args.out,
                f"{name}_confusion.png")
    save_figure(lambda path: bp.viz.filters(model, path=path), args.out, f"{name}_filters.png")
    return {"loss": test["loss"], "accuracy": test["accuracy"]}


if __name__ == "__main__":
    main()
