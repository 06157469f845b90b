"""Make ``tests/fixtures/tf_stylegan2_<case>.pkl`` (TensorFlow-era StyleGAN2 pickles) and their goldens from
the ORIGINAL StyleGAN2-ADA-PyTorch converter (run once).

    python tests/generators/make_tf_stylegan2_golden.py [--original /work/orig/stylegan2-ada-pytorch]

The original is StyleGAN2-ADA-PyTorch at d72cc7d041b42ec8e806021a205ed9349f87c6a4: its
``legacy.load_network_pkl`` converts TF pickles into its PyTorch ``Generator``.

The TF pickles are synthetic, written here without TensorFlow: ``(G, D, Gs)``, each a
``dnnlib.tflib.network.Network`` state (format version 4: name, static_kwargs, components,
build_module_src, build_func_name, variables) pickled under that class's name with numpy arrays as the
TF era wrote them (``numpy.core.multiarray._reconstruct``). G's and Gs's variables have the names and
shapes of TF StyleGAN2's ``G_main`` / ``G_mapping`` / ``G_synthesis_stylegan2`` for a tiny config (16 px,
z and w 16), written from the TF format: ``dlatent_avg``; ``mapping/Dense{i}``; ``mapping/LabelEmbed``
(StyleGAN2-ADA's TF release); ``synthesis/noise{k}``; ``synthesis/{r}x{r}/{Const,Conv,Conv0_up,Conv1,ToRGB,
Skip}`` with ``weight`` (kh, kw, in, out), ``mod_weight``, ``mod_bias``, ``noise_strength``, ``bias``.
D's variables are the original Discriminator's parameters under their TF names (its values do not
matter here). Every value is random (noise strengths, w_avg, biases and modulation biases included).

Cases: ``skip`` (config-F style, with run-time settings the converter ignores), ``resnet``, ``orig``
without noise (ADA-TF's ``use_noise=False``), ``cond`` (ADA-TF: 3 classes, ``LabelEmbed``, a conv clamp of
0.5 that fires, fp16 setting recorded). The golden (``tf_stylegan2_<case>_golden.pt``) holds the
original's converted ``G_ema`` (Gs) state dict and init_kwargs, and its outputs: mapped w+ for 3 z,
w+ truncated at psi 0.7 with cutoff 2, images with constant noise (batch 3 and 1), truncated, without
noise, with random noise after ``torch.manual_seed(123)``, and per class for the conditional case.

Compatibility shims (no change to the arithmetic): ``requests`` and ``click`` are stubs (URL and CLI
helpers), ``pkg_resources.parse_version`` is ``packaging.version.parse``; the original runs with
``force_fp32=True`` (its fp16 blocks would run in float16 on the CPU).
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.latentnav.pickle_craft import Call, Global, New, dumps  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
COMMIT = "stylegan2-ada-pytorch d72cc7d041b42ec8e806021a205ed9349f87c6a4"
NETWORK = Global("dnnlib.tflib.network", "Network")
BASE = dict(latent_size=16, dlatent_size=16, resolution=16, num_channels=3, mapping_layers=2, fmap_base=64,
            fmap_max=16)  # channels 16 at 4 and 8 px, 8 at 16 px
CASES = {
    "skip": dict(BASE, label_size=0, mapping_fmaps=16, truncation_psi=0.5, style_mixing_prob=0.9),
    "resnet": dict(BASE, label_size=0, architecture="resnet", mapping_lrmul=0.05),
    "orig": dict(BASE, label_size=0, architecture="orig", use_noise=False),
    "cond": dict(BASE, label_size=3, label_fmaps=8, w_avg_beta=0.998, conv_clamp=0.5, num_fp16_res=2),
}


def array(value: np.ndarray) -> Call:
    """A float32 numpy array as numpy 1.x pickled it (the names TF-era pickles hold)."""
    value = np.array(value, dtype=np.float32, order="C")  # (keeps 0-d arrays 0-d)
    dtype = Call(Global("numpy", "dtype"), ("f4", False, True), (3, "<", None, None, None, -1, -1, 0))
    return Call(Global("numpy.core.multiarray", "_reconstruct"), (Global("numpy", "ndarray"), (0,), b"b"),
                (1, value.shape, dtype, False, value.tobytes()))


def network(name: str, func: str, static_kwargs: dict, variables: list, components: dict) -> New:
    state = {"version": 4, "name": name, "static_kwargs": static_kwargs, "components": components,
             "build_module_src": "raise RuntimeError('TF graph builder text: never run by latentnav')\n",
             "build_func_name": func, "variables": [(k, array(v)) for k, v in variables]}
    return New(NETWORK, (), state)


def generator_variables(kw: dict, rng: np.random.Generator) -> tuple[list, list, list]:
    """(G_main's own, G_mapping's, G_synthesis_stylegan2's) variables for ``kw``, from the TF format."""
    def randn(*shape, scale=1.0):
        return rng.standard_normal(shape).astype(np.float32) * scale

    z, w, c = kw["latent_size"], kw["dlatent_size"], kw.get("label_size", 0)
    lrmul = kw.get("mapping_lrmul", 0.01)
    mapping = []
    width_in = z
    if c:
        embed = kw.get("label_fmaps") or w
        mapping += [("LabelEmbed/weight", randn(c, embed)), ("LabelEmbed/bias", randn(embed, scale=0.3))]
        width_in = z + embed
    for i in range(kw["mapping_layers"]):
        out = w if i == kw["mapping_layers"] - 1 else (kw.get("mapping_fmaps") or w)
        mapping += [(f"Dense{i}/weight", randn(width_in, out, scale=1 / lrmul)),
                    (f"Dense{i}/bias", randn(out, scale=0.3 / lrmul))]
        width_in = out

    log2 = int(np.log2(kw["resolution"]))

    def nf(stage):
        return int(min(max(kw["fmap_base"] / 2.0 ** stage, 1), kw["fmap_max"]))

    noise = kw.get("use_noise", True)
    arch = kw.get("architecture", "skip")
    synthesis = []
    if noise:
        for k in range(2 * log2 - 3):
            res = 2 ** ((k + 5) // 2)
            synthesis.append((f"noise{k}", randn(1, 1, res, res)))

    def modconv(scope, cin, cout, kernel):
        out = [(f"{scope}/weight", randn(kernel, kernel, cin, cout)), (f"{scope}/mod_weight", randn(w, cin)),
               (f"{scope}/mod_bias", randn(cin, scale=0.3))]
        if noise and not scope.endswith("ToRGB"):
            out.append((f"{scope}/noise_strength", randn(scale=0.5)))
        return out + [(f"{scope}/bias", randn(cout, scale=0.3))]

    synthesis.append(("4x4/Const/const", randn(1, nf(1), 4, 4)))
    synthesis += modconv("4x4/Conv", nf(1), nf(1), 3)
    if arch == "skip":
        synthesis += modconv("4x4/ToRGB", nf(1), kw["num_channels"], 1)
    for level in range(3, log2 + 1):
        r = 2 ** level
        synthesis += modconv(f"{r}x{r}/Conv0_up", nf(level - 2), nf(level - 1), 3)
        synthesis += modconv(f"{r}x{r}/Conv1", nf(level - 1), nf(level - 1), 3)
        if arch == "resnet":
            synthesis.append((f"{r}x{r}/Skip/weight", randn(1, 1, nf(level - 2), nf(level - 1))))
        if arch == "skip" or level == log2:
            synthesis += modconv(f"{r}x{r}/ToRGB", nf(level - 1), kw["num_channels"], 1)
    return [("dlatent_avg", randn(w))], mapping, synthesis


def discriminator_variables(networks, kw: dict, rng: np.random.Generator) -> list:
    """The original Discriminator's parameters (as legacy.py would build it) under their TF names."""
    import re

    D = networks.Discriminator(c_dim=kw["label_size"], img_resolution=kw["resolution"], img_channels=3,
                               channel_base=kw["fmap_base"] * 2, channel_max=kw["fmap_max"])
    out = []
    for name, p in D.named_parameters():
        v = rng.standard_normal(tuple(p.shape)).astype(np.float32)
        if v.ndim == 4:
            v = v.transpose(2, 3, 1, 0)
        elif v.ndim == 2:
            v = v.T
        m = re.fullmatch(r"b(\d+)\.(fromrgb|conv0|conv1|skip)\.(weight|bias)", name)
        if m:
            r, layer, what = m.groups()
            tf_layer = {"fromrgb": "FromRGB", "conv0": "Conv0", "conv1": "Conv1_down", "skip": "Skip"}[layer]
            out.append((f"{r}x{r}/{tf_layer}/{what}", v))
            continue
        m = re.fullmatch(r"(b4\.conv|b4\.fc|b4\.out|mapping\.embed|mapping\.fc(\d+))\.(weight|bias)", name)
        assert m, name
        tf_layer = {"b4.conv": "4x4/Conv", "b4.fc": "4x4/Dense0", "b4.out": "Output", "mapping.embed": "LabelEmbed"}.get(
            m.group(1), f"Mapping{m.group(2)}")
        out.append((f"{tf_layer}/{m.group(3)}", v))
    return out


def tf_pickle(networks, kw: dict, seed: int) -> bytes:
    rng = np.random.default_rng(seed)

    def generator(name):
        own, mapping, synthesis = generator_variables(kw, rng)
        return network(name, "G_main", kw, own, {
            "mapping": network("G_mapping", "G_mapping", kw, mapping, {}),
            "synthesis": network("G_synthesis", "G_synthesis_stylegan2", kw, synthesis, {}),
        })

    d_kwargs = {k: kw[k] for k in ("label_size", "resolution", "num_channels", "fmap_base", "fmap_max")}
    D = network("D", "D_stylegan2", d_kwargs, discriminator_variables(networks, kw, rng), {})
    # build_func_name is the function's name in build_module_src (dnnlib keeps the module's text apart).
    return dumps((generator("G"), D, generator("Gs")), protocol=4)


class ClampCounter:
    def __init__(self, bias_act_module) -> None:
        self.module, self.original, self.hits, self.active = bias_act_module, bias_act_module.bias_act, 0, False
        bias_act_module.bias_act = self

    def __call__(self, x, b=None, dim=1, act="linear", alpha=None, gain=None, clamp=None, impl="cuda"):
        if self.active and clamp is not None:
            raw = self.original(x, b, dim=dim, act=act, alpha=alpha, gain=gain, clamp=None, impl=impl)
            self.hits += int((raw.abs() > clamp).sum())
        return self.original(x, b, dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp, impl=impl)


def plain(value):
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


@torch.no_grad()
def outputs(G, counter: ClampCounter) -> dict:
    kw = {"force_fp32": True}
    g = torch.Generator().manual_seed(7)
    z = torch.randn(3, G.z_dim, generator=g)
    classes = torch.tensor([0, 1, 2]) if G.c_dim else None
    c = torch.nn.functional.one_hot(classes, G.c_dim).float() if G.c_dim else None
    ws = G.mapping(z, c)
    counter.active, counter.hits = True, 0
    images = G.synthesis(ws, noise_mode="const", **kw)
    counter.active = False
    torch.manual_seed(123)
    images_random = G(z, c, noise_mode="random", **kw)
    out = {
        "z": z, "ws": ws, "ws_trunc": G.mapping(z, c, truncation_psi=0.7, truncation_cutoff=2),
        "images": images, "clamp_hits": counter.hits,
        "images_b1": G(z[:1], None if c is None else c[:1], noise_mode="const", **kw),
        "images_trunc": G(z, c, truncation_psi=0.7, truncation_cutoff=2, noise_mode="const", **kw),
        "images_none": G(z, c, noise_mode="none", **kw),
        "images_random": images_random, "random_seed": 123, "num_ws": G.num_ws,
    }
    if G.c_dim:
        out["classes"] = classes
        out["images_per_class"] = G(z[:1].repeat(3, 1), c, noise_mode="const", **kw)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--original", default="/work/orig/stylegan2-ada-pytorch")
    args = parser.parse_args()
    for name in ("requests", "click"):
        try:
            __import__(name)
        except ImportError:
            sys.modules[name] = types.ModuleType(name)
    if "pkg_resources" not in sys.modules:
        from packaging.version import parse

        sys.modules["pkg_resources"] = types.SimpleNamespace(parse_version=parse)
    sys.path.insert(0, args.original)
    import legacy
    from torch_utils.ops import bias_act
    from training import networks

    counter = ClampCounter(bias_act)
    for seed, (case, kw) in enumerate(CASES.items()):
        data = tf_pickle(networks, kw, seed)
        path = FIXTURES / f"tf_stylegan2_{case}.pkl"
        path.write_bytes(data)
        with open(path, "rb") as f:
            converted = legacy.load_network_pkl(f)
        G = converted["G_ema"].eval().requires_grad_(False)
        golden = {"format": "latentnav.tf_stylegan2_golden/1", "case": case, "commit": COMMIT,
                  "init_kwargs": plain(G.init_kwargs),
                  "state_dict": {k: v.detach().clone() for k, v in G.state_dict().items()}}
        golden.update(outputs(G, counter))
        if kw.get("conv_clamp"):
            assert golden["clamp_hits"] > 0, case
        assert (golden["images"] - golden["images_none"]).abs().max() > 0.05 or not kw.get("use_noise", True)
        out = FIXTURES / f"tf_stylegan2_{case}_golden.pt"
        torch.save(golden, out)
        print(f"{case}: {path.name} {path.stat().st_size / 1024:.0f} KiB, {out.name} {out.stat().st_size / 1024:.0f} KiB, "
              f"clamp hits {golden['clamp_hits']}")


if __name__ == "__main__":
    main()
