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


def test_check_images(tmp_path):
    from PIL import Image

    images = tmp_path / "img_align_celeba"
    images.mkdir()
    Image.new("RGB", (8, 8)).save(images / "000001.jpg")
    (images / "000002.jpg").write_bytes(b"not a jpeg at all")
    check_images(images, ["000001.jpg"])
    with pytest.raises(DataFormatError, match=r"1 listed image\(s\) missing, first 000003.jpg"):
        check_images(images, ["000001.jpg", "000003.jpg"])
    with pytest.raises(DataFormatError, match=r"000002.jpg: unreadable image"):
        check_images(images, ["000001.jpg", "000002.jpg"])
    with pytest.raises(DataFormatError, match=r"image folder not found"):
        check_images(tmp_path / "nope", ["000001.jpg"])
