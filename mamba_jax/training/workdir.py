"""The training workdir: created (or refused) with a one-line reason, and locked for the life of a run.

Two trainers on one workdir would both append to ``metrics.jsonl`` and race on the checkpoints. The lock is an
``fcntl.flock`` on ``<workdir>/.lock``, taken by process 0 only (the other processes of a multi-process run
share its workdir and its lock): the kernel drops it when the holding process exits, however it exits (kill -9
included), so a lock is never stale. The file records the holder's pid and host for the refusal message; its
content is not what locks.
"""

from __future__ import annotations

import fcntl
import os
import pathlib
import socket

__all__ = ["WorkdirError", "WorkdirLocked", "WorkdirLock", "prepare_workdir", "workdir_problem"]

LOCK_NAME = ".lock"


class WorkdirError(OSError):
    """The workdir cannot be used (a file, a read-only file system, no permission); the message is one line."""


class WorkdirLocked(WorkdirError):
    """Another live process trains in this workdir."""


def workdir_problem(workdir: str | pathlib.Path) -> str | None:
    """Why ``workdir`` cannot hold a run, checked without creating anything (``None`` when it looks usable):
    it, or a parent folder, is a file."""
    p = pathlib.Path(workdir).expanduser()
    for q in (p, *p.parents):
        if q.exists():
            if not q.is_dir():
                return "is a file, not a folder" if q == p else f"has a file as a parent folder ({q})"
            return None
    return None


def prepare_workdir(workdir: str | pathlib.Path) -> pathlib.Path:
    """Creates ``workdir`` (and its parents) if needed; ``WorkdirError`` naming it and the operating system's
    reason ("Read-only file system", "Permission denied") otherwise. A read-only existing workdir is found by
    ``WorkdirLock``, the first write."""
    p = pathlib.Path(workdir).expanduser()
    problem = workdir_problem(p)
    if problem:
        raise WorkdirError(f"workdir {p} {problem}")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WorkdirError(f"workdir {p}: {e.strerror or e}") from None
    return p


class WorkdirLock:
    """``with WorkdirLock(workdir):`` holds the workdir's lock; ``WorkdirLocked`` names the holder's pid and
    host when another process holds it, ``WorkdirError`` when the lock file cannot be created (read-only)."""

    def __init__(self, workdir: str | pathlib.Path):
        self.path = pathlib.Path(workdir) / LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> WorkdirLock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise WorkdirError(f"workdir {self.path.parent}: {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise WorkdirLocked(f"workdir {self.path.parent} is in use by another training run ({holder}); wait "
                                f"for it to finish or stop it, or use another workdir") from None
        try:  # who holds it, for the message of a refused second run
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        except OSError:
            pass  # the lock holds without the note (a full disk)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the lock; the file stays (unlinking it would race a new run)
            self._fd = None
