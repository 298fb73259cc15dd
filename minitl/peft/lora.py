"""LoRA: low-rank adaptation (Hu et al. 2021; chapter: parameter-efficient fine-tuning).

A pretrained weight W (d x k) stays frozen; what is learned is its change, as a product of two
thin matrices, B (d x r) and A (r x k) with r << min(d, k):

    h = W x + (alpha / r) B A x

That is r (d + k) numbers instead of d k. A starts random (Kaiming-uniform, as PEFT does) and B
at zero, so BA = 0 and the adapted model starts exactly equal to the pretrained one. After
training, W' = W + (alpha / r) B A is one matrix again (`merge`): the adapter costs nothing at
inference. The layers keep PEFT's names: `base_layer`, `lora_A[adapter]`, `lora_B[adapter]`.
"""
from __future__ import annotations

import math

from .. import nn
from ..backend import xp_of
from .tuners import TunerLayer


def lora_output(base_output, x, A, B, scaling):
    """W x + scaling B A x, given base_output = W x (+ b). x (..., k), A (r, k), B (d, r); in
    PyTorch's row layout, where a Linear computes x W^T, the update B A x is x A^T B^T."""
    # BEGIN EXERCISE peft.lora_forward
    # hint: base_output + scaling * (x @ A^T) @ B^T; apply A first so the d x k matrix BA is never formed
    return base_output + (x @ A.T) @ B.T * scaling
    # END EXERCISE


def merged_weight(weight, A, B, scaling):
    """W' = W + scaling B A (arrays): the LoRA update folded into the frozen weight."""
    # BEGIN EXERCISE peft.lora_merge
    # hint: W + scaling * (B @ A): B (d, r) times A (r, k) is a d x k matrix of rank at most r, W's shape
    return weight + scaling * (B @ A)
    # END EXERCISE


class LoraLayer(TunerLayer):
    """The per-adapter parts: lora_A and lora_B (bias-free Linears, so their `.weight` are A
    (r, k) and B (d, r)), lora_dropout on the input of A, and scaling = lora_alpha / r."""

    adapter_layer_names = ("lora_A", "lora_B")

    def __init__(self, base_layer, in_features, out_features):
        super().__init__(base_layer)
        self.in_features, self.out_features = in_features, out_features
        self.lora_A, self.lora_B = nn.ModuleDict(), nn.ModuleDict()
        self.lora_dropout = nn.ModuleDict()
        self.r, self.lora_alpha, self.scaling = {}, {}, {}

    def update_layer(self, adapter_name, config):
        """Add the adapter `adapter_name` with the config's r, alpha and dropout."""
        r = config.r
        self.r[adapter_name], self.lora_alpha[adapter_name] = r, config.lora_alpha
        self.scaling[adapter_name] = config.lora_alpha / r
        self.lora_A[adapter_name] = nn.Linear(self.in_features, r, bias=False)
        self.lora_B[adapter_name] = nn.Linear(r, self.out_features, bias=False)
        self.lora_dropout[adapter_name] = nn.Dropout(config.lora_dropout) if config.lora_dropout else nn.Identity()
        if config.init_lora_weights:  # PEFT's init: A Kaiming-uniform (a = sqrt 5), B zero
            nn.init.kaiming_uniform_(self.lora_A[adapter_name].weight, a=math.sqrt(5))
            nn.init.zeros_(self.lora_B[adapter_name].weight)
        dtype = self.base_weight().dtype
        self.lora_A[adapter_name].to(dtype)
        self.lora_B[adapter_name].to(dtype)
        self.set_adapter(self.active_adapter)

    def delta_weight(self, adapter_name):
        """scaling B A as an array of W's shape (d, k)."""
        A, B = self.lora_A[adapter_name].weight.data, self.lora_B[adapter_name].weight.data
        return merged_weight(xp_of(A).zeros((self.out_features, self.in_features), dtype=A.dtype), A, B,
                             self.scaling[adapter_name])

    def merge(self, adapter_names=None):
        """Fold the active adapter (or `adapter_names`) into the base weight: W <- W + scaling B A."""
        for name in adapter_names or [self.active_adapter]:
            if name in self.adapter_names and name not in self.merged_adapters:
                W = self.base_weight()
                A, B = self.lora_A[name].weight.data, self.lora_B[name].weight.data
                W.data[...] = merged_weight(W.data, A, B, self.scaling[name])
                self.merged_adapters.append(name)

    def unmerge(self):
        """Take the merged adapters out of the base weight again: W <- W - scaling B A."""
        while self.merged_adapters:
            name = self.merged_adapters.pop()
            W = self.base_weight()
            A, B = self.lora_A[name].weight.data, self.lora_B[name].weight.data
            W.data[...] = merged_weight(W.data, A, B, -self.scaling[name])

    def base_weight(self):
        raise NotImplementedError


class Linear(LoraLayer):
    """LoRA on an nn.Linear: h = W x + b + (alpha / r) B A x."""

    def __init__(self, base_layer, adapter_name, config):
        super().__init__(base_layer, base_layer.in_features, base_layer.out_features)
        self.active_adapter = adapter_name
        self.update_layer(adapter_name, config)

    def base_weight(self):
        return self.base_layer.weight

    def forward(self, x):
        result = self.base_layer(x)
        name = self.uses_adapter()
        if name is None:
            return result
        return lora_output(result, self.lora_dropout[name](x), self.lora_A[name].weight,
                           self.lora_B[name].weight, self.scaling[name])

    def extra_repr(self):
        return f"r={self.r}, lora_alpha={self.lora_alpha}"


class MultiheadAttention(LoraLayer):
    """LoRA on the query, key and value projections of an nn.MultiheadAttention, the matrices
    the LoRA paper adapts: [W_q; W_k; W_v] (3E x E) + (alpha / r) B A, A (r, E), B (3E, r).
    The output projection is a Linear of its own (`out_proj`), targeted by that name. As PEFT
    does, forward builds the merged 3E x E weight and runs the attention with it (so
    lora_dropout, which acts on the input of A, does not apply here)."""

    def __init__(self, base_layer, adapter_name, config):
        if not base_layer._qkv_same_embed_dim:
            raise ValueError("LoRA on MultiheadAttention needs kdim == vdim == embed_dim (one in_proj_weight)")
        super().__init__(base_layer, base_layer.embed_dim, 3 * base_layer.embed_dim)
        self.active_adapter = adapter_name
        self.update_layer(adapter_name, config)

    def base_weight(self):
        return self.base_layer.in_proj_weight

    def forward(self, query, key, value, **kwargs):
        name = self.uses_adapter()
        if name is None:
            return self.base_layer(query, key, value, **kwargs)
        attention, frozen = self.base_layer, self.base_layer.in_proj_weight
        A, B = self.lora_A[name].weight, self.lora_B[name].weight
        # the module reads self.in_proj_weight; for this call it reads W + scaling B A (a graph
        # node, so A and B get gradients), the registered Parameter staying where it is
        object.__setattr__(attention, "in_proj_weight", frozen + B @ A * self.scaling[name])
        try:
            return attention(query, key, value, **kwargs)
        finally:
            object.__setattr__(attention, "in_proj_weight", frozen)


def wrap(module, adapter_name, config):
    """The LoRA layer for `module`, or a clear error for a kind LoRA cannot wrap here."""
    if isinstance(module, nn.Linear):
        return Linear(module, adapter_name, config)
    if isinstance(module, nn.MultiheadAttention):
        return MultiheadAttention(module, adapter_name, config)
    raise ValueError(f"LoRA cannot wrap a {type(module).__name__}: the supported target modules are nn.Linear "
                     f"and nn.MultiheadAttention")
