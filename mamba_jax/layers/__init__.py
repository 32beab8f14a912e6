"""Layers the models are made of: the Mamba and BiMamba-v2 mixers, residual Mamba stacks, norms and causal
convolutions (the other modules here, STFT, Fbank, attention, ..., are imported by their full name)."""

from mamba_jax.layers.blocks import Block, MambaStack
from mamba_jax.layers.conv import CausalConv1d, DepthwiseConv1d
from mamba_jax.layers.mamba import BiMambaV2, Mamba, MambaConfig, MambaState, set_scan_sharding
from mamba_jax.layers.norm import LayerNorm, RMSNorm

__all__ = ["BiMambaV2", "Block", "CausalConv1d", "DepthwiseConv1d", "LayerNorm", "Mamba", "MambaConfig", "MambaState",
           "MambaStack", "RMSNorm", "set_scan_sharding"]
