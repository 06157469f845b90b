"""StyleGAN2's passes in each form: fused vs non-fused modulated convolution, eager vs compiled, fp32 vs bf16-mixed,
and the FLOP rate each reaches against the processor's peak.

    .venv/bin/python bench/stylegan2_passes.py --pass unsupervised --size 64 --batch-size 8
    .venv/bin/python bench/stylegan2_passes.py --pass projection --size 256 --batch-size 1
    .venv/bin/python bench/stylegan2_passes.py --pass annotation --size 64 --batch-size 32

Passes (a random-weight StyleGAN2 in the rosinality port's layout, style 512, 8 mapping layers, the port's
channels with multiplier 2, loaded from a temporary checkpoint as a user's file is):

- ``unsupervised``: one training step of ``UnsupervisedDirections`` with the ``stylegan2`` preset of
  ``bench/direction_step.py`` (w space, K 64, ResNet-18 reconstructor, truncation 0.7): training_step, backward,
  Adam (the module's own step, no Trainer);
- ``projection``: one projection step on a w+ latent: synthesis, pixel MSE to a target, backward, Adam (the
  perceptual network of ``latentnav project`` left out: the generator's share is what is measured);
- ``annotation``: one annotation batch, inference: synthesis of z and the demo classifier's logits.

Variants (``--variants``, side by side in one run, alternating): ``MODCONV[:bf16][:compiled]`` with MODCONV one
of ``fused`` (the port's form before issue 24), ``nonfused``, ``auto`` (the default now). ``compiled`` =
``torch.compile`` of the synthesis (inductor); its compile time is measured apart (the first call minus an
eager one) and reported with the number of steps after which it pays.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` on one pass of each eager variant
(convolutions and matrix products, forward and backward; a compiled or bf16 variant does its eager fp32
sibling's work). The forms do different amounts of work for the same result: with gradients the fused form
also computes each sample's weight gradient (its weights depend on the styles), which the non-fused form
replaces by an elementwise product. So each row gives its own count's rate and the *useful* rate (the least
count of any variant in the run, over the row's time), and the fraction of peak is of the useful rate. The peak is threads x clock x fp32 lanes (AVX-512: 16, AVX2: 8) x 2 (FMA) x
2 FMA units per core (Zen 2/3 and Xeon cores have two), with the clock from cpufreq's maximum (else
``/proc/cpuinfo``): an upper bound no real kernel reaches.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from common import (add_common_args, add_stylegan2_args, autocast, hardware, median, paired_ratio,  # noqa: E402
                    quick_stylegan2, save_port_checkpoint, setup, side_by_side, small_stylegan2, spread,
                    stylegan2_label)


def cpu_peak_gflops(threads: int) -> tuple[float, str]:
    """(peak fp32 GFLOP/s of ``threads`` cores, how it was reckoned)."""
    flags, mhz = "", 0.0
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags") and not flags:
                flags = line
            if line.startswith("cpu MHz") and not mhz:
                mhz = float(line.split(":")[1])
    except OSError:
        pass
    try:
        mhz = int(open("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read()) / 1000
    except (OSError, ValueError):
        pass
    lanes = 16 if " avx512f" in flags else 8 if " avx2" in flags else 4
    peak = threads * mhz / 1000 * lanes * 2 * 2
    return peak, f"{threads} cores x {mhz / 1000:.2f} GHz x {lanes} fp32 lanes x 2 (FMA) x 2 units"


def count_flops(fn) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return float(counter.get_total_flops())


def make_pass(kind: str, G_path: str, args, device: torch.device, variant: str):
    """A callable running one pass of ``kind`` in ``variant`` (fresh models, same seeds for every variant)."""
    from latentnav.generators import load_generator

    modconv, *flags = variant.split(":")
    precision = "bf16-mixed" if "bf16" in flags else "32"
    torch.manual_seed(args.seed)
    if kind == "unsupervised":
        from direction_step import ModuleStep, attach_stub_trainer, build_model

        model = build_model(SimpleArgs(preset="stylegan2"), G_path).to(device)
        G = model.generator
        attach_stub_trainer(model)
        step = ModuleStep(model, device, precision)
        g = torch.Generator().manual_seed(args.seed)
        batch = (torch.randn(args.batch_size, G.z_dim, generator=g).to(device),
                 torch.randint(0, 64, (args.batch_size,), generator=g).to(device),
                 ((torch.rand(args.batch_size, generator=g) * 2 - 1) * 6).to(device))
        run = (lambda: step(batch))
    else:
        G = load_generator(G_path).to(device)
        if kind == "projection":
            target = torch.rand(args.batch_size, 3, G.resolution, G.resolution, device=device) * 2 - 1
            latent = G.to_space(G.sample(args.batch_size, seed=args.seed), "w+").detach().requires_grad_(True)
            optimizer = torch.optim.Adam([latent], lr=0.01)

            def run():
                with autocast(device, precision):
                    loss = F.mse_loss(G.synthesize(latent, "w+").float(), target)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        else:
            from latentnav.lightning_modules.annotator import load_annotator

            judge = load_annotator("demo").to(device)
            z = G.sample(args.batch_size, seed=args.seed)

            def run():
                with torch.no_grad(), autocast(device, precision):
                    return judge.logits(G.synthesize(z))
    G.net.set_modconv(modconv)
    if "compiled" in flags:
        G.compile_synthesis("inductor")
    return run


class SimpleArgs:
    def __init__(self, preset: str) -> None:
        self.preset = preset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser, precision=False, repeats=3, warmup=1)
    add_stylegan2_args(parser, size=64)
    parser.add_argument("--pass", dest="kind", choices=["unsupervised", "projection", "annotation"],
                        default="unsupervised")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--variants", nargs="+", default=["fused", "nonfused", "auto", "auto:bf16"])
    args = parser.parse_args()
    if args.quick:
        quick_stylegan2(args)
        args.repeats, args.batch_size = 1, 2
    device = setup(args)
    with tempfile.TemporaryDirectory() as tmp:
        path = str(save_port_checkpoint(small_stylegan2(args), Path(tmp) / "g.pt"))
        runs = {v: make_pass(args.kind, path, args, device, v) for v in args.variants}
        compile_seconds = {}
        for v, run in runs.items():
            if ":compiled" in v:
                start = time.perf_counter()
                run()  # the first call compiles
                compile_seconds[v] = time.perf_counter() - start
        sibling = {v: v.split(":")[0] for v in args.variants}  # the eager fp32 variant doing the same work
        flops = {m: count_flops(runs[m] if m in runs else make_pass(args.kind, path, args, device, m))
                 for m in dict.fromkeys(sibling.values())}
        times = side_by_side(runs, device, args.repeats, args.warmup)
    peak, how = cpu_peak_gflops(torch.get_num_threads()) if device.type == "cpu" else (float("nan"), "GPU: not reckoned")
    base = args.variants[0]
    print(f"\n{args.kind} pass, {stylegan2_label(args)}, batch {args.batch_size}; {hardware(device, torch.get_num_threads())}")
    useful = min(flops.values())
    print("FLOPs per pass: " + ", ".join(f"{m} {f / 1e9:.1f} GFLOP" for m, f in flops.items())
          + f"; useful (the least) {useful / 1e9:.1f} GFLOP; peak {peak:.0f} GFLOP/s ({how})\n")
    print(f"| variant | s / pass | vs {base} (time ratio, min-max) | own GFLOP/s | useful GFLOP/s | of peak | compile |")
    print("|---|---|---|---|---|---|---|")
    for v, ts in times.items():
        t = median(ts)
        ratio = paired_ratio(ts, times[base])
        own = flops[sibling[v]] / t / 1e9
        rate = useful / t / 1e9
        compiled = ""
        if v in compile_seconds:
            eager = times.get(v.replace(":compiled", ""))
            extra = compile_seconds[v] - t
            saved = (median(eager) - t) if eager else float("nan")
            compiled = f"{extra:.0f} s once" + (f", pays after {extra / saved:.0f} passes" if saved > 0 else ", never pays")
        print(f"| {v} | {t:.3f} | {ratio:.2f} ({spread([a / b for a, b in zip(ts, times[base])])}) | {own:.1f} | {rate:.1f} | "
              f"{rate / peak:.1%} | {compiled} |")
    print(f"\ncommand: .venv/bin/python {' '.join(sys.argv)}")


if __name__ == "__main__":
    main()
