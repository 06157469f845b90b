"""Writes an edit's strip (PNG) and animation (GIF) from the frames of every rank, and the frames' scores.

With scorers (``EditRendering(scorers=...)``: the own annotator, a held-out judge), each frame of the strip
is labelled with their probabilities of the edited attribute (``own .12 judge .10``, a ``!`` where the two
differ by more than :data:`DISAGREE`), and ``<tag>_scores.tsv`` lists them: one row per (sample, alpha).

The tag passes through ``latentnav.names.safe_stem`` (the command builds it from names in a directions file:
no path separators, ``..``, leading dots or over-long names reach the file system). Every file is written
atomically; once they are written, the temporary files of those names that a killed run left in the folder
and the per-rank parts of a killed multi-process run are deleted.
"""

from __future__ import annotations

import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter

from latentnav.atomic import atomic_torch_save, atomic_write, atomic_write_text, remove_stale_temporaries
from latentnav.names import safe_stem
from latentnav.images import labelled_rows, tile, upscale

DISAGREE = 0.25  # probability gap between the first two scorers that marks a frame's label with "!"


class EditWriter(BasePredictionWriter):
    """``<out_dir>/<tag>.png`` (rows = latents, columns = alphas, labelled) and ``<tag>.gif`` (there and back);
    with scorers, the frames' labels and ``<tag>_scores.tsv``.

    Each rank keeps the frames (and scores) of its rows (a few images a row, never the whole run), saves
    them atomically to ``<out_dir>/.parts_<tag>/rank<r>.pt`` at the end; after a barrier rank 0 puts the
    rows back in order, writes the files and removes the parts.

    Args:
        out_dir: the output folder (shared by every node).
        tag: the files' name (made safe with :func:`latentnav.names.safe_stem`).
        alphas: the columns' labels.
        scale: pixel upscaling of the outputs.
        scorers: one ``(label, column name)`` per row of the predictions' ``"scores"`` (e.g.
            ``("own", "own:<annotator source>")``): the label goes on the frames, the name heads the TSV's
            column. Empty: no scores (the predictions carry none).
        originals: uint8 (N, R, R, 3) images shown in a first column "photo" of the strip (a real image
            that was projected: the edit's starting point), or None.
    After the loop, rank 0's ``written`` lists the files and ``scores`` holds float32
    (len(scorers), len(alphas), N) in row order (None without scorers).
    """

    def __init__(self, out_dir: str, tag: str, alphas, scale: int = 3, scorers=(), originals=None) -> None:
        super().__init__(write_interval="batch")
        self.originals = originals
        self.out_dir, self.tag = Path(out_dir), safe_stem(tag, "EditWriter tag")
        self.alphas, self.scale = [float(a) for a in alphas], scale
        self.started = time.time()
        self.scorers = [(str(label), str(name)) for label, name in scorers]
        self.rows: list[torch.Tensor] = []
        self.frames: list[np.ndarray] = []
        self.score_parts: list[np.ndarray] = []
        self.scores: np.ndarray | None = None
        self.written: list[Path] = []

    @property
    def parts(self) -> Path:
        return self.out_dir / f".parts_{self.tag}"

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        warnings.filterwarnings("ignore", message=".*Couldn't infer the batch indices.*")
        warnings.filterwarnings("ignore", message=".*`IterableDataset` has `__len__` defined.*")
        trainer.predict_loop.return_predictions = False  # the frames are kept here, once
        self.rows, self.frames, self.score_parts, self.scores, self.written = [], [], [], None, []
        self.started = time.time()

    def write_on_batch_end(self, trainer, pl_module, prediction: dict, batch_indices, batch, batch_idx: int,
                           dataloader_idx: int = 0) -> None:
        self.rows.append(prediction["rows"])
        self.frames.append(prediction["frames"])
        if self.scorers:
            scores = prediction.get("scores")
            if scores is None or tuple(scores.shape[:2]) != (len(self.scorers), len(self.alphas)):
                raise ValueError(f"EditWriter({self.tag}): expected scores of shape ({len(self.scorers)}, "
                                 f"{len(self.alphas)}, b), got {None if scores is None else tuple(scores.shape)}")
            self.score_parts.append(scores.detach().float().cpu().numpy())

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.world_size > 1:
            atomic_torch_save({"rows": torch.cat(self.rows) if self.rows else torch.zeros(0, dtype=torch.long),
                               "frames": torch.from_numpy(np.concatenate(self.frames, axis=1)) if self.frames else None,
                               "scores": torch.from_numpy(np.concatenate(self.score_parts, axis=2))
                               if self.score_parts else None},
                              self.parts / f"rank{trainer.global_rank}.pt")
        trainer.strategy.barrier("edit_writer")
        if not trainer.is_global_zero:
            return
        rows, frames, scores = self.rows, self.frames, self.score_parts
        if trainer.world_size > 1:
            parts = [torch.load(self.parts / f"rank{r}.pt", weights_only=True) for r in range(trainer.world_size)]
            rows = [p["rows"] for p in parts if p["frames"] is not None]
            frames = [p["frames"].numpy() for p in parts if p["frames"] is not None]
            scores = [p["scores"].numpy() for p in parts if p["frames"] is not None and p["scores"] is not None]
        order = torch.cat(rows).argsort().numpy()
        self.scores = np.concatenate(scores, axis=2)[:, :, order] if self.scorers else None
        self.written = write_edit(np.concatenate(frames, axis=1)[:, order], self.alphas, self.out_dir, self.tag,
                                  self.scale, self.scores, [label for label, _ in self.scorers], self.originals)
        if self.scorers:
            self.written.append(write_scores(self.scores, self.alphas, [name for _, name in self.scorers],
                                             self.out_dir / f"{self.tag}_scores.tsv"))
        # Written: what a killed run of the same files left behind goes (its temporaries, its ranks' parts).
        shutil.rmtree(self.parts, ignore_errors=True)
        remove_stale_temporaries(self.out_dir, [f"{self.tag}{suffix}" for suffix in (".png", ".gif", "_scores.tsv")],
                                 started=self.started)


def write_edit(frames: np.ndarray, alphas: list[float], out_dir: Path, tag: str, scale: int = 3,
               scores: np.ndarray | None = None, labels: list[str] | None = None,
               originals: np.ndarray | None = None) -> list[Path]:
    """Frames uint8 (A, B, R, R, 3) -> ``<tag>.png`` (B rows x A columns, labelled) and ``<tag>.gif``.
    With ``scores`` (S, A, B) and their ``labels`` (S,), a band under each row of the strip gives every
    frame's scores (:func:`score_band`). With ``originals`` uint8 (B, R, R, 3), the strip's first column
    is the original photo (not in the GIF)."""
    from PIL import Image

    frames = upscale(frames, scale)
    a, b = frames.shape[:2]
    column_names = [f"{x:+.1f}" for x in alphas]
    gif_frames = frames
    if originals is not None:
        frames = np.concatenate([upscale(np.asarray(originals), scale)[None], frames], axis=0)
        column_names = ["photo"] + column_names
        if scores is not None:
            scores = np.concatenate([np.full_like(scores[:, :1], np.nan), scores], axis=1)
    if scores is None:
        strip = tile(frames.swapaxes(0, 1))  # rows = latents, columns = alphas
    else:
        width = frames.shape[3]
        strip = np.concatenate([np.concatenate([np.concatenate(list(frames[:, i]), axis=1),
                                                score_band(scores[:, :, i], list(labels or []), width)])
                                for i in range(b)])
    png, gif = out_dir / f"{tag}.png", out_dir / f"{tag}.gif"
    labelled = Image.fromarray(labelled_rows(strip, [f"sample {i}" for i in range(b)], column_names, margin=60))
    atomic_write(png, lambda f: labelled.save(f, format="PNG"))
    images = [Image.fromarray(np.concatenate(list(gif_frames[i]), axis=1)) for i in range(a)]
    images += images[-2:0:-1]  # there and back
    atomic_write(gif, lambda f: images[0].save(f, format="GIF", save_all=True, append_images=images[1:], duration=120,
                                               loop=0))
    return [png, gif]


def short_probability(p: float) -> str:
    """0.123 -> ".12", 1.0 -> "1.00": a frame label's probability."""
    text = f"{float(p):.2f}"
    return text[1:] if text.startswith("0") else text


def frame_label(scores, labels: list[str]) -> list[str]:
    """One frame's scores (S,) -> its label's lines, one per scorer (``own .12``, ``judge .10``); the last
    line ends in ``!`` where the first two scorers differ by more than :data:`DISAGREE`. NaN scores (the
    original photo's column): no lines."""
    if any(float(p) != float(p) for p in scores):
        return []
    lines = [f"{label} {short_probability(p)}" for label, p in zip(labels, scores)]
    if len(lines) >= 2 and abs(float(scores[0]) - float(scores[1])) > DISAGREE:
        lines[-1] += " !"
    return lines


def score_band(scores: np.ndarray, labels: list[str], width: int) -> np.ndarray:
    """The scores (S, A) of one row's A frames, each ``width`` px wide -> a white uint8 band
    (lines * line height + 2, A * width, 3) with :func:`frame_label` under each frame (clipped to it)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    line = font.getbbox("Ag!")[3] + 1
    s, a = scores.shape
    height = line * max(s, 1) + 2
    band = np.full((height, a * width, 3), 255, dtype=np.uint8)
    for j in range(a):
        cell = Image.new("RGB", (width, height), (255, 255, 255))
        draw = ImageDraw.Draw(cell)
        for k, text in enumerate(frame_label(scores[:, j], labels)):
            draw.text((1, 1 + k * line), text, fill=(160, 0, 0) if text.endswith("!") else (0, 0, 0), font=font)
        band[:, j * width:(j + 1) * width] = np.asarray(cell)
    return band


def write_scores(scores: np.ndarray, alphas: list[float], names: list[str], path: Path) -> Path:
    """Scores (S, A, B) -> a TSV with columns sample, alpha, then one per scorer (``names``): one row per
    (sample, alpha), samples in order, alphas in order within each."""
    s, a, b = scores.shape
    lines = ["\t".join(["sample", "alpha", *names])]
    for i in range(b):
        for j in range(a):
            lines.append("\t".join([str(i), f"{alphas[j]:g}", *(f"{float(scores[k, j, i]):.6f}" for k in range(s))]))
    return atomic_write_text(path, "\n".join(lines) + "\n")
