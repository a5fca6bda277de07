"""A non-editable install (a wheel) ships the CUDA kernel sources as package data, so the GPU
routes work from it: built, installed into a temporary folder and run here, in every CI run."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from minimaml.gpu._source import KERNEL_FILES

ROOT = Path(__file__).resolve().parents[1]


def test_a_wheel_ships_the_kernels_and_runs_them(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path / "dist"),
                    str(ROOT)], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("minimaml-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    missing = [f for f in KERNEL_FILES if f"minimaml/gpu/kernels/{f}" not in names]
    assert not missing, f"the wheel lacks {missing}"
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(site),
                    str(wheel)], check=True, capture_output=True)
    code = (
        "import numpy as np, minimaml as mm\n"
        f"assert mm.__file__.startswith({str(site)!r}), mm.__file__\n"
        "net = mm.MLP([1, 8, 1]); b = mm.Sinusoid().sample(2, 4, 4, rng=0)\n"
        "args = (net, net.init(0), b.xs, b.ys, b.xq, b.yq, 0.05, 1)\n"
        "_, g = mm.meta_value_and_grad(*args, method='cuda-emulated')\n"
        "_, ref = mm.meta_value_and_grad(*args, method='hvp')\n"
        "assert np.abs(g - ref).max() < 1e-4 * np.abs(ref).max()\n"
        "print('ok from', mm.__file__)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(site)})
    assert done.returncode == 0, done.stderr
    assert "ok from" in done.stdout
