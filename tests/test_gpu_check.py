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
    """A part whose budget is spent starts no row: each says so, the file is still written, the exit is 0; a
    skipped row does not replace a measured one already in the file (a rerun fills in, never erases)."""
    out = tmp_path / "gpu_check.json"
    measured = dict(kind="family", name="sepmamba_s", fwd_ms=17.0, train_steps_per_s=3.0)
    out.write_text(json.dumps(dict(parts={}, families=[measured], kernel_tests=dict(passed=31, failed=0))))
    gpu_check("--budget", "1", "--json", str(out), "--families", "sepmamba_s", "spmamba")
    data = json.loads(out.read_text())
    assert data["kernel_tests"] == dict(passed=31, failed=0)
    assert len(data["scan"]) == 6 and all(r["error"].startswith("skipped: ") for r in data["scan"])
    assert data["auto"]["error"].startswith("skipped: ")
    assert data["families"][0] == measured
    assert [r["name"] for r in data["families"]] == ["sepmamba_s", "spmamba"]
    assert data["families"][1]["error"].startswith("skipped: ")


def test_a_crashing_row_is_recorded_not_fatal():
    """A row process that dies gives an error with its last stderr lines; the caller goes on."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import gpu_check as gc_mod
    finally:
        sys.path.pop(0)
    rows, err = gc_mod.run_worker("no-such-worker", {}, timeout=120)
    assert rows == [] and err.startswith("exit 1: ") and "KeyError: 'no-such-worker'" in err


def install_sh(tmp_path, *args: str, smi: str | None) -> subprocess.CompletedProcess:
    """``tools/install.sh ... --dry-run`` (prints the commands) with a fake ``nvidia-smi`` first on PATH:
    ``smi`` is what it prints, or None for one that fails (no driver)."""
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    body = "exit 9" if smi is None else f"cat <<'X'\n{smi}\nX"
    (fake / "nvidia-smi").write_text(f"#!/bin/sh\n{body}\n")
    (fake / "nvidia-smi").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "MAMBA_JAX_CUDA"}
    env["PATH"] = f"{fake}{os.pathsep}{env['PATH']}"
    return subprocess.run(["bash", "tools/install.sh", *args, "--dry-run"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)


SMI = "| NVIDIA-SMI 580.159.04    Driver Version: 580.159.04    CUDA Version: {} |"


@pytest.mark.parametrize("cuda, extra", [("13.0", "cuda13"), ("12.8", "cuda12"), ("14.1", "cuda13")])
def test_install_gpu_picks_the_plugin_the_driver_supports(tmp_path, cuda, extra):
    r = install_sh(tmp_path, "gpu", "test", smi=SMI.format(cuda))
    assert r.returncode == 0, r.stderr
    cmds = [ln for ln in r.stdout.splitlines() if ln.startswith("+ ")]
    assert cmds[1].endswith("-c constraints.txt -e .[test]"), cmds
    assert cmds[2].endswith(f"-c constraints.txt jax[{extra}]==0.11.2"), cmds  # after the pinned jaxlib


@pytest.mark.parametrize("smi, cause", [(None, "nvidia-smi not found or failed"), (SMI.format("11.8"), "CUDA 11")])
def test_install_gpu_without_a_usable_driver_stops_before_installing(tmp_path, smi, cause):
    r = install_sh(tmp_path, "gpu", smi=smi)
    assert r.returncode != 0 and r.stdout == "", r.stdout
    assert r.stderr.startswith("error: tools/install.sh gpu: ") and cause in r.stderr and r.stderr.count("\n") == 1


def test_install_test_is_unchanged(tmp_path):
    """CI's ``bash tools/install.sh test``: the same two pip commands as before the gpu option."""
    r = install_sh(tmp_path, "test", smi=None)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-2:] == [
        "+ .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip",
        "+ .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e .[test]"]
