"""A new user's first contact (issue 17): no silent overwrites (item 5), one-line errors with meaningful exit
statuses (item 7), the same input rules in Separator and Transcriber (item 8), ``separate_file`` and the progress
bar. Real files on disk, relative paths from a chdir'd cwd, and the commands as a user types them (console
scripts in a subprocess where the process boundary matters: exit status, Ctrl-C, absl flag parsing)."""

from __future__ import annotations

import csv
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import soundfile as sf
from inference_helpers import speechlike

from mamba_jax.cli import main
from mamba_jax.inference import Separator, Transcriber, separate_file

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent
ENV = {**os.environ, "JAX_PLATFORMS": "cpu"}


def _run(args, cwd, **kw):
    return subprocess.run(args, capture_output=True, text=True, cwd=cwd, env=ENV, **kw)


def _one_error_line(stderr: str) -> str:
    """The stderr of a failed command: exactly one ``error:`` line and no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, stderr
    return lines[0]


def _pcm16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.asarray(x, np.float64) * 32768), -32768, 32767) / 32768


@pytest.fixture
def rel_ckpt(sep_checkpoint, tmp_path, monkeypatch):
    """cwd = a fresh folder holding ``runs/sep`` (a link to the smoke checkpoint); returns ``("runs/sep", sep)``."""
    d, _, _ = sep_checkpoint
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "sep").symlink_to(d)
    return "runs/sep", Separator.from_checkpoint("runs/sep")


# ---- item 5: no silent overwrites ---------------------------------------------------------------------------
def test_same_names_do_not_clobber_and_reruns_refuse(rel_ckpt, capsys):
    ck, sep = rel_ckpt
    inputs = {"a.wav": 1, "a.flac": 2, "x/b.wav": 3, "y/b.wav": 4}
    for name, seed in inputs.items():
        pathlib.Path(name).parent.mkdir(exist_ok=True)
        sf.write(name, speechlike(0.4, seed, 8000), 8000)
    rc = main(["separate", *inputs, "--checkpoint", ck, "--out", "out"])
    err = capsys.readouterr().err
    assert rc == 0, err
    expected_names = {"a.wav": "a_wav", "a.flac": "a_flac", "x/b.wav": "b", "y/b.wav": "b_2"}
    for name, stem in expected_names.items():
        ref = sep.separate(sf.read(name, dtype="float32")[0], 8000)
        for k in (1, 2):
            got = sf.read(f"out/{stem}_s{k}.wav", dtype="float64")[0]
            np.testing.assert_allclose(got, _pcm16(ref[k - 1]), atol=1.5 / 32768)
    assert "a.flac: another input has the same name" in err and "y/b.wav: another input" in err
    assert "x/b.wav: another input" in err  # kept its name, but told
    assert sorted(p.name for p in pathlib.Path("out").iterdir()) == sorted(
        f"{s}_s{k}.wav" for s in expected_names.values() for k in (1, 2))

    before = pathlib.Path("out/b_s1.wav").read_bytes()
    sf.write("x/b.wav", speechlike(0.4, 9, 8000), 8000)  # new content, same name: a rerun must not clobber
    assert main(["separate", "x/b.wav", "--checkpoint", ck, "--out", "out"]) == 1
    line = next(ln for ln in capsys.readouterr().err.splitlines() if "x/b.wav" in ln and ln.startswith("error:"))
    assert "out/b_s1.wav already exists" in line and "--overwrite" in line
    assert pathlib.Path("out/b_s1.wav").read_bytes() == before
    assert main(["separate", "x/b.wav", "--checkpoint", ck, "--out", "out", "--overwrite"]) == 0
    assert pathlib.Path("out/b_s1.wav").read_bytes() != before


def test_evaluate_into_an_old_out(rel_ckpt, capsys):
    ck, _ = rel_ckpt
    out = pathlib.Path("eval")
    out.mkdir()
    (out / "spectrogram_7.png").write_bytes(b"stale")
    (out / "summary.json").write_text("{}")
    assert main(["evaluate", "--checkpoint", ck, "--out", "eval", "--max-utterances", "2", "--plots", "1",
                 "--no-perceptual"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "eval already holds an evaluation" in line and "--overwrite" in line
    assert (out / "spectrogram_7.png").exists()
    assert main(["evaluate", "--checkpoint", ck, "--out", "eval", "--max-utterances", "2", "--plots", "1",
                 "--no-perceptual", "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["spectrogram_0.png", "summary.json", "utterances.csv"]
    summary = json.loads((out / "summary.json").read_text())  # item 8: names the checkpoint and the step
    assert summary["checkpoint"] == str(pathlib.Path(ck).absolute()) and summary["step"] == 3
    with open(out / "utterances.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    from mamba_jax.data.synthetic import ensure_corpus  # item 8: rows carry the corpus's utterance names

    tt = ensure_corpus() / "wsj0-2mix" / "2speakers" / "wav8k" / "min" / "tt" / "mix"
    assert len(rows) == 2 and len({r["name"] for r in rows}) == 2
    for r in rows:  # the mixture file the row was computed on, and its length
        assert sf.info(str(tt / r["name"])).frames == round(float(r["seconds"]) * 8000)


# ---- item 7: one-line errors, exit statuses ------------------------------------------------------------------
def test_train_py_config_errors(tmp_path):
    r = _run([sys.executable, str(ROOT / "train.py"), "--config", "configs/sepmamba_S.py", "--workdir", "runs/a"],
             cwd=ROOT)
    assert r.returncode == 2
    line = _one_error_line(r.stderr)
    assert "configs/sepmamba_S.py not found" in line and "did you mean configs/sepmamba_s.py" in line
    assert not (ROOT / "runs" / "a").exists()
    r = _run([sys.executable, "train.py", "--config", "configs/sepmamba_s.py:smoke", "--workdir", str(tmp_path / "w"),
              "--config.train.num_step=3"], cwd=ROOT)
    assert r.returncode == 2
    line = _one_error_line(r.stderr)
    assert "--config.train.num_step" in line and "did you mean --config.train.num_steps?" in line
    assert not (tmp_path / "w").exists()


def test_cli_usage_errors_are_one_line(sep_checkpoint, asr_checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    sf.write("a.wav", speechlike(0.3, 1, 8000), 8000)
    pathlib.Path("notes.txt").write_text("not a folder")
    r = _run([str(BIN / "mamba-jax"), "separate", "a.wav", "--checkpoint", str(sep_checkpoint[0]), "--out",
              "notes.txt"], cwd=tmp_path)
    assert r.returncode == 2 and "--out notes.txt is a file" in _one_error_line(r.stderr)
    assert main(["transcribe", "a.wav", "--checkpoint", str(asr_checkpoint[0]), "--tokenizer", "notes.txt"]) == 2
    assert "--tokenizer notes.txt: not a SentencePiece model" in _one_error_line(capsys.readouterr().err)
    ckpt = ROOT / "tests" / "golden" / "mambatasnet_smoke_ckpt_CKPT"  # a smoke-size SpeechBrain checkpoint
    r = _run([str(BIN / "mamba-jax"), "convert", "--config", str(ROOT / "configs" / "mambatasnet_xs.py"),
              "--torch-checkpoint", str(ckpt), "--out", "conv"], cwd=tmp_path)
    assert r.returncode == 1
    line = _one_error_line(r.stderr)
    assert "does not fit model 'mamba_tasnet'" in line and "model and size" in line
    assert not (tmp_path / "conv" / "checkpoints" / "0").exists()


def test_ctrl_c_is_one_line_and_130(sep_checkpoint, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for k in range(40):
        sf.write(str(folder / f"m{k:02d}.wav"), speechlike(0.3, k, 8000), 8000)
    proc = subprocess.Popen([str(BIN / "mamba-jax"), "separate", "in", "--checkpoint", str(sep_checkpoint[0]),
                             "--out", "out"], cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    first = proc.stdout.readline()  # the first file is done: the model is loaded and running
    assert first.startswith(str(pathlib.Path("in") / "m00.wav")), proc.stderr.read()
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted (Ctrl-C)" in _one_error_line(err)


# ---- item 8: one input rule for Separator and Transcriber ----------------------------------------------------
def test_separator_and_transcriber_take_the_same_inputs(sep_checkpoint, asr_checkpoint):
    sep = Separator.from_checkpoint(sep_checkpoint[0])
    asr = Transcriber.from_checkpoint(asr_checkpoint[0])
    x8, x16 = speechlike(0.5, 1, 8000), speechlike(0.5, 2, 16000)
    for fn, x, rate in ((sep.separate, x8, 8000),
                        (lambda w, r: asr.transcribe(w, r, method="ctc_greedy"), x16, 16000)):
        pcm = np.round(x * 32767).astype(np.int16)
        with pytest.warns(UserWarning, match="int16 PCM scaled by 1/32768"):
            got = fn(pcm, rate)
        np.testing.assert_equal(got, fn((pcm / 32768.0).astype(np.float32), rate))
        pcm32 = pcm.astype(np.int32) << 16
        with pytest.warns(UserWarning, match="int32 PCM scaled"):
            np.testing.assert_equal(fn(pcm32, rate), got)
        stereo = np.stack([x, 0.5 * x[::-1]])  # [2, T]
        mono = stereo.mean(axis=0, dtype=np.float32)
        with pytest.warns(UserWarning, match=r"2 channels \(\[C, T\]"):
            a = fn(stereo, rate)
        with pytest.warns(UserWarning, match=r"2 channels \(\[T, C\]"):
            b = fn(stereo.T, rate)
        np.testing.assert_equal(a, b)
        np.testing.assert_equal(a, fn(mono, rate))
        for bad_rate in (rate + 0.5, 0, True):
            with pytest.raises(ValueError, match="sample_rate must be a positive whole number"):
                fn(x, bad_rate)
        with pytest.raises(ValueError, match="cannot tell channels from time"):
            fn(np.zeros((20, 20), np.float32), rate)
        np.testing.assert_equal(fn(x, float(rate)), fn(x, rate))  # 16000.0 is a whole number


def test_folder_scan_extensions_and_truncated_wav(rel_ckpt, capsys):
    ck, sep = rel_ckpt
    src = pathlib.Path("in")
    src.mkdir()
    x = speechlike(0.5, 5, 8000)
    sf.write("in/v.ogg", x, 8000, format="OGG", subtype="VORBIS")
    sf.write("in/m.mp3", x, 8000, format="MP3", subtype="MPEG_LAYER_III")
    sf.write("full.wav", x, 8000, subtype="PCM_16")
    data = pathlib.Path("full.wav").read_bytes()
    pathlib.Path("in/cut.wav").write_bytes(data[:44 + 2 * 2500])  # header + 2,500 of 4,000 samples
    assert main(["separate", "in", "--checkpoint", ck, "--out", "out"]) == 0
    err = capsys.readouterr().err
    assert sorted(p.name for p in pathlib.Path("out").iterdir()) == sorted(
        f"{s}_s{k}.wav" for s in ("v", "m", "cut") for k in (1, 2))
    note = next(ln for ln in err.splitlines() if "cut.wav" in ln)
    assert note.startswith("note:") and "truncated" in note and "8000 bytes" in note and "5000" in note
    assert sf.info("out/cut_s1.wav").frames == 2500


# ---- separate_file and the progress bar ----------------------------------------------------------------------
def test_separate_file(rel_ckpt):
    ck, sep = rel_ckpt
    x = np.stack([speechlike(0.6, 6, 16000), speechlike(0.6, 7, 16000)], axis=1)  # stereo 16 kHz
    sf.write("talk.flac", x, 16000)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        paths = separate_file("talk.flac", ck, "sep")
    assert paths == [pathlib.Path("sep/talk_s1.wav"), pathlib.Path("sep/talk_s2.wav")]
    notes = " ".join(str(w.message) for w in caught)
    assert "2 channels" in notes and "16000 Hz resampled" in notes
    x_read = sf.read("talk.flac", dtype="float32")[0].mean(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = sep.separate(x_read, 16000)
    peak = np.max(np.abs(ref))
    ref = ref * (0.999 / peak) if peak > 0.999 else ref
    for k, p in enumerate(paths):
        y, rate = sf.read(p, dtype="float64")
        assert rate == 16000
        np.testing.assert_allclose(y, _pcm16(ref[k]), atol=1.5 / 32768)
    with pytest.raises(FileExistsError, match="talk_s1.wav already exists"):
        separate_file("talk.flac", ck, "sep")


def test_progress_bar_for_long_inputs(sep_checkpoint, capsys):
    d, config, model = sep_checkpoint
    sep = Separator(model, config, chunk_seconds=0.1, hop_seconds=0.05, progress=True)
    sep.separate(speechlike(1.0, 8, 8000), 8000)  # 19 windows of 0.1 s
    err = capsys.readouterr().err
    # the bar counts the 19 windows (it is cleared at the end, leave=False, and throttled: the last refresh
    # shown may be before 19/19)
    assert "separate" in err and "/19 [" in err and "window" in err
    Separator(model, config, chunk_seconds=0.1, hop_seconds=0.05).separate(speechlike(1.0, 8, 8000), 8000)
    assert capsys.readouterr().err == ""  # off by default
