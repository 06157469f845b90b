"""GANSpace (Härkönen et al., NeurIPS 2020): principal directions of sampled latents or activations.

    python -m latentnav.ganspace --config configs/ganspace/demo.yaml

- ``w`` space (StyleGAN2): PCA of w = mapping(z) over many samples; the components are directions.
- ``z`` space (any generator): PCA of an early layer's activations y(z); each component is mapped
  back to the latent by least squares (regress z on the PCA coordinates x = Vᵀ(y − μ): z ≈ U x;
  column i of U is direction i), as GANSpace does for BigGAN. The layer is read with a forward
  hook, which TorchScript refuses: a scripted generator is a one-line error here.

Both passes stream over batches (covariance and normal equations are accumulated in float64 on
the generator's device), so the number of samples is not limited by memory. A covariance wider
than ``eigh_max_width`` is solved for its top K axes only (:func:`top_eigh`).
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path
from typing import Iterable, Optional

import torch

from latentnav.errors import ConfigError, run_command


class _Captured(Exception):
    """Stops the generator's forward pass once the analysed layer's output is captured."""


class StreamingPCA:
    """Mean and covariance of rows (B, D) accumulated batch by batch (float64, on the rows' device).

    ``components``: the top axes by a full ``eigh`` up to ``eigh_max_width`` columns, by
    :func:`top_eigh` beyond (a full eigh of an 8,192-wide covariance took 791 s on 2 cores).
    """

    def __init__(self) -> None:
        self.n, self.total, self.outer = 0, None, None

    def update(self, x: torch.Tensor) -> None:
        x = x.detach().flatten(1).double()
        if self.total is None:
            self.total = x.new_zeros(x.shape[1])
            self.outer = x.new_zeros(x.shape[1], x.shape[1])
        self.n += len(x)
        self.total += x.sum(0)
        self.outer += x.T @ x

    @property
    def mean(self) -> torch.Tensor:
        return self.total / self.n

    def components(self, k: int, eigh_max_width: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
        """Top ``k`` principal axes as rows (k, D) and their variances (k,), descending."""
        if self.n < 2:
            raise ConfigError("ganspace: need at least 2 samples")
        cov = (self.outer - self.n * torch.outer(self.mean, self.mean)) / (self.n - 1)
        width = cov.shape[0]
        if width > eigh_max_width and 4 * k < width:
            values, vectors = top_eigh(cov, k)
        else:
            values, vectors = torch.linalg.eigh(cov)
            values, vectors = values.flip(0)[:k], vectors.flip(1)[:, :k]
        vectors = vectors.T
        sign = torch.sign(vectors.gather(1, vectors.abs().argmax(1, keepdim=True)))
        return vectors * sign, values


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


def _batches(G, num_samples: int, batch_size: int, seed: int, desc: str) -> Iterable[torch.Tensor]:
    """z latents (n, d) on G's device, the same for every pass (a CPU generator seeded by ``seed``)."""
    from tqdm import tqdm

    g = torch.Generator().manual_seed(seed)
    with tqdm(total=num_samples, desc=desc, unit="sample", leave=False) as bar:
        done = 0
        while done < num_samples:
            n = min(batch_size, num_samples - done)
            yield G.sample(n, generator=g)
            done += n
            bar.update(n)


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
                 layer: Optional[str] = None, seed: int = 0, eigh_max_width: int = 2048) -> dict:
    """Directions (K, d) unit rows, variances (K,) (both float32 on the CPU), the layer used, seconds.
    Runs on G's device."""
    t0 = time.perf_counter()
    if space not in ("z", "w") or space not in G.latent_spaces:
        raise ConfigError(f"space: GANSpace works in 'z' or (StyleGAN2) 'w'; {type(G).__name__} has "
                          f"{', '.join(G.latent_spaces)}; got {space!r}")
    d = G.latent_shape(space)[0]
    if not 1 <= num_directions <= d:
        raise ConfigError(f"num_directions: expected 1..{d} (the latent size), got {num_directions}")
    if space == "w":
        pca = StreamingPCA()
        for z in _batches(G, num_samples, batch_size, seed, "ganspace: PCA of w"):
            pca.update(G.to_space(z, "w"))
        directions, values = pca.components(num_directions, eigh_max_width)
        return {"directions": directions.float().cpu(), "variances": values.float().cpu(), "layer": "w",
                "seconds": time.perf_counter() - t0}
    name, module = _layer(G, layer)
    if isinstance(module, torch.jit.ScriptModule):  # TorchScript refuses forward hooks
        raise ConfigError(f"layer: {name!r} is inside a TorchScript generator, whose layers cannot be hooked; "
                          "load its weights as a state dict with generator_options {class_path: ..., init_args: ...}, "
                          "or use SeFa")
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
        for z in _batches(G, num_samples, batch_size, seed, f"ganspace: PCA of {name} (pass 1/2)"):
            pca.update(activations(z))
        axes, values = pca.components(num_directions, eigh_max_width)  # (K, D)
        # Second pass over the same samples: normal equations of z ≈ U x, x = axes (y - mean).
        xtx = axes.new_zeros(num_directions, num_directions)
        xtz = axes.new_zeros(num_directions, d)
        for z in _batches(G, num_samples, batch_size, seed, "ganspace: regression on z (pass 2/2)"):
            x = (activations(z).double() - pca.mean) @ axes.T
            xtx += x.T @ x
            xtz += x.T @ z.double()
    finally:
        handle.remove()
    u = torch.linalg.solve(xtx, xtz)  # (K, d): row i = latent direction of component i
    directions = torch.nn.functional.normalize(u, dim=1)
    return {"directions": directions.float().cpu(), "variances": values.float().cpu(), "layer": name,
            "seconds": time.perf_counter() - t0}


def main_function(generator: str = "demo", generator_options: Optional[dict] = None, space: str = "z",
                  num_directions: int = 16, num_samples: int = 20000, batch_size: int = 1000,
                  layer: Optional[str] = None, seed: int = 0, eigh_max_width: int = 2048,
                  out: str = "runs/directions/ganspace.npz", device: str = "auto") -> None:
    """Principal directions (GANSpace) written as a directions.npz with their variances.

    Args:
        generator: generator source (bundled name or file; see generators.load_generator).
        generator_options: load_generator keyword arguments (class_path, init_args, z_dim, resolution,
            trust_pickle, w_avg_samples), recorded in the output so that the edit command reuses them.
        space: z (activations of ``layer`` mapped back by least squares) or w (StyleGAN2: PCA of w).
        num_directions: K, the number of components kept.
        num_samples: latents sampled (streamed in batches).
        batch_size: latents per generator call.
        layer: module name whose output is analysed in z space (default: the first Linear/Conv layer).
        seed: sampling seed.
        eigh_max_width: widest covariance solved by a full eigh; wider ones by top-K subspace iteration.
        out: the directions.npz to write.
        device: auto (cuda when available), cpu, cuda or cuda:N.
    """
    from callbacks.direction_report import write_directions
    from generators.loading import load_generator_on, resolve_device

    G = load_generator_on(generator, generator_options, resolve_device(device))
    found = run_ganspace(G, space, num_directions, num_samples, batch_size, layer, seed, eigh_max_width)
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
