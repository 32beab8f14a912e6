"""The embedded synthetic corpus: real layouts, disjoint speakers, the wsj0-2mix recipe, caching."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from data_helpers import TINY_SPEC

from mamba_jax.data import synthetic
from mamba_jax.data.audio import load_audio, resample
from mamba_jax.data.libri import LibriSpeechSource
from mamba_jax.data.mixing import active_level
from mamba_jax.data.wsj0 import Wsj0MixSource, Wsj0PoolSource, parse_mix_list


def test_default_spec_has_30_plus_disjoint_speakers():
    spec = synthetic.SyntheticSpec()
    spk = synthetic._speakers(spec)
    assert len(spk) >= 30
    assert len({s.wsj_id for s in spk}) == len({s.voice.split("+")[1] for s in spk}) == len(spk)
    by = {k: {s.voice.split("+")[1] for s in spk if s.split == k} for k in ("train", "valid", "test")}
    assert not (by["train"] & by["valid"]) and not (by["train"] & by["test"]) and not (
        by["valid"] & by["test"])


def test_tree_in_real_layouts(tiny_corpus):
    root = tiny_corpus
    m = json.loads((root / "MANIFEST.json").read_text())
    assert m["spec"]["tr_mixtures"] == TINY_SPEC.tr_mixtures
    pools = {sub: Wsj0PoolSource(root, [sub], sample_rate=16000)
             for sub in ("si_tr_s", "si_dt_05", "si_et_05")}
    assert [len(p.speakers) for p in pools.values()] == [4, 2, 2]
    spk = [set(p.speakers) for p in pools.values()]
    assert not (spk[0] & spk[1] or spk[0] & spk[2] or spk[1] & spk[2])
    for split, sub, n in (("tr", "si_tr_s", 12), ("cv", "si_dt_05", 4), ("tt", "si_et_05", 5)):
        src = Wsj0MixSource(root, split)
        assert len(src) == n and src.list_file.name == f"mix_2_spk_{split}.txt"
        for paths, _ in parse_mix_list(src.list_file):  # tt speakers are unseen in training
            assert all(p.split("/")[1] == sub for p in paths)
            assert paths[0].split("/")[2] != paths[1].split("/")[2]  # two distinct speakers
        assert any("e-" in n for n in src.names)  # an exponent-form SNR in every split
    libri = {k: LibriSpeechSource(root, [k]) for k in ("train-clean-100", "dev-clean", "test-clean")}
    assert [len(v) for v in libri.values()] == [4 * 2 * 2, 2 * 2 * 2, 2 * 2 * 2]
    speakers = [{v.speaker(i) for i in range(len(v))} for v in libri.values()]
    assert not (speakers[0] & speakers[1] or speakers[0] & speakers[2])
    for text in libri["dev-clean"].texts:
        assert text == text.upper() and set(text) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ' ")
    # every character of the LibriSpeech alphabet is in the training text: a char tokenizer has 31 pieces
    assert set("".join(libri["train-clean-100"].texts)) == set("ABCDEFGHIJKLMNOPQRSTUVWXYZ' ")
    lens = libri["train-clean-100"].lengths() / 16000
    assert lens.min() >= 0.9 and lens.max() <= TINY_SPEC.max_seconds + 1e-6


def test_mixtures_follow_wsj0mix_recipe(tiny_corpus):
    """s_k = c * x_k[:T] / sqrt(activlev(x_k)) * 10**(snr_k / 20), one c = 0.9 / max(1, peak)."""
    src = Wsj0MixSource(tiny_corpus, "tt")
    rows = parse_mix_list(src.list_file)
    for i, (paths, snrs) in enumerate(rows):
        item = src[i]
        t = item["mix"].shape[0]
        pre = []
        for p, snr in zip(paths, snrs):
            x = resample(load_audio(tiny_corpus / p, 16000), 16000, 8000)
            pre.append(x[:t] / np.sqrt(active_level(x, 8000)) * 10 ** (float(snr) / 20))
        c = [float(np.dot(s, y) / np.dot(y, y)) for s, y in zip(item["sources"], pre)]
        assert c[0] == pytest.approx(c[1], rel=2e-3)
        peak = max(np.abs(pre[0] + pre[1]).max(), np.abs(pre[0]).max(), np.abs(pre[1]).max())
        assert c[0] == pytest.approx(0.9 / max(1.0, peak), rel=2e-3)
        np.testing.assert_allclose(item["mix"], item["sources"].sum(0), atol=2e-4)


def test_cached_killed_and_foreign(tmp_path):
    spec = synthetic.SyntheticSpec(n_train=2, n_valid=2, n_test=2, train_utts=2, eval_utts=2,
                                   tr_mixtures=2, cv_mixtures=1, tt_mixtures=1,
                                   libri_train_utts=1, libri_eval_utts=1)
    root = synthetic.ensure_corpus(tmp_path / "c", progress=False, spec=spec)
    stamp = os.stat(root / "MANIFEST.json").st_mtime_ns
    assert synthetic.ensure_corpus(root, progress=False, spec=spec) == root
    assert os.stat(root / "MANIFEST.json").st_mtime_ns == stamp  # reused, not rebuilt
    (root / "MANIFEST.json").unlink()  # as if the build had been killed before the end
    (root / "wsj0-2mix" / "mix_2_spk_tt.txt").unlink()
    synthetic.ensure_corpus(root, progress=False, spec=spec)
    assert (root / "wsj0-2mix" / "mix_2_spk_tt.txt").exists() and (root / "MANIFEST.json").exists()
    foreign = tmp_path / "my_real_data"
    (foreign / "wsj0").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="my_real_data"):
        synthetic.ensure_corpus(foreign, progress=False, spec=spec)
    assert (foreign / "wsj0").is_dir()


def test_default_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("MAMBA_JAX_DATA", str(tmp_path))
    assert synthetic.default_cache_dir().parent == tmp_path
