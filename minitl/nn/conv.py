"""Vision layers: Conv2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d and BatchNorm2d, each a thin
Module over a function of `minitl.ops.conv` (where the math and its comments live).

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


class MaxPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x):
        return C.max_pool2d(x, self.kernel_size, self.stride, self.padding)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride or self.kernel_size}, padding={self.padding}"


class AvgPool2d(MaxPool2d):
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


class BatchNorm2d(Module):
    """Per-channel batch normalisation (eq. BN) with learnable gamma (`weight`) and beta
    (`bias`), and `running_mean` / `running_var` buffers updated while training."""

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

    def forward(self, x):
        return C.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            self.training, self.momentum, self.eps)

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class BatchNorm1d(BatchNorm2d):
    """The same normalisation for (N, C) or (N, C, L) inputs: statistics over all axes but 1."""
