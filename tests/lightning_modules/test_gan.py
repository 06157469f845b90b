"""The demo GAN module: both networks learn, the EMA follows, R1 and NaN handling; DDP via train.py."""

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from latentnav.generators import load_generator
from latentnav.generators.loading import export_trained
from latentnav.errors import TrainingDivergedError
from latentnav.lightning_modules.gan import DemoGAN
from tests.distributed import run_train

REPO = Path(__file__).resolve().parents[2]
SMALL = dict(g_channels=(32, 16, 8, 8), d_channels=(8, 16, 16, 16))


def images(n=32, value=None):
    x = torch.rand(n, 3, 32, 32) * 2 - 1 if value is None else torch.full((n, 3, 32, 32), value)
    return DataLoader(TensorDataset(x), batch_size=8)


def fit(model, data, steps, **kwargs):
    trainer = pl.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", **kwargs)
    trainer.fit(model, data)
    return trainer


def test_both_networks_learn_and_the_ema_follows():
    pl.seed_everything(0)
    model = DemoGAN(**SMALL, ema_beta=0.5)
    g0 = [p.clone() for p in model.generator.parameters()]
    d0 = [p.clone() for p in model.discriminator.parameters()]
    e0 = [p.clone() for p in model.generator_ema.parameters()]
    trainer = fit(model, images(), steps=2)  # one iteration: a D step and a G step
    assert trainer.global_step == 2 and model.iteration == 1
    assert all(not torch.equal(a, b) for a, b in zip(g0, model.generator.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(d0, model.discriminator.parameters()))
    for ema, before, live in zip(model.generator_ema.parameters(), e0, model.generator.parameters()):
        torch.testing.assert_close(ema, 0.5 * before + 0.5 * live)  # one EMA step with beta 0.5
    assert not model.generator_ema.training and not any(p.requires_grad for p in model.generator_ema.parameters())
    assert model(torch.randn(3, 64)).shape == (3, 3, 32, 32)



class StepGains(pl.Callback):
    """Per iteration, on fixed latents and real images, with the networks before and after the step:
    - ``d``: how much the D step widened D(real) - D(G_old(z)) (D's own goal, at the G it trained against);
    - ``g``: how much the G step raised D_new(G(z)) (G's goal, against the D it trained against:
      the D step comes first within an iteration)."""

    def __init__(self, real: torch.Tensor, z: torch.Tensor) -> None:
        self.real, self.z, self.d, self.g = real, z, [], []

    @torch.no_grad()
    def _gap(self, D, G) -> float:
        return float(D(self.real).mean() - D(G(self.z)).mean())

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        import copy

        self.g_old, self.d_old = copy.deepcopy(module.generator), copy.deepcopy(module.discriminator)

    @torch.no_grad()
    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        D = module.discriminator
        self.d.append(self._gap(D, self.g_old) - self._gap(self.d_old, self.g_old))
        self.g.append(float(D(module.generator(self.z)).mean() - D(self.g_old(self.z)).mean()))


def test_each_step_moves_its_network_towards_its_goal():
    """Flipping the sign of either loss (D: softplus(D(fake)) + softplus(-D(real)); G: the non-saturating
    softplus(-D(G(z)))) makes its network move the wrong way: this test fails for each flip."""
    pl.seed_everything(0)
    model = DemoGAN(**SMALL, lr=1e-3, r1_gamma=0.0, mbstd_group=1)
    real = torch.full((64, 3, 32, 32), 0.8)  # a flat grey: far from the untrained generator's output
    gains = StepGains(real[:32], torch.randn(256, 64, generator=torch.Generator().manual_seed(1)))
    fit(model, DataLoader(TensorDataset(real), batch_size=16, shuffle=True), steps=16, callbacks=[gains])
    assert len(gains.d) == len(gains.g) == 8
    assert sum(g > 0 for g in gains.d) >= 7, gains.d  # the D step separates real from fake
    assert sum(g > 0 for g in gains.g) >= 7, gains.g  # the G step raises D on its samples
    assert gains._gap(model.discriminator, model.generator) > 0  # after training, D ranks real above fake


def test_learning_rate_decays_linearly_and_reaches_the_optimisers():
    model = DemoGAN(**SMALL, lr=1e-3, lr_decay_start=2, lr_decay_iterations=4, lr_final_ratio=0.1)
    rates = [round(DemoGAN.learning_rate(_At(model, iteration)), 6) for iteration in range(9)]
    assert rates == [1e-3, 1e-3, 1e-3, 7.75e-4, 5.5e-4, 3.25e-4, 1e-4, 1e-4, 1e-4]
    assert DemoGAN(**SMALL, lr=1e-3).learning_rate() == 1e-3  # no decay unless asked
    trainer = fit(model, images(n=64), steps=12)  # 6 iterations: the last step ran at iteration 5
    assert [g["lr"] for opt in trainer.optimizers for g in opt.param_groups] == [pytest.approx(3.25e-4)] * 2


class _At:
    """A stand-in for a DemoGAN at a given iteration (learning_rate only reads hparams and iteration)."""

    def __init__(self, model, iteration):
        self.hparams, self.iteration = model.hparams, iteration


def test_bf16_mixed_precision_steps():
    pl.seed_everything(2)
    model = DemoGAN(**SMALL, r1_every=1)
    trainer = fit(model, images(), steps=4, precision="bf16-mixed")
    assert trainer.precision == "bf16-mixed" and model.iteration == 2
    assert all(torch.isfinite(p).all() and p.dtype == torch.float32 for p in model.parameters())


def test_packed_discriminator_judges_pairs():
    from latentnav.generators.dcgan import DCGANDiscriminator

    d = DCGANDiscriminator(32, (8, 16, 16, 16), pack=2)
    x = torch.rand(6, 3, 32, 32) * 2 - 1
    assert d(x).shape == (3,)
    # the second logit depends on samples 2 and 3 only
    y = x.clone()
    y[3] = -y[3]
    changed = (d(y) - d(x)).abs() > 0
    assert changed.tolist() == [False, True, False]
    with pytest.raises(ValueError, match="batch 5 is not a multiple of pack=2"):
        d(x[:5])
    pl.seed_everything(1)
    model = DemoGAN(**SMALL, pack=2, r1_every=1)  # a full iteration with R1 on packed reals
    fit(model, images(), steps=2)
    assert model.iteration == 1 and all(torch.isfinite(p).all() for p in model.parameters())


def test_r1_changes_the_discriminator_step():
    results = []
    for gamma in (0.0, 100.0):
        pl.seed_everything(1)
        model = DemoGAN(**SMALL, r1_gamma=gamma, r1_every=1)
        fit(model, images(), steps=2)
        results.append(torch.cat([p.flatten() for p in model.discriminator.parameters()]))
    assert not torch.allclose(results[0], results[1])


def test_nan_stops_with_a_clear_error():
    model = DemoGAN(**SMALL)
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(TrainingDivergedError, match=r"GAN d_loss is not finite \(nan on rank 0\) at iteration 0"):
        fit(model, images(value=float("nan")), steps=4)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # no NaN update was applied


def test_ddp_two_processes_and_export(demo_root, tmp_path):
    args = ["fit", "--config", str(REPO / "configs/generator/demo.yaml"),
            "--data.init_args.root", str(demo_root), "--data.init_args.num_faces", "4000",
            "--trainer.strategy", "ddp_find_unused_parameters_true", "--trainer.devices", "2",
            "--trainer.max_steps", "8", "--checkpoint.every_n_train_steps", "4",
            "--trainer.callbacks.num_samples", "64", "--trainer.callbacks.num_real", "64",
            "--trainer.callbacks.every_n_steps", "4"]
    # With the Trainer's defaults (progress bar, summary), bounded in time: also the config test of
    # configs/generator/demo.yaml on 2 processes.
    stdout = run_train(args, tmp_path)
    assert stdout.count("fit finished at global step 8") == 1
    last = tmp_path / "runs/generator_demo/version_0/checkpoints/last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 8
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(last.parents[1]))
    events.Reload()
    assert "quality/confident_mean" in events.Tags()["scalars"] and "samples/fixed_z" in events.Tags()["images"]
    G = load_generator(export_trained(last, tmp_path / "exported.pt"))
    assert G.synthesize(G.sample(2, seed=0)).shape == (2, 3, 32, 32)
