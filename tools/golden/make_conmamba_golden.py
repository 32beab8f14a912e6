"""Golden parity files for ConMamba ASR from the ORIGINAL PyTorch code (xi-j/Mamba-ASR), run on CPU.

Writes ``tests/golden/{conmamba_ctc_large,conmamba_small,conmambamamba_small}.npz`` (and
``conmamba_normalizer.ckpt``, conmamba_small's statistics saved by SpeechBrain's ``InputNormalization._save``), read by
``tests/convert/test_convert_conmamba.py`` (no torch there). Run it in a torch environment (see
tests/golden/README.md, "ConMamba"), e.g.::

    /work/torchenv/bin/python tools/golden/make_conmamba_golden.py \
        --mamba-asr /path/to/Mamba-ASR --mamba-ssm /path/to/mamba-v1.1.3.post1 --out tests/golden

``--mamba-asr`` is a checkout of xi-j/Mamba-ASR (its ``modules/`` package is imported as is); ``--mamba-ssm``
is a directory holding the ``mamba_ssm`` Python package of state-spaces/mamba v1.1.3.post1 (what Mamba-ASR's
requirement.txt pins; used for the unidirectional ``Mamba`` of the Mamba decoder). Neither is copied here.

The CUDA extensions are replaced by small CPU stand-ins registered in ``sys.modules`` before the original
modules are imported (our code, nothing copied):

* ``selective_scan_cuda.fwd``: ``selective_scan_ref`` of the same mamba_ssm sources (the pure-PyTorch
  reference scan), returning ``(out, intermediates, out * silu(z))`` as the kernel does;
* ``causal_conv1d_cuda.causal_conv1d_fwd`` and ``causal_conv1d.causal_conv1d_fn``: a depthwise conv1d with
  left padding K-1 and an optional SiLU;
* ``mamba_ssm.models.mixer_seq_simple`` (the LM head model, unused; it would need HF transformers).

So every Mamba runs its **fast path** (``use_fast_path=True``, no ``inference_params``): the bidirectional
encoder mixer goes through ``mamba_inner_fn_no_out_proj`` twice (forward and flipped branch averaged, the
CUDA semantics) rather than its slow path, which silently drops the backward branch (docs/mamba.md).

What is compared (per file): the synthetic ``model.ckpt`` state_dict (``mamba_jax/convert/golden.py``
recipe: key names, shapes, seed and float64 checksums are stored, not the weights) plus the two buffers,
which keep the original constructor's values (``1.positional_encoding_decoder.pe`` is the sinusoidal
table: its checksum is stored so the test can rebuild it; ``1.positional_encoding.inv_freq`` is stored);
SpeechBrain ``InputNormalization(global)`` statistics (stored, ``normalizer.*``); the two synthetic
utterances of different lengths zero-padded into one batch (``wavs``) and the input, their SpeechBrain
``Fbank`` features with the recipe's n_fft/window (``feats``); and the outputs in eval mode:
``ctc_logprobs`` = log_softmax(ctc_lin(encoder)) for every frame, and for the S2S models
``attn_logprobs`` = log_softmax(seq_lin(decoder)) of the teacher-forced pass on ``tokens_bos``
(bos-prefixed, 0-padded), exactly as ``train_S2S.py`` calls ``Transformer(src, tokens_bos, wav_lens,
pad_idx=0)``.
"""

from __future__ import annotations

import argparse
import importlib.util
import pathlib
import subprocess
import sys
import types

import numpy as np
import torch
import torch.nn.functional as F

ROOT = pathlib.Path(__file__).resolve().parents[2]

# Architecture arguments of the three recipes (Mamba-ASR hparams/S2S/conmamba_small.yaml,
# hparams/S2S/conmambamamba_small.yaml, hparams/CTC/conmamba_large.yaml).
MAMBA = dict(d_state=16, expand=2, d_conv=4, bidirectional=True)
CONFIGS = {
    "conmamba_ctc_large": dict(yaml="hparams/CTC/conmamba_large.yaml", d_model=256, nhead=4, enc=18, dec=0,
                               d_ffn=1024, vocab=31, decoder="transformer", n_fft=512, win_length=25),
    "conmamba_small": dict(yaml="hparams/S2S/conmamba_small.yaml", d_model=144, nhead=4, enc=12, dec=4,
                           d_ffn=1024, vocab=5000, decoder="transformer", n_fft=400, win_length=25),
    "conmambamamba_small": dict(yaml="hparams/S2S/conmambamamba_small.yaml", d_model=144, nhead=4, enc=12,
                                dec=4, d_ffn=1024, vocab=5000, decoder="mamba", n_fft=400, win_length=25),
}
SEEDS = {"conmamba_ctc_large": 901, "conmamba_small": 902, "conmambamamba_small": 903}
SCAN_CALLS = [0]  # selective_scan_cuda.fwd calls: proves every Mamba ran its fast path
BUFFERS = ("1.positional_encoding.inv_freq", "1.positional_encoding_decoder.pe")
# Two utterances (samples at 16 kHz), chosen so that SpeechBrain's relative-length mask of the encoder output,
# round(wav_len * L'), equals the frame count ceil(ceil(frames / 2) / 2) our model uses (see the test).
N_SAMPLES = (8000, 6000)
TOKENS_BOS = ((1, 17, 4093, 250, 9, 3999, 77), (1, 1234, 42, 4321, 0, 0, 0))


# ---------------------------------------------------------------------------------------- CUDA stand-ins
def _conv_silu(x: torch.Tensor, weight: torch.Tensor, bias, silu: bool) -> torch.Tensor:
    """Causal depthwise conv of ``x (B, E, L)`` with ``weight (E, K)``: left padding K-1."""
    k = weight.shape[-1]
    y = F.conv1d(F.pad(x, (k - 1, 0)), weight.unsqueeze(1), bias, groups=x.shape[1])
    return F.silu(y) if silu else y


def install_stubs() -> None:
    """Registers CPU ``causal_conv1d``, ``causal_conv1d_cuda`` and ``selective_scan_cuda`` modules."""
    cc = types.ModuleType("causal_conv1d")
    cc.causal_conv1d_fn = lambda x, weight, bias=None, activation=None: _conv_silu(
        x, weight, bias, activation in ("silu", "swish"))
    cc.causal_conv1d_update = None  # only used by step(), which no golden pass calls
    ccc = types.ModuleType("causal_conv1d_cuda")
    ccc.causal_conv1d_fwd = lambda x, weight, bias, seq_idx, silu: _conv_silu(x, weight, bias, silu)

    ssc = types.ModuleType("selective_scan_cuda")

    def fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        SCAN_CALLS[0] += 1
        from mamba_ssm.ops.selective_scan_interface import selective_scan_ref
        out = selective_scan_ref(u, delta, A, B, C, D, None, delta_bias, delta_softplus)
        # The kernel's intermediates (B, E, n_chunks, 2N) only feed the backward pass and last_state.
        inter = torch.zeros(u.shape[0], u.shape[1], 1, 2 * A.shape[1], dtype=torch.float32)
        if z is None:
            return out, inter
        return out, inter, out * F.silu(z.float()).to(out.dtype)

    ssc.fwd = fwd
    # mamba_ssm/__init__ imports the LM head model, whose generation utilities need HF transformers; the
    # recipes never use it.
    lm = types.ModuleType("mamba_ssm.models.mixer_seq_simple")
    lm.MambaLMHeadModel = None
    sys.modules.update({"causal_conv1d": cc, "causal_conv1d_cuda": ccc, "selective_scan_cuda": ssc,
                        "mamba_ssm.models.mixer_seq_simple": lm})


def load_recipe():
    """``mamba_jax/convert/golden.py`` by file path (the package itself imports jax, absent here)."""
    spec = importlib.util.spec_from_file_location("golden_recipe", ROOT / "mamba_jax/convert/golden.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ---------------------------------------------------------------------------------------- the original model
def build_original(cfg: dict) -> torch.nn.Module:
    """``torch.nn.ModuleList([CNN, Transformer, seq_lin, ctc_lin])`` (CTC: ``[CNN, Transformer, ctc_lin]``), the
    recipes' ``model`` whose state_dict is ``model.ckpt``."""
    import speechbrain as sb
    from speechbrain.lobes.models.convolution import ConvolutionFrontEnd
    from modules.TransformerASR import TransformerASR

    cnn = ConvolutionFrontEnd(input_shape=(8, 10, 80), num_blocks=2, num_layers_per_block=1,
                              out_channels=(64, 32), kernel_sizes=(3, 3), strides=(2, 2),
                              residuals=(False, False))
    kw = dict(input_size=640, tgt_vocab=cfg["vocab"], d_model=cfg["d_model"], nhead=cfg["nhead"],
              num_encoder_layers=cfg["enc"], num_decoder_layers=cfg["dec"], d_ffn=cfg["d_ffn"], dropout=0.1,
              activation=torch.nn.GELU, encoder_module="conmamba", attention_type="RelPosMHAXL",
              normalize_before=True, causal=False, mamba_config=dict(MAMBA))
    if cfg["dec"]:
        kw["decoder_module"] = cfg["decoder"]
    transformer = TransformerASR(**kw)
    ctc_lin = sb.nnet.linear.Linear(input_size=cfg["d_model"], n_neurons=cfg["vocab"])
    if not cfg["dec"]:
        return torch.nn.ModuleList([cnn, transformer, ctc_lin])
    seq_lin = sb.nnet.linear.Linear(input_size=cfg["d_model"], n_neurons=cfg["vocab"])
    return torch.nn.ModuleList([cnn, transformer, seq_lin, ctc_lin])


def waveforms(seed: int) -> torch.Tensor:
    """Two zero-padded synthetic utterances ``(2, max(N_SAMPLES))``: chirps plus noise, speech-like levels."""
    rng = np.random.default_rng(seed)
    out = np.zeros((len(N_SAMPLES), max(N_SAMPLES)), np.float32)
    for i, n in enumerate(N_SAMPLES):
        t = np.arange(n) / 16000.0
        f0 = rng.uniform(100, 300)
        sig = sum(0.1 / h * np.sin(2 * np.pi * h * f0 * t * (1 + 0.3 * t)) for h in range(1, 8))
        out[i, :n] = sig + 0.01 * rng.standard_normal(n)
    return torch.from_numpy(out)


def make_one(name: str, out_dir: pathlib.Path, recipe) -> None:
    from speechbrain.lobes.features import Fbank
    from speechbrain.processing.features import InputNormalization

    cfg, seed = CONFIGS[name], SEEDS[name]
    torch.manual_seed(0)
    model = build_original(cfg).eval()
    sd = model.state_dict()
    keys = [k for k in sd if k not in BUFFERS]
    shapes = [tuple(sd[k].shape) for k in keys]
    weights = recipe.make_state_dict(keys, shapes, seed)
    new_sd = {k: torch.from_numpy(weights[k]) if k in weights else sd[k] for k in sd}
    model.load_state_dict(new_sd, strict=True)

    wavs = waveforms(seed)
    wav_lens = torch.tensor([n / wavs.shape[1] for n in N_SAMPLES])
    fbank = Fbank(sample_rate=16000, n_fft=cfg["n_fft"], n_mels=80, win_length=cfg["win_length"])
    feats = fbank(wavs)  # (2, L, 80)
    feat_lengths = np.array([1 + n // 160 for n in N_SAMPLES])  # center=True, hop 10 ms
    # Global statistics as if accumulated on these utterances (valid frames), perturbed per mel.
    rng = np.random.default_rng([seed, 80])
    valid = np.concatenate([feats[i, :l].numpy() for i, l in enumerate(feat_lengths)])
    glob_mean = (valid.mean(0) + 0.1 * rng.standard_normal(80)).astype(np.float32)
    glob_std = (valid.std(0) * (1 + 0.1 * rng.uniform(size=80))).astype(np.float32)
    normalize = InputNormalization(norm_type="global", update_until_epoch=4).eval()
    normalize.glob_mean, normalize.glob_std, normalize.count = (torch.from_numpy(glob_mean),
                                                                torch.from_numpy(glob_std), 7)

    if name == "conmamba_small":  # SpeechBrain's own normalizer.ckpt writer, for the reader's test
        normalize._save(out_dir / "conmamba_normalizer.ckpt")
    cnn, transformer = model[0], model[1]
    ctc_lin = model[-1]
    tokens = torch.tensor(TOKENS_BOS, dtype=torch.long)
    SCAN_CALLS[0] = 0
    with torch.no_grad():
        x = normalize(feats, wav_lens, epoch=10)
        src = cnn(x)
        if cfg["dec"]:
            enc, dec = transformer(src, tokens, wav_lens, pad_idx=0)
        else:
            enc, dec = transformer(src, tgt=None, wav_len=wav_lens)
        ctc = torch.log_softmax(ctc_lin(enc), dim=-1)
        attn = torch.log_softmax(model[2](dec), dim=-1) if cfg["dec"] else None
    # Fast path everywhere: 2 scans per bidirectional encoder mixer, 1 per decoder self-/cross-Mamba.
    expected = 2 * cfg["enc"] + (2 * cfg["dec"] if cfg["decoder"] == "mamba" else 0)
    if SCAN_CALLS[0] != expected:
        raise RuntimeError(f"{name}: {SCAN_CALLS[0]} selective-scan kernel calls, expected {expected}")
    mask_lengths = torch.round(wav_lens * src.shape[1]).long().numpy()  # make_transformer_src_tgt_masks

    pe = sd[BUFFERS[1]].double().numpy()
    out = dict(
        config=np.array(name), keys=np.array(keys), shapes=np.array(
            [",".join(map(str, s)) for s in shapes]), seed=np.array(seed),
        checksums=recipe.checksums(weights),
        **{"buffer." + BUFFERS[0]: sd[BUFFERS[0]].numpy()},
        pe_shape=np.array(sd[BUFFERS[1]].shape), pe_checksum=np.array([pe.sum(), np.square(pe).sum()]),
        **{"normalizer.glob_mean": glob_mean, "normalizer.glob_std": glob_std, "normalizer.count": np.array(7)},
        wavs=wavs.numpy(), wav_lengths=np.array(N_SAMPLES), feats=feats.numpy().astype(np.float32),
        feat_lengths=feat_lengths, wav_lens=wav_lens.numpy(),
        enc_mask_lengths=mask_lengths, ctc_logprobs=ctc.numpy().astype(np.float32),
    )
    if attn is not None:
        out.update(tokens_bos=tokens.numpy(), attn_logprobs=attn.numpy().astype(np.float32))
    out.update(provenance=np.array(provenance()))
    path = out_dir / f"{name}.npz"
    np.savez_compressed(path, **out)
    print(f"{path}: {len(keys)} keys, feats {tuple(feats.shape)}, ctc {tuple(ctc.shape)}"
          + (f", attn {tuple(attn.shape)}" if attn is not None else "") + f", {path.stat().st_size} bytes")


_SOURCES: dict[str, str] = {}


def provenance() -> str:
    import speechbrain
    return (f"torch {torch.__version__}, speechbrain {speechbrain.__version__}, numpy {np.__version__}, "
            + ", ".join(f"{k} {v}" for k, v in _SOURCES.items()))


def _git_head(path: pathlib.Path) -> str:
    try:
        return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown commit"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mamba-asr", type=pathlib.Path, required=True, help="xi-j/Mamba-ASR checkout")
    ap.add_argument("--mamba-ssm", type=pathlib.Path, required=True,
                    help="directory containing the mamba_ssm package (v1.1.3.post1)")
    ap.add_argument("--mamba-asr-commit", default=None, help="recorded in the files (default: git HEAD)")
    ap.add_argument("--mamba-ssm-version", default=None, help="recorded in the files (default: __version__)")
    ap.add_argument("--out", type=pathlib.Path, default=ROOT / "tests/golden")
    ap.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    args = ap.parse_args()
    torch.set_num_threads(2)
    install_stubs()
    sys.path[:0] = [str(args.mamba_asr), str(args.mamba_ssm)]
    import mamba_ssm
    _SOURCES["Mamba-ASR"] = args.mamba_asr_commit or _git_head(args.mamba_asr)
    _SOURCES["mamba_ssm"] = args.mamba_ssm_version or mamba_ssm.__version__
    recipe = load_recipe()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.configs:
        make_one(name, args.out, recipe)


if __name__ == "__main__":
    main()
