"""Image helpers shared by every figure: tensors -> uint8 pixels, labelled grids, heat-maps."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


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
