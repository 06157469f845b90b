"""Pre-emption (issue 22, item 4): SIGTERM, what a scheduler sends, and SIGUSR1 to a real process stop a
fit, the annotation job and a projection at a safe point; the command exits 143 with one line, and
what was done is kept and resumed from."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.distributed import REPO

CONFIG = str(REPO / "configs" / "unsupervised" / "demo.yaml")


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "latentnav", *args], cwd=cwd, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))


def signal_when(proc: subprocess.Popen, ready, signum: int, timeout: float = 180) -> tuple[int, str]:
    """Send ``signum`` once ``ready()`` holds; (exit code, stderr). Fails if the process ends first."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError(f"not ready before the process ended or {timeout:.0f} s: {proc.communicate()[1][-3000:]}")
        time.sleep(0.1)
    proc.send_signal(signum)
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError("the signal did not stop the process within 120 s") from None
    return proc.returncode, err


def stop_line(err: str) -> str:
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("latentnav:")]
    assert len(lines) == 1 and lines[0].startswith("latentnav: stopped by a termination signal"), err[-3000:]
    return lines[0]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1])
def test_a_signalled_fit_saves_last_ckpt_exits_143_and_resumes(tmp_path, signum, capsys, monkeypatch):
    fit = ["fit", "--config", CONFIG, "--data.init_args.steps_per_epoch", "1000", "--data.init_args.num_val", "32",
           "--trainer.enable_progress_bar", "false", "--checkpoint.every_n_train_steps", "2"]
    last = tmp_path / "runs/unsupervised_demo/version_0/checkpoints/last.ckpt"
    code, err = signal_when(start([*fit, "--trainer.max_steps", "100000"], tmp_path), last.is_file, signum)
    line = stop_line(err)
    assert code == 143
    step = torch.load(last, weights_only=True)["global_step"]
    assert 2 <= step < 1000 and f"stopped at global step {step}; resumable checkpoint" in line  # mid-epoch
    assert f"--ckpt_path {last.relative_to(tmp_path)}" in line
    # The resume goes on from that step (in this process: the same code path, without a second start-up).
    from latentnav.commands.cli import main

    monkeypatch.chdir(tmp_path)
    main([*fit, "--trainer.max_steps", str(step + 2), "--ckpt_path", str(last)])
    resumed = tmp_path / "runs/unsupervised_demo/version_1/checkpoints/last.ckpt"
    assert torch.load(resumed, weights_only=True)["global_step"] == step + 2


def test_a_terminated_annotation_keeps_its_shards_and_resumes(tmp_path, capsys):
    args = ["annotate", "--num_train", "20000", "--num_val", "100", "--annotate_batch_size", "50", "--shard_size", "100",
            "--cache_dir", str(tmp_path / "cache")]
    store = tmp_path / "cache" / "train"
    code, err = signal_when(start(args, tmp_path), lambda: len(list(store.glob("shard_*.pt"))) >= 2, signal.SIGTERM)
    line = stop_line(err)
    kept = len(list(store.glob("shard_*.pt")))
    assert code == 143 and f"keeps its {kept} complete shard(s)" in line and 2 <= kept < 200
    assert not (store / "manifest.json").exists()
    # Running it again annotates only the rest (a smaller store would have another key: the same command).
    from latentnav.commands.cli import main

    main(args)  # raises SystemExit only on a non-zero exit
    assert f"({kept} shard(s) already done" in capsys.readouterr().out
    assert (store / "manifest.json").is_file()


def test_a_signalled_projection_keeps_its_parts(tmp_path):
    from PIL import Image

    from latentnav.datamodules.demo_faces import generate

    photos = tmp_path / "photos"
    photos.mkdir()
    for i, im in enumerate(generate(8, seed=5, image_size=32)[0]):
        Image.fromarray(im).save(photos / f"f{i}.png")
    out = tmp_path / "proj"
    args = ["project", "--images", str(photos), "--steps", "400", "--batch_size", "1", "--out", str(out),
            "--accelerator", "cpu"]
    code, err = signal_when(start(args, tmp_path), lambda: len(list((out / ".parts").glob("b*.pt"))) >= 1,
                            signal.SIGUSR1)
    line = stop_line(err)
    assert code == 143 and "what was written is kept" in line
    assert 1 <= len(list((out / ".parts").glob("b*.pt"))) < 8 and not (out / "latents.pt").exists()
