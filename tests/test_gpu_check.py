"""``bash bench/gpu_check.sh --dry-run``: the one-shot GPU check runs every part at tiny shapes on CPU, so it
cannot rot before a GPU session runs it for real.

The checks run as on the device machine, where the project is not pip-installed: the interpreter starts with
``-S`` (no site .pth files, so no editable install and no ``mamba_jax_kernels`` alias) and finds its
dependencies on ``PYTHONPATH`` only. Cost: ~45 CPU-s on 2 cores (part 1: the kernel-test collection, three
scan processes, auto; part 2: one family's smoke forward and training step); every family is in the ``slow``
test.
"""

from __future__ import annotations

import json
import os
import pathlib
import site
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def uninstalled_env() -> dict:
    """This venv's packages without its .pth files: ``mamba_jax_kernels`` is not importable there."""
    return dict(os.environ, PYTHON=f"{sys.executable} -S", PYTHONPATH=os.pathsep.join(site.getsitepackages()))


def gpu_check(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    r = subprocess.run(["bash", "bench/gpu_check.sh", "--dry-run", *args], cwd=ROOT, env=uninstalled_env(),
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def test_uninstalled_checkout_cannot_import_the_alias_by_itself():
    """The premise of the tests below: without bench/'s alias, a ``-S`` run cannot import the kernels."""
    r = subprocess.run([sys.executable, "-S", "-c", "import mamba_jax_kernels"], cwd=ROOT, env=uninstalled_env(),
                       capture_output=True, text=True)
    assert r.returncode != 0 and "No module named 'mamba_jax_kernels'" in r.stderr


def check_results(data: dict, families: list[str]) -> None:
    import jax

    assert set(data["parts"]) == {"1", "2"}  # the second part merged into the first part's file
    assert data["device"] == jax.devices()[0].device_kind and data["jax"] == jax.__version__
    assert data["commit"] and data["date"]
    kt = data["kernel_tests"]
    assert kt["exit_code"] == 0 and kt["failed"] == 0 and kt["passed"] + kt["skipped"] > 0, kt
    rows = {(r["impl"], r["mode"]): r for r in data["scan"]}
    assert set(rows) == {(i, m) for i in ("pallas", "associative", "sequential") for m in ("fwd", "fwd+bwd")}
    assert all(r["error"] is None and r["ms"] > 0 for r in rows.values()), rows
    auto = data["auto"]
    assert "error" not in auto and auto["fwd+bwd"]["first_call_s"] > 0 and auto["fwd"]["warm_ms"] > 0, auto
    assert [r["name"] for r in data["families"]] == families
    for r in data["families"]:
        assert r["fwd_ms"] > 0 and r["train_steps_per_s"] > 0 and r["train_loss"] == r["train_loss"], r
        assert not any(k.endswith("error") for k in r), r


def test_dry_run_every_part_merges_into_one_json(tmp_path):
    out = tmp_path / "gpu_check.json"
    gpu_check("--part", "1", "--json", str(out))
    r = gpu_check("--part", "2", "--json", str(out), "--families", "mambatasnet_s")
    check_results(json.loads(out.read_text()), ["mambatasnet_s"])
    # The markdown tables printed at the end hold both parts.
    assert "| 1, 32, 64, 16 | float32 | pallas |" in r.stdout and "| mambatasnet_s |" in r.stdout
    assert "Kernel tests (`pytest -m gpu tests/kernels`)" in r.stdout


@pytest.mark.slow
def test_dry_run_all_families(tmp_path):
    """Both parts in one call, every separation family's smoke forward and training step (~150 CPU-s)."""
    out = tmp_path / "gpu_check.json"
    gpu_check("--json", str(out), timeout=1800)
    check_results(json.loads(out.read_text()),
                  ["sepmamba_s", "sepmamba_m", "sepmamba_causal_s", "mambatasnet_s", "dpmamba_s", "spmamba"])


def test_spent_budget_skips_rows_with_a_note(tmp_path):
    """A part whose budget is spent starts no row: each says so, the file is still written, the exit is 0."""
    out = tmp_path / "gpu_check.json"
    gpu_check("--budget", "1", "--json", str(out), "--families", "sepmamba_s", "spmamba")
    data = json.loads(out.read_text())
    assert data["kernel_tests"]["error"].startswith("skipped: ")
    assert len(data["scan"]) == 6 and all(r["error"].startswith("skipped: ") for r in data["scan"])
    assert data["auto"]["error"].startswith("skipped: ")
    assert [r["name"] for r in data["families"]] == ["sepmamba_s", "spmamba"]
    assert all(r["error"].startswith("skipped: ") for r in data["families"])


def test_a_crashing_row_is_recorded_not_fatal():
    """A row process that dies gives an error with its last stderr lines; the caller goes on."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import gpu_check as gc_mod
    finally:
        sys.path.pop(0)
    rows, err = gc_mod.run_worker("no-such-worker", {}, timeout=120)
    assert rows == [] and err.startswith("exit 1: ") and "KeyError: 'no-such-worker'" in err
