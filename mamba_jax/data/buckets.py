"""Duration batching for ASR training: a small fixed set of padded batch shapes.

SpeechBrain's recipes (Mamba-ASR ``dynamic_batch_sampler``: ``max_batch_length`` seconds, ``num_buckets`` 60)
fill each batch with utterances of similar length up to a total duration. Under ``jit`` every distinct batch
shape is a compilation, so here the buckets are few (``num_buckets``, 8 by default) and each has one shape:

* bucket edges are quantiles of the training utterance lengths (equally full buckets); an utterance belongs to
  the first bucket whose edge is at least its length;
* bucket ``k`` pads waveforms to ``T_k`` = its edge times the largest speed-perturbation factor (105 %),
  rounded up to 10 ms, and holds ``B_k = min(max_batch_examples, max_batch_seconds / T_k)`` utterances (rounded
  down to a multiple of ``batch_multiple``, the device count); its transcripts bound the token count (``text_chars``
  = the longest transcript + 1 characters, an upper bound on SentencePiece pieces);
* per epoch, the utterances are shuffled (``epoch_permutation``), cut into batches within each bucket (a bucket's
  last incomplete batch is left out of that epoch: another epoch's shuffle leaves out others), and the batches
  are shuffled. Everything is a pure function of ``(seed, epoch, batch index)``, so resuming, sharding over
  processes and rebuilding the dataset give the same batches.

With several processes, each global batch (a multiple of the device count) is split between them, so all
processes run the same shape at the same step.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mamba_jax.data import mixing
from mamba_jax.data.items import epoch_permutation

__all__ = ["BucketPlan", "DurationBatching", "duration_batching_from", "plan_buckets"]


@dataclasses.dataclass(frozen=True)
class DurationBatching:
    """``max_batch_seconds`` of padded audio per (global) batch, at most ``max_batch_examples`` utterances, in
    ``num_buckets`` length buckets; batch sizes are multiples of ``batch_multiple``."""

    max_batch_seconds: float
    max_batch_examples: int = 256
    num_buckets: int = 8
    batch_multiple: int = 1

    def __post_init__(self):
        if self.max_batch_seconds <= 0 or self.max_batch_examples < 1 or self.num_buckets < 1:
            raise ValueError(f"duration batching needs max_batch_seconds > 0, max_batch_examples >= 1 and "
                             f"num_buckets >= 1, got {self}")


def duration_batching_from(config, batch_multiple: int = 1) -> DurationBatching | None:
    """From a config's ``recipe`` block (``max_batch_seconds``, ``max_batch_examples``, ``num_buckets``); None
    when it has none or ``max_batch_seconds`` is 0 (then ``train.batch_size`` utterances per batch)."""
    recipe = config.get("recipe") if hasattr(config, "get") else None
    if recipe is None or not recipe.get("max_batch_seconds"):
        return None
    return DurationBatching(float(recipe.max_batch_seconds), int(recipe.get("max_batch_examples", 256)),
                            int(recipe.get("num_buckets", 8)), int(batch_multiple))


@dataclasses.dataclass(frozen=True)
class BucketPlan:
    """Per bucket ``k``: ``edges[k]`` (longest member, samples), ``pad[k]`` (padded length), ``batch[k]``
    (global batch size), ``text_chars[k]``; ``bucket[i]`` of every utterance, ``batches_per_epoch``."""

    edges: np.ndarray
    pad: np.ndarray
    batch: np.ndarray
    text_chars: np.ndarray
    bucket: np.ndarray
    batches_per_epoch: int

    def shapes(self) -> list[tuple[int, int]]:
        """The ``(B, T)`` global batch shape of every bucket that yields batches."""
        counts = np.bincount(self.bucket, minlength=len(self.edges))
        return [(int(self.batch[k]), int(self.pad[k])) for k in range(len(self.edges)) if counts[k] >= self.batch[k]]


def plan_buckets(lengths: np.ndarray, texts: list[str], spec: DurationBatching, sample_rate: int,
                 max_speed: int = 100) -> BucketPlan:
    """Buckets of the utterances with ``lengths`` (samples) and ``texts`` (see the module docstring)."""
    lengths = np.asarray(lengths, np.int64)
    if lengths.size == 0:
        raise ValueError("duration batching: no training utterance")
    q = np.quantile(lengths, np.arange(1, spec.num_buckets + 1) / spec.num_buckets, method="higher")
    edges = np.unique(q.astype(np.int64))
    bucket = np.searchsorted(edges, lengths, side="left")
    step = max(1, sample_rate // 100)
    need = -(-edges * max_speed // 100)  # ceil(edge * speed / 100): the fastest perturbation's length
    pad = -(-need // step) * step  # rounded up to 10 ms
    m = max(1, int(spec.batch_multiple))
    fit = np.minimum(spec.max_batch_examples, np.floor(spec.max_batch_seconds * sample_rate / pad)).astype(np.int64)
    batch = np.maximum(m, fit // m * m)
    chars = np.array([len(t) for t in texts], np.int64)
    text_chars = np.array([int(chars[bucket == k].max(initial=0)) + 1 for k in range(len(edges))], np.int64)
    counts = np.bincount(bucket, minlength=len(edges))
    return BucketPlan(edges, pad, batch, text_chars, bucket, int(np.sum(counts // batch)))


class EpochBatches:
    """Global batch index ``g`` -> ``(epoch, bucket, utterance indices)``, a pure function of ``(seed, g)``."""

    def __init__(self, plan: BucketPlan, seed: int):
        self.plan, self.seed = plan, seed
        self._cache: dict[int, list[tuple[int, np.ndarray]]] = {}

    def epoch(self, e: int) -> list[tuple[int, np.ndarray]]:
        if e not in self._cache:
            order = epoch_permutation(self.seed, e, len(self.plan.bucket))
            batches = []
            for k, b in enumerate(self.plan.batch):
                members = order[self.plan.bucket[order] == k]
                batches.extend((k, members[j * b:(j + 1) * b]) for j in range(len(members) // b))
            rng = np.random.default_rng(np.random.SeedSequence([self.seed & 0xFFFFFFFF, e, 0xB0C7]))
            self._cache = {e: [batches[i] for i in rng.permutation(len(batches))]}
        return self._cache[e]

    def __call__(self, g: int) -> tuple[int, int, np.ndarray]:
        e, j = divmod(int(g), self.plan.batches_per_epoch)
        k, items = self.epoch(e)[j]
        return e, k, items


class BucketedAsr:
    """Map a global batch index to this process's part of the batch: ``{"wave": f32 [B, T_k], "wave_lengths",
    "text", "ids", "text_chars"}``; speed perturbation draws from ``item_rng(seed, epoch, utterance)``."""

    def __init__(self, source, plan: BucketPlan, seed: int, speed: bool, process_index: int, process_count: int):
        self.source, self.plan, self.seed, self.speed = source, plan, seed, speed
        self.batches = EpochBatches(plan, seed)
        self.process_index, self.process_count = process_index, process_count

    def __call__(self, g: int) -> dict:
        epoch, k, items = self.batches(g)
        items = items[self.process_index::self.process_count]
        t = int(self.plan.pad[k])
        wave = np.zeros((len(items), t), np.float32)
        lengths, texts, ids = [], [], []
        for b, i in enumerate(items):
            item = self.source[int(i)]
            x = item["wave"]
            if self.speed:
                rng = mixing.item_rng(self.seed, epoch, int(i), mixing.STREAM_SPEED)
                x = mixing.speed_perturb(x, int(rng.choice(mixing.SPEEDS)))
            x = x[:t]  # never cuts: T_k covers the fastest perturbation of the bucket's longest utterance
            wave[b, :x.size] = x
            lengths.append(x.size)
            texts.append(item["text"])
            ids.append(item["id"])
        return {"wave": wave, "wave_lengths": np.asarray(lengths, np.int32),
                "text": np.asarray(texts, dtype=object), "ids": np.asarray(ids, dtype=object),
                "text_chars": np.int32(self.plan.text_chars[k])}
