"""Two spirals
===========

A 2-16-8-1 tanh network reaches 100% training accuracy.

.. code-block:: bash

    python examples/spiral.py [--device cpu|cuda|torch|...] [--epochs 1000] [--seed 0] [--out DIR]

The lesson's experiment: 400 points on two interleaved spirals (noise 0.3,
standardized), a 2-16-8-1 tanh network with N(0, 1/n_in) weights, binary
cross-entropy on the output logit, full-batch gradient descent with lr 0.5.
Writes spiral_boundary.png and spiral_curves.png to --out.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bpcore as bp  # noqa: E402
from _common import PrintEvery, parser, resolve_device, save_figure  # noqa: E402


def main(argv=None) -> dict:
    args = parser(__doc__.splitlines()[0], epochs=1000, draws=True).parse_args(argv)
    device = resolve_device(args.device)
    X, y = bp.data.spiral(400, noise=0.3, seed=args.seed)
    model = bp.mlp([2, 16, 8, 1], activation="tanh", seed=args.seed).to(device)
    loss_fn = bp.BCEWithLogitsLoss()
    optimizer = bp.optim.SGD(model.parameters(), lr=0.5)
    print(f"two spirals, {len(X)} points, 2-16-8-1 tanh on {device}; full-batch gradient descent, lr 0.5")
    # one batch of all 400 points, in order: plain gradient descent, as in the lesson
    hist = bp.fit(model, loss_fn, optimizer, X, y, epochs=args.epochs, batch_size=len(X), shuffle=False,
                  metrics=["accuracy"], callbacks=[PrintEvery(args.epochs // 10, args.epochs)], progress=False)
    final = bp.evaluate(model, loss_fn, X, y, metrics=["accuracy"])
    print(f"final loss {final['loss']:.4f}, training accuracy {final['accuracy']:.4f}")
    save_figure(lambda path: bp.viz.decision_boundary(
        model, X, y, title=f"two spirals: training accuracy {final['accuracy']:.3f}", path=path),
        args.out, "spiral_boundary.png")
    save_figure(lambda path: bp.viz.curves(hist, path=path), args.out, "spiral_curves.png")
    return {"loss": final["loss"], "accuracy": final["accuracy"], "history": hist}


if __name__ == "__main__":
    main()
