"""Sizes at the edges: empty batches and empty axes pass through every layer or are refused clearly,
window sizes are bounded, and a layer moved away from its model is named at the model's next call."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bpcore as bp

# (layer factory, one sample's shape): every layer must take a batch of 0 samples forward and back.
LAYERS = {
    "Linear": (lambda: bp.Linear(3, 2), (3,)),
    "Linear on sequences": (lambda: bp.Linear(3, 2), (4, 3)),
    "ReLU": (bp.ReLU, (3,)), "LeakyReLU": (bp.LeakyReLU, (3,)), "Sigmoid": (bp.Sigmoid, (3,)),
    "Tanh": (bp.Tanh, (3,)), "GELU": (bp.GELU, (3,)), "Softmax": (bp.Softmax, (3,)), "Identity": (bp.Identity, (3,)),
    "LayerNorm": (lambda: bp.LayerNorm(3), (3,)), "Dropout": (lambda: bp.Dropout(0.5, seed=0), (3,)),
    "BatchNorm1d (eval)": (lambda: bp.BatchNorm1d(3).eval(), (3,)),
    "BatchNorm2d (eval)": (lambda: bp.BatchNorm2d(1).eval(), (1, 4, 4)),
    "Residual": (lambda: bp.Residual(bp.Linear(3, 3)), (3,)),
    "Sequential": (lambda: bp.mlp([3, 4, 2]), (3,)),
    "Conv2d": (lambda: bp.Conv2d(1, 2, 3, padding=1), (1, 5, 5)),
    "MaxPool2d": (lambda: bp.MaxPool2d(2), (1, 4, 4)), "AvgPool2d": (lambda: bp.AvgPool2d(2), (1, 4, 4)),
    "AdaptiveAvgPool2d": (bp.AdaptiveAvgPool2d, (1, 4, 4)), "Flatten": (bp.Flatten, (1, 4, 4)),
}
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_an_empty_batch_passes_forward_and_backward(backend, name):
    make, sample = LAYERS[name]
    layer = make().to(backend)
    out = layer(np.zeros((0,) + sample, dtype=np.float32))
    assert out.shape[0] == 0
    grad_in = layer.backward(backend.asarray(np.zeros(tuple(out.shape), dtype=np.float32)))
    assert tuple(grad_in.shape) == (0,) + sample


@settings(max_examples=40, deadline=None)
@given(batch=st.integers(0, 3), width=st.integers(0, 3), name=st.sampled_from(["ReLU", "Tanh", "Softmax", "GELU"]))
def test_elementwise_layers_take_any_batch_and_width_including_zero(batch, width, name):
    layer = getattr(bp, name)()
    x = np.random.default_rng(batch * 7 + width).standard_normal((batch, width)).astype(np.float32)
    out = layer(x)
    assert out.shape == x.shape and np.all(np.isfinite(out))
    assert layer.backward(np.ones_like(x)).shape == x.shape


def test_an_empty_image_is_refused_where_it_has_no_meaning():
    with pytest.raises(ValueError, match=r"AdaptiveAvgPool2d.*an image of 0x0 pixels has no average"):
        bp.AdaptiveAvgPool2d(1)(np.zeros((2, 1, 0, 0), dtype=np.float32))
    with pytest.raises(ValueError, match=r"Conv2d.*kernel spans 3x3.*padded input is only 0x0"):
        bp.Conv2d(1, 2, 3)(np.zeros((2, 1, 0, 0), dtype=np.float32))


def test_a_training_batch_of_one_for_batchnorm_leads_with_the_rule():
    with pytest.raises(ValueError, match=r"^BatchNorm1d.*: a training batch needs more than 1 sample per channel"):
        bp.BatchNorm1d(3)(np.zeros((1, 3), dtype=np.float32))


@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(["kernel_size", "stride", "padding", "dilation"]),
       value=st.one_of(st.integers(2 ** 16 + 1, 2 ** 64), st.tuples(st.just(1), st.integers(2 ** 16 + 1, 2 ** 40))))
def test_window_sizes_beyond_any_image_are_refused_by_name(name, value):
    arguments = {"kernel_size": 1, name: value}
    with pytest.raises(ValueError, match=rf"Conv2d: {name}(\[1\])? must be (a positive int|an int >= 0) and <= 65536"):
        bp.Conv2d(1, 1, **arguments)


def test_a_weight_too_big_for_memory_says_how_big():
    with pytest.raises(MemoryError, match=r"a weight of shape \(1099511627776, 1099511627776\) needs [\d,]+ bytes"):
        bp.Linear(2 ** 40, 2 ** 40)


def test_a_layer_moved_away_from_its_model_is_named_at_the_next_call():
    shared = bp.Linear(3, 3, seed=0)
    first = bp.Sequential(shared, bp.Tanh())
    second = bp.Sequential(bp.Linear(3, 3, seed=1), shared)
    second.to("array_api_strict")                    # moves the shared layer too
    with pytest.raises(ValueError, match=r"Sequential of 2 layers: its layer '0' \(Linear\(3, 3\)\) now lives on "
                                         r"array_api_strict \(float32\), but this model lives on numpy \(float32\)"
                                         r".*another model"):
        first(np.ones((2, 3), dtype=np.float32))
    second.to("numpy").astype("float64")             # casts the shared layer too
    with pytest.raises(ValueError, match=r"its layer '0' \(Linear\(3, 3\)\) now lives on numpy \(float64\), but "
                                         r"this model lives on numpy \(float32\). It was moved or cast"):
        first(np.ones((2, 3), dtype=np.float32))
    block = bp.Linear(3, 3, seed=2)
    residual = bp.Residual(block)
    block.to("array_api_strict")
    with pytest.raises(ValueError, match=r"Residual: its layer 'block' \(Linear\(3, 3\)\) now lives on "
                                         r"array_api_strict"):
        residual(np.ones((2, 3), dtype=np.float32))


def test_windows_too_big_for_memory_name_the_layer_its_arguments_and_the_bytes():
    layer = bp.Conv2d(1, 1, 3, padding=60000)
    with pytest.raises(MemoryError, match=r"Conv2d\(1, 1, .*padding \(60000, 60000\) needs [\d,]+ bytes padded and "
                                          r"[\d,]+ bytes for its [\d,]+ x 9 windows"):
        layer(np.zeros((64, 1, 8, 8), dtype=np.float32))
    huge = np.broadcast_to(np.float32(0), (2 ** 20, 64, 1024, 1024))     # 256 TB of zeros that take no memory
    with pytest.raises(MemoryError, match=r"MaxPool2d.*needs [\d,]+ bytes padded"):
        bp.MaxPool2d(3, padding=1)(huge)


def test_a_memory_error_while_building_names_the_layer_and_its_arguments_users_layers_too():
    class Huge(bp.Layer):
        def __init__(self, width, scale=1.0):
            super().__init__()
            self.table = self.parameter(np.ones((width, width)))     # the user's own host allocation

    with pytest.raises(MemoryError, match=r"^Huge\(width=2097152\): Unable to allocate"):
        Huge(2 ** 21)
    with pytest.raises(MemoryError, match=r"^BatchNorm1d\(n=1099511627776\): "):   # named once, by the outer class
        bp.BatchNorm1d(2 ** 40)


SEQUENCE_LAYERS = {
    "RNN": (lambda: bp.RNN(3, 4), "float32"), "LSTM": (lambda: bp.LSTM(3, 4), "float32"),
    "GRU": (lambda: bp.GRU(3, 4), "float32"), "MultiHeadAttention": (lambda: bp.MultiHeadAttention(3, 1), "float32"),
    "TransformerBlock": (lambda: bp.TransformerBlock(3, 1), "float32"),
    "Embedding": (lambda: bp.Embedding(5, 3), "int64"),
    "gpt": (lambda: bp.gpt(5, 4, 3, 1, 1), "int64"),
}


@pytest.mark.parametrize("name", sorted(SEQUENCE_LAYERS))
@pytest.mark.parametrize("n, t", [(0, 2), (2, 0)], ids=["no sequences", "empty sequences"])
def test_sequence_layers_take_no_sequences_and_name_empty_ones(backend, name, n, t):
    make, dtype = SEQUENCE_LAYERS[name]
    layer = make().to(backend)
    x = np.zeros((n, t) if dtype == "int64" else (n, t, 3), dtype=dtype)
    try:
        out = layer(x)
    except ValueError as error:                  # only an empty time axis may be refused, by the layer's name
        assert t == 0 and "the sequence is empty" in str(error), str(error)
        return
    assert tuple(out.shape[:2]) == (n, t)
    grad_in = layer.backward(backend.asarray(np.zeros(tuple(out.shape), dtype=np.float32)))
    assert grad_in is None if dtype == "int64" else tuple(grad_in.shape) == x.shape
