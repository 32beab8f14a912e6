"""Dual-path Mamba S on WSJ0-2mix (arXiv 2403.18257; [MT] hparams/WSJ0Mix/dpmamba_S.yaml). Base of the family.

Same training recipe as Mamba-TasNet (configs/mambatasnet_s.py, docs/mamba_tasnet.md: dynamic mixing + speed
perturbation, Adam 1.5e-4, 20k warm-up + cosine, clip 5, PIT SI-SNR with the -40 dB threshold, fp32);
only the model block differs: N=256, 8 dual-path blocks, chunk 250, no skip around intra.

Train: ``python train.py --config configs/dpmamba_s.py`` (``configs/dpmamba_s.py:smoke``: two CPU steps).
Params: 8,136,193 (``python -m mamba_jax.summary configs/dpmamba_s.py``). Paper: SI-SNRi 21.4 / SDRi 21.6 dB.
Smoke: ``configs/dpmamba_s.py:smoke`` (N=16, 1 dual-path block, chunk 20).
"""

import importlib.util
import pathlib

import ml_collections

SIZES = {  # n_filters, n_dp, skip_around_intra
    "xs": (128, 8, False),
    "s": (256, 8, False),
    "m": (256, 16, True),
    "l": (512, 16, True),
}


def _recipe(arg):
    path = pathlib.Path(__file__).with_name("mambatasnet_s.py")
    spec = importlib.util.spec_from_file_location("_mambatasnet_s", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config(arg)


def get_config(arg=None, size="s"):
    """``arg``: None or ``"smoke"``; ``size`` is set by the derived configs (xs, m, l)."""
    n_filters, n_dp, skip = SIZES[size]
    c = _recipe(arg)
    model = dict(name="dpmamba", scan_impl=c.model.scan_impl, n_filters=n_filters, n_dp=n_dp, n_mamba_dp=2,
                 chunk_size=250, skip_around_intra=skip, num_spks=2, kernel_size=16, reinit="none")
    if arg == "smoke":
        model.update(n_filters=16, n_dp=1, chunk_size=20)
    with c.unlocked():
        c.model = ml_collections.ConfigDict(model)
        c.model.dtype = c.train.get_ref("precision")
    c.lock()
    return c
