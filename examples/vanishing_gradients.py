"""Vanishing gradients
===================

A deep sigmoid net [10, 8, 8, 8, 8, 8, 1] and three cures, side by side.

.. code-block:: bash

    python examples/vanishing_gradients.py [--device cpu|cuda|torch|...] [--seed 0] [--out DIR]

One forward and backward pass of 256 random samples (binary labels from a linear rule)
through four versions of the same net, at initialization:

- sigmoid: plain sigmoid layers, N(0, 1/n_in) weights;
- relu_he: ReLU with He init, N(0, 2/n_in): the slope is 1 where a unit is active;
- batchnorm: sigmoid with BatchNorm1d before each activation;
- residual: sigmoid layers wrapped as y = x + sigmoid(Linear(x)) (after the first layer).

Prints each layer's weight-gradient norm, its ratio to the last layer's, and for the
sigmoid net the bound 0.25^k from the sigmoid's maximum slope after k sigmoids; which layers
vanish by bpcore's one definition (a gradient below VANISHING_RATIO = 1e-2 of the last
layer's, bpcore.training.health.is_vanishing), then each net's bp.diagnose report (the table
and its warnings), which flags the same layers; writes a bar chart with a log scale
(vanishing_gradients.png).
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import bpcore as bp  # noqa: E402
from _common import parser, resolve_device, save_figure  # noqa: E402
from bpcore.training.health import VANISHING_RATIO, is_vanishing  # noqa: E402

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


def weight_gradient_norms(model, X, y) -> dict:
    """{name: |dL/dW|} of every weight matrix, from the input side, after one forward and backward."""
    loss_fn = bp.BCEWithLogitsLoss()
    model.zero_grad()
    loss_fn.forward(model(X), y)
    model.backward(loss_fn.backward())
    return {name: float(np.linalg.norm(p.backend.to_numpy(p.grad)))
            for name, p in model.named_parameters() if name.endswith(".W")}


def vanishing_layers(norms: dict) -> list:
    """The weights (not the last) whose gradient is below VANISHING_RATIO of the last one's."""
    names, last = list(norms), list(norms.values())[-1]
    return [name for name in names[:-1] if is_vanishing(norms[name] / last)]


def main(argv=None) -> dict:
    args = parser(__doc__.splitlines()[0], epochs=None, draws=True).parse_args(argv)
    device = resolve_device(args.device)
    rng = np.random.default_rng(args.seed)
    X = rng.standard_normal((256, SIZES[0])).astype(np.float32)
    y = (X @ rng.standard_normal(SIZES[0]) > 0).astype(np.float32)[:, None]
    models = {kind: build(kind, args.seed).to(device) for kind in KINDS}
    named = {kind: weight_gradient_norms(model, X, y) for kind, model in models.items()}
    norms = {kind: list(values.values()) for kind, values in named.items()}
    depth = len(SIZES) - 1
    print(f"network {SIZES} on {device}: |dL/dW| per layer at initialization (layer 1 is next to the input)\n")
    print(f"{'layer':>5}" + "".join(f"{kind:>13}" for kind in KINDS) + f"{'sigmoid/last':>15}{'0.25^k':>10}")
    for layer in range(depth):
        sigmoids_after = depth - 1 - layer            # sigmoids between this layer's output and the loss
        ratio = norms["sigmoid"][layer] / norms["sigmoid"][-1]
        print(f"{layer + 1:>5}" + "".join(f"{norms[kind][layer]:>13.3e}" for kind in KINDS)
              + f"{ratio:>15.3e}{0.25 ** sigmoids_after:>10.1e}")
    decay = norms["sigmoid"][0] / norms["sigmoid"][-1]
    vanishing = {kind: vanishing_layers(named[kind]) for kind in KINDS}
    print(f"\nbpcore calls a gradient vanishing when it is below {VANISHING_RATIO:g} of the last layer's "
          f"(VANISHING_RATIO): a layer that learns 100x slower than the last.")
    print(f"sigmoid net: the first layer's gradient is {decay:.2e} of the last layer's: "
          f"{'vanishing' if is_vanishing(decay) else 'not vanishing'}. Each sigmoid passes back at most 0.25 "
          f"of the signal (its slope peaks at 0.25 at z = 0), so after {depth - 1} sigmoids the factor from the "
          f"activations alone is at most 0.25^{depth - 1} = {0.25 ** (depth - 1):.2e}; the weights contribute "
          f"the rest.")
    for kind in KINDS:
        verdict = f"vanishing at {', '.join(vanishing[kind])}" if vanishing[kind] else "no layer vanishes"
        print(f"{kind:>10}: first/last = {norms[kind][0] / norms[kind][-1]:.2e}; {verdict}")
    diagnoses = {}
    for kind, model in models.items():
        diagnoses[kind] = bp.diagnose(model, bp.BCEWithLogitsLoss(), X, y)
        print(f"\nbp.diagnose of the {kind} net:\n{diagnoses[kind]}")
        if diagnoses[kind].vanishing != vanishing[kind]:       # one definition: they must agree
            raise AssertionError(f"{kind}: this script finds {vanishing[kind]} vanishing, bp.diagnose "
                                 f"{diagnoses[kind].vanishing}")
    save_figure(lambda path: bp.viz.gradient_flow(models, path=path,
                                                  title="|dL/dW| per layer at initialization (log scale)"),
                args.out, "vanishing_gradients.png")
    return {"norms": norms, "decay": decay, "diagnoses": diagnoses, "vanishing": vanishing}


if __name__ == "__main__":
    main()
