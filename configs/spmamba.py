"""SPMamba on WSJ0-2mix (arXiv 2404.02063; [SP] configs/spmamba-wsj0.yml). ``:nfft512`` is the Echo2Mix model size.

Recipe (docs/spmamba.md): static WSJ0-2mix (min), random 4 s segments, utterances shorter than 4 s dropped, no
dynamic mixing or speed perturbation; Adam lr 1e-3, no weight decay, ReduceLROnPlateau (patience 10,
factor 0.5) on the validation loss, gradient clip 5, up to 500 epochs with early stop after 20 without
improvement; PIT negative SNR (zero-mean, not scale-invariant) for training; bf16 mixed precision. The
original lists 10 GPUs with batch 1 each (DDP); this config is batch 1 on one device.

Train: ``python train.py --config configs/spmamba.py`` (``configs/spmamba.py:smoke``: two CPU steps).
Params: 6,094,498 (``python -m mamba_jax.summary configs/spmamba.py``); ``configs/spmamba.py:nfft512``:
6,141,826 (the paper's 6.14M). Paper: WSJ0-2mix SDRi 22.7 dB / SI-SNRi 22.5 dB.
Smoke: ``configs/spmamba.py:smoke`` (n_fft 64, hop 16, 1 block, emb_dim 4, 2 heads).
"""

from mamba_jax.training.defaults import base_config


def get_config(arg=None):
    """``arg``: None, ``"nfft512"``, ``"smoke"`` (or ``"nfft512,smoke"``)."""
    args = set(filter(None, (arg or "").split(",")))
    unknown = args - {"nfft512", "smoke"}
    if unknown:
        raise ValueError(f"unknown config args {sorted(unknown)} (expected 'nfft512' and/or 'smoke')")
    c = base_config("separation")
    c.model.name = "spmamba"
    c.model.num_spks = 2
    c.model.n_fft = 512 if "nfft512" in args else 256
    c.model.hop = 128 if "nfft512" in args else 64
    c.model.n_layers = 6
    c.model.attn_n_head = 4
    c.model.attn_approx_qk_dim = 512
    c.model.emb_dim = 16
    c.model.emb_ks = 8
    c.model.emb_hs = 1
    c.model.mamba_expand = 4

    c.loss.name = "snr"
    c.loss.threshold_db = None

    c.optim.name = "adam"
    c.optim.lr = 1e-3
    c.optim.weight_decay = 0.0
    c.optim.clip_norm = 5.0
    c.optim.schedule = "plateau"
    c.optim.plateau_patience = 10
    c.optim.plateau_factor = 0.5

    c.train.batch_size = 1
    c.train.num_steps = 500 * 20_000  # upper bound: 500 epochs of the ~20k tr utterances (early stop at 20)
    c.train.eval_every_steps = 20_000
    c.train.checkpoint_every_steps = 20_000
    c.train.precision = "bf16"

    c.data.corpus = "wsj0-2mix"
    c.data.mode = "min"
    c.data.dynamic_mixing = False
    c.data.speed_perturb = False
    c.data.segment_seconds = 4.0
    c.data.drop_shorter = True

    if "smoke" in args:
        c.model.scan_impl = "sequential"  # compiles ~2x faster than the associative scan on CPU
        c.model.update(dict(n_fft=64, hop=16, n_layers=1, attn_n_head=2, attn_approx_qk_dim=32, emb_dim=4,
                            emb_ks=4))
        c.train.num_steps = 2
        c.train.eval_every_steps = 2
        c.train.checkpoint_every_steps = 2
        c.train.log_every_steps = 1
        c.train.eval_batches = 1
        c.train.precision = "fp32"
        c.data.segment_seconds = 0.5
        c.data.drop_shorter = False
    c.lock()
    return c
