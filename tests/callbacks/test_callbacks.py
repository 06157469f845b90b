from types import SimpleNamespace

import numpy as np
import pytest
import torch

from latentnav.callbacks import process_group_exit
from latentnav.callbacks.attribute_grid import _GREEN, _ORANGE, _RED, labelled_grid
from latentnav.callbacks.run_summary import format_table, per_name_table
from latentnav.callbacks.thread_budget import ThreadBudget, threads_per_process


def test_labelled_grid_colours_right_wrong_and_missed():
    images = torch.zeros(3, 3, 8, 8)
    names = ["Male", "Young"]
    probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.1, 0.1]])
    truth = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
    grid = labelled_grid(images, probs, truth, names, scale=4, columns=3)
    tile_w = 112  # at least 112 px per tile so that names fit
    assert grid.shape == (8 * 4 + 4 + 11, 3 * tile_w, 3) and grid.dtype == np.uint8
    text = grid[8 * 4 :]

    def has(colour, tile):  # glyphs are antialiased: look for pixels close to the colour
        patch = text[:, tile * tile_w : (tile + 1) * tile_w].astype(int)
        return (np.abs(patch - np.array(colour)).max(-1) <= 12).any()

    assert has(_GREEN, 0) and not has(_RED, 0)  # true positive
    assert has(_RED, 1) and not has(_GREEN, 1)  # false positive
    assert has(_ORANGE, 2) and not has(_RED, 2)  # missed
    assert (grid[: 8 * 4, :32] == 128).all()  # image 0 (zeros = mid grey) upscaled 4x


def test_summary_table_groups_split_metric_name():
    metrics = {"val/acc/Male": 0.5, "val/acc/Young": 1.0, "val/auroc/Male": 0.75, "val/acc_mean": 0.75,
               "test/acc/Male": 0.0, "train/loss": 1.0}
    columns, rows = per_name_table(metrics, "val")
    assert columns == ["acc", "auroc"] and rows == {"Male": {"acc": 0.5, "auroc": 0.75}, "Young": {"acc": 1.0}}
    table = format_table(columns, rows).splitlines()
    assert table[1].split() == ["Male", "0.5000", "0.7500"]
    assert table[-1].split()[:2] == ["mean", "0.7500"]


@pytest.mark.parametrize("processes, cores, expected", [(1, 2, 2), (2, 2, 1), (4, 2, 1), (2, 16, 8), (3, 16, 5)])
def test_threads_per_process(processes, cores, expected):
    assert threads_per_process(processes, cores) == expected


def test_thread_budget_sets_torch_threads(monkeypatch):
    previous = torch.get_num_threads()
    monkeypatch.setattr("latentnav.callbacks.thread_budget.available_cores", lambda: 4)
    monkeypatch.setattr("os.getloadavg", lambda: (9.0, 9.0, 9.0))
    try:
        with pytest.warns(UserWarning, match=r"load average 9.0 on 4 cores before training: another process is computing"):
            ThreadBudget().setup(SimpleNamespace(num_devices=2, global_rank=0), None, "fit")
        assert torch.get_num_threads() == 2
        ThreadBudget(num_threads=1, warn_load=0).setup(SimpleNamespace(num_devices=2, global_rank=0), None, "fit")
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(previous)


def test_process_group_exit_registers_one_handler_that_destroys_the_group(monkeypatch, tmp_path):
    registered = []
    monkeypatch.setattr(process_group_exit.atexit, "register", registered.append)
    monkeypatch.setattr(process_group_exit, "_registered", False)
    callback = process_group_exit.ProcessGroupExit()
    callback.setup(None, None, "fit")
    assert registered == []  # nothing to release outside a distributed run
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        callback.setup(None, None, "fit")
        callback.setup(None, None, "validate")
        assert registered == [process_group_exit.destroy_process_group]
        registered[0]()
        assert not torch.distributed.is_initialized()
        registered[0]()  # a second call (e.g. Lightning's own handler ran first) is harmless
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
