"""Demo-face throughput, side by side in one run: rendering vs reading back vs training.

    python bench/render_speed.py [--num 2000]

Prints milliseconds per face for rendering at 32 and 64 px, writing PNGs, reading them
back through the CelebA dataset, and one classifier training step per face, with the
ratios that matter: is the data pipeline or the model the bottleneck?
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from latentnav.datamodules.celeba import CelebAAttributes  # noqa: E402
from latentnav.datamodules.celeba_files import read_attribute_file  # noqa: E402
from latentnav.datamodules.demo_faces import DEMO_ATTRIBUTES, generate, write_celeba_layout  # noqa: E402
from latentnav.lightning_modules.attribute_classifier import AttributeClassifier  # noqa: E402


def per_face_ms(fn, n: int) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) / n * 1e3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--num", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n = args.num
    rows = {}
    rows["render 32 px"] = per_face_ms(lambda: generate(n, seed=1, image_size=32), n)
    rows["render 64 px"] = per_face_ms(lambda: generate(n, seed=1, image_size=64), n)
    with tempfile.TemporaryDirectory() as tmp:
        rows["render + write PNG 32 px"] = per_face_ms(lambda: write_celeba_layout(tmp, n, seed=1), n)
        table = read_attribute_file(Path(tmp) / "list_attr_celeba.txt")
        dataset = CelebAAttributes(Path(tmp) / "img_align_celeba", table.filenames, table.values, 32, None)
        rows["read PNG -> tensor 32 px"] = per_face_ms(lambda: [dataset[i] for i in range(n)], n)
    model = AttributeClassifier(list(DEMO_ATTRIBUTES))
    optimizer = torch.optim.AdamW(model.parameters())
    images, targets = torch.randn(64, 3, 32, 32), torch.rand(64, len(DEMO_ATTRIBUTES)).round()

    def train_steps():
        for _ in range(n // 64):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(images), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    rows["classifier train step (batch 64)"] = per_face_ms(train_steps, (n // 64) * 64)
    print(f"{n} faces, {args.threads} torch thread(s)")
    for name, ms in rows.items():
        print(f"  {name:<34} {ms:8.3f} ms/face")
    print(f"  ratio render 64/32 px: {rows['render 64 px'] / rows['render 32 px']:.1f}x")
    print(f"  ratio read / train step: {rows['read PNG -> tensor 32 px'] / rows['classifier train step (batch 64)']:.2f}"
          " (below 1: the model, not the data, bounds training)")


if __name__ == "__main__":
    main()
