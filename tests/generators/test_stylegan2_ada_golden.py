"""latentnav's NVIDIA StyleGAN2 port against the ORIGINAL code's outputs (committed fixtures).

``tests/fixtures/stylegan2_ada_{skip,resnet,orig,cond}.pkl`` and ``stylegan3_sg2.pkl`` are real network
pickles written by StyleGAN2-ADA-PyTorch d72cc7d / StyleGAN3 c233a91 (``make_stylegan2_ada_golden.py``
says how); ``<case>_golden.pt`` holds what the original computed for them. The pickles are read with
:func:`latentnav.nvidia_pickle.read_network_pickle` (nothing in them runs) and built by our port.
Every comparison is within 1e-5 (float32, CPU); a wrong filter pad or a skipped clamp in the port
moves the images far beyond that (checked below).
"""

import dataclasses
from pathlib import Path

import pytest
import torch

from latentnav.commands.sefa import run_sefa
from latentnav.errors import ConfigError, DataFormatError
from latentnav.generators import load_generator
from latentnav.generators import stylegan2_nvidia_layers as layers
from latentnav.generators.stylegan2_nvidia import (build_stylegan2_nvidia, load_stylegan2_nvidia,
                                                   recognise_stylegan2_nvidia)
from latentnav.nvidia_pickle import read_network_pickle

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CASES = ("stylegan2_ada_skip", "stylegan2_ada_resnet", "stylegan2_ada_orig", "stylegan2_ada_cond", "stylegan3_sg2")
TOL = dict(atol=1e-5, rtol=0)


def _load(case: str, **options):
    """The fixture's generator as latentnav loads it (one line to switch to load_generator)."""
    return load_generator(FIXTURES / f"{case}.pkl", family_options=options or None)


@pytest.fixture(scope="module", params=CASES)
def golden(request):
    gold = torch.load(FIXTURES / f"{request.param}_golden.pt", weights_only=True)
    return gold, _load(request.param)


def _classes(gold, n=None):
    c = gold.get("classes")
    return None if c is None else c[:n]


def test_mapping_and_truncation_equal_the_originals(golden):
    gold, G = golden
    cls = _classes(gold)
    assert G.latent_shape("w+") == tuple(gold["ws"].shape[1:]) and G.num_ws == gold["num_ws"]
    with torch.no_grad():
        torch.testing.assert_close(G.to_space(gold["z"], "w+", classes=cls), gold["ws"], **TOL)
        torch.testing.assert_close(G.to_space(gold["z"], "w", classes=cls), gold["ws"][:, 0], **TOL)
        torch.testing.assert_close(G.truncated(gold["z"], "z", 0.7, None, cls, 2), gold["ws_trunc"], **TOL)
        torch.testing.assert_close(G.latent_weights("z")[0][1], gold["fc0_effective"], **TOL)
    assert G.identity["w_avg"] == "w_avg from the pickle"


def test_images_equal_the_originals(golden):
    gold, G = golden
    cls = _classes(gold)
    assert gold["clamp_hits"] > 0  # the fixture's clamp fires
    with torch.no_grad():
        torch.testing.assert_close(G.synthesize(gold["z"], "z", classes=cls), gold["images"], **TOL)
        torch.testing.assert_close(G.synthesize(gold["z"][:1], "z", classes=_classes(gold, 1)), gold["images_b1"], **TOL)
        torch.testing.assert_close(G.synthesize(gold["z"], "z", truncation=0.7, truncation_cutoff=2, classes=cls),
                                   gold["images_trunc"], **TOL)
        torch.testing.assert_close(G.synthesize(gold["z"], "z", noise_mode="none", classes=cls), gold["images_none"], **TOL)
        torch.testing.assert_close(G.synthesize(gold["ws_mix"], "w+", classes=cls), gold["images_mix"], **TOL)
        torch.testing.assert_close(G.synthesize(gold["ws"][:, 0], "w", classes=cls), gold["images"], **TOL)
        torch.manual_seed(gold["random_seed"])  # the port draws its noise maps in the original's order
        torch.testing.assert_close(G.synthesize(gold["z"], "z", noise_mode="random", classes=cls),
                                   gold["images_random"], **TOL)
        assert (gold["images"] - gold["images_trunc"]).abs().max() > 0.05
        assert (gold["images"] - gold["images_none"]).abs().max() > 0.05


def test_non_fused_modulation_equals_the_originals(golden):
    gold, G = golden
    try:
        G.fused_modconv = False
        with torch.no_grad():
            out = G.synthesize(gold["z"], "z", classes=_classes(gold))
        G.fused_modconv = True
        with torch.no_grad():
            fused = G.synthesize(gold["z"], "z", classes=_classes(gold))
    finally:
        G.fused_modconv = "auto"
    torch.testing.assert_close(out, gold["images_nonfused"], **TOL)
    torch.testing.assert_close(fused, gold["images"], **TOL)


def test_both_forms_agree_with_gradients(golden):
    """With a gradient flowing to the latent, ``auto`` takes the shared-weight form; images and the latent's
    gradient agree with the grouped form within 1e-5."""
    gold, G = golden
    found = {}
    try:
        for form in (True, False, "auto"):
            G.fused_modconv = form
            latent = G.to_space(gold["z"], "w+", classes=_classes(gold)).detach().requires_grad_(True)
            images = G.synthesize(latent, "w+", classes=_classes(gold))
            images.mean().backward()
            found[form] = images.detach(), latent.grad
    finally:
        G.fused_modconv = "auto"
    for form in (False, "auto"):
        torch.testing.assert_close(found[form][0], found[True][0], **TOL)
        torch.testing.assert_close(found[form][1], found[True][1], **TOL)
    assert found[True][1].abs().max() > 1e-4


def test_random_noise_differs_between_calls(golden):
    gold, G = golden
    with torch.no_grad():
        a, b = (G.synthesize(gold["z"], "z", noise_mode="random", classes=_classes(gold)) for _ in range(2))
    assert a.shape == gold["images"].shape and torch.isfinite(a).all() and not torch.equal(a, b)


def test_sefa_equals_the_releases_choice(golden):
    gold, G = golden
    assert G.sefa_layer_names() == gold["sefa_layers"]
    found = run_sefa(G, "w", "all", G.w_dim)  # the command's path: --layers all is the release's choice
    assert found["layers"] == gold["sefa_layers"]
    vectors, values = found["directions"], found["eigenvalues"]
    coarse = run_sefa(G, "w", "coarse", 2)["layers"]
    assert coarse and all(int(n.split(".")[0][1:]) <= 8 for n in coarse) and set(coarse) < set(gold["sefa_layers"])
    expected = gold["sefa_vectors"] * torch.sign(gold["sefa_vectors"].gather(1, gold["sefa_vectors"].abs().argmax(1, keepdim=True)))
    torch.testing.assert_close(values / values[0], gold["sefa_values"] / gold["sefa_values"][0], **TOL)
    torch.testing.assert_close(vectors, expected, **TOL)


def test_stored_noise_maps_reproduce_the_noise_modes(golden):
    gold, G = golden
    cls = _classes(gold)
    maps = G.noise_maps()
    assert len(maps) == len(G.net.synthesis.noise_layers()) and all(m.shape[:2] == (1, 1) for m in maps)
    with torch.no_grad():
        torch.testing.assert_close(G.synthesize_with_noise(gold["z"], "z", maps, classes=cls), gold["images"], **TOL)
        zeros = [torch.zeros_like(m) for m in maps]
        torch.testing.assert_close(G.synthesize_with_noise(gold["z"], "z", zeros, classes=cls), gold["images_none"], **TOL)
    with pytest.raises(ConfigError, match=rf"noise: expected {len(maps)} maps, got 1"):
        G.synthesize_with_noise(gold["z"], "z", maps[:1], classes=cls)


def test_class_conditional_generator():
    gold = torch.load(FIXTURES / "stylegan2_ada_cond_golden.pt", weights_only=True)
    G = _load("stylegan2_ada_cond")
    assert G.num_classes == 4 and G.conditional
    with torch.no_grad():
        per_class = G.synthesize(gold["z_one"], "z", classes=gold["classes"])
        torch.testing.assert_close(per_class, gold["images_per_class"], **TOL)
    assert (per_class[0] - per_class[1]).abs().max() > 0.05  # one z, three classes, three images
    with pytest.raises(ConfigError, match="class-conditional"):
        G.synthesize(gold["z"], "z")
    with pytest.raises(ConfigError, match=r"expected ids in 0..3"):
        G.synthesize(gold["z"], "z", classes=torch.tensor([0, 1, 4]))
    assert [n for n, _ in G.latent_weights("z")] == ["mapping.fc0"] and G.latent_weights("z")[0][1].shape == (32, 32)


def test_the_snapshot_picks_g_ema_and_the_version_defaults():
    records = read_network_pickle(FIXTURES / "stylegan2_ada_skip.pkl")
    assert {"G", "D", "G_ema"} <= set(records) and recognise_stylegan2_nvidia(records)
    gold = torch.load(FIXTURES / "stylegan2_ada_skip_golden.pt", weights_only=True)
    with torch.no_grad():
        picked = load_stylegan2_nvidia(records).synthesize(gold["z"], "z")
        training_g = load_stylegan2_nvidia(records["G"]).synthesize(gold["z"], "z")
    torch.testing.assert_close(picked, gold["images"], **TOL)
    assert (training_g - gold["images"]).abs().max() > 1e-3
    with pytest.raises(DataFormatError, match="the record is a Discriminator, not a Generator"):
        load_stylegan2_nvidia(records["D"])
    assert not recognise_stylegan2_nvidia(records["D"])
    sg3 = _load("stylegan3_sg2").describe()  # left out of its init_kwargs: StyleGAN3's defaults apply
    assert sg3["conv_clamp"] == 256 and sg3["num_fp16_res"].startswith("4 ") and sg3["family"].endswith("(stylegan3-stylegan2)")
    ada = _load("stylegan2_ada_skip").describe()
    assert ada["spaces"]["w+"] == (8, 32) and ada["mapping_layers"] == 3 and ada["truncation"] == "w_avg from the pickle"


def test_bad_records_are_one_line():
    record = read_network_pickle(FIXTURES / "stylegan2_ada_orig.pkl")["G_ema"]
    state = record.state_dict()
    kwargs = dict(record.init_kwargs)
    with pytest.raises(DataFormatError, match=r"unknown network version 'stylegan9'"):
        load_stylegan2_nvidia(("stylegan9", kwargs, state))
    wrong = {**state, "mapping.fc0.weight": state["mapping.fc0.weight"][:, :5]}
    with pytest.raises(DataFormatError, match=r"mapping.fc0.weight has shape \(32, 5\)"):
        load_stylegan2_nvidia(("stylegan2-ada", kwargs, wrong))
    with pytest.raises(DataFormatError, match=r"missing synthesis.b16.torgb.weight"):
        load_stylegan2_nvidia(("stylegan2-ada", kwargs, {k: v for k, v in state.items() if k != "synthesis.b16.torgb.weight"}))
    with pytest.raises(DataFormatError, match=r"unknown synthesis keyword\(s\) channel_bass"):
        build_stylegan2_nvidia("stylegan2-ada", {**kwargs, "synthesis_kwargs": {"channel_bass": 1}})
    with pytest.raises(DataFormatError, match=r"unknown Generator keyword\(s\) channel_base"):
        build_stylegan2_nvidia("stylegan2-ada", {**kwargs, "channel_base": 512})  # flat keywords are StyleGAN3's
    with pytest.raises(DataFormatError, match=r"embedded source \(\w+\) is not a published revision"):
        load_stylegan2_nvidia(dataclasses.replace(record, version=None))
    assert not recognise_stylegan2_nvidia(dataclasses.replace(record, version=None))


def test_a_pickle_without_w_avg_estimates_it():
    record = read_network_pickle(FIXTURES / "stylegan2_ada_orig.pkl")["G_ema"]
    kwargs = {**record.init_kwargs, "mapping_kwargs": {**record.init_kwargs["mapping_kwargs"], "w_avg_beta": None}}
    state = {k: v for k, v in record.state_dict().items() if k != "mapping.w_avg"}
    G = load_stylegan2_nvidia(("stylegan2-ada", kwargs, state), w_avg_samples=500)
    assert G.identity["w_avg"].startswith("estimated from 500 samples")
    with torch.no_grad():
        expected = G.to_space(torch.randn(500, 32, generator=torch.Generator().manual_seed(0)), "w").mean(0)
    torch.testing.assert_close(G.w_avg, expected)


def test_weights_stay_frozen_and_gradients_reach_the_latent():
    G = _load("stylegan2_ada_orig")
    w = G.sample(2, seed=0, space="w+").requires_grad_(True)
    G.synthesize(w, "w+").square().mean().backward()
    assert w.grad is not None and w.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in G.parameters())


@pytest.mark.parametrize("broken", ["filter pad", "skipped clamp"])
def test_a_broken_op_fails_the_golden(monkeypatch, broken):
    """The goldens are sharp: the port with one op wrong no longer matches them."""
    gold = torch.load(FIXTURES / "stylegan2_ada_skip_golden.pt", weights_only=True)
    G = _load("stylegan2_ada_skip")
    if broken == "filter pad":
        def upsample_shifted(x, f):  # one pixel too much on the left/top, one too little on the right/bottom
            n = layers.filter_size(f)
            return layers.upfirdn(x, f, up=2, pad=((n + 1) // 2 + 1, (n - 2) // 2 - 1) * 2, gain=4.0)
        monkeypatch.setattr(layers, "upsample2x", upsample_shifted)
    else:
        real = layers.bias_act
        monkeypatch.setattr(layers, "bias_act", lambda x, b, act="linear", gain=1.0, clamp=None: real(x, b, act, gain))
    with torch.no_grad():
        images = G.synthesize(gold["z"], "z")
    assert (images - gold["images"]).abs().max() > 1e-2
    with pytest.raises(AssertionError):
        torch.testing.assert_close(images, gold["images"], **TOL)


def test_the_stylegan3_default_clamp_is_applied(monkeypatch):
    """StyleGAN3's conv_clamp default (256, absent from the pickle's init_kwargs) fires in its fixture: the
    port built with no clamp (ADA's default) misses its golden."""
    gold = torch.load(FIXTURES / "stylegan3_sg2_golden.pt", weights_only=True)
    G = _load("stylegan3_sg2")
    for module in G.net.modules():
        if hasattr(module, "conv_clamp"):
            monkeypatch.setattr(module, "conv_clamp", None)
    with torch.no_grad():
        images = G.synthesize(gold["z"], "z")
    assert (images - gold["images"]).abs().max() > 1e-2
