"""``mamba_jax.xla_cpu``: when importing mamba_jax asks XLA for 512-bit CPU vectors, and when it must not."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mamba_jax.xla_cpu import FLAG, _cpu_has_avx512, prefer_wide_vectors

FACTS = dict(avx512=True, jaxlib_ok=True, started=False)


def test_appends_the_flag_to_existing_flags():
    env = {"XLA_FLAGS": "--xla_backend_optimization_level=0"}
    assert prefer_wide_vectors(env, **FACTS)
    assert env["XLA_FLAGS"] == f"--xla_backend_optimization_level=0 {FLAG}"
    env = {}
    assert prefer_wide_vectors(env, **FACTS) and env["XLA_FLAGS"] == FLAG


@pytest.mark.parametrize("env, facts", [
    ({"XLA_FLAGS": "--xla_cpu_prefer_vector_width=256"}, {}),  # the user's choice wins
    ({"MAMBA_JAX_WIDE_VECTORS": "off"}, {}),  # opt-out
    ({"MAMBA_JAX_WIDE_VECTORS": "0"}, {}),
    ({}, {"avx512": False}),  # no AVX-512
    ({}, {"jaxlib_ok": False}),  # a jaxlib whose XLA may not know the flag (an unknown flag aborts XLA)
    ({}, {"started": True}),  # too late: XLA already read XLA_FLAGS
])
def test_leaves_xla_flags_alone(env, facts):
    before = dict(env)
    assert not prefer_wide_vectors(env, **{**FACTS, **facts})
    assert env == before


def test_cpuinfo_parsing(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512bw\n")
    assert _cpu_has_avx512(str(info))
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512_bf16\n")  # only exact flag names count
    assert not _cpu_has_avx512(str(info))
    assert not _cpu_has_avx512(str(tmp_path / "missing"))


def test_import_sets_it_only_before_the_backend_starts():
    """A real interpreter: importing mamba_jax first sets the flag (on an AVX-512 CPU); importing it after the
    first JAX computation does not touch XLA_FLAGS."""
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "MAMBA_JAX_WIDE_VECTORS")}
    first = "import os, mamba_jax; print(os.environ.get('XLA_FLAGS', ''))"
    late = "import os, jax; jax.numpy.zeros(1).block_until_ready(); import mamba_jax; print(os.environ.get('XLA_FLAGS', ''))"
    run = lambda code: subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                      check=True).stdout.strip()
    assert run(first) == (FLAG if _cpu_has_avx512() else "")
    assert run(late) == ""
