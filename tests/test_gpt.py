"""bp.gpt: the whole model against PyTorch (float64, 1e-8), gradient checks on every backend, fit on
integer tokens, checkpoints, ONNX export, summary; bp.data.adder. Generation and the attention
picture are in test_generate.py."""
from __future__ import annotations


import numpy as np
import pytest
from helpers import assert_matches_torch, from_torch, host, to_torch, tolerance
from checkpoint_helpers import refused_load_peak
from forging import forge

import bpcore as bp

try:
    import torch
except ImportError:
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is the oracle here: pip install torch")

V, CONTEXT, E, HEADS, LAYERS = 7, 5, 8, 2, 2


def small_gpt(seed=0):
    return bp.gpt(V, CONTEXT, E, HEADS, LAYERS, seed=seed)


def tokens(rng, shape=(3, CONTEXT)):
    return rng.integers(0, V, shape)


# bpcore's last name part inside a block -> torch's (and whether a 2-D value is transposed)
BLOCK_PARTS = {"W_qkv": "attn.in_proj_weight", "b_qkv": "attn.in_proj_bias", "W_out": "attn.out_proj.weight",
               "b_out": "attn.out_proj.bias", "W": "weight", "b": "bias", "weight": "weight", "bias": "bias"}


def torch_name(name):
    """"0.token.W" -> token.weight, "1.attn.W_qkv" -> blocks.0.attn.in_proj_weight, "3.weight" -> ln_f.weight."""
    index, rest = name.split(".", 1)
    index = int(index)
    if index == 0:
        return rest.replace(".W", ".weight")
    *path, last = rest.split(".")
    if index <= LAYERS:
        where = ".".join(part for part in path if part != "attn")
        return f"blocks.{index - 1}." + (f"{where}." if where else "") + BLOCK_PARTS[last]
    return ("ln_f." if index == LAYERS + 1 else "head.") + BLOCK_PARTS[last]


class TorchGPT(torch.nn.Module if torch is not None else object):
    """GPT-2's layout in torch.nn, float64: the reference for bp.gpt."""

    def __init__(self):
        super().__init__()
        nn, f64 = torch.nn, {"dtype": torch.float64}
        self.token, self.position = nn.Embedding(V, E, **f64), nn.Embedding(CONTEXT, E, **f64)
        self.blocks = nn.ModuleList()
        for _ in range(LAYERS):
            block = nn.Module()
            block.ln_1, block.ln_2 = nn.LayerNorm(E, **f64), nn.LayerNorm(E, **f64)
            block.attn = nn.MultiheadAttention(E, HEADS, batch_first=True, **f64)
            block.mlp = nn.Sequential(nn.Linear(E, 4 * E, **f64), nn.GELU(approximate="tanh"),
                                      nn.Linear(4 * E, E, **f64))
            self.blocks.append(block)
        self.ln_f, self.head = nn.LayerNorm(E, **f64), nn.Linear(E, V, **f64)

    def forward(self, idx):
        T = idx.shape[1]
        mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
        x = self.token(idx) + self.position(torch.arange(T))
        for block in self.blocks:
            a = block.ln_1(x)
            x = x + block.attn(a, a, a, attn_mask=mask, need_weights=False)[0]
            x = x + block.mlp(block.ln_2(x))
        return self.head(self.ln_f(x))


@needs_torch
@pytest.mark.parametrize("T", [CONTEXT, 1, 3])
def test_gpt_matches_torch(backend, rng, T):
    """Logits, the loss and every one of the model's parameter gradients, float64, to 1e-8."""
    model = small_gpt().astype("float64").to(backend)
    reference = TorchGPT()
    theirs = dict(reference.named_parameters())
    for name, p in model.named_parameters():            # random values everywhere, biases and LN included
        value = 0.5 * rng.standard_normal(p.shape)
        p.data = backend.asarray(value)
        with torch.no_grad():
            transpose = value.ndim == 2 and name.split(".", 1)[0] != "0"     # embeddings are (rows, E) both ways
            theirs[torch_name(name)].copy_(to_torch(value.T if transpose else value))
    idx, targets = tokens(rng, (3, T)), tokens(rng, (3, T))
    targets[0, 0] = -100
    loss_fn = bp.SoftmaxCrossEntropyLoss(ignore_index=-100)
    logits = model(idx)
    loss = loss_fn.forward(logits, targets)
    assert model.backward(loss_fn.backward()) is None            # tokens have no gradient
    logits_t = reference(torch.as_tensor(idx))
    loss_t = torch.nn.functional.cross_entropy(logits_t.reshape(-1, V), torch.as_tensor(targets).reshape(-1),
                                               ignore_index=-100)
    loss_t.backward()
    assert_matches_torch(host(backend, logits), from_torch(logits_t), "gpt logits")
    assert_matches_torch(float(host(backend, loss)), float(loss_t.detach()), "gpt loss")
    assert len(model.parameters()) == len(theirs) == 6 + LAYERS * 12
    for name, p in model.named_parameters():
        expected = from_torch(theirs[torch_name(name)].grad)
        transpose = expected.ndim == 2 and name.split(".", 1)[0] != "0"
        assert_matches_torch(host(backend, p.grad), expected.T if transpose else expected, f"dL/d{name}")


def test_gpt_gradcheck_checks_the_parameters(backend, rng):
    model = bp.gpt(5, 4, 4, 2, 1, seed=0).to(backend)
    targets = rng.integers(0, 5, (2, 4))
    targets[1, :2] = -100
    report = bp.gradcheck(model, bp.SoftmaxCrossEntropyLoss(ignore_index=-100), rng.integers(0, 5, (2, 4)), targets)
    assert report.passed, str(report)
    text = str(report)
    assert "0.token.W" in text and "1.attn.W_qkv" in text and "3.W" in text
    assert "input" not in [line.split()[0] for line in text.splitlines()[3:-1]]   # integer tokens: none


def test_gpt_layout_names_and_summary():
    model = small_gpt()
    names = [name for name, _ in model.named_parameters()]
    assert names[:4] == ["0.token.W", "0.position.W", "1.ln_1.weight", "1.ln_1.bias"]
    assert "1.attn.W_qkv" in names and "2.mlp.0.W" in names and names[-4:] == ["3.weight", "3.bias", "4.W", "4.b"]
    assert model[0].token.W.shape == (V, E) and model[0].position.W.shape == (CONTEXT, E)
    assert model.input_indices() == V and model[-1].W.shape == (E, V)
    table = model.summary(print_fn=None)                      # the input shape comes from context_length
    assert [row[1] for row in table.rows] == [f"TokenPositionEmbedding({V}, {CONTEXT}, {E})",
                                              f"TransformerBlock({E}, num_heads={HEADS})",
                                              f"TransformerBlock({E}, num_heads={HEADS})",
                                              f"LayerNorm({E}, eps=1e-05)", f"Linear({E}, {V})"]
    assert table.rows[-1][2] == (None, CONTEXT, V)
    assert table.total_params == sum(int(np.prod(p.shape)) for p in model.parameters())
    assert "(batch, 5, 7)" in str(table)


def test_gpt_takes_shorter_sequences_and_refuses_longer_ones(rng):
    model = small_gpt()
    full = host(model.backend, model(tokens(rng)))
    short = host(model.backend, model(tokens(rng, (2, 2))))
    assert full.shape == (3, CONTEXT, V) and short.shape == (2, 2, V)
    with pytest.raises(ValueError, match=r"6 tokens is longer than the context_length 5"):
        model(tokens(rng, (1, CONTEXT + 1)))
    with pytest.raises(TypeError, match="integer indices"):
        model(rng.standard_normal((1, 3)))
    with pytest.raises(ValueError, match=r"index 7, outside \[0, 7\)"):
        model(np.array([[1, 7]]))
    with pytest.raises(ValueError, match="multiple of num_heads"):
        bp.gpt(5, 4, 6, 4, 1)
    with pytest.raises(ValueError, match="num_layers must be a positive int"):
        bp.gpt(5, 4, 8, 2, 0)


def test_the_same_seed_gives_the_same_model_and_causal_logits(rng):
    a, b = small_gpt(seed=3), small_gpt(seed=3)
    for (_, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(host(a.backend, p.data), host(b.backend, q.data))
    idx = tokens(rng, (1, CONTEXT))
    changed = idx.copy()
    changed[0, 3:] = (changed[0, 3:] + 1) % V
    before, after = host(a.backend, a(idx)), host(a.backend, a(changed))
    np.testing.assert_array_equal(before[:, :3], after[:, :3])      # a position never sees the later tokens
    assert not np.allclose(before[:, 3:], after[:, 3:])


def test_fit_trains_a_gpt_on_integer_tokens(backend):
    (X, y), _ = bp.data.adder(1, seed=0)
    model = bp.gpt(10, X.shape[1], 16, 2, 1, seed=0).to(backend)
    loss_fn = bp.SoftmaxCrossEntropyLoss(ignore_index=-100)
    opt = bp.optim.AdamW(model.parameters(), lr=1e-2)
    history = bp.fit(model, loss_fn, opt, X, y, epochs=15, batch_size=30, progress=False)
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert bp.predict(model, X[:4]).shape == (4, X.shape[1], 10)


def test_gpt_checkpoint_round_trip(backend, rng, tmp_path):
    model = small_gpt().to(backend)
    idx = tokens(rng)
    model.save(tmp_path / "gpt.bpc")
    loaded = bp.load(tmp_path / "gpt.bpc", device=backend.spec)
    assert repr(loaded) == repr(model)
    np.testing.assert_array_equal(host(backend, loaded(idx)), host(backend, model(idx)))
    assert [n for n, _ in loaded.named_parameters()] == [n for n, _ in model.named_parameters()]


@pytest.mark.parametrize("layer", [
    {"type": "TokenPositionEmbedding", "config": {"vocab_size": 2 ** 30, "context_length": 4, "embed_dim": 512}},
    {"type": "TransformerBlock", "config": {"embed_dim": 2 ** 16, "num_heads": 1, "mlp_ratio": 4, "causal": True}},
])
def test_a_forged_huge_gpt_layer_is_refused_before_allocating(tmp_path, layer):
    small = np.zeros(4, dtype=np.float32)
    header = {"format": "bpcore-checkpoint", "format_version": 1, "bpcore_version": "x", "dtype": "float32",
              "tensors": [{"name": "model/0.W", "dtype": "float32", "shape": [4], "offset": 0, "nbytes": 16}],
              "architecture": {"type": "Sequential", "layers": [layer]}}
    path = tmp_path / "huge.bpc"
    path.write_bytes(forge(header, small.tobytes()))
    assert refused_load_peak(path, "would create .* or more numbers")[1] < 50_000_000


def test_onnx_export_of_a_gpt_matches_onnxruntime(rng, tmp_path):
    pytest.importorskip("ndonnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    model = small_gpt()
    report = bp.onnx.export(model, tokens(rng, (2, CONTEXT)), tmp_path / "gpt.onnx")
    assert report.dtype == "int64" and report.input_shape == ("batch", CONTEXT)
    assert report.output_shape == ("batch", CONTEXT, V)
    other = tokens(rng, (6, CONTEXT))                             # another batch size: the batch is symbolic
    session = onnxruntime.InferenceSession(str(tmp_path / "gpt.onnx"), providers=["CPUExecutionProvider"])
    (result,) = session.run(None, {"input": other})
    np.testing.assert_allclose(result, bp.predict(model, other), **tolerance("float32", 50))


# -- bp.data.adder ------------------------------------------------------------------------------
@pytest.mark.parametrize("ndigits", [1, 2, 3])
def test_adder_holds_every_sum_once_reversed(ndigits):
    (X, y), (X_test, y_test) = bp.data.adder(ndigits, seed=1)
    pairs = 10 ** (2 * ndigits)
    assert len(X) + len(X_test) == pairs and len(X_test) == min(pairs // 10, 500)
    assert X.shape[1] == y.shape[1] == 3 * ndigits and X.dtype == y.dtype == np.int64
    questions = np.concatenate([X, X_test])
    sequences = np.concatenate([np.concatenate([X, y[:, -1:]], axis=1),
                                np.concatenate([X_test, y_test[:, -1:]], axis=1)])
    powers = 10 ** np.arange(ndigits - 1, -1, -1)
    a, b = questions[:, :ndigits] @ powers, questions[:, ndigits:2 * ndigits] @ powers
    c = sequences[:, 2 * ndigits:][:, ::-1] @ (10 ** np.arange(ndigits, -1, -1))
    np.testing.assert_array_equal(c, a + b)
    assert len(np.unique(a * 10 ** ndigits + b)) == pairs                 # each pair once, none shared by the splits
    np.testing.assert_array_equal(y[:, :2 * ndigits - 1], -100)
    np.testing.assert_array_equal(y[:, 2 * ndigits - 1:], np.concatenate([X, y[:, -1:]], axis=1)[:, 2 * ndigits:])


def test_adder_example_from_its_docstring():
    (X, y), _ = bp.data.adder(2, seed=0, ignore_index=-1)
    row = next(i for i in range(len(X)) if list(X[i, :4]) == [8, 5, 5, 0])
    assert list(X[row]) == [8, 5, 5, 0, 5, 3] and list(y[row]) == [-1, -1, -1, 5, 3, 1]       # 85 + 50 = 135
    (X1, _), _ = bp.data.adder(2, seed=0)
    (X2, _), _ = bp.data.adder(2, seed=1)
    assert not np.array_equal(X1, X2)


@pytest.mark.parametrize("kwargs, match", [({"ndigits": 5}, "at most 4"), ({"ndigits": 0}, "ndigits"),
                                           ({"ignore_index": 3}, "not a digit"), ({"test_size": 10_000}, "leave"),
                                           ({"test_size": -1}, "test_size")])
def test_adder_refuses_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bp.data.adder(**kwargs)
