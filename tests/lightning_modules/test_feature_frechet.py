import math

import pytest
import torch

from latentnav.lightning_modules.feature_frechet import FeatureFrechet, frechet_distance


def whitened(n: int, f: int, seed: int = 0) -> torch.Tensor:
    """(n, f) samples whose sample mean is exactly 0 and unbiased sample covariance exactly I."""
    x = torch.randn(n, f, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    x = x - x.mean(0)
    chol = torch.linalg.cholesky(x.T @ x / (n - 1))
    return torch.linalg.solve_triangular(chol, x.T, upper=False).T


def random_spd(f: int, seed: int) -> torch.Tensor:
    m = torch.randn(f, f, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return m @ m.T / f + 0.1 * torch.eye(f, dtype=torch.float64)


def test_closed_forms():
    f = 5
    mu1, mu2 = torch.zeros(f, dtype=torch.float64), torch.arange(f, dtype=torch.float64)
    s1, s2 = random_spd(f, 1), random_spd(f, 2)
    assert frechet_distance(mu1, s1, mu1, s1).item() == pytest.approx(0.0, abs=1e-10)
    assert frechet_distance(mu1, s1, mu2, s1).item() == pytest.approx(30.0)  # |mu|^2 = 0+1+4+9+16
    # one dimension: (m1 - m2)^2 + (sd1 - sd2)^2
    one = frechet_distance(torch.tensor([1.0]), torch.tensor([[4.0]]), torch.tensor([3.0]), torch.tensor([[9.0]]))
    assert one.item() == pytest.approx(4.0 + 1.0)
    # diagonal: sum (sqrt(a) - sqrt(b))^2
    a, b = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([4.0, 1.0, 0.25])
    diag = frechet_distance(torch.zeros(3), torch.diag(a), torch.zeros(3), torch.diag(b))
    assert diag.item() == pytest.approx(((a.sqrt() - b.sqrt()) ** 2).sum().item())
    # general, non-commuting: Tr((S1 S2)^1/2) = sum of square roots of the eigenvalues of S1 S2
    cross = torch.linalg.eigvals(s1 @ s2).real.clamp_min(0).sqrt().sum()
    expected = (mu1 - mu2).square().sum() + s1.trace() + s2.trace() - 2 * cross
    assert frechet_distance(mu1, s1, mu2, s2).item() == pytest.approx(expected.item(), rel=1e-9)
    assert frechet_distance(mu2, s2, mu1, s1).item() == pytest.approx(expected.item(), rel=1e-9)  # symmetric
    # a singular covariance (all mass on a line) is fine
    line = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    assert frechet_distance(torch.zeros(2), line, torch.zeros(2), line).item() == pytest.approx(0.0, abs=1e-7)


def test_metric_on_planted_sets():
    f, n = 4, 200
    x = whitened(n, f)
    metric = FeatureFrechet(f)
    metric.update(reference=x, edited=x.clone())
    assert metric.compute().item() == pytest.approx(0.0, abs=1e-9)  # identical sets
    shift = torch.tensor([1.0, -2.0, 0.5, 0.0], dtype=torch.float64)
    metric = FeatureFrechet(f)
    metric.update(reference=x, edited=x + shift)
    assert metric.compute().item() == pytest.approx(shift.square().sum().item())  # |d mu|^2 = 5.25
    # reference ~ (0, I) exactly; edited = x L^T + m has covariance exactly S = L L^T:
    # d = |m|^2 + Tr(I + S - 2 S^1/2) = |m|^2 + sum (1 - sqrt(lambda_i(S)))^2
    s = random_spd(f, 3)
    y = x @ torch.linalg.cholesky(s).T + shift
    metric = FeatureFrechet(f)
    metric.update(reference=x)
    metric.update(edited=y.float())  # any float dtype goes in; states are float64
    closed = shift.square().sum() + ((1 - torch.linalg.eigvalsh(s).sqrt()) ** 2).sum()
    assert metric.compute().item() == pytest.approx(closed.item(), rel=1e-6)
    assert metric.compute().dtype == torch.float64


@pytest.mark.filterwarnings("ignore:.*was called before the ``update`` method")  # merged, never updated itself
def test_batches_and_ranks_add_up():
    f = 6
    gen = torch.Generator().manual_seed(4)
    ref = torch.randn(90, f, generator=gen)
    edi = 1.5 * torch.randn(70, f, generator=gen) + 0.3
    one = FeatureFrechet(f)
    one.update(ref, edi)
    batched = FeatureFrechet(f)
    for chunk in ref.split(11):
        batched.update(reference=chunk)
    for chunk in edi.split(8):
        batched.update(edited=chunk)
    ranks = [FeatureFrechet(f) for _ in range(2)]
    for r, metric in enumerate(ranks):
        metric.update(ref[r::2], edi[r::2])
    merged = FeatureFrechet(f)
    merged.merge_state(ranks[0])
    merged.merge_state(ranks[1])
    expected = one.compute()
    assert expected.item() > 0.5
    for other in (batched, merged):
        torch.testing.assert_close(other.compute(), expected, rtol=1e-10, atol=1e-10)


def test_needs_two_vectors_per_set_and_the_right_width():
    metric = FeatureFrechet(3)
    metric.update(reference=torch.zeros(5, 3), edited=torch.zeros(1, 3))
    with pytest.raises(ValueError, match="the edited set has 1 feature vectors; needs at least 2"):
        metric.compute()
    with pytest.raises(ValueError, match=r"reference features must be \(N, 3\), got \(5, 4\)"):
        metric.update(reference=torch.zeros(5, 4))
    assert not math.isnan(frechet_distance(torch.zeros(1), torch.zeros(1, 1), torch.zeros(1), torch.zeros(1, 1)).item())


def test_grid_frechet_on_planted_edits():
    from latentnav.lightning_modules.feature_frechet import GridFrechet

    g = torch.Generator().manual_seed(0)
    ref = torch.randn(400, 3, generator=g, dtype=torch.float64)
    grid = GridFrechet(num_directions=2, num_alphas=2, num_features=3)
    shift = torch.tensor([0.5, 0.0, 0.0], dtype=torch.float64)
    for half in (slice(0, 150), slice(150, 400)):  # two batches add up
        for a in range(2):
            grid.update(edited=ref[half] if a == 0 else ref[half] + shift, direction=0, alpha_index=a)  # a mean shift
            grid.update(edited=ref[half], direction=1, alpha_index=a)  # the identity edit
        grid.update(reference=ref[half])
    out = grid.compute()[0]
    assert float(out[0, 0]) == pytest.approx(0.0, abs=1e-9) and float(out[1].abs().max()) == pytest.approx(0.0, abs=1e-9)
    assert float(out[0, 1]) == pytest.approx(0.25, rel=1e-6)  # |d mu|^2, covariance unchanged


def test_grid_frechet_replicates_are_split_invariant_and_bracket_the_estimate():
    """Bootstrap replicates of the drift: the same whichever batches / ranks the samples come in, spread
    around the plain value, and a planted shift's interval excludes the identity edit's."""
    from latentnav.lightning_modules.bootstrap import interval_of
    from latentnav.lightning_modules.feature_frechet import GridFrechet

    g = torch.Generator().manual_seed(1)
    ref = torch.randn(300, 2, generator=g, dtype=torch.float64)
    ids = torch.arange(300)
    shift = torch.tensor([1.0, 0.0], dtype=torch.float64)

    def run(parts):
        grid = GridFrechet(num_directions=2, num_alphas=1, num_features=2, replicates=50, seed=3)
        for part in parts:
            grid.update(reference=ref[part], edited=ref[part] + shift, direction=0, indices=ids[part])
            grid.update(edited=ref[part], direction=1, indices=ids[part])
        return grid.compute()

    whole = run([slice(0, 300)])
    split = run([torch.arange(1, 300, 2), torch.arange(0, 300, 2)])  # two "ranks"
    assert whole.shape == (51, 2, 1)
    assert torch.allclose(whole, split, rtol=1e-9, atol=1e-12)
    reps = whole[1:, 0, 0]
    assert reps.std() > 0 and float(whole[0, 0, 0]) == pytest.approx(1.0, rel=1e-6)
    low, high = interval_of(reps)
    assert low < 1.0 < high
    assert float(whole[1:, 1, 0].abs().max()) < 1e-9  # the identity edit drifts nowhere in any replicate
    with pytest.raises(ValueError, match="needs the samples' indices"):
        GridFrechet(1, 1, 2, replicates=2).update(ref[:4], ref[:4])
