"""The per-item half of the grain pipelines (``mamba_jax.data.pipeline`` assembles them): the order of global
indices (epoch, position, shuffled item), the item maps (static separation with crops, dynamic mixing,
LibriSpeech), each a pure function of ``(seed, epoch, position)``, and the collation into zero-padded batches.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mamba_jax.data import mixing
from mamba_jax.data.libri import LibriSpeechSource
from mamba_jax.data.wsj0 import Wsj0PoolSource


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The shuffle order of epoch ``epoch``: ``int64 [n]``, a pure function of (seed, epoch)."""
    return np.random.default_rng(np.random.SeedSequence([seed & 0xFFFFFFFF, epoch, 0x5EED])
                                 ).permutation(n)


class Order:
    """Global index -> ``(epoch, pos, item)``; ``item`` indexes the underlying ``keep`` list."""

    def __init__(self, keep: np.ndarray, n_epoch: int, seed: int, shuffle: bool):
        self.keep, self.n_epoch, self.seed, self.shuffle = keep, n_epoch, seed, shuffle
        self._cache: dict[int, np.ndarray] = {}

    def __call__(self, g: int) -> tuple[int, int, int]:
        epoch, pos = divmod(int(g), self.n_epoch)
        if not self.shuffle:
            return epoch, pos, int(self.keep[pos])
        perm = self._cache.get(epoch)
        if perm is None:
            perm = epoch_permutation(self.seed, epoch, len(self.keep))
            self._cache = {epoch: perm}  # one epoch at a time is enough for a stream
        return epoch, pos, int(self.keep[perm[pos]])


class StaticSeparation:
    """Map ``g -> {"mix": [T], "sources": [S, T]}`` from a static source (wsj0-2mix, LibriMix)."""

    def __init__(self, source, order: Order, seed: int, segment: int | None, speed: bool, names: bool = False):
        self.source, self.order, self.seed, self.segment, self.speed = source, order, seed, segment, speed
        self.names = names

    def __call__(self, g: int) -> dict:
        epoch, pos, i = self.order(g)
        item = self.source[i]
        mix, srcs = item["mix"], item["sources"]
        if self.segment is not None and len(mix) > self.segment:
            rng = mixing.item_rng(self.seed, epoch, pos, mixing.STREAM_CROP)
            start = int(rng.integers(0, len(mix) - self.segment + 1))
            mix, srcs = mix[start:start + self.segment], srcs[:, start:start + self.segment]
        if self.speed:
            rng = mixing.item_rng(self.seed, epoch, pos, mixing.STREAM_SPEED)
            out, _ = mixing.speed_perturb_sources(list(srcs), rng)
            srcs = np.stack(out)
            mix = srcs.sum(0)
        out = {"mix": mix.astype(np.float32), "sources": srcs.astype(np.float32)}
        if self.names:
            out["name"] = str(item.get("name", i))
        return out


class DynamicSeparation:
    """Map ``g -> {"mix", "sources"}`` by dynamic mixing from a WSJ0 pool (either recipe)."""

    def __init__(self, pool: Wsj0PoolSource, order: Order, seed: int, recipe: str,
                 num_sources: int, segment: int | None, speed: bool):
        self.pool, self.order, self.seed, self.recipe = pool, order, seed, recipe
        self.num_sources, self.segment, self.speed = num_sources, segment, speed

    def __call__(self, g: int) -> dict:
        epoch, pos, _ = self.order(g)
        rng = mixing.item_rng(self.seed, epoch, pos, mixing.STREAM_MIX)
        srng = mixing.item_rng(self.seed, epoch, pos, mixing.STREAM_SPEED) if self.speed else None
        if self.recipe == "speechbrain":
            r = mixing.mix_speechbrain(rng, self.pool.speaker_files, self.pool.load,
                                       num_sources=self.num_sources, segment=self.segment,
                                       speed_rng=srng)
        else:
            r = mixing.mix_sepmamba(rng, len(self.pool), self.pool.load,
                                    sample_rate=self.pool.sample_rate,
                                    num_sources=self.num_sources,
                                    segment=self.segment if self.segment else 4 * self.pool.sample_rate,
                                    speed_rng=srng)
        return {"mix": r.mix, "sources": r.sources}


class AsrItems:
    """Map ``g -> {"wave": [T], "text": str, "id": str}`` from LibriSpeech."""

    def __init__(self, source: LibriSpeechSource, order: Order, seed: int, speed: bool):
        self.source, self.order, self.seed, self.speed = source, order, seed, speed

    def __call__(self, g: int) -> dict:
        epoch, pos, i = self.order(g)
        item = dict(self.source[i])
        if self.speed:
            rng = mixing.item_rng(self.seed, epoch, pos, mixing.STREAM_SPEED)
            item["wave"] = mixing.speed_perturb(item["wave"], int(rng.choice(mixing.SPEEDS)))
        return item


def _pad_len(lengths: Sequence[int], pad_to: int | None, multiple: int) -> int:
    t = max(lengths)
    if pad_to is not None:
        t = max(t, pad_to)
    return -(-t // multiple) * multiple


def collate_separation(items: Sequence[dict], *, pad_to: int | None = None,
                       multiple: int = 1) -> dict:
    """Items -> ``{"mix": f32 [B, T], "sources": f32 [B, S, T], "lengths": i32 [B]}``, zero-padded (and
    ``"names": str [B]`` when the items carry a ``"name"``)."""
    lengths = [len(it["mix"]) for it in items]
    t = _pad_len(lengths, pad_to, multiple)
    s = items[0]["sources"].shape[0]
    mix = np.zeros((len(items), t), np.float32)
    src = np.zeros((len(items), s, t), np.float32)
    for b, it in enumerate(items):
        mix[b, :lengths[b]] = it["mix"]
        src[b, :, :lengths[b]] = it["sources"]
    out = {"mix": mix, "sources": src, "lengths": np.asarray(lengths, np.int32)}
    if "name" in items[0]:
        out["names"] = np.asarray([it["name"] for it in items], dtype=object)
    return out


def collate_asr(items: Sequence[dict], *, multiple: int = 1) -> dict:
    """Items -> ``{"wave": f32 [B, T], "wave_lengths": i32 [B], "text": str [B], "ids": str [B]}``."""
    lengths = [len(it["wave"]) for it in items]
    t = _pad_len(lengths, None, multiple)
    wave = np.zeros((len(items), t), np.float32)
    for b, it in enumerate(items):
        wave[b, :lengths[b]] = it["wave"]
    return {"wave": wave, "wave_lengths": np.asarray(lengths, np.int32),
            "text": np.asarray([it["text"] for it in items], dtype=object),
            "ids": np.asarray([it["id"] for it in items], dtype=object)}
