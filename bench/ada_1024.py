"""A full-size StyleGAN2-ADA network (FFHQ 1024 px layout, random weights): latentnav's reader + port
against the original code, on the CPU, side by side.

    python bench/ada_1024.py [--original /work/orig/stylegan2-ada-pytorch] [--repeats 5] [--resolution 1024]

The network is built by the ORIGINAL code (StyleGAN2-ADA-PyTorch, ``--original``, pinned at
d72cc7d041b42ec8e806021a205ed9349f87c6a4) in the layout of the released ``ffhq.pkl``: z 512, w 512,
8 mapping layers, channel_base 32768, channel_max 512, skip, num_fp16_res 4, conv_clamp 256; biases,
noise strengths, stored noise and w_avg randomised. It is pickled as the training code does, a
snapshot like the released file (``{"G", "D", "G_ema", "augment_pipe", "training_set_kwargs"}``; D in
ADA's layout for that config, G a copy of G_ema; module source embedded), into a temporary folder
removed afterwards. Both loaders read the whole file and keep G_ema.

Measured, each a median over ``--repeats`` after one untimed warm-up, variants alternating:

- load: ``read_network_pickle(path)["G_ema"]`` + ``load_stylegan2_nvidia`` (nothing in the file runs)
  against the original's ``legacy.load_network_pkl`` (plain ``pickle.load`` when ``legacy`` cannot be
  imported, e.g. without ``click``), which executes the embedded source;
- synthesis, one image (batch 1, noise const, float32): ours with fused and with non-fused modulated
  convolutions against the original with ``force_fp32=True`` (its eval choice: fused); on the CPU the
  original takes its reference ops (``upfirdn2d`` / ``bias_act`` ``_ref``), the path it falls back to;
- the largest absolute difference between our images and the original's.

``--resolution 256`` (or 64) is a quick dry run of the same layout at fewer blocks. ``requests`` is
stubbed for the original's ``dnnlib`` (URL downloads, unused).
"""

from __future__ import annotations

import argparse
import copy
import io
import pickle
import sys
import tempfile
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from common import all_cores, hardware, median, side_by_side, table  # noqa: E402


def original_generator(resolution: int, seed: int):
    from training.networks import Generator

    torch.manual_seed(seed)
    G = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=resolution, img_channels=3,
                  mapping_kwargs={"num_layers": 8},
                  synthesis_kwargs={"channel_base": 32768, "channel_max": 512, "num_fp16_res": 4,
                                    "conv_clamp": 256, "architecture": "skip"}).eval()
    with torch.no_grad():
        for name, t in list(G.named_parameters()) + list(G.named_buffers()):
            if name.endswith("bias") or "noise" in name or name.endswith("w_avg"):
                t.copy_(torch.randn_like(t) * 0.1)
    return G.requires_grad_(False)


def original_discriminator(resolution: int, seed: int):
    from training.networks import Discriminator

    torch.manual_seed(seed + 1)
    return Discriminator(c_dim=0, img_resolution=resolution, img_channels=3, architecture="resnet",
                         channel_base=32768, channel_max=512, num_fp16_res=4, conv_clamp=256,
                         epilogue_kwargs={"mbstd_group_size": 4})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--original", type=Path, default=Path("/work/orig/stylegan2-ada-pytorch"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--resolution", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=all_cores(), help="torch threads (default: every core)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sys.modules.setdefault("requests", types.ModuleType("requests"))
    sys.path.insert(0, str(args.original))

    from latentnav.generators.stylegan2_nvidia import load_stylegan2_nvidia
    from latentnav.nvidia_pickle import read_network_pickle

    try:
        import legacy

        def load_original(path):
            with open(path, "rb") as f:
                return legacy.load_network_pkl(f)["G_ema"]
        original_loader = "legacy.load_network_pkl"
    except ImportError:
        def load_original(path):
            with open(path, "rb") as f:
                return pickle.load(f)["G_ema"]
        original_loader = "pickle.load"

    def load_ours(path):
        return load_stylegan2_nvidia(read_network_pickle(path)["G_ema"], {"source": str(path)})

    device = torch.device("cpu")
    t0 = time.perf_counter()
    G = original_generator(args.resolution, args.seed)
    params = sum(p.numel() for p in G.parameters())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"ada_{args.resolution}.pkl"
        buf = io.BytesIO()
        pickle.dump({"G": copy.deepcopy(G), "D": original_discriminator(args.resolution, args.seed), "G_ema": G,
                     "augment_pipe": None, "training_set_kwargs": None}, buf)
        path.write_bytes(buf.getvalue())
        del buf
        size_mb = path.stat().st_size / 2**20
        print(f"built and pickled {args.resolution} px ({params / 1e6:.1f} M parameters, {size_mb:.0f} MiB) "
              f"in {time.perf_counter() - t0:.1f} s", flush=True)
        loads = side_by_side({"ours": lambda: load_ours(path), "original": lambda: load_original(path)},
                             device, args.repeats)
        ours, orig = load_ours(path), load_original(path).eval().requires_grad_(False)
    z = torch.randn(1, 512, generator=torch.Generator().manual_seed(args.seed))

    def ours_fused():
        ours.fused_modconv = True
        return ours.synthesize(z, "z", noise_mode="const")

    def ours_nonfused():
        ours.fused_modconv = False
        return ours.synthesize(z, "z", noise_mode="const")

    def original():
        return orig(z, None, noise_mode="const", force_fp32=True)

    with torch.no_grad():
        ref = original()
        diff_fused = float((ours_fused() - ref).abs().max())
        diff_nonfused = float((ours_nonfused() - ref).abs().max())
        synth = side_by_side({"fused": ours_fused, "non-fused": ours_nonfused, "original": original},
                             device, args.repeats)
    header = ["resolution", "parameters", "file", "load: ours", f"load: original ({original_loader})",
              "image: ours fused", "image: ours non-fused", "image: original (force_fp32, ref ops)",
              "max |ours - original| fused / non-fused", "threads"]
    row = [f"{args.resolution} px", f"{params / 1e6:.1f} M", f"{size_mb:.0f} MiB",
           f"{median(loads['ours']):.2f} s", f"{median(loads['original']):.2f} s",
           f"{median(synth['fused']):.3f} s", f"{median(synth['non-fused']):.3f} s",
           f"{median(synth['original']):.3f} s", f"{diff_fused:.1e} / {diff_nonfused:.1e}", args.threads]
    print(f"\nhardware: {hardware(device, args.threads)}; repeats {args.repeats} (medians)\n")
    print(table(header, [row]))
    print(f"\ncommand: .venv/bin/python bench/ada_1024.py {' '.join(sys.argv[1:])}".rstrip())
    sys.stdout.flush()


if __name__ == "__main__":
    main()
