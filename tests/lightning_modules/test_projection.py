"""Projection recovers a planted latent of a tiny generator; the schedule and the scores."""

import math

import pytest
import torch

from latentnav.errors import ConfigError
from latentnav.generators import load_generator
from latentnav.lightning_modules.projection import Projection, lr_at, psnr, ssim
from tests.generators.tiny import save_tiny


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "tiny.pt"
    save_tiny(path)
    return load_generator(str(path))


def test_recovers_a_planted_latent(tiny):
    z = tiny.sample(4, seed=1)
    target = tiny.synthesize(z)
    module = Projection(tiny, "z", steps=200, noise_start=0.0)
    found, maps = module.project(target)
    assert maps == []  # no noise inputs
    assert float(((found - z).norm(dim=1) / z.norm(dim=1)).max()) < 1e-3
    assert float(psnr(tiny.synthesize(found), target).min()) > 60
    # The start is the space's mean: far from the planted latents, so the search did the work.
    start = module.mean.expand_as(z)
    assert float(psnr(tiny.synthesize(start), target).max()) < 25
    # A batch gives each image its own projection (independent losses, elementwise Adam, per-image noise):
    # as good in a batch of 4 as alone. Not compared bit for bit: another batch composition takes other
    # kernels, whose last-bit differences Adam can enlarge on near-flat latent components.
    noisy = Projection(tiny, "z", steps=30, noise_start=0.5)
    together = noisy.project(target, rows=torch.tensor([7, 8, 9, 10]))[0]
    alone = noisy.project(target[2:3], rows=torch.tensor([9]))[0]
    quality = [float(psnr(tiny.synthesize(x), target[2:3])) for x in (alone, together[2:3])]
    assert abs(quality[0] - quality[1]) < 0.5 and min(quality) > float(psnr(tiny.synthesize(start[:1]), target[2:3])) + 5
    assert not torch.allclose(noisy.project(target[2:3], rows=torch.tensor([3]))[0], alone, atol=1e-3)  # noise is used


def test_predict_step_outputs_and_a_given_start(tiny):
    z = tiny.sample(3, seed=2)
    target = tiny.synthesize(z)
    module = Projection(tiny, "z", steps=5, noise_start=0.0)
    with torch.inference_mode():  # as a Trainer's predict loop with inference_mode=True would call it
        out = module.predict_step({"indices": torch.tensor([4, 5, 6]), "images": target, "start": z}, 0)
    from_mean = module.predict_step({"indices": torch.tensor([4, 5, 6]), "images": target}, 0)
    assert out["latents"].shape == (3, 8) and out["reconstructions"].shape == (3, 8, 8, 3)
    assert out["reconstructions"].dtype.name == "uint8" and out["rows"].tolist() == [4, 5, 6]
    # Started at the answer, 5 steps stay far better than 5 steps from the mean.
    assert float(out["psnr"].min()) > float(from_mean["psnr"].max()) + 10
    assert float(out["ssim"].min()) > float(from_mean["ssim"].max())


def test_schedule_and_scores():
    assert lr_at(0.0, 0.1, 0.05, 0.25) == 0.0  # warm-up from 0
    assert lr_at(0.5, 0.1, 0.05, 0.25) == pytest.approx(0.1)  # the plateau
    assert lr_at(0.9, 0.1, 0.05, 0.25) == pytest.approx(0.1 * (0.5 - 0.5 * math.cos(0.4 * math.pi)))
    assert lr_at(0.999, 0.1, 0.05, 0.25) < 1e-5  # cosine decay to 0
    a = torch.rand(2, 3, 16, 16) * 1.6 - 0.8  # + 0.1 stays inside [-1, 1]
    b = a.clone()
    b[1] += 0.1
    p = psnr(b, a)
    assert p[0] > 100 and p[1] == pytest.approx(10 * math.log10(4 / 0.01), rel=1e-3)
    s = ssim(b, a)
    assert s[0] == pytest.approx(1.0, abs=1e-6) and s[1] < 1.0


def test_bad_settings_are_one_line(tiny):
    with pytest.raises(ConfigError, match="steps: expected a positive number"):
        Projection(tiny, "z", steps=0)
    with pytest.raises(ConfigError, match="w\\+"):
        Projection(tiny, "w+")


def test_stylegan2_noise_maps_are_optimised_and_regularised(tmp_path):
    """For a (small) StyleGAN2 in w+, the per-layer noise maps are optimised per image with the
    regulariser and kept unit Gaussian, returned by the predict step; the penalty is ~0 for white noise
    and large for a map with structure."""
    from latentnav.lightning_modules.projection import noise_regularisation
    from tests.generators.test_stylegan2 import small_port_checkpoint

    G = load_generator(str(small_port_checkpoint(tmp_path)[0]))
    assert len(G.noise_maps()) == G.net.config.num_layers
    target = G.synthesize(G.sample(2, seed=5, space="w+"), "w+")
    with_noise = Projection(G, "w+", steps=40, lr=0.05)
    latents, maps = with_noise.project(target)
    assert len(maps) == len(G.noise_maps()) and maps[-1].shape == (2, 1, 32, 32)
    for n in maps:
        assert torch.allclose(n.mean((1, 2, 3)), torch.zeros(2), atol=1e-5)
        assert torch.allclose(n.std((1, 2, 3)), torch.ones(2), atol=1e-4)
    out = with_noise.predict_step({"indices": torch.arange(2), "images": target}, 0)
    assert len(out["noise"]) == len(maps)
    plain = Projection(G, "w+", steps=40, lr=0.05, noise_regularize=0)
    assert "noise" not in plain.predict_step({"indices": torch.arange(2), "images": target}, 0)
    # The regulariser: 0-ish for white noise, large for a smooth map.
    white = [torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))]
    smooth = [torch.linspace(-1, 1, 32).repeat(2, 1, 32, 1)]
    assert float(noise_regularisation(white).max()) < 0.01 < float(noise_regularisation(smooth).min())
