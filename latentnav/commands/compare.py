"""Name directions by what they do, and compare methods on one yardstick.

    latentnav compare --config configs/compare/demo.yaml
    latentnav compare --directions [a.npz, b.npz] --out runs/comparison

For every ``directions.npz`` (all made on one generator), with the attribute classifier:

1. **Naming.** Each unit direction is moved by ``naming_alpha`` both ways on ``num_samples``
   latents and named by the attribute with the largest first-order change, (plus - minus) / 2;
   it is oriented to raise that attribute (unsupervised and closed-form directions have no
   intrinsic sign).
2. **Edit effect at equal target success** (the supervised issue's :class:`EditEffect`): each
   oriented direction is stepped until its named attribute flips on half of the samples where
   it was off. At that step: purity = the named attribute's change / the total absolute change
   of all attributes, both on the samples where the named attribute was off (1 = it moves
   nothing else), and the off-target change = the mean absolute change of the other attributes
   over all samples (as in the supervised report). A direction *controls* its attribute when its purity is
   >= ``purity_threshold`` and it reaches that 50 % flip rate within the step grid.
3. **Comparison**: ``comparison.md`` (per method: attributes controlled, mean off-target change,
   compute time; per attribute: each method's best direction), ``effects_<method>.png``
   heat-maps (rows = directions, columns = attributes: the change at the 50 % flip step on the
   samples where the named attribute was off; red = up, blue = down), ``names_<method>.tsv``,
   and the same in TensorBoard under ``out/tensorboard``.

The generator is the file the directions files recorded (or ``--generator``), its sha256 compared with
the recorded one before anything is loaded; load options that choose code (``class_path``, ``init_args``,
``trust_pickle``, ...) are taken from ``--generator_options`` only, never from the files. The outputs are
published together, with one run id (``comparison_report``'s docstring).

A class-conditional generator (``--classes 239 207``; default: the classes the files recorded, else all):
latent i is measured in class ``classes[i % n]`` (directions are shared across classes), and ``comparison.md``
adds the summary per class (``## By class``: per class, each method's attributes controlled and mean off-target
change at that class's own equal target success, own judge, no intervals); ``comparison.json`` has ``by_class``.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Optional

import torch

from latentnav.commands.comparison_report import report, write
from latentnav.commands.grammar import Command
from latentnav.commands.measuring import make_trainer, merge_classes
from latentnav.errors import ConfigError, check_count
from latentnav.lightning_modules.direction_scores import equal_success_scores, name_directions, replicate_scores


def _judge_columns(source: str, attributes: list[str]):
    """The held-out judge, and its columns in the order of the annotator's ``attributes``."""
    from latentnav.lightning_modules.annotator import load_annotator

    judge = load_annotator(source)
    missing = [a for a in attributes if a not in judge.attributes]
    if missing:
        raise ConfigError(f"judge: {source} has no column for {', '.join(missing)}; a held-out judge must score "
                          "every attribute of the annotator")
    return judge, [list(judge.attributes).index(a) for a in attributes]


def compare(files: list[str], annotator: str = "demo", generator: Optional[str] = None, num_samples: int = 400,
            seed: int = 12345, naming_alpha: float = 2.0, purity_threshold: float = 0.5, batch_size: int = 100,
            trainer=None, held_out_judge: Optional[str] = None, replicates: int = 200,
            nuisance: Optional[str] = None, identity: Optional[str] = None,
            generator_options: Optional[dict] = None) -> dict:
    """The comparison's numbers (see the module docstring) for a list of directions files.

    Both passes run as ``trainer.test`` loops (``make_trainer()`` by default) over latent indices:
    on the Trainer's devices, sliced across its ranks, with torchmetrics summed across them."""
    from latentnav.callbacks.direction_report import DEFAULT_ALPHAS
    from latentnav.directions_file import read_directions
    from latentnav.datamodules.latent_indices import LatentIndicesDataModule
    from latentnav.generators import load_generator_like
    from latentnav.lightning_modules.annotator import load_annotator
    from latentnav.lightning_modules.direction_evaluation import DirectionEvaluation
    from latentnav.lightning_modules.evaluation_protocol import evaluate, side_effects

    if not files:
        raise ConfigError("directions: give at least one directions.npz")
    check_count("num_samples", num_samples, 1)
    check_count("batch_size", batch_size, 1)
    check_count("replicates", replicates)
    found = [dict(read_directions(f), file=str(f)) for f in files]
    shas = {f["generator"].get("sha256") for f in found}
    if len(shas) > 1:
        listed = ", ".join(f"{f['file']} ({str(f['generator'].get('sha256'))[:12]})" for f in found)
        raise ConfigError(f"directions: the files were made on different generators: {listed}")
    # The recorded generator (or the user's copy), sha256 checked before it is loaded; the recorded options only
    # describe: code-choosing ones must come from the user (generator_options).
    G = load_generator_like(found[0]["generator"], source=generator, options=generator_options,
                            what=found[0]["file"])
    own = load_annotator(annotator)  # the classifier that labelled the directions' training data
    attributes = list(own.attributes)
    held_out, judge_columns = (None, None) if held_out_judge is None else _judge_columns(held_out_judge, attributes)
    reader = None
    if nuisance is not None:
        from latentnav.lightning_modules.nuisance_regressor import load_nuisance_reader

        reader = load_nuisance_reader(nuisance)
    embedding = None
    if identity is not None:
        from latentnav.lightning_modules.identity_embedding import load_identity_embedding

        embedding = load_identity_embedding(identity)
    trainer = trainer or make_trainer()
    indices = LatentIndicesDataModule(num=num_samples, seed=seed, batch_size=batch_size)
    results = []
    for f in found:
        space = f["latent_space"]
        d = torch.nn.functional.normalize(f["directions"].float(), dim=1)
        size = math.prod(G.latent_shape(space))  # w+ directions are flattened (K, layers x 512)
        if d.shape[1] != size:
            raise ConfigError(f"{f['file']}: directions have size {d.shape[1]}, the generator's {space} latents "
                              f"have {size}")
        t0 = time.perf_counter()
        naming = DirectionEvaluation(G, own, d, space, mode="naming", naming_alpha=naming_alpha)
        trainer.test(naming, datamodule=indices, verbose=False)
        named = name_directions(naming.result["plus"], naming.result["minus"])
        oriented = d * named["sign"][:, None]
        targets = named["target"].tolist()
        ev = evaluate(lambda m: trainer.test(m, datamodule=indices, verbose=False), G, own, oriented, targets, space,
                      DEFAULT_ALPHAS, judge=held_out, judge_columns=judge_columns, nuisance=reader,
                      identity=embedding, replicates=replicates, seed=seed)
        scores = equal_success_scores(ev["own"], targets, named, purity_threshold)
        by_class = {int(c): equal_success_scores(r, targets, named, purity_threshold)
                    for c, r in (ev.get("by_class") or {}).items()}
        results.append({
            "file": f["file"], "method": f["method"], "names": f["names"], "space": space,
            "seconds": float(f["seconds"]) if "seconds" in f else math.nan,
            "sign": named["sign"], "target": targets, "change": named["change"], **scores,
            "judge": (equal_success_scores(ev["judge"], targets, named, purity_threshold)
                      if held_out is not None else None),
            "boot": replicate_scores(ev["own"], targets, named, purity_threshold),
            "judge_boot": (replicate_scores(ev["judge"], targets, named, purity_threshold)
                           if held_out is not None else None),
            "side": side_effects(ev), "drift_replicates": ev["drift_replicates"], "by_class": by_class or None,
            "measure_seconds": time.perf_counter() - t0,
        })
    return {"attributes": attributes, "results": results, "generator": G.identity, "num_samples": num_samples,
            "annotator": own.source, "judge": held_out.source if held_out is not None else None,
            "replicates": replicates, "nuisance_factors": list(reader.factor_names) if reader is not None else None,
            "identity": embedding.source if embedding is not None else None,
            "classes": list(G.class_choice) if G.conditional else None,
            "naming_alpha": naming_alpha, "purity_threshold": purity_threshold,
            "is_global_zero": trainer.is_global_zero, "processes": trainer.world_size}


def main_function(directions: list[str], annotator: str = "demo", judge: Optional[str] = None,
                  nuisance: Optional[str] = None, identity: Optional[str] = None,
                  generator: Optional[str] = None, generator_options: Optional[dict] = None, num_samples: int = 400, seed: int = 12345, naming_alpha: float = 2.0,
                  purity_threshold: float = 0.5, batch_size: int = 100, replicates: int = 200,
                  out: str = "runs/comparison",
                  accelerator: str = "auto", devices: int | str = 1, strategy: str = "auto", num_nodes: int = 1,
                  precision: str = "32-true", classes: Optional[list[int]] = None) -> None:
    """Name every direction by the attribute it moves most and compare the methods.

    Args:
        directions: directions.npz files, all made on one generator.
        annotator: attribute classifier that names the directions (demo, or a checkpoint / exported file):
            the one that labelled the supervised methods' data.
        judge: a held-out classifier (e.g. ``demo_judge``: another backbone, trained on other renders)
            that scores the same edited images; the report shows both judges side by side.
        nuisance: a reader of factors that are not attributes (``demo``: the demo renderer's face position,
            size, skin tone and background), whose change at the equal-success step is reported.
        identity: a face-embedding network for real generators: a TorchScript file mapping images (B, 3, H, W)
            in [-1, 1] to embeddings (B, D) (nothing is downloaded); the identity distance 1 - cos of each
            edit is reported.
        generator: generator source (default: the one recorded in the files; its sha256 must match).
        generator_options: load_generator keyword arguments (class_path, init_args, trust_pickle, ...): never
            read from the directions files, which only record them; pass them here if you trust them.
        num_samples: latents each direction is measured on.
        seed: latent sampling seed.
        naming_alpha: step (along the unit direction) at which directions are named.
        purity_threshold: minimum purity for a direction to count as controlling its attribute.
        batch_size: latents per generator call.
        replicates: Poisson-bootstrap replicates for the 95 % intervals and the significance of differences
            (0: none).
        out: output folder.
        accelerator, devices, strategy, num_nodes, precision: the measuring Trainer's (e.g. ``--devices 4
            --strategy ddp``; the latents are sliced across the processes and the metrics summed).
        classes: a class-conditional generator's class ids (the load option ``classes``; default: the files',
            else all): latent i is in class ``classes[i % n]``; the report adds figures per class.
    """
    t0 = time.perf_counter()
    trainer = make_trainer(accelerator, devices, strategy, num_nodes, precision)
    summary = compare(list(directions), annotator, generator, num_samples, seed, naming_alpha, purity_threshold,
                      batch_size, trainer, held_out_judge=judge, replicates=replicates, nuisance=nuisance,
                      identity=identity, generator_options=merge_classes(generator_options, classes))
    if not summary["is_global_zero"]:
        return  # every rank holds the synced numbers; rank 0 writes them
    path = write(summary, Path(out))
    print(f"latentnav: comparison of {len(directions)} method(s) in {time.perf_counter() - t0:.0f} s on "
          f"{summary['processes']} process(es): {path}")
    for line in report(summary).split("## Per attribute")[0].splitlines()[6:]:
        print("  " + line)


COMMAND = Command(main_function, prog="latentnav compare")
main = COMMAND.main


if __name__ == "__main__":
    sys.exit(main())
