"""Task families. Each samples a ``TaskBatch`` (xs, ys, xq, yq, params) of T tasks."""
from .base import TaskBatch, as_rng  # noqa: F401
from .linear import LinearRegression  # noqa: F401
from .omniglot import Omniglot  # noqa: F401
from .sinusoid import Sinusoid  # noqa: F401
