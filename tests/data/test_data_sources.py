"""Sources read tiny corpora written in each real layout: pairs, names, transcripts, lengths."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import soundfile as sf
from data_helpers import tone, write_pcm16

from mamba_jax.data import audio
from mamba_jax.data.libri import LibriMixSource, LibriSpeechSource, parse_trans_file
from mamba_jax.data.wsj0 import (Wsj0MixSource, Wsj0PoolSource, format_mix_name, parse_mix_list,
                                 parse_mix_name)


@pytest.mark.parametrize("name,utts,snrs", [
    ("40na010x_1.9857_01xo031a_-1.9857.wav", ("40na010x", "01xo031a"), (1.9857, -1.9857)),
    ("01aa0101_5.2094e-07_40nc0203_-5.2094e-07", ("01aa0101", "40nc0203"), (5.2094e-07, -5.2094e-07)),
    ("a_1e-05_b_-2.5_c_0", ("a", "b", "c"), (1e-05, -2.5, 0.0)),
])
def test_parse_mix_name(name, utts, snrs):
    m = parse_mix_name(name)
    assert m.utts == utts and m.snrs == snrs
    assert format_mix_name(m.utts, m.snr_texts) == name.removesuffix(".wav")


def test_parse_mix_name_rejects():
    with pytest.raises(ValueError):
        parse_mix_name("3536-8226-0026_1673-143397-0009")  # a LibriMix name has no SNRs
    with pytest.raises(ValueError):
        parse_mix_name("a_x_b_1")


def test_wsj0mix_pairs_by_name(wsj0mix_tree):
    root, names, truth = wsj0mix_tree
    for r in (root, root / "2speakers"):  # both depths resolve
        src = Wsj0MixSource(r, "tr")
        assert src.names == sorted(f"{n}.wav" for n in names["tr"])
    for i in range(len(src)):
        item = src[i]
        mix, s1, s2 = truth[item["name"].removesuffix(".wav")]
        np.testing.assert_array_equal(item["mix"], mix)
        np.testing.assert_array_equal(item["sources"], np.stack([s1, s2]))
    np.testing.assert_array_equal(src.lengths(), [len(truth[n[:-4]][0]) for n in src.names])
    assert src.parsed_name(src.names.index(
        "01aa0101_5.2094e-07_40nc0203_-5.2094e-07.wav")).snrs == (5.2094e-07, -5.2094e-07)
    assert len(Wsj0MixSource(root, "test")) == 1


def test_wsj0mix_list_orders_and_validates(wsj0mix_tree):
    root, names, _ = wsj0mix_tree
    order = [names["tr"][2], names["tr"][0], names["tr"][1]]
    lines = []
    for n in order:
        m = parse_mix_name(n)
        lines.append(f"wsj0/si_tr_s/{m.utts[0][:3]}/{m.utts[0]}.wav {m.snr_texts[0]} "
                     f"wsj0/si_tr_s/{m.utts[1][:3]}/{m.utts[1]}.wav {m.snr_texts[1]}")
    lst = root / "mix_2_spk_tr.txt"
    lst.write_text("\n".join(lines) + "\n")
    assert parse_mix_list(lst)[2][1] == ("5.2094e-07", "-5.2094e-07")
    src = Wsj0MixSource(root, "tr")  # found automatically beside the tree
    assert src.list_file == lst and src.names == [f"{n}.wav" for n in order]
    assert Wsj0MixSource(root, "tr", list_file=None).names == sorted(src.names)
    lst.write_text(lines[0] + "\nwsj0/si_tr_s/zzz/zzzc0000.wav 1.0 wsj0/si_tr_s/yyy/yyyc0000.wav -1.0\n")
    with pytest.raises(audio.AudioError, match="zzzc0000_1.0_yyyc0000_-1.0.wav"):
        Wsj0MixSource(root, "tr")


def test_wsj0mix_missing_source_and_folder(wsj0mix_tree):
    root, names, _ = wsj0mix_tree
    victim = root / "2speakers/wav8k/min/tr/s2" / f"{names['tr'][1]}.wav"
    victim.unlink()
    with pytest.raises(audio.AudioError, match=str(victim)):
        Wsj0MixSource(root, "tr")
    with pytest.raises(audio.MissingCorpusError, match="cv"):
        Wsj0MixSource(root, "cv")
    with pytest.raises(audio.MissingCorpusError, match="wav16k"):
        Wsj0MixSource(root, "tt", sample_rate=16000, on_rate_mismatch="error")
    up = Wsj0MixSource(root, "tt", sample_rate=16000)  # 8k tree resampled on load
    assert up[0]["mix"].shape == (1600,) and up.lengths()[0] == 1600


def test_wsj0_pool_speakers(tmp_path):
    counts = {"40n": 3, "01x": 1, "22g": 2}
    root = tmp_path / "wsj0"
    for spk, n in counts.items():
        for k in range(n):
            write_pcm16(root / "si_tr_s" / spk / f"{spk}a01{k}x.wav", tone(160 + k, 300, 16000), 16000)
    pool = Wsj0PoolSource(tmp_path, sample_rate=8000)  # <root>/wsj0 found
    assert pool.speakers == sorted(counts)
    assert [len(f) for f in pool.speaker_files] == [counts[s] for s in pool.speakers]
    for k, files in enumerate(pool.speaker_files):
        assert all(pool.files[i].stem[:3] == pool.speakers[k] for i in files)
    assert pool.load(0).shape == (80,)  # 160 samples at 16 kHz -> 8 kHz


def test_wsj0_pool_sphere_only(tmp_path):
    d = tmp_path / "si_tr_s" / "40n"
    d.mkdir(parents=True)
    (d / "40na010x.wv1").write_bytes(b"NIST_1A\n   1024\n".ljust(1024, b" "))
    with pytest.raises(audio.SphereFileError, match="sph2pipe"):
        Wsj0PoolSource(tmp_path)
    with pytest.raises(audio.MissingCorpusError, match="si_dt_05"):
        Wsj0PoolSource(tmp_path, subsets=("si_dt_05",))


def _librispeech(root):
    truth = {}
    rng = np.random.default_rng(1)
    for split, spk, chap, texts in [
            ("train-clean-100", "1673", "143396", ["BUT THE RASHNESS OF IT", "I DON'T KNOW"]),
            ("train-clean-100", "103", "1240", ["CHAPTER ONE"]),
            ("dev-clean", "84", "121123", ["GO DO YOU HEAR"])]:
        d = root / "LibriSpeech" / split / spk / chap
        d.mkdir(parents=True, exist_ok=True)
        lines = []
        for u, text in enumerate(texts):
            uid = f"{spk}-{chap}-{u:04d}"
            n = int(rng.integers(1000, 3000))
            q = (rng.standard_normal(n) * 3000).astype(np.int16)
            sf.write(str(d / f"{uid}.flac"), q, 16000)
            truth[uid] = (text, q.astype(np.float32) / 32768)
            lines.append(f"{uid} {text}")
        (d / f"{spk}-{chap}.trans.txt").write_text("\n".join(lines) + "\n")
    return truth


def test_librispeech_transcripts_and_lengths(tmp_path):
    truth = _librispeech(tmp_path)
    src = LibriSpeechSource(tmp_path, ["train-clean-100"])
    assert sorted(src.ids) == sorted(k for k in truth if not k.startswith("84-"))
    for i in range(len(src)):
        item = src[i]
        text, wave = truth[item["id"]]
        assert item["text"] == text
        np.testing.assert_array_equal(item["wave"], wave)
        assert src.lengths()[i] == len(wave)
    both = LibriSpeechSource(tmp_path / "LibriSpeech", ["train-clean-100", "dev-clean"])
    assert len(both) == 4 and "GO DO YOU HEAR" in both.texts
    assert parse_trans_file(next((tmp_path / "LibriSpeech/dev-clean").rglob("*.trans.txt"))) == [
        ("84-121123-0000", "GO DO YOU HEAR")]


def test_librispeech_missing_flac_named(tmp_path):
    _librispeech(tmp_path)
    victim = tmp_path / "LibriSpeech/dev-clean/84/121123/84-121123-0000.flac"
    victim.unlink()
    with pytest.raises(audio.AudioError, match=str(victim)):
        LibriSpeechSource(tmp_path, ["dev-clean"])
    with pytest.raises(audio.MissingCorpusError, match="test-other"):
        LibriSpeechSource(tmp_path, ["test-other"])


def test_librimix_csv_with_foreign_absolute_paths(tmp_path):
    base = tmp_path / "Libri2Mix" / "wav8k" / "min"
    rows, truth = [], {}
    for k, (u1, u2) in enumerate([("3536-8226-0026", "1673-143397-0009"),
                                  ("84-121123-0001", "174-50561-0002")]):
        mid = f"{u1}_{u2}"
        n = 500 + 10 * k
        s1, s2 = tone(n, 220, 8000), tone(n, 330 + k, 8000, 0.2)
        truth[mid] = [write_pcm16(base / "dev" / sub / f"{mid}.wav", x, 8000)
                      for sub, x in (("mix_clean", s1 + s2), ("s1", s1), ("s2", s2))]
        far = "/home/someone/LibriMix/Libri2Mix/wav8k/min/dev"  # generated on another machine
        rows.append([mid, f"{far}/mix_clean/{mid}.wav", f"{far}/s1/{mid}.wav", f"{far}/s2/{mid}.wav",
                     n])
    (base / "metadata").mkdir()
    with open(base / "metadata" / "mixture_dev_mix_clean.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["mixture_ID", "mixture_path", "source_1_path", "source_2_path", "length"])
        w.writerows(rows)
    src = LibriMixSource(tmp_path, "valid")
    assert src.names == [r[0] for r in rows]
    np.testing.assert_array_equal(src.lengths(), [500, 510])
    for i in range(2):
        item = src[i]
        mix, s1, s2 = truth[item["name"]]
        np.testing.assert_array_equal(item["mix"], mix)
        np.testing.assert_array_equal(item["sources"], np.stack([s1, s2]))
    (base / "dev" / "s2" / f"{rows[1][0]}.wav").unlink()
    with pytest.raises(audio.AudioError, match=f"{rows[1][0]}.wav"):
        LibriMixSource(tmp_path, "dev")
