import pytest
import torch

from latentnav.errors import ConfigError
from latentnav.lightning_modules.direction_matrix import DirectionMatrix
from latentnav.lightning_modules.reconstructor import Reconstructor


def _train_a_little(m: DirectionMatrix, steps: int = 30) -> None:
    """Push A towards an arbitrary target so that the raw parameters move."""
    opt = torch.optim.Adam(m.parameters(), lr=0.05)
    target = torch.randn(m.latent_dim, m.num_directions, generator=torch.Generator().manual_seed(1)) * 3
    for _ in range(steps):
        opt.zero_grad()
        (m.matrix - target).pow(2).sum().backward()
        opt.step()


def test_orthonormal_is_a_parametrisation_that_survives_training():
    m = DirectionMatrix(12, 5, "orthonormal")
    assert m.parametrized
    before = m.matrix.detach().clone()
    _train_a_little(m)
    a = m.matrix.detach()
    assert a.shape == (12, 5)
    assert not torch.allclose(a, before, atol=1e-3)  # it did move
    torch.testing.assert_close(a.T @ a, torch.eye(5), atol=1e-5, rtol=0)


def test_unit_columns_stay_unit_and_free_columns_learn_their_length():
    unit, free = DirectionMatrix(12, 5, "unit"), DirectionMatrix(12, 5, "free")
    _train_a_little(unit)
    _train_a_little(free)
    torch.testing.assert_close(unit.matrix.detach().norm(dim=0), torch.ones(5))
    assert (free.matrix.detach().norm(dim=0) - 1).abs().max() > 0.5
    a = unit.matrix.detach()
    assert (a.T @ a - torch.eye(5)).abs().max() > 1e-3  # unit is not orthonormal


def test_shift_is_eps_times_column_k():
    m = DirectionMatrix(6, 4, "free")
    k, eps = torch.tensor([0, 3, 3]), torch.tensor([1.0, -2.0, 0.5])
    shift = m(k, eps)
    assert shift.shape == (3, 6)
    torch.testing.assert_close(shift[1], -2.0 * m.matrix[:, 3].detach())
    torch.testing.assert_close(m.directions().norm(dim=1), torch.ones(4))


def test_bad_settings():
    with pytest.raises(ConfigError, match="at most latent_dim=4 directions, got 5"):
        DirectionMatrix(4, 5, "orthonormal")
    with pytest.raises(ConfigError, match="direction_type: expected one of unit, orthonormal, free, got 'ortho'"):
        DirectionMatrix(4, 2, "ortho")


@pytest.mark.parametrize("trunk,size", [("small_cnn", 32), ("resnet18", 64)])
def test_reconstructor_heads(trunk, size):
    r = Reconstructor(7, trunk).eval()
    x0, x1 = torch.rand(2, 3, size, size) * 2 - 1, torch.rand(2, 3, size, size) * 2 - 1
    logits, shift = r(x0, x1)
    assert logits.shape == (2, 7) and shift.shape == (2,)
    # The pair's order matters: the reconstructor sees which image is the shifted one.
    assert not torch.allclose(r(x1, x0)[0], logits)
    with pytest.raises(ConfigError, match="unknown trunk 'vgg'"):
        Reconstructor(3, "vgg")
