"""Atomic output files: written under a temporary name in the destination's folder, then renamed into place.

A write that fails (disk full, read-only or unwritable folder, Ctrl-C) leaves neither the file nor a partial or
empty one, so a re-run after freeing space starts clean. The content is built in memory first and written with
Python's own file I/O, whose ``OSError`` carries the errno and the OS's wording ("No space left on device");
libraries that write files themselves (soundfile: ``LibsndfileError: System error.``) do not say why.

:class:`OutputError` names the file and that cause; ``folder_fault`` tells a fault of the output folder (full,
read-only, not writable: every further write would fail too) from one of this file alone.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pathlib
import re
import shutil
from collections.abc import Iterator, Sequence

__all__ = ["OutputError", "atomic_dir", "check_space", "check_writable", "output_error", "write_atomic", "write_many_atomic"]

PathLike = str | os.PathLike

# errnos after which no other file in the same folder can be written either
_FOLDER_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


class OutputError(OSError):
    """An output could not be written: ``str(e)`` is one line, ``<file>: cannot write (<OS cause>)``."""

    def __init__(self, path: PathLike, err: int | None, cause: str, *, folder_fault: bool):
        super().__init__(err, cause)
        self.path = str(path)
        self.cause = cause
        self.folder_fault = folder_fault

    def __str__(self) -> str:
        return f"{self.path}: cannot write ({self.cause})"


def _cause(exc: BaseException | None, folder: pathlib.Path) -> tuple[int | None, str]:
    """``(errno, OS wording)`` of a failed write: the errno of ``exc`` or of an ``OSError`` in its chain; else
    (libraries that swallow errno) the state of ``folder``: no free space, read-only, not writable."""
    seen = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno:
            return seen.errno, os.strerror(seen.errno)
        # tensorstore (orbax): "... No space left on device [os_error_code='28']"
        m = re.search(r"os_error_code='?(\d+)|\[Errno (\d+)\]", str(seen))
        if m:
            code = int(m.group(1) or m.group(2))
            return code, os.strerror(code)
        seen = seen.__cause__ or seen.__context__
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        st = os.statvfs(probe)
        if st.f_flag & os.ST_RDONLY:
            return errno.EROFS, os.strerror(errno.EROFS)
        if st.f_bavail == 0:
            return errno.ENOSPC, os.strerror(errno.ENOSPC)
    except OSError:
        pass
    if not os.access(probe, os.W_OK):
        return errno.EACCES, os.strerror(errno.EACCES)
    text = " ".join(str(exc).split()) if exc is not None else ""
    return None, text or (type(exc).__name__ if exc is not None else "unknown error")


def output_error(path: PathLike, exc: BaseException | None) -> OutputError:
    """The :class:`OutputError` for a failed write of ``path`` caused by ``exc``."""
    p = pathlib.Path(path)
    err, cause = _cause(exc, p.parent)
    folder_fault = err in _FOLDER_ERRNOS or (err in (errno.EACCES, errno.EPERM) and not _writable(p.parent))
    return OutputError(p, err, cause, folder_fault=folder_fault)


def _writable(folder: pathlib.Path) -> bool:
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return os.access(probe, os.W_OK)


def _tmp_name(dest: pathlib.Path) -> pathlib.Path:
    # hidden and without an audio extension: a folder scan of the output never picks a stale one up
    return dest.with_name(f".{dest.name}.tmp-{os.getpid()}")


def _unlink_quietly(p: pathlib.Path) -> None:
    with contextlib.suppress(OSError):
        p.unlink()


def write_many_atomic(items: Sequence[tuple[PathLike, bytes]], *, fsync: bool = True) -> None:
    """Writes every ``(path, content)`` or none: all go to temporary names first (parents created), then are
    renamed into place. Raises :class:`OutputError` naming the first file that failed and the OS cause.
    ``fsync``: flush each file to disk before its rename (a crash then leaves the old or the new file, never
    an empty one); bulk writers of regenerable files (the synthetic corpus) skip it."""
    done: list[tuple[pathlib.Path, pathlib.Path]] = []
    try:
        for path, data in items:
            dest = pathlib.Path(path)
            tmp = _tmp_name(dest)
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                done.append((tmp, dest))
                with open(tmp, "wb") as f:
                    f.write(data)
                    f.flush()
                    if fsync:  # also where ENOSPC surfaces on file systems that allocate late (NFS)
                        os.fsync(f.fileno())
            except OSError as e:
                raise output_error(dest, e) from e
        for tmp, dest in done:
            try:
                os.replace(tmp, dest)
            except OSError as e:
                raise output_error(dest, e) from e
    except BaseException:  # incl. Ctrl-C: no temporary file stays behind
        for tmp, _ in done:
            _unlink_quietly(tmp)
        raise


def write_atomic(path: PathLike, data: bytes | str, *, fsync: bool = True) -> None:
    """Writes ``data`` (str: UTF-8) to ``path`` atomically (see :func:`write_many_atomic`)."""
    write_many_atomic([(path, data.encode("utf-8") if isinstance(data, str) else data)], fsync=fsync)


def check_writable(folder: PathLike) -> None:
    """Creates ``folder`` if needed and checks that a file can be written in it (a real probe: root ignores
    permission bits, a read-only mount does not); raises :class:`OutputError` naming the folder and the cause."""
    p = pathlib.Path(folder)
    probe = p / f".write-probe-{os.getpid()}"
    try:
        p.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as f:
            f.write(b"\0")
    except OSError as e:
        err = output_error(p, e)
        err.folder_fault = True
        raise err from e
    finally:
        _unlink_quietly(probe)


def check_space(folder: PathLike, nbytes: int) -> None:
    """Raises :class:`OutputError` (No space left on device) when the file system of ``folder`` has less than
    ``nbytes`` free for this user. For writers that report a full disk badly (orbax: hundreds of lines of
    tracebacks from its background threads), so the common case is refused before they start."""
    p = pathlib.Path(folder)
    while not p.exists() and p != p.parent:
        p = p.parent
    st = os.statvfs(p)
    if st.f_bavail * st.f_frsize < nbytes:
        raise OutputError(folder, errno.ENOSPC, f"{os.strerror(errno.ENOSPC)}: {nbytes / 2**20:.1f} MiB needed, "
                          f"{st.f_bavail * st.f_frsize / 2**20:.1f} MiB free", folder_fault=True)


@contextlib.contextmanager
def atomic_dir(dest: PathLike, *, replace: bool = False) -> Iterator[pathlib.Path]:
    """``with atomic_dir(dest) as tmp:`` fill the folder ``tmp`` (beside ``dest``); on success it becomes
    ``dest`` (an existing ``dest`` is replaced when ``replace``, else ``FileExistsError``); on failure it is
    removed and the error becomes an :class:`OutputError` naming ``dest`` (``Ctrl-C`` passes through)."""
    dest = pathlib.Path(dest)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
    except OSError as e:
        raise output_error(dest, e) from e
    try:
        yield tmp
        if dest.exists():
            if not replace:
                raise FileExistsError(f"{dest} already exists")
            old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    except FileExistsError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except Exception as e:  # orbax/tensorstore name no errno: the cause comes from the folder's state
        shutil.rmtree(tmp, ignore_errors=True)
        raise output_error(dest, e) from e
    except BaseException:  # Ctrl-C
        shutil.rmtree(tmp, ignore_errors=True)
        raise
