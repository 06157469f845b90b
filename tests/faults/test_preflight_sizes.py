"""Sizes nobody checked (issue 22, item 5): an annotation store larger than its disk, and a batch size of 0,
are one line before any work (nothing annotated, no folder made)."""

import pytest

from tests.test_faults import one_line_error, run_cli, supervised


def test_an_annotation_store_larger_than_the_disk_is_one_line_before_annotating(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(supervised(tmp_path, "--data.init_args.num_train", "1000000000"), capsys)
    assert code == 2
    line = one_line_error(err, "annotation store", "GB are free", "data.cache_dir")
    needed = float(line.split("needs about ")[1].split(" GB")[0])
    assert 290 < needed < 320  # 1e9 x (64 latent + 12 logit floats) x 4 bytes = 304 GB
    assert not list((tmp_path / "cache").rglob("shard_*.pt"))


def test_the_store_estimate_counts_only_what_is_left(tmp_path):
    from latentnav.datamodules.annotated_latents import AnnotatedLatentsDataModule

    dm = AnnotatedLatentsDataModule(num_train=300, num_val=100, shard_size=100, cache_dir=str(tmp_path / "c"))
    job = dm._annotation_module()
    full = dm.store_bytes(job)
    assert full == 400 * 4 * (64 + 12) + 4 * 4096
    dm.prepare_data()
    assert dm.store_bytes(job) == 0  # both stores finished


@pytest.mark.parametrize("field", ["batch_size", "annotate_batch_size", "num_val"])
def test_a_count_below_one_is_one_line_before_any_work(tmp_path, capsys, monkeypatch, field):
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(supervised(tmp_path, f"--data.init_args.{field}", "0"), capsys)
    assert code == 2
    one_line_error(err, f"data.{field}", "expected a whole number >= 1")
    assert not (tmp_path / "cache").exists()
