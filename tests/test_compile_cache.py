"""The persistent compilation cache helper: opt-out, folder choice, and a user's own setting left alone."""

from __future__ import annotations

import jax
import pytest

from mamba_jax.compile_cache import default_cache_dir, enable_compilation_cache


@pytest.fixture
def restore_cache_dir():
    before = jax.config.jax_compilation_cache_dir
    yield
    jax.config.update("jax_compilation_cache_dir", before)


def test_opt_out_leaves_jax_alone(monkeypatch, tmp_path, restore_cache_dir):
    jax.config.update("jax_compilation_cache_dir", None)
    for off in ("0", "off", "False", "no"):
        monkeypatch.setenv("MAMBA_JAX_COMPILATION_CACHE", off)
        assert enable_compilation_cache(tmp_path / "c") is None
    assert jax.config.jax_compilation_cache_dir is None
    assert not (tmp_path / "c").exists()


def test_enables_folder_and_respects_user_setting(monkeypatch, tmp_path, restore_cache_dir):
    monkeypatch.setenv("MAMBA_JAX_COMPILATION_CACHE", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("MAMBA_JAX_CACHE_DIR", raising=False)
    assert default_cache_dir() == tmp_path / "xdg" / "mamba_jax" / "jax"
    monkeypatch.setenv("MAMBA_JAX_CACHE_DIR", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"
    jax.config.update("jax_compilation_cache_dir", None)
    assert enable_compilation_cache() == tmp_path / "mine"
    assert (tmp_path / "mine").is_dir()
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "mine")
    jax.config.update("jax_compilation_cache_dir", str(tmp_path / "user"))
    assert enable_compilation_cache(tmp_path / "other") is None  # the user's own choice wins
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "user")
