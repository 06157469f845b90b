"""latentnav: interpretable, controllable directions in the latent space of a frozen GAN.

Layers, each importing only from the ones before it; the folder is the layer (``tests/test_layers.py``
walks the imports):

1. foundation: the modules directly in ``latentnav/`` (errors, safe loading, bundled assets, atomic
   files, the directions / latents / annotation-store file formats, image helpers, the frozen mixin);
2. ``latentnav.generators``: the frozen-generator contract and its adapters;
3. ``latentnav.lightning_modules``: nn.Modules, metrics and LightningModules;
4. ``latentnav.datamodules``; 5. ``latentnav.callbacks``;
6. ``latentnav.commands``: what a user runs (``latentnav`` / ``python -m latentnav``, ``train.py``).

The repository keeps the layout its user asked for (``generators/``, ``lightning_modules/``,
``datamodules/``, ``callbacks/`` at the root), while the installed wheel puts them under
``latentnav`` (``package-dir`` in ``pyproject.toml``) so that they never clash with other
distributions' top-level ``generators`` or ``callbacks``. In a checkout the root is added to this
package's search path, so ``latentnav.generators`` is the root folder ``generators/`` there too.
"""

from pathlib import Path as _Path

__version__ = "0.1.0"

_root = _Path(__file__).resolve().parent.parent
if (_root / "pyproject.toml").is_file() and (_root / "lightning_modules" / "__init__.py").is_file():
    __path__.append(str(_root))  # noqa: F821 (a package's __path__): a checkout, not an installed wheel
