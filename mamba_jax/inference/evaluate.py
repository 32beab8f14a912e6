"""Test-set evaluation of a trained checkpoint: per-utterance metrics, a CSV, a summary JSON and plots.

Separation (``evaluate_separation``), per test mixture of ``config.data`` (``separation_dataset``; with
``data.root`` unset, the embedded synthetic corpus), full length, estimates from ``Separator.separate_batch``
with the exact length of each mixture. Each utterance is separated whole by default, as the papers evaluate;
``chunk_seconds`` switches to overlap-add windows for utterances longer than it. The summary names the setting
(``segmentation``). ``split="train"`` evaluates the training items as the trainer draws them with seed 0, in
order and without speed perturbation, so the set is the same on every call: crops of ``data.segment_seconds``,
and with dynamic mixing the mixtures of the raw-WSJ0 pool (named ``dynamic mixture <k> (seed 0)``):

* ``si_snr`` / ``si_snri``: PIT SI-SNR of the estimates and its improvement over the mixture
  (``mamba_jax.metrics.separation.si_snri``);
* ``sdri``: BSS-eval v3 SDR improvement (``mamba_jax.metrics.separation.sdri``);
* ``pesq_nb`` (8 kHz data) or ``pesq_wb`` (16 kHz data; ITU-T P.862 / P.862.2 through the ``pesq`` package)
  and ``stoi`` (``pystoi``), each the mean over sources of ``metric(reference_j, estimate_perm[j])`` with the
  SI-SNR permutation. Other rates are resampled to 16 kHz for PESQ (wide band). PESQ of a signal it rejects
  (e.g. no detectable speech) is NaN; the means skip NaNs and the summary counts them.

ASR (``evaluate_asr``), per utterance of ``asr_dataset``: hypothesis from ``Transcriber.transcribe``, WER and
CER against the transcript; the summary holds corpus WER/CER (total edits over total reference units, percent).

Files under ``out_dir``: ``utterances.csv`` (one row per utterance), ``summary.json`` (means and the setup),
and for separation ``spectrogram_<k>.png`` of the mixture, the references and the estimates of the first
``n_plots`` utterances.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import pathlib
import time
import warnings
from collections.abc import Sequence

import ml_collections
import numpy as np
from tqdm.auto import tqdm

from mamba_jax.data.audio import resample
from mamba_jax.fileio import check_writable, write_atomic
from mamba_jax.metrics.asr import corpus_cer, corpus_wer, utterance_cer, utterance_wer
from mamba_jax.metrics.separation import pit_si_snr, sdri, si_snri

__all__ = ["evaluate_asr", "evaluate_separation", "pesq_score", "plot_spectrograms", "separation_metrics",
           "stoi_score"]


def pesq_score(ref: np.ndarray, est: np.ndarray, sample_rate: int) -> tuple[str, float]:
    """``(mode, PESQ)`` of ``est [T]`` against ``ref [T]``: narrow band at 8 kHz, wide band at 16 kHz (other
    rates are resampled to 16 kHz). NaN when PESQ rejects the signal (no utterance detected, too short)."""
    from pesq import pesq

    if sample_rate == 8000:
        mode = "nb"
    else:
        mode = "wb"
        if sample_rate != 16000:
            ref, est = resample(ref, sample_rate, 16000), resample(est, sample_rate, 16000)
            sample_rate = 16000
    try:
        return mode, float(pesq(sample_rate, np.asarray(ref, np.float64), np.asarray(est, np.float64), mode))
    except Exception as e:  # pesq raises NoUtterancesError / BufferTooShortError / a plain cypesq error
        warnings.warn(f"PESQ failed ({type(e).__name__}: {e}); recorded as NaN", stacklevel=2)
        return mode, float("nan")


def stoi_score(ref: np.ndarray, est: np.ndarray, sample_rate: int) -> float:
    """STOI (Taal et al. 2011, ``pystoi``; resampled to 10 kHz inside) of ``est [T]`` against ``ref [T]``."""
    from pystoi import stoi

    return float(stoi(np.asarray(ref, np.float64), np.asarray(est, np.float64), sample_rate, extended=False))


def separation_metrics(est: np.ndarray, ref: np.ndarray, mix: np.ndarray, sample_rate: int, *,
                       perceptual: bool = True) -> dict[str, float]:
    """Every separation metric of one utterance: ``est [S, T]``, ``ref [S, T]``, ``mix [T]`` (see module doc)."""
    est, ref, mix = (np.asarray(a, np.float64) for a in (est, ref, mix))
    if est.shape != ref.shape:
        raise ValueError(f"estimates {est.shape} and references {ref.shape} differ in shape")
    vals, perm = pit_si_snr(est, ref)
    row = dict(si_snr=float(np.mean(vals)), si_snri=si_snri(est, ref, mix), sdri=sdri(est, ref, mix))
    if perceptual:
        pesqs = [pesq_score(ref[j], est[perm[j]], sample_rate) for j in range(ref.shape[0])]
        row[f"pesq_{pesqs[0][0]}"] = float(np.mean([p for _, p in pesqs]))
        row["stoi"] = float(np.mean([stoi_score(ref[j], est[perm[j]], sample_rate) for j in range(ref.shape[0])]))
    return row


def plot_spectrograms(path: str | pathlib.Path, mix: np.ndarray, est: np.ndarray, sample_rate: int, *,
                      ref: np.ndarray | None = None, title: str = "") -> None:
    """PNG of log-power spectrograms: the mixture, then each estimate (beside its reference when given)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n_src = est.shape[0]
    cols = 1 if ref is None else 2
    fig, axes = plt.subplots(n_src + 1, cols, figsize=(5 * cols, 1.8 * (n_src + 1)), squeeze=False,
                             sharex=True, sharey=True)
    nfft = 256 if sample_rate <= 8000 else 512

    def show(ax, x, label):
        with np.errstate(divide="ignore"):  # exact zeros (padding, silence) are -inf dB: drawn as the floor
            ax.specgram(np.asarray(x, np.float64), NFFT=nfft, Fs=sample_rate, noverlap=nfft * 3 // 4, cmap="magma")
        ax.set_title(label, fontsize=9)

    show(axes[0, 0], mix, "mixture")
    if cols == 2:
        axes[0, 1].axis("off")
    for s in range(n_src):
        show(axes[s + 1, 0], est[s], f"estimate {s + 1}")
        if ref is not None:
            show(axes[s + 1, 1], ref[s], f"reference {s + 1}")
    for ax in axes[-1]:
        ax.set_xlabel("s")
    for ax in axes[:, 0]:
        ax.set_ylabel("Hz")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    write_atomic(path, buf.getvalue())  # no partial PNG on a full disk


def _write_outputs(out_dir: pathlib.Path | None, rows: list[dict], summary: dict) -> None:
    if out_dir is None:
        return
    fields = list(rows[0]) if rows else []
    table = io.StringIO(newline="")
    w = csv.DictWriter(table, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)
    # each renamed into place once complete: a full disk leaves no truncated CSV or JSON (mamba_jax.fileio)
    write_atomic(out_dir / "utterances.csv", table.getvalue())
    write_atomic(out_dir / "summary.json", json.dumps(summary, indent=2, allow_nan=True) + "\n")


def _deterministic(data: ml_collections.ConfigDict, split: str) -> ml_collections.ConfigDict:
    """``data`` for evaluating ``split``: the training split without speed perturbation (and, called with
    ``shuffle=False`` and seed 0, in order), so two evaluations see the same utterances."""
    if split != "train" or not data.get("speed_perturb"):
        return data
    data = copy.deepcopy(data)
    with data.unlocked():
        data.speed_perturb = False
    return data


def _means(rows: list[dict], keys: Sequence[str]) -> dict[str, float]:
    out = {}
    for k in keys:
        vals = np.array([r[k] for r in rows], np.float64)
        ok = np.isfinite(vals)
        out[k] = float(np.mean(vals[ok])) if ok.any() else float("nan")
        if not ok.all():
            out[f"{k}_n_nan"] = int((~ok).sum())
    return out


def evaluate_separation(separator, config: ml_collections.ConfigDict, *, split: str = "test",
                        max_utterances: int | None = None, out_dir: str | pathlib.Path | None = None,
                        n_plots: int = 3, perceptual: bool = True, progress: bool = True,
                        chunk_seconds: float | None = None, hop_seconds: float | None = None,
                        checkpoint: str | None = None, step: int | None = None) -> tuple[dict, list[dict]]:
    """Evaluates ``separator`` (a :class:`mamba_jax.inference.Separator`) on ``config.data``'s ``split``.

    Utterances are separated whole unless ``chunk_seconds`` is set (then overlap-add windows of that length,
    ``hop_seconds`` apart, past it), whatever the separator's own ``chunk_seconds``. Returns ``(summary, rows)``:
    the means, count and setup (with ``checkpoint``/``step`` when given), and one dict per utterance (``name``:
    the corpus's utterance name); with ``out_dir`` also writes the CSV, the JSON and ``n_plots`` spectrogram PNGs
    (see the module docstring).
    """
    from mamba_jax.data.pipeline import iterate, separation_dataset

    if config.get("task") != "separation":
        raise ValueError(f"evaluate_separation needs a separation config, got task {config.get('task')!r}")
    rate = int(config.data.sample_rate)
    if int(separator.sample_rate) != rate:
        raise ValueError(f"the model runs at {separator.sample_rate} Hz but config.data.sample_rate is {rate} Hz")
    separator = separator.with_chunking(chunk_seconds, hop_seconds)
    segmentation = ("whole utterance" if chunk_seconds is None else
                    f"overlap-add past {chunk_seconds} s (hop {separator.hop / rate:g} s)")
    out_dir = None if out_dir is None else pathlib.Path(out_dir)
    if out_dir is not None:
        check_writable(out_dir)  # a read-only or full folder: before the first utterance
    data = _deterministic(config.data, split)
    ds = separation_dataset(data, split, batch_size=1, seed=0, drop_remainder=False, num_epochs=1,
                            shuffle=False, with_names=True)
    rows: list[dict] = []
    t0 = time.perf_counter()
    with iterate(ds, max_utterances) as utterances:
        bar = tqdm(enumerate(utterances), total=max_utterances, desc=f"evaluate {split}", unit="utt",
                   disable=not progress)
        for i, batch in bar:
            n = int(batch["lengths"][0])
            mix = np.asarray(batch["mix"][0, :n], np.float32)
            ref = np.asarray(batch["sources"][0, :, :n], np.float32)
            est = np.asarray(separator.separate_batch(mix[None], lengths=np.array([n])))[0, :, :n]
            # dynamically mixed training items have no file: named by their index (seed 0, in order)
            name = str(batch["names"][0]) if "names" in batch else f"dynamic mixture {i} (seed 0)"
            row = dict(utterance=i, name=name, seconds=round(n / rate, 4))
            row.update(separation_metrics(est, ref, mix, rate, perceptual=perceptual))
            rows.append(row)
            bar.set_postfix(si_snri=f"{np.mean([r['si_snri'] for r in rows]):.2f}")
            if out_dir is not None and i < n_plots:
                plot_spectrograms(out_dir / f"spectrogram_{i}.png", mix, est, rate, ref=ref,
                                  title=f"{split} utterance {i}: SI-SNRi {row['si_snri']:.2f} dB")
    if not rows:
        raise ValueError(f"split {split!r} of {config.data.corpus!r} holds no utterance")
    metric_keys = [k for k in rows[0] if k not in ("utterance", "name", "seconds")]
    summary = dict(task="separation", split=split, utterances=len(rows), sample_rate=rate,
                   model=config.model.name, checkpoint=checkpoint, step=step,
                   corpus=config.data.corpus, data_root=config.data.root,
                   segmentation=segmentation, chunk_seconds=chunk_seconds,
                   seconds=round(time.perf_counter() - t0, 2), **_means(rows, metric_keys))
    _write_outputs(out_dir, rows, summary)
    return summary, rows


def evaluate_asr(transcriber, config: ml_collections.ConfigDict, *, split: str = "test",
                 max_utterances: int | None = None, out_dir: str | pathlib.Path | None = None,
                 method: str | None = None, beam_size: int | None = None, progress: bool = True,
                 checkpoint: str | None = None, step: int | None = None) -> tuple[dict, list[dict]]:
    """Evaluates ``transcriber`` (a :class:`mamba_jax.inference.Transcriber`) on ``config.data``'s ``split``:
    ``(summary, rows)`` with corpus WER/CER in percent and per-utterance rows (see the module docstring)."""
    from mamba_jax.data.pipeline import asr_dataset, iterate

    if config.get("task") != "asr":
        raise ValueError(f"evaluate_asr needs an ASR config, got task {config.get('task')!r}")
    rate = int(config.data.sample_rate)
    out_dir = None if out_dir is None else pathlib.Path(out_dir)
    if out_dir is not None:
        check_writable(out_dir)
    ds = asr_dataset(_deterministic(config.data, split), split, batch_size=1, seed=0, drop_remainder=False,
                     num_epochs=1, shuffle=False)
    rows: list[dict] = []
    t0 = time.perf_counter()
    with iterate(ds, max_utterances) as utterances:
        for batch in tqdm(utterances, total=max_utterances, desc=f"evaluate {split}", unit="utt",
                          disable=not progress):
            n = int(batch["wave_lengths"][0])
            ref = str(batch["text"][0])
            hyp = transcriber.transcribe(np.asarray(batch["wave"][0, :n]), rate, method=method,
                                         beam_size=beam_size)
            w, c = utterance_wer(ref, hyp), utterance_cer(ref, hyp)
            rows.append(dict(id=str(batch["ids"][0]), wer=100.0 * w.rate, cer=100.0 * c.rate,
                             word_errors=w.errors, words=w.ref_len, char_errors=c.errors, chars=c.ref_len,
                             ref=ref, hyp=hyp))
    if not rows:
        raise ValueError(f"split {split!r} of {config.data.corpus!r} holds no utterance")
    refs, hyps = [r["ref"] for r in rows], [r["hyp"] for r in rows]
    summary = dict(task="asr", split=split, utterances=len(rows), sample_rate=rate, model=config.model.name,
                   checkpoint=checkpoint, step=step,
                   corpus=config.data.corpus, data_root=config.data.root,
                   method=method or transcriber.default_method,
                   beam_size=beam_size or transcriber.default_beam_size,
                   wer=100.0 * corpus_wer(refs, hyps), cer=100.0 * corpus_cer(refs, hyps),
                   seconds=round(time.perf_counter() - t0, 2))
    _write_outputs(out_dir, rows, summary)
    return summary, rows
