"""latentnav's StyleGAN3 (configs T and R) against outputs of NVIDIA's own ``networks_stylegan3.py``.

``tests/fixtures/stylegan3_{t,r,t_cond}.pkl`` are network pickles saved by the original code (NVlabs/stylegan3
at c233a919, its persistence embedding the module source) and ``stylegan3_*_golden.pt`` what the original
returned for them on the CPU (its reference filtered leaky ReLU) -- made once by ``make_stylegan3_golden.py``,
whose docstring says how. Here the pickles are read without running anything (``read_network_pickle``), the
networks rebuilt by our port, and every output compared within 1e-5: mapped w+, images for batch 3 and 1,
psi 0.7 with and without a cutoff, a w+ with distinct rows, the identity user transform, classes, and SeFa.
"""

from pathlib import Path

import pytest
import torch

from latentnav.commands.sefa import sefa
from latentnav.errors import ConfigError, DataFormatError
from latentnav.generators import load_generator
from latentnav.generators import stylegan3_layers
from latentnav.generators.stylegan3 import build_stylegan3, load_stylegan3, recognise_stylegan3
from latentnav.nvidia_pickle import read_network_pickle

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CASES = ("t", "r", "t_cond")
TOL = dict(atol=1e-5, rtol=1e-5)


def _load(case: str):
    return load_generator(FIXTURES / f"stylegan3_{case}.pkl")


@pytest.fixture(scope="module", params=CASES)
def golden(request):
    gold = torch.load(FIXTURES / f"stylegan3_{request.param}_golden.pt", weights_only=True)
    return gold, _load(request.param)


def _classes(gold, batch=3):
    return gold.get("classes" if batch == 3 else "classes_b1")


@torch.no_grad()
def test_mapping_and_images_equal_the_originals(golden):
    gold, G = golden
    c3, c1 = _classes(gold), _classes(gold, 1)
    assert G.latent_shape("w+") == tuple(gold["ws"].shape[1:]) and G.resolution == gold["images"].shape[-1]
    assert G.num_classes == gold["init_kwargs"]["c_dim"] and G.noise_maps() == []
    torch.testing.assert_close(G.to_space(gold["z"], "w+", classes=c3), gold["ws"], **TOL)
    torch.testing.assert_close(G.to_space(gold["z"], "w", classes=c3), gold["ws"][:, 0], **TOL)
    torch.testing.assert_close(G.synthesize(gold["z"], "z", classes=c3), gold["images"], **TOL)
    torch.testing.assert_close(G.synthesize(gold["z"][:1], "z", classes=c1), gold["images_b1"], **TOL)
    torch.testing.assert_close(G.synthesize(gold["ws"][:, 0], "w", classes=c3), gold["images"], **TOL)
    torch.testing.assert_close(G.synthesize(gold["w_plus"], "w+", classes=c3), gold["images_w_plus"], **TOL)
    # StyleGAN3 has no noise inputs: every noise mode gives the same images
    torch.testing.assert_close(G.synthesize(gold["z"], "z", noise_mode="random", classes=c3), gold["images"], **TOL)
    assert (gold["images"] - gold["images_w_plus"]).abs().mean() > 1e-3  # the cases differ from each other


@torch.no_grad()
def test_truncation_with_cutoff_equals_the_originals(golden):
    gold, G = golden
    c3, psi, cutoff = _classes(gold), gold["truncation"], gold["truncation_cutoff"]
    torch.testing.assert_close(G.truncated(gold["z"], "z", psi, None, cutoff, c3), gold["ws_truncated"], **TOL)
    torch.testing.assert_close(G.synthesize(gold["z"], "z", truncation=psi, truncation_cutoff=cutoff, classes=c3),
                               gold["images_truncated"], **TOL)
    torch.testing.assert_close(G.synthesize(gold["z"], "z", truncation=psi, classes=c3),
                               gold["images_truncated_all"], **TOL)
    torch.testing.assert_close(G.synthesize(gold["ws"], "w+", truncation=psi, truncation_cutoff=cutoff, classes=c3),
                               gold["images_truncated"], **TOL)
    assert (gold["images_truncated"] - gold["images_truncated_all"]).abs().max() > 1e-4


@torch.no_grad()
def test_user_transform_equals_the_originals(golden):
    gold, G = golden
    c3 = _classes(gold)
    assert not torch.equal(gold["transform"], torch.eye(3))  # the fixture's transform is a real one
    try:
        G.set_transform(None)
        torch.testing.assert_close(G.synthesize(gold["z"], "z", classes=c3), gold["images_identity_transform"], **TOL)
    finally:
        G.set_transform(gold["transform"])
    torch.testing.assert_close(G.synthesize(gold["z"], "z", classes=c3), gold["images"], **TOL)
    with pytest.raises(ConfigError, match="transform: expected a finite 3 x 3 matrix"):
        G.set_transform(torch.eye(2))


def _same_up_to_sign(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b * torch.sign((a * b).sum(1, keepdim=True))).abs().max()


def test_sefa_equals_the_authors_recipe_on_the_originals_weights(golden):
    gold, G = golden
    named = G.latent_weights("w")
    assert [n for n, _ in named] == gold["sefa_w_layers"]
    for space in ("w", "z"):
        weights = [a for _, a in G.latent_weights(space)]
        d = weights[0].shape[1]
        vectors, values = sefa(weights, d)
        ref_values, ref_vectors = gold[f"sefa_{space}_values"], gold[f"sefa_{space}_vectors"]
        torch.testing.assert_close(values, ref_values, atol=1e-5, rtol=1e-5)
        k = 4  # the leading, well-separated directions
        assert _same_up_to_sign(vectors[:k], ref_vectors[:k]) < 1e-5, space
    assert torch.equal(G.latent_weights("w+", layers=[2])[0][1], named[2][1])
    with pytest.raises(ConfigError, match="latent_weights: layer indices must be in 0"):
        G.latent_weights("w", layers=[len(named)])


@pytest.mark.parametrize("broken", ["filter pad", "clamp skipped"])
def test_a_broken_op_fails_the_golden(monkeypatch, broken):
    gold = torch.load(FIXTURES / "stylegan3_t_golden.pt", weights_only=True)
    G = _load("t")
    real = stylegan3_layers.filtered_leaky_relu

    def wrong(x, bias, up_taps, down_taps, up, down, pad, gain, slope, clamp):
        if broken == "filter pad":  # one sample off: the output grid shifts, its size does not change
            pad = (pad[0] + 1, pad[1] - 1, pad[2] + 1, pad[3] - 1)
        else:
            clamp = None
        return real(x, bias, up_taps, down_taps, up, down, pad, gain, slope, clamp)

    with torch.no_grad():
        torch.testing.assert_close(G.synthesize(gold["z"]), gold["images"], **TOL)
        monkeypatch.setattr(stylegan3_layers, "filtered_leaky_relu", wrong)
        images = G.synthesize(gold["z"])
    assert images.shape == gold["images"].shape
    assert (images - gold["images"]).abs().max() > 1e-3
    with pytest.raises(AssertionError):
        torch.testing.assert_close(images, gold["images"], **TOL)


def test_classes_are_required_exactly_when_conditional():
    cond, plain = _load("t_cond"), _load("t")
    z = torch.randn(2, 32)
    assert cond.num_classes == 4 and plain.num_classes == 0
    with pytest.raises(ConfigError, match="class-conditional"):
        cond.synthesize(z)
    with pytest.raises(ConfigError, match="not class-conditional"):
        plain.synthesize(z, classes=torch.tensor([0, 1]))
    with torch.no_grad():
        a, b = cond.synthesize(z, classes=torch.tensor([0, 0])), cond.synthesize(z, classes=torch.tensor([3, 3]))
    assert (a - b).abs().max() > 1e-4  # the class changes the image
    assert cond.latents_at([0, 1, 2], seed=0, space="w").shape == (3, 32)
    assert cond.latent_weights("z")[0][1].shape == (32, 32)  # the z columns of fc0 (its input is [z, embedded c])


def test_gradients_reach_the_latent_and_not_the_weights():
    G = _load("t_cond")
    w = G.latents_at([0, 1], seed=1, space="w+").requires_grad_(True)
    G.synthesize(w, "w+", truncation=0.8, truncation_cutoff=3, classes=torch.tensor([1, 2])).square().sum().backward()
    assert w.grad is not None and torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in G.parameters())


def test_recognition_and_bad_init_kwargs():
    blob = read_network_pickle(FIXTURES / "stylegan3_r.pkl")
    assert recognise_stylegan3(blob) and recognise_stylegan3(blob["G_ema"])
    assert not recognise_stylegan3({"something": 1}) and not recognise_stylegan3(object())
    G = load_stylegan3(blob)
    assert G.identity["config"] == "R" and G.describe()["config"] == "R" and G.describe()["mapping_layers"] == 2
    kwargs = dict(blob["G_ema"].init_kwargs)
    with pytest.raises(DataFormatError, match="unknown argument"):
        build_stylegan3(dict(kwargs, fused_modconv_default=True))
    with pytest.raises(DataFormatError, match="missing w_dim"):
        build_stylegan3({k: v for k, v in kwargs.items() if k != "w_dim"})
    net = build_stylegan3(dict(kwargs, channel_max=16))  # a state of other shapes: one line
    assert sum(p.numel() for p in net.parameters()) < sum(v.numel() for v in blob["G_ema"].state_dict().values())

    class Record:
        init_kwargs = dict(kwargs, channel_max=16)
        state_dict = blob["G_ema"].state_dict

    with pytest.raises(DataFormatError, match="StyleGAN3 state does not fit its init_kwargs"):
        load_stylegan3(Record())
