"""``latentnav import-boundaries``: InterFaceGAN boundaries of a generator become its directions file."""

from pathlib import Path

import numpy as np
import torch

from latentnav.commands.boundaries import main
from latentnav.directions_file import read_directions
from latentnav.generators import load_generator

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PGGAN = FIXTURES / "genforce_pggan.pth"


def test_boundaries_import_for_their_generator_and_edit_it(tmp_path, capsys):
    rng = np.random.default_rng(0)
    files = []
    for name in ("pggan_celebahq_smile_boundary", "pggan_celebahq_age_boundary"):
        v = rng.standard_normal((1, 32))
        np.save(tmp_path / f"{name}.npy", v / np.linalg.norm(v))
        files.append(str(tmp_path / f"{name}.npy"))
    out = tmp_path / "ifg.npz"
    assert main(["--generator", str(PGGAN), "--boundaries", *files, "--out", str(out)]) == 0
    found = read_directions(out)
    assert found["names"] == ["pggan_celebahq_smile_boundary", "pggan_celebahq_age_boundary"]
    assert found["latent_space"] == "z" and found["generator"]["sha256"] == load_generator(PGGAN).identity["sha256"]
    expected = np.load(files[0])[0]
    assert np.allclose(found["directions"][0].numpy(), expected, atol=1e-6)


def test_a_boundary_of_another_generator_is_one_line(tmp_path, capsys):
    published = FIXTURES / "interfacegan_pggan_celebahq_smile_boundary.npy"  # 512 values: a 512-d PGGAN's
    assert main(["--generator", str(PGGAN), "--boundaries", str(published), "--out", str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("512 values, but " + f"{PGGAN}'s z latents have 32: the boundary belongs to another generator")
    assert "\n" not in err and not (tmp_path / "x.npz").exists()
