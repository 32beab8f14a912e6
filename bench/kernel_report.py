"""Compile the selective-scan kernels for sm_90 on a machine without a GPU, and report their resources.

    .venv/bin/python bench/kernel_report.py                    # this checkout's kernels (default configs)
    .venv/bin/python bench/kernel_report.py --repo /path/to/other/checkout   # e.g. main's kernels
    .venv/bin/python bench/kernel_report.py --json -

Each kernel variant is lowered for CUDA under an abstract H100 device (the whole Pallas -> Triton-IR step),
its Triton IR is captured, and the ``triton`` wheel's own compiler (``triton.compile`` for
``GPUTarget("cuda", 90, 32)``, then its ptxas) turns it into a cubin. The wheel's ``cuobjdump`` reports
registers, stack (spills) and shared memory; its SASS gives the static hot loop: the instructions of the
innermost loops, divided by the (t, e, n) elements one thread handles per iteration of them. This is Triton's
pipeline, not the copy XLA carries inside jaxlib, so the figures are close to the deployed ones, not equal.

Needs the test extra (``triton``). Nothing here runs a kernel.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------------------------- capture Triton IR


@dataclasses.dataclass
class TritonKernel:
    name: str
    ttir: str
    num_warps: int
    num_stages: int


def capture(fn, *args) -> list[TritonKernel]:
    """Lowers ``jax.jit(fn)(*args)`` for CUDA under an abstract H100 and returns every pallas_call's Triton IR."""
    import jax
    from jax._src.pallas.triton import pallas_call_registration as reg
    from jax.sharding import AbstractDevice, AbstractMesh

    got: list[TritonKernel] = []
    original = reg.lowering.lower_jaxpr_to_triton_module

    def spy(*a, **kw):
        result = original(*a, **kw)
        caller = sys._getframe(1).f_locals  # pallas_call_lowering: its name, num_warps, num_stages
        got.append(TritonKernel(name=str(caller.get("name", "kernel")),
                                ttir=result.module.operation.get_asm(enable_debug_info=False),
                                num_warps=int(caller["num_warps"]), num_stages=int(caller["num_stages"])))
        return result

    gpu = AbstractDevice(device_kind="NVIDIA H100", num_cores=None, platform="gpu")
    reg.lowering.lower_jaxpr_to_triton_module = spy
    try:
        with jax.sharding.use_abstract_mesh(AbstractMesh((1,), ("x",), abstract_device=gpu)):
            jax.jit(fn).trace(*args).lower(lowering_platforms=("cuda",))
    finally:
        reg.lowering.lower_jaxpr_to_triton_module = original
    return got


# --------------------------------------------------------------------------------------- sm_90 compile


def _nvidia_bin(tool: str) -> str:
    import triton

    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", tool)


@dataclasses.dataclass
class Compiled:
    name: str
    num_warps: int
    registers: int
    stack_bytes: int
    spill_instructions: int  # LDL/STL in the SASS
    shared_bytes: int
    sass: str


def compile_sm90(k: TritonKernel, workdir: str) -> Compiled:
    """triton.compile for sm_90 and cuobjdump of the cubin. Raises on any compile error."""
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton's (and XLA's) default: fuse mul + add
    import triton
    from triton.backends.compiler import GPUTarget

    path = os.path.join(workdir, f"{k.name}.ttir")
    with open(path, "w") as fh:
        fh.write(k.ttir)
    ck = triton.compile(path, target=GPUTarget("cuda", 90, 32),
                        options={"num_warps": k.num_warps, "num_stages": k.num_stages})
    cubin = os.path.join(workdir, f"{k.name}.cubin")
    with open(cubin, "wb") as fh:
        fh.write(ck.asm["cubin"])
    usage = subprocess.run([_nvidia_bin("cuobjdump"), "--dump-resource-usage", cubin], capture_output=True,
                           text=True, check=True).stdout
    sass = subprocess.run([_nvidia_bin("cuobjdump"), "-sass", cubin], capture_output=True, text=True,
                          check=True).stdout

    def field(key):
        m = re.search(rf"\b{key}:(\d+)", usage)
        return int(m.group(1)) if m else 0

    shared = field("SHARED") + int(ck.metadata.shared)  # static + Triton's dynamic shared memory
    return Compiled(name=k.name, num_warps=k.num_warps, registers=field("REG"), stack_bytes=field("STACK"),
                    spill_instructions=len(re.findall(r"\b(LDL|STL)\b", sass)), shared_bytes=shared, sass=sass)


_INSTR = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(.*?);")


def innermost_loops(sass: str) -> list[tuple[int, int, int]]:
    """(start, end, instruction count) of every loop (backward BRA) that contains no other loop."""
    instrs = [(int(a, 16), text) for a, text in _INSTR.findall(sass)]
    loops = []
    for addr, text in instrs:
        m = re.search(r"\bBRA\s+(?:`\(\.L_x_\d+\)|0x([0-9a-f]+))", text)
        target = None
        if m and m.group(1):
            target = int(m.group(1), 16)
        if target is not None and target <= addr:
            loops.append((target, addr))
    loops = [(s, e) for s, e in loops if s < e]  # not the `BRA self` trap after EXIT
    inner = [lp for lp in loops if not any(o != lp and lp[0] <= o[0] and o[1] <= lp[1] for o in loops)]
    return [(s, e, sum(1 for a, _ in instrs if s <= a <= e)) for s, e in inner]


def _label_loops(sass: str) -> str:
    """cuobjdump prints branch targets as labels (`(.L_x_3)); give them addresses so loops can be found."""
    labels = {}
    lines = sass.splitlines()
    pending = []
    for line in lines:
        m = re.match(r"\s*\.L_x_(\d+):", line)
        if m:
            pending.append(m.group(1))
            continue
        a = re.search(r"/\*([0-9a-f]{4,})\*/", line)
        if a and pending:
            for p in pending:
                labels[p] = a.group(1)
            pending = []
    return re.sub(r"`\(\.L_x_(\d+)\)", lambda m: "0x" + labels.get(m.group(1), "ffffffff"), sass)


def hot_loop(c: Compiled, elements_per_iteration: int) -> dict:
    """Instructions of the innermost loops, per (t, e, n) element handled by one thread per iteration."""
    loops = innermost_loops(_label_loops(c.sass))
    n = sum(cnt for _, _, cnt in loops)
    per_thread = elements_per_iteration / (32 * c.num_warps)
    return dict(loops=len(loops), loop_instructions=n, elements_per_thread=per_thread,
                per_element=n / per_thread if loops else None)


# ------------------------------------------------------------------------------------ kernel variants


def _cases():
    """(label, kwargs of selective_scan, shape) for the variants the library runs: with and without z/D/bias/
    softplus, groups, bf16, the time-parallel chunks, forward only and forward + backward."""
    return [
        ("mamba-block bf16 B=16 L=1024 E=1024", dict(b=16, l=1024, e=1024, g=None, dtype="bfloat16", full=True)),
        ("mamba-block bf16 B=1 L=4000 E=1024", dict(b=1, l=4000, e=1024, g=None, dtype="bfloat16",
                                                                  full=True)),
        ("mamba-block fp32 B=1 L=16000 E=128", dict(b=1, l=16000, e=128, g=None, dtype="float32", full=True)),
        ("bare fp32 G=2 B=2 L=300 E=128", dict(b=2, l=300, e=128, g=2, dtype="float32", full=False)),
    ]


def _inputs(b, l, e, g, dtype, full, n=16):
    """Abstract inputs of selective_scan (ShapeDtypeStructs): z, D, delta_bias with ``full``."""
    import jax
    import jax.numpy as jnp

    dt = jnp.dtype(dtype)
    sd = lambda *s, d=dt: jax.ShapeDtypeStruct(s, d)
    bc = (b, l, n) if g is None else (b, l, g, n)
    x = dict(u=sd(b, l, e), delta=sd(b, l, e), A=sd(e, n, d=jnp.float32), B=sd(*bc), C=sd(*bc))
    if full:
        x.update(z=sd(b, l, e), D=sd(e, d=jnp.float32), delta_bias=sd(e, d=jnp.float32))
    return x


def program(selective_scan, cfg, *, full: bool, backward: bool):
    """The function of the inputs dict whose kernels are captured: the scan (with D, z, delta_bias and softplus
    when ``full``) compiled for the GPU with ``cfg``, and with ``backward`` its VJP for a ones cotangent."""
    import jax
    import jax.numpy as jnp

    def fwd(x):
        kw = dict(D=x["D"], z=x["z"], delta_bias=x["delta_bias"], delta_softplus=True) if full else {}
        return selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], **kw, interpret=False, block_config=cfg)

    def fwd_bwd(x):
        out, vjp = jax.vjp(fwd, x)
        return vjp(jnp.ones(out.shape, out.dtype))

    return fwd_bwd if backward else fwd


def _kernel_package(repo: str):
    """The ``kernels/selective_scan`` package of the checkout at ``repo``, loaded from its folder under a private
    name (its imports are relative; installed, it is ``mamba_jax_kernels.selective_scan``). A checkout from before
    that rename (``kernels/__init__.py``, absolute ``kernels.`` imports) is imported as ``kernels.selective_scan``."""
    if os.path.exists(os.path.join(repo, "kernels", "__init__.py")):
        sys.path.insert(0, repo)
        return importlib.import_module("kernels.selective_scan")
    folder = os.path.join(repo, "kernels", "selective_scan")
    name = "_kernel_report_selective_scan"
    spec = importlib.util.spec_from_file_location(name, os.path.join(folder, "__init__.py"),
                                                  submodule_search_locations=[folder])
    pkg = importlib.util.module_from_spec(spec)
    sys.modules[name] = pkg
    spec.loader.exec_module(pkg)
    return pkg


def collect(repo: str, with_backward: bool = True, overrides: dict | None = None) -> list[dict]:
    """Compiles every kernel variant of the checkout at ``repo`` and returns one row per kernel.

    overrides: BlockConfig fields to change from the defaults."""
    pkg = _kernel_package(repo)
    BlockConfig, selective_scan = pkg.BlockConfig, pkg.selective_scan

    cfg = BlockConfig(**(overrides or {}))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, spec in _cases():
            x = _inputs(**spec)
            kernels = capture(program(selective_scan, cfg, full=spec["full"], backward=with_backward), x)
            seen = set()
            for k in kernels:
                if k.name in seen:
                    continue
                seen.add(k.name)
                c = compile_sm90(k, tmp)
                elements = _elements_per_iteration(k.name, cfg, spec)
                row = dict(case=label, kernel=k.name, num_warps=c.num_warps, registers=c.registers,
                           stack_bytes=c.stack_bytes, spill_instructions=c.spill_instructions,
                           shared_bytes=c.shared_bytes, elements_per_iteration=elements)
                row.update(hot_loop(c, elements))
                rows.append(row)
    return rows


def _elements_per_iteration(name: str, cfg, spec) -> int:
    """(t, e, n) elements one program handles per iteration of its innermost loops (N padded to a power of 2)."""
    e = spec["e"] // (spec["g"] or 1)
    n = 1 << max(spec.get("n", 16) - 1, 0).bit_length()
    if hasattr(cfg, "block_t"):  # kernel v2: one [T, N, BD] tile per iteration
        bd = cfg.block_d if "fwd" in name else cfg.block_d_bwd
        return cfg.block_t * n * _pow2_divisor(e, bd)
    return n * _pow2_divisor(e, cfg.block_d)  # kernel v1: one time step of [BD, N] per iteration


def _pow2_divisor(x, cap):
    p = 1
    while p * 2 <= cap and x % (p * 2) == 0:
        p *= 2
    return p


HEADER = (f"{'kernel':<34} {'warps':>5} {'regs':>5} {'stack':>6} {'LDL/STL':>8} {'smem':>7} {'loops':>5} "
          f"{'loop instr':>10} {'elem/thr':>8} {'instr/elem':>10}")


def fmt(r) -> str:
    per = "-" if r["per_element"] is None else f"{r['per_element']:.2f}"
    return (f"{r['kernel']:<34} {r['num_warps']:>5} {r['registers']:>5} {r['stack_bytes']:>6} "
            f"{r['spill_instructions']:>8} {r['shared_bytes']:>7} {r['loops']:>5} {r['loop_instructions']:>10} "
            f"{r['elements_per_thread']:>8.1f} {per:>10}")


def main() -> None:
    import warnings

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", default=REPO, help="checkout whose kernels/ to compile (default: this one)")
    ap.add_argument("--forward-only", action="store_true")
    ap.add_argument("--json", metavar="PATH", help="also write the rows as JSON ('-': stdout)")
    ap.add_argument("--set", nargs="*", default=[], metavar="FIELD=INT", help="BlockConfig overrides")
    args = ap.parse_args()
    overrides = {k: int(v) for k, v in (kv.split("=") for kv in args.set)}
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    rows = collect(os.path.abspath(args.repo), with_backward=not args.forward_only, overrides=overrides)
    case = None
    for r in rows:
        if r["case"] != case:
            case = r["case"]
            print(f"\n{case}\n{HEADER}")
        print(fmt(r))
    if args.json:
        blob = json.dumps(rows, indent=1)
        if args.json == "-":
            print(blob)
        else:
            with open(args.json, "w") as fh:
                fh.write(blob)


if __name__ == "__main__":
    from mamba_jax.xla_cpu import apply_cpu_flags

    apply_cpu_flags()  # the CPU flags the CLI and train.py use, before JAX starts (mamba_jax/xla_cpu.py)
    main()
