"""Export to ONNX
==============

Train the two-spirals net, export it to ONNX, and run the file with onnxruntime alone.

.. code-block:: bash

    python examples/export_onnx.py [--device cpu|cuda|torch|...] [--epochs 1000] [--seed 0] [--out DIR]

Needs the onnx extra: pip install -e ".[onnx]" (ndonnx, onnx, onnxruntime).

The 2-16-8-1 tanh network of examples/spiral.py is trained on --device, then
``bp.onnx.export`` runs its own forward on ndonnx arrays, which records the ONNX
graph (no converter per layer), checks it with onnx.checker and onnxruntime, and
writes DIR/spiral.onnx. The lines in DEPLOY then run that file in a fresh Python
process that imports only numpy and onnxruntime, as a server or an app would, and
both outputs are printed side by side.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import backends  # noqa: E402
import bpcore as bp  # noqa: E402
from _common import PrintEvery, parser, resolve_device  # noqa: E402

# All a deployment needs: numpy and onnxruntime (no bpcore, no ndonnx). argv: the .onnx file, the points.
DEPLOY = """
import json, sys
import numpy as np, onnxruntime as ort
session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
points = np.array(json.loads(sys.argv[2]), dtype=np.float32)
logits = session.run(["logit"], {"point": points})[0]
print(json.dumps({"logits": logits.tolist(), "bpcore_loaded": "bpcore" in sys.modules}))
"""


def main(argv=None) -> dict:
    args = parser(__doc__.splitlines()[0], epochs=1000, draws=True, figures="spiral.onnx").parse_args(argv)
    device = resolve_device(args.device)
    X, y = bp.data.spiral(400, noise=0.3, seed=args.seed)
    model = bp.mlp([2, 16, 8, 1], activation="tanh", seed=args.seed).to(device)
    optimizer = bp.optim.SGD(model.parameters(), lr=0.5)
    print(f"two spirals, {len(X)} points, 2-16-8-1 tanh on {device}; full-batch gradient descent, lr 0.5")
    bp.fit(model, bp.BCEWithLogitsLoss(), optimizer, X, y, epochs=args.epochs, batch_size=len(X), shuffle=False,
           metrics=["accuracy"], callbacks=[PrintEvery(max(1, args.epochs // 5), args.epochs)], progress=False)

    path = os.path.join(args.out, "spiral.onnx")
    try:
        report = bp.onnx.export(model, X[:8], path, input_names=("point",), output_names=("logit",))
    except backends.BackendUnavailableError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"wrote {report}")

    points = X[:5]
    done = subprocess.run([sys.executable, "-I", "-c", DEPLOY, path, json.dumps(points.tolist())],
                          capture_output=True, text=True, check=True)
    deployed = json.loads(done.stdout)
    onnx_logits = np.array(deployed["logits"], dtype=np.float32)
    bpcore_logits = bp.predict(model, points)            # the trained model, in eval mode
    print(f"a fresh process with only numpy and onnxruntime (bpcore imported there: {deployed['bpcore_loaded']}):")
    print("  point                 bpcore logit   onnxruntime logit")
    for point, ours, theirs in zip(points, bpcore_logits[:, 0], onnx_logits[:, 0]):
        print(f"  ({point[0]:+.3f}, {point[1]:+.3f})    {ours:+12.6f}   {theirs:+12.6f}")
    difference = float(np.max(np.abs(onnx_logits - bpcore_logits)))
    print(f"largest difference {difference:.3g}")
    return {"report": report, "difference": difference, "bpcore_loaded": deployed["bpcore_loaded"]}


if __name__ == "__main__":
    main()
