"""GANSpace (Härkönen et al., NeurIPS 2020): principal directions of sampled latents or activations.

    python -m latentnav.ganspace --config configs/ganspace/demo.yaml

- ``w`` space (StyleGAN2): PCA of w = mapping(z) over many samples; the components are directions.
- ``z`` space (any generator): PCA of an early layer's activations y(z); each component is mapped
  back to the latent by least squares (regress z on the PCA coordinates x = Vᵀ(y − μ): z ≈ U x;
  column i of U is direction i), as GANSpace does for BigGAN.

Both passes stream over batches (covariance and normal equations are accumulated in float64), so
the number of samples is not limited by memory.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Iterable, Optional

import torch

from latentnav.errors import ConfigError, run_command


class _Captured(Exception):
    """Stops the generator's forward pass once the analysed layer's output is captured."""


class StreamingPCA:
    """Mean and covariance of rows (B, D) accumulated batch by batch; ``components`` by eigh."""

    def __init__(self) -> None:
        self.n, self.total, self.outer = 0, None, None

    def update(self, x: torch.Tensor) -> None:
        x = x.detach().flatten(1).double().cpu()
        if self.total is None:
            self.total, self.outer = torch.zeros(x.shape[1], dtype=torch.float64), torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64)
        self.n += len(x)
        self.total += x.sum(0)
        self.outer += x.T @ x

    @property
    def mean(self) -> torch.Tensor:
        return self.total / self.n

    def components(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Top ``k`` principal axes as rows (k, D) and their variances (k,), descending."""
        if self.n < 2:
            raise ConfigError("ganspace: need at least 2 samples")
        cov = (self.outer - self.n * torch.outer(self.mean, self.mean)) / (self.n - 1)
        values, vectors = torch.linalg.eigh(cov)
        values, vectors = values.flip(0)[:k], vectors.flip(1)[:, :k].T
        sign = torch.sign(vectors.gather(1, vectors.abs().argmax(1, keepdim=True)))
        return vectors * sign, values


def _batches(G, num_samples: int, batch_size: int, seed: int) -> Iterable[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    done = 0
    while done < num_samples:
        n = min(batch_size, num_samples - done)
        yield G.sample(n, generator=g)
        done += n


def _layer(G, name: Optional[str]) -> tuple[str, torch.nn.Module]:
    modules = dict(G.named_modules())
    if name is not None:
        if name not in modules:
            candidates = [n for n, m in modules.items() if n and not list(m.children())][:12]
            raise ConfigError(f"layer: {name!r} is not a module of {type(G).__name__}; e.g. {', '.join(candidates)}")
        return name, modules[name]
    from generators.adapters import _weight_layer

    layer = _weight_layer(G)
    if layer is None:
        raise ConfigError("layer: the generator has no Linear/Conv layer to read activations from; give layer")
    return next(n for n, m in modules.items() if m is layer), layer


@torch.no_grad()
def run_ganspace(G, space: str = "z", num_directions: int = 16, num_samples: int = 20000, batch_size: int = 1000,
                 layer: Optional[str] = None, seed: int = 0) -> dict:
    """Directions (K, d) unit rows, variances (K,), the layer used, seconds."""
    t0 = time.perf_counter()
    if space not in ("z", "w") or space not in G.latent_spaces:
        raise ConfigError(f"space: GANSpace works in 'z' or (StyleGAN2) 'w'; {type(G).__name__} has "
                          f"{', '.join(G.latent_spaces)}; got {space!r}")
    d = G.latent_shape(space)[0]
    if not 1 <= num_directions <= d:
        raise ConfigError(f"num_directions: expected 1..{d} (the latent size), got {num_directions}")
    if space == "w":
        pca = StreamingPCA()
        for z in _batches(G, num_samples, batch_size, seed):
            pca.update(G.to_space(z, "w"))
        directions, values = pca.components(num_directions)
        return {"directions": directions.float(), "variances": values.float(), "layer": "w",
                "seconds": time.perf_counter() - t0}
    name, module = _layer(G, layer)
    captured: list[torch.Tensor] = []

    def hook(module, inputs, output):
        captured.append(output.detach().flatten(1))
        raise _Captured  # the rest of the generator is not needed

    handle = module.register_forward_hook(hook)
    try:
        def activations(z: torch.Tensor) -> torch.Tensor:
            captured.clear()
            try:
                G.synthesize(z, "z")
            except _Captured:
                pass
            return captured[0]

        pca = StreamingPCA()
        for z in _batches(G, num_samples, batch_size, seed):
            pca.update(activations(z))
        axes, values = pca.components(num_directions)  # (K, D)
        # Second pass over the same samples: normal equations of z ≈ U x, x = axes (y - mean).
        xtx = torch.zeros(num_directions, num_directions, dtype=torch.float64)
        xtz = torch.zeros(num_directions, d, dtype=torch.float64)
        for z in _batches(G, num_samples, batch_size, seed):
            x = (activations(z).double().cpu() - pca.mean) @ axes.T
            xtx += x.T @ x
            xtz += x.T @ z.double().cpu()
    finally:
        handle.remove()
    u = torch.linalg.solve(xtx, xtz)  # (K, d): row i = latent direction of component i
    directions = torch.nn.functional.normalize(u, dim=1)
    return {"directions": directions.float(), "variances": values.float(), "layer": name,
            "seconds": time.perf_counter() - t0}


def main_function(generator: str = "demo", space: str = "z", num_directions: int = 16, num_samples: int = 20000,
                  batch_size: int = 1000, layer: Optional[str] = None, seed: int = 0,
                  out: str = "runs/directions/ganspace.npz") -> None:
    """Principal directions (GANSpace) written as a directions.npz with their variances.

    Args:
        generator: generator source (bundled name or file; see generators.load_generator).
        space: z (activations of ``layer`` mapped back by least squares) or w (StyleGAN2: PCA of w).
        num_directions: K, the number of components kept.
        num_samples: latents sampled (streamed in batches).
        batch_size: latents per generator call.
        layer: module name whose output is analysed in z space (default: the first Linear/Conv layer).
        seed: sampling seed.
        out: the directions.npz to write.
    """
    from callbacks.direction_report import write_directions
    from generators import load_generator

    G = load_generator(generator)
    found = run_ganspace(G, space, num_directions, num_samples, batch_size, layer, seed)
    path = write_directions(Path(out), found["directions"], [f"pc{i:02d}" for i in range(num_directions)],
                            f"GANSpace ({space}, {found['layer']})", space, G.identity, seconds=found["seconds"],
                            eigenvalues=found["variances"].numpy())
    print(f"latentnav: GANSpace on {found['layer']} over {num_samples} samples in {found['seconds']:.1f} s; "
          f"written to {path}")


def main(argv: list[str] | None = None) -> int:
    from jsonargparse import CLI

    return run_command(lambda: CLI(main_function, args=argv, as_positional=False))


if __name__ == "__main__":
    sys.exit(main())
