"""The configurations of the parameter-efficient methods, with Hugging Face PEFT's names and
defaults, so that `LoraConfig(r=8, lora_alpha=16, target_modules=["out_proj"])` reads the same
here as in `peft` (chapter: parameter-efficient fine-tuning; lesson 11)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union


@dataclass
class PeftConfig:
    """What every method's config has. `peft_type` names the method; prompt learning (prompt and
    prefix tuning) adds tokens instead of wrapping layers."""
    peft_type: str = field(default="", init=False)
    task_type: Optional[str] = None
    inference_mode: bool = False

    @property
    def is_prompt_learning(self):
        return False


@dataclass
class LoraConfig(PeftConfig):
    """LoRA (Hu et al. 2021): h = W x + (lora_alpha / r) B A x on each target layer.

    target_modules: a list of names or name suffixes ("out_proj" matches "encoder.layers.0.
    self_attn.out_proj"), or one string taken as a regular expression that must match a whole
    name. Linear layers and MultiheadAttention (its [W_q; W_k; W_v]) can be targets.
    modules_to_save: names (or suffixes) of modules trained in full beside the adapter, e.g. a
    new classification head."""
    r: int = 8
    lora_alpha: int = 8
    lora_dropout: float = 0.0
    target_modules: Optional[Union[list, str]] = None
    modules_to_save: Optional[list] = None
    init_lora_weights: bool = True
    bias: str = "none"

    def __post_init__(self):
        self.peft_type = "LORA"
        if not isinstance(self.r, int) or self.r <= 0:
            raise ValueError(f"LoraConfig: r must be a positive int, got {self.r!r}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"LoraConfig: lora_dropout must lie in [0, 1), got {self.lora_dropout}")
        if self.bias != "none":
            raise NotImplementedError("LoraConfig: only bias='none' is implemented (biases stay frozen)")
        _check_targets(self)


@dataclass
class AdapterConfig(PeftConfig):
    """Bottleneck adapters (Houlsby et al. 2019): y = h + f(h W_down) W_up on the output h of a
    layer, W_down (d, bottleneck_size), W_up (bottleneck_size, d) starting at zero.

    target_modules None puts them where Houlsby did: after the attention (its output
    projection `self_attn.out_proj`) and after the MLP (`linear2`) of every Transformer encoder
    layer, and at the end of the residual branch (`bn2`) of every ResNet basic block."""
    bottleneck_size: int = 16
    non_linearity: str = "relu"
    target_modules: Optional[Union[list, str]] = None
    modules_to_save: Optional[list] = None

    def __post_init__(self):
        self.peft_type = "ADAPTER"
        if not isinstance(self.bottleneck_size, int) or self.bottleneck_size <= 0:
            raise ValueError(f"AdapterConfig: bottleneck_size must be a positive int, got {self.bottleneck_size!r}")
        if self.non_linearity not in ("relu", "gelu", "tanh"):
            raise ValueError(f"AdapterConfig: non_linearity must be 'relu', 'gelu' or 'tanh', got {self.non_linearity!r}")
        _check_targets(self)


@dataclass
class PromptLearningConfig(PeftConfig):
    num_virtual_tokens: int = 10
    token_dim: Optional[int] = None
    num_layers: Optional[int] = None
    modules_to_save: Optional[list] = None

    @property
    def is_prompt_learning(self):
        return True

    def __post_init__(self):
        if not isinstance(self.num_virtual_tokens, int) or self.num_virtual_tokens <= 0:
            raise ValueError(f"{type(self).__name__}: num_virtual_tokens must be a positive int, "
                             f"got {self.num_virtual_tokens!r}")
        _check_targets(self)


@dataclass
class PromptTuningConfig(PromptLearningConfig):
    """Prompt tuning (Lester et al. 2021): num_virtual_tokens learned vectors put in front of the
    sequence that enters the first Transformer layer; the model is frozen."""

    def __post_init__(self):
        self.peft_type = "PROMPT_TUNING"
        super().__post_init__()


@dataclass
class PrefixTuningConfig(PromptLearningConfig):
    """Prefix tuning (Li and Liang 2021): num_virtual_tokens learned keys and values in front of
    the keys and values of every attention layer. With prefix_projection they are made by an
    MLP, Linear(token_dim, encoder_hidden_size) - tanh - Linear(.., num_layers * 2 * token_dim),
    from a small embedding (the paper's reparametrisation, which trains more stably)."""
    encoder_hidden_size: Optional[int] = None
    prefix_projection: bool = False

    def __post_init__(self):
        self.peft_type = "PREFIX_TUNING"
        super().__post_init__()


def _check_targets(config):
    for name in ("target_modules", "modules_to_save"):
        value = getattr(config, name, None)
        if value is None or isinstance(value, str):
            continue
        value = list(value)
        if not all(isinstance(v, str) and v for v in value):
            raise TypeError(f"{type(config).__name__}: {name} must be a regex string or a list of module names, "
                            f"got {value!r}")
        setattr(config, name, value)
