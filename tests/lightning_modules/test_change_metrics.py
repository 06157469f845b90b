"""What else an edit changes: per-step mean absolute change of a per-image quantity, read at a step."""

import math

import pytest
import torch

from latentnav.lightning_modules.change_metrics import MeanAbsChange, at_steps


def test_planted_changes_land_in_their_factor_and_an_identity_edit_moves_nothing():
    metric = MeanAbsChange(num_directions=3, num_alphas=2, width=3)
    before = torch.randn(10, 3, generator=torch.Generator().manual_seed(0))
    one, two = before.clone(), before.clone()
    one[:, 1] += 0.5  # direction 0 moves factor 1 only
    two[:, 0] -= 0.2  # direction 1 moves factors 0 and 2
    two[:, 2] += 0.3
    for a in range(2):
        metric.update(0, a, before, before if a == 0 else one)
        metric.update(1, a, before, before if a == 0 else two)
        metric.update(2, a, before, before)  # the identity edit
    mean = metric.compute()[0]
    torch.testing.assert_close(mean[0, 1], torch.tensor([0.0, 0.5, 0.0], dtype=torch.float64))
    torch.testing.assert_close(mean[1, 1], torch.tensor([0.2, 0.0, 0.3], dtype=torch.float64))
    assert float(mean[2].abs().max()) == 0.0 and float(mean[:, 0].abs().max()) == 0.0


def test_batches_and_replicates_add_up():
    x0, x1 = torch.randn(12, 2), torch.randn(12, 2)
    ids = torch.arange(12)
    whole, split = MeanAbsChange(1, 1, 2, replicates=30, seed=4), MeanAbsChange(1, 1, 2, replicates=30, seed=4)
    whole.update(0, 0, x0, x1, ids)
    for part in (slice(0, 5), slice(5, 12)):
        split.update(0, 0, x0[part], x1[part], ids[part])
    torch.testing.assert_close(whole.compute(), split.compute())
    plain = whole.compute()[0, 0, 0]
    torch.testing.assert_close(plain, (x1 - x0).abs().double().mean(0))
    assert not torch.allclose(whole.compute()[1:, 0, 0], plain.expand(30, 2))  # replicates resample
    with pytest.raises(ValueError, match="indices"):
        whole.update(0, 0, x0, x1)


def test_reading_the_curves_at_each_directions_step():
    alphas = torch.tensor([0.0, 1.0, 2.0, 4.0])
    curves = torch.tensor([[[0.0], [1.0], [2.0], [6.0]]] * 3, dtype=torch.float64)
    got = at_steps(curves, alphas, torch.tensor([1.5, 3.0, math.nan]))
    assert got[0, 0] == pytest.approx(1.5) and got[1, 0] == pytest.approx(4.0) and math.isnan(got[2, 0])
    assert math.isnan(at_steps(curves, alphas, torch.tensor([5.0, 0.0, 4.0]))[0, 0])  # beyond the grid
