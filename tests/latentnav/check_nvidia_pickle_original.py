"""Check ``latentnav.nvidia_pickle`` against pickles made by NVIDIA's own code (run by hand; not a test).

    pip install --target /tmp/sg3deps scipy     # StyleGAN3's and ADA's augment code import scipy
    python tests/latentnav/check_nvidia_pickle_original.py [--ada DIR] [--sg3 DIR] [--scipy /tmp/sg3deps]

For each network the ORIGINAL code builds (StyleGAN2-ADA-PyTorch at d72cc7d041b42ec8e806021a205ed9349f87c6a4:
Generator skip / resnet / conditional with fp16 layers and a clamp, Discriminator, AugmentPipe; StyleGAN3
at c233a919a6faee6e36a316ddd4eddababad1adf9: its stylegan2 Generator, StyleGAN3 T and R), with random values
in every tensor, a training snapshot ``{"G", "D", "G_ema", "augment_pipe", "training_set_kwargs"}`` is
pickled with protocols 2, 3 and 4 (Python 3.7, which ADA required, wrote 3) and read back with
:func:`read_network_pickle`: every state dict must equal the original's ``state_dict()`` (names, order,
dtype, values), ``init_kwargs`` the original's, and the version the code that made it.

Shims (nothing in the networks changes): ``requests`` and ``click`` are stubs (URL and CLI helpers),
``pkg_resources.parse_version`` is ``packaging.version.parse`` (gone from recent setuptools).
"""

from __future__ import annotations

import argparse
import io
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from latentnav.nvidia_pickle import read_network_pickle  # noqa: E402


def shims() -> None:
    import packaging.version

    for name in ("requests", "click"):
        try:
            __import__(name)
        except ImportError:
            sys.modules[name] = types.ModuleType(name)
    if "pkg_resources" not in sys.modules:
        try:
            import pkg_resources  # noqa: F401
        except ImportError:
            sys.modules["pkg_resources"] = types.SimpleNamespace(parse_version=packaging.version.parse)


def forget(prefixes=("dnnlib", "torch_utils", "training", "legacy")) -> None:
    for name in list(sys.modules):
        if name.split(".")[0] in prefixes:
            del sys.modules[name]


def randomise(module: torch.nn.Module) -> None:
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            if tensor.is_floating_point():
                tensor.copy_(torch.randn_like(tensor))


def check(blob: dict, label: str, version: str) -> None:
    for protocol in (2, 3, 4):
        buffer = io.BytesIO()
        pickle.dump(blob, buffer, protocol=protocol)
        path = Path("/tmp") / f"nvidia_pickle_check_{label}_p{protocol}.pkl"
        path.write_bytes(buffer.getvalue())
        records = read_network_pickle(path)
        for key, net in blob.items():
            if not isinstance(net, torch.nn.Module):
                assert records[key] == (dict(net) if isinstance(net, dict) else net), key
                continue
            record, ref = records[key], net.state_dict()
            mine = record.state_dict()
            assert list(mine) == list(ref), (label, key, set(mine) ^ set(ref))
            for name, tensor in ref.items():
                assert mine[name].dtype == tensor.dtype and torch.equal(mine[name], tensor), (label, key, name)
            assert record.init_kwargs == net.init_kwargs, (label, key)
            by_name = dict(record.named_records())
            for name, module in net.named_modules():  # plain attributes (numpy arrays, numbers, strings) too
                for attr, value in vars(module).items():
                    if isinstance(value, (np.ndarray, np.generic, int, float, str, bool)):
                        mine_value = by_name[name].attribute(attr)
                        assert type(mine_value) is type(value) and np.array_equal(mine_value, value), (label, name, attr)
            expected = version if key != "augment_pipe" else None  # augment.py is not a network module
            assert record.version == expected, (label, key, record.version)
        path.unlink()
    print(f"{label}: {', '.join(k for k in blob)} equal to the original's (protocols 2, 3, 4)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ada", default="/work/orig/stylegan2-ada-pytorch")
    parser.add_argument("--sg3", default="/work/orig/stylegan3")
    parser.add_argument("--scipy", default="/tmp/sg3deps", help="a folder with scipy (pip install --target)")
    args = parser.parse_args()
    sys.path.append(args.scipy)
    shims()
    torch.manual_seed(0)
    small = dict(z_dim=16, w_dim=16, img_resolution=16, img_channels=3)

    sys.path.insert(0, args.ada)
    import dnnlib
    from training.augment import AugmentPipe
    from training.networks import Discriminator, Generator

    for arch, c_dim in (("skip", 0), ("resnet", 0), ("skip", 4)):
        G = Generator(c_dim=c_dim, **small, mapping_kwargs=dict(num_layers=2),
                      synthesis_kwargs=dict(channel_base=256, channel_max=32, num_fp16_res=2, conv_clamp=256,
                                            architecture=arch)).eval()
        G_ema = Generator(**G.init_kwargs).eval()
        D = Discriminator(c_dim=c_dim, img_resolution=16, img_channels=3, channel_base=256, channel_max=32)
        for net in (G, G_ema, D):
            randomise(net)
        blob = dict(G=G, D=D, G_ema=G_ema, augment_pipe=AugmentPipe(xflip=1, rotate90=1, xint=1),
                    training_set_kwargs=dnnlib.EasyDict(path="x.zip", use_labels=c_dim > 0, resolution=16))
        check(blob, f"ada-{arch}-c{c_dim}", "stylegan2-ada")
    sys.path.remove(args.ada)
    forget()

    sys.path.insert(0, args.sg3)
    from training import networks_stylegan2, networks_stylegan3

    G = networks_stylegan2.Generator(c_dim=0, **small, mapping_kwargs=dict(num_layers=2), channel_base=256,
                                     channel_max=32, num_fp16_res=0).eval()
    randomise(G)
    check({"G_ema": G}, "stylegan3-stylegan2", "stylegan3-stylegan2")
    for label, extra in (("t", {}), ("r", dict(conv_kernel=1, use_radial_filters=True, channel_base=512))):
        kwargs = dict(c_dim=3, **small, mapping_kwargs=dict(num_layers=2), channel_base=256, channel_max=32,
                      magnitude_ema_beta=0.999)
        kwargs.update(extra)
        G = networks_stylegan3.Generator(**kwargs).eval()
        randomise(G)
        check({"G_ema": G}, f"stylegan3-{label}", "stylegan3")


if __name__ == "__main__":
    main()
