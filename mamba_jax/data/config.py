"""Data configuration: one locked ``ConfigDict`` the pipeline reads (see :func:`data_config`)."""

from __future__ import annotations

from typing import Any

import ml_collections
from ml_collections import config_dict

__all__ = ["CORPORA", "data_config", "validate"]

CORPORA = ("wsj0-2mix", "wsj0-dm", "librimix", "librispeech")


def data_config(**overrides: Any) -> ml_collections.ConfigDict:
    """Default data config with ``overrides`` applied; locked, so a mistyped field raises.

    Fields:
      root: corpus root, or ``None`` for the embedded synthetic corpus
        (:func:`mamba_jax.data.synthetic.ensure_corpus`). For wsj0 corpora the folder may hold
        ``wsj0-2mix/`` and ``wsj0/`` (the synthetic layout) or be the tree itself.
      wsj0_root: raw-WSJ0 pool root for dynamic mixing; ``None`` means ``root``.
      corpus: ``wsj0-2mix`` or ``wsj0-dm`` (both read the wsj0-2mix tree; the Mamba-TasNet and
        SepMamba recipes name ``wsj0-dm`` and set ``dynamic_mixing``: training mixed on the fly from
        the WSJ0 pool, valid/test the static cv/tt), ``librimix`` or ``librispeech`` (ASR).
      sample_rate: Hz. Defaults to 8000, or 16000 when ``corpus="librispeech"`` and not given.
      mode: wsj0-2mix / LibriMix ``min`` or ``max``.
      segment_seconds: training crop length (random offset), ``None`` = full utterances.
      eval_segment_seconds: same for valid/test (SepMamba validates on random 4 s crops).
      dynamic_mixing: mix training items on the fly from the WSJ0 pool; ``False`` trains on the
        static ``tr`` mixtures (whatever ``corpus`` says).
      dm_recipe: ``speechbrain`` (Mamba-TasNet; no crop unless ``segment_seconds``) or
        ``sepmamba`` (crops/pads to ``segment_seconds``, 4 s when unset).
      speed_perturb: per-source speed {95, 100, 105}% on training items.
      drop_shorter: static training drops items shorter than ``segment_seconds`` (SPMamba).
      on_rate_mismatch: ``resample`` (librosa) or ``error``.
      num_workers: grain ``mp_prefetch`` worker processes (0 = in-process).
      read_threads: grain ``ReadOptions.num_threads`` for the in-process map.
      items_per_epoch: dynamic mixing epoch size (``None``: the wsj0-2mix tr count if the tree is
        there, else 20,000); for static data, ``None`` = the split size, else a cap.
      num_sources: S.
      mix_lists: ``auto`` (use ``mix_{S}_spk_{split}.txt`` when found) or ``none``.
      wsj0_subsets: comma-separated pool folders for dynamic mixing (``si_tr_s``).
      librispeech_{train,valid,test}: comma-separated LibriSpeech split folders.
      librimix_{train,valid,test}, librimix_mixture: LibriMix split names and mixture type.
    """
    cfg = ml_collections.ConfigDict()
    cfg.root = config_dict.placeholder(str)
    cfg.wsj0_root = config_dict.placeholder(str)
    cfg.corpus = "wsj0-2mix"
    cfg.sample_rate = 8000
    cfg.mode = "min"
    cfg.segment_seconds = config_dict.placeholder(float)
    cfg.eval_segment_seconds = config_dict.placeholder(float)
    cfg.dynamic_mixing = False
    cfg.dm_recipe = "speechbrain"
    cfg.speed_perturb = False
    cfg.drop_shorter = False
    cfg.on_rate_mismatch = "resample"
    cfg.num_workers = 0
    cfg.read_threads = 2
    cfg.items_per_epoch = config_dict.placeholder(int)
    cfg.num_sources = 2
    cfg.mix_lists = "auto"
    cfg.wsj0_subsets = "si_tr_s"
    cfg.librispeech_train = "train-clean-100"
    cfg.librispeech_valid = "dev-clean"
    cfg.librispeech_test = "test-clean"
    cfg.librimix_train = "train-100"
    cfg.librimix_valid = "dev"
    cfg.librimix_test = "test"
    cfg.librimix_mixture = "mix_clean"
    if overrides.get("corpus") == "librispeech" and "sample_rate" not in overrides:
        cfg.sample_rate = 16000
    for k, v in overrides.items():
        if k not in cfg:
            raise AttributeError(f"unknown data config field {k!r}; fields: {sorted(cfg.keys())}")
        if isinstance(v, int) and not isinstance(v, bool) and k in ("segment_seconds",
                                                                     "eval_segment_seconds"):
            v = float(v)
        if hasattr(v, "__fspath__"):
            v = str(v)
        cfg[k] = v
    cfg.lock()
    validate(cfg)
    return cfg


def validate(cfg: ml_collections.ConfigDict) -> None:
    """Raise ``ValueError`` for an out-of-range field (called by :func:`data_config`)."""
    checks = {
        "corpus": CORPORA,
        "mode": ("min", "max"),
        "dm_recipe": ("speechbrain", "sepmamba"),
        "on_rate_mismatch": ("resample", "error"),
        "mix_lists": ("auto", "none"),
    }
    for field, allowed in checks.items():
        if cfg[field] not in allowed:
            raise ValueError(f"data config {field}={cfg[field]!r}; allowed: {allowed}")
    if cfg.sample_rate <= 0 or cfg.sample_rate % 1000:
        raise ValueError(f"sample_rate must be a positive multiple of 1000, got {cfg.sample_rate}")
    if cfg.num_sources < 1:
        raise ValueError("num_sources must be >= 1")
    if cfg.drop_shorter and cfg.segment_seconds is None:
        raise ValueError("drop_shorter needs segment_seconds (SPMamba drops items < 4 s)")
    if cfg.num_workers < 0:
        raise ValueError("num_workers must be >= 0")
