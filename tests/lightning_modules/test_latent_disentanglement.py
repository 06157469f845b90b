"""Linear separability and DCI on latents whose attributes are planted: the figures tell the two cases apart."""

import pytest
import torch

from latentnav.errors import ConfigError
from latentnav.lightning_modules.latent_disentanglement import (conditional_entropy, dci, fit_linear_svm,
                                                                 linear_separability)


def planted(n=2000, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    linear = torch.sigmoid(6 * (x[:, 0] - 0.3 * x[:, 1]))        # a linear boundary
    circle = torch.sigmoid(6 * (x[:, 2].pow(2) + x[:, 3].pow(2) - 1.4))  # no linear boundary
    return x, torch.stack([linear, circle], 1)


def test_svm_and_entropy_on_known_cases():
    x, p = planted()
    y = p[:, 0] > 0.5
    w, b = fit_linear_svm(x, y)
    assert ((x.double() @ w + b > 0) == y).float().mean() > 0.98
    assert torch.nn.functional.cosine_similarity(w[:2], torch.tensor([1.0, -0.3], dtype=torch.float64), dim=0) > 0.99
    assert conditional_entropy(y, y) == 0.0
    assert conditional_entropy(y, torch.zeros_like(y)) == pytest.approx(
        -sum(q * torch.log(torch.tensor(q)).item() for q in (y.float().mean().item(), 1 - y.float().mean().item())))


def test_separability_is_low_for_a_linear_attribute_and_high_for_a_round_one():
    x, p = planted()
    found = linear_separability(x, p, replicates=8)
    linear_h, round_h = found["entropy"].tolist()
    assert linear_h < 0.1 and round_h > 0.5  # nats; ln 2 = 0.69 is no information
    assert found["separability"] == pytest.approx(torch.exp(found["entropy"].sum()).item())
    assert found["low"] <= found["separability"] * 1.2 and found["high"] >= found["separability"] * 0.8
    with pytest.raises(ConfigError, match="expected latents \\(N, d\\) and probabilities \\(N, A\\) with one N"):
        linear_separability(x[:10], p, replicates=0)


def test_dci_tells_one_dimension_per_attribute_from_a_mixture():
    pytest.importorskip("sklearn")
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1500, 5, generator=g)
    aligned = torch.stack([torch.sigmoid(8 * x[:, 0]), torch.sigmoid(8 * x[:, 1])], 1)
    mixed = torch.stack([torch.sigmoid(8 * (x[:, 0] + x[:, 1] + x[:, 2])), torch.sigmoid(8 * (x[:, 0] - x[:, 1] + x[:, 2]))], 1)
    rare = torch.zeros(1500, 1)
    good = dci(x, torch.cat([aligned, rare], 1), ["a", "b", "never"], max_iter=40)
    bad = dci(x, mixed, ["a", "b"], max_iter=40)
    assert good["left_out"] == ["never"] and good["attributes"] == ["a", "b"]
    assert good["disentanglement"] > 0.8 and good["completeness"] > 0.8 and good["informativeness"] > 0.9
    assert bad["disentanglement"] < good["disentanglement"] - 0.4 and bad["completeness"] < good["completeness"] - 0.3
    assert good["importance"].shape == (5, 2) and int(good["importance"][:, 0].argmax()) == 0
