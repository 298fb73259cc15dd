"""CLIP in miniature: an image encoder and a text encoder trained to agree (chapter: transformers
as foundation models, CLIP; lesson 10).

Two pretrained encoders, one per modality, so there is transfer on both sides: the image
encoder is the CNN pretrained on Fashion-MNIST's source classes (`minitl.pretrained`; the ViT
plugs in the same way), the text encoder is the mini-BERT or mini-GPT pretrained on GCIDE
(`minitl.models.pretraining`). Each is followed by a linear projection to one shared width:

    I = f_img(x) W_i,     T = f_txt(caption) W_t                 (N, D) each
    logits = exp(t) (I/||I||) (T/||T||)^T                        (N, N)
    L = ( CE(logits, diag) + CE(logits^T, diag) ) / 2            `F.clip_loss`

t is a learned log-temperature: it starts at log(1/0.07), as in CLIP, and exp(t) is clamped
at 100 (t at log 100). After training, a class is a caption: zero-shot classification scores an
image against the embedded prompts of every class ("a photo of a coat.") and picks the best,
with no classifier trained on those classes (`zero_shot_classifier`, `zero_shot_predict`).

**The image encoder is pluggable**: any module mapping images (N, C, H, W) to features (N, d)
with an attribute `out_features` = d. `ImageFeatures(model)` makes one of a classifier that has
a `features(x)` method and a linear head (`fc`, as the CNN, or `head`, as the ViT).

**The text encoder** wraps a text transformer with `encode(input_ids, attention_mask,
pooling=...) -> (per-token states, pooled)` and a `config["d_model"]`: mini-BERT (pooled by
the mean over real tokens: its [CLS] is never trained by masked LM alone) or mini-GPT (the last
real token, the one that has read the whole caption, as CLIP's own text encoder pools).
`text_backbone` loads the pretrained one and says which initialisation it used; where that
module or its weights are missing it builds the same architecture untrained and says so.

    model = CLIP(ImageFeatures(cnn), TextEncoder(bert, "mean"), embed_dim=64)
    loss = model.loss(images, input_ids, attention_mask)
"""
from __future__ import annotations

import math

import numpy as np

from .. import nn, ops
from ..ops.contrastive import clip_loss
from ..tensor import Tensor, no_grad

INITIAL_LOGIT_SCALE = math.log(1 / 0.07)  # CLIP's start: exp(t) = 14.3
MAX_LOGIT_SCALE = math.log(100)           # CLIP's clamp: exp(t) <= 100
TEXT_KINDS = ("bert", "gpt")
TEXT_POOLING = {"bert": "mean", "gpt": "last"}


class ImageFeatures(nn.Module):
    """A classifier's body as an image encoder: forward(x) = model.features(x), (N, d), with
    `out_features` = d read from its head (`fc` or `head`), or given."""

    def __init__(self, model, out_features=None):
        super().__init__()
        if not callable(getattr(model, "features", None)):
            raise TypeError(f"ImageFeatures: {type(model).__name__} has no features(x) method; give CLIP any module "
                            f"mapping images to (N, d) features, with an attribute out_features = d")
        if out_features is None:
            head = getattr(model, "fc", None) or getattr(model, "head", None)
            out_features = getattr(head, "in_features", None)
            if out_features is None:
                raise ValueError(f"ImageFeatures: cannot read the feature width of {type(model).__name__} "
                                 f"(no fc or head with in_features); pass out_features=")
        self.model = model
        self.out_features = int(out_features)

    def forward(self, images):
        return self.model.features(images)


class TextEncoder(nn.Module):
    """A text transformer as CLIP's text encoder: forward(input_ids, attention_mask) -> the pooled
    feature (N, d) of each caption; `out_features` = d. The LM head is not used (nor trained)."""

    def __init__(self, backbone, pooling="mean"):
        super().__init__()
        if not callable(getattr(backbone, "encode", None)) or "d_model" not in getattr(backbone, "config", {}):
            raise TypeError(f"TextEncoder: {type(backbone).__name__} needs encode(input_ids, attention_mask, "
                            f"pooling=) and config['d_model'] (as tl.models.bert and tl.models.gpt have)")
        if getattr(backbone, "lm_head", None) is not None:
            backbone.lm_head = None  # CLIP predicts no words: the head neither trains nor counts
        self.backbone = backbone
        self.pooling = pooling
        self.out_features = int(backbone.config["d_model"])

    def forward(self, input_ids, attention_mask=None):
        return self.backbone.encode(input_ids, attention_mask, pooling=self.pooling)[1]


class CLIP(nn.Module):
    """Contrastive language-image pretraining on two given encoders (see the module docstring).

    encode_image(images) -> (N, embed_dim), encode_text(input_ids, attention_mask) -> (M,
    embed_dim): projected, not yet normalised. forward(images, input_ids, attention_mask) ->
    (logits_per_image (N, M), logits_per_text (M, N)), as OpenAI's CLIP returns them.
    loss(images, input_ids, attention_mask) -> the symmetric contrastive loss of N pairs.
    """

    def __init__(self, image_encoder, text_encoder, embed_dim=64):
        super().__init__()
        for side, encoder in (("image", image_encoder), ("text", text_encoder)):
            if not isinstance(getattr(encoder, "out_features", None), (int, np.integer)):
                raise TypeError(f"CLIP: the {side} encoder ({type(encoder).__name__}) needs an int attribute "
                                f"out_features, the width of the features it returns")
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        # CLIP's projections have no bias: a feature's direction is what the loss compares
        self.image_projection = nn.Linear(image_encoder.out_features, embed_dim, bias=False)
        self.text_projection = nn.Linear(text_encoder.out_features, embed_dim, bias=False)
        self.logit_scale = nn.Parameter(Tensor(np.array(INITIAL_LOGIT_SCALE, dtype=np.float32)))
        self.embed_dim = embed_dim

    def scale(self):
        """t clamped at log(100): the log-temperature the logits use (exp(t) <= 100)."""
        return self.logit_scale.clamp(max=MAX_LOGIT_SCALE)

    def encode_image(self, images):
        return self.image_projection(self.image_encoder(images))

    def encode_text(self, input_ids, attention_mask=None):
        return self.text_projection(self.text_encoder(input_ids, attention_mask))

    def forward(self, images, input_ids, attention_mask=None):
        image = ops.normalize(self.encode_image(images), dim=1)
        text = ops.normalize(self.encode_text(input_ids, attention_mask), dim=1)
        logits_per_image = self.scale().exp() * (image @ text.transpose(0, 1))
        return logits_per_image, logits_per_image.transpose(0, 1)

    def loss(self, images, input_ids, attention_mask=None):
        return clip_loss(self.encode_image(images), self.encode_text(input_ids, attention_mask), self.scale())


class ContrastiveObjective(nn.Module):
    """CLIP's training objective for `minitl.training.train_step`: model(batch) is the loss of
    the batch (images, input_ids, attention_mask); pass `passthrough_loss` as the loss_fn."""

    def __init__(self, clip):
        super().__init__()
        self.clip = clip

    def forward(self, batch):
        return self.clip.loss(*batch)


def passthrough_loss(loss, _target):
    """The loss_fn of `ContrastiveObjective`: its output already is the loss."""
    return loss


# --- zero-shot classification -------------------------------------------------------------------

@no_grad()
def zero_shot_classifier(model, prompts, tokenize, batch_size=256):
    """One unit vector per class: the mean of the normalised text embeddings of its prompts,
    normalised again (CLIP's prompt ensembling). prompts: a list, one list of strings per class;
    tokenize(texts) -> {"input_ids", "attention_mask"}. Returns a (classes, embed_dim) array."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("zero_shot_classifier: every class needs at least one prompt")
    was_training = model.training
    model.eval()
    flat = [text for class_prompts in prompts for text in class_prompts]
    rows = []
    for start in range(0, len(flat), batch_size):
        batch = tokenize(flat[start:start + batch_size])
        rows.append(ops.normalize(model.encode_text(batch["input_ids"], batch["attention_mask"]), dim=1).data)
    model.train(was_training)
    embedded = np.concatenate(rows)
    bounds = np.cumsum([0] + [len(p) for p in prompts])
    classes = np.stack([embedded[a:b].mean(axis=0) for a, b in zip(bounds[:-1], bounds[1:])])
    return classes / np.linalg.norm(classes, axis=1, keepdims=True)


@no_grad()
def image_embeddings(model, images, batch_size=500):
    """The normalised image embeddings (N, embed_dim) of an array of images, in eval mode."""
    was_training = model.training
    model.eval()
    rows = [ops.normalize(model.encode_image(Tensor(images[i:i + batch_size])), dim=1).data
            for i in range(0, len(images), batch_size)]
    model.train(was_training)
    return np.concatenate(rows)


def zero_shot_predict(image_embedded, class_embedded):
    """The class whose prompt embedding is most similar to each image: argmax_c cos(I, T_c)."""
    return np.asarray(image_embedded @ class_embedded.T).argmax(axis=1)


# --- the text encoder's initialisation ----------------------------------------------------------

def text_backbone(kind="bert", fast=False, pretrained=True, train_if_missing=False, progress=True):
    """(text transformer, a sentence saying how it was initialised).

    pretrained=True loads the cached mini-BERT / mini-GPT of `minitl pretrain bert|gpt`
    (--fast: the tiny one); train_if_missing trains it first when it is not cached. Otherwise, and
    where those weights are missing, the same architecture is built with fresh weights, and the
    sentence says so: an experiment prints it, so no run is ever silently
    without its pretraining."""
    if kind not in TEXT_KINDS:
        raise ValueError(f"text kind must be one of {TEXT_KINDS}, got {kind!r}")
    from . import pretraining

    config = (pretraining.FAST_CONFIG if fast else pretraining.DEFAULT_CONFIG)[kind]["model"]
    path = pretraining.weights_path(kind, fast)
    if pretrained and (path.exists() or train_if_missing):
        model = pretraining.load_pretrained(kind, fast=fast, progress=progress)
        return model, (f"pretrained mini-{kind.upper()} ({path.name}; held-out LM loss "
                       f"{float(model.info['heldout_loss']):.3f})")
    from .bert import bert
    from .gpt import gpt

    model = (bert if kind == "bert" else gpt)(**config)
    why = "as asked" if not pretrained else f"no cached weights at {path}; run `minitl pretrain {kind}" + \
        (" --fast`" if fast else "`")
    return model, f"UNTRAINED mini-{kind.upper()} text encoder ({why})"


def text_encoder(kind="bert", fast=False, pretrained=True, train_if_missing=False, progress=True):
    """(TextEncoder, the sentence of `text_backbone`), pooled as `TEXT_POOLING[kind]` says."""
    backbone, init = text_backbone(kind, fast, pretrained, train_if_missing, progress)
    return TextEncoder(backbone, TEXT_POOLING[kind]), init
