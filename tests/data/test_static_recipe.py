"""The README's static WSJ0-2mix recipe: ``--config.data.dynamic_mixing=False`` on a ``corpus="wsj0-dm"`` config
trains on the tree's static ``tr`` mixtures (issue 17, item 2), with everything else as the config ships it
(issue 34): speed perturbation stays on, so each source is the stored one resampled at its own speed."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from mamba_jax.data import mixing
from mamba_jax.data.pipeline import separation_dataset, steps_per_epoch


@pytest.mark.parametrize("config_name", ["mambatasnet_s", "sepmamba_s"])
def test_dynamic_mixing_false_reads_the_static_tr_mixtures(config_name, wsj0mix_tree, monkeypatch):
    root, names, truth = wsj0mix_tree  # wav8k/min/{tr,tt}: no raw WSJ0 pool anywhere
    monkeypatch.chdir(root)  # the README passes data.root; a relative one must work too
    config = importlib.import_module(f"configs.{config_name}").get_config()
    assert config.data.corpus == "wsj0-dm" and config.data.dynamic_mixing  # the recipe as shipped
    assert config.data.speed_perturb  # left on, as the README's command leaves it
    config.data.root = "2speakers"
    config.data.dynamic_mixing = False  # the README's only other override
    # segment_seconds (None, or 4 s for sepmamba_s) is longer than the 0.1 s fixture items: no crop happens
    assert steps_per_epoch(config.data, "train", batch_size=1) == len(names["tr"])
    ds = separation_dataset(config.data, "train", batch_size=1, seed=0, num_epochs=1, shuffle=False)
    got = []
    for batch in ds:
        n = int(batch["lengths"][0])
        got.append((batch["mix"][0, :n], batch["sources"][0, :, :n]))
    assert len(got) == len(names["tr"])
    speeds_seen = set()
    for (mix, src), name in zip(got, sorted(names["tr"]), strict=True):  # wsj0-2mix items come sorted by name
        _, s1, s2 = truth[name]
        # each source: the stored one at one of the recipe's speeds, all truncated to the shortest
        speeds = []
        for k, ref in enumerate((s1, s2)):
            fits = [s for s in mixing.SPEEDS if len(mixing.speed_perturb(ref, s)) >= len(src[k])
                    and np.allclose(src[k], mixing.speed_perturb(ref, s)[:len(src[k])], rtol=0, atol=1e-6)]
            assert fits, (name, k)
            speeds.append(fits[0])
        assert len(mix) == min(len(mixing.speed_perturb(ref, s)) for ref, s in zip((s1, s2), speeds))
        np.testing.assert_allclose(mix, src.sum(0), rtol=0, atol=1e-6)  # the mixture is re-summed after resampling
        speeds_seen.update(speeds)
    assert speeds_seen - {100}, "speed perturbation is on in the recipe: some source must be resampled"
