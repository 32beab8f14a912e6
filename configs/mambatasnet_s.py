"""Mamba-TasNet S on WSJ0-2mix (arXiv 2407.09732; [MT] hparams/WSJ0Mix/mambatasnet_S.yaml).

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

from configs._families import mamba_tasnet


def get_config(arg=None):
    return mamba_tasnet("s", arg)
