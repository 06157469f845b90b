"""At the end of a directions run: measure the edits, write directions.npz, report.md and grids."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Optional

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger

from latentnav.atomic import atomic_write, atomic_write_text
from latentnav.callbacks.divergence_guard import check_final_validation
from latentnav.directions_file import read_directions, write_directions  # noqa: F401 (their home before)
from latentnav.errors import ConfigError, check_count
from latentnav.images import heatmap
from latentnav.lightning_modules.bootstrap import interval_of
from latentnav.lightning_modules.edit_metrics import EditEffect, cosine_matrix, off_target_change

GUIDED = "this run, classifier-guided"  # the label of the guided edits' results
DEFAULT_ALPHAS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 16.0)


def conditional_directions(directions: torch.Tensor) -> torch.Tensor:
    """Row i projected onto the orthogonal complement of the other rows (unit rows, (K, d))."""
    from latentnav.lightning_modules.interfacegan import conditional_direction

    k = len(directions)
    return torch.stack([conditional_direction(directions, i, [j for j in range(k) if j != i]) for i in range(k)])


def _fmt(x: float) -> str:
    return "n/a" if x != x else f"{x:+.2f}"


def _num(x: float) -> str:
    return "n/a" if x != x else f"{x:.3f}"


def _difference(value: float, reps: Optional[torch.Tensor], mine: Optional[torch.Tensor]) -> str:
    low, high = interval_of(None if reps is None or mine is None else reps - mine)
    if low != low:
        return f"{value:+.3f}"
    return f"{value:+.3f} [{low:+.3f}, {high:+.3f}]" + (" significant" if low > 0 or high < 0 else "")


def _off_target_rows(result: dict) -> torch.Tensor:
    """Per direction: mean |change| of the other attributes at its 50 % flip step (K,), NaN if it cannot flip."""
    return off_target_change(result["effect"], result["targets"])


def common_flipped(results: dict) -> list[str]:
    """Attribute names whose direction flips (within the grid) in every run."""
    runs = list(results.values())
    return [n for n in runs[0]["names"]
            if all(n in r["names"] and not bool(r["cannot_flip"].reshape(-1)[r["names"].index(n)]) for r in runs)]


def common_mean(result: dict, common: list[str]) -> tuple[float, Optional[torch.Tensor]]:
    """(mean over ``common`` of the per-direction off-target change, its replicates (R,) or None)."""
    if not common:
        return math.nan, None
    idx = [result["names"].index(n) for n in common]
    value = float(_off_target_rows(result)[idx].mean())
    reps = result.get("replicates")
    if not reps:
        return value, None
    return value, torch.stack([_off_target_rows(dict(r, targets=result["targets"]))[idx].mean() for r in reps])


class DirectionReport(pl.Callback):
    """Evaluates ``pl_module.directions()`` (K, d) for ``pl_module.attributes`` at the end of fit.

    Writes in the log folder: ``directions.npz``, ``report.md`` (the cosines of ``reference``
    attribute's direction with all others, and the effect of one edit along it, at equal
    target success), ``cosines.png``, ``edit_grid.png``; the same go to TensorBoard.
    ``compare_with``: another run's ``directions.npz`` (e.g. the λ = 0 run) shown side by side.
    ``export_to``: also copy ``directions.npz`` to this stable path.
    ``generator``, ``annotator``, ``space``: None (the default) = the datamodule's, so a config names
    them once (under ``data``); given, they must agree with the datamodule's.
    ``judge``: a held-out classifier (e.g. ``demo_judge``) that re-scores every edit at its own equal
    target success; the summary then has a column per judge. ``replicates``: Poisson-bootstrap
    replicates for the summary's 95 % intervals and the paired significance of "this run" against
    the others (0: none). The summary averages over the attributes that every run flips (named).
    What else each edit changes (``latentnav.lightning_modules.evaluation_protocol``, the comparison's
    protocol): AD, pixel change and judge-feature distance always, realism drift for a judge feature at
    most 512 wide; ``nuisance``: a reader
    of factors that are not attributes (``demo``), their change in their units; ``identity``: a
    TorchScript face-embedding network (images -> (B, D)), the identity distance 1 - cos.
    A class-conditional generator (the datamodule's ``generator_options: {classes: [...]}``): latent i is
    rendered in class ``classes_at([i])``, and the report adds the summary per class (``## By class``: each
    class's mean off-target change at its own equal target success, the own judge, no intervals).
    """

    def __init__(self, generator: Optional[str] = None, annotator: Optional[str] = None, space: Optional[str] = None,
                 reference: str = "Young",
                 num_samples: int = 400, seed: int = 12345, compare_with: Optional[str] = None,
                 export_to: Optional[str] = None, method: str = "linear_map", conditional: bool = True,
                 guided_samples: int = 0, judge: Optional[str] = None, replicates: int = 200,
                 nuisance: Optional[str] = None, identity: Optional[str] = None) -> None:
        check_count("DirectionReport.num_samples", num_samples, 1)
        check_count("DirectionReport.replicates", replicates)
        check_count("DirectionReport.guided_samples", guided_samples)
        self.generator_source, self.annotator_source = generator, annotator
        self.space, self.reference = space, reference
        self.num_samples, self.seed = num_samples, seed
        self.compare_with, self.export_to, self.method = compare_with, export_to, method
        self.conditional = conditional
        self.guided_samples = guided_samples
        self.judge_source, self.replicates = judge, replicates
        self.nuisance_source, self.identity_source = nuisance, identity
        self.results: dict = {}
        self.judge_results: dict = {}
        self.side: dict = {}  # per run label: evaluation_protocol.side_effects(...)
        self.by_class: dict = {}  # per run label, a conditional generator's: {class id: EditEffect result}
        self.last_by_class: dict = {}
        self.factors: Optional[list[str]] = None
        self._t0: Optional[float] = None
        self._seconds_before = 0.0  # training time of the runs this one resumed
        self._sources_checked = False

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._t0 = time.perf_counter()

    def training_seconds(self) -> Optional[float]:
        """Wall time spent training, over every resume (what ``directions.npz`` records)."""
        return None if self._t0 is None else self._seconds_before + time.perf_counter() - self._t0

    def state_dict(self) -> dict:
        return {"training_seconds": self.training_seconds() or self._seconds_before}

    def load_state_dict(self, state_dict: dict) -> None:
        self._seconds_before = float(state_dict.get("training_seconds", 0.0))

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # Fail before training, not after it: the run to compare with, and agreement with the data.
        if self.compare_with and not Path(self.compare_with).is_file():
            raise ConfigError(f"compare_with: {self.compare_with} not found (run the lambda = 0 config first)")
        self.take_from_data(trainer.datamodule)

    def take_from_data(self, dm) -> None:
        """Fill generator / annotator / space left out from the datamodule, or check that given ones agree.
        The CLI calls it before fitting starts, so a mismatch is found before any annotation."""
        for field, attribute in (("generator", "generator_source"), ("annotator", "annotator_source"),
                                 ("space", "space")):
            mine, theirs = getattr(self, attribute), getattr(dm, field, None)
            if mine is None:
                if theirs is None:
                    raise ConfigError(f"DirectionReport.{field}: not given, and data has no {field} to take it from")
                setattr(self, attribute, theirs)
            elif theirs is not None and str(theirs) != str(mine):
                raise ConfigError(f"DirectionReport.{field} is {mine!r} but data.{field} is {theirs!r}; "
                                  "leave it out to use the data's")
        if not self._sources_checked:  # the CLI's call before fit, then setup's: load a user's networks once
            self.check_sources()

    def check_sources(self) -> None:
        """The judge, nuisance reader and identity network load, and the judge scores every attribute of the
        annotator: found before training (and before any annotation), not after it."""
        from latentnav.lightning_modules.annotator import load_annotator

        if self.judge_source:
            self.judge_columns(load_annotator(self.annotator_source), load_annotator(self.judge_source))
        if self.nuisance_source:
            from latentnav.lightning_modules.nuisance_regressor import load_nuisance_reader

            load_nuisance_reader(self.nuisance_source)
        if self.identity_source:
            from latentnav.lightning_modules.identity_embedding import load_identity_embedding

            load_identity_embedding(self.identity_source)
        self._sources_checked = True

    @staticmethod
    def judge_columns(annotator, judge) -> list[int]:
        """The judge's column of each of the annotator's attributes (a missing one is one line)."""
        missing = [a for a in annotator.attributes if a not in judge.attributes]
        if missing:
            raise ConfigError(f"DirectionReport.judge: {judge.source} has no column for {', '.join(missing)}; "
                              "a held-out judge must score every attribute of the annotator")
        return [list(judge.attributes).index(a) for a in annotator.attributes]

    def _evaluate(self, trainer, G, annotator, directions, names, judge=None, judge_columns=None, nuisance=None,
                  identity=None) -> tuple[dict, Optional[dict], dict]:
        """(own result, held-out judge's result or None, side effects) of unit ``directions`` by the protocol;
        a conditional generator's per-class own results land in ``self.last_by_class``."""
        from latentnav.lightning_modules.evaluation_protocol import evaluate, run_in_this_process, side_effects

        missing = [n for n in names if n not in annotator.attributes]
        if missing:
            raise ConfigError(f"DirectionReport: classifier {annotator.source} has no column for {', '.join(missing)}")
        targets = [annotator.attributes.index(n) for n in names]
        run = run_in_this_process(self.num_samples, self.seed, rank=trainer.global_rank,
                                  world_size=trainer.world_size, device=G.device)
        unit = torch.nn.functional.normalize(directions.float(), dim=1)
        ev = evaluate(run, G, annotator, unit, targets, self.space, DEFAULT_ALPHAS, judge=judge,
                      judge_columns=judge_columns, nuisance=nuisance, identity=identity,
                      replicates=self.replicates, seed=self.seed)
        own = dict(ev["own"], targets=targets)
        self.last_by_class = {c: dict(r, targets=targets) for c, r in (ev.get("by_class") or {}).items()}
        return own, None if judge is None else dict(ev["judge"], targets=targets), side_effects(ev)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from latentnav.generators import load_generator
        from latentnav.lightning_modules.annotator import load_annotator

        log_dir = Path(trainer.log_dir or ".")
        seconds = self.training_seconds()  # training, not this report
        device = trainer.strategy.root_device  # the metric's all-gather runs on the process's device
        # The datamodule's load options (class_path, init_args, ...) apply to the same generator source.
        options = dict(getattr(trainer.datamodule, "generator_options", None) or {})
        G = load_generator(self.generator_source, map_location=device, **options).to(device)
        judge = load_annotator(self.annotator_source, map_location=device).to(device)
        names = list(pl_module.attributes)
        runs = {"this run": (pl_module.directions().cpu(), names)}
        if self.compare_with:
            other = read_directions(self.compare_with)
            runs[f"{other['method']}"] = (other["directions"], other["names"])
        if self.conditional:
            # Beyond the paper: each direction with all other attributes' directions projected
            # out (InterFaceGAN's conditional edit, conditioned on everything else).
            for label, (d, n) in list(runs.items()):
                runs[f"{label}, conditional on all others"] = (conditional_directions(d), n)
        # The fit's result first: an evaluation that fails later does not lose it.
        method = getattr(pl_module, "method_name", self.method)
        if trainer.is_global_zero:
            write_directions(log_dir / "directions.npz", runs["this run"][0], names, method, self.space, G.identity,
                             seconds=seconds)
        if self.export_to:
            # A stable export only from a sane run (the old one stays). Checked on every rank alike (the
            # validation metrics are synced), so that no rank goes on alone to the evaluation's collectives.
            check_final_validation(trainer)
            if trainer.is_global_zero:
                write_directions(Path(self.export_to), runs["this run"][0], names, method, self.space, G.identity,
                                 seconds=seconds)
        held_out, columns = None, None
        if self.judge_source:
            held_out = load_annotator(self.judge_source, map_location=device).to(device)
            self.judge_name = held_out.source
            columns = self.judge_columns(judge, held_out)
        nuisance = identity = None
        if self.nuisance_source:
            from latentnav.lightning_modules.nuisance_regressor import load_nuisance_reader

            nuisance = load_nuisance_reader(self.nuisance_source, map_location=device).to(device)
            self.factors = list(nuisance.factor_names)
        if self.identity_source:
            from latentnav.lightning_modules.identity_embedding import load_identity_embedding

            identity = load_identity_embedding(self.identity_source, map_location=device).to(device)
        for label, (d, n) in runs.items():
            own, judged, side = self._evaluate(trainer, G, judge, d, n, held_out, columns, nuisance, identity)
            self.results[label] = dict(own, directions=d, names=n)
            if judged is not None:
                self.judge_results[label] = dict(judged, directions=d, names=n)
            self.side[label] = side
            if self.last_by_class:
                self.by_class[label] = {c: dict(r, directions=d, names=n) for c, r in self.last_by_class.items()}
        if self.guided_samples:
            # Beyond the paper, slower: follow this run's directions in small steps, keeping all
            # other attributes fixed to first order with the classifier's gradients; the held-out
            # judge re-scores the same guided images (it never steered them).
            from latentnav.lightning_modules.edit_metrics import measure_guided_edits

            d, n = runs["this run"]
            targets = [judge.attributes.index(x) for x in n]
            metric = EditEffect(DEFAULT_ALPHAS, targets, len(judge.attributes), self.replicates, self.seed).to(G.device)
            judge_metric = None if held_out is None else EditEffect(
                DEFAULT_ALPHAS, targets, len(judge.attributes), self.replicates, self.seed).to(G.device)
            guided = measure_guided_edits(G, judge, d, targets, DEFAULT_ALPHAS, self.guided_samples, self.seed,
                                          self.space, metric=metric, rank=trainer.global_rank,
                                          world_size=trainer.world_size, judge=held_out, judge_columns=columns,
                                          judge_metric=judge_metric)
            self.results[GUIDED] = dict(guided, directions=d, names=n, targets=targets)
            if judge_metric is not None:
                self.judge_results[GUIDED] = dict(judge_metric.compute(), directions=d, names=n,
                                                                         targets=targets)
        if not trainer.is_global_zero:
            return
        path = log_dir / "directions.npz"
        report = self.report(judge.attributes)
        atomic_write_text(log_dir / "report.md", report)
        from PIL import Image

        cos = heatmap(cosine_matrix(runs["this run"][0]))
        atomic_write(log_dir / "cosines.png", lambda f: Image.fromarray(cos).save(f, format="PNG"))
        grid = self.edit_grid(G, runs["this run"][0], names)
        atomic_write(log_dir / "edit_grid.png", lambda f: Image.fromarray(grid).save(f, format="PNG"))
        if isinstance(trainer.logger, TensorBoardLogger):
            ex = trainer.logger.experiment
            ex.add_text("report", report, trainer.global_step)
            ex.add_image("directions/cosines", cos, trainer.global_step, dataformats="HWC")
            ex.add_image("directions/edit_grid", grid, trainer.global_step, dataformats="HWC")
        print(f"\nlatentnav: directions written to {path}\n  report: {log_dir / 'report.md'}\n"
              f"  edit grid: {log_dir / 'edit_grid.png'}   cosine heat-map: {log_dir / 'cosines.png'}")
        common = common_flipped({label: r for label, r in self.results.items() if label != GUIDED})
        for label, r in self.results.items():
            if label == GUIDED:
                continue  # compared with this run alone, in the report
            value, reps = common_mean(r, common)
            low, high = interval_of(reps)
            print(f"  {label}: mean off-target |dp| {value:.3f}" + ("" if low != low else f" [{low:.3f}, {high:.3f}]")
                  + f" over the {len(common)} attributes every run flips, at equal target success")

    def report(self, all_names: list[str]) -> str:
        labels = list(self.results)
        lines = [f"# Directions report ({self.space} space, {self.num_samples} samples)", ""]
        lines += [f"## Cosine of the {self.reference} direction with the others", "",
                  "| attribute | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
        for name in self.results[labels[0]]["names"]:
            if name == self.reference:
                continue
            cells = []
            for label in labels:
                r = self.results[label]
                if self.reference in r["names"] and name in r["names"]:
                    cos = cosine_matrix(r["directions"])
                    cells.append(_fmt(float(cos[r["names"].index(self.reference), r["names"].index(name)])))
                else:
                    cells.append("n/a")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines += ["", f"## One edit along {self.reference}, at the step where it flips on half of the samples", "",
                  "Mean change of each attribute's probability.", "",
                  "| attribute | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
        for j, name in enumerate(all_names):
            cells = []
            for label in labels:
                r = self.results[label]
                i = r["names"].index(self.reference) if self.reference in r["names"] else None
                cells.append("n/a" if i is None else _fmt(float(r["effect"][i, j])))
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines += ["", "## Summary at equal target success", ""]
        judges = [("own judge", self.results)] + ([("held-out judge", self.judge_results)] if self.judge_results else [])
        if not self.judge_results:
            lines += ["No held-out judge (`judge:`): these figures are the annotator's, which labelled the data the "
                      "directions were fitted to.", ""]
        for title, results in judges:
            # The guided edits flip fewer attributes: they get their own like-with-like table against this run
            # instead of shrinking every run's common set to theirs.
            linear = {label: r for label, r in results.items() if label != GUIDED}
            sets = [(linear, "every run flips")]
            if GUIDED in results and "this run" in results:
                sets.append(({"this run": results["this run"], GUIDED: results[GUIDED]},
                             "both this run and its classifier-guided version flip"))
            judge_name = getattr(self, 'judge_name', '') if results is self.judge_results else self.annotator_source
            for runs, which in sets:
                common = common_flipped(runs)
                lines += [f"By the {title} ({judge_name}): mean absolute change of the other attributes' probabilities "
                          f"at each direction's 50 % flip step, averaged over the attributes {which} "
                          f"({', '.join(common) or 'none'}), with a 95 % bootstrap interval; the difference to 'this "
                          "run' is paired (same latents and weights).", "",
                          "| run | mean off-target abs dp (common set) | difference to this run | max off-target abs dp "
                          "| cannot flip |", "|---|---|---|---|---|"]
                mine = common_mean(runs["this run"], common) if "this run" in runs else None
                for label, r in runs.items():
                    value, reps = common_mean(r, common)
                    low, high = interval_of(reps)
                    diff = "" if label == "this run" or mine is None else _difference(value - mine[0], reps, mine[1])
                    cannot = [n for n, c in zip(r["names"], r["cannot_flip"].tolist()) if c] or ["none"]
                    lines.append(f"| {label} | {_num(value)}{'' if low != low else f' [{low:.3f}, {high:.3f}]'} | "
                                 f"{diff} | {float(r['off_target_abs_max']):.3f} | {', '.join(cannot)} |")
                lines.append("")
        lines += self.by_class_lines()
        if self.side:
            from latentnav.lightning_modules.evaluation_protocol import (side_effect_cells, side_effect_header,
                                                                         side_effects_explained)

            header = ["direction"] + side_effect_header(self.factors, bool(self.identity_source))
            lines += ["## What else each edit changes", "",
                      side_effects_explained(bool(self.judge_results), self.factors, self.identity_source)
                      + " A direction that cannot flip its attribute has no equal-success step: n/a.", ""]
            for label, side in self.side.items():
                lines += [f"### {label}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                for i, name in enumerate(self.results[label]["names"]):
                    lines.append(f"| {name} | " + " | ".join(side_effect_cells(side, i, self.factors)) + " |")
                lines.append("")
        for label in labels:
            r = self.results[label]
            lines += ["", f"## Per direction ({label})", "",
                      "Step alpha at which the attribute flips on half of the samples where it was off, the flip "
                      "rate reached at 2x and 3x that step, and the largest change of any other attribute.", "",
                      "| direction | step | flip at 2x | flip at 3x | largest off-target dp |", "|---|---|---|---|---|"]
            for i, name in enumerate(r["names"]):
                if bool(r["cannot_flip"][i]):
                    lines.append(f"| {name} | cannot flip on the grid | | | |")
                    continue
                off = r["effect"][i].clone()
                off[all_names.index(name)] = 0
                worst = int(off.abs().argmax())
                lines.append(f"| {name} | {float(r['step'][i]):.2f} | {float(r['flip_at_2x'][i]):.2f} | "
                             f"{float(r['flip_at_3x'][i]):.2f} | {all_names[worst]} {_fmt(float(off[worst]))} |")
        return "\n".join(lines) + "\n"

    def by_class_lines(self) -> list[str]:
        """``## By class`` (a class-conditional generator): per class, each run's mean off-target change over the
        attributes every run flips in that class, at that class's own 50 % flip step (own judge)."""
        if not self.by_class:
            return []
        lines = ["## By class", "",
                 "A class-conditional generator: the latents of each class alone (latent i is in class "
                 "classes[i % n]), each direction at that class's own equal target success, by the own judge "
                 "(no bootstrap intervals). Directions are shared across classes.", "",
                 "| class | run | mean off-target abs dp (common set of the class) | attributes in the set | cannot flip |",
                 "|---|---|---|---|---|"]
        classes = sorted({c for per in self.by_class.values() for c in per})
        for c in classes:
            runs = {label: per[c] for label, per in self.by_class.items() if c in per}
            common = common_flipped(runs)
            for label, r in runs.items():
                cannot = [n for n, x in zip(r["names"], r["cannot_flip"].reshape(-1).tolist()) if x] or ["none"]
                lines.append(f"| {c} | {label} | {_num(common_mean(r, common)[0])} | {len(common)} | "
                             f"{', '.join(cannot)} |")
        return lines + [""]

    @torch.no_grad()
    def edit_grid(self, G, directions: torch.Tensor, names: list[str], alphas=(-6, -3, 0, 3, 6), scale: int = 2) -> np.ndarray:
        """Rows = attributes, columns = alpha, one fixed sample (a conditional generator's: in its first chosen
        class, ``classes_at([0])``)."""
        from latentnav.lightning_modules.edit_rendering import edit_grid

        classes = G.classes_at([0])
        z = G.sample(1, seed=self.seed, space=self.space, classes=classes)
        return edit_grid(G, directions, self.space, z, alphas, names, scale, classes=classes)
