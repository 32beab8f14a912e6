"""A new user's first contact, round 2 (issue 30): outputs written atomically onto a full or read-only disk
(items 2, 3), folder inputs that skip the output folder (9), ``evaluate --split train`` (7), ``transcribe
--method joint`` on a CTC-only checkpoint and NaN inputs (13), ``--version``, ``configs``, help for every option,
``--plots`` (14). Real files, real tmpfs mounts (root ignores permission bits, a read-only mount does not), the
commands as a user types them (``main([...])`` in-process, the console script where the process matters)."""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import pathlib
import shutil
import subprocess
import sys
import tomllib

import numpy as np
import pytest
import soundfile as sf
from inference_helpers import speechlike
from mounts import tmpfs

import mamba_jax
from mamba_jax.cli import build_parser, main
from mamba_jax.inference import Separator

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent


def _errors(err: str) -> list[str]:
    assert "Traceback" not in err, err
    return [ln for ln in err.splitlines() if ln.startswith("error:")]


def _pcm16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.asarray(x, np.float64) * 32768), -32768, 32767) / 32768


@pytest.fixture
def inputs(sep_checkpoint, tmp_path, monkeypatch):
    """cwd = a fresh folder with ``in/m0.wav ... m2.wav`` (0.4 s, 8 kHz); returns (checkpoint, separator)."""
    monkeypatch.chdir(tmp_path)
    pathlib.Path("in").mkdir()
    for k in range(3):
        sf.write(f"in/m{k}.wav", speechlike(0.4, k, 8000), 8000)
    return str(sep_checkpoint[0]), Separator.from_checkpoint(sep_checkpoint[0])


def _assert_estimates(folder: pathlib.Path, stem: str, sep: Separator) -> None:
    """``<folder>/<stem>_s1/2.wav`` are complete: the separator's estimates of ``in/<stem>.wav`` in PCM_16."""
    ref = sep.separate(sf.read(f"in/{stem}.wav", dtype="float32")[0], 8000)
    for k in (1, 2):
        got = sf.read(str(folder / f"{stem}_s{k}.wav"), dtype="float64")[0]
        assert got.shape == ref[k - 1].shape
        np.testing.assert_allclose(got, _pcm16(ref[k - 1]), atol=1.5 / 32768)


# ---- items 2 and 3: full and read-only output folders -------------------------------------------------------
def test_separate_onto_a_full_disk_then_rerun(inputs, capsys):
    ck, sep = inputs
    # 24 KiB: the two 6.4 KB estimates of one input take four 4 KiB pages; the next input's second one fails
    with tmpfs(pathlib.Path("disk"), "size=24k") as disk:
        assert main(["separate", "in", "--checkpoint", ck, "--out", str(disk)]) == 1
        errors = _errors(capsys.readouterr().err)
        assert errors == [f"error: in/m1.wav: {disk}/m1_s2.wav: cannot write (No space left on device)",
                          "error: stopped: 1 of 3 input(s) written; the output folder cannot be written to "
                          "(No space left on device)"], errors
        assert sorted(p.name for p in disk.iterdir()) == ["m0_s1.wav", "m0_s2.wav"]  # no partial, no temporary
        _assert_estimates(disk, "m0", sep)

        subprocess.run(["mount", "-o", "remount,size=1m", str(disk)], check=True)  # space freed: run it again
        assert main(["separate", "in", "--checkpoint", ck, "--out", str(disk)]) == 1
        errors = _errors(capsys.readouterr().err)
        assert len(errors) == 2 and "m0_s1.wav already exists" in errors[0], errors  # only the complete one
        assert errors[1] == "error: 1 of 3 file(s) failed: in/m0.wav"
        for stem in ("m0", "m1", "m2"):
            _assert_estimates(disk, stem, sep)
        assert len(list(disk.iterdir())) == 6


def test_separate_into_a_read_only_folder(inputs, capsys):
    ck, _ = inputs
    with tmpfs(pathlib.Path("ro"), "ro,size=1m") as ro:
        assert main(["separate", "in", "--checkpoint", ck, "--out", str(ro / "sep")]) == 1
        assert _errors(capsys.readouterr().err) == [
            f"error: --out {ro / 'sep'}: cannot write (Read-only file system); 0 of 3 input(s) written"]
        assert list(ro.iterdir()) == []


def test_a_read_only_sub_folder_fails_its_files_only(inputs, capsys):
    ck, sep = inputs
    for k, sub in ((0, "a"), (1, "b")):
        pathlib.Path(f"in2/{sub}").mkdir(parents=True)
        shutil.copy(f"in/m{k}.wav", f"in2/{sub}/m{k}.wav")
    with tmpfs(pathlib.Path("out/a"), "ro,size=1m"):
        assert main(["separate", "in2", "--checkpoint", ck, "--out", "out"]) == 1
        errors = _errors(capsys.readouterr().err)
    assert errors == ["error: in2/a/m0.wav: out/a/m0_s1.wav: cannot write (Read-only file system)",
                      "error: 1 of 2 file(s) failed: in2/a/m0.wav"], errors
    _assert_estimates(pathlib.Path("out/b"), "m1", sep)  # the batch went on


# ---- item 9: the output folder is not an input ----------------------------------------------------------------
def test_separate_a_folder_into_its_own_sub_folder_twice(inputs, capsys):
    ck, sep = inputs
    for run in range(2):
        assert main(["separate", "in", "--checkpoint", ck, "--out", "in/separated", "--overwrite"]) == 0
        out = capsys.readouterr().out.splitlines()
        assert [ln.split("\t")[0] for ln in out] == [f"in/m{k}.wav" for k in range(3)], (run, out)
    assert sorted(p.name for p in pathlib.Path("in/separated").iterdir()) == sorted(
        f"m{k}_s{s}.wav" for k in range(3) for s in (1, 2))
    _assert_estimates(pathlib.Path("in/separated"), "m2", sep)
    pathlib.Path("only").mkdir()
    assert main(["separate", "only", "--checkpoint", ck, "--out", "only"]) == 2  # nothing but the outputs: usage
    (pathlib.Path("only") / "x_s1.wav").write_bytes(pathlib.Path("in/separated/m0_s1.wav").read_bytes())
    assert main(["separate", "only", "--checkpoint", ck, "--out", "only"]) == 2
    assert "holds no audio file outside the output folder only" in _errors(capsys.readouterr().err)[-1]


# ---- item 7: evaluate --split train on a separation checkpoint ------------------------------------------------
def test_evaluate_train_split_of_a_dynamic_mixing_checkpoint(sep_checkpoint, tmp_path, capsys):
    ck = str(sep_checkpoint[0])
    rows = []
    for run in ("a", "b"):
        assert main(["evaluate", "--checkpoint", ck, "--split", "train", "--max-utterances", "2", "--plots", "1",
                     "--no-perceptual", "--out", str(tmp_path / run)]) == 0, capsys.readouterr().err
        summary = json.loads((tmp_path / run / "summary.json").read_text())
        with open(tmp_path / run / "utterances.csv", newline="") as f:
            rows.append(list(csv.DictReader(f)))
        assert summary["split"] == "train" and summary["utterances"] == 2
        assert summary["si_snri"] == pytest.approx(np.mean([float(r["si_snri"]) for r in rows[-1]]), rel=1e-9)
    assert [r["name"] for r in rows[0]] == ["dynamic mixture 0 (seed 0)", "dynamic mixture 1 (seed 0)"]
    assert rows[0] == rows[1]  # the same mixtures and metrics on every call
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["spectrogram_0.png", "summary.json",
                                                                  "utterances.csv"]


def test_evaluate_into_a_read_only_folder_fails_before_evaluating(sep_checkpoint, tmp_path, capsys):
    with tmpfs(tmp_path / "ro", "ro,size=1m") as ro:
        rc = main(["evaluate", "--checkpoint", str(sep_checkpoint[0]), "--max-utterances", "1", "--no-perceptual",
                   "--out", str(ro / "ev")])
        err = capsys.readouterr().err
        assert rc == 1 and _errors(err) == [f"error: --out {ro / 'ev'}: cannot write (Read-only file system)"]
        assert "evaluate test" not in err  # refused before loading the model and the first utterance


# ---- item 13: transcribe ---------------------------------------------------------------------------------------
def test_transcribe_joint_on_a_ctc_only_checkpoint_is_one_usage_error(asr_checkpoint, tmp_path, capsys):
    # the smoke ASR checkpoint's config declared CTC-only (decoder 'none'): the check must come from the config,
    # before any weight or file is read, so the weights (of the attention model) are never loaded
    ck = tmp_path / "ctc"
    shutil.copytree(asr_checkpoint[0], ck, symlinks=True)
    meta = next(ck.glob("checkpoints/*/config/metadata"))
    config = json.loads(meta.read_text())
    config["model"]["decoder"] = "none"
    meta.write_text(json.dumps(config))
    names = []
    for k in range(3):
        names.append(str(tmp_path / f"{k}.wav"))
        sf.write(names[-1], speechlike(0.3, k, 16000), 16000)
    assert main(["transcribe", *names, "--checkpoint", str(ck), "--method", "joint"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = _errors(captured.err)
    assert "--method joint needs an attention decoder" in line and "ctc_greedy" in line


def test_nan_samples_are_named_per_file(asr_checkpoint, tmp_path, capsys):
    bad = tmp_path / "bad.wav"
    x = speechlike(0.3, 1, 16000)
    x[100] = np.nan
    sf.write(str(bad), x, 16000, subtype="FLOAT")
    assert main(["transcribe", str(bad), "--checkpoint", str(asr_checkpoint[0]), "--method", "ctc_greedy"]) == 1
    errors = _errors(capsys.readouterr().err)
    assert errors[0] == f"error: {bad}: the audio holds NaN or infinite samples (1 of 4800): a float file with " \
                        f"invalid values; fix or re-export it", errors
    assert "transcribe_long" not in "".join(errors)


# ---- item 14: version, configs, help ---------------------------------------------------------------------------
def test_version_configs_and_help(tmp_path, monkeypatch, capsys):
    r = subprocess.run([str(BIN / "mamba-jax"), "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == f"mamba-jax {mamba_jax.__version__}"

    monkeypatch.chdir(ROOT)
    assert main(["configs"]) == 0
    listed = dict(ln.split(None, 1) for ln in capsys.readouterr().out.splitlines())
    expected = {}
    for f in sorted((ROOT / "configs").glob("[!_]*.py")):  # the module's own __doc__, imported
        spec = importlib.util.spec_from_file_location(f"_cfg_{f.stem}", f)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        expected[f"configs/{f.name}"] = module.__doc__.strip().splitlines()[0]
    assert listed == expected and len(listed) >= 15

    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(subparsers.choices) == {"separate", "transcribe", "evaluate", "convert", "configs"}
    for name, sub in subparsers.choices.items():
        assert sub.description, name
        for action in sub._actions:
            assert action.help and action.help != argparse.SUPPRESS, (name, action.option_strings or action.dest)
    with pytest.raises(SystemExit) as e:
        main(["evaluate", "--checkpoint", str(tmp_path), "--plots", "-3"])
    assert e.value.code == 2 and "--plots: must be >= 0, got -3" in capsys.readouterr().err


def test_pyproject_licence_is_an_spdx_expression():
    # a licence table makes setuptools >= 77 print a deprecation warning (twice per install); the SPDX string
    # needs setuptools >= 77 to build
    with open(ROOT / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)
    assert project["project"]["license"] == "Apache-2.0"
    req = next(r for r in project["build-system"]["requires"] if r.startswith("setuptools"))
    assert tuple(int(v) for v in req.split(">=")[1].split(".")) >= (77,)
    assert not any(c.startswith("License ::") for c in project["project"].get("classifiers", []))
