"""The StyleGAN2 training module: both networks learn, EMA, R1, style mixing and path length apply; DDP and export."""

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from latentnav.errors import ConfigError
from latentnav.generators import load_generator
from latentnav.generators.loading import export_trained
from latentnav.lightning_modules.stylegan2_gan import StyleGAN2GAN
from tests.distributed import run_train
from tests.lightning_modules.test_gan import StepGains, fit, images

REPO = Path(__file__).resolve().parents[2]
SMALL = dict(z_dim=16, mapping_layers=2, g_channels=(16, 16, 8, 8), d_channels=(8, 8, 16, 16))


def test_both_networks_learn_and_the_ema_follows():
    pl.seed_everything(0)
    model = StyleGAN2GAN(**SMALL, ema_beta=0.5)
    g0 = [p.clone() for p in model.generator.parameters()]
    d0 = [p.clone() for p in model.discriminator.parameters()]
    e0 = [p.clone() for p in model.generator_ema.parameters()]
    trainer = fit(model, images(), steps=2)
    assert trainer.global_step == 2 and model.iteration == 1
    assert all(not torch.equal(a, b) for a, b in zip(g0, model.generator.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(d0, model.discriminator.parameters()))
    for ema, before, live in zip(model.generator_ema.parameters(), e0, model.generator.parameters()):
        torch.testing.assert_close(ema, 0.5 * before + 0.5 * live)
    assert not model.generator_ema.training and not any(p.requires_grad for p in model.generator_ema.parameters())
    assert model(torch.randn(3, 16)).shape == (3, 3, 32, 32)


def test_each_step_moves_its_network_towards_its_goal():
    """Flipping the sign of either loss makes its network move the wrong way (shared with the DCGAN's loop)."""
    pl.seed_everything(0)
    model = StyleGAN2GAN(**SMALL, lr=2e-3, r1_gamma=0.0, mixing_prob=0.0)
    real = torch.full((64, 3, 32, 32), 0.8)
    gains = StepGains(real[:32], torch.randn(64, 16, generator=torch.Generator().manual_seed(1)))
    gains._gap = lambda D, G: float(D(gains.real).mean() - D(_images(G, gains.z)).mean())
    fit(model, DataLoader(TensorDataset(real), batch_size=16, shuffle=True), steps=16,
        callbacks=[_GeneratorAsFunction(gains)])
    assert len(gains.d) == len(gains.g) == 8
    assert sum(g > 0 for g in gains.d) >= 7, gains.d
    assert sum(g > 0 for g in gains.g) >= 7, gains.g


def _images(G, z):
    w = G.mapping(z)[:, None].repeat(1, G.config.n_latent, 1)
    return G.synthesis(w, G.stored_noise())


class _GeneratorAsFunction(pl.Callback):
    """StepGains calls G(z); the StyleGAN2 generator renders through mapping + synthesis."""

    def __init__(self, gains):
        self.gains = gains

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.gains.on_train_batch_start(trainer, module, batch, batch_idx)

    @torch.no_grad()
    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        g, D, z = self.gains, module.discriminator, self.gains.z
        g.d.append(g._gap(D, g.g_old) - g._gap(g.d_old, g.g_old))
        g.g.append(float(D(_images(module.generator, z)).mean() - D(_images(g.g_old, z)).mean()))


def test_style_mixing_switches_rows_at_one_crossover():
    model = StyleGAN2GAN(**SMALL, mixing_prob=1.0)
    torch.manual_seed(3)
    styles = model.mixed_styles(64)
    layers = model.config.n_latent
    for sample in styles:
        switches = [(sample[i] != sample[i + 1]).any().item() for i in range(layers - 1)]
        assert sum(switches) == 1  # one crossover, rows before it from one w, after it from another
    crossovers = {[(s[i] != s[i + 1]).any().item() for i in range(layers - 1)].index(True) + 1 for s in styles}
    assert len(crossovers) > 2 and min(crossovers) >= 1 and max(crossovers) <= layers - 1
    plain = StyleGAN2GAN(**SMALL, mixing_prob=0.0).mixed_styles(8)
    assert all(torch.equal(s[0], s[-1]) for s in plain)
    with pytest.raises(ConfigError, match="model.mixing_prob"):
        StyleGAN2GAN(**SMALL, mixing_prob=1.5)


def _one_iteration(**settings) -> StyleGAN2GAN:
    pl.seed_everything(1)
    model = StyleGAN2GAN(**SMALL, **settings)
    fit(model, images(), steps=2)
    return model


def _flat(module) -> torch.Tensor:
    return torch.cat([p.flatten() for p in module.parameters()])


def test_r1_and_path_length_regularisers_apply():
    off, on = (_one_iteration(r1_gamma=gamma, r1_every=1) for gamma in (0.0, 100.0))
    assert not torch.allclose(_flat(off.discriminator), _flat(on.discriminator))
    off, on = (_one_iteration(pl_weight=weight, pl_every=1) for weight in (0.0, 50.0))
    assert not torch.allclose(_flat(off.generator), _flat(on.generator))
    assert off.pl_mean == 0 and on.pl_mean > 0  # the running mean of path lengths followed

    model = StyleGAN2GAN(**SMALL)
    torch.manual_seed(0)
    assert model.path_length_penalty(4) > 0  # lengths differ from a zero running mean
    with pytest.raises(ConfigError, match=r"model.g_channels: expected 4 widths \(resolutions 4 to 32\), got 2"):
        StyleGAN2GAN(**dict(SMALL, g_channels=(16, 16)))


def test_ddp_two_processes_and_export(demo_root, tmp_path):
    args = ["fit", "--config", str(REPO / "configs/generator/demo_stylegan2.yaml"),
            "--data.init_args.root", str(demo_root), "--data.init_args.num_faces", "4000",
            "--data.init_args.batch_size", "8",
            "--model.init_args.g_channels", "[16, 16, 8, 8]", "--model.init_args.d_channels", "[8, 8, 16, 16]",
            "--model.init_args.r1_every", "2", "--model.init_args.pl_weight", "2", "--model.init_args.pl_every", "2",
            "--trainer.strategy", "ddp_find_unused_parameters_true", "--trainer.devices", "2",
            "--trainer.max_steps", "8", "--trainer.log_every_n_steps", "1", "--checkpoint.every_n_train_steps", "4",
            "--trainer.callbacks.num_samples", "64", "--trainer.callbacks.num_real", "64",
            "--trainer.callbacks.every_n_steps", "4"]
    stdout = run_train(args, tmp_path)
    assert stdout.count("fit finished at global step 8") == 1
    last = tmp_path / "runs/generator_demo_stylegan2/version_0/checkpoints/last.ckpt"
    state = torch.load(last, weights_only=True)
    assert state["global_step"] == 8 and float(state["state_dict"]["pl_mean"]) > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(last.parents[1]))
    events.Reload()
    assert {"quality/confident_mean", "train/r1", "train/g_reg"} <= set(events.Tags()["scalars"])
    G = load_generator(export_trained(last, tmp_path / "exported.pt"))
    assert G.identity["format"] == "rosinality-stylegan2" and G.latent_spaces == ("z", "w", "w+", "s")
    assert G.net.config.channels == (16, 16, 8, 8) and G.net.config.n_mlp == 4
    # the exported file renders what the module's EMA generator renders
    module = StyleGAN2GAN.load_from_checkpoint(last, weights_only=True)
    z = G.sample(2, seed=0)
    torch.testing.assert_close(G.synthesize(z), module(z), atol=1e-5, rtol=0)
