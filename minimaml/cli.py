"""The `minimaml` command line: meta-train, evaluate a checkpoint, draw its figure.

    minimaml train [--iterations N] [--out DIR] ...   # sinusoids: checkpoint.npz, pretrained.npz, figure.png
    minimaml train --task omniglot --ways 5 --shots 1 --data DIR   # Omniglot: checkpoint.npz, curve.png, figure.png
    minimaml eval  DIR/checkpoint.npz [--tasks 600 --k 5] [--json FILE]
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
    from .run.problems import PROBLEMS
    from .rl import train as rl_train
    from .run.train import ALGORITHMS, DEVICES, DTYPES, METHODS, TrainConfig

    d = TrainConfig()
    parser = argparse.ArgumentParser(prog="minimaml", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"minimaml {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{train,eval,plot,online}")

    t = sub.add_parser("train", help="meta-train MAML on sinusoids (and the pretrained baseline) or Omniglot",
                       description="Meta-train MAML on sinusoid regression (Finn et al. 2017, §5.1; the "
                       "default) or Omniglot N-way K-shot classification (§5.2, --task omniglot). Writes "
                       "DIR/checkpoint.npz and DIR/figure.png, and for sinusoids DIR/pretrained.npz (the "
                       "baseline), for Omniglot DIR/curve.png (the learning curve). Options left out take "
                       "the paper's values (shown for sinusoids).")
    # Defaults are None so that --resume can tell which options were given explicitly.
    t.add_argument("--task", choices=sorted(PROBLEMS) + ["navigation"], help="the problem (default sinusoid)")
    t.add_argument("--ways", type=_int_at_least(2), metavar="N", help="classes per task (Omniglot; default 5)")
    t.add_argument("--shots", type=_positive_int, metavar="K",
                   help="support examples per class (Omniglot; default 1); query examples per class: the same")
    t.add_argument("--data", metavar="DIR", help="folder of Omniglot's two zips (default: $MINIMAML_DATA)")
    t.add_argument("--iterations", type=_nonneg_int, metavar="N",
                   help=f"meta-updates (default {d.iterations}; the paper: 70000; Omniglot 60000)")
    t.add_argument("--out", metavar="DIR", help=f"output folder (default {DEFAULT_OUT}, or runs/omniglot-<N>way-<K>shot)")
    t.add_argument("--seed", type=_nonneg_int, metavar="SEED", help=f"init and task-stream seed (default {d.seed})")
    t.add_argument("--inner-lr", type=_positive_float, metavar="ALPHA",
                   help=f"α, inner step size (default {d.inner_lr})")
    t.add_argument("--steps", type=_nonneg_int, metavar="S",
                   help=f"inner steps during meta-training (default {d.steps})")
    t.add_argument("--meta-lr", type=_positive_float, metavar="BETA", help=f"β, Adam step size (default {d.meta_lr})")
    t.add_argument("--meta-batch", type=_positive_int, metavar="T",
                   help=f"tasks per meta-update (default {d.meta_batch})")
    t.add_argument("--k", type=_positive_int, metavar="K", help=f"support points per task (default {d.k_support})")
    t.add_argument("--k-query", type=_positive_int, metavar="KQ", help=f"query points per task (default {d.k_query})")
    t.add_argument("--algorithm", choices=ALGORITHMS,
                   help="the MAML family (default maml): fomaml, anil, metasgd, mamlpp, reptile, imaml")
    t.add_argument("--lam", type=_positive_float, metavar="LAMBDA", help=f"iMAML's λ (default {d.lam})")
    t.add_argument("--cg-steps", type=_positive_int, metavar="N", help=f"iMAML's CG iterations (default {d.cg_steps})")
    t.add_argument("--cg-tol", type=_positive_float, metavar="TOL",
                   help=f"iMAML's CG relative residual (default {d.cg_tol})")
    t.add_argument("--msl-iterations", type=_nonneg_int, metavar="N",
                   help="MAML++: anneal the multi-step loss over N iterations (default 0: no multi-step loss)")
    t.add_argument("--first-order-iterations", type=_nonneg_int, metavar="N",
                   help="MAML++: first order for the first N iterations (default 0)")
    t.add_argument("--cosine", action="store_true", default=None, help="cosine-anneal the meta step size (MAML++)")
    t.add_argument("--max-seconds", type=_positive_float, metavar="S",
                   help="stop after S seconds of the process's CPU time (a budget: wall-clock time on a "
                        "core of its own; default: none)")
    t.add_argument("--method", choices=METHODS, help=f"meta-gradient route (default {d.method})")
    t.add_argument("--dtype", choices=DTYPES, help=f"float precision (default {d.dtype})")
    t.add_argument("--device", choices=DEVICES, help=f"cpu, or cuda with CuPy (default {d.device})")
    t.add_argument("--checkpoint-every", type=_positive_int, metavar="N", help=f"default {d.checkpoint_every}")
    t.add_argument("--log-every", type=_positive_int, metavar="N", help=f"default {d.log_every}")
    t.add_argument("--val-every", type=_nonneg_int, metavar="N",
                   help="iterations between validation measurements, the learning curve (default: "
                        "Omniglot 1000, sinusoid 0 = none)")
    t.add_argument("--test-steps", type=_nonneg_int, metavar="S",
                   help="inner steps for the validation measurements (default: Omniglot 3, sinusoid 10)")
    t.add_argument("--resume", action="store_true", help="continue from DIR/checkpoint.npz")
    t.add_argument("--no-baseline", action="store_true", help="skip training the pretrained baseline")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    rl_train.add_train_arguments(t)

    e = sub.add_parser("eval", help="few-shot test metric of a checkpoint (sinusoids: next to the pretrained baseline)",
                       description="Fine-tune on the support sets of fixed, seeded test tasks and report the "
                       "query metric (mean ± 95%% CI, median, diverged tasks) after each number of gradient "
                       "steps: the query MSE for sinusoids (MAML and the pretrained baseline; the paper's "
                       "Table 2 protocol: --tasks 600 --k 5), the query accuracy in %% for Omniglot (600 "
                       "tasks of test characters, the checkpoint's K shots and K query images per class).")
    e.add_argument("checkpoint", help="a checkpoint.npz, or the run folder holding one")
    e.add_argument("--tasks", type=_positive_int, help="test tasks (default: sinusoid 1000, Omniglot 600)")
    e.add_argument("--k", type=_positive_int,
                   help="support points per task, per class for classification (default: the checkpoint's K)")
    e.add_argument("--query-points", type=_positive_int,
                   help="sinusoid: evenly spaced query points on [-5, 5] (default 100); classification: "
                        "query examples per class (default: the checkpoint's)")
    e.add_argument("--steps", type=_steps_list,
                   help="fine-tuning steps to report (default: sinusoid 0,1,5,10; Omniglot 0,1,3,5,10)")
    e.add_argument("--inner-lr", type=_positive_float,
                   help="fine-tuning step size α (default: the checkpoint's training inner_lr)")
    e.add_argument("--baseline-inner-lr", type=_positive_float, metavar="ALPHA",
                   help="fine-tuning step size of the pretrained baseline (default: the same α as MAML; "
                        "the paper tuned the baseline's step size separately)")
    e.add_argument("--seed", type=_nonneg_int, default=2017, help="test-set seed (default 2017)")
    e.add_argument("--data", metavar="DIR", help="Omniglot's data folder (default: the run's, or $MINIMAML_DATA)")
    e.add_argument("--backtrack", action="store_true",
                   help="safeguarded fine-tuning (not the paper's): reject a step that raises a task's "
                        "support loss and halve that task's step size, so no task diverges")
    e.add_argument("--no-baseline", action="store_true", help="evaluate the checkpoint only")
    e.add_argument("--sharpness", type=_nonneg_int, default=0, metavar="N",
                   help="also compute λ_max of the support-loss Hessian for the first N test tasks")
    rl_train.add_eval_arguments(e)
    e.add_argument("--json", metavar="FILE",
                   help='also write the table as a JSON list of rows {"model", "steps", "mean", "ci95", '
                        '"median", "diverged", "tasks"}')

    p = sub.add_parser("plot", help="a test task before and after fine-tuning (sinusoids: the paper's Figure 2)",
                       description="Sinusoids: draw a test sinusoid, its K support points and the predictions "
                       "before and after 1 and 10 fine-tuning steps, for MAML and the pretrained baseline. "
                       "Omniglot: draw a test task's support images, and its query images with the labels "
                       "predicted before and after adaptation, marked right or wrong.")
    p.add_argument("checkpoint", help="a checkpoint.npz, or the run folder holding one")
    p.add_argument("--out", metavar="PNG", help="image path, .png (default: figure.png next to the checkpoint)")
    p.add_argument("--k", type=_positive_int, help="support points (default: the checkpoint's K)")
    p.add_argument("--seed", type=_nonneg_int, default=4, help="which test task to draw (default 4)")
    p.add_argument("--inner-lr", type=_positive_float, help="α (default: the checkpoint's inner_lr)")
    p.add_argument("--data", metavar="DIR", help="Omniglot's data folder (default: the run's, or $MINIMAML_DATA)")

    from .run.online import add_online_parser
    add_online_parser(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        from .run.online import cmd_online
        return {"train": cmd_train, "eval": cmd_eval, "plot": cmd_plot, "online": cmd_online}[args.command](args)
    except KeyboardInterrupt:
        print(f"\nminimaml: interrupted; `minimaml {args.command} --resume` continues from the last checkpoint",
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
    if args.task == "navigation":
        from .rl.train import cli_train
        return cli_train(args)
    from .meta import algorithms
    from .run.checkpoint import read_checkpoint
    from .run.train import TrainConfig, pretrained_config, train

    overrides = {name: value for name, value in (
        ("task", args.task), ("ways", args.ways), ("data", args.data),
        ("iterations", args.iterations), ("seed", args.seed), ("inner_lr", args.inner_lr),
        ("steps", args.steps), ("meta_lr", args.meta_lr), ("meta_batch", args.meta_batch),
        ("k_support", args.k if args.k is not None else args.shots), ("k_query", args.k_query),
        ("method", args.method), ("dtype", args.dtype), ("device", args.device),
        ("checkpoint_every", args.checkpoint_every), ("log_every", args.log_every),
        ("val_every", args.val_every), ("test_steps", args.test_steps), ("algorithm", args.algorithm),
        ("lam", args.lam), ("cg_steps", args.cg_steps), ("cg_tol", args.cg_tol), ("msl_iterations", args.msl_iterations),
        ("first_order_iterations", args.first_order_iterations), ("cosine", args.cosine),
        ("max_seconds", args.max_seconds)) if value is not None}
    if args.k is not None and args.shots is not None:
        raise _Error("give --k or --shots, not both (--shots is --k for classification)")
    out = args.out or default_out(args.task or "sinusoid", args.ways or 5, args.shots or args.k or 1)
    ckpt_path = os.path.join(out, "checkpoint.npz")
    base_path = os.path.join(out, "pretrained.npz")
    if args.resume:
        if not os.path.exists(ckpt_path):
            raise _Error(f"--resume: no checkpoint at {ckpt_path!r} (use --out to name the run's folder)")
        saved = read_checkpoint(ckpt_path)["config"]
        config = TrainConfig.from_dict({**saved, **overrides})
    else:
        config = TrainConfig(**overrides)
    spec = config.problem
    family = spec.family(config)          # early: a missing data folder is reported before training

    print(f"meta-training {config.algorithm} on {config.task}: {config.iterations} iterations, {config.sizes} {config.activation}"
          f"{' + batch norm' if config.norm else ''}, alpha={config.inner_lr:g} x {config.steps} step(s), "
          f"Adam beta={config.meta_lr}, {config.meta_batch} tasks x K={config.k_support}+{config.k_query}"
          f"{' per class' if spec.classification else ''}, method={config.method}, {config.dtype}, "
          f"{config.device} -> {out}")
    t0 = time.perf_counter()
    result = train(config, checkpoint=ckpt_path, resume=args.resume, progress=not args.quiet)
    last = f"{result.history[-1, 1]:.4f}" if len(result.history) else "n/a"
    print(f"{config.algorithm}: {result.iteration} iterations, {result.seconds:.1f} s ({_per_iteration(result)}), "
          f"final meta-loss {last} -> {ckpt_path}")

    fig_path = os.path.join(out, "figure.png")
    if spec.classification:
        from .run.plotting import classification_figure, learning_curve
        curve_path = os.path.join(out, "curve.png")
        learning_curve(result.history, result.val_history, curve_path,
                       title=f"{config.task} {config.ways}-way {config.k_support}-shot, validation after "
                             f"{config.test_steps} steps on {config.val_tasks} tasks")
        if len(result.val_history):
            print(f"validation accuracy after {config.test_steps} steps: {result.val_history[-1, 1]:.1f}% "
                  f"-> {curve_path}")
        task = _plot_task(spec, family, config, seed=0)
        rule = algorithms.adaptation(config.algorithm, result.net, result.extra, config)
        classification_figure(result.net, result.theta, task, rule, config.test_steps, spec.loss, fig_path)
    else:
        from .run.plotting import figure2
        models = {config.algorithm.upper() if config.algorithm != "maml" else "MAML": (result.net, result.theta)}
        if not args.no_baseline and config.algorithm == "maml":
            base_config = pretrained_config(config)
            resume_base = args.resume and os.path.exists(base_path)
            base = train(base_config, checkpoint=base_path, resume=resume_base, progress=not args.quiet)
            print(f"pretrained baseline: {base.seconds:.1f} s ({_per_iteration(base)}) -> {base_path}")
            models["pretrained"] = (base.net, base.theta)
        figure2(models, algorithms.adaptation(config.algorithm, result.net, result.extra, config),
                k=config.k_support, path=fig_path)
    print(f"figure -> {fig_path}; total {time.perf_counter() - t0:.1f} s")
    print(f"next: minimaml eval {ckpt_path}")
    return 0


def default_out(task, ways, shots):
    return DEFAULT_OUT if task == "sinusoid" else os.path.join("runs", f"{task}-{ways}way-{shots}shot")


def _plot_task(spec, family, config, seed):
    """One test task to draw (from the test split, by ``seed``), as four arrays."""
    protocol = spec.protocol(config, num_tasks=1, seed=seed)
    xs, ys, xq, yq, _ = spec.test_set(family, protocol)
    return xs[0], ys[0], xq[0], yq[0]


def _resolve(path):
    """A run folder stands for the checkpoint.npz inside it."""
    if not os.path.isdir(path):
        return path
    inside = os.path.join(path, "checkpoint.npz")
    if not os.path.exists(inside):
        raise _Error(f"the run folder {path!r} holds no checkpoint.npz (did its training stop before the first "
                     f"checkpoint?)")
    return inside


def _per_iteration(result):
    n = result.iterations_run
    return f"{1e3 * result.seconds / n:.2f} ms/iteration" if n else "nothing to do"


def _load_run(path, data=None):
    """(checkpoint dict, its validated TrainConfig) for a checkpoint path or run folder."""
    from .run.checkpoint import read_checkpoint
    from .run.train import TrainConfig

    ckpt = read_checkpoint(_resolve(path))
    config = TrainConfig.from_dict(ckpt["config"])
    if data is not None:
        config = dataclasses.replace(config, data=data)
    return ckpt, config


def cmd_eval(args):
    import numpy as np

    from .meta import algorithms
    from .run.evaluate import diverged_mask, evaluate, format_table, json_rows, load_or_train_pretrained, sharpness

    args.checkpoint = _resolve(args.checkpoint)
    from .rl.train import cli_eval, is_navigation_checkpoint
    if is_navigation_checkpoint(args.checkpoint):
        return cli_eval(args)
    ckpt, config = _load_run(args.checkpoint, args.data)
    net, theta, spec = ckpt["net"], ckpt["theta"], config.problem
    family = spec.family(config)
    given = {"num_tasks": args.tasks, "k": args.k, "num_query": args.query_points, "steps": args.steps,
             "inner_lr": args.inner_lr, "seed": args.seed}
    protocol = spec.protocol(config, **{k: v for k, v in given.items() if v is not None})
    alpha = protocol.inner_lr or config.inner_lr
    rule = (alpha if protocol.inner_lr is not None else
            algorithms.adaptation(config.algorithm, net, ckpt["extra"], config))
    baseline = (not args.no_baseline and config.model == "maml" and config.algorithm == "maml"
                and not spec.classification)
    print(f"checkpoint: {args.checkpoint} ({config.algorithm if config.model == 'maml' else config.model} on "
          f"{config.task}, iteration {ckpt['iteration']}, trained with alpha={config.inner_lr:g}, {config.steps} "
          f"step(s), K={config.k_support})")
    print(f"protocol: {spec.describe(protocol, alpha)}; fine-tuning: gradient descent on the support loss, "
          + (f"alpha={alpha:g}" if not isinstance(rule, algorithms.Adaptation) or rule.is_plain(alpha)
             else f"{config.algorithm}'s own rule: {rule!r}")
          + ("" if spec.classification else "; diverged: query MSE non-finite or > 10x both its value before "
             "fine-tuning and the MSE of predicting 0")
          + ("; with --backtrack: steps that raise a task's support loss are rejected and its alpha halved"
             if args.backtrack else "")
          + (f"; the pretrained baseline is fine-tuned with alpha={args.baseline_inner_lr:g}"
             if args.baseline_inner_lr and baseline else ""))
    name = ("MAML" if config.algorithm == "maml" else config.algorithm) if config.model == "maml" else config.model
    stats, curves = evaluate(net, theta, dataclasses.replace(protocol, inner_lr=None), rule, return_curves=True,
                             backtrack=args.backtrack, problem=spec, family=family)
    results = {name: stats}
    if baseline:
        base_theta = load_or_train_pretrained(args.checkpoint, ckpt["config"], progress=False)
        base_protocol = dataclasses.replace(protocol, inner_lr=args.baseline_inner_lr or alpha)
        results["pretrained"] = evaluate(net, base_theta, base_protocol, backtrack=args.backtrack,
                                         problem=spec, family=family)
    print(format_table(results, "query accuracy (%)" if spec.classification else "query MSE"))

    if args.sharpness:
        n = min(args.sharpness, protocol.num_tasks)
        xs, ys, _, yq, params = spec.test_set(family, protocol)
        lam = sharpness(net, theta, xs[:n], ys[:n], loss=spec.loss)
        limit = 2.0 / alpha
        sharp = lam > limit
        print(f"sharpness of the {name} start point on the first {n} test tasks (power iteration): "
              f"lambda_max of the support-loss Hessian: median {np.median(lam):.1f}, max {lam.max():.1f}; "
              f"{int(sharp.sum())}/{n} tasks have lambda_max > 2/alpha = {limit:g}, where gradient "
              f"descent with alpha={alpha:g} is unstable")
        if not spec.classification:
            blown = diverged_mask(curves[:n], yq[:n])[:, -1]
            amp = params["amplitude"][:n]
            print(f"  diverged after {max(protocol.steps)} steps: {int(blown.sum())} tasks, "
                  f"{int((blown & sharp).sum())} of them with lambda_max > 2/alpha; mean amplitude "
                  f"{amp[blown].mean() if blown.any() else float('nan'):.2f} (diverged) vs "
                  f"{amp.mean():.2f} (all)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(json_rows(results), f, indent=1)
    return 0


def cmd_plot(args):
    from .meta import algorithms
    from .run.evaluate import load_or_train_pretrained
    from .run.plotting import classification_figure, figure2

    args.checkpoint = _resolve(args.checkpoint)
    from .rl.train import cli_plot, is_navigation_checkpoint
    if is_navigation_checkpoint(args.checkpoint):
        return cli_plot(args)
    ckpt, config = _load_run(args.checkpoint, args.data)
    net, theta, spec = ckpt["net"], ckpt["theta"], config.problem
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.checkpoint)), "figure.png")
    if os.path.isdir(out) or os.path.splitext(out)[1].lower() != ".png":
        raise _Error(f"--out must name a .png file, got {out!r}")
    rule = args.inner_lr or algorithms.adaptation(config.algorithm, net, ckpt["extra"], config)
    if spec.classification:
        family = spec.family(config)
        task = _plot_task(spec, family, dataclasses.replace(config, k_support=args.k or config.k_support), args.seed)
        classification_figure(net, theta, task, rule, config.test_steps, spec.loss, out)
    else:
        name = ("MAML" if config.algorithm == "maml" else config.algorithm) if config.model == "maml" else config.model
        models = {name: (net, theta)}
        if config.model == "maml" and config.algorithm == "maml":
            models["pretrained"] = (net, load_or_train_pretrained(args.checkpoint, ckpt["config"], progress=False))
        figure2(models, rule, k=args.k or config.k_support, seed=args.seed, path=out)
    print(f"figure -> {out}")
    return 0
