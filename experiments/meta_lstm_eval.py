"""Evaluate a trained Meta-Learner LSTM on the MAML paper's Table 2 protocol: 600 test sinusoids, K = 5 support
points, the query MSE on 100 evenly spaced points after 0..10 applications of the learned update rule.

python experiments/meta_lstm_eval.py runs/lstm/order2 [--steps 10]   -> prints the table, writes DIR/eval.json
"""
import argparse
import json
import os

import numpy as np
from threadpoolctl import threadpool_limits

import minimaml as mm
from minimaml.meta.inner import task_outputs
from minimaml.meta.meta_lstm import meta_lstm_adapt
from minimaml.run.evaluate import Protocol, format_table, json_rows, protocol_tasks, summarize

ap = argparse.ArgumentParser()
ap.add_argument("dir")
ap.add_argument("--steps", type=int, default=10)
ap.add_argument("--tasks", type=int, default=600)
ap.add_argument("--k", type=int, default=5)
args = ap.parse_args()
threadpool_limits(1, user_api="blas")

saved = np.load(os.path.join(args.dir, "phi.npz"))
phi, config = saved["phi"], json.loads(str(saved["config"]))
net = mm.MLP([1, 40, 40, 1], activation="relu")
xs, ys, xq, yq, _ = protocol_tasks(Protocol(num_tasks=args.tasks, k=args.k))
curves, gates = [], []
with np.errstate(all="ignore"):
    for lo in range(0, len(xs), 100):
        c = slice(lo, lo + 100)
        run = meta_lstm_adapt(net, phi, xs[c], ys[c], args.steps, trajectory=True)
        curves.append(np.stack([mm.mse(task_outputs(net, th, xq[c]), yq[c]) for th in run.theta], axis=1))
        gates.append([(np.median(i), np.median(f)) for f, i in zip(run.f, run.i)])
curves = np.concatenate(curves)
steps = sorted({0, 1, config["steps"], 5, args.steps})
stats = summarize(curves, steps, yq)
name = f"LSTM o{config['order']}"
print(f"{args.dir}: order {config['order']}, trained with S = {config['steps']} steps, {int(saved['iterations'])} "
      f"iterations, {float(saved['cpu_seconds']):.0f} s CPU")
print(format_table({name: stats}))
g = np.mean(gates, axis=0)
print("median input gate i_t (a step size) by step:", np.round(g[:, 0], 4))
print("median forget gate f_t by step:             ", np.round(g[:, 1], 5))
json.dump({"rows": json_rows({name: stats}), "median_i": g[:, 0].tolist(), "median_f": g[:, 1].tolist(),
           "iterations": int(saved["iterations"]), "cpu_seconds": float(saved["cpu_seconds"])},
          open(os.path.join(args.dir, "eval.json"), "w"), indent=1)
