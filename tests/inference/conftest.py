"""Session-wide smoke checkpoints shared by the CLI, transcriber and evaluation tests (built once per worker)."""

from __future__ import annotations

import pytest
from inference_helpers import save_smoke_checkpoint


@pytest.fixture(scope="session")
def sep_checkpoint(tmp_path_factory):
    """``(workdir, config, model)``: a fresh SepMamba smoke model (8 kHz, 2 sources)."""
    from configs.sepmamba_s import get_config

    d = tmp_path_factory.mktemp("sep_ckpt")
    config = get_config("smoke")
    return d, config, save_smoke_checkpoint(d, config, seed=0)


@pytest.fixture(scope="session")
def asr_checkpoint(tmp_path_factory):
    """``(workdir, config, model)``: a fresh ConMamba-S smoke model (Transformer decoder, 40 unigram pieces)."""
    from configs.conmamba_small import get_config

    d = tmp_path_factory.mktemp("asr_ckpt")
    config = get_config("smoke")
    return d, config, save_smoke_checkpoint(d, config, seed=1, tokenizer_kind="unigram")
