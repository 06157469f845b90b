"""latentnav's two BigGAN ports against outputs of the original code (committed fixtures).

Made once by ``make_biggan_golden.py`` (its docstring says how and at which commits):

- ``biggan_deep-pytorch_model.bin`` + ``biggan_deep-config.json``: a tiny BigGAN-deep in the
  pytorch-pretrained-biggan release's format; ``biggan_deep_golden.pt``: that package's images at
  truncation 1.0, 0.4 and 0.412 (between two statistics slots), batch 3 and 1, its first layer on z and
  SeFa's eigen of it;
- ``biggan_pytorch-G_ema.pth``: a tiny BigGAN-PyTorch generator (hierarchical z, shared embedding, attention);
  ``biggan_pytorch_golden.pt``: its images (z and 0.5 z), GANLatentDiscovery's images of the same file, its
  first layer and SeFa eigen, and four more layouts (mybn without a shared embedding, cross-replica BN, no
  spectral norm, conditional BNs without statistics) with their images.
"""

from pathlib import Path

import pytest
import torch

from latentnav.commands.sefa import sefa
from latentnav.errors import ConfigError, DataFormatError
from latentnav.generators import biggan_deep, biggan_pytorch, load_generator
from latentnav.generators.biggan import load_biggan, recognise_biggan, recognise_biggan_deep, recognise_biggan_pytorch
from latentnav.safe_load import safe_torch_load

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
DEEP = FIXTURES / "biggan_deep-pytorch_model.bin"
PYTORCH = FIXTURES / "biggan_pytorch-G_ema.pth"
TOL = dict(atol=1e-5, rtol=1e-5)


def _load(path, **options):
    """The fixture through ``load_generator`` (BigGAN's options are its ``family_options``)."""
    return load_generator(path, family_options=options or None)


@pytest.fixture(scope="module")
def deep():
    return torch.load(FIXTURES / "biggan_deep_golden.pt", weights_only=True), _load(DEEP)


@pytest.fixture(scope="module")
def bgp():
    gold = torch.load(FIXTURES / "biggan_pytorch_golden.pt", weights_only=True)
    return gold, _load(PYTORCH, **gold["options"])


def _check_sefa(weights, gold, k):
    vectors, values = sefa(weights, k)
    torch.testing.assert_close(values, gold["sefa_values"][:k], atol=1e-4, rtol=1e-5)
    golden_vectors = gold["sefa_vectors"][:k]
    golden_vectors = torch.cat([golden_vectors, golden_vectors.new_zeros(k, vectors.shape[1] - golden_vectors.shape[1])], 1)
    signs = torch.sign((vectors * golden_vectors).sum(1, keepdim=True))
    torch.testing.assert_close(vectors * signs, golden_vectors, atol=1e-4, rtol=0)


# ------------------------------------------------------------------------------------------------ BigGAN-deep
def test_deep_images_equal_the_releases(deep):
    gold, G = deep
    assert (G.resolution, G.z_dim, G.num_classes, G.latent_spaces) == (32, 16, 5, ("z",))
    assert G.identity["format"] == "pytorch-pretrained-biggan"
    assert G.identity["config_source"].endswith("biggan_deep-config.json")  # found next to the weights
    with torch.no_grad():
        for psi in gold["truncations"]:
            torch.testing.assert_close(G.synthesize(gold["z3"], truncation=psi, classes=gold["classes3"]),
                                       gold[f"images3_{psi}"], **TOL)
            torch.testing.assert_close(G.synthesize(gold["z1"], truncation=psi, classes=gold["classes1"]),
                                       gold[f"images1_{psi}"], **TOL)
    assert (gold["images3_0.4"] - gold["images3_0.412"]).abs().max() > 0.05  # the blended statistics matter


def test_deep_first_layer_and_sefa_equal_the_releases(deep):
    gold, G = deep
    (name, a), = G.latent_weights("z")
    assert name == "generator.gen_z" and a.shape == (4 * 4 * 16 * 4, 16)
    torch.testing.assert_close(a, gold["first_layer"], **TOL)
    _check_sefa([a], gold, 16)


def test_deep_truncation_rules_and_config(deep, tmp_path):
    gold, G = deep
    with pytest.raises(ConfigError, match=r"psi = 0 has none"):
        G.synthesize(gold["z1"], truncation=0.0, classes=gold["classes1"])
    with pytest.raises(ConfigError, match=r"truncation_latent: BigGAN-deep"):
        G.synthesize(gold["z1"], truncation=0.5, truncation_latent=torch.zeros(16), classes=gold["classes1"])
    with pytest.raises(ConfigError, match=r"class-conditional \(5 classes\)"):
        G.synthesize(gold["z1"])
    z = G.sample_truncated(64, 0.4, seed=3)
    assert z.shape == (64, 16) and float(z.abs().max()) <= 0.8 and torch.equal(z, G.sample_truncated(64, 0.4, seed=3))

    lone = tmp_path / "pytorch_model.bin"
    lone.write_bytes(DEEP.read_bytes())
    with pytest.raises(ConfigError, match=r"needs its config.json \(not found: .*config.json"):
        _load(lone)
    config = tmp_path / "my.json"
    config.write_text((FIXTURES / "biggan_deep-config.json").read_text())
    G2 = _load(lone, config=str(config))
    with torch.no_grad():
        torch.testing.assert_close(G2.synthesize(gold["z1"], truncation=0.4, classes=gold["classes1"]),
                                   gold["images1_0.4"], **TOL)
    config.write_text('{"output_dim": 64}')
    with pytest.raises(DataFormatError, match=r"5 up-sampling blocks make 128 px, output_dim says 64"):
        _load(lone, config=str(config))


def test_deep_golden_catches_the_textbook_interpolation(deep, monkeypatch):
    """Blending the two statistics slots the other way round (weight 1 - f on the lower slot) is what one
    would write from the paper; the release does otherwise, and the golden at psi 0.412 sees it."""
    gold, G = deep

    def textbook(self, truncation):
        slot, fraction = divmod(truncation * (self.n_stats - 1), 1.0)
        slot = int(slot)
        if fraction == 0.0:
            return self.running_means[slot], self.running_vars[slot]
        return ((1 - fraction) * self.running_means[slot] + fraction * self.running_means[slot + 1],
                (1 - fraction) * self.running_vars[slot] + fraction * self.running_vars[slot + 1])

    monkeypatch.setattr(biggan_deep.TruncationBatchNorm, "statistics", textbook)
    with torch.no_grad():
        torch.testing.assert_close(G.synthesize(gold["z3"], truncation=0.4, classes=gold["classes3"]),
                                   gold["images3_0.4"], **TOL)  # a slot exactly: unchanged
        broken = G.synthesize(gold["z3"], truncation=0.412, classes=gold["classes3"])
    assert (broken - gold["images3_0.412"]).abs().max() > 1e-3


# ------------------------------------------------------------------------------------------------ BigGAN-PyTorch
def test_biggan_pytorch_images_equal_the_originals(bgp):
    gold, G = bgp
    assert (G.resolution, G.z_dim, G.num_classes) == (32, 16, 5)
    assert G.identity["config"]["hier"] and G.identity["config"]["z_chunk"] == 4
    with torch.no_grad():
        torch.testing.assert_close(G.synthesize(gold["z3"], classes=gold["classes3"]), gold["images3"], **TOL)
        torch.testing.assert_close(G.synthesize(gold["z1"], classes=gold["classes1"]), gold["images1"], **TOL)
        torch.testing.assert_close(G.synthesize(gold["z3"], truncation=0.5, classes=gold["classes3"]),
                                   gold["images3_half"], **TOL)
    # GANLatentDiscovery's copy of the generator gave the same images from the same file: one layout
    torch.testing.assert_close(gold["gld_images3"], gold["images3"], atol=0, rtol=0)


def test_biggan_pytorch_first_layer_and_sefa(bgp):
    gold, G = bgp
    (name, a), = G.latent_weights("z")
    assert name == "linear" and a.shape == (16 * 16, 16)
    torch.testing.assert_close(a[:, :4], gold["first_layer"], **TOL)  # z's first chunk
    assert not a[:, 4:].any()  # the other chunks feed the blocks' batch norms, not this layer
    _check_sefa([a], gold, 4)


@pytest.mark.parametrize("name", ["mybn", "cross_replica", "plain", "nonorm"])
def test_biggan_pytorch_layouts_equal_the_originals(bgp, tmp_path, name):
    gold = bgp[0]["variants"][name]
    path = tmp_path / "G.pth"
    torch.save(gold["state_dict"], path)
    G = _load(path, **gold["options"])
    with torch.no_grad():
        torch.testing.assert_close(G.synthesize(gold["z"], classes=gold["classes"]), gold["images"], **TOL)
    if name == "mybn":
        assert not G.identity["config"]["shared"] and G.identity["config"]["num_svs"] == 2
        G = _load(path, standing_stats=True, **gold["options"])
        with torch.no_grad():
            torch.testing.assert_close(G.synthesize(gold["z"], classes=gold["classes"]), gold["images_standing"], **TOL)


def test_biggan_pytorch_options_and_config(bgp):
    gold, _ = bgp
    with torch.no_grad():  # BN_eps is not in the file: the default (1e-5) is another network
        other = _load(PYTORCH).synthesize(gold["z3"], classes=gold["classes3"])
    assert (other - gold["images3"]).abs().max() > 1e-4
    G = _load(PYTORCH, config={"BN_eps": 1e-4, "SN_eps": 1e-6, "hier": True, "dim_z": 17, "shared_dim": 8})
    with torch.no_grad():
        torch.testing.assert_close(G.synthesize(gold["z1"], classes=gold["classes1"]), gold["images1"], **TOL)
    with pytest.raises(ConfigError, match=r"the config says shared_dim=128, the state dict has 8"):
        _load(PYTORCH, config={"shared_dim": 128})
    with pytest.raises(ConfigError, match=r"unknown truncation_cutoff"):
        _load(PYTORCH, truncation_cutoff=3)


def test_biggan_pytorch_golden_catches_the_stored_singular_value(bgp, monkeypatch):
    """Dividing by the stored ``sv0`` (a training log) instead of the evaluation-time power step is caught."""
    gold, G = bgp
    monkeypatch.setattr(biggan_pytorch._SN, "sigma", lambda self: self.sv0.squeeze())
    with torch.no_grad():
        broken = G.synthesize(gold["z3"], classes=gold["classes3"])
    assert (broken - gold["images3"]).abs().max() > 1e-3


def test_recognisers():
    deep_blob, bgp_blob = safe_torch_load(DEEP), safe_torch_load(PYTORCH)
    assert recognise_biggan_deep(deep_blob) and not recognise_biggan_pytorch(deep_blob)
    assert recognise_biggan_pytorch(bgp_blob) and not recognise_biggan_deep(bgp_blob)
    assert recognise_biggan(deep_blob) and recognise_biggan(bgp_blob)
    assert not recognise_biggan({"g_ema": {}}) and not recognise_biggan([1, 2])
    with pytest.raises(DataFormatError, match=r"not a BigGAN state dict"):
        load_biggan({"g_ema": {}}, {"source": "x.pt"})
    broken = dict(bgp_blob)
    broken.pop("output_layer.2.u0")
    with pytest.raises(DataFormatError, match=r"does not fit BigGANPyTorchGenerator; unexpected keys: none; "
                                              r"missing keys: output_layer.2.u0"):
        load_biggan(broken, {"source": "x.pt"})
