"""The fast route: hand-derived backprop and Pearlmutter's R-operator, layer by layer."""
from .backprop import (  # noqa: F401
    hvp_meta_value_and_grad, keep_freed_memory, mlp_hessian, mlp_hvp, mlp_loss_and_grad,
)
