"""Image helpers shared by every figure: tensors -> uint8 pixels, labelled grids, heat-maps."""

from __future__ import annotations

from typing import Sequence

import os
from pathlib import Path

import numpy as np
import torch

from latentnav.errors import DataFormatError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")


def to_uint8(images: torch.Tensor, scale: int = 1) -> np.ndarray:
    """Images (..., 3, H, W) in [-1, 1] (any float dtype, any device) -> uint8 (..., H * scale, W * scale, 3)
    on the CPU; values outside [-1, 1] are clipped, pixels repeated ``scale`` times each way."""
    pixels = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().movedim(-3, -1).cpu().numpy()
    return upscale(pixels, scale)


def upscale(pixels: np.ndarray, scale: int) -> np.ndarray:
    """uint8 (..., H, W, 3) -> (..., H * scale, W * scale, 3), nearest neighbour."""
    if scale == 1:
        return pixels
    return pixels.repeat(scale, axis=-3).repeat(scale, axis=-2)


def tile(frames: np.ndarray) -> np.ndarray:
    """uint8 (rows, columns, H, W, 3) -> one image (rows * H, columns * W, 3)."""
    r, c, h, w, ch = frames.shape
    return frames.transpose(0, 2, 1, 3, 4).reshape(r * h, c * w, ch)


def labelled_rows(grid: np.ndarray, row_names: Sequence[str], column_names: Sequence[str],
                  margin: int = 110) -> np.ndarray:
    """Add row names on the left and column names on top of an image grid (uint8 HWC)."""
    from PIL import Image, ImageDraw, ImageFont

    h, w, _ = grid.shape
    row_h, col_w, top = h // len(row_names), w // len(column_names), 14
    canvas = Image.new("RGB", (w + margin, h + top), (255, 255, 255))
    canvas.paste(Image.fromarray(grid), (margin, top))
    draw, font = ImageDraw.Draw(canvas), ImageFont.load_default()
    for i, name in enumerate(row_names):
        draw.text((2, top + i * row_h + row_h // 2 - 5), name, fill=(0, 0, 0), font=font)
    for j, name in enumerate(column_names):
        draw.text((margin + j * col_w + col_w // 2 - 8, 1), name, fill=(0, 0, 0), font=font)
    return np.asarray(canvas)


def heatmap(matrix: torch.Tensor, cell: int = 12) -> np.ndarray:
    """(R, C) values in [-1, 1] -> uint8 RGB image (R * cell, C * cell, 3), blue negative, red positive."""
    m = matrix.clamp(-1, 1).cpu().numpy()
    rgb = np.stack([np.where(m > 0, 1.0, 1.0 + m), 1.0 - np.abs(m), np.where(m < 0, 1.0, 1.0 - m)], -1)
    return (np.kron(rgb, np.ones((cell, cell, 1))) * 255).astype(np.uint8)


class UnreadableImage(DataFormatError):
    """An image file that cannot be used (unreadable, unsupported pixels, smaller than the crop): one line,
    ``"<path>: <reason>"``; :attr:`path` and :attr:`reason` keep the two parts."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = Path(path), reason


_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def to_rgb(im):
    """A PIL image (already open) as 8-bit ``RGB``, its values scaled rather than clipped:

    - 16-bit grey (``I;16*``; ``I``, as Pillow reads a 16-bit PNG or TIFF): ``round(v * 255 / 65535)``
      (``I`` values clipped to 0..65535 first);
    - grey (``L``), 1-bit (``1``), CMYK, YCbCr: Pillow's conversion;
    - transparency (``RGBA``, ``LA``, ``PA``, a palette ``P`` or GIF with a transparent colour):
      **composited on black** (each channel times alpha / 255, rounded): transparent pixels become
      black, whatever colour they hide;
    - a palette (``P``): its colours;
    - float pixels (``F``) have no fixed range: refused (``ValueError``).
    A multi-frame file (GIF, WebP, TIFF) gives its first frame."""
    from PIL import Image

    if getattr(im, "n_frames", 1) > 1:
        im.seek(0)
    mode = im.mode
    if mode in _SIXTEEN_BIT:
        values = np.asarray(im).astype(np.int64).clip(0, 65535)
        grey = ((values * 255 + 32767) // 65535).astype(np.uint8)  # round(v * 255 / 65535), exactly
        return Image.fromarray(np.repeat(grey[..., None], 3, axis=-1), "RGB")
    if mode == "F":
        raise ValueError("32-bit float pixels (mode F) have no fixed range; save the image with 8 or 16 bits")
    if mode == "P" and "transparency" in im.info:
        im, mode = im.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = np.asarray(im.convert("RGBA"), dtype=np.uint16)
        rgb = (rgba[..., :3] * rgba[..., 3:] + 127) // 255  # on black: round(c * a / 255)
        return Image.fromarray(rgb.astype(np.uint8), "RGB")
    return im if mode == "RGB" else im.convert("RGB")


def load_square_image(path: str | os.PathLike, size: int, crop_size: int | None = None) -> torch.Tensor:
    """An image file as float32 (3, size, size) in [-1, 1]: converted to 8-bit RGB by :func:`to_rgb`
    (16-bit scaled, grey repeated, transparency composited on black, a palette's colours, a GIF's first
    frame), then a centred square of side ``crop_size`` (the shorter side when None; CelebA's reader
    uses 178) resized with bicubic filtering. An unreadable file, unsupported pixels or a crop larger
    than the image is one :class:`UnreadableImage` line naming the file."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            im = to_rgb(im)
            w, h = im.size
            side = min(w, h) if crop_size is None else crop_size
            if side > min(w, h):
                raise UnreadableImage(path, f"crop_size {side} exceeds the image size {w}x{h}")
            left, top = (w - side) // 2, (h - side) // 2
            if (w, h) != (side, side):
                im = im.crop((left, top, left + side, top + side))
            if side != size:
                im = im.resize((size, size), Image.BICUBIC, reducing_gap=None)
            array = np.asarray(im, dtype=np.uint8)
    except UnreadableImage:
        raise
    except UnidentifiedImageError:
        raise UnreadableImage(path, "unreadable image (not an image file Pillow can identify)") from None
    except Exception as e:  # noqa: BLE001 - a hostile or truncated file can raise anything inside a decoder
        raise UnreadableImage(path, f"unreadable image ({type(e).__name__}: {' '.join(str(e).split())})") from None
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(127.5).sub_(1.0)


def list_images(paths: Sequence[str | os.PathLike], skipped: list | None = None) -> list[Path]:
    """Image files named by ``paths`` (files, or folders whose image files are taken in name order).
    A folder's other files (another suffix than :data:`IMAGE_SUFFIXES`) are left out; with ``skipped``
    (a list), each is appended to it as ``(path, reason)``. A missing path or a folder without images
    is one ``ConfigError`` line."""
    from latentnav.errors import ConfigError

    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file())
            inside = [f for f in files if f.suffix.lower() in IMAGE_SUFFIXES]
            if not inside:
                raise ConfigError(f"{p}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder")
            found += inside
            if skipped is not None:
                skipped += [(f, f"not an image file (suffix {f.suffix or 'none'!r}; images are "
                                f"{' '.join(IMAGE_SUFFIXES)})") for f in files if f not in inside]
        elif p.is_file():
            found.append(p)
        else:
            raise ConfigError(f"{p}: no such image file or folder")
    if not found:
        raise ConfigError("images: give at least one image file or folder")
    return found
