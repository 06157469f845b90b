"""``latentnav generator spaces``: how disentangled a generator's latent spaces are, on one yardstick.

    latentnav generator spaces demo_stylegan2 --ppl z w --separability z w --dci w s --out runs/spaces

- ``--ppl``: perceptual path length per space (``lightning_modules/path_length.py``: StyleGAN's full-path PPL,
  the held-out judge's features as the distance), with the Poisson-bootstrap interval and, for two spaces, the
  interval of their paired difference.
- ``--separability``: StyleGAN's linear separability per space; ``--dci``: DCI disentanglement, completeness and
  informativeness per space (``lightning_modules/latent_disentanglement.py``), both on ``--num`` latents labelled
  by the judge (one ``test`` pass, ``lightning_modules/labelled_latents.py``; the fits run on rank 0).

The passes over the generator are Trainer ``test`` loops (``--accelerator --devices --strategy --precision``);
latent i is ``latents_at([i], seed)`` whatever the process layout. Writes ``spaces.json`` and ``spaces.md``
under ``--out`` (rank 0).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import torch

from latentnav.errors import ConfigError


def _check_spaces(G, spaces: list[str], allowed: tuple[str, ...], what: str) -> None:
    for space in spaces:
        if space not in allowed or space not in G.latent_spaces:
            raise ConfigError(f"--{what}: expected spaces among {', '.join(s for s in allowed if s in G.latent_spaces)} "
                              f"for {type(G).__name__}, got {space!r}")


def measure_spaces(source: str = "demo", ppl: Optional[list[str]] = None, separability: Optional[list[str]] = None,
                   dci: Optional[list[str]] = None, judge: str = "demo_judge", num: int = 10000,
                   ppl_pairs: int = 5000, epsilon: float = 1e-4, replicates: int = 200,
                   separability_replicates: int = 20, truncation: float = 1.0, seed: int = 0, batch_size: int = 250,
                   generator_options: Optional[dict] = None, trainer=None) -> dict:
    """The figures as a dict {"ppl": {space: {...}}, "ppl_difference", "separability", "dci", ...}; the fits'
    figures on rank 0 only (other ranks return after the passes)."""
    from latentnav.commands.measuring import make_trainer
    from latentnav.datamodules.latent_indices import LatentIndicesDataModule
    from latentnav.generators.loading import load_generator_on
    from latentnav.lightning_modules.annotator import load_annotator
    from latentnav.lightning_modules.bootstrap import percentile_interval
    from latentnav.lightning_modules.labelled_latents import LabelledLatents
    from latentnav.lightning_modules.latent_disentanglement import dci as dci_of, linear_separability
    from latentnav.lightning_modules.path_length import SPACES, PathLength

    ppl, separability, dci = list(ppl or []), list(separability or []), list(dci or [])
    if not (ppl or separability or dci):
        raise ConfigError("nothing to measure: give --ppl, --separability and/or --dci with their spaces")
    if num < 2 or ppl_pairs < 2:
        raise ConfigError(f"--num and --ppl_pairs: expected at least 2, got {num} and {ppl_pairs}")
    G = load_generator_on(source, generator_options or {}, torch.device("cpu"))
    _check_spaces(G, ppl, SPACES, "ppl")
    _check_spaces(G, separability, ("z", "w", "w+", "s"), "separability")
    _check_spaces(G, dci, ("z", "w", "w+", "s"), "dci")
    reader = load_annotator(judge)
    trainer = trainer or make_trainer()
    out: dict = {"generator": G.identity, "judge": judge, "seed": seed, "truncation": truncation}

    t0 = time.perf_counter()
    if ppl:
        out["ppl"], reps = {}, {}
        for space in ppl:
            module = PathLength(G, reader, space, epsilon, replicates, truncation)
            trainer.test(module, datamodule=LatentIndicesDataModule(num=ppl_pairs, seed=seed, batch_size=batch_size),
                         verbose=False)
            reps[space] = module.result.pop("replicates")
            out["ppl"][space] = module.result
        if len(ppl) == 2:
            a, b = ppl
            low, high = percentile_interval(reps[b] - reps[a])
            out["ppl_difference"] = {"spaces": f"{b} - {a}", "value": out["ppl"][b]["ppl"] - out["ppl"][a]["ppl"],
                                     "low": float(low), "high": float(high)}
    if separability or dci:
        labelled = LabelledLatents(G, reader, truncation)
        trainer.test(labelled, datamodule=LatentIndicesDataModule(num=num, seed=seed, batch_size=batch_size),
                     verbose=False)
        if trainer.is_global_zero:
            indices, probabilities = labelled.result["indices"], labelled.result["probabilities"]
            with torch.no_grad():
                z = G.latents_at(indices, seed)
                latents = {s: (z if s == "z" else torch.cat([G.to_space(c, s) for c in z.split(1000)])).flatten(1)
                           for s in dict.fromkeys(separability + dci)}
            if separability:
                out["separability"] = {}
                for space in separability:
                    found = linear_separability(latents[space], probabilities, separability_replicates, seed, indices)
                    out["separability"][space] = {"separability": found["separability"], "low": found["low"],
                                                  "high": found["high"], "entropy": found["entropy"].tolist()}
            if dci:
                out["dci"] = {}
                for space in dci:
                    found = dci_of(latents[space], probabilities, reader.attributes, seed=seed)
                    out["dci"][space] = {k: found[k] for k in ("disentanglement", "completeness", "informativeness",
                                                              "attributes", "left_out")}
    out["seconds"] = time.perf_counter() - t0
    out["is_global_zero"] = trainer.is_global_zero
    return out


def format_spaces(found: dict) -> str:
    """The figures as Markdown tables."""
    lines = [f"Generator {found['generator'].get('source')} (sha256 {str(found['generator'].get('sha256'))[:12]}), "
             f"judge {found['judge']}, seed {found['seed']}, truncation {found['truncation']}.", ""]
    if "ppl" in found:
        lines += ["| space | PPL (judge features) | 95 % interval | pairs (kept) |", "|---|---|---|---|"]
        for space, r in found["ppl"].items():
            lines.append(f"| {space} | {r['ppl']:.2f} | {r['low']:.2f}-{r['high']:.2f} | {r['pairs']} ({r['kept']}) |")
        if "ppl_difference" in found:
            d = found["ppl_difference"]
            lines.append(f"\nPaired difference {d['spaces']}: {d['value']:.2f} ({d['low']:.2f} to {d['high']:.2f}).")
        lines.append("")
    if "separability" in found:
        lines += ["| space | linear separability (lower: more separable) | 95 % interval |", "|---|---|---|"]
        for space, r in found["separability"].items():
            lines.append(f"| {space} | {r['separability']:.2f} | {r['low']:.2f}-{r['high']:.2f} |")
        lines.append("")
    if "dci" in found:
        lines += ["| space | disentanglement | completeness | informativeness | attributes |", "|---|---|---|---|---|"]
        for space, r in found["dci"].items():
            lines.append(f"| {space} | {r['disentanglement']:.3f} | {r['completeness']:.3f} | {r['informativeness']:.3f} | "
                         f"{len(r['attributes'])} ({len(r['left_out'])} left out: too rare) |")
    return "\n".join(lines)


def spaces(source: str = "demo", ppl: Optional[list[str]] = None, separability: Optional[list[str]] = None,
           dci: Optional[list[str]] = None, judge: str = "demo_judge", num: int = 10000, ppl_pairs: int = 5000,
           epsilon: float = 1e-4, replicates: int = 200, separability_replicates: int = 20, truncation: float = 1.0,
           seed: int = 0, batch_size: int = 250, out: str = "runs/spaces", generator_options: Optional[dict] = None,
           accelerator: str = "auto", devices: int | str = 1, strategy: str = "auto", num_nodes: int = 1,
           precision: str = "32-true") -> None:
    """Path length, linear separability and DCI of a generator's latent spaces, judged by one classifier.

    Args:
        source: a bundled name or a generator file (may stand first without ``--source``).
        ppl: spaces for perceptual path length (z: slerp, w: lerp).
        separability: spaces for StyleGAN's linear separability.
        dci: spaces for DCI (e.g. w s).
        judge: the classifier whose features measure PPL and whose labels the other two use.
        num: labelled latents for separability and DCI.
        ppl_pairs: pairs for PPL.
        epsilon: PPL's step along the path.
        replicates: bootstrap replicates of PPL.
        separability_replicates: bootstrap replicates of separability (each refits every SVM).
        truncation: psi of the rendered images.
        seed: the latent stream.
        batch_size: latents per batch.
        out: folder for spaces.json and spaces.md.
        generator_options: load_generator keyword arguments.
        accelerator, devices, strategy, num_nodes, precision: the Trainer's (``test`` loops, sliced across ranks).
    """
    from latentnav.atomic import atomic_write_text
    from latentnav.commands.measuring import make_trainer

    trainer = make_trainer(accelerator, devices, strategy, num_nodes, precision)
    found = measure_spaces(source, ppl, separability, dci, judge, num, ppl_pairs, epsilon, replicates,
                           separability_replicates, truncation, seed, batch_size, generator_options, trainer)
    if not found["is_global_zero"]:
        return
    table = format_spaces(found)
    print(table)
    print(f"({found['seconds']:.0f} s, {trainer.world_size} process(es)); written to {out}/spaces.json, spaces.md")
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "spaces.json", json.dumps(found, indent=1, default=str))
    atomic_write_text(folder / "spaces.md", table + "\n")
