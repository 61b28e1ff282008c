"""Gradient check
==============

Hand-written backprop against central differences, and a planted bug caught.

.. code-block:: bash

    python examples/gradient_check.py [--device cpu|cuda|torch|...] [--seed 7]

The lesson's [4, 6, 3, 1] network (ReLU hidden layers, a sigmoid output fused into binary
cross-entropy) on 8 random samples: every entry of every parameter and of the input is
compared in float64. Then a ReLU whose backward forgets its mask (it passes every gradient
through, as if ReLU were the identity) replaces the first activation, and the check fails
exactly at the layers below it.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import bpcore as bp  # noqa: E402
from _common import parser, resolve_device  # noqa: E402


class ReLUWithoutMask(bp.ReLU):
    """A planted bug: dL/dx = dL/dy everywhere, the derivative of the identity, not of ReLU."""

    def backward(self, grad_out):
        y = self.saved("y")                  # ReLU's forward keeps its output y
        return self.check_grad_out(grad_out, y.shape)


def main(argv=None) -> dict:
    args = parser(__doc__.splitlines()[0], epochs=None, seed=7).parse_args(argv)
    device = resolve_device(args.device)
    rng = np.random.default_rng(args.seed)
    X = rng.normal(0, 1, (8, 4))
    y = rng.integers(0, 2, (8, 1))
    model = bp.mlp([4, 6, 3, 1], activation="relu", seed=42).to(device)
    loss_fn = bp.BCEWithLogitsLoss()
    correct = bp.gradcheck(model, loss_fn, X, y)
    print("The network as written:\n")
    print(correct)
    broken = bp.Sequential(model.layers[0], ReLUWithoutMask(), *model.layers[2:])
    planted = bp.gradcheck(broken, loss_fn, X, y)
    print("\nWith a planted bug (the first ReLU's backward forgets its mask):\n")
    print(planted)
    failing = [row.name for row in planted.rows if not row.passed]
    print(f"\nthe check flags {', '.join(failing)}: the layer below the bug and the input, while the "
          f"layers above it still pass")
    return {"correct": correct, "planted": planted}


if __name__ == "__main__":
    main()
