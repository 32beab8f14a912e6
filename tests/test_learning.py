"""Each learning command of ``bench/learning.py`` runs end to end for a few steps of a tiny model.

No timing and no quality assertions (the measured curves are in BENCHMARKS.md, "Learning curves"): a run trains
through ``train_and_evaluate`` (ASR runs with the character tokenizer), validates, writes ``learning.json`` and
``curve.png``, and its checkpoint loads back through ``Separator.from_checkpoint`` / ``Transcriber.from_checkpoint``
for the test-split evaluation (every search of an ASR run).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import pathlib
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]

SEPARATION_RUNS = ("sepmamba", "mambatasnet")
ASR_RUNS = {"conmamba_ctc": ("ctc_greedy", "ctc_beam"),
            "conmamba_transformer": ("ctc_greedy", "attention", "joint"),
            "conmamba_mamba": ("ctc_greedy", "attention", "joint")}
ASR_DECODERS = {"conmamba_ctc": "none", "conmamba_transformer": "transformer", "conmamba_mamba": "mamba"}


def _learning():
    spec = importlib.util.spec_from_file_location("_bench_learning", REPO / "bench" / "learning.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses resolve the module's annotations through sys.modules
    spec.loader.exec_module(mod)
    return mod


def test_runs_registered():
    learning = _learning()
    assert set(learning.RUNS) == set(SEPARATION_RUNS) | set(ASR_RUNS)
    for name, run in learning.RUNS.items():
        config = learning.build_config(run)
        assert config.data.root is None  # the embedded synthetic corpus
        if name in ASR_RUNS:
            assert config.task == "asr" and config.model.decoder == ASR_DECODERS[name]
            assert config.tokenizer.kind == "char" and config.model.vocab_size == 31
        else:
            assert config.task == "separation"
        for key, value in run.overrides.items():  # every override landed in the config
            node = config
            for part in key.split("."):
                node = node[part]
            assert node == value, key
        learning.build_config(run, smoke=True)  # the smoke overrides name existing keys too


def test_an_unknown_override_key_is_an_error():
    """A typo in a run's overrides (or in ``--set``) fails, naming the key and the run, instead of adding a key
    nothing reads."""
    learning = _learning()
    run = learning.RUNS["sepmamba"]
    typo = dataclasses.replace(run, overrides={**run.overrides, "train.num_stpes": 3})
    with pytest.raises(ValueError, match=r"run 'sepmamba': override 'train.num_stpes': train has no key 'num_stpes'"):
        learning.build_config(typo)
    with pytest.raises(ValueError, match=r"override 'trian.num_steps': the config has no key 'trian'"):
        learning.build_config(run, extra={"trian.num_steps": 3})
    with pytest.raises(ValueError, match=r"override 'train.num_steps.x': train.num_steps has no key 'x'"):
        learning.build_config(run, extra={"train.num_steps.x": 3})


def _smoke(name: str, tmp_path: pathlib.Path, val_key: str) -> tuple[dict, pathlib.Path]:
    """Runs ``bench/learning.py NAME --smoke``; checks what every run writes; returns ``learning.json`` and the
    workdir."""
    learning = _learning()
    workdir = tmp_path / name
    assert learning.main([name, "--smoke", "--workdir", str(workdir)]) == 0
    result = json.loads((workdir / "learning.json").read_text())
    steps = learning.RUNS[name].smoke["train.num_steps"]
    assert result["run"] == name and result["smoke"] is True
    train_rows = [r for r in result["metrics"] if "loss" in r]
    assert [r["step"] for r in train_rows] == list(range(1, steps + 1))
    assert all(math.isfinite(r["loss"]) for r in train_rows)
    assert any(val_key in r for r in result["metrics"])
    test = result["test"]
    assert test["split"] == "test" and test["utterances"] == 2 and test["step"] == steps
    assert result["wall_s"] > 0 and result["cpu_s"] > 0
    assert (workdir / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return result, workdir


@pytest.mark.parametrize("name", SEPARATION_RUNS)
def test_separation_command_runs(name, tmp_path):
    test = _smoke(name, tmp_path, "val_si_snri")[0]["test"]
    assert math.isfinite(test["si_snri"]) and math.isfinite(test["sdri"])


@pytest.mark.parametrize("name", sorted(ASR_RUNS))
def test_asr_command_runs(name, tmp_path):
    result, workdir = _smoke(name, tmp_path, "val_cer")
    assert (workdir / "tokenizer" / "tokenizer.model").is_file()
    test = result["test"]
    assert set(test["searches"]) == set(ASR_RUNS[name])
    for label in ASR_RUNS[name]:
        assert math.isfinite(test[f"{label}_cer"]) and test[f"{label}_cer"] >= 0.0
        rows = (workdir / "test" / label / "utterances.csv").read_text().splitlines()
        assert len(rows) == 3  # header + 2 utterances
    if "attention" in test["searches"]:
        assert test["searches"]["attention"]["ctc_weight"] == 0.0
        assert test["searches"]["joint"]["ctc_weight"] > 0.0
