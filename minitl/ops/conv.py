"""Convolution, pooling and batch normalisation: the layers of the vision sections.

Chapter: "Transfer learning in computer vision" — the conv nets whose lower layers learn edges
and textures that transfer between tasks.

Convolution is computed the way most CPU libraries do it, by *im2col*: every k x k patch of the
input becomes one row of a matrix, so the whole convolution is ONE matrix product

    out[n, y, x, o] = sum_{i, j, c} x_pad[n, s*y + i, s*x + j, c] * W[o, c, i, j] + b[o]   (eq. conv)
                    = (cols @ W_mat^T)[n*y*x, o]

The patches are read through a strided *view* (`sliding_window_view`), so no Python loop ever
walks over pixels; one copy turns the view into the `cols` matrix that the matmul wants.

Layout. Tensors are NCHW on the outside, as in PyTorch. Inside, the patch matrix is built from
an NHWC copy so that the innermost axis of each patch row is the channel axis: the copy reads
contiguous runs of C floats, and the conv's output (N*Ho*Wo, O) is already NHWC in memory. We
return it as an NCHW *view* of that memory (a transpose costs nothing), and the next conv
turns it back into NHWC for free. Element-wise ops in between (BatchNorm, ReLU) keep the
memory order of their input, so a whole network runs NHWC in memory without any layout copy.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .. import backend, parallel
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


def pad_nhwc(x_nchw, ph, pw):
    """The NCHW input as a zero-padded NHWC array (a fresh, contiguous copy)."""
    xp = xp_of(x_nchw)
    n, c, h, w = x_nchw.shape
    out = xp.empty((n, h + 2 * ph, w + 2 * pw, c), dtype=x_nchw.dtype)
    src = x_nchw.transpose(0, 2, 3, 1)

    def pad_images(start, stop):  # zeros, then the image inside them, a few images at a time
        out[start:stop] = 0
        out[start:stop, ph:ph + h, pw:pw + w, :] = src[start:stop]

    parallel.parallel_for(n, pad_images, out[0].size, enabled=xp is np)
    return out


def windows(x, kernel, stride, axes):
    """A strided view of every (kh, kw) window of `x` along `axes`, stepping by `stride`.
    The window axes are appended at the end: no data is copied."""
    kh, kw = kernel
    sh, sw = stride
    xp = xp_of(x)
    view = (sliding_window_view if xp is np else xp.lib.stride_tricks.sliding_window_view)(x, (kh, kw), axis=axes)
    index = [slice(None)] * view.ndim
    index[axes[0]], index[axes[1]] = slice(None, None, sh), slice(None, None, sw)
    return view[tuple(index)]


def im2col(x, kernel, stride, padding):
    """The patch matrix of `x` (N, C, H, W): shape (N*Ho*Wo, kh*kw*C), rows ordered (n, y, x)
    and columns (i, j, c). Returns it and (Ho, Wo)."""
    # BEGIN EXERCISE vision.conv2d_im2col
    # hint: pad into NHWC with pad_nhwc, take windows(x_pad, kernel, stride, axes=(1, 2)) -> (N, Ho, Wo, C, kh, kw), move C last with transpose(0, 1, 2, 4, 5, 3) and copy that into an (N*Ho*Wo, kh*kw*C) matrix (a reshape copies it; parallel.copyto makes the same copy on all threads)
    n, c = x.shape[:2]
    x_pad = pad_nhwc(x, *padding)
    patches = windows(x_pad, kernel, stride, axes=(1, 2))  # (N, Ho, Wo, C, kh, kw), a view
    ho, wo = patches.shape[1], patches.shape[2]
    cols = xp_of(x).empty((n * ho * wo, kernel[0] * kernel[1] * c), dtype=x.dtype)
    # the one copy: each row gathers one window, (i, j, c) in order
    parallel.copyto(cols.reshape(n, ho, wo, kernel[0], kernel[1], c), patches.transpose(0, 1, 2, 4, 5, 3))
    return cols, (ho, wo)
    # END EXERCISE


def col2im(dpatches, x_shape, kernel, stride, padding, out_hw):
    """The adjoint of im2col: add every patch's gradient back onto the pixels it was read from.

    dpatches: (kh*kw, N*Ho*Wo, C), the gradient of the patch entries offset by offset, so each
    offset's slice is one contiguous block. A pixel covered by several windows receives the
    sum of their gradients. One vectorised slice-add per kernel offset (kh*kw of them), never
    a loop over pixels. Returns the gradient as an NCHW view of NHWC memory."""
    n, c, h, w = x_shape
    kh, kw = kernel
    sh, sw = stride
    ph, pw = padding
    ho, wo = out_hw
    xp = xp_of(dpatches)
    d = dpatches.reshape(kh, kw, n, ho, wo, c)
    dx_pad = xp.empty((n, h + 2 * ph, w + 2 * pw, c), dtype=dpatches.dtype)

    def add_patches(start, stop):  # images start:stop, whose memory stays in cache meanwhile
        dx_pad[start:stop] = 0
        for i in range(kh):
            for j in range(kw):
                # window (y, x) read pixel (s*y + i, s*x + j) at offset (i, j)
                dx_pad[start:stop, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw, :] += d[i, j, start:stop]

    parallel.parallel_for(n, add_patches, dx_pad[0].size, enabled=xp is np)
    return dx_pad[:, ph:ph + h, pw:pw + w, :].transpose(0, 3, 1, 2)


def weight_matrix(weight):
    """W (O, C, kh, kw) as the (O, kh*kw*C) matrix whose column order matches im2col's."""
    o = weight.shape[0]
    return weight.transpose(0, 2, 3, 1).reshape(o, -1)


class Conv2d(Function):
    """2-D cross-correlation (what deep learning calls convolution), eq. (conv) above.

    x: (N, C, H, W), weight: (O, C, kh, kw), optional bias: (O,). Output (N, O, Ho, Wo).
    """

    @staticmethod
    def forward(ctx, x, weight, bias=None, stride=1, padding=0):
        if x.ndim != 4 or weight.ndim != 4:
            raise ValueError(f"conv2d: expected input (N, C, H, W) and weight (O, C, kh, kw), got shapes "
                             f"{x.shape} and {weight.shape}")
        if x.shape[1] != weight.shape[1]:
            raise ValueError(f"conv2d: input has {x.shape[1]} channels (shape {x.shape}) but the weight "
                             f"expects {weight.shape[1]} (shape {weight.shape})")
        stride, padding = _pair(stride), _pair(padding)
        kernel = weight.shape[2:]
        for size, k, s, p in zip(x.shape[2:], kernel, stride, padding):
            conv_output_size(size, k, s, p)
        cols, (ho, wo) = im2col(x, kernel, stride, padding)
        w_mat = weight_matrix(weight)
        out = backend.matmul(cols, w_mat.T)  # (N*Ho*Wo, O): NHWC in memory
        if bias is not None:
            parallel.rowwise(xp_of(out).add, out, out, bias)
        ctx.save_for_backward(cols, w_mat, weight)
        ctx.geometry = (x.shape, weight.shape, kernel, stride, padding, (ho, wo))
        ctx.has_bias = bias is not None
        return out.reshape(x.shape[0], ho, wo, -1).transpose(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, grad):
        cols, w_mat, weight = ctx.saved_tensors
        x_shape, w_shape, kernel, stride, padding, out_hw = ctx.geometry
        needs = ctx.needs_input_grad
        # BEGIN EXERCISE vision.conv2d_backward
        # hint: out = cols @ W_mat^T, so with g = grad as an (N*Ho*Wo, O) matrix (transpose to NHWC first): dW_mat = g^T @ cols; dcols = g @ W_mat, computed per kernel offset as g @ W[:, :, i, j] (a (kh*kw, O, C) stack) and handed to col2im; dbias = sum of g over rows (column_sums(g)); undo weight_matrix's (O, kh, kw, C) order for dW
        o = w_shape[0]
        g = grad.transpose(0, 2, 3, 1).reshape(-1, o)  # free when grad is NHWC in memory
        grad_x = grad_w = grad_b = None
        if needs[0]:
            # dcols = g @ W_mat, one (O, C) block of W per kernel offset: each offset's patch
            # gradient comes out contiguous, which makes col2im's slice-adds twice as fast
            w_offsets = weight.transpose(2, 3, 0, 1).reshape(kernel[0] * kernel[1], o, w_shape[1])
            w_offsets = xp_of(weight).ascontiguousarray(w_offsets)  # strided stacks halve BLAS's speed
            grad_x = col2im(backend.matmul(g, w_offsets), x_shape, kernel, stride, padding, out_hw)
        if needs[1]:
            grad_w = backend.matmul(g.T, cols).reshape(o, kernel[0], kernel[1], w_shape[1]).transpose(0, 3, 1, 2)
        if ctx.has_bias and needs[2]:
            grad_b = column_sums(g)
        # END EXERCISE
        return (grad_x, grad_w, grad_b) if ctx.has_bias else (grad_x, grad_w)


def max_pool_2x2(x):
    """The common case, 2x2 windows at stride 2, without a window view: in NHWC memory the four
    pixels of each window are the four slices of a free (N, H/2, 2, W/2, 2, C) reshape, and the
    max is three element-wise maxima. Returns the output and the argmax (offset i*2 + j, the
    first maximum on ties, as PyTorch), both (N, C, H/2, W/2) views of NHWC memory. Images are
    split across threads (parallel.parallel_for)."""
    xp = xp_of(x)
    n, c, h, w = x.shape
    v = x.transpose(0, 2, 3, 1).reshape(n, h // 2, 2, w // 2, 2, c)
    out = xp.empty((n, h // 2, w // 2, c), dtype=x.dtype)
    arg = xp.empty((n, h // 2, w // 2, c), dtype=np.int8)

    def pool_images(start, stop):
        vs = v[start:stop]
        a, b, d, e = vs[:, :, 0, :, 0], vs[:, :, 0, :, 1], vs[:, :, 1, :, 0], vs[:, :, 1, :, 1]
        top, bottom = xp.maximum(a, b), xp.maximum(d, e)
        xp.maximum(top, bottom, out=out[start:stop])
        # arg = bottom wins ? 2 + (e > d) : (b > a), strict comparisons so that the first
        # maximum wins ties; in int8 arithmetic on bool views (where() on floats is several
        # times slower)
        arg_top = (b > a).view(np.int8)
        arg_s = arg[start:stop]
        xp.subtract((e > d).view(np.int8), arg_top, out=arg_s)
        arg_s += 2
        arg_s *= (bottom > top).view(np.int8)
        arg_s += arg_top

    parallel.parallel_for(n, pool_images, x[0].size, enabled=xp is np)
    return out.transpose(0, 3, 1, 2), arg.transpose(0, 3, 1, 2)


def max_pool_2x2_backward(grad, arg, shape):
    """The adjoint of `max_pool_2x2`: windows don't overlap, so each of the four offsets of the
    (N, H/2, 2, W/2, 2, C) view of the gradient is written once, with the window's gradient
    where that offset was the argmax and 0 elsewhere. Returns an NCHW view of NHWC memory."""
    xp = xp_of(grad)
    n, c, h, w = shape
    g, a = grad.transpose(0, 2, 3, 1), arg.transpose(0, 2, 3, 1)  # (N, H/2, W/2, C) views
    dx = xp.empty((n, h // 2, 2, w // 2, 2, c), dtype=grad.dtype)

    def scatter_images(start, stop):
        for i in range(2):
            for j in range(2):
                xp.multiply(g[start:stop], a[start:stop] == 2 * i + j, out=dx[start:stop, :, i, :, j, :])

    parallel.parallel_for(n, scatter_images, dx[0].size, enabled=xp is np)
    return dx.reshape(n, h, w, c).transpose(0, 3, 1, 2)


def pool_geometry(x, kernel_size, stride, padding, fill):
    """What both poolings start with: the input padded on H and W with `fill`, and the
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
    """The largest value of each k x k window; the gradient flows to that one element only."""

    @staticmethod
    def forward(ctx, x, kernel_size, stride=None, padding=0):
        x, ctx.geometry = pool_geometry(x, kernel_size, stride, padding, fill=-np.inf)  # -inf never wins
        _, kernel, stride, _ = ctx.geometry
        ctx.channels_last = x.transpose(0, 2, 3, 1).flags.c_contiguous  # NHWC memory, as after a conv
        ctx.fast_2x2 = kernel == stride == (2, 2) and x.shape[2] % 2 == 0 and x.shape[3] % 2 == 0
        if ctx.fast_2x2:
            out, arg = max_pool_2x2(x)
            ctx.save_for_backward(arg)
            return out
        win = windows(x, kernel, stride, axes=(2, 3))  # (N, C, Ho, Wo, kh, kw)
        n, c, ho, wo = win.shape[:4]
        flat = win.reshape(n, c, ho, wo, -1)
        arg = flat.argmax(axis=-1)  # first maximum on ties, as PyTorch
        ctx.save_for_backward(arg)
        return xp_of(x).take_along_axis(flat, arg[..., None], axis=-1)[..., 0]

    @staticmethod
    def backward(ctx, grad):
        (arg,) = ctx.saved_tensors
        padded_shape, (kh, kw), (sh, sw), padding = ctx.geometry
        if ctx.fast_2x2:
            return crop_padding(max_pool_2x2_backward(grad, arg, padded_shape), padding)
        xp = xp_of(grad)
        n, c, hp, wp = padded_shape
        # the gradient takes the input's memory layout, so the layers below keep theirs
        dx = (xp.zeros((n, hp, wp, c), dtype=grad.dtype).transpose(0, 3, 1, 2) if ctx.channels_last
              else xp.zeros(padded_shape, dtype=grad.dtype))
        # BEGIN EXERCISE vision.maxpool_backward
        # hint: loop over the kh*kw offsets (i, j): the window (y, x) read pixel (sh*y + i, sw*x + j); add grad where arg == i*kw + j into that strided slice of dx (windows may overlap, so add, don't assign); return crop_padding(dx, padding)
        ho, wo = arg.shape[2:]
        for i in range(kh):
            for j in range(kw):
                dx[:, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw] += grad * (arg == i * kw + j)
        return crop_padding(dx, padding)
        # END EXERCISE


class AvgPool2d(Function):
    """The mean of each k x k window (zero padding counted, PyTorch's default); each input of a
    window receives 1/(kh*kw) of the window's gradient."""

    @staticmethod
    def forward(ctx, x, kernel_size, stride=None, padding=0):
        x, ctx.geometry = pool_geometry(x, kernel_size, stride, padding, fill=0)
        _, kernel, stride, _ = ctx.geometry
        return windows(x, kernel, stride, axes=(2, 3)).mean(axis=(-2, -1))

    @staticmethod
    def backward(ctx, grad):
        padded_shape, (kh, kw), (sh, sw), padding = ctx.geometry
        xp = xp_of(grad)
        ho, wo = grad.shape[2:]
        dx = xp.zeros(padded_shape, dtype=grad.dtype)
        share = grad / (kh * kw)
        for i in range(kh):
            for j in range(kw):
                dx[:, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw] += share
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


def channels_last_2d(a):
    """(N, C, ...) -> (N*..., C): every channel a column. Free when `a` is NHWC in memory (as
    conv outputs are), one copy otherwise; reductions down axis 0 are then fast, contiguous."""
    if a.ndim == 2:
        return a
    order = (0,) + tuple(range(2, a.ndim)) + (1,)
    return a.transpose(order).reshape(-1, a.shape[1])


def column_sums(a):
    """The sums down axis 0 of a 2-D array, as one matrix-vector product `ones @ a`: a single
    streaming pass through BLAS, several times faster than NumPy's axis-0 reduction here."""
    xp = xp_of(a)
    return xp.ones(a.shape[0], dtype=a.dtype) @ a


def from_channels_last_2d(a2, shape):
    """The inverse of channels_last_2d: an (N, C, ...) view of the (N*..., C) array."""
    if len(shape) == 2:
        return a2
    nd = len(shape)
    last = a2.reshape((shape[0],) + tuple(shape[2:]) + (shape[1],))
    return last.transpose((0, nd - 1) + tuple(range(1, nd - 1)))


def scale_shift(a, scale, shift, out):
    """out = a * scale + shift, per column (row-block friendly: see parallel.rowwise)."""
    xp = xp_of(a)
    xp.multiply(a, scale, out=out)
    return xp.add(out, shift, out=out)


def two_term_combination(a, p, b, q, shift, out):
    """out = a * p + b * q + shift, per column, with one scratch block for b * q."""
    xp = xp_of(a)
    xp.multiply(a, p, out=out)
    out += b * q
    return xp.add(out, shift, out=out)


class BatchNorm(Function):
    """Batch normalisation over every axis but the channel axis 1 (Ioffe & Szegedy 2015):

        xhat = (x - mean) / sqrt(var + eps),   y = gamma * xhat + beta                 (eq. BN)

    In training, mean and var are the (biased) statistics of this batch, and the gradient flows
    through them too; in evaluation they are the running statistics, constants. The work is
    done on an (N*H*W, C) channels-last matrix, so each statistic is a column reduction.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, mean=None, var=None, eps=1e-5, stats_out=None):
        xp = xp_of(x)
        x2 = channels_last_2d(x)
        count = x2.shape[0]
        ctx.batch_stats = mean is None
        if ctx.batch_stats:  # this batch's statistics, handed back for the running averages
            mean = column_sums(x2) / count
        centered = parallel.rowwise(xp.subtract, xp.empty_like(x2), x2, mean)
        if ctx.batch_stats:
            var = parallel.column_dots(centered, centered) / count
            if stats_out is not None:
                stats_out.update(mean=mean, var=var, count=count)
        rstd = (1.0 / xp.sqrt(var + eps)).astype(x.dtype)
        # y = gamma * rstd * (x - mean) + beta: xhat itself is never stored, backward rebuilds
        # what it needs from `centered` (xhat = centered * rstd), which saves two passes
        out = parallel.rowwise(scale_shift, xp.empty_like(centered), centered, rstd * weight, bias)
        ctx.save_for_backward(centered, rstd, weight)
        ctx.shape = x.shape
        return from_channels_last_2d(out, x.shape)

    @staticmethod
    def backward(ctx, grad):
        centered, rstd, weight = ctx.saved_tensors
        needs = ctx.needs_input_grad
        grad = channels_last_2d(grad)
        grad_x = grad_w = grad_b = None
        # BEGIN EXERCISE vision.batchnorm_backward
        # hint: everything is an (N*H*W, C) matrix here and statistics are means down axis 0; xhat = centered * rstd. dbeta = sum(grad) (column_sums(grad)), dgamma = sum(grad * xhat) = rstd * parallel.column_dots(grad, centered); with g = grad * gamma, dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) when the batch statistics were used (mean(g) = gamma * dbeta / rows, mean(g * xhat) = gamma * dgamma / rows), just rstd * g with running statistics. Written out, dx = grad * p + centered * q + shift with per-column p, q, shift: parallel.rowwise(two_term_combination, out, grad, p, centered, q, shift) evaluates that on all threads
        rows = grad.shape[0]
        dbeta = column_sums(grad)
        dgamma = parallel.column_dots(grad, centered) * rstd if (needs[1] or (needs[0] and ctx.batch_stats)) else None
        if needs[0]:
            scale = rstd * weight
            if ctx.batch_stats:
                # scale * (grad - dbeta / rows - xhat * dgamma / rows), xhat = centered * rstd
                grad_x = parallel.rowwise(two_term_combination, xp_of(grad).empty_like(grad), grad, scale,
                                          centered, -scale * rstd * dgamma / rows, -scale * dbeta / rows)
            else:
                grad_x = grad * scale
            grad_x = from_channels_last_2d(grad_x, ctx.shape)
        if needs[1]:
            grad_w = dgamma
        if needs[2]:
            grad_b = dbeta
        # END EXERCISE
        return grad_x, grad_w, grad_b


# --- functional forms (re-exported by minitl.nn.functional) -------------------------------------

def conv2d(x, weight, bias=None, stride=1, padding=0):
    """F.conv2d: x (N, C, H, W), weight (O, C, kh, kw), bias (O,) or None."""
    if bias is None:
        return Conv2d.apply(x, weight, stride=stride, padding=padding)
    return Conv2d.apply(x, weight, bias, stride=stride, padding=padding)


def max_pool2d(x, kernel_size, stride=None, padding=0):
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
    stats = {}
    if use_batch:
        out = BatchNorm.apply(x, weight, bias, eps=eps, stats_out=stats)
    else:
        out = BatchNorm.apply(x, weight, bias, running_mean, running_var, eps=eps)
    if training and running_mean is not None:
        count = stats["count"]
        running_mean *= 1 - momentum
        running_mean += momentum * stats["mean"]
        running_var *= 1 - momentum
        running_var += (momentum * count / max(count - 1, 1)) * stats["var"]
    return out
