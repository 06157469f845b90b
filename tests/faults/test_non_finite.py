"""Silent wrong output (issue 22, item 8): a generator that renders NaN for some latents is one line naming
those latents' indices in the edit, the annotation job and the evaluation, never black frames or NaN in the
annotation store."""

import json

import pytest
import torch

from latentnav.errors import NonFiniteOutput
from latentnav.generators.base import check_finite
from tests.generators.tiny import BrokenTinyGenerator

BROKEN = {"class_path": "tests.generators.tiny.BrokenTinyGenerator", "init_args": {"z_dim": 8, "resolution": 8}}


def test_check_finite_names_the_latent_indices():
    images = torch.zeros(4, 3, 2, 2)
    images[1, 0, 0, 0], images[3, 2, 1, 1] = float("nan"), float("inf")
    with pytest.raises(NonFiniteOutput, match=r"^edit: .* latent\(s\) 11, 13; "):
        check_finite(images, torch.arange(10, 14), "edit")
    check_finite(images[[0, 2]], [10, 12], "edit")  # finite: nothing
    frames = torch.zeros(3, 4, 3, 2, 2)  # (alphas, rows, ...): a row is bad if any of its frames is
    frames[2, 0, 1, 1, 1] = float("nan")
    with pytest.raises(NonFiniteOutput, match=r"latent\(s\) 7; "):
        check_finite(frames, [7, 8, 9, 10], "edit", sample_dims=2)
    many = torch.full((30, 3, 1, 1), float("nan"))
    with pytest.raises(NonFiniteOutput, match="0, 1, 2, 3, 4, 5, 6, 7, 8, 9 and 20 more"):
        check_finite(many, range(30), "x")


@pytest.fixture
def broken(tmp_path):
    torch.manual_seed(0)
    torch.save({"state_dict": BrokenTinyGenerator(8, 8).state_dict()}, tmp_path / "broken.pt")
    return tmp_path / "broken.pt"


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("latentnav: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    return lines[0]


def test_an_edit_through_a_broken_generator_is_one_line(broken, tmp_path, capsys):
    from latentnav.commands.edit import main
    from latentnav.directions_file import write_directions
    from latentnav.generators import load_generator

    G = load_generator(str(broken), **BROKEN)
    seeds = range(12)
    z = torch.cat([G.sample(1, seed=s) for s in seeds])
    expected = [i for i in seeds if z[i, 0] > 0]
    assert 0 < len(expected) < len(seeds)
    npz = write_directions(tmp_path / "d.npz", torch.eye(8)[[1]], ["x"], "planted", "z", G.identity)
    # alpha along z[1] leaves z[0] alone: the same latents render NaN in every frame
    code = main([str(npz), "--attributes", "x", "--seeds", *map(str, seeds), "--steps", "3", "--out",
                 str(tmp_path / "e"), "--accelerator", "cpu", "--generator_options", json.dumps(BROKEN)])
    line = _one_line(capsys.readouterr().err)
    assert code == 2 and f"latent(s) {', '.join(map(str, expected))};" in line and line.startswith("latentnav: error: edit:")
    assert not (tmp_path / "e" / "x.png").exists()


def test_the_annotation_job_refuses_to_store_nan(broken, tmp_path, capsys):
    from latentnav.commands.tools import annotate_main

    code = annotate_main(["--generator", str(broken), "--generator_options", json.dumps(BROKEN), "--num_train", "64",
                          "--num_val", "16", "--annotate_batch_size", "16", "--shard_size", "16",
                          "--cache_dir", str(tmp_path / "cache"), "--attributes", "[Smiling]"])
    line = _one_line(capsys.readouterr().err)
    assert code == 2 and "annotation: the generator's output is NaN or inf for latent(s)" in line
    assert not list((tmp_path / "cache").rglob("manifest.json")) and not list((tmp_path / "cache").rglob("shard_*"))
