"""TensorFlow-era StyleGAN2 pickles (``stylegan2-ffhq-config-f.pkl`` and kin, StyleGAN2-ADA's TF release)
read as data, without TensorFlow and without running anything.

Such a file is ``pickle.dump((G, D, Gs))`` of three ``dnnlib.tflib.network.Network`` objects. Each
pickles as that class plus a state dict: ``version``, ``name``, ``static_kwargs`` (the keyword arguments
the network was built with), ``components`` (sub-networks by name: ``mapping``, ``synthesis``),
``build_module_src`` / ``build_func_name`` (the Python text of the TF graph builder and its function:
TF's loader executes the text; here it is kept as text only), ``variables`` (``(name, numpy array)``
pairs in creation order). The class is a record, :class:`latentnav.nvidia_pickle.TFNetwork`; the
only other globals allowed are numpy's array reconstruction and plain containers.

``generators/tf_stylegan2.py`` turns Gs into the StyleGAN2-ADA-PyTorch generator's init_kwargs and
state dict.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from latentnav.errors import DataFormatError
from latentnav.nvidia_pickle import ALLOWED_GLOBALS, TFNetwork, load_restricted, sniff_network_pickle

__all__ = ["TFNetwork", "TF_ALLOWED_GLOBALS", "read_tf_network_pickle", "collect_variables"]

# No torch in a TF pickle: only the Network record, numpy arrays and plain containers.
TF_ALLOWED_GLOBALS = {key: value for key, value in ALLOWED_GLOBALS.items()
                      if key[0] in ("dnnlib.tflib.network", "dnnlib.util", "collections", "builtins", "__builtin__",
                                    "_codecs") or key[0].startswith("numpy")}


def read_tf_network_pickle(path: str | os.PathLike) -> dict:
    """``{"G": TFNetwork, "D": TFNetwork, "Gs": TFNetwork}`` of a TF StyleGAN2 pickle; any other file,
    a refused global, or a truncated one is one DataFormatError line naming the file."""
    if sniff_network_pickle(path) == "persistence":
        raise DataFormatError(f"{path}: a PyTorch (StyleGAN2-ADA / StyleGAN3) network pickle, not a TensorFlow one")
    blob = load_restricted(path, TF_ALLOWED_GLOBALS)
    if isinstance(blob, tuple) and len(blob) == 3 and all(isinstance(x, TFNetwork) for x in blob):
        nets = dict(zip(("G", "D", "Gs"), blob))
    elif isinstance(blob, TFNetwork):  # a lone exported network (some tools save Gs alone)
        nets = {"Gs": blob}
    else:
        raise DataFormatError(f"{path}: not a TensorFlow StyleGAN2 pickle (it holds a {type(blob).__name__}, "
                              "expected the tuple (G, D, Gs) of dnnlib.tflib.network.Network)")
    for key, net in nets.items():
        _check_network(net, path, key)
    return nets


def _check_network(net: Any, path, where: str) -> None:
    if not isinstance(net, TFNetwork):
        raise DataFormatError(f"{path}: {where} is a {type(net).__name__}, not a TensorFlow Network")
    if not isinstance(net.version, int) or net.version < 4:
        raise DataFormatError(f"{path}: {where} is a TensorFlow Network of format version {net.version!r} "
                              "(StyleGAN2's are 4 or later)")
    if not isinstance(net.static_kwargs, dict) or not isinstance(net.components, dict) or not isinstance(net.variables, list):
        raise DataFormatError(f"{path}: {where} has a malformed Network state")
    for item in net.variables:
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)
                and isinstance(item[1], (np.ndarray, np.generic))) or np.asarray(item[1]).dtype.hasobject:
            raise DataFormatError(f"{path}: {where} has a variable that is not a (name, numeric array) pair")
    for name, component in net.components.items():
        _check_network(component, path, f"{where}/{name}")


def collect_variables(net: TFNetwork) -> dict[str, np.ndarray]:
    """Every variable of ``net`` and its components, named by scope (``mapping/Dense0/weight``)."""
    out: dict[str, np.ndarray] = {}

    def visit(prefix: str, node: TFNetwork) -> None:
        for name, value in node.variables:
            out[prefix + name] = np.asarray(value)
        for name, component in node.components.items():
            visit(prefix + name + "/", component)

    visit("", net)
    return out
