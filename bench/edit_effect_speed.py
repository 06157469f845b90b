"""Edit-effect measurement: ``DirectionEvaluation`` (its ``EditEffect`` metric) vs a bare loop of the same calls.

    .venv/bin/python bench/edit_effect_speed.py [--num-samples 200] [--directions 12] [--quick]

On the bundled demo generator and classifier, ``--directions`` seeded random unit directions
(direction i targets attribute i mod 12) over ``latentnav.callbacks.direction_report.DEFAULT_ALPHAS``:

- **metric**: ``DirectionEvaluation`` in its ``effect`` mode, run in this process as the report runs it
  (``evaluation_protocol.run_in_this_process``: ``test_step`` per batch, ``EditEffect.update`` per
  direction and step, ``compute`` at the end);
- **bare**: the same latents, batches and generator + classifier calls (p0 once per batch, p1
  per direction and non-zero step; alpha 0 reuses p0), the probabilities thrown away: no
  metric update, no compute.

Side by side in one run, alternating; the ratio is the median over repeats of t(bare) / t(metric),
i.e. the metric's throughput as a fraction of the bare loop's (1 = the metric costs nothing).
``--precision`` wraps both in autocast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from common import (add_common_args, autocast, median, paired_ratio, report, setup, side_by_side, spread,  # noqa: E402
                    try_run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser, precision=True, repeats=5, warmup=1)
    parser.add_argument("--num-samples", type=int, default=200)
    parser.add_argument("--directions", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=100, help="the evaluation's batch (default: %(default)s)")
    args = parser.parse_args()
    if args.quick:
        args.num_samples, args.directions, args.batch_size, args.repeats = 8, 2, 8, 2
    device = setup(args)

    from latentnav.callbacks.direction_report import DEFAULT_ALPHAS
    from latentnav.generators import load_generator
    from latentnav.lightning_modules.annotator import load_annotator
    from latentnav.lightning_modules.direction_evaluation import DirectionEvaluation
    from latentnav.lightning_modules.evaluation_protocol import run_in_this_process

    G = load_generator("demo").to(device)
    annotator = load_annotator("demo").to(device)
    n_attr = len(annotator.attributes)
    directions = torch.randn(args.directions, G.z_dim, generator=torch.Generator().manual_seed(args.seed))
    targets = [i % n_attr for i in range(args.directions)]
    alphas = list(DEFAULT_ALPHAS)

    def with_metric():
        with autocast(device, args.precision):
            module = DirectionEvaluation(G, annotator, directions, "z", mode="effect", alphas=alphas, targets=targets)
            run_in_this_process(args.num_samples, args.seed, args.batch_size, device=G.device)(module)
            return module.result

    @torch.no_grad()
    def bare():
        with autocast(device, args.precision):
            latents = G.latents_at(torch.arange(args.num_samples), args.seed, "z")
            unit = torch.nn.functional.normalize(directions.float(), dim=1).to(latents.device)
            for chunk in latents.split(args.batch_size):
                annotator(G.synthesize(chunk))  # p0
                for d in unit:
                    for alpha in alphas:
                        if alpha != 0:  # alpha 0 reuses p0
                            annotator(G.synthesize(chunk + alpha * d.view_as(chunk[0])))

    label = (f"demo, {args.directions} directions x {len(alphas)} alphas x {args.num_samples} samples, "
             f"batch {args.batch_size}")
    _, why = try_run(with_metric)
    if why is not None:
        rows = [[label, args.precision, why, "", ""]]
    else:
        times = side_by_side({"metric": with_metric, "bare": bare}, device, args.repeats, args.warmup)
        edits = args.num_samples * args.directions * len(alphas)
        ratios = [b / m for b, m in zip(times["bare"], times["metric"])]
        rows = [[label, args.precision, f"{edits / median(times['metric']):.0f}",
                 f"{edits / median(times['bare']):.0f}",
                 f"{paired_ratio(times['bare'], times['metric']):.3f} ({spread(ratios)})"]]
    report(f"Edit effect: DirectionEvaluation vs bare generator + classifier loop, {args.device}", device, args,
           ["setting", "precision", "metric (sample, direction, alpha)/s", "bare /s",
            "throughput metric ÷ bare = t(bare) / t(metric) (median, min-max)"], rows,
           notes=[f"{args.repeats} repeats, alternating; generator+classifier calls per run: "
                  f"{-(-args.num_samples // args.batch_size)} batches x (1 + {args.directions} x {len(alphas) - 1})"])


if __name__ == "__main__":
    main()
