"""Parity of ConMamba ASR with the original PyTorch code (xi-j/Mamba-ASR), through the converter.

Each ``tests/golden/<config>.npz`` (made by tools/golden/make_conmamba_golden.py, see tests/golden/README.md,
"ConMamba") holds the original ``model.ckpt`` key names and shapes, the seed of the numpy weight recipe
(``mamba_jax.convert.golden``) and per-tensor checksums, the two buffers (``inv_freq`` stored; the
sinusoidal ``pe`` table as a checksum, rebuilt here), InputNormalization statistics, Fbank features of two
zero-padded utterances, and the ORIGINAL model's eval-mode outputs: CTC log-probs ``[2, L', V]`` and, for
the two S2S models, the teacher-forced decoder log-probs ``[2, U, V]`` on bos-prefixed, 0-padded tokens.
The waveforms behind the features are stored too, so our Fbank is checked against SpeechBrain's.

Here: rebuild the state_dict, convert it (every key must be consumed), normalise the features with the
converted statistics, run our fp32 model, compare. Error measure, per output tensor:
``rel = max|ours - original| / max|original|`` over every entry (all frames, padding included, since
neither encoder masks; all token positions; the whole vocabulary). The S2S decoders are also checked on the
search path: our incremental ``decode_step`` against the original teacher-forced log-probs.
"""

from __future__ import annotations

import pathlib
import re

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mamba_jax.checkpoint import model_from_params
from mamba_jax.config import load_config
from mamba_jax.convert import ConversionError, conmamba
from mamba_jax.convert.golden import checksums, make_state_dict
from mamba_jax.layers.attention import sinusoidal_positions
from mamba_jax.layers.fbank import fbank, fbank_config_from, num_frames

ROOT = pathlib.Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
NAMES = ("conmamba_ctc_large", "conmamba_small", "conmambamamba_small")
RTOL = 1e-4
PE_KEY, INV_FREQ_KEY = "1.positional_encoding_decoder.pe", "1.positional_encoding.inv_freq"


def golden_state_dict(name: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The merged ``model.ckpt`` + ``normalizer.*`` dict of the golden file, and the file's arrays."""
    g = dict(np.load(GOLDEN / f"{name}.npz"))
    shapes = [tuple(int(d) for d in s.split(",")) for s in g["shapes"]]
    sd = make_state_dict([str(k) for k in g["keys"]], shapes, int(g["seed"]))
    np.testing.assert_allclose(checksums(sd), g["checksums"], rtol=1e-9, atol=1e-6,
                               err_msg="the weight recipe drifted from the one that made the golden file")
    _, max_len, d = (int(x) for x in g["pe_shape"])
    pe = sinusoidal_positions(max_len, d)[None]  # the original buffer is SpeechBrain's PositionalEncoding
    np.testing.assert_allclose([pe.sum(dtype=np.float64), np.square(pe, dtype=np.float64).sum()],
                               g["pe_checksum"], rtol=1e-6)
    sd[PE_KEY] = pe
    sd[INV_FREQ_KEY] = g[f"buffer.{INV_FREQ_KEY}"]
    for k in ("glob_mean", "glob_std", "count"):
        sd[f"normalizer.{k}"] = g[f"normalizer.{k}"]
    return sd, g


def fp32_config(name: str):
    config = load_config(str(ROOT / "configs" / f"{name}.py"))
    config.model.dtype = "fp32"  # the recipes train in bf16; parity is checked in fp32
    config.model.inert_padding = False  # the golden outputs are the original's on a padded batch
    return config


def relative_error(ours, ref: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(ours) - ref)) / np.max(np.abs(ref)))


@pytest.mark.parametrize("name", NAMES)
def test_golden_parity(name):
    sd, g = golden_state_dict(name)
    config = fp32_config(name)
    params, rest = conmamba.convert(sd, config.model)  # raises if a key is missing, left over or mis-shaped
    model = model_from_params(config, params, rest)
    model.eval()
    np.testing.assert_array_equal(np.asarray(model.normalizer.glob_std[...]), g["normalizer.glob_std"])

    # ``model(...)``'s body, split so that the encoder output also feeds the incremental decoder check.
    encode = nnx.jit(lambda m, feats, lengths: m.encode(m.normalize(feats, lengths), lengths))
    feats, lengths = jnp.asarray(g["feats"]), jnp.asarray(g["feat_lengths"])
    enc, enc_lengths = encode(model, feats, lengths)
    out = dict(enc_lengths=enc_lengths, ctc_logprobs=nnx.jit(lambda m, e: m.ctc_logprobs(e))(model, enc))
    tokens = jnp.asarray(g["tokens_bos"]) if "tokens_bos" in g else None
    if tokens is not None:
        out["attn_logprobs"] = nnx.jit(lambda m, t, e, n: m.decode(t, e, n, pad_id=0))(model, tokens, enc,
                                                                                        enc_lengths)
    # The original masks the decoder's memory with round(wav_len * L'); ours with ceil(ceil(frames/2)/2).
    # The golden utterances are chosen so the two agree (they can differ by one frame in general).
    np.testing.assert_array_equal(np.asarray(out["enc_lengths"]), g["enc_mask_lengths"])
    assert out["ctc_logprobs"].shape == g["ctc_logprobs"].shape
    rel = {"ctc": relative_error(out["ctc_logprobs"], g["ctc_logprobs"])}
    if tokens is not None:
        assert out["attn_logprobs"].shape == g["attn_logprobs"].shape
        rel["attn"] = relative_error(out["attn_logprobs"], g["attn_logprobs"])
        rel["step"] = _incremental_error(model, enc, enc_lengths, g)
    print(f"{name}: " + ", ".join(f"{k} rel {v:.2e}" for k, v in rel.items()))
    assert all(v < RTOL for v in rel.values()), f"{name}: max|ours - original| / max|original| = {rel}"


def _incremental_error(model, enc, enc_lengths, g) -> float:
    """Search path: our incremental decoder (KV cache / Mamba step states), fed the golden tokens one at a
    time, against the original's teacher-forced log-probs (its beam search recomputes the full prefix, so
    they are what it scores). Compared on the positions before each utterance's first pad token (the
    teacher-forced pass masks pad keys; a step-by-step search never feeds pads)."""
    tokens, ref = g["tokens_bos"], g["attn_logprobs"]

    init = nnx.jit(lambda m, e, n: m.init_decoder_state(e, n, tokens.shape[1]))
    step = nnx.jit(lambda m, tok, state, pos: m.decode_step(tok, state, pos))
    state = init(model, enc, enc_lengths)
    logp = []
    for u in range(tokens.shape[1]):
        lp, state = step(model, jnp.asarray(tokens[:, u]), state, jnp.asarray(u))
        logp.append(np.asarray(lp))
    logp = np.stack(logp, axis=1)  # [B, U, V]
    valid = np.cumsum(tokens == 0, axis=1) == 0  # [B, U] before the first pad
    return relative_error(logp[valid], ref[valid])


@pytest.mark.parametrize("name", NAMES)
def test_fbank_matches_speechbrain(name):
    """Our feature extraction (``config.features``: n_fft 512 or 400, 25 ms window) on the golden waveforms
    against SpeechBrain's ``Fbank`` output stored as the golden input, padded frames included; and the valid
    frame counts (``num_frames``) the ASR task derives from the sample counts."""
    g = np.load(GOLDEN / f"{name}.npz")
    cfg = fbank_config_from(fp32_config(name).features)
    ours = np.asarray(fbank(jnp.asarray(g["wavs"]), cfg))
    assert ours.shape == g["feats"].shape
    rel = relative_error(ours, g["feats"])
    assert rel < RTOL, f"{name}: fbank max|ours - SpeechBrain| / max|SpeechBrain| = {rel:.2e}"
    np.testing.assert_array_equal(np.asarray(num_frames(jnp.asarray(g["wav_lengths"]), cfg)), g["feat_lengths"])


def test_every_key_has_a_rule_and_unused_buffers_are_named():
    """Each original key maps to exactly one of our leaves (no two leaves read the same key), and the only
    keys left unmapped are the documented unused ones."""
    sd, _ = golden_state_dict("conmambamamba_small")
    config = fp32_config("conmambamamba_small")
    mapper = conmamba._Mapper(sd, config.model)
    keys = [conmamba.original_key(p, has_decoder=True) for p in mapper.our_paths()]
    taken = [k for k in keys if k is not None]
    assert len(taken) == len(set(taken))
    assert set(sd) - set(taken) == {INV_FREQ_KEY}


def test_bad_checkpoint_names_the_keys():
    """One key renamed and one tensor of the wrong shape: a single error names all three keys and shapes."""
    sd, _ = golden_state_dict("conmamba_small")
    config = fp32_config("conmamba_small")
    renamed = "1.encoder.layers.3.mamba.x_proj_b.weight"
    sd["1.encoder.layers.3.mamba.xproj_b.weight"] = sd.pop(renamed)
    bad_shape = "1.decoder.layers.1.multihead_attn.att.in_proj_weight"
    sd[bad_shape] = sd[bad_shape][:-3]
    with pytest.raises(ConversionError) as err:
        conmamba.convert(sd, config.model, source="model.ckpt")
    msg = str(err.value)
    assert msg.startswith("model.ckpt does not fit model 'conmamba' (3 problems)")
    assert re.search(rf"missing key '{re.escape(renamed)}' .*expected shape \(288, 41\)", msg)
    assert "unexpected key '1.encoder.layers.3.mamba.xproj_b.weight' (41, 288)" in msg
    assert re.search(rf"key '{re.escape(bad_shape)}': shape \(429, 144\) does not fit "
                     r"params/decoder/layers/1/multihead_attn/in_proj_weight \(expected \(432, 144\)", msg)


def test_missing_normalizer_statistics_are_named():
    """A lone model.ckpt (no normalizer.ckpt) cannot silently run with identity normalisation; the three
    statistics are the only problems (every other CTC-only key, ``ctc_lin`` <- ``2.w`` included, maps)."""
    sd, _ = golden_state_dict("conmamba_ctc_large")
    for k in ("glob_mean", "glob_std", "count"):
        del sd[f"normalizer.{k}"]
    expected = (r"\(3 problems\):\n.*missing key 'normalizer.count'.*\n.*missing key 'normalizer.glob_mean'.*\n"
                r".*missing key 'normalizer.glob_std'")
    with pytest.raises(ConversionError, match=expected):
        conmamba.convert(sd, fp32_config("conmamba_ctc_large").model)


def test_read_speechbrain_normalizer_ckpt():
    """``normalizer.ckpt`` as SpeechBrain's ``InputNormalization._save`` writes it (torch zip, no torch here)."""
    stats = conmamba.read_normalizer(GOLDEN / "conmamba_normalizer.ckpt")
    g = np.load(GOLDEN / "conmamba_small.npz")
    assert set(stats) == {"normalizer.count", "normalizer.glob_mean", "normalizer.glob_std"}
    for k in stats:
        np.testing.assert_array_equal(stats[k], g[k])
