"""Duration batching for ASR training: a few fixed padded shapes per epoch, every utterance at most once."""

from __future__ import annotations

import numpy as np

from mamba_jax.data.buckets import DurationBatching, plan_buckets


def test_plan_buckets_bounds():
    rng = np.random.default_rng(0)
    lengths = rng.integers(16000, 16000 * 20, size=500)  # 1-20 s
    texts = ["A" * int(n // 1600) for n in lengths]
    spec = DurationBatching(max_batch_seconds=60.0, max_batch_examples=16, num_buckets=6, batch_multiple=2)
    plan = plan_buckets(lengths, texts, spec, 16000, max_speed=105)
    assert len(plan.edges) <= 6 and np.all(np.diff(plan.edges) > 0)
    for i, n in enumerate(lengths):  # each utterance fits its bucket, sped up to 105 %
        k = plan.bucket[i]
        assert n <= plan.edges[k] and np.ceil(n * 1.05) <= plan.pad[k] and len(texts[i]) + 1 <= plan.text_chars[k]
        assert k == 0 or n > plan.edges[k - 1]  # the first bucket that holds it
    assert np.all(plan.batch % 2 == 0) and np.all(plan.batch <= 16)
    assert np.all((plan.batch * plan.pad <= 60 * 16000) | (plan.batch == 2))
    counts = np.bincount(plan.bucket)
    assert plan.batches_per_epoch == int(np.sum(counts // plan.batch))


def test_an_epoch_of_synthetic_librispeech_compiles_a_bucket_count_of_shapes(tiny_corpus, tmp_path):
    """Issue 16: the shapes the train step sees over an epoch (waveforms and tokens) are printed and number
    at most ``recipe.num_buckets``; each training utterance comes at most once, all but each bucket's last
    incomplete batch, zero-padded past its length."""
    from configs.conmamba_ctc_large import get_config

    from mamba_jax.data.libri import LibriSpeechSource
    from mamba_jax.data.pipeline import asr_bucket_plan, asr_dataset, steps_per_epoch
    from mamba_jax.training.asr_task import AsrTask

    config = get_config("smoke")
    config.data.root = str(tiny_corpus)
    config.recipe.update(max_batch_seconds=6.5, max_batch_examples=4, num_buckets=3)
    task = AsrTask(config, tmp_path)
    assert task.duration is not None and task.duration.max_batch_seconds == 6.5  # read from the recipe
    n_epoch = steps_per_epoch(config.data, "train", batch_size=2, duration=task.duration)
    plan = asr_bucket_plan(config.data, task.duration)
    assert n_epoch == plan.batches_per_epoch

    ids = []
    it = iter(asr_dataset(config.data, "train", batch_size=2, seed=3, duration=task.duration))
    for _ in range(n_epoch):
        batch = next(it)
        n = batch["wave_lengths"]
        assert np.all(batch["wave"][np.arange(batch["wave"].shape[1])[None] >= n[:, None]] == 0)
        ids.extend(str(i) for i in batch["ids"])
    counts = np.bincount(plan.bucket, minlength=len(plan.edges))
    source = LibriSpeechSource(tiny_corpus, ["train-clean-100"])
    assert len(ids) == len(set(ids)) == int(np.sum(counts // plan.batch * plan.batch)) > len(source) // 2

    shapes = set()
    it = iter(task.dataset("train", batch_size=2, seed=3))
    for _ in range(n_epoch):
        batch = next(it)
        shapes.add((batch["wave"].shape, batch["tokens"].shape))
    print(f"duration batching over one epoch: {n_epoch} batches, {len(shapes)} compiled train-step shapes "
          f"(waveforms, tokens) for {config.recipe.num_buckets} buckets: {sorted(shapes)}")
    assert 1 <= len(shapes) <= config.recipe.num_buckets
