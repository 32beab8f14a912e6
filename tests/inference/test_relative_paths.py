"""A relative checkpoint path works in every entry point (issue 17, item 1): orbax reads no metadata through a
relative path, so each loader resolves it first. Each test runs from a chdir'd cwd with a real checkpoint on disk."""

from __future__ import annotations

import numpy as np
import soundfile as sf
from flax import nnx
from inference_helpers import speechlike

from mamba_jax.cli import main
from mamba_jax.inference import Separator, Transcriber


def test_separator_and_cli_separate(sep_checkpoint, tmp_path, monkeypatch, capsys):
    d, _, model = sep_checkpoint
    monkeypatch.chdir(d.parent)
    rel = d.name  # e.g. "sep_ckpt0": relative to the cwd
    sep = Separator.from_checkpoint(rel)
    x = speechlike(0.5, 3, 8000)
    ref = np.asarray(nnx.jit(lambda m, v: m(v))(model, x[None]))[0]  # the in-memory model it was saved from
    np.testing.assert_allclose(sep.separate(x, 8000), ref, rtol=1e-5, atol=1e-5)
    monkeypatch.chdir(tmp_path)
    sf.write("mix.wav", x, 8000)
    (tmp_path / "runs").symlink_to(d.parent)
    rc = main(["separate", "mix.wav", "--checkpoint", f"runs/{rel}", "--out", "separated"])
    assert rc == 0, capsys.readouterr().err
    assert sf.info("separated/mix_s2.wav").frames == x.size


def test_transcriber(asr_checkpoint, monkeypatch):
    d, config, _ = asr_checkpoint
    monkeypatch.chdir(d.parent)
    asr = Transcriber.from_checkpoint(f"{d.name}/checkpoints")  # the checkpoints/ folder, relative
    assert asr.config.model.name == config.model.name


def test_evaluate_and_init_from(sep_checkpoint, tmp_path, monkeypatch, capsys):
    d, config, _ = sep_checkpoint
    monkeypatch.chdir(d.parent)
    rc = main(["evaluate", "--checkpoint", f"{d.name}/checkpoints/3", "--max-utterances", "1", "--no-perceptual",
               "--plots", "0"])
    assert rc == 0, capsys.readouterr().err
    from mamba_jax.training.loop import train_and_evaluate

    cfg = config.copy_and_resolve_references()
    cfg.unlock()
    cfg.train.init_from = d.name
    cfg.train.num_steps = 1  # the weights are loaded before the first step (num_steps must be > 0)
    train_and_evaluate(cfg, tmp_path / "finetune")
    assert f"initialised from {d.name} (step 3)" in capsys.readouterr().out
