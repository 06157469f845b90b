"""latentnav's genforce PGGAN / StyleGAN / StyleGAN2 against genforce's own model code and SeFa's own code.

The fixtures ``tests/fixtures/genforce_<name>.pth`` (genforce's checkpoint format: ``generator`` and
``generator_smooth`` state dicts, different weights; ``genforce_interfacegan_*``: InterFaceGAN's own format
and model classes) and ``genforce_<name>_golden.pt`` (the original's outputs) were made once by
``make_genforce_golden.py`` (its docstring lists the networks, the pinned
commits and the shims). The images must match within 1e-5 (fp32, CPU); SeFa's eigenvalues and vectors (up
to sign) too, where the vectors are well determined (SeFa's release computes them in float32: a pair of
eigenvalues closer than ~0.02 leaves its vectors uncertain beyond 1e-5 in the golden itself).
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from latentnav.commands.sefa import run_sefa
from latentnav.errors import ConfigError, DataFormatError
from latentnav.generators import genforce_stylegan, load_generator
from latentnav.generators.genforce import load_genforce, on_sphere, recognise_genforce

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TOL = dict(atol=1e-5, rtol=0)
NAMES = ("pggan", "pggan_cond", "stylegan", "stylegan_cond", "stylegan2", "stylegan2_origin", "stylegan2ada_cond")
INTERFACEGAN = ("interfacegan_pggan", "interfacegan_pggan_fused", "interfacegan_stylegan", "interfacegan_stylegan_fused")


def _load(name: str, **options):
    """The fixture's generator through ``load_generator`` (genforce's load options as ``family_options``)."""
    return load_generator(FIXTURES / f"genforce_{name}.pth", family_options=options or None)


def _golden(name: str) -> dict:
    return torch.load(FIXTURES / f"genforce_{name}_golden.pt", weights_only=True)


@pytest.fixture(autouse=True)
def _no_grad():
    with torch.no_grad():
        yield


@pytest.mark.parametrize("name", NAMES + INTERFACEGAN)
def test_fixture_is_genforce_format_and_recognised(name):
    blob = torch.load(FIXTURES / f"genforce_{name}.pth", weights_only=True)
    assert recognise_genforce(blob) and (FIXTURES / f"genforce_{name}.pth").stat().st_size <= 2 << 20
    if name in INTERFACEGAN:  # InterFaceGAN's format: the state dict is the file
        assert all(isinstance(v, torch.Tensor) for v in blob.values())
        return
    assert set(blob) == {"generator", "generator_smooth"}
    assert recognise_genforce({"models": blob})  # genforce's training checkpoints nest them
    assert not recognise_genforce({"g_ema": blob["generator"]}) and not recognise_genforce({"generator": {"a": 1}})


def test_pggan_images_smooth_weights_and_lod():
    gold, G = _golden("pggan"), _load("pggan")
    assert (G.resolution, G.z_dim, G.latent_spaces, G.num_classes) == (16, 32, ("z",), 0)
    assert G.identity["state_dict"] == "generator_smooth" and G.identity["format"] == "genforce-pggan"
    torch.testing.assert_close(G.synthesize(gold["z"]), gold["images"], **TOL)
    torch.testing.assert_close(G.synthesize(gold["z"][:1]), gold["images_batch1"], **TOL)
    torch.testing.assert_close(_load("pggan", lod=0.5).synthesize(gold["z"]), gold["images_lod"], **TOL)
    torch.testing.assert_close(_load("pggan", weights="generator").synthesize(gold["z"]), gold["images_generator"], **TOL)
    assert (gold["images"] - gold["images_generator"]).abs().mean() > 0.1  # the two state dicts differ


def test_pggan_conditional():
    gold, G = _golden("pggan_cond"), _load("pggan_cond", label_size=3)
    assert G.num_classes == 3 and G.resolution == 8
    torch.testing.assert_close(G.synthesize(gold["z"], classes=gold["classes"]), gold["images"], **TOL)
    torch.testing.assert_close(G.synthesize(gold["z"], classes=torch.tensor([1, 1, 1])), gold["images_class1"], **TOL)
    with pytest.raises(ConfigError, match="class-conditional"):
        G.synthesize(gold["z"])


def test_pggan_interfacegan_preprocessing():
    gold, G = _golden("pggan"), _load("pggan")
    torch.testing.assert_close(on_sphere(gold["raw_z"]), gold["preprocessed_z"], atol=1e-6, rtol=0)
    assert G.normalize_latent
    for z in (G.latents_at([0, 5, 9], seed=3), G.sample(4, seed=1)):
        torch.testing.assert_close(z.norm(dim=1), torch.full((len(z),), 32 ** 0.5), atol=1e-5, rtol=0)
    plain = _load("pggan", normalize_latent=False)
    assert not torch.allclose(plain.latents_at([0], seed=3).norm(), torch.tensor(32 ** 0.5), atol=1e-3)
    # The network pixel-normalises z itself: the preprocessing never changes an image.
    torch.testing.assert_close(G.synthesize(gold["raw_z"]), G.synthesize(gold["preprocessed_z"]), **TOL)
    with pytest.raises(ConfigError, match="give a truncation_latent"):
        G.synthesize(gold["z"], truncation=0.7)


@pytest.mark.parametrize("name", ["stylegan", "stylegan2"])
def test_stylegan_images(name):
    gold, G = _golden(name), _load(name)
    z = gold["z"]
    assert G.latent_spaces == ("z", "w", "w+") and G.latent_shape("w+") == (6, 32) and G.resolution == 16
    torch.testing.assert_close(G.to_space(z, "w"), gold["w"], **TOL)
    torch.testing.assert_close(G.to_space(z, "w+"), gold["wp"], **TOL)
    torch.testing.assert_close(G.synthesize(z), gold["images"], **TOL)
    torch.testing.assert_close(G.synthesize(z[:1]), gold["images_batch1"], **TOL)
    torch.testing.assert_close(G.synthesize(z, truncation=0.7, truncation_cutoff=4), gold["images_trunc"], **TOL)
    torch.testing.assert_close(G.synthesize(z, truncation=0.5), gold["images_trunc_all"], **TOL)
    torch.testing.assert_close(G.synthesize(gold["w_given"], "w"), gold["images_w"], **TOL)
    torch.testing.assert_close(G.synthesize(gold["wp_given"], "w+"), gold["images_wp"], **TOL)
    torch.manual_seed(int(gold["random_seed"]))
    torch.testing.assert_close(G.synthesize(z, noise_mode="random"), gold["images_random"], **TOL)
    torch.testing.assert_close(G.synthesize(z, noise_mode="none"), gold["images_none"], **TOL)
    torch.testing.assert_close(_load(name, weights="generator").synthesize(z), gold["images_generator"], **TOL)
    # The load option's default cutoff (InterFaceGAN / SeFa use 8 on StyleGAN).
    torch.testing.assert_close(_load(name, truncation_cutoff=4).synthesize(z, truncation=0.7), gold["images_trunc"], **TOL)
    for a, b in (("images", "images_trunc"), ("images", "images_random"), ("images", "images_none")):
        assert (gold[a] - gold[b]).abs().mean() > 0.01  # each case moves the images


@pytest.mark.parametrize("name", ["stylegan", "stylegan2"])
def test_stylegan_given_noise(name):
    gold, G = _golden(name), _load(name)
    maps = G.noise_maps()
    assert len(maps) == (6 if name == "stylegan" else 5) and tuple(maps[-1].shape) == (1, 1, 16, 16)
    torch.testing.assert_close(G.synthesize_with_noise(gold["z"], "z", maps), gold["images"], **TOL)
    zeros = [torch.zeros_like(m) for m in maps]
    torch.testing.assert_close(G.synthesize_with_noise(gold["z"], "z", zeros), gold["images_none"], **TOL)
    with pytest.raises(ConfigError, match="noise: expected"):
        G.synthesize_with_noise(gold["z"], "z", maps[:-1])


def test_stylegan_fused_upsampling():
    gold = _golden("stylegan")
    torch.testing.assert_close(_load("stylegan", fused_scale=True).synthesize(gold["z"]), gold["images_fused"], **TOL)


def test_stylegan_conditional_dense_input_channel_noise_one_w_per_layer():
    gold, G = _golden("stylegan_cond"), _load("stylegan_cond")
    c = gold["classes"]
    assert G.num_classes == 3 and G.latent_spaces == ("z", "w+") and G.latent_shape("w+") == (4, 32)
    assert not G.net.config.const_input and G.net.config.noise_type == "channel" and not G.net.config.repeat_w
    torch.testing.assert_close(G.to_space(gold["z"], "w+", classes=c), gold["wp"], **TOL)
    torch.testing.assert_close(G.synthesize(gold["z"], classes=c), gold["images"], **TOL)
    torch.testing.assert_close(G.synthesize(gold["z"], classes=c, truncation=0.6, truncation_cutoff=2),
                               gold["images_trunc"], **TOL)
    torch.manual_seed(124)
    torch.testing.assert_close(G.synthesize(gold["z"], classes=c, noise_mode="random"), gold["images_random"], **TOL)


def test_stylegan2_origin_and_ada_conditional():
    gold, G = _golden("stylegan2_origin"), _load("stylegan2_origin")
    assert G.net.config.architecture == "origin"
    torch.testing.assert_close(G.synthesize(gold["z"]), gold["images"], **TOL)
    torch.testing.assert_close(G.synthesize(gold["z"], truncation=0.7, truncation_cutoff=3), gold["images_trunc"], **TOL)
    gold, G = _golden("stylegan2ada_cond"), _load("stylegan2ada_cond")
    torch.testing.assert_close(G.to_space(gold["z"], "w", classes=gold["classes"]), gold["w"], **TOL)
    torch.testing.assert_close(G.synthesize(gold["z"], classes=gold["classes"]), gold["images"], **TOL)


def test_stylegan2_both_modulated_convolution_forms_hold_the_golden_and_agree_with_gradients():
    """genforce's fused path and the shared-weight form: both reproduce the original's images (one sample and a
    batch), and the latent's gradient agrees between them within 1e-5."""
    grads = {}
    for mode in ("fused", "nonfused"):
        for name in ("stylegan2", "stylegan2_origin"):
            gold, G = _golden(name), _load(name, modconv=mode)
            torch.testing.assert_close(G.synthesize(gold["z"]), gold["images"], **TOL)
            torch.testing.assert_close(G.synthesize(gold["z"], truncation=0.7, truncation_cutoff=3 if name.endswith("origin") else 4),
                                       gold["images_trunc"], **TOL)
        gold, G = _golden("stylegan2"), _load("stylegan2", modconv=mode)
        torch.testing.assert_close(G.synthesize(gold["z"][:1]), gold["images_batch1"], **TOL)
        latent = G.to_space(gold["z"], "w+").detach().requires_grad_(True)
        with torch.enable_grad():  # the module's fixture runs the goldens without gradients
            images = G.synthesize(latent, "w+")
            (images * torch.linspace(-1, 1, images.numel()).view_as(images)).mean().backward()
        grads[mode] = latent.grad
    torch.testing.assert_close(grads["fused"], grads["nonfused"], **TOL)
    assert grads["fused"].abs().max() > 1e-4
    with pytest.raises(ConfigError, match="modconv: an option of genforce StyleGAN2 only"):
        _load("stylegan", modconv="fused")
    with pytest.raises(ConfigError, match="modconv: expected one of auto, fused, nonfused"):
        _load("stylegan2", modconv="grouped")


@pytest.mark.parametrize("name,key,space,layers,names", [
    ("pggan", "sefa", "z", "all", ["layer0"]),
    ("stylegan", "sefa", "w", "all", [f"layer{i}" for i in range(6)]),
    ("stylegan", "sefa_1_2", "w", [1, 2], ["layer1", "layer2"]),
    # StyleGAN2: the convolutions' styles, then (for the last w+ row) the LAST to-RGB layer's.
    ("stylegan2", "sefa", "w", "all", ["layer0", "layer1", "layer2", "layer3", "layer4", "output2"]),
])
def test_sefa_equals_the_release(name, key, space, layers, names):
    gold, G = _golden(name)[key], _load(name)
    found = run_sefa(G, space, layers, num_directions=32)
    assert found["layers"] == names
    assert gold["layers"].tolist() == (list(range(6)) if layers == "all" and name != "pggan" else
                                       [0] if name == "pggan" else layers)
    torch.testing.assert_close(found["eigenvalues"], gold["values"], **TOL)
    values = gold["values"]
    gap = torch.minimum(torch.cat([values[:1] * 0 + np.inf, values[:-1] - values[1:]]),
                        torch.cat([values[:-1] - values[1:], values[:1] * 0 + np.inf]))
    sure = gap > 0.02
    assert sure[:4].all() and sure.sum() >= 16
    ours, theirs = found["directions"][sure], gold["vectors"][sure]
    sign = torch.sign((ours * theirs).sum(1, keepdim=True))
    torch.testing.assert_close(ours, theirs * sign, **TOL)


def test_latent_weights_choices():
    G = _load("stylegan2")
    assert [n for n, _ in G.latent_weights("z")] == ["mapping.dense0"] and G.latent_weights("z")[0][1].shape == (32, 32)
    assert [n for n, _ in G.latent_weights("w+", [5])] == ["output2"]
    with pytest.raises(ConfigError, match=r"layer indices must be in 0\.\.5"):
        G.latent_weights("w", [6])
    P = _load("pggan")
    (name, a), = P.latent_weights("z")
    assert name == "layer0" and a.shape == (16 * 16, 32)
    # A is the first layer's linear map: its 4x4 output before bias and activation is A @ pixel_norm(z).
    z = torch.randn(2, 32)
    zn = z / z.pow(2).mean(1, keepdim=True).add(1e-8).sqrt()
    conv = torch.nn.functional.conv2d(zn[:, :, None, None], P.net.layer0.weight * P.net.layer0.scale, padding=3)
    torch.testing.assert_close(conv.reshape(2, -1), zn @ a.T, atol=1e-5, rtol=1e-5)
    with pytest.raises(ConfigError):
        P.latent_weights("z", [1])


@pytest.mark.parametrize("name,space", [("pggan", "z"), ("stylegan", "w+"), ("stylegan2", "w")])
def test_gradients_reach_the_latent_only(name, space):
    G = _load(name)
    latent = G.sample(2, seed=0, space=space).requires_grad_(True)
    with torch.enable_grad():
        G.synthesize(latent, space).square().mean().backward()
    assert latent.grad is not None and latent.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in G.parameters())
    G.train()
    assert not G.training and not G.net.training


def test_a_broken_op_fails_the_golden(monkeypatch):
    """A wrong pad in the blur / FIR filter (one pixel shifted) is far outside the tolerance."""
    real = genforce_stylegan.depthwise

    def shifted(x, kernel, pad):
        left, right, top, bottom = pad
        return real(x, kernel, (left + 1, right - 1, top, bottom))

    monkeypatch.setattr(genforce_stylegan, "depthwise", shifted)
    for name in ("stylegan", "stylegan2"):
        gold = _golden(name)
        assert (_load(name).synthesize(gold["z"]) - gold["images"]).abs().max() > 1e-2


@pytest.mark.parametrize("name", ["interfacegan_pggan", "interfacegan_pggan_fused"])
def test_interfacegans_own_pggan_files(name):
    """InterFaceGAN publishes a plain state dict of its own model class; it loads as genforce's PGGAN."""
    gold, G = _golden(name), _load(name)
    assert G.identity["format"] == "interfacegan-pggan" and G.net.config.fused_scale == name.endswith("fused")
    assert G.normalize_latent
    torch.testing.assert_close(G.synthesize(gold["z"]), gold["images"], **TOL)


@pytest.mark.parametrize("name", ["interfacegan_stylegan", "interfacegan_stylegan_fused"])
def test_interfacegans_own_stylegan_files(name):
    gold, G = _golden(name), _load(name)
    assert G.identity["format"] == "interfacegan-stylegan" and G.normalize_latent
    assert G.net.config.fused == [False, True, True] if name.endswith("fused") else [False] * 3
    assert G.describe()["inferred"]["interfacegan_truncation"] == "psi 0.7 on the first 4 rows"
    torch.testing.assert_close(G.to_space(gold["z"], "w"), gold["w"], **TOL)
    torch.testing.assert_close(G.synthesize(gold["z"]), gold["images"], **TOL)
    # InterFaceGAN's wrapper truncates z and w inputs with its settings: the same as asking for them.
    torch.testing.assert_close(G.synthesize(gold["z"], truncation=0.7, truncation_cutoff=4), gold["images_trunc"], **TOL)
    torch.testing.assert_close(G.synthesize(gold["wp_given"], "w+"), gold["images_wp"], **TOL)
    with pytest.raises(ConfigError, match="leave fused_scale out"):
        _load(name, fused_scale=True)


def test_bad_files_and_options_are_one_line():
    blob = torch.load(FIXTURES / "genforce_stylegan.pth", weights_only=True)
    with pytest.raises(ConfigError, match="unknown bogus"):
        load_genforce(blob, {"source": "x.pth"}, bogus=1)
    with pytest.raises(ConfigError, match="holds a genforce stylegan, not pggan"):
        load_genforce(blob, {"source": "x.pth"}, family="pggan")
    with pytest.raises(ConfigError, match="label_size"):
        load_genforce(blob, {"source": "x.pth"}, label_size=3)
    broken = {"generator_smooth": {k: v for k, v in blob["generator_smooth"].items() if k != "synthesis.layer3.weight"}}
    with pytest.raises(DataFormatError, match="x.pth.*missing keys: synthesis.layer3.weight"):
        load_genforce(broken, {"source": "x.pth"})
    with pytest.raises(DataFormatError, match="no generator_smooth or generator state dict"):
        load_genforce({"discriminator": {}}, {"source": "x.pth"})
    with pytest.raises(DataFormatError, match="not a genforce PGGAN, StyleGAN or StyleGAN2"):
        load_genforce({"generator": {"w": torch.zeros(1)}}, {"source": "x.pth"})
    with pytest.raises(DataFormatError, match="level of detail 9.0 out of range"):
        _load("pggan", lod=9)
