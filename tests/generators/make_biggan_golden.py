"""Make the BigGAN golden fixtures with the ORIGINAL code of both layouts (run once; only the fixtures ship).

    .venv/bin/python tests/generators/make_biggan_golden.py \
        [--original-deep /work/orig/pytorch-pretrained-BigGAN] \
        [--original-pytorch /work/orig/BigGAN-PyTorch] [--original-gld /work/orig/GANLatentDiscovery]

Pinned commits (recorded in the fixtures too):
    pytorch-pretrained-BigGAN 1e18aed2dff75db51428f13b940c38b923eb4a3d
    BigGAN-PyTorch            98459431a5d618d644d54cd1e9fceb1e5045648d
    GANLatentDiscovery        5ca8d67bce8dcb9a51de07c98e2d3a0d6ab69fe3

Writes, in ``tests/fixtures/``:

- ``biggan_deep-pytorch_model.bin`` + ``biggan_deep-config.json``: a tiny BigGAN-deep (32 px, channel_width 4,
  z 16, 5 classes, self-attention at 16 px, 51 truncation slots) in the release's own format (the
  original's ``state_dict()`` saved by ``torch.save``; its ``BigGANConfig.to_json_string``), named as the
  release names its files; ``biggan_deep_golden.pt``: the original's images at truncation 1.0, 0.4 and 0.412
  (between two statistics slots), batch 3 (classes 0, 3, 4) and 1 (class 2), its first layer's effective
  (spectrally normalised) weight on z and SeFa's eigenvalues / vectors of it.
- ``biggan_pytorch-G_ema.pth``: a tiny BigGAN-PyTorch generator (32 px, G_ch 4, hierarchical z 16 = 4 chunks
  of 4, shared embedding 8, 5 classes, attention at 16 px, BN_eps 1e-4, SN_eps 1e-6) as ``torch.save(G.state_dict())``;
  ``biggan_pytorch_golden.pt``: its images (batch 3 and 1, several classes), its first layer ``W_()`` and SeFa
  eigen of it, the same images from GANLatentDiscovery's copy of the generator (asserted equal here: one
  layout), and three more small networks as state dicts with their images: ``mybn`` (no shared embedding,
  not hierarchical, 2 singular vectors, no attention, images with and without standing statistics),
  ``cross_replica`` (synchronised BN, attention at 32 px), ``plain`` (G_param not SN, hierarchical) and
  ``nonorm`` (norm_style nonorm: conditional BNs without statistics).

Randomised beyond the originals' initialisation (which leaves them at 0 or 1): every batch-norm statistic
(each truncation slot of BigGAN-deep separately), learned BN gains / offsets, attention gammas, biases, class
embeddings, spectral-norm vectors (torch's ``weight_u`` / ``weight_v`` after one power step and a perturbation;
BigGAN-PyTorch's ``u{i}``, ``sv{i}``), mybn accumulation counters; the last BN's statistics of BigGAN-PyTorch
are set near those of its actual input (times noise), so that tanh does not saturate.

Shims (no arithmetic touched): ``pytorch_pretrained_biggan/file_utils.py`` imports boto3, botocore, requests
and ``utils.py`` scipy.stats, none installed here nor used by the model: empty stand-in modules are put in
``sys.modules`` before the package is imported. BigGAN-PyTorch's and GANLatentDiscovery's code runs as is.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
COMMITS = {"pytorch-pretrained-BigGAN": "1e18aed2dff75db51428f13b940c38b923eb4a3d",
           "BigGAN-PyTorch": "98459431a5d618d644d54cd1e9fceb1e5045648d",
           "GANLatentDiscovery": "5ca8d67bce8dcb9a51de07c98e2d3a0d6ab69fe3"}
CLASSES3, CLASS1 = [0, 3, 4], [2]


def sefa_eigen(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SeFa's release (``factorize_weight``): weight (d, out) with unit columns, eig of W Wᵀ; sorted descending,
    eigenvectors as rows."""
    weight = a.T.astype(np.float64)
    weight = weight / np.linalg.norm(weight, axis=0, keepdims=True)
    values, vectors = np.linalg.eig(weight.dot(weight.T))
    order = np.argsort(-values.real)
    return values.real[order].astype(np.float32), vectors.real[:, order].T.astype(np.float32)


def stub_modules() -> None:
    """Stand-ins for packages the pytorch-pretrained-biggan package imports but the model never uses."""
    boto3 = types.ModuleType("boto3")
    botocore = types.ModuleType("botocore")
    exceptions = types.ModuleType("botocore.exceptions")
    exceptions.ClientError = type("ClientError", (Exception,), {})
    botocore.exceptions = exceptions
    requests = types.ModuleType("requests")
    scipy = types.ModuleType("scipy")
    stats = types.ModuleType("scipy.stats")
    stats.truncnorm = None  # only truncated_noise_sample uses it; not called here
    scipy.stats = stats
    for name, module in {"boto3": boto3, "botocore": botocore, "botocore.exceptions": exceptions,
                         "requests": requests, "scipy": scipy, "scipy.stats": stats}.items():
        sys.modules.setdefault(name, module)


# ------------------------------------------------------------------------------------------------ BigGAN-deep
def randomise_torch_sn(module: torch.nn.Module, gen: torch.Generator) -> None:
    """torch spectral_norm vectors: v one power step from a random u, u = normalize(W v + noise) (not converged)."""
    w = module.weight_orig.detach().reshape(module.weight_orig.shape[0], -1)
    u = F.normalize(torch.randn(w.shape[0], generator=gen), dim=0)
    v = F.normalize(w.t() @ u, dim=0)
    u = F.normalize(w @ v + 0.3 * torch.randn(w.shape[0], generator=gen) * (w @ v).norm() / w.shape[0] ** 0.5, dim=0)
    assert float(u @ (w @ v)) > 0.1 * float((w @ v).norm())
    module.weight_u.copy_(u)
    module.weight_v.copy_(v)


@torch.no_grad()
def make_deep(original: Path) -> None:
    stub_modules()
    sys.path.insert(0, str(original))
    ppb = importlib.import_module("pytorch_pretrained_biggan")
    model_mod = importlib.import_module("pytorch_pretrained_biggan.model")
    config = ppb.BigGANConfig(output_dim=32, z_dim=16, class_embed_dim=16, channel_width=4, num_classes=5,
                              layers=[(False, 16, 16), (True, 16, 8), (True, 8, 4), (False, 4, 2), (True, 2, 1)],
                              attention_layer_position=3, eps=1e-4, n_stats=51)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    model = model_mod.BigGAN(config)
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            p.copy_(0.1 * torch.randn(p.shape, generator=gen))
        elif name.endswith("gamma"):
            p.copy_(0.5 + 0.3 * torch.randn(p.shape, generator=gen))
        elif name == "generator.bn.weight":
            p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))
        elif name == "embeddings.weight":
            p.copy_(torch.randn(p.shape, generator=gen))
    for m in model.modules():
        if hasattr(m, "weight_u"):
            randomise_torch_sn(m, gen)
        if isinstance(m, model_mod.BigGANBatchNorm):
            m.running_means.copy_(0.3 * torch.randn(m.running_means.shape, generator=gen))
            m.running_vars.copy_(0.3 + 1.2 * torch.rand(m.running_vars.shape, generator=gen))
    model.eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}

    stem = FIXTURES / "biggan_deep"
    torch.save(model.state_dict(), f"{stem}-pytorch_model.bin")
    Path(f"{stem}-config.json").write_text(config.to_json_string(), encoding="utf-8")

    z3 = torch.randn(3, 16, generator=gen)
    z1 = torch.randn(1, 16, generator=gen)
    one_hot = lambda c: F.one_hot(torch.tensor(c), 5).float()  # noqa: E731  (the release's one_hot_from_int)
    out = {"format": "latentnav.biggan_deep_golden/1", "commit": COMMITS["pytorch-pretrained-BigGAN"],
           "z3": z3, "classes3": torch.tensor(CLASSES3), "z1": z1, "classes1": torch.tensor(CLASS1),
           "truncations": [1.0, 0.4, 0.412]}
    for psi in out["truncations"]:
        out[f"images3_{psi}"] = model(z3, one_hot(CLASSES3), psi)
        out[f"images1_{psi}"] = model(z1, one_hot(CLASS1), psi)
    a = model.generator.gen_z.weight[:, :16].clone()  # the eval hook's weight_orig / sigma, columns reading z
    out["first_layer"] = a
    out["sefa_values"], out["sefa_vectors"] = map(torch.from_numpy, sefa_eigen(a.numpy()))
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items()), "evaluation moved the state"
    torch.save(out, FIXTURES / "biggan_deep_golden.pt")


# ------------------------------------------------------------------------------------------------ BigGAN-PyTorch
def randomise_biggan_pytorch(G: torch.nn.Module, layers, gen: torch.Generator) -> None:
    for name, p in G.named_parameters():
        if name.endswith("gamma"):
            p.copy_(0.5 + 0.3 * torch.randn(p.shape, generator=gen))
        elif name.startswith("output_layer.0."):
            p.copy_((1.0 if name.endswith("gain") else 0.0) + 0.2 * torch.randn(p.shape, generator=gen))
        elif name.endswith("bias") and p.ndim == 1:
            p.copy_(0.1 * torch.randn(p.shape, generator=gen))
        elif name.startswith("shared.") or (p.ndim == 2 and (".gain." in name or ".bias." in name)):
            p.copy_(0.3 * torch.randn(p.shape, generator=gen))  # embeddings and the ccbn gain / bias layers
    for name, b in G.named_buffers():
        leaf = name.rsplit(".", 1)[-1]
        if leaf.startswith("u") and leaf[1:].isdigit():
            b.copy_(torch.randn(b.shape, generator=gen))
        elif leaf.startswith("sv") and leaf[2:].isdigit():
            b.copy_(1 + torch.rand(b.shape, generator=gen))
        elif leaf in ("stored_mean", "running_mean"):
            b.copy_(0.3 * torch.randn(b.shape, generator=gen))
        elif leaf in ("stored_var", "running_var"):
            b.copy_(0.05 + 1.2 * torch.rand(b.shape, generator=gen))
        elif leaf == "accumulation_counter":
            b.fill_(3.0)
        elif leaf == "num_batches_tracked":
            b.fill_(7)
    for m in G.modules():  # mybn's sums: counter-times larger, as accumulated standing statistics are
        if isinstance(m, layers.myBN):
            m.stored_mean.mul_(3.0)
            m.stored_var.mul_(3.0)


def calibrate_output_bn(G, layers, z: torch.Tensor, classes, gen: torch.Generator) -> None:
    """Set the last BN's statistics near those of its actual input (times noise), so that tanh does not saturate
    and the golden images stay sensitive to every op."""
    seen = []
    handle = G.output_layer[0].register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    images(G, z, classes)
    handle.remove()
    x = seen[0]
    mean = x.mean((0, 2, 3)) + 0.1 * x.std((0, 2, 3)) * torch.randn(x.shape[1], generator=gen)
    var = x.var((0, 2, 3)) * (2 + torch.rand(x.shape[1], generator=gen))
    bn = G.output_layer[0]
    if bn.cross_replica:
        bn.bn.running_mean.copy_(mean)
        bn.bn.running_var.copy_(var)
        bn.gain.copy_(0.2 * torch.randn(bn.gain.shape, generator=gen))  # added, not multiplied, in this layout
    elif bn.mybn:
        bn.bn.stored_mean.copy_(mean * bn.bn.accumulation_counter)
        bn.bn.stored_var.copy_(var * bn.bn.accumulation_counter)
    else:
        bn.stored_mean.copy_(mean)
        bn.stored_var.copy_(var)


def build(BigGAN, **kwargs):
    base = dict(G_ch=4, dim_z=16, bottom_width=4, resolution=32, G_attn="16", n_classes=5, num_G_SVs=1,
                G_shared=True, shared_dim=8, hier=True, cross_replica=False, mybn=False,
                G_activation=torch.nn.ReLU(inplace=True), BN_eps=1e-4, SN_eps=1e-6, G_param="SN",
                norm_style="bn", no_optim=True)
    base.update(kwargs)
    return BigGAN.Generator(**base), base


def images(G, z, classes):
    y = torch.tensor(classes)
    return G(z, G.shared(y))


@torch.no_grad()
def make_pytorch(original: Path, gld: Path) -> None:
    sys.path.insert(0, str(original))
    BigGAN = importlib.import_module("BigGAN")
    layers = importlib.import_module("layers")
    torch.manual_seed(2)
    gen = torch.Generator().manual_seed(3)
    G, kwargs = build(BigGAN)
    randomise_biggan_pytorch(G, layers, gen)
    G.eval()
    calibrate_output_bn(G, layers, torch.randn(8, G.dim_z, generator=gen), [0, 1, 2, 3, 4, 0, 1, 2], gen)
    state = {k: v.clone() for k, v in G.state_dict().items()}
    torch.save(G.state_dict(), FIXTURES / "biggan_pytorch-G_ema.pth")
    z3, z1 = torch.randn(3, G.dim_z, generator=gen), torch.randn(1, G.dim_z, generator=gen)
    out = {"format": "latentnav.biggan_pytorch_golden/1", "commit": COMMITS["BigGAN-PyTorch"],
           "gld_commit": COMMITS["GANLatentDiscovery"],
           "options": {"bn_eps": kwargs["BN_eps"], "sn_eps": kwargs["SN_eps"]},
           "z3": z3, "classes3": torch.tensor(CLASSES3), "z1": z1, "classes1": torch.tensor(CLASS1),
           "images3": images(G, z3, CLASSES3), "images1": images(G, z1, CLASS1),
           "images3_half": images(G, 0.5 * z3, CLASSES3)}
    a = G.linear.W_().clone()  # (out, z chunk): eval's one power step, not stored
    out["first_layer"] = a
    out["sefa_values"], out["sefa_vectors"] = map(torch.from_numpy, sefa_eigen(a.numpy()))
    assert all(torch.equal(state[k], v) for k, v in G.state_dict().items()), "evaluation moved the state"

    # GANLatentDiscovery's copy: built as its make_big_gan builds it, the same file loaded strictly
    sys.path.insert(0, str(gld))
    gld_biggan = importlib.import_module("models.BigGAN.BigGAN")
    G2 = gld_biggan.Generator(**dict(kwargs, skip_init=True))
    G2.load_state_dict(torch.load(FIXTURES / "biggan_pytorch-G_ema.pth", map_location="cpu"), strict=True)
    G2.eval()
    out["gld_images3"] = images(G2, z3, CLASSES3)
    assert torch.equal(out["gld_images3"], out["images3"]), "GANLatentDiscovery's BigGAN differs"

    variants = {"mybn": dict(G_shared=False, hier=False, mybn=True, num_G_SVs=2, G_attn="0", dim_z=12, shared_dim=0),
                "cross_replica": dict(hier=False, cross_replica=True, G_attn="32", shared_dim=0, dim_z=10),
                "plain": dict(G_param="none", G_attn="8", shared_dim=6),
                "nonorm": dict(norm_style="nonorm", hier=False, shared_dim=0, dim_z=8, G_attn="0")}
    out["variants"] = {}
    for i, (name, changes) in enumerate(variants.items()):
        torch.manual_seed(10 + i)
        Gv, kw = build(BigGAN, **changes)
        randomise_biggan_pytorch(Gv, layers, gen)
        Gv.eval()
        calibrate_output_bn(Gv, layers, torch.randn(8, Gv.dim_z, generator=gen), [0, 1, 2, 3, 4, 0, 1, 2], gen)
        z = torch.randn(3, Gv.dim_z, generator=gen)
        entry = {"state_dict": {k: v.clone() for k, v in Gv.state_dict().items()}, "z": z,
                 "classes": torch.tensor(CLASSES3), "images": images(Gv, z, CLASSES3),
                 "options": {"bn_eps": kw["BN_eps"], "sn_eps": kw["SN_eps"]}}
        if name == "mybn":
            for m in Gv.modules():
                if isinstance(m, layers.myBN):
                    m.accumulate_standing = True
            entry["images_standing"] = images(Gv, z, CLASSES3)
        out["variants"][name] = entry
    torch.save(out, FIXTURES / "biggan_pytorch_golden.pt")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--original-deep", type=Path, default=Path("/work/orig/pytorch-pretrained-BigGAN"))
    parser.add_argument("--original-pytorch", type=Path, default=Path("/work/orig/BigGAN-PyTorch"))
    parser.add_argument("--original-gld", type=Path, default=Path("/work/orig/GANLatentDiscovery"))
    args = parser.parse_args()
    FIXTURES.mkdir(parents=True, exist_ok=True)
    make_deep(args.original_deep)
    make_pytorch(args.original_pytorch, args.original_gld)
    for path in sorted(FIXTURES.glob("biggan_*")):
        size = path.stat().st_size
        assert size <= 2 * 1024 * 1024, f"{path} is {size} bytes"
        print(f"wrote {path} ({size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
