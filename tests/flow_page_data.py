"""Synthetic data for the Neural Flow page tests: a small tanh net trained by plain gradient descent
in NumPy, in the shape FlowRecorder.to_dict() produces, so the page tests do not depend on the recorder."""
from __future__ import annotations

import numpy as np


def _sig(x, digits: int = 4):
    """Nested lists of floats rounded to ``digits`` significant digits (as the recorder stores them)."""
    if isinstance(x, np.ndarray):
        x = x.tolist()
    if isinstance(x, list):
        return [_sig(v, digits) for v in x]
    return float(f"{float(x):.{digits}g}")


def make_data(sizes=(2, 3, 1), snapshots: int = 3, probes: int = 2, every: int = 5, seed: int = 0,
              lr: float = 0.1) -> dict:
    """A tanh net (linear output, mean squared error) trained by gradient descent on its probes.

    Returns the dict FlowRecorder.to_dict() produces: real forward values, dL/dz and dL/dW.
    """
    rng = np.random.default_rng(seed)
    sizes = list(sizes)
    L = len(sizes) - 1
    X = rng.uniform(-1, 1, size=(probes, sizes[0]))
    Y = np.tanh(1.5 * X.sum(axis=1, keepdims=True) * X[:, :1]) * np.ones((1, sizes[-1]))
    Ws = [rng.normal(0, 1 / np.sqrt(n0), size=(n0, n1)) for n0, n1 in zip(sizes[:-1], sizes[1:])]
    bs = [np.zeros(n1) for n1 in sizes[1:]]

    def forward_backward():
        acts = [X]
        for k in range(L):
            z = acts[-1] @ Ws[k] + bs[k]
            acts.append(np.tanh(z) if k < L - 1 else z)
        loss = float(np.mean((acts[-1] - Y) ** 2))
        g = 2 * (acts[-1] - Y) / Y.size
        grads, dWs = [None] * L, [None] * L
        for k in reversed(range(L)):
            grads[k] = g
            dWs[k] = acts[k].T @ g
            g = (g @ Ws[k].T) * (1 - acts[k] ** 2)
        return acts, grads, dWs, loss

    snaps = []
    for k in range(snapshots):
        acts, grads, dWs, loss = forward_backward()
        snaps.append({
            "epoch": k * every, "loss": None if k == 0 else _sig(loss),
            "accuracy": None if k == 0 else _sig(min(1.0, 0.5 + 0.1 * k)),
            "W": _sig(Ws), "b": _sig(bs),
            "act": [[_sig(a[p]) for a in acts] for p in range(probes)],
            "grad": [[_sig(g[p]) for g in grads] for p in range(probes)],
            "dW": _sig(dWs),
        })
        for _ in range(every):
            acts, grads, dWs, _loss = forward_backward()
            for layer in range(L):
                Ws[layer] -= lr * dWs[layer]
                bs[layer] -= lr * grads[layer].sum(axis=0)
    names = ["input"] + [f"Linear({a}, {b})" + (" + Tanh" if k < L - 1 else "")
                         for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))]
    return {"title": "Neural Flow", "sizes": sizes, "column_names": names, "probes": _sig(X),
            "probe_labels": [str(_sig(y[0])) for y in Y], "every": every, "thinned": False,
            "max_snapshots": 200, "snapshots": snaps}
