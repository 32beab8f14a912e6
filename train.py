"""Train a mamba-jax model.

    python train.py --config configs/sepmamba_s.py --workdir runs/sepmamba_s [--config.train.num_steps=1000]
    python train.py --config configs/sepmamba_s.py:smoke --workdir /tmp/smoke

Re-running the same command resumes from the latest checkpoint in ``--workdir`` (Ctrl-C or SIGTERM first
write a checkpoint of the current step). Overrides are type-checked and unknown fields are errors
(``lock_config``). Multi-host: set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID (see
mamba_jax/training/distributed.py).
"""

from __future__ import annotations

import errno
import sys

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, optionally with :ARG.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and metrics.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from absl import logging

    logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint phase at INFO
    from mamba_jax.training.checkpoint import CheckpointSaveError
    from mamba_jax.training.loop import NonFiniteLossError, TrainingInterrupted, train_and_evaluate
    from mamba_jax.training.resume import ConfigMismatchError

    try:
        metrics = train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    except TrainingInterrupted as e:  # SIGINT/SIGTERM: checkpoint written; the shell sees 128 + signal
        print(e, file=sys.stderr, flush=True)
        sys.exit(128 + e.signum)
    except (NonFiniteLossError, CheckpointSaveError, ConfigMismatchError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    import jax

    if metrics and jax.process_index() == 0:
        print("final:", ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items())))


if __name__ == "__main__":
    app.run(main)
