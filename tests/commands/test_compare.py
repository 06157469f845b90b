"""Naming and comparison: directions whose effect is known are named and scored correctly."""

import json
import re
import os
import subprocess
import sys

import pytest
import torch

from latentnav.directions_file import write_directions
from latentnav.generators import load_generator
from latentnav.commands.compare import main
from latentnav.errors import ConfigError


def smiling_direction(G, judge, n=3000):
    """A least-squares Smiling direction (what a supervised method finds) and its negation's use."""
    z = G.sample(n, seed=7)
    with torch.no_grad():
        p = torch.cat([judge(G.synthesize(c)) for c in z.split(500)])
    y = p[:, judge.attributes.index("Smiling")]
    w = torch.linalg.lstsq(torch.cat([z, torch.ones(n, 1)], 1), y[:, None]).solution[:-1, 0]
    return torch.nn.functional.normalize(w, dim=0)


def test_comparison_names_a_known_direction_and_writes_everything(tmp_path, capsys):
    from latentnav.lightning_modules.annotator import load_annotator

    G, judge = load_generator("demo"), load_annotator("demo")
    smile = smiling_direction(G, judge)
    random = torch.nn.functional.normalize(torch.randn(1, 64, generator=torch.Generator().manual_seed(3)), dim=1)
    # Stored negated: naming must flip it back; the random direction is listed but controls little.
    a = write_directions(tmp_path / "a.npz", torch.stack([-smile, random[0]]), ["s", "r"], "method A", "z",
                         G.identity, seconds=1.5)
    b = write_directions(tmp_path / "b.npz", smile[None], ["smile"], "method B", "z", G.identity)
    out = tmp_path / "cmp"
    assert main(["--directions", json.dumps([str(a), str(b)]), "--num_samples", "60", "--out", str(out)]) == 0
    table = json.loads((out / "comparison.json").read_text())
    first = table[0]["directions"][0]
    assert first["named"] == "Smiling" and first["controls"] and first["purity"] >= 0.5
    assert table[0]["seconds"] == 1.5 and table[1]["seconds"] is None
    assert table[1]["controls"] == ["Smiling"]
    # Like with like: both methods flip only Smiling, so both averages are over {Smiling}: the same direction.
    assert table[0]["common_attributes"] == table[1]["common_attributes"] == ["Smiling"]
    assert table[0]["mean_off_target_common"] == pytest.approx(table[1]["mean_off_target_common"], abs=1e-9)
    text = (out / "comparison.md").read_text()
    assert "No held-out judge was given" in text
    low, high = table[0]["mean_off_target_common_ci"]
    assert low < table[0]["mean_off_target_common"] < high  # a 95 % bootstrap interval around the estimate
    # The same direction in both methods: the paired difference is exactly 0 in every replicate.
    assert "- Smiling: lowest method" in text and "[+0.000, +0.000] not significant" in text
    text = (out / "comparison.md").read_text()
    assert "| method A | 2 | Smiling | 1 |" in text
    assert (out / "effects_method_A.png").is_file() and (out / "names_method_B.tsv").is_file()
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert "comparison of 2 method(s)" in capsys.readouterr().out


def permuted_classifier(path):
    """The demo classifier with its attribute columns in reverse order: the same judge, other columns."""
    from latentnav.assets import resolve_source

    blob = torch.load(resolve_source("demo", "annotator"), weights_only=True)
    blob["settings"]["attributes"] = blob["settings"]["attributes"][::-1]
    for key in ("head.weight", "head.bias"):
        blob["state_dict"][key] = blob["state_dict"][key].flip(0)
    torch.save(blob, path)
    return path


def test_a_held_out_judge_scores_the_same_images_in_its_own_column_order(tmp_path):
    """With the annotator itself as the held-out judge (its columns stored in another order), every
    held-out figure equals the own judge's: same images, columns mapped by name."""
    from latentnav.lightning_modules.annotator import load_annotator

    G, own = load_generator("demo"), load_annotator("demo")
    smile = smiling_direction(G, own)
    random = torch.nn.functional.normalize(torch.randn(2, 64, generator=torch.Generator().manual_seed(3)), dim=1)
    a = write_directions(tmp_path / "a.npz", torch.cat([smile[None], random]), ["s", "r1", "r2"], "A", "z", G.identity)
    judge = permuted_classifier(tmp_path / "judge.pt")
    out = tmp_path / "cmp"
    assert main(["--directions", json.dumps([str(a)]), "--judge", str(judge), "--nuisance", "demo",
                 "--num_samples", "40", "--out", str(out)]) == 0
    (entry,) = json.loads((out / "comparison.json").read_text())
    # What else the edits change, at the equal-success step: AD, pixels, features, the renderer's factors.
    smile = entry["directions"][0]
    assert 0 < smile["ad"] < 1 and smile["pixel_change"] > 0 and smile["feature_distance"] > 0 and smile["sign"] == 1
    assert set(smile["nuisance"]) >= {"cx", "skin", "background_r"} and all(v >= 0 for v in smile["nuisance"].values())
    text = (out / "comparison.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| s | Smiling"))
    ci = r"(\d+\.\d+) \[(\d+\.\d+), (\d+\.\d+)\]"
    cells = re.search(rf"\| {ci} \| {ci} \| {ci} \| n/a \| (\w+) {ci} \|$", row).groups()
    # AD, pixels, features, (drift), largest nuisance move: each a value inside its 95 % interval
    for name, (value, low, high) in zip(("ad", "pixel_change", "feature_distance"),
                                        (cells[0:3], cells[3:6], cells[6:9])):
        assert float(low) <= float(value) <= float(high) and float(low) < float(high), name
        assert smile[name] == pytest.approx(float(value), abs=0.006) and smile[name + "_ci"][0] < smile[name + "_ci"][1]
    factor, value, low, high = cells[9], *map(float, cells[10:])
    assert smile["nuisance"][factor] == max(smile["nuisance"].values()) and low <= value <= high
    assert smile["nuisance_ci"][factor][0] == pytest.approx(low, abs=6e-4)
    assert smile["realism_drift"] is None  # this judge's features are 2,048 wide: drift is skipped, not faked
    assert entry["judge"]["controls"] == entry["controls"] == ["Smiling"]
    for mine, theirs in zip(entry["directions"], entry["judge"]["directions"]):
        assert theirs["purity"] == pytest.approx(mine["purity"], abs=1e-6)
        assert (theirs["off_target"] is None and mine["off_target"] is None) or theirs["off_target"] == pytest.approx(
            mine["off_target"], abs=1e-6)
    text = (out / "comparison.md").read_text()
    assert "Held-out judge: " in text and " ! |" not in text  # identical judges never disagree
    # A judge that lacks one of the annotator's attributes is one line.
    blob = torch.load(judge, weights_only=True)
    blob["settings"]["attributes"][0] = "Not_An_Attribute"
    torch.save(blob, tmp_path / "odd.pt")
    with pytest.raises(ConfigError, match="judge: .*no column for Young"):
        from latentnav.commands.compare import compare
        compare([str(a)], held_out_judge=str(tmp_path / "odd.pt"), num_samples=4)


def test_method_averages_are_over_the_attributes_every_method_flips():
    from latentnav.commands.comparison_report import like_with_like

    nan = float("nan")

    def method(targets, steps, offs, purities):
        return {"target": targets, "step": torch.tensor(steps, dtype=torch.float64),
                "off_target": torch.tensor(offs, dtype=torch.float64),
                "purity": torch.tensor(purities, dtype=torch.float64)}

    # A flips attributes 0 and 1 (1 is a hard one, large off-target change); B flips only 0, twice.
    a = method([0, 1], [1.0, 2.0], [0.05, 0.40], [0.6, 0.3])
    b = method([0, 0, 2], [1.5, 1.0, nan], [0.07, 0.03, nan], [0.4, 0.7, 0.2])
    common, means = like_with_like([a, b])
    assert common == [0]
    assert means == pytest.approx([0.05, 0.03])  # B's purest Smiling-like direction, not its first; A's 0.40 left out


def test_files_from_different_generators_are_refused(tmp_path, capsys):
    G = load_generator("demo")
    a = write_directions(tmp_path / "a.npz", torch.eye(2, 64), ["x", "y"], "A", "z", G.identity)
    b = write_directions(tmp_path / "b.npz", torch.eye(2, 64), ["x", "y"], "B", "z", dict(G.identity, sha256="f" * 64))
    assert main(["--directions", json.dumps([str(a), str(b)]), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "the files were made on different generators" in err and "ffffffffffff" in err
    assert main(["--directions", json.dumps([str(tmp_path / "missing.npz")]), "--out", str(tmp_path / "o")]) == 2
    assert "missing.npz: directions file not found" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="give at least one directions.npz"):
        from latentnav.commands.compare import compare
        compare([])
    with pytest.raises(ConfigError, match="replicates: expected a whole number >= 0, got -3"):
        compare([str(a)], replicates=-3)


def test_two_processes_give_the_same_comparison_as_one(tmp_path):
    """The comparison's passes are Trainer test loops: on 2 processes (ddp, gloo, the Trainer's defaults)
    the latents are sliced across ranks and the metrics summed, so comparison.json is the same."""
    from latentnav.lightning_modules.annotator import load_annotator
    from tests.distributed import REPO

    G, judge = load_generator("demo"), load_annotator("demo")
    smile = smiling_direction(G, judge)
    others = torch.nn.functional.normalize(torch.randn(2, 64, generator=torch.Generator().manual_seed(5)), dim=1)
    a = write_directions(tmp_path / "a.npz", torch.cat([smile[None], others]), ["s", "r1", "r2"], "A", "z", G.identity)
    common = ["--directions", json.dumps([str(a)]), "--num_samples", "41", "--batch_size", "8",  # 41: uneven slices
              "--judge", str(permuted_classifier(tmp_path / "judge.pt"))]
    assert main([*common, "--out", str(tmp_path / "one")]) == 0
    done = subprocess.run([sys.executable, "-m", "latentnav.commands.compare", *common, "--out", str(tmp_path / "two"),
                           "--devices", "2", "--strategy", "ddp", "--accelerator", "cpu"], cwd=tmp_path, text=True,
                          capture_output=True, env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "on 2 process(es)" in done.stdout
    one, two = (json.loads((tmp_path / d / "comparison.json").read_text())[0]["directions"] for d in ("one", "two"))
    assert [d["named"] for d in one] == [d["named"] for d in two] and one[0]["named"] == "Smiling"
    for x, y in zip(one, two):
        assert x["controls"] == y["controls"]
        assert x["purity"] == pytest.approx(y["purity"], abs=1e-6)
        assert (x["off_target"] is None and y["off_target"] is None) or x["off_target"] == pytest.approx(
            y["off_target"], abs=1e-6)
    one_judge, two_judge = (json.loads((tmp_path / d / "comparison.json").read_text())[0]["judge"]["directions"]
                            for d in ("one", "two"))
    for x, y in zip(one_judge, two_judge):
        assert x["purity"] == pytest.approx(y["purity"], abs=1e-6)


def test_w_plus_directions_are_compared_flattened(tmp_path):
    """A supervised w+ run writes (K, layers x 512)-style flattened rows; the comparison takes them (and a row
    of another size is one line)."""
    import math

    from latentnav.commands.compare import compare
    from latentnav.commands.measuring import make_trainer
    from tests.generators.test_stylegan2 import small_port_checkpoint

    ckpt = small_port_checkpoint(tmp_path)[0]
    G = load_generator(str(ckpt))
    size = math.prod(G.latent_shape("w+"))
    d = torch.randn(2, size, generator=torch.Generator().manual_seed(0))
    f = write_directions(tmp_path / "wplus.npz", d, ["a", "b"], "random", "w+", G.identity)
    out = compare([str(f)], generator=str(ckpt), num_samples=8, batch_size=8, replicates=0,
                  trainer=make_trainer("cpu"))
    assert out["results"][0]["space"] == "w+" and len(out["results"][0]["target"]) == 2
    bad = write_directions(tmp_path / "bad.npz", d[:, :-1], ["a", "b"], "random", "w+", G.identity)
    with pytest.raises(ConfigError, match=f"directions have size {size - 1}, the generator's w\\+ latents have {size}"):
        compare([str(bad)], generator=str(ckpt), num_samples=8, trainer=make_trainer("cpu"))
