"""Resuming with a changed config: structural changes refused with a diff, the rest listed and accepted."""

from __future__ import annotations

import pytest

from configs.mambatasnet_xs import get_config
from mamba_jax.training.resume import ConfigMismatchError, check_resume


def _changed(**fields):
    c = get_config("smoke")
    c.unlock()
    for key, value in fields.items():
        section, name = key.split("__")
        c[section][name] = value
    return c


def test_model_and_input_shape_changes_are_refused_with_a_diff():
    stored = get_config("smoke").to_dict()
    with pytest.raises(ConfigMismatchError) as e:
        check_resume(stored, _changed(model__n_filters=24, data__sample_rate=16000, optim__lr=1.0), "runs/x")
    msg = str(e.value)
    assert "  model.n_filters: 16 -> 24" in msg and "  data.sample_rate: 8000 -> 16000" in msg
    assert "optim.lr" not in msg  # only what prevents the resume
    assert "init_from=runs/x" in msg


def test_other_changes_are_listed_in_one_line_and_accepted(capsys):
    stored = get_config("smoke").to_dict()
    assert check_resume(stored, get_config("smoke"), "runs/x") is None
    line = check_resume(stored, _changed(optim__lr=2e-3, train__batch_size=8, model__scan_impl="associative"),
                        "runs/x")
    assert line == ("resuming with a changed config: model.scan_impl 'sequential' -> 'associative', "
                    "optim.lr 0.00015 -> 0.002, train.batch_size 1 -> 8")
    assert capsys.readouterr().out.strip() == line
