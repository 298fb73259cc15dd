"""`minitl.nn`: modules, parameters, layers and losses, with PyTorch's names."""
from . import functional, init, utils  # noqa: F401
from .containers import ModuleDict, ModuleList, Sequential  # noqa: F401
from .layers import (GELU, CrossEntropyLoss, Dropout, Embedding, Flatten, Identity, LayerNorm,  # noqa: F401
                     Linear, LogSigmoid, LogSoftmax, MSELoss, ReLU, Sigmoid, SiLU, Softmax, Softplus,
                     Tanh)
from .module import IncompatibleKeys, Module, Parameter, RemovableHandle, StateDictError  # noqa: F401
from .conv import AdaptiveAvgPool2d, AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, MaxPool2d  # noqa: F401,E402  (vision)
from .rnn import LSTM, LSTMCell  # noqa: F401,E402  (sequence models)
from .attention import MultiheadAttention  # noqa: F401,E402  (transformers)
from .transformer import TransformerEncoder, TransformerEncoderLayer  # noqa: F401,E402  (transformers)
