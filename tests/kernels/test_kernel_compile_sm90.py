"""Compile gate, no GPU needed: every selective-scan kernel variant is lowered for CUDA (abstract H100) and its
Triton IR compiled for sm_90 by the ``triton`` wheel's compiler and ptxas (``bench/kernel_report.py``).

Fails on any lowering or compile error, on a register spill (local-memory stack or LDL/STL instructions), and
if the hot loops of the Mamba-block kernels (z, D, delta_bias, softplus) at (16, 1024, 1024) bf16 and at
SepMamba's first level (1, 16000, 128) fp32 grow past the limits below, in SASS instructions per (t, e, n)
element (BENCHMARKS.md). It prints the figures (``pytest -s`` or ``-rP`` shows them).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile

import pytest

from mamba_jax.ops.scan_autotune import DEFAULT_CANDIDATES
from mamba_jax_kernels.selective_scan import BlockConfig, selective_scan

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Kernel v1 (one time step per iteration) at (16, 1024, 1024) bf16: 41.4 forward, 134.0 backward; v2: 12.9 and
# 67.3 (bench/kernel_report.py, BENCHMARKS.md). Issue 31 asks for at most 12.5 forward (met: 12.4) and 35
# backward. The backward is not there: about 16 of its instructions per element are the dB/dC sums over the
# block's channels, which Triton reduces across lanes with one SHFL + FADD per value and level, and this
# Pallas-Triton kernel cannot choose a layout that keeps channels in registers. The limit is what v3 reaches,
# so that it cannot regress.
FWD_LIMIT = 12.5
BWD_LIMIT = 62.0


def _report_module():
    spec = importlib.util.spec_from_file_location("kernel_report", os.path.join(REPO, "bench", "kernel_report.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules["kernel_report"] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


# (name, inputs, with backward, block config). Between them: all four kernels (forward, forward chunk states,
# backward, backward chunk carry), the forward without saved states, z/D/bias/softplus on and off, fp32 and
# bf16, groups, a padded N, a narrow channel block, one chunk and many, and the block configs that
# impl="auto" may pick on a GPU (mamba_jax/ops/scan_autotune.py).
AUTO_CONFIGS = [c.block_config for c in DEFAULT_CANDIDATES if c.impl == "pallas" and c.block_config != BlockConfig()]
VARIANTS = [
    ("bf16-block-chunked", dict(b=1, l=300, e=64, g=None, dtype="bfloat16", full=True), True, BlockConfig()),
    ("bf16-block-fwd-only", dict(b=1, l=300, e=64, g=None, dtype="bfloat16", full=True), False, BlockConfig()),
    ("bf16-block-B16", dict(b=16, l=1024, e=1024, g=None, dtype="bfloat16", full=True), True, BlockConfig()),
    ("f32-block-L16000", dict(b=1, l=16000, e=128, g=None, dtype="float32", full=True), True, BlockConfig()),
    ("f32-bare-G2-one-chunk", dict(b=16, l=128, e=2048, g=2, dtype="float32", full=False), True, BlockConfig()),
    ("f32-E72-N3", dict(b=2, l=50, e=72, g=None, dtype="float32", full=True, n=3), True, BlockConfig()),
] + [(f"bf16-block-chunked-auto{i}", dict(b=1, l=300, e=64, g=None, dtype="bfloat16", full=True), True, cfg)
     for i, cfg in enumerate(AUTO_CONFIGS)]


@pytest.fixture(scope="module")
def compiled():
    # The test extra installs triton (tools/install.sh test); a bare runtime install (e.g. a GPU host with its
    # own wheels) may lack it.
    pytest.importorskip("triton", reason="the sm_90 compile gate needs the test extra's triton wheel")
    kr = _report_module()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, spec, backward, cfg in VARIANTS:
            x = kr._inputs(**spec)
            kernels = kr.capture(kr.program(selective_scan, cfg, full=spec["full"], backward=backward), x)
            assert kernels, name
            for k in kernels:
                c = kr.compile_sm90(k, tmp)  # raises on a compile error
                elements = kr._elements_per_iteration(k.name, cfg, spec)
                rows[(name, k.name)] = (c, kr.hot_loop(c, elements))
    return rows


def test_every_variant_compiles_for_sm90_without_spills(compiled):
    kinds = {kernel for _, kernel in compiled}
    assert kinds == {"selective_scan_fwd", "selective_scan_fwd_chunk_states", "selective_scan_bwd",
                     "selective_scan_bwd_chunk_carry"}, kinds
    for key, (c, loop) in compiled.items():
        assert c.stack_bytes == 0 and c.spill_instructions == 0, (key, c.stack_bytes, c.spill_instructions)
        assert 0 < c.registers <= 255, (key, c.registers)
        assert loop["loops"] >= 1, key  # the time loop survived as a loop


@pytest.mark.parametrize("variant", ["bf16-block-B16", "f32-block-L16000"])
def test_hot_loop_instructions_per_element(compiled, variant):
    """SASS instructions per (t, e, n) element in the hot loops of the forward and backward kernels."""
    figures = {kernel: loop["per_element"] for (name, kernel), (_, loop) in compiled.items() if name == variant}
    print(f"\n{variant}: " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(figures.items())))
    assert figures["selective_scan_fwd"] <= FWD_LIMIT, figures
    assert figures["selective_scan_bwd"] <= BWD_LIMIT, figures
