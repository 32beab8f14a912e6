"""Selective-scan benchmark: the Pallas kernel against the pure-JAX paths, forward and forward+backward.

    .venv/bin/python bench/selective_scan.py              # GPU: the issue-3 model shapes; CPU: --cpu-small
    .venv/bin/python bench/selective_scan.py --json out.json --dtype float32 --repeats 20
    .venv/bin/python bench/selective_scan.py --cpu-small   # tiny shapes, interpret-mode kernel (CI smoke)

Every call is the Mamba block's: z gate, D, delta_bias and softplus, B/C [B, L, N], N = 16. "fwd+bwd" is one
jitted VJP against a fixed cotangent (gradients for every input). Times are medians of --repeats runs after a
warm-up (compile) run, each synchronised with block_until_ready.

Bandwidth: the bytes floor of docs/mamba.md (S = B*L*E, T = B*L*N, b = input bytes):
  fwd      5*S*b + 2*T*b                              (u, delta, z, B, C read; out and out_z written)
  fwd+bwd  fwd + 8*S*b + 2*T*b + 16*T                 (bwd: u, delta, dout, z, out read; du, ddelta, dz
                                                       written; B, C read; fp32 dB, dC written and zeroed)
"achieved" is floor / time; "%copy" divides it by the device's measured copy bandwidth (x -> x + 1, counting
read plus write). Memory: XLA's compiled temp + output bytes of the program (memory_analysis), and the device's
peak_bytes_in_use after the row where memory_stats() exists (GPU; it is a process-wide high-water mark).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from kernels.selective_scan import BlockConfig  # noqa: E402
from kernels.selective_scan import selective_scan as kernel_scan  # noqa: E402
from mamba_jax.ops.selective_scan import selective_scan as ops_scan  # noqa: E402

MODEL_SHAPES = [(1, 4000, 512), (1, 4000, 1024), (4, 8000, 512), (16, 1024, 1024), (128, 250, 512)]
CPU_SMALL_SHAPES = [(1, 64, 64), (2, 48, 128), (8, 16, 64)]  # kernel runs in interpret mode on CPU
IMPLS = ("pallas", "sequential", "associative")


def floor_bytes(b: int, l: int, e: int, n: int, itemsize: int, mode: str) -> int:
    s, t = b * l * e, b * l * n
    fwd = 5 * s * itemsize + 2 * t * itemsize
    return fwd if mode == "fwd" else fwd + 8 * s * itemsize + 2 * t * itemsize + 16 * t


def copy_bandwidth(nbytes: int, repeats: int) -> float:
    """Bytes/s of x -> x + 1 on the default device (read + write)."""
    x = jnp.zeros((nbytes // 4,), jnp.float32)
    f = jax.jit(lambda x: x + 1.0)
    jax.block_until_ready(f(x))
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(f(x))
        ts.append(time.perf_counter() - t0)
    return 2 * x.nbytes / statistics.median(ts)


def make_inputs(b, l, e, n, dtype):
    rng = np.random.default_rng(0)
    r = lambda *s: rng.standard_normal(s, np.float32)
    x = dict(u=r(b, l, e), delta=0.5 * r(b, l, e), z=r(b, l, e), B=r(b, l, n), C=r(b, l, n))
    x = {k: jnp.asarray(v, dtype) for k, v in x.items()}
    x.update(A=jnp.asarray(-np.exp(0.5 * r(e, n))), D=jnp.asarray(r(e)), delta_bias=jnp.asarray(0.3 * r(e)))
    return x, jnp.asarray(r(b, l, e), dtype)


def scan_fn(impl: str, block_config: BlockConfig):
    def f(x):
        args = (x["u"], x["delta"], x["A"], x["B"], x["C"])
        kw = dict(D=x["D"], z=x["z"], delta_bias=x["delta_bias"], delta_softplus=True)
        if impl == "pallas":
            return kernel_scan(*args, **kw, block_config=block_config)
        return ops_scan(*args, **kw, impl=impl)

    return f


def time_fn(fn, x, repeats):
    compiled = jax.jit(fn).lower(x).compile()
    mem = compiled.memory_analysis()
    mem_bytes = None if mem is None else int(mem.temp_size_in_bytes + mem.output_size_in_bytes)
    jax.block_until_ready(compiled(x))
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(x))
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), mem_bytes


def peak_device_bytes():
    stats = jax.devices()[0].memory_stats()
    return None if not stats else stats.get("peak_bytes_in_use")


def run(shapes, impls, modes, dtype, repeats, block_config, copy_bw):
    rows = []
    for b, l, e in shapes:
        n = 16
        x, ct = make_inputs(b, l, e, n, dtype)
        for impl in impls:
            f = scan_fn(impl, block_config)
            for mode in modes:
                if mode == "fwd":
                    fn = f
                else:
                    def fn(x, f=f):
                        _, vjp = jax.vjp(f, x)
                        return vjp(ct)
                try:
                    sec, mem = time_fn(fn, x, repeats)
                    error = None
                except Exception as exc:  # e.g. out of memory at a big shape: report it, keep going
                    sec, mem, error = None, None, f"{type(exc).__name__}: {str(exc)[:120]}"
                floor = floor_bytes(b, l, e, n, jnp.dtype(dtype).itemsize, mode)
                ok = error is None
                rows.append(dict(B=b, L=l, E=e, N=n, impl=impl, mode=mode, dtype=jnp.dtype(dtype).name,
                                 ms=sec * 1e3 if ok else None, floor_MB=floor / 1e6,
                                 achieved_GBps=floor / sec / 1e9 if ok else None,
                                 pct_copy=100 * floor / sec / copy_bw if ok else None,
                                 program_MB=None if mem is None else mem / 1e6,
                                 device_peak_MB=(lambda p: None if p is None else p / 1e6)(peak_device_bytes()),
                                 error=error))
                print_row(rows[-1])
    return rows


HEADER = (f"{'B':>4} {'L':>6} {'E':>5} {'impl':>12} {'mode':>8} {'ms':>10} {'floorMB':>9} {'GB/s':>8} "
          f"{'%copy':>6} {'progMB':>9} {'peakMB':>9}")


def print_row(r):
    fmt = lambda v, spec: format("-", spec.split(".")[0]) if v is None else format(v, spec)
    line = (f"{r['B']:>4} {r['L']:>6} {r['E']:>5} {r['impl']:>12} {r['mode']:>8} {fmt(r['ms'], '>10.3f')} "
            f"{r['floor_MB']:>9.1f} {fmt(r['achieved_GBps'], '>8.2f')} {fmt(r['pct_copy'], '>6.1f')} "
            f"{fmt(r['program_MB'], '>9.1f')} {fmt(r['device_peak_MB'], '>9.1f')}")
    print(line + (f"  [{r['error']}]" if r["error"] else ""), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    on_gpu = jax.default_backend() == "gpu"
    ap.add_argument("--cpu-small", action="store_true", default=not on_gpu,
                    help="tiny shapes (default when there is no GPU; the kernel then runs in interpret mode)")
    ap.add_argument("--model-shapes", dest="cpu_small", action="store_false", help="force the model shapes")
    ap.add_argument("--shapes", nargs="+", metavar="BxLxE", help="override the shape list, e.g. 1x4000x512")
    ap.add_argument("--impls", nargs="+", default=list(IMPLS), choices=IMPLS)
    ap.add_argument("--modes", nargs="+", default=["fwd", "fwd+bwd"], choices=["fwd", "fwd+bwd"])
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per row (default 10 GPU, 3 CPU)")
    ap.add_argument("--block-d", type=int, default=BlockConfig.block_d)
    ap.add_argument("--chunk", type=int, default=BlockConfig.chunk)
    ap.add_argument("--json", metavar="PATH", help="also write the rows and device info as JSON ('-': stdout)")
    args = ap.parse_args()

    repeats = args.repeats or (10 if on_gpu else 3)
    shapes = CPU_SMALL_SHAPES if args.cpu_small else MODEL_SHAPES
    if args.shapes:
        shapes = [tuple(int(v) for v in s.lower().split("x")) for s in args.shapes]
    dev = jax.devices()[0]
    copy_bw = copy_bandwidth(256 << 20 if on_gpu else 32 << 20, repeats)
    print(f"device: {dev.device_kind} ({jax.default_backend()}), jax {jax.__version__}, dtype {args.dtype}, "
          f"copy bandwidth {copy_bw / 1e9:.1f} GB/s, repeats {repeats}"
          + ("" if on_gpu else "; CPU: pallas is interpret mode, times mean nothing for the GPU"))
    print(HEADER)
    cfg = BlockConfig(block_d=args.block_d, chunk=args.chunk)
    rows = run(shapes, args.impls, args.modes, jnp.dtype(args.dtype), repeats, cfg, copy_bw)
    if args.json:
        blob = json.dumps(dict(device=dev.device_kind, backend=jax.default_backend(), jax=jax.__version__,
                               copy_GBps=copy_bw / 1e9, args=vars(args), rows=rows), indent=1)
        if args.json == "-":
            print(blob)
        else:
            with open(args.json, "w") as fh:
                fh.write(blob)


if __name__ == "__main__":
    main()
