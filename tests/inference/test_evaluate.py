"""``mamba-jax evaluate``: per-utterance CSV and summary vs the metrics module and the pesq/pystoi/jiwer libraries."""

from __future__ import annotations

import csv
import itertools
import json
import pathlib

import jiwer
import numpy as np
import pytest
from pesq import pesq
from pystoi import stoi

from mamba_jax.cli import main
from mamba_jax.data.pipeline import asr_dataset, separation_dataset
from mamba_jax.inference import Separator, Transcriber
from mamba_jax.inference.evaluate import pesq_score
from mamba_jax.metrics.separation import sdri, si_snri

ROOT = pathlib.Path(__file__).resolve().parents[2]
N = 2


def _rows(path: pathlib.Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _si_snr64(est: np.ndarray, ref: np.ndarray) -> float:
    """Zero-mean SI-SNR in float64 (textbook form, no eps)."""
    e, s = est - est.mean(), ref - ref.mean()
    target = (e @ s) / (s @ s) * s
    return 10 * np.log10((target @ target) / ((e - target) @ (e - target)))


def test_separation_csv_matches_metrics_and_libraries(sep_checkpoint, tmp_path, capsys):
    d, config, _ = sep_checkpoint
    out = tmp_path / "eval"
    rc = main(["evaluate", "--checkpoint", str(d), "--config", str(ROOT / "configs" / "sepmamba_s.py") + ":smoke",
               "--max-utterances", str(N), "--out", str(out), "--plots", "1"])
    assert rc == 0, capsys.readouterr().err
    rows = _rows(out / "utterances.csv")
    summary = json.loads((out / "summary.json").read_text())
    assert len(rows) == N and summary["utterances"] == N
    assert summary["segmentation"] == "whole utterance" and summary["chunk_seconds"] is None
    assert (out / "spectrogram_0.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (out / "spectrogram_1.png").exists()

    sep = Separator.from_checkpoint(d)
    it = iter(separation_dataset(config.data, "test", batch_size=1, seed=0, drop_remainder=False))
    for row, batch in zip(rows, itertools.islice(it, N)):
        n = int(batch["lengths"][0])
        mix = batch["mix"][0, :n].astype(np.float64)
        ref = batch["sources"][0, :, :n].astype(np.float64)
        est = sep.separate_batch(batch["mix"][:, :n])[0].astype(np.float64)
        assert float(row["seconds"]) == pytest.approx(n / 8000, abs=1e-4)
        np.testing.assert_allclose(float(row["si_snri"]), si_snri(est, ref, mix), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(float(row["sdri"]), sdri(est, ref, mix), rtol=1e-6, atol=1e-6)
        # Permutation by brute force over float64 SI-SNR, then the metric libraries on each matched pair.
        perm = max(itertools.permutations(range(2)), key=lambda p: sum(_si_snr64(est[p[j]], ref[j]) for j in range(2)))
        np.testing.assert_allclose(float(row["si_snr"]), np.mean([_si_snr64(est[perm[j]], ref[j]) for j in range(2)]),
                                   atol=1e-4)
        want_pesq = np.mean([pesq(8000, ref[j], est[perm[j]], "nb") for j in range(2)])
        want_stoi = np.mean([stoi(ref[j], est[perm[j]], 8000, extended=False) for j in range(2)])
        np.testing.assert_allclose(float(row["pesq_nb"]), want_pesq, rtol=1e-5)
        np.testing.assert_allclose(float(row["stoi"]), want_stoi, rtol=1e-5, atol=1e-6)
    for key in ("si_snri", "sdri", "pesq_nb", "stoi"):
        np.testing.assert_allclose(summary[key], np.mean([float(r[key]) for r in rows]), rtol=1e-9)


def test_separation_whole_utterance_by_default(sep_checkpoint):
    """A Separator built with short overlap-add windows still evaluates each utterance whole, unless the
    evaluation sets ``chunk_seconds`` (and then says so in the summary)."""
    from mamba_jax.inference.evaluate import evaluate_separation

    d, config, model = sep_checkpoint
    windowed = Separator(model, config, chunk_seconds=0.1, hop_seconds=0.05)
    batch = next(iter(separation_dataset(config.data, "test", batch_size=1, seed=0, drop_remainder=False)))
    n = int(batch["lengths"][0])
    assert n > windowed.chunk  # the windows would apply
    mix, ref = batch["mix"][0, :n].astype(np.float64), batch["sources"][0, :, :n].astype(np.float64)
    whole = Separator(model, config, chunk_seconds=None).separate_batch(batch["mix"][:, :n])[0]
    kw = dict(max_utterances=1, perceptual=False, progress=False, n_plots=0)
    summary, rows = evaluate_separation(windowed, config, **kw)
    assert summary["segmentation"] == "whole utterance"
    np.testing.assert_allclose(rows[0]["si_snri"], si_snri(whole.astype(np.float64), ref, mix), rtol=1e-6, atol=1e-6)
    summary, rows_ola = evaluate_separation(windowed, config, chunk_seconds=0.1, hop_seconds=0.05, **kw)
    assert summary["segmentation"] == "overlap-add past 0.1 s (hop 0.05 s)" and summary["chunk_seconds"] == 0.1
    assert abs(rows_ola[0]["si_snri"] - rows[0]["si_snri"]) > 1e-4


def test_pesq_wideband_and_rejected_signal():
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    ref = (np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 3 * t) > 0) + 0.05 * rng.standard_normal(t.size))
    est = ref + 0.1 * rng.standard_normal(t.size)
    assert pesq_score(ref, est, 16000) == ("wb", pytest.approx(pesq(16000, ref, est, "wb"), rel=1e-6))
    with pytest.warns(UserWarning, match="PESQ failed"):
        mode, value = pesq_score(np.zeros(16000), est, 16000)
    assert mode == "wb" and np.isnan(value)


def test_asr_wer_matches_jiwer(asr_checkpoint, tmp_path, capsys):
    d, config, _ = asr_checkpoint
    out = tmp_path / "eval"
    rc = main(["evaluate", "--checkpoint", str(d), "--max-utterances", str(N), "--out", str(out),
               "--method", "ctc_greedy"])
    assert rc == 0, capsys.readouterr().err
    rows = _rows(out / "utterances.csv")
    summary = json.loads((out / "summary.json").read_text())
    asr = Transcriber.from_checkpoint(d)
    it = iter(asr_dataset(config.data, "test", batch_size=1, seed=0, drop_remainder=False))
    refs, hyps = [], []
    for row, batch in zip(rows, itertools.islice(it, N)):
        n = int(batch["wave_lengths"][0])
        hyp = asr.transcribe(batch["wave"][0, :n], 16000, method="ctc_greedy")
        assert (row["id"], row["ref"], row["hyp"]) == (str(batch["ids"][0]), str(batch["text"][0]), hyp)
        assert hyp  # the random smoke model emits tokens, so jiwer's rates are defined
        np.testing.assert_allclose(float(row["wer"]), 100 * jiwer.wer(row["ref"], hyp), rtol=1e-9)
        np.testing.assert_allclose(float(row["cer"]), 100 * jiwer.cer(row["ref"], hyp), rtol=1e-9)
        refs.append(row["ref"])
        hyps.append(hyp)
    assert len(refs) == N and summary["method"] == "ctc_greedy"
    np.testing.assert_allclose(summary["wer"], 100 * jiwer.wer(refs, hyps), rtol=1e-9)
    np.testing.assert_allclose(summary["cer"], 100 * jiwer.cer(refs, hyps), rtol=1e-9)

def test_evaluate_config_mismatch(sep_checkpoint, capsys):
    d, _, _ = sep_checkpoint
    rc = main(["evaluate", "--checkpoint", str(d), "--config", str(ROOT / "configs" / "conmamba_small.py") + ":smoke"])
    assert rc == 1
    assert "'asr' 'conmamba' config" in capsys.readouterr().err
