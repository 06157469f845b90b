import io

import numpy as np
import pytest

from latentnav.datamodules.celeba_files import (
    check_images,
    read_attribute_file,
    read_partition_file,
    split_indices,
)
from latentnav.errors import DataFormatError

# Exactly as the real list_attr_celeba.txt: count, names with a trailing space, rows padded
# with two spaces before positive values, one before negative ones.
REAL_ATTR = (
    "3\n"
    "5_o_Clock_Shadow Arched_Eyebrows Male Young \n"
    "000001.jpg -1  1 -1  1\n"
    "000002.jpg -1 -1  1  1\n"
    "000003.jpg  1 -1  1 -1\n"
)
REAL_PART = "000001.jpg 0\n000002.jpg 1\n000003.jpg 2\n"


def write(tmp_path, name, text, crlf=False):
    path = tmp_path / name
    path.write_bytes(text.replace("\n", "\r\n").encode() if crlf else text.encode())
    return path


@pytest.mark.parametrize("crlf", [False, True])
def test_reads_real_format(tmp_path, crlf):
    table = read_attribute_file(write(tmp_path, "list_attr_celeba.txt", REAL_ATTR, crlf))
    assert table.names == ("5_o_Clock_Shadow", "Arched_Eyebrows", "Male", "Young")
    assert table.filenames == ("000001.jpg", "000002.jpg", "000003.jpg")
    np.testing.assert_array_equal(table.values, [[-1, 1, -1, 1], [-1, -1, 1, 1], [1, -1, 1, -1]])
    assert table.values.dtype == np.int8
    split_of = read_partition_file(write(tmp_path, "list_eval_partition.txt", REAL_PART, crlf))
    assert split_of == {"000001.jpg": 0, "000002.jpg": 1, "000003.jpg": 2}
    splits = split_indices(table, split_of, "p")
    assert [list(splits[s]) for s in ("train", "val", "test")] == [[0], [1], [2]]


def test_byte_order_mark_and_huge_count(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbf" + REAL_ATTR.encode())
    assert read_attribute_file(path).filenames[0] == "000001.jpg"
    part = tmp_path / "part.txt"
    part.write_bytes(b"\xef\xbb\xbf" + REAL_PART.encode())
    assert "000001.jpg" in read_partition_file(part)
    huge = write(tmp_path, "huge.txt", "2025990000000\nA B \nx.jpg 1  1\n")
    with pytest.raises(DataFormatError, match=r"line 1 says 2025990000000 images but the file has 1 rows"):
        read_attribute_file(huge)


def test_select_reorders_and_rejects_unknown(tmp_path):
    table = read_attribute_file(write(tmp_path, "a.txt", REAL_ATTR))
    sub = table.select(["Young", "Male"])
    assert sub.names == ("Young", "Male")
    np.testing.assert_array_equal(sub.values[:, 0], [1, 1, -1])
    with pytest.raises(DataFormatError, match=r"unknown attribute name\(s\) Smilling; valid names: 5_o_Clock_Shadow .* Young"):
        table.select(["Smilling", "Male"])


@pytest.mark.parametrize(
    "text, message",
    [
        ("three\nA B \nx.jpg 1 1\n", r"line 1: expected the number of images, got 'three'"),
        ("1\n\nx.jpg 1 1\n", r"line 2: expected attribute names"),
        ("1\nA A \nx.jpg 1 1\n", r"line 2: attribute name 'A' appears twice"),
        ("2\nA B \nx.jpg 1  1\ny.jpg 1\n", r"line 4: expected a file name and 2 values, got 2 field\(s\)"),
        ("2\nA B \nx.jpg 1  1\ny.jpg 1  0\n", r"line 4: B is '0', expected 1 or -1"),
        ("3\nA B \nx.jpg 1  1\ny.jpg 1  1\n", r"line 1 says 3 images but the file has 2 rows"),
        ("1\nA B \nx.jpg 1  1\ny.jpg 1  1\n", r"line 1 says 1 images but there are more rows \(line 4\)"),
        ("2\nA B \nx.jpg 1  1\nx.jpg 1  1\n", r"image x.jpg is listed twice"),
    ],
)
def test_malformed_attribute_file(tmp_path, text, message):
    path = write(tmp_path, "list_attr_celeba.txt", text)
    with pytest.raises(DataFormatError, match=message) as err:
        read_attribute_file(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "text, message",
    [
        ("x.jpg 3\n", r"line 1: expected '<image> 0\|1\|2'"),
        ("x.jpg 0\ny.jpg\n", r"line 2: expected '<image> 0\|1\|2'"),
        ("x.jpg 0\nx.jpg 1\n", r"line 2: image x.jpg is listed twice"),
        ("\n", r"no '<image> 0\|1\|2' lines"),
    ],
)
def test_malformed_partition_file(tmp_path, text, message):
    with pytest.raises(DataFormatError, match=message):
        read_partition_file(write(tmp_path, "list_eval_partition.txt", text))


def test_partition_must_cover_every_image(tmp_path):
    table = read_attribute_file(write(tmp_path, "a.txt", REAL_ATTR))
    with pytest.raises(DataFormatError, match=r"p.txt: no split given for image 000003.jpg"):
        split_indices(table, {"000001.jpg": 0, "000002.jpg": 1}, "p.txt")


def test_missing_and_binary_files(tmp_path):
    with pytest.raises(DataFormatError, match=r"list_attr_celeba.txt: file not found"):
        read_attribute_file(tmp_path / "list_attr_celeba.txt")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataFormatError, match=r"bin.txt: not a text file"):
        read_attribute_file(tmp_path / "bin.txt")


def test_partition_images_without_attribute_row(tmp_path):
    table = read_attribute_file(write(tmp_path, "a.txt", REAL_ATTR))
    split_of = read_partition_file(write(tmp_path, "p.txt", REAL_PART + "000009.jpg 0\n000004.jpg 1\n"))
    with pytest.raises(DataFormatError) as err:
        split_indices(table, split_of, "p.txt", "a.txt")
    assert str(err.value) == (
        "p.txt: 2 image(s) have a split but no row in a.txt, first 000009.jpg; "
        "add their attribute rows or remove them from the partition file"
    )


def jpeg_bytes(size=(64, 64)):
    """A real JPEG written by PIL (random pixels, so the body is several KB)."""
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG")
    return buffer.getvalue()


def corrupt_jpeg(data, how):
    """``data`` with its header intact and its body cut, replaced by garbage or zeros."""
    sos = data.index(b"\xff\xda")  # start-of-scan: the entropy-coded body follows its header
    body = sos + 2 + int.from_bytes(data[sos + 2 : sos + 4], "big")
    n = len(data) - body
    if how == "truncated":
        return data[: body + n // 2]
    if how == "garbage":  # random bytes, with the end-of-image marker kept: only decoding finds it
        return data[:body] + np.random.default_rng(0).integers(0, 256, n - 2, dtype=np.uint8).tobytes() + b"\xff\xd9"
    if how == "zeros":  # libjpeg decodes this as grey without an error: only the missing end marker shows it
        return data[:body] + bytes(n)
    raise ValueError(how)


def test_check_images(tmp_path):
    from PIL import Image

    images = tmp_path / "img_align_celeba"
    images.mkdir()
    Image.new("RGB", (8, 10)).save(images / "000001.jpg")
    (images / "000002.jpg").write_bytes(b"not a jpeg at all")
    (images / "000003.jpg").write_bytes(b"")
    assert check_images(images, ["000001.jpg"]) == [(8, 10)]
    with pytest.raises(DataFormatError, match=r"1 listed image\(s\) missing, first 000004.jpg"):
        check_images(images, ["000001.jpg", "000004.jpg"])
    with pytest.raises(DataFormatError, match=r"000002.jpg: unreadable image .*; 2 of 3 listed images unreadable$"):
        check_images(images, ["000001.jpg", "000002.jpg", "000003.jpg"])
    with pytest.raises(DataFormatError, match=r"image folder not found"):
        check_images(tmp_path / "nope", ["000001.jpg"])


@pytest.mark.parametrize(
    "how, message",
    [
        ("truncated", r"image file is truncated"),
        ("garbage", r"broken data stream"),
        ("zeros", r"no JPEG end-of-image marker"),
    ],
)
def test_decode_finds_corrupt_body_that_header_pass_does_not(tmp_path, how, message):
    from PIL import ImageFile

    good = jpeg_bytes()
    (tmp_path / "good.jpg").write_bytes(good)
    (tmp_path / "padded.jpg").write_bytes(good + bytes(16))  # NUL padding after the end marker is fine
    (tmp_path / "bad.jpg").write_bytes(corrupt_jpeg(good, how))
    names = ["good.jpg", "padded.jpg", "bad.jpg"]
    assert check_images(tmp_path, names) == [(64, 64)] * 3  # the header is intact
    assert check_images(tmp_path, names[:2], decode=True) == [(64, 64)] * 2
    with pytest.raises(DataFormatError, match=rf"bad.jpg: unreadable image \(OSError: {message}.*\); 1 of 3") as err:
        check_images(tmp_path, names, decode=True)
    assert "\n" not in str(err.value)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # found without changing PIL's global
