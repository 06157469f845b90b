"""Generator utilities (also ``python -m latentnav.generators ...``).

    latentnav generator info SOURCE                     what the contract sees
    latentnav generator export CKPT OUT                 DemoGAN checkpoint -> bundled format (EMA weights)
    latentnav generator convert IN OUT                  a trusted pickle -> a weights-only file
    latentnav generator quality [SOURCE] [--num 2000]   demo generator quality, judged by the demo classifier

``info`` and ``quality`` take ``--generator-options '{"class_path": "pkg.G", "init_args": {...}}'``
(load_generator's keyword arguments as JSON). ``info`` takes ``--device`` (auto: cuda when available);
``quality`` is a Trainer test loop and takes the Trainer's ``--accelerator --devices --strategy
--num-nodes --precision`` (e.g. ``--devices 4 --strategy ddp``: the samples are sliced across ranks).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Optional

import torch

from latentnav.atomic import atomic_torch_save
from latentnav.errors import ConfigError, run_command
from latentnav.measuring import add_trainer_flags


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


def generator_options(text: Optional[str]) -> dict:
    """``--generator-options``: a JSON object of load_generator keyword arguments (or nothing)."""
    if not text:
        return {}
    try:
        options = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"--generator-options: not JSON ({e.msg} at character {e.pos}): {text[:80]}") from None
    if not isinstance(options, dict):
        raise ConfigError(f"--generator-options: expected a JSON object, got {type(options).__name__}")
    return options


def quality_summary_for(source: str, num: int, annotator: str, seed: int, options: Optional[dict] = None,
                        trainer=None, batch_size: int = 500) -> dict:
    """Quality figures of ``source``'s samples (latents ``latents_at(range(num), seed)``) against ``num``
    freshly rendered demo faces, both judged by ``annotator``, as a ``trainer.test`` loop
    (``latentnav.measuring.make_trainer()`` by default: its devices, ranks and precision).
    ``options``: load_generator keyword arguments."""
    from latentnav.datamodules.demo_faces import generate
    from latentnav.datamodules.latent_indices import LatentIndicesDataModule
    from latentnav.generators.loading import load_generator_on
    from latentnav.measuring import make_trainer
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="latentnav generator")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info")
    p.add_argument("source")
    loading = [p]
    p = sub.add_parser("export")
    p.add_argument("checkpoint")
    p.add_argument("out")
    p = sub.add_parser("convert")
    p.add_argument("source")
    p.add_argument("out")
    p = sub.add_parser("quality")
    p.add_argument("source", nargs="?", default="demo")
    p.add_argument("--num", type=int, default=2000)
    p.add_argument("--annotator", default="demo")
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--json", default=None, metavar="FILE", help="also write the figures as JSON (rank 0)")
    add_trainer_flags(p)
    loading.append(p)
    for p in loading:
        p.add_argument("--generator-options", default=None, metavar="JSON",
                       help='load_generator keyword arguments, e.g. \'{"class_path": "pkg.G", "init_args": {}}\'')
    loading[0].add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:N")
    args = parser.parse_args(argv)
    return run_command(lambda: _run(args))


def _run(args: argparse.Namespace) -> None:
    if args.command == "info":
        from latentnav.generators.loading import load_generator_on, resolve_device

        G = load_generator_on(args.source, generator_options(args.generator_options), resolve_device(args.device))
        print(f"{type(G).__name__} on {G.device}: resolution {G.resolution}, spaces "
              + ", ".join(f"{s} {G.latent_shape(s)}" for s in G.latent_spaces))
        for k, v in G.identity.items():
            print(f"  {k}: {v}")
    elif args.command == "export":
        from latentnav.generators.loading import export_dcgan
        from latentnav.safe_load import sha256_of

        out = export_dcgan(args.checkpoint, args.out)
        print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB, sha256 {sha256_of(out)[:12]})")
    elif args.command == "convert":
        blob = torch.load(args.source, map_location="cpu", weights_only=False)  # the user asked: trusted
        dropped: list[str] = []
        atomic_torch_save(_plain(blob, dropped), args.out)
        print(f"wrote {args.out}" + (f"; dropped {', '.join(dropped)}" if dropped else ""))
    else:
        from latentnav.measuring import trainer_from

        t0 = time.perf_counter()
        from latentnav.lightning_modules.annotator import load_annotator
        from latentnav.lightning_modules.generator_quality import format_quality

        summary = quality_summary_for(args.source, args.num, args.annotator, args.seed,
                                      generator_options(args.generator_options), trainer_from(args), args.batch_size)
        if not summary["is_global_zero"]:
            return
        print(format_quality(summary, load_annotator(args.annotator).attributes))
        print(f"({args.num} samples, {time.perf_counter() - t0:.1f} s, {summary['processes']} process(es))")
        if args.json:
            from pathlib import Path

            from latentnav.atomic import atomic_write_text

            atomic_write_text(Path(args.json), json.dumps(summary, indent=1))


if __name__ == "__main__":
    sys.exit(main())
