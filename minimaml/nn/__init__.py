"""Models as pure functions of a flat parameter vector θ, and the losses they are trained with."""
from .losses import mse  # noqa: F401
from .mlp import MLP  # noqa: F401
