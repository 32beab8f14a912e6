"""A persistent XLA compilation cache for the command line and ``Separator.from_checkpoint``.

Compiling a full-size separation model on CPU takes tens of seconds; without a cache every new process pays it
again. :func:`enable_compilation_cache` points JAX's persistent cache (``jax_compilation_cache_dir``) at
``$MAMBA_JAX_CACHE_DIR``, else ``$XDG_CACHE_HOME/mamba_jax/jax``, else ``~/.cache/mamba_jax/jax``. Entries are
keyed by the compiled program, the JAX version and the device, so a changed model or JAX simply misses.

Opt out with ``MAMBA_JAX_COMPILATION_CACHE=0`` (or ``off``/``false``/``no``). A cache directory the user
already set (``JAX_COMPILATION_CACHE_DIR`` or ``jax.config.update``) is left alone. JAX decides once per
process whether to use the cache, at its first compilation, so this must run before the first ``jit`` call
to take effect (the CLI calls it first thing).
"""

from __future__ import annotations

import os
import pathlib

import jax

_OFF = ("0", "off", "false", "no")


def default_cache_dir() -> pathlib.Path:
    if os.environ.get("MAMBA_JAX_CACHE_DIR"):
        return pathlib.Path(os.environ["MAMBA_JAX_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "mamba_jax" / "jax"


def enable_compilation_cache(path: str | os.PathLike | None = None) -> pathlib.Path | None:
    """Turns the persistent compilation cache on; returns its folder, or None when opted out or already set."""
    if os.environ.get("MAMBA_JAX_COMPILATION_CACHE", "").strip().lower() in _OFF:
        return None
    if jax.config.jax_compilation_cache_dir:  # the user's own choice wins
        return None
    folder = pathlib.Path(path) if path is not None else default_cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:  # read-only home etc.: run without a cache rather than fail
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    return folder
