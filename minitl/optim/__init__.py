"""`minitl.optim`: SGD, Adam, AdamW with parameter groups, learning-rate schedules, and the
row-sparse SGD and AdaGrad of word2vec and GloVe."""
from . import lr_scheduler  # noqa: F401
from .adam import Adam, AdamW  # noqa: F401
from .lr_scheduler import LambdaLR, slanted_triangular, warmup_cosine  # noqa: F401
from .optimizer import Optimizer  # noqa: F401
from .sgd import SGD  # noqa: F401
from .sparse import SparseAdagrad, SparseSGD  # noqa: F401
