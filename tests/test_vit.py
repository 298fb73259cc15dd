"""The Vision Transformer (issue 12, lesson 9): `tl.models.vit`, `minitl pretrain vit`, the ViT
rows of the transfer table.

* the exercises, on the reference code: vit.patch_embed (the reshape into patches: against a
  loop over the patches, and PatchEmbed against PyTorch's stride-p Conv2d, forward and
  backward) and vit.interpolate_pos_embed (bilinear resampling: by hand, and against
  PyTorch's F.interpolate(mode="bilinear", align_corners=False));
* the whole ViT against the same network built from torch.nn layers on copied weights, in
  float64: logits, the input's gradient and every parameter's;
* float64 gradient checks of the patch embedding and of a tiny ViT (input and all parameters);
* z_0 = [x_cls; x_1 E; ...] + E_pos by hand; a new image size; attention maps and rollout;
  the names PEFT and CLIP rely on; clear errors on bad input;
* the cached source model (trained once, loaded without pickle), the attention-map figure,
  and the transfer table's runs with a ViT.
"""
import json

import numpy as np
import pytest

import minitl as tl
from minitl import transfer
from minitl.experiments import transfer_table as table
from minitl.models.vit import (PatchEmbed, VisionTransformer, attention_rollout, interpolate_pos_embed, patchify,
                               resize_bilinear, torch_vit)
from test_attention import check_module_gradients

rng = np.random.default_rng(9)


def tiny_vit(**kwargs):
    config = dict(img_size=8, patch_size=4, in_chans=1, num_classes=3, embed_dim=8, depth=2, num_heads=2, mlp_dim=12)
    config.update(kwargs)
    return VisionTransformer(**config)


def f64(a):
    return tl.tensor(a, dtype="float64", requires_grad=True)


# ============================================================================ exercises

@pytest.mark.exercise("vit.patch_embed")
def test_patchify_cuts_patches_row_by_row_channel_by_channel():
    n, c, h, w, p = 2, 3, 8, 12, 4
    x = rng.standard_normal((n, c, h, w))
    patches = patchify(tl.tensor(x, dtype="float64"), p).numpy()
    assert patches.shape == (n, (h // p) * (w // p), c * p * p)
    for i in range(h // p):
        for j in range(w // p):
            expected = x[:, :, i * p:(i + 1) * p, j * p:(j + 1) * p].reshape(n, -1)
            np.testing.assert_array_equal(patches[:, i * (w // p) + j], expected, err_msg=f"patch ({i}, {j})")


@pytest.mark.exercise("vit.patch_embed")
def test_patch_embed_is_a_stride_p_convolution():
    torch = pytest.importorskip("torch")
    embed = PatchEmbed(img_size=(8, 12), patch_size=4, in_chans=2, embed_dim=5).double()
    conv = torch.nn.Conv2d(2, 5, 4, stride=4).double()
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(embed.proj.weight.data.reshape(5, 2, 4, 4)))
        conv.bias.copy_(torch.from_numpy(embed.proj.bias.data))
    x_np = rng.standard_normal((3, 2, 8, 12))
    x, x_t = f64(x_np), torch.tensor(x_np, requires_grad=True)
    ours = embed(x)
    theirs = conv(x_t).flatten(2).transpose(1, 2)  # (N, D, 2, 3) -> (N, 6 patches, D)
    np.testing.assert_allclose(ours.numpy(), theirs.detach().numpy(), rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(ours.shape)
    ours.backward(g)
    theirs.backward(torch.from_numpy(g))
    np.testing.assert_allclose(x.grad, x_t.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(embed.proj.weight.grad.reshape(5, 2, 4, 4), conv.weight.grad.numpy(), rtol=1e-12,
                               atol=1e-12)
    np.testing.assert_allclose(embed.proj.bias.grad, conv.bias.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.exercise("vit.patch_embed")
def test_gradcheck_patch_embedding():
    embed = PatchEmbed(img_size=(4, 6), patch_size=2, in_chans=2, embed_dim=3)
    check_module_gradients(embed, [rng.standard_normal((2, 2, 4, 6))], lambda m, x: m(x))


@pytest.mark.exercise("vit.interpolate_pos_embed")
def test_bilinear_resize_by_hand():
    # old 2 -> new 4: s = (i + 1/2)/2 - 1/2 = -0.25 (clipped to 0), 0.25, 0.75, 1.25 (hi clipped to 1)
    a = np.array([[1.0, 5.0]])
    np.testing.assert_allclose(resize_bilinear(a, (4,), axes=(1,)), [[1.0, 2.0, 4.0, 5.0]], rtol=1e-15)
    # old 4 -> new 2: s = 0.5, 2.5, halfway between neighbours
    b = np.array([[0.0], [2.0], [6.0], [8.0]])
    np.testing.assert_allclose(resize_bilinear(b, (2,), axes=(0,)), [[1.0], [7.0]], rtol=1e-15)


@pytest.mark.exercise("vit.interpolate_pos_embed")
@pytest.mark.parametrize("old,new", [((7, 7), (10, 10)), ((7, 7), (4, 4)), ((3, 5), (6, 2)), ((4, 4), (4, 4))])
def test_interpolate_pos_embed_matches_pytorch_bilinear(old, new):
    torch = pytest.importorskip("torch")
    width = 6
    pos = rng.standard_normal((1, 1 + old[0] * old[1], width))
    resized = interpolate_pos_embed(pos, new, old)
    grid = torch.from_numpy(pos[:, 1:].reshape(1, *old, width)).permute(0, 3, 1, 2)
    theirs = torch.nn.functional.interpolate(grid, size=new, mode="bilinear", align_corners=False)
    theirs = theirs.permute(0, 2, 3, 1).reshape(1, new[0] * new[1], width).numpy()
    assert resized.shape == (1, 1 + new[0] * new[1], width)
    np.testing.assert_array_equal(resized[:, 0], pos[:, 0])  # the CLS token's entry is kept
    np.testing.assert_allclose(resized[:, 1:], theirs, rtol=1e-12, atol=1e-13)


# ============================================================================ the model

def test_embeddings_build_cls_then_projected_patches_plus_positions():
    model = tiny_vit().double()
    emb = model.embeddings
    emb.cls_token.data[...] = rng.standard_normal(emb.cls_token.shape)
    x = rng.standard_normal((2, 1, 8, 8))
    z0 = emb(tl.tensor(x, dtype="float64")).numpy()
    patches = x.reshape(2, 1, 2, 4, 2, 4).transpose(0, 2, 4, 1, 3, 5).reshape(2, 4, 16)
    tokens = patches @ emb.patch_embed.proj.weight.data.T + emb.patch_embed.proj.bias.data
    expected = np.concatenate([np.broadcast_to(emb.cls_token.data, (2, 1, 8)), tokens], axis=1) + emb.pos_embed.data
    np.testing.assert_allclose(z0, expected, rtol=1e-12, atol=1e-12)
    assert model.features(tl.tensor(x)).shape == (2, model.num_features) == (2, 8)


def test_vit_matches_pytorch_forward_and_backward():
    torch = pytest.importorskip("torch")
    tl.manual_seed(1)
    model = tiny_vit(img_size=12, in_chans=2, embed_dim=12, num_heads=3).double()
    model.embeddings.cls_token.data[...] = rng.standard_normal(model.embeddings.cls_token.shape)
    twin = torch_vit(model)
    x_np = rng.standard_normal((3, 2, 12, 12))
    for fast in (False, True):
        model.zero_grad()
        twin.zero_grad()
        x, x_t = f64(x_np), torch.tensor(x_np, requires_grad=True)
        with tl.fastpath.use(fast):
            ours = model(x)
            g = rng.standard_normal(ours.shape)
            ours.backward(g)
        theirs = twin(x_t)
        theirs.backward(torch.from_numpy(g))
        np.testing.assert_allclose(ours.numpy(), theirs.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(x.grad, x_t.grad.numpy(), rtol=1e-9, atol=1e-12)
        grads = {n: p.grad.numpy() for n, p in twin.named_parameters()}
        renamed = {"embeddings.patch_embed.proj.weight": "patch.weight", "embeddings.patch_embed.proj.bias": "patch.bias",
                   "embeddings.cls_token": "cls_token", "embeddings.pos_embed": "pos_embed"}
        for name, p in model.named_parameters():
            theirs_grad = grads[renamed.get(name, name)]
            np.testing.assert_allclose(p.grad.reshape(theirs_grad.shape), theirs_grad, rtol=1e-8, atol=1e-11,
                                       err_msg=f"{name} (fast path {fast})")


def test_gradcheck_tiny_vit():
    model = tiny_vit(depth=1)
    model.embeddings.cls_token.data[...] = rng.standard_normal(model.embeddings.cls_token.shape)
    check_module_gradients(model, [rng.standard_normal((2, 1, 8, 8))], lambda m, x: m(x))


def test_set_image_size_resamples_the_positions_and_keeps_the_rest():
    model = tiny_vit(img_size=8)
    before = {n: p.data.copy() for n, p in model.named_parameters()}
    same = interpolate_pos_embed(model.embeddings.pos_embed, (2, 2))
    np.testing.assert_allclose(same, before["embeddings.pos_embed"], rtol=1e-6)  # same grid: unchanged
    model.set_image_size(16)
    assert model.embeddings.pos_embed.shape == (1, 1 + 16, 8)
    assert model.patch_embed.num_patches == 16
    assert model(tl.tensor(rng.standard_normal((2, 1, 16, 16)))).shape == (2, 3)
    for name, p in model.named_parameters():
        if name != "embeddings.pos_embed":
            np.testing.assert_array_equal(p.data, before[name], err_msg=name)
    assert any(p is model.embeddings.pos_embed for p in model.parameters())  # a trainable parameter still


def test_bad_inputs_say_what_is_wrong():
    model = tiny_vit()
    with pytest.raises(ValueError, match="set_image_size"):
        model(tl.tensor(np.zeros((1, 1, 12, 12), dtype=np.float32)))
    with pytest.raises(ValueError, match="multiple of the patch size"):
        PatchEmbed(img_size=10, patch_size=4)
    with pytest.raises(ValueError, match="multiple of the patch size"):
        model.set_image_size(10)
    with pytest.raises(ValueError, match="not a square grid"):
        interpolate_pos_embed(np.zeros((1, 1 + 6, 4)), (3, 3))
    with pytest.raises(ValueError, match="holds 4 positions"):
        interpolate_pos_embed(np.zeros((1, 1 + 6, 4)), (3, 3), old_grid=(2, 2))
    with pytest.raises(ValueError, match="expected images"):
        patchify(tl.tensor(np.zeros((4, 4), dtype=np.float32)), 2)


def test_attention_maps_are_distributions_and_rollout_too():
    model = tiny_vit()
    x = rng.standard_normal((2, 1, 8, 8)).astype(np.float32)
    maps = model.attention_maps(x)
    assert len(maps) == 2 and maps[0].shape == (2, 2, 5, 5)
    np.testing.assert_allclose(maps[-1].sum(-1), 1.0, rtol=1e-5)
    rollout = attention_rollout(maps)
    assert rollout.shape == (2, 5, 5)
    np.testing.assert_allclose(rollout.sum(-1), 1.0, rtol=1e-5)
    assert model.training  # attention_maps left the mode as it found it


def test_names_for_peft_and_the_transfer_toolkit():
    model = tiny_vit()
    linear = {n for n, m in model.named_modules() if isinstance(m, tl.nn.Linear)}
    assert {"encoder.layers.0.self_attn.out_proj", "encoder.layers.0.linear1", "encoder.layers.0.linear2",
            "embeddings.patch_embed.proj", "head"} <= linear
    blocks = transfer.blocks_of(model)
    assert len(blocks) == 2 + 2 and blocks[0] is model.embeddings and blocks[-1] is model.head
    transfer.freeze_lower(model, 2)  # the embedding (E, CLS, E_pos) and the first layer
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert "embeddings.pos_embed" in frozen and "embeddings.cls_token" in frozen
    assert any(n.startswith("encoder.layers.0.") for n in frozen)
    assert not any(n.startswith(("encoder.layers.1.", "encoder.norm", "head")) for n in frozen)


# ============================================================================ pretraining and transfer

def test_load_pretrained_vit_caches_and_loads_without_pickle(tmp_path, monkeypatch):
    from minitl import pretrained_vit

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    calls = []

    def fake_pretrain(epochs=None, fast=False, progress=True):
        calls.append(fast)
        return pretrained_vit.build_vit(pretrained_vit.FAST_CONFIG, 5), 0.5, 1

    monkeypatch.setattr(pretrained_vit, "pretrain", fake_pretrain)
    first = pretrained_vit.load_pretrained_vit(fast=True, progress=False)
    second = pretrained_vit.load_pretrained_vit(fast=True, progress=False)
    assert calls == [True]  # the second call loaded from the cache
    assert pretrained_vit.weights_path(True).parent == tmp_path / "minitl" / "weights"
    with np.load(pretrained_vit.weights_path(True), allow_pickle=False) as archive:
        assert "weights/head.weight" in archive.files
    np.testing.assert_array_equal(first["weights"]["head.weight"], second["weights"]["head.weight"])
    assert float(first["source_accuracy"]) == 0.5 and float(first["cpu_seconds"]) >= 0
    model = pretrained_vit.pretrained_vit(3, fast=True)
    assert model.head.out_features == 3 and model.head.in_features == pretrained_vit.FAST_CONFIG["embed_dim"]
    with pytest.raises(FileNotFoundError, match="minitl pretrain vit"):
        pretrained_vit.load_pretrained_vit(fast=False, train_if_missing=False)


def test_attention_figure(tmp_path):
    from minitl.pretrained_vit import cls_attention, plot_attention_maps

    model = tiny_vit()
    x = rng.standard_normal((3, 1, 8, 8)).astype(np.float32)
    assert cls_attention(model, x).shape == (3, 2, 2, 2)
    plot_attention_maps(model, x, np.array([0, 1, 2]), ["a", "b", "c"], tmp_path / "maps.png")
    assert (tmp_path / "maps.png").stat().st_size > 1000


def test_the_table_runs_each_model_on_its_own_source_state(monkeypatch):
    # `run` must hand each model's source state to runs of that model (the CNN is the default
    # model, so a ViT state read as a CNN's fails at once)
    import dataclasses

    tl.manual_seed(0)
    config = dict(img_size=8, patch_size=4, in_chans=1, embed_dim=8, depth=2, num_heads=2, mlp_dim=12)
    state = {"weights": VisionTransformer(num_classes=5, **config).state_dict(), "config": config}
    spec = dataclasses.replace(table.source_model("vit"), load_state=lambda fast, progress: state)
    y = np.repeat(np.arange(5), 8)
    x = rng.standard_normal((40, 1, 8, 8)).astype(np.float32) + y[:, None, None, None].astype(np.float32)
    monkeypatch.setattr(table, "load_target", lambda fast=False: (x, y, x[:20], y[:20]))
    rows, states = table.run(sizes=(10,), seeds=1, strategies=("feature_extraction", "finetune"), fast=True,
                             progress=False, models=(spec,))
    assert [(r["model"], r["strategy"]) for r in rows] == [("vit", "feature_extraction"), ("vit", "finetune")]
    assert states == {"vit": state}


def test_transfer_table_runs_a_vit(tmp_path):
    tl.manual_seed(0)
    # depth 3: frozen_blocks 3 freezes the embedding and layers 0 and 1, and layer 2 still trains
    config = dict(img_size=8, patch_size=4, in_chans=1, embed_dim=8, depth=3, num_heads=2, mlp_dim=12)
    source = VisionTransformer(num_classes=5, **config)
    state = {"weights": source.state_dict(), "config": config}
    y = np.repeat(np.arange(5), 8)
    x = rng.standard_normal((40, 1, 8, 8)).astype(np.float32) + y[:, None, None, None].astype(np.float32)
    data = (x, y, x[:20], y[:20])
    cache = transfer.FeatureCache(table.pretrained_model(state, 5, "vit"), head="head")
    rows = [table.run_one(s, 10, 0, data, state, cache, fast=True, model="vit") for s in table.STRATEGIES]
    assert {r["model"] for r in rows} == {"vit"}
    params = {r["strategy"]: r["trainable_params"] for r in rows}
    assert params["feature_extraction"] == 8 * 5 + 5
    assert params["feature_extraction"] < params["finetune_frozen_lower"] < params["finetune"] == params["scratch"]
    cnn = [{**r, "model": "resnet-mini"} for r in rows[:2]] + [{k: v for k, v in rows[0].items() if k != "model"}]
    summary = table.summarize(rows + cnn)
    assert {t["model"] for t in summary} == {"vit", "resnet-mini"}
    assert [t["runs"] for t in summary if t["model"] == "resnet-mini"] == [2, 1]  # rows without a model are the CNN's
    assert "| vit | finetune |" in table.format_table(summary)
    table.plot(summary, tmp_path / "fig.png")
    assert (tmp_path / "fig.png").stat().st_size > 1000
    json.dumps(rows)
    with pytest.raises(ValueError, match="unknown model"):
        table.source_model("vgg")
