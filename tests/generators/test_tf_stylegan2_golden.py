"""TF-era StyleGAN2 pickles converted by latentnav against the ORIGINAL converter (committed fixtures).

``tests/fixtures/tf_stylegan2_{skip,resnet,orig,cond}.pkl`` are TensorFlow StyleGAN2 pickles (G, D, Gs)
written by ``make_tf_stylegan2_golden.py`` (its docstring says how) with random variables under TF
StyleGAN2's names and shapes; ``<case>_golden.pt`` holds what StyleGAN2-ADA-PyTorch d72cc7d's
``legacy.load_network_pkl`` made of Gs (state dict, init_kwargs) and that Generator's outputs. Here the
pickles are read without running anything (``latentnav.tf_pickle``), converted by
``generators/tf_stylegan2.py`` and built by our port: the state dict equals the original's bit for bit,
every output within 1e-5 (float32, CPU).
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from latentnav.errors import DataFormatError
from latentnav.generators import load_generator
from latentnav.generators import tf_stylegan2
from latentnav.generators.tf_stylegan2 import convert_tf_generator, load_tf_stylegan2, recognise_tf_stylegan2
from latentnav.tf_pickle import read_tf_network_pickle

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CASES = ("skip", "resnet", "orig", "cond")
TOL = dict(atol=1e-5, rtol=0)


def _load(case: str):
    """The fixture's generator as latentnav loads it (one line to switch to load_generator)."""
    return load_generator(FIXTURES / f"tf_stylegan2_{case}.pkl")


@pytest.fixture(scope="module", params=CASES)
def golden(request):
    gold = torch.load(FIXTURES / f"tf_stylegan2_{request.param}_golden.pt", weights_only=True)
    return request.param, gold, _load(request.param)


def test_conversion_equals_the_originals_bit_for_bit(golden):
    case, gold, _ = golden
    nets = read_tf_network_pickle(FIXTURES / f"tf_stylegan2_{case}.pkl")
    assert set(nets) == {"G", "D", "Gs"} and recognise_tf_stylegan2(nets)
    init_kwargs, state = convert_tf_generator(nets["Gs"])
    assert init_kwargs == gold["init_kwargs"]
    assert set(state) == set(gold["state_dict"])
    for name, value in gold["state_dict"].items():
        assert state[name].dtype == value.dtype and torch.equal(state[name], value), name


def test_outputs_equal_the_originals(golden):
    case, gold, G = golden
    cls = gold.get("classes")
    assert G.num_ws == gold["num_ws"] and G.num_classes == (3 if case == "cond" else 0)
    with torch.no_grad():
        torch.testing.assert_close(G.to_space(gold["z"], "w+", classes=cls), gold["ws"], **TOL)
        torch.testing.assert_close(G.truncated(gold["z"], "z", 0.7, None, cls, 2), gold["ws_trunc"], **TOL)
        torch.testing.assert_close(G.synthesize(gold["z"], "z", classes=cls), gold["images"], **TOL)
        torch.testing.assert_close(G.synthesize(gold["z"][:1], "z", classes=None if cls is None else cls[:1]),
                                   gold["images_b1"], **TOL)
        torch.testing.assert_close(G.synthesize(gold["z"], "z", truncation=0.7, truncation_cutoff=2, classes=cls),
                                   gold["images_trunc"], **TOL)
        torch.testing.assert_close(G.synthesize(gold["z"], "z", noise_mode="none", classes=cls), gold["images_none"], **TOL)
        torch.manual_seed(int(gold["random_seed"]))
        torch.testing.assert_close(G.synthesize(gold["z"], "z", noise_mode="random", classes=cls),
                                   gold["images_random"], **TOL)
        if cls is not None:
            torch.testing.assert_close(G.synthesize(gold["z"][:1].repeat(3, 1), "z", classes=cls),
                                       gold["images_per_class"], **TOL)
            assert gold["clamp_hits"] > 0  # the conditional case's conv clamp fires
    assert (gold["images"] - gold["images_trunc"]).abs().max() > 0.05
    if case != "orig":  # the orig case has no noise at all
        assert (gold["images"] - gold["images_none"]).abs().max() > 0.05


@pytest.mark.parametrize("broken", ["no flip of the up-sampling convolution", "modulation bias without its 1"])
def test_the_golden_catches_a_broken_conversion_rule(monkeypatch, broken):
    gold = torch.load(FIXTURES / "tf_stylegan2_resnet_golden.pt", weights_only=True)
    original = tf_stylegan2._Variables.__call__

    def wrong(self, name):
        value = original(self, name)
        if broken.startswith("no flip") and "Conv0_up/weight" in name:
            return value[::-1, ::-1]  # flipped here, flipped back by the converter: no flip in effect
        if broken.startswith("modulation") and name.endswith("mod_bias"):
            return value - 1
        return value

    monkeypatch.setattr(tf_stylegan2._Variables, "__call__", wrong)
    G = _load("resnet")
    with torch.no_grad():
        assert (G.synthesize(gold["z"], "z") - gold["images"]).abs().max() > 1e-3


# --- what cannot be converted: one line each ----------------------------------------------------------------


def _edited(tmp_path, edit):
    nets = read_tf_network_pickle(FIXTURES / "tf_stylegan2_skip.pkl")
    edit(nets["Gs"])
    return nets


def _refused(nets, match):
    with pytest.raises(DataFormatError, match=match) as error:
        load_tf_stylegan2(nets)
    assert "\n" not in str(error.value)


def test_unknown_settings_and_layers_are_refused(tmp_path):
    _refused(_edited(tmp_path, lambda g: g.static_kwargs.update(fmap_decay=0.5)),
             "sets fmap_decay=0.5, which the StyleGAN2-ADA generator does not compute")
    _refused(_edited(tmp_path, lambda g: g.static_kwargs.update(mystery=3)), "unknown TensorFlow generator setting mystery=3")
    _refused(_edited(tmp_path, lambda g: g.components["synthesis"].variables.append(
        ("ToRGB_lod1/weight", np.zeros((1, 1, 16, 3), np.float32)))), "variables no StyleGAN2 .* has: synthesis/ToRGB_lod1/weight")

    def revised(g):
        g.components["synthesis"].build_func_name = "training.networks_stylegan2.G_synthesis_stylegan_revised"
    _refused(_edited(tmp_path, revised), "configs A-D and StyleGAN v1 networks are not supported")

    def label_concat(g):
        g.static_kwargs["label_size"] = 2
        g.components["mapping"].variables.append(("LabelConcat/weight", np.zeros((2, 16), np.float32)))
    _refused(_edited(tmp_path, label_concat), "class-conditional TensorFlow StyleGAN2 \\(LabelConcat mapping\\)")

    def missing(g):
        g.components["mapping"].variables.pop()
    _refused(_edited(tmp_path, missing), "has no variable mapping/Dense1/bias")
    assert not recognise_tf_stylegan2({"G_ema": object()}) and not recognise_tf_stylegan2(None)
