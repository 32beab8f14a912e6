"""ConMamba ASR (xi-j/Mamba-ASR, docs/conmamba.md): a SpeechBrain CKPT folder -> our ``ConMambaASR``.

The recipes checkpoint ``model.ckpt``, the state_dict of ``ModuleList([CNN, Transformer, seq_lin, ctc_lin])``
(CTC-only: ``[CNN, Transformer, ctc_lin]``), and ``normalizer.ckpt``, SpeechBrain's ``InputNormalization``
statistics ``{count, glob_mean [80], glob_std [80]}`` (SpeechBrain 1.0 also writes empty ``spk_dict_*``
entries). ``read`` merges them into one dict: ``model.ckpt`` keys as they are, ``normalizer.<name>`` for
the statistics. Key map (our path <- original key; ``i`` a layer index):

=====================================================  =====================================================
``CNN/blocks/{b}/kernel [kT, kF, in, out]``             ``0.convblock_{b}.convs.conv_0.conv.weight [out, in, kF, kT]``
``CNN/blocks/{b}/norm_{weight,bias} [F, C]``            ``0.convblock_{b}.convs.norm_0.norm.{weight,bias}``
``custom_src_module``                                   ``1.custom_src_module.layers.0.w``
``encoder_layers/{i}/ffn_module{k}/norm``               ``1.encoder.layers.{i}.ffn_module{k}.0``
``encoder_layers/{i}/ffn_module{k}/ffn/{w1,w2}``        ``1.encoder.layers.{i}.ffn_module{k}.1.ffn.{0,3}``
``encoder_layers/{i}/mamba/*``                          ``1.encoder.layers.{i}.mamba.*`` (same names)
``encoder_layers/{i}/convolution_module/bottleneck``    ``....convolution_module.bottleneck.0`` (``[2D, D, 1]``)
``encoder_layers/{i}/convolution_module/conv``          ``....convolution_module.conv`` (depthwise ``[D, 1, 31]``)
``encoder_layers/{i}/convolution_module/after_norm``    ``....convolution_module.after_conv.0``
``encoder_layers/{i}/convolution_module/after_linear``  ``....convolution_module.after_conv.2``
``encoder_layers/{i}/norm{1,2}``, ``encoder_norm``      ``1.encoder.layers.{i}.norm{1,2}.norm``, ``1.encoder.norm.norm``
``embedding/embedding``                                 ``1.custom_tgt_module.layers.0.emb.Embedding.weight``
``decoder/layers/{i}/{self_attn,multihead_attn}/*``     ``1.decoder.layers.{i}.{...}.att.*`` (packed q|k|v)
``decoder/layers/{i}/{self_mamba,cross_mamba}/*``       ``1.decoder.layers.{i}.{...}.*`` (Mamba decoder)
``decoder/layers/{i}/pos_ffn/{w1,w2}``                  ``1.decoder.layers.{i}.pos_ffn.ffn.{0,3}``
``decoder/layers/{i}/norm{1,2,3}``, ``decoder/norm``    ``1.decoder.layers.{i}.norm{k}.norm``, ``1.decoder.norm.norm``
``seq_lin``, ``ctc_lin``                                ``2.w``, ``3.w`` (CTC-only: ``ctc_lin`` <- ``2.w``)
``pe [2500, D]`` (rest)                                 ``1.positional_encoding_decoder.pe [1, 2500, D]``
``normalizer/{glob_mean,glob_std,count}`` (rest)        ``normalizer.{glob_mean,glob_std,count}``
=====================================================  =====================================================

``1.positional_encoding.inv_freq`` (RelPosEncXL, computed but never used by the ConMamba encoder, spec 2.1)
and SpeechBrain 1.0's ``normalizer.spk_dict_*`` are known and dropped. The dropout RNG streams in ``rest``
have no original counterpart: they get fresh keys (``_rng_state``).
"""

from __future__ import annotations

import pathlib
import re

import jax
import numpy as np
from mamba_jax.convert import torch_zip
from mamba_jax.convert.common import StateDictMapper, depthwise, identity

CKPT_FILES = ("model", "normalizer")
IGNORED = ("1.positional_encoding.inv_freq", "normalizer.spk_dict_mean", "normalizer.spk_dict_std",
           "normalizer.spk_dict_count")

# (pattern on our path without "params/" or "rest/", replacement giving the original key), first match wins.
_RULES: list[tuple[str, str]] = [
    (r"CNN/blocks/(\d+)/kernel", r"0.convblock_\1.convs.conv_0.conv.weight"),
    (r"CNN/blocks/(\d+)/bias", r"0.convblock_\1.convs.conv_0.conv.bias"),
    (r"CNN/blocks/(\d+)/norm_(weight|bias)", r"0.convblock_\1.convs.norm_0.norm.\2"),
    (r"custom_src_module/(kernel|bias)", r"1.custom_src_module.layers.0.w.\1"),
    (r"encoder_layers/(\d+)/(ffn_module\d)/norm/(weight|bias)", r"1.encoder.layers.\1.\2.0.\3"),
    (r"encoder_layers/(\d+)/(ffn_module\d)/ffn/w1/(kernel|bias)", r"1.encoder.layers.\1.\2.1.ffn.0.\3"),
    (r"encoder_layers/(\d+)/(ffn_module\d)/ffn/w2/(kernel|bias)", r"1.encoder.layers.\1.\2.1.ffn.3.\3"),
    (r"encoder_layers/(\d+)/mamba/(.+)", r"1.encoder.layers.\1.mamba.\2"),
    (r"encoder_layers/(\d+)/convolution_module/bottleneck/(kernel|bias)",
     r"1.encoder.layers.\1.convolution_module.bottleneck.0.\2"),
    (r"encoder_layers/(\d+)/convolution_module/after_norm/(weight|bias)",
     r"1.encoder.layers.\1.convolution_module.after_conv.0.\2"),
    (r"encoder_layers/(\d+)/convolution_module/after_linear/(kernel|bias)",
     r"1.encoder.layers.\1.convolution_module.after_conv.2.\2"),
    (r"encoder_layers/(\d+)/convolution_module/(layer_norm|conv)/(.+)",
     r"1.encoder.layers.\1.convolution_module.\2.\3"),
    (r"encoder_layers/(\d+)/(norm\d)/(weight|bias)", r"1.encoder.layers.\1.\2.norm.\3"),
    (r"encoder_norm/(weight|bias)", r"1.encoder.norm.norm.\1"),
    (r"embedding/embedding", r"1.custom_tgt_module.layers.0.emb.Embedding.weight"),
    (r"decoder/layers/(\d+)/(self_attn|multihead_attn)/(.+)", r"1.decoder.layers.\1.\2.att.\3"),
    (r"decoder/layers/(\d+)/(self_mamba|cross_mamba)/(.+)", r"1.decoder.layers.\1.\2.\3"),
    (r"decoder/layers/(\d+)/pos_ffn/w1/(kernel|bias)", r"1.decoder.layers.\1.pos_ffn.ffn.0.\2"),
    (r"decoder/layers/(\d+)/pos_ffn/w2/(kernel|bias)", r"1.decoder.layers.\1.pos_ffn.ffn.3.\2"),
    (r"decoder/layers/(\d+)/(norm\d)/(weight|bias)", r"1.decoder.layers.\1.\2.norm.\3"),
    (r"decoder/norm/(weight|bias)", r"1.decoder.norm.norm.\1"),
    (r"seq_lin/(kernel|bias)", r"2.w.\1"),
    (r"pe", r"1.positional_encoding_decoder.pe"),
    (r"normalizer/(glob_mean|glob_std|count)", r"normalizer.\1"),
]


def original_key(our_path: str, has_decoder: bool) -> str | None:
    """The original key of one of our leaves (``params/...`` or ``rest/...``); None for RNG state."""
    path = our_path.split("/", 1)[1]
    if "/rngs/" in f"/{path}/":
        return None
    if path.startswith("ctc_lin/"):
        return f"{3 if has_decoder else 2}.w." + path.split("/")[1].replace("kernel", "weight")
    for pattern, repl in _RULES:
        if re.fullmatch(pattern, path):
            key = re.sub(pattern, repl, path).replace("/", ".")
            return re.sub(r"(^|\.)kernel$", r"\1weight", key)
    raise KeyError(f"no ConMamba key rule for our leaf {our_path!r}")


def _cnn_kernel(value: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """SpeechBrain Conv2d ``[out, in, kF, kT]`` -> our ``[kT, kF, in, out]``."""
    return value.transpose(3, 2, 1, 0) if value.ndim == 4 else value


def _pointwise(value: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Pointwise Conv1d ``[out, in, 1]`` -> Linear kernel ``[in, out]``."""
    return value[:, :, 0].T if value.ndim == 3 and value.shape[2] == 1 else value


def _transform(our_path: str):
    """Layout rules beyond ``common.default_transform`` (None: use the default)."""
    if re.search(r"CNN/blocks/\d+/kernel$", our_path):
        return _cnn_kernel
    if our_path.endswith("convolution_module/bottleneck/kernel"):
        return _pointwise
    if our_path.endswith("convolution_module/conv/weight"):
        return depthwise
    if our_path.endswith("/embedding") or "/in_proj_" in our_path or our_path == "rest/pe":
        return identity
    return None


def _rng_state(targets: dict[str, jax.ShapeDtypeStruct]) -> dict[str, jax.Array]:
    """Values for the dropout RNG leaves among ``targets`` (``rest/.../rngs/{key,count}``): distinct keys
    split from ``key(0)`` and zero counters (they only seed training-time dropout)."""
    paths = [p for p in targets if "/rngs/" in p]
    keys = iter(jax.random.split(jax.random.key(0), max(len(paths), 1)))
    return {p: next(keys) if jax.dtypes.issubdtype(targets[p].dtype, jax.dtypes.prng_key)
            else np.zeros(targets[p].shape, targets[p].dtype) for p in paths}


class _Mapper(StateDictMapper):
    def fill(self, our_path: str, value) -> None:
        """Sets one of our leaves that has no original key (RNG state)."""
        self._attempted.add(our_path)
        self.values[our_path] = value


def convert(state_dict: dict[str, np.ndarray], model_cfg, *, source: str = "state_dict") -> tuple[dict, dict]:
    """``(params, rest)`` of our ConMamba from the merged ``model.ckpt`` + ``normalizer.*`` dict (see ``read``).

    Raises ``common.ConversionError`` naming every missing, unexpected or mis-shaped key."""
    has_decoder = model_cfg.get("decoder", "transformer") != "none"
    m = _Mapper(state_dict, model_cfg, source=source)
    m.ignore(IGNORED)
    rngs = _rng_state(m.targets)
    for p in m.our_paths():
        key = original_key(p, has_decoder)
        if key is None:
            m.fill(p, rngs[p])
        else:
            m.take(key, p, _transform(p))
    return m.finish()


def read_normalizer(path: str | pathlib.Path) -> dict[str, np.ndarray]:
    """SpeechBrain ``normalizer.ckpt`` (``InputNormalization._save``) as ``normalizer.<name>`` arrays;
    SpeechBrain 1.0's per-speaker dicts (``spk_dict_*``, empty for global normalisation) are skipped."""
    stats = torch_zip.load(path)
    if not isinstance(stats, dict) or not {"glob_mean", "glob_std"} <= set(stats):
        raise ValueError(f"{path}: expected InputNormalization statistics (count, glob_mean, glob_std), got "
                         f"{type(stats).__name__} {sorted(stats) if isinstance(stats, dict) else ''}")
    return {f"normalizer.{k}": np.asarray(v) for k, v in stats.items() if not isinstance(v, dict)}


def read(path: str | pathlib.Path) -> dict[str, np.ndarray]:
    """A SpeechBrain ``CKPT+...`` folder (``model.ckpt`` and ``normalizer.ckpt``) or a lone ``model.ckpt``
    (with ``normalizer.ckpt`` beside it, else ``convert`` reports the statistics missing) as one dict."""
    from mamba_jax.convert import unwrap

    path = pathlib.Path(path)
    model_file = path / "model.ckpt" if path.is_dir() else path
    out = dict(unwrap(torch_zip.load(model_file), str(model_file)))
    norm_file = model_file.with_name("normalizer.ckpt")
    if norm_file.is_file():
        out.update(read_normalizer(norm_file))
    elif path.is_dir():
        raise FileNotFoundError(f"{path}: SpeechBrain checkpoint folder without normalizer.ckpt")
    return out
