"""A tiny z -> image generator for tests: Linear, BatchNorm (whose statistics must never move), tanh."""

import torch
from torch import nn


class TinyGenerator(nn.Module):
    def __init__(self, z_dim: int = 8, resolution: int = 8) -> None:
        super().__init__()
        self.resolution = resolution
        self.fc = nn.Linear(z_dim, 3 * resolution * resolution)
        self.norm = nn.BatchNorm1d(3 * resolution * resolution)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.norm(self.fc(z)))
        return x.view(z.shape[0], 3, self.resolution, self.resolution)


def save_tiny(path, seed: int = 0, scripted: bool = True, z_dim: int = 8) -> TinyGenerator:
    torch.manual_seed(seed)
    net = TinyGenerator(z_dim)
    with torch.no_grad():
        net.norm.running_mean.normal_(0, 0.1)
        net.norm.running_var.uniform_(0.5, 1.5)
    net.eval()
    if scripted:
        torch.jit.script(net).save(str(path))
    else:
        torch.save({"state_dict": net.state_dict()}, path)
    return net


class BrokenTinyGenerator(TinyGenerator):
    """A :class:`TinyGenerator` that renders NaN for every latent whose first component is positive (a
    broken checkpoint: some latents render, some do not)."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = super().forward(z)
        return torch.where((z[:, 0] > 0).view(-1, 1, 1, 1), torch.full_like(x, float("nan")), x)
