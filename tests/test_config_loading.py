"""``mamba_jax.config.load_config``: a config file may import its siblings as ``<folder>.<name>``, without any
``sys.path`` edit, and a second folder of the same name (another checkout) is read from its own files."""

from __future__ import annotations

import sys

import pytest

from mamba_jax.config import config_file_problem, load_config

BASE = "import ml_collections\n\n\ndef base():\n    return ml_collections.ConfigDict({'size': %d})\n"
CHILD = ("from myconfigs.base import base\n\n\ndef get_config(arg=None):\n"
         "    c = base()\n    c.arg = arg\n    return c\n")


def _folder(root, size):
    folder = root / "myconfigs"
    folder.mkdir(parents=True)
    (folder / "base.py").write_text(BASE % size)
    (folder / "child.py").write_text(CHILD)
    return folder


def test_sibling_imports_without_sys_path_edits(tmp_path):
    one, two = _folder(tmp_path / "a", 1), _folder(tmp_path / "b", 2)
    path = list(sys.path)
    c = load_config(f"{one / 'child.py'}:smoke")
    assert (c.size, c.arg) == (1, "smoke")
    assert load_config(str(two / "child.py")).size == 2  # the other folder's sibling, not the cached one
    assert load_config(str(one / "child.py")).size == 1
    assert sys.path == path
    assert str(tmp_path / "a") not in sys.path


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_config(str(tmp_path / "nope.py"))
    _folder(tmp_path, 1)
    assert "did you mean" in config_file_problem(str(tmp_path / "myconfigs" / "chlid.py"))


def test_unknown_override_fields_are_a_typed_error_with_the_closest_field(tmp_path):
    from mamba_jax.config import UnknownFieldError, check_overrides

    (tmp_path / "myconfigs").mkdir()
    (tmp_path / "myconfigs" / "c.py").write_text(
        "import ml_collections\n\n\ndef get_config(arg=None):\n"
        "    return ml_collections.ConfigDict({'train': {'num_steps': 1, 'seed': 0}, 'task': 'x'})\n")
    config = load_config(str(tmp_path / "myconfigs" / "c.py"))
    check_overrides(config, ["--config.train.num_steps=3", "--config.task", "y", "--workdir=w"])  # all known
    with pytest.raises(UnknownFieldError) as e:
        check_overrides(config, ["--workdir=w", "--config.train.num_step=3"])
    assert (e.value.flag, e.value.field, e.value.suggestion, e.value.fields, e.value.where) == \
        ("--config.train.num_step", "num_step", "--config.train.num_steps", ["num_steps", "seed"], "config.train")
    with pytest.raises(UnknownFieldError) as e:  # an unknown block: the rest of the flag is kept
        check_overrides(config, ["--config.trian.seed=1"])
    assert (e.value.field, e.value.suggestion, e.value.fields) == ("trian", "--config.train.seed", ["task", "train"])
    with pytest.raises(UnknownFieldError) as e:  # a value is not a block; nothing close
        check_overrides(config, ["--config.task.x=1", "--config.zzz=1"])
    assert (e.value.field, e.value.suggestion, e.value.fields) == ("x", None, [])
    assert str(e.value) == "--config.task.x: no field 'x' in this config"
