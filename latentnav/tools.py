"""Small commands: ``latentnav annotate``, ``latentnav classifier export``, ``latentnav render-demo``.

Each parses its arguments with jsonargparse from the signature of what it runs, so a default is
written once (``annotate`` takes exactly ``AnnotatedLatentsDataModule``'s arguments).
"""

from __future__ import annotations

import time
from typing import Optional

from latentnav.errors import run_command


def annotate_main(argv: Optional[list[str]] = None) -> int:
    """Fill the supervised datamodule's annotation store once (its ``prepare_data``), with its own arguments."""
    from jsonargparse import ArgumentParser

    from latentnav.datamodules.annotated_latents import AnnotatedLatentsDataModule

    parser = ArgumentParser(prog="latentnav annotate", description=annotate_main.__doc__)
    parser.add_class_arguments(AnnotatedLatentsDataModule, None)

    def body() -> None:
        cfg = parser.parse_args(argv).as_dict()
        cfg.pop("config", None)
        dm = AnnotatedLatentsDataModule(**cfg)
        dm.prepare_data()
        print(f"annotated latents in {dm.cache_dir}: train/ ({dm.sizes['train']}), val/ ({dm.sizes['val']})")

    return run_command(body)


def render_demo(root: str, num: int = 20000, seed: int = 0, image_size: int = 32) -> None:
    """Render demo faces in CelebA's on-disk layout.

    Args:
        root: output folder (created).
        num: number of faces.
        seed: sampling seed.
        image_size: side in pixels (32; 64 works too).
    """
    from latentnav.datamodules.demo_faces import write_celeba_layout

    t0 = time.perf_counter()
    write_celeba_layout(root, num, seed=seed, image_size=image_size)
    print(f"wrote {num} faces ({image_size} px) to {root} in {time.perf_counter() - t0:.1f} s")


def classifier_export(checkpoint: str, out: str) -> None:
    """Write a trained classifier checkpoint (``latentnav fit`` of an AttributeClassifier) as a small annotator file.

    Args:
        checkpoint: the ``.ckpt`` file.
        out: the annotator file to write.
    """
    from pathlib import Path

    from latentnav.lightning_modules.annotator import export_annotator
    from latentnav.safe_load import sha256_of

    path = export_annotator(checkpoint, Path(out))
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB, sha256 {sha256_of(path)[:12]})")


def render_demo_main(argv: Optional[list[str]] = None) -> int:
    from jsonargparse import CLI

    return run_command(lambda: CLI(render_demo, args=argv))


def classifier_main(argv: Optional[list[str]] = None) -> int:
    from jsonargparse import CLI

    return run_command(lambda: CLI({"export": classifier_export}, args=argv))
