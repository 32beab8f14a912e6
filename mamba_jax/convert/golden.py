"""The numpy recipe of the synthetic state_dicts behind the golden parity files (tests/golden/*.npz).

Full fp32 weights of the separation models are megabytes each, far too large for git. A golden file stores
only the original key names and shapes, a seed and a float64 checksum per tensor; ``make_state_dict``
regenerates the same values here (numpy only: the golden generator imports this file under the PyTorch
environment, and the tests under ours). Values are drawn per key kind so that every mapping is exercised
(no tensor is constant or symmetric) and activations stay O(1):

* ``A_log``/``A_b_log``: log U(1, 16)                   * ``D``/``D_b``: 1 + 0.1 N(0, 1)
* ``dt_proj(_b).bias``: inverse softplus of dt ~ exp(U(log 1e-3, log 1e-1)) (Mamba's own range)
* norm scales (``gamma``, 1-D ``weight``): 1 + 0.1 N   * shifts (``beta``, 1-D ``bias``): 0.1 N
* PReLU slopes (shape [1]): 0.25 + 0.05 N
* other weights: N(0, 1/fan_in), fan_in = prod(shape[1:]) (torch layout [out, in, k...]; a depthwise
  ``[E, 1, K]`` conv has fan_in K)

Each key has its own generator, ``default_rng([seed, crc32(key)])``, so a value does not depend on the other
keys or their order.
"""

from __future__ import annotations

import zlib

import numpy as np


def _values(key: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    leaf = key.rsplit(".", 1)[-1]
    n = rng.standard_normal(shape)
    if leaf in ("A_log", "A_b_log"):
        return np.log(rng.uniform(1.0, 16.0, shape))
    if leaf in ("D", "D_b"):
        return 1.0 + 0.1 * n
    if leaf == "bias" and key.rsplit(".", 2)[-2] in ("dt_proj", "dt_proj_b"):
        dt = np.exp(rng.uniform(np.log(1e-3), np.log(1e-1), shape))
        return dt + np.log(-np.expm1(-dt))
    if shape == (1,) and leaf == "weight":
        return 0.25 + 0.05 * n
    if leaf == "gamma" or (leaf == "weight" and len(shape) == 1):
        return 1.0 + 0.1 * n
    if leaf in ("beta", "bias"):
        return 0.1 * n
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    return n / np.sqrt(fan_in)


def make_state_dict(keys: list[str], shapes: list[tuple[int, ...]], seed: int) -> dict[str, np.ndarray]:
    """The synthetic float32 state_dict for ``keys`` with ``shapes`` (see the module docstring)."""
    return {k: _values(k, tuple(int(d) for d in s), np.random.default_rng([seed, zlib.crc32(k.encode())]))
            .astype(np.float32) for k, s in zip(keys, shapes, strict=True)}


def checksums(state_dict: dict[str, np.ndarray]) -> np.ndarray:
    """``[n_keys, 2]`` float64 (sum, sum of squares) per tensor, in the dict's order: guards recipe drift."""
    return np.array([[np.sum(v, dtype=np.float64), np.sum(np.square(v.astype(np.float64)))]
                     for v in state_dict.values()])
