"""Running: the training loop, evaluation, checkpoints and figures."""
