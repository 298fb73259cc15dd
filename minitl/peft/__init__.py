"""`minitl.peft`: parameter-efficient fine-tuning with Hugging Face PEFT's API (chapter:
parameter-efficient fine-tuning; lesson 11).

    config = tl.peft.LoraConfig(r=8, lora_alpha=16, target_modules=["self_attn", "linear1"],
                                modules_to_save=["classifier"])
    model = tl.peft.get_peft_model(model, config)
    model.print_trainable_parameters()
    ...train...
    plain = model.merge_and_unload()

LoRA (`lora.py`: W + (alpha / r) B A), bottleneck adapters (`adapters.py`:
x + f(x W_down) W_up), prompt and prefix tuning (`prompt.py`: [P; X] and [P_k; K], [P_v; V]).
"""
from .adapters import Adapter, AdapterLayer, adapter_block  # noqa: F401
from .config import (AdapterConfig, LoraConfig, PeftConfig, PrefixTuningConfig,  # noqa: F401
                     PromptTuningConfig)
from .lora import lora_output, merged_weight  # noqa: F401
from .peft_model import (PeftModel, get_peft_model, get_peft_model_state_dict,  # noqa: F401
                         set_peft_model_state_dict)
from .prompt import PrefixEncoder, PromptEmbedding, prepend_prompt  # noqa: F401
from .tuners import ModulesToSaveWrapper, count_trainable_parameters  # noqa: F401
