"""The fast route: hand-derived backprop and Pearlmutter's R-operator, layer by layer.

``layers.py`` (dense, batch norm, activation, MSE and cross-entropy heads: four passes each),
``weights.py`` (per-task weights, dense or low rank), ``network.py`` (the passes over a stack, and
``TaskLosses``, the interface the algorithms use), ``arena.py`` (reused buffers).
"""
from .network import TaskLosses, mlp_hessian, mlp_hvp, mlp_loss_and_grad, supports  # noqa: F401
