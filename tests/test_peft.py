"""Parameter-efficient fine-tuning (issue 13): tl.peft with Hugging Face PEFT's API.

* the exercises (peft.lora_forward, peft.lora_merge, peft.adapter_block, peft.prepend_prompt,
  peft.count_trainable), on the reference code;
* LoRA against PyTorch's math on copied weights in float64 (the `peft` package is not
  installed here; its formula h = W x + b + (alpha / r) B A x is), and a float64 gradcheck;
* a wrapped model starts equal to its base; merge_and_unload computes what the adapted model
  computed; switching adapters changes nothing in the base; PEFT's parameter names;
* target_modules as names, suffixes and a regex, and the errors of bad targets;
* adapters in Transformer layers and in the CNN's residual blocks; prompt and prefix tuning;
  MultiheadAttention's prefix keys and values against PyTorch's attention.
"""
import contextlib
import io
import math

import numpy as np
import pytest

import minitl as tl
from minitl import nn, peft
from minitl.models import resnet_mini


class TinyEncoderClassifier(nn.Module):
    """Embeddings -> a 2-layer Transformer encoder -> first token -> classifier."""

    def __init__(self, vocab=20, width=16, heads=2, layers=2, classes=3, norm_first=False):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        layer = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.0, batch_first=True,
                                           norm_first=norm_first)
        self.encoder = nn.TransformerEncoder(layer, layers)
        self.classifier = nn.Linear(width, classes)

    def forward(self, ids):
        padding = ids.data == 0
        return self.classifier(self.encoder(self.embed(ids), src_key_padding_mask=padding)[:, 0])


def tiny_model(seed=0, **kwargs):
    tl.manual_seed(seed)
    return TinyEncoderClassifier(**kwargs)


def token_batch(seed=1, batch=4, length=6, vocab=20):
    ids = np.random.default_rng(seed).integers(1, vocab, size=(batch, length))
    ids[0, -2:] = 0  # some padding
    return tl.tensor(ids)


def randomise_lora_B(model, seed=3, scale=0.3):
    """B starts at zero; training would move it. Random B makes the LoRA term visible."""
    rng = np.random.default_rng(seed)
    for name, p in model.named_parameters():
        if "lora_B" in name or "W_up" in name:
            p.data[...] = rng.standard_normal(p.shape).astype(p.dtype) * scale


def lora_config(**kwargs):
    defaults = dict(r=4, lora_alpha=8, target_modules=["self_attn", "linear1", "linear2"])
    defaults.update(kwargs)
    return peft.LoraConfig(**defaults)


# --- the exercises -------------------------------------------------------------------------------
@pytest.mark.exercise("peft.lora_forward")
def test_lora_output_is_W_x_plus_scaled_B_A_x():
    rng = np.random.default_rng(0)
    x, A, B = rng.standard_normal((2, 3, 5)), rng.standard_normal((2, 5)), rng.standard_normal((4, 2))
    W = rng.standard_normal((4, 5))
    base = tl.tensor(x @ W.T, dtype="float64")
    out = peft.lora_output(base, tl.tensor(x, dtype="float64"), tl.tensor(A, dtype="float64"),
                           tl.tensor(B, dtype="float64"), 1.5)
    expected = np.einsum("dk,nlk->nld", W + 1.5 * B @ A, x)
    np.testing.assert_allclose(out.data, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.exercise("peft.lora_forward")
def test_lora_linear_matches_pytorch_math_on_copied_weights():
    torch = pytest.importorskip("torch")
    tl.manual_seed(0)
    layer = nn.Linear(6, 5).double()
    wrapped = peft.lora.Linear(layer, "default", peft.LoraConfig(r=3, lora_alpha=6, target_modules=["x"]))
    randomise_lora_B(wrapped)
    x = np.random.default_rng(2).standard_normal((4, 6))
    ours = wrapped(tl.tensor(x, dtype="float64"))
    t = {k: torch.tensor(v) for k, v in wrapped.state_dict().items()}
    tx = torch.tensor(x)
    theirs = torch.nn.functional.linear(tx, t["base_layer.weight"], t["base_layer.bias"]) + (
        tx @ t["lora_A.default.weight"].T @ t["lora_B.default.weight"].T) * (6 / 3)
    np.testing.assert_allclose(ours.data, theirs.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.exercise("peft.lora_forward")
def test_gradcheck_lora_output():
    rng = np.random.default_rng(1)
    x, A, B = rng.standard_normal((3, 4)), rng.standard_normal((2, 4)), rng.standard_normal((5, 2))
    base = rng.standard_normal((3, 5))
    assert tl.gradcheck(lambda b, x, A, B: peft.lora_output(b, x, A, B, 0.7), base, x, A, B)


@pytest.mark.exercise("peft.lora_forward")
def test_only_A_and_B_get_gradients_and_the_base_is_frozen():
    model = peft.get_peft_model(tiny_model(), lora_config())
    randomise_lora_B(model)
    model(token_batch()).sum().backward()
    for name, p in model.named_parameters():
        if "lora_" in name:
            assert p.requires_grad and p.grad is not None and np.abs(p.grad).sum() > 0, name
        else:
            assert not p.requires_grad and p.grad is None, name


@pytest.mark.exercise("peft.lora_merge")
def test_merged_weight_is_W_plus_scaled_B_A():
    rng = np.random.default_rng(0)
    W, A, B = rng.standard_normal((4, 5)), rng.standard_normal((2, 5)), rng.standard_normal((4, 2))
    np.testing.assert_allclose(peft.merged_weight(W, A, B, 0.5), W + 0.5 * B @ A, rtol=1e-13)
    assert np.linalg.matrix_rank(peft.merged_weight(W, A, B, 0.5) - W) == 2


@pytest.mark.exercise("peft.lora_merge")
@pytest.mark.parametrize("targets", [["self_attn", "linear1", "linear2"], ["out_proj"], r"encoder\.layers\.1\.(self_attn|self_attn\.out_proj|linear1)"])
def test_merge_and_unload_computes_what_the_adapted_model_computed(targets):
    model = peft.get_peft_model(tiny_model(), lora_config(target_modules=targets, modules_to_save=["classifier"]))
    randomise_lora_B(model)
    model.classifier.modules_to_save["default"].weight.data[...] += 0.5
    model.eval()
    x = token_batch()
    adapted = model(x).data.copy()
    merged = model.merge_and_unload()
    assert type(merged) is TinyEncoderClassifier
    assert not any(isinstance(m, (peft.lora.LoraLayer, peft.ModulesToSaveWrapper)) for m in merged.modules())
    np.testing.assert_allclose(merged(x).data, adapted, rtol=1e-5, atol=1e-5)  # float32 rounding
    assert set(merged.state_dict()) == set(tiny_model().state_dict())


@pytest.mark.exercise("peft.lora_merge")
def test_merge_then_unmerge_gives_back_the_base_weights():
    model = peft.get_peft_model(tiny_model(), lora_config())
    randomise_lora_B(model)
    before = {k: v for k, v in model.state_dict().items() if "base_layer" in k}
    model.merge_adapter()
    changed = {k for k, v in model.state_dict().items() if k in before and not np.array_equal(v, before[k])}
    assert changed  # merging wrote into the frozen weights
    model.unmerge_adapter()
    for k, v in model.state_dict().items():
        if k in before:
            np.testing.assert_allclose(v, before[k], atol=1e-6)


@pytest.mark.exercise("peft.adapter_block")
def test_adapter_block_is_x_plus_f_of_x_W_down_times_W_up():
    rng = np.random.default_rng(0)
    x, W_down, W_up = rng.standard_normal((2, 3, 6)), rng.standard_normal((6, 2)), rng.standard_normal((2, 6))
    out = peft.adapter_block(tl.tensor(x, dtype="float64"), tl.tensor(W_down, dtype="float64"),
                             tl.tensor(W_up, dtype="float64"), tl.tanh)
    np.testing.assert_allclose(out.data, x + np.tanh(x @ W_down) @ W_up, rtol=1e-12)
    assert tl.gradcheck(lambda x, d, u: peft.adapter_block(x, d, u, tl.relu), x, W_down, W_up)


@pytest.mark.exercise("peft.adapter_block")
def test_adapters_sit_after_attention_and_mlp_and_start_as_the_identity():
    base = tiny_model()
    x = token_batch()
    expected = base(x).data.copy()
    model = peft.get_peft_model(base, peft.AdapterConfig(bottleneck_size=4, modules_to_save=["classifier"]))
    wrapped = sorted(n for n, m in model.model.named_modules() if isinstance(m, peft.AdapterLayer))
    assert wrapped == [f"encoder.layers.{i}.{part}" for i in (0, 1) for part in ("linear2", "self_attn.out_proj")]
    np.testing.assert_allclose(model(x).data, expected, rtol=1e-6, atol=1e-6)
    randomise_lora_B(model)
    assert np.abs(model(x).data - expected).max() > 1e-3
    # 2 layers x 2 places x (16 x 4 + 4 x 16), plus the classifier's copy (16 x 3 + 3)
    assert model.get_nb_trainable_parameters()[0] == 2 * 2 * 128 + 51


@pytest.mark.exercise("peft.adapter_block")
def test_adapters_in_the_cnn_residual_blocks_act_on_channels():
    tl.manual_seed(0)
    base = resnet_mini(num_classes=4, widths=(4, 8, 8)).eval()
    x = tl.tensor(np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32))
    expected = base(x).data.copy()
    model = peft.get_peft_model(base, peft.AdapterConfig(bottleneck_size=2, modules_to_save=["fc"]))
    assert sorted(n for n, m in model.model.named_modules() if isinstance(m, peft.AdapterLayer)) == [
        "layer1.0.bn2", "layer2.0.bn2", "layer3.0.bn2"]
    np.testing.assert_allclose(model(x).data, expected, rtol=1e-6, atol=1e-6)
    randomise_lora_B(model)
    model(x).sum().backward()
    grads = {n: p.grad is not None for n, p in model.named_parameters()}
    assert all(grads[n] for n in grads if "adapters" in n or "modules_to_save" in n)
    assert not any(grads[n] for n in grads if "adapters" not in n and "modules_to_save" not in n)


@pytest.mark.exercise("peft.prepend_prompt")
def test_prepend_prompt_puts_the_same_virtual_tokens_before_every_sequence():
    rng = np.random.default_rng(0)
    prompt, x = rng.standard_normal((3, 4)), rng.standard_normal((2, 5, 4))
    out = peft.prepend_prompt(tl.tensor(prompt, dtype="float64"), tl.tensor(x, dtype="float64"))
    assert out.shape == (2, 8, 4)
    np.testing.assert_array_equal(out.data[:, :3], np.broadcast_to(prompt, (2, 3, 4)))
    np.testing.assert_array_equal(out.data[:, 3:], x)
    assert tl.gradcheck(lambda p: peft.prepend_prompt(p, tl.tensor(x, dtype="float64")), prompt)


@pytest.mark.exercise("peft.prepend_prompt")
def test_prompt_tuning_trains_only_the_virtual_tokens():
    base = tiny_model()
    x = token_batch()
    expected = base(x).data.copy()
    model = peft.get_peft_model(base, peft.PromptTuningConfig(num_virtual_tokens=3, modules_to_save=["classifier"]))
    out = model(x)
    assert out.shape == expected.shape
    assert np.abs(out.data - expected).max() > 1e-4  # the virtual tokens are read
    out.sum().backward()
    trained = sorted(n for n, p in model.named_parameters() if p.grad is not None)
    assert trained == ["base_model.classifier.modules_to_save.default.bias",
                       "base_model.classifier.modules_to_save.default.weight",
                       "prompt_encoder.default.embedding.weight"]
    with model.disable_adapter():
        np.testing.assert_allclose(model(x).data, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.exercise("peft.count_trainable")
def test_count_trainable_parameters_counts_numbers_not_tensors_and_shared_ones_once():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    model[0].requires_grad_(False)
    assert peft.count_trainable_parameters(model) == (10, 26)
    tied = nn.Sequential(nn.Embedding(5, 3), nn.Linear(3, 5, bias=False))
    tied[1].weight = tied[0].weight
    assert peft.count_trainable_parameters(tied) == (15, 15)


@pytest.mark.exercise("peft.count_trainable")
def test_print_trainable_parameters_prints_peft_line():
    model = peft.get_peft_model(nn.Sequential(nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 2)),
                                peft.LoraConfig(r=2, target_modules=["0"]))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        model.print_trainable_parameters()
    trainable, total = 2 * 10 + 10 * 2, 110 + 22 + 40
    assert out.getvalue() == (f"trainable params: {trainable:,d} || all params: {total:,d} || "
                              f"trainable%: {100 * trainable / total:.4f}\n")
    assert out.getvalue() == "trainable params: 40 || all params: 172 || trainable%: 23.2558\n"


# --- LoRA: PEFT's behaviour ----------------------------------------------------------------------
def test_lora_starts_equal_to_the_base_with_peft_initialisation():
    base = tiny_model()
    x = token_batch()
    expected = base(x).data.copy()
    model = peft.get_peft_model(base, lora_config())
    np.testing.assert_array_equal(model(x).data, expected)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            assert not p.data.any()
        if "lora_A" in name:  # Kaiming-uniform with a = sqrt 5: bound 1 / sqrt(fan_in)
            bound = 1 / math.sqrt(p.shape[1])
            assert np.abs(p.data).max() <= bound and np.abs(p.data).max() > 0.5 * bound and p.data.std() > 0


def test_parameter_names_are_peft_names():
    model = peft.get_peft_model(tiny_model(), lora_config(modules_to_save=["classifier"]))
    names = [n for n, _ in model.named_parameters()]
    assert "base_model.model.encoder.layers.0.linear1.base_layer.weight" in names
    assert "base_model.model.encoder.layers.0.linear1.lora_A.default.weight" in names
    assert "base_model.model.encoder.layers.0.linear1.lora_B.default.weight" in names
    assert "base_model.model.encoder.layers.1.self_attn.base_layer.in_proj_weight" in names
    assert "base_model.model.classifier.modules_to_save.default.weight" in names
    assert "base_model.model.classifier.original_module.weight" in names
    shapes = dict((n, p.shape) for n, p in model.named_parameters())
    assert shapes["base_model.model.encoder.layers.0.linear1.lora_A.default.weight"] == (4, 16)
    assert shapes["base_model.model.encoder.layers.0.linear1.lora_B.default.weight"] == (32, 4)
    assert shapes["base_model.model.encoder.layers.0.self_attn.lora_B.default.weight"] == (48, 4)
    saved = peft.get_peft_model_state_dict(model)
    assert "base_model.model.encoder.layers.0.linear1.lora_A.weight" in saved
    assert "base_model.model.classifier.modules_to_save.weight" in saved
    assert not any("base_layer" in k or "original_module" in k for k in saved)


def test_adapter_weights_copy_across_by_name():
    source = peft.get_peft_model(tiny_model(), lora_config())
    randomise_lora_B(source)
    target = peft.get_peft_model(tiny_model(), lora_config())
    assert peft.set_peft_model_state_dict(target, peft.get_peft_model_state_dict(source)) == 12
    x = token_batch()
    np.testing.assert_allclose(target(x).data, source(x).data, rtol=1e-6)


def test_lora_on_multihead_attention_matches_pytorch_with_the_merged_projection():
    torch = pytest.importorskip("torch")
    tl.manual_seed(0)
    attention = nn.MultiheadAttention(8, 2, batch_first=True).double()
    wrapped = peft.lora.MultiheadAttention(attention, "default", peft.LoraConfig(r=2, lora_alpha=4, target_modules=["x"]))
    randomise_lora_B(wrapped)
    x = np.random.default_rng(0).standard_normal((3, 5, 8))
    ours = wrapped(*(tl.tensor(x, dtype="float64"),) * 3, need_weights=False)[0]
    theirs = torch.nn.MultiheadAttention(8, 2, batch_first=True, dtype=torch.float64)
    state = wrapped.state_dict()
    merged = state["base_layer.in_proj_weight"] + 2.0 * state["lora_B.default.weight"] @ state["lora_A.default.weight"]
    theirs.load_state_dict({"in_proj_weight": torch.tensor(merged), "in_proj_bias": torch.tensor(state["base_layer.in_proj_bias"]),
                            "out_proj.weight": torch.tensor(state["base_layer.out_proj.weight"]),
                            "out_proj.bias": torch.tensor(state["base_layer.out_proj.bias"])})
    tx = torch.tensor(x)
    np.testing.assert_allclose(ours.data, theirs(tx, tx, tx, need_weights=False)[0].detach().numpy(), rtol=1e-10, atol=1e-12)
    # the registered Parameter is still the frozen weight
    assert wrapped.base_layer._parameters["in_proj_weight"] is wrapped.base_layer.in_proj_weight


def test_targets_by_name_suffix_and_regex():
    def wrapped(targets):
        model = peft.get_peft_model(tiny_model(), peft.LoraConfig(target_modules=targets))
        return sorted(n for n, m in model.model.named_modules() if isinstance(m, peft.lora.LoraLayer))

    assert wrapped(["linear1"]) == ["encoder.layers.0.linear1", "encoder.layers.1.linear1"]
    assert wrapped(["encoder.layers.1.linear1"]) == ["encoder.layers.1.linear1"]
    assert wrapped(r"encoder\.layers\.0\.(linear1|linear2)") == ["encoder.layers.0.linear1", "encoder.layers.0.linear2"]
    assert wrapped(["out_proj"]) == ["encoder.layers.0.self_attn.out_proj", "encoder.layers.1.self_attn.out_proj"]


def test_a_target_that_matches_nothing_lists_the_model_modules():
    with pytest.raises(ValueError, match=r"\['query'\] not found.*encoder\.layers\.0\.linear1"):
        peft.get_peft_model(tiny_model(), peft.LoraConfig(target_modules=["query"]))
    with pytest.raises(ValueError, match="LoRA cannot wrap a LayerNorm"):
        peft.get_peft_model(tiny_model(), peft.LoraConfig(target_modules=["norm1"]))
    with pytest.raises(ValueError, match="give target_modules"):
        peft.get_peft_model(tiny_model(), peft.LoraConfig())
    with pytest.raises(ValueError, match="r must be a positive int"):
        peft.LoraConfig(r=0)
    with pytest.raises(ValueError, match="cannot be folded"):
        peft.get_peft_model(tiny_model(), peft.AdapterConfig()).merge_and_unload()


def test_switching_adapters_changes_nothing_in_the_base():
    base = tiny_model()
    x, y = token_batch(), tl.tensor(np.array([0, 1, 2, 1]))
    expected = base(x).data.copy()
    frozen = {k: v.copy() for k, v in base.state_dict().items()}
    model = peft.get_peft_model(base, lora_config(modules_to_save=["classifier"]), adapter_name="pos")
    model.add_adapter("subjects", lora_config(r=2, modules_to_save=["classifier"]))
    assert model.active_adapter == "pos"
    outputs = {}
    for task in ("pos", "subjects", "pos"):
        model.set_adapter(task)
        trainable = [n for n, p in model.named_parameters() if p.requires_grad]
        assert trainable and all(f".{task}." in n for n in trainable)
        optimizer = tl.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.05)
        for _ in range(3):
            tl.training.train_step(model, optimizer, tl.ops.cross_entropy, x, y)
        outputs[task] = model(x).data.copy()
    assert np.abs(outputs["pos"] - outputs["subjects"]).max() > 1e-3  # two different tasks
    with model.disable_adapter():
        np.testing.assert_allclose(model(x).data, expected, rtol=1e-6, atol=1e-6)
    unloaded = model.unload()
    for k, v in unloaded.state_dict().items():
        np.testing.assert_array_equal(v, frozen[k], err_msg=k)


def test_set_adapter_refuses_an_unknown_name_and_add_adapter_another_method():
    model = peft.get_peft_model(tiny_model(), lora_config())
    with pytest.raises(ValueError, match="no adapter named 'nope'"):
        model.set_adapter("nope")
    with pytest.raises(ValueError, match="one base takes one method"):
        model.add_adapter("other", peft.AdapterConfig())
    with pytest.raises(ValueError, match="exists already"):
        model.add_adapter("default", lora_config())


# --- prefix tuning -------------------------------------------------------------------------------
@pytest.mark.parametrize("mask", ["none", "padding", "causal"])
def test_multihead_attention_prefix_matches_pytorch_attention_over_the_longer_keys(mask):
    torch = pytest.importorskip("torch")
    tl.manual_seed(0)
    attention = nn.MultiheadAttention(8, 2, batch_first=True).double()
    rng = np.random.default_rng(0)
    x, pk, pv = rng.standard_normal((3, 5, 8)), rng.standard_normal((2, 8)), rng.standard_normal((2, 8))
    padding = np.zeros((3, 5), dtype=bool)
    padding[1, 3:] = True
    kwargs = dict(key_padding_mask=padding) if mask == "padding" else dict(is_causal=True) if mask == "causal" else {}
    tx = tl.tensor(x, dtype="float64")
    ours, weights = attention(tx, tx, tx, prefix_key_value=(tl.tensor(pk, dtype="float64"),
                                                           tl.tensor(pv, dtype="float64")), **kwargs)
    assert weights.shape == (3, 5, 7)
    s = {k: torch.tensor(v) for k, v in attention.state_dict().items()}
    t = torch.tensor(x)
    q, k, v = torch.nn.functional.linear(t, s["in_proj_weight"], s["in_proj_bias"]).chunk(3, dim=-1)
    k = torch.cat([torch.tensor(pk).expand(3, 2, 8), k], 1)
    v = torch.cat([torch.tensor(pv).expand(3, 2, 8), v], 1)
    allowed = torch.ones(3, 1, 5, 7, dtype=torch.bool)
    if mask == "padding":
        allowed[:, :, :, 2:] = ~torch.tensor(padding)[:, None, None, :]
    if mask == "causal":
        allowed[..., 2:] = torch.ones(5, 5, dtype=torch.bool).tril()
    heads = [u.reshape(3, -1, 2, 4).transpose(1, 2) for u in (q, k, v)]
    out = torch.nn.functional.scaled_dot_product_attention(*heads, attn_mask=allowed)
    theirs = torch.nn.functional.linear(out.transpose(1, 2).reshape(3, 5, 8), s["out_proj.weight"], s["out_proj.bias"])
    np.testing.assert_allclose(ours.data, theirs.numpy(), rtol=1e-10, atol=1e-12)


def test_multihead_attention_refuses_a_bad_prefix():
    attention = nn.MultiheadAttention(8, 2, batch_first=True)
    x = tl.randn(3, 5, 8)
    with pytest.raises(ValueError, match=r"prefix keys must be a Tensor \(P, 8\)"):
        attention(x, x, x, prefix_key_value=(tl.randn(2, 6), tl.randn(2, 8)))
    with pytest.raises(ValueError, match="2 prefix keys but 3 prefix values"):
        attention(x, x, x, prefix_key_value=(tl.randn(2, 8), tl.randn(3, 8)))
    with pytest.raises(TypeError, match="a pair"):
        attention(x, x, x, prefix_key_value=tl.randn(2, 8))


@pytest.mark.parametrize("projection", [False, True])
def test_prefix_tuning_puts_learned_keys_and_values_in_every_attention_layer(projection):
    base = tiny_model(norm_first=True)
    x = token_batch()
    expected = base(x).data.copy()
    config = peft.PrefixTuningConfig(num_virtual_tokens=3, prefix_projection=projection, encoder_hidden_size=8)
    model = peft.get_peft_model(base, config)
    encoder = model.prompt_encoder["default"]
    assert encoder().shape == (3, 2 * 2 * 16)
    names = sorted(n for n, _ in model.named_parameters() if n.startswith("prompt_encoder"))
    assert names == (["prompt_encoder.default.embedding.weight", "prompt_encoder.default.transform.0.bias",
                      "prompt_encoder.default.transform.0.weight", "prompt_encoder.default.transform.2.bias",
                      "prompt_encoder.default.transform.2.weight"] if projection else
                     ["prompt_encoder.default.embedding.weight"])
    out = model(x)
    assert np.abs(out.data - expected).max() > 1e-4
    out.sum().backward()
    assert all((p.grad is not None) == n.startswith("prompt_encoder") for n, p in model.named_parameters())
    # each layer reads its own slice: a change in layer 1's values moves the output, layer 0's stays
    k0, v1 = encoder.key_value(0)[0], encoder.key_value(1)[1]
    assert k0.shape == v1.shape == (3, 16)
    with model.disable_adapter():
        np.testing.assert_allclose(model(x).data, expected, rtol=1e-6, atol=1e-6)
    plain = model.unload()
    assert not any(isinstance(m, peft.prompt.PrefixAttention) for m in plain.modules())
    np.testing.assert_allclose(plain(x).data, expected, rtol=1e-6, atol=1e-6)


def test_prompt_learning_needs_attention_layers():
    with pytest.raises(ValueError, match="no attention layer"):
        peft.get_peft_model(nn.Sequential(nn.Linear(3, 3)), peft.PromptTuningConfig(num_virtual_tokens=2))
    with pytest.raises(ValueError, match="num_virtual_tokens must be a positive int"):
        peft.PrefixTuningConfig(num_virtual_tokens=0)
