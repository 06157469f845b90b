from types import SimpleNamespace

import numpy as np
import pytest
import torch

from latentnav.datamodules.celeba import CelebADataModule
from tests.conftest import fake_celeba
from tests.datamodules.test_celeba_files import corrupt_jpeg
from latentnav.datamodules.celeba_files import read_attribute_file
from latentnav.datamodules.demo import DemoFacesDataModule
from latentnav.datamodules.demo_faces import DEMO_ATTRIBUTES, read_metadata
from latentnav.errors import ConfigError, DataFormatError


def test_real_layout_crop_resize_and_targets(tmp_path):
    labels = fake_celeba(tmp_path)
    dm = CelebADataModule(str(tmp_path), attributes=["Young", "Smiling"], image_size=64, batch_size=4, hflip=False)
    dm.setup("fit")
    assert dm.attribute_names == ["Young", "Smiling"]
    assert [len(dm.splits[s]) for s in ("train", "val", "test")] == [4, 1, 1]
    images, targets = next(iter(dm.train_dataloader()))
    assert images.shape == (4, 3, 64, 64) and images.dtype == torch.float32
    assert images.min() >= -1.0 and images.max() <= 1.0
    # Targets are {0, 1} in the requested column order, rows in file order (no shuffle of labels).
    expected = torch.from_numpy((labels[:4][:, [2, 0]] > 0).astype(np.float32))
    assert sorted(map(tuple, targets.tolist())) == sorted(map(tuple, expected.tolist()))
    # The 178x178 centre crop keeps the black left half on the left.
    image = dm.splits["val"].load_image(0)
    assert image[:, :, :28].max() == -1.0 and image[:, :, 36:].mean() > -0.5


def test_flips_seeded_per_rank(tmp_path):
    fake_celeba(tmp_path, n=40)
    dm = CelebADataModule(str(tmp_path), image_size=16, batch_size=38, hflip=True, seed=3)
    dm.setup("fit")

    def flips(rank):
        dm.trainer = SimpleNamespace(global_rank=rank, world_size=2)
        loader = dm.train_dataloader()
        images, _ = next(iter(loader))
        return (images[:, :, :, :8].mean((1, 2, 3)) > images[:, :, :, 8:].mean((1, 2, 3))).tolist()

    rank0, rank0_again, rank1 = flips(0), flips(0), flips(1)
    assert rank0 == rank0_again
    assert rank0 != rank1
    assert 0 < sum(rank0) < len(rank0)


def test_evaluation_splits_are_not_padded_across_ranks(tmp_path):
    fake_celeba(tmp_path, n=9)  # 7 train, 1 val, 1 test: 1 val image over 2 ranks
    dm = CelebADataModule(str(tmp_path), image_size=16, batch_size=4)
    dm.setup("fit")
    dm.splits["val"] = dm.splits["train"]  # 7 images: odd, so a padding sampler would repeat one
    seen = []
    for rank in (0, 1):
        dm.trainer = SimpleNamespace(global_rank=rank, world_size=2)
        seen += list(dm.val_dataloader().sampler)
    assert sorted(seen) == list(range(7))


def test_workers_reseed_and_decode(tmp_path):
    fake_celeba(tmp_path, n=12)
    dm = CelebADataModule(str(tmp_path), image_size=16, batch_size=5, num_workers=2, hflip=True)
    dm.setup("fit")
    images = torch.cat([x for x, _ in dm.train_dataloader()])
    assert images.shape == (10, 3, 16, 16)
    flipped = (images[:, :, :, :8].mean((1, 2, 3)) > images[:, :, :, 8:].mean((1, 2, 3))).sum()
    assert 0 < flipped < 10


def test_bad_input_fails_before_training(tmp_path):
    with pytest.raises(DataFormatError, match=r"data.root: folder .*nowhere not found"):
        CelebADataModule(str(tmp_path / "nowhere")).setup("fit")
    fake_celeba(tmp_path)
    with pytest.raises(DataFormatError, match=r"unknown attribute name\(s\) Smilng; valid names: Smiling Male Young"):
        CelebADataModule(str(tmp_path), attributes=["Smilng"]).setup("fit")
    with pytest.raises(ConfigError, match=r"6 of 6 images smaller than data.crop_size 300, first .*000001.jpg is 178x218"):
        CelebADataModule(str(tmp_path), crop_size=300).setup("fit")
    with pytest.raises(ConfigError, match=r"data.crop_size: expected a positive number of pixels or null, got 0"):
        CelebADataModule(str(tmp_path), crop_size=0)
    (tmp_path / "img_align_celeba" / "000003.jpg").write_bytes(b"\x00" * 64)
    with pytest.raises(DataFormatError, match=r"000003.jpg: unreadable image"):
        CelebADataModule(str(tmp_path)).setup("fit")
    (tmp_path / "img_align_celeba" / "000003.jpg").unlink()
    with pytest.raises(DataFormatError, match=r"missing, first 000003.jpg"):
        CelebADataModule(str(tmp_path)).setup("fit")
    (tmp_path / "list_eval_partition.txt").unlink()
    with pytest.raises(DataFormatError, match=r"list_eval_partition.txt: file not found"):
        CelebADataModule(str(tmp_path), verify_images=False).setup("fit")


def test_small_image_anywhere_fails_setup(tmp_path):
    from PIL import Image

    fake_celeba(tmp_path)
    Image.new("RGB", (100, 120)).save(tmp_path / "img_align_celeba" / "000004.jpg")  # not the first image
    with pytest.raises(ConfigError) as err:
        CelebADataModule(str(tmp_path)).setup("fit")
    assert str(err.value) == (
        f"1 of 6 images smaller than data.crop_size 178, first {tmp_path / 'img_align_celeba' / '000004.jpg'} "
        "is 100x120; lower data.crop_size or remove those images from the list files"
    )
    CelebADataModule(str(tmp_path), crop_size=100).setup("fit")
    CelebADataModule(str(tmp_path), crop_size=None).setup("fit")
    # Without the check, training would stop when it reaches that image.
    dm = CelebADataModule(str(tmp_path), verify_images=False)
    dm.setup("fit")
    with pytest.raises(DataFormatError, match=r"000004.jpg: crop_size 178 exceeds the image size 100x120"):
        dm.splits["train"].load_image(3)


@pytest.mark.parametrize("how", ["truncated", "garbage", "zeros"])
def test_verify_images_decode_finds_corrupt_body(tmp_path, how):
    fake_celeba(tmp_path)
    CelebADataModule(str(tmp_path), verify_images="decode").setup("fit")  # good data passes
    path = tmp_path / "img_align_celeba" / "000005.jpg"
    path.write_bytes(corrupt_jpeg(path.read_bytes(), how))
    for header_pass in (True, "header", False, "off"):
        CelebADataModule(str(tmp_path), verify_images=header_pass).setup("fit")
    with pytest.raises(DataFormatError, match=r"000005.jpg: unreadable image .*; 1 of 6 listed images unreadable$"):
        CelebADataModule(str(tmp_path), verify_images="decode").setup("fit")


def test_verify_images_choices(tmp_path):
    from jsonargparse import ArgumentParser

    with pytest.raises(ConfigError, match=r"^data.verify_images: expected true, false, off, header or decode, got 'full'$"):
        CelebADataModule(str(tmp_path), verify_images="full")
    # The typed signature lets the CLI (jsonargparse) accept the choices and refuse others.
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(CelebADataModule, "data")
    for value, mode in [("true", "header"), ("false", "off"), ("header", "header"), ("decode", "decode"), ("off", "off")]:
        args = parser.parse_args(["--data.root", str(tmp_path), "--data.verify_images", value])
        assert CelebADataModule(**args.data).verify_images == mode
    with pytest.raises(Exception, match=r"verify_images"):
        parser.parse_args(["--data.root", str(tmp_path), "--data.verify_images", "full"])


def test_partition_image_without_attribute_row_fails_setup(tmp_path):
    fake_celeba(tmp_path)
    with open(tmp_path / "list_eval_partition.txt", "a") as f:
        f.write("000007.jpg 0\n000008.jpg 2\n")
    with pytest.raises(DataFormatError, match=r"list_eval_partition.txt: 2 image\(s\) have a split but no row in "
                                              r".*list_attr_celeba.txt, first 000007.jpg; add their attribute rows"):
        CelebADataModule(str(tmp_path), verify_images=False).setup("fit")


def test_demo_datamodule_reads_rendered_faces(demo_root):
    dm = DemoFacesDataModule(root=str(demo_root), num_faces=4000, batch_size=16)
    mtime = (demo_root / "list_attr_celeba.txt").stat().st_mtime_ns
    dm.prepare_data()  # already rendered with these settings: nothing is rewritten
    assert (demo_root / "list_attr_celeba.txt").stat().st_mtime_ns == mtime
    dm.setup("fit")
    assert dm.attribute_names == list(DEMO_ATTRIBUTES)
    images, targets = next(iter(dm.val_dataloader()))
    assert images.shape == (16, 3, 32, 32) and targets.shape == (16, len(DEMO_ATTRIBUTES))
    table = read_attribute_file(demo_root / "list_attr_celeba.txt")
    first_val = table.values[3200, :]
    assert targets[0].tolist() == [float(v > 0) for v in first_val]


def test_demo_datamodule_renders_when_missing_or_stale(tmp_path):
    dm = DemoFacesDataModule(root=str(tmp_path / "demo"), num_faces=20)
    dm.prepare_data()
    assert read_metadata(tmp_path / "demo")["num"] == 20
    DemoFacesDataModule(root=str(tmp_path / "demo"), num_faces=30).prepare_data()
    assert read_metadata(tmp_path / "demo")["num"] == 30
    assert len(read_attribute_file(tmp_path / "demo" / "list_attr_celeba.txt").filenames) == 30
