"""Two training steps (plus one validation batch and a checkpoint) of every config file's ``smoke`` variant,
through ``train_and_evaluate`` on a tiny synthetic corpus in the real layouts: separation (static and dynamic
mixing) and ASR (tokenizer trained on the fly, CTC and CTC+attention). Each run records which config fields
the code reads (tests/config_reads.py) and fails on a field nothing read: a config says only what is used."""

from __future__ import annotations

import importlib
import json
import pathlib

import numpy as np
import pytest
from flax import nnx

from mamba_jax.checkpoint import find_tokenizer, load_model
from mamba_jax.config import load_config
from mamba_jax.data.synthetic import SyntheticSpec, ensure_corpus
from mamba_jax.models import build_model
from mamba_jax.training.loop import train_and_evaluate
from tests.config_reads import leaves, recorded_reads

CONFIG_DIR = pathlib.Path(__file__).parents[2] / "configs"
CONFIGS = sorted(p.stem for p in CONFIG_DIR.glob("*.py") if not p.stem.startswith("_"))
# One config per model family and ASR head runs by default (Mamba-TasNet trains by default in test_loop.py and
# test_multiprocess.py); the other sizes share their family's code and run with ``-m slow`` (all 19 pass; the
# ASR ones take minutes on 2 cores: compile + joint beam search).
DEFAULT = {"dpmamba_xs", "sepmamba_causal_s", "spmamba", "conmamba_small", "conmamba_ctc_large"}
PARAMS = [pytest.param(n, marks=() if n in DEFAULT else pytest.mark.slow) for n in CONFIGS]
SPEC = SyntheticSpec(n_train=3, n_valid=2, n_test=2, train_utts=3, eval_utts=2, tr_mixtures=4, cv_mixtures=2,
                     tt_mixtures=2, libri_train_utts=3, libri_eval_utts=1, min_seconds=0.5, max_seconds=1.0)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> pathlib.Path:
    return ensure_corpus(tmp_path_factory.mktemp("configs") / "corpus", progress=False, spec=SPEC)


# Fields read only on a path a smoke run does not take, each with the condition under which the code reads it
# (they stay in every config so that the override selecting that path, e.g. --config.data.corpus=librimix or
# --config.optim.schedule=plateau, finds them; lock_config refuses unknown fields).
_SEPARATION_CORPUS = ("wsj0-2mix", "wsj0-dm", "librimix")
CONDITIONAL = {
    "optim.warmup_steps": lambda c: c.optim.schedule in ("warmup_cosine", "noam"),
    "optim.min_lr_ratio": lambda c: c.optim.schedule == "warmup_cosine",
    "optim.plateau_patience": lambda c: c.optim.schedule == "plateau",
    "optim.plateau_factor": lambda c: c.optim.schedule == "plateau",
    "data.wsj0_root": lambda c: c.data.dynamic_mixing and c.data.corpus != "librispeech",
    "data.wsj0_subsets": lambda c: c.data.dynamic_mixing and c.data.corpus != "librispeech",
    "data.dm_recipe": lambda c: c.data.dynamic_mixing and c.data.corpus != "librispeech",
    "data.mode": lambda c: c.data.corpus in _SEPARATION_CORPUS,
    "data.mix_lists": lambda c: c.data.corpus in ("wsj0-2mix", "wsj0-dm"),
    "data.drop_shorter": lambda c: c.data.corpus in _SEPARATION_CORPUS and not c.data.dynamic_mixing,
}
for _k in ("segment_seconds", "eval_segment_seconds", "dynamic_mixing", "num_sources"):  # separation pipeline
    CONDITIONAL[f"data.{_k}"] = lambda c: c.data.corpus in _SEPARATION_CORPUS
for _k in ("train", "valid", "test"):
    CONDITIONAL[f"data.librispeech_{_k}"] = lambda c: c.data.corpus == "librispeech"
for _k in ("train", "valid", "test", "mixture"):
    CONDITIONAL[f"data.librimix_{_k}"] = lambda c: c.data.corpus == "librimix"


def _variants(name: str) -> list[str | None]:
    return ["smoke", None] + (["nfft512,smoke", "nfft512"] if name == "spmamba" else []) + (
        ["quickstart"] if name == "sepmamba_s" else [])


def _fields(config, model: bool) -> frozenset[str]:
    return frozenset(k for k in leaves(config) if k.startswith("model.") == model)


def test_every_config_file_is_covered():
    """Every config file builds in each of its variants, locked, and the unread-field check of the default smoke
    runs below covers it: its fields outside ``model`` are those of a DEFAULT config of its task, and its
    ``model`` fields those of a DEFAULT config of the same model or, for a model without one (Mamba-TasNet trains
    in test_loop.py), fields its ``build`` accepts (every ``build`` refuses unknown fields)."""
    runs = [load_config(f"{CONFIG_DIR / name}.py:smoke") for name in sorted(DEFAULT)]
    checked = {(c.task, _fields(c, model=False)) for c in runs}
    models = {c.model.name: _fields(c, model=True) for c in runs}
    for name in CONFIGS:
        for arg in _variants(name):
            config = load_config(f"{CONFIG_DIR / name}.py" + (f":{arg}" if arg else ""))
            assert config.is_locked, (name, arg)
            assert (config.task, _fields(config, model=False)) in checked, f"{name}:{arg}: fields no run checks"
            if config.model.name in models:
                assert _fields(config, model=True) == models[config.model.name], (name, arg)
            elif arg == "smoke":  # the other variants have the same model fields (the loop above, per model)
                models[config.model.name] = _fields(config, model=True)
                nnx.eval_shape(lambda: build_model(config.model, rngs=nnx.Rngs(0)))


def test_recorded_reads_sees_reads_not_serialisation():
    """The recorder behind the unread-field check: attribute, item, ``get`` and ``dict()`` reads count, aliases
    (``FieldReference``) count together, serialising (``to_dict``, JSON, repr) does not; a stale field shows."""
    config = load_config(f"{CONFIG_DIR / 'conmamba_small.py'}:smoke")
    with recorded_reads(config) as read:
        config.to_dict(), config.to_json(), repr(config)
        assert not read
        _ = config.optim.lr, config["loss"]["name"], config.decoding.get("beam_size"), dict(config.tokenizer)
        _ = config.model.n_mels
    assert {"optim.lr", "loss.name", "decoding.beam_size", "tokenizer.kind", "model.n_mels",
            "features.n_mels"} <= read
    assert "features.n_fft" not in read and "recipe.num_buckets" not in read


@pytest.mark.parametrize("name", PARAMS)
def test_two_steps_of_smoke(name, corpus, tmp_path):
    config = importlib.import_module(f"configs.{name}").get_config("smoke")
    config.data.root = str(corpus)
    with recorded_reads(config) as read:
        out = train_and_evaluate(config, tmp_path)
    unread = sorted(k for k in leaves(config) if k not in read and CONDITIONAL.get(k, lambda c: True)(config))
    assert not unread, f"configs/{name}.py: fields nothing read: {unread}"
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2]
    assert all(np.isfinite(r["loss"]) for r in rows if "loss" in r)
    assert np.isfinite(out["val_score"])
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == ["2"]
    model, cfg = load_model(tmp_path)  # the trainer's checkpoint reloads as a model
    if config.task == "asr":
        assert "val_wer" in out
        assert find_tokenizer(tmp_path, cfg).is_file()
        assert int(np.asarray(model.normalizer.count[...])) == 2  # statistics updated by the training steps
    else:
        assert "val_si_snri" in out and "val_sdri" in out
