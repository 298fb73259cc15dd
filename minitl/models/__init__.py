"""`minitl.models`: ready-made networks of the chapter (torchvision-style constructors)."""
from .resnet_mini import BasicBlock, ResNetMini, resnet_mini, small_cnn  # noqa: F401
from .clip import CLIP, ImageFeatures, TextEncoder  # noqa: F401,E402  (CLIP; the module is tl.models.clip)
