"""Make the StyleGAN3 golden fixtures with NVIDIA's OWN code (NVlabs/stylegan3 at commit
c233a919a6faee6e36a316ddd4eddababad1adf9, ``training/networks_stylegan3.py``), on the CPU in float32.

    pip install --target /tmp/sg3deps scipy        # the original designs its filters with scipy
    PYTHONPATH=/tmp/sg3deps python tests/generators/make_stylegan3_golden.py [--original /work/orig/stylegan3]

For each case it builds a small generator, randomises what training would have moved away from its
initial value (mapping and layer biases, the Fourier input's affine, ``w_avg``, every ``magnitude_ema``,
the user ``transform``), picks a ``conv_clamp`` low enough to fire, and writes

- ``tests/fixtures/stylegan3_<case>.pkl``: ``pickle.dump({"G_ema": G})`` of the module as the original's
  training loop saves it (a deep copy, eval, no grad, CPU), through its ``torch_utils.persistence``, so
  the module source is embedded;
- ``tests/fixtures/stylegan3_<case>_golden.pt`` (plain tensors, loadable with ``weights_only=True``): the
  original's mapped w+ and images for batch 3 and batch 1, psi 0.7 with a cutoff, a w+ latent with
  distinct rows, the identity transform, and SeFa's eigenvalues and eigenvectors (genforce/sefa's recipe
  ``factorize_weight``, in numpy: the weights' columns normalised, eig of W Wᵀ, sorted descending; vectors
  up to sign) for the style affines (w) and for the mapping's first layer (z).

Cases: ``t`` (config T, 32 px, rotated and shifted input), ``r`` (config R: 1x1 convolutions, radial
filters, 32 px, a transform with a scale so the out-of-band fade acts), ``t_cond`` (config T, 16 px, 4 classes).

The original runs its reference path on the CPU (``filtered_lrelu``, ``upfirdn2d`` and ``bias_act`` only take
their CUDA kernels for CUDA tensors); the script replaces the CUDA entry points by functions that raise, and
checks that the reference filtered leaky ReLU ran and that its clamp changed some of its outputs. Shims, none
touching the arithmetic: ``dnnlib.util`` imports ``requests`` (a stub module stands in), and
``conv2d_gradfix`` / ``grid_sample_gradfix`` import ``pkg_resources.parse_version`` (a stub using
``packaging.version.parse``).
"""

import argparse
import copy
import io
import math
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import torch

COMMIT = "c233a919a6faee6e36a316ddd4eddababad1adf9"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

CASES = {
    "t": dict(kwargs=dict(z_dim=32, c_dim=0, w_dim=32, img_resolution=32, img_channels=3,
                          channel_base=256, channel_max=32, num_layers=6, num_critical=2, conv_clamp=1.5,
                          magnitude_ema_beta=0.5 ** (32 / 20e3)),
              transform=dict(angle=0.3, shift=(0.12, -0.07), scale=1.0), classes=None),
    "r": dict(kwargs=dict(z_dim=32, c_dim=0, w_dim=32, img_resolution=32, img_channels=3,
                          channel_base=256, channel_max=32, num_layers=6, num_critical=2, conv_clamp=1.0,
                          conv_kernel=1, use_radial_filters=True, magnitude_ema_beta=0.5 ** (32 / 20e3)),
              transform=dict(angle=-0.5, shift=(-0.05, 0.1), scale=1.3), classes=None),
    "t_cond": dict(kwargs=dict(z_dim=32, c_dim=4, w_dim=32, img_resolution=16, img_channels=3,
                               channel_base=128, channel_max=16, num_layers=4, num_critical=2, conv_clamp=1.0),
                   transform=dict(angle=0.2, shift=(0.0, 0.05), scale=1.0), classes=([2, 0, 3], [1])),
}


def import_original(root: Path):
    sys.modules.setdefault("requests", types.ModuleType("requests"))
    import packaging.version
    shim = types.ModuleType("pkg_resources")
    shim.parse_version = packaging.version.parse
    sys.modules.setdefault("pkg_resources", shim)
    sys.path.insert(0, str(root))
    import dnnlib
    from torch_utils.ops import bias_act, filtered_lrelu, upfirdn2d
    from training import networks_stylegan3

    def no_cuda(*args, **kwargs):
        raise AssertionError("the original took a CUDA kernel on the CPU")

    filtered_lrelu._filtered_lrelu_cuda = upfirdn2d._upfirdn2d_cuda = bias_act._bias_act_cuda = no_cuda
    reference = filtered_lrelu._filtered_lrelu_ref
    calls = [0, 0]  # reference calls, calls where the clamp changed the result

    def counted(*args, **kwargs):
        calls[0] += 1
        out = reference(*args, **kwargs)
        if kwargs.get("clamp") is not None:
            calls[1] += not torch.equal(out, reference(*args, **dict(kwargs, clamp=None)))
        return out

    filtered_lrelu._filtered_lrelu_ref = counted
    return dnnlib, networks_stylegan3, calls


def transform_matrix(angle: float, shift, scale: float) -> torch.Tensor:
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    return torch.tensor([[c, -s, shift[0]], [s, c, shift[1]], [0.0, 0.0, 1.0]])


@torch.no_grad()
def randomise(G, transform: torch.Tensor) -> None:
    for name, p in G.named_parameters():
        if name.startswith("mapping.") and name.endswith("bias"):
            p.normal_(0, 0.2 / G.mapping.fc0.bias_gain) if ".fc" in name else p.normal_(0, 0.2)
        elif name == "synthesis.input.affine.weight":  # initialised at zero
            p.normal_(0, 1)
        elif name == "synthesis.input.affine.bias":  # initialised at (1, 0, 0, 0)
            p.add_(torch.randn_like(p) * 0.3)
        elif name.endswith("affine.bias"):  # initialised at one
            p.add_(torch.randn_like(p) * 0.3)
        elif name.endswith("bias"):  # initialised at zero
            p.normal_(0, 0.2)
    G.mapping.w_avg.normal_(0, 0.5)
    for name, b in G.named_buffers():
        if name.endswith("magnitude_ema"):
            b.uniform_(0.3, 3.0)
    G.synthesis.input.transform.copy_(transform)


def sefa_numpy(weights):
    """genforce/sefa ``factorize_weight``: columns of W = [A_1ᵀ ... A_mᵀ] (d, sum out) normalised, eig of W Wᵀ."""
    w = np.concatenate([a.T for a in weights], axis=1).astype(np.float32)
    w = w / np.linalg.norm(w, axis=0, keepdims=True)
    values, vectors = np.linalg.eig(w.dot(w.T))
    order = np.argsort(-values.real)
    return torch.from_numpy(values.real[order].copy()), torch.from_numpy(vectors.T.real[order].copy())


def one_hot(classes, c_dim):
    return None if classes is None else torch.nn.functional.one_hot(torch.tensor(classes), c_dim).float()


@torch.no_grad()
def make_case(name: str, spec: dict, dnnlib, networks, calls) -> None:
    torch.manual_seed({"t": 1, "r": 2, "t_cond": 3}[name])
    kwargs = dict(spec["kwargs"], mapping_kwargs=dnnlib.EasyDict(num_layers=2))
    G = networks.Generator(**kwargs)
    randomise(G, transform_matrix(**spec["transform"]))
    G = copy.deepcopy(G).eval().requires_grad_(False).cpu()  # as training_loop saves G_ema
    buffer = io.BytesIO()
    pickle.dump({"G_ema": G}, buffer)
    reloaded = pickle.loads(buffer.getvalue())["G_ema"]  # through the original's persistence, in its own process

    c3, c1 = (one_hot(spec["classes"][0], G.c_dim), one_hot(spec["classes"][1], G.c_dim)) if spec["classes"] else (None, None)
    z = torch.randn(3, G.z_dim)
    z_rows = torch.randn(3 * G.num_ws, G.z_dim)
    c_rows = None if c3 is None else c3.repeat_interleave(G.num_ws, 0)
    w_plus = G.mapping(z_rows, c_rows)[:, 0].reshape(3, G.num_ws, G.w_dim)  # distinct rows
    psi, cutoff = 0.7, G.num_ws - 3
    before = list(calls)
    out = {
        "format": "latentnav.stylegan3_golden/1",
        "original": f"NVlabs/stylegan3@{COMMIT} training/networks_stylegan3.py",
        "case": name, "init_kwargs": {k: v for k, v in kwargs.items() if k != "mapping_kwargs"},
        "z": z, "ws": G.mapping(z, c3),
        "images": G(z, c3), "images_b1": G(z[:1], c1),
        "truncation": psi, "truncation_cutoff": cutoff,
        "ws_truncated": G.mapping(z, c3, truncation_psi=psi, truncation_cutoff=cutoff),
        "images_truncated": G(z, c3, truncation_psi=psi, truncation_cutoff=cutoff),
        "images_truncated_all": G(z, c3, truncation_psi=psi),
        "w_plus": w_plus, "images_w_plus": G.synthesis(w_plus),
        "transform": G.synthesis.input.transform.clone(),
    }
    if spec["classes"]:
        out["classes"], out["classes_b1"] = torch.tensor(spec["classes"][0]), torch.tensor(spec["classes"][1])
    assert calls[0] > before[0], "the reference filtered_lrelu did not run"
    assert calls[1] > before[1], "conv_clamp never fired"
    print(f"{name}: the clamp changed {calls[1] - before[1]} of {calls[0] - before[0]} filtered leaky ReLUs")
    torch.testing.assert_close(reloaded(z, c3), out["images"], rtol=0, atol=0)
    identity_G = copy.deepcopy(G)
    identity_G.synthesis.input.transform.copy_(torch.eye(3))
    out["images_identity_transform"] = identity_G(z, c3)

    affines = [G.synthesis.input.affine] + [getattr(G.synthesis, n).affine for n in G.synthesis.layer_names]
    out["sefa_w_layers"] = ["input"] + list(G.synthesis.layer_names)
    out["sefa_w_values"], out["sefa_w_vectors"] = sefa_numpy([a.weight.numpy() for a in affines])
    out["sefa_z_values"], out["sefa_z_vectors"] = sefa_numpy([G.mapping.fc0.weight[:, : G.z_dim].numpy()])

    pkl = FIXTURES / f"stylegan3_{name}.pkl"
    pkl.write_bytes(buffer.getvalue())
    golden = FIXTURES / f"stylegan3_{name}_golden.pt"
    torch.save(out, golden)
    print(f"{name}: wrote {pkl.name} ({pkl.stat().st_size / 1024:.0f} KiB), {golden.name} "
          f"({golden.stat().st_size / 1024:.0f} KiB); image range {out['images'].min():.3f}..{out['images'].max():.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--original", type=Path, default=Path("/work/orig/stylegan3"))
    parser.add_argument("--cases", nargs="*", default=list(CASES))
    args = parser.parse_args()
    torch.set_default_dtype(torch.float32)
    dnnlib, networks, calls = import_original(args.original)
    FIXTURES.mkdir(parents=True, exist_ok=True)
    for name in args.cases:
        make_case(name, CASES[name], dnnlib, networks, calls)


if __name__ == "__main__":
    main()
