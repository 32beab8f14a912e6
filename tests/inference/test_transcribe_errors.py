"""One bad file does not abort a ``mamba-jax transcribe`` batch (issue 17 item 6): NaN samples at a rate that
needs resampling are reported for that file, and the other files are transcribed."""

from __future__ import annotations

import numpy as np
import soundfile as sf
from inference_helpers import speechlike

from mamba_jax.cli import main


def test_nan_file_at_another_rate_fails_alone(asr_checkpoint, tmp_path, monkeypatch, capsys):
    d, _, _ = asr_checkpoint
    folder = tmp_path / "in"
    folder.mkdir()
    bad = speechlike(0.5, 1, 22050)
    bad[100] = np.nan
    sf.write(str(folder / "a_bad.wav"), bad, 22050, subtype="FLOAT")  # NaN at 22.05 kHz: resampled to 16 kHz
    sf.write(str(folder / "b_good.wav"), speechlike(0.5, 2, 16000), 16000, subtype="PCM_16")
    sf.write(str(folder / "c_good.wav"), speechlike(0.4, 3, 22050), 22050, subtype="PCM_16")
    monkeypatch.chdir(tmp_path)
    rc = main(["transcribe", "in", "--checkpoint", str(d), "--method", "ctc_greedy"])
    out = capsys.readouterr()
    assert rc == 1
    assert [line.split("\t")[0] for line in out.out.strip().splitlines()] == ["in/b_good.wav", "in/c_good.wav"]
    assert "in/a_bad.wav" in out.err and "NaN" in out.err
    assert "1 of 3 file(s) failed" in out.err
