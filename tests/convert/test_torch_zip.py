"""The weights-only torch zip reader against files written by real ``torch.save`` (torch 2.13, committed
fixtures made by tools/golden/make_torch_zip_fixtures.py); expected values are recomputed with numpy."""

from __future__ import annotations

import collections
import pathlib
import pickle

import ml_dtypes
import numpy as np
import pytest

from mamba_jax.convert import unwrap
from mamba_jax.convert.torch_zip import UnsafeCheckpointError, load

FIXTURES = pathlib.Path(__file__).with_name("fixtures")


def test_values_dtypes_and_views():
    sd = load(FIXTURES / "plain.pth")
    assert isinstance(sd, collections.OrderedDict)
    base = (np.arange(24, dtype=np.float32).reshape(4, 6) / 8)
    expected = {
        "weight": np.arange(12, dtype=np.float32).reshape(3, 4) / 7 - 0.5,
        "half": (np.arange(6, dtype=np.float32) / 4).astype(np.float16),
        "bf16": (np.arange(5, dtype=np.float32) - 2).astype(ml_dtypes.bfloat16),
        "steps": np.arange(4, dtype=np.int64) * 1000,
        "mask": np.arange(5) % 2 == 0,
        "scalar": np.float32(2.5),
        "transposed": base.T,
        "offset": base[1:3, 2:5],
    }
    assert list(sd) == list(expected)
    for k, want in expected.items():
        assert sd[k].dtype == np.asarray(want).dtype, k
        assert sd[k].shape == np.shape(want), k
        np.testing.assert_array_equal(sd[k], want, err_msg=k)
    assert sd["transposed"].flags.writeable and sd["transposed"].base is None  # a copy, not a view of the file


def test_lightning_nested_prefixed_state_dict():
    obj = load(FIXTURES / "lightning.ckpt")
    assert obj["epoch"] == 3 and obj["global_step"] == 7
    infos = obj["infos"]
    assert infos["torch_version"].startswith("2.13") and type(infos["torch_version"]) is str
    assert infos["device"] == "cuda:1" and infos["size"] == (2, 3) and infos["dtype"] == np.dtype(ml_dtypes.bfloat16)
    sd = unwrap(obj, "lightning.ckpt")
    assert sorted(sd) == ["half", "weight"]  # audio_model. prefix removed
    np.testing.assert_array_equal(sd["weight"], np.arange(12, dtype=np.float32).reshape(3, 4) / 7 - 0.5)


def test_refuses_arbitrary_globals(tmp_path):
    with pytest.raises(UnsafeCheckpointError, match=r"evil\.pth: refusing to load global \w+\.system"):
        load(FIXTURES / "evil.pth")


def test_refuses_legacy_and_non_torch_files(tmp_path):
    with pytest.raises(ValueError, match=r"legacy\.pth: not a torch zip checkpoint"):
        load(FIXTURES / "legacy.pth")
    f = tmp_path / "plain.pkl"
    f.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ValueError, match=r"plain\.pkl: not a torch zip checkpoint"):
        load(f)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load(tmp_path / "missing.pth")


def test_unwrap_reports_what_it_found():
    with pytest.raises(ValueError, match=r"x\.ckpt: no state_dict found; top-level keys \['epoch', 'optimizer'\]"):
        unwrap({"epoch": 1, "optimizer": {"lr": 0.1}}, "x.ckpt")
