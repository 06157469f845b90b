"""The edit command: the recorded generator loaded with the user's options (class_path repeated with
--generator_options, never taken from the file), pixels, and the frames' labels by the own annotator and a
held-out judge."""

import json

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from latentnav.callbacks.edit_writer import frame_label, short_probability
from latentnav.directions_file import write_directions
from latentnav.generators import load_generator
from latentnav.generators.loading import resolve_device
from latentnav.commands.edit import main
from latentnav.images import to_uint8
from latentnav.lightning_modules.annotator import FORMAT, load_annotator
from latentnav.lightning_modules.backbones import build_backbone
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


OPTIONS = ["--generator_options", json.dumps({"class_path": CLASS_PATH, "init_args": INIT_ARGS})]


def test_edit_command_loads_the_recorded_file_with_the_users_class_path(tmp_path, capsys):
    """The directions file records class_path and init_args: without them on the command line, one line
    says what to pass (nothing is built); with --generator_options the recorded file loads."""
    G, weights, npz = planted_setup(tmp_path)
    out = tmp_path / "edits"
    common = [str(npz), "--attributes", "red", "green_blue", "--seeds", "0", "1", "--steps", "3",
              "--alpha", "-3", "3", "--scale", "1", "--accelerator", "cpu", "--out", str(out)]
    capsys.readouterr()
    assert main(common) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a directions file cannot choose code to run" in err
    assert f"--generator_options '{json.dumps({'class_path': CLASS_PATH, 'init_args': INIT_ARGS}, sort_keys=True)}'" in err
    assert not out.exists()
    assert main([*common, *OPTIONS]) == 0
    unedited = to_uint8(G.synthesize(torch.cat([G.sample(1, seed=s) for s in (0, 1)])), 1)  # (B, R, R, 3)
    for name, moved, still in (("red", [0], [1, 2]), ("green_blue", [1, 2], [0])):
        grid = np.asarray(Image.open(out / f"{name}.png").convert("RGB"))[14:, 60:]  # below the labels
        assert grid.shape == (2 * RES, 3 * RES, 3)
        cells = grid.reshape(2, RES, 3, RES, 3).transpose(0, 2, 1, 3, 4)  # (sample, alpha, R, R, RGB)
        assert np.array_equal(cells[:, 1], unedited)  # alpha = 0
        assert np.array_equal(cells[:, 0][..., still], cells[:, 2][..., still])
        assert (cells[:, 0][..., moved] != cells[:, 2][..., moved]).mean() > 0.5
    # A moved copy of the weights: --generator points at it (same sha256), with the same options.
    shutil.copy(weights, tmp_path / "moved.pt")
    assert main([str(npz), "--attributes", "red", "--seeds", "0", "--steps", "3", "--generator",
                 str(tmp_path / "moved.pt"), *OPTIONS, "--out", str(out)]) == 0
    save_planted_tiny(tmp_path / "other.pt", seed=1)
    capsys.readouterr()
    assert main([str(npz), "--attributes", "red", "--generator", str(tmp_path / "other.pt"), *OPTIONS,
                 "--out", str(out)]) == 2
    assert f"{npz} was made for generator {weights} (sha256 " in capsys.readouterr().err


def test_device_option(tmp_path, capsys):
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="device: expected auto, cpu, cuda or cuda:N, got 'gpu'"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        _, _, npz = planted_setup(tmp_path)
        assert main([str(npz), "--attributes", "red", *OPTIONS, "--accelerator", "cuda", "--out", str(tmp_path)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("latentnav: error: trainer (accelerator 'cuda', devices 1, strategy 'auto', precision "
                              "'32-true'): `CUDAAccelerator` can not run") and "\n" not in err


def test_two_processes_render_the_same_edit_as_one(tmp_path):
    """Rendering is a Trainer predict loop: on 2 processes (ddp, gloo, the Trainer's defaults) each renders
    its rows (3 latents: an uneven split; batch 1: several steps) and scores them (--judge), and rank 0
    writes the same files: the labelled strip, the GIF and the scores in row order."""
    import os
    import subprocess
    import sys

    from tests.distributed import REPO

    G, _, _ = planted_setup(tmp_path)
    # The planted "red" direction under a name both classifiers have a column for.
    npz = write_directions(tmp_path / "smiling.npz", torch.eye(8)[[0]], ["Smiling"], "planted", "z", G.identity)
    common = [str(npz), "--attributes", "Smiling", "--seeds", "0", "1", "2", "--steps", "3", "--batch-size", "1",
              "--accelerator", "cpu", "--judge", "demo_judge", *OPTIONS]
    assert main([*common, "--out", str(tmp_path / "one")]) == 0
    done = subprocess.run([sys.executable, "-m", "latentnav.commands.edit", *common, "--out", str(tmp_path / "two"),
                           "--devices", "2", "--strategy", "ddp"], cwd=tmp_path, text=True, capture_output=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("wrote ") == 1  # rank 0 only
    assert done.stdout.count("Smiling: mean p(Smiling) at alpha -6 -> +6: own ") == 1
    one, two = (np.asarray(Image.open(tmp_path / d / "Smiling.png").convert("RGB")) for d in ("one", "two"))
    assert one.shape == two.shape and np.array_equal(one, two)
    rows = one[14:, 60:].reshape(3, -1)
    assert not np.array_equal(rows[0], rows[1])  # rows are different latents, so their order is checked
    gifs = [Image.open(tmp_path / d / "Smiling.gif") for d in ("one", "two")]
    assert gifs[0].n_frames == gifs[1].n_frames == 4  # 3 steps there, 1 back
    for i in range(4):
        gifs[0].seek(i), gifs[1].seek(i)
        assert np.array_equal(np.asarray(gifs[0].convert("RGB")), np.asarray(gifs[1].convert("RGB")))
    tables = [(tmp_path / d / "Smiling_scores.tsv").read_text() for d in ("one", "two")]
    assert tables[0] == tables[1]
    values = np.array([line.split("\t")[2:] for line in tables[0].splitlines()[1:]], dtype=float)  # (3 x 3, 2)
    assert values.shape == (9, 2) and len(np.unique(values[:, 1])) > 1  # scores differ by sample and alpha
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["Smiling.gif", "Smiling.png",
                                                                    "Smiling_scores.tsv"]  # no parts left


@pytest.fixture(scope="module")
def demo_directions(tmp_path_factory):
    """Least-squares Smiling and Male directions on the demo generator, fitted to the demo annotator's
    probabilities (what a supervised method finds; the held-out judge had no part in them)."""
    G, own = load_generator("demo"), load_annotator("demo")
    z = G.sample(1000, seed=7)
    with torch.no_grad():
        p = torch.cat([own(G.synthesize(c)) for c in z.split(500)])
    columns = [own.attributes.index(a) for a in ("Smiling", "Male")]
    w = torch.linalg.lstsq(torch.cat([z, torch.ones(len(z), 1)], 1), p[:, columns]).solution[:-1].T
    directions = torch.nn.functional.normalize(w, dim=1)
    npz = write_directions(tmp_path_factory.mktemp("demo_directions") / "smiling.npz", directions,
                           ["Smiling", "Male"], "least squares", "z", G.identity)
    return G, directions, npz


def read_scores(path):
    lines = path.read_text().splitlines()
    rows = [line.split("\t") for line in lines[1:]]
    return lines[0].split("\t"), [(int(r[0]), float(r[1])) for r in rows], np.array([r[2:] for r in rows], float)


def test_judge_scores_every_frame_of_the_edit(tmp_path, demo_directions, capsys):
    """--judge demo_judge: each frame is scored by the own annotator and the judge, from the edited frames
    themselves (the same numbers as scoring ``render_edits``' frames here), in the edited attribute's column."""
    G, directions, npz = demo_directions
    own, judge = load_annotator("demo"), load_annotator("demo_judge")
    seeds, alphas = [0, 1, 2, 3], np.linspace(-4, 4, 5)
    out = tmp_path / "edits"
    capsys.readouterr()
    assert main([str(npz), "--attributes", "Smiling", "--seeds", *map(str, seeds), "--steps", "5", "--alpha", "-4",
                 "4", "--scale", "1", "--judge", "demo_judge", "--accelerator", "cpu", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    header, keys, values = read_scores(out / "Smiling_scores.tsv")
    assert header == ["sample", "alpha", f"own:{own.source}", f"judge:{judge.source}"]
    assert keys == [(i, float(a)) for i in range(len(seeds)) for a in alphas]  # one row per (sample, alpha)
    assert ((values >= 0) & (values <= 1)).all()
    latents = torch.cat([G.sample(1, seed=s) for s in seeds])
    with torch.no_grad():
        frames = render_edits(G, latents, directions[0], alphas, "z").flatten(0, 1)  # (A * B, 3, R, R)
        expected = [c(frames)[:, c.attributes.index("Smiling")].view(len(alphas), len(seeds)).T.reshape(-1)
                    for c in (own, judge)]
    np.testing.assert_allclose(values, torch.stack(expected, 1).numpy(), atol=1e-5)  # 6 decimals, batch rounding
    by_alpha = values.reshape(len(seeds), len(alphas), 2).mean(0)  # (alpha, scorer)
    assert by_alpha[-1, 1] > by_alpha[0, 1] + 0.5  # the held-out judge agrees: the edit raises Smiling
    assert by_alpha[-1, 0] > by_alpha[0, 0] + 0.5
    assert (f"Smiling: mean p(Smiling) at alpha -4 -> +4: own {by_alpha[0, 0]:.3f} -> {by_alpha[-1, 0]:.3f}, "
            f"judge {by_alpha[0, 1]:.3f} -> {by_alpha[-1, 1]:.3f}") in printed
    # The strip: a label band under each row of frames; the frames themselves unchanged.
    strip = np.asarray(Image.open(out / "Smiling.png").convert("RGB"))[14:, 60:]
    res = G.synthesize(latents[:1]).shape[-1]
    row = strip.shape[0] // len(seeds)
    assert strip.shape[0] == row * len(seeds) and row > res and strip.shape[1] == len(alphas) * res
    unedited = to_uint8(G.synthesize(latents), 1)
    for i in range(len(seeds)):
        assert np.array_equal(strip[i * row:i * row + res, 2 * res:3 * res], unedited[i])  # alpha = 0
        assert (strip[i * row + res:(i + 1) * row] < 128).any()  # text in the band


def test_guided_edits_are_scored_too(tmp_path, demo_directions, capsys):
    """Guided paths (the annotator's gradients) are scored like linear ones: --labels alone gives the
    own column only; with --judge both; alpha 0 is the unedited image either way."""
    G, _, npz = demo_directions
    own = load_annotator("demo")
    out = tmp_path / "edits"
    common = [str(npz), "--attributes", "Smiling", "--keep", "Male", "--guided", "--seeds", "0", "1", "--steps", "3",
              "--alpha", "-1", "1", "--accelerator", "cpu", "--out", str(out)]
    assert main([*common, "--labels"]) == 0
    header, keys, labels_only = read_scores(out / "Smiling_keep_Male_guided_scores.tsv")
    assert header == ["sample", "alpha", f"own:{own.source}"] and len(keys) == 6
    assert main([*common, "--judge", "demo_judge"]) == 0
    header, _, both = read_scores(out / "Smiling_keep_Male_guided_scores.tsv")
    assert header[2:] == [f"own:{own.source}", f"judge:{load_annotator('demo_judge').source}"]
    np.testing.assert_allclose(both[:, 0], labels_only[:, 0], atol=1e-5)
    latents = torch.cat([G.sample(1, seed=s) for s in (0, 1)])
    with torch.no_grad():
        p0 = own(G.synthesize(latents))[:, own.attributes.index("Smiling")]
    np.testing.assert_allclose(both.reshape(2, 3, 2)[:, 1, 0], p0.numpy(), atol=1e-5)
    assert "Smiling_keep_Male_guided: mean p(Smiling) at alpha -1 -> +1: own " in capsys.readouterr().out


def save_classifier(path, attributes):
    """An exported annotator (untrained small CNN) with the given columns."""
    net = build_backbone("small_cnn", len(attributes), width=8)
    torch.save({"format": FORMAT, "settings": {"attributes": list(attributes), "backbone": "small_cnn", "width": 8,
                                               "image_size": RES},
                "state_dict": net.state_dict()}, path)
    return path


def test_a_classifier_without_the_attributes_column_is_one_line(tmp_path, capsys):
    """--judge (or --annotator) lacking a column for the edited attribute: one line naming the flag and the
    classifier, exit code 2, nothing written."""
    _, _, npz = planted_setup(tmp_path)
    red = save_classifier(tmp_path / "red.pt", ["green_blue", "red"])
    out = tmp_path / "edits"
    common = [str(npz), "--attributes", "red", "--seeds", "0", "--steps", "3", "--accelerator", "cpu", *OPTIONS,
              "--out", str(out)]
    capsys.readouterr()
    assert main([*common, "--annotator", str(red), "--judge", "demo_judge"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("latentnav: error: --judge: demo_judge has no column for red (it has Bald ")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert main([*common, "--judge", "demo_judge"]) == 2  # the own annotator is checked too
    err = capsys.readouterr().err
    assert err.startswith("latentnav: error: --annotator: demo has no column for red") and err.count("\n") == 1
    assert main([*common, "--judge", str(tmp_path / "missing.pt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"latentnav: error: --judge: {tmp_path / 'missing.pt'}: annotator file not found")
    assert not out.exists()
    # The annotator has the column (its second): --labels scores with it alone.
    assert main([*common, "--annotator", str(red), "--labels"]) == 0
    header, keys, values = read_scores(out / "red_scores.tsv")
    assert header == ["sample", "alpha", f"own:{red}"] and keys == [(0, -6.0), (0, 0.0), (0, 6.0)]
    G = load_generator(tmp_path / "tiny.pt", class_path=CLASS_PATH, init_args=INIT_ARGS)
    with torch.no_grad():
        frames = render_edits(G, G.sample(1, seed=0), torch.eye(8)[0], [-6.0, 0.0, 6.0], "z")[:, 0]
        expected = load_annotator(red)(frames)[:, 1]
    np.testing.assert_allclose(values[:, 0], expected.numpy(), atol=1e-5)


def test_frame_labels():
    assert short_probability(0.123) == ".12" and short_probability(1.0) == "1.00" and short_probability(0) == ".00"
    assert frame_label(np.array([0.12, 0.10]), ["own", "judge"]) == ["own .12", "judge .10"]
    assert frame_label(np.array([0.9, 0.6]), ["own", "judge"]) == ["own .90", "judge .60 !"]  # differ by > 0.25
    assert frame_label(np.array([0.9]), ["own"]) == ["own .90"]
