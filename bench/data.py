"""Data-pipeline throughput: mixtures (items) per second with 0 and 2 grain worker processes.

    .venv/bin/python bench/data.py                      # embedded synthetic corpus (built if needed)
    .venv/bin/python bench/data.py --root /data/wsj0mix --batches 200 --workers 0 2 4

Each row iterates ``--batches`` batches of ``--batch-size`` after ``--warmup`` batches (worker
start-up, imports and the first epoch permutation are excluded) and reports items per second,
i.e. mixtures for separation rows and utterances for the ASR row.
"""

from __future__ import annotations

import argparse
import time

PIPELINES = {
    "wsj0-2mix static, full length": dict(),
    "wsj0-2mix static, 2 s crops + speed": dict(segment_seconds=2.0, speed_perturb=True),
    "DM speechbrain + speed perturb": dict(dynamic_mixing=True, speed_perturb=True),
    "DM sepmamba 4 s + speed perturb": dict(dynamic_mixing=True, dm_recipe="sepmamba",
                                            segment_seconds=4.0, speed_perturb=True),
    "librispeech ASR (16 kHz)": dict(corpus="librispeech"),
}


def measure(overrides: dict, root: str | None, workers: int, batch_size: int, batches: int,
            warmup: int) -> float:
    from mamba_jax.data.config import data_config
    from mamba_jax.data.pipeline import asr_dataset, separation_dataset

    cfg = data_config(root=root, num_workers=workers, **overrides)
    make = asr_dataset if cfg.corpus == "librispeech" else separation_dataset
    it = iter(make(cfg, "train", batch_size=batch_size, seed=0))
    try:
        for _ in range(warmup):
            next(it)
        t0 = time.perf_counter()
        for _ in range(batches):
            next(it)
        dt = time.perf_counter() - t0
    finally:
        if hasattr(it, "close"):
            it.close()
    return batches * batch_size / dt


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default=None, help="corpus root (default: embedded synthetic corpus)")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--batches", type=int, default=60)
    p.add_argument("--warmup", type=int, default=5)
    args = p.parse_args()

    from mamba_jax.data.synthetic import ensure_corpus

    root = args.root or str(ensure_corpus())
    print(f"corpus: {root}  batch {args.batch_size} x {args.batches} batches (after "
          f"{args.warmup} warm-up)")
    header = "| pipeline | " + " | ".join(f"{w} workers items/s" for w in args.workers) + " |"
    print(header)
    print("|" + "---|" * (len(args.workers) + 1))
    for name, overrides in PIPELINES.items():
        rates = [measure(overrides, root, w, args.batch_size, args.batches, args.warmup)
                 for w in args.workers]
        print(f"| {name} | " + " | ".join(f"{r:.0f}" for r in rates) + " |", flush=True)


if __name__ == "__main__":  # grain workers re-import __main__
    from mamba_jax.xla_cpu import apply_cpu_flags

    apply_cpu_flags()  # the CPU flags the CLI and train.py use, before JAX starts (mamba_jax/xla_cpu.py)
    main()
