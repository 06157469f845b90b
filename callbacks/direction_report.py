"""At the end of a directions run: measure the edits, write directions.npz, report.md and grids."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger

from latentnav.errors import ConfigError, DataFormatError
from lightning_modules.edit_metrics import EditEffect, cosine_matrix, measure_edits

DEFAULT_ALPHAS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 16.0)


def write_directions(path: Path, directions: torch.Tensor, names: list[str], method: str, space: str, identity: dict,
                     seconds: Optional[float] = None, **extra: np.ndarray) -> Path:
    """``directions.npz``: directions (K, d) float32, names, method, latent_space, generator identity (JSON),
    optionally ``seconds`` (the method's compute time) and extra arrays (e.g. ``eigenvalues`` (K,))."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if seconds is not None:
        extra["seconds"] = np.array(float(seconds))
    np.savez(path, directions=directions.detach().cpu().float().numpy(), names=np.array(names), method=np.array(method),
             latent_space=np.array(space), generator=np.array(json.dumps(identity, sort_keys=True)),
             **{k: np.asarray(v) for k, v in extra.items()})
    return path


def read_directions(path: str | Path) -> dict:
    """Load a ``directions.npz``; a missing or malformed file is one clear error."""
    if not Path(path).is_file():
        raise DataFormatError(f"{path}: directions file not found")
    try:
        with np.load(path, allow_pickle=False) as blob:
            found = {"directions": torch.from_numpy(blob["directions"]), "names": [str(n) for n in blob["names"]],
                     "method": str(blob["method"]), "latent_space": str(blob["latent_space"]),
                     "generator": json.loads(str(blob["generator"]))}
            found.update({k: blob[k] for k in blob.files if k not in found})
    except (ValueError, OSError, KeyError) as e:
        raise DataFormatError(f"{path}: not a directions.npz ({type(e).__name__}: {str(e)[:100]})") from None
    d = found["directions"]
    if d.ndim != 2 or len(found["names"]) != len(d):
        raise DataFormatError(f"{path}: expected directions (K, d) with K names, got shape {tuple(d.shape)} "
                              f"and {len(found['names'])} names")
    return found


def conditional_directions(directions: torch.Tensor) -> torch.Tensor:
    """Row i projected onto the orthogonal complement of the other rows (unit rows, (K, d))."""
    from lightning_modules.interfacegan import conditional_direction

    k = len(directions)
    return torch.stack([conditional_direction(directions, i, [j for j in range(k) if j != i]) for i in range(k)])


def heatmap(matrix: torch.Tensor, cell: int = 12) -> np.ndarray:
    """(K, K) values in [-1, 1] -> uint8 RGB image, blue negative, red positive."""
    m = matrix.clamp(-1, 1).cpu().numpy()
    rgb = np.stack([np.where(m > 0, 1.0, 1.0 + m), 1.0 - np.abs(m), np.where(m < 0, 1.0, 1.0 - m)], -1)
    return (np.kron(rgb, np.ones((cell, cell, 1))) * 255).astype(np.uint8)


def _fmt(x: float) -> str:
    return "n/a" if x != x else f"{x:+.2f}"


class DirectionReport(pl.Callback):
    """Evaluates ``pl_module.directions()`` (K, d) for ``pl_module.attributes`` at the end of fit.

    Writes in the log folder: ``directions.npz``, ``report.md`` (the cosines of ``reference``
    attribute's direction with all others, and the effect of one edit along it, at equal
    target success), ``cosines.png``, ``edit_grid.png``; the same go to TensorBoard.
    ``compare_with``: another run's ``directions.npz`` (e.g. the λ = 0 run) shown side by side.
    ``export_to``: also copy ``directions.npz`` to this stable path.
    """

    def __init__(self, generator: str = "demo", annotator: str = "demo", space: str = "z", reference: str = "Young",
                 num_samples: int = 400, seed: int = 12345, compare_with: Optional[str] = None,
                 export_to: Optional[str] = None, method: str = "linear_map", conditional: bool = True,
                 guided_samples: int = 0) -> None:
        self.generator_source, self.annotator_source = generator, annotator
        self.space, self.reference = space, reference
        self.num_samples, self.seed = num_samples, seed
        self.compare_with, self.export_to, self.method = compare_with, export_to, method
        self.conditional = conditional
        self.guided_samples = guided_samples
        self.results: dict = {}
        self._t0: Optional[float] = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._t0 = time.perf_counter()

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # Fail before training, not after it: the run to compare with, and agreement with the data.
        if self.compare_with and not Path(self.compare_with).is_file():
            raise ConfigError(f"compare_with: {self.compare_with} not found (run the lambda = 0 config first)")
        dm = trainer.datamodule
        for field, mine in (("generator", self.generator_source), ("space", self.space)):
            theirs = getattr(dm, field, None)
            if theirs is not None and str(theirs) != str(mine):
                raise ConfigError(f"DirectionReport.{field} is {mine!r} but data.{field} is {theirs!r}; set both alike")

    def _measure(self, trainer, G, judge, directions, names) -> dict:
        targets = [judge.attributes.index(n) for n in names]
        metric = EditEffect(DEFAULT_ALPHAS, targets, len(judge.attributes)).to(G.device)
        return measure_edits(G, judge, directions, targets, DEFAULT_ALPHAS, self.num_samples, self.seed, self.space,
                             metric=metric, rank=trainer.global_rank, world_size=trainer.world_size)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from generators import load_generator
        from lightning_modules.annotator import load_annotator

        log_dir = Path(trainer.log_dir or ".")
        seconds = time.perf_counter() - self._t0 if self._t0 is not None else None  # training, not this report
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
        self.results = {label: dict(self._measure(trainer, G, judge, d, n), directions=d, names=n)
                        for label, (d, n) in runs.items()}
        if self.guided_samples:
            # Beyond the paper, slower: follow this run's directions in small steps, keeping all
            # other attributes fixed to first order with the classifier's gradients.
            from lightning_modules.edit_metrics import measure_guided_edits

            d, n = runs["this run"]
            targets = [judge.attributes.index(x) for x in n]
            metric = EditEffect(DEFAULT_ALPHAS, targets, len(judge.attributes)).to(G.device)
            guided = measure_guided_edits(G, judge, d, targets, DEFAULT_ALPHAS, self.guided_samples, self.seed,
                                          self.space, metric=metric, rank=trainer.global_rank,
                                          world_size=trainer.world_size)
            self.results["this run, classifier-guided"] = dict(guided, directions=d, names=n)
        if not trainer.is_global_zero:
            return
        path = write_directions(log_dir / "directions.npz", runs["this run"][0], names,
                                getattr(pl_module, "method_name", self.method), self.space, G.identity, seconds=seconds)
        if self.export_to:
            write_directions(Path(self.export_to), runs["this run"][0], names,
                             getattr(pl_module, "method_name", self.method), self.space, G.identity, seconds=seconds)
        report = self.report(judge.attributes)
        (log_dir / "report.md").write_text(report)
        from PIL import Image

        cos = heatmap(cosine_matrix(runs["this run"][0]))
        Image.fromarray(cos).save(log_dir / "cosines.png")
        grid = self.edit_grid(G, runs["this run"][0], names)
        Image.fromarray(grid).save(log_dir / "edit_grid.png")
        if isinstance(trainer.logger, TensorBoardLogger):
            ex = trainer.logger.experiment
            ex.add_text("report", report, trainer.global_step)
            ex.add_image("directions/cosines", cos, trainer.global_step, dataformats="HWC")
            ex.add_image("directions/edit_grid", grid, trainer.global_step, dataformats="HWC")
        print(f"\nlatentnav: directions written to {path}\n  report: {log_dir / 'report.md'}\n"
              f"  edit grid: {log_dir / 'edit_grid.png'}   cosine heat-map: {log_dir / 'cosines.png'}")
        for label, r in self.results.items():
            print(f"  {label}: mean off-target |dp| {float(r['off_target_abs_mean']):.3f}, "
                  f"max {float(r['off_target_abs_max']):.3f} at equal target success")

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
        lines += ["", "## Summary at equal target success", "",
                  "| run | mean off-target abs dp | max off-target abs dp | cannot flip |", "|---|---|---|---|"]
        for label in labels:
            r = self.results[label]
            cannot = [n for n, c in zip(r["names"], r["cannot_flip"].tolist()) if c] or ["none"]
            lines.append(f"| {label} | {float(r['off_target_abs_mean']):.3f} | {float(r['off_target_abs_max']):.3f} | "
                         f"{', '.join(cannot)} |")
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

    @torch.no_grad()
    def edit_grid(self, G, directions: torch.Tensor, names: list[str], alphas=(-6, -3, 0, 3, 6), scale: int = 2) -> np.ndarray:
        """Rows = attributes, columns = alpha, one fixed sample."""
        z = G.sample(1, seed=self.seed, space=self.space)
        unit = torch.nn.functional.normalize(directions.float(), dim=1).to(z.device)
        rows = []
        for d in unit:
            batch = torch.cat([z + a * d.view_as(z[0]) for a in alphas])
            rows.append(torch.cat(list(G.synthesize(batch, self.space)), dim=2))
        grid = torch.cat(rows, dim=1)
        grid = ((grid.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
        return labelled_rows(np.kron(grid, np.ones((scale, scale, 1), dtype=np.uint8)), names,
                             [f"{a:+g}" for a in alphas])


def labelled_rows(grid: np.ndarray, row_names: list[str], column_names: list[str], margin: int = 110) -> np.ndarray:
    """Add row names on the left and column names on top of an image grid (uint8 HWC)."""
    from PIL import Image, ImageDraw, ImageFont

    h, w, _ = grid.shape
    row_h, col_w, top = h // len(row_names), w // len(column_names), 14
    canvas = Image.new("RGB", (w + margin, h + top), (255, 255, 255))
    canvas.paste(Image.fromarray(grid), (margin, top))
    draw, font = ImageDraw.Draw(canvas), ImageFont.load_default()
    for i, name in enumerate(row_names):
        draw.text((2, top + i * row_h + row_h // 2 - 5), name, fill=(0, 0, 0), font=font)
    for j, name in enumerate(column_names):
        draw.text((margin + j * col_w + col_w // 2 - 8, 1), name, fill=(0, 0, 0), font=font)
    return np.asarray(canvas)
