"""Learning curves on the embedded synthetic corpus: one command per run, CPU-sized (issue 20).

    .venv/bin/python bench/learning.py --list
    taskset -c 0 .venv/bin/python bench/learning.py sepmamba --workdir runs/learning/sepmamba
    taskset -c 0 .venv/bin/python bench/learning.py mambatasnet --workdir runs/learning/mambatasnet

Each run is a ``configs/*.py[:ARG]`` file plus the explicit overrides listed in its :class:`Run` below (no
config variants of its own), trained with the project's training loop (``train_and_evaluate``: the same code
as ``train.py``), validated during training on the ``valid`` split (unseen synthetic speakers: the embedded
corpus's train, valid and test speakers are disjoint, ``mamba_jax/data/synthetic.py``), then tested on the
whole ``test`` split by loading the trained checkpoint back through the inference API (``Separator`` +
``evaluate_separation``, what ``mamba-jax evaluate`` runs; ``Transcriber`` + ``evaluate_asr`` for ASR runs).

Files under ``--workdir``: the training run's own (``checkpoints/``, ``metrics.jsonl``, TensorBoard events),
``learning.json`` (the run, its overrides, every metric record over the steps, the final test summary, wall
time and the process CPU time) and ``curve.png`` (training loss and validation metrics against steps).
Re-running the same command resumes training from the last checkpoint (then the times cover that call only).

``--set a.b=value`` adds overrides after the run's own (tuning); ``--smoke`` shrinks a run to a few steps of a
tiny model (``tests/test_learning.py`` runs every run that way). Results and conditions: BENCHMARKS.md,
"Learning curves".
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib.util
import json
import pathlib
import resource
import sys
import time
from collections.abc import Callable

from mamba_jax import config as config_lib

REPO = pathlib.Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Run:
    """One learning run: ``config`` (``configs/NAME.py[:ARG]``) with ``overrides`` (dotted keys the config has;
    another is an error), the final ``test`` (``(workdir, config, smoke) -> summary dict``), the metrics the curve
    plots, and ``smoke`` overrides that make it a few-step run of a tiny model (for the fast test)."""

    name: str
    config: str
    overrides: dict
    test: Callable[[pathlib.Path, object, bool], dict]
    curve: tuple[str, ...]  # validation metrics (``val_*`` keys of metrics.jsonl) drawn beside the training loss
    smoke: dict
    about: str = ""


RUNS: dict[str, Run] = {}


def register(run: Run) -> Run:
    if run.name in RUNS:
        raise ValueError(f"run {run.name!r} defined twice")
    RUNS[run.name] = run
    return run


# ---- separation --------------------------------------------------------------------------------------------

def separation_test(workdir: pathlib.Path, config, smoke: bool) -> dict:
    """SI-SNRi / SDRi (and PESQ, STOI) on the whole ``test`` split (unseen speakers), each mixture separated
    whole, from the checkpoint loaded back by ``Separator.from_checkpoint``."""
    from mamba_jax.inference import Separator
    from mamba_jax.inference.evaluate import evaluate_separation

    sep = Separator.from_checkpoint(workdir, scan_impl=config.model.scan_impl)
    summary, _ = evaluate_separation(sep, config, split="test", out_dir=workdir / "test",
                                     max_utterances=2 if smoke else None, n_plots=0 if smoke else 2,
                                     perceptual=not smoke, progress=False, checkpoint=str(workdir),
                                     step=latest_step(workdir))
    return summary


SEPARATION_SMOKE = {"train.num_steps": 2, "train.eval_every_steps": 2, "train.checkpoint_every_steps": 2,
                    "train.log_every_steps": 1, "train.eval_batches": 1, "data.segment_seconds": 0.5,
                    "train.batch_size": 1}


def separation_runs() -> None:
    # Tuned on one shared CPU core with 300-step runs (BENCHMARKS.md, "Learning curves: separation"): lr 4e-3
    # beat 2e-3 (SepMamba dim 16), dim 24 learnt no faster per step than dim 16 at 1.5x the cost, and
    # Mamba-TasNet with 128 filters on 0.5 s crops beat 64 filters on 1 s crops per step at the same cost.
    # Both end with a cosine decay (the recipes' warm-up + cosine; SepMamba's own recipe is constant).
    # Validation: 20 mixtures of the valid speakers, padded to 3 s (the longest synthetic mixture: one compile).
    common = {"model.scan_impl": "sequential", "train.batch_size": 4, "data.segment_seconds": 0.5,
              "optim.lr": 4e-3, "optim.schedule": "warmup_cosine", "optim.min_lr_ratio": 0.01,
              "train.log_every_steps": 25, "train.eval_batches": 20, "train.eval_pad_multiple": 24_000,
              "data.items_per_epoch": 2_000}
    register(Run(
        name="sepmamba",
        config="configs/sepmamba_s.py",
        overrides=dict(common, **{"model.dim": 16, "model.num_blocks": 1, "optim.warmup_steps": 50,
                                  "train.num_steps": 2200, "train.eval_every_steps": 275,
                                  "train.checkpoint_every_steps": 275}),
        test=separation_test, curve=("val_si_snri", "val_sdri"),
        smoke=dict(SEPARATION_SMOKE, **{"model.dim": 8, "optim.warmup_steps": 1}),
        about="SepMamba dim 16, one block per stack (the quickstart's width until 155fea0), 4 x 0.5 s crops"))
    register(Run(
        name="mambatasnet",
        config="configs/mambatasnet_s.py",
        overrides=dict(common, **{"model.n_filters": 128, "model.n_layer": 4, "optim.warmup_steps": 100,
                                  "train.num_steps": 600, "train.eval_every_steps": 100,
                                  "train.checkpoint_every_steps": 100}),
        test=separation_test, curve=("val_si_snri", "val_sdri"),
        smoke=dict(SEPARATION_SMOKE, **{"model.n_filters": 16, "model.n_layer": 2, "optim.warmup_steps": 1}),
        about="Mamba-TasNet with 128 filters and 4 layers, 4 x 0.5 s crops"))


separation_runs()

# ---- ASR ---------------------------------------------------------------------------------------------------
# (ASR runs: defined in bench/learning_asr.py, registered here.)

def asr_runs() -> None:
    spec = importlib.util.spec_from_file_location("_learning_asr", pathlib.Path(__file__).with_name("learning_asr.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for run in mod.asr_runs(Run):
        register(run)


asr_runs()


# ---- the command -------------------------------------------------------------------------------------------

def load_config(spec: str):
    """``configs/NAME.py[:arg]``, relative to the repository root, through the project's config loader."""
    path, _, arg = spec.partition(":")
    return config_lib.load_config(str(REPO / path) + (f":{arg}" if arg else ""))


def apply_overrides(config, overrides: dict, source: str) -> None:
    """Sets dotted keys on ``config``; a key the config does not have (a typo, or a setting nothing reads) is a
    ``ValueError`` naming it and ``source`` (the run, or ``--set``)."""
    for key, value in overrides.items():
        *path, leaf = key.split(".")
        node = config
        for depth, p in enumerate([*path, leaf]):
            if not hasattr(node, "keys") or p not in node:
                where = ".".join(path[:depth]) or "the config"
                raise ValueError(f"{source}: override {key!r}: {where} has no key {p!r}")
            if depth < len(path):
                node = node[p]
        node[leaf] = value


def parse_set(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: expected KEY=VALUE")
        try:
            out[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[key] = text
    return out


def build_config(run: Run, extra: dict | None = None, smoke: bool = False):
    config = load_config(run.config)
    config.unlock()
    apply_overrides(config, run.overrides, f"run {run.name!r}")
    if smoke:
        apply_overrides(config, run.smoke, f"run {run.name!r} (smoke)")
    apply_overrides(config, extra or {}, f"run {run.name!r} (--set)")
    config.lock()
    return config


def latest_step(workdir: pathlib.Path) -> int | None:
    """The newest step folder under ``workdir/checkpoints`` (what ``from_checkpoint`` loads)."""
    steps = [int(p.name) for p in (workdir / "checkpoints").glob("*") if p.name.isdigit()]
    return max(steps, default=None)


def read_metrics(workdir: pathlib.Path) -> list[dict]:
    path = workdir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


def plot_curve(rows: list[dict], path: pathlib.Path, title: str, curve: tuple[str, ...],
               test: dict | None = None) -> None:
    """Training loss (left: each logged batch, faint, and its running mean over 8 logs) and the validation
    metrics (right) against steps; the final test figures as dashed lines."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(10, 3.6))
    train = [(r["step"], r["loss"]) for r in rows if isinstance(r.get("loss"), float)]
    if train:
        steps, loss = (np.asarray(v) for v in zip(*train))
        ax_loss.plot(steps, loss, lw=0.8, alpha=0.35, color="C0", label="train loss (one batch)")
        k = min(8, len(loss))
        ax_loss.plot(steps[k - 1:], np.convolve(loss, np.ones(k) / k, mode="valid"), lw=1.5, color="C0",
                     label=f"train loss (mean of {k} logs)")
    val_loss = [(r["step"], r["val_loss"]) for r in rows if isinstance(r.get("val_loss"), float)]
    if val_loss:
        ax_loss.plot(*zip(*val_loss), "o-", ms=3, color="C1", label="valid loss")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("loss")
    ax_loss.legend(fontsize=8)
    ax_loss.grid(alpha=0.3)
    for i, key in enumerate(curve):
        pts = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), float)]
        if pts:
            ax_val.plot(*zip(*pts), "o-", ms=3, color=f"C{i + 2}", label=f"valid {key.removeprefix('val_')}")
        name = key.removeprefix("val_")
        if test and isinstance(test.get(name), float):
            ax_val.axhline(test[name], ls="--", lw=1, color=f"C{i + 2}",
                           label=f"test {name} {test[name]:.2f} ({test.get('utterances')} utt.)")
    ax_val.set_xlabel("step")
    ax_val.set_ylabel("percent" if any(k.endswith(("cer", "wer")) for k in curve) else "dB")
    ax_val.set_title("unseen speakers", fontsize=9)
    ax_val.legend(fontsize=8)
    ax_val.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def git_commit() -> str:
    import subprocess

    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return out + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu_seconds() -> float:
    """User + system CPU time of this process and its waited-for children (grain workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run_learning(name: str, workdir: str | pathlib.Path, *, extra: dict | None = None, smoke: bool = False,
                 test: bool = True, plot: bool = True, max_minutes: float | None = None) -> dict:
    """Trains run ``name`` in ``workdir``, tests the checkpoint, writes ``learning.json`` (+ ``curve.png``).

    ``max_minutes``: stop training then (checkpoint of the current step, recorded as ``stopped_at_step``) and
    test that checkpoint; the runs' step counts are sized to finish before it."""
    from absl import flags, logging

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
    logging.set_verbosity(logging.WARNING)
    from mamba_jax.training.loop import TrainingInterrupted, train_and_evaluate

    run = RUNS[name]
    workdir = pathlib.Path(workdir)
    config = build_config(run, extra, smoke)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    commit = git_commit()  # the code that trains (taken before, not after, the run)
    t0, c0 = time.perf_counter(), cpu_seconds()
    stopped_at = None
    timer = None
    if max_minutes:  # a safety net: SIGTERM makes the loop checkpoint the current step and stop
        import os
        import signal
        import threading

        timer = threading.Timer(max_minutes * 60, os.kill, (os.getpid(), signal.SIGTERM))
        timer.daemon = True
        timer.start()
    try:
        final_train = train_and_evaluate(config, workdir)
    except TrainingInterrupted as e:
        if timer is None or timer.is_alive():  # a real Ctrl-C / SIGTERM from outside
            raise
        stopped_at, final_train = e.step, {}
    finally:
        if timer is not None:
            timer.cancel()
    train_wall, train_cpu = time.perf_counter() - t0, cpu_seconds() - c0
    summary = run.test(workdir, config, smoke) if test else None
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    rows = read_metrics(workdir)
    import os

    result = dict(run=name, about=run.about, config=run.config, overrides=run.overrides,
                  extra_overrides=extra or {}, smoke=smoke, command=" ".join(sys.argv), commit=commit,
                  started_utc=started, cpus=sorted(os.sched_getaffinity(0)),
                  max_minutes=max_minutes, stopped_at_step=stopped_at, train_wall_s=round(train_wall, 1),
                  train_cpu_s=round(train_cpu, 1),
                  wall_s=round(wall, 1), cpu_s=round(cpu, 1), final_train_metrics=final_train,
                  test=summary, metrics=rows)
    (workdir / "learning.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    if plot:
        replot(workdir)
    return result


def replot(workdir: str | pathlib.Path) -> None:
    """Draws ``curve.png`` from the run's ``learning.json``."""
    workdir = pathlib.Path(workdir)
    result = json.loads((workdir / "learning.json").read_text())
    title = f"{result['run']}: {result['config']} + overrides, commit {result['commit']}"
    plot_curve(result["metrics"], workdir / "curve.png", title, RUNS[result["run"]].curve, result.get("test"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", nargs="?", choices=sorted(RUNS), help="the run to train")
    p.add_argument("--workdir", help="run folder (default: runs/learning/RUN)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra config override")
    p.add_argument("--smoke", action="store_true", help="a few steps of a tiny model (tests)")
    p.add_argument("--no-test", action="store_true", help="skip the final test-split evaluation")
    p.add_argument("--max-minutes", type=float, default=55.0,
                   help="stop training after this many minutes and test the checkpoint (default 55, leaving time for the test; 0: no limit)")
    p.add_argument("--replot", action="store_true", help="only redraw curve.png from --workdir's learning.json")
    p.add_argument("--list", action="store_true", help="list the runs and their overrides")
    args = p.parse_args(argv)
    if args.list or not args.run:
        for run in RUNS.values():
            print(f"{run.name}: {run.config} {json.dumps(run.overrides)}  # {run.about}")
        return 0
    workdir = pathlib.Path(args.workdir or f"runs/learning/{args.run}")
    if args.replot:
        replot(workdir)
        return 0
    result = run_learning(args.run, workdir, extra=parse_set(args.set), smoke=args.smoke, test=not args.no_test,
                          max_minutes=args.max_minutes or None)
    keep = {k: v for k, v in result.items() if k not in ("metrics",)}
    print(json.dumps(keep, indent=1, default=str))
    return 0


if __name__ == "__main__":
    from mamba_jax.xla_cpu import apply_cpu_flags

    apply_cpu_flags()  # the CPU flags the CLI and train.py use, before JAX starts (mamba_jax/xla_cpu.py)
    sys.exit(main())
