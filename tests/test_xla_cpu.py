"""``mamba_jax.xla_cpu.apply_cpu_flags``: which XLA CPU flags the entry points add, when it must not touch XLA_FLAGS,
and that importing mamba_jax adds none."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest

from mamba_jax.xla_cpu import SCHEDULER, WIDE_VECTORS, CpuFlagsTooLate, _cpu_has_avx512, apply_cpu_flags

FACTS = dict(avx512=True, jaxlib_ok=True, started=False)


def test_appends_the_flags_to_existing_flags():
    env = {"XLA_FLAGS": "--xla_backend_optimization_level=0"}
    assert apply_cpu_flags(env, **FACTS) == [SCHEDULER, WIDE_VECTORS]
    assert env["XLA_FLAGS"] == f"--xla_backend_optimization_level=0 {SCHEDULER} {WIDE_VECTORS}"
    env = {}
    assert apply_cpu_flags(env, **{**FACTS, "avx512": False}) == [SCHEDULER]  # wide vectors only with AVX-512
    assert env["XLA_FLAGS"] == SCHEDULER


def test_the_users_own_setting_wins():
    env = {"XLA_FLAGS": "--xla_cpu_prefer_vector_width=256"}
    assert apply_cpu_flags(env, **FACTS) == [SCHEDULER]
    assert env["XLA_FLAGS"] == f"--xla_cpu_prefer_vector_width=256 {SCHEDULER}"
    env = {"XLA_FLAGS": "--xla_cpu_enable_concurrency_optimized_scheduler=true"}
    assert apply_cpu_flags(env, **FACTS) == [WIDE_VECTORS]


@pytest.mark.parametrize("env, facts", [
    ({"MAMBA_JAX_CPU_FLAGS": "off"}, {}),  # opt-out
    ({"MAMBA_JAX_CPU_FLAGS": "0"}, {}),
    ({}, {"jaxlib_ok": False}),  # a jaxlib whose XLA may not know the flags (an unknown flag aborts XLA)
])
def test_leaves_xla_flags_alone(env, facts):
    before = dict(env)
    assert apply_cpu_flags(env, **{**FACTS, **facts}) == []
    assert env == before


def test_too_late_warns_and_changes_nothing():
    env = {"XLA_FLAGS": "--xla_backend_optimization_level=0"}
    with pytest.warns(CpuFlagsTooLate, match=r"JAX's backend has started.*xla_cpu_enable_concurrency"):
        assert apply_cpu_flags(env, **{**FACTS, "started": True}) == []
    assert env == {"XLA_FLAGS": "--xla_backend_optimization_level=0"}


def test_idempotent_and_silent_once_applied():
    """A second call (an entry point after the test suite's conftest, a notebook cell run twice) adds nothing,
    and warns nothing even after the backend started: the flags XLA read are the ones wanted."""
    env = {}
    assert apply_cpu_flags(env, **FACTS) == [SCHEDULER, WIDE_VECTORS]
    first = dict(env)
    assert apply_cpu_flags(env, **FACTS) == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert apply_cpu_flags(env, **{**FACTS, "started": True}) == []
    assert env == first


def test_cpuinfo_parsing(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512bw\n")
    assert _cpu_has_avx512(str(info))
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512_bf16\n")  # only exact flag names count
    assert not _cpu_has_avx512(str(info))
    assert not _cpu_has_avx512(str(tmp_path / "missing"))


def test_import_alone_sets_nothing_the_call_sets_them_before_the_backend_starts():
    """A real interpreter without XLA_FLAGS: importing mamba_jax (and a model module) leaves XLA_FLAGS unset;
    the explicit call sets the flags, twice is once; after the first JAX computation the call warns and
    changes nothing."""
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "MAMBA_JAX_CPU_FLAGS")}
    early = ("import os, mamba_jax, mamba_jax.models; print(repr(os.environ.get('XLA_FLAGS')))\n"
             "from mamba_jax.xla_cpu import apply_cpu_flags\n"
             "print(len(apply_cpu_flags())); print(len(apply_cpu_flags())); print(os.environ['XLA_FLAGS'])")
    late = ("import os, warnings, jax; jax.numpy.zeros(1).block_until_ready()\n"
            "from mamba_jax.xla_cpu import apply_cpu_flags\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    warnings.simplefilter('always'); print(apply_cpu_flags(), [x.category.__name__ for x in w])\n"
            "print(repr(os.environ.get('XLA_FLAGS')))")
    run = lambda code: subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                      check=True).stdout.strip().splitlines()
    wanted = [SCHEDULER] + ([WIDE_VECTORS] if _cpu_has_avx512() else [])
    assert run(early) == ["None", str(len(wanted)), "0", " ".join(wanted)]
    assert run(late) == ["[] ['CpuFlagsTooLate']", "None"]


def test_the_scheduler_flag_reaches_xla():
    """The flag is one XLA knows and it takes effect: four independent branches (a wide temporary and a loop
    each) that the default scheduler keeps alive together need less temporary memory with it (compile-time
    memory analysis: 37.8 MB against 12.6 MB with jaxlib 0.11.2)."""
    code = """
import jax, jax.numpy as jnp
def f(x):
    outs = []
    for i in range(4):
        y = jnp.sin(x * (i + 1.0))
        y = jax.lax.scan(lambda h, r: (h * 0.5 + r, h), jnp.zeros(x.shape[1:]), y)[1]
        outs.append(jnp.tanh(y).sum())
    return sum(outs)
print(jax.jit(f).lower(jax.ShapeDtypeStruct((4096, 256), jnp.float32)).compile().memory_analysis().temp_size_in_bytes)
"""
    base = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "MAMBA_JAX_CPU_FLAGS")}
    temp = lambda flags: int(subprocess.run([sys.executable, "-c", code], env={**base, "XLA_FLAGS": flags},
                                            capture_output=True, text=True, check=True).stdout)
    assert temp(SCHEDULER) < 0.6 * temp("")
