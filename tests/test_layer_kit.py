"""The public layer kit, as a new user meets it: the README's own layer, LayerList, buffers, and the
mistakes a user makes (each gets a bpcore message that says what to do)."""
import os
import re

import numpy as np
import pytest

import backends
import bpcore as bp

from helpers import host
from forging import forge, split

README = os.path.join(os.path.dirname(__file__), os.pardir, "README.md")


def readme_block():
    """The python block of the README's "Write your own layer" section that defines the layer and model."""
    text = open(README, encoding="utf-8").read()
    section = text[text.index("## Write your own layer"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def run_readme_block():
    names = {}
    exec(compile(readme_block(), "README.md", "exec"), names)
    return names


def test_the_readme_layer_uses_public_names_only():
    code = readme_block()
    assert "class " in code and "def backward" in code and ".parameter(" in code
    assert not re.search(r"\._[a-z]", code), "the README's layer touches an underscore name"


def test_the_readme_layer_gradchecks_trains_saves_loads_and_moves(backend, tmp_path):
    spec = backend.spec
    names = run_readme_block()
    model, X, y, loss_fn = names["model"], names["X"], names["y"], names["loss_fn"]
    model.to(spec)
    with pytest.raises(RuntimeError, match=r"Sequential of 3 layers: backward\(\) called before forward\(\); "
                                           r"run a forward pass first"):
        model.backward(model.device.asarray(np.ones((3, 1), dtype=np.float32)))
    with pytest.raises(RuntimeError, match=r"LowRank\(n_in=2, n_out=16, rank=2\) \(layer '0'\): backward\(\) "
                                           r"called before forward\(\)"):
        model[0].backward(model.device.asarray(np.ones((3, 16), dtype=np.float32)))
    report = bp.gradcheck(model, loss_fn, X, y)
    assert report.passed, str(report)
    before = bp.evaluate(model, loss_fn, X, y)["loss"]
    hist = bp.fit(model, loss_fn, bp.optim.Adam(model.parameters(), lr=0.05), X, y, epochs=30, progress=False)
    assert hist["loss"][-1] < 0.5 * before
    path = tmp_path / "lowrank.bpc"
    model.save(path)
    loaded = bp.load(path, device=spec)
    assert type(loaded[0]).__name__ == "LowRank" and loaded[0].config() == {"n_in": 2, "n_out": 16, "rank": 2}
    np.testing.assert_array_equal(bp.predict(loaded, X), bp.predict(model, X))
    moved = loaded.to("numpy")
    np.testing.assert_allclose(bp.predict(moved, X), bp.predict(model, X), rtol=1e-6, atol=1e-6)


def test_a_wrong_width_names_the_layer_and_the_shapes():
    model = run_readme_block()["model"]
    with pytest.raises(ValueError, match=r"LowRank\(n_in=2, n_out=16, rank=2\) \(layer '0'\): expected input "
                                         r"of shape \(batch, 2\), got \(4, 3\)"):
        model(np.ones((4, 3), dtype=np.float32))


# -- a registered low-rank layer is judged by what it holds, not by its config's key names ----------
@bp.register_layer
class Factored(bp.Layer):
    """y = x @ U @ V, U (n_in, rank), V (rank, n_out): 4,000 numbers for a 1000 x 1000 map of rank 2."""

    def __init__(self, n_in, n_out, rank, seed=0):
        super().__init__()
        self.n_in, self.n_out, self.rank = n_in, n_out, rank
        rng = bp.init.host_rng(seed)
        self.U = self.parameter(bp.init.normal((n_in, rank), 1.0 / np.sqrt(n_in), rng))
        self.V = self.parameter(bp.init.normal((rank, n_out), 1.0 / np.sqrt(rank), rng))

    def config(self):
        return {"n_in": self.n_in, "n_out": self.n_out, "rank": self.rank}

    def forward(self, x):
        x = self.check_input(x, shape=("batch", self.n_in))
        h = x @ self.U.data
        self.save_for_backward(x=x, h=h)
        return h @ self.V.data

    def backward(self, grad_out):
        x, h = self.saved("x", "h")
        grad_h = self.check_grad_out(grad_out, (x.shape[0], self.n_out)) @ self.V.data.T
        self.V.accumulate_grad(h.T @ grad_out)
        self.U.accumulate_grad(x.T @ grad_h)
        return grad_h @ self.U.data.T


def test_a_low_rank_layer_with_big_config_sizes_saves_and_loads(tmp_path):
    model = bp.Sequential(Factored(1000, 1000, 2))
    model.save(tmp_path / "f.bpc")
    loaded = bp.load(tmp_path / "f.bpc")
    np.testing.assert_array_equal(loaded[0].U.data, model[0].U.data)


def test_a_forged_config_that_the_file_does_not_back_is_refused_before_allocating(tmp_path):
    path = tmp_path / "f.bpc"
    bp.Sequential(Factored(10, 10, 2)).save(path)
    header, payload = split(path.read_bytes())
    header["architecture"]["layers"][0]["config"]["rank"] = 10 ** 8      # 8 GB of float64 draws, from 160 numbers
    bad = tmp_path / "forged.bpc"
    bad.write_bytes(forge(header, payload))
    with pytest.raises(bp.CheckpointError, match=r"Factored .* at '0' would create 1000000000 or more numbers"):
        bp.load(bad)


# -- save refuses what its loader could not rebuild, writing nothing -------------------------------
@bp.register_layer
class ForgetsAnArgument(bp.Layer):
    def __init__(self, n, scale=2.0):
        super().__init__()
        self.n, self.scale = n, scale
        self.w = self.parameter(np.full(n, scale))

    def config(self):
        return {"scale": self.scale}                 # n is missing: the constructor cannot run


@bp.register_layer
class WrongSize(ForgetsAnArgument):
    def config(self):
        return {"n": self.n + 1, "scale": self.scale}   # rebuilds, with another shape


class NotRegistered(ForgetsAnArgument):
    def config(self):
        return {"n": self.n, "scale": self.scale}


@pytest.mark.parametrize("layer, error, match", [
    (ForgetsAnArgument(3), TypeError, r"ForgetsAnArgument\(\*\*config\(\)\) fails.*config\(\) must return the "
                                      r"constructor's arguments"),
    (WrongSize(3), ValueError, r"rebuilt from its config\(\).*\(4,\).*the layer holds.*\(3,\)"),
    (NotRegistered(3), TypeError, r"register it with bp.register_layer"),
])
def test_save_refuses_a_layer_its_loader_could_not_rebuild_and_writes_nothing(tmp_path, layer, error, match):
    path = tmp_path / "never.bpc"
    with pytest.raises(error, match=match):
        bp.Sequential(layer, bp.Tanh()).save(path)
    assert not path.exists() and list(tmp_path.iterdir()) == []


# -- LayerList and containers ----------------------------------------------------------------------
class Stack(bp.Layer):
    """Blocks of Linear + Tanh held in a LayerList; backward calls theirs in reverse."""

    def __init__(self, n, depth, seed=0):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.blocks = bp.LayerList([bp.Sequential(bp.Linear(n, n, seed=rng), bp.Tanh()) for _ in range(depth)])
        self.head = bp.Linear(n, 1, seed=rng)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.head(x)

    def backward(self, grad_out):
        grad = self.head.backward(grad_out)
        for block in reversed(self.blocks):
            grad = block.backward(grad)
        return grad


def test_a_layer_list_is_found_by_parameters_to_and_state_dict(backend, rng):
    spec = backend.spec
    model = Stack(3, 2).to(spec)
    names = [name for name, _ in model.named_parameters()]
    assert names == ["blocks.0.0.W", "blocks.0.0.b", "blocks.1.0.W", "blocks.1.0.b", "head.W", "head.b"]
    assert list(model.state_dict()) == names
    assert all(model.device.owns(p.data) for p in model.parameters())
    assert len(model.blocks) == 2 and isinstance(model.blocks[1], bp.Sequential)
    assert [type(b) for b in model.blocks] == [bp.Sequential, bp.Sequential]
    X, y = rng.standard_normal((6, 3)), rng.standard_normal((6, 1))
    assert bp.gradcheck(model, bp.MSELoss(), X, y).passed
    model.blocks.append(bp.Sequential(bp.Linear(3, 3, seed=9), bp.Tanh()).to(spec))
    assert "blocks.2.0.W" in dict(model.named_parameters())
    with pytest.raises(TypeError, match="LayerList: item 3 must be a Layer"):
        model.blocks.append("not a layer")
    with pytest.raises(TypeError, match="does not run them"):
        model.blocks(X)


def test_a_plain_list_of_layers_is_refused_naming_layer_list():
    class Hidden(bp.Layer):
        def __init__(self):
            super().__init__()
            self.blocks = [bp.Linear(2, 2), bp.Linear(2, 2)]

    with pytest.raises(TypeError, match=r"Hidden.blocks is a plain list of layers.*bp.LayerList"):
        Hidden().parameters()


def test_a_container_without_backward_says_how_to_write_one():
    class Pair(bp.Layer):
        def __init__(self):
            super().__init__()
            self.first, self.second = bp.Linear(2, 2), bp.Tanh()

        def forward(self, x):
            return self.second(self.first(x))

    pair = Pair()
    pair(np.ones((1, 2), dtype=np.float32))
    with pytest.raises(TypeError, match=r"Pair holds layers \(first, second\) but does not define backward.*"
                                        r"reverse order"):
        pair.backward(np.ones((1, 2), dtype=np.float32))


def test_repr_shows_the_config_and_the_children():
    assert repr(Factored(4, 3, 2)) == "Factored(n_in=4, n_out=3, rank=2)"
    assert repr(Stack(2, 1)).splitlines()[:3] == ["Stack(", "  (blocks): LayerList(", "    (0): Sequential("]


# -- buffers, the cache, accumulate_grad ---------------------------------------------------------------
class Centered(bp.Layer):
    """y = x - mean, a constant buffer (saved) and a scratch one (moved, not saved)."""

    def __init__(self, n):
        super().__init__()
        self.register_buffer("mean", np.arange(n, dtype=np.float64))
        self.register_buffer("scratch", np.ones(n), persistent=False)

    def forward(self, x):
        x = self.check_input(x)
        self.save_for_backward(shape=tuple(x.shape))
        return x - self.mean * self.scratch

    def backward(self, grad_out):
        return self.check_grad_out(grad_out, self.saved("shape"))


def test_buffers_move_cast_and_save(backend):
    layer = Centered(3).to(backend).astype("float64")
    assert layer.device.owns(layer.mean) and layer.device.owns(layer.scratch)
    assert str(layer.mean.dtype).endswith("float64") and str(layer.scratch.dtype).endswith("float64")
    assert list(layer.state_dict()) == ["mean"]
    np.testing.assert_array_equal(host(layer.device, layer(np.zeros((1, 3)))), [[0.0, -1.0, -2.0]])


def test_saved_names_what_forward_did_not_keep():
    class Forgetful(bp.Layer):
        def forward(self, x):
            self.save_for_backward(x=self.check_input(x))
            return x

        def backward(self, grad_out):
            return self.saved("y")

    layer = Forgetful()
    layer(np.ones((1, 2), dtype=np.float32))
    with pytest.raises(RuntimeError, match=r"asked for \['y'\], but forward kept only \['x'\]"):
        layer.backward(np.ones((1, 2), dtype=np.float32))


def test_accumulate_grad_checks_what_it_is_given(backend):
    spec, be = backend.spec, backend
    p = bp.Linear(2, 3).to(spec).W
    with pytest.raises(ValueError, match=r"gradient of shape \(3, 2\) for a parameter of shape \(2, 3\)"):
        p.accumulate_grad(be.asarray(np.ones((3, 2), dtype=np.float32)))
    with pytest.raises(TypeError, match="gradient of dtype float64 for a parameter of dtype float32"):
        p.accumulate_grad(be.asarray(np.ones((2, 3))))
    other = "numpy" if spec != "numpy" else "array_api_strict"
    with pytest.raises(TypeError, match="must be an array of"):
        p.accumulate_grad(backends.get(other).asarray(np.ones((2, 3), dtype=np.float32)))
    first = be.asarray(np.ones((2, 3), dtype=np.float32))
    p.accumulate_grad(first)
    p.accumulate_grad(first)
    np.testing.assert_array_equal(host(be, first), np.ones((2, 3)))        # never changed in place
    np.testing.assert_array_equal(host(be, p.grad), 2 * np.ones((2, 3)))
