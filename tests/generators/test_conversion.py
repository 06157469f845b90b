"""``latentnav generator convert``: every family as a plain weights-only file, and NVIDIA StyleGAN2 networks in
rosinality's layout, whose images must equal the ORIGINAL code's (the TF fixture's golden, made by ADA's own
converter and networks at a pinned commit)."""

from pathlib import Path

import pytest
import torch

from latentnav.errors import ConfigError
from latentnav.generators import load_generator
from latentnav.generators.conversion import convert_generator
from latentnav.generators.rosinality_layout import nvidia_to_rosinality

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.mark.parametrize("name", ["stylegan2_ada_cond.pkl", "stylegan3_r.pkl", "tf_stylegan2_resnet.pkl",
                                  "genforce_stylegan2.pth", "biggan_deep-pytorch_model.bin",
                                  "biggan_pytorch-G_ema.pth"])
def test_plain_file_loads_weights_only_and_draws_the_same_images(tmp_path, name):
    out = tmp_path / "plain.pt"
    message = convert_generator(FIXTURES / name, out)
    assert "differ from the source's by at most 0.00e+00" in message
    blob = torch.load(out, weights_only=True)  # plain data: no class of ours or anyone's is unpickled
    assert blob["format"] == "latentnav.generator/1" and blob["converted_from"]["source"] == name
    source, again = load_generator(FIXTURES / name), load_generator(out)
    assert again.describe()["spaces"] == source.describe()["spaces"] and again.num_classes == source.num_classes
    z = source.sample(2, seed=5)
    classes = source.classes_at([1, 2])
    assert torch.equal(source.synthesize(z, classes=classes), again.synthesize(z, classes=classes))


def test_rosinality_layout_draws_the_original_codes_images(tmp_path):
    gold = torch.load(FIXTURES / "tf_stylegan2_skip_golden.pt", weights_only=True)
    out = tmp_path / "rosinality.pt"
    message = convert_generator(FIXTURES / "tf_stylegan2_skip.pkl", out, layout="rosinality")
    assert "loads as rosinality-stylegan2" in message
    G = load_generator(out)
    assert G.identity["format"] == "rosinality-stylegan2" and G.identity["w_avg"] == "latent_avg from the checkpoint"
    with torch.no_grad():
        torch.testing.assert_close(G.to_space(gold["z"], "w"), gold["ws"][:, 0], atol=1e-5, rtol=0)
        torch.testing.assert_close(G.synthesize(gold["z"]), gold["images"], atol=1e-5, rtol=0)
        torch.testing.assert_close(G.synthesize(gold["z"], noise_mode="none"), gold["images_none"], atol=1e-5, rtol=0)
        # psi on the first 2 of 6 w+ rows, around the pickle's w_avg (latent_avg in rosinality's file)
        torch.testing.assert_close(G.synthesize(gold["z"], truncation=0.7, truncation_cutoff=2), gold["images_trunc"],
                                   atol=1e-5, rtol=0)


def test_a_mapping_with_another_learning_rate_is_rescaled(tmp_path):
    """rosinality's file cannot say its mapping's lr: a network trained with another one is folded in."""
    G = load_generator(FIXTURES / "tf_stylegan2_skip.pkl")
    state = G.net.state_dict()
    config = dict(architecture="skip", c_dim=0, z_dim=16, w_dim=16, img_channels=3, conv_clamp=None,
                  img_resolution=16, mapping_layers=2, mapping_lr=0.01)
    scaled = {k: (v * 0.2 if k.startswith("mapping.fc") else v) for k, v in state.items()}  # lr 0.05: 5x gain
    blob = nvidia_to_rosinality(scaled, dict(config, mapping_lr=0.05))
    original = nvidia_to_rosinality(state, config)
    for key in ("style.1.weight", "style.2.bias"):
        torch.testing.assert_close(blob["g_ema"][key], original["g_ema"][key])


@pytest.mark.parametrize("name, refused", [
    ("stylegan2_ada_resnet.pkl", "architecture 'resnet'"),
    ("stylegan2_ada_cond.pkl", "a class input"),
    ("stylegan3_t.pkl", "only NVIDIA StyleGAN2 networks"),
    ("genforce_stylegan2.pth", "only NVIDIA StyleGAN2 networks"),
    ("stylegan2_ada_skip.pkl", "clamps activations at 1.0 and the port does not; give --drop_clamp"),
])
def test_what_rosinality_cannot_express_is_one_line(tmp_path, name, refused):
    with pytest.raises(ConfigError, match=refused):
        convert_generator(FIXTURES / name, tmp_path / "r.pt", layout="rosinality")
    assert not (tmp_path / "r.pt").exists()


def test_drop_clamp_converts_and_reports_the_difference(tmp_path):
    message = convert_generator(FIXTURES / "stylegan2_ada_skip.pkl", tmp_path / "r.pt", layout="rosinality",
                                drop_clamp=True)
    difference = float(message.rsplit("at most ", 1)[1])
    assert difference > 1e-3  # the fixture's clamp (1.0) fires: the report says how far the images moved
