"""The annotation predict job: 1 and 2 processes agree, a killed run resumes, shards are checked, the store is locked."""

import fcntl
import json
import os
import signal
import subprocess
import sys

import pytorch_lightning as pl
import torch

from latentnav.callbacks.annotation_writer import AnnotationWriter
from latentnav.callbacks.process_group_exit import ProcessGroupExit
from latentnav.datamodules.latent_indices import LatentIndicesDataModule
from latentnav.generators import load_generator
from latentnav.annotation_shards import load_shard
from latentnav.commands.cli import LatentNavCLI
from latentnav.lightning_modules.annotator import load_annotator
from latentnav.lightning_modules.latent_annotation import LatentAnnotation
from tests import ddp_spawn
from tests.distributed import REPO


def annotate(out_dir, devices=1, num=300, shard_size=100, batch_size=40, seed=7, lock=True, callbacks=()):
    writer = AnnotationWriter(str(out_dir), lock=lock)
    # Two processes keep the Trainer's defaults (progress bar, summary).
    trainer = pl.Trainer(accelerator="cpu", devices=devices, strategy="ddp_spawn" if devices > 1 else "auto",
                         logger=False, enable_checkpointing=False,
                         enable_progress_bar=devices > 1, callbacks=[writer, ProcessGroupExit(), *callbacks])
    trainer.predict(LatentAnnotation("demo", "demo"), datamodule=LatentIndicesDataModule(num, seed, batch_size, shard_size),
                    return_predictions=False)
    return writer


def store(out_dir):
    manifest = json.loads((out_dir / "manifest.json").read_text())
    blobs = [load_shard(out_dir / s["file"], mmap=False) for s in manifest["shards"]]
    return manifest, torch.cat([b["latents"] for b in blobs]), torch.cat([b["logits"] for b in blobs])


def test_one_and_two_processes_write_the_same_store(tmp_path):
    annotate(tmp_path / "one")
    ddp_spawn.run(lambda: annotate(tmp_path / "two", devices=2))
    (m1, z1, y1), (m2, z2, y2) = store(tmp_path / "one"), store(tmp_path / "two")
    assert [s["start"] for s in m1["shards"]] == [s["start"] for s in m2["shards"]] == [0, 100, 200]
    assert [s["count"] for s in m2["shards"]] == [100, 100, 100] and m1["key"] == m2["key"]
    torch.testing.assert_close(z2, z1, atol=1e-5, rtol=0)
    torch.testing.assert_close(y2, y1, atol=1e-5, rtol=0)
    # and they are what the generator and classifier give for latent i of stream 7
    G, judge = load_generator("demo"), load_annotator("demo")
    torch.testing.assert_close(z1[250:260], G.latents_at(range(250, 260), seed=7))
    with torch.no_grad():
        torch.testing.assert_close(y1[250:260], judge.logits(G.synthesize(z1[250:260])), atol=1e-4, rtol=1e-4)
    assert m1["attributes"] == judge.attributes and m1["generator"]["sha256"] == G.identity["sha256"]
    # Resumed on 2 processes with one shard left: rank 1 has nothing to do and still finishes with rank 0.
    (tmp_path / "two" / "shard_00002.pt").unlink()
    (tmp_path / "two" / "manifest.json").unlink()
    ddp_spawn.run(lambda: annotate(tmp_path / "two", devices=2))
    m3, z3, y3 = store(tmp_path / "two")
    assert m3["key"] == m1["key"] and [s["count"] for s in m3["shards"]] == [100, 100, 100]
    torch.testing.assert_close(z3, z1, atol=1e-5, rtol=0)


def test_a_killed_run_resumes_with_only_the_missing_shards(tmp_path, monkeypatch):
    out = tmp_path / "store"
    job = ["predict", "--config", str(REPO / "configs/annotate/demo.yaml"), "--data.init_args.num", "1000",
           "--data.init_args.shard_size", "100", "--data.init_args.batch_size", "50", "--trainer.accelerator", "cpu",
           "--trainer.callbacks.init_args.out_dir", str(out)]
    kill = ["--trainer.callbacks+=tests.kill_after.KillAfterShards", "--trainer.callbacks.init_args.out_dir", str(out),
            "--trainer.callbacks.init_args.shards", "3"]
    done = subprocess.run([sys.executable, str(REPO / "train.py"), *job, *kill], cwd=tmp_path, capture_output=True,
                          text=True, env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    before = sorted(p.name for p in out.glob("shard_*.pt"))
    assert before == ["shard_00000.pt", "shard_00001.pt", "shard_00002.pt"] and not (out / "manifest.json").exists()
    assert not list(out.glob(".*tmp*"))  # atomic writes: no half-written file

    monkeypatch.chdir(tmp_path)
    cli = LatentNavCLI(args=[*job, "--trainer.enable_progress_bar", "false"])  # the same command again
    writer = next(c for c in cli.trainer.callbacks if isinstance(c, AnnotationWriter))
    assert writer.skipped == {0, 1, 2} and writer.written == list(range(3, 10))  # only the missing 7 computed

    fresh = annotate(tmp_path / "fresh", num=1000, shard_size=100, batch_size=50, seed=0)  # uninterrupted
    assert fresh.written == list(range(10))
    (m_res, z_res, y_res), (m_new, z_new, y_new) = store(out), store(tmp_path / "fresh")
    assert m_res["key"] == m_new["key"] and [s["count"] for s in m_res["shards"]] == [100] * 10
    torch.testing.assert_close(z_res, z_new, atol=1e-6, rtol=0)
    torch.testing.assert_close(y_res, y_new, atol=1e-5, rtol=0)

    # A finished store: nothing to do. A corrupted shard (its checksum no longer matches) is the only one redone.
    assert annotate(out, num=1000, shard_size=100, batch_size=50, seed=0).written == []
    (out / "shard_00004.pt").write_bytes(b"not a shard")
    assert annotate(out, num=1000, shard_size=100, batch_size=50, seed=0).written == [4]
    torch.testing.assert_close(store(out)[2], y_new, atol=1e-5, rtol=0)


def locked_by_another(lock) -> bool:
    """Is ``lock`` flock'ed by someone else? (A second open file: flock excludes it even in this process.)"""
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


class LockProbe(pl.Callback):
    """Looks at the store's lock while the job predicts."""

    def __init__(self, lock) -> None:
        self.lock, self.held = lock, None

    def on_predict_start(self, trainer, pl_module) -> None:
        self.held = locked_by_another(self.lock)


def test_the_writer_locks_the_store_for_the_job_and_clears_orphans(tmp_path):
    out = tmp_path / "store"
    out.mkdir()
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                              check=True).stdout)
    orphan = out / f".shard_00000.pt.tmp-{dead}-0123abcd"  # a writer killed mid-shard
    orphan.write_bytes(b"half a shard")
    probe = LockProbe(out / ".lock")
    assert annotate(out, num=100, shard_size=50, batch_size=50, callbacks=[probe]).written == [0, 1]
    assert probe.held and not orphan.exists()
    assert not locked_by_another(out / ".lock")  # released at the end

    # Only the manifest lost: no batch to predict (the loop runs empty, under the lock), the manifest is written again.
    before = (out / "manifest.json").read_text()
    (out / "manifest.json").write_bytes(b"")
    probe = LockProbe(out / ".lock")
    assert annotate(out, num=100, shard_size=50, batch_size=50, callbacks=[probe]).written == []
    assert (out / "manifest.json").read_text() == before and probe.held and not locked_by_another(out / ".lock")

    # lock=False (the caller holds it, as prepare_data does): the job does not wait on it.
    (out / "shard_00001.pt").unlink()
    probe = LockProbe(out / ".lock")
    assert annotate(out, num=100, shard_size=50, batch_size=50, lock=False, callbacks=[probe]).written == [1]
    assert probe.held is False
