"""StyleGAN2 checkpoints in the rosinality port's layout, with small random models saved here."""

import argparse
import subprocess
import sys

import pytest
import torch

from latentnav.generators import load_generator
from latentnav.generators.stylegan2 import StyleGAN2Config, StyleGAN2Generator, infer_config
from latentnav.errors import ConfigError, DataFormatError

class Custom:  # any class other than argparse.Namespace needs code to unpickle
    pass


SMALL = StyleGAN2Config(size=32, style_dim=32, n_mlp=2, channels=(64, 64, 32, 32))


def small_port_checkpoint(tmp_path, with_avg=True, training_layout=False, name="g.pt"):
    torch.manual_seed(0)
    net = StyleGAN2Generator(SMALL)
    with torch.no_grad():  # the port initialises these at 0; randomise them so they matter
        for key, p in net.named_parameters():
            if key.endswith("noise.weight") or key.endswith("bias"):
                p.normal_(0, 0.1)
    blob = {"g_ema": net.state_dict()}
    if with_avg:
        blob["latent_avg"] = net.mapping(torch.randn(512, SMALL.style_dim)).mean(0)
    if training_layout:  # what the port's train.py writes
        blob.update(g=net.state_dict(), d={}, g_optim={}, d_optim={}, ada_aug_p=0.0,
                    args=argparse.Namespace(size=32, latent=32, n_mlp=2, channel_multiplier=2, lr=0.002))
    torch.save(blob, tmp_path / name)
    return tmp_path / name, blob


def test_infers_configuration_and_contract(tmp_path):
    path, blob = small_port_checkpoint(tmp_path)
    G = load_generator(path)
    assert G.net.config == SMALL
    assert G.latent_spaces == ("z", "w", "w+", "s") and G.latent_shape("s") == (64 + 64 + 64 + 64 + 64 + 64 + 32 + 32 + 32 + 32 + 32,)
    assert G.latent_shape("z") == (32,) and G.latent_shape("w+") == (8, 32)
    assert torch.equal(G.w_avg, blob["latent_avg"])
    assert G.identity["format"] == "rosinality-stylegan2" and len(G.identity["sha256"]) == 64
    z = G.sample(3, seed=1)
    images = G.synthesize(z)
    assert images.shape == (3, 3, 32, 32) and torch.isfinite(images).all()
    assert not any(p.requires_grad for p in G.parameters()) and not G.training


def test_port_sized_layouts_are_inferred():
    for size, cm in ((256, 2), (1024, 2), (64, 1)):
        config = StyleGAN2Config.port(size, style_dim=512, n_mlp=8, channel_multiplier=cm)
        with torch.device("meta"):
            shapes = StyleGAN2Generator(config).state_dict()
        inferred = infer_config(shapes)
        assert inferred == config and inferred.channel_multiplier == cm and inferred.n_latent == 2 * int(size).bit_length() - 4


def test_truncation_spaces_and_noise(tmp_path):
    G = load_generator(small_port_checkpoint(tmp_path)[0])
    z = G.sample(4, seed=2)
    same = G.synthesize(z, truncation=0.0)
    assert torch.allclose(same, same[:1].expand_as(same), atol=1e-6)  # psi = 0: every z gives the mean image
    assert not torch.allclose(G.synthesize(z), same, atol=1e-3)
    w = G.to_space(z, "w")
    w_plus = w.unsqueeze(1).repeat(1, G.n_latent, 1)
    torch.testing.assert_close(G.synthesize(w_plus, "w+"), G.synthesize(w, "w"))
    torch.testing.assert_close(G.synthesize(w, "w"), G.synthesize(z, "z"))
    torch.testing.assert_close(G.synthesize(z), G.synthesize(z))  # stored noise: deterministic
    assert not torch.allclose(G.synthesize(z, noise_mode="random"), G.synthesize(z, noise_mode="random"))
    mixed = w_plus.clone()
    mixed[:, 4:] = G.to_space(G.sample(4, seed=3), "w")[:, None]
    assert not torch.allclose(G.synthesize(mixed, "w+"), G.synthesize(w, "w"), atol=1e-4)


def test_gradients_reach_the_latent_only(tmp_path):
    G = load_generator(small_port_checkpoint(tmp_path)[0])
    w = G.sample(2, seed=0, space="w").requires_grad_(True)
    G.synthesize(w, "w").mean().backward()
    assert w.grad is not None and w.grad.abs().sum() > 0
    assert all(p.grad is None for p in G.parameters())


def test_estimates_w_avg_without_latent_avg(tmp_path):
    G = load_generator(small_port_checkpoint(tmp_path, with_avg=False)[0], w_avg_samples=2000)
    expected = G.net.mapping(torch.randn(2000, 32, generator=torch.Generator().manual_seed(0))).mean(0)
    torch.testing.assert_close(G.w_avg, expected)
    assert "estimated" in G.identity["w_avg"]


def test_latent_weights_for_closed_form_methods(tmp_path):
    G = load_generator(small_port_checkpoint(tmp_path)[0])
    mods = G.latent_weights("w")
    assert [n for n, _ in mods[:3]] == ["conv1", "to_rgb1", "convs.0"]
    assert mods[0][1].shape == (64, 32)  # conv1's input channels x style size
    torch.testing.assert_close(mods[0][1], G.net.conv1.conv.modulation.weight / 32**0.5)
    assert len(G.latent_weights("w", layers=[0, 2])) == 2
    with pytest.raises(ConfigError, match=r"layer indices must be in 0..\d+"):
        G.latent_weights("w", layers=[99])


def test_training_checkpoints_load_safely_and_pickles_are_refused(tmp_path):
    path, _ = small_port_checkpoint(tmp_path, training_layout=True, name="train.pt")
    assert load_generator(path).net.config == SMALL  # argparse.Namespace is allowed, nothing else

    torch.save({"g_ema": torch.load(path, weights_only=False)["g_ema"], "extra": Custom()}, tmp_path / "evil.pt")
    with pytest.raises(DataFormatError, match=r"evil.pt: needs arbitrary code to unpickle .*Custom.*python -m latentnav.generators convert"):
        load_generator(tmp_path / "evil.pt")
    assert load_generator(tmp_path / "evil.pt", trust_pickle=True).net.config == SMALL


def test_convert_command_makes_a_safe_file(tmp_path):
    path, _ = small_port_checkpoint(tmp_path, training_layout=True, name="train.pt")
    blob = torch.load(path, weights_only=False)
    blob["extra"] = object.__new__(argparse.ArgumentParser)
    torch.save(blob, tmp_path / "unsafe.pt")
    done = subprocess.run([sys.executable, "-m", "latentnav.generators", "convert", str(tmp_path / "unsafe.pt"), str(tmp_path / "safe.pt")],
                          capture_output=True, text=True, cwd=str(tmp_path.parent), env={"PYTHONPATH": str(__import__("pathlib").Path(__file__).resolve().parents[2]), "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert "dropped /extra (ArgumentParser)" in done.stdout
    converted = torch.load(tmp_path / "safe.pt", weights_only=True)
    assert converted["args"]["size"] == 32
    assert load_generator(tmp_path / "safe.pt").net.config == SMALL


def test_bad_inputs(tmp_path):
    path, blob = small_port_checkpoint(tmp_path)
    G = load_generator(path)
    with pytest.raises(ConfigError, match=r"z latent: expected shape \(batch, 32\), got \(2, 31\)"):
        G.synthesize(torch.zeros(2, 31))
    with pytest.raises(ConfigError, match=r"w\+ latent: expected shape \(batch, 8, 32\), got \(2, 32\)"):
        G.synthesize(torch.zeros(2, 32), "w+")
    with pytest.raises(ConfigError, match=r"latent space 'y' is not supported by StyleGAN2Adapter; expected one of z, w, w\+"):
        G.synthesize(torch.zeros(2, 32), "y")
    with pytest.raises(ConfigError, match=r"noise_mode: expected one of const, random, none"):
        G.synthesize(torch.zeros(2, 32), noise_mode="fixed")
    state = dict(blob["g_ema"])
    state["convs.0.extra"] = torch.zeros(1)
    del state["conv1.noise.weight"]
    torch.save({"g_ema": state}, tmp_path / "odd.pt")
    with pytest.raises(DataFormatError, match=r"unexpected keys: convs.0.extra; missing keys: conv1.noise.weight"):
        load_generator(tmp_path / "odd.pt")
    torch.save({"generator": {}}, tmp_path / "unknown.pt")
    with pytest.raises(DataFormatError, match=r"unknown generator format \(top-level keys: generator\)"):
        load_generator(tmp_path / "unknown.pt")
    with pytest.raises(DataFormatError, match=r"missing.pt: generator file not found"):
        load_generator(tmp_path / "missing.pt")
    torch.save({"g_ema": {"foo": torch.zeros(1)}}, tmp_path / "notsg2.pt")
    with pytest.raises(DataFormatError, match=r"not a StyleGAN2 generator of the rosinality port"):
        load_generator(tmp_path / "notsg2.pt")


def test_both_modulated_convolution_forms_agree_with_gradients():
    """The grouped (fused) and shared-weight (non-fused) forms: images and the latent's gradient within 1e-5,
    and ``auto`` takes the non-fused form for a batch or whenever a gradient flows, the fused one for one sample."""
    from latentnav.generators.stylegan2 import ModulatedConv2d, StyleGAN2Config, StyleGAN2Generator

    torch.manual_seed(0)
    net = StyleGAN2Generator(StyleGAN2Config(size=32, style_dim=32, n_mlp=2, channels=(32, 32, 16, 8))).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    w = net.mapping(torch.randn(3, 32)).unsqueeze(1).repeat(1, net.config.n_latent, 1)
    found = {}
    for mode in ("fused", "nonfused"):
        latent = w.clone().requires_grad_(True)
        images = net.set_modconv(mode).synthesis(latent, net.stored_noise())
        (images * torch.linspace(-1, 1, images.numel()).view_as(images)).mean().backward()
        found[mode] = images.detach(), latent.grad
    torch.testing.assert_close(found["fused"][0], found["nonfused"][0], atol=1e-5, rtol=0)
    torch.testing.assert_close(found["fused"][1], found["nonfused"][1], atol=1e-5, rtol=0)
    assert found["fused"][1].abs().max() > 1e-4  # a real gradient was compared (largest entry about 3e-2)

    used = []
    for conv in (m for m in net.modules() if isinstance(m, ModulatedConv2d)):
        conv._fused = (lambda original: lambda *a: used.append("fused") or original(*a))(conv._fused)
        conv._nonfused = (lambda original: lambda *a: used.append("nonfused") or original(*a))(conv._nonfused)
    net.set_modconv("auto")
    with torch.no_grad():
        net.synthesis(w[:1], net.stored_noise())
    assert set(used) == {"fused"}  # one sample, inference: one ordinary convolution
    used.clear()
    with torch.no_grad():
        net.synthesis(w, net.stored_noise())
    assert set(used) == {"nonfused"}  # a batch
    used.clear()
    net.synthesis(w[:1].clone().requires_grad_(True), net.stored_noise())
    assert set(used) == {"nonfused"}  # gradients flow to the latent
    with pytest.raises(ConfigError, match="modconv: expected one of auto, fused, nonfused, got 'fast'"):
        net.set_modconv("fast")
