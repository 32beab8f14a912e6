"""``mamba-jax convert`` into a folder that already holds checkpoints (issue 30, item 5) and onto a full disk
(the converted checkpoint renamed into place whole, or nothing): the command as a user types it, real files, a
real tmpfs."""

from __future__ import annotations

import collections
import pathlib
import shutil

import jax
import numpy as np
import pytest
from mounts import tmpfs
from test_convert_api import ROOT, original_keys, write_torch_zip

from mamba_jax.checkpoint import load_params
from mamba_jax.cli import main
from mamba_jax.convert.common import path_str
from mamba_jax.convert.golden import make_state_dict

CONFIG = str(ROOT / "configs" / "sepmamba_s.py") + ":smoke"


def _sepmamba_checkpoint(path: pathlib.Path, seed: int) -> None:
    """A Lightning-style torch zip of the SepMamba smoke model, values from ``seed``."""
    from mamba_jax.config import load_config
    from mamba_jax.convert.sepmamba import _key

    shapes = {}
    for k, s in original_keys(load_config(CONFIG).model, _key).items():
        shapes[k] = s[::-1] if k.endswith("proj.weight") else ((s[1], 1, s[0]) if "mixer.conv1d.weight" in k else s)
    sd = make_state_dict(list(shapes), list(shapes.values()), seed=seed)
    write_torch_zip(path, lambda t: {"state_dict": collections.OrderedDict((k, t(v)) for k, v in sd.items())})


def _weights(workdir) -> dict[str, np.ndarray]:
    _, params, _, _ = load_params(workdir)
    return {path_str(k): np.asarray(v) for k, v in jax.tree_util.tree_flatten_with_path(params)[0]}


def _error_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_convert_refuses_a_folder_with_checkpoints_unless_overwrite(tmp_path, capsys):
    a, b = tmp_path / "a.ckpt", tmp_path / "b.ckpt"
    _sepmamba_checkpoint(a, seed=5)
    _sepmamba_checkpoint(b, seed=6)
    out = tmp_path / "run"
    assert main(["convert", "--config", CONFIG, "--torch-checkpoint", str(a), "--out", str(out)]) == 0
    first = _weights(out)
    shutil.copytree(out / "checkpoints" / "0", out / "checkpoints" / "5")  # as if a fine-tuning run had saved 5
    capsys.readouterr()

    assert main(["convert", "--config", CONFIG, "--torch-checkpoint", str(b), "--out", str(out)]) == 2
    line = _error_line(capsys.readouterr().err)
    assert f"--out {out} already holds checkpoints of steps 0, 5" in line and "--overwrite" in line, line
    for k, v in _weights(out).items():  # nothing written
        np.testing.assert_array_equal(v, first[k])

    assert main(["convert", "--config", CONFIG, "--torch-checkpoint", str(b), "--out", str(out), "--overwrite"]) == 0
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["0"]  # no old step shadows the new one
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints"]  # no temporary folder left
    second = _weights(out)
    assert any(not np.array_equal(second[k], first[k]) for k in first)
    # the independent reference: a conversion of b into a fresh folder
    assert main(["convert", "--config", CONFIG, "--torch-checkpoint", str(b), "--out", str(tmp_path / "fresh")]) == 0
    for k, v in _weights(tmp_path / "fresh").items():
        np.testing.assert_array_equal(second[k], v)


def test_convert_onto_a_full_disk_leaves_nothing(tmp_path, capsys):
    a = tmp_path / "a.ckpt"
    _sepmamba_checkpoint(a, seed=5)
    with tmpfs(tmp_path / "disk", "size=64k") as disk:
        rc = main(["convert", "--config", CONFIG, "--torch-checkpoint", str(a), "--out", str(disk / "run")])
        line = _error_line(capsys.readouterr().err)
        assert rc == 1
        assert f"{disk / 'run'}: cannot write (No space left on device" in line and "--verbose" not in line, line
        assert [p for p in disk.rglob("*") if p.is_file()] == []  # no partial checkpoint
