"""``latentnav import-boundaries``: InterFaceGAN's published boundary files as a latentnav directions file.

    latentnav import-boundaries --generator pggan_celebahq.pth --boundaries b/pggan_celebahq_smile_boundary.npy \\
        b/pggan_celebahq_age_boundary.npy --out runs/directions/interfacegan.npz

Each ``.npy`` (1 x d) becomes one named direction of the generator it was fitted on; the file records that
generator's identity, so ``edit`` and ``compare`` load it as they load any directions file.
"""

from __future__ import annotations

import sys
from typing import Optional

import numpy as np

from latentnav.commands.grammar import Command
from latentnav.errors import ConfigError


def main_function(boundaries: list[str], generator: str, out: str = "runs/directions/interfacegan.npz",
                  space: Optional[str] = None, generator_options: Optional[dict] = None) -> None:
    """Import InterFaceGAN boundaries (``*_boundary.npy``) as one directions file.

    Args:
        boundaries: the ``.npy`` files (one direction each, named by the file stem).
        generator: the generator they were fitted on (e.g. InterFaceGAN's ``pggan_celebahq.pth``).
        out: the directions.npz to write.
        space: z or w; default from the file names (``_w_``: w).
        generator_options: load_generator keyword arguments.
    """
    import torch

    from latentnav.generators.loading import load_generator_on
    from latentnav.interfacegan_boundaries import import_boundaries, read_boundary, boundary_space

    G = load_generator_on(generator, generator_options, torch.device("cpu"))
    wanted = space or (boundary_space(boundaries[0]) if boundaries else "z")
    if wanted not in G.latent_spaces:
        raise ConfigError(f"{boundaries[0]}: a {wanted}-space boundary, but {generator} has spaces "
                          f"{', '.join(G.latent_spaces)}")
    size = int(np.prod(G.latent_shape(wanted)))
    for path in boundaries:
        if read_boundary(path).shape[0] != size:
            raise ConfigError(f"{path}: {read_boundary(path).shape[0]} values, but {generator}'s {wanted} latents "
                              f"have {size}: the boundary belongs to another generator")
    written = import_boundaries(boundaries, G.identity, wanted, out)
    print(f"wrote {written}: {len(boundaries)} InterFaceGAN boundaries ({wanted} space) of {generator}")


COMMAND = Command(main_function, prog="latentnav import-boundaries")
main = COMMAND.main


if __name__ == "__main__":
    sys.exit(main())
