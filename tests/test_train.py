"""train.py end to end: mixed precision, resume, a real 2-process DDP run, one-line errors."""

import re
import sys
from pathlib import Path

import pytest
import torch

from latentnav.commands.cli import LatentNavCLI, main
from tests.conftest import fake_celeba
from tests.distributed import run_train

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = str(REPO / "configs" / "classifier" / "demo.yaml")
CELEBA_CONFIG = str(REPO / "configs" / "classifier" / "celeba.yaml")


def demo_args(demo_root, *extra, quiet=True):
    # In-process single-process runs keep the output short; distributed runs keep the defaults.
    shh = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"] if quiet else []
    return ["--config", DEMO_CONFIG, "--data.init_args.root", str(demo_root), "--data.init_args.num_faces", "4000",
            *shh, *extra]


def test_bf16_fit_then_resume_continues_global_step(demo_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    common = ["--trainer.precision", "bf16-mixed", "--trainer.val_check_interval", "3", "--trainer.limit_val_batches", "2"]
    first = LatentNavCLI(args=["fit", *demo_args(demo_root, *common, "--trainer.max_steps", "6")])
    assert first.trainer.precision == "bf16-mixed" and first.trainer.global_step == 6
    last = Path(first.trainer.checkpoint_callback.last_model_path)
    assert last.name == "last.ckpt" and last.is_file()
    assert torch.load(last, weights_only=True)["global_step"] == 6
    assert (last.parents[1] / "metrics_val.tsv").is_file()  # the summary's table

    resumed = LatentNavCLI(args=["fit", *demo_args(demo_root, *common, "--trainer.max_steps", "10"), "--ckpt_path", str(last)])
    assert resumed.trainer.global_step == 10
    optimizer = resumed.trainer.optimizers[0]
    steps = {float(state["step"]) for state in optimizer.state.values()}
    assert steps == {10.0}  # Adam's state was restored at 6 and went on, not restarted
    assert resumed.trainer.lr_scheduler_configs[0].scheduler.last_epoch == 10
    # The cosine decay follows the resumed run's length (10 steps): at its end the rate is 0,
    # instead of climbing back up along the first run's 6-step period.
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-9)


def read_table(stdout, cwd):
    path = re.search(r"table written to (\S+)", stdout).group(1)
    return (cwd / path).read_text()


def test_ddp_two_processes_fit_and_metrics_match_one_process(demo_root, tmp_path, monkeypatch):
    ddp = ["--trainer.strategy", "ddp", "--trainer.devices", "2"]
    out = run_train(["fit", *demo_args(demo_root, *ddp, "--trainer.max_steps", "8", "--trainer.val_check_interval", "4",
                                       "--trainer.limit_val_batches", "2", quiet=False)], tmp_path)
    assert out.count("fit finished at global step 8") == 1  # reported once, by rank 0
    last = next(tmp_path.glob("runs/classifier_demo/version_0/checkpoints/last.ckpt"))
    assert torch.load(last, weights_only=True)["global_step"] == 8

    # Per-attribute accuracy and AUROC are torchmetrics synced across ranks: the 400
    # validation faces split over 2 processes give the same table as 1 process.
    two = read_table(run_train(["validate", *demo_args(demo_root, *ddp, quiet=False), "--ckpt_path", str(last)], tmp_path),
                     tmp_path)
    monkeypatch.chdir(tmp_path)
    one = LatentNavCLI(args=["validate", *demo_args(demo_root), "--ckpt_path", str(last)])
    assert one.trainer.num_devices == 1
    one_table = (Path(one.trainer.log_dir) / "metrics_val.tsv").read_text()
    rows_two = [line.split("\t") for line in two.splitlines()[1:]]
    rows_one = [line.split("\t") for line in one_table.splitlines()[1:]]
    assert [r[0] for r in rows_two] == [r[0] for r in rows_one] and len(rows_one) == 13
    for a, b in zip(rows_one, rows_two):
        assert [float(x) for x in a[1:]] == pytest.approx([float(x) for x in b[1:]], abs=1e-4), a[0]


def test_user_errors_are_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", CELEBA_CONFIG,
              "--data.init_args.root", str(tmp_path / "no_celeba_here"), "--trainer.enable_progress_bar", "false"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"latentnav: error: data.root: folder {tmp_path / 'no_celeba_here'} not found"
    assert not any("Traceback" in line for line in err)


@pytest.mark.parametrize("override, message", [
    (["--data.init_args.batch_size", "0"], "data.batch_size: expected a positive integer, got 0"),
    (["--model.init_args.backbone", "vgg"], "model.backbone: unknown backbone 'vgg'; expected one of small_cnn, tiny_resnet, resnet18, resnet34, resnet50"),
    (["--ckpt_path", "nowhere/last.ckpt"], "--ckpt_path: checkpoint nowhere/last.ckpt not found"),
])
def test_errors_while_building_classes_are_one_line(tmp_path, monkeypatch, capsys, override, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["train.py"])  # pytest's own flags would make LightningCLI warn on stderr
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", DEMO_CONFIG, "--data.init_args.root", str(tmp_path / "demo"), *override])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"latentnav: error: {message}"]


def test_worker_tracebacks_are_reduced_to_their_message():
    from latentnav.errors import one_line
    from latentnav.errors import DataFormatError

    wrapped = DataFormatError("Caught DataFormatError in DataLoader worker process 0.\nOriginal Traceback (most "
                              "recent call last):\n  File \"x.py\", line 1\nlatentnav.errors.DataFormatError: "
                              "/d/000001.jpg: unreadable image (OSError: truncated)\n")
    assert one_line(wrapped) == "/d/000001.jpg: unreadable image (OSError: truncated)"
    assert one_line(DataFormatError("plain message")) == "plain message"


def test_predict_gives_probabilities_from_a_checkpoint(demo_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fit = LatentNavCLI(args=["fit", *demo_args(demo_root, "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1")])
    last = fit.trainer.checkpoint_callback.last_model_path
    cli = LatentNavCLI(args=["predict", *demo_args(demo_root, "--trainer.limit_predict_batches", "2"), "--ckpt_path", last])
    batches = cli.trainer.predict_loop.predictions
    assert len(batches) == 2 and batches[0].shape == (64, 12)
    assert 0.0 <= float(batches[0].min()) and float(batches[0].max()) <= 1.0


def test_print_config_shows_every_default(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", DEMO_CONFIG, "--print_config"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for expected in ("class_path: latentnav.lightning_modules.attribute_classifier.AttributeClassifier",
                     "class_path: latentnav.datamodules.demo.DemoFacesDataModule", "num_faces: 20000",
                     "save_last: true", "monitor: val/acc_mean", "num_threads: null"):
        assert expected in out, expected


def test_celeba_config_trains_on_the_real_layout(tmp_path, monkeypatch):
    """configs/classifier/celeba.yaml: 40 attributes, ResNet-18, 178x218 JPEGs cropped to 64 px."""
    import yaml

    names = yaml.safe_load(open(CELEBA_CONFIG))["data"]["init_args"]["attributes"]
    assert len(names) == 40
    fake_celeba(tmp_path / "celeba", n=6, names=names)
    monkeypatch.chdir(tmp_path)
    cli = LatentNavCLI(args=["fit", "--config", CELEBA_CONFIG, "--data.init_args.root", str(tmp_path / "celeba"),
                             "--data.init_args.num_workers", "0", "--trainer.accelerator", "cpu",
                             "--trainer.devices", "1", "--trainer.fast_dev_run", "1",
                             "--trainer.enable_progress_bar", "false"])
    assert cli.trainer.global_step == 1
    assert type(cli.model.net).__name__ == "ResNet" and cli.model.net.fc.out_features == 40


def _latentnav(argv) -> int:
    """``latentnav ARGV`` in this process: the exit status."""
    from latentnav.commands.cli import main

    try:
        main(argv)
    except SystemExit as e:
        return e.code
    return 0


def test_every_command_reports_user_errors_as_one_line(tmp_path, capsys):
    """Through the one entry point (``latentnav SUBCOMMAND``): each bad input is one line, status 2."""
    assert _latentnav(["render-demo", str(tmp_path / "faces"), "--num", "0"]) == 2
    assert _latentnav(["annotate", "--generator", str(tmp_path / "g.pt"), "--cache_dir", str(tmp_path)]) == 2
    assert _latentnav(["classifier", "export", str(tmp_path / "x.ckpt"), str(tmp_path / "y.pt")]) == 2
    assert _latentnav(["edit", str(tmp_path / "d.npz"), "--attributes", "Male"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "latentnav: error: demo faces: need num_faces >= 1 and image_size >= 16, got 0 and 32",
        f"latentnav: error: data.generator: {tmp_path / 'g.pt'}: generator file not found (bundled names: demo)",
        f"latentnav: error: {tmp_path / 'x.ckpt'}: annotator file not found",
        f"latentnav: error: {tmp_path / 'd.npz'}: directions file not found",
    ]


def test_one_entry_point_lists_and_reaches_every_subcommand(tmp_path, capsys):
    from latentnav.commands.cli import SUBCOMMANDS

    assert _latentnav(["--help"]) == 0
    listing = capsys.readouterr().out
    for name in [*SUBCOMMANDS, "fit", "predict"]:
        assert name in listing
    helps = {}
    for name in SUBCOMMANDS:  # each parses its own --help (exit 0), so each is reachable
        assert _latentnav([name, "--help"]) == 0, name
        helps[name] = capsys.readouterr().out
        assert "usage:" in helps[name].lower(), name
    # A default written once: annotate's arguments are the datamodule's signature.
    import inspect

    from latentnav.datamodules.annotated_latents import AnnotatedLatentsDataModule

    default = inspect.signature(AnnotatedLatentsDataModule).parameters["num_val"].default
    assert f"--num_val NUM_VAL     (type: int, default: {default})" in helps["annotate"]
    assert _latentnav(["render-demo", str(tmp_path / "faces"), "--num", "3", "--image_size", "16"]) == 0
    assert len(list((tmp_path / "faces" / "img_align_celeba").iterdir())) == 3


def test_values_are_written_once_and_a_mismatch_stops_before_annotation(tmp_path, monkeypatch, capsys):
    """The supervised config names generator, classifier, space and attributes once (under data): the model's
    attributes and latent size and the report's sources come from there. A report given another space is
    one line before the annotation job writes anything."""
    import yaml

    from latentnav.commands.cli import LatentNavCLI

    monkeypatch.chdir(tmp_path)
    config = str(REPO / "configs/supervised/demo_no_ortho.yaml")
    text = yaml.safe_load(open(config))
    assert "attributes" not in text["model"]["init_args"] and "latent_dim" not in text["model"]["init_args"]
    assert not {"generator", "annotator", "space"} & set(text["trainer"]["callbacks"][0]["init_args"])
    cli = LatentNavCLI(args=["--config", config, "--data.init_args.attributes", "[Smiling, Male]"], run=False)
    assert cli.model.hparams.attributes == ["Smiling", "Male"] and cli.model.hparams.latent_dim == 64
    assert _latentnav(["fit", "--config", config, "--data.init_args.cache_dir", str(tmp_path / "cache"),
                       "--trainer.callbacks.init_args.space", "w"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "latentnav: error: DirectionReport.space is 'w' but data.space is 'z'; leave it out to use the data's")
    assert not (tmp_path / "cache").exists()  # nothing annotated
    # A judge that cannot be read, or that lacks an attribute, also stops the run before anything is annotated.
    (tmp_path / "judge.pt").write_bytes(b"not a checkpoint")
    assert _latentnav(["fit", "--config", config, "--data.init_args.cache_dir", str(tmp_path / "cache"),
                       "--trainer.callbacks.init_args.judge", str(tmp_path / "judge.pt")]) == 2
    assert "judge.pt" in capsys.readouterr().err.strip().splitlines()[-1] and not (tmp_path / "cache").exists()
    from latentnav.callbacks.direction_report import DirectionReport
    from latentnav.errors import ConfigError
    from latentnav.lightning_modules.annotator import load_annotator

    judge = load_annotator("demo_judge")
    judge.attributes = judge.attributes[1:]
    with pytest.raises(ConfigError, match=f"judge: .* has no column for {load_annotator('demo').attributes[0]}"):
        DirectionReport.judge_columns(load_annotator("demo"), judge)
