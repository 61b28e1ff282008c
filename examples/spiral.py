"""Two spirals: a 2-16-8-1 tanh network reaches 100% training accuracy.

    python examples/spiral.py [--device cpu|cuda|torch|...] [--epochs 1000] [--seed 0]

The lesson's experiment: 400 points on two interleaved spirals (noise 0.3,
standardized), a 2-16-8-1 tanh network with N(0, 1/n_in) weights, binary
cross-entropy on the output logit, full-batch gradient descent with lr 0.5.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bpcore as bp  # noqa: E402
from _common import parser, resolve_device, train_full_batch  # noqa: E402


def main(argv=None) -> dict:
    args = parser(__doc__.splitlines()[0], epochs=1000).parse_args(argv)
    device = resolve_device(args.device)
    X, y = bp.data.spiral(400, noise=0.3, seed=args.seed)
    model = bp.mlp([2, 16, 8, 1], activation="tanh", seed=args.seed).to(device)
    loss_fn = bp.BCEWithLogitsLoss()
    optimizer = bp.optim.SGD(model.parameters(), lr=0.5)
    print(f"two spirals, {len(X)} points, 2-16-8-1 tanh on {device}")

    def accuracy(logits):
        return float(((device.to_numpy(logits) > 0) == (y > 0.5)).mean())

    def report(epoch, loss, out):
        print(f"epoch {epoch:>5}  loss {loss:.4f}  accuracy {accuracy(out):.4f}")

    loss, logits = train_full_batch(model, loss_fn, optimizer, X, y, args.epochs,
                                    max(1, args.epochs // 10), report)
    final_accuracy = accuracy(logits)
    print(f"final loss {loss:.4f}, training accuracy {final_accuracy:.4f}")
    return {"loss": loss, "accuracy": final_accuracy}


if __name__ == "__main__":
    main()
