"""Selective-scan benchmark: the Pallas kernel against the pure-JAX paths, forward and forward+backward.

    .venv/bin/python bench/selective_scan.py --gpu-quick      # GPU: 3 shapes x {pallas, associative}, < 5 min
    .venv/bin/python bench/selective_scan.py                  # GPU: the model shapes; CPU: --cpu-small
    .venv/bin/python bench/selective_scan.py --json out.json --dtype float32 --repeats 20
    .venv/bin/python bench/selective_scan.py --cpu-small      # tiny shapes, interpret-mode kernel (CI smoke)

Every call is the Mamba block's: z gate, D, delta_bias and softplus, B/C [B, L, N], N = 16. "fwd+bwd" is one
jitted VJP; the cotangent is an argument of the executable (not a constant XLA could fold). Each row runs in
its own process, so the device's peak memory is that row's. A timing is the wall time of --iters back-to-back
calls (dispatch is asynchronous, so this is device time once the queue is full) divided by --iters, after a
warm-up (compile) call; the row reports the median of --repeats timings.

Floors (S = B*L*E, T = B*L*N, b = input bytes):
  bytes fwd      4*S*b + 2*T*b        read u, delta, z, B, C; write out (the kernel writes no separate z output)
  bytes fwd+bwd  fwd + 7*S*b + 2*T*b + 8*T
                                      bwd: read u, delta, z, dout, B, C; write du, ddelta, dz and fp32 dB, dC
  exp   fwd      S*N exps; fwd+bwd 2*S*N (one per (t, e, n) element and pass), at the SFU rate
                 (16 MUFU results per clock per SM on sm_80/sm_90, times the SM count and --clock-ghz)
"GB/s" is bytes floor / time; "%copy" divides it by the device's measured copy bandwidth (x -> x + 1, read plus
write); "x exp" is time / exp floor. Memory: XLA's compiled temp + output bytes of the program
(memory_analysis) and the row process's device peak_bytes_in_use (GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def alias_kernels() -> None:
    """Makes ``mamba_jax_kernels`` importable from a checkout that is not installed (``PYTHONPATH=.`` or a
    device machine where pip cannot install the project): installed, pyproject.toml maps the top-level
    ``kernels/`` folder to that name; here ``kernels/`` is registered under it, as the same package. An
    installed ``mamba_jax_kernels`` is left alone."""
    import importlib.machinery
    import importlib.util

    if "mamba_jax_kernels" in sys.modules or importlib.util.find_spec("mamba_jax_kernels") is not None:
        return
    spec = importlib.machinery.ModuleSpec("mamba_jax_kernels", None, is_package=True)
    spec.submodule_search_locations = [os.path.join(ROOT, "kernels")]
    sys.modules["mamba_jax_kernels"] = importlib.util.module_from_spec(spec)


def python_cmd() -> list[str]:
    """This interpreter with the flag that changes what it can import (``-S``: no site packages' .pth files,
    as in an uninstalled checkout run), so that row processes import what this one does."""
    return [sys.executable] + (["-S"] if sys.flags.no_site else [])


alias_kernels()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from mamba_jax.ops.selective_scan import selective_scan as ops_scan  # noqa: E402
from mamba_jax_kernels.selective_scan import BlockConfig  # noqa: E402
from mamba_jax_kernels.selective_scan import selective_scan as kernel_scan  # noqa: E402

MODEL_SHAPES = [(1, 4000, 512), (1, 4000, 1024), (4, 8000, 512), (16, 1024, 1024), (128, 250, 512)]
GPU_QUICK_SHAPES = [(1, 4000, 1024), (16, 1024, 1024), (128, 250, 512)]
CPU_SMALL_SHAPES = [(1, 64, 64), (2, 48, 128), (8, 16, 64)]  # kernel runs in interpret mode on CPU
IMPLS = ("pallas", "sequential", "associative")
SFU_PER_CLOCK_PER_SM = 16


def floor_bytes(b: int, l: int, e: int, n: int, itemsize: int, mode: str) -> int:
    s, t = b * l * e, b * l * n
    fwd = 4 * s * itemsize + 2 * t * itemsize
    return fwd if mode == "fwd" else fwd + 7 * s * itemsize + 2 * t * itemsize + 8 * t


def floor_exps(b: int, l: int, e: int, n: int, mode: str) -> int:
    return b * l * e * n * (1 if mode == "fwd" else 2)


def sfu_rate(clock_ghz: float) -> float | None:
    """exp results per second of the default device (None where the SM count is unknown, e.g. CPU)."""
    sms = getattr(jax.devices()[0], "core_count", None)
    return None if not sms else sms * SFU_PER_CLOCK_PER_SM * clock_ghz * 1e9


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


def scan_fn(impl: str, block_config: BlockConfig | None):
    """``block_config`` None: the public ``selective_scan(impl=...)`` (the kernel's own default tiling)."""
    def f(x):
        args = (x["u"], x["delta"], x["A"], x["B"], x["C"])
        kw = dict(D=x["D"], z=x["z"], delta_bias=x["delta_bias"], delta_softplus=True)
        if impl == "pallas" and block_config is not None:
            return kernel_scan(*args, **kw, block_config=block_config)
        return ops_scan(*args, **kw, impl=impl)

    return f


def time_fn(fn, args, repeats: int, iters: int, max_s: float | None = None):
    """(median seconds per call over ``repeats`` timings of ``iters`` back-to-back calls, program bytes).
    ``max_s``: fewer calls (iters first, then repeats) where the warm-up call says they would take longer."""
    compiled = jax.jit(fn).lower(*args).compile()
    mem = compiled.memory_analysis()
    mem_bytes = None if mem is None else int(mem.temp_size_in_bytes + mem.output_size_in_bytes)
    jax.block_until_ready(compiled(*args))
    if max_s:  # a slow path (the sequential scan at 16k steps) must not spend a part's budget on timing
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        one = max(time.perf_counter() - t0, 1e-9)
        iters = max(1, min(iters, int(max_s / (one * repeats))))
        repeats = max(1, min(repeats, int(max_s / (one * iters))))
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        outs = [compiled(*args) for _ in range(iters)]
        jax.block_until_ready(outs)
        ts.append((time.perf_counter() - t0) / iters)
    return statistics.median(ts), mem_bytes


def peak_device_bytes():
    stats = jax.devices()[0].memory_stats()
    return None if not stats else stats.get("peak_bytes_in_use")


def run_row(spec: dict) -> dict:
    """One (shape, impl, mode) row, in this process."""
    b, l, e, n = spec["B"], spec["L"], spec["E"], spec["N"]
    dtype = jnp.dtype(spec["dtype"])
    cfg = None if spec["block_config"] is None else BlockConfig(**spec["block_config"])
    x, ct = make_inputs(b, l, e, n, dtype)
    f = scan_fn(spec["impl"], cfg)
    if spec["mode"] == "fwd":
        fn, args = f, (x,)
    else:
        def fn(x, ct):
            _, vjp = jax.vjp(f, x)
            return vjp(ct)

        args = (x, ct)
    try:
        sec, mem = time_fn(fn, args, spec["repeats"], spec["iters"], spec.get("max_s"))
        error = None
    except Exception as exc:  # e.g. out of memory at a big shape: report it, keep going
        sec, mem, error = None, None, f"{type(exc).__name__}: {str(exc)[:120]}"
    floor = floor_bytes(b, l, e, n, dtype.itemsize, spec["mode"])
    rate = spec.get("sfu_rate")
    exp_s = None if not rate else floor_exps(b, l, e, n, spec["mode"]) / rate
    ok = error is None
    peak = peak_device_bytes()
    return dict(B=b, L=l, E=e, N=n, impl=spec["impl"], mode=spec["mode"], dtype=dtype.name,
                ms=sec * 1e3 if ok else None, floor_MB=floor / 1e6,
                achieved_GBps=floor / sec / 1e9 if ok else None,
                pct_copy=100 * floor / sec / spec["copy_bw"] if ok and spec.get("copy_bw") else None,
                exp_floor_ms=None if exp_s is None else exp_s * 1e3,
                x_exp=sec / exp_s if ok and exp_s else None,
                program_MB=None if mem is None else mem / 1e6,
                device_peak_MB=None if peak is None else peak / 1e6, error=error)


def run_isolated(spec: dict, timeout: int) -> dict:
    """run_row in a fresh process (its own device peak memory); an error row if it dies or times out."""
    cmd = [*python_cmd(), os.path.abspath(__file__), "--_row", json.dumps(spec)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        line = [ln for ln in r.stdout.splitlines() if ln.startswith("ROW ")]
        if r.returncode == 0 and line:
            return json.loads(line[-1][4:])
        error = f"exit {r.returncode}: {(r.stderr or r.stdout).strip()[-200:]}"
    except subprocess.TimeoutExpired:
        error = f"timeout after {timeout} s"
    row = dict(B=spec["B"], L=spec["L"], E=spec["E"], N=spec["N"], impl=spec["impl"], mode=spec["mode"],
               dtype=spec["dtype"], ms=None, floor_MB=0.0, achieved_GBps=None, pct_copy=None, exp_floor_ms=None,
               x_exp=None, program_MB=None, device_peak_MB=None, error=error)
    return row


HEADER = (f"{'B':>4} {'L':>6} {'E':>5} {'impl':>12} {'mode':>8} {'ms':>10} {'floorMB':>9} {'GB/s':>8} "
          f"{'%copy':>6} {'exp ms':>8} {'x exp':>7} {'progMB':>9} {'peakMB':>9}")


def print_row(r):
    fmt = lambda v, spec: format("-", spec.split(".")[0]) if v is None else format(v, spec)
    line = (f"{r['B']:>4} {r['L']:>6} {r['E']:>5} {r['impl']:>12} {r['mode']:>8} {fmt(r['ms'], '>10.3f')} "
            f"{r['floor_MB']:>9.1f} {fmt(r['achieved_GBps'], '>8.2f')} {fmt(r['pct_copy'], '>6.1f')} "
            f"{fmt(r['exp_floor_ms'], '>8.3f')} {fmt(r['x_exp'], '>7.1f')} "
            f"{fmt(r['program_MB'], '>9.1f')} {fmt(r['device_peak_MB'], '>9.1f')}")
    print(line + (f"  [{r['error']}]" if r["error"] else ""), flush=True)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--_row":  # child process: one row
        print("ROW " + json.dumps(run_row(json.loads(sys.argv[2]))), flush=True)
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    on_gpu = jax.default_backend() == "gpu"
    ap.add_argument("--cpu-small", action="store_true", default=not on_gpu,
                    help="tiny shapes (default when there is no GPU; the kernel then runs in interpret mode)")
    ap.add_argument("--model-shapes", dest="cpu_small", action="store_false", help="force the model shapes")
    ap.add_argument("--gpu-quick", action="store_true",
                    help=f"shapes {GPU_QUICK_SHAPES}, pallas and associative, fwd and fwd+bwd, 3 repeats")
    ap.add_argument("--shapes", nargs="+", metavar="BxLxE", help="override the shape list, e.g. 1x4000x512")
    ap.add_argument("--impls", nargs="+", default=list(IMPLS), choices=IMPLS)
    ap.add_argument("--modes", nargs="+", default=["fwd", "fwd+bwd"], choices=["fwd", "fwd+bwd"])
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    ap.add_argument("--repeats", type=int, default=None, help="timings per row (default 10 GPU, 3 CPU)")
    ap.add_argument("--iters", type=int, default=None, help="calls per timing (default 20 GPU, 1 CPU)")
    ap.add_argument("--row-timeout", type=int, default=None, help="seconds per row process (600; 120 with --gpu-quick)")
    ap.add_argument("--clock-ghz", type=float, default=1.755,
                    help="SM clock of the device for the exp floor (nvidia-smi -q -d CLOCK)")
    ap.add_argument("--block-d", type=int, default=BlockConfig.block_d)
    ap.add_argument("--block-t", type=int, default=BlockConfig.block_t)
    ap.add_argument("--chunk", type=int, default=BlockConfig.chunk)
    ap.add_argument("--json", metavar="PATH", help="also write the rows and device info as JSON ('-': stdout)")
    args = ap.parse_args()

    repeats = args.repeats or (10 if on_gpu else 3)
    iters = args.iters or (20 if on_gpu else 1)
    shapes = CPU_SMALL_SHAPES if args.cpu_small else MODEL_SHAPES
    impls = args.impls
    if args.gpu_quick:
        shapes, impls, repeats = GPU_QUICK_SHAPES, ["pallas", "associative"], args.repeats or 3
    if args.shapes:
        shapes = [tuple(int(v) for v in s.lower().split("x")) for s in args.shapes]
    dev = jax.devices()[0]
    copy_bw = copy_bandwidth(256 << 20 if on_gpu else 32 << 20, repeats)
    rate = sfu_rate(args.clock_ghz)
    print(f"device: {dev.device_kind} ({jax.default_backend()}), jax {jax.__version__}, dtype {args.dtype}, "
          f"copy bandwidth {copy_bw / 1e9:.1f} GB/s, repeats {repeats} x {iters} calls, "
          f"exp rate {'-' if rate is None else f'{rate / 1e12:.2f} T/s'}"
          + ("" if on_gpu else "; CPU: pallas is interpret mode, times mean nothing for the GPU"))
    print(HEADER, flush=True)
    cfg = dict(block_d=args.block_d, block_t=args.block_t, chunk=args.chunk)
    rows = []
    for b, l, e in shapes:
        for impl in impls:
            for mode in args.modes:
                spec = dict(B=b, L=l, E=e, N=16, impl=impl, mode=mode, dtype=args.dtype, repeats=repeats,
                            iters=iters, block_config=cfg, copy_bw=copy_bw, sfu_rate=rate)
                rows.append(run_isolated(spec, args.row_timeout or (120 if args.gpu_quick else 600)))
                print_row(rows[-1])
    if args.json:
        blob = json.dumps(dict(device=dev.device_kind, backend=jax.default_backend(), jax=jax.__version__,
                               copy_GBps=copy_bw / 1e9, args=vars(args), rows=rows), indent=1)
        if args.json == "-":
            print(blob)
        else:
            with open(args.json, "w") as fh:
                fh.write(blob)


if __name__ == "__main__":
    from mamba_jax.xla_cpu import apply_cpu_flags

    apply_cpu_flags()  # the CPU flags the CLI and train.py use, before JAX starts (mamba_jax/xla_cpu.py)
    main()
