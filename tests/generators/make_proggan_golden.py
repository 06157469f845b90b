"""Make ``tests/fixtures/proggan_golden.pt`` with GANLatentDiscovery's OWN ProgGAN code (run once, ~1 min, CPU).

    python tests/generators/make_proggan_golden.py [--original /work/orig/GANLatentDiscovery]

Original: GANLatentDiscovery (Voynov & Babenko) at commit 5ca8d67bce8dcb9a51de07c98e2d3a0d6ab69fe3,
``models/ProgGAN/model.py`` built and loaded by ``models/gan_load.py:make_proggan`` (``ProgGenerator()``,
``load_state_dict(torch.load(path))``, ``dim_z = [512, 1, 1]``, ``gen_shifted``). The script calls
``make_proggan`` itself on a state-dict file it writes, with one change that leaves the arithmetic alone:
``nn.Module.cuda`` is replaced by the identity while it runs (the original moves the model to the GPU;
this runs on the CPU, fp32). The network is fixed-width (1024 px, 23.07 M parameters), so its weights are not
shipped: they come from a seeded stream that the test regenerates without the original code
(``latentnav.generators.proggan.seeded_state_dict`` implements the same stream):

    g = torch.Generator().manual_seed(WEIGHT_SEED); for each state-dict key in order,
    r = torch.randn(shape, generator=g); conv.weight = r; wscale.scale = gain / sqrt(fan_in) * (1 + 0.1 r)
    (fan_in = in * k * k of that layer's conv, gain sqrt(2), 1 for the output layer); wscale.b = 0.1 r.

The fixture stores per-key float64 sums of those weights (the test checks its stream against them first) and
the original's outputs, batch 1 and batch 3 each (latents given; z fed as (B, 512, 1, 1) as the original does):

- ``full``: ``G(z)`` at 1024 px. The images are too big to ship (12 MiB a batch), so: the values at 4096
  pixel positions (``torch.randperm(1024 * 1024, generator=seed POSITION_SEED)[:4096]``, sorted, flat y * 1024 + x;
  all 3 channels), each image's per-channel means, and its min and max (the output is linear: not clamped).
- ``prefix``: ``G.features[:6](z)``, the 16 px, 512-channel map after six blocks (blocks 0-5: the 4x4 start
  from the latent, two upsamplings): 4096 seeded positions of the flattened (512 * 16 * 16) map and the
  per-channel means. Cheap (the fast test).
- ``tail``: ``G.output(G.features[6:](x))`` for x (B, 512, 2, 2) given: blocks 6-17 and the to-RGB layer,
  every upsampling and channel change, at 1/8 of the full resolution: (B, 3, 128, 128) stored whole.
- ``sefa``: SeFa on the first layer as the authors' release factorises PGGAN's (sefa commit 0d16060,
  ``utils.py:factorize_weight``: the layer-0 kernel ``flip(2, 3).permute(1, 0, 2, 3).flatten(1)``, each
  column (output unit) normalised, eigen-decomposition of ``W W^T``), here of the original's
  ``features.0`` kernel times its ``wscale.scale`` (a positive constant: normalising removes it), computed
  in float64 with ``eigh`` (the release uses float32 ``np.linalg.eig``; the script prints how far that is),
  sorted descending, each vector's sign fixed so its largest-magnitude entry is positive: all 512
  eigenvalues and the top ``SEFA_K`` vectors (the full set would be 1 MiB).
"""

import argparse
import math
import sys
import tempfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

COMMIT = "5ca8d67bce8dcb9a51de07c98e2d3a0d6ab69fe3"
OUT = Path(__file__).resolve().parents[1] / "fixtures" / "proggan_golden.pt"
WEIGHT_SEED = 23
LATENT_SEED = 7
POSITION_SEED = 11
N_POSITIONS = 4096
SEFA_K = 64


def stream_weights(original_state: dict) -> "OrderedDict[str, torch.Tensor]":
    """The documented stream, in the original's state-dict order (shapes from the original)."""
    g = torch.Generator().manual_seed(WEIGHT_SEED)
    fan_in, out = {}, OrderedDict()
    for key, t in original_state.items():
        r = torch.randn(tuple(t.shape), generator=g, dtype=torch.float32)
        owner = key.rsplit(".", 2)[0]
        if key.endswith("conv.weight"):
            fan_in[owner] = t.shape[1] * t.shape[2] * t.shape[3]
            out[key] = r
        elif key.endswith("wscale.scale"):
            out[key] = ((1.0 if owner == "output" else math.sqrt(2.0)) / math.sqrt(fan_in[owner])) * (1.0 + 0.1 * r)
        elif key.endswith("wscale.b"):
            out[key] = 0.1 * r
        else:
            raise SystemExit(f"unexpected key {key} in the original's state dict")
    return out


def positions(n_total: int, seed: int) -> torch.Tensor:
    return torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))[:N_POSITIONS].sort().values


def sefa_release_recipe(kernel: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(eigenvalues descending float64, eigenvectors as rows float64, the release's own float32 eig values)."""
    weight = kernel.flip(2, 3).permute(1, 0, 2, 3).flatten(1).numpy()  # (512 in, 8192 out)
    w64 = weight.astype(np.float64)
    w64 = w64 / np.linalg.norm(w64, axis=0, keepdims=True)
    values, vectors = np.linalg.eigh(w64.dot(w64.T))
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order].T
    sign = np.sign(vectors[np.arange(len(vectors)), np.abs(vectors).argmax(1)])
    vectors = vectors * sign[:, None]
    w32 = weight.astype(np.float32)  # what factorize_weight does, for the record
    w32 = w32 / np.linalg.norm(w32, axis=0, keepdims=True)
    release_values = np.sort(np.linalg.eig(w32.dot(w32.T))[0].real)[::-1]
    return values, vectors, release_values


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--original", type=Path, default=Path("/work/orig/GANLatentDiscovery"))
    args = parser.parse_args()
    sys.path.insert(0, str(args.original))
    from models.ProgGAN.model import Generator as OriginalGenerator
    from models.gan_load import make_proggan

    state = stream_weights(OriginalGenerator().state_dict())
    cuda = torch.nn.Module.cuda
    torch.nn.Module.cuda = lambda self, *a, **k: self  # CPU run; the original calls model.cuda()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            torch.save(state, Path(tmp) / "proggan.pth")
            G = make_proggan(str(Path(tmp) / "proggan.pth"))
    finally:
        torch.nn.Module.cuda = cuda
    assert list(G.dim_z) == [512, 1, 1]

    g = torch.Generator().manual_seed(LATENT_SEED)
    latents = {b: torch.randn(b, 512, generator=g) for b in (1, 3)}
    tail_inputs = {b: torch.randn(b, 512, 2, 2, generator=g) for b in (1, 3)}
    pix = positions(1024 * 1024, POSITION_SEED)
    feat = positions(512 * 16 * 16, POSITION_SEED + 1)

    out = {
        "format": "latentnav.proggan_golden/1",
        "original": f"GANLatentDiscovery {COMMIT} models/ProgGAN/model.py via models/gan_load.py:make_proggan",
        "weight_seed": WEIGHT_SEED,
        "weight_keys": list(state),
        "weight_sums": torch.tensor([float(v.double().sum()) for v in state.values()], dtype=torch.float64),
        "weight_abs_sums": torch.tensor([float(v.double().abs().sum()) for v in state.values()], dtype=torch.float64),
        "pixel_positions": pix, "prefix_positions": feat, "prefix_blocks": 6,
    }
    for b in (1, 3):
        z = latents[b]
        images = G(z.view(b, 512, 1, 1))
        prefix = G.features[:6](z.view(b, 512, 1, 1))
        out[f"batch{b}"] = {
            "z": z.clone(),
            "full_pixels": images.flatten(2)[:, :, pix].clone(),
            "full_means": images.mean(dim=(2, 3)),
            "full_min": images.amin(dim=(1, 2, 3)), "full_max": images.amax(dim=(1, 2, 3)),
            "prefix_values": prefix.flatten(1)[:, feat].clone(),
            "prefix_means": prefix.mean(dim=(2, 3)),
            "tail_input": tail_inputs[b].clone(),
            "tail": G.output(G.features[6:](tail_inputs[b])).clone(),
        }
        print(f"batch {b}: image range [{float(images.min()):.3f}, {float(images.max()):.3f}]")

    first = G.features[0]
    values, vectors, release_values = sefa_release_recipe(first.conv.weight * first.wscale.scale)
    print(f"sefa: float64 eigh vs the release's float32 eig: max |d eigenvalue| "
          f"{np.abs(values - release_values).max():.2e} (largest {values[0]:.3f})")
    out["sefa"] = {"eigenvalues": torch.from_numpy(values.copy()),
                   "vectors": torch.from_numpy(vectors[:SEFA_K].copy()), "k": SEFA_K}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    torch.save(out, OUT)
    size = OUT.stat().st_size
    print(f"wrote {OUT} ({size / 1024:.0f} KiB)")
    assert size <= 2 * 1024 * 1024, "fixture over 2 MiB"


if __name__ == "__main__":
    main()
