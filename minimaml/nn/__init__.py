"""Models as pure functions of a flat parameter vector θ, and the losses they are trained with."""
from .losses import accuracy, mse, softmax_cross_entropy  # noqa: F401
from .mlp import MLP, batch_norm  # noqa: F401
from .linearize import linearize  # noqa: F401
