import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from latentnav.callbacks.process_group_exit import ProcessGroupExit
from latentnav.lightning_modules.linear_map import LinearMap
from latentnav.lightning_modules.supervised_directions import SupervisedDirections, planted_problem
from tests import ddp_spawn


def fit(model, z, y, epochs):
    trainer = pl.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu")
    trainer.fit(model, DataLoader(TensorDataset(z, y), batch_size=256, shuffle=True))
    return model


def test_orthogonality_term():
    m = LinearMap(4, 3)
    with torch.no_grad():
        m.weight.copy_(torch.eye(4)[:3])
    assert m.orthogonality() < 1e-5 and m.orthogonality(squared=True) < 1e-10
    with torch.no_grad():
        m.weight[1] = m.weight[0]
    assert torch.isclose(m.orthogonality(squared=True), torch.tensor(2.0))  # two off-diagonal ones
    assert torch.isclose(m.orthogonality(), torch.tensor(2.0).sqrt())


def test_recovers_a_planted_linear_relation():
    pl.seed_everything(0)
    z, y, w_true, _ = planted_problem(4096, latent_dim=16, num_attributes=5)
    model = fit(SupervisedDirections([f"a{i}" for i in range(5)], 16, ortho_weight=0.0, lr=0.05), z, y, epochs=30)
    cos = torch.nn.functional.cosine_similarity(model.directions(), w_true, dim=1)
    assert cos.min() > 0.999
    pred = model(z) * model.target_std + model.target_mean
    assert torch.nn.functional.mse_loss(pred, y) < 0.01 * y.var()


def test_large_lambda_gives_orthonormal_rows():
    pl.seed_everything(0)
    z, y, w_true, _ = planted_problem(4096, latent_dim=16, num_attributes=5)
    y = y + 3.0 * y[:, :1]  # correlated targets: the plain fit's rows are entangled
    free = fit(SupervisedDirections([f"a{i}" for i in range(5)], 16, ortho_weight=0.0, lr=0.05), z, y, epochs=20)
    ortho = fit(SupervisedDirections([f"a{i}" for i in range(5)], 16, ortho_weight=100.0, lr=0.05), z, y, epochs=20)
    gram = ortho.map.weight @ ortho.map.weight.T
    assert (gram - torch.eye(5)).abs().max() < 0.02
    off_free = (free.directions() @ free.directions().T - torch.eye(5)).abs().max()
    off_ortho = (ortho.directions() @ ortho.directions().T - torch.eye(5)).abs().max()
    assert off_free > 0.5 and off_ortho < 0.02


class FullBatch(pl.LightningDataModule):
    """The whole planted problem as one global batch, split evenly across ranks."""

    def __init__(self, processes: int) -> None:
        super().__init__()
        self.z, self.y, _, _ = planted_problem(512, latent_dim=8, num_attributes=3, seed=3, noise=0.3)
        self.batch = 512 // processes

    def train_dataloader(self):
        return DataLoader(TensorDataset(self.z, self.y), batch_size=self.batch)

    def val_dataloader(self):
        return DataLoader(TensorDataset(self.z, self.y), batch_size=self.batch)


def test_two_process_ddp_matches_one_process_with_the_same_global_batch():
    """Tolerance: 1e-4 on weights and metrics (float32 all-reduce order)."""
    def fit_with(processes, strategy):
        pl.seed_everything(0)
        model = SupervisedDirections(["a", "b", "c"], 8, ortho_weight=0.5, lr=0.05)
        trainer = pl.Trainer(max_epochs=15, accelerator="cpu", devices=processes, strategy=strategy, logger=False,
                             enable_checkpointing=False, enable_progress_bar=processes > 1,  # defaults under DDP
                             enable_model_summary=processes > 1, callbacks=[ProcessGroupExit()])
        trainer.fit(model, FullBatch(processes))
        return (model.map.weight.detach().clone(), float(trainer.callback_metrics["val/mse"]),
                float(trainer.callback_metrics["val/max_abs_cos"]))

    results = {1: fit_with(1, "auto"), 2: ddp_spawn.run(lambda: fit_with(2, "ddp_spawn"))}
    torch.testing.assert_close(results[2][0], results[1][0], atol=1e-4, rtol=1e-4)
    assert abs(results[2][1] - results[1][1]) < 1e-4 and abs(results[2][2] - results[1][2]) < 1e-4
    assert not torch.allclose(results[1][0], torch.zeros_like(results[1][0]))
