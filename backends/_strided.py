"""The fast paths NumPy and CuPy share (backends/__init__.py registers them for both).

Both libraries can view an array with any strides (``as_strided``) and scatter values by flat
index, two things the Array API standard leaves out. Each function takes the library's module
(or its ``as_strided``) first, bound below for each library, and gives exactly what the portable
lines in bpcore/nn/windows.py give (tests/test_fast_paths.py checks it).
"""
from __future__ import annotations

import functools

import numpy as np


def sliding_windows(as_strided, x_pad, kernel, stride, dilation, out_hw):
    """The (N, OH, OW, kH, kW, C) windows of channels-last ``x_pad`` (N, Hp, Wp, C) as one strided
    view: ``[n, i, j, a, b, c] = x_pad[n, i sH + a dH, j sW + b dW, c]``, nothing copied (the
    layer's reshape into im2col rows is then the only copy, one pass)."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, stride, dilation, out_hw
    n, c = x_pad.shape[0], x_pad.shape[3]
    s_n, s_h, s_w, s_c = x_pad.strides
    return as_strided(x_pad, shape=(n, oh, ow, kh, kw, c),
                      strides=(s_n, s_h * sh, s_w * sw, s_h * dh, s_w * dw, s_c))


def route_max(lib, grad_out, argmax, padded_shape, kernel, stride):
    """Max-pool backward: dL/dy (N, OH, OW, C) written to each window's argmax position of an
    (N, Hp, Wp, C) array. The 0/1 mask multiplies dL/dy straight into the strided slice (a bool
    times a float, which the standard does not mix), so no float mask or temporary is made."""
    (kh, kw), (sh, sw) = kernel, stride
    oh, ow = grad_out.shape[1:3]
    overlap = sh < kh or sw < kw
    covered = oh * sh == padded_shape[1] and ow * sw == padded_shape[2] and not overlap
    # every entry is written exactly once when the windows tile the array: no zeros needed
    grad_pad = (lib.empty if covered else lib.zeros)(padded_shape, dtype=grad_out.dtype)
    piece = lib.empty(grad_out.shape, dtype=grad_out.dtype) if overlap else None
    for a in range(kh):
        for b in range(kw):
            target = grad_pad[:, a:a + sh * (oh - 1) + 1:sh, b:b + sw * (ow - 1) + 1:sw, :]
            if overlap:
                lib.multiply(argmax == a * kw + b, grad_out, out=piece)
                target += piece
            else:
                lib.multiply(argmax == a * kw + b, grad_out, out=target)
    return grad_pad


def conv_input_grad(lib, grad_rows, w_mat, padded_shape, out_hw, kernel, stride, dilation):
    """col2im(grad_rows @ w_mat), one kernel offset at a time: for offset (a, b) the product
    grad_rows @ w_mat[:, (a, b, :)] (N OH OW, C) is added into its strided slice at once, so
    the (N OH OW, kH kW C) matrix of dL/dcols is never made and each piece is still in cache
    when it is added (on NumPy about 20% faster than the one product and then col2im)."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, stride, dilation, out_hw
    n, c = padded_shape[0], padded_shape[3]
    w_offsets = w_mat.reshape(w_mat.shape[0], kh * kw, c)
    grad_pad = lib.zeros(padded_shape, dtype=grad_rows.dtype)
    piece = lib.empty((grad_rows.shape[0], c), dtype=grad_rows.dtype)
    for a in range(kh):
        for b in range(kw):
            lib.matmul(grad_rows, w_offsets[:, a * kw + b, :], out=piece)
            target = grad_pad[:, a * dh:a * dh + sh * (oh - 1) + 1:sh, b * dw:b * dw + sw * (ow - 1) + 1:sw, :]
            target += piece.reshape(n, oh, ow, c)
    return grad_pad


def _cupy_sliding_windows(x_pad, kernel, stride, dilation, out_hw):
    import cupy

    return sliding_windows(cupy.lib.stride_tricks.as_strided, x_pad, kernel, stride, dilation, out_hw)


def _cupy_route_max(grad_out, argmax, padded_shape, kernel, stride):
    import cupy

    with grad_out.device:                       # CuPy allocates on the current GPU: make it grad_out's
        return route_max(cupy, grad_out, argmax, padded_shape, kernel, stride)


# {operation: function}, registered for each backend by backends/__init__.py
NUMPY_PATHS = {
    "sliding_windows": functools.partial(sliding_windows,
                                         functools.partial(np.lib.stride_tricks.as_strided, writeable=False)),
    "route_max": functools.partial(route_max, np),
    "conv_input_grad": functools.partial(conv_input_grad, np),
}
# conv_input_grad stays portable on CuPy: its gain on NumPy is a CPU cache effect, not measured on a GPU
CUPY_PATHS = {"sliding_windows": _cupy_sliding_windows, "route_max": _cupy_route_max}
