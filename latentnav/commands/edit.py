"""Edit images along learned directions: a PNG strip and a GIF per attribute.

    latentnav edit runs/directions/linear_map_lambda0.npz --attributes Young Smiling \\
        --seeds 0 1 2 3 --alpha -6 6 --steps 9 --out edits/
    latentnav edit DIRECTIONS --latents my_latents.pt --attributes Male --keep Wearing_Lipstick
    latentnav edit DIRECTIONS --attributes Smiling --judge demo_judge   # frames labelled, scores.tsv

``--keep A B``: conditional edit (InterFaceGAN): the span of the kept attributes' directions is
projected out of the edit direction. The generator is the file the directions file recorded (or
``--generator``: a moved copy); its sha256 must match the recorded one, and is compared before anything
is loaded. Load options that choose code (``class_path``, ``init_args``, ``trust_pickle``, ...) are never
taken from the directions file: give them with ``--generator_options`` (one line says which when the file
records some). The output files are named after the attributes through ``latentnav.names`` (a name
cannot write outside ``--out``; an empty one is refused); a name on two rows of the file is refused. Rendering is a Trainer predict loop (``lightning_modules/edit_rendering.py``):
``--accelerator --devices --strategy --num_nodes --precision`` choose where, and with several
processes each renders its share of the latents (``callbacks/edit_writer.py`` assembles the files).

Labels: ``--annotator`` (default ``demo``) is the own judge: it steers ``--guided`` paths and, with
``--labels`` or ``--judge``, scores every frame (the probability of the edited attribute). ``--judge
NAME_OR_PATH`` adds a held-out classifier that scores the same frames, so that an edit which only
fools the annotator (a guided path follows its gradients) shows: each frame of the strip is labelled
``own .12 judge .10`` (``!`` where they differ by more than 0.25), ``<tag>_scores.tsv`` has one row per
(sample, alpha) and one column per classifier (``own:<source>``, ``judge:<source>``), and the command
prints each classifier's mean probability at the first and the last alpha. Both classifiers must have
a column for every edited attribute.

A class-conditional generator: ``--classes 239 207`` (default: the classes the directions file recorded, else
all) picks the class ids; row k of the edit (seed k of ``--seeds``, image k of ``--images``) is rendered in
class ``classes[k % n]``, as ``latentnav project`` projected image k; row k of a projection's ``--latents`` in the
class it was projected in (the classes its file records, else all), unless ``--classes`` is given. The
directions are shared across classes.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import numpy as np
import torch

from latentnav.errors import ConfigError
from latentnav.commands.grammar import Command
from latentnav.commands.measuring import make_trainer, merge_classes


def edit_direction(directions: torch.Tensor, names: list[str], attribute: str, keep: list[str],
                   where: str = "the directions file") -> torch.Tensor:
    """``attribute``'s row with the ``keep`` rows' span projected out; a name missing from ``names`` or on
    several rows of the file (``where``) is one line."""
    from latentnav.directions_file import row_of
    from latentnav.lightning_modules.interfacegan import conditional_direction

    found = {"names": names}
    row = row_of(found, attribute, where)
    kept = [row_of(found, k, where) for k in keep]
    return conditional_direction(directions, row, [k for k, name in zip(kept, keep) if name != attribute])


def latents_file_classes(G, recorded: Optional[dict], count: int, user_classes: Optional[list[int]]):
    """The (count,) classes of a latents file's rows for a class-conditional generator ``G`` (None when
    unconditional): row k in the class the projection gave image k, ``choice[k % n]`` with ``choice`` the
    classes its recorded generator options name (else all classes); ``--classes`` (``user_classes``), or a file
    that records no generator (a plain tensor), use ``G``'s choice instead."""
    if not G.conditional:
        return None
    options = (recorded or {}).get("options") or {}
    if user_classes is not None or not recorded:
        return G.classes_at(range(count))
    choice = options.get("classes") or list(range(G.num_classes))
    return G.check_classes(torch.tensor([int(choice[k % len(choice)]) for k in range(count)]), count)


def scorer_column(classifier, attribute: str, flag: str, name: str) -> int:
    """The column of ``attribute`` among the ``classifier``'s attributes; one line naming the flag and
    the classifier (``name``, as given) when it has none."""
    attributes = list(classifier.attributes)
    if attribute not in attributes:
        raise ConfigError(f"{flag}: {name} has no column for {attribute} (it has {' '.join(attributes)})")
    return attributes.index(attribute)


def _load_classifier(load, source: str, flag: str):
    """``load(source)``; a missing or malformed file is one line naming ``flag``."""
    from latentnav.errors import LatentNavError

    try:
        return load(source)
    except LatentNavError as e:
        raise ConfigError(f"{flag}: {e}") from e


def main_function(directions: str, attributes: Optional[list[str]] = None, generator: Optional[str] = None,
                  generator_options: Optional[dict] = None, keep: Optional[list[str]] = None, seeds: Optional[list[int]] = None, latents: Optional[str] = None,
                  images: Optional[list[str]] = None, crop_size: Optional[int] = None, project_steps: int = 300,
                  perceptual: Optional[str] = None, alpha: tuple[float, float] = (-6.0, 6.0), steps: int = 9,
                  scale: int = 3, guided: bool = False, annotator: str = "demo", labels: bool = False,
                  judge: Optional[str] = None, out: str = "edits", batch_size: int = 16, accelerator: str = "auto",
                  devices: int | str = 1, strategy: str = "auto", num_nodes: int = 1,
                  precision: str = "32-true", classes: Optional[list[int]] = None) -> None:
    """Edit images along directions: a PNG strip and a GIF per attribute.

    Args:
        directions: a directions.npz written by a directions run (or sefa, ganspace, compare's inputs).
        attributes: the directions to edit along (names in the file); required.
        generator: generator file (default: the one recorded in the directions file; its sha256 must match).
        generator_options: load_generator keyword arguments (class_path, init_args, trust_pickle, ...): never
            read from the directions file, which only records them; pass them here if you trust them.
        keep: attributes whose directions are projected out of the edit (conditional edit).
        seeds: latents from these sampling seeds (default 0 1 2 3); or give ``latents`` or ``images``.
        latents: a projection's latents.pt (``latentnav project``), or a .pt file holding a (B, ...) tensor
            of latents in the directions' space.
        images: your own image files or folders: projected into the directions' space first (``latentnav
            project``), the photo shown in the first column.
        crop_size: with ``images``: side of the centred square cut before resizing (CelebA: 178).
        project_steps: with ``images``: Adam steps per image.
        perceptual: with ``images``: a TorchScript feature network for the projection's perceptual loss.
        alpha: the first and the last step along each direction.
        steps: number of frames from the first to the last alpha.
        scale: pixel upscaling of the outputs.
        guided: classifier-guided: follow the direction in small steps, keeping the ``keep`` attributes
            fixed with the classifier's gradients through the generator (slower).
        annotator: the own judge: steers guided paths and, with ``labels`` or ``judge``, scores each frame
            (a bundled name or a file).
        labels: label each frame with the annotator's probability of the edited attribute and write
            ``<tag>_scores.tsv`` (implied by ``judge``).
        judge: a held-out classifier (e.g. ``demo_judge``) that also scores each frame, next to the annotator.
        out: output folder.
        batch_size: latents per generator call.
        accelerator, devices, strategy, num_nodes, precision: the Trainer's.
        classes: a class-conditional generator's class ids (the load option ``classes``; default: the
            directions file's, else all): row k is rendered in class ``classes[k % n]``.
    """
    if attributes is None:
        raise ConfigError("--attributes: required (the directions to edit along)")
    if sum(x is not None for x in (seeds, latents, images)) > 1:
        raise ConfigError("--seeds, --latents and --images: give one of them")
    args = SimpleNamespace(**{k: v for k, v in locals().items()})
    args.keep = list(keep or [])
    args.generator_options = merge_classes(generator_options, classes)
    args.seeds = list(seeds) if seeds is not None else [0, 1, 2, 3]
    _run(args)


COMMAND = Command(main_function, prog="latentnav edit", positional=True)
main = COMMAND.main


def _run(args: SimpleNamespace) -> None:
    from latentnav.directions_file import read_directions
    from latentnav.callbacks.edit_writer import EditWriter
    from latentnav.datamodules.latent_indices import LatentIndicesDataModule
    from latentnav.generators.loading import load_generator_like
    from latentnav.directions_file import read_latents, row_of
    from latentnav.lightning_modules.edit_rendering import EditRendering

    path = Path(args.directions)
    found = read_directions(path)  # a missing or malformed file is one line
    # The output names first (before any loading): an empty name, or an attribute given twice, is one line.
    tags = edit_tags(args.attributes, args.keep, args.guided)
    # The sha256 is compared before anything is built; recorded options that choose code are refused unless
    # the user repeats them. Loaded on the CPU; each predict loop moves it to the Trainer's device.
    G = load_generator_like(found["generator"], source=args.generator, options=args.generator_options,
                            map_location="cpu", what=str(path))
    space = found["latent_space"]
    size = int(np.prod(G.latent_shape(space)))  # an unknown space is one line here
    if found["directions"].shape[1] != size:
        raise ConfigError(f"{path}: directions have size {found['directions'].shape[1]}, but the generator's "
                          f"{space} latents have {size}")
    originals, noise, classes = None, None, None
    if args.latents:
        found_latents = read_latents(args.latents, G.identity, space)  # another generator / space: one line
        latents, noise = found_latents["latents"], found_latents["noise"]
        G.check_latent(latents, space)
        classes = latents_file_classes(G, found_latents["generator"], len(latents), args.classes)
    elif args.images:
        from latentnav.images import load_square_image, to_uint8
        from latentnav.commands.project import project_images

        if args.project_steps < 1:
            raise ConfigError(f"--project_steps: expected a positive integer, got {args.project_steps}")
        projected = project_images(args.images, space=space, steps=args.project_steps, perceptual=args.perceptual,
                                   crop_size=args.crop_size, batch_size=args.batch_size,
                                   out=str(Path(args.out) / "projection"), trainer=trainer_from(args, False),
                                   G=G)
        latents = projected["latents"]
        noise = read_latents(Path(args.out) / "projection" / "latents.pt", G.identity, space)["noise"]
        originals = np.stack([to_uint8(load_square_image(f, G.resolution, args.crop_size)) for f in projected["files"]])
    else:
        # Seed row k in class classes_at([k]) (None: unconditional), as EditRendering renders row k.
        latents = torch.cat([G.sample(1, seed=s, space=space, classes=G.classes_at([k]))
                             for k, s in enumerate(args.seeds)])
    alphas = np.linspace(args.alpha[0], args.alpha[1], args.steps)
    labelled = args.labels or args.judge is not None
    annotator = judge = None
    if args.guided or labelled:
        from latentnav.lightning_modules.annotator import load_annotator

        annotator = _load_classifier(load_annotator, args.annotator, "--annotator")
        judge = _load_classifier(load_annotator, args.judge, "--judge") if args.judge is not None else None
    directions = []
    for attribute, tag in zip(args.attributes, tags):
        d = edit_direction(found["directions"], found["names"], attribute, args.keep, str(path))  # checks the names
        keep: list[int] = []
        if args.guided:
            unknown = [k for k in args.keep if k not in annotator.attributes]
            if unknown:
                raise ConfigError(f"--keep: {', '.join(unknown)} not among the classifier's "
                                  f"{' '.join(annotator.attributes)}")
            d = torch.nn.functional.normalize(found["directions"][row_of(found, attribute, str(path))].float(), dim=0)
            keep = [annotator.attributes.index(k) for k in args.keep]
        scorers = []
        if labelled:  # (label, classifier, column): the own judge first, then the held-out one
            scorers.append(("own", annotator, scorer_column(annotator, attribute, "--annotator", args.annotator)))
            if judge is not None:
                scorers.append(("judge", judge, scorer_column(judge, attribute, "--judge", args.judge)))
        directions.append((tag, attribute, d, keep, scorers))
    # Guided paths follow the classifier's gradients: no inference mode for them.
    trainer = trainer_from(args, not args.guided)
    rows = LatentIndicesDataModule(num=len(latents), batch_size=args.batch_size, sliced_predict=True)
    for tag, attribute, d, keep, scorers in directions:
        writer = EditWriter(args.out, tag, alphas, args.scale,
                            scorers=[(label, f"{label}:{c.source}") for label, c, _ in scorers], originals=originals)
        trainer.callbacks.append(writer)
        try:
            trainer.predict(EditRendering(G, latents, d, alphas, space, annotator if args.guided else None, keep,
                                          scorers=scorers, noise=noise, classes=classes),
                            datamodule=rows, return_predictions=False)
        finally:
            trainer.callbacks.remove(writer)
        if trainer.is_global_zero:
            print(f"wrote {' and '.join(str(p) for p in writer.written)}")
            if scorers:
                print(score_summary(tag, attribute, alphas, [label for label, _, _ in scorers], writer.scores))


def edit_tags(attributes: list[str], keep: list[str], guided: bool) -> list[str]:
    """The file stem of each attribute's edit (``<attribute>[_keep_<kept>...][_guided]``), made safe and unique
    by ``latentnav.names``: nothing outside ``--out``, no hidden or over-long names, and an attribute given
    twice is one line."""
    from latentnav.names import safe_stem, unique_stems

    for name in [*attributes, *keep]:
        safe_stem(name, "--attributes" if name in attributes else "--keep")  # an empty name: one line
    raw = [a + (f"_keep_{'_'.join(keep)}" if keep else "") + ("_guided" if guided else "") for a in attributes]
    return unique_stems(raw, "--attributes", on_duplicate="refuse")


def trainer_from(args: SimpleNamespace, inference_mode: bool):
    return make_trainer(args.accelerator, args.devices, args.strategy, args.num_nodes, args.precision, inference_mode)


def score_summary(tag: str, attribute: str, alphas, labels: list[str], scores: np.ndarray) -> str:
    """One line: each scorer's mean probability of ``attribute`` over the samples at the first and the
    last alpha (``scores`` (S, A, B))."""
    means = scores.mean(axis=2)
    parts = [f"{label} {means[k, 0]:.3f} -> {means[k, -1]:.3f}" for k, label in enumerate(labels)]
    return (f"{tag}: mean p({attribute}) at alpha {float(alphas[0]):+g} -> {float(alphas[-1]):+g}: "
            + ", ".join(parts))


if __name__ == "__main__":
    sys.exit(main())
