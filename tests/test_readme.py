"""The README's commands run as written (issue 17 acceptance), from a copy of the repository.

Every ``bash`` block of README.md is parsed (so the test breaks when the README drifts) and each command is run in
a subprocess from the copy's root, in README order, with only these changes:

* the install step and the test-suite command are skipped (this *is* the test suite);
* ``configs/NAME.py`` becomes ``configs/NAME.py:smoke``, and a config that already has an ``:ARG`` (the
  Quickstart's ``:quickstart``) gets smoke-size step overrides appended;
* ``/data/...`` becomes the relative ``data/...``: fake corpora in the real layouts (a tiny synthetic WSJ0-2mix
  tree, raw-WSJ0 pool and LibriSpeech tree, and a small Libri2Mix tree), relative paths included;
* optional ``[...]`` parts are given, validation decodes greedily and evaluation stops after two utterances
  (smoke sizes), placeholders (``CKPT+2024.../``) become the smoke SpeechBrain checkpoint
  of tests/golden, and the input files the CLI examples name are written first.

The trainings use smoke configs (two steps), so this checks that the commands, paths and recipes work, not what
they learn. The Quickstart's own numbers are measured separately (see the README).
"""

from __future__ import annotations

import csv
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

ROOT = pathlib.Path(__file__).resolve().parents[1]
BIN = pathlib.Path(sys.executable).parent
QUICK_STEPS = ["--config.train.num_steps=2", "--config.train.eval_every_steps=2",
               "--config.train.checkpoint_every_steps=2", "--config.train.eval_batches=1",
               "--config.train.batch_size=1"]


def readme_commands(text: str) -> list[str]:
    """Shell commands of the ``bash`` blocks: continuation lines joined, comments dropped, ``&&`` split."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = re.sub(r"(^|\s+)#.*$", "", line).strip()
            out.extend(c.strip() for c in line.split("&&") if c.strip())
    return out


def adapt(cmd: str) -> list[str] | None:
    """The command as this test runs it (module docstring), or None when skipped."""
    if cmd.startswith("bash tools/install.sh") or "pytest" in cmd:
        return None
    cmd = re.sub(r"\[([^\]]*)\]", r"\1", cmd)  # optional arguments: given (the cheaper --method ctc_greedy)
    cmd = cmd.replace("/data/", "data/").replace("CKPT+2024.../", "tests/golden/mambatasnet_smoke_ckpt_CKPT/")
    argv = shlex.split(cmd)
    prog = {"python": sys.executable, ".venv/bin/python": sys.executable, "mamba-jax": str(BIN / "mamba-jax"),
            ".venv/bin/mamba-jax": str(BIN / "mamba-jax")}
    argv[0] = prog.get(argv[0], argv[0])
    for i, a in enumerate(argv):
        if argv[i - 1] == "--config" and a.startswith("configs/"):
            argv[i] = a if ":" in a else f"{a}:smoke"
            if ":" in a and argv[1] == "train.py":
                argv.extend(QUICK_STEPS)
            if "conmamba" in a and argv[1] == "train.py":
                argv.append("--config.decoding.method=ctc_greedy")  # validation: no beam-search compiles
    if argv[1:2] == ["evaluate"]:
        argv.extend(["--max-utterances", "2"])
    return argv


def _fake_librimix(root: pathlib.Path) -> None:
    """Libri2Mix ``wav8k/min/{train-100,dev,test}`` with two 1 s mixtures each and the metadata CSVs."""
    base = root / "Libri2Mix" / "wav8k" / "min"
    (base / "metadata").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split in ("train-100", "dev", "test"):
        rows = []
        for k in range(2):
            mid = f"{100 + k}-{200 + k}-000{k}_{300 + k}-{400 + k}-001{k}"
            s = 0.1 * rng.standard_normal((2, 8000))
            for sub, x in (("mix_clean", s.sum(0)), ("s1", s[0]), ("s2", s[1])):
                (base / split / sub).mkdir(parents=True, exist_ok=True)
                sf.write(str(base / split / sub / f"{mid}.wav"), x, 8000, subtype="PCM_16")
            rows.append([mid] + [str(base / split / sub / f"{mid}.wav") for sub in ("mix_clean", "s1", "s2")]
                        + [8000])
        with open(base / "metadata" / f"mixture_{split}_mix_clean.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["mixture_ID", "mixture_path", "source_1_path", "source_2_path", "length"])
            w.writerows(rows)


def _workspace(tmp: pathlib.Path) -> pathlib.Path:
    """A copy of the repository's files (tracked and new, as git sees them) with fake corpora under data/."""
    from mamba_jax.data.synthetic import SyntheticSpec, ensure_corpus

    repo = tmp / "mamba-jax"
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        if (ROOT / f).is_file():
            (repo / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, repo / f)
    # The corpus of tests/training/test_train_configs.py and tests/inference/test_asr_trained.py: the same
    # utterances give the same batch shapes, so the smoke programs one of them compiles come from the run's
    # compilation cache in the others (tests/conftest.py).
    corpus = ensure_corpus(tmp / "corpus", progress=False, spec=SyntheticSpec(
        n_train=3, n_valid=2, n_test=2, train_utts=3, eval_utts=2, tr_mixtures=4, cv_mixtures=2, tt_mixtures=2,
        libri_train_utts=3, libri_eval_utts=1, min_seconds=0.5, max_seconds=1.0))
    data = repo / "data"
    data.mkdir()
    for name in ("wsj0-2mix", "wsj0", "LibriSpeech"):
        (data / name).symlink_to(corpus / name)
    _fake_librimix(data)
    # The inputs the README's CLI examples name.
    t = np.arange(8000) / 8000
    voice = lambda f0: (0.2 * np.sin(2 * np.pi * f0 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    sf.write(str(repo / "my_recording.wav"), voice(140) + voice(230), 8000)
    (repo / "my_recordings").mkdir()
    sf.write(str(repo / "my_recordings" / "meeting.flac"), voice(120) + voice(260), 16000)
    wave16 = sf.read(str(corpus / "LibriSpeech" / "test-clean" / next(
        p.relative_to(corpus / "LibriSpeech" / "test-clean") for p in (corpus / "LibriSpeech" / "test-clean").rglob(
            "*.flac"))))[0]
    sf.write(str(repo / "a.flac"), wave16, 16000)
    sf.write(str(repo / "b.wav"), wave16[::-1].copy(), 16000)
    return repo


def _is_asr(cmd: str) -> bool:
    return "conmamba" in cmd or "transcribe" in cmd


def test_readme_keeps_its_recipes():
    ran = [c for c in readme_commands((ROOT / "README.md").read_text()) if adapt(c) is not None]
    # The README must keep showing these (so a removed recipe is noticed here, not by a user).
    for must in ("configs/sepmamba_s.py:quickstart --workdir runs/quickstart",
                 "mamba-jax separate my_recording.wav --checkpoint runs/quickstart",
                 "--config.data.dynamic_mixing=False", "--config.data.dynamic_mixing=True",
                 "--config.data.corpus=librimix", "configs/conmamba_small.py",
                 "mamba-jax separate my_recordings/", "mamba-jax transcribe", "mamba-jax evaluate",
                 "mamba-jax convert"):
        assert any(must in c for c in ran), f"README no longer has a command with {must!r}"


@pytest.mark.parametrize("part", ["separation", "asr"])  # two halves, so `pytest -n 2` runs them side by side
def test_readme_commands_run_as_written(part, tmp_path):
    commands = [c for c in readme_commands((ROOT / "README.md").read_text()) if _is_asr(c) == (part == "asr")]
    repo = _workspace(tmp_path)
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    for cmd in commands:
        argv = adapt(cmd)
        if argv is None:
            continue
        r = subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, f"README command failed: {cmd}\n{shlex.join(argv)}\n{r.stderr[-3000:]}"
    if part == "asr":
        assert any((repo / "runs" / "conmamba_s" / "checkpoints").glob("*/state"))
        return
    for workdir in ("quickstart", "mt_s", "sepmamba_s", "spmamba_libri2mix", "converted"):
        assert any((repo / "runs" / workdir / "checkpoints").glob("*/state")), workdir
    for out in ("separated/my_recording_s1.wav", "separated/my_recording_s2.wav", "separated/meeting_s1.wav",
                "eval/summary.json", "eval/utterances.csv"):
        assert (repo / out).is_file(), out
    assert sf.info(str(repo / "separated" / "meeting_s2.wav")).samplerate == 16000  # the input's rate
