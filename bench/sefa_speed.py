"""SeFa on a full-size StyleGAN2 layout (1024 px, style 512, 8-layer mapping, random weights), on CPU.

    python bench/sefa_speed.py [--threads 1] [--repeats 5]

Side by side in one run: SeFa for each layer selection (reading the modulation weights, row
normalisation, eigh of a 512 x 512 matrix), against synthesising one 1024 px image with the
same generator, and GANSpace's PCA of w over 10,000 samples. The paper claims SeFa takes
"less than one second".
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from latentnav.generators.adapters import StyleGAN2Adapter  # noqa: E402
from latentnav.generators.stylegan2 import StyleGAN2Config, StyleGAN2Generator  # noqa: E402
from latentnav.commands.ganspace import run_ganspace  # noqa: E402
from latentnav.commands.sefa import run_sefa  # noqa: E402


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    torch.manual_seed(0)
    config = StyleGAN2Config.port(1024, style_dim=512, n_mlp=8, channel_multiplier=2)
    G = StyleGAN2Adapter(StyleGAN2Generator(config), w_avg=torch.zeros(512))
    params = sum(p.numel() for p in G.parameters())
    print(f"StyleGAN2 1024 px, {params / 1e6:.1f} M parameters, {len(G.latent_weights('w'))} style layers "
          f"(built in {time.perf_counter() - t0:.1f} s), {args.threads} thread(s)")
    with torch.no_grad():
        synth = best_of(lambda: G.synthesize(G.sample(1, seed=0)), max(1, args.repeats // 2))
    print(f"  one 1024 px image:            {synth * 1000:9.1f} ms")
    for layers in ("all", "coarse", "middle", "fine"):
        t = best_of(lambda: run_sefa(G, "w", layers, 512), args.repeats)
        n = len(run_sefa(G, "w", layers, 1)["layers"])
        print(f"  SeFa, layers {layers:<7} ({n:2d}):   {t * 1000:9.1f} ms   = {t / synth:.3f} x one image")
    t = best_of(lambda: run_sefa(G, "z", "all", 512), args.repeats)
    print(f"  SeFa, z (mapping layer 1):    {t * 1000:9.1f} ms   = {t / synth:.3f} x one image")
    t = best_of(lambda: run_ganspace(G, "w", 512, num_samples=10000, batch_size=2000), 1)
    print(f"  GANSpace, PCA of 10,000 w:    {t * 1000:9.1f} ms   = {t / synth:.3f} x one image")


if __name__ == "__main__":
    main()
