"""Writing files that another run reads: whole or not at all, and one writer at a time.

``atomic_write(path, write)`` lets ``write`` fill a temporary file *in the same folder* as
``path`` (so the final rename never crosses a filesystem, whatever ``TMPDIR`` is), flushes and
fsyncs it, renames it over ``path`` with ``os.replace`` and fsyncs the folder. A kill at any
moment leaves the previous ``path`` intact (or no ``path``) and at worst a temporary file named
``.<name>.tmp-<pid>-<random>``; :func:`remove_orphans` deletes those of processes that are gone.

``file_lock(path)`` is an advisory ``flock`` on ``path`` (created if needed): two runs that meet
on one folder (the annotation store, a log folder) take turns instead of interleaving. The lock
dies with its process, so a killed run never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import re
import secrets
from pathlib import Path
from typing import Callable, Iterator, Union

PathLike = Union[str, os.PathLike]
_ORPHAN = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)-[0-9a-f]{8}$")


def temporary_name(path: PathLike) -> Path:
    """A fresh temporary name beside ``path`` (same folder, hence same filesystem)."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


def fsync_folder(folder: PathLike) -> None:
    """Make a rename in ``folder`` durable (no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: PathLike, write: Callable[[io.BufferedWriter], object]) -> Path:
    """Create or replace ``path`` with what ``write(f)`` writes to a binary file object."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_folder(path.parent)
    return path


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: PathLike, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def atomic_torch_save(obj, path: PathLike) -> Path:
    """``torch.save(obj, path)``, atomically."""
    import torch

    return atomic_write(path, lambda f: torch.save(obj, f))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_orphans(folder: PathLike) -> list[Path]:
    """Delete temporary files in ``folder`` left by :func:`atomic_write` in processes that no longer
    run (a kill mid-write); a live writer's file is left alone. Returns what was removed."""
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        m = _ORPHAN.match(entry.name)
        if m and int(m.group("pid")) != os.getpid() and not _alive(int(m.group("pid"))):
            with contextlib.suppress(OSError):
                entry.unlink()
                removed.append(entry)
    return removed


@contextlib.contextmanager
def file_lock(path: PathLike, shared: bool = False) -> Iterator[None]:
    """Hold an advisory lock on ``path`` (exclusive unless ``shared``) for the ``with`` block."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
