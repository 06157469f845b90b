"""latentnav's StyleGAN2 against outputs of the rosinality port's own model.py (a committed fixture).

``tests/fixtures/stylegan2_port_golden.pt`` was made once by ``make_stylegan2_golden.py`` (its docstring
says how) from the port at commit bef283a: a 32 px, style 64 generator's g_ema state dict and the
port's images for z (stored noise), z with truncation 0.7 around a given truncation latent, w, and
w+, plus the w+ it returns. Any change to the blur padding, the up/down-sampling, the modulation, the
noise, the mapping or the skip connections moves these images far beyond float32 round-off.
"""

from pathlib import Path

import pytest
import torch

from latentnav.errors import ConfigError
from latentnav.generators import load_generator

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "stylegan2_port_golden.pt"
TOL = dict(atol=2e-5, rtol=1e-5)


@pytest.fixture(scope="module", params=["auto", "fused", "nonfused"])
def golden(tmp_path_factory, request):
    """Every modulated-convolution form (``family_options: {modconv: ...}``) against the port's images."""
    gold = torch.load(FIXTURE, weights_only=True)
    path = tmp_path_factory.mktemp("port") / "g.pt"
    torch.save({"g_ema": gold["g_ema"]}, path)  # the port's checkpoint layout
    return gold, load_generator(path, family_options={"modconv": request.param})


def test_images_equal_the_ports(golden):
    gold, G = golden
    assert G.resolution == 32 and G.latent_shape("w+") == gold["latents_z"].shape[1:]
    with torch.no_grad():
        torch.testing.assert_close(G.synthesize(gold["z"], "z"), gold["images_z"], **TOL)
        torch.testing.assert_close(G.synthesize(gold["w"], "w"), gold["images_w"], **TOL)
        torch.testing.assert_close(G.synthesize(gold["w_plus"], "w+"), gold["images_w_plus"], **TOL)
        torch.testing.assert_close(G.to_space(gold["z"], "w+"), gold["latents_z"], **TOL)
        assert (gold["images_z"] - gold["images_w"]).abs().mean() > 0.01  # the cases differ from each other


def test_truncation_with_a_given_latent_equals_the_ports(golden):
    gold, G = golden
    psi, centre = gold["truncation"], gold["truncation_latent"]
    with torch.no_grad():
        torch.testing.assert_close(G.synthesize(gold["z"], "z", truncation=psi, truncation_latent=centre),
                                   gold["images_z_truncated"], **TOL)
        w_plus = G.truncated(gold["z"], "z", psi, centre)  # the truncated w+ the synthesis receives
        torch.testing.assert_close(w_plus, centre + psi * (gold["latents_z"] - centre), **TOL)
        assert not torch.allclose(G.synthesize(gold["z"], "z", truncation=psi), gold["images_z_truncated"], atol=1e-3)
        torch.testing.assert_close(G.synthesize(gold["z"], "z", truncation=1.0), gold["images_z"], **TOL)
    with pytest.raises(ConfigError, match=r"truncation: expected psi in \[0, 1\] \(1 = no truncation\), got 1.5"):
        G.synthesize(gold["z"], "z", truncation=1.5)
