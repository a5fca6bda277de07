"""MAML for reinforcement learning: the MAML paper's 2-D navigation (Finn et al. 2017, §5.3) with an exact
meta-gradient.

    navigation   the environment, vectorised over tasks and trajectories
    policy       the Gaussian MLP policy π_θ(u | s), a pure function of a flat θ
    returns      reward-to-go, GAE, the linear feature baseline, standardised advantages
    estimators   the inner policy-gradient step, DiCE's magic box, the unbiased and the biased meta-gradient
    onestep      a one-step problem whose meta-gradient has a closed form: the estimators' check
    maml_rl      one meta-iteration, the pretrained baseline's step, test-time adaptation
    train        the training loop, checkpoints, the test protocol, the figure, the CLI's entry points
"""
from .estimators import ESTIMATORS, dice_objective, inner_step, magic_box, meta_objective  # noqa: F401
from .maml_rl import adaptation_curve, meta_step  # noqa: F401
from .navigation import Navigation, Trajectories  # noqa: F401
from .policy import GaussianMLPPolicy  # noqa: F401
from .train import NavConfig, evaluate_navigation, plot_navigation, train_navigation  # noqa: F401
