"""The layer kit's own guards: a layer of layers takes its children's device, arrays that would be
left behind by to()/astype() are named, and every kit method checks its arguments (each mistake
gets a typed bpcore error naming the layer, never a crash inside NumPy)."""
import numpy as np
import pytest

import bpcore as bp


class Wrap(bp.Layer):
    """A user container, written as the README says: its child is an attribute."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)

    def backward(self, grad_out):
        return self.inner.backward(grad_out)


class Masked(bp.Layer):
    """Keeps a constant in a plain attribute instead of a buffer (the trap)."""

    def __init__(self):
        super().__init__()
        self.s = self.parameter(np.ones(2))
        self.mask = self.xp.asarray(np.ones(2, dtype=np.float32))

    def forward(self, x):
        return self.check_input(x) * self.s.data * self.mask


# -- a layer of layers lives where its layers live -------------------------------------------------
def test_a_user_container_takes_its_childs_device_and_trains(backend, rng):
    model = Wrap(bp.Linear(2, 1, seed=0).to(backend))
    assert model.backend is model.inner.backend
    X, y = rng.standard_normal((16, 2)), rng.standard_normal((16, 1))
    history = bp.fit(model, bp.MSELoss(), bp.optim.SGD(model.parameters(), lr=0.1), X, y, epochs=2,
                     progress=False)
    assert len(history["loss"]) == 2


def test_a_container_with_weights_of_its_own_refuses_children_elsewhere():
    class Own(Wrap):
        def __init__(self, inner):
            super().__init__(inner)
            self.scale = self.parameter(np.ones(1))

    with pytest.raises(ValueError, match=r"Own: its own weights live on \('numpy', 'float32'\) but its layers on "
                                         r"\[\('numpy', 'float64'\)\]; build everything on the default device"):
        Own(bp.Linear(2, 1).astype("float64"))


def test_one_layer_object_held_twice_is_refused_when_the_layer_is_built():
    class Twice(bp.Layer):
        def __init__(self):
            super().__init__()
            self.first = self.second = bp.Linear(2, 2)

    with pytest.raises(ValueError, match="the same layer object appears twice"):
        Twice()


def test_a_child_moved_on_its_own_is_named_inside_a_transformer_block():
    model = bp.gpt(7, 4, 4, 2, 1, seed=0)
    model[1].attn.to("array_api_strict")
    with pytest.raises(ValueError, match=r"its layer 'attn' .* now lives on array_api_strict"):
        model(np.zeros((1, 3), dtype=np.int64))


# -- arrays that to() and astype() would leave behind ------------------------------------------------
@pytest.mark.parametrize("move, where", [(lambda m: m.to("array_api_strict"), "device"),
                                         (lambda m: m.astype("float64"), "dtype")])
def test_an_array_that_is_not_a_buffer_is_named_and_nothing_moves(move, where):
    model = bp.Sequential(bp.Linear(2, 2), Masked())
    with pytest.raises(TypeError, match=rf"Masked.*attribute 'mask' is an array that is neither a Parameter nor a "
                                        rf"buffer, so it would keep its old {where}.*register_buffer\('mask'"):
        move(model)
    assert model.backend.spec == "numpy" and model.dtype == "float32"          # all or nothing
    assert all(isinstance(p.data, np.ndarray) and p.data.dtype == np.float32 for p in model.parameters())


def test_what_forward_saved_is_dropped_not_refused():
    layer = bp.Linear(2, 2)
    layer(np.ones((1, 2), dtype=np.float32))
    layer.to("array_api_strict").astype("float64")
    with pytest.raises(RuntimeError, match="backward\\(\\) called before forward"):
        layer.backward(layer.xp.ones((1, 2), dtype=layer.xp.float64))


# -- the kit checks its own arguments ------------------------------------------------------------------
def test_register_buffer_refuses_a_name_in_use_and_a_non_bool_persistent():
    layer = bp.Linear(2, 2)
    with pytest.raises(ValueError, match=r"register_buffer: 'W' is already a Parameter"):
        layer.register_buffer("W", np.zeros(2))
    with pytest.raises(ValueError, match=r"register_buffer: 'forward' is already a method or attribute"):
        layer.register_buffer("forward", np.zeros(2))
    with pytest.raises(TypeError, match="persistent must be True or False"):
        layer.register_buffer("stats", np.zeros(2), persistent="no")
    assert [name for name, _ in layer.named_parameters()] == ["W", "b"]
    layer.register_buffer("stats", np.zeros(2))
    layer.register_buffer("stats", np.ones(2), persistent=False)       # the same buffer again: replaced
    assert list(layer.state_dict()) == ["W", "b"] and float(layer.stats[0]) == 1.0


@pytest.mark.parametrize("spec", ["batch", 3, (2.5,), (..., ...), (True,), (-1,)])
def test_a_malformed_shape_spec_is_a_type_error_naming_the_layer(spec):
    with pytest.raises(TypeError, match=r"Masked\(s: \(2,\)\): check_input\(shape=...\): a shape spec"):
        Masked().check_input(np.ones((1, 2), dtype=np.float32), shape=spec)


def test_check_grad_out_and_saved_check_their_arguments():
    layer = bp.Linear(2, 2)
    layer(np.ones((1, 2), dtype=np.float32))
    with pytest.raises(TypeError, match=r"Linear\(2, 2\): check_grad_out\(grad_out, shape\): shape must be a tuple"):
        layer.check_grad_out(np.ones((1, 2), dtype=np.float32), 5)
    with pytest.raises(TypeError, match=r"Linear\(2, 2\): saved\(\) needs the names"):
        layer.saved()


@pytest.mark.parametrize("values, match", [([np.nan, 1.0], "NaN or infinite"), ([1e300], "beyond the largest float32")])
def test_parameter_refuses_values_its_dtype_cannot_hold(values, match):
    class Bad(bp.Layer):
        def __init__(self):
            super().__init__()
            self.W = self.parameter(np.array(values))

    with pytest.raises(ValueError, match=rf"Bad.parameter\(\) holds .*{match}|Bad.parameter\(\) {match}"):
        Bad()


def test_a_parameter_built_by_hand_needs_an_array_of_its_backend():
    backend = bp.Linear(1, 1).backend
    with pytest.raises(TypeError, match=r"backend must be a backends.Backend.*self.parameter\(host_array\)"):
        bp.Parameter(np.ones(2), None)
    with pytest.raises(TypeError, match=r"data must be a floating array of numpy, got str"):
        bp.Parameter("x", backend)
    assert "self.parameter(host_array)" in bp.Parameter.__doc__


def test_layer_list_indices_assignment_and_insert(backend):
    blocks = bp.LayerList([bp.Linear(2, 2).to(backend), bp.Tanh()])
    assert blocks.backend is backend
    with pytest.raises(IndexError, match="LayerList index 5 out of range for 2 layers"):
        blocks[5]
    with pytest.raises(TypeError, match=r"LayerList indices must be ints \(or, to read, slices\), got str"):
        blocks["a"]
    blocks[1] = bp.ReLU()
    blocks.insert(0, bp.Identity())
    assert [type(layer).__name__ for layer in blocks] == ["Identity", "Linear", "ReLU"]
    assert [name for name, _ in blocks.named_parameters()] == ["1.W", "1.b"]
    with pytest.raises(ValueError, match="the same layer object appears twice"):
        blocks.insert(0, blocks[1])
    with pytest.raises(ValueError, match="different devices or dtypes"):
        blocks[0] = bp.Linear(2, 2).to(backend).astype("float64")
    assert [type(layer).__name__ for layer in blocks] == ["Identity", "Linear", "ReLU"]     # left as it was
    with backend.activate():
        x = backend.asarray(np.ones((3, 2), dtype=np.float32))
    for layer in blocks:                               # the inserted and assigned layers run on the list's device
        x = layer(x)
    assert backend.owns(x) and tuple(x.shape) == (3, 2)


def test_modes_and_name_prefixes_are_checked():
    model = bp.mlp([2, 3, 1])
    with pytest.raises(TypeError, match=r"Sequential.train: mode must be True or False, got 'no'"):
        model.train("no")
    with pytest.raises(TypeError, match="prefix must be a str, got int"):
        model.named_parameters(5)
    assert model.training is True


def test_repr_of_a_layer_without_config_shows_its_parameters():
    assert repr(Masked()) == "Masked(s: (2,))"


# -- wrong types are TypeErrors (and still ValueErrors) ---------------------------------------------------
@pytest.mark.parametrize("make, match", [
    (lambda: bp.RNN(3, "4"), r"RNN: hidden_size must be a positive int, got '4' \(a str\)"),
    (lambda: bp.LSTM(3, 4, seed=1.5), r"LSTM: seed must be a non-negative int"),
    (lambda: bp.optim.SGD(bp.Linear(2, 2).parameters(), lr="fast"), r"SGD: lr must be a finite number"),
    (lambda: bp.TransformerBlock(8, "2"), r"TransformerBlock: num_heads must be a positive int"),
])
def test_an_argument_of_the_wrong_type_is_an_argument_type_error(make, match):
    with pytest.raises(bp.ArgumentTypeError, match=match) as caught:
        make()
    assert isinstance(caught.value, TypeError) and isinstance(caught.value, ValueError)


def test_out_of_range_stays_a_value_error_and_names_the_block():
    with pytest.raises(ValueError, match="Linear: n_out must be a positive int, got -1") as caught:
        bp.Linear(2, -1)
    assert not isinstance(caught.value, TypeError)
    with pytest.raises(ValueError, match=r"TransformerBlock: embed_dim \(8\) must be a multiple of num_heads \(3\)"):
        bp.TransformerBlock(8, 3)
    with pytest.raises(TypeError, match="TransformerBlock: causal must be True or False, got 1"):
        bp.TransformerBlock(8, 2, causal=1)
    with pytest.raises(ValueError, match=r"generate: prompt_tokens is empty"):
        bp.generate(bp.gpt(7, 4, 4, 2, 1, seed=0), [], 3)


# -- integer indices of any width --------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32"])
def test_labels_and_indices_of_any_integer_dtype_give_what_int64_gives(backend, dtype):
    codes = np.array([[0, 1], [2, 1]])
    as_dtype, as_int64 = backend.asarray(codes.astype(dtype)), backend.asarray(codes)
    embedding = bp.Embedding(5, 2, seed=0).to(backend)
    np.testing.assert_array_equal(backend.to_numpy(embedding(as_dtype)), backend.to_numpy(embedding(as_int64)))
    loss = bp.SoftmaxCrossEntropyLoss()
    logits = backend.asarray(np.arange(12, dtype=np.float32).reshape(4, 3) / 7)
    labels, labels_int64 = backend.asarray(codes.reshape(4).astype(dtype)), backend.asarray(codes.reshape(4))
    assert float(backend.to_numpy(loss.forward(logits, labels))) == \
        float(backend.to_numpy(loss.forward(logits, labels_int64)))
    loss.check(labels)


def test_a_uint64_index_beyond_int64_is_refused_not_wrapped(backend):
    if not backend.sync_free:
        pytest.skip("on a GPU indices are checked where data enter (fit, predict), not per call")
    huge = backend.asarray(np.array([[2 ** 63 + 5, 1]], dtype=np.uint64))
    with pytest.raises(ValueError, match=r"Embedding\(5, 2\): input holds 9223372036854775813, beyond the largest "
                                         r"int64"):
        bp.Embedding(5, 2).to(backend)(huge)


def test_host_floats_that_overflow_float32_are_refused_when_a_model_is_called(backend):
    model = bp.mlp([2, 3, 1], seed=0).to(backend)
    with pytest.raises(ValueError, match=r"Linear\(2, 3\) \(layer '0'\): input holds values up to 1e\+39 in "
                                         r"magnitude, which overflow float32"):
        model(np.array([[1e39, 0.0]]))
    assert backend.to_numpy(model(np.array([[3e38, 0.0]]))).shape == (1, 1)      # within range: accepted


# -- found in review -----------------------------------------------------------------------------------
def test_a_container_that_skips_super_init_is_told_to_call_it():
    class NoSuper(bp.Layer):
        def __init__(self):
            self.inner = bp.ReLU()

    with pytest.raises(TypeError, match=r"NoSuper.__init__ must call super\(\).__init__\(\) first"):
        NoSuper()


def test_adopting_the_childrens_device_refuses_a_stray_array_of_the_container():
    class Scaled(Wrap):
        def __init__(self, inner):
            super().__init__(inner)
            self.scale = self.xp.asarray(np.ones(2, dtype=np.float32))

    with pytest.raises(TypeError, match=r"Scaled.__init__\(\): attribute 'scale' is an array"):
        Scaled(bp.Linear(2, 2).to("array_api_strict"))


def test_numpy_scalars_are_not_strays_and_numpy_integers_index_a_layer_list():
    layer = bp.Linear(2, 2)
    layer.flag, layer.scale = np.bool_(True), np.float32(2.0)
    layer.to("array_api_strict").astype("float64")
    blocks = bp.LayerList([bp.Linear(2, 2), bp.Tanh()])
    assert isinstance(blocks[np.int64(1)], bp.Tanh)
    blocks.insert(np.int64(0), bp.ReLU())
    assert isinstance(blocks[0], bp.ReLU)


def test_early_stopping_keeps_its_best_when_min_delta_changes():
    stop = bp.EarlyStopping(monitor="loss", patience=2)
    stop._monitor.improved({"loss": 0.5})
    stop.min_delta = 0.01
    assert stop.best == 0.5 and stop.min_delta == 0.01
    stop.mode = "max"                                   # another question: no best yet
    assert stop.best == -np.inf


def test_batch_norm_counts_batches_whichever_momentum_is_set_later():
    layer = bp.BatchNorm1d(2, momentum=None)
    x = np.random.default_rng(0).standard_normal((8, 2)).astype(np.float32)
    layer(x)
    layer.momentum = 0.1
    layer(x)
    layer.momentum = None
    layer(x)
    assert int(layer.num_batches_tracked) == 3


def test_the_overflow_check_looks_past_inf_and_nan():
    model = bp.mlp([2, 1], seed=0)
    with pytest.raises(ValueError, match=r"input holds values up to 1e\+39 in magnitude"):
        model(np.array([[np.inf, -1e39], [np.nan, 0.0]]))


def test_a_setting_unset_is_an_attribute_error_and_old_pickles_still_load():
    assert not hasattr(bp.Dropout.__new__(bp.Dropout), "p")
    state = bp.Dropout(0.3, seed=1).__getstate__()
    state["p"] = state.pop("_p_setting")              # as a pickle from before p was checked held it
    layer = bp.Dropout.__new__(bp.Dropout)
    layer.__setstate__(state)
    assert layer.p == 0.3 and layer(np.ones((2, 3), dtype=np.float32)).shape == (2, 3)


def test_a_backward_that_returns_nothing_is_named_by_the_sequential():
    class NoReturn(bp.Layer):
        def forward(self, x):
            x = self.check_input(x)
            self.save_for_backward(shape=tuple(x.shape))
            return x

        def backward(self, grad_out):
            self.check_grad_out(grad_out, self.saved("shape"))          # forgot to return it

    model = bp.Sequential(bp.Linear(2, 3), NoReturn(), bp.Linear(3, 1))
    model(np.ones((4, 2), dtype=np.float32))
    with pytest.raises(TypeError, match=r"Linear\(2, 3\) \(layer '0'\): grad_out must be an array .* got NoneType. "
                                        r"That grad_out is what the backward of NoReturn\(\) \(layer '1'\) returned"):
        model.backward(np.ones((4, 1), dtype=np.float32))


def test_a_layer_that_skips_super_init_is_told_even_without_children():
    class Bare(bp.Layer):
        def __init__(self):
            self.k = 2

    with pytest.raises(TypeError, match=r"Bare.__init__ must call super\(\).__init__\(\) first"):
        Bare()


def test_gradcheck_says_a_stray_array_stopped_its_float64_copy():
    with pytest.raises(TypeError, match=r"gradcheck: making the float64 copy it checks: Masked\(s: \(2,\)\)"
                                        r".astype\(\): attribute 'mask'"):
        bp.gradcheck(Masked(), bp.MSELoss(), np.ones((3, 2)), np.ones((3, 2)))
