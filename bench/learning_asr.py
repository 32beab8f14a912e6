"""The ASR runs of ``bench/learning.py`` (issue 20): narrow ConMambas on the embedded synthetic LibriSpeech.

    taskset -c 1 .venv/bin/python bench/learning.py conmamba_ctc --workdir runs/learning/conmamba_ctc
    taskset -c 1 .venv/bin/python bench/learning.py conmamba_transformer --workdir runs/learning/conmamba_transformer
    taskset -c 1 .venv/bin/python bench/learning.py conmamba_mamba --workdir runs/learning/conmamba_mamba

Each run is a ConMamba config file (``configs/conmamba_ctc_large.py``, ``configs/conmamba_small.py``,
``configs/conmambamamba_small.py``) with the explicit overrides below: a narrow model (the width, depth, heads and
feed-forward size of the overrides), the character tokenizer (31 pieces: blank/bos/eos, space, A-Z, apostrophe;
the synthetic LibriSpeech training transcripts hold all of them, ``mamba_jax/data/synthetic.py``), fp32, no
gradient accumulation, a short Noam warm-up and CPU-sized duration batches. Validation during training decodes
the ``valid`` split (unseen synthetic speakers) with CTC greedy search, the cheap one; the final test loads the
trained checkpoint back with ``Transcriber.from_checkpoint`` and runs ``evaluate_asr`` (what
``mamba-jax evaluate`` runs) on the whole ``test`` split (unseen speakers, disjoint from the valid ones) with
each search:

* CTC runs: CTC greedy and CTC prefix beam search (``decoding.beam_size``);
* attention runs: CTC greedy, attention only (the joint beam search with CTC weight 0) and joint attention/CTC
  beam search (``decoding.ctc_weight``).

Results and conditions: BENCHMARKS.md, "Learning curves: ASR".
"""

from __future__ import annotations

import pathlib

__all__ = ["ASR_SMOKE", "asr_runs", "asr_test"]


def _searches(config) -> list[tuple[str, str, dict]]:
    """``(label, Transcriber method, decoding overrides)`` of the final test: see the module docstring."""
    if config.model.decoder == "none":
        return [("ctc_greedy", "ctc_greedy", {}), ("ctc_beam", "ctc_beam", {})]
    return [("ctc_greedy", "ctc_greedy", {}), ("attention", "joint", {"ctc_weight": 0.0}),
            ("joint", "joint", {})]


def asr_test(workdir: pathlib.Path, config, smoke: bool) -> dict:
    """WER/CER on the whole ``test`` split (unseen speakers) per search (``_searches``), from the checkpoint loaded
    back by ``Transcriber.from_checkpoint`` and scored by ``evaluate_asr``; beams are ``decoding.beam_size``.
    Per search, ``<workdir>/test/<search>/`` holds ``utterances.csv`` (reference and hypothesis per utterance)
    and ``summary.json``."""
    from mamba_jax.inference import Transcriber
    from mamba_jax.inference.evaluate import evaluate_asr

    asr = Transcriber.from_checkpoint(workdir, scan_impl=config.model.scan_impl)  # the latest checkpoint
    step = max(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    base = asr.config
    beam = int(base.decoding.beam_size)
    out: dict = {}
    for label, method, decoding in _searches(base):
        cfg = base.copy_and_resolve_references()
        cfg.unlock()
        cfg.decoding.update(decoding)
        asr.config = cfg  # the search reads config.decoding (beam_search_config_from)
        summary, _ = evaluate_asr(asr, cfg, split="test", method=method,
                                  beam_size=None if method == "ctc_greedy" else beam,
                                  out_dir=workdir / "test" / label, max_utterances=2 if smoke else None,
                                  progress=False, checkpoint=str(workdir), step=step)
        summary["ctc_weight"] = float(cfg.decoding.ctc_weight) if method == "joint" else None
        out[label] = summary
    asr.config = base
    first = out[next(iter(out))]
    # ``cer``/``wer``: CTC greedy, the search of the validation curve (bench/learning.py draws them on it)
    return dict(split="test", utterances=first["utterances"], step=first["step"], cer=out["ctc_greedy"]["cer"],
                wer=out["ctc_greedy"]["wer"],
                **{f"{label}_cer": s["cer"] for label, s in out.items()},
                **{f"{label}_wer": s["wer"] for label, s in out.items()}, searches=out)


# Shared by every ASR run: fp32 on the CPU, no gradient accumulation, the sequential scan (the CPU's fastest),
# CTC greedy validation on the valid split (unseen speakers), and few padded shapes to compile.
_COMMON = {
    "train.precision": "fp32", "model.scan_impl": "sequential", "optim.grad_accum": 1,
    "decoding.method": "ctc_greedy", "recipe.num_buckets": 3, "recipe.max_batch_examples": 64,
    "tokenizer.kind": "char", "tokenizer.vocab_size": 31, "model.vocab_size": 31,
}

# A few steps of a tiny model (tests/test_learning.py): 2 training steps, one validation batch, 2 test
# utterances per search with a beam of 2.
ASR_SMOKE = {
    "model.d_model": 16, "model.num_encoder_layers": 1, "model.num_heads": 2, "model.d_ffn": 32,
    "model.conv_kernel_size": 3, "model.cnn_channels": (4, 4), "model.max_len": 256,
    "train.num_steps": 2, "train.eval_every_steps": 2, "train.checkpoint_every_steps": 2,
    "train.log_every_steps": 1, "train.eval_batches": 1, "optim.warmup_steps": 1,
    "recipe.max_batch_seconds": 6.0, "recipe.max_batch_examples": 2, "recipe.num_buckets": 1,
    "decoding.beam_size": 2,
}


def asr_runs(Run) -> list:  # noqa: N803 (the Run class of bench/learning.py)
    """The three ASR runs as ``bench/learning.py`` ``Run``s."""
    curve = ("val_cer", "val_wer")
    ctc = dict(_COMMON, **{
        "model.d_model": 96, "model.num_encoder_layers": 4, "model.num_heads": 4, "model.d_ffn": 384,
        "model.conv_kernel_size": 15,
        "optim.lr": 2e-3, "optim.warmup_steps": 150,
        "recipe.max_batch_seconds": 24.0,
        "train.num_steps": 1800, "train.eval_every_steps": 100, "train.checkpoint_every_steps": 100,
        "train.log_every_steps": 10,
    })
    attention = dict(ctc, **{
        "train.num_steps": 401,  # measured: stopped at step 401 for lack of time (BENCHMARKS.md)
        "model.num_decoder_layers": 2,
        "decoding.beam_size": 10,
    })
    smoke_att = dict(ASR_SMOKE, **{"model.num_decoder_layers": 1})
    return [
        Run(name="conmamba_ctc", config="configs/conmamba_ctc_large.py", overrides=ctc, test=asr_test,
            curve=curve, smoke=ASR_SMOKE,
            about="narrow ConMamba-CTC, character tokenizer (target CER <= 20% on unseen speakers)"),
        Run(name="conmamba_transformer", config="configs/conmamba_small.py", overrides=attention, test=asr_test,
            curve=curve, smoke=smoke_att,
            about="narrow ConMamba + Transformer decoder, joint CTC/attention loss, character tokenizer"),
        Run(name="conmamba_mamba", config="configs/conmambamamba_small.py", overrides=attention, test=asr_test,
            curve=curve, smoke=smoke_att,
            about="narrow ConMamba + Mamba decoder, joint CTC/attention loss, character tokenizer"),
    ]
