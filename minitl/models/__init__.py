"""`minitl.models`: ready-made networks of the chapter (torchvision-style constructors)."""
from .resnet_mini import BasicBlock, ResNetMini, resnet_mini, small_cnn  # noqa: F401
from .vit import PatchEmbed, VisionTransformer, ViTEmbeddings, vit_mini  # noqa: F401
