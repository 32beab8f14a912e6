"""Mamba-TasNet S on WSJ0-2mix (arXiv 2407.09732; [MT] hparams/WSJ0Mix/mambatasnet_S.yaml). Base of the family.

Recipe (docs/mamba_tasnet.md): dynamic mixing from raw WSJ0 si_tr_s (SpeechBrain recipe) with speed perturbation,
full utterances (no cropping), 20,000 mixtures per epoch at batch 1, 200 epochs; Adam lr 1.5e-4, no weight
decay, gradient clip 5, 20k-step linear warm-up then cosine to 0.01 lr; PIT zero-mean SI-SNR loss with
examples below -40 dB dropped; fp32 (every released checkpoint trained in fp32).

Init: the constructor init (``reinit="none"``). [MT] re-initialised every module with ``reset_parameters``
before training; set ``--config.model.reinit=mt_reset`` to reproduce that (docs/mamba_tasnet.md).

Train: ``python train.py --config configs/mambatasnet_s.py`` (``configs/mambatasnet_s.py:smoke``: two CPU steps).
Params: 7,926,528 (``python -m mamba_jax.summary configs/mambatasnet_s.py`` prints this total).
Paper: SI-SNRi 21.4 dB / SDRi 21.6 dB on the WSJ0-2mix test set.
Smoke: ``python -m mamba_jax.summary configs/mambatasnet_s.py:smoke`` builds a ~30k-parameter model; the
``smoke`` variant runs two training steps on 0.5 s crops on CPU.
"""

from mamba_jax.training.defaults import base_config

SIZES = {  # n_filters, n_layer, lr
    "xs": (128, 16, 1.5e-4),
    "s": (256, 16, 1.5e-4),
    "m": (256, 32, 1.5e-4),
    "l": (512, 32, 1.0e-4),
}


def get_config(arg=None, size="s"):
    """``arg``: None or ``"smoke"``; ``size`` is set by the derived configs (xs, m, l)."""
    n_filters, n_layer, lr = SIZES[size]
    c = base_config("separation")
    c.model.name = "mamba_tasnet"
    c.model.n_filters = n_filters
    c.model.n_layer = n_layer
    c.model.num_spks = 2
    c.model.kernel_size = 16
    c.model.reinit = "none"  # 'mt_reset': the original's reset_parameters at training start

    c.loss.name = "si_snr"
    c.loss.threshold_db = -40.0

    c.optim.name = "adam"
    c.optim.lr = lr
    c.optim.weight_decay = 0.0
    c.optim.clip_norm = 5.0
    c.optim.schedule = "warmup_cosine"
    c.optim.warmup_steps = 20_000
    c.optim.min_lr_ratio = 0.01

    c.train.batch_size = 1
    c.train.num_steps = 200 * 20_000  # 200 epochs of 20k mixtures
    c.train.eval_every_steps = 20_000
    c.train.checkpoint_every_steps = 20_000
    c.train.precision = "fp32"

    c.data.corpus = "wsj0-dm"
    c.data.mode = "min"
    c.data.dynamic_mixing = True
    c.data.dm_recipe = "speechbrain"
    c.data.speed_perturb = True
    c.data.segment_seconds = None  # full utterances (training_signal_len 32e6 never cuts)
    c.data.items_per_epoch = 20_000

    if arg == "smoke":
        c.model.scan_impl = "sequential"  # compiles ~2x faster than the associative scan on CPU
        c.model.n_filters = 16
        c.model.n_layer = 2
        c.train.num_steps = 2
        c.train.eval_every_steps = 2
        c.train.checkpoint_every_steps = 2
        c.train.log_every_steps = 1
        c.train.eval_batches = 1
        c.optim.warmup_steps = 1
        c.data.segment_seconds = 0.5
        c.data.items_per_epoch = 4
    elif arg not in (None, ""):
        raise ValueError(f"unknown config arg {arg!r} (expected None or 'smoke')")
    c.lock()
    return c
