"""Every pass on a class-conditional generator (``tests.generators.tiny.TinyConditionalAdapter``, 3 classes, z and
w): the classes reach the generator (it records the ids it was called with), latent i is in class
``classes_at([i])``, randomly drawn latents draw their class from the pass's own seeded stream, and a missing
class is one line. Unconditional generators are covered by each pass's own tests (unchanged)."""

import json
from pathlib import Path

import pytest
import torch
import yaml

from latentnav.errors import ConfigError
from latentnav.generators import load_generator
from tests.generators.tiny import TinyConditionalAdapter, save_tiny_conditional, tiny_conditional_loader

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


@pytest.fixture
def tiny_file(tmp_path, monkeypatch):
    """The tiny conditional generator as a file that ``load_generator`` (patched for this test) loads."""
    tiny_conditional_loader(monkeypatch)
    return save_tiny_conditional(tmp_path / "tiny_conditional.pt")


def test_the_tiny_generator_needs_its_classes_and_shows_them():
    G = TinyConditionalAdapter()
    z = G.latents_at(range(3), seed=1)
    with pytest.raises(ConfigError, match="class-conditional .3 classes.: every sample needs a class") as e:
        G.synthesize(z)
    assert "\n" not in str(e.value)
    same = z[:1].expand(3, -1)
    images = G.synthesize(same, classes=torch.tensor([0, 1, 2]))
    assert (images[0] - images[1]).abs().mean() > 0.1 and (images[1] - images[2]).abs().mean() > 0.1
    w = G.latents_at([0, 1, 2, 3], seed=1, space="w")  # latents_at hands classes_at to the mapping
    assert G.seen[-1] == ("to_space", [0, 1, 2, 0])
    assert torch.allclose(w[3], G.to_space(G.latents_at([3], seed=1), "w", classes=torch.tensor([0]))[0])


def test_the_loader_records_the_classes(tiny_file):
    G = load_generator(tiny_file, classes=[2, 0])
    assert G.conditional and G.class_choice == (2, 0) and G.identity["options"] == {"classes": [2, 0]}
    assert G.classes_at([0, 1, 2]).tolist() == [2, 0, 2]
    with pytest.raises(ConfigError, match="classes: expected class ids in 0..2"):
        load_generator(tiny_file, classes=[3])
    with pytest.raises(ConfigError, match="not class-conditional"):
        load_generator("demo", classes=[0])


def test_annotation_job_renders_latent_i_in_its_class(tiny_file, tmp_path):
    from latentnav.datamodules.annotated_latents import AnnotatedLatentsDataModule
    from latentnav.lightning_modules.latent_annotation import LatentAnnotation

    job = LatentAnnotation(str(tiny_file), "demo", "w", {"classes": [1, 2]})
    out = job.predict_step({"indices": torch.arange(5), "shard": 0, "seed": 3}, 0)
    G = job.generator
    assert [ids for kind, ids in G.seen if kind == "synthesize"] == [[1, 2, 1, 2, 1]]
    assert torch.allclose(out["latents"], G.latents_at(range(5), 3, "w"))  # w of latent i's class
    # The store's key records the classes: a store of other classes is another store.
    dm = AnnotatedLatentsDataModule(str(tiny_file), "demo", ["Smiling", "Male"], "w", num_train=8, num_val=4,
                                    batch_size=4, cache_dir=str(tmp_path / "store"), annotate_batch_size=4,
                                    generator_options={"classes": [1, 2]})
    dm.prepare_data()
    dm.setup("fit")
    manifest = json.loads((tmp_path / "store" / "train" / "manifest.json").read_text())
    assert manifest["key"]["classes"] == [1, 2]
    other = AnnotatedLatentsDataModule(str(tiny_file), "demo", ["Smiling"], "w", num_train=8, num_val=4,
                                       cache_dir=str(tmp_path / "store"), generator_options={"classes": [0]})
    assert other._key("train") != dm._key("train")


def test_streamed_latents_draw_their_class_from_the_stream(tiny_file):
    from latentnav.datamodules.annotated_latents import LabelledLatentStream
    from latentnav.lightning_modules.annotator import load_annotator

    G = load_generator(tiny_file, classes=[0, 2])
    stream = LabelledLatentStream(G, load_annotator("demo"), ["Smiling"], "w", "probabilities", 6, 2, seed=5, rank=0)
    first = [b[0] for b in stream]
    drawn = [ids for kind, ids in G.seen if kind == "synthesize"]
    assert len(drawn) == 2 and set(sum(drawn, [])) <= {0, 2} and len(set(sum(drawn, []))) == 2
    G.seen.clear()
    again = LabelledLatentStream(G, load_annotator("demo"), ["Smiling"], "w", "probabilities", 6, 2, seed=5, rank=0)
    assert all(torch.equal(a, b[0]) for a, b in zip(first, again))  # the same seeded draws, classes included
    assert [ids for kind, ids in G.seen if kind == "synthesize"] == drawn


def test_latent_shifts_draw_classes_only_for_a_conditional_generator():
    from latentnav.datamodules.latent_shifts import LatentShiftsDataModule

    dm = LatentShiftsDataModule(latent_dim=8, num_directions=4, batch_size=4, steps_per_epoch=2, num_val=6)
    plain = [b for b in dm.train_dataloader()]
    assert all(len(b) == 3 for b in plain)
    dm.classes = (1, 2)
    with_classes = [b for b in dm.train_dataloader()]
    # The triples are the unconditional stream's; the class comes after them from the same generator.
    assert all(len(b) == 4 and set(b[3].tolist()) <= {1, 2} for b in with_classes)
    assert torch.equal(with_classes[0][0], plain[0][0])
    val = [b for b in dm.val_dataloader()]
    assert sum(len(b[3]) for b in val) == 6


def test_unsupervised_fit_from_a_yaml_config_with_classes(tiny_file, tmp_path, monkeypatch):
    """``generator_options: {classes: [0, 2]}`` in a LightningCLI config reaches load_generator; the pairs are of
    the drawn classes, and the edit grid renders in the first chosen class."""
    from latentnav.commands.cli import LatentNavCLI

    monkeypatch.chdir(tmp_path)
    config = {
        "seed_everything": 0,
        "model": {"class_path": "latentnav.lightning_modules.unsupervised_directions.UnsupervisedDirections",
                  "init_args": {"generator": str(tiny_file), "generator_options": {"classes": [0, 2]},
                                "space": "w", "num_directions": 3, "reconstructor_width": 4}},
        "data": {"class_path": "latentnav.datamodules.latent_shifts.LatentShiftsDataModule",
                 "init_args": {"latent_dim": 8, "batch_size": 4, "steps_per_epoch": 2, "num_val": 4}},
        "trainer": {"max_steps": 2, "accelerator": "cpu", "devices": 1, "logger": False,
                    "limit_val_batches": 1, "num_sanity_val_steps": 0,
                    "callbacks": [{"class_path": "latentnav.callbacks.direction_grid.DirectionGrid",
                                   "init_args": {"every_n_steps": 0}}]},
    }
    path = tmp_path / "unsupervised.yaml"
    path.write_text(yaml.safe_dump(config))
    cli = LatentNavCLI(args=["fit", "--config", str(path), *QUIET])
    G = cli.model.generator
    assert G.class_choice == (0, 2) and G.identity["options"]["classes"] == [0, 2]
    assert cli.datamodule.classes == (0, 2)
    assert G.seen_classes("synthesize") == {0, 2} and G.seen_classes("to_space") == {0, 2}
    assert G.seen[-1] == ("synthesize", [0])  # the edit grid's sample: classes_at([0])


def test_a_conditional_generator_without_classes_in_the_batches_is_one_line(tiny_file):
    from latentnav.lightning_modules.unsupervised_directions import UnsupervisedDirections

    model = UnsupervisedDirections(str(tiny_file), {"classes": [1]}, "z", num_directions=2, reconstructor_width=4)
    batch = (torch.randn(2, 8), torch.tensor([0, 1]), torch.tensor([1.0, -1.0]))
    with pytest.raises(ConfigError, match="class-conditional: the data must draw a class per latent") as e:
        model._step(batch)
    assert "\n" not in str(e.value)
    ce, *_ = model._step((*batch, torch.tensor([1, 1])))
    assert torch.isfinite(ce) and model.generator.seen_classes() == {1}


def test_encoder_pairs_use_the_batch_classes(tiny_file):
    from latentnav.lightning_modules.encoder import LatentEncoder

    encoder = LatentEncoder(str(tiny_file), {"classes": [2]}, space="w", width=4, stats_samples=16)
    G = encoder.generator
    assert G.seen == [("to_space", [2] * 16)]  # the statistics: classes drawn from the chosen ones
    out = encoder._losses((torch.randn(3, 8), None, None, torch.tensor([2, 2, 2])))
    assert torch.isfinite(out["loss"]) and G.seen_classes() == {2}


def test_supervised_fit_reports_by_class(tiny_file, tmp_path, monkeypatch):
    """The supervised pipeline on w latents of classes [0, 1]: annotation, fit, and the report's per-class table."""
    from latentnav.callbacks.direction_report import DirectionReport
    from latentnav.commands.cli import LatentNavCLI

    monkeypatch.chdir(tmp_path)
    config = {
        "seed_everything": 0,
        "model": {"class_path": "latentnav.lightning_modules.supervised_directions.SupervisedDirections",
                  "init_args": {"lr": 0.05}},
        "data": {"class_path": "latentnav.datamodules.annotated_latents.AnnotatedLatentsDataModule",
                 "init_args": {"generator": str(tiny_file), "generator_options": {"classes": [0, 1]},
                               "annotator": "demo", "attributes": ["Smiling", "Male", "Young"], "space": "w",
                               "num_train": 32, "num_val": 8, "batch_size": 16, "annotate_batch_size": 16,
                               "cache_dir": str(tmp_path / "cache")}},
        "trainer": {"max_steps": 2, "accelerator": "cpu", "devices": 1, "num_sanity_val_steps": 0,
                    "logger": {"class_path": "pytorch_lightning.loggers.TensorBoardLogger",
                               "init_args": {"save_dir": str(tmp_path / "runs"), "name": "sup"}},
                    "callbacks": [{"class_path": "latentnav.callbacks.direction_report.DirectionReport",
                                   "init_args": {"reference": "Smiling", "num_samples": 12, "replicates": 0,
                                                 "conditional": False}}]},
    }
    path = tmp_path / "supervised.yaml"
    path.write_text(yaml.safe_dump(config))
    cli = LatentNavCLI(args=["fit", "--config", str(path), *QUIET])
    report = next(c for c in cli.trainer.callbacks if isinstance(c, DirectionReport))
    assert set(report.by_class["this run"]) == {0, 1}
    text = (Path(cli.trainer.log_dir) / "report.md").read_text()
    assert "## By class" in text and "| 0 | this run |" in text and "| 1 | this run |" in text
    from latentnav.directions_file import read_directions

    found = read_directions(Path(cli.trainer.log_dir) / "directions.npz")
    assert found["generator"]["options"]["classes"] == [0, 1]  # the edit command reloads the same classes


def test_evaluation_renders_latent_i_in_its_class_and_splits_by_class():
    from latentnav.lightning_modules.annotator import load_annotator
    from latentnav.lightning_modules.direction_evaluation import DirectionEvaluation
    from latentnav.lightning_modules.evaluation_protocol import evaluate, run_in_this_process

    G = TinyConditionalAdapter().use_classes([2, 0])
    own = load_annotator("demo")
    directions = torch.nn.functional.normalize(torch.randn(2, 8, generator=torch.Generator().manual_seed(0)), dim=1)
    naming = DirectionEvaluation(G, own, directions, "w", mode="naming")
    naming.test_step({"indices": torch.arange(3), "seed": 0}, 0)
    assert {tuple(ids) for kind, ids in G.seen if kind == "synthesize"} == {(2, 0, 2)}
    ev = evaluate(run_in_this_process(10, 0, batch_size=4), G, own, directions, [0, 1], "w", (0.0, 2.0, 4.0))
    assert set(ev["by_class"]) == {0, 2}
    assert ev["by_class"][0]["effect"].shape == ev["own"]["effect"].shape


def test_projection_projects_image_i_in_its_class():
    from latentnav.lightning_modules.projection import Projection

    G = TinyConditionalAdapter().use_classes([1, 2])
    module = Projection(G, "w", steps=2, stats_samples=8)
    assert module.settings()["classes"] == [1, 2]
    targets = G.synthesize(G.latents_at([0, 1], 0, "w"), "w", classes=torch.tensor([2, 1]))
    G.seen.clear()
    out = module.predict_step({"indices": torch.tensor([3, 4]), "images": targets}, 0)
    assert {tuple(ids) for kind, ids in G.seen if kind == "synthesize"} == {(2, 1)}  # rows 3, 4: classes_at
    assert out["latents"].shape == (2, 8) and "noise" in out  # the noise maps went through with the classes


def test_edit_rendering_keeps_each_rows_class():
    import numpy as np

    from latentnav.lightning_modules.edit_rendering import EditRendering, render_edits

    G = TinyConditionalAdapter().use_classes([0, 1, 2])
    latents = G.latents_at(range(4), 0, "w")
    module = EditRendering(G, latents, torch.eye(8)[0], np.array([-1.0, 0.0, 1.0]), "w")
    out = module.predict_step({"indices": torch.tensor([1, 3])}, 0)
    assert out["frames"].shape[:2] == (3, 2)
    assert {tuple(ids) for kind, ids in G.seen if kind == "synthesize"} == {(1, 0)}
    frames = render_edits(G, latents[:1].expand(2, -1), torch.eye(8)[0], [0.0], "w", classes=torch.tensor([0, 2]))
    assert (frames[0, 0] - frames[0, 1]).abs().mean() > 0.1  # the same latent, another class: another image


def test_sefa_and_ganspace_on_a_conditional_generator():
    from latentnav.commands.ganspace import run_ganspace
    from latentnav.commands.measuring import make_trainer
    from latentnav.commands.sefa import run_sefa

    G = TinyConditionalAdapter().use_classes([1, 2])
    assert run_sefa(G, "w", num_directions=3)["directions"].shape == (3, 8)
    found = run_ganspace(G, "w", num_directions=3, num_samples=12, batch_size=6,
                         trainer=make_trainer("cpu", 1))
    assert found["directions"].shape == (3, 8)
    assert G.seen_classes("to_space") == {1, 2}
    G.seen.clear()
    run_ganspace(G, "z", num_directions=2, num_samples=8, batch_size=4, layer="synthesis",
                 trainer=make_trainer("cpu", 1))  # the hooked layer's pass gets the classes too
    assert G.seen_classes("synthesize") == {1, 2}
