"""README's family table (printed, Markdown) and the rows notebook 8 plots, from family_comparison.sh's runs.

python experiments/family_table.py runs/family docs/family_comparison.json
"""
import json
import math
import sys
from pathlib import Path

from minimaml.run.checkpoint import read_checkpoint

R = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/family")
OUT = sys.argv[2] if len(sys.argv) > 2 else "docs/family_comparison.json"
NAMES = ["maml", "fomaml", "anil", "metasgd", "mamlpp", "reptile", "imaml"]
LABEL = dict(maml="MAML", fomaml="first-order MAML", anil="ANIL", metasgd="Meta-SGD", mamlpp="MAML++",
             reptile="Reptile", imaml="iMAML")
BUDGET = dict(sinusoid=120, omniglot=600)
rows, table = [], {}
for task, pre in (("sinusoid", "sin"), ("omniglot", "omni")):
    for n in NAMES:
        js, ck = R / f"{pre}-{n}.json", R / f"{pre}-{n}" / "checkpoint.npz"
        if not js.exists() or not ck.exists():
            continue
        c = read_checkpoint(ck)
        it = int(c["iteration"])
        stopped = "error:" in (R / f"{pre}-{n}.log").read_text()    # stopped before its budget
        ms = None if stopped else 1000 * BUDGET[task] / it
        res = [r for r in json.loads(js.read_text()) if r["model"] != "pretrained"]
        table[(n, task)] = dict(it=it, ms=ms, res={r["steps"]: r for r in res}, steps=c["config"]["steps"])
        for r in res:
            if r["steps"] == 0:
                continue
            mean = r["mean"] if math.isfinite(r["mean"]) else None
            ci = r["ci95"] if math.isfinite(r["ci95"]) else None
            rows.append(dict(algorithm=n, task=task, steps=r["steps"], mean=mean, ci95=ci, median=r["median"],
                             diverged=r["diverged"], tasks=r["tasks"], ms_per_step=None if ms is None else round(ms, 3), iterations=it,
                             trained_steps=c["config"]["steps"]))
Path(OUT).write_text(json.dumps(rows, indent=1) + "\n")

def fms(ms, d):
    return "stopped early" if ms is None else f"{ms:.{d}f}"

def cell(r, digits):
    m = r["mean"]
    s = "∞" if not math.isfinite(m) else (f"{m:.{digits}f} ± {r['ci95']:.{digits}f}" if m < 1e4 else f"{m:.1e}")
    return s
print("| algorithm | trained steps | sinusoid: MSE after 1 / 5 / 10 steps (mean ± 95% CI) | median after 1 / 10 | diverged (10 steps) | meta-updates in 120 s | ms / update |")
print("|---|---|---|---|---|---|---|")
for n in NAMES:
    t = table.get((n, "sinusoid"))
    if not t: continue
    r = t["res"]
    print(f"| {LABEL[n]} | {t['steps']} | {' / '.join(cell(r[s], 3) for s in (1, 5, 10))} | {r[1]['median']:.3f} / {r[10]['median']:.3f} | {r[10]['diverged']}/600 | {t['it']:,} | {fms(t['ms'], 2)} |")
print()
print("| algorithm | trained steps | Omniglot 5-way 1-shot: accuracy % after 1 / 3 / 10 steps | meta-updates in 600 s | ms / update |")
print("|---|---|---|---|---|")
for n in NAMES:
    t = table.get((n, "omniglot"))
    if not t: continue
    r = t["res"]
    print(f"| {LABEL[n]} | {t['steps']} | {' / '.join(cell(r[s], 1) for s in (1, 3, 10))} | {t['it']:,} | {fms(t['ms'], 1)} |")
