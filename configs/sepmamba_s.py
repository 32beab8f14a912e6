"""SepMamba S on WSJ0-2mix (arXiv 2410.20997; [SM] src/conf).

Recipe (docs/sepmamba.md): dynamic mixing from raw WSJ0 si_tr_s (SepMamba recipe: random 4 s crops, gains
U(-2.5, 2.5) dB, speed perturbation), 20,000 mixtures per epoch at batch 1, 500 epochs; AdamW lr 1.5e-4,
weight decay 0.01 (torch default), constant lr (StepLR gamma 1), gradient clip 5; PIT negative SI-SDR
without mean removal, no threshold; fp32.

Train: ``python train.py --config configs/sepmamba_s.py`` (``configs/sepmamba_s.py:smoke``: two CPU steps).
Params: 7,253,826 (``python -m mamba_jax.summary configs/sepmamba_s.py``). Paper: SI-SNRi 21.2 dB,
SI-SDRi 21.2 dB, SDRi 21.4 dB. Smoke: ``configs/sepmamba_s.py:smoke`` (dim 8, one block per stack).
"""

from configs._families import sepmamba


def get_config(arg=None):
    c = sepmamba("s", arg, extra_args=("quickstart",))
    if arg == "quickstart":
        # The README's first command: a small SepMamba (SepMamba-S's width, dim 64, but one block per stack and
        # strided convolutions of stride 8 instead of 2) trained with dynamic mixing from the embedded synthetic
        # WSJ0 pool on 4 x 0.5 s crops per step, 1,700 CPU steps (~8 min on 2 cores); validation on 20 held-out
        # (unseen-speaker) mixtures at steps 850 and 1,700. lr 4e-3 with a 50-step warm-up and a cosine decay. The
        # README has the measured result; BENCHMARKS.md, "Quickstart recipe search", the recipes it beat at equal
        # time (among them dim 16 at stride 2, the quickstart before). The full-size model steps too slowly for
        # a quickstart.
        c.model.dim = 64
        c.model.stride = 8
        c.model.num_blocks = 1
        c.train.batch_size = 4
        c.train.num_steps = 1_700
        c.train.eval_every_steps = 850
        c.train.checkpoint_every_steps = 340
        c.train.log_every_steps = 10
        c.train.eval_batches = 20
        c.data.segment_seconds = 0.5
        c.data.items_per_epoch = 2_000
        c.optim.lr = 4e-3
        c.optim.schedule = "warmup_cosine"
        c.optim.warmup_steps = 50
    c.lock()
    return c
