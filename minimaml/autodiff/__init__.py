"""minimaml's reverse-mode autodiff engine: Tensor, NumPy-named differentiable ops, JAX-style transforms."""
from .ops import (  # noqa: F401
    add, broadcast_to, concatenate, cos, divide, exp, getitem, log, log_softmax, logsumexp, matmul, maximum,
    mean, multiply, negative, power, relu, reshape, sigmoid, sin, softmax, sqrt, stack, subtract, sum, swapaxes,
    tanh, transpose, unbroadcast, where,
)
from .tensor import Tensor, array_module, defvjp, primitive, raw  # noqa: F401
from .transforms import (  # noqa: F401
    check_memory, grad, hessian, hvp, jacobian, jacobian_bytes, jvp, value_and_grad, vjp,
)
from .checks import check_grads, numerical_grad  # noqa: F401,E402
