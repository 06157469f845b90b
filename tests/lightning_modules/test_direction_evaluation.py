"""What else an edit changes, measured at each direction's step, on a planted generator whose
image channels are latent coordinates: a direction that moves one factor, one that moves two,
and an identity edit that moves nothing."""

import math

import pytest
import torch
from torch import nn

from latentnav.errors import ConfigError, DataFormatError
from latentnav.lightning_modules.direction_evaluation import DirectionEvaluation
from latentnav.lightning_modules.evaluation_protocol import evaluate, run_in_this_process, side_effects
from latentnav.lightning_modules.identity_embedding import identity_distance, load_identity_embedding


class Planted:
    """z (B, 4) -> images (B, 3, 4, 4): channel c is tanh(z_c / 2) everywhere; z_3 is never drawn."""

    def latents_at(self, indices, seed=0, space="z"):
        g = torch.Generator().manual_seed(seed)
        table = torch.randn(1000, 4, generator=g)
        return table[torch.as_tensor(indices)]

    def synthesize(self, z, space="z"):
        return torch.tanh(z[:, :3] / 2)[:, :, None, None].expand(-1, -1, 4, 4).contiguous()


class ChannelReader(nn.Module):
    """A classifier stand-in: features = channel means (B, 3); logits of attributes a, b = 4 * ((r, g) - shift)."""

    def __init__(self, shift: float = 0.0):
        super().__init__()
        self.attributes, self.shift, self.head = ["a", "b"], shift, nn.Linear(3, 2)

    def _head(self):
        return self.head

    def features(self, images):
        return images.mean((2, 3))

    def logits(self, images):
        return 4 * (self.features(images)[:, :2] - self.shift)

    def forward(self, images):
        return torch.sigmoid(self.logits(images))


class Factors(nn.Module):
    factor_names = ["r", "g", "b"]

    def forward(self, images):
        return images.mean((2, 3)) * 10  # "in their units"


class Embed(nn.Module):
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        m = images.mean((2, 3))
        return torch.cat([m, torch.ones_like(m[:, :1])], dim=1)


def directions():
    e = torch.eye(4)
    return torch.stack([e[0], (e[0] + e[1]) / math.sqrt(2), e[3], e[0]])  # one factor, two, none, (unmeasured)


def test_planted_side_effects_at_each_step(tmp_path):
    torch.jit.script(Embed()).save(str(tmp_path / "embed.pt"))
    identity = load_identity_embedding(tmp_path / "embed.pt")
    m = DirectionEvaluation(Planted(), ChannelReader(), directions(), mode="at_step",
                            steps=torch.tensor([1.0, 1.0, 1.0, math.nan]), nuisance=Factors(), identity=identity,
                            replicates=30, bootstrap_seed=1)
    run_in_this_process(200, seed=0, batch_size=64)(m)
    side = m.side_result
    nuis = side["nuisance"][0]
    assert (nuis[0, 0] > 0.5) and float(nuis[0, 1:].abs().max()) == 0  # one factor moves, in its units
    assert (nuis[1, :2] > 0.3).all() and float(nuis[1, 2]) == 0  # two move
    for key in ("pixels", "features", "identity", "drift"):
        values = side[key]
        assert values.shape == (31, 4) if key != "drift" else values.shape[1] == 4, key
        assert float(values[0, 0]) > 0 and float(values[0, 1]) > 0, key
        assert float(values[:, 2].abs().max()) < 1e-9, key  # the identity edit changes nothing, in every replicate
        assert bool(torch.isnan(values[:, 3]).all()), key  # no step: not measured (not 0)
    assert float(nuis[2].abs().max()) == 0 and bool(torch.isnan(nuis[3]).all())
    assert m.drift_replicates == 30 and side["drift"].shape == (31, 4)
    # Pixels: mean |tanh((z + 1) / 2) - tanh(z / 2)| of channel r, over 3 channels.
    z = Planted().latents_at(torch.arange(200))
    expected = (torch.tanh((z[:, 0] + 1) / 2) - torch.tanh(z[:, 0] / 2)).abs().mean() / 3
    assert float(side["pixels"][0, 0]) == pytest.approx(float(expected), rel=1e-5)
    # The interval brackets the estimate.
    reps = side["identity"][1:, 0]
    assert float(reps.min()) < float(side["identity"][0, 0]) < float(reps.max())


def test_protocol_reads_side_effects_at_the_held_out_judges_step():
    """With a held-out judge, the side effects are read at the judge's equal-success step, which
    differs from the annotator's when the two judges draw the attribute's line in different places."""
    G, own, judge = Planted(), ChannelReader(0.0), ChannelReader(0.2)
    d = torch.eye(4)[:2]
    alphas = [0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0]
    ev = evaluate(run_in_this_process(120, seed=2, batch_size=50), G, own, d, [0, 1], "z", alphas,
                  judge=judge, judge_columns=[0, 1], nuisance=Factors(), replicates=10, seed=3)
    own_steps, judge_steps = ev["own"]["step"].reshape(-1), ev["judge"]["step"].reshape(-1)
    assert torch.equal(ev["steps"], judge_steps) and not torch.allclose(own_steps, judge_steps)
    side = side_effects(ev)
    assert side["ad"][0].shape == (2,) and side["ad"][1].shape == (10, 2)
    assert side["nuisance"][0].shape == (2, 3) and side["nuisance"][1].shape == (10, 2, 3)
    assert float(side["nuisance"][0][0, 0]) > 0 and float(side["nuisance"][0][0, 1:].abs().max()) == 0
    assert float(side["ad"][0][0]) == pytest.approx(0.0, abs=1e-12)  # moving r never moves b's logit


def test_identity_embedding_contract(tmp_path):
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    assert identity_distance(a, a).abs().max() < 1e-12
    assert float(identity_distance(a[:1], -a[:1])) == pytest.approx(2.0)
    (tmp_path / "pickle.pt").write_bytes(b"not torchscript")
    with pytest.raises(DataFormatError, match=r"pickle\.pt: not a TorchScript file"):
        load_identity_embedding(tmp_path / "pickle.pt")
    with pytest.raises(ConfigError, match="identity: .*missing.pt not found"):
        load_identity_embedding(tmp_path / "missing.pt")

    class Flat(nn.Module):
        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return images.mean()

    torch.jit.script(Flat()).save(str(tmp_path / "flat.pt"))
    with pytest.raises(ConfigError, match=r"flat\.pt returned \(\) for 2 images; expected embeddings \(B, D\)"):
        load_identity_embedding(tmp_path / "flat.pt")(torch.zeros(2, 3, 4, 4))
    net = load_identity_embedding(tmp_path / "flat.pt")
    assert all(not p.requires_grad for p in net.parameters()) and not net.training and len(net.sha256) == 64


def test_one_direction_without_replicates_and_a_change_downwards():
    """K = 1 and no replicates (torchmetrics squeezes one-element results), and a direction that lowers its
    factor: the change is an absolute one."""
    m = DirectionEvaluation(Planted(), ChannelReader(), -torch.eye(4)[:1], mode="at_step", steps=torch.tensor([1.0]),
                            nuisance=Factors())
    run_in_this_process(50, seed=1)(m)
    side = m.side_result
    assert side["pixels"].shape == (1, 1) and side["nuisance"].shape == (1, 1, 3) and side["drift"].shape == (1, 1)
    assert float(side["nuisance"][0, 0, 0]) > 0.5 and float(side["pixels"][0, 0]) > 0
