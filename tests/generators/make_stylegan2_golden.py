"""Make ``tests/fixtures/stylegan2_port_golden.pt`` with the rosinality port's OWN ``model.py`` (run once).

    python tests/generators/make_stylegan2_golden.py /path/to/stylegan2-pytorch   # a checkout of the port

The fixture holds a small generator's ``g_ema`` state dict in the port's layout (32 px, style 64,
2 mapping layers) and what the port's ``Generator.forward`` returns for it: z input with the stored
noise, z with truncation 0.7 around a given truncation latent (the port's ``mean_latent``), w input
(``input_is_latent``), w+ input, and the w+ it returns (``return_latents``). Two changes let the
port run here, neither touching its arithmetic: ``torch.utils.cpp_extension.load`` is replaced by a
stub before its ``op`` package is imported (no CUDA build; the port then takes its own CPU branches of
``fused_leaky_relu`` and ``upfirdn2d``), and its channel table (512 channels up to 32 px) is replaced in
the source text by {4: 32, 8: 32, 16: 16, 32: 16}, so that the fixture is ~300 KB.
"""

import re
import sys
import types
from pathlib import Path

import torch

OUT = Path(__file__).resolve().parents[1] / "fixtures" / "stylegan2_port_golden.pt"
CHANNELS = {4: 32, 8: 32, 16: 16, 32: 16}


def load_port(port: Path):
    import torch.utils.cpp_extension

    torch.utils.cpp_extension.load = lambda *args, **kwargs: None  # no CUDA ops: the port's CPU branches run
    sys.path.insert(0, str(port))
    source = (port / "model.py").read_text()
    table = re.search(r"self\.channels = \{[^}]*\}", source)
    assert table, "the port's channel table was not found"
    source = source.replace(table.group(0), f"self.channels = {CHANNELS!r}")
    model = types.ModuleType("port_model")
    model.__file__ = str(port / "model.py")
    exec(compile(source, model.__file__, "exec"), model.__dict__)
    return model


@torch.no_grad()
def main() -> None:
    port = Path(sys.argv[1])
    model = load_port(port)
    torch.manual_seed(0)
    g = model.Generator(32, 64, 2, channel_multiplier=2).eval()
    for name, p in g.named_parameters():  # the port initialises biases and noise strengths at 0: make them matter
        if name.endswith("bias") or name.endswith("noise.weight"):
            p.normal_(0, 0.1)
    z = torch.randn(4, 64)
    w = g.style(torch.randn(4, 64))
    w_plus = g.style(torch.randn(4 * g.n_latent, 64)).view(4, g.n_latent, 64)
    truncation_latent = g.mean_latent(4096)  # (1, 64)
    images_z, latents_z = g([z], randomize_noise=False, return_latents=True)
    out = {
        "format": "latentnav.stylegan2_golden/1",
        "port_commit": "bef283a (rosinality/stylegan2-pytorch)",
        "channels": CHANNELS,
        "g_ema": {k: v.clone() for k, v in g.state_dict().items()},
        "z": z, "images_z": images_z, "latents_z": latents_z,
        "truncation": 0.7, "truncation_latent": truncation_latent[0],
        "images_z_truncated": g([z], truncation=0.7, truncation_latent=truncation_latent, randomize_noise=False)[0],
        "w": w, "images_w": g([w], input_is_latent=True, randomize_noise=False)[0],
        "w_plus": w_plus, "images_w_plus": g([w_plus], input_is_latent=True, randomize_noise=False)[0],
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    torch.save(out, OUT)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
