"""Generator utilities (also ``python -m latentnav.generators ...``).

    latentnav generator info SOURCE                     what the contract sees
    latentnav generator export CKPT OUT                 GAN training checkpoint -> generator file (EMA weights)
    latentnav generator convert IN OUT [--layout rosinality]
                                                        any recognised generator -> latentnav's weights-only
                                                        file (or rosinality's layout); a trusted torch pickle
                                                        -> a weights-only file
    latentnav generator quality [SOURCE] [--num 2000]   demo generator quality, judged by the demo classifier
    latentnav generator spaces [SOURCE] --ppl z w --separability z w --dci w s
                                                        how disentangled its latent spaces are (latent_spaces.py)

``info`` and ``quality`` take ``--generator_options '{"class_path": "pkg.G", "init_args": {...}}'``
(load_generator's keyword arguments as JSON or YAML). ``info`` takes ``--device`` (auto: cuda when
available); ``quality`` is a Trainer test loop and takes the Trainer's ``--accelerator --devices
--strategy --num_nodes --precision`` (e.g. ``--devices 4 --strategy ddp``: the samples are sliced
across ranks).
"""

from __future__ import annotations

import argparse
import json as _json
import sys
import time
from typing import Optional

import torch

from latentnav.atomic import atomic_torch_save
from latentnav.errors import ConfigError
from latentnav.commands.grammar import Command
from latentnav.commands.latent_spaces import spaces


def _plain(obj, dropped: list, where: str = ""):
    """Keep tensors, numbers, strings and containers; Namespaces become dicts; note the rest."""
    if isinstance(obj, (torch.Tensor, str, int, float, bool, type(None))):
        return obj
    if isinstance(obj, argparse.Namespace):
        obj = vars(obj)
    if isinstance(obj, dict):
        return {k: v for k, v in ((k, _plain(v, dropped, f"{where}/{k}")) for k, v in obj.items()) if v is not _DROP}
    if isinstance(obj, (list, tuple)):
        return type(obj)(v for v in (_plain(v, dropped, f"{where}[{i}]") for i, v in enumerate(obj)) if v is not _DROP)
    dropped.append(f"{where} ({type(obj).__name__})")
    return _DROP


_DROP = object()


def quality_summary_for(source: str, num: int, annotator: str, seed: int, options: Optional[dict] = None,
                        trainer=None, batch_size: int = 500) -> dict:
    """Quality figures of ``source``'s samples (latents ``latents_at(range(num), seed)``) against ``num``
    freshly rendered demo faces, both judged by ``annotator``, as a ``trainer.test`` loop
    (``latentnav.commands.measuring.make_trainer()`` by default: its devices, ranks and precision).
    ``options``: load_generator keyword arguments."""
    from latentnav.datamodules.demo_faces import generate
    from latentnav.datamodules.latent_indices import LatentIndicesDataModule
    from latentnav.generators.loading import load_generator_on
    from latentnav.commands.measuring import make_trainer
    from latentnav.lightning_modules.annotator import load_annotator
    from latentnav.lightning_modules.quality_evaluation import QualityEvaluation

    if num < 1:
        raise ConfigError(f"--num: expected a positive number of samples, got {num}")
    trainer = trainer or make_trainer()
    # Loaded on the CPU; the Trainer moves the module (generator and classifier) to its device.
    G = load_generator_on(source, options, torch.device("cpu"))
    judge = load_annotator(annotator)
    real_images, _ = generate(num, seed=seed + 1, image_size=G.resolution)
    module = QualityEvaluation(G, judge, torch.from_numpy(real_images))
    trainer.test(module, datamodule=LatentIndicesDataModule(num=num, seed=seed, batch_size=batch_size), verbose=False)
    return dict(module.result, is_global_zero=trainer.is_global_zero, processes=trainer.world_size)


def info(source: str, generator_options: Optional[dict] = None, device: str = "auto") -> None:
    """Print what the generator contract sees of SOURCE.

    Args:
        source: a bundled name or a generator file.
        generator_options: load_generator keyword arguments, e.g. ``{"class_path": "pkg.G", "init_args": {}}``.
        device: auto (cuda when available), cpu, cuda or cuda:N.
    """
    from latentnav.generators.loading import load_generator_on, resolve_device

    G = load_generator_on(source, generator_options or {}, resolve_device(device))
    print(f"{type(G).__name__} on {G.device}")
    for key, value in G.describe().items():
        if value is not None:
            shown = ", ".join(f"{s} {shape}" for s, shape in value.items()) if key == "spaces" else value
            print(f"  {key.replace('_', ' ')}: {shown}")
    for k, v in G.identity.items():
        if k != "w_avg":
            print(f"  {k}: {v}")


def export(checkpoint: str, out: str) -> None:
    """Write a GAN training checkpoint's EMA generator as a generator file: a DemoGAN's in the bundled format,
    a StyleGAN2GAN's as a rosinality StyleGAN2 checkpoint (``g_ema`` + ``latent_avg``).

    Args:
        checkpoint: the ``.ckpt`` of ``configs/generator/demo.yaml`` or ``configs/generator/demo_stylegan2.yaml``.
        out: the generator file to write.
    """
    from latentnav.generators.loading import export_trained
    from latentnav.safe_load import sha256_of

    path = export_trained(checkpoint, out)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB, sha256 {sha256_of(path)[:12]})")


def convert(source: str, out: str, layout: str = "plain", generator_options: Optional[dict] = None,
            drop_clamp: bool = False) -> None:
    """Write a generator as a plain weights-only file, or (StyleGAN2 family) in rosinality's layout.

    A generator latentnav recognises (an NVIDIA or TensorFlow pickle, read without running it; genforce,
    BigGAN, ProgGAN state dicts; a rosinality checkpoint) is written as ``layout``: ``plain`` (latentnav's own
    file: the family, its settings and its weights, loadable with weights_only) or ``rosinality`` (``g_ema`` +
    ``latent_avg``, for NVIDIA StyleGAN2 networks whose architecture the port has). A torch file that only
    loads by running its pickled classes is rewritten as before (that trusts it: only for files you trust).

    Args:
        source: the generator file.
        out: the file to write.
        layout: plain or rosinality.
        generator_options: load_generator keyword arguments (e.g. ``{"family_options": {...}}``).
        drop_clamp: rosinality layout: convert a network that clamps activations anyway (reports the change).
    """
    from pathlib import Path

    from latentnav.errors import DataFormatError
    from latentnav.generators import families
    from latentnav.safe_load import safe_torch_load

    if layout not in ("plain", "rosinality"):
        raise ConfigError(f"--layout: expected plain or rosinality, got {layout!r}")
    path = Path(source)
    if path.is_file() and not families.is_plain_pickle(path):
        try:
            safe_torch_load(path)
        except DataFormatError as e:
            if "needs arbitrary code" not in str(e):
                raise
            if layout != "plain":
                raise ConfigError(f"{source}: only a recognised generator converts to --layout {layout}") from None
            blob = torch.load(source, map_location="cpu", weights_only=False)  # the user asked: trusted
            dropped: list[str] = []
            atomic_torch_save(_plain(blob, dropped), out)
            print(f"wrote {out}" + (f"; dropped {', '.join(dropped)}" if dropped else ""))
            return
    from latentnav.generators.conversion import convert_generator

    print(convert_generator(source, out, layout, generator_options or {}, drop_clamp))


def quality(source: str = "demo", num: int = 2000, annotator: str = "demo", seed: int = 2024, batch_size: int = 500,
            json: Optional[str] = None, generator_options: Optional[dict] = None, accelerator: str = "auto",
            devices: int | str = 1, strategy: str = "auto", num_nodes: int = 1, precision: str = "32-true") -> None:
    """Quality of a generator's samples against freshly rendered demo faces, judged by one classifier.

    Args:
        source: a bundled name or a generator file (may stand first without ``--source``).
        num: samples (and demo faces).
        annotator: the classifier that judges both.
        seed: sampling seed.
        batch_size: samples per batch.
        json: also write the figures as JSON (rank 0).
        generator_options: load_generator keyword arguments.
        accelerator, devices, strategy, num_nodes, precision: the Trainer's (a ``test`` loop: samples
            sliced across ranks).
    """
    from latentnav.commands.measuring import make_trainer
    from latentnav.lightning_modules.annotator import load_annotator
    from latentnav.lightning_modules.generator_quality import format_quality

    t0 = time.perf_counter()
    trainer = make_trainer(accelerator, devices, strategy, num_nodes, precision)
    summary = quality_summary_for(source, num, annotator, seed, generator_options or {}, trainer, batch_size)
    if not summary["is_global_zero"]:
        return
    print(format_quality(summary, load_annotator(annotator).attributes))
    print(f"({num} samples, {time.perf_counter() - t0:.1f} s, {summary['processes']} process(es))")
    if json:
        from pathlib import Path

        from latentnav.atomic import atomic_write_text

        atomic_write_text(Path(json), _json.dumps(summary, indent=1))


COMMAND = Command({"info": info, "export": export, "convert": convert, "quality": quality, "spaces": spaces},
                  prog="latentnav generator", positional=True, optional_positional={"quality": "source",
                                                                                    "spaces": "source"})
main = COMMAND.main


if __name__ == "__main__":
    sys.exit(main())
