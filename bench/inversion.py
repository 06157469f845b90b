"""Editing real images on the demo domain: projection vs encoder vs encoder + refinement, side by side.

    python bench/inversion.py --encoder runs/encoder_demo/version_0/checkpoints/last.ckpt \\
        --directions runs/directions/linear_map_lambda1.npz [--num 200] [--steps 300] [--refine 50]
    python bench/inversion.py --generator demo_stylegan2 --spaces w w+ --directions runs/directions/w.npz

``--generator`` picks the generator (default the demo DCGAN) and ``--spaces`` the spaces projected into (default
the generator's first space; a StyleGAN2 takes ``w w+``, its noise maps optimised too and kept for the
renders); the encoder rows need ``--encoder`` (trained for the generator and one of the spaces).

The "real images" are demo faces rendered with a render seed no model saw (``--render-seed``, default
4242; the classifiers trained on seeds 0 and 1), written as PNG files and read back through
``latentnav project``'s code (``project_images``: the Trainer predict loop). For each inversion:
seconds per image, mean PSNR / SSIM of the reconstructions, and the share of attribute labels on
which the annotator's verdict on the reconstruction agrees with the face's true label (and, as the
ceiling, on the face itself). Then the edits: each direction's equal-success step measured on
``--num`` sampled latents, and at that same step on the inverted latents: the flip rate (on the faces
where the attribute was off) and the mean off-target change, with the inverted latents' own
50 %-flip step.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from latentnav.datamodules.demo_faces import DEMO_ATTRIBUTES, generate  # noqa: E402

ALPHAS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 16.0)


def render(G, latents, space, noise=None):
    """Images of ``latents``; with ``noise`` (per-layer maps of these latents' projection), rendered with them."""
    return G.synthesize_with_noise(latents, space, noise) if noise else G.synthesize(latents, space)


def edit_effect(G, annotator, directions, targets, latents, space, noise=None):
    """Directions (K, *shape) of their own space move latents of ``space``: the same shape, or a w direction
    added to every row of a w+ latent (what editing a w+ inversion with a w direction means)."""
    from latentnav.lightning_modules.edit_metrics import EditEffect

    metric = EditEffect(ALPHAS, targets, len(annotator.attributes))
    ids = torch.arange(len(latents))
    with torch.no_grad():
        for idx in ids.split(100):
            chunk = latents[idx]
            maps = [m[idx] for m in noise] if noise else None
            p0 = annotator(render(G, chunk, space, maps))
            for i, d in enumerate(directions):
                for a, alpha in enumerate(ALPHAS):
                    p1 = p0 if alpha == 0 else annotator(render(G, chunk + alpha * d, space, maps))
                    metric.update(i, a, p0, p1, idx)
    # the per-alpha curves for reading at another set's step
    mean_delta = metric.delta_sum[0] / metric.count[0].clamp_min(1)[..., None]
    return metric.compute(), metric.flipped[0] / metric.was_off[0].clamp_min(1), mean_delta


def interp(alpha: float, curve: torch.Tensor) -> torch.Tensor:
    if alpha != alpha:
        return torch.full(curve.shape[1:], math.nan, dtype=torch.float64)
    grid = torch.tensor(ALPHAS, dtype=torch.float64)
    j = int(torch.searchsorted(grid, torch.tensor([alpha], dtype=torch.float64)).clamp(1, len(grid) - 1))
    t = (alpha - float(grid[j - 1])) / float(grid[j] - grid[j - 1])
    return curve[j - 1] + t * (curve[j] - curve[j - 1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--generator", default="demo")
    parser.add_argument("--spaces", nargs="+", default=None, help="spaces to project into (default: the first)")
    parser.add_argument("--encoder", default=None, help="an encoder checkpoint for the encoder rows (optional)")
    parser.add_argument("--directions", default="runs/directions/linear_map_lambda1.npz")
    parser.add_argument("--num", type=int, default=200)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--refine", type=int, default=50)
    parser.add_argument("--render-seed", type=int, default=4242)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from PIL import Image

    from latentnav.directions_file import read_directions, read_latents
    from latentnav.generators import load_generator
    from latentnav.images import load_square_image
    from latentnav.lightning_modules.annotator import load_annotator
    from latentnav.commands.measuring import make_trainer
    from latentnav.commands.project import project_images

    G, annotator = load_generator(args.generator), load_annotator("demo")
    spaces = args.spaces or [G.latent_spaces[0]]
    images, labels = generate(args.num, seed=args.render_seed, image_size=G.resolution)
    columns = [DEMO_ATTRIBUTES.index(a) for a in annotator.attributes]
    truth = torch.from_numpy(labels[:, columns] > 0)
    folder = Path(tempfile.mkdtemp(prefix="inversion_"))
    for i, im in enumerate(images):
        Image.fromarray(im).save(folder / f"{i:04d}.png")
    faces = torch.stack([load_square_image(folder / f"{i:04d}.png", G.resolution) for i in range(args.num)])
    with torch.no_grad():
        ceiling = float(((annotator(faces) > 0.5) == truth).float().mean())
    print(f"{args.num} rendered faces (render seed {args.render_seed}); annotator vs true labels on the faces "
          f"themselves: {ceiling:.4f}")
    runs = {f"projection ({space})": dict(steps=args.steps, space=space) for space in spaces}
    if args.encoder:
        runs.update({"encoder": dict(steps=0, encoder=args.encoder),
                     f"encoder + {args.refine} steps": dict(steps=args.refine, encoder=args.encoder)})
    found = {}
    print("| inversion | s / image | PSNR dB | SSIM | label agreement (annotator on reconstruction vs truth) |")
    print("|---|---|---|---|---|")
    for name, kw in runs.items():
        trainer = make_trainer(accelerator="cpu", inference_mode=False)
        trainer.callbacks = [c for c in trainer.callbacks if type(c).__name__ != "TQDMProgressBar"]
        t0 = time.perf_counter()
        where = folder / name.replace(" ", "_").replace("(", "").replace(")", "").replace("+", "plus")
        out = project_images([str(folder)], G=G, batch_size=100, out=str(where), trainer=trainer, **kw)
        seconds = (time.perf_counter() - t0) / args.num
        saved = read_latents(where / "latents.pt", G.identity, out["space"])
        noise = saved.get("noise") or None
        with torch.no_grad():
            agreement = float(((annotator(render(G, out["latents"], out["space"], noise)) > 0.5) == truth).float().mean())
        found[name] = (out["latents"], out["space"], noise)
        print(f"| {name} | {seconds:.3f} | {float(out['psnr'].mean()):.2f} | {float(out['ssim'].mean()):.3f} | "
              f"{agreement:.4f} |", flush=True)
    # Edits on inverted latents vs sampled latents, at the sampled latents' equal-success step.
    d = read_directions(args.directions)
    unit = torch.nn.functional.normalize(d["directions"].float(), dim=1)
    targets = [annotator.attributes.index(n) for n in d["names"]]
    space = d["latent_space"]
    unit = unit.view(len(unit), *G.latent_shape(space))
    sampled, flip_s, delta_s = edit_effect(G, annotator, unit, targets, G.sample(args.num, seed=99, space=space), space)
    for name, (latents, inverted_space, noise) in found.items():
        if not name.startswith("projection"):
            continue
        edits_on_inversions(G, annotator, unit, targets, d, args, name, latents, inverted_space, noise, sampled,
                            flip_s)


def edits_on_inversions(G, annotator, unit, targets, d, args, name, latents, space, noise, sampled, flip_s):
    inverted, flip_i, delta_i = edit_effect(G, annotator, unit, targets, latents, space, noise)
    print(f"\nEdits along {args.directions} ({d['latent_space']}; annotator), at each direction's 50 % flip step on "
          f"{args.num} sampled latents; the same step on the latents of {name}:")
    print("| direction | step (sampled) | flip rate, sampled | flip rate, inverted | off-target, sampled | "
          "off-target, inverted | step (inverted) |")
    print("|---|---|---|---|---|---|---|")
    for i, name in enumerate(d["names"]):
        step = float(sampled["step"][i])
        if step != step:
            print(f"| {name} | cannot flip | | | | | |")
            continue
        fi = float(interp(step, flip_i[i]))
        off_i = interp(step, delta_i[i]).clone()
        off_i[targets[i]] = math.nan
        off_s = sampled["effect"][i].clone()
        off_s[targets[i]] = math.nan
        print(f"| {name} | {step:.2f} | {float(interp(step, flip_s[i])):.2f} | {fi:.2f} | "
              f"{float(torch.nanmean(off_s.abs())):.3f} | {float(torch.nanmean(off_i.abs())):.3f} | "
              f"{float(inverted['step'][i]):.2f} |")


if __name__ == "__main__":
    main()
