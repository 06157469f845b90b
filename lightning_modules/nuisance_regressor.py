"""Reads an image's nuisance factors back: what else an edit changes, in each factor's own units.

    from latentnav.lightning_modules.nuisance_regressor import load_nuisance_reader
    reader = load_nuisance_reader("demo")        # the bundled demo reader
    factors = reader(images)                     # images (B, 3, H, W) in [-1, 1] -> (B, 8) in their units
    reader.factor_names                          # cx, cy, scale, skin, background_r/g/b, gradient

Train one with ``latentnav fit --config configs/nuisance/demo.yaml`` (:class:`NuisanceRegressor`: MSE
on standardised factors, per-factor R² and RMSE logged) and export the checkpoint to the small format
(weights and settings only) with :func:`export_nuisance_reader`. ``load_nuisance_reader`` takes
``"demo"``, a ``train.py`` checkpoint or an exported file, read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric, MeanSquaredError, MetricCollection, R2Score

from latentnav.assets import bundled, resolve_source
from latentnav.atomic import atomic_torch_save
from latentnav.errors import ConfigError, DataFormatError, TrainingDivergedError, check_learning_rate, check_positive
from latentnav.frozen import Frozen
from latentnav.lightning_modules.annotator import square_input
from latentnav.lightning_modules.backbones import build_backbone
from latentnav.lightning_modules.schedules import adamw_cosine
from latentnav.safe_load import safe_torch_load, sha256_of, strict_load_state_dict

BUNDLED = bundled("nuisance")
FORMAT = "latentnav.nuisance/1"
#: The demo renderer's continuous nuisance factors, in its column order
#: (``latentnav.datamodules.demo_faces.NUISANCE_FACTORS``, a layer above this one; a test keeps them equal).
DEMO_FACTORS: tuple[str, ...] = ("cx", "cy", "scale", "skin", "background_r", "background_g", "background_b", "gradient")
_SETTINGS = ("factor_names", "backbone", "width", "image_size")


class NuisanceNet(nn.Module):
    """A backbone predicting standardised factors, and the factors' mean and std (buffers) that turn
    its outputs back into the factors' own units.

    ``forward``: float images (B, 3, S, S) in [-1, 1] -> factors (B, K) in their units.
    """

    def __init__(self, num_factors: int, backbone: str = "small_cnn", width: int = 32) -> None:
        super().__init__()
        self.backbone = build_backbone(backbone, num_factors, width=width)
        self.register_buffer("factor_mean", torch.zeros(num_factors))
        self.register_buffer("factor_std", torch.ones(num_factors))

    def standardised(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images).float()

    def to_units(self, standardised: torch.Tensor) -> torch.Tensor:
        return standardised * self.factor_std + self.factor_mean

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.to_units(self.standardised(images))


def _split_metrics(num_factors: int) -> MetricCollection:
    # One value per factor; compute() syncs the states across ranks (same numbers on 1 or N processes).
    return MetricCollection({"r2": R2Score(multioutput="raw_values"),
                             "rmse": MeanSquaredError(squared=False, num_outputs=num_factors)})


class NuisanceRegressor(pl.LightningModule):
    """Regresses K continuous factors from images with MSE on standardised factors.

    Input: float images (B, 3, image_size, image_size) in [-1, 1]; targets (B, K) in the factors' own
    units. ``forward`` returns factors in their units. Logged per split: ``{split}/loss`` (MSE in
    standard deviations), ``{split}/r2/{name}`` and ``{split}/rmse/{name}`` (in the factor's units),
    ``{split}/r2_mean`` and ``{split}/r2_min``.

    Args:
        factor_names: the K factor names in the data's column order; None = the demo's eight.
        backbone, width: see :func:`latentnav.lightning_modules.backbones.build_backbone`.
        image_size: input side the regressor is trained at (the reader resizes other images to it).
        lr, weight_decay: AdamW settings; the rate follows a cosine decay over the run.
        factor_mean, factor_std: the standardisation; None = the training data's (the datamodule's
            ``factor_statistics()``, taken when fitting starts). Stored as buffers, so checkpoints and
            exported files carry them.
    """

    def __init__(
        self,
        factor_names: Optional[list[str]] = None,
        backbone: str = "small_cnn",
        width: int = 32,
        image_size: int = 32,
        lr: float = 2e-3,
        weight_decay: float = 1e-4,
        factor_mean: Optional[list[float]] = None,
        factor_std: Optional[list[float]] = None,
    ) -> None:
        super().__init__()
        check_positive("model.width", width)
        check_positive("model.image_size", image_size)
        check_learning_rate("model.lr", lr)
        names = list(DEMO_FACTORS if factor_names is None else factor_names)
        if not names or len(set(names)) != len(names):
            raise ConfigError(f"model.factor_names: expected a non-empty list of distinct names, got {names}")
        self.save_hyperparameters()
        self.factor_names = names
        self.net = NuisanceNet(len(names), backbone=backbone, width=width)
        self._stats_given = factor_mean is not None or factor_std is not None
        if self._stats_given:
            self.set_standardisation(factor_mean, factor_std)
        # Keyed "<split>_": a ModuleDict key "train" would shadow nn.Module.train. Loss means are metrics
        # computed in the epoch-end hooks every rank runs (see AttributeClassifier: no lazy cross-rank sync).
        self.metrics = nn.ModuleDict({s: _split_metrics(len(names)) for s in ("train_", "val_", "test_")})
        self.losses = nn.ModuleDict({s: MeanMetric() for s in ("train_", "val_", "test_")})

    def set_standardisation(self, mean, std) -> None:
        """Set the factors' mean and std (K values each; std > 0)."""
        k = len(self.factor_names)
        try:
            mean_t = torch.as_tensor(mean, dtype=torch.float32).flatten()
            std_t = torch.as_tensor(std, dtype=torch.float32).flatten()
        except (TypeError, ValueError, RuntimeError):
            raise ConfigError(f"model.factor_mean / factor_std: expected {k} numbers each, got {mean!r} and {std!r}") from None
        if mean_t.numel() != k or std_t.numel() != k:
            raise ConfigError(f"model.factor_mean / factor_std: expected {k} values each (one per factor), "
                              f"got {mean_t.numel()} and {std_t.numel()}")
        if not (torch.isfinite(mean_t).all() and torch.isfinite(std_t).all() and (std_t > 0).all()):
            raise ConfigError("model.factor_mean / factor_std: expected finite values and positive standard deviations")
        self.net.factor_mean.copy_(mean_t)
        self.net.factor_std.copy_(std_t)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    def setup(self, stage: Optional[str] = None) -> None:
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        names = getattr(datamodule, "factor_names", None)
        if names is not None and list(names) != self.factor_names:
            raise ConfigError(f"model.factor_names {self.factor_names} do not match the data's columns {list(names)}; "
                              "set the same list (in the same order) for model and data")
        size = getattr(datamodule, "image_size", None)
        if size is not None and size != self.hparams.image_size:
            raise ConfigError(f"model.image_size {self.hparams.image_size} differs from data.image_size {size}; "
                              "the reader resizes other images to model.image_size, so set both")
        if stage == "fit" and not self._stats_given:
            statistics = getattr(datamodule, "factor_statistics", None)
            if statistics is None:
                raise ConfigError("model.factor_mean / factor_std: not set, and the data has no factor_statistics() "
                                  "to take them from; pass both")
            # Every rank computes the same values from the same training faces; a resumed run then
            # restores the checkpoint's buffers on top of them.
            self.set_standardisation(*statistics())

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], split: str) -> torch.Tensor:
        images, factors = batch
        factors = factors.float()
        predicted = self.net.standardised(images)
        loss = F.mse_loss(predicted, (factors - self.net.factor_mean) / self.net.factor_std)
        self.metrics[split + "_"].update(self.net.to_units(predicted.detach()), factors)
        self.losses[split + "_"].update(loss.detach(), weight=len(images))
        if split == "train":  # this rank's step value: no collective
            self.log("train/loss_step", loss, on_step=True, on_epoch=False, batch_size=len(images), prog_bar=True)
        return loss

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self._step(batch, "train")
        # Decided together: a rank that stopped alone would leave the others waiting in DDP.
        if self.trainer.strategy.reduce_boolean_decision(not torch.isfinite(loss).item(), all=False):
            raise TrainingDivergedError(
                f"nuisance regressor loss is not finite ({loss.item()} on rank {self.global_rank}) at global step "
                f"{self.global_step} (epoch {self.current_epoch}, batch {batch_idx}); lower model.lr or check the data; "
                "last.ckpt holds the last good state"
            )
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def predict_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Factors (B, K) in their own units."""
        return self(batch[0])

    def _log_split(self, split: str) -> None:
        # Runs on every rank; compute() syncs the states, so the logged values are already global.
        if self.losses[split + "_"].update_count == 0:
            return
        values = self.metrics[split + "_"].compute()
        for metric, per_factor in values.items():
            for name, value in zip(self.factor_names, per_factor.reshape(-1)):
                self.log(f"{split}/{metric}/{name}", value)
        r2 = values["r2"].reshape(-1)
        self.log(f"{split}/r2_mean", r2.mean(), prog_bar=split != "train")
        self.log(f"{split}/r2_min", r2.min())
        self.log(f"{split}/loss", self.losses[split + "_"].compute(), prog_bar=split == "train")
        self.metrics[split + "_"].reset()
        self.losses[split + "_"].reset()

    def on_train_epoch_end(self) -> None:
        self._log_split("train")

    def on_validation_epoch_end(self) -> None:
        self._log_split("val")

    def on_test_epoch_end(self) -> None:
        self._log_split("test")

    def configure_optimizers(self):
        return adamw_cosine(self, self.hparams.lr, self.hparams.weight_decay)


class NuisanceReader(Frozen, nn.Module):
    """Frozen regressor mapping images to nuisance factors in their own units.

    ``forward``: float images (B, 3, H, W) in [-1, 1], any H = W (resized to ``image_size`` with
    antialiasing) -> factors (B, K), columns ``factor_names``. Gradients flow to the images but never
    into the weights, and the module stays in eval mode (:class:`latentnav.frozen.Frozen`).
    """

    def __init__(self, net: NuisanceNet, factor_names: list[str], image_size: int, source: str = "",
                 sha256: str = "") -> None:
        super().__init__()
        self.net = net
        self.factor_names = list(factor_names)
        self.image_size = image_size
        self.source = source
        self.sha256 = sha256
        self.freeze()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(square_input(images, self.image_size, "nuisance reader"))


def _settings_and_weights(blob: object, path: Path) -> tuple[dict, dict]:
    if not isinstance(blob, dict):
        raise DataFormatError(f"{path}: expected a dict checkpoint, got {type(blob).__name__}")
    if blob.get("format") == FORMAT:
        if not isinstance(blob.get("settings"), dict) or not isinstance(blob.get("state_dict"), dict):
            raise DataFormatError(f"{path}: exported nuisance reader lacks its settings or state_dict")
        settings, weights = blob["settings"], blob["state_dict"]
    elif "hyper_parameters" in blob and "state_dict" in blob:  # written by train.py
        hp = blob["hyper_parameters"]
        if not isinstance(hp, dict) or "backbone" not in hp or not isinstance(blob["state_dict"], dict) \
                or "net.factor_mean" not in blob["state_dict"]:
            raise DataFormatError(f"{path}: not a nuisance-regressor checkpoint (no backbone setting or factor buffers)")
        settings = {k: hp[k] for k in _SETTINGS if k in hp}
        if settings.get("factor_names") is None:
            settings["factor_names"] = list(DEMO_FACTORS)
        weights = {k[len("net."):]: v for k, v in blob["state_dict"].items() if k.startswith("net.")}
    else:
        keys = sorted(blob)[:6] if all(isinstance(k, str) for k in blob) else "?"
        raise DataFormatError(f"{path}: neither a train.py checkpoint nor an exported nuisance reader (keys {keys})")
    names = settings.get("factor_names")
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) for n in names) \
            or not isinstance(settings.get("backbone"), str):
        raise DataFormatError(f"{path}: nuisance reader settings lack a factor_names list or a backbone name")
    if any(not isinstance(settings.get(k, 1), int) or settings.get(k, 1) < 1 for k in ("width", "image_size")):
        raise DataFormatError(f"{path}: nuisance reader settings width / image_size are not positive integers")
    if not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise DataFormatError(f"{path}: nuisance reader state_dict holds values that are not tensors")
    return settings, weights


def _load(path: Path, trust_pickle: bool, map_location) -> object:
    if not path.is_file():
        raise DataFormatError(f"{path}: nuisance reader file not found")
    return safe_torch_load(path, trust_pickle=trust_pickle, map_location=map_location)


def load_nuisance_reader(
    source: str | os.PathLike = "demo", trust_pickle: bool = False, map_location: str | torch.device = "cpu"
) -> NuisanceReader:
    """Load a trained nuisance regressor, frozen. ``source``: ``"demo"`` or a file path."""
    path = resolve_source(source, "nuisance")
    settings, weights = _settings_and_weights(_load(path, trust_pickle, map_location), path)
    names = list(settings["factor_names"])
    try:
        net = NuisanceNet(len(names), backbone=settings["backbone"], width=settings.get("width", 32))
    except ConfigError as e:
        raise DataFormatError(f"{path}: {e}") from None
    strict_load_state_dict(net, weights, str(path), what=f"weights of nuisance reader {settings['backbone']!r}")
    if not (torch.isfinite(net.factor_std).all() and (net.factor_std > 0).all() and torch.isfinite(net.factor_mean).all()):
        raise DataFormatError(f"{path}: nuisance reader factor_mean / factor_std are not finite with positive stds")
    return NuisanceReader(net, names, settings.get("image_size", 32), source=str(path), sha256=sha256_of(path))


def export_nuisance_reader(checkpoint: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write the regressor in ``checkpoint`` (``train.py``'s) as a small weights-only file; returns ``out``."""
    checkpoint, out = Path(checkpoint), Path(out)
    settings, weights = _settings_and_weights(_load(checkpoint, False, "cpu"), checkpoint)
    settings = {"factor_names": list(settings["factor_names"]), **{k: settings[k] for k in _SETTINGS[1:] if k in settings}}
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save({"format": FORMAT, "settings": settings,
                       "state_dict": {k: v.detach().clone().contiguous() for k, v in weights.items()}}, out)
    return out


if __name__ == "__main__":  # python -m latentnav.lightning_modules.nuisance_regressor export CKPT OUT
    import sys

    from latentnav.errors import run_command

    if len(sys.argv) != 4 or sys.argv[1] != "export":
        print("usage: python -m latentnav.lightning_modules.nuisance_regressor export CHECKPOINT OUT", file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit(run_command(lambda: print(export_nuisance_reader(sys.argv[2], sys.argv[3]))))
