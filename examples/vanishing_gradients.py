"""Vanishing gradients: a deep sigmoid net [10, 8, 8, 8, 8, 8, 1] and three cures, side by side.

    python examples/vanishing_gradients.py [--device cpu|cuda|torch|...] [--seed 0] [--out DIR]

One forward and backward pass of 256 random samples (binary labels from a linear rule)
through four versions of the same net, at initialization:
  sigmoid     plain sigmoid layers, N(0, 1/n_in) weights;
  relu_he     ReLU with He init, N(0, 2/n_in): the slope is 1 where a unit is active;
  batchnorm   sigmoid with BatchNorm1d before each activation;
  residual    sigmoid layers wrapped as y = x + sigmoid(Linear(x)) (after the first layer).
Prints each layer's weight-gradient norm, its ratio to the last layer's, and for the
sigmoid net the bound 0.25^k from the sigmoid's maximum slope after k sigmoids, then each
net's bp.diagnose report (the table and its warnings); writes a bar chart with a log scale
(vanishing_gradients.png).
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import bpcore as bp  # noqa: E402
from _common import parser, resolve_device, save_figure  # noqa: E402

SIZES = [10, 8, 8, 8, 8, 8, 1]


def build(kind: str, seed: int) -> bp.Sequential:
    rng = bp.init.host_rng(seed)
    hidden = list(zip(SIZES[:-2], SIZES[1:-1]))
    layers = []
    for i, (n_in, n_out) in enumerate(hidden):
        if kind == "relu_he":
            layers += [bp.Linear(n_in, n_out, init="he", seed=rng), bp.ReLU()]
        elif kind == "batchnorm":
            layers += [bp.Linear(n_in, n_out, init="lecun", seed=rng), bp.BatchNorm1d(n_out), bp.Sigmoid()]
        elif kind == "residual" and i > 0:
            layers.append(bp.Residual(bp.Sequential(bp.Linear(n_in, n_out, init="lecun", seed=rng), bp.Sigmoid())))
        else:                                     # "sigmoid", and the residual net's first layer
            layers += [bp.Linear(n_in, n_out, init="lecun", seed=rng), bp.Sigmoid()]
    layers.append(bp.Linear(SIZES[-2], SIZES[-1], init="lecun", seed=rng))
    return bp.Sequential(*layers)


KINDS = ["sigmoid", "relu_he", "batchnorm", "residual"]


def weight_gradient_norms(model, X, y) -> list:
    """|dL/dW| of every weight matrix, from the input side, after one forward and backward."""
    loss_fn = bp.BCEWithLogitsLoss()
    model.zero_grad()
    loss_fn.forward(model(X), y)
    model.backward(loss_fn.backward())
    return [float(np.linalg.norm(p.backend.to_numpy(p.grad)))
            for name, p in model.named_parameters() if name.endswith(".W")]


def main(argv=None) -> dict:
    args = parser(__doc__.splitlines()[0], epochs=None, draws=True).parse_args(argv)
    device = resolve_device(args.device)
    rng = np.random.default_rng(args.seed)
    X = rng.standard_normal((256, SIZES[0])).astype(np.float32)
    y = (X @ rng.standard_normal(SIZES[0]) > 0).astype(np.float32)[:, None]
    models = {kind: build(kind, args.seed).to(device) for kind in KINDS}
    norms = {kind: weight_gradient_norms(model, X, y) for kind, model in models.items()}
    depth = len(SIZES) - 1
    print(f"network {SIZES} on {device}: |dL/dW| per layer at initialization (layer 1 is next to the input)\n")
    print(f"{'layer':>5}" + "".join(f"{kind:>13}" for kind in KINDS) + f"{'sigmoid/last':>15}{'0.25^k':>10}")
    for layer in range(depth):
        sigmoids_after = depth - 1 - layer            # sigmoids between this layer's output and the loss
        ratio = norms["sigmoid"][layer] / norms["sigmoid"][-1]
        print(f"{layer + 1:>5}" + "".join(f"{norms[kind][layer]:>13.3e}" for kind in KINDS)
              + f"{ratio:>15.3e}{0.25 ** sigmoids_after:>10.1e}")
    decay = norms["sigmoid"][0] / norms["sigmoid"][-1]
    print(f"\nsigmoid net: the first layer's gradient is {decay:.2e} of the last layer's. Each sigmoid "
          f"passes back at most 0.25 of the signal (its slope peaks at 0.25 at z = 0), so after "
          f"{depth - 1} sigmoids the factor from the activations alone is at most 0.25^{depth - 1} = "
          f"{0.25 ** (depth - 1):.2e}; the weights contribute the rest.")
    for kind in KINDS[1:]:
        print(f"{kind:>10}: first/last = {norms[kind][0] / norms[kind][-1]:.2e}")
    diagnoses = {}
    for kind, model in models.items():
        diagnoses[kind] = bp.diagnose(model, bp.BCEWithLogitsLoss(), X, y)
        print(f"\nbp.diagnose of the {kind} net:\n{diagnoses[kind]}")
    save_figure(lambda path: bp.viz.gradient_flow(models, path=path,
                                                  title="|dL/dW| per layer at initialization (log scale)"),
                args.out, "vanishing_gradients.png")
    return {"norms": norms, "decay": decay, "diagnoses": diagnoses}


if __name__ == "__main__":
    main()
