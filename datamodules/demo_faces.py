"""Procedural "cartoon faces": the offline stand-in for CelebA.

The renderer is deterministic (one seed -> the same faces, whatever the chunk size),
vectorised over a batch in numpy, and draws every attribute so that it stays visible
at 32x32. Attributes are *sampled with correlations like CelebA's*, because those
correlations are what entangle naive latent directions later:

==========================  ==================  ===================================
pair                        phi (20k faces)     how it arises
==========================  ==================  ===================================
Male / Wearing_Lipstick     -0.71               lipstick on 77 % of women, 6 % of men
Male / No_Beard             -0.52               beards only on men (40 %)
Young / Gray_Hair           -0.53               grey on 60 % of old, 4 % of young
Young / Bald                -0.24               bald: 62 % of old men, 15 % of young
Male / Bald                 +0.33               women almost never bald (2 %)
Wearing_Hat / Bald          -0.18               a hat would hide baldness: exclusive
hair colours                exclusive           exactly one when not bald, none if bald
==========================  ==================  ===================================

``tests/datamodules/test_demo_faces.py`` measures these and fails when they drift.
Every attribute is positive on at least ~10 % and at most ~90 % of faces.

Nuisance factors, independent of the attributes: face position and size, skin tone,
background colour and gradient, hat colour.

Run ``latentnav render-demo OUT_DIR --num N`` to write N faces in CelebA's
on-disk layout (``img_align_celeba/000001.png``, ``list_attr_celeba.txt``,
``list_eval_partition.txt``), so one reader serves the demo and real data.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from latentnav.atomic import atomic_write_text
from latentnav.errors import ConfigError

#: Attribute names, spelled and ordered as in CelebA's ``list_attr_celeba.txt``.
DEMO_ATTRIBUTES: tuple[str, ...] = (
    "Bald",
    "Black_Hair",
    "Blond_Hair",
    "Brown_Hair",
    "Eyeglasses",
    "Gray_Hair",
    "Male",
    "No_Beard",
    "Smiling",
    "Wearing_Hat",
    "Wearing_Lipstick",
    "Young",
)

#: Bumped whenever rendering or sampling changes, so stale folders get re-rendered.
RENDERER_VERSION = 2

_HAIR_RGB = {
    "Black_Hair": (0.07, 0.06, 0.06),
    "Blond_Hair": (0.93, 0.80, 0.36),
    "Brown_Hair": (0.45, 0.26, 0.11),
    "Gray_Hair": (0.76, 0.76, 0.78),
}
_HAT_RGB = np.array(
    [(0.80, 0.12, 0.12), (0.12, 0.30, 0.80), (0.10, 0.60, 0.25), (0.55, 0.20, 0.65), (0.95, 0.55, 0.05)],
    dtype=np.float32,
)
_SKIN_LIGHT = np.array((0.98, 0.84, 0.72), dtype=np.float32)
_SKIN_DARK = np.array((0.66, 0.46, 0.33), dtype=np.float32)
_LIPSTICK_RGB = np.array((0.86, 0.05, 0.22), dtype=np.float32)


def sample_attributes(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Draw ``n`` attribute vectors with CelebA-like correlations.

    Returns a dict name -> bool array of shape (n,), one entry per :data:`DEMO_ATTRIBUTES`.
    """
    u = rng.random((n, 10))
    male = u[:, 0] < 0.45
    young = u[:, 1] < 0.70
    hat = u[:, 2] < 0.20
    # Men lose hair with age; a hat would hide it, so hatted faces are never labelled bald.
    p_bald = np.where(male, np.where(young, 0.15, 0.62), 0.02)
    bald = ~hat & (u[:, 3] < p_bald)
    gray = ~bald & (u[:, 4] < np.where(young, 0.04, 0.60))
    # Remaining hair colour: blond is commoner on women, as in CelebA.
    p_blond = np.where(male, 0.12, 0.34)
    blond = ~bald & ~gray & (u[:, 5] < p_blond)
    black = ~bald & ~gray & ~blond & (u[:, 5] < p_blond + 0.40)
    brown = ~bald & ~gray & ~blond & ~black
    lipstick = u[:, 6] < np.where(male, 0.06, 0.77)
    beard = male & (u[:, 7] < 0.40)
    glasses = u[:, 8] < np.where(young, 0.16, 0.32)
    smiling = u[:, 9] < 0.50
    return {
        "Bald": bald,
        "Black_Hair": black,
        "Blond_Hair": blond,
        "Brown_Hair": brown,
        "Eyeglasses": glasses,
        "Gray_Hair": gray,
        "Male": male,
        "No_Beard": ~beard,
        "Smiling": smiling,
        "Wearing_Hat": hat,
        "Wearing_Lipstick": lipstick,
        "Young": young,
    }


def _sample_nuisance(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "cx": rng.uniform(-0.08, 0.08, n).astype(np.float32),
        "cy": rng.uniform(0.00, 0.10, n).astype(np.float32),
        "scale": rng.uniform(0.88, 1.04, n).astype(np.float32),
        "skin": rng.uniform(0.0, 1.0, n).astype(np.float32),
        "background": rng.uniform(0.20, 0.80, (n, 3)).astype(np.float32),
        "gradient": rng.uniform(-0.15, 0.15, n).astype(np.float32),
        "hat_colour": rng.integers(0, len(_HAT_RGB), n),
        # Bald faces still have a (beard/eyebrow) colour; it is just not labelled.
        "latent_hair": rng.integers(0, 4, n),
    }


def _hair_rgb(attrs: dict[str, np.ndarray], latent_hair: np.ndarray) -> np.ndarray:
    names = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")
    table = np.array([_HAIR_RGB[k] for k in names], dtype=np.float32)
    index = latent_hair.copy()
    for i, name in enumerate(names):
        index[attrs[name]] = i
    return table[index]


def render_faces(
    attrs: dict[str, np.ndarray], nuisance: dict[str, np.ndarray], image_size: int, supersample: int = 2
) -> np.ndarray:
    """Draw faces. Returns uint8 images of shape (n, image_size, image_size, 3).

    All geometry lives in face-local units where the image spans [-1, 1]; one pixel at
    32 px is 0.0625 units, so every feature stroke is at least that thick.
    """
    n = len(attrs["Male"])
    res = image_size * supersample
    coords = (np.arange(res, dtype=np.float32) + 0.5) / res * 2.0 - 1.0
    v_img, u_img = np.meshgrid(coords, coords, indexing="ij")

    def col(a: np.ndarray) -> np.ndarray:
        return a.reshape(n, 1, 1)

    s = col(nuisance["scale"])
    x = (u_img[None] - col(nuisance["cx"])) / s
    y = (v_img[None] - col(nuisance["cy"])) / s
    ax = np.abs(x)

    male, bald, hat = col(attrs["Male"]), col(attrs["Bald"]), col(attrs["Wearing_Hat"])
    young, smiling = col(attrs["Young"]), col(attrs["Smiling"])
    beard = col(~attrs["No_Beard"])
    hair_rgb = _hair_rgb(attrs, nuisance["latent_hair"])
    skin_rgb = _SKIN_LIGHT + (_SKIN_DARK - _SKIN_LIGHT) * nuisance["skin"][:, None]
    lip_rgb = np.where(attrs["Wearing_Lipstick"][:, None], _LIPSTICK_RGB, skin_rgb * np.float32(0.62))

    bg = nuisance["background"][:, None, None, :] * (1.0 + col(nuisance["gradient"])[..., None] * v_img[None, ..., None])
    img = np.broadcast_to(bg, (n, res, res, 3)).copy()

    def paint(mask: np.ndarray, rgb: np.ndarray) -> None:
        rgb = np.asarray(rgb, dtype=np.float32)
        rgb = rgb[:, None, None, :] if rgb.ndim == 2 else rgb
        np.copyto(img, np.broadcast_to(rgb, img.shape), where=mask[..., None])

    rx = np.where(male, 0.57, 0.50)
    ry = np.float32(0.68)
    face = (x / rx) ** 2 + (y / ry) ** 2 <= 1.0

    # Hair behind the head: a cap for everyone with hair, shoulder-length for women.
    cap = (x / (rx + 0.10)) ** 2 + ((y + 0.10) / 0.80) ** 2 <= 1.0
    long_hair = ~male & (ax <= rx + 0.16) & (y > -0.2) & (y < 0.80)
    paint((~bald) & (cap | long_hair), hair_rgb)

    paint(face, skin_rgb)
    # A highlight on the bald scalp keeps baldness visible on light backgrounds.
    paint(bald & ((x / 0.22) ** 2 + ((y + 0.48) / 0.10) ** 2 <= 1.0), np.minimum(skin_rgb * 1.12, 1.0))

    beard_rgb = hair_rgb * np.float32(0.8)
    paint(beard & face & (y > 0.14), beard_rgb)

    fringe = face & (y < -0.36 + 0.05 * np.cos(9.0 * x))
    paint(~bald & fringe, hair_rgb)

    crown = (x / (rx + 0.06)) ** 2 + ((y + 0.62) / 0.36) ** 2 <= 1.0
    brim = (ax <= rx + 0.22) & (y > -0.64) & (y < -0.52)
    paint(hat & ((crown & (y < -0.58)) | brim), _HAT_RGB[nuisance["hat_colour"]])

    eye_y = np.float32(-0.08)
    brow_half = np.where(male, 0.055, 0.032)
    brows = (np.abs(ax - 0.21) <= 0.12) & (np.abs(y + 0.25) <= brow_half)
    paint(brows, hair_rgb * np.float32(0.7))
    eyes = ((ax - 0.21) / 0.085) ** 2 + ((y - eye_y) / 0.07) ** 2 <= 1.0
    paint(eyes, np.full((n, 3), 0.06, np.float32))

    # Age: nasolabial folds and bags under the eyes.
    fold = (~young) & (np.abs(ax - (0.13 + 0.4 * (y - 0.08))) <= 0.045) & (y > 0.06) & (y < 0.30)
    bags = (~young) & (np.abs(((ax - 0.21) / 0.12) ** 2 + ((y - 0.03) / 0.06) ** 2 - 1.0) <= 0.45) & (y > 0.03)
    paint(fold | bags, skin_rgb * np.float32(0.55))

    ring = np.sqrt((ax - 0.21) ** 2 + (y - eye_y) ** 2)
    glasses = col(attrs["Eyeglasses"]) & (((ring >= 0.12) & (ring <= 0.18)) | ((ax <= 0.09) & (np.abs(y - eye_y) <= 0.03)))
    paint(glasses, np.full((n, 3), 0.03, np.float32))

    mouth_y = np.float32(0.30)
    smile_outer = (y >= mouth_y - 0.03) & ((x / 0.25) ** 2 + ((y - mouth_y + 0.03) / 0.20) ** 2 <= 1.0)
    smile_inner = (y >= mouth_y) & ((x / 0.17) ** 2 + ((y - mouth_y) / 0.10) ** 2 <= 1.0)
    neutral = (ax <= 0.17) & (np.abs(y - mouth_y - 0.04) <= 0.06)
    paint(np.where(smiling, smile_outer, neutral), lip_rgb)
    paint(smiling & smile_inner, np.full((n, 3), 0.97, np.float32))

    img = img.reshape(n, image_size, supersample, image_size, supersample, 3).mean(axis=(2, 4))
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def generate(
    n: int, seed: int = 0, image_size: int = 32, chunk: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """Sample and draw ``n`` faces.

    Returns ``(images, labels)``: uint8 (n, image_size, image_size, 3) and int8 (n, K)
    with values in {-1, 1}, columns ordered as :data:`DEMO_ATTRIBUTES`. The result
    depends only on ``(n, seed, image_size)``, not on ``chunk``.
    """
    images, labels, _ = render_with_nuisance(n, seed, image_size, chunk)
    return images, labels


#: The continuous nuisance factors :func:`render_with_nuisance` returns, in column order, each in the
#: renderer's own units: ``cx``, ``cy`` face centre and ``scale`` face size in image units (the image
#: spans [-1, 1], so one pixel at 32 px is 0.0625), ``skin`` tone (0 light .. 1 dark), the background
#: colour at the image's middle row (``background_r/g/b`` in [0, 1]) and its vertical ``gradient``
#: (relative change per image half-height). Hat colour and the unlabelled hair colour of bald faces
#: are categorical and left out.
NUISANCE_FACTORS: tuple[str, ...] = (
    "cx", "cy", "scale", "skin", "background_r", "background_g", "background_b", "gradient",
)


def nuisance_factors(nuisance: dict[str, np.ndarray]) -> np.ndarray:
    """The continuous factors of a :func:`_sample_nuisance` draw as float32 (n, 8), columns :data:`NUISANCE_FACTORS`."""
    columns = [nuisance["cx"], nuisance["cy"], nuisance["scale"], nuisance["skin"], *np.moveaxis(nuisance["background"], 1, 0),
               nuisance["gradient"]]
    return np.stack(columns, axis=1).astype(np.float32)


def render_with_nuisance(
    n: int, seed: int = 0, image_size: int = 32, chunk: int = 512
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`generate` that also returns what it drew besides the attributes.

    Returns ``(images, labels, factors)``: ``images`` and ``labels`` are ``generate(n, seed,
    image_size)``'s (which is this without the factors), ``factors`` float32 (n, 8) holds each face's
    :data:`NUISANCE_FACTORS` in their own units.
    """
    if n < 1 or image_size < 16:
        raise ConfigError(f"demo faces: need num_faces >= 1 and image_size >= 16, got {n} and {image_size}")
    rng = np.random.default_rng(seed)
    attrs = sample_attributes(n, rng)
    nuisance = _sample_nuisance(n, rng)
    images = np.empty((n, image_size, image_size, 3), dtype=np.uint8)
    for start in range(0, n, chunk):
        sl = slice(start, start + chunk)
        images[sl] = render_faces({k: a[sl] for k, a in attrs.items()}, {k: a[sl] for k, a in nuisance.items()}, image_size)
    labels = np.stack([np.where(attrs[k], 1, -1) for k in DEMO_ATTRIBUTES], axis=1).astype(np.int8)
    return images, labels, nuisance_factors(nuisance)


def partition_of(n: int, val_fraction: float = 0.1, test_fraction: float = 0.1) -> np.ndarray:
    """Official-split codes (0 train, 1 val, 2 test) in file order, like CelebA's contiguous split."""
    n_test = int(round(n * test_fraction))
    n_val = int(round(n * val_fraction))
    return np.concatenate([np.zeros(n - n_val - n_test, np.int8), np.ones(n_val, np.int8), np.full(n_test, 2, np.int8)])


METADATA_FILE = "demo_faces.json"


def write_celeba_layout(root: str | os.PathLike, n: int, seed: int = 0, image_size: int = 32) -> Path:
    """Write ``n`` demo faces under ``root`` in CelebA's layout and return ``root``.

    The attribute file reproduces the real one's quirks (trailing space after the
    header names, values padded with two spaces) so the demo exercises the real reader.
    ``demo_faces.json`` records what was rendered; it is written last, so a folder
    without it is an interrupted render.
    """
    from PIL import Image

    root = Path(root)
    img_dir = root / "img_align_celeba"
    img_dir.mkdir(parents=True, exist_ok=True)
    (root / METADATA_FILE).unlink(missing_ok=True)
    images, labels = generate(n, seed=seed, image_size=image_size)
    names = [f"{i + 1:06d}.png" for i in range(n)]
    for name, image in zip(names, images):
        Image.fromarray(image).save(img_dir / name, compress_level=1)
    with open(root / "list_attr_celeba.txt", "w", newline="\n") as f:
        f.write(f"{n}\n")
        f.write(" ".join(DEMO_ATTRIBUTES) + " \n")
        for name, row in zip(names, labels):
            f.write(name + " " + " ".join(f"{v:2d}" for v in row) + "\n")
    with open(root / "list_eval_partition.txt", "w", newline="\n") as f:
        for name, part in zip(names, partition_of(n)):
            f.write(f"{name} {part}\n")
    meta = {"renderer_version": RENDERER_VERSION, "num": n, "seed": seed, "image_size": image_size}
    atomic_write_text(root / METADATA_FILE, json.dumps(meta, indent=1) + "\n")  # whole or absent: "complete"
    return root


def read_metadata(root: str | os.PathLike) -> dict | None:
    """What ``write_celeba_layout`` recorded in ``root``, or None for no (complete) render."""
    path = Path(root) / METADATA_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


if __name__ == "__main__":  # python -m ... (an entry point: it may reach the commands layer)
    from latentnav.commands.tools import render_demo_main

    raise SystemExit(render_demo_main())
