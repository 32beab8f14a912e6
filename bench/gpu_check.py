"""One-shot GPU check: the compiled kernel's tests, the scan's speed and memory, every separation family's
forward and training speed, and ``impl="auto"``'s first-call cost, in two halves that each fit one device call.

    bash bench/gpu_check.sh --part 1     # gpu-marked kernel tests, scan rows, auto's first call  (<= 5 min)
    bash bench/gpu_check.sh --part 2     # each separation family: forward ms / peak GB on 4 s, train steps/s (<= 5 min)
    bash bench/gpu_check.sh              # both (<= 8 min on one H100)
    bash bench/gpu_check.sh --dry-run    # CPU: every part at tiny shapes, into a temporary JSON (the suite runs it)
    bash bench/gpu_check.sh --table      # print the markdown tables of the JSON again

Results merge into ``bench/results/gpu_check.json`` (``--json``): a part replaces its own sections and leaves
the other's. Every row runs in its own process (so a device peak memory is that row's, and a crash or a hang
costs one row): the kernel tests (``pytest -m gpu tests/kernels``), one process per (shape, impl) for the
scan (forward, then forward+backward: the second peak is the larger of the two), one per family (forward, then
the real ``train_step`` of ``mamba_jax.training.loop`` on a synthetic batch of the config's size). A part
never runs past its budget (``--budget``): a row that would not fit is skipped with a note, and a row that
fails records its error; the rest still run.

Scan timings reuse ``bench/selective_scan.py`` (median of ``--repeats`` timings of 20 back-to-back calls);
family forwards are the median of single calls. Published SepMamba figures (arXiv 2410.20997, forward on 4 s
at 8 kHz, batch 1, mamba_ssm CUDA kernels): S 17.84 ms / 2.00 GB, M 27.25 ms / 3.04 GB.

A checkout run needs no install: ``kernels/`` is registered as ``mamba_jax_kernels`` (``alias_kernels`` in
bench/selective_scan.py). On a GPU machine without internet (the device machine: jax 0.11.2 with its CUDA
plugin, flax, optax, orbax in its ``python3``), prepare the wheels here with ``bash tools/gpu_wheels.sh``
(``.whl/``, ~20 MB) and run both parts in one call (carry ``.whl``, ``timeout_s`` 570):

    set -o pipefail; PYTHON=python3 bash tools/install.sh gpu test --wheels .whl && \
      PYTHON=python3 MAMBA_JAX_COMMIT=<hash> bash bench/gpu_check.sh 2>&1 | tee $OUT/gpu_check.log; \
      cp bench/results/gpu_check.json $OUT/

A part run alone (``--part 2``) merges into the ``bench/results/gpu_check.json`` it finds, so copy the first
call's file into the tree before a second call; ``--families NAME...`` reruns rows that a budget skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
sys.path.insert(0, BENCH)
from gpu_check_results import IMPLS, host_info, merge, tables  # noqa: E402
DEFAULT_JSON = os.path.join(ROOT, "bench", "results", "gpu_check.json")
# (B, L, E, N, dtype): SepMamba-M-like bf16 batch, a 4 s utterance at E = 1024, SepMamba's first U-Net level.
SCAN_SHAPES = [(1, 4000, 1024, 16, "float32"), (16, 1024, 1024, 16, "bfloat16"), (1, 16000, 128, 16, "float32")]
DRY_SCAN_SHAPES = [(1, 32, 64, 16, "float32")]
AUTO_SHAPE = (1, 4000, 1024, 16, "float32")
DRY_AUTO_SHAPE = (1, 32, 64, 16, "float32")
# name -> (config, published forward (ms, GB) on 4 s at batch 1 or None)
FAMILIES = {
    "sepmamba_s": ("configs/sepmamba_s.py", (17.84, 2.00)),
    "sepmamba_m": ("configs/sepmamba_m.py", (27.25, 3.04)),
    "sepmamba_causal_s": ("configs/sepmamba_causal_s.py", None),
    "mambatasnet_s": ("configs/mambatasnet_s.py", None),
    "dpmamba_s": ("configs/dpmamba_s.py", None),
    "spmamba": ("configs/spmamba.py", None),
}
# Least seconds a row needs to be worth starting (process start, compile, timing) on an H100; a dry run
# scales them down.
MIN_S = dict(pytest=60, scan=20, auto=40, family=45)


def _sscan():
    """bench/selective_scan.py (imported in row processes only: it imports jax, and registers ``kernels/`` as
    ``mamba_jax_kernels`` when the project is not installed)."""
    if BENCH not in sys.path:
        sys.path.insert(0, BENCH)
    import selective_scan

    return selective_scan


def python_cmd() -> list[str]:
    """This interpreter, with ``-S`` if this one has it (a checkout run without site .pth files)."""
    return [sys.executable] + (["-S"] if sys.flags.no_site else [])


def _now() -> float:
    return time.monotonic()


def _rows_from(stdout: str | bytes | None) -> list[dict]:
    if isinstance(stdout, bytes):
        stdout = stdout.decode(errors="replace")
    return [json.loads(ln[4:]) for ln in (stdout or "").splitlines() if ln.startswith("ROW ")]


def run_worker(kind: str, spec: dict, timeout: float, env: dict | None = None) -> tuple[list[dict], str | None]:
    """Runs ``kind``'s worker on ``spec`` in a fresh process (``env``: variables to add, None values removed):
    (the rows it printed, an error or None). Rows printed before a crash or the timeout are kept."""
    cmd = [*python_cmd(), os.path.abspath(__file__), "--_worker", kind, json.dumps(spec)]
    full_env = {k: v for k, v in {**os.environ, **(env or {})}.items() if v is not None}
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=max(timeout, 1), cwd=ROOT, env=full_env)
    except subprocess.TimeoutExpired as exc:
        return _rows_from(exc.stdout), f"timeout after {timeout:.0f} s (part budget)"
    rows = _rows_from(r.stdout)
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()
        return rows, f"exit {r.returncode}: {' | '.join(tail[-3:])[-400:]}"
    return rows, None


# ---- workers (each in its own process) -------------------------------------------------------------------


def _emit(row: dict) -> None:
    print("ROW " + json.dumps(row), flush=True)


def _device_info() -> dict:
    import jax
    import jaxlib

    dev = jax.devices()[0]
    return dict(device=dev.device_kind, platform=dev.platform, jax=jax.__version__, jaxlib=jaxlib.__version__,
                platform_version=getattr(dev.client, "platform_version", None))


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}"


def worker_scan(spec: dict) -> None:
    """Per impl of ``spec["impls"]``: forward then forward+backward, each a ``selective_scan.run_row``."""
    sscan = _sscan()
    _emit(dict(kind="env", **_device_info()))
    for impl in spec["impls"]:
        for mode in ("fwd", "fwd+bwd"):
            row_spec = dict(spec, impl=impl, mode=mode)
            try:
                row = sscan.run_row(row_spec)
            except Exception as exc:  # e.g. out of memory building the inputs: the row says so
                row = dict(B=spec["B"], L=spec["L"], E=spec["E"], N=spec["N"], impl=impl, mode=mode,
                           dtype=spec["dtype"], ms=None, error=_error(exc))
            _emit(dict(kind="scan", **row))


def worker_auto(spec: dict) -> None:
    """``impl="auto"``'s first call with a new signature (fresh autotune cache): its time, a warm call's time,
    and what the tuner measured and chose."""
    sscan = _sscan()
    import jax
    import jax.numpy as jnp

    from mamba_jax.ops import scan_autotune
    from mamba_jax.ops.selective_scan import selective_scan

    _emit(dict(kind="env", **_device_info()))
    b, l, e, n, dtype = spec["B"], spec["L"], spec["E"], spec["N"], spec["dtype"]
    x, ct = sscan.make_inputs(b, l, e, n, jnp.dtype(dtype))
    out = dict(kind="auto", B=b, L=l, E=e, N=n, dtype=dtype, backend=jax.default_backend())
    for mode in ("fwd+bwd", "fwd"):  # training first: the signature is new for it
        def f(x):
            return selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], D=x["D"], z=x["z"],
                                  delta_bias=x["delta_bias"], delta_softplus=True, impl="auto")

        if mode == "fwd":
            fn, args = jax.jit(f), (x,)
        else:
            fn, args = jax.jit(lambda x, ct: jax.vjp(f, x)[1](ct)), (x, ct)
        try:
            t0 = time.perf_counter()
            jax.block_until_ready(fn(*args))
            first = time.perf_counter() - t0
            warm, _ = sscan.time_fn(lambda *a: fn(*a), args, spec["repeats"], spec["iters"], spec.get("max_s"))
            out[mode] = dict(first_call_s=first, warm_ms=warm * 1e3)
        except Exception as exc:
            out[mode] = dict(error=_error(exc))
    tuner = scan_autotune.get_tuner()
    measured = {sig: {k: (None if v == float("inf") else v * 1e3) for k, v in times.items()}
                for sig, times in dict(getattr(tuner, "measurements", {}) or {}).items()}
    out["measured_ms"] = measured  # signature -> candidate -> ms (None: failed)
    out["chosen"] = {sig: min((v, k) for k, v in times.items() if v is not None)[1]
                     for sig, times in measured.items() if any(v is not None for v in times.values())}
    if not measured:
        out["chosen_note"] = f"nothing measured: on {jax.default_backend()} auto resolves without measuring"
    _emit(out)


def _family_config(path: str, scan_impl: str | None):
    from mamba_jax.config import load_config

    config = load_config(os.path.join(ROOT, path))
    config.unlock()
    if scan_impl:
        config.model.scan_impl = scan_impl
    if "check_finite" in config.model:
        config.model.check_finite = "off"  # a host-side check: not the network's time
    return config


def worker_family(spec: dict) -> None:
    """Per family: jitted forward of noise of ``seconds`` at batch 1 (median ms, peak bytes), then the real
    ``train_step`` (optimiser included, state donated) on a synthetic batch of the config's batch size."""
    import functools

    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from mamba_jax.models import build_model
    from mamba_jax.training.loop import ModelDef, create_train_state, train_step
    from mamba_jax.training.optim import make_optimizer
    from mamba_jax.training.tasks import SeparationTask

    _emit(dict(kind="env", **_device_info()))
    deadline = spec["deadline"]
    for name in spec["names"]:
        path, published = FAMILIES[name]
        path = path + (":smoke" if spec["smoke"] else "")
        row = dict(kind="family", name=name, config=path, scan_impl=spec["scan_impl"], seconds=spec["seconds"],
                   published=None if published is None else dict(ms=published[0], GB=published[1]))
        rng = np.random.default_rng(0)
        try:
            config = _family_config(path, spec["scan_impl"])
            rate = int(config.data.sample_rate)
            model = build_model(config.model, rngs=nnx.Rngs(0))
            model.eval()
            graphdef, state = nnx.split(model)
            mix = jnp.asarray(0.1 * rng.standard_normal((1, int(spec["seconds"] * rate))), jnp.float32)
            fwd = jax.jit(lambda st, x: nnx.merge(graphdef, st)(x)).lower(state, mix).compile()
            jax.block_until_ready(fwd(state, mix))
            ts = []
            for _ in range(spec["repeats"]):
                t0 = time.perf_counter()
                jax.block_until_ready(fwd(state, mix))
                ts.append(time.perf_counter() - t0)
            row.update(fwd_ms=statistics.median(ts) * 1e3, fwd_peak_GB=_peak_gb())
            del model, state, fwd
        except Exception as exc:
            row["fwd_error"] = _error(exc)
        if time.time() > deadline:
            row["train_error"] = "skipped: part budget spent"
            _emit(row)
            continue
        try:
            config = _family_config(path, spec["scan_impl"])
            bsz = int(config.train.batch_size)
            seg = float(config.data.segment_seconds or spec["seconds"])  # None: full utterances; use 4 s
            t = int(seg * int(config.data.sample_rate))
            sources = 0.1 * rng.standard_normal((bsz, int(config.model.num_spks), t))
            batch = dict(mix=jnp.asarray(sources.sum(1), jnp.float32), sources=jnp.asarray(sources, jnp.float32))
            tx = make_optimizer(config.optim, config.train.num_steps)
            step = jax.jit(functools.partial(train_step, task=SeparationTask(config), model_def=ModelDef.of(config.model),
                                             tx=tx), donate_argnums=0)
            # Fresh state leaves may share a buffer (the zero counters), which donation refuses: copy each.
            state = jax.tree.map(jnp.copy, create_train_state(config, tx))
            key = jax.random.key(0)
            t0 = time.perf_counter()
            state, metrics = step(state, batch, key)
            jax.block_until_ready(metrics)
            compile_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            for i in range(spec["steps"]):
                state, metrics = step(state, batch, jax.random.fold_in(key, i))
            jax.block_until_ready((state, metrics))
            row.update(train_batch=bsz, train_seconds=seg, train_first_step_s=compile_s,
                       train_steps_per_s=spec["steps"] / (time.perf_counter() - t0),
                       train_loss=float(metrics["loss"]), train_peak_GB=_peak_gb())
        except Exception as exc:
            row["train_error"] = _error(exc)
        _emit(row)


def _peak_gb() -> float | None:
    b = _sscan().peak_device_bytes()
    return None if b is None else b / 1e9


def worker_pytest(args: list[str]) -> None:
    """pytest in this process (kernels/ is aliased above, so an uninstalled checkout collects)."""
    _sscan()
    import pytest

    sys.exit(pytest.main(args))


# ---- parts ---------------------------------------------------------------------------------------------


class Budget:
    """Seconds left to a part; a row starts only if its least cost fits."""

    def __init__(self, seconds: float, scale: float):
        self.end, self.scale = _now() + seconds, scale

    def left(self) -> float:
        return self.end - _now()

    def fits(self, what: str) -> bool:
        return self.left() >= MIN_S[what] * self.scale


def _skip(what: str, budget: Budget) -> str:
    return f"skipped: {budget.left():.0f} s left of the part budget, {what} needs ~{MIN_S[what] * budget.scale:.0f} s"


def part_kernel_tests(budget: Budget, dry: bool, tests_s: float) -> dict:
    if not budget.fits("pytest"):
        return dict(error=_skip("pytest", budget))
    fd, xml = tempfile.mkstemp(suffix=".xml")
    os.close(fd)
    # pyproject's addopts are replaced: they need pytest-xdist options that another image's xdist may lack.
    args = ["-m", "gpu", "tests/kernels", "-v", "-o", "addopts=", "--strict-markers", "-p", "no:xdist", "-p",
            "no:cacheprovider", f"--junitxml={xml}"]
    cmd = [*python_cmd(), os.path.abspath(__file__), "--_pytest", *args]
    t0 = _now()
    out = dict(command="pytest " + " ".join(args[:3]))
    # At most half the part: the scan rows after it matter as much.
    limit = max(min(budget.left() - 5, tests_s), 1)
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, cwd=ROOT)
        out["exit_code"], stdout = r.returncode, r.stdout
        out["tail"] = r.stdout.strip().splitlines()[-1:] if r.stdout.strip() else r.stderr.strip()[-300:]
    except subprocess.TimeoutExpired as exc:
        out["error"] = f"timeout after {limit:.0f} s: the counts are of the tests that finished"
        stdout = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
    out["wall_s"] = _now() - t0
    # junit is written at the end only; a killed run's counts come from pytest -v's lines.
    out.update(_junit(xml) or _verbose_counts(stdout))
    os.unlink(xml)
    return out


def _verbose_counts(stdout: str) -> dict:
    lines = [ln for ln in stdout.splitlines() if ln.startswith("tests/") and "::" in ln]
    count = lambda word: sum(f" {word}" in ln for ln in lines)
    return dict(passed=count("PASSED"), failed=count("FAILED") + count("ERROR"), skipped=count("SKIPPED"),
                failures=[ln.split(" ")[0] for ln in lines if " FAILED" in ln or " ERROR" in ln])


def _junit(path: str) -> dict:
    import xml.etree.ElementTree as ET

    try:
        cases = ET.parse(path).getroot().iter("testcase")
    except (ET.ParseError, OSError):
        return {}
    counts, failed = dict(passed=0, failed=0, skipped=0), []
    for c in cases:
        bad = c.find("failure") if c.find("failure") is not None else c.find("error")
        if bad is not None:
            counts["failed"] += 1
            failed.append(f"{c.get('name')}: {(bad.get('message') or '')[:200]}")
        elif c.find("skipped") is not None:
            counts["skipped"] += 1
        else:
            counts["passed"] += 1
    return dict(counts, failures=failed)


def part_scan(budget: Budget, dry: bool, args) -> tuple[list[dict], dict | None, list[dict]]:
    """Scan rows and auto's first call, after the first shape. One process per shape x impl on a device (its
    own peak memory); the dry run shares one per shape (CPU: no peak; process starts are most of its cost)."""
    shapes = DRY_SCAN_SHAPES if dry else SCAN_SHAPES
    rows, envs, auto = [], [], None
    for i, (b, l, e, n, dtype) in enumerate(shapes):
        for group in [list(IMPLS)] if dry else [[impl] for impl in IMPLS]:
            spec = dict(B=b, L=l, E=e, N=n, impls=group, dtype=dtype, repeats=args.repeats, iters=args.iters,
                        block_config=None, copy_bw=None, sfu_rate=None, max_s=args.row_seconds)
            if not budget.fits("scan"):
                got, err = [], _skip("scan", budget)
            else:
                got, err = run_worker("scan", spec, budget.left() - 5)
            envs += [r for r in got if r["kind"] == "env"]
            got = [r for r in got if r["kind"] == "scan"]
            for impl in group:
                for mode in ("fwd", "fwd+bwd"):
                    if not any(r["impl"] == impl and r["mode"] == mode for r in got):
                        got.append(dict(kind="scan", B=b, L=l, E=e, N=n, impl=impl, mode=mode, dtype=dtype,
                                        ms=None, error=err or "no row printed"))
            rows += got
        if i == 0:
            auto, env = part_auto(budget, dry, args)
            envs += env
    return rows, auto, envs


def part_auto(budget: Budget, dry: bool, args) -> tuple[dict, list[dict]]:
    b, l, e, n, dtype = DRY_AUTO_SHAPE if dry else AUTO_SHAPE
    if not budget.fits("auto"):
        return dict(B=b, L=l, E=e, N=n, dtype=dtype, error=_skip("auto", budget)), []
    spec = dict(B=b, L=l, E=e, N=n, dtype=dtype, repeats=args.repeats, iters=args.iters, max_s=args.row_seconds)
    # A first call: no autotune cache from an earlier run (on disk, wherever the tuner keeps it), no pin.
    fresh = tempfile.mkdtemp(prefix="gpu_check_auto_")
    got, err = run_worker("auto", spec, budget.left() - 5,
                          env=dict(XDG_CACHE_HOME=fresh, MAMBA_JAX_SCAN_AUTOTUNE_DIR=fresh, MAMBA_JAX_SCAN_AUTO=None))
    auto = next((r for r in got if r["kind"] == "auto"), dict(B=b, L=l, E=e, N=n, dtype=dtype))
    if err:
        auto["error"] = err
    return auto, [r for r in got if r["kind"] == "env"]


def part_families(budget: Budget, dry: bool, args) -> tuple[list[dict], list[dict]]:
    names = args.families
    # One process per family on a device (its own peak memory); the dry run shares one (CPU: no peak, and
    # process starts are most of its cost). The worker is the same.
    groups = [names] if dry else [[name] for name in names]
    rows, envs = [], []
    for group in groups:
        if not budget.fits("family"):
            rows += [dict(kind="family", name=nm, error=_skip("family", budget)) for nm in group]
            continue
        # The worker skips the training step once this deadline has passed (a forward row is still worth it).
        spec = dict(names=group, smoke=dry, seconds=args.seconds, scan_impl=args.scan_impl, repeats=args.repeats,
                    steps=args.steps, deadline=time.time() + budget.left() - MIN_S["family"] * budget.scale / 2)
        got, err = run_worker("family", spec, budget.left() - 5)
        envs += [r for r in got if r["kind"] == "env"]
        got = [r for r in got if r["kind"] == "family"]
        done = {r["name"] for r in got}
        rows += got + [dict(kind="family", name=nm, error=err or "no row printed") for nm in group if nm not in done]
    return rows, envs


def main() -> None:
    if len(sys.argv) >= 2 and sys.argv[1] == "--_pytest":
        worker_pytest(sys.argv[2:])
        return
    if len(sys.argv) == 4 and sys.argv[1] == "--_worker":
        _sscan()  # the checkout on sys.path and kernels/ aliased before any mamba_jax import
        dict(scan=worker_scan, auto=worker_auto, family=worker_family)[sys.argv[2]](json.loads(sys.argv[3]))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["1", "2", "all"], default="all")
    ap.add_argument("--dry-run", action="store_true", help="tiny shapes and smoke configs, for CPU; JSON to a temp file")
    ap.add_argument("--json", default=None, help=f"results file to merge into (default {DEFAULT_JSON}; dry run: temp)")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds per part (default 285 for one part, 235 each for both; dry run 900)")
    ap.add_argument("--scan-impl", default=None,
                    help="the families' model.scan_impl (default pallas; dry run: the smoke config's)")
    ap.add_argument("--seconds", type=float, default=4.0, help="family forward input length (8 kHz models: 4 s)")
    ap.add_argument("--repeats", type=int, default=None, help="timings per row (default 5; dry run 1)")
    ap.add_argument("--iters", type=int, default=None, help="scan calls per timing (default 20; dry run 1)")
    ap.add_argument("--row-seconds", type=float, default=3.0,
                    help="timing seconds per scan row at most (fewer calls for a slow path)")
    ap.add_argument("--steps", type=int, default=None, help="timed train steps per family (default 5; dry run 1)")
    ap.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES),
                    help="part 2's models (default all, in this order)")
    ap.add_argument("--table", action="store_true", help="only print the tables of --json")
    args = ap.parse_args()
    dry = args.dry_run
    if args.json is None:
        args.json = os.path.join(tempfile.mkdtemp(prefix="gpu_check_"), "gpu_check.json") if dry else DEFAULT_JSON
    if args.table:
        with open(args.json) as fh:
            print(tables(json.load(fh)))
        return
    args.repeats = args.repeats or (1 if dry else 5)
    args.iters = args.iters or (1 if dry else 20)
    args.steps = args.steps or (1 if dry else 5)
    args.scan_impl = args.scan_impl or (None if dry else "pallas")
    if dry:
        args.seconds = min(args.seconds, 0.25)
    parts = ["1", "2"] if args.part == "all" else [args.part]
    budget_s = args.budget or (900 if dry else 285 if len(parts) == 1 else 235)
    scale = 0.05 if dry else 1.0
    from importlib.metadata import version  # this process never imports jax: rows run in their own processes

    print(f"gpu_check: part(s) {', '.join(parts)}, {budget_s:.0f} s each, jax {version('jax')}"
          + (", dry run (tiny shapes)" if dry else "") + f" -> {args.json}", flush=True)
    data = {}
    for part in parts:
        t0, budget = _now(), Budget(budget_s, scale)
        if part == "1":
            kernel_tests = part_kernel_tests(budget, dry, budget_s / 2)
            print(f"kernel tests: {kernel_tests}", flush=True)
            scan, auto, envs = part_scan(budget, dry, args)
            sections = dict(kernel_tests=kernel_tests, scan=scan, auto=auto)
        else:
            families, envs = part_families(budget, dry, args)
            sections = dict(families=families)
        info = dict(host_info(), **({k: v for k, v in envs[0].items() if k != "kind"} if envs else {}),
                    wall_s=round(_now() - t0, 1), budget_s=budget_s, dry_run=dry)
        data = merge(args.json, part, info, sections)
        print(f"part {part}: {info['wall_s']} s", flush=True)
    print(tables(data), flush=True)


if __name__ == "__main__":
    from mamba_jax.xla_cpu import apply_cpu_flags

    apply_cpu_flags()  # the CPU flags the CLI and train.py use, before JAX starts (mamba_jax/xla_cpu.py)
    main()
