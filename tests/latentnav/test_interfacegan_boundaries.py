"""InterFaceGAN's published boundary files import as a directions file.

``tests/fixtures/interfacegan_*.npy`` are four of InterFaceGAN's published boundaries, copied unchanged from
its ``boundaries/`` folder (commit 8da3fc0fe2a1d4c88dc5f9bee65e8077093ad2bb; MIT licence): PGGAN CelebA-HQ
smile (z), StyleGAN FFHQ age (z), smile and pose (w): (1, 512) float64 arrays of unit norm.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from latentnav.directions_file import read_directions
from latentnav.errors import ConfigError, DataFormatError
from latentnav.interfacegan_boundaries import boundary_space, import_boundaries

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
W_FILES = [FIXTURES / "interfacegan_stylegan_ffhq_smile_w_boundary.npy", FIXTURES / "interfacegan_stylegan_ffhq_pose_w_boundary.npy"]
Z_FILE = FIXTURES / "interfacegan_stylegan_ffhq_age_boundary.npy"
PGGAN_FILE = FIXTURES / "interfacegan_pggan_celebahq_smile_boundary.npy"
IDENTITY = {"source": "stylegan_ffhq1024.pth", "sha256": "ab" * 32, "format": "genforce-stylegan"}


def test_w_boundaries_read_back_unit_norm_as_published(tmp_path):
    out = import_boundaries(W_FILES, IDENTITY, None, tmp_path / "ifg.npz")
    found = read_directions(out)
    assert found["latent_space"] == "w" and found["method"] == "InterFaceGAN boundaries"
    assert found["names"] == ["interfacegan_stylegan_ffhq_smile_w_boundary", "interfacegan_stylegan_ffhq_pose_w_boundary"]
    assert found["generator"] == IDENTITY and list(found["source_files"]) == [p.name for p in W_FILES]
    d = found["directions"]
    assert d.shape == (2, 512) and d.dtype == torch.float32
    torch.testing.assert_close(d.norm(dim=1), torch.ones(2), atol=1e-6, rtol=0)
    for row, path in zip(d, W_FILES):  # the published vectors, unchanged (float32)
        np.testing.assert_array_equal(row.numpy(), np.load(path)[0].astype(np.float32))


def test_space_from_names_or_given(tmp_path):
    assert [boundary_space(p) for p in (*W_FILES, Z_FILE, PGGAN_FILE)] == ["w", "w", "z", "z"]
    assert read_directions(import_boundaries([PGGAN_FILE], IDENTITY, "z", tmp_path / "a.npz"))["latent_space"] == "z"
    with pytest.raises(ConfigError, match="age_boundary.npy: its name marks a z-space boundary"):
        import_boundaries([W_FILES[0], Z_FILE], IDENTITY, None, tmp_path / "b.npz")
    with pytest.raises(ConfigError, match="smile_w_boundary.npy: its name marks a w-space boundary, but the space given is z"):
        import_boundaries([W_FILES[0]], IDENTITY, "z", tmp_path / "c.npz")
    with pytest.raises(ConfigError, match="expected z or w"):
        import_boundaries([Z_FILE], IDENTITY, "w+", tmp_path / "d.npz")
    assert not (tmp_path / "b.npz").exists()


@pytest.mark.parametrize("content,message", [
    (np.zeros((2, 512)), r"expected a \(1, d\) boundary, got shape \(2, 512\)"),
    (np.full((1, 512), np.nan), "NaN or inf"),
    (np.zeros((1, 512)), "all zeros"),
    (np.ones((1, 512), dtype=np.int64), "expected a floating-point"),
])
def test_bad_boundaries_are_one_line_naming_the_file(tmp_path, content, message):
    bad = tmp_path / "bad_w_boundary.npy"
    np.save(bad, content)
    with pytest.raises(DataFormatError, match=f"bad_w_boundary.npy: .*{message}"):
        import_boundaries([W_FILES[0], bad], IDENTITY, None, tmp_path / "out.npz")
    assert not (tmp_path / "out.npz").exists()


def test_not_npy_unreadable_or_other_sizes(tmp_path):
    text = tmp_path / "smile_w_boundary.txt"
    text.write_text("0.1 0.2")
    with pytest.raises(DataFormatError, match="smile_w_boundary.txt: not a .npy boundary file"):
        import_boundaries([text], IDENTITY, None, tmp_path / "o.npz")
    junk = tmp_path / "junk.npy"
    junk.write_bytes(b"not numpy at all")
    with pytest.raises(DataFormatError, match="junk.npy: not a readable .npy array"):
        import_boundaries([junk], IDENTITY, None, tmp_path / "o.npz")
    pickled = tmp_path / "pickled.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataFormatError, match="pickled.npy: not a readable .npy array"):
        import_boundaries([pickled], IDENTITY, None, tmp_path / "o.npz")
    short = tmp_path / "short_w_boundary.npy"
    np.save(short, np.ones((1, 64), dtype=np.float32))
    with pytest.raises(DataFormatError, match="short_w_boundary.npy: the boundary has 64 values"):
        import_boundaries([W_FILES[0], short], IDENTITY, None, tmp_path / "o.npz")
    with pytest.raises(DataFormatError, match="missing.npy: boundary file not found"):
        import_boundaries([tmp_path / "missing.npy"], IDENTITY, None, tmp_path / "o.npz")
    with pytest.raises(ConfigError, match="given more than once"):
        import_boundaries([W_FILES[0], W_FILES[0]], IDENTITY, None, tmp_path / "o.npz")
