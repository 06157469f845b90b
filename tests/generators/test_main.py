"""``python -m latentnav.generators info / quality`` on a generator that needs load options (class_path)."""

import json

import pytest
import torch

from latentnav.errors import ConfigError

from latentnav.commands.generator_tools import main, quality_summary_for
from tests.commands.test_edit import CLASS_PATH, INIT_ARGS, save_planted_tiny

OPTIONS = {"class_path": CLASS_PATH, "init_args": INIT_ARGS}


def test_info_with_generator_options(tmp_path, capsys):
    save_planted_tiny(tmp_path / "tiny.pt")
    assert main(["info", str(tmp_path / "tiny.pt"), "--generator_options", json.dumps(OPTIONS), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ModuleAdapter on cpu\n")
    assert "  resolution: 16\n  spaces: z (8,)\n  classes: unconditional\n" in out
    assert f"options: {OPTIONS}" in out
    for options, message in (("{bad", "--generator_options: expected dict, got {bad (latentnav generator "
                                      "--help lists the options)"),
                             ('["x"]', "--generator_options: expected dict, got ['x'] (latentnav generator --help "
                                       "lists the options)"),
                             ('{"classpath": "x"}', "generator options: unknown classpath; expected some of "
                                                    "class_path, classes, compile, family_options, init_args, resolution, "
                                                    "state_dict_key, strip_prefix, trust_pickle, w_avg_samples, z_dim")):
        assert main(["info", str(tmp_path / "tiny.pt"), "--generator-options", options]) == 2
        assert capsys.readouterr().err.strip() == f"latentnav: error: {message}"
    assert main(["info", str(tmp_path / "tiny.pt")]) == 2  # a bare state dict needs class_path
    assert "give class_path" in capsys.readouterr().err


def test_quality_with_generator_options(tmp_path, capsys):
    from latentnav.commands.measuring import make_trainer

    save_planted_tiny(tmp_path / "tiny.pt")
    summary = quality_summary_for(str(tmp_path / "tiny.pt"), 64, "demo", 0, OPTIONS, make_trainer(accelerator="cpu"))
    assert 0 <= summary["confident_mean"] <= 1 and 0 <= summary["freq_gap_max"] <= 1
    assert summary["processes"] == 1 and summary["is_global_zero"]
    assert main(["quality", str(tmp_path / "tiny.pt"), "--num", "64", "--generator_options", json.dumps(OPTIONS)]) == 0
    assert "(64 samples, " in capsys.readouterr().out
    for flags, message in ((["--accelerator", "cuda"], "trainer (accelerator 'cuda', devices 1, strategy 'auto', "
                                                       "precision '32-true'): `CUDAAccelerator` can not run"),
                           (["--precision", "17"], "precision '17': these passes take 32-true, 32, bf16-mixed"),
                           (["--precision", "bf16-true"], "precision 'bf16-true': these passes take"),
                           (["--num", "0"], "--num: expected a positive number of samples, got 0")):
        if flags[0] == "--accelerator" and torch.cuda.is_available():
            continue
        assert main(["quality", "--num", "8", *flags]) == 2
        assert message in capsys.readouterr().err


def test_quality_on_two_processes_equals_one(tmp_path):
    """A Trainer test loop: 2 processes (ddp, gloo, default progress bar) slice the samples and sum the
    statistics, so the figures equal one process's (41 samples: uneven slices; batch 8: several steps)."""
    import os
    import subprocess
    import sys

    from tests.distributed import REPO

    common = ["quality", "--num", "41", "--batch_size", "8", "--accelerator", "cpu"]
    assert main([*common, "--json", str(tmp_path / "one.json")]) == 0
    done = subprocess.run([sys.executable, "-m", "latentnav.generators", *common, "--json", str(tmp_path / "two.json"),
                           "--devices", "2", "--strategy", "ddp"], cwd=tmp_path, text=True, capture_output=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 process(es)" in done.stdout
    one, two = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert one.keys() == two.keys() and one["processes"] == 1 and two["processes"] == 2
    for key in one:
        if key not in ("processes", "is_global_zero"):
            assert abs(one[key] - two[key]) <= 1e-6, key
    # 41 real images and 41 samples were judged: every frequency is a multiple of 1/41.
    assert abs(one["frequency/Smiling"] * 41 - round(one["frequency/Smiling"] * 41)) < 1e-9


def test_a_state_dict_nested_in_a_training_checkpoint_with_a_prefix(tmp_path, capsys):
    """One generator spec: class_path + init_args + the nested key + the DDP prefix, recorded in the identity;
    a directions file made on it edits once the user repeats the options (a file cannot choose code)."""
    from latentnav.directions_file import write_directions
    from latentnav.commands.edit import main as edit_main
    from latentnav.generators import load_generator

    save_planted_tiny(tmp_path / "tiny.pt")
    state = torch.load(tmp_path / "tiny.pt", weights_only=True)
    torch.save({"epoch": 3, "models": {"generator": {f"module.{k}": v for k, v in state.items()}}}, tmp_path / "ckpt.pt")
    spec = dict(OPTIONS, state_dict_key="models.generator", strip_prefix="module.")
    G = load_generator(tmp_path / "ckpt.pt", **spec)
    reference = load_generator(tmp_path / "tiny.pt", **OPTIONS)
    z = torch.randn(2, 8)
    torch.testing.assert_close(G.synthesize(z), reference.synthesize(z))
    assert G.identity["options"] == spec
    npz = write_directions(tmp_path / "d.npz", torch.eye(8)[:1], ["red"], "planted", "z", G.identity)
    edit = [str(npz), "--attributes", "red", "--seeds", "0", "--steps", "3", "--accelerator", "cpu", "--out",
            str(tmp_path / "edits")]
    assert edit_main(edit) == 2 and "records generator options" in capsys.readouterr().err
    assert edit_main([*edit, "--generator_options", json.dumps(spec)]) == 0
    for bad, message in (({"state_dict_key": "models.nope"}, r"has no 'models.nope' \(at 'nope': generator\)"),
                         ({"state_dict_key": "epoch"}, "'epoch' of")):
        with pytest.raises(ConfigError, match=message):
            load_generator(tmp_path / "ckpt.pt", **dict(spec, **bad))
