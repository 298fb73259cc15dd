"""minitl: transfer learning built from scratch in NumPy (CuPy on a GPU).

    import minitl as tl
    x = tl.tensor([1.0, 2.0], requires_grad=True)
    (x * x).sum().backward()
    x.grad  # array([2., 4.], dtype=float32)
"""
from pathlib import Path as _Path

# In a source checkout (and a student copy) the kernels/ and lessons/ folders sit beside this
# package, at the top of the repository; installed, they live inside it. Looking in the
# checkout's root too makes them minitl.kernels and minitl.lessons in both cases.
if (_Path(__file__).parent.parent / "kernels" / "_loader.py").is_file():
    __path__.append(str(_Path(__file__).parent.parent))  # noqa: F821  (a package's own __path__)

from . import backend, cpu_runtime, fastpath, nn, ops, optim, random  # noqa: F401
from .backend import device, is_cuda_available  # noqa: F401
from .gradcheck import GradcheckError, gradcheck  # noqa: F401
from .ops import (abs, cat, chunk, clamp, clone, concatenate, exp, log, logsumexp, matmul, max,  # noqa: F401
                  maximum, mean, min, minimum, pad, relu, sigmoid, softmax, split, sqrt, stack, sum,
                  tanh, tril, triu, where)
from .random import get_rng, manual_seed  # noqa: F401
from .serialization import CheckpointError, load, save  # noqa: F401
from .tensor import (Function, Tensor, arange, bool_, enable_grad, float32, float64, full,  # noqa: F401
                     int32, int64, is_grad_enabled, no_grad, ones, ones_like, rand, randint, randn,
                     tensor, unbroadcast, zeros, zeros_like)

__version__ = "0.1.0"


def __getattr__(name):
    # heavier subpackages load on first use, so `import minitl` stays quick
    import importlib
    if name in ("data", "training", "models", "transfer", "embeddings", "elmo"):
        return importlib.import_module(f".{name}", __name__)
    if name in ("fit", "evaluate"):
        return getattr(importlib.import_module(".training", __name__), name)
    raise AttributeError(f"module 'minitl' has no attribute {name!r}")
