"""Bottleneck adapters (Houlsby et al. 2019; chapter: parameter-efficient fine-tuning).

A small two-layer network with a skip connection is inserted after a frozen sub-layer:

    y = h + f(h W_down) W_up,    W_down (d x m), W_up (m x d), m << d

h is the sub-layer's output (d features). W_up starts at zero, so y = h: the adapted model
starts equal to the pretrained one. Houlsby's places in a Transformer layer are after the
attention and after the MLP (before each residual sum); in a ResNet the adapter sits at the end
of each residual branch, and acts on the channels of every pixel. Unlike LoRA, f makes the
adapter non-linear: it cannot be merged into W, and costs a little at inference.
"""
from __future__ import annotations

import numpy as np

from .. import nn, ops
from .tuners import TunerLayer

ACTIVATIONS = {"relu": ops.relu, "gelu": ops.gelu, "tanh": ops.tanh}


def adapter_block(x, W_down, W_up, activation):
    """x + f(x W_down) W_up for x (..., d), W_down (d, m), W_up (m, d), f = `activation`."""
    # BEGIN EXERCISE peft.adapter_block
    # hint: x + f(x @ W_down) @ W_up: down to the bottleneck m, the non-linearity f, up to d again, then the skip x
    return x + activation(x @ W_down) @ W_up
    # END EXERCISE


class Adapter(nn.Module):
    """One bottleneck of width m on d features. W_down starts uniform in +-1/sqrt(d) (a Linear's
    init), W_up at zero. On a feature map (N, C, H, W) it acts on the C channels of each pixel."""

    def __init__(self, features, bottleneck_size, non_linearity="relu"):
        super().__init__()
        bound = 1 / np.sqrt(features)
        self.W_down = nn.Parameter(np.empty((features, bottleneck_size), dtype=np.float32))
        nn.init.uniform_(self.W_down, -bound, bound)
        self.W_up = nn.Parameter(np.zeros((bottleneck_size, features), dtype=np.float32))
        self.non_linearity = non_linearity

    def forward(self, x):
        activation = ACTIVATIONS[self.non_linearity]
        if x.ndim == 4:  # channels last, so that the bottleneck mixes channels, pixel by pixel
            y = adapter_block(x.permute(0, 2, 3, 1), self.W_down, self.W_up, activation)
            return y.permute(0, 3, 1, 2)
        return adapter_block(x, self.W_down, self.W_up, activation)

    def extra_repr(self):
        return f"{self.W_down.shape[0]} -> {self.W_down.shape[1]} -> {self.W_up.shape[1]}, {self.non_linearity}"


def output_features(module):
    """The width d of what `module` outputs: a Linear's out_features, a norm's or conv's channels."""
    for attribute in ("out_features", "num_features", "out_channels"):
        if isinstance(getattr(module, attribute, None), int):
            return getattr(module, attribute)
    if isinstance(module, nn.LayerNorm):
        return module.normalized_shape[-1]
    raise ValueError(f"an adapter cannot follow a {type(module).__name__}: its output width is unknown (targets "
                     f"are Linear, LayerNorm, BatchNorm or Conv2d layers)")


class AdapterLayer(TunerLayer):
    """A frozen `base_layer` followed by the active adapter: y = a(base_layer(x))."""

    adapter_layer_names = ("adapters",)

    def __init__(self, base_layer, adapter_name, config):
        super().__init__(base_layer)
        self.features = output_features(base_layer)
        self.adapters = nn.ModuleDict()
        self.active_adapter = adapter_name
        self.update_layer(adapter_name, config)

    def update_layer(self, adapter_name, config):
        self.adapters[adapter_name] = Adapter(self.features, config.bottleneck_size, config.non_linearity)
        self.set_adapter(self.active_adapter)

    def forward(self, *args, **kwargs):
        result = self.base_layer(*args, **kwargs)
        name = self.uses_adapter()
        return result if name is None else self.adapters[name](result)


def default_targets(model):
    """Houlsby's places: each Transformer encoder layer's attention output projection and second
    MLP Linear; each ResNet basic block's last batch norm (the end of its residual branch)."""
    from ..models.resnet_mini import BasicBlock

    targets = []
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(module, nn.TransformerEncoderLayer):
            targets += [prefix + "self_attn.out_proj", prefix + "linear2"]
        elif isinstance(module, BasicBlock):
            targets.append(prefix + "bn2")
    if not targets:
        names = [n for n, _ in model.named_modules() if n]
        raise ValueError("AdapterConfig: the model has no TransformerEncoderLayer and no BasicBlock for the default "
                         f"places; give target_modules. Its modules are: {', '.join(names)}")
    return targets
