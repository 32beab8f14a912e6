"""A real tmpfs for the tests about full and read-only disks (root ignores chmod, so permissions cannot stand in)."""

from __future__ import annotations

import contextlib
import pathlib
import subprocess

import pytest


@contextlib.contextmanager
def tmpfs(path: pathlib.Path, options: str):
    """A tmpfs mounted at ``path`` (created) with mount ``options`` (``size=24k``, ``ro``) for the block; the test
    is skipped where mounting is not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {r.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=False)
