import numpy as np
import pytest
import torch

from latentnav.directions_file import read_directions
from latentnav.generators import load_generator
from latentnav.errors import ConfigError
from latentnav.commands.sefa import layer_resolution, main, run_sefa, select_layers, sefa
from tests.generators.test_stylegan2 import small_port_checkpoint


def planted(seed=0):
    """Two weight matrices acting on a 10-d latent, with a known spectrum of AᵀA."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(10, 10, generator=g, dtype=torch.float64))
    spectrum = torch.linspace(10, 1, 10, dtype=torch.float64)
    u, _ = torch.linalg.qr(torch.randn(30, 10, generator=g, dtype=torch.float64))
    a = u @ torch.diag(spectrum.sqrt()) @ q.T  # AᵀA = Q diag(spectrum) Qᵀ
    return [a[:12].float(), a[12:].float()], q, spectrum


def test_directions_are_the_top_eigenvectors_of_AtA():
    weights, q, spectrum = planted()
    directions, values = sefa(weights, 4, normalize_rows=False)
    torch.testing.assert_close(values, spectrum[:4].float(), atol=1e-4, rtol=1e-4)
    cos = (directions.double() @ q[:, :4]).abs().diagonal()
    assert cos.min() > 1 - 1e-5
    a = torch.cat(weights).double()
    reference_values, reference_vectors = torch.linalg.eigh(a.T @ a)
    torch.testing.assert_close(values.double(), reference_values.flip(0)[:4], atol=1e-4, rtol=1e-4)
    assert (directions.double() @ reference_vectors.flip(1)[:, :4]).abs().diagonal().min() > 1 - 1e-5
    # The first direction maximises |A n| over unit n: better than any random direction.
    randoms = torch.nn.functional.normalize(torch.randn(200, 10, dtype=torch.float64), dim=1)
    assert (a @ directions[0].double()).norm() >= (randoms @ a.T).norm(dim=1).max()


def test_row_normalisation_is_the_eigh_of_the_normalised_matrix():
    weights, _, _ = planted(1)
    directions, values = sefa(weights, 3, normalize_rows=True)
    a = torch.cat(weights).double()
    a = a / a.norm(dim=1, keepdim=True)
    ref_values, ref_vectors = torch.linalg.eigh(a.T @ a)
    torch.testing.assert_close(values.double(), ref_values.flip(0)[:3], atol=1e-4, rtol=1e-4)
    assert (directions.double() @ ref_vectors.flip(1)[:, :3]).abs().diagonal().min() > 1 - 1e-5
    assert torch.equal(directions, sefa(weights, 3)[0])  # deterministic signs


def test_stylegan2_layer_groups(tmp_path):
    G = load_generator(small_port_checkpoint(tmp_path)[0])  # 32 px: convs at 4, 8, 8, 16, 16, 32, 32
    named = G.latent_weights("w")
    assert [layer_resolution(n) for n, _ in named] == [4, 4, 8, 8, 16, 16, 32, 32, 8, 16, 32]
    # Numbered as the authors' release: the convolutions, then the last to-RGB layer (its "all" includes it).
    assert [n for n, _ in select_layers(named, "all")] == ["conv1"] + [f"convs.{j}" for j in range(6)] + ["to_rgbs.2"]
    assert [n for n, _ in select_layers(named, "coarse")] == ["conv1", "convs.0", "convs.1"]
    assert [n for n, _ in select_layers(named, "middle")] == ["convs.2", "convs.3", "convs.4", "convs.5", "to_rgbs.2"]
    with pytest.raises(ConfigError, match="this generator has no fine layers"):
        select_layers(named, "fine")
    assert [n for n, _ in select_layers(named, [0, 3, 7])] == ["conv1", "convs.2", "to_rgbs.2"]
    assert [n for n, _ in select_layers(named, ["to_rgb1", "to_rgbs.0", 0])] == ["to_rgb1", "to_rgbs.0", "conv1"]
    with pytest.raises(ConfigError, match=r"indices must be in 0..7, got \[8\]"):
        select_layers(named, [8])
    with pytest.raises(ConfigError, match=r"layers: 'to_rgbs.9' is not a latent-facing layer"):
        select_layers(named, ["to_rgbs.9"])
    with_rgb = run_sefa(G, "w", "all", 5)
    assert with_rgb["layers"][-1] == "to_rgbs.2"
    assert not torch.allclose(with_rgb["directions"], run_sefa(G, "w", list(range(7)), 5)["directions"])
    coarse = run_sefa(G, "w", "coarse", 5)
    assert coarse["directions"].shape == (5, 32) and coarse["layers"] == ["conv1", "convs.0", "convs.1"]
    assert not torch.allclose(coarse["directions"], run_sefa(G, "w", "middle", 5)["directions"])


def test_command_on_the_demo_generator(tmp_path, capsys):
    out = tmp_path / "sefa.npz"
    assert main(["--num_directions", "6", "--out", str(out)]) == 0
    found = read_directions(out)
    G = load_generator("demo")
    assert found["directions"].shape == (6, 64) and found["generator"]["sha256"] == G.identity["sha256"]
    assert found["method"] == "SeFa (z, layers all)" and float(found["seconds"]) > 0
    assert np.all(np.diff(found["eigenvalues"]) <= 0)
    torch.testing.assert_close(found["directions"] @ found["directions"].T, torch.eye(6), atol=1e-5, rtol=0)
    from latentnav.commands.edit import main as edit_main

    assert edit_main([str(out), "--attributes", "sefa00", "--seeds", "0", "--steps", "3",
                      "--out", str(tmp_path / "edits")]) == 0
    assert (tmp_path / "edits" / "sefa00.png").is_file()
    assert main(["--layers", "coarse", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip().endswith("'coarse' needs a generator with per-layer styles "
                                                    "(StyleGAN2 in w space)")
    assert main(["--num_directions", "65", "--out", str(out)]) == 2
    assert "num_directions: expected 1..64 (the latent size), got 65" in capsys.readouterr().err


def test_command_on_a_class_path_generator(tmp_path, capsys):
    """generator_options load a state dict through class_path; the options are recorded (descriptively: the
    edit command loads the recorded file with the options its user repeats). The planted Linear layer's top right singular vectors are SeFa's answer."""
    import json

    from latentnav.commands.edit import main as edit_main
    from tests.commands.test_edit import CLASS_PATH, INIT_ARGS, save_planted_tiny

    v = save_planted_tiny(tmp_path / "tiny.pt")
    out = tmp_path / "sefa.npz"
    options = json.dumps({"class_path": CLASS_PATH, "init_args": INIT_ARGS})
    assert main(["--generator", str(tmp_path / "tiny.pt"), "--generator_options", options, "--num_directions", "3",
                 "--normalize_rows", "false", "--device", "cpu", "--out", str(out)]) == 0
    found = read_directions(out)
    assert found["generator"]["options"] == {"class_path": CLASS_PATH, "init_args": INIT_ARGS}
    assert (found["directions"] @ v[:, :3]).abs().diagonal().min() > 1 - 1e-5
    assert edit_main([str(out), "--attributes", "sefa00", "--seeds", "0", "--steps", "3", "--generator_options",
                      options, "--out", str(tmp_path / "edits")]) == 0
    assert (tmp_path / "edits" / "sefa00.png").is_file()
    capsys.readouterr()
    assert main(["--generator", str(tmp_path / "tiny.pt"), "--generator_options", '{"clas_path": "x"}',
                 "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip().startswith("latentnav: error: generator options: unknown clas_path; "
                                                      "expected some of class_path, classes, compile, family_options, init_args")
