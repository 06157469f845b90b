"""Project image files into the generator's latent space (GAN inversion by optimisation).

    latentnav project --images photos/ --generator demo --out runs/projection
    latentnav edit runs/directions/linear_map_lambda1.npz --latents runs/projection/latents.pt --attributes Smiling

Every image is centre-cropped (``--crop_size``: CelebA's reader uses 178; default the shorter side),
resized to the generator's resolution and matched by Adam on its latent
(``lightning_modules/projection.py``: pixel MSE, optionally a perceptual term from a TorchScript
feature network you supply, start at the mean latent, learning-rate ramps, early latent noise).
The pass is a Trainer ``predict`` loop: ``--accelerator --devices --strategy --precision`` choose
where; with several processes each projects its share. Writes ``latents.pt`` (with the space and
the generator's identity), ``reconstructions/`` (input | reconstruction) and ``projection.tsv``
(PSNR, SSIM per image).

Images of any common mode are converted (16-bit scaled to 8-bit, grey, transparency composited on black,
palettes, a GIF's first frame: ``latentnav.images.to_rgb``). A file that cannot be used (unreadable, a
folder's non-image file, smaller than the crop) is skipped with one line, ``latentnav: skipped PATH:
why``, and the others are projected; ``--strict`` makes the first such file a one-line error instead.

A class-conditional generator: ``--classes 239 207`` (default all) picks the class ids, and image i (of the
images projected, in name order) is projected in class ``classes[i % n]``; the classes are recorded with the
generator's load options in ``latents.pt``, and ``latentnav edit --latents`` renders row i in that same class.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

from latentnav.commands.grammar import Command
from latentnav.errors import ConfigError
from latentnav.commands.measuring import make_trainer, merge_classes


#: Measured on a 2-core AMD EPYC (``bench/stylegan2_passes.py``, ``bench/RESULTS.md``): compiling a StyleGAN2's
#: synthesis (inductor) cost 72 s once and saved 0.54 s of each 256 px projection step (it paid after 134 steps);
#: at 64 px it saved 0.07 s a step (paid after about 1,400). A CPU projection compiles by default only where the
#: measured margin is at least two-fold: a rosinality StyleGAN2 of 256 px or more, 300 or more steps per process.
COMPILE_MIN_RESOLUTION, COMPILE_MIN_STEPS = 256, 300


def compile_by_default(G, steps_per_process: int, on_cpu: bool) -> bool:
    """Whether a projection of ``steps_per_process`` Adam steps compiles ``G``'s synthesis when the user said
    nothing (``generator_options`` without ``compile``): only where measured to pay, and where inductor has a
    C++ compiler to call."""
    import os
    import shutil

    from latentnav.generators.adapters import StyleGAN2Adapter

    return (on_cpu and isinstance(G, StyleGAN2Adapter) and not G.compiled and G.resolution >= COMPILE_MIN_RESOLUTION
            and steps_per_process >= COMPILE_MIN_STEPS and shutil.which(os.environ.get("CXX", "g++")) is not None)


def default_space(G) -> str:
    """``w+`` where the generator has it (StyleGAN2: the most expressive), else ``z``."""
    return "w+" if "w+" in G.latent_spaces else "z"


def project_images(images: list[str], generator: str = "demo", space: Optional[str] = None, steps: int = 300,
                   lr: float = 0.1, perceptual: Optional[str] = None, perceptual_weight: float = 1.0,
                   crop_size: Optional[int] = None, batch_size: int = 8, out: str = "runs/projection",
                   trainer=None, G=None, encoder: Optional[str] = None, strict: bool = False,
                   generator_options: Optional[dict] = None) -> dict:
    """Project ``images`` and write the outputs under ``out``; returns {"latents" (N, ...) on every rank,
    "space", "files" (those projected), "skipped" ([(path, reason)], reported on stderr: see
    ``ImageFilesDataModule``; with ``strict`` the first is an error), "psnr", "ssim" (rank 0 only, else
    None), "generator", "seconds", "is_global_zero"}."""
    from latentnav.callbacks.projection_writer import ProjectionWriter
    from latentnav.datamodules.image_files import ImageFilesDataModule
    from latentnav.lightning_modules.projection import Projection
    from latentnav.safe_load import sha256_of

    if G is None:
        import torch

        from latentnav.generators.loading import load_generator_on

        G = load_generator_on(generator, generator_options, torch.device("cpu"))  # options checked by name
    trained = None
    if encoder:
        from latentnav.lightning_modules.encoder import load_encoder

        trained = load_encoder(encoder, generator=G)
        trained.requires_grad_(False)
    space = space or (trained.space if trained is not None else default_space(G))
    G.latent_shape(space)  # an unknown space is one line
    # The writer (made below) knows after its setup which images a resumed run has already done.
    data = ImageFilesDataModule(images, G.resolution, crop_size, batch_size, done=lambda: writer.done, strict=strict)
    feature_net = None
    if perceptual:
        from latentnav.lightning_modules.identity_embedding import load_identity_embedding

        feature_net = load_identity_embedding(perceptual, role="perceptual")
    trainer = trainer or make_trainer(inference_mode=False)
    batches = -(-len(data.files) // max(1, batch_size * trainer.world_size))
    if "compile" not in (generator_options or {}) and compile_by_default(
            G, steps * batches, trainer.strategy.root_device.type == "cpu"):
        print(f"latentnav: compiling the synthesis (torch.compile, inductor): measured to pay for {steps * batches} "
              f"steps at {G.resolution} px on a CPU; --generator_options '{{\"compile\": null}}' runs eager",
              file=sys.stderr)
        G.compile_synthesis("inductor")
    module = Projection(G, space, steps=steps, lr=lr, perceptual=feature_net, perceptual_weight=perceptual_weight,
                        encoder=trained)
    settings = dict(module.settings(), encoder=sha256_of(encoder) if encoder else None)
    writer = ProjectionWriter(out, data.files, space, G.identity, crop_size, settings)
    trainer.callbacks.append(writer)
    t0 = time.perf_counter()
    try:
        trainer.predict(module, datamodule=data, return_predictions=False)
    finally:
        trainer.callbacks.remove(writer)
    seconds = time.perf_counter() - t0
    from latentnav.directions_file import read_latents

    r = writer.result
    latents = r["latents"] if "latents" in r else read_latents(Path(out) / "latents.pt", G.identity, space)["latents"]
    return {"latents": latents, "space": space, "files": data.files, "skipped": data.skipped, "psnr": r.get("psnr"),
            "ssim": r.get("ssim"), "generator": G.identity, "seconds": seconds, "is_global_zero": trainer.is_global_zero}


def main_function(images: list[str], generator: str = "demo", space: Optional[str] = None, steps: int = 300,
                  lr: float = 0.1, perceptual: Optional[str] = None, perceptual_weight: float = 1.0,
                  crop_size: Optional[int] = None, batch_size: int = 8, out: str = "runs/projection",
                  encoder: Optional[str] = None, accelerator: str = "auto", devices: int | str = 1, strategy: str = "auto", num_nodes: int = 1,
                  precision: str = "32-true", strict: bool = False, generator_options: Optional[dict] = None,
                  classes: Optional[list[int]] = None) -> None:
    """Project image files into a generator's latent space.

    Args:
        images: image files or folders (taken in name order).
        generator: generator source (``demo``, a checkpoint or exported file).
        space: ``z``, ``w`` or ``w+`` (default: ``w+`` where the generator has it, else ``z``).
        steps: Adam steps per image (with ``encoder``: refinement steps from its output; 0 = none).
        lr: peak learning rate.
        perceptual: a TorchScript feature network (images (B, 3, H, W) in [-1, 1] -> (B, D)) for a
            perceptual loss term, e.g. your VGG/LPIPS port; nothing is downloaded.
        perceptual_weight: its weight.
        crop_size: side of the centred square cut before resizing (CelebA's reader: 178); default the
            shorter side.
        batch_size: images per optimisation batch.
        out: output folder.
        encoder: a trained encoder's checkpoint (``configs/encoder/demo.yaml``): its output is the start.
        accelerator, devices, strategy, num_nodes, precision: the Trainer's.
        strict: stop at the first file that cannot be used (one line) instead of skipping it with one line.
        generator_options: load_generator keyword arguments (class_path, init_args, trust_pickle, ...).
        classes: a class-conditional generator's class ids (the load option ``classes``; default all): image i
            is projected in class ``classes[i % n]``.
    """
    if steps < (0 if encoder else 1):
        raise ConfigError(f"steps: expected a {'non-negative' if encoder else 'positive'} integer, got {steps}")
    trainer = make_trainer(accelerator, devices, strategy, num_nodes, precision, inference_mode=False)
    found = project_images(list(images), generator, space, steps, lr, perceptual, perceptual_weight, crop_size,
                           batch_size, out, trainer, encoder=encoder, strict=strict,
                           generator_options=merge_classes(generator_options, classes))
    if not found["is_global_zero"]:
        return
    psnr, ssim = found["psnr"], found["ssim"]
    print(f"latentnav: projected {len(found['files'])} image(s) into {found['space']} in {found['seconds']:.0f} s "
          f"({found['seconds'] / len(found['files']):.2f} s an image): mean PSNR {float(psnr.mean()):.2f} dB, "
          f"SSIM {float(ssim.mean()):.3f}" + (f"; {len(found['skipped'])} file(s) skipped (listed above)"
                                              if found["skipped"] else "") + f"\n  latents: {Path(out) / 'latents.pt'}\n"
          f"  reconstructions: {Path(out) / 'reconstructions'}   scores: {Path(out) / 'projection.tsv'}")


COMMAND = Command(main_function, prog="latentnav project")
main = COMMAND.main


if __name__ == "__main__":
    sys.exit(main())
