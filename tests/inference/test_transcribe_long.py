"""Long recordings in pieces cut at quiet points, with a progress bar; the one-call ``transcribe_file``."""

from __future__ import annotations

import numpy as np
import soundfile as sf
from inference_helpers import speechlike

from mamba_jax.inference.transcriber import Transcriber, split_points, transcribe_file

RATE = 16000


def _recording() -> tuple[np.ndarray, list[int]]:
    """2.6 s of speech-like sound with two silent gaps; returns it and the gaps' first samples."""
    x = speechlike(2.6, 4, RATE)
    gaps = [int(0.85 * RATE), int(1.7 * RATE)]
    for g in gaps:
        x[g:g + 800] = 0.0  # 50 ms of silence
    return x, gaps


def test_split_points_cut_in_the_quietest_frame():
    x, gaps = _recording()
    assert split_points(x, RATE, 1.0) == gaps  # each gap lies in the last quarter of its 1 s piece
    assert split_points(x, RATE, 5.0) == []


def test_transcribe_long_and_file(asr_checkpoint, tmp_path, monkeypatch, capsys):
    d, _, _ = asr_checkpoint
    asr = Transcriber.from_checkpoint(d)
    x, gaps = _recording()
    capsys.readouterr()
    got = asr.transcribe_long(x, RATE, chunk_seconds=1.0, method="ctc_greedy")
    assert "transcribe" in capsys.readouterr().err  # the progress bar
    pieces = [x[a:b] for a, b in zip([0] + gaps, gaps + [x.size])]
    texts = [asr.transcribe(p, RATE, method="ctc_greedy") for p in pieces]
    assert got == " ".join(t for t in texts if t) and got
    sf.write(str(tmp_path / "talk.wav"), x, RATE, subtype="FLOAT")
    monkeypatch.chdir(tmp_path)
    assert transcribe_file("talk.wav", d, method="ctc_greedy", chunk_seconds=1.0, progress=False) == got
    assert transcribe_file("talk.wav", asr, method="ctc_greedy") == asr.transcribe(x, RATE, method="ctc_greedy")
