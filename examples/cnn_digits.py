"""A convolutional net on the digits
=================================

A small convolutional net on the 8x8 handwritten digits: conv, pool, conv, pool, linear.

.. code-block:: bash

    python examples/cnn_digits.py [--device cpu|cuda|torch|...] [--epochs 30] [--seed 0] [--out DIR]

scikit-learn's bundled digits as images (1797 x 1 x 8 x 8; pip install -e ".[data]"), an 80/20
split, Conv2d(1, 16, 3, padding=1) - BatchNorm2d - ReLU - MaxPool2d(2) - Conv2d(16, 32, 3, padding=1) -
BatchNorm2d - ReLU - MaxPool2d(2) - Flatten - Linear(128, 10), Adam lr 3e-3, batches of 32 (test
accuracy 0.983-0.992 over seeds 0-3). Prints the layer table,
the test accuracy and the confusion matrix; writes cnn_digits_confusion.png,
cnn_digits_filters.png and cnn_digits_feature_maps.png.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


import bpcore as bp  # noqa: E402
from _common import print_confusion, PrintEvery, parser, resolve_device, save_figure  # noqa: E402


def small_cnn(seed: int) -> bp.Sequential:
    """The example's network: two 3x3 conv blocks (8x8 -> 4x4 -> 2x2) and a linear classifier."""
    return bp.Sequential(
        bp.Conv2d(1, 16, 3, padding=1, seed=seed), bp.BatchNorm2d(16), bp.ReLU(), bp.MaxPool2d(2),
        bp.Conv2d(16, 32, 3, padding=1, seed=seed + 1), bp.BatchNorm2d(32), bp.ReLU(), bp.MaxPool2d(2),
        bp.Flatten(), bp.Linear(32 * 2 * 2, 10, seed=seed + 2))


def main(argv=None) -> dict:
    args = parser(__doc__.splitlines()[0], epochs=30, draws=True).parse_args(argv)
    device = resolve_device(args.device)
    try:
        X, y = bp.data.digits(images=True)
    except ImportError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    X_train, X_test, y_train, y_test = bp.data.train_test_split(X, y, test_size=0.2, seed=args.seed)
    model = small_cnn(args.seed).to(device)
    model.summary(X.shape[1:])
    loss_fn = bp.SoftmaxCrossEntropyLoss()
    optimizer = bp.optim.Adam(model.parameters(), lr=3e-3)
    print(f"digits: {len(X_train)} training and {len(X_test)} test images of 1x8x8, on {device}")
    bp.fit(model, loss_fn, optimizer, X_train, y_train, epochs=args.epochs, batch_size=32, seed=args.seed,
           validation_data=(X_test, y_test), metrics=["accuracy"],
           callbacks=[PrintEvery(max(1, args.epochs // 5), args.epochs)], progress=False)
    test = bp.evaluate(model, loss_fn, X_test, y_test, metrics=["accuracy"])
    print(f"test accuracy {test['accuracy']:.4f}\n")
    confusion = print_confusion(model, X_test, y_test)
    save_figure(lambda path: bp.viz.confusion_matrix(model, X_test, y_test, path=path), args.out,
                "cnn_digits_confusion.png")
    save_figure(lambda path: bp.viz.filters(model, path=path), args.out, "cnn_digits_filters.png")
    save_figure(lambda path: bp.viz.feature_maps(model, X_test[0], layer=2, path=path), args.out,
                "cnn_digits_feature_maps.png")
    return {"loss": test["loss"], "accuracy": test["accuracy"], "confusion": confusion}


if __name__ == "__main__":
    main()
