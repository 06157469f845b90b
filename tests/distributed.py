"""Run ``train.py`` as a user would on N processes (``--trainer.strategy ddp``), bounded in time.

Distributed tests keep the Trainer's defaults (progress bar, model summary): turning the progress
bar off once hid a hang (rank 0 reduced an epoch metric that rank 1 never reduced). A run that
outlives ``timeout`` is killed with all its ranks and the test fails instead of hanging the suite.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_train(args: list[str], cwd: Path, timeout: float = 300, env: dict | None = None) -> str:
    """``train.py *args`` in ``cwd``; returns stdout; fails on a non-zero exit or after ``timeout`` s."""
    proc = subprocess.Popen([sys.executable, str(REPO / "train.py"), *args], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            env=dict(os.environ, PYTHONPATH=str(REPO), **(env or {})))
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # every rank: Lightning's launcher starts them in this session
        out, err = proc.communicate()
        raise AssertionError(f"train.py {' '.join(args[:3])} did not finish in {timeout:.0f} s (hung?):\n"
                             f"{err[-3000:]}") from None
    assert proc.returncode == 0, f"train.py exited {proc.returncode}:\n{err[-4000:]}"
    return out


def ddp(processes: int = 2) -> list[str]:
    return ["--trainer.strategy", "ddp", "--trainer.devices", str(processes), "--trainer.accelerator", "cpu"]
