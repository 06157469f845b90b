"""Peak memory per sample of each pass on the demo domain, for a few batch sizes.

    .venv/bin/python bench/memory.py [--device cpu] [--batch-sizes 16 64 256] [--quick]

Passes (bundled demo generator and classifier):

- ``annotate``: classifier(generator(z)) for B latents, under ``torch.inference_mode``;
- ``direction_step``: one :class:`UnsupervisedDirections` training step on a batch of B
  (forward + backward + Adam step, as ``bench/direction_step.py``'s "module" variant: one
  batched generator call, configs/unsupervised/demo.yaml's settings);
- ``edit_effect``: ``DirectionEvaluation`` (``effect`` mode) for 12 directions over ``DEFAULT_ALPHAS`` on
  B samples, in one batch of B (as ``DirectionReport`` runs it, with its ``EditEffect`` metric).

Every (pass, B) is measured in a fresh subprocess, so each starts clean: the models are built,
the pass runs once at batch 1 (lazy kernel initialisation, the optimiser's state), then the
measured pass at batch B.

- CPU: growth of the peak resident set size, ``getrusage(RUSAGE_SELF).ru_maxrss``, over the
  pass. Before the pass the kernel's high-water mark is reset to the current RSS
  (``/proc/self/clear_refs``), so that transient peaks of the set-up do not hide the pass. A
  child's ``ru_maxrss`` also starts at its parent's peak, so this driver never imports torch;
  a baseline still above the current RSS is flagged "masked".
- CUDA: ``torch.cuda.max_memory_allocated`` over the pass minus what was allocated before it
  (tensors only: the CUDA context and the caching allocator's slack are not counted).

Reported: the growth in MiB, MiB per sample (growth / B), and per pass the marginal MiB per
sample between the smallest and the largest B (fixed costs, e.g. gradients of the weights, cancel).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PASSES = ("annotate", "direction_step", "edit_effect")
PRECISIONS = ("32", "16-mixed", "bf16-mixed")  # as bench/common.py; not imported here (it imports torch)


# ----------------------------------------------------------------------------- child: one measurement
def _rss_mib() -> float:
    import os

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _maxrss_mib() -> float:
    import resource

    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 2**20 if sys.platform == "darwin" else kib / 1024  # bytes on macOS, KiB on Linux


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def child(args: argparse.Namespace) -> dict:
    sys.path.insert(0, str(HERE))
    import gc

    import torch

    from common import autocast, hardware, setup

    device = setup(args)
    from latentnav.generators import load_generator
    from latentnav.lightning_modules.annotator import load_annotator

    result = {"pass": args.child_pass, "batch": args.child_batch, "device": str(device),
              "hardware": hardware(device, args.threads)}

    if args.child_pass == "annotate":
        G = load_generator("demo").to(device)
        annotator = load_annotator("demo").to(device)

        def run(b: int) -> None:
            with torch.inference_mode(), autocast(device, args.precision):
                annotator(G.synthesize(G.sample(b, seed=args.seed)))

    elif args.child_pass == "direction_step":
        from latentnav.datamodules.latent_shifts import draw
        from direction_step import PRESETS, SHIFT_FLOOR, SHIFT_RANGE, ModuleStep, attach_stub_trainer, build_model

        if args.precision == "16-mixed" and device.type == "cpu":
            return {**result, "error": "not supported: Lightning runs bf16-mixed instead of 16-mixed on a CPU"}
        model = build_model(argparse.Namespace(preset="demo"), "demo").to(device).train()
        attach_stub_trainer(model)
        step = ModuleStep(model, device, args.precision)
        k = PRESETS["demo"]["num_directions"]

        def run(b: int) -> None:
            g = torch.Generator().manual_seed(args.seed)
            step(tuple(t.to(device) for t in draw(b, model.generator.z_dim, k, SHIFT_RANGE, SHIFT_FLOOR, g)))

    else:
        from latentnav.callbacks.direction_report import DEFAULT_ALPHAS
        from latentnav.lightning_modules.direction_evaluation import DirectionEvaluation
        from latentnav.lightning_modules.evaluation_protocol import run_in_this_process

        G = load_generator("demo").to(device)
        annotator = load_annotator("demo").to(device)
        n_attr = len(annotator.attributes)
        directions = torch.randn(12, G.z_dim, generator=torch.Generator().manual_seed(args.seed))
        targets = [i % n_attr for i in range(12)]

        def run(b: int) -> None:
            with autocast(device, args.precision):
                module = DirectionEvaluation(G, annotator, directions, "z", mode="effect", alphas=DEFAULT_ALPHAS,
                                             targets=targets)
                run_in_this_process(b, args.seed, b, device=G.device)(module)

    try:
        run(1)  # warm-up at batch 1
    except (RuntimeError, NotImplementedError) as e:
        return {**result, "error": "not supported: " + (str(e).strip().splitlines() or ["?"])[0][:120]}
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        run(args.child_batch)
        torch.cuda.synchronize(device)
        growth = (torch.cuda.max_memory_allocated(device) - base) / 2**20
        result.update(method="cuda max_memory_allocated", baseline_mib=base / 2**20, growth_mib=growth, masked=False)
    else:
        reset = _reset_peak()
        rss, before = _rss_mib(), _maxrss_mib()
        run(args.child_batch)
        after = _maxrss_mib()
        result.update(method="peak RSS growth (ru_maxrss" + (", high-water reset" if reset else "") + ")",
                      baseline_mib=rss, growth_mib=after - before, masked=before > rss + 1.0)
    result["per_sample_mib"] = result["growth_mib"] / args.child_batch
    return result


# ----------------------------------------------------------------------------- driver: no torch here
def measure(args: argparse.Namespace, name: str, batch: int) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child-pass", name, "--child-batch", str(batch),
           "--precision", args.precision, "--seed", str(args.seed)]
    if args.device:
        cmd += ["--device", args.device]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        why = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        return {"pass": name, "batch": batch, "error": f"failed: {why[:160]}"}
    return json.loads(lines[-1])


def table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default=None, help="cuda, cuda:N or cpu (default: cuda when available, else cpu)")
    parser.add_argument("--precision", default="32", choices=PRECISIONS)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: every core)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--passes", nargs="+", default=list(PASSES), choices=PASSES)
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[16, 64, 256])
    parser.add_argument("--quick", action="store_true", help="batch sizes 2 and 8: checks that the script runs")
    parser.add_argument("--child-pass", choices=PASSES, help=argparse.SUPPRESS)
    parser.add_argument("--child-batch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child_pass:  # one measurement, in this fresh process
        sys.path.insert(0, str(HERE))
        from common import add_common_args

        full = argparse.ArgumentParser()
        add_common_args(full)
        full.add_argument("--child-pass", choices=PASSES)
        full.add_argument("--child-batch", type=int)
        print(json.dumps(child(full.parse_args(sys.argv[1:]))))
        return

    if args.quick:
        args.batch_sizes = [2, 8]
    results = [measure(args, name, b) for name in args.passes for b in sorted(args.batch_sizes)]
    ok = [r for r in results if "error" not in r]
    rows = []
    for r in results:
        if "error" in r:
            rows.append([r["pass"], r["batch"], r["error"], "", ""])
        else:
            flag = " (masked?)" if r["masked"] else ""
            rows.append([r["pass"], r["batch"], f"{r['growth_mib']:.1f}{flag}", f"{r['per_sample_mib']:.3f}",
                         f"{r['baseline_mib']:.0f}"])
    marginal = []
    for name in args.passes:
        mine = sorted((r for r in ok if r["pass"] == name), key=lambda r: r["batch"])
        if len(mine) >= 2 and mine[-1]["batch"] > mine[0]["batch"]:
            lo, hi = mine[0], mine[-1]
            marginal.append(f"{name}: {(hi['growth_mib'] - lo['growth_mib']) / (hi['batch'] - lo['batch']):.3f} "
                            f"MiB/sample (B {lo['batch']} -> {hi['batch']})")
    device = ok[0]["device"] if ok else (args.device or "?")
    print(f"\n## Peak memory per sample, demo domain, {device}, precision {args.precision}\n")
    if ok:
        print(f"hardware: {ok[0]['hardware']}")
        print(f"method: {ok[0]['method']}, one fresh process per row")
    if args.quick:
        print("QUICK RUN: tiny batches; the figures below only show that the script runs")
    print()
    print(table(["pass", "batch", "growth MiB", "MiB / sample", "baseline MiB (before the pass)"], rows))
    if marginal:
        print("\nmarginal: " + "; ".join(marginal))
    print(f"\ncommand: {shlex.join(['.venv/bin/python', 'bench/memory.py', *sys.argv[1:]])}")


if __name__ == "__main__":
    main()
