"""minimaml: a small, exact and fast from-scratch MAML in NumPy.

The engine's ops and transforms live at the top level, NumPy- and JAX-style:
`minimaml.tanh`, `minimaml.sum(x, axis=0)`, `minimaml.grad(f)`, `minimaml.hessian(f)`, ...
and so do the model, the tasks and MAML itself: `minimaml.MLP`, `minimaml.Sinusoid`,
`minimaml.meta_value_and_grad`, `minimaml.load_checkpoint`.
"""
__version__ = "0.1.0"

from .autodiff import (  # noqa: F401,E402
    Tensor, add, check_grads, concatenate, cos, divide, exp, grad, hessian, hvp, jacobian, jvp, log,
    log_softmax, logsumexp, matmul, maximum, mean, multiply, negative, numerical_grad, power, relu, reshape,
    sigmoid, sin, softmax, sqrt, stack, subtract, sum, swapaxes, tanh, transpose, value_and_grad, vjp, where,
)
from .nn import MLP, accuracy, batch_norm, mse, softmax_cross_entropy  # noqa: F401,E402
from .tasks import LinearRegression, Omniglot, Sinusoid, TaskBatch  # noqa: F401,E402
from .meta.maml import adapt, inner_matrices, meta_value_and_grad  # noqa: F401,E402
from .meta.metasgd import metasgd_value_and_grad  # noqa: F401,E402
from .meta.reptile import reptile_direction  # noqa: F401,E402
from .meta.imaml import imaml_value_and_grad  # noqa: F401,E402
from .meta.meta_lstm import meta_lstm_adapt, meta_lstm_init, meta_lstm_split, meta_lstm_value_and_grad  # noqa: F401,E402
from .nn.linearize import linearize  # noqa: F401,E402
from .meta.ntk import meta_ntk  # noqa: F401,E402
from .meta.ftml import FTML, TaskBuffer  # noqa: F401,E402
from .optim import SGD, Adam  # noqa: F401,E402
from .run.checkpoint import load_checkpoint, save_checkpoint  # noqa: F401,E402
from .rl import GaussianMLPPolicy, NavConfig, Navigation, train_navigation  # noqa: F401,E402
