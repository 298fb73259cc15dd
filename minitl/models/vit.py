"""The Vision Transformer (ViT; Dosovitskiy et al. 2021): an image as a sequence of patches.

Chapter: "Transformers as foundation models", the ViT section (lesson 9). An image of
H x W pixels and C channels is cut into N = (H/p)(W/p) patches of p x p pixels; each patch,
flattened to a vector x_i of C p^2 numbers, is projected by one matrix E to the model width D.
A learned CLS token is put in front, and a learned position embedding is added:

    z_0 = [x_cls; x_1 E; x_2 E; ...; x_N E] + E_pos,      E_pos of shape (N + 1, D)

A stack of pre-norm Transformer encoder layers (`tl.nn.TransformerEncoderLayer`) runs over the
N + 1 tokens; the CLS token's output after a final layer norm, y = LN(z_L^0), is the image's
feature, and a linear head classifies it. There is no convolution: `patchify` is a reshape.

The position embeddings belong to a grid of (H/p) x (W/p) patches. For another image size the
grid changes, and `interpolate_pos_embed` resamples the learned grid bilinearly (the CLS entry is
kept), as fine-tuning at a higher resolution does (Dosovitskiy et al. 2021, section 3.2).

Parameter names follow a plain layout the transfer and PEFT tools can walk:
`embeddings.patch_embed.proj`, `embeddings.cls_token`, `embeddings.pos_embed`,
`encoder.layers.<k>` (PyTorch's TransformerEncoderLayer names inside), `encoder.norm`, `head`.
Every Linear layer carries PyTorch's name, so PEFT's `target_modules` read as they would
there: `self_attn.out_proj`, `linear1`, `linear2` in each layer (the query, key and value
projections are PyTorch's packed `self_attn.in_proj_weight`), `embeddings.patch_embed.proj`
and `head`. `model.features(x)` is the image's feature vector (the CLS token), of width
`model.num_features`: what an image encoder hands to CLIP.
"""
from __future__ import annotations

import math

import numpy as np

from .. import nn, ops
from ..backend import xp_of
from ..tensor import Tensor, no_grad


def _pair(size, what):
    pair = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if len(pair) != 2 or not all(isinstance(s, (int, np.integer)) and s > 0 for s in pair):
        raise ValueError(f"{what} must be a positive int or a pair of them, got {size!r}")
    return int(pair[0]), int(pair[1])


def patchify(x, patch_size):
    """(N, C, H, W) images -> (N, (H/p)(W/p), C p p) patches, row by row: patch (i, j) is token
    i * (W/p) + j, and its vector lists channel by channel the p x p pixels, row by row (the
    order of torch's `unfold` and of a convolution's weight (D, C, p, p))."""
    p = int(patch_size)
    if x.ndim != 4:
        raise ValueError(f"patchify: expected images (N, C, H, W), got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    if p <= 0 or h % p or w % p:
        raise ValueError(f"patchify: the image size {h}x{w} is not a multiple of the patch size {p}")
    # BEGIN EXERCISE vit.patch_embed
    # hint: reshape to (N, C, H/p, p, W/p, p), permute to (N, H/p, W/p, C, p, p), reshape to (N, (H/p)(W/p), C*p*p)
    x = x.reshape(n, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(n, (h // p) * (w // p), c * p * p)
    # END EXERCISE


def resize_bilinear(a, size, axes):
    """The array `a` resampled bilinearly to `size` along the two `axes`, as PyTorch's
    F.interpolate(mode="bilinear", align_corners=False, antialias=False) does: output index i
    reads the input at s = (i + 1/2) old/new - 1/2 (pixel centres line up), s clipped at 0,
    blending its two neighbours floor(s) and floor(s) + 1 (the last index at the edge)."""
    xp = xp_of(a)
    for axis, new in zip(axes, size):
        old = a.shape[axis]
        # BEGIN EXERCISE vit.interpolate_pos_embed
        # hint: s_i = max((i + 1/2) old/new - 1/2, 0); lo = floor(s), hi = min(lo + 1, old - 1), f = s - lo;
        # hint: a' = take(a, lo) (1 - f) + take(a, hi) f along the axis
        s = xp.maximum((xp.arange(new) + 0.5) * (old / new) - 0.5, 0.0)
        lo = xp.floor(s).astype(np.int64)
        hi = xp.minimum(lo + 1, old - 1)
        f = (s - lo).astype(a.dtype).reshape((new,) + (1,) * (a.ndim - axis % a.ndim - 1))
        a = xp.take(a, lo, axis=axis) * (1 - f) + xp.take(a, hi, axis=axis) * f
        # END EXERCISE
    return a


def interpolate_pos_embed(pos_embed, new_grid, old_grid=None, num_prefix_tokens=1):
    """Position embeddings (1, prefix + h*w, D) of an h x w patch grid -> (1, prefix + h'*w', D)
    for the grid `new_grid` = (h', w'): the prefix (the CLS token's entry) is kept, the grid of
    D-vectors is resampled bilinearly (`resize_bilinear`, PyTorch's align_corners=False).
    `old_grid` defaults to the square grid that fits. Takes and returns an array (a Tensor's
    data is taken): it rewrites weights, it is not a step of training."""
    pos = pos_embed.data if isinstance(pos_embed, Tensor) else pos_embed
    if pos.ndim != 3 or pos.shape[0] != 1:
        raise ValueError(f"interpolate_pos_embed: expected position embeddings (1, tokens, D), got shape {tuple(pos.shape)}")
    patches = pos.shape[1] - num_prefix_tokens
    if old_grid is None:
        side = math.isqrt(max(patches, 0))
        if side * side != patches:
            raise ValueError(f"interpolate_pos_embed: {patches} patch positions are not a square grid; pass old_grid=(h, w)")
        old_grid = (side, side)
    (h, w), (new_h, new_w) = _pair(old_grid, "old_grid"), _pair(new_grid, "new_grid")
    if h * w != patches:
        raise ValueError(f"interpolate_pos_embed: old_grid {h}x{w} holds {h * w} positions, the embeddings have "
                         f"{patches} after {num_prefix_tokens} prefix token(s)")
    xp = xp_of(pos)
    prefix, grid = pos[:, :num_prefix_tokens], pos[:, num_prefix_tokens:].reshape(1, h, w, -1)
    grid = resize_bilinear(grid, (new_h, new_w), axes=(1, 2))
    return xp.concatenate([prefix, grid.reshape(1, new_h * new_w, -1)], axis=1)


class PatchEmbed(nn.Module):
    """Images (N, C, H, W) -> patch tokens (N, num_patches, D): `patchify`, then one linear map
    x_i E (+ b) of every flattened patch (a p x p convolution with stride p, written as what
    it is)."""

    def __init__(self, img_size=28, patch_size=4, in_chans=1, embed_dim=128):
        super().__init__()
        self.patch_size = int(patch_size)
        self.in_chans = int(in_chans)
        self.img_size = _pair(img_size, "img_size")
        if any(s % self.patch_size for s in self.img_size):
            raise ValueError(f"PatchEmbed: the image size {self.img_size} is not a multiple of the patch size "
                             f"{self.patch_size}")
        self.proj = nn.Linear(self.in_chans * self.patch_size ** 2, embed_dim)

    @property
    def grid_size(self):
        return tuple(s // self.patch_size for s in self.img_size)

    @property
    def num_patches(self):
        return self.grid_size[0] * self.grid_size[1]

    def forward(self, x):
        if x.ndim != 4 or tuple(x.shape[1:]) != (self.in_chans, *self.img_size):
            raise ValueError(f"PatchEmbed: expected images (N, {self.in_chans}, {self.img_size[0]}, "
                             f"{self.img_size[1]}), got shape {tuple(x.shape)}; for another size, call the "
                             f"model's set_image_size first")
        return self.proj(patchify(x, self.patch_size))


class ViTEmbeddings(nn.Module):
    """z_0 = [x_cls; x_1 E; ...; x_N E] + E_pos: the patch tokens, the CLS token in front, the
    position embeddings added (then dropout). The lowest block of the model: freezing it
    freezes E, x_cls and E_pos together."""

    def __init__(self, img_size=28, patch_size=4, in_chans=1, embed_dim=128, dropout=0.0):
        super().__init__()
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(np.zeros((1, 1, embed_dim), dtype=np.float32))
        self.pos_embed = nn.Parameter(np.zeros((1, self.patch_embed.num_patches + 1, embed_dim), dtype=np.float32))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        tokens = self.patch_embed(x)
        n, _, width = tokens.shape
        cls = self.cls_token.expand(n, 1, width)
        return self.dropout(ops.cat([cls, tokens], dim=1) + self.pos_embed)


class VisionTransformer(nn.Module):
    """embeddings -> encoder (pre-norm layers, final LayerNorm) -> CLS token -> head.

    `features(x)` is the CLS token's output after the final norm (what the head reads, what
    CLIP projects); `blocks()` lists the stages from the input up for the transfer toolkit;
    `attention_maps(x)` returns every layer's attention weights.
    """

    def __init__(self, img_size=28, patch_size=4, in_chans=1, num_classes=10, embed_dim=128, depth=4,
                 num_heads=4, mlp_dim=512, dropout=0.0, layer_norm_eps=1e-6):
        super().__init__()
        self.embeddings = ViTEmbeddings(img_size, patch_size, in_chans, embed_dim, dropout)
        layer = nn.TransformerEncoderLayer(embed_dim, num_heads, mlp_dim, dropout, "gelu", layer_norm_eps,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, norm=nn.LayerNorm(embed_dim, eps=layer_norm_eps))
        self.head = nn.Linear(embed_dim, num_classes)
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.num_features = embed_dim  # the width of `features(x)` (timm's name), what CLIP projects

    @property
    def patch_embed(self):
        return self.embeddings.patch_embed

    def blocks(self):
        """[embeddings, layer 0, ..., layer L-1 with the final norm, head]: freezing the lowest
        1 + k blocks freezes the patch embedding (with CLS and E_pos) and k encoder layers. The
        final norm rides with the top layer: it normalises what that layer writes."""
        layers = list(self.encoder.layers)
        top = nn.ModuleList([layers[-1], self.encoder.norm])
        return [self.embeddings, *layers[:-1], top, self.head]

    def forward_features(self, x):
        """All N + 1 tokens after the final norm: (N, 1 + num_patches, D)."""
        return self.encoder(self.embeddings(x))

    def features(self, x):
        """y = LN(z_L^0): the CLS token's feature (N, D), what the head classifies."""
        return self.forward_features(x)[:, 0]

    def forward(self, x):
        return self.head(self.features(x))

    @no_grad()
    def attention_maps(self, x):
        """Every layer's attention weights for the images x, a list of arrays (N, heads, T, T)
        with T = 1 + num_patches: row 0 is where the CLS token looks. Runs in eval mode."""
        was_training = self.training
        self.eval()
        maps, z = [], self.embeddings(x if isinstance(x, Tensor) else Tensor(x))
        for layer in self.encoder.layers:
            h = layer.norm1(z) if layer.norm_first else z
            maps.append(layer.self_attn(h, h, h, need_weights=True, average_attn_weights=False)[1].data)
            z = layer(z)
        self.train(was_training)
        return maps

    def set_image_size(self, img_size):
        """Take images of another size: the patch grid changes and the position embeddings are
        resampled to it (`interpolate_pos_embed`); E, the CLS token and the encoder stay as they
        are. E_pos becomes a new Parameter: build the optimizer after this call."""
        patch = self.embeddings.patch_embed
        new = _pair(img_size, "img_size")
        if any(s % patch.patch_size for s in new):
            raise ValueError(f"set_image_size: {new} is not a multiple of the patch size {patch.patch_size}")
        pos = self.embeddings.pos_embed
        resized = interpolate_pos_embed(pos, tuple(s // patch.patch_size for s in new), patch.grid_size)
        self.embeddings.pos_embed = nn.Parameter(resized, requires_grad=pos.requires_grad)
        patch.img_size = new
        return self


def attention_rollout(maps, residual=0.5):
    """Attention rollout (Abnar and Zuidema 2020): how much each input token flows into each
    output token through all layers, A_roll = prod_l (residual I + (1 - residual) mean_heads A_l),
    rows renormalised. `maps`: `attention_maps`' list; returns (N, T, T)."""
    rollout = None
    for weights in maps:
        mixed = weights.mean(axis=1)
        mixed = residual * np.eye(mixed.shape[-1], dtype=mixed.dtype) + (1 - residual) * mixed
        mixed /= mixed.sum(axis=-1, keepdims=True)
        rollout = mixed if rollout is None else mixed @ rollout
    return rollout


def vit_mini(num_classes=10, img_size=28, patch_size=4, in_chans=1, embed_dim=128, depth=4, num_heads=4,
             mlp_dim=512, dropout=0.0):
    """A ViT for 1 x 28 x 28 images: 4 x 4 patches (7 x 7 = 49 tokens and CLS), width 128,
    4 layers of 4 heads, MLP 512 (about 0.8M parameters); its head is `model.head`."""
    return VisionTransformer(img_size, patch_size, in_chans, num_classes, embed_dim, depth, num_heads, mlp_dim,
                             dropout)


def torch_vit(model):
    """The same network built from torch.nn layers (a p x p, stride-p Conv2d for the patch
    embedding, nn.TransformerEncoder) with `model`'s weights copied, in float64 when `model`
    is: the tests' and benchmarks' reference. Needs PyTorch."""
    import torch

    patch, layer = model.embeddings.patch_embed, model.encoder.layers[0]
    embed_dim, depth = model.embed_dim, len(model.encoder.layers)
    eps = model.encoder.norm.eps

    class TorchViT(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.patch = torch.nn.Conv2d(patch.in_chans, embed_dim, patch.patch_size, stride=patch.patch_size)
            self.cls_token = torch.nn.Parameter(torch.zeros(1, 1, embed_dim))
            self.pos_embed = torch.nn.Parameter(torch.zeros(1, patch.num_patches + 1, embed_dim))
            block = torch.nn.TransformerEncoderLayer(embed_dim, model.num_heads, layer.linear1.out_features,
                                                     layer.dropout.p, "gelu", eps, batch_first=True, norm_first=True)
            self.encoder = torch.nn.TransformerEncoder(block, depth, norm=torch.nn.LayerNorm(embed_dim, eps=eps),
                                                       enable_nested_tensor=False)
            self.head = torch.nn.Linear(embed_dim, model.head.out_features)
            self.dropout = torch.nn.Dropout(model.embeddings.dropout.p)

        def forward(self, x):
            tokens = self.patch(x).flatten(2).transpose(1, 2)
            z = torch.cat([self.cls_token.expand(len(x), -1, -1), tokens], dim=1) + self.pos_embed
            return self.head(self.encoder(self.dropout(z))[:, 0])

    twin = TorchViT()
    state = {k: np.asarray(v) for k, v in model.state_dict().items()}
    renamed = {"patch.weight": state.pop("embeddings.patch_embed.proj.weight").reshape(twin.patch.weight.shape),
               "patch.bias": state.pop("embeddings.patch_embed.proj.bias"),
               "cls_token": state.pop("embeddings.cls_token"), "pos_embed": state.pop("embeddings.pos_embed"), **state}
    dtype = torch.float64 if model.head.weight.dtype == np.float64 else torch.float32
    twin.to(dtype).load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)).to(dtype) for k, v in renamed.items()})
    return twin
