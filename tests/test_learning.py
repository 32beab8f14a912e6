"""Each separation learning command of ``bench/learning.py`` runs end to end for a few steps of a tiny model.

No timing and no quality assertions (the measured curves are in BENCHMARKS.md): the run trains through
``train_and_evaluate``, validates, writes ``learning.json`` and ``curve.png``, and its checkpoint loads back
through ``Separator.from_checkpoint`` for the test-split evaluation.
"""

from __future__ import annotations

import importlib.util
import json
import math
import pathlib
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def _learning():
    spec = importlib.util.spec_from_file_location("_bench_learning", REPO / "bench" / "learning.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


SEPARATION_RUNS = ("sepmamba", "mambatasnet")


def test_separation_runs_registered():
    learning = _learning()
    for name in SEPARATION_RUNS:
        run = learning.RUNS[name]
        config = learning.build_config(run)
        assert config.task == "separation"
        assert config.data.root is None  # the embedded synthetic corpus
        for key, value in run.overrides.items():  # every override landed in the config
            node = config
            for part in key.split("."):
                node = node[part]
            assert node == value, key


@pytest.mark.parametrize("name", SEPARATION_RUNS)
def test_separation_command_runs(name, tmp_path):
    learning = _learning()
    workdir = tmp_path / name
    assert learning.main([name, "--smoke", "--workdir", str(workdir)]) == 0
    result = json.loads((workdir / "learning.json").read_text())
    steps = learning.RUNS[name].smoke["train.num_steps"]
    assert result["run"] == name and result["smoke"] is True
    train_rows = [r for r in result["metrics"] if "loss" in r]
    assert [r["step"] for r in train_rows] == list(range(1, steps + 1))
    assert all(math.isfinite(r["loss"]) for r in train_rows)
    assert any("val_si_snri" in r for r in result["metrics"])
    test = result["test"]
    assert test["split"] == "test" and test["utterances"] == 2 and test["step"] == steps
    assert math.isfinite(test["si_snri"]) and math.isfinite(test["sdri"])
    assert result["wall_s"] > 0 and result["cpu_s"] > 0
    assert (workdir / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
