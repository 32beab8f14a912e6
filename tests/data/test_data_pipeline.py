"""grain pipelines on the tiny synthetic corpus: batches, determinism, resume, sharding, workers."""

from __future__ import annotations

import collections
import hashlib

import grain
import numpy as np
import orbax.checkpoint as ocp
import pytest

from mamba_jax.data import audio
from mamba_jax.data.config import data_config
from mamba_jax.data.libri import parse_trans_file
from mamba_jax.data.pipeline import asr_dataset, separation_dataset, steps_per_epoch


def _take(it, n):
    return [next(it) for _ in range(n)]


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])


def _fingerprints(batches):
    out = []
    for b in batches:
        for m, n in zip(b["mix"], b["lengths"]):
            out.append(hashlib.sha1(m[:n].tobytes()).hexdigest())
    return out


def test_static_batches_padded_with_lengths(tiny_corpus):
    cfg = data_config(root=str(tiny_corpus))
    batches = list(separation_dataset(cfg, "valid", batch_size=3, seed=0, drop_remainder=False))
    assert [len(b["lengths"]) for b in batches] == [3, 1]  # cv has 4 mixtures, one ordered pass
    for b in batches:
        bsz, t = b["mix"].shape
        assert b["mix"].dtype == np.float32 and b["sources"].shape == (bsz, 2, t)
        assert b["lengths"].dtype == np.int32 and b["lengths"].max() == t
        for k, n in enumerate(b["lengths"]):
            assert not np.any(b["mix"][k, n:]) and not np.any(b["sources"][k, :, n:])
            # wsj0-2mix files: mix = s1 + s2 up to PCM_16 rounding of three files
            np.testing.assert_allclose(b["mix"][k, :n], b["sources"][k, :, :n].sum(0), atol=2e-4)


def test_train_segment_static_shape_and_drop_shorter(tiny_corpus):
    cfg = data_config(root=str(tiny_corpus), segment_seconds=1.25, drop_shorter=True)
    it = iter(separation_dataset(cfg, "train", batch_size=2, seed=1))
    for b in _take(it, 6):
        assert b["mix"].shape == (2, 10000)
        assert np.all(b["lengths"] == 10000)  # shorter items dropped, longer ones cropped
    n_long = steps_per_epoch(cfg, "train", batch_size=1)
    n_all = steps_per_epoch(data_config(root=str(tiny_corpus)), "train", batch_size=1)
    assert 0 < n_long < n_all == 12


def test_epoch_is_a_permutation_and_seeded(tiny_corpus):
    cfg = data_config(root=str(tiny_corpus))
    full = _fingerprints(separation_dataset(cfg, "train", batch_size=1, seed=0, num_epochs=2))
    e0, e1 = full[:12], full[12:]
    assert len(set(e0)) == 12 and set(e0) == set(e1) and e0 != e1  # reshuffled per epoch
    again = _fingerprints(separation_dataset(cfg, "train", batch_size=1, seed=0, num_epochs=2))
    other = _fingerprints(separation_dataset(cfg, "train", batch_size=1, seed=1, num_epochs=1))
    assert again == full and other != e0 and set(other) == set(e0)


@pytest.mark.parametrize("procs", [2, 5])
def test_shards_disjoint_and_cover(tiny_corpus, procs):
    cfg = data_config(root=str(tiny_corpus))
    ref = collections.Counter(_fingerprints(
        separation_dataset(cfg, "train", batch_size=1, seed=3, num_epochs=2)))
    shards = [_fingerprints(separation_dataset(cfg, "train", batch_size=1, seed=3, num_epochs=2,
                                               process_index=p, process_count=procs))
              for p in range(procs)]
    assert sum(map(collections.Counter, shards), collections.Counter()) == ref
    assert all(v == 2 for v in ref.values())  # each item once per epoch, over all hosts
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1
    # within epoch 0, host p holds global indices p, p + P, ... < 12: ceil((12 - p) / P) items
    epoch0 = [set(s[: -(-(12 - p) // procs)]) for p, s in enumerate(shards)]
    assert sum(len(e) for e in epoch0) == 12 and len(set().union(*epoch0)) == 12


@pytest.mark.parametrize("kw", [dict(), dict(dynamic_mixing=True, speed_perturb=True),
                                dict(dynamic_mixing=True, dm_recipe="sepmamba",
                                     segment_seconds=1.0)])
def test_iterator_state_resumes_exactly(tiny_corpus, kw):
    cfg = data_config(root=str(tiny_corpus), **kw)
    ds = separation_dataset(cfg, "train", batch_size=2, seed=5)
    it = iter(ds)
    _take(it, 7)  # crosses the 6-batch epoch boundary
    state = it.get_state()
    expected = _take(it, 4)
    fresh = iter(separation_dataset(cfg, "train", batch_size=2, seed=5))
    fresh.set_state(state)
    _same(_take(fresh, 4), expected)


def test_orbax_checkpoint_manager_round_trip(tiny_corpus, tmp_path):
    cfg = data_config(root=str(tiny_corpus), dynamic_mixing=True)
    it = iter(separation_dataset(cfg, "train", batch_size=2, seed=9))
    _take(it, 3)
    mngr = ocp.CheckpointManager(tmp_path / "ckpt", options=ocp.CheckpointManagerOptions(
        max_to_keep=2, enable_async_checkpointing=False), item_names=("data_iter",))
    mngr.save(3, args=ocp.args.Composite(data_iter=grain.checkpoint.CheckpointSave(it)))
    mngr.wait_until_finished()
    expected = _take(it, 3)
    mngr.close()
    mngr = ocp.CheckpointManager(tmp_path / "ckpt", item_names=("data_iter",))
    fresh = iter(separation_dataset(cfg, "train", batch_size=2, seed=9))
    mngr.restore(mngr.latest_step(),
                 args=ocp.args.Composite(data_iter=grain.checkpoint.CheckpointRestore(fresh)))
    mngr.close()
    _same(_take(fresh, 3), expected)


def test_workers_give_identical_batches_and_resume(tiny_corpus):
    kw = dict(root=str(tiny_corpus), dynamic_mixing=True, segment_seconds=1.0)
    ref = _take(iter(separation_dataset(data_config(**kw), "train", batch_size=2, seed=4)), 5)
    ds = separation_dataset(data_config(num_workers=2, **kw), "train", batch_size=2, seed=4)
    it = iter(ds)
    try:
        got = _take(it, 3)
        state = it.get_state()
        got += _take(it, 2)
    finally:
        it.close()
    _same(got, ref)
    it = iter(separation_dataset(data_config(num_workers=2, **kw), "train", batch_size=2, seed=4))
    try:
        it.set_state(state)
        _same(_take(it, 2), ref[3:])
    finally:
        it.close()


def test_asr_batches_match_transcripts(tiny_corpus):
    cfg = data_config(root=str(tiny_corpus), corpus="librispeech")
    assert cfg.sample_rate == 16000
    truth = {}
    for t in (tiny_corpus / "LibriSpeech" / "dev-clean").rglob("*.trans.txt"):
        for uid, text in parse_trans_file(t):
            truth[uid] = (text, audio.audio_info(t.parent / f"{uid}.flac")[0])
    seen = {}
    for b in asr_dataset(cfg, "valid", batch_size=3, seed=0, drop_remainder=False):
        assert b["wave"].dtype == np.float32 and b["wave_lengths"].dtype == np.int32
        for k, uid in enumerate(b["ids"]):
            seen[uid] = (b["text"][k], int(b["wave_lengths"][k]))
            assert not np.any(b["wave"][k, b["wave_lengths"][k]:])
    assert seen == truth


def test_missing_root_names_folder(tmp_path):
    cfg = data_config(root=str(tmp_path / "absent"))
    with pytest.raises(audio.MissingCorpusError, match="absent"):
        separation_dataset(cfg, "train", batch_size=1, seed=0)


def test_config_rejects_bad_values():
    with pytest.raises(AttributeError):
        data_config(segmnet_seconds=4.0)
    with pytest.raises(ValueError):
        data_config(dm_recipe="wham")
    with pytest.raises(ValueError):
        data_config(drop_shorter=True)
