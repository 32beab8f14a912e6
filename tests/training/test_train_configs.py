"""Two training steps (plus one validation batch and a checkpoint) of every config file's ``smoke`` variant,
through ``train_and_evaluate`` on a tiny synthetic corpus in the real layouts: separation (static and dynamic
mixing) and ASR (tokenizer trained on the fly, CTC and CTC+attention)."""

from __future__ import annotations

import importlib
import json
import pathlib

import numpy as np
import pytest

from mamba_jax.checkpoint import find_tokenizer, load_model
from mamba_jax.data.synthetic import SyntheticSpec, ensure_corpus
from mamba_jax.training.loop import train_and_evaluate

CONFIGS = sorted(p.stem for p in (pathlib.Path(__file__).parents[2] / "configs").glob("*.py")
                 if p.stem != "__init__")
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


def test_every_config_file_is_covered():
    assert len(CONFIGS) >= 18, CONFIGS  # 14 separation + 5 ASR files


@pytest.mark.parametrize("name", PARAMS)
def test_two_steps_of_smoke(name, corpus, tmp_path):
    config = importlib.import_module(f"configs.{name}").get_config("smoke")
    config.data.root = str(corpus)
    config.train.update(num_steps=2, eval_every_steps=2, checkpoint_every_steps=2, eval_batches=1, log_every_steps=1)
    out = train_and_evaluate(config, tmp_path)
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
