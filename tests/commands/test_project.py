"""latentnav project and latentnav edit --images on rendered demo faces (real images the generator never saw)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from latentnav.commands import edit
from latentnav.datamodules.demo_faces import generate
from latentnav.commands.project import main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Three rendered faces as 48 px PNGs (not the generator's 32 px: the reader resizes) in a folder."""
    folder = tmp_path_factory.mktemp("photos")
    images, _ = generate(3, seed=77, image_size=48)
    for i, im in enumerate(images):
        Image.fromarray(im).save(folder / f"face{i}.png")
    return folder


def test_project_a_folder_then_edit_the_latents(photos, tmp_path, capsys):
    out = tmp_path / "proj"
    assert main(["--images", json.dumps([str(photos)]), "--steps", "60", "--out", str(out),
                 "--accelerator", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "projected 3 image(s) into z" in printed and "mean PSNR" in printed
    saved = torch.load(out / "latents.pt", weights_only=True)
    assert saved["latents"].shape == (3, 64) and saved["space"] == "z" and len(saved["generator"]["sha256"]) == 64
    assert [Path(f).name for f in saved["files"]] == ["face0.png", "face1.png", "face2.png"]
    rows = (out / "projection.tsv").read_text().splitlines()
    assert rows[0] == "file\tpsnr_db\tssim" and len(rows) == 4
    psnr = [float(r.split("\t")[1]) for r in rows[1:]]
    assert min(psnr) > 16  # well above the mean latent's image (checked in the module's tests)
    pair = Image.open(out / "reconstructions" / "0001_face1.png")
    assert pair.size == (64, 32)  # input | reconstruction at the generator's 32 px
    # The edit command reads the projection's latents.
    directions = _smiling_directions(tmp_path)
    assert edit.main([str(directions), "--latents", str(out / "latents.pt"), "--attributes", "Smiling",
                      "--steps", "3", "--out", str(tmp_path / "edits"), "--accelerator", "cpu"]) == 0
    assert Image.open(tmp_path / "edits" / "Smiling.png").size[1] > 3 * 32 * 3
    # Latents of another generator, or of another space, are one line.
    other = dict(saved, generator=dict(saved["generator"], sha256="f" * 64, source="other.pt"))
    torch.save(other, tmp_path / "other.pt")
    capsys.readouterr()
    assert edit.main([str(directions), "--latents", str(tmp_path / "other.pt"), "--attributes", "Smiling",
                      "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "latents projected with generator other.pt (sha256 ffffffffffff)" in err and "Traceback" not in err
    torch.save(dict(saved, space="w"), tmp_path / "w.pt")
    assert edit.main([str(directions), "--latents", str(tmp_path / "w.pt"), "--attributes", "Smiling",
                      "--out", str(tmp_path / "x")]) == 2
    assert "latents are in w space, the directions in z space" in capsys.readouterr().err


def _smiling_directions(tmp_path):
    from latentnav.directions_file import write_directions
    from latentnav.generators import load_generator
    from latentnav.lightning_modules.annotator import load_annotator

    G, own = load_generator("demo"), load_annotator("demo")
    z = G.sample(400, seed=3)
    with torch.no_grad():
        logits = own.logits(G.synthesize(z))
    j = own.attributes.index("Smiling")
    w = torch.linalg.lstsq(torch.cat([z, torch.ones(len(z), 1)], 1), logits[:, j:j + 1]).solution[:-1, 0]
    return write_directions(tmp_path / "smile.npz", w[None], ["Smiling"], "lstsq", "z", G.identity)


def test_edit_your_own_photos_in_one_command(photos, tmp_path):
    directions = _smiling_directions(tmp_path)
    out = tmp_path / "edits"
    assert edit.main([str(directions), "--images", str(photos / "face0.png"), str(photos / "face2.png"),
                      "--attributes", "Smiling", "--steps", "3", "--project-steps", "30", "--judge", "demo_judge",
                      "--out", str(out), "--accelerator", "cpu"]) == 0
    strip = np.asarray(Image.open(out / "Smiling.png"))
    assert (out / "Smiling.gif").is_file() and (out / "projection" / "latents.pt").is_file()
    # The first column is the photo itself: the strip's first frame equals the cropped, resized input.
    from latentnav.images import load_square_image, to_uint8

    photo = to_uint8(load_square_image(photos / "face0.png", 32), 3)
    h, w = photo.shape[:2]
    top = 14  # labelled_rows' header
    assert np.array_equal(strip[top:top + h, 60:60 + w], photo)
    scores = (out / "Smiling_scores.tsv").read_text().splitlines()
    assert len(scores) == 1 + 2 * 3  # the photo column has no scores


def test_bad_images_are_one_line(photos, tmp_path, capsys):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    assert main(["--images", json.dumps([str(tmp_path / "broken.jpg")]), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "broken.jpg: unreadable image" in err and "Traceback" not in err
    assert main(["--images", json.dumps([str(tmp_path / "nothing_here")]), "--out", str(tmp_path / "o")]) == 2
    assert "nothing_here: no such image file or folder" in capsys.readouterr().err
    assert main(["--images", json.dumps([str(photos)]), "--space", "w+", "--out", str(tmp_path / "o")]) == 2
    assert "w+" in capsys.readouterr().err
    assert main(["--images", json.dumps([str(photos)]), "--crop_size", "400", "--out", str(tmp_path / "o")]) == 2
    assert "crop_size 400 exceeds the image size 48x48" in capsys.readouterr().err


def test_spawned_workers_are_refused_in_one_line(photos, tmp_path, capsys):
    """ddp_spawn hands only the model back to the launching process: the writer's results would be lost."""
    assert main(["--images", json.dumps([str(photos)]), "--out", str(tmp_path / "p"), "--accelerator", "cpu",
                 "--devices", "2", "--strategy", "ddp_spawn"]) == 2
    assert "strategy 'ddp_spawn'" in capsys.readouterr().err and not (tmp_path / "p").exists()


def test_fewer_images_than_processes_is_one_line(photos):
    from types import SimpleNamespace

    from latentnav.datamodules.image_files import ImageFilesDataModule
    from latentnav.errors import ConfigError

    dm = ImageFilesDataModule([str(photos)], 32)
    dm.trainer = SimpleNamespace(global_rank=1, world_size=4)
    with pytest.raises(ConfigError, match="3 image\\(s\\) on 4 processes; use at most 3 device"):
        dm.predict_dataloader()
    with pytest.raises(ConfigError, match="crop_size: expected a positive number"):
        ImageFilesDataModule([str(photos)], 32, crop_size=0)


class _Killed(Exception):
    pass


def _killed_after(batches: int):
    """A callback that stops the projection as the batch after ``batches`` finished ones ends (before the
    writer saves it: the writer is added after the Trainer's own callbacks)."""
    import pytorch_lightning as pl

    class Kill(pl.Callback):
        def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
            if batch_idx == batches:
                raise _Killed

    return Kill()


def _project_killed(photos, out, batches: int, steps: int = 20) -> None:
    from latentnav.commands.measuring import make_trainer
    from latentnav.commands.project import project_images

    trainer = make_trainer("cpu", inference_mode=False)
    trainer.callbacks.append(_killed_after(batches))
    with pytest.raises(_Killed):
        project_images([str(photos)], steps=steps, batch_size=1, out=str(out), trainer=trainer)


def test_a_killed_projection_resumes_where_it_stopped(photos, tmp_path, monkeypatch, capsys):
    from latentnav.lightning_modules.projection import Projection
    from latentnav.commands.measuring import make_trainer
    from latentnav.commands.project import project_images

    projected = []
    original = Projection.project
    monkeypatch.setattr(Projection, "project", lambda self, targets, start=None, rows=None: (
        projected.extend(torch.as_tensor(rows).tolist()), original(self, targets, start, rows))[1])
    _project_killed(photos, tmp_path / "p", batches=1)  # face0 done and saved, face1 lost with the kill
    assert projected == [0, 1] and len(list((tmp_path / "p" / ".parts").glob("b*.pt"))) == 1
    assert not (tmp_path / "p" / "latents.pt").exists()
    projected.clear()
    resumed = project_images([str(photos)], steps=20, batch_size=1, out=str(tmp_path / "p"),
                             trainer=make_trainer("cpu", inference_mode=False))
    assert projected == [1, 2] and "resuming a projection: 1 of 3 image(s) already done" in capsys.readouterr().out
    assert not (tmp_path / "p" / ".parts").exists() and len(list((tmp_path / "p" / "reconstructions").glob("*.png"))) == 3
    projected.clear()
    clean = project_images([str(photos)], steps=20, batch_size=1, out=str(tmp_path / "clean"),
                           trainer=make_trainer("cpu", inference_mode=False))
    assert projected == [0, 1, 2]
    assert torch.allclose(resumed["latents"], clean["latents"], atol=1e-5)
    assert torch.allclose(torch.load(tmp_path / "p" / "latents.pt", weights_only=True)["latents"], clean["latents"],
                          atol=1e-5)
    # Parts made with other settings are not reused: the next run starts afresh.
    _project_killed(photos, tmp_path / "q", batches=2)
    projected.clear()
    project_images([str(photos)], steps=21, batch_size=1, out=str(tmp_path / "q"),
                   trainer=make_trainer("cpu", inference_mode=False))
    assert projected == [0, 1, 2]


def _psnr(out: Path) -> dict[str, float]:
    rows = (out / "projection.tsv").read_text().splitlines()[1:]
    return {Path(r.split("\t")[0]).name: float(r.split("\t")[1]) for r in rows}


def test_two_processes_resume_a_killed_projection(photos, tmp_path):
    """A real 2-process DDP projection (Trainer defaults) resumes a one-process run killed with one image
    left, so one rank has nothing to do and must still finish with the other. What must hold on any
    processor: the done images are not projected again (their latents come back bit for bit from the
    parts), the files come back in order, no parts are left, and the image projected now is as good a
    projection as a clean one-process run's (PSNR within 1 dB). The latents themselves are not compared
    across process layouts: Adam turns last-bit differences of another kernel or thread split into
    visible ones on near-flat latent components (0.01 apart on one processor, 6e-7 on another)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    _project_killed(photos, tmp_path / "p2", batches=2)
    parts = [torch.load(p, weights_only=True) for p in sorted((tmp_path / "p2" / ".parts").glob("b*.pt"))]
    done = {int(r): z for part in parts for r, z in zip(part["rows"], part["latents"])}
    assert sorted(done) == [0, 1]
    results = {}
    for n in (1, 2):
        out = tmp_path / f"p{n}"
        cmd = [sys.executable, "-m", "latentnav", "project", "--images", str(photos), "--steps", "20",
               "--batch_size", "1", "--out", str(out), "--accelerator", "cpu", "--devices", str(n)] + (["--strategy", "ddp"] if n > 1 else [])
        finished = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert finished.returncode == 0, finished.stderr[-3000:]
        assert ("resuming a projection: 2 of 3 image(s) already done" in finished.stdout) == (n == 2)
        results[n] = torch.load(out / "latents.pt", weights_only=True)
        assert not (out / ".parts").exists()
        assert len(list((out / "reconstructions").glob("*.png"))) == 3
    names = [Path(f).name for f in results[2]["files"]]
    assert names == ["face0.png", "face1.png", "face2.png"] and results[1]["files"] == results[2]["files"]
    for row, z in done.items():  # kept, not projected again
        assert torch.equal(results[2]["latents"][row], z)
    one, two = _psnr(tmp_path / "p1"), _psnr(tmp_path / "p2")
    assert list(two) == names and abs(two["face2.png"] - one["face2.png"]) < 1.0 and min(two.values()) > 16


def test_stylegan2_projection_keeps_its_noise_maps_for_the_edit(tmp_path):
    """w+ projection into a small StyleGAN2: the optimised noise maps are saved with the latents, and
    the edit renders with them, so its alpha = 0 frame is the saved reconstruction."""
    from latentnav.directions_file import read_latents, write_directions
    from latentnav.generators import load_generator
    from tests.generators.test_stylegan2 import small_port_checkpoint

    ckpt = small_port_checkpoint(tmp_path)[0]
    G = load_generator(str(ckpt))
    photos = tmp_path / "photos"
    photos.mkdir()
    with torch.no_grad():
        images = G.synthesize(G.sample(2, seed=8))
    from latentnav.images import to_uint8

    for i, im in enumerate(to_uint8(images)):
        Image.fromarray(im).save(photos / f"s{i}.png")
    out = tmp_path / "proj"
    assert main(["--images", json.dumps([str(photos)]), "--generator", str(ckpt), "--steps", "15", "--out", str(out),
                 "--accelerator", "cpu"]) == 0
    found = read_latents(out / "latents.pt", G.identity, "w+")
    assert found["latents"].shape == (2, *G.latent_shape("w+")) and len(found["noise"]) == len(G.noise_maps())
    d = torch.randn(1, int(np.prod(G.latent_shape("w+"))), generator=torch.Generator().manual_seed(0))
    npz = write_directions(tmp_path / "d.npz", d, ["x"], "random", "w+", G.identity)
    assert edit.main([str(npz), "--latents", str(out / "latents.pt"), "--attributes", "x", "--steps", "3",
                      "--alpha", "-1", "1", "--scale", "1", "--out", str(tmp_path / "e"), "--generator", str(ckpt),
                      "--accelerator", "cpu"]) == 0
    strip = np.asarray(Image.open(tmp_path / "e" / "x.png").convert("RGB"))
    top, margin = 14, 60
    middle = strip[top:top + 32, margin + 32:margin + 64]  # sample 0, alpha 0
    reconstruction = np.asarray(Image.open(out / "reconstructions" / "0000_s0.png").convert("RGB"))[:, 32:]
    assert np.abs(middle.astype(int) - reconstruction.astype(int)).max() <= 1
    # The explorer renders such a row with its own noise maps too (and without them, another face).
    from latentnav.commands.explore import Explorer

    ex = Explorer([str(npz)], generator=str(ckpt))
    assert ex.add_rows(found["latents"], found["noise"]) == 0 and ex.add_rows(found["latents"][:1]) == 2
    face, _ = ex.render(0, [0.0], row=0)
    assert np.abs(face.astype(int) - reconstruction.astype(int)).max() <= 1
    assert np.abs(ex.render(0, [0.0], row=2)[0].astype(int) - reconstruction.astype(int)).max() > 8


def test_projection_compiles_the_synthesis_by_default_only_where_measured_to_pay(tmp_path, monkeypatch):
    """A CPU projection compiles a rosinality StyleGAN2's synthesis when it is 256 px or more and runs 300 or
    more steps per process (``bench/RESULTS.md``); not a smaller or shorter one, not on a GPU, not the DCGAN,
    and never when the user gave ``compile`` (null: eager)."""
    import latentnav.commands.project as project
    from latentnav.generators import load_generator
    from latentnav.generators.adapters import StyleGAN2Adapter
    from latentnav.generators.stylegan2 import StyleGAN2Config, StyleGAN2Generator
    from tests.generators.test_stylegan2 import small_port_checkpoint

    big = StyleGAN2Adapter(StyleGAN2Generator(StyleGAN2Config(size=256, style_dim=8, n_mlp=1, channels=(8,) * 7)),
                           w_avg=torch.zeros(8))
    assert project.compile_by_default(big, 300, on_cpu=True)
    assert not project.compile_by_default(big, 299, on_cpu=True)
    assert not project.compile_by_default(big, 10_000, on_cpu=False)
    monkeypatch.setenv("CXX", "no-such-compiler")
    assert not project.compile_by_default(big, 10_000, on_cpu=True)  # inductor would fail without one
    monkeypatch.delenv("CXX")
    assert not project.compile_by_default(load_generator("demo"), 10_000, on_cpu=True)

    ckpt = small_port_checkpoint(tmp_path)[0]
    G = load_generator(str(ckpt))
    from latentnav.images import to_uint8

    photos = tmp_path / "photos"
    photos.mkdir()
    with torch.no_grad():
        for i, im in enumerate(to_uint8(G.synthesize(G.sample(3, seed=2)))):
            Image.fromarray(im).save(photos / f"s{i}.png")
    compiled = []
    monkeypatch.setattr(StyleGAN2Adapter, "compile_synthesis", lambda self, backend="inductor": compiled.append(backend) or self)
    monkeypatch.setattr(project, "COMPILE_MIN_RESOLUTION", 32)
    monkeypatch.setattr(project, "COMPILE_MIN_STEPS", 4)  # 2 steps x 2 batches of 2 images
    project.project_images([str(photos)], str(ckpt), steps=2, batch_size=2, out=str(tmp_path / "a"))
    assert compiled == ["inductor"]
    project.project_images([str(photos)], str(ckpt), steps=2, batch_size=4, out=str(tmp_path / "b"))  # 2 steps: no
    project.project_images([str(photos)], str(ckpt), steps=2, batch_size=2, out=str(tmp_path / "c"),
                           generator_options={"compile": None})
    assert compiled == ["inductor"]
