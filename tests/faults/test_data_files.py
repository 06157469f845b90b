"""Fault suite, issue 22 item 2: a directions file is data. The generator options it records describe how it
was made; they never choose code to run or lift a safety flag (``edit``, ``compare`` and the explorer refuse
in one line saying what to pass), and the generator's sha256 is compared before anything is unpickled or built."""

import json
import os
import re
import shlex
import time

import pytest
import torch

from latentnav.directions_file import write_directions
from latentnav.errors import ConfigError
from latentnav.generators import load_generator
from latentnav.safe_load import sha256_of


class Hostile:
    """Unpickled, it runs ``touch path``: what a tampered generator file would do."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.system, ("touch " + shlex.quote(self.path),))


def hostile_generator(tmp_path, marker):
    path = tmp_path / "hostile.pt"
    torch.save({"g_ema": Hostile(marker)}, path)
    assert not marker.exists()  # saving runs nothing
    return path


def directions_recording(tmp_path, identity: dict, name="d.npz"):
    """A directions file on the demo generator's latents (64-d, z) whose recorded generator is ``identity``."""
    rows = torch.nn.functional.normalize(torch.randn(2, 64, generator=torch.Generator().manual_seed(0)), dim=1)
    return write_directions(tmp_path / name, rows, ["Smiling", "Male"], "m", "z", identity)


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("latentnav: error: ") and "Traceback" not in err, err
    return err.strip()


def eventually_exists(path, seconds=1.0) -> bool:
    """Whether ``path`` appears within ``seconds`` (a Popen'd ``touch`` runs asynchronously)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists():
            return True
        time.sleep(0.05)
    return path.exists()


def edit(npz, out, *extra):
    from latentnav.commands.edit import main

    return main([str(npz), "--attributes", "Smiling", "--seeds", "0", "--steps", "3", "--accelerator", "cpu",
                 "--out", str(out), *extra])


def compare(npz, out, *extra):
    from latentnav.commands.compare import main

    return main(["--directions", json.dumps([str(npz)]), "--num_samples", "8", "--replicates", "0",
                 "--accelerator", "cpu", "--out", str(out), *extra])


def test_a_recorded_class_path_runs_nothing(tmp_path, capsys):
    """``class_path: subprocess.Popen`` with ``init_args.args: [touch, X]`` on the (genuine) demo generator:
    edit, compare and the explorer refuse in one line naming --generator_options; X is never created."""
    from latentnav.commands.explore import Explorer

    marker = tmp_path / "X"
    demo = load_generator("demo").identity
    npz = directions_recording(tmp_path, {"source": demo["source"], "sha256": demo["sha256"],
                                          "options": {"class_path": "subprocess.Popen",
                                                      "init_args": {"args": ["touch", str(marker)]}}})
    capsys.readouterr()
    for run in (edit, compare):
        assert run(npz, tmp_path / "out") == 2
        err = one_error_line(capsys)
        assert (f"{npz} records generator options" in err and "subprocess.Popen" in err
                and "a directions file cannot choose code to run" in err and "--generator_options '{" in err)
    with pytest.raises(ConfigError, match="a directions file cannot choose code to run"):
        Explorer([str(npz)])
    assert not eventually_exists(marker)
    assert not (tmp_path / "out").exists()


def test_a_recorded_trust_pickle_does_not_lift_the_safety_flag(tmp_path, capsys):
    """A hostile pickle as the recorded generator, its sha256 recorded correctly, with ``trust_pickle: true``:
    refused in one line before it is read; without the recorded flag, the weights-only loader refuses it.
    Nothing runs either way."""
    marker = tmp_path / "ran"
    hostile = hostile_generator(tmp_path, marker)
    identity = {"source": str(hostile), "sha256": sha256_of(hostile)}
    trusting = directions_recording(tmp_path, dict(identity, options={"trust_pickle": True}), "trusting.npz")
    capsys.readouterr()
    for run in (edit, compare):
        assert run(trusting, tmp_path / "out") == 2
        err = one_error_line(capsys)
        assert '"trust_pickle": true' in err and "--generator_options '{\"trust_pickle\": true}'" in err
    plain = directions_recording(tmp_path, identity, "plain.npz")
    assert edit(plain, tmp_path / "out") == 2
    assert re.search(r"hostile.pt: refused, unpickling it would call (posix|os)\.system", one_error_line(capsys))
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_the_sha256_is_compared_before_anything_is_loaded(tmp_path, capsys, monkeypatch):
    """--generator pointing at another file (here a hostile pickle, even with the user's own trust_pickle):
    one line naming the directions file and both sha256s; the loader is never called, nothing unpickled."""
    import latentnav.generators.loading as loading

    calls = []

    def spy(name):
        def refuse(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"{name} called before the sha256 was compared")
        return refuse

    marker = tmp_path / "ran"
    hostile = hostile_generator(tmp_path, marker)
    demo = load_generator("demo").identity
    npz = directions_recording(tmp_path, {"source": demo["source"], "sha256": demo["sha256"]})
    monkeypatch.setattr(loading, "load_generator", spy("load_generator"))
    monkeypatch.setattr(loading, "safe_torch_load", spy("safe_torch_load"))
    capsys.readouterr()
    for run in (edit, compare):
        assert run(npz, tmp_path / "out", "--generator", str(hostile), "--generator_options",
                   '{"trust_pickle": true}') == 2
        err = one_error_line(capsys)
        assert (f"{npz} was made for generator {demo['source']} (sha256 {demo['sha256'][:12]}), not {hostile} "
                f"(sha256 {sha256_of(hostile)[:12]})") in err
    assert calls == [] and not marker.exists()


def test_options_given_on_the_command_line_load_a_class_path_generator(tmp_path, capsys):
    """The legitimate case: the recorded state dict, the class named by the user; the recorded numeric
    sizes (descriptive) apply without repeating them."""
    from tests.commands.test_edit import CLASS_PATH, INIT_ARGS, save_planted_tiny

    save_planted_tiny(tmp_path / "tiny.pt")
    G = load_generator(tmp_path / "tiny.pt", class_path=CLASS_PATH, init_args=INIT_ARGS, resolution=16)
    assert G.identity["options"]["resolution"] == 16
    npz = write_directions(tmp_path / "planted.npz", torch.eye(8)[[0]], ["red"], "planted", "z", G.identity)
    from latentnav.commands.edit import main

    common = [str(npz), "--attributes", "red", "--seeds", "0", "--steps", "3", "--accelerator", "cpu",
              "--out", str(tmp_path / "out")]
    capsys.readouterr()
    assert main(common) == 2
    err = one_error_line(capsys)
    suggested = json.dumps({"class_path": CLASS_PATH, "init_args": INIT_ARGS}, sort_keys=True)
    assert err.endswith(f"pass them yourself with --generator_options '{suggested}' if you trust them")
    assert main([*common, "--generator_options", suggested]) == 0
    assert sorted(os.listdir(tmp_path / "out")) == ["red.gif", "red.png"]
