"""GANSpace (Härkönen et al., NeurIPS 2020): principal directions of sampled latents or activations.

    latentnav ganspace --config configs/ganspace/demo.yaml

- ``w`` space (StyleGAN2): PCA of w = mapping(z) over many samples; the components are directions.
- ``z`` space (any generator): PCA of an early layer's activations y(z); each component is mapped
  back to the latent by least squares (regress z on the PCA coordinates x = Vᵀ(y − μ): z ≈ U x;
  column i of U is direction i), as GANSpace does for BigGAN. The layer is read with a forward
  hook, which TorchScript refuses: a scripted generator is a one-line error here.

Both passes are Trainer test loops over latent indices (``lightning_modules/principal_components.py``):
covariance and normal equations are torchmetrics sums in float64 on the Trainer's device, synced
across ranks, so the number of samples is limited by neither memory nor one device. A covariance
wider than ``eigh_max_width`` is solved for its top K axes only (:func:`top_eigh`).

A class-conditional generator (``--classes 239 207``, default all): sample i is in class ``classes[i % n]``, so
the components are those of the chosen classes' samples together (directions shared across classes); the
classes are recorded in the output with the generator's load options.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

import torch

from latentnav.commands.grammar import Command
from latentnav.errors import ConfigError
from latentnav.lightning_modules.principal_components import StreamingPCA, principal_axes, top_eigh  # noqa: F401 (re-exported)


def _layer(G, name: Optional[str]) -> tuple[str, torch.nn.Module]:
    modules = dict(G.named_modules())
    name = name if name is not None else G.feature_layer  # the family's own first layer on z, if it names one
    if name is not None:
        if name not in modules:
            candidates = [n for n, m in modules.items() if n and not list(m.children())][:12]
            raise ConfigError(f"layer: {name!r} is not a module of {type(G).__name__}; e.g. {', '.join(candidates)}")
        return name, modules[name]
    from latentnav.generators.adapters import _weight_layer

    layer = _weight_layer(G)
    if layer is None:
        raise ConfigError("layer: the generator has no Linear/Conv layer to read activations from; give layer")
    return next(n for n, m in modules.items() if m is layer), layer


def run_ganspace(G, space: str = "z", num_directions: int = 16, num_samples: int = 20000, batch_size: int = 1000,
                 layer: Optional[str] = None, seed: int = 0, eigh_max_width: int = 2048, trainer=None) -> dict:
    """Directions (K, d) unit rows, variances (K,) (both float32 on the CPU), the layer used, seconds, and
    whether this process is rank 0. Sample i is ``G.latents_at([i], seed)``; each pass is a
    ``trainer.test`` loop (``make_trainer()`` by default: its devices, ranks and precision)."""
    from latentnav.datamodules.latent_indices import LatentIndicesDataModule
    from latentnav.commands.measuring import make_trainer
    from latentnav.lightning_modules.principal_components import Features, PrincipalComponentPass

    t0 = time.perf_counter()
    if space not in ("z", "w", "s") or space not in G.latent_spaces:
        raise ConfigError(f"space: GANSpace works in 'z' or (StyleGAN2) 'w' or 's'; {type(G).__name__} has "
                          f"{', '.join(G.latent_spaces)}; got {space!r}")
    d = G.latent_shape(space)[0]
    if not 1 <= num_directions <= d:
        raise ConfigError(f"num_directions: expected 1..{d} (the latent size), got {num_directions}")
    if num_samples < 2:
        raise ConfigError(f"num_samples: expected at least 2, got {num_samples}")
    name = space
    if space == "z":
        name, module = _layer(G, layer)
        if isinstance(module, torch.jit.ScriptModule):  # TorchScript refuses forward hooks
            raise ConfigError(f"layer: {name!r} is inside a TorchScript generator, whose layers cannot be hooked; "
                              "load its weights as a state dict with generator_options {class_path: ..., "
                              "init_args: ...}, or use SeFa")
    features = Features(G, None if space != "z" else name, space)
    with torch.no_grad():
        width = features(G.latents_at([0], seed), G.classes_at([0])).shape[1]
    trainer = trainer or make_trainer()
    indices = LatentIndicesDataModule(num=num_samples, seed=seed, batch_size=batch_size)
    moments = PrincipalComponentPass(G, features.layer, width, "moments", space=space)
    trainer.test(moments, datamodule=indices, verbose=False)
    axes, values = principal_axes(moments.result["covariance"], num_directions, eigh_max_width)  # (K, D)
    if space != "z":  # PCA in the latent space itself: the axes are the directions
        directions = axes
    else:
        # Second pass over the same samples: least squares z ≈ U x, x = axes (y - mean).
        regression = PrincipalComponentPass(G, features.layer, width, "regression", axes, moments.result["mean"])
        trainer.test(regression, datamodule=indices, verbose=False)
        directions = torch.nn.functional.normalize(regression.result, dim=1)  # row i: component i in z
    return {"directions": directions.float().cpu(), "variances": values.float().cpu(), "layer": name,
            "seconds": time.perf_counter() - t0, "is_global_zero": trainer.is_global_zero}


def main_function(generator: str = "demo", generator_options: Optional[dict] = None, space: str = "z",
                  num_directions: int = 16, num_samples: int = 20000, batch_size: int = 1000,
                  layer: Optional[str] = None, seed: int = 0, eigh_max_width: int = 2048,
                  out: str = "runs/directions/ganspace.npz", accelerator: str = "auto", devices: int | str = 1,
                  strategy: str = "auto", num_nodes: int = 1, precision: str = "32-true",
                  classes: Optional[list[int]] = None) -> None:
    """Principal directions (GANSpace) written as a directions.npz with their variances.

    Args:
        generator: generator source (bundled name or file; see latentnav.generators.load_generator).
        generator_options: load_generator keyword arguments (class_path, init_args, z_dim, resolution,
            trust_pickle, w_avg_samples), recorded in the output so that the edit command reuses them.
        space: z (activations of ``layer`` mapped back by least squares), w (StyleGAN2: PCA of w) or s (StyleGAN2:
            PCA of the style vectors, Wu et al. 2021).
        num_directions: K, the number of components kept.
        num_samples: latents sampled (streamed in batches).
        batch_size: latents per generator call.
        layer: module name whose output is analysed in z space (default: the first Linear/Conv layer).
        seed: sampling seed.
        eigh_max_width: widest covariance solved by a full eigh; wider ones by top-K subspace iteration.
        out: the directions.npz to write (by rank 0).
        accelerator, devices, strategy, num_nodes, precision: the Trainer of the two passes (e.g. ``--devices 4
            --strategy ddp``: the samples are sliced across the processes and the sums synced).
        classes: a class-conditional generator's class ids (the load option ``classes``; default all): sample i
            is in class ``classes[i % n]``.
    """
    from latentnav.directions_file import write_directions
    from latentnav.generators.loading import load_generator_on
    from latentnav.commands.measuring import make_trainer, merge_classes

    trainer = make_trainer(accelerator, devices, strategy, num_nodes, precision)
    # Loaded on the CPU; the Trainer moves it to its device.
    G = load_generator_on(generator, merge_classes(generator_options, classes), torch.device("cpu"))
    found = run_ganspace(G, space, num_directions, num_samples, batch_size, layer, seed, eigh_max_width, trainer)
    if not found["is_global_zero"]:
        return
    path = write_directions(Path(out), found["directions"], [f"pc{i:02d}" for i in range(num_directions)],
                            f"GANSpace ({space}, {found['layer']})", space, G.identity, seconds=found["seconds"],
                            eigenvalues=found["variances"].numpy())
    print(f"latentnav: GANSpace on {found['layer']} over {num_samples} samples in {found['seconds']:.1f} s; "
          f"written to {path}")


COMMAND = Command(main_function, prog="latentnav ganspace")
main = COMMAND.main


if __name__ == "__main__":
    sys.exit(main())
