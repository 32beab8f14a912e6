"""The ``mamba-jax`` console script: separate / transcribe / convert on real files, errors that name the file."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from inference_helpers import speechlike

from mamba_jax.cli import main
from mamba_jax.inference import Separator, Transcriber

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = pathlib.Path(sys.executable).parent / "mamba-jax"


def _stereo(path: pathlib.Path, seconds: float, rate: int) -> np.ndarray:
    """Writes two different speech-like channels as PCM_16; returns the float64 samples soundfile reads back."""
    x = np.stack([speechlike(seconds, 1, rate), speechlike(seconds, 2, rate)], axis=1)  # [T, 2]
    sf.write(str(path), x, rate, subtype="PCM_16")
    return sf.read(str(path), dtype="float64")[0]


def test_console_script_help():
    out = subprocess.run([str(SCRIPT), "--help"], capture_output=True, text=True, check=True).stdout
    for cmd in ("separate", "transcribe", "evaluate", "convert"):
        assert cmd in out


def test_separate_stereo_44k(sep_checkpoint, tmp_path, capsys):
    d, _, _ = sep_checkpoint
    wav = tmp_path / "in" / "talk.wav"
    wav.parent.mkdir()
    x = _stereo(wav, 0.6, 44100)
    rc = main(["separate", str(wav), "--checkpoint", str(d), "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "2 channels" in captured.err and "44100 Hz resampled" in captured.err
    # Reference: the channel mean of what soundfile reads, separated through the library at 44.1 kHz.
    ref = Separator.from_checkpoint(d).separate(x.mean(axis=1).astype(np.float32), 44100)
    peak = np.max(np.abs(ref))
    ref = ref * (0.999 / peak) if peak > 0.999 else ref
    for k in (1, 2):
        out = tmp_path / "out" / f"talk_s{k}.wav"
        info = sf.info(str(out))
        assert (info.samplerate, info.frames, info.channels) == (44100, x.shape[0], 1)
        y = sf.read(str(out), dtype="float64")[0]
        np.testing.assert_allclose(y, ref[k - 1], atol=1.0 / 32768 + 1e-6)  # PCM_16 rounding
        assert str(out) in captured.out
    assert np.std(ref[0]) > 0 and not np.allclose(ref[0], ref[1])


def test_separate_folder_reports_bad_files(sep_checkpoint, tmp_path, capsys):
    d, _, _ = sep_checkpoint
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    sf.write(str(src / "good.wav"), speechlike(0.5, 3, 8000), 8000)
    sf.write(str(src / "sub" / "other.flac"), speechlike(0.4, 4, 8000), 8000)
    (src / "corrupt.wav").write_bytes(np.random.default_rng(0).bytes(3000))
    (src / "empty.wav").write_bytes(b"")
    sf.write(str(src / "silent.wav"), np.zeros(4000, np.float32), 8000)
    rc = main(["separate", str(src), "--checkpoint", str(d), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 1
    for bad, why in (("corrupt.wav", "corrupt"), ("empty.wav", "empty"), ("silent.wav", "silent")):
        line = next(ln for ln in err.splitlines() if ln.startswith("error:") and bad in ln)
        assert why in line.lower(), line
    assert "3 of 5 file(s) failed" in err
    out = tmp_path / "out"
    assert sf.info(str(out / "good_s2.wav")).frames == 4000
    assert sf.info(str(out / "sub" / "other_s1.wav")).frames == 3200  # folder structure kept
    assert not list(out.glob("corrupt*")) and not list(out.glob("silent*"))


@pytest.mark.slow  # a fresh process: JAX import, checkpoint load and compile (the in-process test covers the rest)
def test_corrupt_file_exit_status_of_console_script(sep_checkpoint, tmp_path):
    d, _, _ = sep_checkpoint
    bad = tmp_path / "noise.wav"
    bad.write_bytes(np.random.default_rng(1).bytes(2048))
    r = subprocess.run([str(SCRIPT), "separate", str(bad), "--checkpoint", str(d), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 1
    assert str(bad) in r.stderr and "Traceback" not in r.stderr


def test_transcribe(asr_checkpoint, tmp_path, capsys):
    d, _, _ = asr_checkpoint
    wave = speechlike(0.8, 5, 16000)
    f = tmp_path / "utt.flac"
    sf.write(str(f), wave, 16000)
    rc = main(["transcribe", str(f), "--checkpoint", str(d), "--method", "ctc_greedy"])
    out = capsys.readouterr().out
    assert rc == 0
    path, text = out.rstrip("\n").split("\t")
    assert path == str(f)
    expected = Transcriber.from_checkpoint(d).transcribe(sf.read(str(f), dtype="float32")[0], 16000,
                                                         method="ctc_greedy")
    assert text == expected


def test_checkpoint_errors(sep_checkpoint, asr_checkpoint, tmp_path, capsys):
    wav = tmp_path / "a.wav"
    sf.write(str(wav), speechlike(0.3, 6, 16000), 16000)
    assert main(["separate", str(wav), "--checkpoint", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["separate", str(wav), "--checkpoint", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    assert "no checkpoint found" in capsys.readouterr().err
    assert main(["transcribe", str(wav), "--checkpoint", str(sep_checkpoint[0])]) == 1
    err = capsys.readouterr().err
    assert "'separation' checkpoint" in err and "use `mamba-jax separate`" in err
    assert main(["separate", str(wav), "--checkpoint", str(asr_checkpoint[0]), "--out", str(tmp_path)]) == 1
    assert "'asr' checkpoint" in capsys.readouterr().err
    assert main(["separate", str(tmp_path / "missing.wav"), "--checkpoint", str(sep_checkpoint[0]),
                 "--out", str(tmp_path)]) == 2  # a usage error: the argument names no file
    assert "missing.wav: no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # argparse: usage error
        main(["separate", str(wav), "--checkpoint", str(sep_checkpoint[0]), "--out", "o", "--chunk-seconds", "-1"])
    assert e.value.code == 2


def test_convert_errors(tmp_path, capsys):
    cfg = str(ROOT / "configs" / "sepmamba_s.py") + ":smoke"
    assert main(["convert", "--config", cfg, "--torch-checkpoint", str(tmp_path / "x.pth"), "--out", "o"]) == 1
    assert "x.pth: no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a zip")
    assert main(["convert", "--config", cfg, "--torch-checkpoint", str(bad), "--out", str(tmp_path / "o")]) == 1
    assert "bad.pth: not a torch zip checkpoint" in capsys.readouterr().err
