"""A module built on FrozenGeneratorModule: the generator never changes, never lands in a
checkpoint, and a resume against another generator file fails loudly."""

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from latentnav.commands.cli import LatentNavCLI, main
from latentnav.lightning_modules.frozen_generator import FrozenGeneratorModule
from tests.generators.tiny import save_tiny


class LatentShift(FrozenGeneratorModule):
    """Learns one latent shift that brightens the generated images (gradients through the frozen G)."""

    def __init__(self, generator: str = "demo", generator_options: dict | None = None, lr: float = 0.05) -> None:
        super().__init__(generator, generator_options)
        self.save_hyperparameters()
        self.shift = torch.nn.Parameter(torch.zeros(self.generator.z_dim))

    def training_step(self, batch, batch_idx):
        loss = -self.generator.synthesize(batch[0] + self.shift).mean()
        self.log("train/loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD([self.shift], lr=self.hparams.lr)


class Latents(pl.LightningDataModule):
    def __init__(self, z_dim: int = 8, num: int = 64, batch_size: int = 16) -> None:
        super().__init__()
        self.z = torch.randn(num, z_dim, generator=torch.Generator().manual_seed(0))
        self.batch_size = batch_size

    def train_dataloader(self):
        return DataLoader(TensorDataset(self.z), batch_size=self.batch_size)


def cli_args(generator, *extra):
    return ["fit", "--model", "tests.lightning_modules.test_frozen_generator.LatentShift",
            "--model.init_args.generator", str(generator), "--data", "tests.lightning_modules.test_frozen_generator.Latents",
            "--trainer.max_steps", "6", "--trainer.accelerator", "cpu", "--trainer.devices", "1",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false", *extra]


def test_generator_frozen_through_fit_and_left_out_of_checkpoints(tmp_path, monkeypatch, capsys):
    save_tiny(tmp_path / "g.pt", seed=0)
    save_tiny(tmp_path / "other.pt", seed=1)
    monkeypatch.chdir(tmp_path)
    cli = LatentNavCLI(args=cli_args(tmp_path / "g.pt"))  # a TorchScript file through the config
    model = cli.model
    reference = torch.jit.load(str(tmp_path / "g.pt"))
    for key, value in reference.state_dict().items():  # bit-identical, batch-norm statistics too
        assert torch.equal(model.generator.module.state_dict()[key], value), key
    assert not model.generator.training and not any(p.requires_grad for p in model.generator.parameters())
    assert model.shift.abs().sum() > 0  # the shift itself did learn, through the frozen generator

    last = cli.trainer.checkpoint_callback.last_model_path
    ckpt = torch.load(last, weights_only=True)
    assert list(ckpt["state_dict"]) == ["shift"]
    assert ckpt["generator_identity"]["sha256"] == model.generator.identity["sha256"]
    assert ckpt["hyper_parameters"]["generator"] == str(tmp_path / "g.pt")

    resumed = LatentNavCLI(args=cli_args(tmp_path / "g.pt", "--trainer.max_steps", "8", "--ckpt_path", last))
    assert resumed.trainer.global_step == 8
    torch.testing.assert_close(resumed.model.generator.synthesize(torch.zeros(1, 8)),
                               model.generator.synthesize(torch.zeros(1, 8)))

    # A different generator on the command line is refused, not silently swapped for the checkpoint's.
    with pytest.raises(SystemExit) as exit_info:
        main(cli_args(tmp_path / "other.pt", "--trainer.max_steps", "8", "--ckpt_path", last))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (f"latentnav: error: checkpoint was made with generator {tmp_path / 'g.pt'}, but model.generator "
                   f"is {tmp_path / 'other.pt'}; pass the checkpoint's generator to resume")

    # The same path with other weights behind it is caught by the stored sha256.
    (tmp_path / "other.pt").replace(tmp_path / "g.pt")
    with pytest.raises(SystemExit) as exit_info:
        main(cli_args(tmp_path / "g.pt", "--trainer.max_steps", "8", "--ckpt_path", last))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"latentnav: error: checkpoint was made with generator {tmp_path / 'g.pt'} (sha256 ")
    assert "pass the same generator to resume" in err


def test_parent_cannot_unfreeze_the_generator(tmp_path):
    save_tiny(tmp_path / "g.pt")
    module = LatentShift(str(tmp_path / "g.pt"))
    module.requires_grad_(True)
    module.unfreeze()
    module.train()
    assert module.shift.requires_grad
    assert not any(p.requires_grad for p in module.generator.parameters()) and not module.generator.training
