"""Convolution, pooling and batch normalisation: the layers of the vision sections.

Chapter: "Transfer learning in computer vision" — the conv nets whose lower layers learn edges
and textures that transfer between tasks.

Convolution is computed the way most CPU libraries do it, by *im2col*: every kh x kw patch of
the input becomes one column of a matrix, so the whole convolution is ONE matrix product

    out[n, o, y, x] = sum_{c, i, j} W[o, c, i, j] * x_pad[n, c, s*y + i, s*x + j] + b[o]   (eq. conv)
                    = (W_mat @ cols)[o, (n, y, x)]     with W_mat = W.reshape(O, C*kh*kw)

The patches are read through a strided *view* (`sliding_window_view`), so no Python loop ever
walks over pixels; one reshape copies the view into the `cols` matrix that the matmul wants.
The backward pass is the same product read backwards: with g the output gradient as an
(O, N*Ho*Wo) matrix, dW = g @ cols^T, dcols = W_mat^T @ g, and col2im adds each patch's
gradient back onto the pixels it was read from.

This file is the reference: the math as a student writes it, in plain NumPy. The layers call
`conv2d`, `max_pool2d` and `batch_norm` below, which run the versions in `minitl/fastpath/conv.py`
(NHWC memory, threads) while `tl.fastpath.enabled()`; tests prove those equal to these.
"""
from __future__ import annotations

import numpy as np

from .. import fastpath
from ..backend import xp_of
from ..tensor import Function


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def conv_output_size(size, kernel, stride, padding):
    """floor((size + 2 * padding - kernel) / stride) + 1: how many windows fit along one axis."""
    out = (size + 2 * padding - kernel) // stride + 1
    if out <= 0:
        raise ValueError(f"kernel {kernel} with padding {padding} does not fit an input of size {size}")
    return out


def check_conv_input(x, weight, stride, padding):
    """Clear errors for inputs that conv2d cannot take (shapes, channels, a kernel too large)."""
    if x.ndim != 4 or weight.ndim != 4:
        raise ValueError(f"conv2d: expected input (N, C, H, W) and weight (O, C, kh, kw), got shapes "
                         f"{x.shape} and {weight.shape}")
    if x.shape[1] != weight.shape[1]:
        raise ValueError(f"conv2d: input has {x.shape[1]} channels (shape {x.shape}) but the weight "
                         f"expects {weight.shape[1]} (shape {weight.shape})")
    for size, k, s, p in zip(x.shape[2:], weight.shape[2:], stride, padding):
        conv_output_size(size, k, s, p)


def windows(x, kernel, stride, axes):
    """A strided view of every (kh, kw) window of `x` along `axes`, stepping by `stride`.
    The window axes are appended at the end: no data is copied."""
    view = xp_of(x).lib.stride_tricks.sliding_window_view(x, kernel, axis=axes)
    index = [slice(None)] * view.ndim
    index[axes[0]], index[axes[1]] = slice(None, None, stride[0]), slice(None, None, stride[1])
    return view[tuple(index)]


def window_positions(offset, stride, count):
    """The pixels that windows 0..count-1 read at kernel offset `offset` along one axis:
    offset, offset + stride, ..., offset + stride * (count - 1)."""
    return slice(offset, offset + stride * (count - 1) + 1, stride)


def im2col(x, kernel, stride, padding):
    """The patch matrix of `x` (N, C, H, W): one column per output pixel (n, y, x), one row per
    window entry (c, i, j), shape (C*kh*kw, N*Ho*Wo). Returns it and (Ho, Wo)."""
    # BEGIN EXERCISE vision.conv2d_im2col
    # hint: zero-pad H and W; windows(x_pad, kernel, stride, axes=(2, 3)) is (N, C, Ho, Wo, kh, kw); transpose to (C, kh, kw, N, Ho, Wo) and reshape to (C*kh*kw, N*Ho*Wo)
    ph, pw = padding
    x_pad = xp_of(x).pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    patches = windows(x_pad, kernel, stride, axes=(2, 3))  # (N, C, Ho, Wo, kh, kw), a view
    n, c, ho, wo, kh, kw = patches.shape
    cols = patches.transpose(1, 4, 5, 0, 2, 3).reshape(c * kh * kw, n * ho * wo)
    return cols, (ho, wo)
    # END EXERCISE


def col2im(dcols, x_shape, kernel, stride, padding, out_hw):
    """The adjoint of im2col: add every patch entry's gradient back onto the pixel it was read
    from; a pixel covered by several windows receives the sum of their gradients. One slice-add
    per kernel offset (i, j), kh*kw of them, never a loop over pixels."""
    n, c, h, w = x_shape
    (kh, kw), (sh, sw), (ph, pw), (ho, wo) = kernel, stride, padding, out_hw
    dpatches = dcols.reshape(c, kh, kw, n, ho, wo)
    # (C, N, ...) like the rows of dcols, so that each slice-add reads and writes in one order
    dx_pad = xp_of(dcols).zeros((c, n, h + 2 * ph, w + 2 * pw), dtype=dcols.dtype)
    for i in range(kh):
        for j in range(kw):
            # the window at (y, x) read pixel (sh*y + i, sw*x + j) at offset (i, j)
            dx_pad[:, :, window_positions(i, sh, ho), window_positions(j, sw, wo)] += dpatches[:, i, j]
    return dx_pad[:, :, ph:ph + h, pw:pw + w].transpose(1, 0, 2, 3)  # (N, C, H, W), a view


class Conv2d(Function):
    """2-D cross-correlation (what deep learning calls convolution), eq. (conv) above.

    x: (N, C, H, W), weight: (O, C, kh, kw), optional bias: (O,). Output (N, O, Ho, Wo).
    """

    @staticmethod
    def forward(ctx, x, weight, bias=None, stride=1, padding=0):
        stride, padding = _pair(stride), _pair(padding)
        check_conv_input(x, weight, stride, padding)
        cols, (ho, wo) = im2col(x, weight.shape[2:], stride, padding)
        w_mat = weight.reshape(weight.shape[0], -1)  # (O, C*kh*kw): im2col's row order
        out = w_mat @ cols  # (O, N*Ho*Wo)
        if bias is not None:
            out += bias[:, None]
        ctx.save_for_backward(cols, w_mat)
        ctx.geometry = (x.shape, weight.shape, stride, padding, (ho, wo))
        ctx.has_bias = bias is not None
        # (N, O, Ho, Wo) as a view of the (O, N, Ho, Wo) product: element-wise ops downstream keep
        # that memory order, and backward's g below is then a free reshape
        return out.reshape(-1, x.shape[0], ho, wo).transpose(1, 0, 2, 3)

    @staticmethod
    def backward(ctx, grad):
        cols, w_mat = ctx.saved_tensors
        x_shape, w_shape, stride, padding, out_hw = ctx.geometry
        needs_x, needs_w = ctx.needs_input_grad[:2]
        # BEGIN EXERCISE vision.conv2d_backward
        # hint: out = W_mat @ cols, so with g = grad as an (O, N*Ho*Wo) matrix: dW = g @ cols^T, dcols = W_mat^T @ g (col2im makes it dx), db = g.sum(1)
        g = grad.transpose(1, 0, 2, 3).reshape(w_shape[0], -1)
        grad_x = col2im(w_mat.T @ g, x_shape, w_shape[2:], stride, padding, out_hw) if needs_x else None
        grad_w = (g @ cols.T).reshape(w_shape) if needs_w else None
        grad_b = g.sum(axis=1) if ctx.has_bias else None
        # END EXERCISE
        return (grad_x, grad_w, grad_b) if ctx.has_bias else (grad_x, grad_w)


def pool_geometry(x, kernel_size, stride, padding, fill):
    """What every pooling starts with: the input padded on H and W with `fill`, and the
    (kernel, stride, padding) pairs (the stride defaults to the kernel, as in PyTorch)."""
    kernel = _pair(kernel_size)
    stride = kernel if stride is None else _pair(stride)
    ph, pw = _pair(padding)
    if ph or pw:
        x = xp_of(x).pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
    return x, (x.shape, kernel, stride, (ph, pw))


def crop_padding(dx, padding):
    """The gradient of the padded input without its padding: the gradient of the input."""
    ph, pw = padding
    return dx[:, :, ph:dx.shape[2] - ph, pw:dx.shape[3] - pw]


class MaxPool2d(Function):
    """The largest value of each kh x kw window; the gradient flows to that one element only
    (the first maximum on ties, as in PyTorch)."""

    @staticmethod
    def forward(ctx, x, kernel_size, stride=None, padding=0):
        x, ctx.geometry = pool_geometry(x, kernel_size, stride, padding, fill=-np.inf)  # -inf never wins
        _, (kh, kw), stride, _ = ctx.geometry
        xp = xp_of(x)
        win = windows(x, (kh, kw), stride, axes=(2, 3))  # (N, C, Ho, Wo, kh, kw), a view
        # visit the kh*kw offsets of every window at once, keeping the largest value so far and
        # its offset i*kw + j (in a byte or two: less to write and read back than int64)
        out = xp.copy(win[..., 0, 0])  # offset 0 starts the running maximum (in x's memory order)
        arg = xp.zeros_like(out, dtype=np.min_scalar_type(kh * kw - 1))
        for offset in range(1, kh * kw):
            value = win[..., offset // kw, offset % kw]
            # offsets only grow, so this makes arg the offset of the last strictly larger value:
            # ties keep the first maximum, as in PyTorch
            xp.maximum(arg, (value > out) * arg.dtype.type(offset), out=arg)
            xp.maximum(out, value, out=out)
        ctx.save_for_backward(arg)
        return out

    @staticmethod
    def backward(ctx, grad):
        (arg,) = ctx.saved_tensors
        padded_shape, (kh, kw), (sh, sw), padding = ctx.geometry
        ho, wo = grad.shape[2:]
        dx = xp_of(grad).zeros_like(grad, shape=padded_shape)  # in grad's memory order
        # BEGIN EXERCISE vision.maxpool_backward
        # hint: for each offset (i, j): window (y, x) read pixel (sh*y + i, sw*x + j) (window_positions); add grad * (arg == i*kw + j) there (windows overlap: add); crop_padding(dx, padding)
        for i in range(kh):
            for j in range(kw):
                dx[:, :, window_positions(i, sh, ho), window_positions(j, sw, wo)] += grad * (arg == i * kw + j)
        return crop_padding(dx, padding)
        # END EXERCISE


class AvgPool2d(Function):
    """The mean of each kh x kw window (zero padding counted, PyTorch's default); each input of
    a window receives 1/(kh*kw) of the window's gradient."""

    @staticmethod
    def forward(ctx, x, kernel_size, stride=None, padding=0):
        x, ctx.geometry = pool_geometry(x, kernel_size, stride, padding, fill=0)
        _, kernel, stride, _ = ctx.geometry
        return windows(x, kernel, stride, axes=(2, 3)).mean(axis=(-2, -1))

    @staticmethod
    def backward(ctx, grad):
        padded_shape, (kh, kw), (sh, sw), padding = ctx.geometry
        ho, wo = grad.shape[2:]
        dx = xp_of(grad).zeros(padded_shape, dtype=grad.dtype)
        share = grad / (kh * kw)
        for i in range(kh):
            for j in range(kw):
                dx[:, :, window_positions(i, sh, ho), window_positions(j, sw, wo)] += share
        return crop_padding(dx, padding)


def adaptive_bins(size, out):
    """PyTorch's adaptive pooling bins along one axis: bin k covers
    [floor(k*size/out), ceil((k+1)*size/out))."""
    return [((k * size) // out, -((-(k + 1) * size) // out)) for k in range(out)]


class AdaptiveAvgPool2d(Function):
    """Average pooling to a fixed output size whatever the input size; (1, 1) is the global
    average pool that ends a ResNet. The loop is over output cells (a handful), not pixels."""

    @staticmethod
    def forward(ctx, x, output_size):
        oh, ow = _pair(output_size)
        xp = xp_of(x)
        rows, cols = adaptive_bins(x.shape[2], oh), adaptive_bins(x.shape[3], ow)
        out = xp.empty(x.shape[:2] + (oh, ow), dtype=x.dtype)
        for a, (r0, r1) in enumerate(rows):
            for b, (c0, c1) in enumerate(cols):
                out[:, :, a, b] = x[:, :, r0:r1, c0:c1].mean(axis=(2, 3))
        ctx.geometry = (x.shape, rows, cols)
        return out

    @staticmethod
    def backward(ctx, grad):
        shape, rows, cols = ctx.geometry
        xp = xp_of(grad)
        dx = xp.zeros(shape, dtype=grad.dtype)
        for a, (r0, r1) in enumerate(rows):
            for b, (c0, c1) in enumerate(cols):
                dx[:, :, r0:r1, c0:c1] += (grad[:, :, a, b] / ((r1 - r0) * (c1 - c0)))[:, :, None, None]
        return dx


def per_channel(v, ndim):
    """A (C,) vector shaped (1, C, 1, ...) so that it broadcasts over an (N, C, ...) array."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


class BatchNorm(Function):
    """Batch normalisation over every axis but the channel axis 1 (Ioffe & Szegedy 2015):

        xhat = (x - mean) * rstd,   rstd = 1 / sqrt(var + eps),   y = gamma * xhat + beta   (eq. BN)

    In training, mean and var are the (biased) statistics of this batch over (N, H, W), and the
    gradient flows through them too:

        dx = rstd * (g - mean(g) - xhat * mean(g * xhat)),   g = dy * gamma

    gamma is one number per channel, constant over the axes the means run over, so it factors
    out of them: mean(g) = gamma * dbeta / m and mean(g * xhat) = gamma * dgamma / m, with m the
    values per channel and dbeta = sum(dy), dgamma = sum(dy * xhat) the parameters' gradients:

        dx = rstd * gamma * (dy - dbeta / m - xhat * dgamma / m)

    (two product arrays and two reductions fewer than the first form, about half its time;
    layer norm's weight varies along the axes it averages over, so there the first form stays).
    In evaluation mean and var are the running statistics, constants, and dx = rstd * gamma * dy.
    `stats_out` (a dict) receives the batch's mean, var and count for the running averages.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, mean=None, var=None, eps=1e-5, stats_out=None):
        xp = xp_of(x)
        axes = (0,) + tuple(range(2, x.ndim))  # every axis but the channels
        ctx.batch_stats = mean is None
        if ctx.batch_stats:
            mean = x.mean(axis=axes)
        centered = x - per_channel(mean, x.ndim)
        if ctx.batch_stats:
            var = (centered ** 2).mean(axis=axes)  # biased, as eq. BN has it
            if stats_out is not None:
                stats_out.update(mean=mean, var=var, count=x.size // x.shape[1])
        rstd = per_channel(1 / xp.sqrt(var + eps), x.ndim)
        xhat = centered * rstd
        ctx.save_for_backward(xhat, rstd, weight)
        ctx.axes = axes
        return per_channel(weight, x.ndim) * xhat + per_channel(bias, x.ndim)

    @staticmethod
    def backward(ctx, grad):
        xhat, rstd, weight = ctx.saved_tensors
        axes = ctx.axes
        # BEGIN EXERCISE vision.batchnorm_backward
        # hint: sums over (N, H, W), m values per channel: dbeta = sum dy, dgamma = sum dy xhat; dx = rstd gamma (dy - dbeta/m - xhat dgamma/m), or rstd gamma dy with running statistics
        dbeta = grad.sum(axis=axes)
        dgamma = (grad * xhat).sum(axis=axes)
        scale = rstd * per_channel(weight, grad.ndim)  # rstd gamma, one number per channel
        if ctx.batch_stats:
            m = grad.size // grad.shape[1]
            dx = scale * (grad - per_channel(dbeta / m, grad.ndim) - xhat * per_channel(dgamma / m, grad.ndim))
        else:
            dx = scale * grad
        # END EXERCISE
        return dx, dgamma, dbeta


# --- functional forms (re-exported by minitl.nn.functional) -------------------------------------
# Each picks the reference Function above or its fast twin in minitl/fastpath/conv.py.

def conv2d(x, weight, bias=None, stride=1, padding=0):
    """F.conv2d: x (N, C, H, W), weight (O, C, kh, kw), bias (O,) or None."""
    op = fastpath.conv.Conv2d if fastpath.enabled() else Conv2d
    tensors = (x, weight) if bias is None else (x, weight, bias)
    return op.apply(*tensors, stride=stride, padding=padding)


def max_pool2d(x, kernel_size, stride=None, padding=0):
    if fastpath.enabled() and fastpath.conv.MaxPool2x2.handles(x.shape, kernel_size, stride, padding):
        return fastpath.conv.MaxPool2x2.apply(x, padding=padding)
    return MaxPool2d.apply(x, kernel_size=kernel_size, stride=stride, padding=padding)


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    return AvgPool2d.apply(x, kernel_size=kernel_size, stride=stride, padding=padding)


def adaptive_avg_pool2d(x, output_size):
    return AdaptiveAvgPool2d.apply(x, output_size=output_size)


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """F.batch_norm, PyTorch's signature. In training it normalises with the batch statistics
    and updates the running ones in place (an exponential moving average with factor
    `momentum`; the running variance uses the unbiased estimate, as PyTorch does). In
    evaluation it normalises with the running statistics."""
    from ..tensor import Tensor

    # the running statistics are updated in place: work on the arrays of buffer Tensors
    running_mean = running_mean.data if isinstance(running_mean, Tensor) else running_mean
    running_var = running_var.data if isinstance(running_var, Tensor) else running_var
    data = x.data
    xp = xp_of(data)
    channels = data.shape[1]
    if weight is None:
        weight = Tensor(xp.ones(channels, dtype=data.dtype))
    if bias is None:
        bias = Tensor(xp.zeros(channels, dtype=data.dtype))
    use_batch = training or running_mean is None
    if use_batch and data.size // channels < 2 and training:
        raise ValueError(f"batch_norm needs more than one value per channel in training, got input {data.shape}")
    norm = fastpath.conv.BatchNorm if fastpath.enabled() else BatchNorm
    stats = {}
    if use_batch:
        out = norm.apply(x, weight, bias, eps=eps, stats_out=stats)
    else:
        out = norm.apply(x, weight, bias, running_mean, running_var, eps=eps)
    if training and running_mean is not None:
        count = stats["count"]
        running_mean *= 1 - momentum
        running_mean += momentum * stats["mean"]
        running_var *= 1 - momentum
        running_var += (momentum * count / max(count - 1, 1)) * stats["var"]
    return out
