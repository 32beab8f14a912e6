"""Importing mamba_jax, or any of its public modules, leaves ``os.environ`` as it was (issue 34): the XLA CPU flags
are the entry points' explicit call (``mamba_jax.xla_cpu.apply_cpu_flags``), not an import side effect."""

from __future__ import annotations

import json
import os
import subprocess
import sys

CODE = """
import importlib, json, os, pkgutil
out = {}
before = dict(os.environ)
import mamba_jax
out["mamba_jax"] = {k: os.environ.get(k) for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k)}
import jax  # JAX's own import sets TF_CPP_MIN_LOG_LEVEL and TPU_SKIP_MDS_QUERY: not ours, so taken as the baseline
before = dict(os.environ)
names = [m.name for m in pkgutil.walk_packages(mamba_jax.__path__, "mamba_jax.")
         if not any(part.startswith("_") for part in m.name.split("."))]
for name in names:
    importlib.import_module(name)
out["modules"] = len(names)
out["all"] = {k: os.environ.get(k) for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k)}
print(json.dumps(out))
"""


def test_import_leaves_os_environ_unchanged():
    """A fresh interpreter without XLA_FLAGS (where the old import added them): ``import mamba_jax`` changes no
    variable at all, and importing every public module and subpackage (``__main__`` modules excepted: they run
    the CLI) changes none beyond what ``import jax`` itself sets."""
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "MAMBA_JAX_CPU_FLAGS")}
    out = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["modules"] > 50  # the walk found the package's modules (86 when written)
    assert result["mamba_jax"] == {}
    assert result["all"] == {}
