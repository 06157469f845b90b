"""Annotation throughput and memory: the predict job against the physical limit of the pass.

    python bench/annotation.py [--num 20000] [--batch 500] [--repeats 3] [--precision 32-true]
    python bench/annotation.py --rss --rss-num 200000

Throughput, side by side in one run (alternating, median of ``--repeats``): labelled latents per
second of ``trainer.predict`` with ``LatentAnnotation`` + ``AnnotationWriter`` (shards written to a
temporary folder, per-index latents, the Trainer's precision) ÷ a bare ``classifier(generator(z))``
loop with the same batch, device and precision. Target: >= 0.9.

``--rss``: peak resident memory of a fresh process annotating ``--rss-num`` demo latents, for the
predict job (shards) and for the old in-memory path (every latent and logit of the split held until
one file is written at the end), each against a baseline process that only loads the models.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _autocast(device: str, precision: str):
    import torch

    if precision == "32-true":
        return torch.autocast(device, enabled=False)
    return torch.autocast(device, dtype=torch.bfloat16 if precision.startswith("bf16") else torch.float16)


def throughput(num: int, batch: int, repeats: int, precision: str, device: str) -> dict:
    import pytorch_lightning as pl
    import torch

    from latentnav.callbacks.annotation_writer import AnnotationWriter
    from latentnav.datamodules.latent_indices import LatentIndicesDataModule
    from latentnav.lightning_modules.latent_annotation import LatentAnnotation

    module = LatentAnnotation("demo", "demo")
    G, judge = module.generator.to(device), module.annotator.to(device)

    def bare() -> float:
        t0 = time.perf_counter()
        with torch.inference_mode(), _autocast(device, precision):
            z = torch.randn(num, G.z_dim, generator=torch.Generator().manual_seed(0)).to(device)
            for chunk in z.split(batch):
                judge.logits(G.synthesize(chunk)).float().cpu()
        return num / (time.perf_counter() - t0)

    def job() -> float:
        with tempfile.TemporaryDirectory() as out:
            trainer = pl.Trainer(accelerator="gpu" if device == "cuda" else "cpu", devices=1, precision=precision,
                                 logger=False, enable_checkpointing=False, enable_progress_bar=False,
                                 enable_model_summary=False, callbacks=[AnnotationWriter(out)])
            t0 = time.perf_counter()
            trainer.predict(module, datamodule=LatentIndicesDataModule(num, 0, batch, shard_size=10000),
                            return_predictions=False)
            return num / (time.perf_counter() - t0)

    bare(), job()  # warm-up
    rates = {"bare": [], "job": []}
    for _ in range(repeats):
        rates["bare"].append(bare())
        rates["job"].append(job())
    b, j = statistics.median(rates["bare"]), statistics.median(rates["job"])
    return {"bare": b, "job": j, "ratio": j / b}


RSS_CHILD = r"""
import resource, sys, tempfile, torch
sys.path.insert(0, {repo!r})
mode, num, batch = {mode!r}, {num}, {batch}
from latentnav.generators import load_generator
from latentnav.lightning_modules.annotator import load_annotator
import pytorch_lightning as pl  # imported in every mode, so that its own memory is in the baseline
from latentnav.callbacks.annotation_writer import AnnotationWriter
from latentnav.datamodules.latent_indices import LatentIndicesDataModule
from latentnav.lightning_modules.latent_annotation import LatentAnnotation
G, judge = load_generator("demo"), load_annotator("demo")
with torch.no_grad():
    judge.logits(G.synthesize(G.sample(batch, seed=0)))  # allocator warmed by one batch in every mode
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if mode == "memory":  # the old path: all latents, then every logit, then one file
    with torch.no_grad():
        z = G.sample(num, seed=0)
        logits = torch.cat([judge.logits(G.synthesize(c)).float() for c in z.split(batch)])
    torch.save(dict(latents=z, logits=logits), tempfile.mktemp())
elif mode == "job":
    with tempfile.TemporaryDirectory() as out:
        pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, callbacks=[AnnotationWriter(out)]).predict(
            LatentAnnotation("demo", "demo"), datamodule=LatentIndicesDataModule(num, 0, batch, 10000),
            return_predictions=False)
print(base, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def rss(num: int, batch: int) -> dict:
    found = {}
    for mode in ("baseline", "memory", "job"):
        code = RSS_CHILD.format(repo=str(REPO), mode=mode, num=num, batch=batch)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
        found[mode] = {"before_kib": int(out[-2]), "peak_kib": int(out[-1])}
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--rss", action="store_true")
    parser.add_argument("--rss-num", type=int, default=200000)
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.rss:
        found = rss(args.rss_num, args.batch)
        images = 2 * 10000 * 3 * 32 * 32 * 4 / 2**20
        print(json.dumps(found))
        print("| path | peak RSS (MiB) | growth over the loaded models (MiB) |\n|---|---|---|")
        for mode in ("baseline", "memory", "job"):
            f = found[mode]
            print(f"| {mode} | {f['peak_kib'] / 1024:.0f} | {(f['peak_kib'] - f['before_kib']) / 1024:.0f} |")
        print(f"2 shards of 10,000 32-px float32 images: {images:.0f} MiB")
        return
    r = throughput(args.num, args.batch, args.repeats, args.precision, device)
    print(f"| {device} | {args.precision} | {args.batch} | {r['bare']:.0f} | {r['job']:.0f} | {r['ratio']:.3f} |")


if __name__ == "__main__":
    main()
