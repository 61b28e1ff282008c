"""Neural Flow
===========

Watch the forward values and backward gradients of real training, in a browser.

.. code-block:: bash

    python examples/neural_flow.py [--dataset xor|spiral|moons] [--epochs N] [--out DIR]
                                   [--device cpu|cuda|torch|...] [--seed 0]

Each dataset has its own default length, long enough for a trained net: spiral 300 epochs,
moons 300, xor 5000 (four points and full-batch gradient descent learn slowly at first).

Trains a small network and records it with bp.FlowRecorder every few epochs, then writes
DIR/flow.html: one self-contained page (no network) that draws the network, runs the
forward pass as green pulses and the backward pass as red ones, and moves through the
recorded epochs with a slider. Open it from disk in any browser.
"""
# sphinx_gallery_thumbnail_path = '../examples/figures/neural_flow.png'
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bpcore as bp  # noqa: E402
from _common import parser, positive_int, resolve_device  # noqa: E402

SETUPS = {
    # data, sizes, activation, learning rate, batch size (None: full batch), default epochs
    "xor": (lambda seed: bp.data.xor(), [2, 4, 1], "sigmoid", 0.5, None, 5000),
    "spiral": (lambda seed: bp.data.spiral(400, noise=0.3, seed=seed), [2, 16, 8, 1], "tanh", 0.5, None, 300),
    "moons": (lambda seed: bp.data.moons(400, noise=0.15, seed=seed), [2, 8, 8, 1], "relu", 0.5, None, 300),
}


def main(argv=None) -> dict:
    p = parser(__doc__.splitlines()[0], epochs=0, draws=True, figures="the page flow.html")
    p.set_defaults(epochs=None)
    p.add_argument("--dataset", choices=sorted(SETUPS), default="spiral", help="what to learn (default: spiral)")
    p.add_argument("--every", type=positive_int, default=None, metavar="N",
                   help="record every N epochs (default: epochs / 60)")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    make_data, sizes, activation, lr, batch, default_epochs = SETUPS[args.dataset]
    args.epochs = args.epochs or default_epochs
    X, y = make_data(args.seed)
    model = bp.mlp(sizes, activation=activation, seed=args.seed).to(device)
    every = args.every or max(1, args.epochs // 60)
    recorder = bp.FlowRecorder(X[:4], y[:4], every=every)
    hist = bp.fit(model, bp.BCEWithLogitsLoss(), bp.optim.SGD(model.parameters(), lr=lr), X, y,
                  epochs=args.epochs, batch_size=batch or len(X), shuffle=False, metrics=["accuracy"],
                  callbacks=[recorder], progress=False)
    path = recorder.save_html(os.path.join(args.out, "flow.html"),
                              title=f"Neural Flow: {args.dataset}, {sizes} {activation}")
    print(f"{args.dataset}: {sizes} {activation} on {device}, {args.epochs} epochs: loss {hist['loss'][-1]:.4f}, "
          f"accuracy {hist['accuracy'][-1]:.4f}; {len(recorder.snapshots)} snapshots")
    print(f"wrote {path} ({os.path.getsize(path) / 1e3:.0f} kB): open it in a browser")
    return {"path": path, "snapshots": len(recorder.snapshots), "loss": hist["loss"][-1]}


if __name__ == "__main__":
    main()
