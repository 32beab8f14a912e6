"""bench/gpu_check.py's results: the run's host facts, the merge into the results JSON, the markdown tables."""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMPLS = ("pallas", "associative", "sequential")


def host_info() -> dict:
    info = dict(date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True)
        info["commit"] = commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "") or None
    except OSError:
        info["commit"] = None
    info["commit"] = info["commit"] or os.environ.get("MAMBA_JAX_COMMIT") or "unknown (no git here)"
    try:
        smi = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=30).stdout
        m = re.search(r"Driver Version:\s*(\S+).*?CUDA Version:\s*(\S+)", smi)
        if m:
            info.update(driver=m.group(1), cuda_driver_api=m.group(2))
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        from importlib.metadata import distributions

        info["jax_plugins"] = sorted(f"{d.metadata['Name']}=={d.version}" for d in distributions()
                                     if re.match(r"jax[-_]cuda\d+[-_]", d.metadata["Name"] or ""))
    except Exception:  # metadata of a broken install: not worth failing the check
        pass
    return info


ROW_KEYS = dict(scan=("B", "L", "E", "N", "dtype", "impl", "mode"), families=("name",))


def _skipped(row) -> bool:
    return isinstance(row, dict) and str(row.get("error") or "").startswith("skipped: ")


def _keep_measured(old, new):
    """A skipped section does not replace a measured one (a rerun that ran out of budget)."""
    return old if _skipped(new) and old and not _skipped(old) else new


def _merge_rows(old: list | None, new: list, keys: tuple[str, ...]) -> list:
    """Rows by key: a rerun (e.g. ``--families spmamba``) fills in or replaces its rows and keeps the others;
    a skipped row never replaces a measured one."""
    key = lambda r: tuple(r.get(k) for k in keys)
    merged = {key(r): r for r in old or []}
    for r in new:
        merged[key(r)] = _keep_measured(merged.get(key(r)), r)
    return list(merged.values())


def merge(path: str, part: str, info: dict, sections: dict) -> dict:
    """Reads ``path`` (if any), replaces this part's sections and header, writes it back atomically."""
    data = {}
    if os.path.exists(path):
        with open(path) as fh:
            data = json.load(fh)
    data.setdefault("parts", {})[part] = info
    data.update({k: v for k, v in info.items() if k not in ("wall_s", "budget_s")})
    for name, new in sections.items():
        data[name] = (_merge_rows(data.get(name), new, ROW_KEYS[name]) if name in ROW_KEYS
                      else _keep_measured(data.get(name), new))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=1)
    os.replace(tmp, path)
    return data


def _f(v, spec=".2f") -> str:
    return "-" if v is None else format(v, spec)


def tables(data: dict) -> str:
    """The markdown tables of a results JSON (BENCHMARKS.md)."""
    out = [f"GPU check on {data.get('device', '?')} (jax {data.get('jax', '?')}, jaxlib {data.get('jaxlib', '?')}, "
           f"{data.get('platform_version', '?')}, driver {data.get('driver', '?')}), commit {data.get('commit', '?')}, "
           f"{data.get('date', '?')}", ""]
    kt = data.get("kernel_tests")
    if kt:
        out += [f"Kernel tests (`pytest -m gpu tests/kernels`): {kt.get('passed', '-')} passed, "
                f"{kt.get('failed', '-')} failed, {kt.get('skipped', '-')} skipped"
                + (f"; {kt['error']}" if kt.get("error") else ""), ""]
        out += [f"- FAILED {f}" for f in kt.get("failures", [])]
    scan = data.get("scan") or []
    if scan:
        out += ["| B, L, E, N | dtype | impl | fwd ms | fwd+bwd ms | fwd peak MB | fwd+bwd peak MB | fwd+bwd vs associative |",
                "|---|---|---|---:|---:|---:|---:|---:|"]
        key = lambda r: (r["B"], r["L"], r["E"], r["N"], r["dtype"])
        for k in dict.fromkeys(key(r) for r in scan):
            by = {(r["impl"], r["mode"]): r for r in scan if key(r) == k}
            assoc = (by.get(("associative", "fwd+bwd")) or {}).get("ms")
            for impl in IMPLS:
                f, fb = by.get((impl, "fwd"), {}), by.get((impl, "fwd+bwd"), {})
                err = f.get("error") or fb.get("error")
                speed = assoc / fb["ms"] if assoc and fb.get("ms") else None
                out.append(f"| {', '.join(map(str, k[:4]))} | {k[4]} | {impl} | {_f(f.get('ms'), '.3f')} | "
                           f"{_f(fb.get('ms'), '.3f')} | {_f(f.get('device_peak_MB'), '.0f')} | "
                           f"{_f(fb.get('device_peak_MB'), '.0f')} | {_f(speed)}x |" + (f" {err[:120]}" if err else ""))
        out.append("")
    auto = data.get("auto")
    if auto:
        fb, fw = auto.get("fwd+bwd") or {}, auto.get("fwd") or {}
        chosen = ", ".join(sorted(set((auto.get("chosen") or {}).values()))) or auto.get("chosen_note", "-")
        out += [f"`auto` at ({auto['B']}, {auto['L']}, {auto['E']}, {auto['N']}) {auto['dtype']}: first fwd+bwd call "
                f"{_f(fb.get('first_call_s'))} s (warm {_f(fb.get('warm_ms'), '.3f')} ms), first fwd call "
                f"{_f(fw.get('first_call_s'))} s (warm {_f(fw.get('warm_ms'), '.3f')} ms); chose {chosen}"
                + "".join(f"; {e}" for e in (auto.get("error"), fb.get("error"), fw.get("error")) if e), ""]
        for sig, times in (auto.get("measured_ms") or {}).items():
            out.append(f"- `{sig}`: " + ", ".join(f"{k} {_f(v, '.3f')} ms" for k, v in times.items()))
        out.append("")
    fam = data.get("families") or []
    if fam:
        secs = next((r["seconds"] for r in fam if r.get("seconds")), 4.0)
        out += [f"| model | fwd ms ({secs:g} s, batch 1) | fwd peak GB | published ms / GB | train steps/s | batch x s | "
                "train peak GB |", "|---|---:|---:|---:|---:|---:|---:|"]
        for r in fam:
            pub = r.get("published")
            err = "; ".join(r[k] for k in ("error", "fwd_error", "train_error") if r.get(k))
            out.append(f"| {r['name']} | {_f(r.get('fwd_ms'))} | {_f(r.get('fwd_peak_GB'))} | "
                       f"{'-' if not pub else '%s / %.2f' % (pub['ms'], pub['GB'])} | {_f(r.get('train_steps_per_s'))} | "
                       f"{r.get('train_batch', '-')} x {r.get('train_seconds', '-')} | {_f(r.get('train_peak_GB'))} |"
                       + (f" {err[:160]}" if err else ""))
        out.append("")
    return "\n".join(out)
