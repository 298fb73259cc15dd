"""`minitl.models`: ready-made networks of the chapter (torchvision-style constructors)."""
from .resnet_mini import BasicBlock, ResNetMini, resnet_mini, small_cnn  # noqa: F401
from .vit import PatchEmbed, VisionTransformer, ViTEmbeddings, vit_mini  # noqa: F401
from .text_transformer import TextClassifier, TextEmbeddings, TextTransformer  # noqa: F401
from .bert import MiniBert, bert, mlm_mask  # noqa: F401
from .gpt import MiniGPT, gpt  # noqa: F401
from .clip import CLIP, ImageFeatures, TextEncoder  # noqa: F401,E402  (CLIP; the module is tl.models.clip)
