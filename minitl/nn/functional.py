"""`minitl.nn.functional` (import as F): the functional forms of the layers and losses."""
from ..ops import (binary_cross_entropy_with_logits, cross_entropy, dropout, embedding, gelu,  # noqa: F401
                   layer_norm, linear, log_softmax, logsigmoid, logsumexp, mse_loss, nll_loss,
                   normalize, pad, relu, sigmoid, silu, softmax, softplus, tanh)
from ..ops.conv import adaptive_avg_pool2d, avg_pool2d, batch_norm, conv2d, max_pool2d  # noqa: F401,E402  (vision)
from ..ops.attention import scaled_dot_product_attention  # noqa: F401,E402  (transformers)
from ..ops.contrastive import clip_loss  # noqa: F401,E402  (CLIP)
