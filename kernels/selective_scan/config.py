"""Block configuration of the Pallas selective-scan kernels."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class BlockConfig:
    """Tiling of the selective-scan kernels (hashable: it is a static argument of the custom_vjp).

    Attributes:
      block_d: channels per forward program (a power of two). The kernel uses the largest power of two that is
        <= block_d and divides E / G, so a channel block never straddles a B/C group and never runs past E
        (jax 0.11.2 does not mask ragged blocks).
      block_d_bwd: the same for the backward kernel.
      block_t: time steps per tile (a power of two): each loop iteration loads [block_t, BD] of delta/u/z and
        [block_t, N] of B/C and scans them with one ``tt.scan``. The forward saves the state at the start of
        every tile for the backward pass ([B, ceil(L/block_t), N, E] fp32).
      chunk: time steps per program along the time-parallel grid axis (rounded up to whole tiles); 0 picks it
        so that batch * E/BD * chunks reaches ``min_programs`` with chunks of at least ``min_chunk_tiles``
        tiles. More than one chunk costs a second, state-only pass and a small combine (see kernel.py).
      min_programs: the number of programs the automatic chunking aims at (about 3 per SM of an H100/H200).
      min_chunk_tiles: the shortest automatic chunk, in tiles.
      num_warps_fwd, num_warps_bwd: Triton warps per program.
      num_stages: Triton software-pipelining stages (None: Triton's default).
    """

    block_d: int = 32
    block_d_bwd: int = 16
    block_t: int = 8
    chunk: int = 0
    min_programs: int = 512
    min_chunk_tiles: int = 8
    num_warps_fwd: int = 4
    num_warps_bwd: int = 4
    num_stages: int | None = None

    def __post_init__(self):
        for name in ("block_d", "block_d_bwd", "block_t", "num_warps_fwd", "num_warps_bwd"):
            v = getattr(self, name)
            if v < 1 or v & (v - 1):
                raise ValueError(f"BlockConfig.{name} must be a power of two, got {v}")
        if self.chunk < 0:
            raise ValueError(f"BlockConfig.chunk must be >= 0 (0: automatic), got {self.chunk}")
        if self.min_programs < 1 or self.min_chunk_tiles < 1:
            raise ValueError("BlockConfig.min_programs and min_chunk_tiles must be >= 1")
