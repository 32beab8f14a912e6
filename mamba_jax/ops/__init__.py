"""Array operations below the layers: the selective scan (the one entry point every model calls) and the
right-padding helpers.

``from mamba_jax.ops import selective_scan`` is the function; its module stays importable by its full name
(``from mamba_jax.ops.selective_scan import Impl``), the function's name shadowing it as an attribute of this
package only.
"""

from mamba_jax.ops.padding import as_lengths, conv_lengths, mask_padding, reverse_padded, valid_mask
from mamba_jax.ops.selective_scan import IMPLS, Impl, ScanSharding, selective_scan

__all__ = ["IMPLS", "Impl", "ScanSharding", "as_lengths", "conv_lengths", "mask_padding", "reverse_padded",
           "selective_scan", "valid_mask"]
