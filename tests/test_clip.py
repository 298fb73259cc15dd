"""CLIP (issue 12): F.clip_loss, tl.models.clip and the pieces of `minitl experiment clip`.

* the exercise clip.contrastive_loss on the reference code: the loss against the formula in
  NumPy, a float64 gradient check of both features and of the log-temperature, and the same
  formula written in PyTorch (value and gradients);
* the loss's properties: symmetric in its two modalities, invariant to the features' norms,
  clear errors on bad shapes;
* the model: the temperature starts at log(1/0.07) and exp(t) is clamped at 100, a pluggable
  image encoder (the CNN, or any module with out_features), projections, zero-shot prediction,
  one training step that lowers the loss, and the text encoder's initialisation said aloud;
* the experiment's captions: every class has its names and GCIDE sense, read from the entry.
"""
import math

import numpy as np
import pytest

import minitl as tl
import minitl.nn.functional as F
from minitl.models import clip
from minitl.ops.contrastive import clip_loss

rng = np.random.default_rng(10)


def leaves(*arrays):
    return [tl.tensor(a, dtype="float64", requires_grad=True) for a in arrays]


def loss_by_formula(image, text, t):
    """(CE(s I T^T, diag) + CE(s T I^T, diag)) / 2 in NumPy, float64."""
    i = image / np.linalg.norm(image, axis=1, keepdims=True)
    tt = text / np.linalg.norm(text, axis=1, keepdims=True)
    logits = np.exp(t) * i @ tt.T

    def ce(z):
        z = z - z.max(axis=1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return -np.mean(np.diag(log_p))

    return (ce(logits) + ce(logits.T)) / 2


# ============================================================================ exercise

@pytest.mark.exercise("clip.contrastive_loss")
def test_clip_loss_is_the_mean_of_the_two_cross_entropies():
    image, text = rng.standard_normal((6, 5)), rng.standard_normal((6, 5))
    t = np.array(math.log(1 / 0.07))
    with tl.fastpath.use(False):
        loss = F.clip_loss(*leaves(image, text, t))
    assert loss.shape == ()
    np.testing.assert_allclose(loss.item(), loss_by_formula(image, text, t), rtol=1e-12)
    # matching pairs pulled together give a small loss; a scrambled batch a large one
    aligned = F.clip_loss(*leaves(image, image + 0.01 * text, t)).item()
    scrambled = F.clip_loss(*leaves(image, image[::-1].copy(), t)).item()
    assert aligned < 0.2 < math.log(6) < scrambled


@pytest.mark.exercise("clip.contrastive_loss")
def test_clip_loss_gradcheck_features_and_log_temperature():
    image, text = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    with tl.fastpath.use(False):
        assert tl.gradcheck(lambda i, t, s: F.clip_loss(i, t, s), image, text, np.array(0.7))


@pytest.mark.exercise("clip.contrastive_loss")
def test_clip_loss_matches_the_same_formula_in_pytorch():
    torch = pytest.importorskip("torch")
    image, text, t = rng.standard_normal((7, 4)), rng.standard_normal((7, 4)), np.array(2.3)
    ours = leaves(image, text, t)
    with tl.fastpath.use(False):
        loss = F.clip_loss(*ours)
    loss.backward()
    theirs = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (image, text, t)]
    i = torch.nn.functional.normalize(theirs[0], dim=1)
    tt = torch.nn.functional.normalize(theirs[1], dim=1)
    logits = theirs[2].exp() * i @ tt.T
    labels = torch.arange(7)
    reference = (torch.nn.functional.cross_entropy(logits, labels) +
                 torch.nn.functional.cross_entropy(logits.T, labels)) / 2
    reference.backward()
    np.testing.assert_allclose(loss.item(), reference.item(), rtol=1e-12)
    for mine, torch_leaf in zip(ours, theirs):
        np.testing.assert_allclose(mine.grad, torch_leaf.grad.numpy(), rtol=1e-9, atol=1e-12)


# ============================================================================ the loss's properties

def test_clip_loss_is_symmetric_and_ignores_the_features_norms():
    image, text = rng.standard_normal((4, 6)), rng.standard_normal((4, 6))
    a = F.clip_loss(*leaves(image, text), 1.0).item()
    assert F.clip_loss(*leaves(text, image), 1.0).item() == pytest.approx(a, rel=1e-12)
    scaled = image * rng.uniform(0.1, 10, size=(4, 1))
    assert F.clip_loss(*leaves(scaled, text), 1.0).item() == pytest.approx(a, rel=1e-10)


def test_clip_loss_names_bad_inputs():
    a, b = leaves(rng.standard_normal((4, 3)), rng.standard_normal((5, 3)))
    with pytest.raises(ValueError, match=r"one shape \(N, D\)"):
        F.clip_loss(a, b, 1.0)
    with pytest.raises(ValueError, match="image_features must be a Tensor of shape"):
        F.clip_loss(a.reshape(2, 2, 3), a.reshape(2, 2, 3), 1.0)
    with pytest.raises(ValueError, match="logit_scale must hold one number"):
        F.clip_loss(a, a, tl.tensor([1.0, 2.0]))


# ============================================================================ the model

class TinyImageEncoder(tl.nn.Module):
    """Any module mapping images to (N, d), with out_features: CLIP's whole contract."""

    out_features = 6

    def __init__(self):
        super().__init__()
        self.flatten = tl.nn.Flatten()
        self.linear = tl.nn.Linear(16, 6)

    def forward(self, x):
        return self.linear(self.flatten(x))


def tiny_text_encoder():
    backbone, init = clip.text_backbone("bert", fast=True, pretrained=False)
    assert "UNTRAINED" in init  # never silently without its pretraining
    return clip.TextEncoder(backbone, "mean")


def tiny_batch(n=4):
    images = tl.tensor(rng.standard_normal((n, 1, 4, 4)).astype(np.float32))
    ids = rng.integers(5, 8000, size=(n, 7))
    mask = np.ones_like(ids)
    ids[0, 5:], mask[0, 5:] = 0, 0  # one caption shorter than the others
    return images, ids, mask


def test_clip_temperature_starts_at_log_1_over_0_07_and_exp_is_clamped_at_100():
    model = clip.CLIP(TinyImageEncoder(), tiny_text_encoder(), embed_dim=5)
    assert float(model.logit_scale.data) == pytest.approx(math.log(1 / 0.07), rel=1e-6)
    assert float(np.exp(model.scale().data)) == pytest.approx(1 / 0.07, rel=1e-5)
    model.logit_scale.data[...] = 7.0
    assert float(np.exp(model.scale().data)) == pytest.approx(100.0, rel=1e-5)
    images, ids, mask = tiny_batch()
    logits_per_image, logits_per_text = model(images, ids, mask)
    assert np.abs(logits_per_image.numpy()).max() <= 100.0 + 1e-3  # cosines times at most 100
    np.testing.assert_array_equal(logits_per_text.numpy(), logits_per_image.numpy().T)


def test_clip_forward_logits_are_the_loss_logits():
    model = clip.CLIP(TinyImageEncoder(), tiny_text_encoder(), embed_dim=5)
    model.eval()
    images, ids, mask = tiny_batch()
    logits, _ = model(images, ids, mask)
    diag = np.arange(4)

    def ce(z):
        z = z - z.max(axis=1, keepdims=True)
        return -np.mean((z - np.log(np.exp(z).sum(axis=1, keepdims=True)))[diag, diag])

    z = logits.numpy().astype(np.float64)
    assert model.loss(images, ids, mask).item() == pytest.approx((ce(z) + ce(z.T)) / 2, rel=1e-4)


def test_a_training_step_lowers_the_loss_and_reaches_every_part():
    tl.manual_seed(0)
    model = clip.CLIP(TinyImageEncoder(), tiny_text_encoder(), embed_dim=5)
    model.eval()  # no dropout: the same batch, the same loss
    objective = clip.ContrastiveObjective(model)
    optimizer = tl.optim.Adam(model.parameters(), lr=1e-2)
    batch = tiny_batch()
    first, _ = tl.training.train_step(objective, optimizer, clip.passthrough_loss, batch, None)
    for part in (model.image_projection.weight, model.text_projection.weight, model.logit_scale,
                 model.image_encoder.linear.weight):
        assert part.grad is not None and np.abs(part.grad).sum() > 0
    text_grads = [p.grad for p in model.text_encoder.parameters()]
    assert all(g is not None for g in text_grads) and all(np.abs(g).sum() > 0 for g in text_grads[:3])
    for _ in range(10):
        last, _ = tl.training.train_step(objective, optimizer, clip.passthrough_loss, batch, None)
    assert last.item() < first.item()


def test_the_cnn_plugs_in_through_its_features():
    cnn = tl.models.resnet_mini(5, widths=(4, 4, 8))
    encoder = clip.ImageFeatures(cnn)
    assert encoder.out_features == 8
    x = tl.tensor(rng.standard_normal((2, 1, 28, 28)).astype(np.float32))
    np.testing.assert_array_equal(encoder(x).numpy(), cnn.features(x).numpy())
    with pytest.raises(TypeError, match="features"):
        clip.ImageFeatures(tl.nn.Linear(3, 3))
    with pytest.raises(TypeError, match="out_features"):
        clip.CLIP(tl.nn.Identity(), tiny_text_encoder())


def test_zero_shot_picks_the_class_with_the_most_similar_prompts():
    model = clip.CLIP(TinyImageEncoder(), tiny_text_encoder(), embed_dim=5)
    prompts = [["a b", "c"], ["d e f"], ["g"]]

    def tokenize(texts):
        ids = np.array([[2, 10 + len(t), 11 + len(t), 3] for t in texts])
        return {"input_ids": ids, "attention_mask": np.ones_like(ids)}

    classes = clip.zero_shot_classifier(model, prompts, tokenize)
    assert classes.shape == (3, 5)
    np.testing.assert_allclose(np.linalg.norm(classes, axis=1), 1, rtol=1e-5)
    picks = clip.zero_shot_predict(classes[[2, 0, 1]], classes)
    np.testing.assert_array_equal(picks, [2, 0, 1])  # a class's own embedding is its nearest
    images = rng.standard_normal((6, 5))
    np.testing.assert_array_equal(clip.zero_shot_predict(images, classes), (images @ classes.T).argmax(axis=1))
    with pytest.raises(ValueError, match="at least one prompt"):
        clip.zero_shot_classifier(model, [["a"], []], tokenize)


def test_with_the_mini_bert_module_the_text_encoder_is_a_mini_bert_and_says_how_it_started():
    pretraining = pytest.importorskip("minitl.models.pretraining")  # the mini-BERT/GPT of lesson 8
    backbone, init = clip.text_backbone("bert", fast=True, pretrained=False)
    assert type(backbone).__name__ == "MiniBert" and "UNTRAINED mini-BERT" in init and "as asked" in init
    if pretraining.weights_path("bert", fast=True).exists():
        backbone, init = clip.text_backbone("bert", fast=True)
        assert init.startswith("pretrained mini-BERT") and "held-out LM loss" in init
    encoder = clip.TextEncoder(backbone, "mean")
    assert encoder.backbone.lm_head is None  # CLIP predicts no words
    ids = np.array([[2, 40, 41, 3], [2, 42, 3, 0]])
    assert encoder(ids, (ids != 0).astype(np.int64)).shape == (2, backbone.config["d_model"])


def test_text_backbone_rejects_unknown_kinds():
    with pytest.raises(ValueError, match="bert"):
        clip.text_backbone("elmo")


# ============================================================================ the experiment's captions

def test_every_class_has_name_and_definition_captions():
    from minitl.experiments import clip_zero_shot as experiment

    texts = {headword: [f"x y {sense} z".split()] for _, headword, sense in experiment.CLASS_WORDS.values()}
    definitions = experiment.class_definitions(texts)
    captions = experiment.class_captions(definitions)
    assert sorted(captions) == list(range(10))
    per_class = len(experiment.NAME_TEMPLATES) + len(experiment.DEFINITION_TEMPLATES)
    assert all(len(c) == per_class for c in captions.values())
    assert "a photo of an ankle boot." in captions[9]
    assert any(definitions[4] in c and "coat" in c for c in captions[4])
    with pytest.raises(LookupError, match="Coat"):
        experiment.class_definitions({**texts, "Coat": [["a", "coat"]]})
