"""MultiHeadAttention and TransformerBlock: PyTorch as the oracle (float64, 1e-8), gradient checks on
every backend, the causal mask, bad input.

torch.nn.MultiheadAttention(E, H, batch_first=True) gets in_proj_weight = W_qkv.T, in_proj_bias =
b_qkv, out_proj.weight = W_out.T, out_proj.bias = b_out and is called (x, x, x, attn_mask=<True
above the diagonal> if causal, need_weights=False). The torch side runs on the CPU from the same
host arrays; the bpcore side on every backend (the simulated second device included).
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from helpers import assert_matches_torch, from_torch, host, to_torch

import bpcore as bp

try:
    import torch
except ImportError:
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is the oracle here: pip install torch")

E = 12                          # a multiple of 1, 2, 3 and 4 heads
SHAPES = [(3, 5), (1, 1), (1, 4), (2, 1)]      # (N, T): T = 1 and N = 1 included


def causal_mask(T):
    return torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)


def torch_attention(layer, backend):
    """torch.nn.MultiheadAttention holding ``layer``'s weights (float64, CPU)."""
    bias = layer.b_qkv is not None
    module = torch.nn.MultiheadAttention(layer.embed_dim, layer.num_heads, batch_first=True, bias=bias,
                                         dtype=torch.float64)
    with torch.no_grad():
        module.in_proj_weight.copy_(to_torch(host(backend, layer.W_qkv.data).T))
        module.out_proj.weight.copy_(to_torch(host(backend, layer.W_out.data).T))
        if bias:
            module.in_proj_bias.copy_(to_torch(host(backend, layer.b_qkv.data)))
            module.out_proj.bias.copy_(to_torch(host(backend, layer.b_out.data)))
    return module


def torch_attention_grads(module):
    """torch's parameter gradients under bpcore's names and layout."""
    grads = {"W_qkv": from_torch(module.in_proj_weight.grad).T, "W_out": from_torch(module.out_proj.weight.grad).T}
    if module.in_proj_bias is not None:
        grads["b_qkv"] = from_torch(module.in_proj_bias.grad)
        grads["b_out"] = from_torch(module.out_proj.bias.grad)
    return grads


def run_both(layer, module_call, backend, x, grad_out):
    """bpcore forward/backward on ``backend`` and torch's on the CPU; returns the host results."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        out = host(backend, layer(backend.asarray(x)))
        grad_in = host(backend, layer.backward(backend.asarray(grad_out)))
    x_t = to_torch(x, requires_grad=True)
    out_t = module_call(x_t)
    out_t.backward(to_torch(grad_out))
    return out, grad_in, from_torch(out_t), from_torch(x_t.grad)


@needs_torch
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("heads", [1, 2, 3, 4])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_attention_matches_torch(backend, rng, causal, heads, bias):
    for N, T in SHAPES:
        layer = bp.MultiHeadAttention(E, heads, causal=causal, bias=bias, seed=int(rng.integers(1000)))
        layer.astype("float64").to(backend)
        if bias:                # torch starts the biases at zero too: give them values that show
            layer.b_qkv.data = backend.asarray(rng.standard_normal(3 * E))
            layer.b_out.data = backend.asarray(rng.standard_normal(E))
        module = torch_attention(layer, backend)
        mask = causal_mask(T) if causal else None
        x, grad_out = 2.0 * rng.standard_normal((N, T, E)), rng.standard_normal((N, T, E))
        def call_torch(x_t, module=module, mask=mask):
            return module(x_t, x_t, x_t, attn_mask=mask, need_weights=False)[0]
        out, grad_in, out_t, grad_in_t = run_both(layer, call_torch, backend, x, grad_out)
        where = f"{layer!r} on (N, T) = {(N, T)}"
        assert_matches_torch(out, out_t, f"{where} output")
        assert_matches_torch(grad_in, grad_in_t, f"{where} dL/dx")
        expected = torch_attention_grads(module)
        assert sorted(name for name, _ in layer.named_parameters()) == sorted(expected)
        for name, p in layer.named_parameters():
            assert_matches_torch(host(backend, p.grad), expected[name], f"{where} dL/d{name}")


class TorchBlock(torch.nn.Module if torch is not None else object):
    """GPT-2's pre-LN block in torch: the reference for bp.TransformerBlock."""

    def __init__(self, embed_dim, num_heads, mlp_ratio, causal):
        super().__init__()
        f64 = {"dtype": torch.float64}
        self.ln_1 = torch.nn.LayerNorm(embed_dim, **f64)
        self.attn = torch.nn.MultiheadAttention(embed_dim, num_heads, batch_first=True, **f64)
        self.ln_2 = torch.nn.LayerNorm(embed_dim, **f64)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(embed_dim, mlp_ratio * embed_dim, **f64),
                                       torch.nn.GELU(approximate="tanh"),
                                       torch.nn.Linear(mlp_ratio * embed_dim, embed_dim, **f64))
        self.causal = causal

    def forward(self, x):
        a = self.ln_1(x)
        mask = causal_mask(x.shape[1]) if self.causal else None
        h = x + self.attn(a, a, a, attn_mask=mask, need_weights=False)[0]
        return h + self.mlp(self.ln_2(h))


# bpcore's parameter names -> torch's, for a block (2-D weights are transposed)
BLOCK_NAMES = {"ln_1.weight": "ln_1.weight", "ln_1.bias": "ln_1.bias", "attn.W_qkv": "attn.in_proj_weight",
               "attn.b_qkv": "attn.in_proj_bias", "attn.W_out": "attn.out_proj.weight",
               "attn.b_out": "attn.out_proj.bias", "ln_2.weight": "ln_2.weight", "ln_2.bias": "ln_2.bias",
               "mlp.0.W": "mlp.0.weight", "mlp.0.b": "mlp.0.bias", "mlp.2.W": "mlp.2.weight",
               "mlp.2.b": "mlp.2.bias"}


@needs_torch
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
@pytest.mark.parametrize("heads, mlp_ratio", [(1, 4), (3, 2), (4, 4)])
def test_block_matches_torch(backend, rng, causal, heads, mlp_ratio):
    for N, T in SHAPES:
        block = bp.TransformerBlock(E, heads, mlp_ratio=mlp_ratio, causal=causal, seed=int(rng.integers(1000)))
        block.astype("float64").to(backend)
        reference = TorchBlock(E, heads, mlp_ratio, causal)
        torch_params = dict(reference.named_parameters())
        assert [name for name, _ in block.named_parameters()] == list(BLOCK_NAMES)
        for name, p in block.named_parameters():      # random values everywhere (not ones and zeros)
            value = 0.5 * rng.standard_normal(p.shape)
            p.data = backend.asarray(value)
            with torch.no_grad():
                torch_params[BLOCK_NAMES[name]].copy_(to_torch(value.T if value.ndim == 2 else value))
        x, grad_out = rng.standard_normal((N, T, E)), rng.standard_normal((N, T, E))
        out, grad_in, out_t, grad_in_t = run_both(block, reference, backend, x, grad_out)
        where = f"TransformerBlock({E}, {heads}, causal={causal}) on (N, T) = {(N, T)}"
        assert_matches_torch(out, out_t, f"{where} output")
        assert_matches_torch(grad_in, grad_in_t, f"{where} dL/dx")
        for name, p in block.named_parameters():
            expected = from_torch(torch_params[BLOCK_NAMES[name]].grad)
            assert_matches_torch(host(backend, p.grad), expected.T if expected.ndim == 2 else expected,
                                 f"{where} dL/d{name}")


# -- gradient checks on every backend ------------------------------------------------------------
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_attention_gradcheck(backend, rng, causal):
    model = bp.Sequential(bp.MultiHeadAttention(8, 2, causal=causal, seed=0), bp.Flatten()).to(backend)
    report = bp.gradcheck(model, bp.MSELoss(), rng.standard_normal((2, 4, 8)), rng.standard_normal((2, 32)))
    assert report.passed, str(report)
    assert report.max_rel_error < 1e-6


def test_block_gradcheck(backend, rng):
    model = bp.Sequential(bp.TransformerBlock(8, 2, mlp_ratio=2, seed=0), bp.Flatten()).to(backend)
    report = bp.gradcheck(model, bp.MSELoss(), rng.standard_normal((2, 3, 8)), rng.standard_normal((2, 24)))
    assert report.passed, str(report)
    names = [line.split()[0] for line in str(report).splitlines()[3:-1]]
    assert "0.attn.W_qkv" in names and "0.mlp.2.b" in names and "input" in names


def test_gradcheck_catches_a_planted_bug_in_the_softmax(rng):
    """The checks above can fail: a backward that forgets the softmax's correction term is caught."""
    class Wrong(bp.MultiHeadAttention):
        def backward(self, grad_out):
            weights = self._saved["weights"]
            self._saved["weights"] = weights * 1.01        # dS computed from the wrong P
            try:
                return super().backward(grad_out)
            finally:
                self._saved["weights"] = weights
    model = bp.Sequential(Wrong(4, 2, seed=0), bp.Flatten())
    report = bp.gradcheck(model, bp.MSELoss(), rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 12)))
    assert not report.passed


# -- the mask, the softmax, the parameters -------------------------------------------------------
def test_causal_weights_are_exactly_zero_above_the_diagonal(backend, rng):
    layer = bp.MultiHeadAttention(8, 2, causal=True, seed=0).to(backend)
    x = 30.0 * rng.standard_normal((2, 6, 8)).astype("float32")      # large scores: the softmax must stay finite
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        out = host(backend, layer(backend.asarray(x)))
    weights = host(backend, layer.attention_weights())
    assert weights.shape == (2, 2, 6, 6) and np.all(np.isfinite(out))
    above = np.triu(np.ones((6, 6), dtype=bool), k=1)
    assert np.all(weights[..., above] == 0.0)
    np.testing.assert_allclose(weights.sum(axis=-1), 1.0, rtol=1e-5)


def test_causal_output_does_not_see_the_future(backend, rng):
    """Changing the tokens after position t leaves outputs 0..t unchanged; the full layer sees them."""
    x = rng.standard_normal((1, 5, 8))
    changed = x.copy()
    changed[:, 3:] += 1.0
    for causal in (True, False):
        layer = bp.MultiHeadAttention(8, 4, causal=causal, seed=1).astype("float64").to(backend)
        before, after = host(backend, layer(backend.asarray(x))), host(backend, layer(backend.asarray(changed)))
        assert np.array_equal(before[:, :3], after[:, :3]) == causal


def test_parameters_and_init():
    layer = bp.MultiHeadAttention(16, 4, seed=0)
    assert [(n, p.shape) for n, p in layer.named_parameters()] == [
        ("W_qkv", (16, 48)), ("b_qkv", (48,)), ("W_out", (16, 16)), ("b_out", (16,))]
    W_qkv = layer.backend.to_numpy(layer.W_qkv.data)
    W_out = layer.backend.to_numpy(layer.W_out.data)
    assert np.abs(W_qkv).max() <= np.sqrt(6 / (16 + 48)) and np.abs(W_out).max() <= 1 / 4
    assert W_qkv.std() > 0.5 * np.sqrt(6 / 64) / np.sqrt(3)
    no_bias = bp.MultiHeadAttention(16, 4, bias=False, seed=0)
    assert [n for n, _ in no_bias.named_parameters()] == ["W_qkv", "W_out"]
    np.testing.assert_array_equal(no_bias.backend.to_numpy(no_bias.W_qkv.data), W_qkv)   # the same draws
    same = bp.MultiHeadAttention(16, 4, seed=0)
    np.testing.assert_array_equal(same.backend.to_numpy(same.W_out.data), W_out)


def test_block_names_and_config_round_trip():
    block = bp.TransformerBlock(8, 2, mlp_ratio=3, causal=False, seed=0)
    assert [n for n, _ in block.named_parameters()] == list(BLOCK_NAMES)
    assert block.mlp[0].W.shape == (8, 24) and block.num_heads == 2 and not block.attn.causal
    rebuilt = bp.TransformerBlock(**block.config())
    assert [(n, p.shape) for n, p in rebuilt.named_parameters()] == [(n, p.shape) for n, p in block.named_parameters()]


def test_block_checkpoint_round_trip(tmp_path, rng):
    model = bp.Sequential(bp.TransformerBlock(8, 2, seed=0), bp.LayerNorm(8), bp.Linear(8, 3, seed=1))
    x = rng.standard_normal((2, 4, 8)).astype("float32")
    model.save(tmp_path / "block.bpc")
    loaded = bp.load(tmp_path / "block.bpc")
    np.testing.assert_array_equal(host(loaded.backend, loaded(x)), host(model.backend, model(x)))
    assert repr(loaded) == repr(model)


# -- bad input ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, error, match", [
    ({"embed_dim": 10, "num_heads": 4}, ValueError, "multiple of num_heads"),
    ({"embed_dim": 0, "num_heads": 1}, ValueError, "embed_dim"),
    ({"embed_dim": 8, "num_heads": 0}, ValueError, "num_heads"),
    ({"embed_dim": 8, "num_heads": 2, "causal": "yes"}, TypeError, "causal"),
])
def test_attention_refuses_bad_settings(kwargs, error, match):
    with pytest.raises(error, match=match):
        bp.MultiHeadAttention(**kwargs)


def test_attention_refuses_bad_input(rng):
    layer = bp.MultiHeadAttention(8, 2, seed=0)
    with pytest.raises(ValueError, match=r"MultiHeadAttention.*\(batch, time, 8\).*\(2, 5, 6\)"):
        layer(rng.standard_normal((2, 5, 6)).astype("float32"))
    with pytest.raises(ValueError, match="3-D"):
        layer(rng.standard_normal((5, 8)).astype("float32"))
    with pytest.raises(RuntimeError, match="before forward"):
        bp.MultiHeadAttention(8, 2, seed=0).backward(np.zeros((1, 1, 8), dtype="float32"))
    layer(rng.standard_normal((2, 5, 8)).astype("float32"))
    with pytest.raises(ValueError, match=r"grad_out of shape \(2, 5, 8\)"):
        layer.backward(layer.backend.asarray(np.zeros((2, 4, 8), dtype="float32")))
    block = bp.TransformerBlock(8, 2, seed=0)
    with pytest.raises(ValueError, match=r"TransformerBlock.*\(batch, time, 8\)"):
        block(rng.standard_normal((2, 5, 4)).astype("float32"))
    with pytest.raises(ValueError, match="multiple of num_heads"):
        bp.TransformerBlock(8, 3)


# -- GELU in cache-sized row blocks (bpcore/nn/chunks.py) -------------------------------------------
@needs_torch
def test_gelu_in_row_blocks_matches_torch(backend, rng):
    """An (N, T, 4E)-sized input goes through GELU block by block on a CPU: still torch's GELU."""
    from bpcore.nn.chunks import BLOCK_NUMBERS, row_block

    x = 3.0 * rng.standard_normal((2, 3 * BLOCK_NUMBERS // 500 + 7, 500))      # rows not a multiple of a block
    grad_out = rng.standard_normal(x.shape)
    layer = bp.GELU().astype("float64").to(backend)
    expected_blocks = backend.kind == "cpu"
    assert (row_block(backend, backend.asarray(x)) is not None) == expected_blocks
    out, grad_in, out_t, grad_in_t = run_both(layer, torch.nn.GELU(approximate="tanh"), backend, x, grad_out)
    assert_matches_torch(out, out_t, "GELU output in row blocks")
    assert_matches_torch(grad_in, grad_in_t, "GELU dL/dx in row blocks")


def test_row_blocks_cover_every_row_once(backend, rng):
    from bpcore.nn.chunks import BLOCK_NUMBERS, in_row_blocks

    x = backend.asarray(rng.standard_normal((5, BLOCK_NUMBERS // 100 + 3, 100)))
    seen = []

    def compute(block):
        seen.append(block.shape[0])
        return block * 2.0, block + 1.0
    with backend.activate():               # as inside a layer's forward
        doubled, shifted = in_row_blocks(backend, x, compute, outputs=2)
    np.testing.assert_array_equal(host(backend, doubled), 2.0 * host(backend, x))
    np.testing.assert_array_equal(host(backend, shifted), host(backend, x) + 1.0)
    assert sum(seen) == 5 * (BLOCK_NUMBERS // 100 + 3) and (len(seen) > 1) == (backend.kind == "cpu")
    small = backend.asarray(rng.standard_normal((3, 4)))
    seen.clear()
    with backend.activate():
        in_row_blocks(backend, small, compute, outputs=2)
    assert seen == [3]                                   # small arrays are taken whole
