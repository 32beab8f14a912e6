"""Converter errors and the on-disk path: fabricated checkpoint problems are all named in one error;
``convert_checkpoint`` (a SpeechBrain CKPT folder written by the original code / a Lightning file) ->
``load_params``/``load_model`` gives the converted params and their outputs (and the original's)."""

from __future__ import annotations

import collections
import io
import pathlib
import pickle
import zipfile

import jax
import numpy as np
import pytest
from flax import nnx

from mamba_jax.checkpoint import load_model, load_params, model_from_params
from mamba_jax.config import load_config
from mamba_jax.convert import ConversionError, convert_checkpoint, convert_state_dict, read_state_dict
from mamba_jax.convert.common import StateDictMapper, path_str
from mamba_jax.convert.golden import make_state_dict

ROOT = pathlib.Path(__file__).resolve().parents[2]


def config(name: str, arg: str | None = "smoke"):
    return load_config(str(ROOT / "configs" / f"{name}.py") + (f":{arg}" if arg else ""))


def original_keys(model_cfg, key_of) -> dict[str, tuple[int, ...]]:
    """The original keys of a smoke-size model with our shapes (``key_of``: the family's key function)."""
    m = StateDictMapper({}, model_cfg)
    return {key_of(p): tuple(m.targets[p].shape) for p in m.our_paths()}


def smoke_golden() -> tuple[dict[str, np.ndarray], dict]:
    """The original Mamba-TasNet smoke-size state_dict (key names and shapes of the original modules, golden
    recipe values) and its golden file."""
    g = dict(np.load(ROOT / "tests" / "golden" / "mambatasnet_smoke_ckpt.npz"))
    shapes = [tuple(int(d) for d in s.split(",")) for s in g["shapes"]]
    return make_state_dict([str(k) for k in g["keys"]], shapes, int(g["seed"])), g


def test_error_names_renamed_and_misshaped_keys():
    cfg = config("mambatasnet_xs")
    sd, _ = smoke_golden()
    convert_state_dict(sd, cfg.model)  # complete as it is
    bad = dict(sd)
    bad["masknet.mamba_net.layers.0.mixer.A_log_renamed"] = bad.pop("masknet.mamba_net.layers.0.mixer.A_log")
    shape = bad["masknet.mask_conv1x1.conv.weight"].shape
    bad["masknet.mask_conv1x1.conv.weight"] = np.zeros((shape[0] + 1, *shape[1:]), np.float32)
    with pytest.raises(ConversionError) as err:
        convert_state_dict(bad, cfg.model)
    msg = str(err.value)
    assert "3 problems" in msg
    assert "missing key 'masknet.mamba_net.layers.0.mixer.A_log'" in msg
    assert "unexpected key 'masknet.mamba_net.layers.0.mixer.A_log_renamed'" in msg
    assert (f"key 'masknet.mask_conv1x1.conv.weight': shape {(shape[0] + 1, *shape[1:])} does not fit "
            f"params/masknet/mask_conv1x1/conv/weight (expected {shape}") in msg


# ---- a minimal torch zip writer (pure Python pickler writing torch's GLOBAL names) ---------------------------


class _Global:
    def __init__(self, module: str, name: str):
        self.module, self.name = module, name


class _Tensor:
    def __init__(self, key: str, arr: np.ndarray):
        self.key, self.arr = key, arr


class _TorchPickler(pickle._Pickler):
    """Writes tensors as ``torch._utils._rebuild_tensor_v2(storage, 0, size, stride, False, OrderedDict())``
    with persistent storage ids, as torch.save does, without importing torch."""

    def persistent_id(self, obj):
        if isinstance(obj, tuple) and len(obj) == 2 and obj[0] == "__storage__":
            t = obj[1]
            return ("storage", _Global("torch", "FloatStorage"), t.key, "cpu", t.arr.size)
        return None

    def save(self, obj, save_persistent_id=True):
        if isinstance(obj, _Global):
            self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
            return
        if isinstance(obj, _Tensor):
            strides = tuple(s // obj.arr.itemsize for s in obj.arr.strides)
            self.save(_Global("torch._utils", "_rebuild_tensor_v2"))
            self.save((("__storage__", obj), 0, obj.arr.shape, strides, False, collections.OrderedDict()))
            self.write(pickle.REDUCE)
            return
        super().save(obj, save_persistent_id)


def write_torch_zip(path: pathlib.Path, obj_of) -> None:
    """``obj_of(tensor)`` builds the object to save from a function that wraps arrays as tensors."""
    storages: dict[str, np.ndarray] = {}

    def tensor(arr):
        key = str(len(storages))
        storages[key] = np.ascontiguousarray(arr, np.float32)
        return _Tensor(key, storages[key])

    obj = obj_of(tensor)
    buf = io.BytesIO()
    _TorchPickler(buf, protocol=2).dump(obj)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", buf.getvalue())
        z.writestr("archive/byteorder", "little")
        for k, a in storages.items():
            z.writestr(f"archive/data/{k}", a.tobytes())


def _forward(model, x):
    return np.asarray(nnx.jit(lambda m, x: m(x))(model, x))


def test_convert_checkpoint_lightning_file_and_bad_file(tmp_path):
    cfg = config("sepmamba_s")
    from mamba_jax.convert.sepmamba import _key

    shapes = {}
    for k, s in original_keys(cfg.model, _key).items():
        shapes[k] = s[::-1] if k.endswith("proj.weight") else ((s[1], 1, s[0]) if "mixer.conv1d.weight" in k else s)
    sd = make_state_dict(list(shapes), list(shapes.values()), seed=5)
    f = tmp_path / "epoch=3.ckpt"
    write_torch_zip(f, lambda t: {"epoch": 3, "state_dict": collections.OrderedDict(
        (f"audio_model.{k}", t(v)) for k, v in sd.items())})
    convert_checkpoint(cfg, f, tmp_path / "out")
    _, loaded, _, step = load_params(tmp_path / "out")
    params, _ = convert_state_dict(sd, cfg.model)
    assert step == 0
    flat = {path_str(k): v for k, v in jax.tree_util.tree_flatten_with_path(params)[0]}
    flat_loaded = {path_str(k): v for k, v in jax.tree_util.tree_flatten_with_path(loaded)[0]}
    assert flat.keys() == flat_loaded.keys() and len(flat) == len(sd)
    for k, v in flat.items():
        np.testing.assert_array_equal(flat_loaded[k], v, err_msg=k)

    g = tmp_path / "wrong.pth"
    write_torch_zip(g, lambda t: {"model_state_dict": collections.OrderedDict(
        (k, t(v)) for k, v in list(sd.items())[1:])})
    with pytest.raises(ConversionError, match=r"wrong\.pth: state_dict does not fit model 'sepmamba' \(1 problem\)"):
        convert_checkpoint(cfg, g, tmp_path / "out2")


def test_convert_checkpoint_of_a_real_speechbrain_folder(tmp_path):
    """tests/golden/mambatasnet_smoke_ckpt_CKPT was written by SpeechBrain's torch_save from the ORIGINAL
    Mamba-TasNet modules (smoke size, golden recipe weights); its .npz holds the original's output."""
    expected, g = smoke_golden()
    cfg = config("mambatasnet_xs")
    folder = ROOT / "tests" / "golden" / "mambatasnet_smoke_ckpt_CKPT"
    sd = read_state_dict(folder, cfg.model)
    assert list(sd) == list(expected)
    for k, v in expected.items():
        np.testing.assert_array_equal(sd[k], v, err_msg=k)

    (tmp_path / "CKPT").mkdir()  # SpeechBrain's other files (counter, brain, optimizer state) are not read
    for f in folder.iterdir():
        (tmp_path / "CKPT" / f.name).write_bytes(f.read_bytes())
    (tmp_path / "CKPT" / "counter.ckpt").write_text("7")
    step_dir = convert_checkpoint(cfg, tmp_path / "CKPT", tmp_path / "out")
    assert step_dir == tmp_path / "out" / "checkpoints" / "0"
    model, loaded_cfg = load_model(tmp_path / "out")
    assert loaded_cfg.model.to_dict() == cfg.model.to_dict()
    x = jax.numpy.asarray(g["input"])
    out = _forward(model, x)
    params, rest = convert_state_dict(sd, cfg.model)
    np.testing.assert_array_equal(out, _forward(model_from_params(cfg, params, rest), x))  # the round trip
    rel = np.max(np.abs(out - g["output"])) / np.max(np.abs(g["output"]))  # and the original's output
    assert rel < 1e-4, rel
