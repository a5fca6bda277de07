"""README's example is executable documentation: run its first Python block, compare with the output block
after it (micrograd-style: the printed numbers double as a test)."""
import contextlib
import io
import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_prints_what_readme_says():
    text = README.read_text()
    match = re.search(r"```python\n(.*?)```\s*\n```text\n(.*?)```", text, re.S)
    assert match, "README must have a ```python example followed by a ```text block of its output"
    code, expected = match.groups()
    assert len(code.strip().splitlines()) <= 12, "the README example should stay about 10 lines"
    out = io.StringIO()
    with contextlib.redirect_stdout(out), np.printoptions(legacy=False):
        exec(compile(code, "README.md", "exec"), {})
    assert out.getvalue().split() == expected.split()


def test_readme_maml_example_runs_and_its_routes_agree():
    code = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[1]
    code = code.replace("for method in", "grads = {}\nfor method in").replace(
        "method=method)", "method=method)\n    grads[method] = g")
    ns = {}
    exec(compile(code, "README.md", "exec"), ns)
    g = ns["grads"]
    assert set(g) == {"autodiff", "hessian", "hvp", "first_order"}
    for m in ("autodiff", "hessian"):
        np.testing.assert_allclose(g[m], g["hvp"], rtol=1e-9, atol=1e-12)
    assert ns["M"].shape == (2, 1, 1761, 1761)


def test_readme_user_model_example_meta_trains_through_the_public_api():
    code = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[2]
    assert "def model(theta, x)" in code and 'method="autodiff"' in code
    ns = {}
    exec(compile(code.replace("range(1000)", "range(150)"), "README.md", "exec"), ns)
    mm, model = ns["mm"], ns["model"]
    b = mm.Sinusoid().sample(50, 10, 10, rng=12345)             # held-out tasks
    start = 0.5 * np.random.default_rng(0).standard_normal(97)
    before = mm.meta_value_and_grad(model, start, b.xs, b.ys, b.xq, b.yq, 0.01, 1, method="autodiff")[0]
    after = mm.meta_value_and_grad(model, ns["theta"], b.xs, b.ys, b.xq, b.yq, 0.01, 1, method="autodiff")[0]
    assert after < 0.8 * before, (before, after)
