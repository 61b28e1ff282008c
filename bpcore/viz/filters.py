"""What a convolutional net looks at: its first layer's filters, and the feature maps of one image."""
from __future__ import annotations

import math

import numpy as np

from ..nn.containers import Sequential
from ..nn.conv import Conv2d
from ._plot import _check_model, _figure, _finish, _host


def _first_conv(model, what):
    if isinstance(model, Conv2d):
        return model
    _check_model(model, what)
    for layer in model.modules():
        if isinstance(layer, Conv2d):
            return layer
    raise ValueError(f"{what}: the model has no Conv2d layer to show")


def _grid(fig, count):
    cols = math.ceil(math.sqrt(count))
    rows = math.ceil(count / cols)
    return [fig.add_subplot(rows, cols, i + 1) for i in range(count)]


def filters(model, max_filters: int = 64, path=None):
    """The first Conv2d's kernels W (OC, C, kH, kW), one tile per filter (red > 0 > blue).

    With 3 input channels each filter is shown as one RGB tile (scaled to [0, 1]); otherwise
    one tile per (filter, input channel) for the first 4 input channels, all on one colour
    scale symmetric about 0, with its colour bar. Returns the Figure; ``fig.weights`` is the
    host array drawn.
    """
    what = "filters"
    conv = _first_conv(model, what)
    if isinstance(max_filters, bool) or not isinstance(max_filters, int) or max_filters < 1:
        raise ValueError(f"{what}: max_filters must be a positive int, got {max_filters!r}")
    weights = _host(conv.W.data, f"{what}: W")[:max_filters].astype(np.float64)
    out_channels, in_channels = weights.shape[:2]
    rgb = in_channels == 3
    tiles = ([(o, None) for o in range(out_channels)] if rgb else
             [(o, c) for o in range(out_channels) for c in range(min(in_channels, 4))])
    fig = _figure(figsize=(min(12, 1.0 + 0.9 * math.ceil(math.sqrt(len(tiles)))),) * 2)
    limit = float(np.abs(weights).max()) or 1.0
    axes, image = _grid(fig, len(tiles)), None
    for ax, (o, c) in zip(axes, tiles):
        if rgb:
            tile = weights[o].transpose(1, 2, 0)
            ax.imshow((tile - tile.min()) / (np.ptp(tile) or 1.0), interpolation="nearest")
        else:       # one scale for every tile, symmetric about 0: white is 0, the colour bar says the rest
            image = ax.imshow(weights[o, c], cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{o}" if c is None or in_channels == 1 else f"{o}.{c}", fontsize=7)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.6, label="weight (red > 0, blue < 0)")
    fig.suptitle(f"first-layer filters: {conv!r}", fontsize=9)
    fig.weights = weights
    return _finish(fig, path)


def feature_maps(model, image, layer: int | None = None, max_maps: int = 32, path=None):
    """The channels a Sequential CNN computes for one image, after its layer number ``layer``.

    Args:
        model: a Sequential starting with convolutions.
        image: one image (C, H, W) or a batch of one (1, C, H, W), host NumPy or on the device.
        layer: index into ``model.layers`` whose output is shown; default the first Conv2d.
        max_maps: at most this many channels are drawn.
    Returns:
        The Figure (the input first, then one tile per channel on one shared colour scale, with
        its colour bar); ``fig.maps`` is the host array (channels, H', W') drawn.
    """
    what = "feature_maps"
    if not isinstance(model, Sequential):
        raise TypeError(f"{what}: model must be a bpcore Sequential, got {type(model).__name__}")
    x = _host(image, f"{what}: image")
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"{what}: image must be (C, H, W) or (1, C, H, W), got shape {tuple(x.shape)}")
    if layer is None:
        _first_conv(model, what)
        layer = next(i for i, inner in enumerate(model.layers) if isinstance(inner, Conv2d))
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < len(model.layers):
        raise ValueError(f"{what}: layer must be an index into the model's {len(model.layers)} layers, got {layer!r}")
    was_training = model.training
    model.eval()
    try:
        out = x
        for inner in model.layers[:layer + 1]:
            out = inner.forward(out)
    finally:
        model.train(was_training)
    maps = _host(out, f"{what}: output")[0]
    if maps.ndim != 3:
        raise ValueError(f"{what}: layer {layer} ({model.layers[layer]!r}) gives shape {tuple(out.shape)}, "
                         f"not channel maps (N, C, H, W)")
    maps = maps[:max_maps].astype(np.float64)
    fig = _figure(figsize=(min(12, 1.9 + 1.0 * math.ceil(math.sqrt(len(maps) + 1))),
                           min(12, 1.2 + 1.0 * math.ceil(math.sqrt(len(maps) + 1)))))
    axes = _grid(fig, len(maps) + 1)
    axes[0].imshow(x[0].transpose(1, 2, 0) if x.shape[1] == 3 else x[0, 0], cmap="gray", interpolation="nearest")
    axes[0].set_title("input", fontsize=7)
    # one colour scale for every channel, so tiles can be compared and the colour bar reads them:
    # symmetric red/blue about 0 when some values are negative (before a ReLU), else from 0
    high = float(np.abs(maps).max()) if maps.size and np.isfinite(maps).all() else 1.0
    high = high or 1.0
    signed = bool(maps.size) and float(maps.min()) < 0
    cmap, low = ("RdBu_r", -high) if signed else ("viridis", 0.0)
    image = None
    for i, (ax, channel) in enumerate(zip(axes[1:], maps)):
        image = ax.imshow(channel, cmap=cmap, vmin=low, vmax=high, interpolation="nearest")
        ax.set_title(str(i), fontsize=7)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if image is not None:
        fig.colorbar(image, ax=axes[1:], shrink=0.6,
                     label="activation (red > 0, blue < 0)" if signed else "activation")
    fig.suptitle(f"feature maps after layer {layer}: {model.layers[layer]!r}", fontsize=9)
    fig.maps = maps
    return _finish(fig, path)
