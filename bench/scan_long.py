"""Long-sequence benchmark of the pure-JAX selective scans: time and peak host memory, forward and backward.

    .venv/bin/python bench/scan_long.py                    # B=1, L=64000, E=512, N=16 (issue 2's shape)
    .venv/bin/python bench/scan_long.py --L 8000 --impl associative

Each (impl, mode) runs in a fresh subprocess so its peak RSS (ru_maxrss) is its own. Times are medians of
``--repeats`` runs after one warm-up (compile) run, synchronised with block_until_ready.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys


def measure(impl: str, mode: str, b: int, l: int, e: int, n: int, repeats: int, chunk: int | None) -> dict:
    import resource
    import statistics
    import time

    import jax
    import jax.numpy as jnp

    from mamba_jax.ops.selective_scan import selective_scan

    ks = jax.random.split(jax.random.key(0), 5)
    u = jax.random.normal(ks[0], (b, l, e))
    dt = 0.5 * jax.random.normal(ks[1], (b, l, e))
    a = -jnp.exp(0.5 * jax.random.normal(ks[2], (e, n)))
    bm = jax.random.normal(ks[3], (b, l, n))
    cm = jax.random.normal(ks[4], (b, l, n))
    rss_inputs = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def fwd(u, dt):
        return selective_scan(u, dt, a, bm, cm, delta_softplus=True, impl=impl, chunk_size=chunk)

    if mode == "fwd":
        fn = jax.jit(fwd)
    else:
        fn = jax.jit(jax.grad(lambda u, dt: jnp.sum(fwd(u, dt) ** 2), argnums=(0, 1)))
    jax.block_until_ready(fn(u, dt))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(u, dt))
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return dict(impl=impl, mode=mode, B=b, L=l, E=e, N=n, median_s=statistics.median(times),
                peak_rss_mib=peak / 1024, rss_after_inputs_mib=rss_inputs / 1024,
                full_state_tensor_mib=b * l * e * n * 4 / 2**20, device=jax.devices()[0].device_kind)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--B", type=int, default=1)
    ap.add_argument("--L", type=int, default=64000)
    ap.add_argument("--E", type=int, default=512)
    ap.add_argument("--N", type=int, default=16)
    ap.add_argument("--impl", nargs="+", default=["sequential"], choices=["sequential", "associative"])
    ap.add_argument("--mode", nargs="+", default=["fwd", "fwd+bwd"], choices=["fwd", "fwd+bwd"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--chunk", type=int, default=None)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        impl, mode = args.child.split(":")
        print(json.dumps(measure(impl, mode, args.B, args.L, args.E, args.N, args.repeats, args.chunk)))
        return
    rows = []
    for impl in args.impl:
        for mode in args.mode:
            cmd = [sys.executable, __file__, "--child", f"{impl}:{mode}", "--B", str(args.B), "--L", str(args.L),
                   "--E", str(args.E), "--N", str(args.N), "--repeats", str(args.repeats)]
            if args.chunk:
                cmd += ["--chunk", str(args.chunk)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
    print(f"{'impl':12} {'mode':8} {'B':>3} {'L':>7} {'E':>5} {'N':>3} {'median s':>9} {'peak RSS MiB':>13} "
          f"{'[B,L,E,N] f32 MiB':>18}  device")
    for r in rows:
        print(f"{r['impl']:12} {r['mode']:8} {r['B']:>3} {r['L']:>7} {r['E']:>5} {r['N']:>3} {r['median_s']:>9.3f} "
              f"{r['peak_rss_mib']:>13.0f} {r['full_state_tensor_mib']:>18.0f}  {r['device']}")


if __name__ == "__main__":
    from mamba_jax.xla_cpu import apply_cpu_flags

    apply_cpu_flags()  # the CPU flags the CLI and train.py use, before JAX starts (mamba_jax/xla_cpu.py)
    main()
