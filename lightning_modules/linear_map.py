"""The supervised latent -> attribute map whose rows are edit directions."""

from __future__ import annotations

import torch
from torch import nn


class LinearMap(nn.Module):
    """y = z Wᵀ + b with W of shape (K, d) and b of shape (K,).

    ``forward``: latents (B, d) -> attribute scores (B, K). Row i of W is the edit direction
    of attribute i: z' = z + alpha * w_i / |w_i| raises attribute i's score.
    """

    def __init__(self, latent_dim: int, num_attributes: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_attributes, latent_dim) / latent_dim**0.5)
        self.bias = nn.Parameter(torch.zeros(num_attributes))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.weight.T + self.bias

    def directions(self) -> torch.Tensor:
        """Unit-norm rows of W: (K, d)."""
        return nn.functional.normalize(self.weight.detach(), dim=1)

    def orthogonality(self, squared: bool = False) -> torch.Tensor:
        """‖W Wᵀ − I‖_F (or its square): 0 exactly when the rows are orthonormal.

        The plain norm has a kink at 0 and a gradient of constant size elsewhere, so with a
        weight λ it acts almost like a switch: below a threshold the MSE term wins and the
        rows stay correlated, above it they snap to orthonormal. The squared norm fades out
        near the optimum and trades the two terms off smoothly.
        """
        gram = self.weight @ self.weight.T
        residual = gram - torch.eye(len(gram), device=gram.device, dtype=gram.dtype)
        value = residual.pow(2).sum()
        return value if squared else value.clamp_min(1e-12).sqrt()
