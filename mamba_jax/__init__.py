"""mamba-jax: Mamba speech separation and recognition in JAX/Flax NNX, with a Pallas selective-scan kernel."""

from mamba_jax.xla_cpu import apply_cpu_flags as _apply_cpu_flags

__version__ = "0.1.0"

_apply_cpu_flags()  # leaner, faster XLA CPU code (see mamba_jax/xla_cpu.py); opt out: MAMBA_JAX_CPU_FLAGS=0
