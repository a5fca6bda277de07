"""Meta-learning algorithms over one inner loop (``inner.py``), with one argument check (``checks.py``)."""
