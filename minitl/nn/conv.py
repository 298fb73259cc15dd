"""Vision layers: Conv2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, BatchNorm2d and BatchNorm1d,
each a thin Module over a function of `minitl.ops.conv` (where the math and its comments live).

Chapter: "Transfer learning in computer vision". BatchNorm's running statistics are buffers,
not parameters: they are saved in `state_dict()` and travel with a pretrained model, but no
optimizer touches them, and `eval()` switches the layer to use them.
"""
from __future__ import annotations

import math

import numpy as np

from ..ops import conv as C
from . import init
from .module import Module, Parameter


class Conv2d(Module):
    """y = conv2d(x, W) + b with W (out_channels, in_channels, k, k); PyTorch's default init
    (uniform in +-1/sqrt(fan_in) for W and b)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = C._pair(kernel_size), stride, padding
        self.weight = Parameter(np.empty((out_channels, in_channels) + self.kernel_size, dtype=np.float32))
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if bias:
            bound = 1 / math.sqrt(in_channels * self.kernel_size[0] * self.kernel_size[1])
            self.bias = Parameter(np.empty(out_channels, dtype=np.float32))
            init.uniform_(self.bias, -bound, bound)
        else:
            self.bias = None

    def forward(self, x):
        return C.conv2d(x, self.weight, self.bias, self.stride, self.padding)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}")


class _Pool2d(Module):
    """What the 2-D poolings share (their arguments and repr), as PyTorch's private
    `_MaxPoolNd` / `_AvgPoolNd` bases; neither pooling is a kind of the other."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride or self.kernel_size}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    """The largest value of each kernel_size window (stride defaults to kernel_size)."""

    def forward(self, x):
        return C.max_pool2d(x, self.kernel_size, self.stride, self.padding)


class AvgPool2d(_Pool2d):
    """The mean of each kernel_size window (stride defaults to kernel_size)."""

    def forward(self, x):
        return C.avg_pool2d(x, self.kernel_size, self.stride, self.padding)


class AdaptiveAvgPool2d(Module):
    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x):
        return C.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class _BatchNorm(Module):
    """Per-channel batch normalisation (eq. BN) with learnable gamma (`weight`) and beta
    (`bias`), and `running_mean` / `running_var` buffers updated while training. The private
    base of BatchNorm1d and BatchNorm2d, as PyTorch's `_BatchNorm`: they differ only in the
    inputs they accept, and neither is a kind of the other."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        if affine:
            self.weight = Parameter(np.ones(num_features, dtype=np.float32))
            self.bias = Parameter(np.zeros(num_features, dtype=np.float32))
        else:
            self.weight = self.bias = None
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, dtype=np.float32))
            self.register_buffer("running_var", np.ones(num_features, dtype=np.float32))
        else:
            self.running_mean = self.running_var = None

    def _check_input_dim(self, x):
        raise NotImplementedError

    def forward(self, x):
        self._check_input_dim(x)
        return C.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            self.training, self.momentum, self.eps)

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class BatchNorm2d(_BatchNorm):
    """Batch norm of images (N, C, H, W): statistics per channel over N, H and W."""

    def _check_input_dim(self, x):
        if x.ndim != 4:
            raise ValueError(f"{type(self).__name__}: expected a 4-D input (N, C, H, W), got shape {tuple(x.shape)}")


class BatchNorm1d(_BatchNorm):
    """The same normalisation for (N, C) or (N, C, L) inputs: statistics over all axes but 1."""

    def _check_input_dim(self, x):
        if x.ndim not in (2, 3):
            raise ValueError(f"{type(self).__name__}: expected a 2-D (N, C) or 3-D (N, C, L) input, "
                             f"got shape {tuple(x.shape)}")
