"""Messages and errors of the ``mamba-jax`` command: one line on stderr, the traceback only on request."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

VERBOSE_ENV = "MAMBA_JAX_VERBOSE"
TRACEBACK_HINT = f"(--verbose or {VERBOSE_ENV}=1 shows the traceback)"


class CliError(Exception):
    """A problem to report in one line (no traceback), exit status 1."""

    status = 1


class UsageError(CliError):
    """A bad argument or setting, reported in one line, exit status 2."""

    status = 2


def verbose_requested(argv: Sequence[str] | None = None) -> bool:
    """``--verbose`` among ``argv`` or ``MAMBA_JAX_VERBOSE`` set to anything but '' / '0'."""
    return "--verbose" in (sys.argv if argv is None else argv) or os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def one_line(e: BaseException, limit: int = 400) -> str:
    """``e``'s message on one line (the first line, at most ``limit`` characters), prefixed by its type when that
    says something (not for ValueError/CliError-like messages that already name the problem)."""
    msg = " ".join(str(e).split("\n")[0].split()) or type(e).__name__
    if len(msg) > limit:
        msg = msg[:limit - 3] + "..."
    return msg if isinstance(e, (ValueError, OSError, CliError)) else f"{type(e).__name__}: {msg}"


def note(msg: str) -> None:
    print(f"note: {msg}", file=sys.stderr, flush=True)


def error(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr, flush=True)
