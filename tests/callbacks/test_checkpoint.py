import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from latentnav.callbacks.checkpoint import Checkpoint


class Worsening(pl.LightningModule):
    """Its validation score falls every time, so only the first checkpoint is 'best'."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        self.log("score", -float(self.global_step))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def loader():
    return DataLoader(TensorDataset(torch.randn(40, 2)), batch_size=2)


def test_last_is_the_latest_state_even_without_improvement(tmp_path):
    ckpt = Checkpoint(dirpath=tmp_path, monitor="score", mode="max", save_last=True, filename="best-{step}")
    trainer = pl.Trainer(max_steps=7, val_check_interval=3, callbacks=[ckpt], logger=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(Worsening(), loader(), loader())
    assert ckpt.best_model_path.endswith("best-step=3.ckpt")
    # Validated at 3 and 6, stopped by max_steps at 7 in the middle of the epoch.
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["global_step"] == 7
