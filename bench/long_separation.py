"""Peak memory and speed of long-input separation: overlap-add (bounded) vs one call on the whole signal.

    .venv/bin/python bench/long_separation.py                                   # 1, 3, 10 min, quickstart SepMamba
    .venv/bin/python bench/long_separation.py --minutes 1 3 --plain-max-minutes 3 --json out.json
    .venv/bin/python bench/long_separation.py --config configs/mambatasnet_xs.py:smoke --chunk-seconds 4

Each (mode, length) runs in a fresh subprocess so its peak RSS (``ru_maxrss``) is its own. The child builds
the model (random weights: memory and time do not depend on them), compiles on a short signal (``ola``: one
batch of windows, the shapes of the long run; ``plain``: one window's length), records the peak RSS so far
(``baseline``: interpreter, JAX, weights, compiler), then separates
``minutes`` of noise at the model's rate with ``Separator.separate``. ``ola`` uses windows of
``--chunk-seconds`` (hop ``--hop-seconds``) in batches of ``--batch-size``; ``plain`` is one call on the whole
signal (``chunk_seconds`` larger than the input). Reported: peak RSS, its growth over the baseline, the size of
the input and output arrays the caller holds anyway (``io``), the growth beyond them, wall time and the
real-time factor (audio seconds per second; ``plain``: of a second call, after its compilation), and the
device's ``peak_bytes_in_use`` where the backend reports memory statistics (GPU; not the CPU backend).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

MB = 1024.0 * 1024.0


def child(config_spec: str, mode: str, minutes: float, chunk_s: float, hop_s: float, batch: int) -> dict:
    import resource
    import time

    import jax
    import numpy as np
    from flax import nnx

    from mamba_jax.config import load_config
    from mamba_jax.inference import Separator
    from mamba_jax.models import build_model

    def rss() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0 / MB  # Linux: KiB

    config = load_config(config_spec)
    model = build_model(config.model, rngs=nnx.Rngs(0))
    rate = int(config.data.sample_rate)
    n = int(round(minutes * 60 * rate))
    chunk = chunk_s if mode == "ola" else n / rate + 1.0
    sep = Separator(model, config, chunk_seconds=chunk, hop_seconds=hop_s if mode == "ola" else None,
                               batch_size=batch)
    rng = np.random.default_rng(0)
    # warm-up: compile, then record the peak so far. ola: one full batch of windows, the shapes of the long run.
    # plain: a call on one window's length (a different shape: the long call compiles again, with about the same
    # compiler memory, and allocates its whole-signal activations on top).
    warm = int(round(chunk_s * rate)) + (int(round(hop_s * rate)) * (batch - 1) if mode == "ola" else 0)
    sep.separate((0.1 * rng.standard_normal(warm)).astype(np.float32), rate)
    baseline = rss()
    x = (0.1 * rng.standard_normal(n)).astype(np.float32)
    t0 = time.perf_counter()
    y = sep.separate(x, rate)
    wall = time.perf_counter() - t0
    if mode == "plain":  # time a second call: the first one compiled
        t0 = time.perf_counter()
        y = sep.separate(x, rate)
        wall = time.perf_counter() - t0
    peak = rss()
    io = (x.nbytes + y.nbytes) / MB
    stats = jax.devices()[0].memory_stats() or {}
    device_peak = stats.get("peak_bytes_in_use")
    return dict(config=config_spec, mode=mode, minutes=minutes, samples=n, chunk_seconds=chunk_s if mode == "ola"
                else None, hop_seconds=hop_s if mode == "ola" else None, batch_size=batch,
                peak_rss_mb=round(peak, 1), baseline_rss_mb=round(baseline, 1), growth_mb=round(peak - baseline, 1),
                io_mb=round(io, 1), growth_beyond_io_mb=round(peak - baseline - io, 1), seconds=round(wall, 2),
                realtime_factor=round(minutes * 60 / wall, 1),
                device_peak_mb=None if device_peak is None else round(device_peak / MB, 1),
                backend=jax.default_backend())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/sepmamba_s.py:quickstart",
                   help="config[:arg]; random weights (default: the README quickstart SepMamba, dim 64 at stride 8)")
    p.add_argument("--minutes", type=float, nargs="+", default=[1.0, 3.0, 10.0])
    p.add_argument("--chunk-seconds", type=float, default=10.0)
    p.add_argument("--hop-seconds", type=float, default=8.0)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--plain-max-minutes", type=float, default=3.0,
                   help="also run the single whole-signal call for lengths up to this (0: never)")
    p.add_argument("--json", default=None, help="write the rows to this file")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.child:
        mode, minutes = args.child.split(":")
        row = child(args.config, mode, float(minutes), args.chunk_seconds, args.hop_seconds, args.batch_size)
        print("ROW " + json.dumps(row), flush=True)
        return

    runs = [("ola", m) for m in args.minutes] + [("plain", m) for m in args.minutes if m <= args.plain_max_minutes]
    print(f"config {args.config}; ola: window {args.chunk_seconds} s, hop {args.hop_seconds} s, "
          f"batch {args.batch_size}; plain: one call on the whole signal")
    print("| mode | minutes | peak RSS MB | baseline MB | growth MB | input+output MB | growth - io MB | "
          "device peak MB | seconds | x realtime |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for mode, minutes in runs:
        cmd = [sys.executable, os.path.abspath(__file__), "--config", args.config, "--child", f"{mode}:{minutes}",
               "--chunk-seconds", str(args.chunk_seconds), "--hop-seconds", str(args.hop_seconds),
               "--batch-size", str(args.batch_size)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        lines = [ln for ln in res.stdout.splitlines() if ln.startswith("ROW ")]
        if res.returncode or not lines:
            print(f"| {mode} | {minutes:g} | failed (exit {res.returncode}): {res.stderr.strip()[-300:]} |")
            continue
        r = json.loads(lines[-1][4:])
        rows.append(r)
        dev = "-" if r["device_peak_mb"] is None else f"{r['device_peak_mb']:.1f}"
        print(f"| {mode} | {minutes:g} | {r['peak_rss_mb']:.0f} | {r['baseline_rss_mb']:.0f} | {r['growth_mb']:.0f} | "
              f"{r['io_mb']:.0f} | {r['growth_beyond_io_mb']:.0f} | {dev} | {r['seconds']:.1f} | "
              f"{r['realtime_factor']:.1f} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    from mamba_jax.xla_cpu import apply_cpu_flags

    apply_cpu_flags()  # the CPU flags the CLI and train.py use, before JAX starts (mamba_jax/xla_cpu.py)
    main()
