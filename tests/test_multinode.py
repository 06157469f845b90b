"""Multi-node launch, on one CPU machine: two torchrun "nodes" of one process each run the annotation
predict job (the README's torchrun line, with --trainer.num_nodes 2 from the command line alone)."""

import json
import os
import socket
import subprocess
import sys

import torch

from latentnav.generators import load_generator
from latentnav.annotation_shards import load_shard
from latentnav.lightning_modules.annotator import load_annotator
from tests.distributed import REPO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_torchrun_nodes_annotate_one_store(tmp_path):
    port, out = free_port(), tmp_path / "store"
    job = [str(REPO / "train.py"), "predict", "--config", str(REPO / "configs/annotate/demo.yaml"),
           "--trainer.num_nodes", "2", "--trainer.devices", "1", "--trainer.strategy", "ddp",
           "--trainer.accelerator", "cpu", "--data.init_args.num", "300", "--data.init_args.shard_size", "100",
           "--data.init_args.batch_size", "50", "--trainer.callbacks.init_args.out_dir", str(out)]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
                "--master-addr", "127.0.0.1", "--master-port", str(port)]
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    nodes = [subprocess.Popen([*torchrun, "--node-rank", str(n), *job], cwd=tmp_path, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True) for n in (0, 1)]
    try:
        outputs = [p.communicate(timeout=300) for p in nodes]
    finally:
        for p in nodes:
            if p.poll() is None:
                os.killpg(p.pid, 9)
    for p, (_, err) in zip(nodes, outputs):
        assert p.returncode == 0, err[-3000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in outputs[0][1] + outputs[1][1] + outputs[0][0] + outputs[1][0]
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["count"] for s in manifest["shards"]] == [100, 100, 100]
    z = torch.cat([load_shard(out / s["file"], mmap=False)["latents"] for s in manifest["shards"]])
    y = torch.cat([load_shard(out / s["file"], mmap=False)["logits"] for s in manifest["shards"]])
    G, judge = load_generator("demo"), load_annotator("demo")
    torch.testing.assert_close(z, G.latents_at(range(300), seed=0))
    with torch.no_grad():
        torch.testing.assert_close(y, judge.logits(G.synthesize(z)), atol=1e-4, rtol=1e-4)
