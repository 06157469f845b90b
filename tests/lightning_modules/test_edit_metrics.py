import math

import pytest
import torch

from latentnav.lightning_modules.edit_metrics import EditEffect, cosine_matrix


def test_cosine_matrix():
    d = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, -2.0]])
    cos = cosine_matrix(d)
    torch.testing.assert_close(torch.diag(cos), torch.ones(3))
    assert cos[0, 1] == pytest.approx(1 / math.sqrt(2)) and cos[0, 2] == pytest.approx(0.0)


def test_edit_effect_at_equal_target_success():
    """Synthetic edits: attribute 0's probability rises linearly with alpha and drags attribute 1."""
    alphas = [0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0]
    metric = EditEffect(alphas, targets=[0, 1], num_attributes=2)
    p0 = torch.tensor([[0.05, 0.5], [0.25, 0.5], [0.9, 0.5], [0.15, 0.5]])
    for a, alpha in enumerate(alphas):
        # direction 0: target rises by 0.1 per unit alpha, attribute 1 by 0.02 per unit
        metric.update(0, a, p0, (p0 + torch.tensor([0.1, 0.02]) * alpha).clamp(0, 1))
        # direction 1 cannot move its attribute past 0.5 (it only falls)
        metric.update(1, a, p0, (p0 - torch.tensor([0.0, 0.01]) * alpha).clamp(0, 1))
    out = metric.compute()
    # Off samples of attribute 0 (p0 0.05, 0.25, 0.15) first count as flipped at alpha 6, 3 and 4:
    # the flip rate is 1/3 at alpha 3 and 2/3 at alpha 4, so half flip at alpha 3.5.
    assert out["step"][0].item() == pytest.approx(3.5)
    # Mean change of attribute 1 at alpha = 3.5: 0.02 * 3.5 = 0.07
    assert out["effect"][0, 1].item() == pytest.approx(0.07)
    assert out["flip_at_2x"][0].item() == pytest.approx(1.0)
    assert bool(out["cannot_flip"][1]) and not bool(out["cannot_flip"][0])
    assert out["off_target_abs_mean"].item() == pytest.approx(0.07)
    # Over all four samples attribute 0 rises by (0.35 + 0.35 + 0.1 + 0.35) / 4 at alpha 3.5 (one
    # sample is capped at 1); over the three where it was off, by 0.35 each.
    assert out["effect"][0, 0].item() == pytest.approx((0.35 * 3 + 0.1) / 4)
    assert out["effect_where_off"][0, 0].item() == pytest.approx(0.35)
    assert out["effect_where_off"][0, 1].item() == pytest.approx(0.07)


def test_projection_survives_repeated_or_zero_vectors():
    from latentnav.errors import ConfigError
    from latentnav.lightning_modules.edit_metrics import project_out
    from latentnav.lightning_modules.interfacegan import conditional_direction

    e = torch.eye(3)
    d = project_out(e[1][None], torch.stack([e[0], 2 * e[0]], dim=1)[None])  # span is one line
    torch.testing.assert_close(d[0], e[1])
    d = project_out(e[1][None], torch.stack([e[0], torch.zeros(3)], dim=1)[None])
    torch.testing.assert_close(d[0], e[1])
    torch.testing.assert_close(conditional_direction(torch.stack([e[1], e[0], 2 * e[0]]), 0, [1, 2, 2]), e[1])
    with pytest.raises(ConfigError, match="lies in the span"):
        project_out(e[0][None], torch.stack([e[0], e[1]], dim=1)[None])


def test_flip_beyond_the_grid_is_unknown():
    metric = EditEffect([0.0, 1.0, 2.0, 4.0], targets=[0], num_attributes=1)
    p0 = torch.tensor([[0.1], [0.2]])
    for a, alpha in enumerate([0.0, 1.0, 2.0, 4.0]):
        metric.update(0, a, p0, (p0 + 0.2 * alpha).clamp(0, 1))
    out = metric.compute()
    step, flip3 = out["step"].reshape(-1)[0], out["flip_at_3x"].reshape(-1)[0]  # torchmetrics squeezes size-1 results
    assert step == 2.0 and math.isnan(flip3.item())  # 3 x 2 = 6 lies beyond the grid (max 4)


def test_rank_slices_add_up_to_one_process():
    """What DDP does: every rank edits its slice of the same latents (``DirectionEvaluation`` in its
    ``effect`` mode, run as a rank would); the summed states equal one process's."""
    from latentnav.generators import load_generator
    from latentnav.lightning_modules.annotator import load_annotator
    from latentnav.lightning_modules.direction_evaluation import DirectionEvaluation
    from latentnav.lightning_modules.evaluation_protocol import run_in_this_process

    G, judge = load_generator("demo"), load_annotator("demo")
    directions = torch.randn(2, 64, generator=torch.Generator().manual_seed(0))
    alphas, targets = [0.0, 2.0, 4.0], [6, 11]

    def measured(rank: int, world_size: int) -> EditEffect:
        module = DirectionEvaluation(G, judge, directions, "z", mode="effect", alphas=alphas, targets=targets)
        run_in_this_process(12, 3, batch_size=5, rank=rank, world_size=world_size)(module)
        return module.effect

    one, ranks = measured(0, 1), [measured(r, 2) for r in range(2)]
    assert one.count.sum() > 0
    for key in ("delta_sum", "count", "flipped", "was_off"):
        torch.testing.assert_close(getattr(ranks[0], key) + getattr(ranks[1], key), getattr(one, key), atol=1e-5, rtol=1e-6)


def test_guided_edits_rescored_by_a_judge_on_the_same_images():
    """The judge sees the guided images themselves: with the annotator as the judge (its columns stored
    the other way round, mapped back by ``judge_columns``) both metrics agree."""
    from latentnav.generators import load_generator
    from latentnav.lightning_modules.annotator import load_annotator
    from latentnav.lightning_modules.edit_metrics import EditEffect, measure_guided_edits

    G, own = load_generator("demo"), load_annotator("demo")
    a = len(own.attributes)
    d = torch.nn.functional.normalize(torch.randn(2, 64, generator=torch.Generator().manual_seed(0)), dim=1)
    alphas, targets = (0.0, 0.5, 1.0), [0, 1]
    judge_metric = EditEffect(alphas, targets, a)
    reverse = list(range(a))[::-1]

    class Reversed(torch.nn.Module):  # the annotator with its columns stored the other way round
        attributes = list(own.attributes)[::-1]

        def forward(self, images):
            return own(images)[:, reverse]

    mine = measure_guided_edits(G, own, d, targets, alphas, num_samples=6, seed=2, judge=Reversed(),
                                judge_columns=reverse, judge_metric=judge_metric)
    theirs = judge_metric.compute()
    assert torch.allclose(torch.nan_to_num(mine["effect"]), torch.nan_to_num(theirs["effect"]), atol=1e-6)


def test_off_target_change_leaves_out_each_directions_own_target():
    import math

    from latentnav.lightning_modules.edit_metrics import off_target_change

    effect = torch.tensor([[0.5, -0.1, 0.3], [0.2, 0.9, -0.2], [math.nan] * 3], dtype=torch.float64)
    got = off_target_change(effect, [0, 1, 2])
    assert torch.allclose(got[:2], torch.tensor([0.2, 0.2], dtype=torch.float64)) and torch.isnan(got[2])
    # targets are columns, not row positions: direction 0 aimed at attribute 2
    assert off_target_change(effect[:1], [2]).item() == pytest.approx(0.3)
