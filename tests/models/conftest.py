"""Helpers shared by the model tests: config loading by path."""

from __future__ import annotations

import pathlib

import pytest

from mamba_jax.config import load_config

CONFIG_DIR = pathlib.Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture(scope="session")
def config_loader():
    return lambda name, arg=None: load_config(str(CONFIG_DIR / name) + (f":{arg}" if arg else ""))
