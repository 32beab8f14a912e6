"""Block configuration of the Pallas selective-scan kernels."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class BlockConfig:
    """Tiling of the selective-scan kernels (hashable: it is a static argument of the custom_vjp).

    Attributes:
      block_d: channels per program (a power of two). The kernel uses the largest power of two that is
        <= block_d and divides E / G, so a channel block never straddles a B/C group and never runs past
        E (jax 0.11.2 does not mask ragged blocks). The grid is (batch, E / block_d).
      chunk: time steps between saved states. The forward pass keeps h_t only at t = 0, chunk, 2*chunk, ...
        ([B, ceil(L/chunk), E, N] fp32); the backward pass recomputes one chunk at a time into a
        [B, E/block_d, chunk, block_d, N] fp32 workspace. chunk ~ sqrt(L) minimises their sum.
      num_warps_fwd, num_warps_bwd: Triton warps per program.
      num_stages: Triton software-pipelining stages for the time loops (None: Triton's default).
    """

    block_d: int = 16
    chunk: int = 64
    num_warps_fwd: int = 1
    num_warps_bwd: int = 2
    num_stages: int | None = None

    def __post_init__(self):
        if self.block_d < 1 or self.block_d & (self.block_d - 1):
            raise ValueError(f"BlockConfig.block_d must be a power of two, got {self.block_d}")
        if self.chunk < 1:
            raise ValueError(f"BlockConfig.chunk must be >= 1, got {self.chunk}")
        for name in ("num_warps_fwd", "num_warps_bwd"):
            w = getattr(self, name)
            if w < 1 or w & (w - 1):
                raise ValueError(f"BlockConfig.{name} must be a power of two, got {w}")
