"""README's Meta-Learner LSTM figure: query MSE against adaptation steps on the Table 2 protocol, for the
LSTM runs (meta_lstm_eval.py's eval.json) and MAML runs (`minimaml eval ... --json`), at equal CPU time.

python experiments/meta_lstm_plot.py OUT.png LABEL=DIR/eval.json ...
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

out, runs = sys.argv[1], [a.rsplit("=", 1) for a in sys.argv[2:]]
fig, ax = plt.subplots(figsize=(6.4, 4.2))
for label, path in runs:
    data = json.load(open(path))
    rows = [r for r in (data["rows"] if isinstance(data, dict) else data) if r["model"] != "pretrained"]
    steps = [r["steps"] for r in rows]
    ax.errorbar(steps, [r["mean"] for r in rows], yerr=[r["ci95"] for r in rows], marker="o", ms=4, capsize=3,
                label=label)
ax.set_yscale("log")
ax.set_xlabel("adaptation steps on the K = 5 support points")
ax.set_ylabel("query MSE, 600 test sinusoids (mean ± 95% CI)")
ax.set_title("Meta-Learner LSTM against MAML, 300 s of CPU each", fontsize=10)
ax.grid(alpha=0.3, which="both")
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(out, dpi=110)
