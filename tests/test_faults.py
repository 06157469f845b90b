"""Fault injection: kills, wrong and hostile files, absurd settings, two runs at once (issue 12).

Each case asserts the exit code, that the user sees one line (no traceback), and that nothing
previously valid was lost: the previous ``last.ckpt``, the stable exports, the annotation cache.
Runs are the real command line on the bundled demo at small sizes; only the kill and the two
concurrent runs need their own processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from latentnav.commands.cli import main
from latentnav.safe_load import read_training_checkpoint

REPO = Path(__file__).resolve().parents[1]
SUPERVISED = str(REPO / "configs" / "supervised" / "demo_no_ortho.yaml")
EXPORT = Path("runs/directions/linear_map_lambda0.npz")  # the config's export_to, relative to the run folder


def supervised(tmp_path: Path, *extra: str) -> list[str]:
    """A small supervised fit (20 steps an epoch) whose checkpoints all go to one folder."""
    return ["fit", "--config", SUPERVISED, "--data.init_args.num_train", "640", "--data.init_args.num_val", "128",
            "--data.init_args.batch_size", "32", "--data.init_args.cache_dir", str(tmp_path / "cache"),
            "--checkpoint.dirpath", str(tmp_path / "ckpts"), "--trainer.max_epochs", "1",
            "--trainer.callbacks.init_args.num_samples", "32",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false", *extra]


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    """``latentnav *args`` in this process: (exit code, stderr)."""
    capsys.readouterr()
    try:
        main(args)
        code = 0
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def one_line_error(err: str, *words: str) -> str:
    """The single ``latentnav: error:`` line of ``err``; fails on a traceback or a missing word."""
    assert "Traceback" not in err, err[-2000:]
    lines = [line for line in err.splitlines() if line.startswith("latentnav: error:")]
    assert len(lines) == 1, err[-2000:]
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def spawn(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(REPO / "train.py"), *args], cwd=cwd, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True,
                            env=dict(os.environ, PYTHONPATH=str(REPO), **(env or {})))


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        raise AssertionError(f"run did not finish in {timeout:.0f} s:\n{err[-3000:]}") from None
    return proc.returncode, err


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    """One finished supervised fit: its folder, last.ckpt, step and the bytes of its stable export."""
    root = tmp_path_factory.mktemp("good_run")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        main(supervised(root))
    finally:
        os.chdir(cwd)
    last = root / "ckpts" / "last.ckpt"
    return root, last, read_training_checkpoint(last)["global_step"], (root / EXPORT).read_bytes()


def copy_run(good_run, tmp_path: Path) -> tuple[Path, Path]:
    """The good run's cache, checkpoints and exports in ``tmp_path`` (each test damages its own copy)."""
    import shutil

    root = good_run[0]
    for name in ("cache", "ckpts", "runs"):
        shutil.copytree(root / name, tmp_path / name)
    return tmp_path, tmp_path / "ckpts" / "last.ckpt"


# 1. last.ckpt ---------------------------------------------------------------------------------

@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="needs /dev/shm (a tmpfs) as another filesystem")
def test_sigkill_while_last_ckpt_is_written_with_tmpdir_elsewhere(tmp_path, capsys, monkeypatch):
    # Its own first run: a resume rewrites last.ckpt in place only in the folder that wrote it.
    root, last = tmp_path, tmp_path / "ckpts" / "last.ckpt"
    monkeypatch.chdir(root)
    assert run_cli(supervised(root), capsys)[0] == 0
    step = read_training_checkpoint(last)["global_step"]
    tmpdir = Path("/dev/shm") / f"latentnav-faults-{os.getpid()}"
    tmpdir.mkdir(exist_ok=True)
    assert os.stat(tmpdir).st_dev != os.stat(root).st_dev  # the case that broke: TMPDIR on another filesystem
    before = last.read_bytes()

    # The resumed run is SIGKILLed halfway through writing its first last.ckpt.
    killed = spawn(supervised(root, "--trainer.max_epochs", "3", "--ckpt_path", str(last),
                              "--trainer.callbacks+=tests.kill_after.KillDuringLastCheckpointWrite"),
                   root, env={"TMPDIR": str(tmpdir)})
    code, err = finish(killed)
    assert code == -signal.SIGKILL, err[-3000:]
    assert last.read_bytes() == before  # the previous good checkpoint, whole
    assert read_training_checkpoint(last)["global_step"] == step
    assert [p.name for p in last.parent.glob(".last.ckpt.tmp-*")]  # the kill did land mid-write

    # The next resume starts from it, removes the killed run's temporary file and finishes.
    code, err = run_cli(supervised(root, "--trainer.max_epochs", "2", "--ckpt_path", str(last)), capsys)
    assert code == 0, err[-3000:]
    assert read_training_checkpoint(last)["global_step"] == 2 * step
    assert [p.name for p in last.parent.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("content", [b"", "truncated", b"\x8a\x17junk" * 999, b"epoch: 3\nthis is text\n",
                                     "weights", "hostile"])
def test_unreadable_ckpt_path_is_one_line(good_run, tmp_path, capsys, monkeypatch, content):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.ckpt"
    if content == "truncated":
        whole = good_run[1].read_bytes()
        content = whole[: len(whole) // 2]
    elif content == "weights":  # a torch file, but not a training checkpoint
        torch.save({"weight": torch.zeros(2)}, bad)
    elif content == "hostile":
        torch.save({"state_dict": {}, "global_step": 0, "x": _Hostile()}, bad)
    if isinstance(content, bytes):
        bad.write_bytes(content)
    code, err = run_cli(supervised(tmp_path, "--ckpt_path", str(bad)), capsys)
    assert code == 2
    line = one_line_error(err, str(bad))
    if content == "hostile":
        assert "refused" in line and "system" in line
    assert not (tmp_path / "cache").exists()  # refused before the annotation job


class _Hostile:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


# 2. Resume swaps ---------------------------------------------------------------------------

def test_resume_with_another_model_class_is_refused(good_run, tmp_path, capsys, monkeypatch, demo_root):
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(["fit", "--config", str(REPO / "configs" / "classifier" / "demo.yaml"),
                         "--data.init_args.root", str(demo_root), "--ckpt_path", str(good_run[1])], capsys)
    assert code == 2
    one_line_error(err, "SupervisedDirections", "AttributeClassifier")


def test_resume_with_another_data_generator_is_refused(good_run, tmp_path, capsys, monkeypatch):
    root, last = copy_run(good_run, tmp_path)
    monkeypatch.chdir(root)
    other = root / "other_generator.pt"
    blob = torch.load(REPO / "generators" / "pretrained" / "demo_generator.pt", weights_only=True)
    blob["state_dict"]["fc.bias"] = blob["state_dict"]["fc.bias"] + 0.5
    torch.save(blob, other)
    before = last.read_bytes()
    code, err = run_cli(supervised(root, "--data.init_args.generator", str(other), "--trainer.max_epochs", "2",
                                   "--ckpt_path", str(last)), capsys)
    assert code == 2
    one_line_error(err, "data.generator", "sha256")
    assert last.read_bytes() == before
    assert (root / EXPORT).read_bytes() == good_run[3]


# 3. Divergence -----------------------------------------------------------------------------

@pytest.mark.parametrize("lr", ["1e6", "1e38"])
def test_runaway_fit_stops_and_keeps_the_stable_export(good_run, tmp_path, capsys, monkeypatch, lr):
    root, last = copy_run(good_run, tmp_path)
    monkeypatch.chdir(root)
    code, err = run_cli(supervised(root, "--model.init_args.lr", lr, "--checkpoint.dirpath", str(root / "new")), capsys)
    assert code == 2
    one_line_error(err, *(("ran away", "global step 11") if lr == "1e6" else ("model.lr",)))
    assert (root / EXPORT).read_bytes() == good_run[3]  # the earlier good run's directions survive
    runs = sorted(root.glob("runs/supervised_demo_no_ortho/version_*"))
    if lr == "1e38":  # refused as a setting, before any folder is made
        assert [r.name for r in runs] == ["version_0"]
    else:  # the good run's folder, and this one's, without directions
        assert [r.name for r in runs] == ["version_0", "version_1"] and not (runs[1] / "directions.npz").exists()


def test_runaway_unsupervised_fit_stops_and_keeps_the_stable_export(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    export = tmp_path / "runs" / "directions" / "unsupervised_k16.npz"  # the config's export_to
    export.parent.mkdir(parents=True)
    export.write_bytes(b"an earlier run's directions")
    code, err = run_cli(["fit", "--config", str(REPO / "configs" / "unsupervised" / "demo.yaml"),
                         "--model.init_args.lr_directions", "1e6", "--model.init_args.lr_reconstructor", "1e6",
                         "--data.init_args.num_val", "64", "--trainer.max_steps", "40",
                         "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"], capsys)
    assert code == 2
    one_line_error(err, "ran away", "global step 11")
    assert export.read_bytes() == b"an earlier run's directions"
    assert not list(tmp_path.glob("runs/unsupervised_demo/version_0/directions.npz"))


# 4. Two runs of one config at once -----------------------------------------------------------

def test_version_folders_are_claimed_exclusively(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from pytorch_lightning.loggers import TensorBoardLogger

    from latentnav.commands.cli import claim_log_version

    # Two runs that listed the log folder at the same moment both computed "next is version_0".
    monkeypatch.setattr(TensorBoardLogger, "_get_next_version", lambda self: 0)
    runs = [SimpleNamespace(loggers=[TensorBoardLogger(str(tmp_path), name="x")]) for _ in range(3)]
    for run in runs:
        claim_log_version(run)
    assert [run.loggers[0].version for run in runs] == [0, 1, 2]
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["version_0", "version_1", "version_2"]
    (tmp_path / "file").write_text("")  # a log folder that cannot be made is one line naming the setting
    from latentnav.errors import ConfigError

    with pytest.raises(ConfigError, match="trainer.logger: cannot create log folder .*file/y.*a file is in the way"):
        claim_log_version(SimpleNamespace(loggers=[TensorBoardLogger(str(tmp_path / "file"), name="y")]))

    # The command line claims its folder as soon as the Trainer exists, before any data is prepared.
    from latentnav.commands.cli import LatentNavCLI

    monkeypatch.chdir(tmp_path)
    cli = LatentNavCLI(args=supervised(tmp_path)[1:], run=False)
    assert cli.trainer.loggers[0]._version == 0 and (tmp_path / cli.trainer.loggers[0].log_dir).is_dir()


def test_two_runs_of_one_config_started_together(good_run, tmp_path):
    import shutil

    shutil.copytree(good_run[0] / "cache", tmp_path / "cache")  # annotated: both runs race to their folders
    # Checkpoints in each run's version folder; one thread each, as two runs on 2 cores should have
    # (each alone would take both cores, and two such processes run many times slower).
    args = supervised(tmp_path, "--checkpoint.dirpath", "null", "--threads.num_threads", "1")
    procs = [spawn(args, tmp_path) for _ in range(2)]
    results = [finish(p) for p in procs]
    assert [code for code, _ in results] == [0, 0], [err[-2000:] for _, err in results]
    versions = sorted(p.name for p in (tmp_path / "runs" / "supervised_demo_no_ortho").iterdir())
    assert versions == ["version_0", "version_1"]
    for v in versions:
        folder = tmp_path / "runs" / "supervised_demo_no_ortho" / v
        assert len(list(folder.glob("events.out.tfevents.*"))) == 1  # not two runs' events in one folder
        assert (folder / "directions.npz").is_file() and (folder / "checkpoints" / "last.ckpt").is_file()
    manifest = tmp_path / "cache" / "train" / "manifest.json"
    assert manifest.is_file()


# 5. Late failures found early ----------------------------------------------------------------

def test_file_in_place_of_the_run_folder_is_one_line_before_annotation(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("runs").write_text("not a folder")
    code, err = run_cli(supervised(tmp_path, "--checkpoint.dirpath", "null"), capsys)
    assert code == 2
    one_line_error(err, "runs", "in the way")
    assert not (tmp_path / "cache").exists()


def test_unwritable_checkpoint_folder_is_one_line_before_annotation(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ckpts").write_text("a file where the checkpoint folder should be")
    code, err = run_cli(supervised(tmp_path), capsys)
    assert code == 2
    one_line_error(err, "checkpoint.dirpath", "ckpts")
    assert not (tmp_path / "cache").exists()


def test_full_disk_is_one_line_before_annotation(tmp_path, capsys, monkeypatch):
    import shutil

    import latentnav.commands.preflight

    monkeypatch.chdir(tmp_path)
    real = shutil.disk_usage
    monkeypatch.setattr(latentnav.commands.preflight.shutil, "disk_usage", lambda p: real(p)._replace(free=10_000))
    code, err = run_cli(supervised(tmp_path), capsys)
    assert code == 2
    one_line_error(err, "MB free", "two checkpoints")
    assert not (tmp_path / "cache").exists()


# 6. Out-of-range settings --------------------------------------------------------------------

@pytest.mark.parametrize("flag, value, words", [
    ("--trainer.max_steps", "-5", ("max_steps",)),
    ("--trainer.limit_val_batches", "-2", ("limit_val_batches",)),
    ("--divergence.factor", "0.5", ("divergence.factor",)),
    ("--model.init_args.lr", "-1", ("model.lr",)),
])
def test_out_of_range_setting_is_one_line(tmp_path, capsys, monkeypatch, flag, value, words):
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(supervised(tmp_path, flag, value), capsys)
    assert code == 2
    one_line_error(err, *words)
    assert not (tmp_path / "cache").exists()


def test_negative_width_is_one_line(tmp_path, capsys, monkeypatch, demo_root):
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(["fit", "--config", str(REPO / "configs" / "classifier" / "demo.yaml"),
                         "--data.init_args.root", str(demo_root), "--model.init_args.width", "-4"], capsys)
    assert code == 2
    one_line_error(err, "model.width")
