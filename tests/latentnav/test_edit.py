"""The edit command: generators loaded as the directions file recorded them (class_path included), pixels."""

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from latentnav.directions_file import write_directions
from latentnav.generators import load_generator
from latentnav.generators.loading import resolve_device
from latentnav.edit import main
from latentnav.images import to_uint8
from latentnav.lightning_modules.edit_rendering import render_edits
from latentnav.errors import ConfigError
from tests.generators.tiny import TinyGenerator

CLASS_PATH = "tests.generators.tiny.TinyGenerator"
INIT_ARGS = {"z_dim": 8, "resolution": 16}
RES = 16


def save_planted_tiny(path, seed: int = 0) -> torch.Tensor:
    """A ``TinyGenerator`` state dict (z (B, 8) -> images (B, 3, 16, 16) in [-1, 1], Linear + BN + tanh) whose
    Linear weight W (768, 8) is block-diagonal: red pixels read z[0:4] only, green and blue z[4:8] only,
    with singular values 8 x (2, 1.75, 1.5, 1.25 | 1.9, 1.6, 1.4, 1.1) (all distinct, so SeFa and GANSpace
    have a unique answer). Returns V (8, 8): right singular vectors as columns, by descending singular value."""
    g = torch.Generator().manual_seed(seed)
    net = TinyGenerator(**INIT_ARGS)
    blocks = [(slice(0, RES * RES), slice(0, 4), [2.0, 1.75, 1.5, 1.25]),
              (slice(RES * RES, 3 * RES * RES), slice(4, 8), [1.9, 1.6, 1.4, 1.1])]
    w, v, s = torch.zeros(3 * RES * RES, 8), torch.zeros(8, 8), []
    for rows, cols, values in blocks:
        u, _ = torch.linalg.qr(torch.randn(rows.stop - rows.start, 4, generator=g))
        q, _ = torch.linalg.qr(torch.randn(4, 4, generator=g))
        # x 8: u's entries are ~ 1/sqrt(256 or 512), so pre-activations are O(1): tanh neither flat nor saturated.
        w[rows, cols] = u @ torch.diag(torch.tensor(values)) @ q.T * 8
        v[cols, cols] = q
        s += values
    with torch.no_grad():
        net.fc.weight.copy_(w)
        net.fc.bias.zero_()
    torch.save(net.state_dict(), path)
    return v[:, torch.tensor(s).argsort(descending=True)]


def planted_setup(tmp_path):
    """The planted generator loaded with class_path, and a directions.npz on it: ``red`` moves z[0]
    (red pixels only), ``green_blue`` moves z[5] (green and blue pixels only)."""
    weights = tmp_path / "tiny.pt"
    save_planted_tiny(weights)
    G = load_generator(weights, class_path=CLASS_PATH, init_args=INIT_ARGS)
    directions = torch.eye(8)[[0, 5]]
    npz = write_directions(tmp_path / "planted.npz", directions, ["red", "green_blue"], "planted", "z", G.identity)
    return G, weights, npz


def test_render_edits_pixels(tmp_path):
    """alpha = 0 is the unedited image; +alpha differs from -alpha exactly where the direction moves pixels."""
    G, _, _ = planted_setup(tmp_path)
    latents = G.sample(3, seed=1)
    w = G.module.fc.weight  # (768, 8); BN (eval, default statistics) and tanh are monotone per pixel
    for direction, moved in ((torch.eye(8)[0], 0), (torch.eye(8)[5], slice(1, 3))):
        frames = render_edits(G, latents, direction, np.array([-2.0, 0.0, 2.0]), "z")  # (3, B, 3, R, R)
        assert frames.shape == (3, 3, 3, RES, RES)
        assert torch.equal(frames[1], G.synthesize(latents))
        effect = (w @ direction).view(3, RES, RES).expand(3, 3, RES, RES)  # (B, 3, R, R): pixel sensitivity
        change = (frames[2] - frames[0]).abs()
        assert torch.all(change[effect.abs() > 1e-3] > 0)
        assert torch.equal(change[effect == 0], torch.zeros_like(change[effect == 0]))
        assert change[:, moved].mean() > 0.05 and (effect[:, moved] != 0).all()


def test_edit_command_reuses_the_recorded_class_path(tmp_path, capsys):
    """No class_path on the command line: the options recorded in the directions file load the generator."""
    G, weights, npz = planted_setup(tmp_path)
    out = tmp_path / "edits"
    assert main([str(npz), "--attributes", "red", "green_blue", "--seeds", "0", "1", "--steps", "3",
                 "--alpha", "-3", "3", "--scale", "1", "--accelerator", "cpu", "--out", str(out)]) == 0
    unedited = to_uint8(G.synthesize(torch.cat([G.sample(1, seed=s) for s in (0, 1)])), 1)  # (B, R, R, 3)
    for name, moved, still in (("red", [0], [1, 2]), ("green_blue", [1, 2], [0])):
        grid = np.asarray(Image.open(out / f"{name}.png").convert("RGB"))[14:, 60:]  # below the labels
        assert grid.shape == (2 * RES, 3 * RES, 3)
        cells = grid.reshape(2, RES, 3, RES, 3).transpose(0, 2, 1, 3, 4)  # (sample, alpha, R, R, RGB)
        assert np.array_equal(cells[:, 1], unedited)  # alpha = 0
        assert np.array_equal(cells[:, 0][..., still], cells[:, 2][..., still])
        assert (cells[:, 0][..., moved] != cells[:, 2][..., moved]).mean() > 0.5
    # A moved copy of the weights: --generator points at it, the recorded options still apply.
    shutil.copy(weights, tmp_path / "moved.pt")
    assert main([str(npz), "--attributes", "red", "--seeds", "0", "--steps", "3", "--generator",
                 str(tmp_path / "moved.pt"), "--out", str(out)]) == 0
    save_planted_tiny(tmp_path / "other.pt", seed=1)
    capsys.readouterr()
    assert main([str(npz), "--attributes", "red", "--generator", str(tmp_path / "other.pt"), "--out", str(out)]) == 2
    assert f"{npz} was made for generator {weights} (sha256 " in capsys.readouterr().err


def test_device_option(tmp_path, capsys):
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="device: expected auto, cpu, cuda or cuda:N, got 'gpu'"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        _, _, npz = planted_setup(tmp_path)
        assert main([str(npz), "--attributes", "red", "--accelerator", "cuda", "--out", str(tmp_path)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("latentnav: error: trainer (accelerator 'cuda', devices 1, strategy 'auto', precision "
                              "'32-true'): `CUDAAccelerator` can not run") and "\n" not in err


def test_two_processes_render_the_same_edit_as_one(tmp_path):
    """Rendering is a Trainer predict loop: on 2 processes (ddp, gloo, the Trainer's defaults) each renders
    its rows (3 latents: an uneven split; batch 1: several steps) and rank 0 writes the same files."""
    import os
    import subprocess
    import sys

    from tests.distributed import REPO

    _, _, npz = planted_setup(tmp_path)
    common = [str(npz), "--attributes", "red", "--seeds", "0", "1", "2", "--steps", "3", "--batch-size", "1",
              "--accelerator", "cpu"]
    assert main([*common, "--out", str(tmp_path / "one")]) == 0
    done = subprocess.run([sys.executable, "-m", "latentnav.edit", *common, "--out", str(tmp_path / "two"),
                           "--devices", "2", "--strategy", "ddp"], cwd=tmp_path, text=True, capture_output=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("wrote ") == 1  # rank 0 only
    one, two = (np.asarray(Image.open(tmp_path / d / "red.png").convert("RGB")) for d in ("one", "two"))
    assert one.shape == two.shape and np.array_equal(one, two)
    rows = one[14:, 60:].reshape(3, -1)
    assert not np.array_equal(rows[0], rows[1])  # rows are different latents, so their order is checked
    gifs = [Image.open(tmp_path / d / "red.gif") for d in ("one", "two")]
    assert gifs[0].n_frames == gifs[1].n_frames == 4  # 3 steps there, 1 back
    for i in range(4):
        gifs[0].seek(i), gifs[1].seek(i)
        assert np.array_equal(np.asarray(gifs[0].convert("RGB")), np.asarray(gifs[1].convert("RGB")))
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["red.gif", "red.png"]  # no parts left
