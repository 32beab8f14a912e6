"""Each ASR learning command of ``bench/learning.py`` runs end to end for a few steps of a tiny model.

No timing and no quality assertions (the measured curves are in BENCHMARKS.md, "Learning curves: ASR"): the
run trains through ``train_and_evaluate`` with the character tokenizer, validates, writes ``learning.json`` and
``curve.png``, and its checkpoint loads back through ``Transcriber.from_checkpoint`` for the test-split
evaluation with every search of the run.
"""

from __future__ import annotations

import importlib.util
import json
import math
import pathlib
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]

ASR_RUNS = {"conmamba_ctc": ("ctc_greedy", "ctc_beam"),
            "conmamba_transformer": ("ctc_greedy", "attention", "joint"),
            "conmamba_mamba": ("ctc_greedy", "attention", "joint")}


def _learning():
    spec = importlib.util.spec_from_file_location("_bench_learning", REPO / "bench" / "learning.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses resolve the module's annotations through sys.modules
    spec.loader.exec_module(mod)
    return mod


def test_asr_runs_registered():
    learning = _learning()
    decoders = {"conmamba_ctc": "none", "conmamba_transformer": "transformer", "conmamba_mamba": "mamba"}
    for name, decoder in decoders.items():
        run = learning.RUNS[name]
        config = learning.build_config(run)
        assert config.task == "asr" and config.model.decoder == decoder
        assert config.data.root is None  # the embedded synthetic corpus
        assert config.tokenizer.kind == "char" and config.model.vocab_size == 31
        for key, value in run.overrides.items():  # every override landed in the config
            node = config
            for part in key.split("."):
                node = node[part]
            assert node == value, key


@pytest.mark.parametrize("name", sorted(ASR_RUNS))
def test_asr_command_runs(name, tmp_path):
    learning = _learning()
    workdir = tmp_path / name
    assert learning.main([name, "--smoke", "--workdir", str(workdir)]) == 0
    result = json.loads((workdir / "learning.json").read_text())
    steps = learning.RUNS[name].smoke["train.num_steps"]
    assert result["run"] == name and result["smoke"] is True
    train_rows = [r for r in result["metrics"] if "loss" in r]
    assert [r["step"] for r in train_rows] == list(range(1, steps + 1))
    assert all(math.isfinite(r["loss"]) for r in train_rows)
    assert any("val_cer" in r for r in result["metrics"])
    assert (workdir / "tokenizer" / "tokenizer.model").is_file()
    test = result["test"]
    assert test["split"] == "test" and test["utterances"] == 2 and test["step"] == steps
    assert set(test["searches"]) == set(ASR_RUNS[name])
    for label in ASR_RUNS[name]:
        assert math.isfinite(test[f"{label}_cer"]) and test[f"{label}_cer"] >= 0.0
        rows = (workdir / "test" / label / "utterances.csv").read_text().splitlines()
        assert len(rows) == 3  # header + 2 utterances
    if "attention" in test["searches"]:
        assert test["searches"]["attention"]["ctc_weight"] == 0.0
        assert test["searches"]["joint"]["ctc_weight"] > 0.0
    assert result["wall_s"] > 0 and result["cpu_s"] > 0
    assert (workdir / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
