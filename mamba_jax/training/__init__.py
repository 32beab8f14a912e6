"""Training: ``train_and_evaluate(config, workdir)`` (``training.loop``), the optimisers and schedules, the
separation and ASR tasks, losses and the data-parallel mesh.

``from mamba_jax.training import train_and_evaluate`` loads the loop on first use: the configs import
``mamba_jax.training.defaults``, which must stay light (no orbax, grain or model import).
"""

from __future__ import annotations

__all__ = ["train_and_evaluate"]


def __getattr__(name: str):
    if name == "train_and_evaluate":
        from mamba_jax.training.loop import train_and_evaluate

        return train_and_evaluate
    raise AttributeError(f"module 'mamba_jax.training' has no attribute {name!r}")
