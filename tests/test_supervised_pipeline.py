"""The supervised demo end to end on the bundled generator and classifier: λ = 0, then λ > 0
compared with it; the tables, directions.npz and the edit command."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from latentnav.callbacks.direction_report import DirectionReport
from latentnav.directions_file import read_directions
from latentnav.commands import edit
from latentnav.commands.cli import LatentNavCLI
from latentnav.lightning_modules.edit_metrics import cosine_matrix

REPO = Path(__file__).resolve().parents[1]


def run(config, tmp_path, *extra):
    common = ["--data.init_args.cache_dir", str(tmp_path / "cache"), "--trainer.enable_progress_bar", "false",
              "--trainer.enable_model_summary", "false"]
    cli = LatentNavCLI(args=["fit", "--config", str(REPO / "configs" / "supervised" / config), *common, *extra])
    report = next(c for c in cli.trainer.callbacks if isinstance(c, DirectionReport))
    return cli, report.results


def both_runs(tmp_path_factory, *extra):
    tmp_path = tmp_path_factory.mktemp("supervised")
    import os

    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        zero_cli, _ = run("demo_no_ortho.yaml", tmp_path, *extra)
        cli, results = run("demo.yaml", tmp_path, *extra)
    finally:
        os.chdir(old)
    return tmp_path, zero_cli, cli, results


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Both configs at a reduced scale (4,000 latents, 8 epochs, 40 edited samples): the outputs, the
    edit command and the cosines; the off-target claim needs the main job's scale (slow tier below)."""
    return both_runs(tmp_path_factory, "--data.init_args.num_train", "4000", "--trainer.max_epochs", "8",
                     "--data.init_args.num_val", "256", "--trainer.callbacks.num_samples", "40",
                     "--trainer.callbacks.judge", "demo_judge", "--trainer.callbacks.replicates", "50")


def test_regulariser_disentangles(runs):
    tmp_path, _, cli, results = runs
    this, zero = results["this run"], results["linear map, lambda=0 (squared)"]
    names = this["names"]
    cos_zero, cos_this = cosine_matrix(zero["directions"]), cosine_matrix(this["directions"])
    for a, b in (("Male", "Wearing_Lipstick"), ("Young", "Gray_Hair"), ("Male", "No_Beard")):
        assert abs(cos_zero[names.index(a), names.index(b)]) >= 0.3, (a, b)  # entangled without it
    assert (cos_this - torch.eye(len(names))).abs().max() <= 0.10  # near-orthogonal with it


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_regulariser_cuts_off_target_change_at_the_main_jobs_scale(tmp_path_factory):
    """The README's claim, at the main job's scale (20,000 latents, 15 epochs, 400 edited samples; about
    7 minutes): on the bundled generator the gain is about 10 %, which smaller runs do not resolve."""
    _, _, _, results = both_runs(tmp_path_factory)
    from latentnav.callbacks.direction_report import common_flipped, common_mean

    common = common_flipped(results)  # like with like: the attributes both runs flip
    this, zero = results["this run"], results["linear map, lambda=0 (squared)"]
    assert common_mean(this, common)[0] < common_mean(zero, common)[0]


def test_outputs_of_a_run(runs):
    tmp_path, _, cli, _ = runs
    log_dir = tmp_path / cli.trainer.log_dir
    report = (log_dir / "report.md").read_text()
    assert "## Cosine of the Young direction with the others" in report
    assert "| attribute | this run | linear map, lambda=0 (squared) |" in report
    assert "## One edit along Young" in report and "## Summary at equal target success" in report
    # Both judges, like with like, with intervals and the paired difference to this run.
    assert "By the own judge" in report and "By the held-out judge" in report and "demo_judge.pt" in report
    assert "averaged over the attributes every run flips (" in report
    assert re.search(r"\| linear map, lambda=0 \(squared\) \| 0\.\d{3} \[0\.\d{3}, 0\.\d{3}\] \| [+-]0\.\d{3} \[", report)
    # What else each edit changes, by the comparison's protocol: AD, pixels, features, drift, nuisance.
    assert "## What else each edit changes" in report and "### linear map, lambda=0 (squared)" in report
    ci = r"\d+\.\d+ \[\d+\.\d+, \d+\.\d+\]"
    rows = [line for line in report.split("## What else each edit changes")[1].split("## Per direction")[0].splitlines()
            if line.startswith("| Smiling |")]
    assert len(rows) == 4 and all(re.fullmatch(rf"\| Smiling \| {ci} \| {ci} \| {ci} \| {ci} \| \w+ {ci} \|", r)
                                  for r in rows), rows
    for name in ("cosines.png", "edit_grid.png", "directions.npz"):
        assert (log_dir / name).is_file(), name
    found = read_directions(log_dir / "directions.npz")
    assert found["directions"].shape == (12, 64) and found["latent_space"] == "z"
    assert found["generator"]["source"].endswith("demo_generator.pt") and len(found["generator"]["sha256"]) == 64
    assert torch.allclose(found["directions"].norm(dim=1), torch.ones(12), atol=1e-5)


def test_edit_command(runs, tmp_path, capsys):
    run_dir, _, cli, _ = runs
    npz = str(run_dir / cli.trainer.log_dir / "directions.npz")
    assert edit.main([npz, "--attributes", "Young", "Smiling", "--seeds", "0", "1", "--steps", "5",
                      "--out", str(tmp_path / "edits")]) == 0
    from PIL import Image

    strip = Image.open(tmp_path / "edits" / "Young.png")
    assert strip.size[0] > 5 * 32 * 3 and strip.size[1] > 2 * 32 * 3
    assert Image.open(tmp_path / "edits" / "Smiling.gif").n_frames == 8  # 5 steps there and 3 back
    assert edit.main([npz, "--attributes", "Male", "--keep", "Wearing_Lipstick", "--seeds", "0", "--steps", "3",
                      "--out", str(tmp_path / "edits")]) == 0
    assert (tmp_path / "edits" / "Male_keep_Wearing_Lipstick.png").is_file()
    assert edit.main([npz, "--attributes", "Male", "--keep", "Wearing_Lipstick", "--guided", "--seeds", "0",
                      "--steps", "3", "--alpha", "-1", "1", "--out", str(tmp_path / "edits")]) == 0
    assert (tmp_path / "edits" / "Male_keep_Wearing_Lipstick_guided.gif").is_file()
    capsys.readouterr()
    assert edit.main([npz, "--attributes", "Smilng", "--out", str(tmp_path / "edits")]) == 2
    assert "attribute 'Smilng' is not in the directions file; it has Bald" in capsys.readouterr().err
    torch.save(torch.zeros(2, 63), tmp_path / "bad.pt")
    assert edit.main([npz, "--attributes", "Male", "--latents", str(tmp_path / "bad.pt"), "--out", str(tmp_path)]) == 2
    assert "z latent: expected shape (batch, 64), got (2, 63)" in capsys.readouterr().err
    np.savez(tmp_path / "other.npz", directions=np.ones((1, 64), np.float32), names=np.array(["Male"]),
             method=np.array("x"), latent_space=np.array("z"),
             generator=np.array('{"sha256": "0000000000000000", "source": "elsewhere.pt"}'))
    assert edit.main([str(tmp_path / "other.npz"), "--attributes", "Male", "--generator", "demo"]) == 2
    assert "was made for generator elsewhere.pt (sha256 000000000000)" in capsys.readouterr().err
