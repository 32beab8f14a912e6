"""Training throughput: steps per second of ``train_and_evaluate`` on the quickstart config.

    .venv/bin/python bench/train_steps.py                       # configs/sepmamba_s.py:quickstart, 80 steps
    PYTHONPATH=/path/to/other/checkout .venv/bin/python bench/train_steps.py   # the same on another commit

Runs ``--steps`` steps of the config in a fresh temporary workdir (no checkpoint or evaluation before the last
step, one validation utterance there) and reports steps/s over the logging intervals after the first (which
holds the compilation), from the ``steps_per_sec`` the trainer writes to ``metrics.jsonl``. Prints one JSON
line with the module path, so a before/after comparison shows which code it ran.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/sepmamba_s.py:quickstart")
    p.add_argument("--steps", type=int, default=80)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--label", default="")
    args = p.parse_args()

    from absl import flags, logging

    flags.FLAGS.mark_as_parsed()
    logging.set_verbosity(logging.WARNING)
    import mamba_jax
    from mamba_jax.config import load_config
    from mamba_jax.training.loop import train_and_evaluate

    path, _, arg = args.config.partition(":")
    config = load_config(str(REPO / path) + (f":{arg}" if arg else ""))
    config.unlock()
    config.train.update(num_steps=args.steps, log_every_steps=args.log_every, eval_every_steps=10 ** 9,
                        checkpoint_every_steps=10 ** 9, eval_batches=1)
    with tempfile.TemporaryDirectory() as workdir:
        t0 = time.perf_counter()
        train_and_evaluate(config, workdir)
        wall = time.perf_counter() - t0
        rows = [json.loads(x) for x in (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines()]
    rates = [r["steps_per_sec"] for r in rows if "steps_per_sec" in r and r["step"] <= args.steps][1:]
    seconds = sum(args.log_every / r for r in rates)
    measured = args.log_every * len(rates)
    print(json.dumps(dict(label=args.label, module=str(pathlib.Path(mamba_jax.__file__).parent), config=args.config,
                          steps=measured, steps_per_sec=round(measured / seconds, 3),
                          interval_rates=[round(r, 3) for r in rates], wall_s=round(wall, 1))), flush=True)


if __name__ == "__main__":
    from mamba_jax.xla_cpu import apply_cpu_flags

    apply_cpu_flags()  # the CPU flags the CLI and train.py use, before JAX starts (mamba_jax/xla_cpu.py)
    main()
