"""Frozen, pretrained generators behind one contract (see ``latentnav.generators.base``).

    from latentnav.generators import load_generator
    G = load_generator("demo")                  # or a StyleGAN2 / TorchScript / state-dict file
    z = G.sample(8, seed=0)                     # (8, 64) from the prior
    images = G.synthesize(z)                    # (8, 3, 32, 32) in [-1, 1]
"""

from latentnav.generators.base import FrozenGenerator
from latentnav.generators.loading import BUNDLED, load_generator, load_generator_like

__all__ = ["BUNDLED", "FrozenGenerator", "load_generator", "load_generator_like"]
