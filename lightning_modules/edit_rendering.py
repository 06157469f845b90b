"""Rendering edits as a Lightning ``predict`` loop: devices, ranks and precision from the Trainer.

The batches are row indices into a (N, *latent_shape) tensor of latents
(``LatentIndicesDataModule(sliced_predict=True)``: rank r of W renders rows r, r + W, ...), and each
step returns the rows' frames along one direction; ``latentnav.callbacks.edit_writer.EditWriter`` gathers
them into the strip and the GIF. With scorers (the own annotator, a held-out judge), each frame is also
scored in the same step: the probability of the edited attribute, from the float frames themselves.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import pytorch_lightning as pl
import torch

from latentnav.generators.base import check_finite
from latentnav.images import labelled_rows, tile, to_uint8


@torch.no_grad()
def render_edits(G, latents: torch.Tensor, direction: torch.Tensor, alphas: Sequence[float], space: str,
                 noise: Optional[Sequence[torch.Tensor]] = None, classes: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Latents (B, *latent_shape) moved by alpha * direction (d,): images (len(alphas), B, 3, R, R) in [-1, 1]
    on the latents' device; the alpha = 0 frame is ``G.synthesize(latents, space)``. ``noise``: per-layer
    (B, 1, r, r) maps (a StyleGAN2 projection's) to render with instead of the generator's own. ``classes``:
    (B,) class ids for a class-conditional generator (the edit keeps each latent's class: directions are shared
    across classes)."""
    d = direction.to(latents.device).view_as(latents[0])
    if noise:
        return torch.stack([G.synthesize_with_noise(latents + float(a) * d, space, noise, classes=classes)
                            for a in alphas])
    return torch.stack([G.synthesize(latents + float(a) * d, space, classes=classes) for a in alphas])


def render_guided_edits(G, judge, latents: torch.Tensor, direction: torch.Tensor, alphas: Sequence[float],
                        space: str, keep: list[int], substep: float = 0.5,
                        classes: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Like :func:`render_edits`, following the classifier-guided path from alpha 0 both ways
    (needs gradients: run it outside ``torch.inference_mode``)."""
    from latentnav.lightning_modules.edit_metrics import guided_step

    direction = direction.to(latents.device)
    frames: dict[float, torch.Tensor] = {}
    for sign in (1.0, -1.0):
        z, at = latents, 0.0
        for a in sorted((float(a) for a in alphas if a * sign >= 0), key=abs):
            while at < abs(a) - 1e-9:
                move = min(substep, abs(a) - at)
                z = guided_step(G, judge, z, sign * direction, keep, move, space, classes=classes) if keep else \
                    z + sign * move * direction.view_as(z[0])
                at += move
            with torch.no_grad():
                frames[a] = G.synthesize(z, space, classes=classes)
    return torch.stack([frames[float(a)] for a in alphas])


@torch.no_grad()
def edit_grid(G, directions: torch.Tensor, space: str, latent: torch.Tensor, alphas: Sequence[float],
              names: Sequence[str], scale: int = 1, classes: Optional[torch.Tensor] = None) -> np.ndarray:
    """uint8 HWC figure: one row per direction (unit rows of ``directions`` (K, d)), one column per
    alpha, all from the single ``latent`` (1, ...) (of class ``classes`` (1,) for a conditional generator);
    rows and columns labelled."""
    unit = torch.nn.functional.normalize(directions.float(), dim=1).to(latent.device)
    frames = torch.stack([render_edits(G, latent, d, alphas, space, classes=classes)[:, 0]
                          for d in unit])  # (K, A, 3, R, R)
    return labelled_rows(tile(to_uint8(frames, scale)), list(names), [f"{a:+g}" for a in alphas], margin=80)


class EditRendering(pl.LightningModule):
    """Renders ``latents[rows]`` along one direction, and scores the frames.

    Args:
        generator: a loaded, frozen ``FrozenGenerator``.
        latents: (N, *latent_shape(space)) on the CPU; rows are moved to the device a batch at a time.
        direction: (d,) the edit direction (not normalised here: the caller's scale).
        alphas: the steps, one frame each.
        space: the latents' space.
        judge: a frozen ``Annotator`` for classifier-guided paths (with ``keep``), else None.
        keep: attribute indices of ``judge`` held fixed along a guided path.
        scorers: ``(label, annotator, column)`` triples: each frame's probability in ``column`` of the
            frozen ``annotator`` (e.g. the edited attribute by the own annotator and by a held-out judge).
        noise: per-layer (N, 1, r, r) noise maps of the latents (a StyleGAN2 projection's ``latents.pt``),
            used for the plain edits (guided paths keep the generator's own).
        classes: (N,) class ids of the latents for a class-conditional generator (None: row k's class is
            ``generator.classes_at([k])``, the class a seed's or a projected image's row k was made with).
    ``predict_step`` returns ``{"rows": (b,) int64, "frames": uint8 (len(alphas), b, R, R, 3)}``, with
    ``"scores": float32 (len(scorers), len(alphas), b)`` on the CPU when there are scorers; the scores are
    taken from the same float frames (in [-1, 1]) that become the uint8 frames.
    """

    def __init__(self, generator, latents: torch.Tensor, direction: torch.Tensor, alphas: Sequence[float],
                 space: str = "z", judge=None, keep: Sequence[int] = (),
                 scorers: Sequence[tuple[str, torch.nn.Module, int]] = (),
                 noise: Optional[Sequence[torch.Tensor]] = None, classes: Optional[torch.Tensor] = None) -> None:
        super().__init__()
        self.generator, self.judge = generator, judge
        if classes is None and hasattr(generator, "classes_at"):
            classes = generator.classes_at(range(len(latents)))
        self.classes = None if classes is None else torch.as_tensor(classes).reshape(-1).long().cpu()
        self.noise = [n.detach().float().cpu() for n in noise] if noise else None
        self.latents = latents.detach().float().cpu()
        self.register_buffer("direction", direction.detach().float(), persistent=False)
        self.alphas, self.space, self.keep = [float(a) for a in alphas], space, list(keep)
        # A ModuleList, so that the Trainer moves the classifiers to its device with the generator.
        self.scorers = torch.nn.ModuleList([annotator for _, annotator, _ in scorers])
        self.score_labels = [label for label, _, _ in scorers]
        self.score_columns = [int(column) for _, _, column in scorers]

    @torch.no_grad()
    def score(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames (A, b, 3, R, R) in [-1, 1] -> float32 (len(scorers), A, b) on the CPU."""
        flat = frames.flatten(0, 1)
        return torch.stack([annotator(flat)[:, column].float().view(frames.shape[:2])
                            for annotator, column in zip(self.scorers, self.score_columns)]).cpu()

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        rows = batch["indices"].cpu()  # the Trainer moved the batch to its device; the latents stay on the CPU
        z = self.latents[rows].to(self.device)
        classes = self.classes[rows].to(self.device) if self.classes is not None else None
        if self.judge is not None:
            frames = render_guided_edits(self.generator, self.judge, z, self.direction, self.alphas, self.space,
                                         self.keep, classes=classes)
        else:
            noise = [n[rows].to(self.device) for n in self.noise] if self.noise else None
            frames = render_edits(self.generator, z, self.direction, self.alphas, self.space, noise, classes)
        check_finite(frames, rows, "edit", sample_dims=2)  # (A, b, 3, R, R): rows along dimension 1
        out = {"rows": rows.cpu(), "frames": to_uint8(frames)}
        if len(self.scorers):
            out["scores"] = self.score(frames)
        return out
