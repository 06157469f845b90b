"""Every training config under configs/ fits on 2 processes (gloo, CPU) with the Trainer's defaults.

At demo sizes and a few steps, but through whole epochs (the epoch-end hooks are where ranks used
to part ways) and the end-of-fit callbacks; each run is bounded by a timeout.
"""

from pathlib import Path

import torch

from tests.conftest import fake_celeba
from tests.distributed import REPO, ddp, run_train


def config(name: str) -> list[str]:
    return ["fit", "--config", str(REPO / "configs" / name)]


def last_step(tmp_path: Path, name: str) -> int:
    ckpt = next(tmp_path.glob(f"runs/{name}/version_0/checkpoints/last.ckpt"))
    return torch.load(ckpt, weights_only=True)["global_step"]


def test_classifier_configs(demo_root, tmp_path):
    epochs = ["--trainer.max_epochs", "2", "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "2"]
    out = run_train([*config("classifier/demo.yaml"), *ddp(), *epochs, "--data.init_args.root", str(demo_root),
                     "--data.init_args.num_faces", "4000"], tmp_path)
    assert out.count("fit finished at global step 6") == 1  # reported once, by rank 0
    assert last_step(tmp_path, "classifier_demo") == 6
    # The held-out judge's config (another backbone) on the same faces.
    run_train([*config("classifier/demo_judge.yaml"), *ddp(), *epochs, "--data.init_args.root", str(demo_root),
               "--data.init_args.num_faces", "4000"], tmp_path)
    assert last_step(tmp_path, "classifier_demo_judge") == 6

    import yaml

    names = yaml.safe_load(open(REPO / "configs/classifier/celeba.yaml"))["data"]["init_args"]["attributes"]
    fake_celeba(tmp_path / "celeba", n=8, names=names)
    parts = [0] * 4 + [1] * 2 + [2] * 2  # each evaluation split needs an image per process
    (tmp_path / "celeba/list_eval_partition.txt").write_text("".join(f"{i + 1:06d}.jpg {p}\n" for i, p in enumerate(parts)))
    run_train([*config("classifier/celeba.yaml"), *ddp(), "--trainer.max_epochs", "1", "--data.init_args.num_workers",
               "0", "--data.init_args.batch_size", "2", "--data.init_args.root", str(tmp_path / "celeba")], tmp_path)
    assert last_step(tmp_path, "classifier_celeba") == 1  # 4 training images, 2 ranks, batch 2


def test_supervised_and_interfacegan_configs(tmp_path):
    small = ["--data.init_args.num_train", "512", "--data.init_args.num_val", "128", "--data.init_args.cache_dir",
             str(tmp_path / "cache"), "--trainer.max_epochs", "2", "--trainer.callbacks.num_samples", "16",
             "--trainer.callbacks.replicates", "20"]  # the intervals' code path, at a tenth of the replicates
    for name, run in (("supervised/demo_no_ortho.yaml", "supervised_demo_no_ortho"),
                      ("supervised/demo.yaml", "supervised_demo"), ("interfacegan/demo.yaml", "interfacegan_demo")):
        out = run_train([*config(name), *ddp(), *small], tmp_path)
        assert out.count("directions written to") == 1, name
        assert last_step(tmp_path, run) == 2  # 512 latents / (2 ranks x 256) per epoch
    assert (tmp_path / "runs/directions/interfacegan.npz").is_file()


def test_unsupervised_config(tmp_path):
    out = run_train([*config("unsupervised/demo.yaml"), *ddp(), "--trainer.max_steps", "6",
                     "--data.init_args.steps_per_epoch", "3", "--data.init_args.num_val", "64"], tmp_path)
    assert out.count("directions written to") == 1
    assert last_step(tmp_path, "unsupervised_demo") == 6
    assert (tmp_path / "runs/unsupervised_demo/version_0/edit_grid.png").is_file()
    assert (tmp_path / "runs/directions/unsupervised_k16.npz").is_file()


def test_nuisance_config(tmp_path):
    out = run_train([*config("nuisance/demo.yaml"), *ddp(), "--data.init_args.num_train", "256",
                     "--data.init_args.num_val", "64", "--data.init_args.num_test", "64", "--trainer.max_epochs", "2"],
                    tmp_path)
    assert out.count("fit finished at global step") == 1
    assert last_step(tmp_path, "nuisance_demo") > 0
