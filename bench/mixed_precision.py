"""Annotation under mixed precision: classifier(generator(z)) in fp32 vs bf16 vs fp16 autocast.

    .venv/bin/python bench/mixed_precision.py [--device cuda] [--num 512] [--size 64] [--quick]

Two pipelines, on the same seeded latents: the bundled demo generator (32 px) with the bundled
demo classifier, and a random-weight StyleGAN2 (rosinality layout, ``--size`` px, ``--style-dim``)
whose images the demo classifier reads after its own antialiased resize to 32 px. The whole
pipeline (generator and classifier) runs under ``torch.autocast(device, dtype, cache_enabled=False)``,
as ``--trainer.precision 16-mixed`` / ``bf16-mixed`` runs a forward pass.

Accuracy, on all ``--num`` latents: against fp32, the max and mean absolute difference of the
classifier's logits, and how many attribute decisions (p > 0.5) flip, out of num x 12.

Timing, side by side in one run, on the first ``--time-num`` latents: one pass per precision, the
precisions alternating (the accuracy pass is the warm-up); latents/s are medians, the speed-up is
the median of the per-repeat ratios t(fp32) / t(precision). A precision whose first pass is more
than ``--max-slowdown`` times slower than fp32 (fp16 autocast on a CPU: its grouped convolutions
have no fast kernel) is not repeated; its speed-up is then that of the first pass, marked "1 run".
A precision that autocast cannot run on the device is reported "not supported" with the reason.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from common import (PRECISIONS, add_common_args, add_stylegan2_args, autocast, median, paired_ratio,  # noqa: E402
                    quick_stylegan2, report, setup, side_by_side, small_stylegan2, spread, stylegan2_label, sync,
                    try_run)


def build(name: str, args: argparse.Namespace, device: torch.device):
    from latentnav.generators import load_generator

    if name == "demo":
        return load_generator("demo").to(device), "demo DCGAN 32 px"
    return small_stylegan2(args, seed=args.seed).to(device), stylegan2_label(args)


def annotate_logits(G, annotator, latents: torch.Tensor, batch_size: int, device: torch.device,
                    precision: str) -> torch.Tensor:
    """Logits (N, K) as float32 on the CPU, in batches, under the precision's autocast."""
    out = []
    with torch.inference_mode(), autocast(device, precision):
        for chunk in latents.split(batch_size):
            out.append(annotator.logits(G.synthesize(chunk)).float())
    return torch.cat(out).cpu()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser, precision=False, repeats=5, warmup=0)
    parser.add_argument("--pipelines", nargs="+", default=["demo", "stylegan2"], choices=["demo", "stylegan2"])
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS,
                        help="fp32 is always measured (the reference)")
    parser.add_argument("--num", type=int, default=512, help="latents for the accuracy (default: %(default)s)")
    parser.add_argument("--time-num", type=int, default=128, help="latents per timed pass (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--max-slowdown", type=float, default=10.0)
    add_stylegan2_args(parser)
    args = parser.parse_args()
    if args.quick:
        args.num, args.time_num, args.batch_size, args.repeats = 16, 8, 8, 2
        quick_stylegan2(args)
    precisions = ["32"] + [p for p in args.precisions if p != "32"]
    device = setup(args)
    from latentnav.lightning_modules.annotator import load_annotator

    annotator = load_annotator("demo").to(device)
    rows = []
    for name in args.pipelines:
        G, label = build(name, args, device)
        latents = G.sample(args.num, seed=args.seed)
        timed_latents = latents[: args.time_num]
        results, first = {}, {}
        for precision in precisions:  # accuracy pass; its first batches also warm the precision up
            sync(device)
            t0 = time.perf_counter()
            logits, why = try_run(lambda: annotate_logits(G, annotator, latents, args.batch_size, device, precision))
            first[precision] = (time.perf_counter() - t0) / args.num
            results[precision] = logits if why is None else why
        repeated = [p for p in precisions if not isinstance(results[p], str)
                    and (p == "32" or first[p] <= args.max_slowdown * first["32"])]
        times = side_by_side({p: (lambda p=p: annotate_logits(G, annotator, timed_latents, args.batch_size, device, p))
                              for p in repeated}, device, args.repeats, args.warmup)
        ref = results["32"]
        decisions = ref.numel()
        for precision in precisions:
            r = results[precision]
            if isinstance(r, str):
                rows.append([label, precision, r, "", "", "", ""])
                continue
            diff = (r - ref).abs()
            flips = int(((torch.sigmoid(r) > 0.5) != (torch.sigmoid(ref) > 0.5)).sum())
            if precision in times:
                ratios = [a / b for a, b in zip(times["32"], times[precision])]
                speed = "1" if precision == "32" else \
                    f"{paired_ratio(times['32'], times[precision]):.2f} ({spread(ratios)})"
                rate = f"{len(timed_latents) / median(times[precision]):.1f}"
            else:
                speed = f"{first['32'] / first[precision]:.3f} (1 run, > {args.max_slowdown:g}x slower)"
                rate = f"{1 / first[precision]:.2f} (1 run)"
            rows.append([label, precision, f"{diff.max():.4g}", f"{diff.mean():.3g}",
                         f"{flips} / {decisions} ({flips / decisions:.2%})", rate, speed])
        del G
    report(f"Mixed precision: classifier logits vs fp32, {args.num} latents (seed {args.seed}), {args.device}",
           device, args,
           ["pipeline", "precision", "max abs logit diff", "mean abs logit diff", "decisions flipped (p > 0.5)",
            "latents/s (median)", "speed-up vs fp32 (median, min-max)"],
           rows,
           notes=[f"accuracy on {args.num} latents; timing: {args.repeats} repeats of {min(args.time_num, args.num)} "
                  f"latents, precisions alternating, batch {args.batch_size}; "
                  "autocast covers generator and classifier."])


if __name__ == "__main__":
    main()
