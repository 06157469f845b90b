"""Perceptual path length: the path, the pairs, the per-pair value against a hand computation, the filter."""

import math

import pytest
import torch
import torch.nn.functional as F

from latentnav.errors import ConfigError
from latentnav.generators import load_generator
from latentnav.lightning_modules.annotator import load_annotator
from latentnav.lightning_modules.path_length import PathLength, filtered_mean, pair_positions, slerp
from tests.generators.test_stylegan2 import small_port_checkpoint


def test_slerp_runs_on_the_sphere_between_the_directions():
    a, b = torch.randn(5, 16), torch.randn(5, 16)
    t = torch.rand(5)
    path = slerp(a, b, t)
    torch.testing.assert_close(path.norm(dim=1), torch.full((5,), 4.0))  # sqrt(16)
    torch.testing.assert_close(slerp(a, b, torch.zeros(5)), F.normalize(a, dim=1) * 4, atol=1e-5, rtol=0)
    torch.testing.assert_close(slerp(a, b, torch.ones(5)), F.normalize(b, dim=1) * 4, atol=1e-5, rtol=0)
    # constant angular speed: the angle walked is t times the angle between a and b
    angle = torch.acos(F.cosine_similarity(a, b))
    walked = torch.acos(F.cosine_similarity(a, path).clamp(-1, 1))
    torch.testing.assert_close(walked, t * angle, atol=1e-4, rtol=0)


def test_pair_positions_depend_on_the_pair_only():
    whole = pair_positions(torch.arange(10), seed=3)
    parts = torch.cat([pair_positions(torch.arange(0, 4), 3), pair_positions(torch.arange(4, 10), 3)])
    assert torch.equal(whole, parts) and not torch.equal(whole, pair_positions(torch.arange(10), seed=4))
    assert 0 <= float(whole.min()) and float(whole.max()) < 1


@pytest.mark.parametrize("space", ["z", "w"])
def test_each_pair_is_the_judges_feature_distance_over_epsilon_squared(tmp_path, space):
    G = load_generator(small_port_checkpoint(tmp_path)[0])
    judge = load_annotator("demo_judge")
    module = PathLength(G, judge, space, epsilon=1e-3, replicates=10)
    module.test_step({"indices": torch.arange(6), "seed": 5}, 0)
    values = module.values.compute()
    # by hand, pair 4: latents 8 and 9 of stream 5, at t_4 and t_4 + eps
    a, b = G.latents_at([8, 9], seed=5)
    t = float(pair_positions(torch.tensor([4]), 5))
    if space == "w":
        a, b = G.to_space(a[None], "w")[0], G.to_space(b[None], "w")[0]
        p0, p1 = a + t * (b - a), a + (t + 1e-3) * (b - a)
    else:
        ua, ub = F.normalize(a, dim=0), F.normalize(b, dim=0)
        omega = math.acos(float(ua @ ub))
        point = lambda s: (math.sin((1 - s) * omega) * ua + math.sin(s * omega) * ub) / math.sin(omega) * math.sqrt(len(a))
        p0, p1 = point(t), point(t + 1e-3)
    with torch.no_grad():
        f = F.normalize(judge.features(G.synthesize(torch.stack([p0, p1]), space)), dim=1)
    expected = float((f[0] - f[1]).pow(2).sum() / 1e-6)
    assert expected > 0 and float(values[4]) == pytest.approx(expected, rel=1e-3)


def test_the_filter_drops_the_outer_percentiles_and_the_interval_covers_the_mean():
    values = torch.cat([torch.full((198,), 2.0, dtype=torch.float64), torch.tensor([1e6, -1e6], dtype=torch.float64)])
    values[:99] = 1.0
    found = filtered_mean(values, torch.arange(200), replicates=200)
    assert found["kept"] == 198 and found["ppl"] == pytest.approx(1.5, abs=0.01)
    assert found["low"] < found["ppl"] < found["high"] and found["high"] - found["low"] < 0.3


def test_bad_space_and_step_are_one_line(tmp_path):
    judge = load_annotator("demo_judge")
    with pytest.raises(ConfigError, match="path length is measured in z .* got 'w'"):
        PathLength(load_generator("demo"), judge, "w")
    with pytest.raises(ConfigError, match="epsilon: expected a step in"):
        PathLength(load_generator("demo"), judge, "z", epsilon=0)
