"""latentnav's ProgGAN (Voynov & Babenko's fixed 1024 px layout) against GANLatentDiscovery's own code.

``tests/fixtures/proggan_golden.pt`` was made once by ``make_proggan_golden.py`` (its docstring says how and
what it holds) from GANLatentDiscovery at commit 5ca8d67. The network is fixed-width (23 M parameters), so
its weights are not shipped: :func:`latentnav.generators.proggan.seeded_state_dict` regenerates them from the
documented seeded stream (checked against the fixture's per-key sums), they are written as a plain state dict
file (the original's format) and loaded through our loader. The fast tests cover every block: blocks 0-5 from
z (a 16 px map, at seeded positions) and blocks 6-17 with the to-RGB layer on a 2x2 input (128 px images,
whole), plus SeFa on the first layer; the full 1024 px forward (7 s an image on 2 cores) is ``slow``.
"""

from pathlib import Path

import pytest
import torch

import latentnav.generators.proggan as proggan
from latentnav.commands.sefa import run_sefa
from latentnav.errors import ConfigError, DataFormatError
from latentnav.generators import load_generator
from latentnav.generators.proggan import load_proggan, recognise_proggan, seeded_state_dict

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "proggan_golden.pt"
TOL = dict(atol=1e-5, rtol=1e-5)


def _load(path: Path):
    """The generator of a ProgGAN state-dict file (the lead switches this to ``load_generator(path)``)."""
    return load_generator(path)


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    gold = torch.load(FIXTURE, weights_only=True)
    state = seeded_state_dict(gold["weight_seed"])
    path = tmp_path_factory.mktemp("proggan") / "100_celeb_hq_network-snapshot-010403.pth"
    torch.save(state, path)
    return gold, state, _load(path)


def _prefix(G, z):
    return G.net.features[:6](z[:, :, None, None])


def _tail(G, x):
    return G.net.output(G.net.features[6:](x))


def test_the_weight_stream_is_the_fixtures(golden):
    gold, state, _ = golden
    assert list(state) == gold["weight_keys"]
    sums = torch.tensor([float(v.double().sum()) for v in state.values()], dtype=torch.float64)
    abs_sums = torch.tensor([float(v.double().abs().sum()) for v in state.values()], dtype=torch.float64)
    torch.testing.assert_close(sums, gold["weight_sums"], atol=1e-9, rtol=1e-12)
    torch.testing.assert_close(abs_sums, gold["weight_abs_sums"], atol=1e-9, rtol=1e-12)


@pytest.mark.parametrize("batch", [1, 3])
def test_blocks_equal_the_originals(golden, batch):
    gold, _, G = golden
    case = gold[f"batch{batch}"]
    with torch.no_grad():
        prefix = _prefix(G, case["z"])
        torch.testing.assert_close(prefix.flatten(1)[:, gold["prefix_positions"]], case["prefix_values"], **TOL)
        torch.testing.assert_close(prefix.mean(dim=(2, 3)), case["prefix_means"], **TOL)
        tail = _tail(G, case["tail_input"])
    assert tail.shape == (batch, 3, 128, 128)
    torch.testing.assert_close(tail, case["tail"], **TOL)
    assert case["tail"].std() > 0.3  # the golden is not a flat image


def test_adapter_contract(golden):
    gold, state, G = golden
    assert (G.resolution, G.z_dim, G.latent_spaces, G.num_classes) == (1024, 512, ("z",), 0)
    assert G.identity["format"] == "voynov-proggan"
    assert not any(p.requires_grad for p in G.parameters())
    [(name, A)] = G.latent_weights("z")
    assert name == "features.0" and A.shape == (512 * 16, 512)
    z = gold["batch3"]["z"]
    with torch.no_grad():  # h = A @ pixel_norm(z) + b is features.0 before its activation
        h = proggan.pixel_norm(z[:, :, None, None])[:, :, 0, 0] @ A.T
        h = h.view(3, 512, 4, 4) + state["features.0.wscale.b"][None, :, None, None]
        torch.testing.assert_close(torch.nn.functional.leaky_relu(h, 0.2), G.net.features[0](z[:, :, None, None]), **TOL)
    with pytest.raises(ConfigError, match="one latent-facing layer"):
        G.latent_weights("z", layers=[1])


def test_sefa_equals_the_release_recipe(golden):
    gold, _, G = golden
    found = run_sefa(G, "z", "all", num_directions=512)
    sefa = gold["sefa"]
    torch.testing.assert_close(found["eigenvalues"].double(), sefa["eigenvalues"], atol=1e-5, rtol=0)
    k = sefa["k"]
    ours, theirs = found["directions"][:k].double(), sefa["vectors"]
    signs = torch.sign((ours * theirs).sum(1, keepdim=True))  # eigenvectors are defined up to sign
    torch.testing.assert_close(ours * signs, theirs, **TOL)


@pytest.mark.parametrize("broken", ["upsample", "pixel_norm"])
def test_a_broken_op_fails_the_golden(golden, monkeypatch, broken):
    gold, _, G = golden
    case = gold["batch1"]
    if broken == "upsample":  # bilinear instead of nearest-neighbour
        monkeypatch.setattr(proggan, "upsample2x", lambda x: torch.nn.functional.interpolate(
            x, scale_factor=2, mode="bilinear", align_corners=False))
    else:  # the feature normalisation left out
        monkeypatch.setattr(proggan, "pixel_norm", lambda x: x)
    with torch.no_grad():
        tail = _tail(G, case["tail_input"])
    assert (tail - case["tail"]).abs().max() > 1e-2
    with pytest.raises(AssertionError):
        torch.testing.assert_close(tail, case["tail"], **TOL)


def test_recognition_and_bad_files(golden, tmp_path):
    _, state, _ = golden
    assert recognise_proggan(state) and recognise_proggan({"state_dict": state})
    small = {k: v for k, v in state.items()}
    for other in ({"g_ema": small}, {"generator": small, "generator_smooth": small},
                  {"linear.weight": torch.zeros(4, 4), "shared.weight": torch.zeros(4, 4)},
                  {"generator.gen_z.weight": torch.zeros(4, 4)}, {"features.0.conv.weight": torch.zeros(1)}, [], None):
        assert not recognise_proggan(other)
    with pytest.raises(DataFormatError, match="not a ProgGAN state dict"):
        load_proggan({"g_ema": small}, {"source": "x.pt"})
    extra = dict(state, **{"features.18.conv.weight": torch.zeros(1)})
    with pytest.raises(DataFormatError, match=r"x.pt: .*unexpected keys: features.18.conv.weight; missing keys: none"):
        load_proggan(extra, {"source": "x.pt"})
    wrong = dict(state, **{"features.5.conv.weight": torch.zeros(512, 512, 1, 1)})
    with pytest.raises(DataFormatError, match=r"features.5.conv.weight has shape \(512, 512, 1, 1\)"):
        load_proggan(wrong, {"source": "x.pt"})
    with pytest.raises(ConfigError, match="fixed at 1024, got 256"):
        load_proggan(state, {}, resolution=256)


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 3])
def test_full_images_equal_the_originals(golden, batch):
    """The 1024 px images through ``synthesize`` (7 s an image on 2 cores): seeded pixels, channel means, range."""
    gold, _, G = golden
    case = gold[f"batch{batch}"]
    with torch.no_grad():
        images = G.synthesize(case["z"])
        assert images.shape == (batch, 3, 1024, 1024)
        torch.testing.assert_close(images.flatten(2)[:, :, gold["pixel_positions"]], case["full_pixels"], **TOL)
        torch.testing.assert_close(images.mean(dim=(2, 3)), case["full_means"], **TOL)
        torch.testing.assert_close(images.amin(dim=(1, 2, 3)), case["full_min"], **TOL)
        torch.testing.assert_close(images.amax(dim=(1, 2, 3)), case["full_max"], **TOL)
        # no clamp: the linear output leaves [-1, 1] under these random weights, as the original's does
        assert float(case["full_max"].max()) > 1.0
        # psi pulls z towards 0, which the first pixel norm undoes: the same images
        torch.testing.assert_close(G.synthesize(case["z"], truncation=0.5, noise_mode="none")
                                   .flatten(2)[:, :, gold["pixel_positions"]], case["full_pixels"], **TOL)
