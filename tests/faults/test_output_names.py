"""Fault suite, issue 22 item 3: names read from a directions file become file names only through
``latentnav.names``: nothing is written outside ``--out``, no hidden or over-long file, and what cannot be
made safe (an empty name, a name on two rows, an attribute given twice) is one line with exit code 2."""

import os

import pytest
import torch

from latentnav.commands.edit import main
from latentnav.directions_file import write_directions
from latentnav.generators import load_generator
from latentnav.names import MAX_STEM


def snapshot(root, skip):
    """Every path under ``root`` outside ``skip``: folders, and files with their size and mtime."""
    found = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if os.path.join(folder, d) != str(skip)]
        found.update({os.path.join(folder, d): "folder" for d in dirs})
        for name in files:
            stat = os.lstat(os.path.join(folder, name))
            found[os.path.join(folder, name)] = (stat.st_size, stat.st_mtime_ns)
    return found


@pytest.fixture
def hostile(tmp_path):
    """A directions file on the demo generator whose names try to escape, hide, overflow and repeat."""
    outside = tmp_path / "elsewhere" / "abs"
    names = ["../../escape", str(outside), "a/b", "", "n" * 300, "dup", "dup", "ok", "..", ".hidden"]
    rows = torch.nn.functional.normalize(torch.randn(len(names), 64, generator=torch.Generator().manual_seed(0)), dim=1)
    npz = write_directions(tmp_path / "hostile.npz", rows, names, "m", "z", load_generator("demo").identity)
    return npz, names


def run(npz, out, attributes, *extra):
    return main([str(npz), "--attributes", *attributes, "--seeds", "0", "--steps", "3", "--scale", "1",
                 "--accelerator", "cpu", "--out", str(out), *extra])


def test_hostile_names_write_only_inside_out(tmp_path, hostile, capsys):
    npz, names = hostile
    out = tmp_path / "deep" / "er" / "out"  # ../../escape from out: tmp_path/deep/escape.png
    out.parent.mkdir(parents=True)
    before = snapshot(tmp_path, out)
    assert run(npz, out, ["../../escape", names[1], "a/b", "n" * 300, "..", ".hidden"]) == 0
    assert run(npz, out, ["ok"], "--keep", "../../escape", "a/b") == 0  # kept names go into the file name too
    written = sorted(p.name for p in out.iterdir())
    assert snapshot(tmp_path, out) == before  # nothing created, changed or removed outside --out
    assert all(p.is_file() for p in out.iterdir())  # no sub-folders (a/b)
    stems = sorted({name.rsplit(".", 1)[0] for name in written})
    assert len(stems) == 7 and len(written) == 14  # one PNG and one GIF each: no name swallowed another
    assert "____escape" in stems and "a_b" in stems and "_hidden" in stems and "_" in stems
    assert any(s.endswith("_elsewhere_abs") for s in stems)
    assert all(not n.startswith(".") and len(s) <= MAX_STEM for n, s in zip(written, stems))
    long = [s for s in stems if s.startswith("nnn")]
    assert len(long) == 1 and len(long[0]) == MAX_STEM and long[0][-9] == "-"  # cut, with a hash of the name
    assert [s for s in stems if s.startswith("ok_keep_")] == ["ok_keep_____escape_a_b"]


@pytest.mark.parametrize("attributes, expected", [
    ([""], "--attributes: '' is empty; it cannot name a file (rename it)"),
    (["dup"], "hostile.npz: direction name 'dup' is on rows [5, 6]; a name must pick one row"),
    (["ok", "ok"], "--attributes: 'ok' given more than once; each name must be unique"),
    (["ok", "--keep", "dup"], "hostile.npz: direction name 'dup' is on rows [5, 6]"),
])
def test_what_cannot_be_made_safe_is_one_line(tmp_path, hostile, capsys, attributes, expected):
    npz, _ = hostile
    out = tmp_path / "out"
    before = snapshot(tmp_path, out)
    capsys.readouterr()
    assert run(npz, out, attributes) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and expected in err, err
    assert not out.exists() and snapshot(tmp_path, out) == before
