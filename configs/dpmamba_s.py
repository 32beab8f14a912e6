"""Dual-path Mamba S on WSJ0-2mix (arXiv 2403.18257; [MT] hparams/WSJ0Mix/dpmamba_S.yaml).

Same training recipe as Mamba-TasNet (configs/mambatasnet_s.py, docs/mamba_tasnet.md: dynamic mixing + speed
perturbation, Adam 1.5e-4, 20k warm-up + cosine, clip 5, PIT SI-SNR with the -40 dB threshold, fp32);
only the model block differs: N=256, 8 dual-path blocks, chunk 250, no skip around intra.

Train: ``python train.py --config configs/dpmamba_s.py`` (``configs/dpmamba_s.py:smoke``: two CPU steps).
Params: 8,136,193 (``python -m mamba_jax.summary configs/dpmamba_s.py``). Paper: SI-SNRi 21.4 / SDRi 21.6 dB.
Smoke: ``configs/dpmamba_s.py:smoke`` (N=16, 1 dual-path block, chunk 20).
"""

from configs._families import dpmamba


def get_config(arg=None):
    return dpmamba("s", arg)
