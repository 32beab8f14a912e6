"""mamba-jax: Mamba speech separation and recognition in JAX/Flax NNX, with a Pallas selective-scan kernel."""

__version__ = "0.1.0"
