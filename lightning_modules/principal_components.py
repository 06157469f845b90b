"""GANSpace's two streamed passes as a Lightning ``test`` loop: devices, ranks and precision from the Trainer.

:class:`StreamingPCA` accumulates the mean and covariance of features (w, or an early layer's
activations) in float64; :class:`LeastSquares` the normal equations that map PCA coordinates back
to z. Both are torchmetrics with summed states, synced across ranks, and :class:`PrincipalComponentPass`
feeds them from latent indices (``LatentIndicesDataModule.test_dataloader``: rank r of W gets
r, r + W, ..., never padded; latent i = ``latents_at([i], seed)``): 1 and N processes give the same sums.
"""

from __future__ import annotations

import warnings
from typing import Literal, Optional

import pytorch_lightning as pl
import torch
from torchmetrics import Metric

from latentnav.errors import ConfigError


class StreamingPCA(Metric):
    """Mean and covariance of rows (B, ``width``) accumulated batch by batch (float64 states, synced by sum);
    :func:`principal_axes` of the covariance gives the components."""

    full_state_update = False

    def __init__(self, width: int) -> None:
        super().__init__()
        self.add_state("n", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros(width, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("outer", torch.zeros(width, width, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, x: torch.Tensor) -> None:
        x = x.detach().flatten(1).double()
        self.n += len(x)
        self.total += x.sum(0)
        self.outer += x.T @ x

    def compute(self) -> dict[str, torch.Tensor]:
        """``mean`` (width,) and ``covariance`` (width, width, unbiased), from the states summed over ranks."""
        if self.n < 2:
            raise ConfigError("ganspace: need at least 2 samples")
        mean = self.total / self.n
        return {"mean": mean, "covariance": (self.outer - self.n * torch.outer(mean, mean)) / (self.n - 1)}


def principal_axes(covariance: torch.Tensor, k: int, eigh_max_width: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """Top ``k`` principal axes of ``covariance`` (D, D) as rows (k, D) and their variances (k,), descending;
    each axis's largest entry is positive (a deterministic sign). A full ``eigh`` up to ``eigh_max_width``
    columns, :func:`top_eigh` beyond."""
    width = covariance.shape[0]
    if width > eigh_max_width and 4 * k < width:
        values, vectors = top_eigh(covariance, k)
    else:
        values, vectors = torch.linalg.eigh(covariance)
        values, vectors = values.flip(0)[:k], vectors.flip(1)[:, :k]
    vectors = vectors.T
    sign = torch.sign(vectors.gather(1, vectors.abs().argmax(1, keepdim=True)))
    return vectors * sign, values


class LeastSquares(Metric):
    """Normal equations of z ≈ U x over rows x (B, K) and z (B, d): ``compute()`` -> U as rows (K, d)."""

    full_state_update = False

    def __init__(self, num_components: int, latent_size: int) -> None:
        super().__init__()
        self.add_state("xtx", torch.zeros(num_components, num_components, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("xtz", torch.zeros(num_components, latent_size, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, x: torch.Tensor, z: torch.Tensor) -> None:
        x, z = x.detach().double(), z.detach().double()
        self.xtx += x.T @ x
        self.xtz += x.T @ z

    def compute(self) -> torch.Tensor:
        return torch.linalg.solve(self.xtx, self.xtz)


def top_eigh(matrix: torch.Tensor, k: int, oversample: int = 16, tol: float = 1e-8, max_iter: int = 1000,
             seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Top ``k`` eigenpairs of a symmetric PSD matrix (D, D): values (k,) descending, vectors (D, k).

    Block subspace iteration with Rayleigh-Ritz on p = k + max(k, oversample) columns, QR
    re-orthonormalised each step: O(D² p) a step instead of eigh's O(D³). Pair i converges like
    (λ_{p+1} / λ_i)^steps, so the extra columns make the top k fast even when the spectrum decays
    slowly; it stops when every residual |C v - λ v| <= tol * λ_1.
    """
    d = matrix.shape[0]
    p = min(d, k + max(k, oversample))
    g = torch.Generator().manual_seed(seed)
    q = torch.linalg.qr(torch.randn(d, p, generator=g, dtype=matrix.dtype).to(matrix.device)).Q
    for _ in range(max_iter):
        y = matrix @ q  # (D, p)
        t = q.T @ y
        values, s = torch.linalg.eigh((t + t.T) / 2)  # Ritz values ascending
        values, s = values.flip(0)[:k], s.flip(1)[:, :k]
        vectors = q @ s
        residual = (y @ s - vectors * values).norm(dim=0)
        if residual.max() <= tol * values[0].abs():
            break
        q = torch.linalg.qr(y).Q
    else:
        warnings.warn(f"top_eigh: residual {float(residual.max() / values[0]):.1e} of the top eigenvalue after "
                      f"{max_iter} steps (tolerance {tol:.0e})")
    return values, vectors


class _Captured(Exception):
    """Stops the generator's forward pass once the analysed layer's output is captured."""


class Features:
    """Features (B, D) of z latents (B, d): the latent in ``space`` (``w = mapping(z)``, or StyleGAN2's style
    vector ``s``) when ``layer`` is None, else the output of module ``layer`` of the generator, read with a forward
    hook that stops the forward pass there. ``classes``: (B,) class ids for a class-conditional generator
    (latent i's: ``classes_at``)."""

    def __init__(self, generator, layer: Optional[str] = None, space: str = "w") -> None:
        self.generator, self.layer, self.space = generator, layer, space
        # Resolved once, not per batch (the same module object wherever the Trainer moves the generator).
        self.module = dict(generator.named_modules())[layer] if layer is not None else None
        self.captured: list[torch.Tensor] = []

    def __call__(self, z: torch.Tensor, classes: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.module is None:
            return self.generator.to_space(z, self.space, classes=classes)
        module = self.module
        self.captured.clear()

        def hook(module, inputs, output):
            self.captured.append(output.detach().flatten(1))
            raise _Captured  # the rest of the generator is not needed

        handle = module.register_forward_hook(hook)
        try:
            self.generator.synthesize(z, "z", classes=classes)
        except _Captured:
            pass
        finally:
            handle.remove()
        return self.captured[0]


class PrincipalComponentPass(pl.LightningModule):
    """One streamed pass of GANSpace over latent indices.

    Args:
        generator: a loaded, frozen ``FrozenGenerator``.
        layer: the analysed module's name, or None for the latent of ``space`` itself.
        space: with ``layer`` None, the space whose latents are analysed (``w``, or ``s``: StyleGAN2's styles).
        width: the features' size D (probe it with :class:`Features` on one latent).
        mode: ``moments`` (``self.pca``: a :class:`StreamingPCA`) or ``regression`` (``self.fit``: a
            :class:`LeastSquares` of z on x = axes (features - mean)).
        axes: (K, D) principal axes, for ``regression``.
        mean: (D,) the features' mean, for ``regression``.
    After ``trainer.test``, ``self.result`` is the metric's ``compute()`` on every rank (a collective,
    so every rank calls it): {"mean", "covariance"} or the (K, d) least-squares map.
    """

    def __init__(self, generator, layer: Optional[str], width: int, mode: Literal["moments", "regression"] = "moments",
                 axes: Optional[torch.Tensor] = None, mean: Optional[torch.Tensor] = None, space: str = "w") -> None:
        super().__init__()
        self.generator, self.mode = generator, mode
        self.features = Features(generator, layer, space)
        if mode == "moments":
            self.pca = StreamingPCA(width)
        else:
            if axes is None or mean is None:
                raise ValueError("PrincipalComponentPass: mode 'regression' needs axes and mean")
            self.register_buffer("axes", axes.double(), persistent=False)
            self.register_buffer("mean", mean.double(), persistent=False)
            self.fit = LeastSquares(len(axes), generator.z_dim)
        self.result = None

    @torch.no_grad()
    def test_step(self, batch: dict, batch_idx: int) -> None:
        z = self.generator.latents_at(batch["indices"], int(batch["seed"])).to(self.device)
        y = self.features(z, self.generator.classes_at(batch["indices"]))
        if self.mode == "moments":
            self.pca.update(y)
        else:
            self.fit.update((y.double() - self.mean) @ self.axes.T, z)

    def on_test_epoch_end(self) -> None:
        if self.mode == "moments":
            self.result = {k: v.cpu() for k, v in self.pca.compute().items()}
        else:
            self.result = self.fit.compute().cpu()
