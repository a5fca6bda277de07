"""The tutorials run: every tutorials/*.ipynb executes top to bottom in a fresh kernel without an error.

Each notebook runs with tutorials/ as its working directory (as `jupyter lab tutorials/` would) and a headless
matplotlib backend, within a budget of NOTEBOOK_TIMEOUT seconds for the whole notebook.
Set MINIMAML_SAVE_EXECUTED=<dir> to keep the executed notebooks and every PNG plot they drew, as
<dir>/<notebook>.ipynb and <dir>/<notebook>_cell<NN>_<k>.png, for a human to look at.
"""
import base64
import importlib.util
import os
import pathlib
import re
import time

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

TUTORIALS = pathlib.Path(__file__).resolve().parent.parent / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))
NOTEBOOK_TIMEOUT = 300  # seconds for a whole notebook (each is meant to take under a minute)


def save_executed(nb, path, out_dir):
    """Write the executed notebook and its PNG outputs under out_dir."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out_dir / path.name)
    for i, cell in enumerate(nb.cells):
        pngs = [o["data"]["image/png"] for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
        for k, png in enumerate(pngs):
            (out_dir / f"{path.stem}_cell{i:02d}_{k}.png").write_bytes(base64.b64decode(png))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, monkeypatch):
    # Headless plotting, inherited by the kernel. Not plain "Agg": under Agg plt.show() draws nothing into the
    # notebook, so there would be no PNG outputs to save. The inline backend renders with Agg and keeps them.
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(path, as_version=4)
    deadline = time.monotonic() + NOTEBOOK_TIMEOUT
    client = NotebookClient(
        nb, kernel_name="python3", resources={"metadata": {"path": str(TUTORIALS)}},
        # nbclient times cells one by one; give each the notebook's remaining budget.
        timeout_func=lambda cell: max(1, int(deadline - time.monotonic())),
    )
    try:
        client.execute()  # raises CellExecutionError, with the cell and its traceback, on any error
    finally:
        if os.environ.get("MINIMAML_SAVE_EXECUTED"):
            save_executed(nb, path, os.environ["MINIMAML_SAVE_EXECUTED"])
    if path.stem.startswith("06_exercises"):
        check_exercise_outcomes(path, nb)


def cell_text(nb):
    return "\n".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []) if o.get("name") == "stdout")


def check_exercise_outcomes(path, nb):
    """The exercises notebook reports every exercise as not done yet; the solutions notebook passes them all."""
    exercises = sorted(set(re.findall(r"check_exercise_(\d+)\b", "\n".join(c.source for c in nb.cells))))
    assert len(exercises) >= 3, f"{path.name}: expected at least 3 checked exercises, found {exercises}"
    text = cell_text(nb)
    for n in exercises:
        passed, todo = f"exercise {n} passed", f"check_exercise_{n}: not done yet"
        if path.stem.endswith("solutions"):
            assert passed in text and todo not in text, f"{path.name}: exercise {n} did not pass:\n{text}"
        else:
            assert todo in text and passed not in text, (
                f"{path.name}: exercise {n} should be an unsolved stub that reports 'not done yet':\n{text}")


def test_course_outline_lists_every_notebook():
    """tutorials/README.md names each notebook, and each notebook it names exists."""
    readme = (TUTORIALS / "README.md").read_text()
    listed = set(re.findall(r"\b(\d\d_[\w]+\.ipynb)", readme))
    present = {p.name for p in NOTEBOOKS}
    assert listed == present, f"in README only: {sorted(listed - present)}; on disk only: {sorted(present - listed)}"
    assert len(present) >= 7, f"expected notebooks 01-06 plus the exercises' solutions, found {sorted(present)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_stored_without_outputs(path):
    """The policy in tutorials/README.md: notebooks are committed with outputs cleared."""
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, f"{path.name}: cells {dirty} have outputs; clear them before committing"


# --------------------------------------------------------------------- the exercise checks can fail
def load_checks():
    spec = importlib.util.spec_from_file_location("tutorial_checks", TUTORIALS / "_checks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_exercise_checks_reject_wrong_answers():
    """Each check_exercise_N refuses a plausible wrong answer (so passing one means something)."""
    import minimaml as mm
    from minimaml.autodiff import defvjp, primitive, raw
    from minimaml.nn import MLP

    checks = load_checks()

    @primitive
    def softplus_raw_vjp(x):
        return np.logaddexp(0.0, x)

    # Right first derivative, but computed on raw values: the engine sees a constant, so f'' = 0.
    defvjp(softplus_raw_vjp, lambda g, ans, x: g / (1.0 + np.exp(-raw(x))))
    with pytest.raises(AssertionError, match="zero everywhere"):
        checks.check_exercise_1(softplus_raw_vjp)

    def first_order_linear(theta, xs, ys, xq, yq, inner_lr):  # forgets (I − αH)
        return mm.meta_value_and_grad(MLP([xs.shape[-1], 1]), theta, xs, ys, xq, yq, inner_lr, 1,
                                      method="first_order")[1]
    with pytest.raises(AssertionError, match="meta-gradient"):
        checks.check_exercise_2(first_order_linear)

    def second_order(net, theta, xs, ys, xq, yq, inner_lr, steps):  # differentiates through the inner loop
        return mm.meta_value_and_grad(net, theta, xs, ys, xq, yq, inner_lr, steps, method="autodiff")[1]
    with pytest.raises(AssertionError, match="second-order"):
        checks.check_exercise_3(second_order)

    def one_sided(f, x, v, eps=1e-5):  # forward difference without dividing by eps
        return mm.grad(f)(x + eps * v) - mm.grad(f)(x)
    with pytest.raises(AssertionError, match="finite-difference"):
        checks.check_exercise_4(one_sided, lambda f, x, v: mm.hvp(f, x, v))

    def reptile_flipped(net, theta, xs, ys, inner_lr, steps):  # θ_S − θ instead of θ − θ_S
        return -mm.reptile_direction(net, theta, xs, ys, inner_lr, steps)
    with pytest.raises(AssertionError, match="wrong sign"):
        checks.check_exercise_5(reptile_flipped)

    def one_step_only(net, theta, xs, ys, inner_lr, steps):  # stops after the first inner step
        return mm.reptile_direction(net, theta, xs, ys, inner_lr, 1)
    with pytest.raises(AssertionError, match="Reptile direction"):
        checks.check_exercise_5(one_step_only)

    def query_grad_at_theta(net, theta, alpha, xs, ys, xq, yq):  # forgets that the query loss is at θ'
        return (-mm.grad(lambda th: mm.mse(net(th, xs), ys))(theta)
                * mm.grad(lambda th: mm.mse(net(th, xq), yq))(theta))
    with pytest.raises(AssertionError, match="query gradient at θ"):
        checks.check_exercise_6(query_grad_at_theta)
