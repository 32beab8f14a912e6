"""Train a mamba-jax model.

    python train.py --config configs/sepmamba_s.py --workdir runs/sepmamba_s [--config.train.num_steps=1000]
    python train.py --config configs/sepmamba_s.py:smoke --workdir /tmp/smoke

Re-running the same command resumes from the latest checkpoint in ``--workdir`` (Ctrl-C or SIGTERM first
write a checkpoint of the current step). Overrides are type-checked and unknown fields are errors
(``lock_config``; an unknown field is ``mamba_jax.config.UnknownFieldError``, checked before absl parses).
Multi-host: set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID (see
mamba_jax/training/distributed.py).

Errors are one line on stderr naming the setting or path and the cause. Exit status 2 (usage): a missing
config file, a mistyped or ill-typed override (the line lists the fields of that config block), a bad ``:ARG``,
an out-of-range value (``num_steps=-5``, ``optim.lr=-1``, ``batch_size=0``: one line each,
``mamba_jax/training/validate.py``), a ``--workdir`` that is a file, a ``train.init_from`` that is missing,
unreadable or of another model. Exit status 1: a missing corpus folder, a read-only ``--workdir``, a workdir in
use by another ``train.py`` (a lock held for the life of the run, released when it exits however it exits; the
line names the holder's pid), a non-finite loss, a failed checkpoint save (e.g. disk full), a workdir whose
checkpoints all fail to read, and a resume with a changed model config. A latest checkpoint that cannot be read
(a truncated file) is passed over for the newest one that can, with one warning line. ``--verbose`` (or
``MAMBA_JAX_VERBOSE=1``) shows the traceback. Nothing is created in ``--workdir`` before the config has loaded
and its values are checked.
"""

from __future__ import annotations

import errno
import pathlib
import sys
import traceback

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, optionally with :ARG.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and metrics.")
flags.DEFINE_boolean("verbose", False, "Show the traceback of an error (also MAMBA_JAX_VERBOSE=1).")
flags.mark_flags_as_required(["config", "workdir"])


def _fail(msg: str, status: int, verbose: bool) -> None:
    from mamba_jax.cli import TRACEBACK_HINT

    if verbose:
        traceback.print_exc()
    print(f"error: {msg}" + ("" if verbose else f" {TRACEBACK_HINT}"), file=sys.stderr, flush=True)
    sys.exit(status)


def _config_arg(argv: list[str]) -> str | None:
    for i, a in enumerate(argv):
        if a.startswith("--config="):
            return a.split("=", 1)[1]
        if a == "--config" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing with one-line errors (exit 2) instead of tracebacks; the config file is loaded here,
    so ``main`` never sees a config that failed to load."""
    from mamba_jax.cli import one_line, verbose_requested
    from mamba_jax.config import UnknownFieldError, check_overrides, config_file_problem, load_config

    verbose = verbose_requested(argv)
    spec = _config_arg(argv)
    if spec is not None:
        problem = config_file_problem(spec)
        if problem:
            _fail(f"--config: {problem}", 2, verbose)
        try:
            config = load_config(spec)
        except Exception:  # noqa: BLE001 - a get_config(arg) error: absl reports it below, as a flag error
            config = None
        if config is not None:
            try:  # unknown fields, checked here: ml_collections' own report is a traceback-shaped KeyError
                check_overrides(config, argv)
            except UnknownFieldError as e:
                _fail(str(e), 2, verbose)
    try:
        rest = flags.FLAGS(argv)
        if _CONFIG.value is not None:
            _CONFIG.value.get("task")  # a config that failed to load raises here (ml_collections defers it)
    except (AttributeError, KeyError) as e:  # e.g. a field the config file itself reads and does not define
        _fail(f"--config: {one_line(e)}", 2, verbose)
    except flags.Error as e:  # absl: ill-typed value, missing required flag, get_config(arg) error
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        _fail(lines[0] if len(lines) == 1 else f"{lines[0]} {lines[-1]}", 2, verbose)
    except OSError as e:
        _fail(f"--config: {one_line(e)}", 2, verbose)
    _check_values()
    return rest


def _check_values() -> None:
    """Exit 2 with one line per out-of-range config value, for a ``--workdir`` that is a file and for a
    ``train.init_from`` that is missing or of another model, before anything is created."""
    from mamba_jax.training.validate import config_problems
    from mamba_jax.training.workdir import workdir_problem

    config, workdir = _CONFIG.value, _WORKDIR.value
    problems = [f"--config.{p}" for p in config_problems(config)] if config is not None else []
    if workdir is not None and (problem := workdir_problem(workdir)):
        problems.append(f"--workdir {workdir} {problem}")
    if not problems and config is not None and config.train.init_from and workdir is not None and \
            not any((pathlib.Path(workdir) / "checkpoints").glob("[0-9]*")):  # a fresh run: init_from is read
        from mamba_jax.training.resume import InitFromError, check_init_from

        try:
            check_init_from(config)
        except InitFromError as e:
            problems.append(str(e))
    for p in problems:
        print(f"error: {p}", file=sys.stderr, flush=True)
    if problems:
        sys.exit(2)


def _interrupted_message(workdir) -> str:
    """What re-running does after a Ctrl-C that stopped the run without its own checkpoint."""
    ckpts = workdir / "checkpoints"
    steps = sorted(int(p.name) for p in ckpts.iterdir() if p.name.isdigit()) if ckpts.is_dir() else []
    if not steps:
        return "interrupted (Ctrl-C) before the first checkpoint was written; re-running the same command starts " \
               "from step 0"
    return f"interrupted (Ctrl-C); re-running the same command resumes from step {steps[-1]} (the last checkpoint)"


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from absl import logging

    from mamba_jax.cli import one_line, verbose_requested

    logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint phase at INFO
    verbose = flags.FLAGS.verbose or verbose_requested([])
    from mamba_jax.checkpoint import CheckpointReadError, CheckpointSaveError
    from mamba_jax.data.audio import AudioError
    from mamba_jax.training.loop import NonFiniteLossError, TrainingInterrupted, train_and_evaluate
    from mamba_jax.training.resume import ConfigMismatchError, InitFromError
    from mamba_jax.training.validate import ConfigValueError
    from mamba_jax.training.workdir import WorkdirError

    workdir = pathlib.Path(_WORKDIR.value)
    fresh = not workdir.exists()
    try:
        metrics = train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    except TrainingInterrupted as e:  # SIGINT/SIGTERM: checkpoint written; the shell sees 128 + signal
        print(e, file=sys.stderr, flush=True)
        sys.exit(128 + e.signum)
    except KeyboardInterrupt:  # a second Ctrl-C, or one before the training loop installed its handler
        if verbose:
            traceback.print_exc()
        print(f"error: {_interrupted_message(workdir)}", file=sys.stderr, flush=True)
        sys.exit(130)
    except (InitFromError, ConfigValueError) as e:  # a setting: usage
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    except (NonFiniteLossError, CheckpointSaveError, CheckpointReadError, ConfigMismatchError, WorkdirError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)  # their message is the report
        sys.exit(1)
    except (AudioError, FileNotFoundError) as e:  # a corpus folder or file the config points at
        ckpts = workdir / "checkpoints"
        if fresh and workdir.is_dir() and {p.name for p in workdir.iterdir()} <= {".lock", "checkpoints"} and \
                not (ckpts.is_dir() and any(ckpts.iterdir())):  # leave no empty workdir behind
            (workdir / ".lock").unlink(missing_ok=True)
            if ckpts.is_dir():
                ckpts.rmdir()
            workdir.rmdir()
        _fail(f"{one_line(e)} (data.root={_CONFIG.value.data.root!r})", 1, verbose)
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    import jax

    if metrics and jax.process_index() == 0:
        print("final:", ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items())))


if __name__ == "__main__":
    from mamba_jax.xla_cpu import apply_cpu_flags

    apply_cpu_flags()  # the XLA CPU flags (mamba_jax/xla_cpu.py), before anything can start JAX's backend
    app.run(main, flags_parser=parse_flags)
