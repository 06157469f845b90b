"""Edit images along learned directions: a PNG strip and a GIF per attribute.

    python -m latentnav.edit runs/directions/linear_map_lambda0.npz --attributes Young Smiling \\
        --seeds 0 1 2 3 --alpha -6 6 --steps 9 --out edits/
    python -m latentnav.edit DIRECTIONS --latents my_latents.pt --attributes Male --keep Wearing_Lipstick

``--keep A B``: conditional edit (InterFaceGAN): the span of the kept attributes' directions is
projected out of the edit direction. The generator is loaded as the directions file recorded it
(source and load options such as ``class_path``); ``--generator`` points at a moved copy, whose
sha256 must match.

"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
import numpy as np
import torch

from latentnav.errors import ConfigError, run_command


def edit_direction(directions: torch.Tensor, names: list[str], attribute: str, keep: list[str]) -> torch.Tensor:
    from lightning_modules.interfacegan import conditional_direction

    for name in [attribute, *keep]:
        if name not in names:
            raise ConfigError(f"attribute {name!r} is not in the directions file; it has {' '.join(names)}")
    return conditional_direction(directions, names.index(attribute), [names.index(k) for k in keep if k != attribute])


@torch.no_grad()
def render_edits(G, latents: torch.Tensor, direction: torch.Tensor, alphas: np.ndarray, space: str) -> torch.Tensor:
    """Latents (B, *latent_shape) moved by alpha * direction (d,): images (len(alphas), B, 3, R, R) in [-1, 1]
    on the latents' device; the alpha = 0 frame is ``G.synthesize(latents, space)``."""
    from tqdm import tqdm

    d = direction.to(latents.device).view_as(latents[0])
    return torch.stack([G.synthesize(latents + float(a) * d, space)
                        for a in tqdm(alphas, desc="edit frames", leave=False)])


@torch.no_grad()
def render_guided_edits(G, judge, latents: torch.Tensor, direction: torch.Tensor, alphas: np.ndarray, space: str,
                        keep: list[int], substep: float = 0.5) -> torch.Tensor:
    """Like :func:`render_edits`, following the classifier-guided path from alpha 0 both ways."""
    from tqdm import tqdm

    from lightning_modules.edit_metrics import guided_step

    direction = direction.to(latents.device)
    frames: dict[float, torch.Tensor] = {}
    for sign in tqdm((1.0, -1.0), desc="guided edit paths", leave=False):
        z, at = latents, 0.0
        for a in sorted((float(a) for a in alphas if a * sign >= 0), key=abs):
            while at < abs(a) - 1e-9:
                move = min(substep, abs(a) - at)
                z = guided_step(G, judge, z, sign * direction, keep, move, space) if keep else z + sign * move * direction.view_as(z[0])
                at += move
            frames[a] = G.synthesize(z, space)
    return torch.stack([frames[float(a)] for a in alphas])


def to_uint8(frames: torch.Tensor, scale: int) -> np.ndarray:
    x = ((frames.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return np.kron(x, np.ones((1, scale, scale, 1), dtype=np.uint8))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m latentnav.edit", description=__doc__.split("\n\n")[0])
    parser.add_argument("directions", help="a directions.npz written by a directions run")
    parser.add_argument("--generator", default=None,
                        help="generator file (default: the one recorded in the file; its recorded load options apply)")
    parser.add_argument("--attributes", nargs="+", required=True)
    parser.add_argument("--keep", nargs="*", default=[], help="attributes whose directions are projected out")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3])
    source.add_argument("--latents", help="a .pt file holding a (B, ...) tensor of latents in the file's space")
    parser.add_argument("--alpha", nargs=2, type=float, default=[-6.0, 6.0], metavar=("MIN", "MAX"))
    parser.add_argument("--steps", type=int, default=9)
    parser.add_argument("--scale", type=int, default=3, help="pixel upscaling of the outputs")
    parser.add_argument("--guided", action="store_true",
                        help="classifier-guided: follow the direction in small steps, keeping the --keep attributes "
                             "fixed with the classifier's gradients through the generator (slower)")
    parser.add_argument("--annotator", default="demo", help="classifier for --guided")
    parser.add_argument("--out", default="edits")
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:N")
    args = parser.parse_args(argv)
    return run_command(lambda: _run(args))


def _run(args: argparse.Namespace) -> None:
    from callbacks.direction_report import labelled_rows, read_directions
    from generators.loading import load_generator_like, resolve_device
    from latentnav.safe_load import safe_torch_load

    device = resolve_device(args.device)
    path = Path(args.directions)
    found = read_directions(path)  # a missing or malformed file is one line
    recorded = found["generator"]
    # The sha256 is compared below rather than in load_generator_like, so that the error names this file.
    G = load_generator_like(dict(recorded, sha256=None), source=args.generator, map_location=device).to(device)
    if recorded.get("sha256") and recorded["sha256"] != G.identity.get("sha256"):
        raise ConfigError(f"{path} was made for generator {recorded.get('source')} (sha256 {recorded['sha256'][:12]}), "
                          f"not {G.identity['source']} (sha256 {G.identity['sha256'][:12]})")
    space = found["latent_space"]
    if args.latents:
        latents = safe_torch_load(args.latents)
        if not isinstance(latents, torch.Tensor):
            raise ConfigError(f"{args.latents}: expected a tensor of latents, got {type(latents).__name__}")
        G.check_latent(latents.float(), space)
        latents = latents.float().to(device)
    else:
        latents = torch.cat([G.sample(1, seed=s, space=space) for s in args.seeds])
    alphas = np.linspace(args.alpha[0], args.alpha[1], args.steps)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    for attribute in args.attributes:
        if args.guided:
            from lightning_modules.annotator import load_annotator

            judge = load_annotator(args.annotator, map_location=device).to(device)
            edit_direction(found["directions"], found["names"], attribute, args.keep)  # checks the names
            unknown = [k for k in args.keep if k not in judge.attributes]
            if unknown:
                raise ConfigError(f"--keep: {', '.join(unknown)} not among the classifier's {' '.join(judge.attributes)}")
            d = torch.nn.functional.normalize(found["directions"][found["names"].index(attribute)].float(), dim=0)
            keep = [judge.attributes.index(k) for k in args.keep]
            images = render_guided_edits(G, judge, latents, d, alphas, space, keep)
        else:
            images = render_edits(G, latents, edit_direction(found["directions"], found["names"], attribute, args.keep),
                                  alphas, space)
        frames = to_uint8(images.flatten(0, 1), args.scale)
        frames = frames.reshape(len(alphas), len(latents), *frames.shape[1:])
        strip = np.concatenate([np.concatenate(list(frames[:, b]), axis=1) for b in range(len(latents))], axis=0)
        rows = [f"sample {b}" for b in range(len(latents))]
        tag = attribute + (f"_keep_{'_'.join(args.keep)}" if args.keep else "") + ("_guided" if args.guided else "")
        Image.fromarray(labelled_rows(strip, rows, [f"{a:+.1f}" for a in alphas], margin=60)).save(out / f"{tag}.png")
        gif = [Image.fromarray(np.concatenate(list(frames[i]), axis=1)) for i in range(len(alphas))]
        gif += gif[-2:0:-1]  # there and back
        gif[0].save(out / f"{tag}.gif", save_all=True, append_images=gif[1:], duration=120, loop=0)
        print(f"wrote {out / (tag + '.png')} and {out / (tag + '.gif')}")

if __name__ == "__main__":
    sys.exit(main())
