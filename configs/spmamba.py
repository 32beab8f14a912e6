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

from configs._families import spmamba


def get_config(arg=None):
    return spmamba(arg)
