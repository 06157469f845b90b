"""SeFa (Shen & Zhou, CVPR 2021): closed-form directions from the weights that act first on the latent.

    latentnav sefa --config configs/sefa/demo.yaml
    latentnav sefa --generator ffhq.pt --space w --layers coarse --out sefa_coarse.npz
    latentnav sefa --generator g.pt --generator_options '{"class_path": "mypkg.G", "init_args": {"z_dim": 128}}'

For weights A_1..A_m (each (out_i, d), h_i = A_i latent) SeFa finds the unit directions n
that change the first layers' outputs most: the top eigenvectors of AᵀA, A = [A_1; ...; A_m].

The weights do not depend on the class: a class-conditional generator's directions are shared across classes;
``--classes`` is recorded with the generator's load options, so that the edit command renders the same classes.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import Optional, Sequence, Union

import torch

from latentnav.commands.grammar import Command
from latentnav.errors import ConfigError

GROUPS = ("all", "coarse", "middle", "fine")


def sefa(weights: Sequence[torch.Tensor], num_directions: int, normalize_rows: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Top ``num_directions`` eigenvectors of AᵀA as rows (K, d) and their eigenvalues (K,), descending.

    ``normalize_rows``: scale each row of A (one output unit's weights) to unit length first,
    as the authors' release does, so that no layer dominates by its weight scale alone.
    Each eigenvector's sign is fixed (largest-magnitude entry positive) for reproducibility.
    """
    if not weights:
        raise ConfigError("sefa: no weight matrices selected")
    d = weights[0].shape[1]
    bad = [tuple(w.shape) for w in weights if w.ndim != 2 or w.shape[1] != d]
    if bad:
        raise ConfigError(f"sefa: every weight must be (out, {d}); got {bad[0]}")
    a = torch.cat([w.detach().double() for w in weights])
    if normalize_rows:
        a = a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)
    if not 1 <= num_directions <= d:
        raise ConfigError(f"num_directions: expected 1..{d} (the latent size), got {num_directions}")
    values, vectors = torch.linalg.eigh(a.T @ a)  # ascending
    values, vectors = values.flip(0)[:num_directions], vectors.flip(1)[:, :num_directions].T
    sign = torch.sign(vectors.gather(1, vectors.abs().argmax(1, keepdim=True)))
    return (vectors * sign).float().cpu(), values.float().cpu()


def layer_resolution(name: str) -> int:
    """Output resolution of a StyleGAN2 style-consuming layer named as in ``modulation_layers``."""
    if name in ("conv1", "to_rgb1"):
        return 4
    m = re.fullmatch(r"(convs|to_rgbs)\.(\d+)", name)
    if not m:
        raise ConfigError(f"layers: {name!r} is not a StyleGAN2 synthesis layer")
    j = int(m.group(2))
    return 2 ** ((j // 2 if m.group(1) == "convs" else j) + 3)


def select_layers(named: list[tuple[str, torch.Tensor]],
                  layers: Union[str, Sequence[Union[int, str]]],
                  release: Optional[list[tuple[str, int]]] = None) -> list[tuple[str, torch.Tensor]]:
    """Pick from ``latent_weights`` output. For StyleGAN2's styles the layers are numbered as in the
    authors' release (genforce/sefa ``factorize_weight``): the convolutions in order (``conv1``,
    ``convs.0``, ...), then the LAST to-RGB layer; ``all`` is that whole list (so it includes the last
    to-RGB, as the release's ``all`` does); ``coarse`` 4-8 px, ``middle`` 16-32 px, ``fine`` 64 px and
    up pick from it by output resolution; a list holds indices into it or layer names (any layer,
    e.g. ``to_rgbs.1``). ``release``: the generator's own SeFa choice with output resolutions
    (``FrozenGenerator.sefa_pool``: NVIDIA's and genforce's StyleGANs), used in place of the rule above.
    Other generators have one latent-facing layer: ``all``."""
    by_name = dict(named)
    is_style = all(re.fullmatch(r"conv1|convs\.\d+|to_rgb1|to_rgbs\.\d+", n) for n, _ in named)
    resolution_of = layer_resolution
    if release is not None:
        is_style = True
        pool = [(n, by_name[n]) for n, _ in release]
        resolution_of = dict(release).__getitem__
    elif is_style:
        convs = [(n, w) for n, w in named if not n.startswith("to_rgb")]
        rgbs = [(n, w) for n, w in named if n.startswith("to_rgb")]
        pool = convs + [max(rgbs, key=lambda nw: layer_resolution(nw[0]))] if rgbs else convs
    else:
        pool = named
    if isinstance(layers, str):
        if layers not in GROUPS:
            raise ConfigError(f"layers: expected one of {', '.join(GROUPS)} or a list of indices or names, "
                              f"got {layers!r}")
        if layers == "all":
            return pool
        if not is_style:
            raise ConfigError(f"layers: {layers!r} needs a generator with per-layer styles (StyleGAN2 in w space)")
        lo, hi = {"coarse": (4, 8), "middle": (16, 32), "fine": (64, 1 << 30)}[layers]
        chosen = [(n, w) for n, w in pool if lo <= resolution_of(n) <= hi]
        if not chosen:
            raise ConfigError(f"layers: this generator has no {layers} layers")
        return chosen
    if not layers:
        raise ConfigError("layers: an empty list; give indices or layer names")
    chosen = []
    for item in layers:
        if isinstance(item, str) and not item.lstrip("-").isdigit():
            if item not in by_name:
                raise ConfigError(f"layers: {item!r} is not a latent-facing layer; expected one of {', '.join(by_name)}")
            chosen.append((item, by_name[item]))
        elif 0 <= int(item) < len(pool):
            chosen.append(pool[int(item)])
        else:
            raise ConfigError(f"layers: indices must be in 0..{len(pool) - 1}, got {list(layers)}")
    return chosen


def run_sefa(G, space: str = "z", layers: Union[str, Sequence[Union[int, str]]] = "all", num_directions: int = 16,
             normalize_rows: bool = True) -> dict:
    """SeFa on a :class:`latentnav.generators.FrozenGenerator`; returns directions, eigenvalues, layer names, seconds."""
    t0 = time.perf_counter()
    chosen = select_layers(G.latent_weights(space), layers, G.sefa_pool(space))
    directions, values = sefa([w for _, w in chosen], num_directions, normalize_rows)
    return {"directions": directions, "eigenvalues": values, "layers": [n for n, _ in chosen],
            "seconds": time.perf_counter() - t0}


def main_function(generator: str = "demo", generator_options: Optional[dict] = None, space: str = "z",
                  layers: Union[str, list[Union[int, str]]] = "all", num_directions: int = 16, normalize_rows: bool = True,
                  out: str = "runs/directions/sefa.npz", device: str = "auto",
                  classes: Optional[list[int]] = None) -> None:
    """Closed-form directions (SeFa) written as a directions.npz with their eigenvalues.

    Args:
        generator: generator source (bundled name or file; see latentnav.generators.load_generator).
        generator_options: load_generator keyword arguments (class_path, init_args, z_dim, resolution,
            trust_pickle, w_avg_samples), recorded in the output so that the edit command reuses them.
        space: latent space (z; w for StyleGAN2).
        layers: all, coarse, middle, fine, or a list of indices (the convolutions, then the last to-RGB) or layer names.
        num_directions: K, the number of top eigenvectors kept.
        normalize_rows: scale each weight row to unit length first (the authors' release).
        out: the directions.npz to write.
        device: auto (cuda when available), cpu, cuda or cuda:N.
        classes: a class-conditional generator's class ids (the load option ``classes``, recorded in the output).
    """
    from latentnav.directions_file import write_directions
    from latentnav.commands.measuring import merge_classes
    from latentnav.generators.loading import load_generator_on, resolve_device

    G = load_generator_on(generator, merge_classes(generator_options, classes), resolve_device(device))
    found = run_sefa(G, space, layers, num_directions, normalize_rows)
    label = layers if isinstance(layers, str) else ",".join(map(str, layers))
    path = write_directions(Path(out), found["directions"], [f"sefa{i:02d}" for i in range(num_directions)],
                            f"SeFa ({space}, layers {label})", space, G.identity, seconds=found["seconds"],
                            eigenvalues=found["eigenvalues"].numpy())
    top = ", ".join(f"{v:.3g}" for v in found["eigenvalues"][:5].tolist())
    print(f"latentnav: SeFa on {len(found['layers'])} layer(s) in {found['seconds'] * 1000:.1f} ms; "
          f"top eigenvalues {top}; written to {path}")


COMMAND = Command(main_function, prog="latentnav sefa")
main = COMMAND.main


if __name__ == "__main__":
    sys.exit(main())
