"""The directions.npz format: bad rows and sizes are one line, never black frames or a traceback."""

import numpy as np
import pytest
import torch

from latentnav.directions_file import read_directions, write_directions
from latentnav.commands.edit import main as edit_main
from latentnav.errors import DataFormatError
from latentnav.generators import load_generator


def _raw(path, directions):
    G = load_generator("demo")
    np.savez(path, directions=directions.astype(np.float32), names=np.array([f"d{i}" for i in range(len(directions))]),
             method=np.array("x"), latent_space=np.array("z"), generator=np.array(__import__("json").dumps(G.identity)))
    return path


def test_non_finite_or_zero_rows_are_refused_on_write_and_on_read(tmp_path, capsys):
    good = torch.nn.functional.normalize(torch.randn(3, 64), dim=1)
    G = load_generator("demo")
    for row, what in ((float("nan"), "are not finite"), (float("inf"), "are not finite"), (0.0, "are zero")):
        bad = good.clone()
        bad[1] = row
        with pytest.raises(DataFormatError, match=rf"d.npz: not written: direction row\(s\) \[1\] {what}"):
            write_directions(tmp_path / "d.npz", bad, ["a", "b", "c"], "m", "z", G.identity)
        assert not (tmp_path / "d.npz").exists()  # nothing half-written either
        path = _raw(tmp_path / "raw.npz", bad.numpy())
        with pytest.raises(DataFormatError, match=rf"raw.npz: direction row\(s\) \[1\] {what}"):
            read_directions(path)
        for extra in ([], ["--keep", "d2"]):  # was: black frames, or a LinAlgError traceback with --keep
            assert edit_main([str(path), "--attributes", "d0", *extra, "--out", str(tmp_path / "e")]) == 2
            err = capsys.readouterr().err.strip()
            assert err.count("\n") == 0 and what in err
    assert not (tmp_path / "e").exists()


def test_a_wrong_latent_size_is_one_line(tmp_path, capsys):
    path = _raw(tmp_path / "d.npz", np.ones((2, 63)))
    assert edit_main([str(path), "--attributes", "d0", "--out", str(tmp_path / "e")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"latentnav: error: {path}: directions have size 63, but the generator's z latents have 64")


def test_a_hostile_pickle_is_called_what_it_is(tmp_path):
    import os
    import pickle

    from latentnav.safe_load import safe_torch_load

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo should-never-run > " + str(tmp_path / "ran"),))

    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"state_dict": Evil()}, f, protocol=2)
    with pytest.raises(DataFormatError, match=r"evil.pt: refused, unpickling it would call (posix|os|nt)\.system "
                                              r"\(a hostile or tampered file\?\); it was not loaded"):
        safe_torch_load(tmp_path / "evil.pt")
    assert not (tmp_path / "ran").exists()
