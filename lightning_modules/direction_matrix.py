"""The unsupervised method's learnable direction matrix A (d x K)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import orthogonal

from latentnav.errors import ConfigError

KINDS = ("unit", "orthonormal", "free")


class DirectionMatrix(nn.Module):
    """K directions in a d-dimensional latent space, the columns of A (d, K).

    ``kind`` (the variants of Voynov & Babenko, 2020):

    - ``unit``: free columns, normalised to unit length when used;
    - ``orthonormal``: A has orthonormal columns by construction (torch's orthogonal
      parametrisation, a matrix exponential of a skew-symmetric matrix), not by a
      penalty; needs K <= d;
    - ``free``: columns used as they are (their length is learned too).

    ``forward(k, eps)``: direction indices (B,) long and shifts (B,) -> latent shifts
    eps * A[:, k], shape (B, d).
    """

    def __init__(self, latent_dim: int, num_directions: int, kind: Literal["unit", "orthonormal", "free"] = "unit",
                 init_scale: float = 1.0) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ConfigError(f"model.direction_type: expected one of {', '.join(KINDS)}, got {kind!r}")
        if kind == "orthonormal" and num_directions > latent_dim:
            raise ConfigError(f"model.num_directions: an orthonormal matrix has at most latent_dim={latent_dim} "
                              f"directions, got {num_directions}")
        self.latent_dim, self.num_directions, self.kind = latent_dim, num_directions, kind
        # Stored (K, d) so that the orthogonal parametrisation makes the rows (= columns of A) orthonormal.
        self.linear = nn.Linear(latent_dim, num_directions, bias=False)
        if kind == "orthonormal":
            orthogonal(self.linear, "weight", orthogonal_map="matrix_exp")
        else:
            with torch.no_grad():
                self.linear.weight.copy_(init_scale * nn.functional.normalize(torch.randn(num_directions, latent_dim), dim=1))

    def rows(self) -> torch.Tensor:
        """Directions as used, (K, d): A transposed."""
        w = self.linear.weight
        return nn.functional.normalize(w, dim=1) if self.kind == "unit" else w

    @property
    def matrix(self) -> torch.Tensor:
        """A, shape (d, K)."""
        return self.rows().T

    def forward(self, k: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        return eps[:, None] * self.rows()[k]

    def directions(self) -> torch.Tensor:
        """Unit directions for editing, (K, d), detached."""
        return nn.functional.normalize(self.rows().detach(), dim=1)

    @property
    def parametrized(self) -> bool:
        return parametrize.is_parametrized(self.linear)
