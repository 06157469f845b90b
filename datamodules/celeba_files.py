"""Readers for CelebA's annotation files, as the data set is distributed.

``list_attr_celeba.txt``::

    202599
    5_o_Clock_Shadow Arched_Eyebrows ... Young␠          <- names, trailing space
    000001.jpg -1  1  1 -1 ...                           <- one or more spaces

``list_eval_partition.txt`` (no header)::

    000001.jpg 0                                         <- 0 train, 1 val, 2 test

Either line ending is accepted. Every problem raises :class:`DataFormatError` with the
file name and line number; nothing here needs the identity, bbox or landmark files, and
nothing checks the original archives' checksums.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from latentnav.errors import DataFormatError

SPLITS = {"train": 0, "val": 1, "test": 2}


@dataclass(frozen=True)
class AttributeTable:
    """Parsed attribute file.

    ``values`` is int8 of shape (num_images, num_attributes) with entries in {-1, 1};
    ``filenames[i]`` is the image that row ``i`` describes.
    """

    filenames: tuple[str, ...]
    names: tuple[str, ...]
    values: np.ndarray

    def select(self, attributes: Sequence[str] | None, source: str = "attribute file") -> "AttributeTable":
        """Columns ``attributes`` in that order (all when None); unknown names list the valid ones."""
        if attributes is None:
            return self
        unknown = [a for a in attributes if a not in self.names]
        if unknown:
            raise DataFormatError(
                f"{source}: unknown attribute name(s) {', '.join(unknown)}; valid names: {' '.join(self.names)}"
            )
        if len(set(attributes)) != len(attributes):
            raise DataFormatError(f"{source}: attribute list repeats a name: {list(attributes)}")
        columns = [self.names.index(a) for a in attributes]
        return AttributeTable(self.filenames, tuple(attributes), self.values[:, columns])


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise DataFormatError(f"{path}: file not found")
    try:
        # newline=None folds CRLF and CR into "\n"; the real files are plain ASCII.
        # utf-8-sig: files saved by Windows editors start with a byte-order mark.
        with open(path, encoding="utf-8-sig", newline=None) as f:
            return f.read().split("\n")
    except UnicodeDecodeError as e:
        raise DataFormatError(f"{path}: not a text file ({e.reason} at byte {e.start})") from None


def read_attribute_file(path: str | os.PathLike) -> AttributeTable:
    """Parse ``list_attr_celeba.txt`` (or a file in the same format)."""
    path = Path(path)
    lines = _read_lines(path)
    if len(lines) < 2 or not lines[0].strip():
        raise DataFormatError(f"{path}: expected the image count on line 1 and attribute names on line 2")
    try:
        count = int(lines[0].strip())
    except ValueError:
        raise DataFormatError(f"{path} line 1: expected the number of images, got {lines[0].strip()[:40]!r}") from None
    names = tuple(lines[1].split())
    if not names:
        raise DataFormatError(f"{path} line 2: expected attribute names separated by spaces, got an empty line")
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise DataFormatError(f"{path} line 2: attribute name {dup!r} appears twice")
    k = len(names)
    filenames: list[str] = []
    rows: list[list[int]] = []
    allowed = {"1", "-1"}
    for lineno, line in enumerate(lines[2:], start=3):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != k + 1:
            raise DataFormatError(
                f"{path} line {lineno}: expected a file name and {k} values, got {len(parts)} field(s)"
            )
        row = parts[1:]
        if not allowed.issuperset(row):
            j = next(j for j, v in enumerate(row) if v not in allowed)
            raise DataFormatError(f"{path} line {lineno}: {names[j]} is {row[j]!r}, expected 1 or -1")
        if len(filenames) >= count:
            raise DataFormatError(f"{path}: line 1 says {count} images but there are more rows (line {lineno})")
        rows.append([1 if v == "1" else -1 for v in row])
        filenames.append(parts[0])
    if len(filenames) != count:
        raise DataFormatError(f"{path}: line 1 says {count} images but the file has {len(filenames)} rows")
    if len(set(filenames)) != len(filenames):
        seen: set[str] = set()
        dup = next(f for f in filenames if f in seen or seen.add(f))
        raise DataFormatError(f"{path}: image {dup} is listed twice")
    return AttributeTable(tuple(filenames), names, np.array(rows, dtype=np.int8).reshape(len(rows), k))


def read_partition_file(path: str | os.PathLike) -> dict[str, int]:
    """Parse ``list_eval_partition.txt`` into file name -> split code (0, 1 or 2)."""
    path = Path(path)
    split_of: dict[str, int] = {}
    for lineno, line in enumerate(_read_lines(path), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise DataFormatError(
                f"{path} line {lineno}: expected '<image> 0|1|2' (train/val/test), got {line.strip()[:60]!r}"
            )
        if parts[0] in split_of:
            raise DataFormatError(f"{path} line {lineno}: image {parts[0]} is listed twice")
        split_of[parts[0]] = int(parts[1])
    if not split_of:
        raise DataFormatError(f"{path}: no '<image> 0|1|2' lines")
    return split_of


def split_indices(
    table: AttributeTable,
    split_of: dict[str, int],
    partition_path: str | os.PathLike,
    attribute_path: str | os.PathLike = "the attribute file",
) -> dict[str, np.ndarray]:
    """Row indices of ``table`` for each split.

    The two files must list the same images: an image without a split, or a split entry
    without attribute row, raises (the latter would otherwise train on a silent subset).
    """
    try:
        codes = np.fromiter((split_of[f] for f in table.filenames), dtype=np.int8, count=len(table.filenames))
    except KeyError as e:
        raise DataFormatError(f"{partition_path}: no split given for image {e.args[0]}") from None
    # Every row has a split and rows are unique, so extra partition entries show as a longer dict.
    if len(split_of) > len(table.filenames):
        rows = set(table.filenames)
        extra = [f for f in split_of if f not in rows]
        raise DataFormatError(
            f"{partition_path}: {len(extra)} image(s) have a split but no row in {attribute_path}, first {extra[0]}; "
            "add their attribute rows or remove them from the partition file"
        )
    return {name: np.flatnonzero(codes == code) for name, code in SPLITS.items()}


def check_images(image_dir: str | os.PathLike, filenames: Sequence[str], decode: bool = False) -> list[tuple[int, int]]:
    """Check that every listed image exists and reads; return each one's (width, height).

    The listing is one ``os.listdir``; then each file's header is read (cheap: about
    50 us a file, and it gives the size), or, when ``decode``, the whole image is decoded
    with the decoder training uses, so a truncated or corrupt body fails here and not
    midway through training (costs about one epoch of decoding). A JPEG must then also
    end with its end-of-image marker: libjpeg decodes some corrupt data (a zero-filled
    tail, bytes without markers) as grey with only a warning, which PIL does not pass on.
    Truncation raises while PIL's ``ImageFile.LOAD_TRUNCATED_IMAGES`` is False (its
    default; nothing here sets it). All images are read before failing, so the message
    counts the unreadable ones.
    """
    from PIL import Image

    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise DataFormatError(f"{image_dir}: image folder not found")
    present = set(os.listdir(image_dir))
    missing = [f for f in filenames if f not in present]
    if missing:
        raise DataFormatError(
            f"{image_dir}: {len(missing)} listed image(s) missing, first {missing[0]}"
        )
    sizes: list[tuple[int, int]] = []
    bad: list[tuple[str, Exception]] = []
    for name in filenames:
        try:
            if decode:
                data = (image_dir / name).read_bytes()
                with Image.open(io.BytesIO(data)) as im:
                    im.load()
                    size, jpeg = im.size, im.format == "JPEG"
                # NUL padding after the marker is harmless; a tail of zeros alone is not.
                if jpeg and not data.rstrip(b"\0").endswith(b"\xff\xd9"):
                    raise OSError("no JPEG end-of-image marker: the file is cut or its end is overwritten")
            else:
                with Image.open(image_dir / name) as im:  # reads only the header, which holds the size
                    size = im.size
            sizes.append(size)
        except (OSError, SyntaxError, Image.DecompressionBombError) as e:
            bad.append((name, e))
            sizes.append((0, 0))
    if bad:
        name, e = bad[0]
        raise DataFormatError(
            f"{image_dir / name}: unreadable image ({type(e).__name__}: {e}); "
            f"{len(bad)} of {len(filenames)} listed images unreadable"
        )
    return sizes
