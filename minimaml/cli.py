"""The `minimaml` command line: meta-train on sinusoids, evaluate a checkpoint, draw Figure 2.

    minimaml train [--iterations N] [--out DIR] ...   # checkpoint.npz, pretrained.npz, figure.png
    minimaml eval  DIR/checkpoint.npz [--tasks 600 --k 5]
    minimaml plot  DIR/checkpoint.npz [--out figure.png]

`python -m minimaml ...` is the same command.
"""
import argparse
import dataclasses
import json
import os
import sys
import time

from . import __version__
from .run.checkpoint import CheckpointError
from .run.train import ConfigError, DeviceUnavailable, TrainingDiverged

DEFAULT_OUT = os.path.join("runs", "sinusoid")


class _Error(Exception):
    """A user error: printed as one line, exit status 1, no traceback."""


def _int_at_least(low):
    """An argparse type: an integer >= low."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value
    return parse


_positive_int, _nonneg_int = _int_at_least(1), _int_at_least(0)


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _steps_list(text):
    try:
        steps = sorted({int(s) for s in text.split(",") if s.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 0,1,5,10, got {text!r}") from None
    if not steps or steps[0] < 0:
        raise argparse.ArgumentTypeError(f"expected integers >= 0, got {text!r}")
    return tuple(steps)


def build_parser():
    from .run.train import DEVICES, DTYPES, METHODS, TrainConfig

    d = TrainConfig()
    parser = argparse.ArgumentParser(prog="minimaml", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"minimaml {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{train,eval,plot}")

    t = sub.add_parser("train", help="meta-train MAML (and the pretrained baseline) on sinusoids",
                       description="Meta-train MAML on sinusoid regression (Finn et al. 2017, §5.1). "
                       "Writes DIR/checkpoint.npz (MAML), DIR/pretrained.npz (the baseline) and "
                       "DIR/figure.png. Options left out take the paper's values (shown).")
    # Defaults are None so that --resume can tell which options were given explicitly.
    t.add_argument("--iterations", type=_nonneg_int, metavar="N",
                   help=f"meta-updates (default {d.iterations}; the paper: 70000)")
    t.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help=f"output folder (default {DEFAULT_OUT})")
    t.add_argument("--seed", type=int, metavar="SEED", help=f"init and task-stream seed (default {d.seed})")
    t.add_argument("--inner-lr", type=_positive_float, metavar="ALPHA",
                   help=f"α, inner step size (default {d.inner_lr})")
    t.add_argument("--steps", type=_nonneg_int, metavar="S",
                   help=f"inner steps during meta-training (default {d.steps})")
    t.add_argument("--meta-lr", type=_positive_float, metavar="BETA", help=f"β, Adam step size (default {d.meta_lr})")
    t.add_argument("--meta-batch", type=_positive_int, metavar="T",
                   help=f"tasks per meta-update (default {d.meta_batch})")
    t.add_argument("--k", type=_positive_int, metavar="K", help=f"support points per task (default {d.k_support})")
    t.add_argument("--k-query", type=_positive_int, metavar="KQ", help=f"query points per task (default {d.k_query})")
    t.add_argument("--method", choices=METHODS, help=f"meta-gradient route (default {d.method})")
    t.add_argument("--dtype", choices=DTYPES, help=f"float precision (default {d.dtype})")
    t.add_argument("--device", choices=DEVICES, help=f"cpu, or cuda with CuPy (default {d.device})")
    t.add_argument("--checkpoint-every", type=_positive_int, metavar="N", help=f"default {d.checkpoint_every}")
    t.add_argument("--log-every", type=_positive_int, metavar="N", help=f"default {d.log_every}")
    t.add_argument("--resume", action="store_true", help="continue from DIR/checkpoint.npz")
    t.add_argument("--no-baseline", action="store_true", help="skip training the pretrained baseline")
    t.add_argument("--quiet", action="store_true", help="no progress bar")

    e = sub.add_parser("eval", help="few-shot test MSE of a checkpoint, next to the pretrained baseline",
                       description="Fine-tune on K support points of fixed, seeded test sinusoids and "
                       "report the query MSE (mean ± 95% CI, median, diverged tasks) after each number "
                       "of gradient steps, for MAML and the pretrained baseline. The paper's Table 2 "
                       "protocol: --tasks 600 --k 5.")
    e.add_argument("checkpoint", help="a checkpoint.npz, or the run folder holding one")
    e.add_argument("--tasks", type=_positive_int, default=1000, help="test tasks (default 1000)")
    e.add_argument("--k", type=_positive_int, default=10, help="support points per task (default 10)")
    e.add_argument("--query-points", type=_positive_int, default=100,
                   help="evenly spaced query points on [-5, 5] (default 100)")
    e.add_argument("--steps", type=_steps_list, default=(0, 1, 5, 10),
                   help="fine-tuning steps to report (default 0,1,5,10)")
    e.add_argument("--inner-lr", type=_positive_float,
                   help="fine-tuning step size α (default: the checkpoint's training inner_lr)")
    e.add_argument("--baseline-inner-lr", type=_positive_float, metavar="ALPHA",
                   help="fine-tuning step size of the pretrained baseline (default: the same α as MAML; "
                        "the paper tuned the baseline's step size separately)")
    e.add_argument("--seed", type=int, default=2017, help="test-set seed (default 2017)")
    e.add_argument("--backtrack", action="store_true",
                   help="safeguarded fine-tuning (not the paper's): reject a step that raises a task's "
                        "support loss and halve that task's step size, so no task diverges")
    e.add_argument("--no-baseline", action="store_true", help="evaluate the checkpoint only")
    e.add_argument("--sharpness", type=_nonneg_int, default=0, metavar="N",
                   help="also compute λ_max of the support-loss Hessian for the first N test tasks")
    e.add_argument("--json", metavar="FILE", help="also write the results as JSON")

    p = sub.add_parser("plot", help="Figure 2: a test task before and after fine-tuning",
                       description="Draw a test sinusoid, its K support points and the predictions "
                       "before and after 1 and 10 fine-tuning steps, for MAML and the pretrained baseline.")
    p.add_argument("checkpoint", help="a checkpoint.npz, or the run folder holding one")
    p.add_argument("--out", metavar="PNG", help="image path (default: figure.png next to the checkpoint)")
    p.add_argument("--k", type=_positive_int, help="support points (default: the checkpoint's K)")
    p.add_argument("--seed", type=int, default=4, help="which test task to draw (default 4: A = 3.35)")
    p.add_argument("--inner-lr", type=_positive_float, help="α (default: the checkpoint's inner_lr)")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return {"train": cmd_train, "eval": cmd_eval, "plot": cmd_plot}[args.command](args)
    except KeyboardInterrupt:
        print("\nminimaml: interrupted; `minimaml train --resume` continues from the last checkpoint",
              file=sys.stderr)
        return 130
    except _Error as e:
        print(f"minimaml {args.command}: error: {e}", file=sys.stderr)
        return 1
    except (OSError, CheckpointError, ConfigError, TrainingDiverged, DeviceUnavailable) as e:
        # Missing/corrupt files, invalid configurations, divergence, no GPU: one line, no traceback.
        print(f"minimaml {args.command}: error: {e}", file=sys.stderr)
        return 1


# ---------------------------------------------------------------------------------------------
def cmd_train(args):
    from .run.checkpoint import read_checkpoint
    from .run.plotting import figure2
    from .run.train import TrainConfig, pretrained_config, train

    overrides = {name: value for name, value in (
        ("iterations", args.iterations), ("seed", args.seed), ("inner_lr", args.inner_lr),
        ("steps", args.steps), ("meta_lr", args.meta_lr), ("meta_batch", args.meta_batch),
        ("k_support", args.k), ("k_query", args.k_query), ("method", args.method),
        ("dtype", args.dtype), ("device", args.device), ("checkpoint_every", args.checkpoint_every),
        ("log_every", args.log_every)) if value is not None}
    ckpt_path = os.path.join(args.out, "checkpoint.npz")
    base_path = os.path.join(args.out, "pretrained.npz")
    if args.resume:
        if not os.path.exists(ckpt_path):
            raise _Error(f"--resume: no checkpoint at {ckpt_path!r} (use --out to name the run's folder)")
        saved = read_checkpoint(ckpt_path)["config"]
        config = TrainConfig.from_dict({**saved, **overrides})
    else:
        config = TrainConfig(**overrides)

    print(f"meta-training MAML: {config.iterations} iterations, {config.sizes} {config.activation}, "
          f"alpha={config.inner_lr} x {config.steps} step(s), Adam beta={config.meta_lr}, "
          f"{config.meta_batch} tasks x K={config.k_support}+{config.k_query}, method={config.method}, "
          f"{config.dtype}, {config.device} -> {args.out}")
    t0 = time.perf_counter()
    result = train(config, checkpoint=ckpt_path, resume=args.resume, progress=not args.quiet)
    last = f"{result.history[-1, 1]:.4f}" if len(result.history) else "n/a"
    print(f"MAML: {result.seconds:.1f} s ({_per_iteration(result)}), final meta-loss {last} -> {ckpt_path}")

    models = {"MAML": (result.net, result.theta)}
    if not args.no_baseline:
        base_config = pretrained_config(config)
        resume_base = args.resume and os.path.exists(base_path)
        base = train(base_config, checkpoint=base_path, resume=resume_base, progress=not args.quiet)
        print(f"pretrained baseline: {base.seconds:.1f} s ({_per_iteration(base)}) -> {base_path}")
        models["pretrained"] = (base.net, base.theta)
    fig_path = os.path.join(args.out, "figure.png")
    figure2(models, config.inner_lr, k=config.k_support, path=fig_path)
    print(f"figure -> {fig_path}; total {time.perf_counter() - t0:.1f} s")
    print(f"next: minimaml eval {ckpt_path}")
    return 0


def _resolve(path):
    """A run folder stands for the checkpoint.npz inside it."""
    inside = os.path.join(path, "checkpoint.npz")
    return inside if os.path.isdir(path) and os.path.exists(inside) else path


def _per_iteration(result):
    n = result.iterations_run
    return f"{1e3 * result.seconds / n:.2f} ms/iteration" if n else "nothing to do"


def cmd_eval(args):
    from .run.checkpoint import read_checkpoint
    from .run.evaluate import (Protocol, diverged_mask, evaluate, format_table, load_or_train_pretrained,
                           protocol_tasks, sharpness)

    args.checkpoint = _resolve(args.checkpoint)
    ckpt = read_checkpoint(args.checkpoint)
    net, theta, config = ckpt["net"], ckpt["theta"], ckpt["config"]
    train_alpha = float(config.get("inner_lr", 0.01))
    protocol = Protocol(num_tasks=args.tasks, k=args.k, num_query=args.query_points, steps=args.steps,
                        inner_lr=args.inner_lr, seed=args.seed)
    alpha = protocol.inner_lr or train_alpha
    print(f"checkpoint: {args.checkpoint} ({config.get('model', 'maml')}, iteration {ckpt['iteration']}, "
          f"trained with alpha={train_alpha:g}, {config.get('steps')} step(s), K={config.get('k_support')})")
    print(f"protocol: {protocol.describe(alpha)}"
          + ("; with --backtrack: steps that raise a task's support loss are rejected and its alpha halved"
             if args.backtrack else "")
          + (f"; the pretrained baseline is fine-tuned with alpha={args.baseline_inner_lr:g}"
             if args.baseline_inner_lr and not args.no_baseline else ""))
    name = "MAML" if config.get("model", "maml") == "maml" else config["model"]
    stats, curves = evaluate(net, theta, protocol, alpha, return_curves=True, backtrack=args.backtrack)
    results = {name: stats}
    if not args.no_baseline and config.get("model", "maml") == "maml":
        base_theta = load_or_train_pretrained(args.checkpoint, config, progress=False)
        base_protocol = dataclasses.replace(protocol, inner_lr=args.baseline_inner_lr or alpha)
        results["pretrained"] = evaluate(net, base_theta, base_protocol, backtrack=args.backtrack)
    print(format_table(results))

    extra = {}
    if args.sharpness:
        import numpy as np
        n = min(args.sharpness, protocol.num_tasks)
        xs, ys, _, yq, params = protocol_tasks(protocol)
        lam = sharpness(net, theta, xs[:n], ys[:n])
        limit = 2.0 / alpha
        sharp = lam > limit
        blown = diverged_mask(curves[:n], yq[:n])[:, -1]
        amp = params["amplitude"][:n]
        print(f"sharpness of the {name} start point on the first {n} test tasks (power iteration): "
              f"lambda_max of the support-loss Hessian: median {np.median(lam):.1f}, max {lam.max():.1f}; "
              f"{int(sharp.sum())}/{n} tasks have lambda_max > 2/alpha = {limit:g}, where gradient "
              f"descent with alpha={alpha:g} is unstable")
        print(f"  diverged after {max(protocol.steps)} steps: {int(blown.sum())} tasks, "
              f"{int((blown & sharp).sum())} of them with lambda_max > 2/alpha; mean amplitude "
              f"{amp[blown].mean() if blown.any() else float('nan'):.2f} (diverged) vs "
              f"{amp.mean():.2f} (all)")
        extra["sharpness"] = {"lambda_max": lam.tolist(), "amplitude": amp.tolist(), "limit": limit,
                              "diverged": blown.tolist()}
    if args.json:
        out = {"checkpoint": args.checkpoint, "protocol": protocol.describe(alpha), "inner_lr": alpha,
               "backtrack": args.backtrack,
               "results": {name: [vars(s) for s in stats] for name, stats in results.items()}, **extra}
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


def cmd_plot(args):
    from .run.checkpoint import read_checkpoint
    from .run.evaluate import load_or_train_pretrained
    from .run.plotting import figure2

    args.checkpoint = _resolve(args.checkpoint)
    ckpt = read_checkpoint(args.checkpoint)
    net, theta, config = ckpt["net"], ckpt["theta"], ckpt["config"]
    is_maml = config.get("model", "maml") == "maml"
    models = {"MAML" if is_maml else config["model"]: (net, theta)}
    if is_maml:
        models["pretrained"] = (net, load_or_train_pretrained(args.checkpoint, config, progress=False))
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.checkpoint)), "figure.png")
    alpha = args.inner_lr or float(config.get("inner_lr", 0.01))
    figure2(models, alpha, k=args.k or int(config.get("k_support", 10)), seed=args.seed, path=out)
    print(f"figure -> {out}")
    return 0
