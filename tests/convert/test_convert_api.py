"""Converter errors and the on-disk path: fabricated checkpoint problems are all named in one error;
``convert_checkpoint`` (SpeechBrain CKPT folder / Lightning file -> our checkpoint) -> ``load_model`` gives
the same outputs as the converted params."""

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

from mamba_jax.convert import ConversionError, convert_checkpoint, convert_state_dict, read_state_dict
from mamba_jax.convert.common import StateDictMapper, path_str
from mamba_jax.convert.golden import make_state_dict
from mamba_jax.summary import load_config
from mamba_jax.training.checkpoint import load_model, load_params, model_from_params

ROOT = pathlib.Path(__file__).resolve().parents[2]


def config(name: str, arg: str | None = "smoke"):
    return load_config(str(ROOT / "configs" / f"{name}.py") + (f":{arg}" if arg else ""))


def original_keys(model_cfg, key_of) -> dict[str, tuple[int, ...]]:
    """The original keys of a smoke-size model with our shapes (``key_of``: the family's key function)."""
    m = StateDictMapper({}, model_cfg)
    return {key_of(p): tuple(m.targets[p].shape) for p in m.our_paths()}


def torch_shaped_state_dict(cfg) -> dict[str, np.ndarray]:
    """A Mamba-TasNet smoke state_dict in torch layouts (Linear [out,in], depthwise conv [E,1,K], cLN [1,1,N])."""
    from mamba_jax.convert.common import torch_key

    shapes = {}
    for k, s in original_keys(cfg.model, torch_key).items():
        if k.endswith(("in_proj.weight", "x_proj.weight", "x_proj_b.weight", "dt_proj.weight", "dt_proj_b.weight",
                       "out_proj.weight")):
            s = s[::-1]
        elif ".conv1d" in k and "mixer" in k and k.endswith("weight"):
            s = (s[1], 1, s[0])
        elif "layer_norm" in k:
            s = (1, 1, s[0])
        shapes[k] = s
    return make_state_dict(list(shapes), list(shapes.values()), seed=3)


def test_error_names_renamed_and_misshaped_keys():
    cfg = config("mambatasnet_xs")
    sd = torch_shaped_state_dict(cfg)
    convert_state_dict(sd, cfg.model)  # the fabricated dict itself is complete
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


def test_convert_checkpoint_speechbrain_folder_round_trip(tmp_path):
    cfg = config("mambatasnet_xs")
    sd = torch_shaped_state_dict(cfg)
    ckpt = tmp_path / "CKPT+2024-01-01+00-00-00+00"
    ckpt.mkdir()
    for stem in ("encoder", "masknet", "decoder"):
        part = {k[len(stem) + 1:]: v for k, v in sd.items() if k.startswith(stem + ".")}
        write_torch_zip(ckpt / f"{stem}.ckpt", lambda t: collections.OrderedDict((k, t(v)) for k, v in part.items()))
    (ckpt / "counter.ckpt").write_text("7")  # SpeechBrain's other files are not read
    assert read_state_dict(ckpt, cfg.model).keys() == sd.keys()
    step_dir = convert_checkpoint(cfg, ckpt, tmp_path / "out")
    assert step_dir == tmp_path / "out" / "checkpoints" / "0"

    params, rest = convert_state_dict(sd, cfg.model)
    direct = model_from_params(cfg, params, rest)
    loaded, loaded_cfg = load_model(tmp_path / "out")
    assert loaded_cfg.model.to_dict() == cfg.model.to_dict()
    x = jax.random.normal(jax.random.key(0), (2, 801)) * 0.3
    np.testing.assert_array_equal(_forward(loaded, x), _forward(direct, x))


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
