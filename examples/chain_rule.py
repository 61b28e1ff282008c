"""The chain rule, step by step
============================

The lesson's scalar examples, backward by hand and checked numerically.

.. code-block:: bash

    python examples/chain_rule.py [--device cpu|cuda|torch|...]

1. y = (3x + 2)^2 at x = 1: u = 3x + 2, y = u^2, dy/dx = dy/du * du/dx = 2u * 3.
2. A single neuron: z = w x + b, a = sigmoid(z), L = (a - t)^2, built from bpcore's own
   Linear, Sigmoid and MSELoss, whose backward passes give dL/dw and dL/db; the same
   numbers are then derived by hand and by central differences.
"""
from __future__ import annotations

import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import bpcore as bp  # noqa: E402
from _common import parser, resolve_device  # noqa: E402


def central_difference(f, x, eps=1e-6):
    return (f(x + eps) - f(x - eps)) / (2 * eps)


def scalar_example():
    x = 1.0
    u = 3 * x + 2                        # inner function
    y = u ** 2                           # outer function
    dy_du, du_dx = 2 * u, 3.0
    dy_dx = dy_du * du_dx
    numeric = central_difference(lambda t: (3 * t + 2) ** 2, x)
    print("1. y = (3x + 2)^2 at x = 1")
    print(f"   forward:  u = 3x + 2 = {u:g},  y = u^2 = {y:g}")
    print(f"   backward: dy/du = 2u = {dy_du:g},  du/dx = 3,  dy/dx = dy/du * du/dx = {dy_dx:g}")
    print(f"   numeric:  (y(x + h) - y(x - h)) / 2h = {numeric:.6f}")
    return dy_dx, numeric


def neuron_example(device):
    x, w, b, target = 2.0, 0.5, 0.1, 1.0
    layer = bp.Linear(1, 1).astype("float64").to(device)
    layer.W.data = device.asarray(np.array([[w]]))
    layer.b.data = device.asarray(np.array([b]))
    neuron = bp.Sequential(layer, bp.Sigmoid()).astype("float64")
    loss_fn = bp.MSELoss()
    a = neuron(np.array([[x]]))
    loss = loss_fn.forward(a, np.array([[target]]))
    neuron.backward(loss_fn.backward())
    backprop_w = float(device.to_numpy(layer.W.grad)[0, 0])
    backprop_b = float(device.to_numpy(layer.b.grad)[0])

    z = w * x + b
    s = 1 / (1 + math.exp(-z))
    dL_da, da_dz = 2 * (s - target), s * (1 - s)
    by_hand_w, by_hand_b = dL_da * da_dz * x, dL_da * da_dz * 1.0

    def loss_at(w_value, b_value):
        return (1 / (1 + math.exp(-(w_value * x + b_value))) - target) ** 2

    numeric_w = central_difference(lambda t: loss_at(t, b), w)
    numeric_b = central_difference(lambda t: loss_at(w, t), b)
    print(f"\n2. one neuron: x = {x:g}, w = {w:g}, b = {b:g}, target t = {target:g}")
    print(f"   forward:  z = w x + b = {z:.6f},  a = sigmoid(z) = {s:.6f},  L = (a - t)^2 = {float(loss):.6f}")
    print(f"   backward: dL/da = 2 (a - t) = {dL_da:.6f},  da/dz = a (1 - a) = {da_dz:.6f},  "
          f"dz/dw = x = {x:g},  dz/db = 1")
    print(f"   dL/dw: by hand {by_hand_w:.10f}   bpcore backward {backprop_w:.10f}   numeric {numeric_w:.10f}")
    print(f"   dL/db: by hand {by_hand_b:.10f}   bpcore backward {backprop_b:.10f}   numeric {numeric_b:.10f}")
    return {"by_hand": (by_hand_w, by_hand_b), "backprop": (backprop_w, backprop_b),
            "numeric": (numeric_w, numeric_b)}


def main(argv=None) -> dict:
    args = parser(__doc__.splitlines()[0], epochs=None).parse_args(argv)
    device = resolve_device(args.device)
    dy_dx, numeric = scalar_example()
    neuron = neuron_example(device)
    return {"dy_dx": dy_dx, "dy_dx_numeric": numeric, **neuron}


if __name__ == "__main__":
    main()
