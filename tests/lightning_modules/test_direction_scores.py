"""Naming directions by their first-order effect (the comparison's scores)."""

import torch

from latentnav.lightning_modules.direction_scores import name_directions


def test_naming_by_the_first_order_effect_and_orientation():
    plus = torch.tensor([[0.4, -0.1, 0.0], [-0.3, 0.05, 0.0], [0.2, -0.15, -0.05]], dtype=torch.float64)
    minus = torch.tensor([[-0.4, 0.1, 0.0], [0.35, -0.05, 0.1], [-0.1, 0.3, 0.05]], dtype=torch.float64)
    named = name_directions(plus, minus)
    assert named["sign"].tolist() == [1.0, -1.0, -1.0]
    # third: going backwards raises attribute 1 most (0.3 > 0.2), but attribute 1 is also what
    # the direction moves most to first order ((-0.15 - 0.3) / 2): named 1, oriented backwards
    assert named["target"].tolist() == [0, 0, 1]
    torch.testing.assert_close(named["purity"], torch.tensor([0.8, 0.35 / 0.5, 0.3 / 0.45], dtype=torch.float64))
