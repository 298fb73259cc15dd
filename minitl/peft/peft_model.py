"""`get_peft_model(model, config)` and the PeftModel it returns, with Hugging Face PEFT's
surface: `print_trainable_parameters()`, `merge_and_unload()`, `add_adapter`, `set_adapter`,
`with model.disable_adapter():`. The parameter names follow PEFT's
(`base_model.model.<path>.lora_A.default.weight`), so weights copy across.

One frozen base can carry several named adapters and switch between them per batch: the
chapter's multi-task serving, where each task stores only its adapter.
"""
from __future__ import annotations

import contextlib

from .. import nn
from . import adapters as adapters_module
from . import lora
from .config import AdapterConfig, LoraConfig, PeftConfig, PrefixTuningConfig, PromptTuningConfig
from .prompt import PrefixAttention, PrefixEncoder, PromptedEncoder, PromptEmbedding
from .tuners import (ModulesToSaveWrapper, TunerLayer, count_trainable_parameters, find_targets,
                     trainable_line, wrap_modules_to_save)


class TunerModel(nn.Module):
    """The frozen model with tuner layers swapped in (PEFT's LoraModel): `model` is it."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, *args, **kwargs):
        return self.model(*args, **kwargs)


class LoraModel(TunerModel):
    pass


class AdapterModel(TunerModel):
    pass


class PeftModel(nn.Module):
    """A frozen model with named adapters of one method; forward is the model's forward."""

    def __init__(self, model, peft_config, adapter_name="default"):
        super().__init__()
        if not isinstance(peft_config, PeftConfig):
            raise TypeError(f"get_peft_model: expected a LoraConfig, AdapterConfig, PromptTuningConfig or "
                            f"PrefixTuningConfig, got {type(peft_config).__name__}")
        self.peft_config = {}
        self.active_adapter = adapter_name
        self._adapters_disabled = False
        model.requires_grad_(False)  # the base is frozen; only what add_adapter makes trains
        if peft_config.is_prompt_learning:
            self.base_model = model
            self.prompt_encoder = nn.ModuleDict()
        else:
            self.base_model = (LoraModel if isinstance(peft_config, LoraConfig) else AdapterModel)(model)
        self.add_adapter(adapter_name, peft_config)

    # --- the model -----------------------------------------------------------------------------
    @property
    def model(self):
        """The underlying model (with the tuner layers in it)."""
        return self.base_model if self.is_prompt_learning else self.base_model.model

    @property
    def is_prompt_learning(self):
        return "prompt_encoder" in self._modules

    def forward(self, *args, **kwargs):
        return self.base_model(*args, **kwargs)

    def get_base_model(self):
        return self.model

    def __getattr__(self, name):
        # attributes of the wrapped model (its `features`, `blocks`, ...) are reachable, as in PEFT
        if name.startswith("_") or name in ("base_model", "prompt_encoder"):
            raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")
        return getattr(self.model, name)

    # --- adapters ------------------------------------------------------------------------------
    def add_adapter(self, adapter_name, peft_config):
        """Add the adapter `adapter_name` (same method as the first); the active one stays active."""
        if adapter_name in self.peft_config:
            raise ValueError(f"add_adapter: an adapter named {adapter_name!r} exists already")
        if self.peft_config:
            first = next(iter(self.peft_config.values()))
            if type(first) is not type(peft_config):
                raise ValueError(f"add_adapter: this model's adapters are {type(first).__name__}s; one base takes "
                                 f"one method, got a {type(peft_config).__name__}")
        self.peft_config[adapter_name] = peft_config
        if isinstance(peft_config, LoraConfig):
            self._inject(adapter_name, peft_config, peft_config.target_modules, lora.wrap, lora.LoraLayer)
        elif isinstance(peft_config, AdapterConfig):
            targets = peft_config.target_modules or adapters_module.default_targets(self.model)
            self._inject(adapter_name, peft_config, targets, _adapter_wrap, adapters_module.AdapterLayer)
        else:
            self._add_prompt_learning(adapter_name, peft_config)
        if peft_config.modules_to_save:
            wrap_modules_to_save(self.model, peft_config.modules_to_save, adapter_name)
        self.set_adapter(self.active_adapter if self.active_adapter in self.peft_config else adapter_name)

    def _inject(self, adapter_name, config, targets, wrap, layer_type):
        if targets is None:
            raise ValueError(f"{type(config).__name__}: give target_modules (names, suffixes or a regex); the "
                             f"model's modules are: {', '.join(n for n, _ in self.model.named_modules() if n)}")
        # the deepest first: wrapping a parent moves its children under `base_layer`
        for name in sorted(find_targets(self.model, targets), key=lambda n: -n.count(".")):
            module = self.model.get_submodule(name)
            if isinstance(module, layer_type):
                module.update_layer(adapter_name, config)
            else:
                self.model.set_submodule(name, wrap(module, adapter_name, config))

    def _add_prompt_learning(self, adapter_name, config):
        encoders = [(n, m) for n, m in self.model.named_modules()
                    if isinstance(m, (nn.TransformerEncoder, PromptedEncoder))]
        attentions = [(n, m) for n, m in self.model.named_modules()
                      if isinstance(m, (nn.MultiheadAttention, PrefixAttention)) and not n.endswith("base_layer")]
        if not attentions:
            raise ValueError(f"{type(config).__name__}: the model has no attention layer (nn.MultiheadAttention) to "
                             "put virtual tokens in front of")
        width = config.token_dim or _base(attentions[0][1]).embed_dim
        if isinstance(config, PromptTuningConfig):
            if not encoders:
                raise ValueError("PromptTuningConfig: the model has no nn.TransformerEncoder whose input could take "
                                 "the virtual tokens")
            self.prompt_encoder[adapter_name] = PromptEmbedding(config.num_virtual_tokens, width)
            for name, module in encoders:
                if isinstance(module, nn.TransformerEncoder):
                    if not module.layers[0].self_attn.batch_first:
                        raise ValueError(f"PromptTuningConfig: {name} is not batch_first; prompt tuning here needs "
                                         "(B, L, d) inputs")
                    self.model.set_submodule(name, PromptedEncoder(module, self))
        else:
            layers = config.num_layers or len(attentions)
            self.prompt_encoder[adapter_name] = PrefixEncoder(config.num_virtual_tokens, width, layers,
                                                              config.prefix_projection, config.encoder_hidden_size)
            for index, (name, module) in enumerate(attentions):
                if isinstance(module, nn.MultiheadAttention):
                    self.model.set_submodule(name, PrefixAttention(module, self, index))

    def set_adapter(self, adapter_name):
        """Make `adapter_name` the active adapter: the one forward uses and the only one that trains."""
        if adapter_name not in self.peft_config:
            raise ValueError(f"set_adapter: no adapter named {adapter_name!r}; this model has {list(self.peft_config)}")
        self.active_adapter = adapter_name
        for module in self._wrappers():
            module.set_adapter(adapter_name)
        if self.is_prompt_learning:
            for key, encoder in self.prompt_encoder.items():
                encoder.requires_grad_(key == adapter_name)

    def _wrappers(self):
        return [m for m in self.model.modules() if isinstance(m, (TunerLayer, ModulesToSaveWrapper))]

    def active_prompt_encoder(self):
        """The active adapter's prompt or prefix encoder, or None while the adapters are disabled."""
        return None if self._adapters_disabled else self.prompt_encoder[self.active_adapter]

    @contextlib.contextmanager
    def disable_adapter(self):
        """Within `with model.disable_adapter():` the model computes as its frozen base."""
        wrappers = self._wrappers()
        previous = [m.disable_adapters for m in wrappers], self._adapters_disabled
        for module in wrappers:
            module.disable_adapters = True
        object.__setattr__(self, "_adapters_disabled", True)
        try:
            yield
        finally:
            for module, flag in zip(wrappers, previous[0]):
                module.disable_adapters = flag
            object.__setattr__(self, "_adapters_disabled", previous[1])

    # --- counting ------------------------------------------------------------------------------
    def get_nb_trainable_parameters(self):
        """(trainable parameters, all parameters), the adapters' included."""
        return count_trainable_parameters(self)

    def print_trainable_parameters(self):
        print(trainable_line(*self.get_nb_trainable_parameters()))

    # --- back to a plain model -----------------------------------------------------------------
    def merge_adapter(self):
        """Fold the active LoRA adapter into the base weights (undo with unmerge_adapter)."""
        for module in self._lora_layers():
            module.merge([self.active_adapter])

    def unmerge_adapter(self):
        for module in self._lora_layers():
            module.unmerge()

    def _lora_layers(self):
        if not isinstance(self.base_model, LoraModel):
            raise ValueError("merging needs LoRA adapters: an adapter with a non-linearity, or virtual tokens, "
                             "cannot be folded into the weights")
        return [m for m in self.model.modules() if isinstance(m, lora.LoraLayer)]

    def merge_and_unload(self):
        """The plain model, with W' = W + (alpha / r) B A in every LoRA layer and the active
        copies of modules_to_save in place; it computes what the adapted model computed."""
        self.merge_adapter()
        return self._unload()

    def unload(self):
        """The plain base model without any adapter (nothing merged)."""
        if isinstance(self.base_model, LoraModel):
            self.unmerge_adapter()
        return self._unload(keep_saved=False)

    def _unload(self, keep_saved=True):
        model = self.model
        wrapper_types = (TunerLayer, ModulesToSaveWrapper, PromptedEncoder, PrefixAttention)
        wrappers = [(n, m) for n, m in model.named_modules() if isinstance(m, wrapper_types)]
        for name, module in sorted(wrappers, key=lambda item: -item[0].count(".")):  # the deepest first
            if isinstance(module, ModulesToSaveWrapper):
                replacement = module.active_module() if keep_saved else module.original_module
            else:
                replacement = module.base_layer
            if name:
                model.set_submodule(name, replacement)
            else:
                model = replacement
        return model


def _base(module):
    return module.base_layer if isinstance(module, PrefixAttention) else module


def _adapter_wrap(module, adapter_name, config):
    return adapters_module.AdapterLayer(module, adapter_name, config)


def get_peft_model(model, peft_config, adapter_name="default"):
    """The model with `peft_config`'s adapter in it and everything else frozen (a PeftModel).
    The model is changed in place (its target layers are wrapped), as in PEFT."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"get_peft_model: expected an nn.Module, got {type(model).__name__}")
    return PeftModel(model, peft_config, adapter_name)


def get_peft_model_state_dict(model, adapter_name=None):
    """The arrays one adapter adds (and its modules_to_save copies), under PEFT's saved names:
    the adapter name taken out (`base_model.model.x.lora_A.weight`). What a task stores."""
    adapter_name = adapter_name or model.active_adapter
    marker = f".{adapter_name}."
    state = {}
    for name, array in model.state_dict().items():
        if marker in f".{name}" and _is_adapter_part(name, adapter_name):
            state[f".{name}".replace(marker, ".", 1)[1:]] = array
    return state


def _is_adapter_part(name, adapter_name):
    parts = name.split(".")
    for holder in ("lora_A", "lora_B", "adapters", "modules_to_save", "prompt_encoder"):
        if holder in parts and parts.index(holder) + 1 < len(parts) and parts[parts.index(holder) + 1] == adapter_name:
            return True
    return False


def set_peft_model_state_dict(model, state, adapter_name="default"):
    """Load arrays saved by `get_peft_model_state_dict` into the adapter `adapter_name`."""
    own = {k: v for k, v in model.named_parameters()}
    missing, loaded = [], 0
    for key, array in state.items():
        full = _with_adapter_name(key, adapter_name)
        if full not in own:
            missing.append(key)
            continue
        if tuple(own[full].shape) != tuple(array.shape):
            raise ValueError(f"set_peft_model_state_dict: {key} has shape {tuple(array.shape)}, the model's "
                             f"{full} {tuple(own[full].shape)}")
        own[full].data[...] = array
        loaded += 1
    if missing:
        raise KeyError(f"set_peft_model_state_dict: no parameter of adapter {adapter_name!r} for {missing}")
    return loaded


def _with_adapter_name(key, adapter_name):
    parts = key.split(".")
    for holder in ("lora_A", "lora_B", "adapters", "modules_to_save", "prompt_encoder"):
        if holder in parts:
            at = parts.index(holder) + 1
            return ".".join(parts[:at] + [adapter_name] + parts[at:])
    return key
