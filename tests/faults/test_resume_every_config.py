"""Every shipped training config resumes (issue 22, item 1): a fit at small sizes crashes before its
third step (the checkpoints of the steps before it are on disk, as after a kill), is resumed from its
``last.ckpt`` and goes on from the saved step: it runs only the remaining steps, not the whole run
again. Runs are in this process (``latentnav fit`` as the command line runs it) at tiny sizes."""

from pathlib import Path

import pytest
import torch
import yaml

from latentnav.commands.cli import main
from tests.conftest import fake_celeba
from tests.kill_after import CountSteps, Crash

REPO = Path(__file__).resolve().parents[2]
CRASH = 2  # the step before which the first run crashes


def _small(name: str, env: dict) -> list[str]:
    """Overrides that make config ``name`` a few steps at tiny sizes (as tests/test_configs_ddp.py does)."""
    annotated = ["--data.init_args.num_train", "256", "--data.init_args.num_val", "64", "--data.init_args.batch_size",
                 "32", "--data.init_args.cache_dir", str(env["cache"])]
    faces = ["--data.init_args.root", str(env["demo_root"]), "--data.init_args.num_faces", "4000",
             "--trainer.limit_val_batches", "2"]
    report = ["--trainer.callbacks.init_args.num_samples", "16", "--trainer.callbacks.init_args.replicates", "20",
              "--trainer.callbacks.init_args.compare_with", "null"]  # no lambda = 0 run to compare with here
    return {
        "classifier/demo.yaml": faces,
        "classifier/demo_judge.yaml": faces,
        "classifier/celeba.yaml": ["--data.init_args.root", str(env["celeba"]), "--data.init_args.num_workers", "0",
                                   "--data.init_args.batch_size", "2"],
        "encoder/demo.yaml": ["--data.init_args.steps_per_epoch", "20", "--data.init_args.num_val", "32"],
        "generator/demo.yaml": [*faces[:4], "--trainer.callbacks.init_args.num_samples", "64"],
        "generator/demo_stylegan2.yaml": [*faces[:4], "--trainer.callbacks.init_args.num_samples", "64",
                                          "--model.init_args.g_channels", "[16, 16, 8, 8]",
                                          "--model.init_args.d_channels", "[8, 8, 16, 16]"],
        "interfacegan/demo.yaml": [*annotated, *report],
        "nuisance/demo.yaml": ["--data.init_args.num_train", "256", "--data.init_args.num_val", "64",
                               "--data.init_args.num_test", "64", "--data.init_args.batch_size", "32"],
        "supervised/demo.yaml": [*annotated, *report],
        "supervised/demo_no_ortho.yaml": [*annotated, *report],
        "supervised/stylegan2_celeba_template.yaml": [
            *annotated[:-2], "--data.init_args.cache_dir", str(env["cache"] / "stylegan2"),
            "--data.init_args.generator", str(env["stylegan2"]), "--data.init_args.annotator", str(env["celeba_ckpt"]),
            "--data.init_args.attributes", "[Male, Smiling, Young]", "--data.init_args.annotate_batch_size", "64",
            *report],
        "unsupervised/demo.yaml": ["--data.init_args.steps_per_epoch", "50", "--data.init_args.num_val", "32"],
        "unsupervised/stylegan2_template.yaml": [
            "--model.init_args.generator", str(env["stylegan2"]), "--model.init_args.num_directions", "4",
            "--data.init_args.latent_dim", "32", "--data.init_args.batch_size", "4",
            "--data.init_args.steps_per_epoch", "50", "--data.init_args.num_val", "8", "--trainer.sync_batchnorm", "false",
            # one CPU process without its DDP: a process group made in the test's own process would outlive
            # the test (with MASTER_PORT set) and collide with every later 2-process test
            "--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.strategy", "auto"],
    }[name]


TRAINING_CONFIGS = sorted(str(p.relative_to(REPO / "configs")) for p in (REPO / "configs").rglob("*.yaml")
                          if "trainer" in yaml.safe_load(p.read_text()) and "annotate" not in p.parts)


@pytest.fixture(autouse=True)
def no_process_group_left(monkeypatch):
    """Whatever a run in this process starts (a process group, MASTER_PORT in the environment) ends with it."""
    import os

    before = dict(os.environ)
    yield
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    for key in set(os.environ) - set(before):
        del os.environ[key]
    os.environ.update(before)


@pytest.fixture(scope="module")
def env(tmp_path_factory, demo_root):
    from tests.generators.test_stylegan2 import small_port_checkpoint

    root = tmp_path_factory.mktemp("resume_env")
    names = yaml.safe_load(open(REPO / "configs/classifier/celeba.yaml"))["data"]["init_args"]["attributes"]
    fake_celeba(root / "celeba", n=16, names=names)
    parts = [0] * 12 + [1] * 2 + [2] * 2
    (root / "celeba/list_eval_partition.txt").write_text("".join(f"{i + 1:06d}.jpg {p}\n" for i, p in enumerate(parts)))
    return {"root": root, "demo_root": demo_root, "cache": root / "cache", "celeba": root / "celeba",
            "stylegan2": small_port_checkpoint(root)[0], "celeba_ckpt": None}


def test_every_training_config_is_listed():
    assert len(TRAINING_CONFIGS) >= 12 and "unsupervised/demo.yaml" in TRAINING_CONFIGS


@pytest.mark.parametrize("name", TRAINING_CONFIGS)
def test_a_crashed_fit_resumes_from_its_last_checkpoint(name, env, tmp_path, monkeypatch):
    if name == "supervised/stylegan2_celeba_template.yaml":  # labelled by the CelebA classifier of its template
        env["celeba_ckpt"] = env["celeba_ckpt"] or _celeba_classifier(env, tmp_path / "celeba_run", monkeypatch)
    monkeypatch.chdir(tmp_path)
    fit = ["fit", "--config", str(REPO / "configs" / name), *_small(name, env), "--checkpoint.dirpath",
           str(tmp_path / "ckpts"), "--checkpoint.every_n_train_steps", "1", "--trainer.enable_progress_bar", "false",
           "--trainer.enable_model_summary", "false"]
    with pytest.raises(Crash):
        main([*fit, "--trainer.max_steps", "100", "--trainer.callbacks+=tests.kill_after.CrashAtStep",
              "--trainer.callbacks.init_args.step", str(CRASH)])
    last = tmp_path / "ckpts" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == CRASH
    main([*fit, "--trainer.max_steps", str(CRASH + 2), "--ckpt_path", str(last),
          "--trainer.callbacks+=tests.kill_after.CountSteps"])
    seen = CountSteps.seen  # global steps; a GAN's batch takes two (its generator's and discriminator's)
    assert seen[0] == CRASH and seen[-1] == CRASH + 2 and seen == sorted(set(seen)), (name, seen)  # went on
    assert torch.load(last, weights_only=True)["global_step"] == CRASH + 2


def _celeba_classifier(env: dict, folder: Path, monkeypatch) -> Path:
    """A CelebA classifier fitted for two steps on the fake CelebA folder (the supervised template's annotator)."""
    folder.mkdir()
    monkeypatch.chdir(folder)
    main(["fit", "--config", str(REPO / "configs/classifier/celeba.yaml"), *_small("classifier/celeba.yaml", env),
          "--trainer.max_steps", "2", "--checkpoint.dirpath", str(folder / "ckpts"), "--trainer.enable_progress_bar",
          "false"])
    return folder / "ckpts" / "last.ckpt"


def test_a_resume_with_changed_model_settings_is_one_line(env, tmp_path, monkeypatch, capsys):
    """A structural change (K) and a hyper-parameter (lr) given on the line are refused before any work,
    each named; never silently replaced by the checkpoint's values (as LightningCLI's resume did)."""
    monkeypatch.chdir(tmp_path)
    fit = ["fit", "--config", str(REPO / "configs/unsupervised/demo.yaml"), *_small("unsupervised/demo.yaml", env),
           "--checkpoint.dirpath", str(tmp_path / "ckpts"), "--trainer.enable_progress_bar", "false",
           "--trainer.max_steps", "1"]
    main(fit)
    last = str(tmp_path / "ckpts" / "last.ckpt")
    for change, words in ((["--model.init_args.num_directions", "8"], "model.num_directions is 8 here but 16"),
                          (["--model.init_args.lr_directions", "0.5"], "model.lr_directions is 0.5 here but 0.001")):
        capsys.readouterr()
        with pytest.raises(SystemExit) as stopped:
            main([*fit, "--trainer.max_steps", "3", "--ckpt_path", last, *change])
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.startswith("latentnav: error:")]
        assert stopped.value.code == 2 and len(lines) == 1 and words in lines[0] and "Traceback" not in err
    assert torch.load(last, weights_only=True)["global_step"] == 1  # nothing ran
