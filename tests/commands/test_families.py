"""Every command on every generator family's golden fixture, end to end at tiny sizes: the supervised fit (its
annotation job included), the unsupervised fit, SeFa, GANSpace, edit, compare, project and the explorer's render.
The fixtures are the files the original code wrote (NVIDIA pickles, a TensorFlow-era pickle, genforce / BigGAN /
ProgGAN state dicts); class-conditional ones run with ``--classes``."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from latentnav.commands import compare, edit, ganspace, project, sefa
from latentnav.directions_file import read_directions, read_latents
from latentnav.generators import load_generator

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]

# (fixture, space the methods work in, classes for a conditional generator)
FAMILIES = [
    pytest.param("stylegan2_ada_skip.pkl", "w", None, id="stylegan2-ada"),
    pytest.param("stylegan2_ada_cond.pkl", "w", [1, 3], id="stylegan2-ada-conditional"),
    pytest.param("stylegan3_t.pkl", "w", None, id="stylegan3-t"),
    pytest.param("tf_stylegan2_skip.pkl", "w", None, id="tensorflow-stylegan2"),
    pytest.param("genforce_pggan.pth", "z", None, id="genforce-pggan"),
    pytest.param("genforce_stylegan.pth", "w", None, id="genforce-stylegan"),
    pytest.param("genforce_stylegan2.pth", "w", None, id="genforce-stylegan2"),
    pytest.param("biggan_deep-pytorch_model.bin", "z", [0, 4], id="biggan-deep"),
    pytest.param("biggan_pytorch-G_ema.pth", "z", [2], id="biggan-pytorch"),
    # 1024 px: about 7 s an image on a CPU core, so its chain draws the fewest images it can (slow tier)
    pytest.param("proggan_1024.pth", "z", None, id="proggan", marks=[pytest.mark.slow, pytest.mark.timeout(1800)]),
]


@pytest.fixture
def fixture_path(request, tmp_path):
    name = request.node.callspec.params["name"]
    if name == "proggan_1024.pth":  # fixed-width: its weights come from the seeded stream, not a shipped file
        from latentnav.generators.proggan import seeded_state_dict

        torch.save(seeded_state_dict(0), tmp_path / name)
        return tmp_path / name
    return FIXTURES / name


def _fit(tmp_path, name: str, config: dict):
    from latentnav.commands.cli import LatentNavCLI

    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return LatentNavCLI(args=["fit", "--config", str(path), *QUIET])


@pytest.mark.parametrize("name, space, classes", FAMILIES)
def test_every_command_runs_on_the_family(fixture_path, name, space, classes, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    G = load_generator(fixture_path, classes=classes)
    options = {"classes": classes} if classes else {}
    with_classes = ["--classes", *map(str, classes)] if classes else []
    size = int(np.prod(G.latent_shape(space)))
    few = G.resolution > 256  # ProgGAN: one image where the others draw several
    n = (lambda count: 1 if few else count)
    trainer = {"max_steps": 1, "accelerator": "cpu", "devices": 1, "logger": False, "num_sanity_val_steps": 0,
               "limit_val_batches": 1, "default_root_dir": "runs"}

    # Supervised: the annotation job labels the family's samples, then one optimiser step.
    cli = _fit(tmp_path, "supervised", {
        "seed_everything": 0,
        "model": {"class_path": "latentnav.lightning_modules.supervised_directions.SupervisedDirections"},
        "data": {"class_path": "latentnav.datamodules.annotated_latents.AnnotatedLatentsDataModule",
                 "init_args": {"generator": str(fixture_path), "generator_options": options, "annotator": "demo",
                               "attributes": ["Smiling", "Male"], "space": space, "num_train": n(8), "num_val": n(4),
                               "batch_size": n(8), "annotate_batch_size": n(8), "cache_dir": str(tmp_path / "store")}},
        "trainer": trainer})
    assert cli.trainer.global_step == 1 and torch.isfinite(cli.model.directions()).all()
    assert json.loads((tmp_path / "store" / "train" / "manifest.json").read_text())["key"]

    # Unsupervised (Voynov & Babenko): one step of directions and reconstructor on pairs of the family's images.
    cli = _fit(tmp_path, "unsupervised", {
        "seed_everything": 0,
        "model": {"class_path": "latentnav.lightning_modules.unsupervised_directions.UnsupervisedDirections",
                  "init_args": {"generator": str(fixture_path), "generator_options": options, "space": space,
                                "num_directions": 3, "reconstructor_width": 4}},
        "data": {"class_path": "latentnav.datamodules.latent_shifts.LatentShiftsDataModule",
                 "init_args": {"latent_dim": size, "batch_size": n(2), "steps_per_epoch": 1, "num_val": n(2)}},
        "trainer": trainer})
    assert cli.trainer.global_step == 1

    common = ["--generator", str(fixture_path), *with_classes]
    assert sefa.main([*common, "--space", space, "--num_directions", "2", "--out", "sefa.npz", "--device", "cpu"]) == 0
    assert ganspace.main([*common, "--space", space, "--num_directions", "2", "--num_samples", str(2 if few else 6),
                          "--batch_size", str(n(3)), "--out", "ganspace.npz", "--accelerator", "cpu"]) == 0
    found = read_directions(tmp_path / "sefa.npz")
    assert found["directions"].shape == (2, size) and found["generator"]["sha256"] == G.identity["sha256"]

    assert edit.main(["sefa.npz", "--attributes", "sefa00", "--seeds", *(["0"] if few else ["0", "1"]),
                      "--steps", "3", "--out", "edits", "--accelerator", "cpu"]) == 0
    strip = np.asarray(Image.open(tmp_path / "edits" / "sefa00.png"))
    assert strip.ndim == 3 and strip.std() > 1  # an image, not a blank frame

    assert compare.main(["--directions", json.dumps(["sefa.npz", "ganspace.npz"]), "--num_samples", str(n(4)),
                         "--replicates", "0", "--batch_size", str(n(4)), "--out", "cmp", "--accelerator", "cpu"]) == 0
    assert "SeFa" in (tmp_path / "cmp" / "comparison.md").read_text()

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(photos / "a.png")
    assert project.main(["--images", str(photos), *common, "--space", space, "--steps", str(n(2)), "--batch_size", "1",
                         "--out", "projection", "--accelerator", "cpu"]) == 0
    assert read_latents(tmp_path / "projection" / "latents.pt")["latents"].shape[1:] == G.latent_shape(space)

    from latentnav.commands.explore import Explorer

    image, probabilities = Explorer([str(tmp_path / "sefa.npz")], judge="demo").render(0, [1.5, 0.0], seed=3)
    assert image.shape == (G.resolution, G.resolution, 3) and image.dtype == np.uint8
