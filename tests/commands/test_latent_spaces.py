"""``latentnav generator spaces`` on a small StyleGAN2: every table, one line for a bad space, and 2 processes
measuring the same pairs and labels as one."""

import json
import os
import subprocess
import sys

import pytest

from latentnav.commands.generator_tools import main
from tests.distributed import REPO
from tests.generators.test_stylegan2 import small_port_checkpoint


def test_every_table_and_two_processes(tmp_path, capsys):
    pytest.importorskip("sklearn")
    ckpt = str(small_port_checkpoint(tmp_path)[0])
    common = ["spaces", ckpt, "--ppl", "z", "w", "--ppl_pairs", "40", "--replicates", "50", "--batch_size", "16",
              "--accelerator", "cpu"]
    assert main([*common, "--separability", "z", "w", "--dci", "w", "s", "--num", "240",
                 "--separability_replicates", "3", "--out", str(tmp_path / "one")]) == 0
    one = json.loads((tmp_path / "one" / "spaces.json").read_text())
    assert set(one["ppl"]) == {"z", "w"} and all(r["ppl"] > 0 and r["low"] <= r["ppl"] <= r["high"] for r in one["ppl"].values())
    assert one["ppl_difference"]["spaces"] == "w - z"
    assert set(one["separability"]) == {"z", "w"} and all(r["separability"] >= 1 for r in one["separability"].values())
    assert set(one["dci"]) == {"w", "s"} and all(0 <= r["disentanglement"] <= 1 for r in one["dci"].values())
    table = (tmp_path / "one" / "spaces.md").read_text()
    assert "| w | " in table and "linear separability" in table and "completeness" in table

    done = subprocess.run([sys.executable, "-m", "latentnav.generators", *common, "--out", str(tmp_path / "two"),
                           "--devices", "2", "--strategy", "ddp"], cwd=tmp_path, text=True, capture_output=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    two = json.loads((tmp_path / "two" / "spaces.json").read_text())
    for space in ("z", "w"):  # the same pairs, judged alike, whichever process took them
        assert two["ppl"][space]["pairs"] == 40
        assert two["ppl"][space]["ppl"] == pytest.approx(one["ppl"][space]["ppl"], rel=1e-4)

    assert main(["spaces", ckpt, "--ppl", "s", "--out", str(tmp_path / "bad")]) == 2
    assert "--ppl: expected spaces among z, w" in capsys.readouterr().err
    assert main(["spaces", ckpt, "--out", str(tmp_path / "bad")]) == 2
    assert "nothing to measure" in capsys.readouterr().err
