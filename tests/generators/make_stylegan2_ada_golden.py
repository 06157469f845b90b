"""Make the NVIDIA StyleGAN2 golden fixtures with the ORIGINAL code (run once; CPU, float32).

    python tests/generators/make_stylegan2_ada_golden.py [--original DIR] [--original-sg3 DIR]

Originals at pinned commits: stylegan2-ada-pytorch d72cc7d041b42ec8e806021a205ed9349f87c6a4
(``--original``, default /work/orig/stylegan2-ada-pytorch; ``training/networks.py``) and stylegan3
c233a919a6faee6e36a316ddd4eddababad1adf9 (``--original-sg3``, default /work/orig/stylegan3;
``training/networks_stylegan2.py``). Each repository runs in its own child process (both define the
packages ``dnnlib``, ``torch_utils`` and ``training``).

Cases (tiny channels, random weights; biases, noise strengths, noise_const and w_avg randomised; a conv
clamp low enough to fire, counted in ``clamp_hits``):

- ``stylegan2_ada_skip``: 32 px, skip, unconditional, num_fp16_res 2 (ignored in fp32); the pickle is a
  training snapshot: ``{"G", "D", "G_ema", "augment_pipe": None, "training_set_kwargs"}`` (G_ema differs
  from G), keyword dicts as ``dnnlib.EasyDict`` as the training code passes them;
- ``stylegan2_ada_resnet``, ``stylegan2_ada_orig``: 16 px, ``{"G_ema"}``;
- ``stylegan2_ada_cond``: 16 px, skip, c_dim 4 (class embedding), ``{"G_ema"}``;
- ``stylegan3_sg2``: StyleGAN3's networks_stylegan2 with its own defaults (conv_clamp 256, num_fp16_res
  4, w_avg_beta 0.998 left out of init_kwargs; ``fused_modconv_default='inference_only'`` as its
  training sets it); two channels of the last conv get a bias of +-400, so that the default clamp of 256
  fires there (the to-RGB weights of those channels are scaled by 1e-3, keeping the image near [-1, 1]).

Each pickle is written with ``pickle.dump`` of the original's persistent classes (the module source is
embedded, as in the releases' pickles); next to it ``<case>_golden.pt`` (plain tensors, weights_only)
holds the original's outputs: z (3, z_dim) (classes (3,) for the conditional net), the mapped w+
(psi 1) and the truncated w+ (psi 0.7, cutoff 2), images for batch 3 and batch 1 with noise const
(fused, the original's eval choice), const with fused_modconv=False, psi 0.7 / cutoff 2, noise none,
noise random after ``torch.manual_seed(123)``, a style-mixed w+ input; for the conditional net also one
z under classes 0, 1, 2; ``fc0_effective`` (the mapping's first layer as applied) and SeFa's eigen-pairs:
genforce/sefa ``factorize_weight`` for StyleGAN2 takes every synthesis layer's style weight (``style.weight.T``)
and the LAST to-RGB's, concatenates, normalises each column, and eigen-decomposes ``W W^T``; here the
same from the original network's affines (conv layers in order, then the last ``torgb``), with the eigen
decomposition in float64 (numpy), sorted by eigenvalue descending.

Compatibility shims (no change to the arithmetic): ``requests`` is stubbed (``dnnlib.util`` imports it
for URL downloads, unused here); ``pkg_resources`` (gone from recent setuptools) is a stub whose
``parse_version`` is ``packaging.version.parse`` (StyleGAN3's ``torch_utils.ops`` check torch's version); the original runs with ``force_fp32=True`` (ADA would otherwise run
its fp16 blocks in float16 on the CPU); StyleGAN3's forces float32 off CUDA by itself.
"""

from __future__ import annotations

import argparse
import copy
import io
import pickle
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import torch

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
COMMITS = {"ada": "stylegan2-ada-pytorch d72cc7d041b42ec8e806021a205ed9349f87c6a4",
           "sg3": "stylegan3 c233a919a6faee6e36a316ddd4eddababad1adf9"}


def import_original(root: Path):
    sys.modules.setdefault("requests", types.ModuleType("requests"))
    if "pkg_resources" not in sys.modules:  # StyleGAN3's torch_utils compares torch versions with it
        from packaging.version import parse

        sys.modules["pkg_resources"] = types.SimpleNamespace(parse_version=parse)
    sys.path.insert(0, str(root))
    import dnnlib  # noqa: F401
    from torch_utils.ops import bias_act
    return bias_act


class ClampCounter:
    """Counts the elements the original's bias_act clamps (|value before the clamp| > clamp)."""

    def __init__(self, bias_act_module) -> None:
        self.module, self.original, self.hits, self.active = bias_act_module, bias_act_module.bias_act, 0, False
        bias_act_module.bias_act = self

    def __call__(self, x, b=None, dim=1, act="linear", alpha=None, gain=None, clamp=None, impl="cuda"):
        if self.active and clamp is not None:
            raw = self.original(x, b, dim=dim, act=act, alpha=alpha, gain=gain, clamp=None, impl=impl)
            self.hits += int((raw.abs() > clamp).sum())
        return self.original(x, b, dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp, impl=impl)


@torch.no_grad()
def randomise(G, seed: int, big_bias: float = 0.0) -> None:
    g = torch.Generator().manual_seed(seed)
    for name, t in list(G.named_parameters()) + list(G.named_buffers()):
        if name.endswith("bias") or "noise" in name or name.endswith("w_avg"):
            t.copy_(torch.randn(t.shape, generator=g) * (0.5 if "noise_strength" in name else 0.3))
        if name.endswith("embed.weight"):
            t.mul_(1.5)
    if big_bias:  # two channels of the last conv far beyond a large default clamp, seen faintly by the to-RGB
        last = getattr(G.synthesis, f"b{G.img_resolution}")
        last.conv1.bias[:2] = torch.tensor([big_bias, -big_bias])
        last.torgb.weight[:, :2] *= 1e-3


def sefa_eigen(G) -> dict:
    """genforce/sefa's factorize_weight for StyleGAN2 ('all' layers) on the original's affines."""
    syn = G.synthesis
    names, weights = [], []
    for res in syn.block_resolutions:
        block = getattr(syn, f"b{res}")
        for conv in ("conv0", "conv1"):
            if hasattr(block, conv):
                names.append(f"b{res}.{conv}")
                weights.append(getattr(block, conv).affine.weight.T.detach().numpy())
    last = getattr(syn, f"b{syn.block_resolutions[-1]}")
    names.append(f"b{syn.block_resolutions[-1]}.torgb")
    weights.append(last.torgb.affine.weight.T.detach().numpy())
    weight = np.concatenate(weights, axis=1).astype(np.float32)
    weight = weight / np.linalg.norm(weight, axis=0, keepdims=True)
    values, vectors = np.linalg.eig(weight.astype(np.float64).dot(weight.T.astype(np.float64)))
    order = np.argsort(-values.real)
    values, vectors = values.real[order], vectors.real.T[order]
    gaps = np.diff(values[::-1])[::-1] / values[0]
    return {"sefa_layers": names, "sefa_values": torch.from_numpy(values.copy()).float(),
            "sefa_vectors": torch.from_numpy(vectors.copy()).float(), "sefa_min_gap": float(np.abs(gaps).min())}


@torch.no_grad()
def outputs(G, counter: ClampCounter, sg3: bool) -> dict:
    """Everything the test compares, from the original ``G`` (eval, CPU)."""
    kw = {} if sg3 else {"force_fp32": True}
    g = torch.Generator().manual_seed(7)
    z = torch.randn(3, G.z_dim, generator=g)
    classes = torch.tensor([0, 1, 2]) if G.c_dim else None
    c = torch.nn.functional.one_hot(classes, G.c_dim).float() if G.c_dim else None
    ws = G.mapping(z, c)
    counter.active, counter.hits = True, 0
    images = G.synthesis(ws, noise_mode="const", **kw)
    counter.active = False
    ws_trunc = G.mapping(z, c, truncation_psi=0.7, truncation_cutoff=2)
    other = G.mapping(torch.randn(3, G.z_dim, generator=g), c)
    ws_mix = torch.cat([ws[:, :3], other[:, 3:]], dim=1)
    torch.manual_seed(123)
    images_random = G(z, c, noise_mode="random", **kw)
    out = {
        "z": z, "ws": ws, "ws_trunc": ws_trunc, "ws_mix": ws_mix,
        "images": images, "clamp_hits": counter.hits,
        "images_b1": G(z[:1], None if c is None else c[:1], noise_mode="const", **kw),
        "images_nonfused": G(z, c, noise_mode="const", fused_modconv=False, **kw),
        "images_trunc": G(z, c, truncation_psi=0.7, truncation_cutoff=2, noise_mode="const", **kw),
        "images_none": G(z, c, noise_mode="none", **kw),
        "images_random": images_random, "random_seed": 123,
        "images_mix": G.synthesis(ws_mix, noise_mode="const", **kw),
        "fc0_effective": (G.mapping.fc0.weight * G.mapping.fc0.weight_gain)[:, : G.z_dim].detach().clone(),
        "num_ws": G.num_ws,
    }
    assert not torch.equal(G(z, c, noise_mode="random", **kw), images_random)
    if G.c_dim:
        z0 = z[:1].repeat(3, 1)
        out["classes"] = classes
        out["z_one"] = z0
        out["images_per_class"] = G(z0, c, noise_mode="const", **kw)
    out.update(sefa_eigen(G))
    return out


def plain(obj):
    """EasyDicts and tuples as plain dicts and lists (what torch.load weights_only reads)."""
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


def save(case: str, snapshot: dict, golden: dict, meta: dict) -> None:
    FIXTURES.mkdir(parents=True, exist_ok=True)
    pkl, pt = FIXTURES / f"{case}.pkl", FIXTURES / f"{case}_golden.pt"
    buf = io.BytesIO()
    pickle.dump(snapshot, buf)
    pkl.write_bytes(buf.getvalue())
    torch.save({"format": "latentnav.stylegan2_nvidia_golden/1", "case": case, **meta, **golden}, pt)
    for p in (pkl, pt):
        size = p.stat().st_size
        assert size <= 2 * 2**20, f"{p} is {size} bytes (> 2 MiB)"
        print(f"wrote {p.name} ({size / 1024:.0f} KiB)")


def make_ada(root: Path) -> None:
    bias_act = import_original(root)
    counter = ClampCounter(bias_act)
    import dnnlib
    from training.networks import Discriminator, Generator

    def generator(res, arch, c_dim=0, clamp=1.0, fp16=0, seed=0):
        torch.manual_seed(seed)
        G = Generator(z_dim=32, c_dim=c_dim, w_dim=32, img_resolution=res, img_channels=3,
                      mapping_kwargs=dnnlib.EasyDict(num_layers=3),
                      synthesis_kwargs=dnnlib.EasyDict(channel_base=512, channel_max=32, num_fp16_res=fp16,
                                                       conv_clamp=clamp, architecture=arch)).eval()
        randomise(G, seed)
        return G

    meta = lambda G: {"commit": COMMITS["ada"], "version": "stylegan2-ada", "init_kwargs": plain(G.init_kwargs)}

    G = generator(32, "skip", fp16=2, clamp=1.0, seed=1)
    G_ema = copy.deepcopy(G).eval()
    with torch.no_grad():
        for p in G.parameters():  # the training G drifts away from G_ema
            p.add_(torch.randn_like(p) * 0.05)
    torch.manual_seed(11)
    D = Discriminator(c_dim=0, img_resolution=32, img_channels=3, channel_base=128, channel_max=8)
    snapshot = {"G": G, "D": D, "G_ema": G_ema, "augment_pipe": None,
                "training_set_kwargs": {"class_name": "training.dataset.ImageFolderDataset", "resolution": 32}}
    save("stylegan2_ada_skip", snapshot, outputs(G_ema, counter, False), meta(G_ema))
    for case, res, arch, c_dim, seed in (("stylegan2_ada_resnet", 16, "resnet", 0, 2),
                                         ("stylegan2_ada_orig", 16, "orig", 0, 3),
                                         ("stylegan2_ada_cond", 16, "skip", 4, 4)):
        G = generator(res, arch, c_dim=c_dim, clamp=1.0, seed=seed)
        save(case, {"G_ema": G}, outputs(G, counter, False), meta(G))


def make_sg3(root: Path) -> None:
    bias_act = import_original(root)
    counter = ClampCounter(bias_act)
    import dnnlib
    from training.networks_stylegan2 import Generator

    torch.manual_seed(5)
    G = Generator(z_dim=32, c_dim=0, w_dim=32, img_resolution=16, img_channels=3,
                  mapping_kwargs=dnnlib.EasyDict(num_layers=2), channel_base=512, channel_max=32,
                  fused_modconv_default="inference_only").eval()
    randomise(G, 5, big_bias=400.0)
    golden = outputs(G, counter, True)
    save("stylegan3_sg2", {"G_ema": G}, golden,
         {"commit": COMMITS["sg3"], "version": "stylegan3-stylegan2", "init_kwargs": plain(G.init_kwargs)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--original", type=Path, default=Path("/work/orig/stylegan2-ada-pytorch"))
    parser.add_argument("--original-sg3", type=Path, default=Path("/work/orig/stylegan3"))
    parser.add_argument("--only", choices=("ada", "sg3"), help=argparse.SUPPRESS)  # the child processes
    args = parser.parse_args()
    if args.only == "ada":
        return make_ada(args.original)
    if args.only == "sg3":
        return make_sg3(args.original_sg3)
    for which in ("ada", "sg3"):
        subprocess.run([sys.executable, __file__, "--only", which, "--original", str(args.original),
                        "--original-sg3", str(args.original_sg3)], check=True)


if __name__ == "__main__":
    main()
