"""Sliding windows over images, shared by Conv2d and the pools: im2col, col2im, running max.

Layers take and give (N, C, H, W) arrays, as PyTorch. Inside, they work on the *channels-last*
view ``permute_dims(x, (0, 2, 3, 1))``, (N, H, W, C), for one reason: the patches of every image
then sit in the rows of one matrix,

    cols[(n, i, j), (a, b, c)] = x_pad[n, i s + a d, j s + b d, c]      (N OH OW, kH kW C)

so a convolution is a single large matrix product for the whole batch, and its output rows
(n, i, j) x OC are channels-last again. The layers hand their outputs back as the
(N, C, H, W) view of that channels-last memory (a permutation, no copy), so the next layer's
channels-last view is free too, and elementwise layers in between (ReLU, ...) keep the layout.

Everything here is Array API standard (slices, stack, concat, reshape, permute_dims), so it
runs on every backend, and it is the reference. A backend may register a faster function for
an operation (``Backend.fast_path``): NumPy and CuPy build the windows with ``as_strided`` (a
view, no per-offset copies) and route max-pool gradients with one scatter. Those are tested
equal to these lines (tests/test_fast_paths.py).
"""
from __future__ import annotations

from .._checks import check_int


# A window's sizes (kernel, stride, padding, dilation) above this describe no image a computer holds;
# bounding them turns a typo or a forged checkpoint into a clear error instead of a MemoryError.
MAX_WINDOW = 2 ** 16


def pair(owner: str, name: str, value, minimum: int = 1) -> tuple[int, int]:
    """An int or a pair of ints (as PyTorch's ``kernel_size=3`` or ``(3, 5)``), each in [minimum, MAX_WINDOW]."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{owner}: {name} must be an int or a pair of ints, got {value!r}")
        return (check_int(owner, f"{name}[0]", value[0], minimum, MAX_WINDOW),
                check_int(owner, f"{name}[1]", value[1], minimum, MAX_WINDOW))
    size = check_int(owner, name, value, minimum, MAX_WINDOW)
    return (size, size)


def output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """floor((size + 2 padding - dilation (kernel - 1) - 1) / stride) + 1, as PyTorch."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def check_image_input(layer, x, channels=None):
    """Refuse anything but a 4-D (N, C, H, W) array (with ``channels`` channels when given)."""
    if x.ndim != 4:
        raise ValueError(f"{layer._name()}: expected a 4-D input (batch, channels, height, width), "
                         f"got shape {tuple(x.shape)}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{layer._name()}: expected {channels} input channels, got input of shape "
                         f"{tuple(x.shape)} with {x.shape[1]}")


def window_output(layer, x_shape, kernel, stride, padding, dilation=(1, 1)):
    """(OH, OW) for a sliding window over (N, C, H, W); a clear error when the window does not fit."""
    h, w = x_shape[2], x_shape[3]
    reach = (dilation[0] * (kernel[0] - 1) + 1, dilation[1] * (kernel[1] - 1) + 1)
    if reach[0] > h + 2 * padding[0] or reach[1] > w + 2 * padding[1]:
        raise ValueError(f"{layer._name()}: the kernel spans {reach[0]}x{reach[1]} (kernel_size {kernel}, "
                         f"dilation {dilation}) but the padded input is only {h + 2 * padding[0]}x"
                         f"{w + 2 * padding[1]} (input {tuple(x_shape)}, padding {padding})")
    out_hw = (output_size(h, kernel[0], stride[0], padding[0], dilation[0]),
              output_size(w, kernel[1], stride[1], padding[1], dilation[1]))
    if out_hw[0] <= 0 or out_hw[1] <= 0:
        raise ValueError(f"{layer._name()}: output size {out_hw} is not positive for input {tuple(x_shape)}")
    return out_hw


# -- the layouts -----------------------------------------------------------------------------
def channels_last(xp, x):
    """(N, C, H, W) -> the (N, H, W, C) view of the same numbers (a permutation, no copy)."""
    return xp.permute_dims(x, (0, 2, 3, 1))


def channels_first(xp, x):
    """(N, H, W, C) -> (N, C, H, W), the layout layers give back (again a view)."""
    return xp.permute_dims(x, (0, 3, 1, 2))


def pad(xp, x, padding, value=0.0):
    """Channels-last x (N, H, W, C) with ``padding`` (pH, pW) rows/columns of ``value`` on each side."""
    ph, pw = padding
    # Built by concatenation rather than xp.full((N, ...)) and a slice assignment, so that the batch
    # size may be unknown while tracing (ONNX export with a symbolic batch axis).
    if ph:
        edge = xp.zeros_like(x[:, :1, :, :]) + value                 # (N, 1, W, C) of `value`
        x = xp.concat([edge] * ph + [x] + [edge] * ph, axis=1)
    if pw:
        edge = xp.zeros_like(x[:, :, :1, :]) + value                 # (N, H + 2 pH, 1, C)
        x = xp.concat([edge] * pw + [x] + [edge] * pw, axis=2)
    return x


def unpad(grad_pad, padding, shape_hw):
    """The inverse of :func:`pad` for gradients: the (N, H, W, C) centre of ``grad_pad``."""
    ph, pw = padding
    if ph == 0 and pw == 0:
        return grad_pad
    return grad_pad[:, ph:ph + shape_hw[0], pw:pw + shape_hw[1], :]


def offset_slices(kernel, stride, dilation, out_hw):
    """For each kernel offset (a, b), row-major, the (rows, cols) slices of the padded input it reads:
    offset (a, b) of every window is ``x_pad[:, rows, cols, :]``, an (N, OH, OW, C) strided slice."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, stride, dilation, out_hw
    return [(slice(a * dh, a * dh + sh * (oh - 1) + 1, sh), slice(b * dw, b * dw + sw * (ow - 1) + 1, sw))
            for a in range(kh) for b in range(kw)]


def tiles(kernel, stride, dilation) -> bool:
    """Whether no input entry lies in two windows (stride >= reach): col2im may then assign, not add."""
    return all(s >= d * (k - 1) + 1 for k, s, d in zip(kernel, stride, dilation))


# -- im2col and col2im -----------------------------------------------------------------------
def sliding_windows(backend, x_pad, kernel, stride, dilation, out_hw):
    """The windows of channels-last ``x_pad`` (N, Hp, Wp, C): shape (N, OH, OW, kH, kW, C), with
    ``[n, i, j, a, b, c] = x_pad[n, i sH + a dH, j sW + b dW, c]``. Read it, never write into it:
    a backend's fast path may return a view in which windows share memory.

    Portable: the kH kW strided slices stacked after the window axes.
    """
    fast = backend.fast_path("sliding_windows")
    if fast is not None:
        return fast(x_pad, kernel, stride, dilation, out_hw)
    xp = backend.xp
    stacked = xp.stack([x_pad[:, rows, cols, :] for rows, cols in offset_slices(kernel, stride, dilation, out_hw)],
                       axis=3)                                         # (N, OH, OW, kH kW, C)
    return xp.reshape(stacked, (-1,) + tuple(out_hw) + tuple(kernel) + (x_pad.shape[3],))


def add_windows(backend, grad_windows, padded_shape, kernel, stride, dilation):
    """col2im: (N, OH, OW, kH, kW, C) window gradients summed into an (N, Hp, Wp, C) array.

    Every entry of the windows is a copy of one input entry, so that entry's gradient is the sum
    of the gradients of its copies: one strided slice update per kernel offset.
    """
    xp = backend.xp
    out_hw = tuple(grad_windows.shape[1:3])
    grad_pad = xp.zeros(padded_shape, dtype=grad_windows.dtype, device=backend.device)
    overlap = not tiles(kernel, stride, dilation)
    for k, (rows, cols) in enumerate(offset_slices(kernel, stride, dilation, out_hw)):
        piece = grad_windows[:, :, :, k // kernel[1], k % kernel[1], :]
        if overlap:
            # ``+=`` on a slice: in place where the slice is a view (NumPy, CuPy, torch), and still
            # right where it is a copy (the sum is written back by the item assignment)
            grad_pad[:, rows, cols, :] += piece
        else:
            grad_pad[:, rows, cols, :] = piece
    return grad_pad


def conv_input_grad(backend, grad_rows, w_mat, padded_shape, out_hw, kernel, stride, dilation):
    """Conv2d's dL/dx_pad (N, Hp, Wp, C), channels-last: col2im of dL/dcols = grad_rows @ w_mat.

    Args:
        grad_rows: dL/dy as rows (N OH OW, OC); w_mat: the weights as (OC, kH kW C).
    """
    fast = backend.fast_path("conv_input_grad")
    if fast is not None:
        return fast(grad_rows, w_mat, padded_shape, out_hw, kernel, stride, dilation)
    grad_cols = grad_rows @ w_mat                                               # (N OH OW, kH kW C)
    grad_windows = backend.xp.reshape(grad_cols, (padded_shape[0],) + tuple(out_hw) + tuple(kernel)
                                      + (padded_shape[3],))
    return add_windows(backend, grad_windows, padded_shape, kernel, stride, dilation)


# -- max pooling -----------------------------------------------------------------------------
def index_dtype(xp, count: int):
    """The smallest signed integer dtype that holds window positions 0 .. count - 1."""
    return xp.int8 if count <= 127 else xp.int16 if count <= 32767 else xp.int32


def window_max(backend, x_pad, kernel, stride, out_hw):
    """(max, argmax) over each window of channels-last ``x_pad``: both (N, OH, OW, C); argmax is
    the window position (a kW + b) of the first maximum in row-major order, as PyTorch on ties.

    A running maximum over the kH kW strided slices: no (N, OH, OW, kH kW, C) copy is made, and
    a later slice takes over the argmax only where it is strictly larger.
    """
    xp = backend.xp
    slices = offset_slices(kernel, stride, (1, 1), out_hw)
    dtype = index_dtype(xp, len(slices))
    rows, cols = slices[0]
    largest = x_pad[:, rows, cols, :]
    argmax = xp.zeros_like(largest, dtype=dtype)
    for k, (rows, cols) in enumerate(slices[1:], start=1):
        candidate = x_pad[:, rows, cols, :]
        larger = xp.astype(candidate > largest, dtype)
        argmax = argmax + larger * (k - argmax)                  # k where larger, else unchanged
        largest = xp.maximum(largest, candidate)
    return largest, argmax


def route_max(backend, grad_out, argmax, padded_shape, kernel, stride):
    """Max-pool backward: each dL/dy (N, OH, OW, C) goes to the one position of its window that
    held the maximum (``argmax`` from :func:`window_max`); (N, Hp, Wp, C), zeros elsewhere."""
    fast = backend.fast_path("route_max")
    if fast is not None:
        return fast(grad_out, argmax, padded_shape, kernel, stride)
    xp = backend.xp
    out_hw = tuple(grad_out.shape[1:3])
    grad_pad = xp.zeros(padded_shape, dtype=grad_out.dtype, device=backend.device)
    overlap = not tiles(kernel, stride, (1, 1))
    for k, (rows, cols) in enumerate(offset_slices(kernel, stride, (1, 1), out_hw)):
        piece = xp.astype(argmax == k, grad_out.dtype) * grad_out         # dL/dy where position k won
        if overlap:
            grad_pad[:, rows, cols, :] += piece
        else:
            grad_pad[:, rows, cols, :] = piece
    return grad_pad


def too_big(layer, x_shape, out_hw, channels: int, itemsize: int, error) -> MemoryError:
    """The MemoryError for a sliding-window layer whose padded input or window matrix does not fit:
    it names the layer, its window arguments and the bytes the (N OH OW, kH kW C) matrix needs."""
    rows = x_shape[0] * out_hw[0] * out_hw[1]
    width = layer.kernel_size[0] * layer.kernel_size[1] * channels
    padded = (x_shape[2] + 2 * layer.padding[0]) * (x_shape[3] + 2 * layer.padding[1]) * x_shape[0] * x_shape[1]
    return MemoryError(f"{layer._name()}: input {tuple(x_shape)} with kernel_size {layer.kernel_size}, stride "
                       f"{layer.stride}, padding {layer.padding} needs {padded * itemsize:,} bytes padded and "
                       f"{rows * width * itemsize:,} bytes for its {rows:,} x {width:,} windows, more than this "
                       f"machine can allocate ({error or 'out of memory'}); use a smaller batch, image or padding")

