"""Handwritten digits
==================

A real data set, ten classes, softmax cross-entropy.

.. code-block:: bash

    python examples/digits.py [--device cpu|cuda|torch|...] [--epochs 30] [--seed 0] [--out DIR]

scikit-learn's bundled 8x8 digits (1797 images; pip install -e ".[data]"), an 80/20 split,
a [64, 64, 10] ReLU network, Adam lr 1e-3, batches of 32. Prints the test accuracy and the
confusion matrix; writes digits_confusion.png and digits_curves.png.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


import bpcore as bp  # noqa: E402
from _common import print_confusion, PrintEvery, load_digits_or_exit, parser, resolve_device, save_figure  # noqa: E402


def main(argv=None) -> dict:
    args = parser(__doc__.splitlines()[0], epochs=30, draws=True).parse_args(argv)
    device = resolve_device(args.device)
    X, y = load_digits_or_exit()
    X_train, X_test, y_train, y_test = bp.data.train_test_split(X, y, test_size=0.2, seed=args.seed)
    model = bp.mlp([64, 64, 10], activation="relu", seed=args.seed).to(device)
    loss_fn = bp.SoftmaxCrossEntropyLoss()
    optimizer = bp.optim.Adam(model.parameters(), lr=1e-3)
    print(f"digits: {len(X_train)} training and {len(X_test)} test images; [64, 64, 10] ReLU on {device}")
    hist = bp.fit(model, loss_fn, optimizer, X_train, y_train, epochs=args.epochs, batch_size=32, seed=args.seed,
                  validation_data=(X_test, y_test), metrics=["accuracy"],
                  callbacks=[PrintEvery(max(1, args.epochs // 5), args.epochs)], progress=False)
    test = bp.evaluate(model, loss_fn, X_test, y_test, metrics=["accuracy"])
    print(f"test accuracy {test['accuracy']:.4f}\n")
    confusion = print_confusion(model, X_test, y_test)
    save_figure(lambda path: bp.viz.confusion_matrix(model, X_test, y_test, path=path), args.out,
                "digits_confusion.png")
    save_figure(lambda path: bp.viz.curves(hist, path=path), args.out, "digits_curves.png")
    return {"loss": test["loss"], "accuracy": test["accuracy"], "confusion": confusion}


if __name__ == "__main__":
    main()
