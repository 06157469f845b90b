"""latentnav: interpretable, controllable directions in the latent space of a frozen GAN.

The Lightning pieces live in the top-level packages ``lightning_modules``, ``datamodules``
and ``callbacks``; this package holds what they share (errors) and the command line.
"""

__version__ = "0.1.0"
