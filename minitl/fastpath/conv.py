"""The fast convolution, batch norm and 2x2 max-pool: the same math as `minitl/ops/conv.py`,
arranged for a CPU. Each Function here is proven equal to its reference in float64 by
tests/test_fastpath.py; `minitl.ops.conv` picks between them (`tl.fastpath.enabled()`).

What changes, and why:

* NHWC memory. Tensors stay NCHW on the outside, but im2col copies the padded input into NHWC
  first, so that each patch row is gathered from contiguous runs of C floats, and the conv's
  output (N*Ho*Wo, O) is already NHWC in memory: it is returned as an NCHW *view* (a free
  transpose). Batch norm and ReLU keep the memory order of their input, the 2x2 max-pool works
  on NHWC directly, and the next conv's NHWC copy is a plain contiguous copy: a whole network
  runs NHWC without a layout copy.
* Threads. The large element-wise passes (the im2col copy, col2im's slice-adds, batch norm's
  passes, the pooling) are split across threads by `fastpath.parallel`; NumPy releases the GIL
  inside its loops.
* Fewer passes. The conv's bias rides in its matrix product (a column of ones). Batch norm
  works on an (N*H*W, C) channels-last matrix, takes its column sums with one BLAS product,
  centers the input and sums its squares in one pass (`centered_square_sums`), never stores
  xhat, and evaluates its backward as one fused two-term combination per row block, while the
  block is in cache; its per-channel passes run on rows of k pixels (`channel_rowwise`), long
  enough that NumPy's inner loop is not mostly overhead.

benchmarks/RESULTS.md has what each of these is worth.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ..backend import xp_of
from ..ops import conv as reference
from ..tensor import Function
from . import parallel


def _threads_for(array):
    """Split work across threads for NumPy arrays only (a GPU is parallel already)."""
    return xp_of(array) is np


# --- convolution ---------------------------------------------------------------------------------

def pad_nhwc(x_nchw, ph, pw):
    """The NCHW input as a zero-padded NHWC array (a fresh, contiguous copy)."""
    xp = xp_of(x_nchw)
    n, c, h, w = x_nchw.shape
    out = xp.empty((n, h + 2 * ph, w + 2 * pw, c), dtype=x_nchw.dtype)
    src = x_nchw.transpose(0, 2, 3, 1)

    def pad_images(start, stop):  # zeros, then the image inside them, a few images at a time
        out[start:stop] = 0
        out[start:stop, ph:ph + h, pw:pw + w, :] = src[start:stop]

    parallel.parallel_for(n, pad_images, out[0].size, enabled=_threads_for(out))
    return out


# Inputs of at most this many channels gather their patch matrix offset by offset
# (`patches_by_offset`), where copying a patch row C floats at a time is mostly loop overhead.
# One channel (a grayscale image) gains: 128 x 28 x 28, 3x3, forward 2.12 -> 1.27 ms; two
# channels break even, three (RGB) lose: 2.9 -> 3.8 ms, each channel a strided copy of its own.
FEW_CHANNELS = 1


def im2col_nhwc(x, kernel, stride, padding, ones_column=False):
    """The patch matrix of `x` (N, C, H, W) with columns in (i, j, c) order: shape
    (N*Ho*Wo, kh*kw*C), rows (n, y, x), plus a last column of ones when `ones_column` (the
    input that a bias multiplies). Returns it and (Ho, Wo)."""
    n, c = x.shape[:2]
    kh, kw = kernel
    x_pad = pad_nhwc(x, *padding)
    if c <= FEW_CHANNELS:
        return patches_by_offset(x_pad, kernel, stride, ones_column)
    patches = reference.windows(x_pad, kernel, stride, axes=(1, 2))  # (N, Ho, Wo, C, kh, kw), a view
    ho, wo = patches.shape[1], patches.shape[2]
    k = kh * kw * c
    cols = xp_of(x).empty((n * ho * wo, k + ones_column), dtype=x.dtype)
    rows_of = cols[:, :k].reshape(n, ho, wo, kh, kw, c)  # a view: each row's patch, (i, j, c)
    patches = patches.transpose(0, 1, 2, 4, 5, 3)

    def copy_images(start, stop):  # the patches of images start:stop, and their ones
        rows_of[start:stop] = patches[start:stop]
        if ones_column:
            cols[start * ho * wo:stop * ho * wo, k] = 1

    parallel.parallel_for(n, copy_images, ho * wo * (k + 1), enabled=_threads_for(cols))
    return cols, (ho, wo)


def patches_by_offset(x_pad, kernel, stride, ones_column):
    """im2col_nhwc for inputs of few channels, built as its transpose: row (i, j, c) of a
    (K, N*Ho*Wo) array is one strided slice of the padded NHWC input, copied whole, where the
    row-by-row gather copies C floats at a time (128 x 1 x 28 x 28, 3x3: 0.25 against 1.07 ms).
    Returns the (N*Ho*Wo, K) matrix as a view of that array (what BLAS takes as it is) and (Ho, Wo)."""
    n, h_pad, w_pad, c = x_pad.shape
    (kh, kw), (sh, sw) = kernel, stride
    ho, wo = (h_pad - kh) // sh + 1, (w_pad - kw) // sw + 1
    k = kh * kw * c
    cols_t = xp_of(x_pad).empty((k + ones_column, n, ho, wo), dtype=x_pad.dtype)
    positions = reference.window_positions

    def copy_images(start, stop):  # every offset's pixels of images start:stop
        for i in range(kh):
            for j in range(kw):
                window = x_pad[start:stop, positions(i, sh, ho), positions(j, sw, wo)]
                for channel in range(c):
                    cols_t[(i * kw + j) * c + channel, start:stop] = window[..., channel]
        if ones_column:
            cols_t[k, start:stop] = 1

    parallel.parallel_for(n, copy_images, ho * wo * (k + 1), enabled=_threads_for(cols_t))
    return cols_t.reshape(k + ones_column, -1).T, (ho, wo)


def col2im_nhwc(dpatches, x_shape, kernel, stride, padding, out_hw):
    """The adjoint of im2col_nhwc. dpatches: (kh*kw, N*Ho*Wo, C), the patch gradient offset by
    offset, so each offset's slice is one contiguous block. Images are split across threads,
    each thread adding all kh*kw offsets into its images while they are in cache. Returns the
    gradient as an NCHW view of NHWC memory."""
    n, c, h, w = x_shape
    (kh, kw), (sh, sw), (ph, pw), (ho, wo) = kernel, stride, padding, out_hw
    xp = xp_of(dpatches)
    d = dpatches.reshape(kh, kw, n, ho, wo, c)
    dx_pad = xp.empty((n, h + 2 * ph, w + 2 * pw, c), dtype=dpatches.dtype)
    positions = reference.window_positions

    def add_patches(start, stop):
        dx_pad[start:stop] = 0
        for i in range(kh):
            for j in range(kw):
                dx_pad[start:stop, positions(i, sh, ho), positions(j, sw, wo), :] += d[i, j, start:stop]

    parallel.parallel_for(n, add_patches, dx_pad[0].size, enabled=_threads_for(dx_pad))
    return dx_pad[:, ph:ph + h, pw:pw + w, :].transpose(0, 3, 1, 2)


def column_sums(a):
    """The sums down axis 0 of a 2-D array, as one matrix-vector product `ones @ a`: a single
    streaming pass through BLAS, faster than NumPy's axis-0 reduction."""
    return xp_of(a).ones(a.shape[0], dtype=a.dtype) @ a


class Conv2d(Function):
    """conv2d as in `minitl.ops.conv.Conv2d`, on NHWC patches and threads. The bias rides in
    the matrix product: the patch matrix gets a column of ones and W_mat the bias as its last
    column, so the product adds it, and dW_mat's last column is the bias gradient (no separate
    pass over the output for either)."""

    @staticmethod
    def forward(ctx, x, weight, bias=None, stride=1, padding=0):
        stride, padding = reference._pair(stride), reference._pair(padding)
        reference.check_conv_input(x, weight, stride, padding)
        xp = xp_of(x)
        kernel = weight.shape[2:]
        has_bias = bias is not None
        cols, (ho, wo) = im2col_nhwc(x, kernel, stride, padding, ones_column=has_bias)
        w_mat = weight.transpose(0, 2, 3, 1).reshape(weight.shape[0], -1)  # (O, kh*kw*C), im2col's order
        if has_bias:
            w_mat = xp.concatenate([w_mat, bias[:, None].astype(w_mat.dtype, copy=False)], axis=1)
        out = backend.matmul(cols, w_mat.T)  # (N*Ho*Wo, O): NHWC in memory
        ctx.save_for_backward(cols, weight)
        ctx.geometry = (x.shape, stride, padding, (ho, wo))
        ctx.has_bias = has_bias
        return out.reshape(x.shape[0], ho, wo, -1).transpose(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, grad):
        cols, weight = ctx.saved_tensors
        x_shape, stride, padding, out_hw = ctx.geometry
        o, c, kh, kw = weight.shape
        needs = ctx.needs_input_grad
        g = grad.transpose(0, 2, 3, 1).reshape(-1, o)  # free when grad is NHWC in memory
        grad_x = grad_w = grad_b = None
        if needs[0]:
            # dcols = g @ W_mat as one (O, C) block of W per kernel offset: each offset's patch
            # gradient comes out contiguous for col2im's slice-adds; a contiguous stack keeps
            # BLAS at full speed
            w_offsets = xp_of(weight).ascontiguousarray(weight.transpose(2, 3, 0, 1).reshape(kh * kw, o, c))
            grad_x = col2im_nhwc(backend.matmul(g, w_offsets), x_shape, (kh, kw), stride, padding, out_hw)
        if needs[1] or (ctx.has_bias and needs[2]):
            # dW_mat = g^T cols, (O, kh*kw*C [+ 1]), computed as (cols^T g)^T: the same sums, and
            # OpenBLAS runs this orientation of the tall operands 15-35% faster
            dw_mat = backend.matmul(cols.T, g).T
            grad_w = dw_mat[:, :kh * kw * c].reshape(o, kh, kw, c).transpose(0, 3, 1, 2) if needs[1] else None
            grad_b = dw_mat[:, -1] if ctx.has_bias and needs[2] else None
        return (grad_x, grad_w, grad_b) if ctx.has_bias else (grad_x, grad_w)


# --- 2x2 max-pool --------------------------------------------------------------------------------

class MaxPool2x2(Function):
    """Max-pooling with 2x2 windows at stride 2 (the common case) without a window view: in NHWC
    memory the four pixels of each window are the four slices of a free (N, H/2, 2, W/2, 2, C)
    reshape, and the max is three element-wise maxima. The argmax (offset i*2 + j, the first
    maximum on ties, as PyTorch) is kept in int8. Images are split across threads."""

    @staticmethod
    def handles(shape, kernel_size, stride, padding):
        """True for 2x2 windows at stride 2 over an even-sized (padded) input."""
        kernel = reference._pair(kernel_size)
        stride = kernel if stride is None else reference._pair(stride)
        ph, pw = reference._pair(padding)
        return (kernel == stride == (2, 2) and len(shape) == 4
                and (shape[2] + 2 * ph) % 2 == 0 and (shape[3] + 2 * pw) % 2 == 0)

    @staticmethod
    def forward(ctx, x, padding=0):
        x, ctx.geometry = reference.pool_geometry(x, 2, 2, padding, fill=-np.inf)
        out, arg = max_pool_2x2(x)
        ctx.save_for_backward(arg)
        return out

    @staticmethod
    def backward(ctx, grad):
        (arg,) = ctx.saved_tensors
        padded_shape, _, _, padding = ctx.geometry
        return reference.crop_padding(max_pool_2x2_backward(grad, arg, padded_shape), padding)


def max_pool_2x2(x):
    """The values and the argmax of every 2x2 window, both (N, C, H/2, W/2) views of NHWC memory."""
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
        # maximum wins ties; in int8 arithmetic on bool views (where() on floats is slower)
        arg_top = (b > a).view(np.int8)
        arg_s = arg[start:stop]
        xp.subtract((e > d).view(np.int8), arg_top, out=arg_s)
        arg_s += 2
        arg_s *= (bottom > top).view(np.int8)
        arg_s += arg_top

    parallel.parallel_for(n, pool_images, x[0].size, enabled=_threads_for(x))
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

    parallel.parallel_for(n, scatter_images, dx[0].size, enabled=_threads_for(dx))
    return dx.reshape(n, h, w, c).transpose(0, 3, 1, 2)


# --- batch norm ----------------------------------------------------------------------------------

def channels_last_2d(a):
    """(N, C, ...) -> (N*..., C): every channel a column. Free when `a` is NHWC in memory (as
    conv outputs are), one copy otherwise; reductions down axis 0 are then contiguous."""
    if a.ndim == 2:
        return a
    order = (0,) + tuple(range(2, a.ndim)) + (1,)
    return a.transpose(order).reshape(-1, a.shape[1])


def from_channels_last_2d(a2, shape):
    """The inverse of channels_last_2d: an (N, C, ...) view of the (N*..., C) array."""
    if len(shape) == 2:
        return a2
    nd = len(shape)
    last = a2.reshape((shape[0],) + tuple(shape[2:]) + (shape[1],))
    return last.transpose((0, nd - 1) + tuple(range(1, nd - 1)))


# Element-wise passes over an (R, C) channels-last matrix with a per-channel vector broadcast
# along its rows run NumPy's inner loop once per row: with C = 32 channels most of a pass is loop
# overhead. Viewed as (R/k, k*C), with the vectors tiled k times, the same pass runs rows of
# about WIDE_ROW elements (a 100352 x 32 multiply on one thread: 1.51 ms narrow, 1.20 ms wide).
WIDE_ROW = 512


def rows_per_wide_row(rows, channels, *matrices):
    """k for the (R/k, k*C) views of (R, C) matrices: a power of two that divides R with k*C near
    WIDE_ROW, or 1 when a matrix is not contiguous (it has no such view)."""
    if not all(a.flags.c_contiguous for a in matrices):
        return 1
    k = 1 << max(0, (WIDE_ROW // channels).bit_length() - 1)
    while rows % k:
        k //= 2
    return k


def wide_views(k, channels, *operands):
    """The (R/k, k*C) views of (R, C) matrices and the (C,) vectors tiled k times, to match;
    scalars as they are."""
    def wide(a):
        ndim = getattr(a, "ndim", 0)
        return a.reshape(-1, k * channels) if ndim == 2 else xp_of(a).tile(a, k) if ndim == 1 else a
    return [wide(a) for a in operands]


def channel_rowwise(fn, out, *operands):
    """parallel.rowwise(fn, out, *operands) for (R, C) matrices and per-channel (C,) vectors
    (scalars pass as they are), run on the (R/k, k*C) views of the matrices with each vector
    tiled k times: the same elements, in longer rows. k = 1 when a matrix is not contiguous."""
    rows, channels = out.shape
    k = rows_per_wide_row(rows, channels, out, *[a for a in operands if getattr(a, "ndim", 0) == 2])
    if k == 1:
        return parallel.rowwise(fn, out, *operands)
    parallel.rowwise(fn, *wide_views(k, channels, out, *operands))
    return out


def centered_square_sums(x2, mean, centered):
    """centered = x2 - mean, per column, and the column sums of centered**2, in one pass over
    row blocks: each block's squares are summed while the block is still in cache, where a
    second pass would read all of `centered` back. Partial sums add in block order."""
    xp = xp_of(x2)
    rows, channels = x2.shape
    k = rows_per_wide_row(rows, channels, x2, centered)
    x_wide, c_wide, mean_wide = wide_views(k, channels, x2, centered, mean)
    partials = {}

    def center_block(start, stop):
        block = xp.subtract(x_wide[start:stop], mean_wide, out=c_wide[start:stop])
        partials[start] = xp.einsum("ij,ij->j", block, block)

    parallel.parallel_for(len(x_wide), center_block, k * channels, enabled=_threads_for(x2))
    return parallel.sum_in_block_order(partials).reshape(k, channels).sum(axis=0)


def scale_shift(a, scale, shift, out):
    """out = a * scale + shift, per column (a row-block body for parallel.rowwise)."""
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
    """Batch norm as in `minitl.ops.conv.BatchNorm` (eq. BN), on an (N*H*W, C) channels-last
    matrix and threads. Forward keeps `centered = x - mean` instead of xhat (xhat = centered *
    rstd), and backward folds eq. BN's dx into one pass per row block:

        dx = s * dy + centered * (-s * rstd * dgamma / rows) - s * dbeta / rows,   s = rstd * gamma
    """

    @staticmethod
    def forward(ctx, x, weight, bias, mean=None, var=None, eps=1e-5, stats_out=None):
        xp = xp_of(x)
        x2 = channels_last_2d(x)
        count = x2.shape[0]
        ctx.batch_stats = mean is None
        centered = xp.empty_like(x2)
        if ctx.batch_stats:
            mean = column_sums(x2) / count
            var = centered_square_sums(x2, mean, centered) / count
            if stats_out is not None:
                stats_out.update(mean=mean, var=var, count=count)
        else:
            channel_rowwise(xp.subtract, centered, x2, mean)
        rstd = (1.0 / xp.sqrt(var + eps)).astype(x.dtype)
        out = channel_rowwise(scale_shift, xp.empty_like(centered), centered, rstd * weight, bias)
        ctx.save_for_backward(centered, rstd, weight)
        ctx.shape = x.shape
        return from_channels_last_2d(out, x.shape)

    @staticmethod
    def backward(ctx, grad):
        centered, rstd, weight = ctx.saved_tensors
        needs = ctx.needs_input_grad
        grad = channels_last_2d(grad)
        rows = grad.shape[0]
        dbeta = column_sums(grad)
        dgamma = None
        if needs[1] or (needs[0] and ctx.batch_stats):
            dgamma = parallel.column_dots(grad, centered) * rstd  # sum(dy * xhat)
        grad_x = None
        if needs[0]:
            scale = rstd * weight
            if ctx.batch_stats:
                # scale * (dy - dbeta / rows - xhat * dgamma / rows), xhat = centered * rstd
                grad_x = channel_rowwise(two_term_combination, xp_of(grad).empty_like(grad), grad, scale,
                                         centered, -scale * rstd * dgamma / rows, -scale * dbeta / rows)
            else:
                grad_x = grad * scale
            grad_x = from_channels_last_2d(grad_x, ctx.shape)
        return grad_x, (dgamma if needs[1] else None), (dbeta if needs[2] else None)
