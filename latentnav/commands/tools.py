"""Small commands: ``latentnav annotate``, ``latentnav classifier export``, ``latentnav render-demo``.

Each parses its arguments through ``latentnav.commands.grammar`` from the signature of what it runs,
so a default is written once (``annotate`` takes exactly ``AnnotatedLatentsDataModule``'s arguments, and
``--classes``: a class-conditional generator's class ids, merged into ``--generator_options``).
"""

from __future__ import annotations

import inspect
import time
import typing
from typing import Optional

from latentnav.commands.grammar import Command


def annotate(classes: Optional[list[int]] = None, **data) -> None:
    """Fill the supervised datamodule's annotation store once (its ``prepare_data``), with its own arguments."""
    from latentnav.commands.measuring import merge_classes
    from latentnav.datamodules.annotated_latents import AnnotatedLatentsDataModule

    if classes is not None:
        data["generator_options"] = merge_classes(data.get("generator_options"), classes)
    dm = AnnotatedLatentsDataModule(**data)
    dm.prepare_data()
    print(f"annotated latents in {dm.cache_dir}: train/ ({dm.sizes['train']}), val/ ({dm.sizes['val']})")


def annotate_command() -> Command:
    """``annotate`` takes exactly ``AnnotatedLatentsDataModule``'s arguments: its signature, written once."""
    from latentnav.datamodules.annotated_latents import AnnotatedLatentsDataModule

    init = AnnotatedLatentsDataModule.__init__
    classes = inspect.Parameter("classes", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None,
                                annotation=Optional[list[int]])
    parameters = list(inspect.signature(init).parameters.values())[1:] + [classes]
    annotate.__signature__ = inspect.Signature(parameters)
    annotate.__annotations__ = dict({k: v for k, v in typing.get_type_hints(init).items() if k != "return"},
                                    classes=Optional[list[int]])
    annotate.__doc__ = annotate.__doc__.split("\n")[0] + "\n\n" + (inspect.getdoc(AnnotatedLatentsDataModule) or "") \
        + "\n    classes: a class-conditional generator's class ids (merged into generator_options: latent i is " \
        "in class classes[i % n])."
    return Command(annotate, prog="latentnav annotate")


def annotate_main(argv: Optional[list[str]] = None) -> int:
    return annotate_command().main(argv)


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


RENDER_DEMO = Command(render_demo, prog="latentnav render-demo", positional=True)
CLASSIFIER = Command({"export": classifier_export}, prog="latentnav classifier", positional=True)
render_demo_main, classifier_main = RENDER_DEMO.main, CLASSIFIER.main
