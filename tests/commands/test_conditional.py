"""Every command on a class-conditional generator (``tests.generators.tiny.TinyConditionalAdapter``: 3 classes, z
and w, loaded from a file through ``load_generator``): ``--classes`` (sugar for the load option ``classes``) is
recorded in what the command writes and reaches the generator, the classes a file recorded are used again, the
reports give figures per class, and bad classes are one line (exit 2)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from latentnav.commands import compare, edit, ganspace, project, sefa
from latentnav.directions_file import read_directions, read_latents
from tests.generators.tiny import save_tiny_conditional, tiny_conditional_loader


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """(the generator file, the list of generators the commands loaded from it)."""
    loaded = tiny_conditional_loader(monkeypatch)
    return save_tiny_conditional(tmp_path / "tiny_conditional.pt"), loaded


def synthesized(G) -> list[list[int]]:
    return [ids for kind, ids in G.seen if kind == "synthesize"]


@pytest.fixture
def sefa_file(tiny, tmp_path):
    path, loaded = tiny
    out = tmp_path / "sefa.npz"
    assert sefa.main(["--generator", str(path), "--space", "w", "--num_directions", "2", "--classes", "1", "2",
                      "--out", str(out), "--device", "cpu"]) == 0
    return out


def test_sefa_records_the_classes_and_edit_renders_row_k_in_its_class(tiny, sefa_file, tmp_path):
    path, loaded = tiny
    assert read_directions(sefa_file)["generator"]["options"] == {"classes": [1, 2]}
    args = [str(sefa_file), "--attributes", "sefa00", "--seeds", "0", "1", "2", "--steps", "3", "--accelerator", "cpu"]
    assert edit.main([*args, "--out", str(tmp_path / "recorded")]) == 0  # the file's classes, not given again
    G = loaded[-1]
    assert G.class_choice == (1, 2) and set(map(tuple, synthesized(G))) == {(1, 2, 1)}
    assert edit.main([*args, "--out", str(tmp_path / "other"), "--classes", "0"]) == 0  # the user's win
    assert set(map(tuple, synthesized(loaded[-1]))) == {(0, 0, 0)}
    a = np.asarray(Image.open(tmp_path / "recorded" / "sefa00.png"))
    b = np.asarray(Image.open(tmp_path / "other" / "sefa00.png"))
    assert a.shape == b.shape and np.abs(a.astype(int) - b).mean() > 10  # another class, other faces


def test_bad_classes_are_one_line(tiny, sefa_file, tmp_path, capsys):
    path, _ = tiny
    assert sefa.main(["--generator", "demo", "--classes", "0", "--out", str(tmp_path / "x.npz")]) == 2
    assert "not class-conditional" in capsys.readouterr().err
    args = [str(sefa_file), "--attributes", "sefa00", "--seeds", "0", "--out", str(tmp_path / "e")]
    assert edit.main([*args, "--classes", "5"]) == 2
    err = capsys.readouterr().err
    assert "classes: expected class ids in 0..2" in err and len(err.strip().splitlines()) == 1
    assert edit.main([*args, "--classes", "1", "--generator_options", '{"classes": [2]}']) == 2
    assert "give the classes once" in capsys.readouterr().err


def test_compare_reports_by_class(tiny, sefa_file, tmp_path, capsys):
    path, loaded = tiny
    out = tmp_path / "cmp"
    assert compare.main(["--directions", json.dumps([str(sefa_file)]), "--num_samples", "6", "--replicates", "0",
                         "--batch_size", "6", "--classes", "0", "2", "--out", str(out), "--accelerator", "cpu"]) == 0
    G = loaded[-1]
    assert G.class_choice == (0, 2) and {c for ids in synthesized(G) for c in ids} == {0, 2}
    text = (out / "comparison.md").read_text()
    assert "## By class" in text and "| 0 | SeFa" in text and "| 2 | SeFa" in text
    table = json.loads((out / "comparison.json").read_text())
    assert set(table[0]["by_class"]) == {"0", "2"}


def test_project_with_classes_then_edit_the_latents_in_their_classes(tiny, sefa_file, tmp_path):
    path, loaded = tiny
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(photos / f"face{i}.png")
    out = tmp_path / "projection"
    assert project.main(["--images", json.dumps([str(photos)]), "--generator", str(path), "--space", "w",
                         "--steps", "2", "--batch_size", "3", "--classes", "2", "0", "--out", str(out),
                         "--accelerator", "cpu"]) == 0
    assert {tuple(ids) for ids in synthesized(loaded[-1])} == {(2, 0, 2)}  # image i in classes[i % 2]
    found = read_latents(out / "latents.pt")
    assert found["generator"]["options"] == {"classes": [2, 0]}
    # The directions file records classes [1, 2]; the projected rows are edited in the classes they were
    # projected in, unless --classes says otherwise.
    assert edit.main([str(sefa_file), "--latents", str(out / "latents.pt"), "--attributes", "sefa01", "--steps", "2",
                      "--out", str(tmp_path / "e"), "--accelerator", "cpu"]) == 0
    assert {tuple(ids) for ids in synthesized(loaded[-1])} == {(2, 0, 2)}


def test_explorer_renders_in_the_chosen_class(tiny, sefa_file, tmp_path):
    from latentnav.commands.explore import Explorer
    from latentnav.errors import ConfigError

    _, loaded = tiny
    ex = Explorer([str(sefa_file)], judge="demo")
    G = ex.G
    image, probs = ex.render(0, [2.0, 0.0], seed=3)
    assert synthesized(G)[-1] == [1] and image.shape == (8, 8, 3)  # a seed: the first chosen class
    other, _ = ex.render(0, [2.0, 0.0], seed=3, class_id=0)
    assert synthesized(G)[-1] == [0] and np.abs(image.astype(int) - other).mean() > 10
    ex.add_rows(G.latents_at(range(3), 0, "w"))
    ex.render(0, [0.0, 1.0], row=1)
    assert synthesized(G)[-1] == [2]  # row k: classes_at([k])
    with pytest.raises(ConfigError, match="classes: expected ids in 0..2"):
        ex.render(0, [0.0, 0.0], class_id=7)
    paths = ex.save(0, [1.0, 0.0], seed=0, row=None, keep=[], out=str(tmp_path / "x"), frames=2, class_id=2)
    assert synthesized(G)[-1] == [2] and all(p.is_file() for p in paths)


def test_ganspace_and_annotate_take_classes(tiny, tmp_path):
    from latentnav.commands.tools import annotate_main

    path, loaded = tiny
    out = tmp_path / "gs.npz"
    assert ganspace.main(["--generator", str(path), "--space", "w", "--num_directions", "2", "--num_samples", "8",
                          "--batch_size", "4", "--classes", "0", "1", "--out", str(out), "--accelerator", "cpu"]) == 0
    assert read_directions(out)["generator"]["options"] == {"classes": [0, 1]}
    assert {c for kind, ids in loaded[-1].seen if kind == "to_space" for c in ids} == {0, 1}
    cache = tmp_path / "store"
    assert annotate_main(["--generator", str(path), "--classes", "2", "--space", "w", "--attributes", "[Smiling]",
                          "--num_train", "4", "--num_val", "2", "--annotate_batch_size", "4",
                          "--cache_dir", str(cache)]) == 0
    assert json.loads((cache / "train" / "manifest.json").read_text())["key"]["classes"] == [2]
    assert {c for ids in synthesized(loaded[-1]) for c in ids} == {2}
