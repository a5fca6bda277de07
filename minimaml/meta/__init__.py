"""Meta-learning algorithms over one inner loop."""
