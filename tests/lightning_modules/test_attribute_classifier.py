import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from latentnav.datamodules.demo import DemoFacesDataModule
from latentnav.datamodules.demo_faces import DEMO_ATTRIBUTES
from latentnav.errors import ConfigError, TrainingDivergedError
from latentnav.lightning_modules.attribute_classifier import AttributeClassifier
from latentnav.lightning_modules.backbones import build_backbone


def quiet_trainer(**kwargs):
    defaults = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False)
    return pl.Trainer(**{**defaults, **kwargs})


def test_learns_demo_attributes(demo_root):
    """A short CPU training reaches >= 0.95 mean held-out accuracy on every attribute's average."""
    pl.seed_everything(0)
    dm = DemoFacesDataModule(root=str(demo_root), num_faces=4000, batch_size=64)
    model = AttributeClassifier(list(DEMO_ATTRIBUTES), lr=3e-3)
    trainer = quiet_trainer(max_epochs=2, num_sanity_val_steps=0)
    trainer.fit(model, dm)
    result = trainer.test(model, dm, verbose=False)[0]
    assert result["test/acc_mean"] >= 0.95
    assert min(result[f"test/acc/{a}"] for a in DEMO_ATTRIBUTES) >= 0.85
    assert result["test/auroc_mean"] >= 0.97


def test_backbones_and_shapes():
    model = AttributeClassifier(["A", "B", "C"])
    assert model(torch.zeros(5, 3, 32, 32)).shape == (5, 3)
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 3)
    assert build_backbone("resnet18", 7)(torch.zeros(2, 3, 64, 64)).shape == (2, 7)
    with pytest.raises(ConfigError, match=r"model.backbone: unknown backbone 'vgg'; expected one of small_cnn"):
        build_backbone("vgg", 3)
    with pytest.raises(ConfigError, match=r"model.attributes"):
        AttributeClassifier([])


def test_attribute_mismatch_with_data_is_reported(demo_root):
    dm = DemoFacesDataModule(root=str(demo_root), num_faces=4000, attributes=["Male", "Young"])
    model = AttributeClassifier(["Young", "Male"])
    with pytest.raises(ConfigError, match=r"model.attributes \['Young', 'Male'\] do not match the data's columns \['Male', 'Young'\]"):
        quiet_trainer(fast_dev_run=1).fit(model, dm)


def test_image_size_mismatch_with_data_is_reported(demo_root):
    dm = DemoFacesDataModule(root=str(demo_root), num_faces=4000)
    with pytest.raises(ConfigError, match=r"model.image_size 64 differs from data.image_size 32"):
        quiet_trainer(fast_dev_run=1).fit(AttributeClassifier(list(DEMO_ATTRIBUTES), image_size=64), dm)


class NaNData(pl.LightningDataModule):
    def train_dataloader(self):
        images = torch.full((8, 3, 32, 32), float("nan"))
        return DataLoader(TensorDataset(images, torch.ones(8, 2)), batch_size=4)


def test_nan_loss_stops_with_a_clear_error():
    with pytest.raises(TrainingDivergedError, match=r"classifier loss is not finite \(nan on rank 0\) at global step 0 \(epoch 0, batch 0\)"):
        quiet_trainer(max_steps=2).fit(AttributeClassifier(["A", "B"]), NaNData())
