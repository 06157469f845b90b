import argparse

import pytest
import pytorch_lightning as pl
import torch

from latentnav.datamodules.demo_faces import DEMO_ATTRIBUTES, generate
from latentnav.errors import DataFormatError
from latentnav.safe_load import sha256_of
from latentnav.lightning_modules.annotator import BUNDLED, FORMAT, export_annotator, load_annotator
from latentnav.lightning_modules.attribute_classifier import AttributeClassifier
from latentnav.lightning_modules.backbones import BACKBONES, build_backbone


def to_tensor(images):
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0


@pytest.fixture(scope="module")
def unseen_faces():
    images, labels = generate(1000, seed=987_654, image_size=32)  # a seed never trained on
    return to_tensor(images), torch.from_numpy(labels > 0)


def test_bundled_demo_classifier_labels_unseen_faces(unseen_faces):
    annotator = load_annotator("demo")
    assert annotator.attributes == list(DEMO_ATTRIBUTES)
    assert annotator.sha256 == sha256_of(BUNDLED["demo"])
    images, truth = unseen_faces
    with torch.no_grad():
        probs = annotator(images)
    assert probs.shape == (1000, len(DEMO_ATTRIBUTES)) and 0 <= probs.min() and probs.max() <= 1
    accuracy = ((probs > 0.5) == truth).float().mean(0)
    assert accuracy.mean() >= 0.99 and accuracy.min() >= 0.97, dict(zip(DEMO_ATTRIBUTES, accuracy.tolist()))


def test_annotator_is_frozen_but_passes_gradients(unseen_faces):
    annotator = load_annotator("demo")
    before = {k: v.clone() for k, v in annotator.state_dict().items()}
    annotator.train()  # what Lightning does to every submodule at each epoch start
    annotator.requires_grad_(True)  # what GAN code often does to a parent module
    assert not annotator.training and not any(m.training for m in annotator.modules())
    assert not any(p.requires_grad for p in annotator.parameters())
    images = unseen_faces[0][:8].clone().requires_grad_(True)
    annotator(images).sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    for k, v in annotator.state_dict().items():
        assert torch.equal(v, before[k]), k  # batch-norm statistics did not move


def test_resizes_other_resolutions(unseen_faces):
    annotator = load_annotator("demo")
    images64, labels = generate(200, seed=4242, image_size=64)
    with torch.no_grad():
        accuracy = ((annotator(to_tensor(images64)) > 0.5) == torch.from_numpy(labels > 0)).float().mean()
    assert accuracy >= 0.95
    with pytest.raises(ValueError, match=r"expected images of shape \(B, 3, H, W\), got \(3, 32, 32\)"):
        annotator(torch.zeros(3, 32, 32))


def test_export_roundtrip_matches_training_checkpoint(tmp_path):
    pl.seed_everything(1)
    model = AttributeClassifier(["Male", "Young"], width=8)
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, max_steps=0)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    exported = export_annotator(tmp_path / "model.ckpt", tmp_path / "small.pt")
    x = torch.randn(4, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        expected = torch.sigmoid(model(x))
        for source in (tmp_path / "model.ckpt", exported):
            annotator = load_annotator(source)
            assert annotator.attributes == ["Male", "Young"]
            torch.testing.assert_close(annotator(x), expected)
    assert torch.load(exported, weights_only=True)["format"] == FORMAT


def test_refuses_pickles_and_junk(tmp_path):
    blob = torch.load(BUNDLED["demo"], weights_only=True)
    blob["settings"] = dict(blob["settings"])
    blob["extra"] = argparse.Namespace(note="needs code to unpickle")
    torch.save(blob, tmp_path / "pickled.pt")
    with pytest.raises(DataFormatError, match=r"pickled.pt: needs arbitrary code to unpickle \(argparse.Namespace\).*trust_pickle=True"):
        load_annotator(tmp_path / "pickled.pt")
    assert load_annotator(tmp_path / "pickled.pt", trust_pickle=True).attributes == list(DEMO_ATTRIBUTES)
    (tmp_path / "junk.pt").write_bytes(b"definitely not a checkpoint")
    with pytest.raises(DataFormatError, match=r"junk.pt: not a torch checkpoint"):
        load_annotator(tmp_path / "junk.pt")
    with pytest.raises(DataFormatError, match=r"missing.pt: annotator file not found"):
        load_annotator(tmp_path / "missing.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(DataFormatError, match=r"other.pt: neither a train.py checkpoint nor an exported annotator"):
        load_annotator(tmp_path / "other.pt")


def test_features_are_the_input_of_the_last_linear_layer(unseen_faces):
    annotator = load_annotator("demo")
    head = annotator.net.head
    images = unseen_faces[0][:6]
    with torch.no_grad():
        feats = annotator.features(images)
        logits = annotator.logits(images)
        assert feats.shape == (6, head.in_features)
        torch.testing.assert_close(feats, annotator.net.features(images).flatten(1))
        torch.testing.assert_close(head(feats), logits)
        # same preprocessing as logits: other resolutions are resized the same way
        images64 = to_tensor(generate(4, seed=4242, image_size=64)[0])
        torch.testing.assert_close(head(annotator.features(images64)), annotator.logits(images64))
    assert not head._forward_hooks  # the hook is gone afterwards; logits are untouched
    torch.testing.assert_close(annotator.logits(images), logits)
    grad_images = images.clone().requires_grad_(True)
    annotator.features(grad_images).square().sum().backward()
    assert grad_images.grad is not None and grad_images.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"expected images of shape \(B, 3, H, W\)"):
        annotator.features(torch.zeros(3, 32, 32))


@pytest.mark.parametrize("name", BACKBONES)
def test_features_for_every_backbone(name):
    """Independent check: the same network with its last linear layer swapped for an identity."""
    import copy

    from latentnav.lightning_modules.annotator import Annotator

    torch.manual_seed(0)
    annotator = Annotator(build_backbone(name, 3, width=8), ["a", "b", "c"], image_size=16)
    x = torch.rand(2, 3, 24, 24) * 2 - 1  # tiny images, resized to 16
    head_name = [n for n, m in annotator.net.named_modules() if isinstance(m, torch.nn.Linear)][-1]
    headless = copy.deepcopy(annotator)
    parent, _, attr = head_name.rpartition(".")
    setattr(headless.net.get_submodule(parent) if parent else headless.net, attr, torch.nn.Identity())
    with torch.no_grad():
        feats, logits = annotator.features(x), annotator.logits(x)
        head = annotator.net.get_submodule(head_name)
        assert feats.shape == (2, head.in_features)
        torch.testing.assert_close(feats, headless.logits(x).flatten(1))
        torch.testing.assert_close(head(feats), logits)


def test_features_refuse_backbones_without_a_linear_head():
    from latentnav.lightning_modules.annotator import Annotator

    x = torch.zeros(2, 3, 8, 8)
    no_linear = Annotator(torch.nn.Sequential(torch.nn.Conv2d(3, 2, 8), torch.nn.Flatten()), ["a", "b"], image_size=8)
    with pytest.raises(TypeError, match="has no linear layer"):
        no_linear.features(x)
    after_head = Annotator(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 2), torch.nn.Tanh()),
                           ["a", "b"], image_size=8)
    with pytest.raises(TypeError, match="not the output of its last linear layer"):
        after_head.features(x)
    assert after_head.logits(x).shape == (2, 2)


def test_the_bundled_held_out_judge_is_independent_and_accurate():
    """demo_judge: another backbone than the demo annotator, and >= 0.99 accuracy on faces rendered with
    a seed neither classifier was trained on (configs/classifier/demo_judge.yaml: 0.9992 on its test split)."""
    import numpy as np

    from latentnav.datamodules.demo_faces import DEMO_ATTRIBUTES, generate

    judge, own = load_annotator("demo_judge"), load_annotator("demo")
    assert type(judge.net).__name__ == "TinyResNet" and type(own.net).__name__ != "TinyResNet"
    assert judge.sha256 != own.sha256 and list(judge.attributes) == list(DEMO_ATTRIBUTES)
    images, labels = generate(600, seed=424242)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        decisions = (judge(x) > 0.5).numpy()
    accuracy = (decisions == (labels > 0)).mean(0)
    assert accuracy.mean() >= 0.99 and accuracy.min() >= 0.97, dict(zip(DEMO_ATTRIBUTES, np.round(accuracy, 3)))
