import argparse

import pytest
import pytorch_lightning as pl
import torch

from latentnav.datamodules.demo_faces import DEMO_ATTRIBUTES, generate
from latentnav.errors import DataFormatError
from latentnav.safe_load import sha256_of
from latentnav.lightning_modules.annotator import BUNDLED, FORMAT, export_annotator, load_annotator
from latentnav.lightning_modules.attribute_classifier import AttributeClassifier


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
