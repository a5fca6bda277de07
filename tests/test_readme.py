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
