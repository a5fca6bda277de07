"""The width study's table and figure from experiments/width_study.py's four JSON files:
python experiments/width_study_plot.py FOLDER  -> prints the gaps and writes FOLDER/width_study.png."""
import json
import sys

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

O = sys.argv[1].rstrip("/") + "/" if len(sys.argv) > 1 else "runs/width/"
fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))
for name, style, col in (("d2_relu", "o-", "C0"), ("d2_tanh", "s-", "C1"), ("d1_relu", "o--", "C2"), ("d1_tanh", "s--", "C3")):
    R = json.load(open(O + name + ".json"))["results"]
    widths = sorted({r["width"] for r in R})
    print(f"== {name}: seeds {sorted({r['seed'] for r in R})}")
    tab = {}
    for t in ["0", "1", "10", "100"]:
        g = []
        for w in widths:
            rows = [r for r in R if r["width"] == w]
            vals = [r["gap_test0"] if t == "0" else r["gaps"][t]["test"] for r in rows]
            g.append(np.exp(np.mean(np.log(vals))))
        tab[t] = np.array(g)
        sel = np.array(widths) >= 64
        slope = np.polyfit(np.log(np.array(widths)[sel]), np.log(np.array(g)[sel]), 1)[0]
        print(f"  t={t:>3}: gap (geo-mean) " + "  ".join(f"{w}:{v:.2e}" for w, v in zip(widths, g)) + f"   slope(w>=64) {slope:.2f}")
    rel = []
    for w in widths:
        rows = [r for r in R if r["width"] == w]
        rel.append(np.mean([r["gaps"]["100"]["test"] / r["gaps"]["100"]["move_test"] for r in rows]))
        mr, mk = np.mean([r["mse_test_real"] for r in rows]), np.mean([r["mse_test_kernel"] for r in rows])
        tr_r, tr_k = np.mean([r["mse_train_real"] for r in rows]), np.mean([r["mse_train_kernel"] for r in rows])
        mi = np.mean([r["mse_test_init"] for r in rows])
        th = np.mean([r["theta_move"] for r in rows])
        print(f"  w {w:5d}: test MSE init {mi:.3f} -> real {mr:.3f} kernel {mk:.3f};  train meta-loss real {tr_r:.3f} kernel {tr_k:.3f};"
              f"  gap/moved(t=100) {rel[-1]:.3f};  |Δθ|/|θ0| {th:.1e}; cpu {np.mean([r['cpu'] for r in rows]):.1f}s")
    depth, act = name.split("_")
    lab = f"{'1-w-w-1' if depth == 'd2' else '1-w-1'} {act}"
    axes[0].loglog(widths, tab["100"], style, color=col, label=lab + ", t = 100")
    axes[1].loglog(widths, tab["10"], style, color=col, label=lab + ", t = 10")
    axes[2].semilogx(widths, [np.mean([r["mse_test_real"] for r in R if r["width"] == w]) for w in widths], style, color=col, label=lab + " real")
    axes[2].semilogx(widths, [np.mean([r["mse_test_kernel"] for r in R if r["width"] == w]) for w in widths], style, color=col, alpha=0.35, label=lab + " kernel")
for ax, t in zip(axes[:2], ("100", "10")):
    w = np.array([16, 16384])
    ax.loglog(w, 0.5 * (w / 16) ** -0.5, "k:", label="∝ w^(-1/2)")
    ax.set_xlabel("width w"); ax.set_ylabel(f"RMS(real − kernel), test tasks' adapted predictions")
    ax.set_title(f"after {t} outer steps"); ax.legend(fontsize=7); ax.grid(alpha=0.3)
axes[2].set_xlabel("width w"); axes[2].set_ylabel("test MSE after adaptation (t = 100)"); axes[2].legend(fontsize=6); axes[2].grid(alpha=0.3)
plt.tight_layout(); plt.savefig(O + "width_study.png", dpi=110)
