"""grain pipelines for separation and ASR: deterministic order, sharding, workers, padding, resume.

Order and randomness. A pipeline is ``MapDataset.range(n_epoch * epochs)`` sliced
``[process_index::process_count]`` and mapped by an item function. Global index ``g`` is item
``pos = g % n_epoch`` of epoch ``e = g // n_epoch``; with shuffling, ``pos`` goes through the
permutation drawn from ``(seed, e)``. Crops, dynamic mixing and speed perturbation draw from
``item_rng(seed, e, pos)``. Everything is therefore a pure function of ``(seed, epoch, index)``:
resuming from a saved iterator state (just ``next_index``), changing ``num_workers``, or
rebuilding the dataset gives the same batches. Training streams repeat forever (slicing the
endless stream keeps hosts in lock step); valid/test are one unshuffled pass.

Sharding. ``process_index::process_count`` over global indices: within every epoch the shards
are disjoint and together cover it (sizes differ by at most one when ``n_epoch % P != 0``).

Workers. ``cfg.num_workers > 0`` adds ``mp_prefetch`` before batching; grain's workers take
elements ``w::W`` and are read round robin, so batches are identical to ``num_workers=0``.
``mp_prefetch`` reads grain's absl flags (readable unparsed: ``_mp_prefetch``) and its worker processes
re-import ``__main__``: keep scripts under ``if __name__ == "__main__"``, and ``close()`` iterators.

Batches. Items are zero-padded on the right to the longest in the batch (or to the training
segment when one is set, so shapes are static) and come with their true lengths. ASR training with
``duration`` batching (:mod:`mamba_jax.data.buckets`) yields one fixed shape per length bucket instead.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import pathlib
import sys
from collections.abc import Iterable, Iterator

import grain
import ml_collections
import numpy as np

from mamba_jax.data import mixing
from mamba_jax.data.buckets import BucketedAsr, BucketPlan, DurationBatching, plan_buckets
from mamba_jax.data.config import validate
from mamba_jax.data.items import (AsrItems, DynamicSeparation, Order, StaticSeparation, collate_asr, collate_separation,
                                   epoch_permutation)
from mamba_jax.data.libri import LibriMixSource, LibriSpeechSource
from mamba_jax.data.wsj0 import SPLIT_DIRS, Wsj0MixSource, Wsj0PoolSource, resolve_wsj0mix_root

__all__ = ["DurationBatching", "asr_bucket_plan", "asr_dataset", "collate_asr", "collate_separation",
           "epoch_permutation", "iterate", "separation_dataset", "steps_per_epoch"]

SPLITS = ("train", "valid", "test")
DEFAULT_DM_EPOCH = 20000  # SB and SepMamba: 20,000 mixtures per epoch


def _root(cfg: ml_collections.ConfigDict) -> pathlib.Path:
    if cfg.root is None:
        from mamba_jax.data.synthetic import ensure_corpus
        return ensure_corpus()
    return pathlib.Path(cfg.root)


def _seconds(cfg: ml_collections.ConfigDict, split: str) -> int | None:
    sec = cfg.segment_seconds if split == "train" else cfg.eval_segment_seconds
    return None if sec is None else int(round(sec * cfg.sample_rate))


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def _separation_source(cfg: ml_collections.ConfigDict, split: str):
    root = _root(cfg)
    common = dict(sample_rate=cfg.sample_rate, mode=cfg.mode, num_sources=cfg.num_sources,
                  on_rate_mismatch=cfg.on_rate_mismatch)
    if cfg.corpus == "librimix":
        name = {"train": cfg.librimix_train, "valid": cfg.librimix_valid, "test": cfg.librimix_test}
        return LibriMixSource(root, name[split], mixture=cfg.librimix_mixture, **common)
    if cfg.corpus in ("wsj0-2mix", "wsj0-dm"):
        return Wsj0MixSource(root, SPLIT_DIRS[split], list_file=None if cfg.mix_lists == "none"
                             else "auto", **common)
    raise ValueError(f"corpus {cfg.corpus!r} is not a separation corpus")


def _dm_epoch(cfg: ml_collections.ConfigDict) -> int:
    if cfg.items_per_epoch is not None:
        return int(cfg.items_per_epoch)
    try:  # the static tr count, as the recipes define an epoch (20,000 for wsj0-2mix)
        return len(Wsj0MixSource(_root(cfg), "tr", sample_rate=cfg.sample_rate, mode=cfg.mode,
                                 num_sources=cfg.num_sources, list_file=None))
    except (OSError, ValueError):
        return DEFAULT_DM_EPOCH


def _mp_prefetch(it: grain.IterDataset, cfg: ml_collections.ConfigDict) -> grain.IterDataset:
    """``cfg.num_workers`` grain worker processes, whose flags grain can read without absl flags parsed.

    grain reads its own absl flag ``grain_enable_multiprocess_worker_profiling`` when the first batch is
    requested (in a thread, any time later), which fails before the program parsed its flags. absl lets a flag
    marked ``present`` be read unparsed: grain's own flags are marked so (their values stay the defaults or what
    was set), and the program's other flags keep failing unparsed as they should; ``FLAGS.is_parsed()`` is not
    touched.
    """
    from absl import flags

    if not flags.FLAGS.is_parsed():
        for name in flags.FLAGS:
            if name.startswith("grain_") and not flags.FLAGS[name].present:
                flags.FLAGS[name].present = 1
    return it.mp_prefetch(grain.MultiprocessingOptions(num_workers=int(cfg.num_workers), per_worker_buffer_size=2))


def _finish(ds: grain.MapDataset, cfg: ml_collections.ConfigDict, batch_size: int,
            drop_remainder: bool, batch_fn) -> grain.IterDataset:
    it = ds.to_iter_dataset(grain.ReadOptions(num_threads=max(int(cfg.read_threads), 0),
                                              prefetch_buffer_size=max(2 * batch_size, 4)))
    if cfg.num_workers > 0:
        it = _mp_prefetch(it, cfg)
    return it.batch(batch_size, drop_remainder=drop_remainder, batch_fn=batch_fn)


def _range(n_epoch: int, num_epochs: int | None, process_index: int,
           process_count: int) -> grain.MapDataset:
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    total = sys.maxsize if num_epochs is None else n_epoch * int(num_epochs)
    return grain.MapDataset.range(total)[process_index::process_count]


def separation_dataset(cfg: ml_collections.ConfigDict, split: str, *, batch_size: int, seed: int,
                       process_index: int = 0, process_count: int = 1,
                       drop_remainder: bool = True, num_epochs: int | None = None,
                       shuffle: bool | None = None, pad_multiple: int = 1,
                       with_names: bool = False) -> grain.IterDataset:
    """Separation batches ``{"mix": f32 [B, T], "sources": f32 [B, S, T], "lengths": i32 [B]}``.

    Args:
      cfg: :func:`mamba_jax.data.config.data_config`.
      split: ``train`` (shuffled, endless unless ``num_epochs``; dynamic mixing, crops and speed
        perturbation per the config) or ``valid``/``test`` (cv/tt: one ordered pass, full length
        unless ``eval_segment_seconds``).
      batch_size: per-process batch size B.
      seed: drives shuffling, crops and mixing with the epoch and index.
      process_index, process_count: this host's shard.
      drop_remainder: drop a final partial batch (``False`` pads nothing extra: B is smaller).
      num_epochs: passes over the data; ``None`` = endless for train, 1 for valid/test.
      shuffle: override the default (train only).
      pad_multiple: round padded T up to a multiple of this.
      with_names: static data only: add ``"names": str [B]``, the utterance names (evaluation); off for
        training, whose batches go to a jitted step.

    Returns:
      A grain ``IterDataset``; ``iter(ds)`` has ``get_state``/``set_state`` and works with
      ``grain.checkpoint.CheckpointSave/Restore``.
    """
    validate(cfg)
    _check_split(split)
    train = split == "train"
    segment = _seconds(cfg, split)
    shuffle = train if shuffle is None else shuffle
    num_epochs = (None if train else 1) if num_epochs is None else num_epochs
    # `dynamic_mixing` alone decides: the wsj0-dm recipes set it True, and the static WSJ0-2mix recipe
    # (`--config.data.dynamic_mixing=False`) trains on the tr mixtures of the same tree.
    dynamic = train and cfg.dynamic_mixing
    if dynamic:
        if cfg.corpus not in ("wsj0-2mix", "wsj0-dm"):
            raise ValueError("dynamic mixing draws from the raw-WSJ0 pool: corpus must be "
                             "'wsj0-2mix' or 'wsj0-dm'")
        from mamba_jax.data.wsj0 import resolve_wsj0_root
        pool_root = cfg.wsj0_root if cfg.wsj0_root is not None else _root(cfg)
        pool = Wsj0PoolSource(resolve_wsj0_root(pool_root), cfg.wsj0_subsets.split(","),
                              sample_rate=cfg.sample_rate, on_rate_mismatch=cfg.on_rate_mismatch)
        n_epoch = _dm_epoch(cfg)
        order = Order(np.arange(n_epoch), n_epoch, seed, shuffle=False)
        fn = DynamicSeparation(pool, order, seed, cfg.dm_recipe, cfg.num_sources, segment,
                                cfg.speed_perturb)
    else:
        source = _separation_source(cfg, split)
        keep = np.arange(len(source))
        if train and cfg.drop_shorter and segment is not None:
            keep = np.flatnonzero(source.lengths() >= segment)
            if keep.size == 0:
                raise ValueError(f"drop_shorter: no {split} item is at least {segment} samples")
        n_epoch = len(keep) if cfg.items_per_epoch is None or not train else min(
            len(keep), int(cfg.items_per_epoch))
        order = Order(keep, n_epoch, seed, shuffle)
        fn = StaticSeparation(source, order, seed, segment, train and cfg.speed_perturb, names=with_names)
    pad_to = None
    if train and segment is not None:  # static training shapes; speed 105% lengthens items
        pad_to = -(-segment * (max(mixing.SPEEDS) if cfg.speed_perturb else 100) // 100)
    ds = _range(n_epoch, num_epochs, process_index, process_count).map(fn)
    return _finish(ds, cfg, batch_size, drop_remainder,
                   functools.partial(collate_separation, pad_to=pad_to, multiple=pad_multiple))


def librispeech_source(cfg: ml_collections.ConfigDict, split: str) -> LibriSpeechSource:
    """The LibriSpeech subsets of ``split`` under ``cfg.root`` (the synthetic corpus when unset)."""
    names = {"train": cfg.librispeech_train, "valid": cfg.librispeech_valid,
             "test": cfg.librispeech_test}[split]
    return LibriSpeechSource(_root(cfg), names.split(","), sample_rate=cfg.sample_rate,
                             on_rate_mismatch=cfg.on_rate_mismatch)


def _bucket_plan(cfg: ml_collections.ConfigDict, source: LibriSpeechSource,
                 duration: DurationBatching) -> BucketPlan:
    return plan_buckets(source.lengths(), source.texts, duration, cfg.sample_rate,
                        max(mixing.SPEEDS) if cfg.speed_perturb else 100)


def asr_bucket_plan(cfg: ml_collections.ConfigDict, duration: DurationBatching) -> BucketPlan:
    """The training split's length buckets (shapes, batch sizes, batches per epoch) under ``duration``."""
    return _bucket_plan(cfg, librispeech_source(cfg, "train"), duration)


def asr_dataset(cfg: ml_collections.ConfigDict, split: str, *, batch_size: int, seed: int,
                process_index: int = 0, process_count: int = 1, drop_remainder: bool = True,
                num_epochs: int | None = None, shuffle: bool | None = None,
                pad_multiple: int = 1, duration: DurationBatching | None = None) -> grain.IterDataset:
    """ASR batches ``{"wave": f32 [B, T], "wave_lengths": i32 [B], "text": str [B], "ids": str [B]}``.

    LibriSpeech splits come from ``cfg.librispeech_{train,valid,test}`` (comma-separated folder
    names). Texts are the transcript strings (tokenisation happens in the model code). Speed
    perturbation (train, ``cfg.speed_perturb``) picks one speed in {95, 100, 105}% per utterance.
    ``duration`` (train only): duration batching in length buckets (:mod:`mamba_jax.data.buckets`);
    ``batch_size``, ``drop_remainder`` and ``pad_multiple`` are then unused, batches also hold
    ``text_chars`` (a bound on the bucket's token count), and each process gets its share of
    every global batch. Other arguments as :func:`separation_dataset`.
    """
    validate(cfg)
    _check_split(split)
    if cfg.corpus != "librispeech":
        raise ValueError(f"asr_dataset needs corpus='librispeech', got {cfg.corpus!r}")
    train = split == "train"
    source = librispeech_source(cfg, split)
    if train and duration is not None:
        plan = _bucket_plan(cfg, source, duration)
        if plan.batches_per_epoch == 0:
            raise ValueError(f"duration batching: no bucket fills one batch ({plan.shapes() or 'none'}); "
                             "lower max_batch_seconds/num_buckets or use more data")
        total = sys.maxsize if num_epochs is None else plan.batches_per_epoch * int(num_epochs)
        ds = grain.MapDataset.range(total).map(
            BucketedAsr(source, plan, seed, cfg.speed_perturb, process_index, process_count))
        it = ds.to_iter_dataset(grain.ReadOptions(num_threads=max(int(cfg.read_threads), 0),
                                                  prefetch_buffer_size=4))
        if cfg.num_workers > 0:
            it = _mp_prefetch(it, cfg)
        return it
    shuffle = train if shuffle is None else shuffle
    num_epochs = (None if train else 1) if num_epochs is None else num_epochs
    keep = np.arange(len(source))
    n_epoch = len(keep) if cfg.items_per_epoch is None or not train else min(
        len(keep), int(cfg.items_per_epoch))
    order = Order(keep, n_epoch, seed, shuffle)
    ds = _range(n_epoch, num_epochs, process_index, process_count).map(
        AsrItems(source, order, seed, train and cfg.speed_perturb))
    return _finish(ds, cfg, batch_size, drop_remainder,
                   functools.partial(collate_asr, multiple=pad_multiple))


def steps_per_epoch(cfg: ml_collections.ConfigDict, split: str, *, batch_size: int,
                    process_count: int = 1, drop_remainder: bool = True,
                    duration: DurationBatching | None = None) -> int:
    """Batches per host in one epoch of ``split`` (shard 0, the largest shard); ASR training with
    ``duration`` batching: the bucket plan's batches per epoch."""
    _check_split(split)
    train = split == "train"
    if train and duration is not None and cfg.corpus == "librispeech":
        return asr_bucket_plan(cfg, duration).batches_per_epoch
    if cfg.corpus == "librispeech":
        names = {"train": cfg.librispeech_train, "valid": cfg.librispeech_valid,
                 "test": cfg.librispeech_test}[split]
        n = len(LibriSpeechSource(_root(cfg), names.split(","), sample_rate=cfg.sample_rate))
    elif train and cfg.dynamic_mixing:
        n = _dm_epoch(cfg)
    else:
        src = _separation_source(cfg, split)
        n = len(src)
        if train and cfg.drop_shorter and cfg.segment_seconds is not None:
            n = int(np.sum(src.lengths() >= _seconds(cfg, split)))
    if train and cfg.items_per_epoch is not None:
        n = min(n, int(cfg.items_per_epoch))
    per_host = -(-n // process_count)
    return per_host // batch_size if drop_remainder else -(-per_host // batch_size)


@contextlib.contextmanager
def iterate(ds: Iterable, limit: int | None = None) -> Iterator[Iterator]:
    """``with iterate(ds) as it:`` ``iter(ds)`` (its first ``limit`` elements when set), closed on leaving the
    block however it is left: a grain iterator holds prefetch threads and, with ``num_workers``, processes.
    Without ``limit`` the iterator is grain's own (its ``get_state``/``set_state`` checkpoint it)."""
    it = iter(ds)
    try:
        yield it if limit is None else itertools.islice(it, limit)
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()
