"""CLIP's symmetric contrastive loss (chapter: transformers as foundation models, CLIP; lesson 10).

A batch holds N images and the N captions written for them. Both encoders' features are
L2-normalised, so that a dot product is a cosine similarity, and every image is scored against
every caption:

    I = image_features / ||image_features||,   T = text_features / ||text_features||
    logits = exp(t) I T^T                       (N, N); t the learnable log-temperature

Row i of `logits` is a classification of image i over the N captions, whose right answer is
caption i (the diagonal); column j classifies caption j over the N images. The loss is the mean
of the two cross-entropies (Radford et al. 2021, figure 3):

    L = ( CE(logits, arange(N)) + CE(logits^T, arange(N)) ) / 2

exp(t) is the inverse temperature: at t = log(1/0.07) (CLIP's start) a cosine of 1 becomes a
logit of 14.3, sharp enough for a softmax over the batch; CLIP clamps exp(t) at 100.
"""
from __future__ import annotations

from ..backend import xp_of
from ..tensor import Tensor


def clip_loss(image_features, text_features, logit_scale):
    """The symmetric InfoNCE loss of a batch of N matching (image, text) pairs, a scalar Tensor.

    image_features (N, D) and text_features (N, D): row i of each comes from pair i.
    logit_scale: the log of the inverse temperature, t (a Tensor of one element, such as
    `CLIP.logit_scale`, or a number); the logits are exp(t) I T^T.
    """
    from . import cross_entropy, exp, normalize

    for name, features in (("image_features", image_features), ("text_features", text_features)):
        if not isinstance(features, Tensor) or features.ndim != 2:
            raise ValueError(f"clip_loss: {name} must be a Tensor of shape (N, D), got "
                             f"{getattr(features, 'shape', type(features).__name__)}")
    if image_features.shape != text_features.shape:
        raise ValueError(f"clip_loss: the image and text features of N pairs must have one shape (N, D), got "
                         f"{tuple(image_features.shape)} and {tuple(text_features.shape)} (project both to one width)")
    if not isinstance(logit_scale, Tensor):
        logit_scale = Tensor._wrap(xp_of(image_features.data).asarray(logit_scale, dtype=image_features.dtype))
    if logit_scale.numel() != 1:
        raise ValueError(f"clip_loss: logit_scale must hold one number, got shape {tuple(logit_scale.shape)}")
    targets = xp_of(image_features.data).arange(image_features.shape[0])  # pair i matches pair i
    # BEGIN EXERCISE clip.contrastive_loss
    # hint: I, T = normalize each features (dim=1); logits = exp(logit_scale) * I @ T^T; return (CE(logits, targets) + CE(logits^T, targets)) / 2
    image, text = normalize(image_features, dim=1), normalize(text_features, dim=1)
    logits = exp(logit_scale.reshape(())) * (image @ text.transpose(0, 1))
    return (cross_entropy(logits, targets) + cross_entropy(logits.transpose(0, 1), targets)) / 2
    # END EXERCISE
