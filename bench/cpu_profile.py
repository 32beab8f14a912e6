"""Where CPU inference time goes: time per XLA op family for one separation forward pass.

    .venv/bin/python bench/cpu_profile.py                                   # SepMamba-S and Mamba-TasNet-S, 4 s
    .venv/bin/python bench/cpu_profile.py --configs configs/sepmamba_s.py --seconds 4 --json out.json

Builds the model from its config (random weights: time does not depend on them), compiles ``model(mix)`` on
``--seconds`` of noise at the model's rate, runs it warm, then records ``--runs`` calls with
``jax.profiler`` and reads the per-thunk events of the XLA CPU runtime back (``jax.profiler.ProfileData``).
Each top-level HLO op is put in a family from the compiled HLO: ``scan`` (``while`` loops: the selective
scans, everything inside them included), ``convolution``, ``matmul`` (``dot`` and fusions holding one,
e.g. a LayerNorm fused into ``in_proj``), ``layout copy`` (``copy``/``transpose`` and fusions whose root is
one), ``elementwise`` (other fusions: norms, activations, gating, reductions) and ``other``. Wall time is
``time.perf_counter`` around the same calls; ops of the two CPU threads can overlap, so the families may sum
to more or less than it.

Memory: the trace holds one event per op of every scan step (hundreds of thousands per call), ~10 GB of
RSS for SepMamba-S on 4 s with ``--runs 2``; keep ``--runs`` and ``--seconds`` small.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import glob
import json
import re
import tempfile
import time

FAMILIES = ("scan", "convolution", "matmul", "layout copy", "elementwise", "other")


def _opcodes(hlo_text: str) -> dict[str, str]:
    """instruction name -> family, from the compiled HLO text (fusions classified by kind and root)."""
    comps: dict[str, list[str]] = {}
    current = None
    for line in hlo_text.splitlines():
        m = re.match(r"\s*(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$", line)
        if m and "=" not in line.split("{")[0]:
            current = m.group(1)
            comps[current] = []
        elif current is not None and "=" in line:
            comps[current].append(line)
    root_of = {}
    for name, lines in comps.items():
        for line in lines:
            if line.strip().startswith("ROOT"):
                m = re.search(r"=\s*[^ ]+\s+([\w\-]+)\(", line) or re.search(r"\s([\w\-]+)\(", line)
                root_of[name] = m.group(1) if m else "?"
    fam = {}
    for lines in comps.values():
        for line in lines:
            m = re.match(r"\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.*)$", line)
            if not m:
                continue
            name, rhs = m.groups()
            op = re.search(r"\s([\w\-]+)\(", " " + rhs.split("{")[0] if "{" in rhs[:1] else " " + rhs)
            opcode = op.group(1) if op else "?"
            if opcode == "fusion":
                calls = re.search(r"calls=%?([\w.\-]+)", rhs)
                root = root_of.get(calls.group(1), "?") if calls else "?"
                body = comps.get(calls.group(1), []) if calls else []
                if any(" dot(" in b for b in body):  # XNNPACK/YNNPACK dots with fused prologue/epilogue
                    fam[name] = "matmul"
                elif any(" convolution(" in b for b in body):
                    fam[name] = "convolution"
                elif root in ("copy", "transpose"):
                    fam[name] = "layout copy"
                else:
                    fam[name] = "elementwise"
            elif opcode == "while":
                fam[name] = "scan"
            elif opcode == "convolution":
                fam[name] = "convolution"
            elif opcode in ("dot", "custom-call") and ("dot" in opcode or "matmul" in rhs.lower()):
                fam[name] = "matmul"
            elif opcode in ("copy", "transpose"):
                fam[name] = "layout copy"
            elif opcode in ("reduce", "reduce-window", "select", "add", "multiply", "exponential", "tanh"):
                fam[name] = "elementwise"
            else:
                fam[name] = "other"
    return fam


def _family(op: str, fam: dict[str, str]) -> str:
    if op in fam:
        return fam[op]
    if op.startswith(("ynn_fusion", "xnn_fusion", "dot")):
        return "matmul"
    if op.startswith("while"):
        return "scan"
    if op.startswith("convolution"):
        return "convolution"
    if op.startswith(("copy", "transpose")):
        return "layout copy"
    return "other"


def profile(config_spec: str, seconds: float, runs: int, keep_hlo: bool = False) -> dict:
    import jax
    import numpy as np
    from flax import nnx

    from mamba_jax.config import load_config
    from mamba_jax.models import build_model

    config = load_config(config_spec)
    with config.unlocked() if hasattr(config, "unlocked") else contextlib.nullcontext():
        config.model.check_finite = "off"  # the value check is a host sync outside jit; not part of the model
    model = build_model(config.model, rngs=nnx.Rngs(0))
    rate = int(config.data.sample_rate)
    mix = (0.1 * np.random.default_rng(0).standard_normal((1, int(seconds * rate)))).astype(np.float32)
    graphdef, state = nnx.split(model)
    fwd = jax.jit(lambda st, x: nnx.merge(graphdef, st)(x))
    compiled = fwd.lower(state, mix).compile()
    fam = _opcodes(compiled.as_text())
    compiled(state, mix).block_until_ready()
    t0 = time.perf_counter()
    for _ in range(runs):
        compiled(state, mix).block_until_ready()
    wall = (time.perf_counter() - t0) / runs
    with tempfile.TemporaryDirectory() as tmp:
        jax.profiler.start_trace(tmp)
        for _ in range(runs):
            compiled(state, mix).block_until_ready()
        jax.profiler.stop_trace()
        path = glob.glob(f"{tmp}/**/*.xplane.pb", recursive=True)[-1]
        from jax.profiler import ProfileData

        pd = ProfileData.from_file(path)
        per_op = collections.Counter()
        for plane in pd.planes:
            if plane.name != "/host:CPU":
                continue
            for line in plane.lines:
                events = []
                for ev in line.events:
                    stats = dict(ev.stats)
                    if "hlo_op" in stats:
                        events.append((ev.start_ns, ev.start_ns + ev.duration_ns, str(stats["hlo_op"])))
                events.sort()
                end = -1.0
                for start, stop, op in events:  # top-level events only (a while loop's body ops nest in it)
                    if start >= end:
                        per_op[op] += stop - start
                        end = stop
    by_family = collections.Counter()
    for op, ns in per_op.items():
        by_family[_family(op, fam)] += ns / 1e9 / runs
    n_while = sum(1 for f in fam.values() if f == "scan")
    return dict(config=config_spec, seconds=seconds, runs=runs, wall_s=round(wall, 3), rtf=round(wall / seconds, 3),
                families_s={f: round(by_family.get(f, 0.0), 3) for f in FAMILIES}, while_loops=n_while,
                top_ops=[(op, round(ns / 1e9 / runs, 4), _family(op, fam)) for op, ns in per_op.most_common(8)],
                top_non_scan=[(op, round(ns / 1e9 / runs, 4), _family(op, fam)) for op, ns in per_op.most_common()
                              if _family(op, fam) != "scan"][:12],
                hlo=compiled.as_text() if keep_hlo else None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="+", default=["configs/sepmamba_s.py", "configs/mambatasnet_s.py"])
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", default=None)
    ap.add_argument("--hlo", default=None, help="write each model's compiled HLO to HLO.<i>.txt")
    args = ap.parse_args()
    rows = [profile(c, args.seconds, args.runs, keep_hlo=bool(args.hlo)) for c in args.configs]
    if args.hlo:
        for i, r in enumerate(rows):
            with open(f"{args.hlo}.{i}.txt", "w") as f:
                f.write(r.pop("hlo"))
    print("| model | wall s | RTF | " + " | ".join(FAMILIES) + " |")
    print("|---|---|---|" + "---|" * len(FAMILIES))
    for r in rows:
        fams = " | ".join(f"{r['families_s'][f]:.3f}" for f in FAMILIES)
        print(f"| {r['config']} | {r['wall_s']:.3f} | {r['rtf']:.3f} | {fams} |")
    for r in rows:
        print(r["config"], "top ops:", r["top_ops"])
        print(r["config"], "top ops outside scans:", r["top_non_scan"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    from mamba_jax.xla_cpu import apply_cpu_flags

    apply_cpu_flags()  # the CPU flags the CLI and train.py use, before JAX starts (mamba_jax/xla_cpu.py)
    main()
