"""A character model
===================

Embedding -> LSTM -> Linear learns to continue a text, one character at a time.

.. code-block:: bash

    python examples/char_rnn.py [--text PATH] [--device cpu|cuda|torch|...] [--epochs 8] [--seed 0]
        [--chars 300000] [--context 64] [--hidden 128] [--sample 400] [--temperature 0.8] [--threads 1]

The text is --text (any UTF-8 file), or without one the documentation topics that ship with Python
itself (the standard library's pydoc_data: offline everywhere). Its characters become integer codes
(bp.data.CharVocabulary); windows of --context characters are the inputs and the same windows moved
by one character the targets (bp.data.sliding_windows). The last tenth of the text is held out. bp.fit
trains with Adam and softmax cross-entropy over every position; after each epoch the validation loss
(nats per character) is printed next to the unigram entropy of the text: the loss of the best model
that ignores context. Then the model writes --sample characters, feeding back one character at a
time (the LSTM's state carried between calls), drawn from softmax(logits / temperature). With the
defaults: validation loss 1.37 nats/char against a unigram entropy of 3.24 (seed 0).
"""
from __future__ import annotations

import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bpcore as bp  # noqa: E402
from _common import (blas_threads, non_negative_int, parser, positive_int, read_text, resolve_device,  # noqa: E402
                     text_windows)


def unigram_entropy(codes, size) -> float:
    """-sum p log p over the characters' frequencies, in nats: the loss of predicting without context."""
    p = np.bincount(codes, minlength=size) / len(codes)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def char_model(vocab_size, hidden, seed):
    """Embedding(V, 32) -> LSTM(32, hidden) -> Linear(hidden, V): logits for the next character."""
    rng = np.random.default_rng(seed)
    return bp.Sequential(bp.Embedding(vocab_size, 32, seed=rng), bp.LSTM(32, hidden, seed=rng),
                         bp.Linear(hidden, vocab_size, init="xavier", seed=rng))


def sample(model, vocab, prompt, count, temperature, seed):
    """``prompt`` continued by ``count`` characters, one at a time from softmax(logits / temperature)."""
    embedding, lstm, head = model.layers
    rng = np.random.default_rng(seed)
    model.eval()
    codes = vocab.encode(prompt)
    state, written = None, []
    x = codes[None, :]                                  # the whole prompt first, then one code at a time
    for _ in range(count):
        hidden = lstm(embedding(x), state)
        state = lstm.final_state                        # carried into the next call
        logits = model.device.to_numpy(head(hidden[:, -1, :]))[0].astype("float64") / temperature
        p = np.exp(logits - logits.max())
        code = int(rng.choice(len(p), p=p / p.sum()))
        written.append(code)
        x = np.array([[code]])
    return prompt + vocab.decode(written)


class PrintLosses(bp.Callback):
    """After each epoch: training and validation loss in nats per character, next to the unigram entropy."""

    def __init__(self, entropy):
        self.entropy = entropy

    def on_epoch_end(self, epoch, logs=None):
        print(f"epoch {epoch + 1:>3}  loss {logs['loss']:.3f}  val_loss {logs['val_loss']:.3f} nats/char  "
              f"(unigram entropy {self.entropy:.3f})")


def main(argv=None) -> dict:
    p = parser(__doc__.splitlines()[0], epochs=8)
    p.add_argument("--text", default=None, metavar="PATH", help="a UTF-8 text file (default: Python's pydoc topics)")
    p.add_argument("--chars", type=positive_int, default=300_000, metavar="N",
                   help="use the first N characters of the text (default: 300000)")
    p.add_argument("--context", type=positive_int, default=64, metavar="T", help="characters per window (default 64)")
    p.add_argument("--hidden", type=positive_int, default=128, metavar="H", help="LSTM width (default 128)")
    p.add_argument("--sample", type=non_negative_int, default=400, metavar="N",
                   help="characters to write (default 400)")
    p.add_argument("--temperature", type=float, default=0.8, help="sampling temperature > 0 (default 0.8)")
    p.add_argument("--threads", type=positive_int, default=1, metavar="N",
                   help="BLAS threads on the CPU (default 1: each LSTM step multiplies small matrices, where "
                        "threads wait on each other more than they help)")
    args = p.parse_args(argv)
    if not args.temperature > 0:
        p.error(f"--temperature must be > 0, got {args.temperature}")
    limits = blas_threads(args.threads)
    try:
        return _run(args)
    finally:
        if limits is not None:
            limits.restore_original_limits()


def _run(args) -> dict:
    device = resolve_device(args.device)
    text = read_text(args.text)[:args.chars]
    T = args.context
    vocab, codes, windows, held_out = text_windows(text, T)
    X, y, X_val, y_val = windows[:, :-1], windows[:, 1:], held_out[:, :-1], held_out[:, 1:]
    entropy = unigram_entropy(codes, len(vocab))
    print(f"text: {len(text):,} characters, {len(vocab)} distinct; {len(X)} training and {len(X_val)} validation "
          f"windows of {T}; unigram entropy {entropy:.3f} nats/char")
    model = char_model(len(vocab), args.hidden, args.seed).to(device)
    loss_fn = bp.SoftmaxCrossEntropyLoss()
    history = bp.fit(model, loss_fn, bp.optim.Adam(model.parameters(), lr=3e-3), X, y, epochs=args.epochs,
                     batch_size=32, seed=args.seed, validation_data=(X_val, y_val),
                     callbacks=[PrintLosses(entropy)], progress=False)
    val_loss = history["val_loss"][-1]
    print(f"validation loss {val_loss:.3f} nats/char against {entropy:.3f} for the unigram model "
          f"({math.exp(val_loss):.1f} vs {math.exp(entropy):.1f} equally likely characters)")
    written = ""
    if args.sample > 0:
        prompt = "The " if set("The ") <= set(vocab.chars) else text[:4]
        written = sample(model, vocab, prompt, args.sample, args.temperature, args.seed)
        print(f"sample (temperature {args.temperature}):\n{written}")
    return {"val_loss": val_loss, "unigram_entropy": entropy, "sample": written, "history": history}


if __name__ == "__main__":
    main()
