"""mamba-jax: Mamba speech separation and recognition in JAX/Flax NNX, with a Pallas selective-scan kernel."""

from mamba_jax.xla_cpu import prefer_wide_vectors as _prefer_wide_vectors

__version__ = "0.1.0"

_prefer_wide_vectors()  # 512-bit vectors in XLA's CPU code on AVX-512 machines (see mamba_jax/xla_cpu.py)
