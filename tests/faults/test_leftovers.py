"""Fault suite, issue 22 item 9: what a killed ``edit`` / ``compare`` leaves (0-byte temporary files, the
parts of a multi-process edit, a staging folder) does not survive the next finished run, and a comparison's
files are published together: ``comparison.md`` never sits beside another run's ``comparison.json``.

A kill is planted as the files it leaves (the temporary names of ``latentnav.atomic``), with the pid of a
process that has exited and with this process's own pid (a container's re-run often gets the killed run's pid).
"""

import json
import os
import re
import subprocess
import sys

import pytest
import torch

from latentnav.directions_file import write_directions
from latentnav.generators import load_generator


def dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout)


def directions(tmp_path, names=("Smiling",), method="m"):
    rows = torch.nn.functional.normalize(torch.randn(len(names), 64, generator=torch.Generator().manual_seed(1)), dim=1)
    return write_directions(tmp_path / "d.npz", rows, list(names), method, "z", load_generator("demo").identity)


def test_a_finished_edit_removes_what_a_killed_one_left(tmp_path):
    from latentnav.commands.edit import main

    npz = directions(tmp_path)
    out = tmp_path / "edits"
    out.mkdir()
    dead = dead_pid()
    stale = [out / f".Smiling.png.tmp-{dead}-0123abcd", out / f".Smiling.gif.tmp-{os.getpid()}-89abcdef",
             out / f".Smiling_scores.tsv.tmp-{dead}-00c0ffee"]
    for path in stale:
        path.write_bytes(b"")  # a kill between creating the temporary file and writing it
    (out / ".parts_Smiling").mkdir()
    (out / ".parts_Smiling" / "rank1.pt").write_bytes(b"")  # a killed two-process edit's part
    other = out / "notes.txt"  # not the edit's: kept
    other.write_text("mine\n")
    assert main([str(npz), "--attributes", "Smiling", "--seeds", "0", "--steps", "3", "--scale", "1",
                 "--accelerator", "cpu", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["Smiling.gif", "Smiling.png", "notes.txt"]
    assert other.read_text() == "mine\n"


def test_a_comparison_is_published_together(tmp_path, capsys):
    """One compare run over an output folder holding an earlier comparison and a killed run's leftovers:
    afterwards comparison.md and comparison.json carry one run id, the earlier run's files of a method no
    longer compared are gone, and so are the leftovers. Method names are data: their stems stay in ``out``."""
    from latentnav.commands.compare import main

    npz = directions(tmp_path, ("s", "r"), method="../../evil/method")
    out = tmp_path / "deep" / "cmp"
    out.mkdir(parents=True)
    dead = dead_pid()
    (out / "comparison.md").write_text("old report\n")
    (out / "comparison.json").write_text(json.dumps([{"run_id": "old", "method": "gone"}]))
    (out / "effects_gone.png").write_bytes(b"old")
    (out / "names_gone.tsv").write_text("old\n")
    staging = out / f".staging-{dead}-0badc0de"  # a run killed before it published
    staging.mkdir()
    (staging / "comparison.md").write_text("killed run\n")
    temporary = out / f".comparison.json.tmp-{dead}-01234567"  # a run of the earlier layout, killed mid-write
    temporary.write_bytes(b"")
    assert main(["--directions", json.dumps([str(npz)]), "--num_samples", "8", "--replicates", "0",
                 "--accelerator", "cpu", "--out", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["comparison.json", "comparison.md", "effects_evil_method.png", "names_evil_method.tsv",
                     "tensorboard"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npz", "deep"]  # the method's name wrote nowhere else
    table = json.loads((out / "comparison.json").read_text())
    run_id = re.search(r"^Run id: (\S+) ", (out / "comparison.md").read_text(), flags=re.M).group(1)
    assert run_id != "old" and {entry["run_id"] for entry in table} == {run_id}
    assert [entry["method"] for entry in table] == ["../../evil/method"]


def test_a_kill_before_or_during_publication(tmp_path, monkeypatch):
    """Killed while writing (before the publication): the earlier comparison stays whole, no staging folder
    stays. Killed during the publication: no comparison.json, so no report sits beside another run's marker."""
    import latentnav.atomic as atomic
    from latentnav.commands import comparison_report

    out = tmp_path / "cmp"
    out.mkdir()
    old = {"comparison.md": "old report, Run id: old\n", "comparison.json": '[{"run_id": "old"}]'}
    for name, text in old.items():
        (out / name).write_text(text)

    def killed_while_writing(summary, folder):
        (folder / "comparison.md").write_text("new report\n")
        raise KeyboardInterrupt  # what SIGINT raises; SIGKILL leaves the staging folder to the next run

    monkeypatch.setattr(comparison_report, "_write_into", killed_while_writing)
    with pytest.raises(KeyboardInterrupt):
        comparison_report.write({}, out)
    assert {p.name: p.read_text() for p in out.iterdir()} == old

    def writes_both(summary, folder):
        for name in old:
            (folder / name).write_text(f"new {name}, Run id: {summary['run_id']}\n")

    replaced = []

    def killed_after_one_rename(source, target):
        if replaced:
            raise KeyboardInterrupt
        replaced.append(target)
        os.rename(source, target)

    monkeypatch.setattr(comparison_report, "_write_into", writes_both)
    monkeypatch.setattr(atomic.os, "replace", killed_after_one_rename)
    with pytest.raises(KeyboardInterrupt):
        comparison_report.write({}, out)
    monkeypatch.undo()
    assert [p.name for p in out.iterdir()] == ["comparison.md"] and replaced == [out / "comparison.md"]
    assert (out / "comparison.md").read_text().startswith("new")
