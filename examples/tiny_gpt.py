"""A tiny GPT that learns to add
===============================

A tiny GPT, every backward written by hand, learns to add (or to write like a text file).

.. code-block:: bash

    python examples/tiny_gpt.py [--task adder|text] [--text PATH] [--device cpu|cuda|torch|...]
                                [--epochs N] [--seed 0] [--out DIR] [--threads 1]
                                [--embed 64] [--heads 4] [--layers 2] [--batch 32] [--lr 2e-3] [--sums N]
                                [--chars 200000] [--context 64] [--sample 300] [--temperature 0.8] [--top-k 20]

--task adder (the default) is minGPT's addition task (bp.data.adder): two 2-digit numbers in, the
3 digits of their sum out, least significant first, the loss on the answer only (ignore_index). A
2-layer GPT (bp.gpt) trains with bp.fit and AdamW on 9,500 of the 10,000 sums; then it answers the
500 held-out ones greedily, one digit at a time (bp.generate), and the script prints the exact-match
accuracy (every digit right) and the time. With --text PATH (or --task text: Python's own pydoc
topics, offline) it trains a character GPT on the text and samples from it. --out DIR writes a
picture of the attention weights of the last layer for one input (bp.viz.attention).
"""
from __future__ import annotations

import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bpcore as bp  # noqa: E402
from _common import (blas_threads, non_negative_int, parser, positive_int, read_text, resolve_device,  # noqa: E402
                     save_figure, text_windows)

IGNORE = -100          # targets the loss skips (the question's own digits)


def main(argv=None) -> dict:
    p = parser(__doc__.splitlines()[0], epochs=0, draws=True, figures="the attention picture")
    p.add_argument("--task", choices=["adder", "text"], default=None,
                   help="adder (default) or text (the default with --text)")
    p.add_argument("--text", default=None, metavar="PATH", help="a UTF-8 text file for a character GPT")
    p.add_argument("--embed", type=positive_int, default=64, metavar="E", help="embedding width (default 64)")
    p.add_argument("--heads", type=positive_int, default=4, metavar="H", help="attention heads (default 4)")
    p.add_argument("--layers", type=positive_int, default=2, metavar="L", help="transformer blocks (default 2)")
    p.add_argument("--batch", type=positive_int, default=32, metavar="N", help="batch size (default 32)")
    p.add_argument("--lr", type=float, default=None, help="AdamW learning rate (default 2e-3 adder, 1e-2 text)")
    p.add_argument("--sums", type=positive_int, default=None, metavar="N",
                   help="adder: train on the first N of the 9,500 training sums (default: all)")
    p.add_argument("--chars", type=positive_int, default=200_000, metavar="N",
                   help="text: use the first N characters (default 200000)")
    p.add_argument("--context", type=positive_int, default=64, metavar="T", help="text: context length (default 64)")
    p.add_argument("--sample", type=non_negative_int, default=300, metavar="N",
                   help="text: characters to write (default 300)")
    p.add_argument("--temperature", type=float, default=0.8, help="text: sampling temperature > 0 (default 0.8)")
    p.add_argument("--top-k", type=positive_int, default=20, metavar="K", help="text: sample among the K likeliest")
    p.add_argument("--threads", type=positive_int, default=1, metavar="N",
                   help="BLAS threads on the CPU (default 1: the matrices are small, and threads wait on "
                        "each other more than they help, most of all on a busy machine)")
    args = p.parse_args(argv)
    task = args.task or ("text" if args.text else "adder")
    if args.text and task != "text":
        p.error("--text PATH trains a character GPT: leave out --task adder")
    if args.embed % args.heads:
        p.error(f"--embed ({args.embed}) must be a multiple of --heads ({args.heads})")
    if not args.temperature > 0:
        p.error(f"--temperature must be > 0, got {args.temperature}")
    if args.lr is not None and not args.lr > 0:
        p.error(f"--lr must be > 0, got {args.lr}")
    limits = blas_threads(args.threads)
    try:
        return run_adder(args) if task == "adder" else run_text(args)
    finally:
        if limits is not None:
            limits.restore_original_limits()


class PrintLoss(bp.Callback):
    """One line per epoch: the loss and the time so far."""

    def __init__(self, start):
        self.start = start

    def on_epoch_end(self, epoch, logs=None):
        extra = f"  val_loss {logs['val_loss']:.3f}" if "val_loss" in logs else ""
        print(f"epoch {epoch + 1:>3}  loss {logs['loss']:.4f}{extra}  ({time.perf_counter() - self.start:.1f} s)")


def train(model, X, y, args, epochs, lr, validation_data=None):
    """bp.fit with AdamW (weight decay 0.1) and a cosine learning-rate schedule over the epochs."""
    optimizer = bp.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1)
    scheduler = bp.optim.CosineAnnealingLR(optimizer, T_max=epochs)
    start, start_cpu = time.perf_counter(), time.process_time()
    history = bp.fit(model, bp.SoftmaxCrossEntropyLoss(ignore_index=IGNORE), optimizer, X, y, epochs=epochs,
                     batch_size=args.batch, seed=args.seed, scheduler=scheduler, validation_data=validation_data,
                     callbacks=[PrintLoss(start)], progress=False)
    model.device.synchronize()
    seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    print(f"training: {seconds:.1f} s ({cpu:.1f} s of CPU time in this process)")
    return history, seconds


# -- the adder ----------------------------------------------------------------------------------
def number(digits) -> int:
    return int("".join(str(d) for d in digits))


def run_adder(args) -> dict:
    device = resolve_device(args.device)
    nd = 2
    (X, y), (X_test, y_test) = bp.data.adder(nd, seed=args.seed, ignore_index=IGNORE)
    X, y = X[:args.sums], y[:args.sums]
    model = bp.gpt(10, X.shape[1], args.embed, args.heads, args.layers, seed=args.seed).to(device)
    parameters = sum(math.prod(p.shape) for p in model.parameters())
    print(f"adder: {len(X):,} training sums, {len(X_test)} held out; GPT {args.layers} layers, embed "
          f"{args.embed}, {args.heads} heads: {parameters:,} parameters")
    epochs = args.epochs or 4
    history, seconds = train(model, X, y, args, epochs, args.lr or 2e-3)
    start = time.perf_counter()
    answers = bp.generate(model, X_test[:, :2 * nd], nd + 1, temperature=0)[:, 2 * nd:]
    right = np.all(answers == y_test[:, -(nd + 1):], axis=1)
    accuracy = float(right.mean())
    print(f"held-out exact match: {accuracy:.4f} ({int(right.sum())} of {len(right)} sums right), "
          f"answered in {time.perf_counter() - start:.1f} s")
    for question, answer, ok in list(zip(X_test[:, :2 * nd], answers, right))[:6]:
        a, b, c = number(question[:nd]), number(question[nd:]), number(answer[::-1])
        print(f"  {a:>2} + {b:>2} = {c:>3}   {'right' if ok else f'wrong (is {a + b})'}")
    picture = task_picture(model, X_test[0], [str(d) for d in X_test[0]], args)
    return {"accuracy": accuracy, "seconds": seconds, "history": history, "picture": picture}


# -- a character GPT ----------------------------------------------------------------------------
def run_text(args) -> dict:
    device = resolve_device(args.device)
    text = read_text(args.text)[:args.chars]
    T = args.context
    vocab, codes, windows, held_out = text_windows(text, T)
    model = bp.gpt(len(vocab), T, args.embed, args.heads, args.layers, seed=args.seed).to(device)
    print(f"text: {len(text):,} characters, {len(vocab)} distinct; {len(windows)} training windows of {T}")
    epochs = args.epochs or 5
    history, seconds = train(model, windows[:, :-1], windows[:, 1:], args, epochs, args.lr or 1e-2,
                             validation_data=(held_out[:, :-1], held_out[:, 1:]))
    val_loss = history["val_loss"][-1]
    print(f"validation loss {val_loss:.3f} nats/char ({math.exp(val_loss):.1f} equally likely characters)")
    written = ""
    if args.sample > 0:
        prompt = text[:T // 2]
        tokens = bp.generate(model, vocab.encode(prompt), args.sample, temperature=args.temperature,
                             top_k=min(args.top_k, len(vocab)), seed=args.seed)
        written = vocab.decode(tokens[len(prompt):])
        print(f"sample (temperature {args.temperature}, top-k {args.top_k}), after {prompt!r}:\n{written}")
    snippet = codes[:min(T, 24)]
    picture = task_picture(model, snippet, list(vocab.decode(snippet)), args)
    return {"val_loss": val_loss, "seconds": seconds, "sample": written, "history": history, "picture": picture}


def task_picture(model, tokens, labels, args):
    """The last layer's attention weights for ``tokens``, every head, written to --out; its path or None."""
    def draw(path):
        bp.viz.attention(model, tokens, layer=args.layers - 1, head=None, labels=labels, path=path)
    return save_figure(draw, args.out, "tiny_gpt_attention.png")


if __name__ == "__main__":
    main()
