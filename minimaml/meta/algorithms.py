"""The MAML family as the training loop sees it: one small adapter per algorithm, same interface.

Every algorithm is the same inner loop with a different way back (its own module holds the math);
for training and evaluation each one says only:

    extra(net, config)               its meta-parameters besides θ, initialised (an empty array if none):
                                     Meta-SGD's α (P,), MAML++'s step sizes (S, J)
    value_and_grad(...)              the meta-loss and the gradient of [θ, extra] for one meta-batch
    adaptation(net, extra, config)   how a task is adapted at test time (``inner.Adaptation``)

The training loop optimises the vector [θ, extra] with Adam; a checkpoint stores θ and ``extra``
apart, with the algorithm's name in its config.

    maml      θ_{k+1} = θ_k − α ∇L(θ_k); second order (Finn et al. 2017)
    fomaml    the same, first order
    anil      only the head adapts: s = α·mask (Raghu et al. 2020)
    metasgd   a learned step per parameter, α (P,), the same at every step (Li et al. 2017)
    mamlpp    learned per-step, per-tensor steps, the multi-step loss (annealed), first order for the
              first ``first_order_iterations``, cosine-annealed meta step (Antoniou et al. 2019)
    reptile   the outer step moves θ toward the adapted θ_S: direction θ − mean θ_S (Nichol et al. 2018)
    imaml     proximal inner problem, implicit meta-gradient (I + H/λ)⁻¹ ∇L_query by conjugate
              gradient (Rajeswaran et al. 2019)
"""
import numpy as np

from .inner import Adaptation
from .maml import meta_value_and_grad
from .mamlpp import mamlpp_value_and_grad, msl_weights, tensor_index
from .metasgd import metasgd_value_and_grad

NAMES = ("maml", "fomaml", "anil", "metasgd", "mamlpp", "reptile", "imaml")


def extra(name, net, config):
    """The algorithm's initial meta-parameters besides θ, flat (E,), in θ's dtype."""
    if name == "metasgd":                         # α starts as MAML's α for every parameter
        return np.full(net.num_params, config.inner_lr)
    if name == "mamlpp":                          # one size per step and tensor, all MAML's α at first
        return np.full(config.steps * len(net.tensors()), config.inner_lr)
    return np.zeros(0)


def value_and_grad(name, net, params, batch, config, loss, iteration):
    """(meta-loss, gradient of the flat meta-parameters [θ, extra]) for one meta-batch ``batch`` =
    (xs, ys, xq, yq). ``iteration`` drives the schedules (MAML++)."""
    P = net.num_params
    theta, rest = params[:P], params[P:]
    args = (batch[0], batch[1], batch[2], batch[3])
    if name in ("maml", "fomaml", "anil"):
        method = "first_order" if name == "fomaml" else config.method
        mask = net.head_mask() if name == "anil" else None
        value, g = meta_value_and_grad(net, theta, *args, config.inner_lr, config.steps, method=method,
                                       loss=loss, inner_mask=mask)
        return value, g
    if name == "metasgd":
        value, (g, g_alpha) = metasgd_value_and_grad(net, theta, rest, *args, config.steps, loss=loss)
        return value, np.concatenate([g, g_alpha])
    if name == "mamlpp":
        sizes = rest.reshape(config.steps, -1)
        progress = iteration / max(config.msl_iterations, 1) if config.msl_iterations else np.inf
        weights = msl_weights(config.steps, progress)
        first_order = iteration < config.first_order_iterations
        value, (g, g_sizes) = mamlpp_value_and_grad(net, theta, sizes, *args, loss=loss, weights=weights,
                                                    first_order=first_order)
        return value, np.concatenate([g, g_sizes.ravel()])
    if name == "reptile":
        from .reptile import reptile_direction
        direction, value = reptile_direction(net, theta, args[0], args[1], config.inner_lr, config.steps,
                                             loss=loss, xq=args[2], yq=args[3])
        return value, direction
    if name == "imaml":
        from .imaml import imaml_value_and_grad
        return imaml_value_and_grad(net, theta, *args, config.inner_lr, config.steps, config.lam,
                                    solver="cg", cg_steps=config.cg_steps, cg_tol=config.cg_tol, loss=loss)
    raise ValueError(f"unknown algorithm {name!r}; choose one of {NAMES}")


def adaptation(name, net, extra_params, config):
    """How a model meta-learned by ``name`` adapts to a new task (what a test-time step is for it)."""
    if name == "anil":            # the head alone
        return Adaptation([config.inner_lr * net.head_mask()])
    if name == "metasgd":         # its learned α at every step
        return Adaptation([np.asarray(extra_params, dtype=float)])
    if name == "mamlpp":          # its learned sizes for the steps it was trained with, then the last one
        index = tensor_index(net)
        sizes = np.asarray(extra_params, dtype=float).reshape(config.steps, -1)
        return Adaptation([sizes[k][index] for k in range(config.steps)])
    if name == "imaml":           # its proximal inner steps
        return Adaptation([config.inner_lr], lam=config.lam)
    return Adaptation([config.inner_lr])          # maml, fomaml, reptile: plain gradient descent
