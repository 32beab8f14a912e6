"""Golden parity files for the separation models, made by running the ORIGINAL PyTorch code on CPU.

Run with the PyTorch environment (not ours), giving extracted trees of the original repositories (see
tests/golden/README.md for the exact commits and commands)::

    /work/torchenv/bin/python tools/golden/make_separation_golden.py --mamba-ssm MAMBA_TREE \
        --mamba-tasnet MT_TREE --sepmamba SM_TREE --spmamba SP_TREE --out tests/golden [--only NAME ...]

For each model it instantiates the original module with the sizes of our config, fills its state_dict
with ``mamba_jax/convert/golden.py``'s recipe, runs the forward pass on a fixed input and writes
``<out>/<name>.npz`` = key names, shapes, seed, per-tensor checksums, input and output.

Only the CUDA/Triton pieces are replaced, by pure-PyTorch stand-ins (``install_stubs``):

* ``selective_scan_cuda.fwd`` -> mamba_ssm's own ``selective_scan_ref`` (same math, fp32 on CPU);
* ``causal_conv1d_cuda.causal_conv1d_fwd`` / ``causal_conv1d.causal_conv1d_fn`` -> depthwise
  ``F.conv1d`` with k-1 left padding, optional SiLU;
* ``mamba_ssm.ops.triton.layernorm.RMSNorm`` -> ``x * rsqrt(mean(x^2) + eps) * weight`` (Triton is GPU-only);
* ``mamba_ssm.utils.{generation,hf}`` (LM generation, hub loading; they need transformers): empty names.

So the original modules run their CUDA fast path (``use_fast_path=True``): for the vendored BiMamba v2
that is the path that uses both directions (docs/mamba.md: the slow path ignores every ``*_b``
parameter), and the Python around the kernels (layouts, splits, flips, the 0.5 averaging) is the original.
"""

from __future__ import annotations

import argparse
import importlib.util
import pathlib
import sys
import types

import numpy as np
import torch
import torch.nn.functional as F

REPO = pathlib.Path(__file__).resolve().parents[2]
SEED = 20260822
SR = 8000


def _load_file_module(name: str, path: pathlib.Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


golden = _load_file_module("mamba_jax_golden", REPO / "mamba_jax" / "convert" / "golden.py")


# ---- stand-ins for the CUDA / Triton extensions ------------------------------------------------------------


def _conv_fwd(x, weight, bias, *rest):
    """causal_conv1d_fwd(x [B,E,L], weight [E,K], bias, [seq_idx,] silu: bool) of causal-conv1d 1.x."""
    activation = rest[-1] if rest else False
    k = weight.shape[-1]
    y = F.conv1d(F.pad(x, (k - 1, 0)), weight.unsqueeze(1), bias, groups=x.shape[1])
    return F.silu(y) if activation in (True, "silu", "swish") else y


def _conv_fn(x, weight, bias=None, seq_idx=None, initial_states=None, return_final_states=False,
             final_states_out=None, activation=None):
    return _conv_fwd(x, weight, bias, activation)


SCAN_CALLS = [0]  # calls of the selective_scan_cuda stand-in: proves the fast path ran (see make)


def _scan_fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    """selective_scan_cuda.fwd: returns (out, intermediates, out_z) where out_z = out * silu(z)."""
    from mamba_ssm.ops.selective_scan_interface import selective_scan_ref

    SCAN_CALLS[0] += 1

    out = selective_scan_ref(u, delta, A, B, C, D, None, delta_bias, delta_softplus)
    if z is None:
        return out, None
    return out, None, out * F.silu(z)


class _RMSNorm(torch.nn.Module):
    """mamba_ssm.ops.triton.layernorm.RMSNorm (weight only): x * rsqrt(mean(x^2) + eps) * weight."""

    def __init__(self, hidden_size, eps=1e-5, device=None, dtype=None):
        super().__init__()
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.ones(hidden_size, device=device, dtype=dtype))
        self.register_parameter("bias", None)

    def forward(self, x, residual=None, prenorm=False, residual_in_fp32=False):
        assert residual is None and not prenorm, "fused add+norm is not used by these models"
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def install_stubs(mamba_ssm_tree: pathlib.Path) -> None:
    """Registers the stand-ins in sys.modules and puts the real mamba_ssm Python sources on sys.path."""
    conv = types.ModuleType("causal_conv1d")
    conv.causal_conv1d_fn, conv.causal_conv1d_update = _conv_fn, None
    conv_cuda = types.ModuleType("causal_conv1d_cuda")
    conv_cuda.causal_conv1d_fwd = _conv_fwd
    scan_cuda = types.ModuleType("selective_scan_cuda")
    scan_cuda.fwd = _scan_fwd
    ln = types.ModuleType("mamba_ssm.ops.triton.layernorm")
    ln.RMSNorm, ln.layer_norm_fn, ln.rms_norm_fn = _RMSNorm, None, None
    # mamba_ssm.utils.{generation,hf}: LM text generation and hub loading, unused here, need transformers.
    gen, hf = types.ModuleType("mamba_ssm.utils.generation"), types.ModuleType("mamba_ssm.utils.hf")
    gen.GenerationMixin = type("GenerationMixin", (), {})
    hf.load_config_hf = hf.load_state_dict_hf = None
    for m in (conv, conv_cuda, scan_cuda, ln, gen, hf):
        sys.modules[m.__name__] = m
    sys.path.insert(0, str(mamba_ssm_tree))


# ---- the models ------------------------------------------------------------------------------------------


def fill(module: torch.nn.Module, prefix: str, seed: int) -> dict[str, np.ndarray]:
    """Loads the golden recipe into ``module`` (strict) and returns the numpy state_dict, with its keys
    written ``<prefix>.<key>`` as in a SpeechBrain CKPT folder (``prefix`` = file stem; empty: none)."""
    sd = module.state_dict()
    full = {(f"{prefix}.{k}" if prefix else k): k for k in sd}
    values = golden.make_state_dict(list(full), [tuple(v.shape) for v in sd.values()], seed)
    module.load_state_dict({full[k]: torch.from_numpy(v) for k, v in values.items()}, strict=True)
    return values


def mix_input(batch: int, samples: int, seed: int) -> np.ndarray:
    """A deterministic speech-like test mixture [B, T]: sums of random tones with noise, peak ~0.5."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / SR
    x = np.zeros((batch, samples))
    for b in range(batch):
        for _ in range(6):
            x[b] += rng.uniform(0.05, 0.2) * np.sin(2 * np.pi * rng.uniform(80, 3500) * t + rng.uniform(0, 6.3))
        x[b] += 0.02 * rng.standard_normal(samples)
    return (0.5 * x / np.abs(x).max(axis=1, keepdims=True)).astype(np.float32)


def mamba_tasnet(trees, size: str):
    """[MT] train_wsj0mix.compute_forward with the hparams/WSJ0Mix/mambatasnet_<size>.yaml modules."""
    sys.path.insert(0, str(trees.mamba_tasnet))
    from modules.mamba_masknet import MaskNet
    from speechbrain.lobes.models.dual_path import Decoder, Encoder

    # "smoke": configs/mambatasnet_xs.py:smoke's size, saved as a real SpeechBrain CKPT folder (see make).
    n, n_mamba = {"XS": (128, 16), "S": (256, 16), "smoke": (16, 2)}[size]
    encoder = Encoder(kernel_size=16, out_channels=n)
    masknet = MaskNet(enc_dim=n, bot_dim=n, n_spk=2, n_mamba=n_mamba, bidirectional=True, d_model=n, d_state=16,
                      expand=2, d_conv=4, fused_add_norm=False, rms_norm=True, residual_in_fp32=False)
    decoder = Decoder(in_channels=n, out_channels=1, kernel_size=16, stride=8, bias=False)
    return {"encoder": encoder, "masknet": masknet, "decoder": decoder}, _sb_separate


def dpmamba(trees, size: str):
    """[MT] hparams/WSJ0Mix/dpmamba_<size>.yaml: SpeechBrain Dual_Path_Model around MambaBlocksSequential."""
    sys.path.insert(0, str(trees.mamba_tasnet))
    from modules.mamba_blocks import MambaBlocksSequential
    from speechbrain.lobes.models.dual_path import Decoder, Dual_Path_Model, Encoder

    # "skip_small": the M/L variant's skip_around_intra=True path at a small, fast size.
    n, n_dp, skip = {"XS": (128, 8, False), "S": (256, 8, False), "skip_small": (64, 2, True)}[size]

    def blocks():
        return MambaBlocksSequential(n_mamba=1, bidirectional=True, d_model=n, d_state=16, expand=2, d_conv=4,
                                     fused_add_norm=False, rms_norm=True, residual_in_fp32=False)

    encoder = Encoder(kernel_size=16, out_channels=n)
    masknet = Dual_Path_Model(num_spks=2, in_channels=n, out_channels=n, num_layers=n_dp, K=250,
                              intra_model=blocks(), inter_model=blocks(), norm="ln",
                              linear_layer_after_inter_intra=False, skip_around_intra=skip)
    decoder = Decoder(in_channels=n, out_channels=1, kernel_size=16, stride=8, bias=False)
    return {"encoder": encoder, "masknet": masknet, "decoder": decoder}, _sb_separate


def _sb_separate(mods, mix: torch.Tensor) -> torch.Tensor:
    """[MT] train_wsj0mix.py compute_forward, returned as [B, S, T]."""
    mix_w = mods["encoder"](mix)
    est_mask = mods["masknet"](mix_w)
    sep_h = torch.stack([mix_w] * 2) * est_mask
    est = torch.cat([mods["decoder"](sep_h[i]).unsqueeze(-1) for i in range(2)], dim=-1)
    t = mix.shape[1]
    est = F.pad(est, (0, 0, 0, t - est.shape[1])) if t > est.shape[1] else est[:, :t, :]
    return est.permute(0, 2, 1)


def sepmamba(trees, causal: bool):
    """[SM] src/conf/model/SepMamba{,Causal}.yaml: dim 64, kernels 16, strides 2, ReLU, 4 (causal: 8) blocks.

    Input [B, 1, T]; output [B, 2, T'] with T' <= T (no masking, no length fix)."""
    sys.path.insert(0, str(trees.sepmamba))
    # Imports of the model files that the forward pass does not use: torchinfo (summary), rich (print).
    sys.modules.setdefault("torchinfo", types.ModuleType("torchinfo"))
    rich = sys.modules.setdefault("rich", types.ModuleType("rich"))
    rich.print = print
    # UpSample.pad builds its zero padding with .cuda(); on CPU that must stay on CPU.
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    if causal:
        from src.models.SepMambaCausal import SepMambaCausal as model_cls
    else:
        from src.models.SepMamba import SepMamba as model_cls
    model = model_cls(dim=64, kernel_sizes=[16, 16, 16], strides=[2, 2, 2], num_blocks=8 if causal else 4,
                      act_fn="relu")
    return {"": model}, lambda mods, mix: mods[""](mix[:, None, :])


def spmamba(trees):
    """[SP] look2hear/models/SPMamba.py with configs/spmamba-wsj0.yml's ``audionet_config``.

    Input [B, T]; output [B, 2, T]. ``look2hear.utils`` is registered as a bare package so that its
    ``__init__`` (Lightning/rich training helpers) is skipped; the model imports only complex_utils and
    get_layer_from_string from it. ``librosa`` is imported by stft_tfgn.py only for a fallback that torch
    >= 1.10 never takes: an empty module stands in."""
    sys.modules.setdefault("librosa", types.ModuleType("librosa"))
    root = trees.spmamba / "look2hear"
    for pkg in ("look2hear", "look2hear.utils"):
        mod = types.ModuleType(pkg)
        mod.__path__ = [str(root if pkg == "look2hear" else root / "utils")]
        sys.modules[pkg] = mod
    from look2hear.models.SPMamba import SPMamba

    model = SPMamba(input_dim=64, n_srcs=2, n_fft=256, stride=64, window="hann", n_imics=1, n_layers=6,
                    lstm_hidden_units=256, attn_n_head=4, attn_approx_qk_dim=512, emb_dim=16, emb_ks=8, emb_hs=1,
                    activation="prelu", eps=1.0e-5, use_builtin_complex=False)
    return {"": model}, lambda mods, mix: mods[""](mix)


MODELS = {
    "mambatasnet_xs": (lambda trees: mamba_tasnet(trees, "XS"), 2, 4001),
    "mambatasnet_smoke_ckpt": (lambda trees: mamba_tasnet(trees, "smoke"), 2, 1601),
    "dpmamba_xs": (lambda trees: dpmamba(trees, "XS"), 2, 4001),
    "dpmamba_skip_small": (lambda trees: dpmamba(trees, "skip_small"), 2, 6001),
    "sepmamba_s": (lambda trees: sepmamba(trees, causal=False), 2, 4001),
    "sepmamba_causal_s": (lambda trees: sepmamba(trees, causal=True), 1, 4001),
    "spmamba": (spmamba, 2, 4001),
}


def make(name: str, trees, out_dir: pathlib.Path) -> None:
    torch.manual_seed(0)
    build, batch, samples = MODELS[name]
    mods, forward = build(trees)
    values = {}
    for prefix, mod in mods.items():
        mod.eval()
        values.update(fill(mod, prefix, SEED))
    keys, shapes = list(values), [v.shape for v in values.values()]
    mix = mix_input(batch, samples, SEED)
    # Every mixer runs once per forward pass (DPMamba's on the reshaped chunk batch); a BiMamba v2 on its
    # fast path calls the scan kernel twice. Fewer calls would mean some mixer took the slow path.
    mixers = [m for mod in mods.values() for m in mod.modules() if type(m).__name__ == "Mamba"]
    expected_calls = sum(2 if getattr(m, "bimamba_type", "none") == "v2" else 1 for m in mixers)
    SCAN_CALLS[0] = 0
    with torch.no_grad():
        out = forward(mods, torch.from_numpy(mix)).numpy()
    assert SCAN_CALLS[0] == expected_calls, (name, SCAN_CALLS[0], expected_calls)
    assert np.all(np.isfinite(out)), name
    if name.endswith("_ckpt"):
        # Also the weights themselves, as SpeechBrain's Checkpointer writes them (torch_save = torch.save of
        # each module's state_dict): a CKPT folder for the end-to-end test of convert_checkpoint.
        from speechbrain.utils.checkpoints import torch_save

        folder = out_dir / f"{name}_CKPT"
        folder.mkdir(exist_ok=True)
        for prefix, mod in mods.items():
            torch_save(mod, folder / f"{prefix}.ckpt")
    np.savez_compressed(
        out_dir / f"{name}.npz", keys=np.array(keys), shapes=np.array([",".join(map(str, s)) for s in shapes]),
        seed=np.int64(SEED), checksums=golden.checksums(values),
        input=mix, output=out.astype(np.float32),
        versions=np.array(f"torch {torch.__version__}, numpy {np.__version__}"))
    print(f"{name}: {len(keys)} keys, {sum(int(np.prod(s)) for s in shapes):,} params, out {out.shape} "
          f"max|out| {np.abs(out).max():.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mamba-ssm", type=pathlib.Path, required=True, help="state-spaces/mamba tree")
    ap.add_argument("--mamba-tasnet", type=pathlib.Path, help="xi-j/Mamba-TasNet tree")
    ap.add_argument("--sepmamba", type=pathlib.Path, help="itsmeeandrew/SepMamba tree")
    ap.add_argument("--spmamba", type=pathlib.Path, help="JusperLee/SPMamba tree")
    ap.add_argument("--out", type=pathlib.Path, default=REPO / "tests" / "golden")
    ap.add_argument("--only", nargs="*", default=list(MODELS), choices=list(MODELS))
    trees = ap.parse_args()
    install_stubs(trees.mamba_ssm)
    torch.set_num_threads(2)
    trees.out.mkdir(parents=True, exist_ok=True)
    for name in trees.only:
        make(name, trees, trees.out)


if __name__ == "__main__":
    main()
