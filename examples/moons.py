"""Two moons
=========

A [2, 8, 8, 1] ReLU network with He init, checked on held-out points.

.. code-block:: bash

    python examples/moons.py [--device cpu|cuda|torch|...] [--epochs 2000] [--seed 0] [--out DIR]

The lesson's experiment: 400 points, noise 0.15, an 80/20 train/test split, He-initialized
ReLU layers, binary cross-entropy, full-batch gradient descent with lr 0.5 for 2000 epochs.
Prints the test accuracy; writes moons_boundary.png.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bpcore as bp  # noqa: E402
from _common import PrintEvery, parser, resolve_device, save_figure  # noqa: E402


def main(argv=None) -> dict:
    args = parser(__doc__.splitlines()[0], epochs=2000, draws=True).parse_args(argv)
    device = resolve_device(args.device)
    X, y = bp.data.moons(400, noise=0.15, seed=args.seed)
    X_train, X_test, y_train, y_test = bp.data.train_test_split(X, y, test_size=0.2, seed=args.seed)
    model = bp.mlp([2, 8, 8, 1], activation="relu", init="he", seed=args.seed).to(device)
    loss_fn = bp.BCEWithLogitsLoss()
    optimizer = bp.optim.SGD(model.parameters(), lr=0.5)
    print(f"two moons: {len(X_train)} training and {len(X_test)} test points; [2, 8, 8, 1] ReLU on {device}")
    bp.fit(model, loss_fn, optimizer, X_train, y_train, epochs=args.epochs, batch_size=len(X_train),
           shuffle=False, metrics=["accuracy"], callbacks=[PrintEvery(args.epochs // 5, args.epochs)],
           progress=False)
    test = bp.evaluate(model, loss_fn, X_test, y_test, metrics=["accuracy"])
    print(f"test loss {test['loss']:.4f}, test accuracy {test['accuracy']:.4f}")
    save_figure(lambda path: bp.viz.decision_boundary(
        model, X_test, y_test, title=f"two moons, test points: accuracy {test['accuracy']:.3f}", path=path),
        args.out, "moons_boundary.png")
    return {"loss": test["loss"], "accuracy": test["accuracy"]}


if __name__ == "__main__":
    main()
