"""Writing files that another run reads: whole or not at all, and one writer at a time.

``atomic_write(path, write)`` lets ``write`` fill a temporary file *in the same folder* as
``path`` (so the final rename never crosses a filesystem, whatever ``TMPDIR`` is), flushes and
fsyncs it, renames it over ``path`` with ``os.replace`` and fsyncs the folder. A kill at any
moment leaves the previous ``path`` intact (or no ``path``) and at worst a temporary file named
``.<name>.tmp-<pid>-<random>``; :func:`remove_orphans` deletes those of processes that are gone, and
:func:`remove_stale_temporaries` (called by a run once it has written its files) those of the files it
wrote, whoever left them: a finished run leaves no temporary file of its outputs behind, even where the
killed run's pid is alive again (a container's re-run often gets the same pid).

A run that writes several files that belong together (``latentnav compare``: ``comparison.md``,
``comparison.json``, heat-maps, tables, TensorBoard) writes them into :func:`staging_folder` (a hidden
``.staging-<pid>-<random>`` folder inside its output folder, so the same filesystem) and
:func:`publish`-es them: the completion marker (``comparison.json``) is deleted first and renamed in
last, every other file is renamed into place in between (milliseconds). A kill before the publication
leaves the previous run's files whole and consistent; a kill during it leaves no marker (the set is
recognisably incomplete), never a new report beside an old marker. :func:`remove_stale_staging`
deletes the staging folders of killed runs.

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
import shutil
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Union

from latentnav.errors import OutputWriteError

PathLike = Union[str, os.PathLike]
_ORPHAN = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)-[0-9a-f]{8}$")
_STAGING = re.compile(r"^\.staging-(?P<pid>\d+)-[0-9a-f]{8}$")


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
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        # A full disk or quota is the user's to fix: one line naming the file (torch.save's stream writer
        # reports a failed write as a RuntimeError). The file being replaced was not touched.
        message = str(e).lower()
        if isinstance(e, OSError) or (isinstance(e, RuntimeError) and ("write failed" in message
                                                                       or "failed writing" in message)):
            reason = getattr(e, "strerror", None) or str(e).strip().splitlines()[0]
            raise OutputWriteError(f"cannot write {path}: {reason}; the previous {path.name}, if any, is "
                                   "kept as it was (free some space or write elsewhere)") from e
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


def _remove(entry: Path) -> bool:
    try:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    except OSError:
        return False
    return True


def remove_stale_temporaries(folder: PathLike, names: Iterable[str], started: Optional[float] = None) -> list[Path]:
    """Delete the temporary files of ``names`` in ``folder`` (as a killed :func:`atomic_write` leaves them),
    once the caller has finished writing those files: those of this process (its writes of them are done),
    of processes that are gone, and (given ``started``, the run's start as ``time.time()``) those not
    modified since the run started (a killed run's pid taken by another process). Returns what was removed."""
    folder, names = Path(folder), set(names)
    removed = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        m = _ORPHAN.match(entry.name)
        if not m or m.group("name") not in names:
            continue
        pid = int(m.group("pid"))
        try:
            old = started is not None and entry.stat().st_mtime < started
        except OSError:
            continue
        if (pid == os.getpid() or not _alive(pid) or old) and _remove(entry):
            removed.append(entry)
    return removed


def staging_folder(out: PathLike) -> Path:
    """A fresh, empty ``out/.staging-<pid>-<random>`` folder for files published together (:func:`publish`)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    folder = out / f".staging-{os.getpid()}-{secrets.token_hex(4)}"
    folder.mkdir()
    return folder


def publish(staging: PathLike, out: PathLike, last: str, supersedes: Iterable[str] = ()) -> list[Path]:
    """Move every entry of ``staging`` into ``out`` (renames, ``last`` last) and remove ``staging``.

    ``out/last`` is deleted first: at every moment ``out/last`` either belongs to the files beside it or is
    absent (a publication under way or killed). A folder replaces the folder of the same name whole (the
    old one moved aside, then deleted). ``supersedes``: glob patterns of files an earlier publication wrote
    in ``out``; those this one does not write are deleted (they describe a run that is no longer current).
    Returns the published paths, ``out/last`` last."""
    staging, out = Path(staging), Path(out)
    entries = sorted(p.name for p in staging.iterdir())
    if last not in entries:
        raise FileNotFoundError(f"{staging / last}: the completion marker to publish is missing")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(out / last)
    fsync_folder(out)
    for pattern in supersedes:
        for old in out.glob(pattern):
            if old.name not in entries and old.is_file():
                with contextlib.suppress(OSError):
                    old.unlink()
    published = []
    for name in [n for n in entries if n != last] + [last]:
        source, target = staging / name, out / name
        if source.is_dir() and target.exists():
            aside = out / f".{name}.old-{os.getpid()}-{secrets.token_hex(4)}"
            os.replace(target, aside)
            os.replace(source, target)
            _remove(aside)
        else:
            os.replace(source, target)
        published.append(target)
        if name == last:
            fsync_folder(out)
    with contextlib.suppress(OSError):
        staging.rmdir()
    return published


def remove_stale_staging(out: PathLike, keep: Optional[PathLike] = None) -> list[Path]:
    """Delete the :func:`staging_folder`-s in ``out`` of killed runs (their process gone, or this process's
    own, but for ``keep``), and the folders :func:`publish` moved aside. Returns what was removed."""
    out = Path(out)
    removed = []
    if not out.is_dir():
        return removed
    keep = Path(keep).resolve() if keep is not None else None
    for entry in out.iterdir():
        m = _STAGING.match(entry.name) or re.match(r"^\..+\.old-(?P<pid>\d+)-[0-9a-f]{8}$", entry.name)
        if not m or (keep is not None and entry.resolve() == keep):
            continue
        pid = int(m.group("pid"))
        if (pid == os.getpid() or not _alive(pid)) and _remove(entry):
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
