"""The divergence guard, the run identity and the pre-flight checks, on tiny modules (issue 12)."""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from latentnav.callbacks.divergence_guard import DivergenceGuard, check_final_validation
from latentnav.callbacks.run_identity import KEY, RunIdentity, check_run_identity, run_identity
from latentnav.errors import ConfigError, TrainingDivergedError
from latentnav.commands.preflight import check_free_space, check_writable, checkpoint_bytes


class Regression(pl.LightningModule):
    """y = 3x, fitted by SGD: a learning rate above 2/E[x^2] diverges geometrically but stays finite a while."""

    def __init__(self, lr: float) -> None:
        super().__init__()
        self.lr = lr
        self.w = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = ((x * self.w - y) ** 2).mean()
        self.log("train/loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def loader(n: int = 64) -> DataLoader:
    x = torch.randn(n, generator=torch.Generator().manual_seed(0))
    return DataLoader(TensorDataset(x, 3 * x), batch_size=4)


def fit(lr: float, guard: DivergenceGuard, steps: int = 40, ckpt_path=None, tmp_path=None) -> pl.Trainer:
    trainer = pl.Trainer(max_steps=steps, callbacks=[guard], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(Regression(lr), loader(), ckpt_path=ckpt_path)
    return trainer


def test_guard_stops_a_finite_runaway_and_lets_a_sane_fit_finish():
    with pytest.raises(TrainingDivergedError, match="ran away"):
        fit(lr=1.5, guard=DivergenceGuard(factor=100, window=5))  # |1 - 2 lr E[x^2]| > 1: grows ~4x a step
    guard = DivergenceGuard(factor=100, window=5)
    trainer = fit(lr=0.05, guard=guard)
    assert trainer.global_step == 40
    assert guard.reference == pytest.approx(9.0, rel=0.8)  # the untrained model's loss: E[(3x)^2]


def test_guard_reference_survives_a_resume(tmp_path):
    """A resumed run is judged against the first run's start, not against its own (already low) loss."""
    trainer = pl.Trainer(max_steps=30, callbacks=[DivergenceGuard(window=5)], logger=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(Regression(0.05), loader())
    ckpt = tmp_path / "fit.ckpt"
    trainer.save_checkpoint(ckpt)
    saved = torch.load(ckpt, weights_only=True)["callbacks"]
    (state,) = [v for k, v in saved.items() if "DivergenceGuard" in k]
    assert state["reference"] > 1

    resumed = DivergenceGuard(window=5)
    resumed.load_state_dict(state)
    assert resumed.reference == state["reference"]
    # A loss of 0.1 after a start of ~9 is fine; judged against a converged 1e-4 (what a fresh guard
    # would take as its reference on resume) the same loss is a runaway.
    trainer = pl.Trainer(logger=False)
    resumed._losses = [0.1] * 4
    resumed.on_train_batch_end(trainer, Regression(0.1), torch.tensor(0.1), None, 0)
    converged = DivergenceGuard(window=1)
    converged.load_state_dict({"reference": 1e-4})
    with pytest.raises(TrainingDivergedError):
        converged.on_train_batch_end(trainer, Regression(0.1), torch.tensor(0.1), None, 0)


def test_guard_ignores_modules_without_a_positive_loss():
    guard = DivergenceGuard(window=1)
    trainer = pl.Trainer(logger=False)
    for outputs in (None, {"loss": None}, torch.tensor(-2.0), torch.tensor(-1e9)):
        guard.on_train_batch_end(trainer, Regression(0.1), outputs, None, 0)
    assert guard.reference is None or math.isnan(guard.reference)


@pytest.mark.parametrize("kwargs", [{"factor": 1.0}, {"factor": float("inf")}, {"window": 0}])
def test_guard_settings_out_of_range(kwargs):
    with pytest.raises(ConfigError):
        DivergenceGuard(**kwargs)


def test_final_validation_must_be_finite():
    trainer = pl.Trainer(logger=False)
    trainer.callback_metrics.update({"val/mse": torch.tensor(0.5), "train/loss": torch.tensor(float("nan"))})
    check_final_validation(trainer)  # training metrics are not the final validation
    trainer.callback_metrics["val/mse"] = torch.tensor(float("inf"))
    with pytest.raises(TrainingDivergedError, match="val/mse"):
        check_final_validation(trainer)


class Data(pl.LightningDataModule):
    def __init__(self, sha: str) -> None:
        super().__init__()
        self.sha = sha

    def source_identity(self):
        return {"data.generator": {"source": "g.pt", "sha256": self.sha}}

    def train_dataloader(self):
        return loader()


def test_run_identity_refuses_another_model_data_or_source(tmp_path):
    model = Regression(0.05)
    saved = run_identity(model, Data("aaa"))
    check_run_identity(saved, run_identity(Regression(0.1), Data("aaa")), "c.ckpt")  # hyper-parameters may differ
    check_run_identity(None, run_identity(model, Data("bbb")), "c.ckpt")  # written before the record existed
    with pytest.raises(ConfigError, match="data.generator g.pt .*sha256 aaa"):
        check_run_identity(saved, run_identity(model, Data("bbb")), "c.ckpt")
    with pytest.raises(ConfigError, match="model"):
        check_run_identity(saved, run_identity(Regression2(0.05), Data("aaa")), "c.ckpt")

    # The callback writes the record into checkpoints and checks it on a plain Trainer's resume.
    trainer = pl.Trainer(max_steps=2, callbacks=[RunIdentity()], logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=Data("aaa"))
    ckpt = tmp_path / "r.ckpt"
    trainer.save_checkpoint(ckpt)
    assert torch.load(ckpt, weights_only=True)[KEY]["sources"]["data.generator"]["sha256"] == "aaa"
    again = pl.Trainer(max_steps=4, callbacks=[RunIdentity()], logger=False, enable_progress_bar=False,
                       enable_model_summary=False, default_root_dir=tmp_path)
    with pytest.raises(ConfigError, match="sha256"):
        again.fit(Regression(0.05), datamodule=Data("ccc"), ckpt_path=ckpt)


class Regression2(Regression):
    pass


def test_preflight_folders_and_space(tmp_path):
    (tmp_path / "file").write_text("x")
    check_writable([("a", tmp_path / "new" / "deep")])
    assert (tmp_path / "new" / "deep").is_dir() and not list((tmp_path / "new" / "deep").iterdir())  # probe removed
    with pytest.raises(ConfigError, match="b: cannot create folder .*in the way"):
        check_writable([("b", tmp_path / "file" / "sub")])

    model = type("M", (pl.LightningModule,), {})()
    model.layer = torch.nn.Linear(1000, 100)  # 100,100 float32 values: ~0.4 MB, ~1.2 MB with Adam's moments
    assert checkpoint_bytes(model) == pytest.approx(3 * 100_100 * 4 + (1 << 20))
    check_free_space(tmp_path, model, free=10 << 20)
    with pytest.raises(ConfigError, match="two checkpoints"):
        check_free_space(tmp_path, model, free=4 << 20)
