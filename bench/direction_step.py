"""One unsupervised-directions training step: the module's vs the original code's.

    .venv/bin/python bench/direction_step.py [--preset demo|stylegan2] [--precision bf16-mixed] [--quick]

Side by side in one run, on the same pre-drawn batches ``(z, k, eps)`` (as
``LatentShiftsDataModule`` draws them, already on the device), from identical initial weights:

- **module**: :class:`UnsupervisedDirections`'s own ``training_step`` (``pair_images``: G(latent)
  without a graph, then G(latent + eps A e_k), two calls; reconstructor;
  CE + shift_weight * |eps_hat - eps|; the finite-loss check; the RCA and shift-error
  torchmetrics), then zero_grad, backward and its own ``configure_optimizers`` Adam step, in
  the order Lightning's automatic optimisation uses. ``--precision`` wraps ``training_step``
  in autocast as Lightning's ``MixedPrecision`` plugin does (``16-mixed``: with a GradScaler;
  on a CPU Lightning replaces ``16-mixed`` by ``bf16-mixed``, so that row reads "not supported").
  No Trainer: a stub supplies ``trainer.strategy.reduce_boolean_decision`` and ``self.log`` is
  a no-op, so Lightning's own loop and logging overhead are not counted.
- **original**: the step as Voynov & Babenko's ``trainer.py`` writes it, always fp32: zero
  both models' gradients, ``G(z)`` and ``G.gen_shifted(z, shift)`` as TWO generator calls (in
  ``w`` space each call maps z first), the reconstructor on the pair, the same loss, the
  accuracy read back with ``.item()``, backward, then the deformator's and the reconstructor's
  own Adam steps (same learning rates and betas). The direction matrix and reconstructor are
  copies of the module's, so both start from the same weights; a check first confirms both
  compute the same fp32 loss on one batch.

Each timed repeat runs ``--steps`` steps of one variant, the variants alternating; steps/s are
medians, the ratio is the median of the per-repeat ratios of step time module / original
(below 1: the module's step is faster).

Presets follow the shipped configs: ``demo`` = configs/unsupervised/demo.yaml (z space, K 16,
unit, small CNN width 32, batch 32); ``stylegan2`` = configs/unsupervised/stylegan2_template.yaml
(w space, K 64, orthonormal, ResNet-18, batch 16, truncation 0.7) on a random-weight StyleGAN2
written to a temporary port checkpoint and loaded by the module as a user's file would be.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from common import (add_common_args, add_stylegan2_args, autocast, median, paired_ratio, quick_stylegan2,  # noqa: E402
                    report, save_port_checkpoint, setup, side_by_side, small_stylegan2, spread, stylegan2_label)

PRESETS = {
    "demo": dict(space="z", num_directions=16, direction_type="unit", reconstructor="small_cnn",
                 reconstructor_width=32, lr_directions=1e-3, lr_reconstructor=1e-3, truncation=1.0, batch_size=32),
    "stylegan2": dict(space="w", num_directions=64, direction_type="orthonormal", reconstructor="resnet18",
                      reconstructor_width=32, lr_directions=1e-4, lr_reconstructor=1e-4, truncation=0.7, batch_size=16),
}
SHIFT_RANGE, SHIFT_FLOOR, SHIFT_WEIGHT = 6.0, 0.5, 0.25


def _no_log(*args, **kwargs) -> None:
    return None


def attach_stub_trainer(model) -> None:
    """What ``training_step`` needs of a Trainer on one process, and nothing else."""
    strategy = SimpleNamespace(reduce_boolean_decision=lambda decision, all=True: decision)
    model.trainer = SimpleNamespace(strategy=strategy, global_step=0)
    model.log = _no_log
    model.log_dict = _no_log


class ModuleStep:
    """UnsupervisedDirections.training_step + Lightning's automatic optimisation, one device."""

    def __init__(self, model, device: torch.device, precision: str) -> None:
        self.model, self.device, self.precision = model, device, precision
        self.optimizer = model.configure_optimizers()
        self.scaler = torch.amp.GradScaler(device.type) if precision == "16-mixed" else None

    def __call__(self, batch) -> float:
        with autocast(self.device, self.precision):  # MixedPrecision.forward_context around training_step
            loss = self.model.training_step(batch, 0)
        self.optimizer.zero_grad(set_to_none=True)  # Lightning zeroes in the closure, before backward
        if self.scaler is None:
            loss.backward()
            self.optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        return loss


class OriginalStep:
    """Voynov & Babenko's training step: two generator calls, fp32, two Adam optimisers."""

    def __init__(self, model) -> None:
        hp = model.hparams
        self.G, self.space, self.truncation = model.generator, model.space, hp.truncation
        self.deformator = copy.deepcopy(model.direction_matrix)
        self.predictor = copy.deepcopy(model.reconstructor)
        self.deformator_opt = torch.optim.Adam(self.deformator.parameters(), lr=hp.lr_directions, betas=tuple(hp.betas))
        self.predictor_opt = torch.optim.Adam(self.predictor.parameters(), lr=hp.lr_reconstructor,
                                              betas=tuple(hp.betas))
        self.shift_weight = hp.shift_weight

    def generate(self, z: torch.Tensor, shift=None) -> torch.Tensor:
        latent = z if self.space == "z" else self.G.to_space(z, self.space)
        if shift is not None:
            latent = latent + shift
        return self.G.synthesize(latent, self.space, self.truncation)

    def loss(self, batch):
        z, k, eps = batch
        shift = self.deformator(k, eps)
        imgs = self.generate(z)
        imgs_shifted = self.generate(z, shift)
        logits, shift_prediction = self.predictor(imgs, imgs_shifted)
        logit_loss = F.cross_entropy(logits, k)
        shift_loss = self.shift_weight * torch.mean(torch.abs(shift_prediction - eps))
        return logit_loss + shift_loss, logits

    def __call__(self, batch) -> torch.Tensor:
        self.deformator.zero_grad()
        self.predictor.zero_grad()
        loss, logits = self.loss(batch)
        # the original's running accuracy, read back every step
        correct = (logits.argmax(dim=1) == batch[1]).float().mean().item()  # noqa: F841
        loss.backward()
        self.deformator_opt.step()
        self.predictor_opt.step()
        return loss


def build_model(args: argparse.Namespace, source: str):
    from latentnav.lightning_modules.unsupervised_directions import UnsupervisedDirections

    p = PRESETS[args.preset]
    return UnsupervisedDirections(source, space=p["space"], num_directions=p["num_directions"],
                                  direction_type=p["direction_type"], reconstructor=p["reconstructor"],
                                  reconstructor_width=p["reconstructor_width"], shift_weight=SHIFT_WEIGHT,
                                  lr_directions=p["lr_directions"], lr_reconstructor=p["lr_reconstructor"],
                                  truncation=p["truncation"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser, precision=True, repeats=5, warmup=1)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="demo")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the preset's config")
    parser.add_argument("--steps", type=int, default=10, help="training steps per timed repeat (default: %(default)s)")
    add_stylegan2_args(parser)
    args = parser.parse_args()
    if args.quick:
        args.batch_size, args.steps, args.repeats = 4, 2, 2
        quick_stylegan2(args)
    preset = PRESETS[args.preset]
    batch_size = args.batch_size or preset["batch_size"]
    device = setup(args)
    with tempfile.TemporaryDirectory() as tmp:
        if args.preset == "demo":
            source, label = "demo", "demo DCGAN 32 px, z"
        else:
            source = str(save_port_checkpoint(small_stylegan2(args, seed=args.seed), Path(tmp) / "g.pt"))
            label = stylegan2_label(args) + ", w"
        model = build_model(args, source)
    label += f", K {preset['num_directions']} {preset['direction_type']}, {preset['reconstructor']}, batch {batch_size}"
    model.to(device).train()
    attach_stub_trainer(model)
    original = OriginalStep(model)

    from latentnav.datamodules.latent_shifts import draw

    g = torch.Generator().manual_seed(args.seed)
    pool = [tuple(t.to(device) for t in draw(batch_size, model.generator.z_dim, preset["num_directions"], SHIFT_RANGE,
                                             SHIFT_FLOOR, g)) for _ in range(max(args.steps, 4))]

    # Same maths: both variants give the same fp32 loss on one batch from the same weights.
    with torch.no_grad():
        ce, shift, *_ = model._step(pool[0])
        mine = float(ce + SHIFT_WEIGHT * shift)
        theirs = float(original.loss(pool[0])[0])
    check = f"fp32 loss on one batch, module {mine:.6f} vs original {theirs:.6f} (|diff| {abs(mine - theirs):.2e})"
    if abs(mine - theirs) > 1e-3 * max(1.0, abs(mine)):
        sys.exit("the two variants disagree: " + check)

    notes = [check]
    if args.precision == "16-mixed" and device.type == "cpu":
        why = "not supported: Lightning runs bf16-mixed instead of 16-mixed on a CPU"
        rows = [[label, args.precision, why, "", "", ""]]
    else:
        module = ModuleStep(model, device, args.precision)

        def run(step):
            def steps():
                for i in range(args.steps):
                    step(pool[i % len(pool)])
            return steps

        times = side_by_side({"module": run(module), "original": run(original)}, device, args.repeats, args.warmup)
        ratios = [a / b for a, b in zip(times["module"], times["original"])]
        rows = [[label, args.precision, f"{args.steps / median(times['module']):.2f}",
                 f"{args.steps / median(times['original']):.2f}",
                 f"{paired_ratio(times['module'], times['original']):.3f} ({spread(ratios)})",
                 f"{batch_size * args.steps / median(times['module']):.1f}"]]
        notes.append(f"{args.repeats} repeats of {args.steps} steps per variant, alternating; "
                     "the original always runs in fp32 (two generator calls)")
    report(f"Unsupervised directions: one training step, module vs original code, {args.device}", device, args,
           ["setting", "module precision", "module steps/s", "original steps/s (fp32)",
            "step time module ÷ original (median, min-max)", "module samples/s"], rows, notes)


if __name__ == "__main__":
    main()
