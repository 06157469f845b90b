import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from latentnav.callbacks.process_group_exit import ProcessGroupExit
from latentnav.lightning_modules.interfacegan import InterFaceGANBoundaries, conditional_direction
from tests import ddp_spawn


@pytest.mark.parametrize("processes", [1, 2])
def test_normals_recover_planted_boundaries(processes):
    def body():
        pl.seed_everything(0)
        g = torch.Generator().manual_seed(0)
        normals = torch.nn.functional.normalize(torch.randn(3, 16, generator=g), dim=1)
        z = torch.randn(4096, 16, generator=g)
        logits = 8 * z @ normals.T  # confident far from the boundary, ambiguous near it
        model = InterFaceGANBoundaries(["a", "b", "c"], 16, lr=0.05)
        pl.Trainer(max_epochs=20, logger=False, enable_checkpointing=False, enable_progress_bar=processes > 1,
                   enable_model_summary=processes > 1, accelerator="cpu", devices=processes,
                   strategy="ddp_spawn" if processes > 1 else "auto", callbacks=[ProcessGroupExit()]).fit(
            model, DataLoader(TensorDataset(z, logits), batch_size=256, shuffle=True))
        return model, normals

    model, normals = ddp_spawn.run(body)
    cos = (model.directions() * normals).sum(1)
    assert cos.min() > 0.97


def test_conditional_direction_is_orthogonal_to_kept_ones():
    d = torch.nn.functional.normalize(torch.randn(4, 10, generator=torch.Generator().manual_seed(1)), dim=1)
    c = conditional_direction(d, 0, [1, 2])
    assert torch.isclose(c.norm(), torch.tensor(1.0))
    assert (d[[1, 2]] @ c).abs().max() < 1e-5
    assert (c @ d[0]) > 0  # still moves the target attribute forward
    torch.testing.assert_close(conditional_direction(d, 0, []), d[0])
