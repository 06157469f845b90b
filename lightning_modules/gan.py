"""Trains a GAN around the demo renderer: non-saturating logistic loss with lazy R1 and an EMA copy.

The recipe was measured to work on the demo faces on a CPU: a discriminator without
batch-norm, non-saturating logistic loss, R1 on reals (gamma 1, every 4 steps, scaled by
4 so its strength does not depend on the interval), Adam 2e-4 with betas (0, 0.99), and
an exponential moving average of the generator used for every sample and export.

:class:`AdversarialTraining` holds the loop both demo generators share (the losses, R1, the EMA, the learning-rate
decay, per-rank latents, the divergence stop); :class:`DemoGAN` is the DCGAN of the bundled ``demo`` generator and
``lightning_modules.stylegan2_gan.StyleGAN2GAN`` the StyleGAN2 of ``demo_stylegan2``.
"""

from __future__ import annotations

import copy
from typing import Optional

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from latentnav.generators.dcgan import DCGANDiscriminator, DCGANGenerator
from latentnav.errors import TrainingDivergedError, check_learning_rate


class AdversarialTraining(pl.LightningModule):
    """The GAN loop on (B, 3, R, R) images in [-1, 1] from any datamodule yielding ``(images, ...)``.

    A subclass sets ``self.generator`` and ``self.discriminator`` (then calls :meth:`_finish_networks`) and
    implements :meth:`fake_images` (images of the live generator for ``n`` fresh latents) and ``forward`` (the
    EMA generator's images of z); it may add a generator regulariser (:meth:`generator_regulariser`). The
    hyper-parameters it reads: ``z_dim``, ``lr``, ``beta1``, ``beta2``, ``r1_gamma``, ``r1_every``, ``ema_beta``,
    ``lr_decay_start``, ``lr_decay_iterations``, ``lr_final_ratio`` (see :class:`DemoGAN`).
    """

    generator: nn.Module
    discriminator: nn.Module

    def _finish_networks(self, z_dim: int, sample_seed: int) -> None:
        self.automatic_optimization = False
        self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False).eval()
        self.register_buffer("fixed_z", torch.randn(64, z_dim, generator=torch.Generator().manual_seed(sample_seed)))

    @property
    def iteration(self) -> int:
        """Training iterations so far; Lightning's global_step counts both optimisers' steps."""
        return self.global_step // 2

    def setup(self, stage: str) -> None:
        # seed_everything gives every rank the same seed: under DDP each rank needs its own
        # fake latents, or the discriminator sees the same fakes N times.
        self._rng = None
        if self._trainer is not None and self.trainer.world_size > 1:
            self._rng = torch.Generator(device=self.device).manual_seed(torch.initial_seed() + 7919 * self.global_rank)

    def _z(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.hparams.z_dim, device=self.device, generator=getattr(self, "_rng", None))

    def _uniform(self, *shape: int) -> torch.Tensor:
        """U[0, 1) draws from the rank's own stream (as ``_z``)."""
        return torch.rand(*shape, device=self.device, generator=getattr(self, "_rng", None))

    def fake_images(self, n: int) -> torch.Tensor:
        """(n, 3, R, R) images of the live generator for fresh latents, differentiable in its weights."""
        raise NotImplementedError

    def generator_regulariser(self, n: int) -> Optional[torch.Tensor]:
        """An extra generator loss for this iteration (already weighted), or None; logged as ``train/g_reg``."""
        return None

    def training_step(self, batch, batch_idx: int) -> None:
        real = batch[0] if isinstance(batch, (list, tuple)) else batch
        opt_g, opt_d = self.optimizers()
        n = len(real)
        lr = self.learning_rate()
        for opt in (opt_g, opt_d):
            for group in opt.param_groups:
                group["lr"] = lr

        # Discriminator: softplus(D(fake)) + softplus(-D(real)), plus lazy R1 on reals.
        self.toggle_optimizer(opt_d)
        with torch.no_grad():
            fake = self.fake_images(n)
        d_loss = F.softplus(self.discriminator(fake)).mean() + F.softplus(-self.discriminator(real)).mean()
        r1 = torch.zeros((), device=self.device)
        if self.hparams.r1_gamma > 0 and self.iteration % self.hparams.r1_every == 0:
            real_r1 = real.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.discriminator(real_r1).sum(), real_r1, create_graph=True)
            r1 = grad.float().pow(2).flatten(1).sum(1).mean()
            d_loss = d_loss + 0.5 * self.hparams.r1_gamma * self.hparams.r1_every * r1
        self._stop_if_diverged(d_loss, "d_loss")
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(d_loss)
        opt_d.step()
        self.untoggle_optimizer(opt_d)

        # Generator: non-saturating softplus(-D(G(z))), plus its regulariser when one is due.
        self.toggle_optimizer(opt_g)
        g_loss = F.softplus(-self.discriminator(self.fake_images(n))).mean()
        g_reg = self.generator_regulariser(n)
        g_total = g_loss if g_reg is None else g_loss + g_reg
        self._stop_if_diverged(g_total, "g_loss")
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(g_total)
        opt_g.step()
        self.untoggle_optimizer(opt_g)
        self._update_ema()

        self.log_dict({"train/d_loss": d_loss, "train/g_loss": g_loss}, prog_bar=True, batch_size=n)
        if self.hparams.lr_decay_start is not None:
            self.log("train/lr", lr, batch_size=n)
        if r1.item() > 0:
            self.log("train/r1", r1, batch_size=n)
        if g_reg is not None:
            self.log("train/g_reg", g_reg, batch_size=n)

    def learning_rate(self) -> float:
        """Both optimisers' learning rate at the current iteration."""
        start = self.hparams.lr_decay_start
        if start is None:
            return self.hparams.lr
        done = min(max((self.iteration - start) / max(1, self.hparams.lr_decay_iterations), 0.0), 1.0)
        return self.hparams.lr * (1.0 - done * (1.0 - self.hparams.lr_final_ratio))

    def _stop_if_diverged(self, loss: torch.Tensor, name: str) -> None:
        # Checked before the update, so the weights (and last.ckpt) stay good; decided by all
        # ranks together, since one rank stopping alone would leave the others waiting.
        if self.trainer.strategy.reduce_boolean_decision(not torch.isfinite(loss).item(), all=False):
            raise TrainingDivergedError(
                f"GAN {name} is not finite ({loss.item()} on rank {self.global_rank}) at iteration {self.iteration}; "
                "lower model.lr or raise model.r1_gamma; last.ckpt holds the last good state"
            )

    @torch.no_grad()
    def _update_ema(self) -> None:
        beta = self.hparams.ema_beta
        for ema, live in zip(self.generator_ema.parameters(), self.generator.parameters()):
            ema.lerp_(live.detach(), 1.0 - beta)

    def on_train_epoch_start(self) -> None:
        self.generator_ema.eval()  # Lightning's train() would flip it; it only ever samples

    def configure_optimizers(self):
        betas = (self.hparams.beta1, self.hparams.beta2)
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=self.hparams.lr, betas=betas)
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=self.hparams.lr, betas=betas)
        return [opt_g, opt_d]

    def sample_grid(self, z: Optional[torch.Tensor] = None) -> torch.Tensor:
        """EMA samples of ``z`` (default: the fixed latents) in [-1, 1]."""
        with torch.no_grad():
            return self(self.fixed_z if z is None else z)


class DemoGAN(AdversarialTraining):
    """GAN on (B, 3, R, R) images in [-1, 1] from any datamodule yielding ``(images, ...)``.

    Args:
        z_dim: latent size; z ~ N(0, I).
        resolution: image side (4 * 2**k).
        g_channels, d_channels: widths of the generator's and discriminator's blocks.
        mbstd_group: group size of the discriminator's minibatch standard deviation (0: off).
            Without it, the first demo generator under-produced hats (0.04 vs 0.20) and
            glasses (0.09 vs 0.22) after 8,500 iterations; with it (4), the same.
        pack: PacGAN packing: the discriminator judges this many samples at once (1: off).
            The shipped demo generator uses 4: hats 0.13 vs 0.19 real (0.04 without packing).
        lr, beta1, beta2: Adam for both networks.
        r1_gamma: weight of the R1 penalty on real images; 0 disables it.
        r1_every: apply R1 every this many steps (lazy regularisation).
        ema_beta: decay of the generator's moving average (0.999: ~700-step half-life).
        sample_seed: seed of the fixed latents behind the TensorBoard sample grid.
        lr_decay_start: iteration at which both learning rates start to fall linearly to
            ``lr * lr_final_ratio`` over ``lr_decay_iterations`` iterations (None: constant).
            Set on every step from the iteration, so it also holds on a resumed run.
    """

    def __init__(
        self,
        z_dim: int = 64,
        resolution: int = 32,
        g_channels: tuple[int, ...] = (128, 64, 32, 32),
        d_channels: tuple[int, ...] = (32, 64, 128, 256),
        mbstd_group: int = 4,
        pack: int = 1,
        lr: float = 2e-4,
        beta1: float = 0.0,
        beta2: float = 0.99,
        r1_gamma: float = 1.0,
        r1_every: int = 4,
        ema_beta: float = 0.999,
        sample_seed: int = 0,
        lr_decay_start: Optional[int] = None,
        lr_decay_iterations: int = 4000,
        lr_final_ratio: float = 0.1,
    ) -> None:
        super().__init__()
        check_learning_rate("model.lr", lr)
        self.save_hyperparameters()
        self.generator = DCGANGenerator(z_dim, resolution, tuple(g_channels))
        self.discriminator = DCGANDiscriminator(resolution, tuple(d_channels), mbstd_group, pack)
        self._finish_networks(z_dim, sample_seed)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Images from the EMA generator: z (B, z_dim) -> (B, 3, R, R) in [-1, 1]."""
        return self.generator_ema(z)

    def fake_images(self, n: int) -> torch.Tensor:
        return self.generator(self._z(n))

    def generator_config(self) -> dict:
        """What ``generators`` needs to rebuild the EMA generator from its state dict."""
        return {"z_dim": self.hparams.z_dim, "resolution": self.hparams.resolution,
                "channels": list(self.hparams.g_channels)}
