"""Deep networks
=============

The same 20-layer, 64-wide net on digits, trained four ways.

.. code-block:: bash

    python examples/deep_nets.py [--device cpu|cuda|torch|...] [--epochs 30] [--seed 0] [--out DIR]

1. sigmoid, plain (N(0, 1/n_in) weights): each sigmoid multiplies the backward signal by at
   most 0.25, so the first layers' gradients vanish;
2. ReLU with He init (N(0, 2/n_in)): the slope is 1 where active, the variance is kept;
3. ReLU + He + BatchNorm1d: every layer's input is renormalized;
4. residual: y = x + block(x) gives the gradient an identity path around every block.

Prints each net's bp.diagnose report at initialization (the table for the sigmoid net, the
warnings for all), each weight's gradient norm after the first epoch (first and last layer side by side)
and the final test accuracy, and draws the four gradient profiles side by side (deep_nets_gradients.png,
with bp.viz when matplotlib is there). Needs scikit-learn for the digits: pip install -e ".[data]".
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bpcore as bp  # noqa: E402
from _common import load_digits_or_exit, parser, resolve_device, save_figure  # noqa: E402

DEPTH, WIDTH = 20, 64          # 20 Linear layers: 64 -> 64 (x19) -> 10


def build(kind: str, seed: int) -> bp.Sequential:
    """The 20-Linear-layer network of one kind; the last Linear maps 64 -> 10 classes."""
    rng = bp.init.host_rng(seed)
    layers = []
    for _ in range(DEPTH - 1):
        if kind == "sigmoid":
            layers += [bp.Linear(WIDTH, WIDTH, init="lecun", seed=rng), bp.Sigmoid()]
        elif kind == "relu_he":
            layers += [bp.Linear(WIDTH, WIDTH, init="he", seed=rng), bp.ReLU()]
        elif kind == "relu_he_batchnorm":
            layers += [bp.Linear(WIDTH, WIDTH, init="he", seed=rng), bp.BatchNorm1d(WIDTH), bp.ReLU()]
        elif kind == "residual":
            # a small last scale keeps the sum of 19 blocks from growing at the start
            block = bp.Sequential(bp.Linear(WIDTH, WIDTH, init="he", seed=rng), bp.ReLU())
            block.layers[0].W.data = block.layers[0].W.data * 0.1
            layers.append(bp.Residual(block))
        else:
            raise ValueError(f"unknown kind {kind!r}")
    layers.append(bp.Linear(WIDTH, 10, init="lecun", seed=rng))
    return bp.Sequential(*layers)


KINDS = ["sigmoid", "relu_he", "relu_he_batchnorm", "residual"]


def main(argv=None) -> dict:
    args = parser(__doc__.splitlines()[0], epochs=30, draws=True).parse_args(argv)
    device = resolve_device(args.device)
    X, y = load_digits_or_exit()
    X_train, X_test, y_train, y_test = bp.data.train_test_split(X, y, test_size=0.2, seed=args.seed)
    print(f"digits: {len(X_train)} training and {len(X_test)} test images; {DEPTH} Linear layers of width "
          f"{WIDTH} on {device}; Adam lr 1e-3, batch 32, {args.epochs} epochs")
    results, histories = {}, {}
    for kind in KINDS:
        model = build(kind, args.seed).to(device)
        loss_fn = bp.SoftmaxCrossEntropyLoss()
        diagnosis = bp.diagnose(model, loss_fn, X_train, y_train)
        if kind == "sigmoid":
            print(f"\nbp.diagnose of the {kind} net at initialization:\n{diagnosis}")
        else:
            print(f"\nbp.diagnose of the {kind} net at initialization: "
                  + ("; ".join(diagnosis.warnings) or "no warnings"))
        opt = bp.optim.Adam(model.parameters(), lr=1e-3)
        hist = bp.fit(model, loss_fn, opt, X_train, y_train, epochs=args.epochs, batch_size=32, seed=args.seed,
                      metrics=["accuracy"], progress=False)
        weights = [name for name in hist.grad_norms if name.endswith(".W")]
        first_epoch = [hist.grad_norms[name][0] for name in weights]
        test = bp.evaluate(model, loss_fn, X_test, y_test, metrics=["accuracy"])
        results[kind] = {"grad_norms": first_epoch, "test_accuracy": test["accuracy"],
                         "warnings": diagnosis.warnings,
                         "first_over_last": first_epoch[0] / first_epoch[-1]}
        histories[kind] = hist
    print("\ngradient norm |dL/dW| per layer after the first epoch")
    print(f"{'layer':>10}" + "".join(f"{kind:>20}" for kind in KINDS))
    for i in range(DEPTH):
        print(f"{i + 1:>10}" + "".join(f"{results[kind]['grad_norms'][i]:>20.3e}" for kind in KINDS))
    print(f"{'first/last':>10}" + "".join(f"{results[kind]['first_over_last']:>20.3e}" for kind in KINDS))
    print("\nfinal test accuracy")
    for kind in KINDS:
        print(f"  {kind:<20} {results[kind]['test_accuracy']:.4f}")
    print(f"\nsigmoid: the first layer's gradient is {results['sigmoid']['first_over_last']:.1e} times the last "
          f"layer's; each of the {DEPTH - 1} sigmoids scales the backward signal by at most 0.25 "
          f"(0.25^{DEPTH - 1} = {0.25 ** (DEPTH - 1):.1e}), times the weights' own factors")
    save_figure(lambda path: bp.viz.gradient_flow(histories, epoch=0, path=path,
                                                  title="|dL/dW| per layer after the first epoch (log scale)"),
                args.out, "deep_nets_gradients.png")
    return results


if __name__ == "__main__":
    main()
