"""A disk filling during training (issue 22, item 7): the first failed write, a TensorBoard event or a
checkpoint, stops the fit with one line naming the path; the previous checkpoint is kept whole."""

import errno
import io
from pathlib import Path

import torch

from tests.test_faults import one_line_error, run_cli

REPO = Path(__file__).resolve().parents[2]


def unsupervised(tmp_path: Path, *extra: str) -> list[str]:
    return ["fit", "--config", str(REPO / "configs/unsupervised/demo.yaml"), "--data.init_args.steps_per_epoch", "50",
            "--data.init_args.num_val", "32", "--trainer.max_steps", "12", "--trainer.log_every_n_steps", "1",
            "--checkpoint.every_n_train_steps", "2", "--checkpoint.dirpath", str(tmp_path / "ckpts"),
            "--trainer.enable_progress_bar", "false", *extra]


class Full(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_under_the_logger_is_one_line_at_the_first_failed_write(tmp_path, capsys, monkeypatch):
    import tensorboard.compat.tensorflow_stub.io.gfile as gfile

    from tests.kill_after import CountSteps  # records the steps of the run below

    monkeypatch.chdir(tmp_path)
    real = gfile.LocalFileSystem.append
    CountSteps.seen = []

    def append(self, filename, file_content, binary_mode=False):
        if CountSteps.seen and CountSteps.seen[-1] >= 5:  # the disk fills up at step 5
            raise OSError(errno.ENOSPC, "No space left on device", filename)
        return real(self, filename, file_content, binary_mode)

    monkeypatch.setattr(gfile.LocalFileSystem, "append", append)
    code, err = run_cli(unsupervised(tmp_path, "--trainer.callbacks+=tests.kill_after.CountSteps"), capsys)
    assert code == 2 and "Exception in thread" not in err
    one_line_error(err, "trainer.logger: cannot write to", "runs/unsupervised_demo/version_0",
                   "No space left on device", "last checkpoint is kept")
    assert CountSteps.seen[-1] <= 6  # stopped at the first failed write, not at the end (12)
    assert torch.load(tmp_path / "ckpts" / "last.ckpt", weights_only=True)["global_step"] == 4  # whole


def test_a_full_disk_at_a_checkpoint_is_one_line_and_keeps_the_previous_one(tmp_path, capsys, monkeypatch):
    import latentnav.atomic

    monkeypatch.chdir(tmp_path)
    saves = {"n": 0}

    def opener(path, mode="r", *args, **kwargs):
        if "last.ckpt" in str(path) and "x" in mode:
            saves["n"] += 1
            if saves["n"] > 2:  # the third save of last.ckpt finds the disk full
                return Full()
        return open(path, mode, *args, **kwargs)

    monkeypatch.setattr(latentnav.atomic, "open", opener, raising=False)
    code, err = run_cli(unsupervised(tmp_path), capsys)
    assert code == 2
    line = one_line_error(err, "cannot write", "last.ckpt", "No space left on device", "kept as it was")
    assert str(tmp_path / "ckpts") in line
    kept = torch.load(tmp_path / "ckpts" / "last.ckpt", weights_only=True)  # whole, from the second save
    assert kept["global_step"] == 4
    assert not list((tmp_path / "ckpts").glob(".last.ckpt.tmp-*"))
