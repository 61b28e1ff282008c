"""XOR
===

A 2-4-1 sigmoid network learns the one function a single neuron cannot.

.. code-block:: bash

    python examples/xor.py [--device cpu|cuda|torch|...] [--epochs 5000] [--seed 0]

Full-batch gradient descent (lr 0.5) on the four XOR points, binary
cross-entropy on the output logit; prints the four predictions, which end
near 0 1 1 0.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import bpcore as bp  # noqa: E402
from _common import parser, resolve_device, train_full_batch  # noqa: E402


def main(argv=None) -> dict:
    args = parser(__doc__.splitlines()[0], epochs=5000).parse_args(argv)
    device = resolve_device(args.device)
    X, y = bp.data.xor()
    model = bp.mlp([2, 4, 1], activation="sigmoid", seed=args.seed).to(device)
    loss_fn = bp.BCEWithLogitsLoss()
    optimizer = bp.optim.SGD(model.parameters(), lr=0.5)
    print(f"XOR on {device}:")
    print(model)

    def report(epoch, loss, out):
        print(f"epoch {epoch:>5}  loss {loss:.4f}")

    loss, logits = train_full_batch(model, loss_fn, optimizer, X, y, args.epochs,
                                    max(1, args.epochs // 5), report)
    probabilities = 1.0 / (1.0 + np.exp(-device.to_numpy(logits)[:, 0]))   # sigmoid of the logits
    print("\n x1 x2 | target | prediction")
    for (x1, x2), target, p in zip(X, y[:, 0], probabilities):
        print(f"  {x1:.0f}  {x2:.0f} |   {target:.0f}    | {p:.3f}")
    correct = int(((probabilities > 0.5) == (y[:, 0] > 0.5)).sum())
    print(f"\n{correct}/4 correct, final loss {loss:.4f}")
    return {"loss": loss, "predictions": probabilities.tolist(), "correct": correct}


if __name__ == "__main__":
    main()
