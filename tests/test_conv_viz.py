"""The CNN pictures: first-layer filters and feature maps (skipped without matplotlib)."""
from __future__ import annotations

import numpy as np
import pytest

import bpcore as bp

pytest.importorskip("matplotlib")


def cnn(in_channels=1):
    return bp.Sequential(bp.Conv2d(in_channels, 5, 3, padding=1, seed=0), bp.ReLU(), bp.MaxPool2d(2),
                         bp.Flatten(), bp.Linear(5 * 3 * 3, 2, seed=1))


def test_filters_draw_every_kernel_of_the_first_conv(tmp_path, backend):
    model = cnn().to(backend)
    fig = bp.viz.filters(model, path=tmp_path / "filters.png")
    np.testing.assert_array_equal(fig.weights, backend.to_numpy(model[0].W.data))
    assert len(fig.axes) == 5 + 1 and (tmp_path / "filters.png").stat().st_size > 1000     # 5 tiles, a colour bar
    assert fig.axes[-1].get_ylabel() == "weight (red > 0, blue < 0)"
    limit = np.abs(fig.weights).max()                            # one scale, symmetric about 0, for every tile
    assert all(ax.images[0].get_clim() == (-limit, limit) for ax in fig.axes[:5])
    rgb = bp.viz.filters(cnn(3), max_filters=2)
    assert rgb.weights.shape == (2, 3, 3, 3) and len(rgb.axes) == 2


def test_feature_maps_show_one_image_after_a_layer(rng, backend):
    model = cnn().to(backend)
    image = rng.random((1, 6, 6)).astype("float32")
    fig = bp.viz.feature_maps(model, image, layer=1)
    expected = np.maximum(backend.to_numpy(model.layers[0](image[None])), 0)[0]
    np.testing.assert_allclose(fig.maps, expected, rtol=1e-6)
    assert len(fig.axes) == 6 + 1                               # the input, 5 channels, a colour bar
    assert fig.axes[-1].get_ylabel() == "activation"           # after a ReLU: from 0, one scale for all
    assert all(ax.images[0].get_clim() == (0.0, fig.maps.max()) for ax in fig.axes[1:6])
    assert bp.viz.feature_maps(model, image[None]).maps.shape == (5, 6, 6)   # default: the first Conv2d


def test_cnn_figures_refuse_what_they_cannot_draw(rng):
    with pytest.raises(ValueError, match="no Conv2d"):
        bp.viz.filters(bp.mlp([2, 3, 1]))
    with pytest.raises(ValueError, match=r"image must be \(C, H, W\)"):
        bp.viz.feature_maps(cnn(), rng.random((2, 1, 6, 6)))
    with pytest.raises(ValueError, match="not channel maps"):
        bp.viz.feature_maps(cnn(), rng.random((1, 6, 6)), layer=3)
    with pytest.raises(ValueError, match="layer must be an index"):
        bp.viz.feature_maps(cnn(), rng.random((1, 6, 6)), layer=9)
