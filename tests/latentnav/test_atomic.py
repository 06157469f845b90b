"""latentnav.atomic: a failed write keeps the old file, orphans of dead writers go, the lock excludes."""

import os
import subprocess
import sys

import pytest
import torch

from latentnav.atomic import atomic_torch_save, atomic_write, atomic_write_bytes, atomic_write_text, file_lock, remove_orphans

# Another process tries the lock without waiting: exit 0 if it got it, BlockingIOError if not.
PROBE = "import fcntl, os, sys; fcntl.flock(os.open(sys.argv[1], os.O_RDWR), getattr(fcntl, sys.argv[2]) | fcntl.LOCK_NB)"


def probe(path, mode="LOCK_EX") -> bool:
    """Could another process take ``path``'s lock (``LOCK_EX`` or ``LOCK_SH``) right now?"""
    done = subprocess.run([sys.executable, "-c", PROBE, str(path), mode], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 or "BlockingIOError" in done.stderr, done.stderr
    return done.returncode == 0


def dead_pid() -> int:
    """The pid of a process that has exited."""
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout)


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "report.md"
    atomic_write_text(path, "old\n")

    def half(f):
        f.write(b"new, half of it")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed mid-write"):
        atomic_write(path, half)
    assert path.read_text() == "old\n" and os.listdir(tmp_path) == ["report.md"]

    atomic_write_bytes(path, b"new\n")
    atomic_torch_save({"x": torch.arange(3)}, tmp_path / "deeper" / "blob.pt")  # makes the folder
    assert path.read_bytes() == b"new\n" and sorted(os.listdir(tmp_path)) == ["deeper", "report.md"]
    assert torch.equal(torch.load(tmp_path / "deeper" / "blob.pt", weights_only=True)["x"], torch.arange(3))
    assert os.listdir(tmp_path / "deeper") == ["blob.pt"]


def test_remove_orphans_deletes_only_the_temporary_files_of_dead_processes(tmp_path):
    orphan = tmp_path / f".shard_00000.pt.tmp-{dead_pid()}-0123abcd"
    live = tmp_path / f".shard_00001.pt.tmp-{os.getppid()}-89abcdef"  # another process, alive
    own = tmp_path / f".manifest.json.tmp-{os.getpid()}-00c0ffee"  # this process may be writing it
    others = [tmp_path / "shard_00002.pt", tmp_path / ".lock", tmp_path / f".x.tmp-{dead_pid()}-nothex00"]
    for p in [orphan, live, own, *others]:
        p.write_bytes(b"x")
    assert remove_orphans(tmp_path) == [orphan]
    assert not orphan.exists() and all(p.exists() for p in [live, own, *others])
    assert remove_orphans(tmp_path / "missing") == []


def test_file_lock_excludes_another_process_until_released(tmp_path):
    lock = tmp_path / "store" / ".lock"
    with file_lock(lock):  # makes the folder and the file
        assert not probe(lock) and not probe(lock, "LOCK_SH")
    assert probe(lock)
    with file_lock(lock, shared=True):  # readers share, a writer waits
        assert probe(lock, "LOCK_SH") and not probe(lock)
    with pytest.raises(RuntimeError):
        with file_lock(lock):
            raise RuntimeError("a failed writer")
    assert probe(lock)  # released on errors too


def test_remove_stale_temporaries_of_the_files_a_run_wrote(tmp_path):
    """Once a run has written its files, the temporaries of those names go: a dead process's, this process's
    own (its writes are done), and, given the run's start, any older one (a killed run's pid taken by another
    process); a live writer's fresh one and the temporaries of other files stay."""
    import time

    from latentnav.atomic import remove_stale_temporaries

    dead, own, live = (tmp_path / f".a.png.tmp-{dead_pid()}-0123abcd", tmp_path / f".a.gif.tmp-{os.getpid()}-89abcdef",
                       tmp_path / f".a.png.tmp-{os.getppid()}-00c0ffee")
    other = tmp_path / f".b.png.tmp-{dead_pid()}-0123abcd"
    for p in (dead, own, live, other):
        p.write_bytes(b"")
    assert sorted(remove_stale_temporaries(tmp_path, ["a.png", "a.gif"])) == sorted([dead, own])
    assert live.exists() and other.exists()
    assert remove_stale_temporaries(tmp_path, ["a.png"], started=time.time() - 3600) == []  # live and fresh
    os.utime(live, (time.time() - 7200, time.time() - 7200))
    assert remove_stale_temporaries(tmp_path, ["a.png"], started=time.time() - 3600) == [live]
    assert other.exists() and remove_stale_temporaries(tmp_path / "missing", ["a.png"]) == []


def test_publish_moves_a_staging_folder_into_place_marker_last(tmp_path):
    from latentnav.atomic import publish, remove_stale_staging, staging_folder

    out = tmp_path / "out"
    out.mkdir()
    (out / "report.md").write_text("old")
    (out / "marker.json").write_text("old")
    (out / "effects_gone.png").write_text("old")
    (out / "keep.txt").write_text("not ours")
    (out / "board").mkdir()
    (out / "board" / "old_events").write_text("old")
    staging = staging_folder(out)
    assert staging.parent == out and staging.name.startswith(f".staging-{os.getpid()}-")
    for name in ("report.md", "marker.json", "effects_new.png"):
        (staging / name).write_text("new")
    (staging / "board").mkdir()
    (staging / "board" / "new_events").write_text("new")
    published = publish(staging, out, last="marker.json", supersedes=["effects_*.png"])
    assert published[-1] == out / "marker.json" and not staging.exists()
    assert sorted(p.name for p in out.iterdir()) == ["board", "effects_new.png", "keep.txt", "marker.json",
                                                     "report.md"]
    assert os.listdir(out / "board") == ["new_events"]  # a folder is replaced whole
    assert all((out / n).read_text() == "new" for n in ("report.md", "marker.json", "effects_new.png"))
    killed = out / f".staging-{dead_pid()}-0badc0de"  # a killed run's
    killed.mkdir()
    (killed / "report.md").write_text("half")
    live = out / f".staging-{os.getppid()}-0badc0de"  # a run still writing
    live.mkdir()
    mine = staging_folder(out)
    assert remove_stale_staging(out, keep=mine) == [killed]
    assert live.exists() and mine.exists()
    with pytest.raises(FileNotFoundError, match="completion marker"):
        publish(mine, out, last="marker.json")
    assert (out / "marker.json").exists()  # nothing was touched
