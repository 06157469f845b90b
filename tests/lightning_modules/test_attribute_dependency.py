import math

import pytest
import torch

from latentnav.lightning_modules.attribute_dependency import AttributeDependency, interpolate_at_crossing

ALPHAS = [0.0, 1.0, 2.0, 3.0]
TARGETS = [0, 1, 2, 0]  # direction 3 moves attribute 0 again, non-linearly
A = 3


def planted_logits(n: int = 40, seed: int = 0):
    """Unedited logits (n, A) with different scales, and per direction and alpha the edited ones."""
    gen = torch.Generator().manual_seed(seed)
    scale = torch.tensor([1.0, 3.0, 0.5], dtype=torch.float64)
    l0 = torch.randn(n, A, generator=gen, dtype=torch.float64) * scale + 2.0
    sigma = l0.std(0, unbiased=False)
    sign = torch.where(torch.arange(n) % 2 == 0, 1.0, -1.0).double()  # +-1 per sample: mean 0, |mean| 1

    def edited(direction: int, alpha: float) -> torch.Tensor:
        l1 = l0.clone()
        if direction == 0:  # only the target moves, alpha sigma_0
            l1[:, 0] += alpha * sigma[0]
        elif direction == 1:  # target by alpha sigma_1; attribute 2 by alpha sigma_2 up or down per sample
            l1[:, 1] += alpha * sigma[1]
            l1[:, 2] += alpha * sigma[2] * sign
        elif direction == 3:  # target by 0.4 alpha^2 sigma_0; attribute 1 by 0.2 alpha^2 sigma_1
            l1[:, 0] += 0.4 * alpha ** 2 * sigma[0]
            l1[:, 1] -= 0.2 * alpha ** 2 * sigma[1]
        return l1  # direction 2 changes nothing

    return l0, sigma, edited


def feed(metric, l0, edited, rows=None, batch_size=None, indices=None):
    rows = torch.arange(len(l0)) if rows is None else rows
    for chunk in rows.split(batch_size or len(rows)):
        for k in range(len(TARGETS)):
            for a, alpha in enumerate(ALPHAS):
                kwargs = {} if indices is None else {"indices": indices[chunk]}
                metric.update(k, a, l0[chunk], edited(k, alpha)[chunk], **kwargs)


def test_planted_directions():
    l0, sigma, edited = planted_logits()
    metric = AttributeDependency(ALPHAS, TARGETS, A, at_target_change=1.0)
    feed(metric, l0, edited)
    out = metric.compute()
    torch.testing.assert_close(out["sigma"], sigma)  # population std of the unedited logits
    grid = torch.tensor(ALPHAS, dtype=torch.float64)
    zeros = torch.zeros(4, dtype=torch.float64)
    # direction 0: target only -> AD 0 everywhere, target change 1 reached at alpha 1
    torch.testing.assert_close(out["target_change"][0], grid)
    torch.testing.assert_close(out["mean_ad"][0], zeros)
    assert out["mean_ad_at_target"][0].item() == pytest.approx(0.0, abs=1e-12)
    assert out["step_at_target"][0].item() == pytest.approx(1.0)
    # direction 1: one of the A - 1 = 2 others moves 1 sigma per unit target change (up for half the
    # samples, down for the rest: absolute per-sample changes, not the mean change, count)
    torch.testing.assert_close(out["target_change"][1], grid)
    torch.testing.assert_close(out["attribute_change"][1, :, 2], grid)
    torch.testing.assert_close(out["attribute_change"][1, :, 0], zeros)
    torch.testing.assert_close(out["mean_ad"][1], grid / (A - 1))
    assert out["mean_ad_at_target"][1].item() == pytest.approx(1 / (A - 1))
    # direction 2 changes nothing: it never reaches the target change, so no AD to compare
    torch.testing.assert_close(out["target_change"][2], zeros)
    assert math.isnan(out["mean_ad_at_target"][2].item()) and math.isnan(out["step_at_target"][2].item())
    # direction 3: target change 0.4 alpha^2 = 0, 0.4, 1.6, 3.6 crosses 1 halfway between alpha 1 and 2;
    # mean-AD 0.2 alpha^2 / 2 = 0.1 and 0.4 there -> 0.25 by linear interpolation, at alpha 1.5
    torch.testing.assert_close(out["target_change"][3], 0.4 * grid ** 2)
    torch.testing.assert_close(out["mean_ad"][3], 0.1 * grid ** 2)
    assert out["mean_ad_at_target"][3].item() == pytest.approx(0.25)
    assert out["step_at_target"][3].item() == pytest.approx(1.5)


def test_equal_target_change_is_a_constructor_argument():
    l0, _, edited = planted_logits()
    metric = AttributeDependency(ALPHAS, TARGETS, A, at_target_change=2.5)
    feed(metric, l0, edited)
    out = metric.compute()
    assert out["mean_ad_at_target"][1].item() == pytest.approx(2.5 / (A - 1))
    assert out["step_at_target"][1].item() == pytest.approx(2.5)
    # direction 3: 1.6 at alpha 2, 3.6 at alpha 3 -> 2.5 is 0.45 of the way; AD 0.4 -> 0.9
    assert out["mean_ad_at_target"][3].item() == pytest.approx(0.4 + 0.45 * 0.5)
    beyond = AttributeDependency(ALPHAS, TARGETS, A, at_target_change=3.5)
    feed(beyond, l0, edited)
    reached = ~torch.isnan(beyond.compute()["mean_ad_at_target"])
    assert reached.tolist() == [False, False, False, True]  # only direction 3 gets past 3 sigma


@pytest.mark.filterwarnings("ignore:.*was called before the ``update`` method")  # merged, never updated itself
def test_batches_and_ranks_give_one_result():
    l0, _, edited = planted_logits(n=37, seed=1)
    one = AttributeDependency(ALPHAS, TARGETS, A)
    feed(one, l0, edited)
    batched = AttributeDependency(ALPHAS, TARGETS, A)
    feed(batched, l0, edited, batch_size=6)
    ranks = [AttributeDependency(ALPHAS, TARGETS, A) for _ in range(2)]
    for r, metric in enumerate(ranks):  # what DDP does: rank r edits rows r::2, states are summed
        feed(metric, l0, edited, rows=torch.arange(r, len(l0), 2), batch_size=5)
    merged = AttributeDependency(ALPHAS, TARGETS, A)
    merged.merge_state(ranks[0])
    merged.merge_state(ranks[1])
    summed = AttributeDependency(ALPHAS, TARGETS, A)
    for name in summed._defaults:  # the sum dist_reduce_fx="sum" performs
        setattr(summed, name, getattr(ranks[0], name) + getattr(ranks[1], name))
    expected = one.compute()
    for other in (batched, merged, summed):
        got = other.compute()
        assert got.keys() == expected.keys()
        for key in expected:
            torch.testing.assert_close(got[key], expected[key], rtol=1e-12, atol=1e-12, equal_nan=True)
    # one rank alone is a different (smaller) measurement
    assert not torch.allclose(ranks[0].compute()["sigma"], expected["sigma"])


def test_unmeasured_cells_and_constant_attributes_are_nan():
    l0, _, edited = planted_logits()
    metric = AttributeDependency(ALPHAS, TARGETS, A)
    metric.update(0, 0, l0, edited(0, 0.0))
    metric.update(0, 1, l0, edited(0, 1.0))
    out = metric.compute()
    assert torch.isnan(out["mean_ad"][0, 2:]).all() and not torch.isnan(out["mean_ad"][0, :2]).any()
    assert out["mean_ad_at_target"][0].item() == pytest.approx(0.0, abs=1e-12)
    assert torch.isnan(out["mean_ad_at_target"][1:]).all()
    constant = l0.clone()
    constant[:, 2] = 5.0  # sigma_2 = 0: a change of attribute 2 cannot be put in its sigma units
    metric = AttributeDependency(ALPHAS, TARGETS, A)
    metric.update(0, 1, constant, constant + 1.0)
    out = metric.compute()
    assert math.isnan(out["sigma"][2].item()) and math.isnan(out["mean_ad"][0, 1].item())
    assert not math.isnan(out["target_change"][0, 1].item())


def test_bootstrap_interval_is_paired_and_split_invariant():
    gen = torch.Generator().manual_seed(2)
    n = 60
    l0 = torch.randn(n, A, generator=gen, dtype=torch.float64)
    noise = torch.randn(len(ALPHAS), n, A, generator=gen, dtype=torch.float64)
    idx = torch.arange(500, 500 + n)

    def edited(k, alpha):  # target +alpha, the others jitter by alpha * 0.3 * noise
        a = ALPHAS.index(alpha)
        l1 = l0 + alpha * 0.3 * noise[a]
        l1[:, TARGETS[k]] = l0[:, TARGETS[k]] + alpha
        return l1

    plain = AttributeDependency(ALPHAS, TARGETS, A)
    feed(plain, l0, edited)
    boot = AttributeDependency(ALPHAS, TARGETS, A, replicates=200, seed=9)
    feed(boot, l0, edited, indices=idx)
    out, expected = boot.compute(), plain.compute()
    for key in expected:  # the plain estimate is unchanged by the bootstrap
        torch.testing.assert_close(out[key], expected[key], equal_nan=True)
    est, low, high = out["mean_ad_at_target"], out["mean_ad_at_target_low"], out["mean_ad_at_target_high"]
    reps = out["mean_ad_at_target_replicates"]
    assert reps.shape == (len(TARGETS), 200) and reps.std(-1).min() > 0
    assert (low < est).all() and (est < high).all()
    ranks = [AttributeDependency(ALPHAS, TARGETS, A, replicates=200, seed=9) for _ in range(2)]
    for r, metric in enumerate(ranks):
        feed(metric, l0, edited, rows=torch.arange(r, n, 2), batch_size=7, indices=idx)
    ranks[0].merge_state(ranks[1])
    torch.testing.assert_close(ranks[0].compute()["mean_ad_at_target_replicates"], reps, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="needs the samples' indices"):
        boot.update(0, 0, l0, l0)


def test_interpolate_at_crossing_and_argument_checks():
    curve = torch.tensor([[0.0, 0.5, 1.5], [0.0, 2.0, 3.0], [0.0, 0.2, 0.4], [0.0, math.nan, 2.0]])
    values = torch.tensor([[0.0, 1.0, 3.0], [0.0, 4.0, 5.0], [1.0, 1.0, 1.0], [0.0, 7.0, 9.0]])
    got = interpolate_at_crossing(curve, values, 1.0)
    assert got[0].item() == pytest.approx(2.0) and got[1].item() == pytest.approx(2.0)
    assert math.isnan(got[2].item())  # never reaches 1
    assert math.isnan(got[3].item())  # crosses next to an unmeasured (NaN) point: unknown where
    with pytest.raises(ValueError, match="start at 0"):
        AttributeDependency([1.0, 2.0], [0], 2)
    with pytest.raises(ValueError, match="at_target_change"):
        AttributeDependency(ALPHAS, [0], 2, at_target_change=0.0)
    with pytest.raises(ValueError, match="targets"):
        AttributeDependency(ALPHAS, [2], 2)
    with pytest.raises(ValueError, match=r"logits must both be \(N, 3\)"):
        AttributeDependency(ALPHAS, TARGETS, A).update(0, 0, torch.zeros(4, 2), torch.zeros(4, 2))
