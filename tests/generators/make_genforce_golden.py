"""Make ``tests/fixtures/genforce_*`` from genforce's OWN model code and SeFa's OWN ``factorize_weight`` (run once).

    .venv/bin/python tests/generators/make_genforce_golden.py \\
        [--original /work/orig/genforce] [--sefa /work/orig/sefa] [--interfacegan /work/orig/interfacegan]

Pinned commits: genforce 197feee82101b78266521c8470648bbb9b7f31f4, sefa 0d16060208506f5a68df8826bd581a7e0cf0cb4c,
interfacegan 8da3fc0fe2a1d4c88dc5f9bee65e8077093ad2bb. Everything runs on the CPU in fp32.

For each small network (random weights; biases, noise strengths, the mean w and StyleGAN's constant input
randomised, since genforce starts them at 0 or 1) the script writes the checkpoint in genforce's own format,
``torch.save({"generator": G.state_dict(), "generator_smooth": Gs.state_dict()})`` with different weights in
the two (the outputs are Gs's, plus one image set of G), as ``genforce_<name>.pth``, and the original's
outputs as ``genforce_<name>_golden.pt`` (plain tensors; weights-only loadable):

- ``pggan`` (16 px, z 32): images of z for batch 3 and 1, with lod 0.5, of G; SeFa; InterFaceGAN's
  ``preprocess`` of raw z (its PGGAN latent preprocessing, run through InterFaceGAN's own method);
- ``pggan_cond`` (8 px, 3 labels): images for one-hot labels;
- ``stylegan`` (16 px, z 32, w 32): w, w+, images for z (batch 3 and 1), psi 0.7 on the first 4 rows,
  psi 0.5 on all rows, a given w, a given w+, stored / random (seeded) / zero noise, fused upsampling
  (genforce built with ``fused_scale=True``), G; SeFa for all layers and for layers 1-2;
- ``stylegan_cond`` (8 px, 3 labels, no constant input, channel noise, one w per layer);
- ``stylegan2`` (16 px, skip): as ``stylegan`` (no fused variant); SeFa (its last index is the last to-RGB);
- ``stylegan2_origin`` (8 px) and ``stylegan2ada_cond`` (genforce's StyleGAN2-ADA class, 8 px, 3 labels);
- ``interfacegan_pggan``, ``interfacegan_stylegan`` (16 px) and their ``_fused`` variants: InterFaceGAN's own
  model classes, saved as InterFaceGAN publishes them (the state dict is the whole file); StyleGAN: images
  without truncation, with its built-in truncation (psi 0.7 on 4 rows), and for a given w+.

SeFa: the same state dict is loaded (strictly) into the SeFa release's own model class of the same
configuration, which shows the two repositories share the layout, and ``utils.factorize_weight`` of the
release runs on it. Its eigenvalues come from ``np.linalg.eig`` unsorted: stored sorted descending with
their vectors (rows). Random noise: the script seeds torch before the call; genforce draws one
``torch.randn`` per layer in order, so a port that draws alike reproduces the images.

Shims (none touches the arithmetic): genforce's and InterFaceGAN's ``models`` folders are imported as
packages without running their ``__init__`` (genforce's imports its encoder and perceptual model, which
need torchvision); SeFa's ``utils`` imports ``cv2`` for its HTML pages, replaced by an empty module;
InterFaceGAN's fixed 512-wide channel tables and mapping / style defaults are replaced (module attributes
and function defaults) to shrink the networks.
"""

import argparse
import copy
import importlib
import sys
import types
from pathlib import Path

import numpy as np
import torch

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
COMMITS = {"genforce": "197feee82101b78266521c8470648bbb9b7f31f4", "sefa": "0d16060208506f5a68df8826bd581a7e0cf0cb4c",
           "interfacegan": "8da3fc0fe2a1d4c88dc5f9bee65e8077093ad2bb"}
SMALL = dict(fmaps_base=128, fmaps_max=16)  # channels: 4 px 16, 8 px 16, 16 px 8
MAPPING = dict(z_space_dim=32, w_space_dim=32, mapping_fmaps=32)


def package(name: str, folder: Path):
    """``folder`` importable as package ``name`` without running its ``__init__``."""
    pkg = types.ModuleType(name)
    pkg.__path__ = [str(folder)]
    sys.modules[name] = pkg
    return lambda module: importlib.import_module(f"{name}.{module}")


def load_sefa(folder: Path):
    sys.modules.setdefault("cv2", types.ModuleType("cv2"))  # only its HTML visualiser uses cv2
    sys.path.insert(0, str(folder))
    utils = importlib.import_module("utils")  # SeFa's utils; imports SeFa's own ``models`` package
    models = importlib.import_module("models")
    assert Path(models.__file__).resolve().parent == folder.resolve() / "models"
    return utils, models


def randomise(net: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every parameter and buffer redrawn from a seeded stream: weights N(0, 1) (genforce's own init; the
    mapping's 100 times that, as genforce stores them divided by the 0.01 learning-rate multiplier), biases,
    noise strengths and the mean w N(0, 0.3..0.5), labels, constants and stored noise N(0, 1); to-RGB
    weights N(0, 0.25), so that the images are of about unit scale.
    Filter kernels and lod are left as built."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(net.named_parameters()) + list(net.named_buffers()):
            if name.endswith("kernel") or name.endswith("lod") or name.endswith("truncation.truncation"):
                continue
            leaf = name.rsplit(".", 1)[-1]
            std = {"bias": 0.3, "noise_strength": 0.5, "w_avg": 0.5, "const": 1.0, "noise": 1.0,
                   "label_weight": 1.0}.get(leaf, 1.0)
            if name.endswith("apply_noise.weight"):
                std = 0.5
            if "output" in name and leaf == "weight":  # to-RGB: images of about unit scale
                std = 0.25
            if name.startswith("mapping.dense"):  # lr multiplier 0.01: genforce stores weight / 0.01
                std *= 100.0
            t.copy_(torch.randn(t.shape, generator=g) * std)
    return net.eval()


def eig_sorted(values, vectors):
    """SeFa's eigenpairs (vectors as rows) sorted by eigenvalue, descending."""
    values, vectors = np.real(values), np.real(vectors)
    order = np.argsort(-values)
    return torch.from_numpy(values[order].astype(np.float32)), torch.from_numpy(vectors[order].astype(np.float32))


def save_pair(name: str, G, Gs, golden: dict) -> None:
    pth = FIXTURES / f"genforce_{name}.pth"
    torch.save({"generator": G.state_dict(), "generator_smooth": Gs.state_dict()}, pth)
    out = FIXTURES / f"genforce_{name}_golden.pt"
    torch.save(dict(golden, commits=COMMITS, name=name), out)
    for path in (pth, out):
        size = path.stat().st_size
        assert size <= 2 << 20, f"{path} is {size} bytes"
        print(f"wrote {path} ({size / 1024:.0f} KiB)")


def sefa_of(sefa_utils, sefa_cls, kwargs: dict, state: dict, layer_idx="all") -> dict:
    net = sefa_cls(**kwargs)
    net.load_state_dict(state, strict=True)  # the SeFa release reads genforce's layout as is
    layers, vectors, values = sefa_utils.factorize_weight(net.eval(), layer_idx)
    values, vectors = eig_sorted(values, vectors)
    return {"layers": torch.tensor(layers), "values": values, "vectors": vectors}


def one_hot(classes, n):
    return torch.nn.functional.one_hot(torch.tensor(classes), n).float()


@torch.no_grad()
def make_pggan(gf, sefa_utils, sefa_models, ifg) -> None:
    pg = gf("pggan_generator")
    kwargs = dict(resolution=16, z_space_dim=32, **SMALL)
    G, Gs = randomise(pg.PGGANGenerator(**kwargs), 1), randomise(pg.PGGANGenerator(**kwargs), 2)
    z = torch.randn(3, 32, generator=torch.Generator().manual_seed(10))
    lod_net = copy.deepcopy(Gs)
    lod_net.lod.fill_(0.5)
    # InterFaceGAN's PGGAN preprocessing, through its own method (self only needs latent_space_dim).
    raw = np.random.RandomState(0).randn(4, 32).astype(np.float32) * 1.7
    stub = types.SimpleNamespace(latent_space_dim=32)
    golden = {
        "z": z, "images": Gs(z)["image"], "images_batch1": Gs(z[:1])["image"],
        "images_lod": lod_net(z)["image"], "images_generator": G(z)["image"],
        "sefa": sefa_of(sefa_utils, sefa_models.PGGANGenerator, kwargs, Gs.state_dict()),
        "raw_z": torch.from_numpy(raw),
        "preprocessed_z": torch.from_numpy(ifg("pggan_generator").PGGANGenerator.preprocess(stub, raw)),
    }
    save_pair("pggan", G, Gs, golden)

    kwargs = dict(resolution=8, z_space_dim=32, label_size=3, **SMALL)
    G, Gs = randomise(pg.PGGANGenerator(**kwargs), 3), randomise(pg.PGGANGenerator(**kwargs), 4)
    z = torch.randn(3, 32, generator=torch.Generator().manual_seed(11))
    classes = [0, 2, 1]
    golden = {"z": z, "classes": torch.tensor(classes), "label_size": 3,
              "images": Gs(z, label=one_hot(classes, 3))["image"],
              "images_class1": Gs(z, label=one_hot([1, 1, 1], 3))["image"]}
    save_pair("pggan_cond", G, Gs, golden)


def style_outputs(Gs, z, version: int) -> dict:
    """The outputs both StyleGAN versions share."""
    n, d = Gs.num_layers, Gs.w_space_dim
    g = torch.Generator().manual_seed(20)
    w_given = Gs.mapping(torch.randn(3, Gs.z_space_dim, generator=g))["w"]
    wp_given = torch.randn(3, n, d, generator=g) * 0.8 + Gs.truncation.w_avg.view(1, -1, d)
    w = Gs.mapping(z)["w"]
    out = {
        "z": z, "w": w, "wp": Gs.truncation(w),
        "images": Gs(z)["image"], "images_batch1": Gs(z[:1])["image"],
        "images_trunc": Gs(z, trunc_psi=0.7, trunc_layers=4)["image"],
        "images_trunc_all": Gs(z, trunc_psi=0.5, trunc_layers=n)["image"],
        "w_given": w_given, "images_w": Gs.synthesis(Gs.truncation(w_given))["image"],
        "wp_given": wp_given, "images_wp": Gs.synthesis(wp_given)["image"],
        "random_seed": 123,
    }
    torch.manual_seed(123)
    out["images_random"] = Gs(z, randomize_noise=True)["image"]
    silent = copy.deepcopy(Gs)
    for name, buf in silent.named_buffers():
        if name.endswith("noise"):
            buf.zero_()
    out["images_none"] = silent(z)["image"]
    return out


@torch.no_grad()
def make_stylegan(gf, sefa_utils, sefa_models) -> None:
    sg = gf("stylegan_generator")
    kwargs = dict(resolution=16, **MAPPING, **SMALL)
    G, Gs = randomise(sg.StyleGANGenerator(**kwargs), 5), randomise(sg.StyleGANGenerator(**kwargs), 6)
    z = torch.randn(3, 32, generator=torch.Generator().manual_seed(12))
    golden = style_outputs(Gs, z, 1)
    fused = sg.StyleGANGenerator(fused_scale=True, **kwargs).eval()
    fused.load_state_dict(Gs.state_dict())
    golden["images_fused"] = fused(z)["image"]
    golden["images_generator"] = G(z)["image"]
    golden["sefa"] = sefa_of(sefa_utils, sefa_models.StyleGANGenerator, kwargs, Gs.state_dict())
    golden["sefa_1_2"] = sefa_of(sefa_utils, sefa_models.StyleGANGenerator, kwargs, Gs.state_dict(), "1-2")
    save_pair("stylegan", G, Gs, golden)

    kwargs = dict(resolution=8, label_size=3, const_input=False, noise_type="channel", repeat_w=False,
                  **MAPPING, **SMALL)
    G, Gs = randomise(sg.StyleGANGenerator(**kwargs), 7), randomise(sg.StyleGANGenerator(**kwargs), 8)
    z = torch.randn(3, 32, generator=torch.Generator().manual_seed(13))
    label = one_hot([2, 0, 1], 3)
    w = Gs.mapping(z, label)["w"]
    golden = {"z": z, "classes": torch.tensor([2, 0, 1]), "wp": Gs.truncation(w),
              "images": Gs(z, label=label)["image"],
              "images_trunc": Gs(z, label=label, trunc_psi=0.6, trunc_layers=2)["image"]}
    torch.manual_seed(124)
    golden["images_random"] = Gs(z, label=label, randomize_noise=True)["image"]
    save_pair("stylegan_cond", G, Gs, golden)


@torch.no_grad()
def make_stylegan2(gf, sefa_utils, sefa_models) -> None:
    s2 = gf("stylegan2_generator")
    kwargs = dict(resolution=16, **MAPPING, **SMALL)
    G, Gs = randomise(s2.StyleGAN2Generator(**kwargs), 9), randomise(s2.StyleGAN2Generator(**kwargs), 10)
    z = torch.randn(3, 32, generator=torch.Generator().manual_seed(14))
    golden = style_outputs(Gs, z, 2)
    golden["images_generator"] = G(z)["image"]
    golden["sefa"] = sefa_of(sefa_utils, sefa_models.StyleGAN2Generator, kwargs, Gs.state_dict())
    save_pair("stylegan2", G, Gs, golden)

    kwargs = dict(resolution=8, architecture="origin", **MAPPING, **SMALL)
    G, Gs = randomise(s2.StyleGAN2Generator(**kwargs), 11), randomise(s2.StyleGAN2Generator(**kwargs), 12)
    z = torch.randn(3, 32, generator=torch.Generator().manual_seed(15))
    save_pair("stylegan2_origin", G, Gs, {"z": z, "images": Gs(z)["image"],
                                          "images_trunc": Gs(z, trunc_psi=0.7, trunc_layers=3)["image"]})

    ada = gf("stylegan2ada_generator")
    kwargs = dict(resolution=8, label_size=3, **MAPPING, **SMALL)
    G, Gs = randomise(ada.StyleGAN2ADAGenerator(**kwargs), 13), randomise(ada.StyleGAN2ADAGenerator(**kwargs), 14)
    z = torch.randn(3, 32, generator=torch.Generator().manual_seed(16))
    label = one_hot([1, 2, 0], 3)
    save_pair("stylegan2ada_cond", G, Gs, {"z": z, "classes": torch.tensor([1, 2, 0]),
                                           "w": Gs.mapping(z, label)["w"], "images": Gs(z, label=label)["image"]})


@torch.no_grad()
def make_interfacegan(ifg) -> None:
    """InterFaceGAN's own model classes (its published ``.pth`` layout), widths shrunk by patching its channel
    tables and the 512 defaults of its mapping / style layers (module attributes and function defaults)."""
    pgm, sgm = ifg("pggan_generator_model"), ifg("stylegan_generator_model")
    pgm._RESOLUTIONS_TO_CHANNELS = {16: [32, 16, 16, 8]}  # z 32; 4 px 16, 8 px 16, 16 px 8
    sgm._RESOLUTIONS_TO_CHANNELS = {16: [16, 16, 16, 8]}
    sgm.MappingModule.__init__.__defaults__ = (True, 32, 32, 32, 8)  # normalize, z, hidden, w, layers
    sgm.StyleModulationLayer.__init__.__defaults__ = (32,)  # w
    z = torch.randn(3, 32, generator=torch.Generator().manual_seed(17))
    for fused, seed in ((False, 21), (True, 22)):
        net = randomise(pgm.PGGANGeneratorModel(resolution=16, fused_scale=fused), seed)
        name = "interfacegan_pggan" + ("_fused" if fused else "")
        save_plain(name, net.state_dict(), {"z": z, "images": net(z)})
    g = torch.Generator().manual_seed(23)
    for fused, seed in ((False, 24), (True, 25)):
        plain = randomise(sgm.StyleGANGeneratorModel(resolution=16, w_space_dim=32, fused_scale=fused,
                                                     truncation_psi=None, truncation_layers=None), seed)
        state = plain.state_dict()
        truncating = sgm.StyleGANGeneratorModel(resolution=16, w_space_dim=32, fused_scale=fused,
                                                truncation_psi=0.7, truncation_layers=4).eval()
        state["truncation.truncation"] = truncating.state_dict()["truncation.truncation"]  # as InterFaceGAN loads
        truncating.load_state_dict(state)
        wp_given = torch.randn(3, 6, 32, generator=g)
        name = "interfacegan_stylegan" + ("_fused" if fused else "")
        save_plain(name, state, {"z": z, "w": plain.mapping(z), "images": plain(z), "images_trunc": truncating(z),
                                 "wp_given": wp_given, "images_wp": plain.synthesis(wp_given)})


def save_plain(name: str, state: dict, golden: dict) -> None:
    """InterFaceGAN's format: the model's state dict as the whole file."""
    pth = FIXTURES / f"genforce_{name}.pth"
    torch.save(state, pth)
    out = FIXTURES / f"genforce_{name}_golden.pt"
    torch.save(dict(golden, commits=COMMITS, name=name), out)
    for path in (pth, out):
        assert path.stat().st_size <= 2 << 20
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--original", type=Path, default=Path("/work/orig/genforce"))
    parser.add_argument("--sefa", type=Path, default=Path("/work/orig/sefa"))
    parser.add_argument("--interfacegan", type=Path, default=Path("/work/orig/interfacegan"))
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    gf = package("genforce_models", args.original / "models")
    ifg = package("interfacegan_models", args.interfacegan / "models")
    sefa_utils, sefa_models = load_sefa(args.sefa)
    FIXTURES.mkdir(parents=True, exist_ok=True)
    make_pggan(gf, sefa_utils, sefa_models, ifg)
    make_stylegan(gf, sefa_utils, sefa_models)
    make_stylegan2(gf, sefa_utils, sefa_models)
    make_interfacegan(ifg)


if __name__ == "__main__":
    main()
