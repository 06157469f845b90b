import pytest
import torch

from latentnav.datamodules.latent_shifts import LatentShiftsDataModule
from latentnav.errors import ConfigError


class FakeTrainer:
    def __init__(self, rank, world):
        self.global_rank, self.world_size = rank, world


def loaders(dm, world):
    out = []
    for rank in range(world):
        dm.trainer = FakeTrainer(rank, world)
        out.append((dm.train_dataloader(), dm.val_dataloader()))
    return out


def test_batches_ranges_and_per_rank_streams():
    dm = LatentShiftsDataModule(latent_dim=5, num_directions=3, shift_range=6.0, shift_floor=0.5, batch_size=64,
                                steps_per_epoch=4, num_val=100)
    (train0, _), (train1, _) = loaders(dm, 2)
    batches0, batches1 = list(train0), list(train1)
    assert len(batches0) == 4 == len(train0)
    z, k, eps = batches0[0]
    assert z.shape == (64, 5) and k.dtype == torch.long and eps.shape == (64,)
    allk = torch.cat([b[1] for b in batches0])
    alleps = torch.cat([b[2] for b in batches0])
    assert set(allk.tolist()) == {0, 1, 2}
    assert alleps.abs().min() >= 0.5 and alleps.abs().max() <= 6.0
    assert (alleps > 0).any() and (alleps < 0).any()
    assert not torch.allclose(batches0[0][0], batches1[0][0])  # ranks draw different latents
    again = list(train0)  # the next epoch: a fresh stream, not a replay
    assert not torch.allclose(again[0][0], batches0[0][0])
    # A resumed run (new dataloader, pass counter back at 0) at epoch 3 does not replay epoch 0.
    dm.trainer = FakeTrainer(0, 2)
    dm.trainer.current_epoch = 3
    resumed = list(dm.train_dataloader())
    assert not torch.allclose(resumed[0][0], batches0[0][0])


def test_validation_set_is_the_same_for_any_world_size():
    dm = LatentShiftsDataModule(latent_dim=4, num_directions=3, batch_size=8, num_val=37)
    (_, val1), = loaders(dm, 1)
    one = torch.cat([b[0] for b in val1])
    parts = [torch.cat([b[0] for b in val]) for _, val in loaders(dm, 2)]
    assert len(one) == 37 and sum(len(p) for p in parts) == 37
    merged = torch.empty_like(one)
    merged[0::2], merged[1::2] = parts
    assert torch.equal(merged, one)
    assert len(list(val1)) == len(val1) == 5


def test_bad_settings():
    with pytest.raises(ConfigError, match=r"data.shift_floor must be in \[0, shift_range=1.0\), got 2.0"):
        LatentShiftsDataModule(shift_range=1.0, shift_floor=2.0)
