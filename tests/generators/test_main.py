"""``python -m generators info / quality`` on a generator that needs load options (class_path)."""

import json

import torch

from generators.__main__ import main, quality_summary_for
from tests.latentnav.test_edit import CLASS_PATH, INIT_ARGS, save_planted_tiny

OPTIONS = {"class_path": CLASS_PATH, "init_args": INIT_ARGS}


def test_info_with_generator_options(tmp_path, capsys):
    save_planted_tiny(tmp_path / "tiny.pt")
    assert main(["info", str(tmp_path / "tiny.pt"), "--generator-options", json.dumps(OPTIONS), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ModuleAdapter on cpu: resolution 16, spaces z (8,)")
    assert f"options: {OPTIONS}" in out
    for options, message in (("{bad", "--generator-options: not JSON (Expecting property name enclosed in double "
                                      "quotes at character 1): {bad"),
                             ('["x"]', "--generator-options: expected a JSON object, got list"),
                             ('{"classpath": "x"}', "generator options: unknown classpath; expected some of "
                                                    "class_path, init_args, resolution, trust_pickle, "
                                                    "w_avg_samples, z_dim")):
        assert main(["info", str(tmp_path / "tiny.pt"), "--generator-options", options]) == 2
        assert capsys.readouterr().err.strip() == f"latentnav: error: {message}"
    assert main(["info", str(tmp_path / "tiny.pt")]) == 2  # a bare state dict needs class_path
    assert "give class_path" in capsys.readouterr().err


def test_quality_with_generator_options(tmp_path, capsys):
    save_planted_tiny(tmp_path / "tiny.pt")
    summary = quality_summary_for(str(tmp_path / "tiny.pt"), 64, "demo", 0, OPTIONS, device="cpu")
    assert 0 <= summary["confident_mean"] <= 1 and 0 <= summary["freq_gap_max"] <= 1
    assert main(["quality", str(tmp_path / "tiny.pt"), "--num", "64", "--generator-options", json.dumps(OPTIONS)]) == 0
    assert "(64 samples, " in capsys.readouterr().out
    if not torch.cuda.is_available():
        assert main(["quality", "--num", "8", "--device", "cuda"]) == 2
        assert "device: 'cuda' asked for, but torch.cuda.is_available() is False" in capsys.readouterr().err
