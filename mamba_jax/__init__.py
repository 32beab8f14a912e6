"""mamba-jax: Mamba speech separation and recognition in JAX/Flax NNX, with a Pallas selective-scan kernel.

Importing the package changes nothing outside it (no environment variables, no global hooks). The XLA CPU flags
the entry points use: call ``mamba_jax.xla_cpu.apply_cpu_flags()`` before the first JAX computation.
"""

__version__ = "0.1.0"
