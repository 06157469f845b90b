import math

import pytest
import torch

from latentnav.lightning_modules.bootstrap import BootstrapMean, percentile_interval, poisson_weights, separated


def test_weights_depend_only_on_seed_and_index():
    idx = torch.arange(100)
    w = poisson_weights(idx, replicates=64, seed=7)
    assert w.shape == (100, 64) and w.dtype == torch.float32
    assert torch.equal(w, w.round()) and w.min() >= 0
    # any batching or order gives each sample the same row
    perm = torch.randperm(100, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(poisson_weights(idx[perm], 64, seed=7), w[perm], rtol=0, atol=0)
    parts = torch.cat([poisson_weights(chunk, 64, seed=7) for chunk in idx.split(13)])
    torch.testing.assert_close(parts, w, rtol=0, atol=0)
    assert torch.equal(poisson_weights([3, 5], 64, seed=7), w[[3, 5]])
    # other seeds and other samples differ
    assert not torch.equal(poisson_weights(idx, 64, seed=8), w)
    assert not torch.equal(w[0], w[1])


def test_weights_are_poisson_one():
    w = poisson_weights(torch.arange(2000), replicates=100, seed=0).double()  # 200 000 draws
    assert w.mean().item() == pytest.approx(1.0, abs=0.01)
    assert w.var().item() == pytest.approx(1.0, abs=0.02)
    for k in range(4):  # P(K = k) = e^-1 / k!
        assert (w == k).double().mean().item() == pytest.approx(math.exp(-1) / math.factorial(k), abs=0.005)
    # replicates of one sample and samples of one replicate are uncorrelated
    c = torch.corrcoef(w[:, :10].T)
    assert (c - torch.eye(10, dtype=c.dtype)).abs().max() < 0.1


def test_percentile_interval_and_separated():
    reps = torch.arange(101, dtype=torch.float64).expand(2, 101)
    low, high = percentile_interval(reps, level=0.9)
    torch.testing.assert_close(low, torch.full((2,), 5.0, dtype=torch.float64))
    torch.testing.assert_close(high, torch.full((2,), 95.0, dtype=torch.float64))
    with_nan = torch.tensor([1.0, 2.0, math.nan])
    assert math.isnan(percentile_interval(with_nan)[0].item())
    assert percentile_interval(with_nan, level=0.5, ignore_nan=True)[0].item() == pytest.approx(1.25)
    with pytest.raises(ValueError, match="level"):
        percentile_interval(reps, level=95)
    a_low, a_high = torch.tensor([0.0, 0.0, 0.0, math.nan]), torch.tensor([1.0, 1.0, 1.0, 1.0])
    b_low, b_high = torch.tensor([1.5, 0.5, -3.0, 2.0]), torch.tensor([2.0, 2.0, -2.0, 3.0])
    assert separated(a_low, a_high, b_low, b_high).tolist() == [True, False, True, True]
    assert separated(b_low, b_high, a_low, a_high).tolist() == [True, False, True, True]
    assert not bool(separated(0.0, math.nan, 2.0, 3.0))


def test_interval_covers_the_true_mean_about_95_percent_of_the_time():
    """Monte Carlo: 200 experiments of 100 exponential(1) samples (true mean 1, skewed)."""
    gen = torch.Generator().manual_seed(1234)
    covered = 0
    repeats, n = 200, 100
    for r in range(repeats):
        x = torch.empty(n, dtype=torch.float64).exponential_(1.0, generator=gen)
        metric = BootstrapMean(replicates=400, seed=r)
        metric.update(x, torch.arange(n))
        out = metric.compute()
        assert out["mean"].item() == pytest.approx(x.mean().item())
        covered += int(out["low"].item() <= 1.0 <= out["high"].item())
    assert 0.90 <= covered / repeats <= 0.99, covered / repeats


def test_interval_width_matches_the_standard_error():
    """Normal data: the 95 % interval is about 2 x 1.96 / sqrt(n) wide."""
    gen = torch.Generator().manual_seed(5)
    widths = []
    for n in (100, 1600):
        x = torch.randn(n, generator=gen, dtype=torch.float64)
        metric = BootstrapMean(replicates=500, seed=1)
        metric.update(x, torch.arange(n))
        out = metric.compute()
        widths.append((out["high"] - out["low"]).item())
        assert widths[-1] == pytest.approx(2 * 1.96 / math.sqrt(n), rel=0.2)


def test_batches_and_ranks_add_up_to_one_pass():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(90, 2, generator=gen)
    idx = torch.arange(1000, 1090)
    one = BootstrapMean(replicates=50, seed=11, shape=(2,))
    one.update(x, idx)
    batched = BootstrapMean(replicates=50, seed=11, shape=(2,))
    for xs, ids in zip(x.split(17), idx.split(17)):
        batched.update(xs, ids)
    ranks = [BootstrapMean(replicates=50, seed=11, shape=(2,)) for _ in range(2)]
    for r, metric in enumerate(ranks):  # DDP-style slices rank::world_size
        metric.update(x[r::2], idx[r::2])
    ranks[0].merge_state(ranks[1])
    expected = one.compute()
    assert expected["replicates"].shape == (2, 50) and expected["low"].shape == (2,)
    for other in (batched, ranks[0]):
        got = other.compute()
        for key in expected:
            torch.testing.assert_close(got[key], expected[key], rtol=1e-12, atol=1e-12)
    # a different seed is a different bootstrap
    assert not torch.allclose(BootstrapMean(50, seed=12, shape=(2,)).forward(x, idx)["replicates"],
                              expected["replicates"])


def test_bootstrap_mean_rejects_mismatched_inputs():
    metric = BootstrapMean(replicates=10)
    with pytest.raises(ValueError, match=r"values must have shape \(N, \)"):
        metric.update(torch.zeros(3, 2), torch.arange(3))
    with pytest.raises(ValueError, match="3 values but 2 indices"):
        metric.update(torch.zeros(3), torch.arange(2))
    with pytest.raises(ValueError, match="non-negative"):
        poisson_weights(torch.tensor([-1]), 4, 0)
    with pytest.raises(TypeError, match="integers"):
        poisson_weights(torch.tensor([0.5]), 4, 0)
