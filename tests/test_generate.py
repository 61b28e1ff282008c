"""bp.generate (greedy, temperature, top-k; seeded; on the device, one transfer) and bp.viz.attention."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from helpers import count_syncs, host

import backends
import bpcore as bp
from bpcore.training.generate import _pick

V, CONTEXT = 9, 6


def model_on(backend, seed=0):
    return bp.gpt(V, CONTEXT, 8, 2, 1, seed=seed).to(backend)


def greedy_by_hand(model, prompt, count):
    """The greedy continuation written as a plain loop over predict: the reference."""
    tokens = np.array(prompt)
    for _ in range(count):
        logits = np.asarray(host(model.backend, model(tokens[:, -CONTEXT:])), dtype=np.float64)
        tokens = np.concatenate([tokens, logits[:, -1].argmax(axis=-1)[:, None]], axis=1)
    return tokens


def test_greedy_is_the_argmax_loop(backend, rng):
    model = model_on(backend)
    prompt = rng.integers(0, V, (3, 2))
    out = bp.generate(model, prompt, 7, temperature=0)          # runs past the context: keeps the last tokens
    assert out.shape == (3, 9) and out.dtype == np.int64
    np.testing.assert_array_equal(out[:, :2], prompt)
    np.testing.assert_array_equal(out, greedy_by_hand(model, prompt, 7))
    np.testing.assert_array_equal(bp.generate(model, prompt, 7, temperature=1.5, top_k=1, seed=4), out)


def test_sampling_is_seeded(backend, rng):
    model = model_on(backend)
    prompt = rng.integers(0, V, (4, 3))
    first = bp.generate(model, prompt, 8, temperature=1.0, seed=11)
    again = bp.generate(model, prompt, 8, temperature=1.0, seed=11)
    other = bp.generate(model, prompt, 8, temperature=1.0, seed=12)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert first.min() >= 0 and first.max() < V


def test_a_one_dimensional_prompt_gives_one_sequence(rng):
    model = model_on("cpu")
    prompt = list(rng.integers(0, V, 3))
    out = bp.generate(model, prompt, 4, temperature=0)
    assert out.shape == (7,)
    np.testing.assert_array_equal(out, bp.generate(model, [prompt], 4, temperature=0)[0])
    np.testing.assert_array_equal(bp.generate(model, prompt, 0), prompt)


def test_generation_leaves_the_mode_and_keeps_nothing_for_backward(rng):
    model = bp.Sequential(*model_on("cpu").layers[:-1], bp.Dropout(0.5), model_on("cpu").layers[-1])
    model.train()
    prompt = rng.integers(0, V, (2, 2))
    a = bp.generate(model, prompt, 5, temperature=0)
    b = bp.generate(model, prompt, 5, temperature=0)
    np.testing.assert_array_equal(a, b)                   # eval mode: Dropout off while generating
    assert model.training and all(layer._saved is None for layer in model.modules())


def test_top_k_and_the_sampled_distribution(backend):
    """_pick draws from softmax(z / temperature) restricted to the top k: frequencies over many rows."""
    with backend.activate():          # the device's kernels, as inside generate
        check_the_sampled_distribution(backend)


def check_the_sampled_distribution(backend):
    xp = backend.xp
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    rows = 20_000
    z = backend.asarray(np.tile(logits, (rows, 1)).astype("float64"))
    stream = backend.random(3)
    drawn = host(backend, _pick(xp, z, 1.0, None, stream))
    np.testing.assert_allclose(np.bincount(drawn, minlength=4) / rows, [0.5, 0.3, 0.15, 0.05], atol=0.015)
    top2 = host(backend, _pick(xp, z, 1.0, 2, stream))
    np.testing.assert_allclose(np.bincount(top2, minlength=4) / rows, [0.625, 0.375, 0, 0], atol=0.015)
    sharp = host(backend, _pick(xp, z, 0.25, None, stream))            # p^4, renormalised
    expected = np.array([0.5, 0.3, 0.15, 0.05]) ** 4
    np.testing.assert_allclose(np.bincount(sharp, minlength=4) / rows, expected / expected.sum(), atol=0.015)
    masked = backend.asarray(np.array([[0.0, -np.inf, 0.0, -np.inf]] * 2000))   # never a -inf token
    assert set(host(backend, _pick(xp, masked, 1.0, None, stream)).tolist()) == {0, 2}


def test_generation_syncs_once_on_a_device():
    """Every step stays on the device: the one transfer is the result at the end."""
    backend = backends.get("array_api_strict:device1")
    model = model_on(backend)
    prompt = backend.asarray(np.array([[1, 2], [3, 4]], dtype=np.int64))
    for kwargs in ({"temperature": 0}, {"temperature": 0.8, "top_k": 3, "seed": 1}):
        with count_syncs(backend) as syncs:
            bp.generate(model, prompt, 6, **kwargs)
        assert syncs.total == 1 and syncs.counts == {"to_numpy": 1}, (kwargs, syncs)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"max_new_tokens": -1}, ValueError, "max_new_tokens"),
    ({"temperature": -0.5}, ValueError, "temperature"),
    ({"top_k": 0}, ValueError, "top_k"),
    ({"seed": -3}, ValueError, "seed"),
    ({"prompt_tokens": [[0.5, 1.0]]}, TypeError, "integer token ids"),
    ({"prompt_tokens": np.zeros((1, 0), dtype=np.int64)}, ValueError, "non-empty"),
    ({"prompt_tokens": "abc"}, TypeError, "must be integer tokens"),
    ({"model": "gpt"}, TypeError, "bpcore Layer"),
])
def test_generate_refuses_bad_arguments(kwargs, error, match):
    arguments = {"model": model_on("cpu"), "prompt_tokens": [[1, 2]], "max_new_tokens": 2}
    arguments.update(kwargs)
    with pytest.raises(error, match=match):
        bp.generate(**arguments)


def test_generate_names_a_model_that_is_not_a_language_model():
    with pytest.raises(ValueError, match=r"logits \(N, T, vocab\)"):
        bp.generate(bp.Sequential(bp.Embedding(4, 3, seed=0), bp.Flatten()), [[1, 2]], 1)


# -- the attention picture ----------------------------------------------------------------------
needs_matplotlib = pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                                      reason="the figures need matplotlib (pip install -e '.[viz]')")


@needs_matplotlib
def test_attention_picture(tmp_path, rng):
    model = bp.gpt(V, CONTEXT, 8, 2, 2, seed=0)
    idx = rng.integers(0, V, 5)
    fig = bp.viz.attention(model, idx, layer=1, head=1, labels=list("abcde"), path=tmp_path / "a.png")
    assert (tmp_path / "a.png").stat().st_size > 3000
    assert fig.weights.shape == (5, 5)
    assert np.all(fig.weights[np.triu_indices(5, 1)] == 0) and np.allclose(fig.weights.sum(axis=1), 1, atol=1e-5)
    model(idx[None])
    expected = host(model.backend, model[2].attn.attention_weights())[0, 1]
    np.testing.assert_allclose(fig.weights, expected, rtol=1e-6)
    every = bp.viz.attention(model, idx[None], head=None)
    assert every.weights.shape == (2, 5, 5)
    assert all(layer._saved is None for layer in model.modules())


@needs_matplotlib
def test_attention_picture_refuses_bad_arguments(rng):
    model = bp.gpt(V, CONTEXT, 8, 2, 1, seed=0)
    idx = rng.integers(0, V, 4)
    with pytest.raises(ValueError, match="1 attention layers"):
        bp.viz.attention(model, idx, layer=1)
    with pytest.raises(ValueError, match="2 heads"):
        bp.viz.attention(model, idx, head=2)
    with pytest.raises(ValueError, match="a batch of 1"):
        bp.viz.attention(model, rng.integers(0, V, (2, 4)))
    with pytest.raises(ValueError, match="name each of the 4 positions"):
        bp.viz.attention(model, idx, labels=["a"])
    with pytest.raises(ValueError, match="no MultiHeadAttention"):
        bp.viz.attention(bp.mlp([2, 2], seed=0), np.zeros((1, 2)))
