"""The report's summaries compare like with like: the guided edits, which flip fewer attributes, are
compared with this run over the attributes both flip, without shrinking the other runs' common set."""

import math

import torch

from latentnav.callbacks.direction_report import GUIDED, DirectionReport


def fake(names, flips, off):
    k = len(names)
    effect = torch.full((k, k), off, dtype=torch.float64)
    step = torch.tensor([1.0 if f else math.nan for f in flips], dtype=torch.float64)
    for i in range(k):
        effect[i, i] = 0.6
        if not flips[i]:
            effect[i] = math.nan
    return {"names": names, "targets": list(range(k)), "effect": effect, "step": step,
            "cannot_flip": torch.isnan(step), "flip_at_2x": step, "flip_at_3x": step,
            "off_target_abs_max": torch.tensor(off), "directions": torch.eye(k)}


def test_guided_edits_get_their_own_common_set():
    names = ["A", "B", "C"]
    report = DirectionReport(generator="g", annotator="a", space="z", reference="A", replicates=0)
    report.results = {"this run": fake(names, [True, True, True], 0.05),
                      "linear map, lambda=0": fake(names, [True, True, True], 0.08),
                      GUIDED: fake(names, [True, False, False], 0.01)}
    text = report.report(names)
    assert "averaged over the attributes every run flips (A, B, C)" in text
    assert "averaged over the attributes both this run and its classifier-guided version flip (A)" in text
    main = text.split("every run flips (A, B, C)")[1].split("\n\n")[1]
    assert GUIDED not in main and "| linear map, lambda=0 | 0.080 | +0.030 |" in main
    guided = text.split("guided version flip (A)")[1].split("\n\n")[1]
    assert f"| {GUIDED} | 0.010 | -0.040 |" in guided and "| this run | 0.050 |" in guided


def test_training_seconds_add_up_over_a_resume(monkeypatch):
    """directions.npz records the training time of every run a resumed fit continues, not only the last."""
    import time as clock

    now = [100.0]
    monkeypatch.setattr(clock, "perf_counter", lambda: now[0])
    first = DirectionReport(generator="g", annotator="a", space="z", reference="A")
    assert first.training_seconds() is None
    first.on_fit_start(None, None)
    now[0] += 30.0
    state = first.state_dict()  # saved in the checkpoint
    assert state == {"training_seconds": 30.0}
    resumed = DirectionReport(generator="g", annotator="a", space="z", reference="A")
    resumed.load_state_dict(state)
    now[0] += 500.0  # time between the runs does not count
    resumed.on_fit_start(None, None)
    now[0] += 12.0
    assert resumed.training_seconds() == 42.0


def test_counts_out_of_range_are_one_line():
    import pytest

    from latentnav.errors import ConfigError

    for field, value in (("replicates", -1), ("num_samples", 0), ("guided_samples", -2), ("replicates", 1.5)):
        with pytest.raises(ConfigError, match=f"DirectionReport.{field}: expected a whole number"):
            DirectionReport(**{field: value})
