import json
import time

import pytest
import torch

from latentnav.directions_file import read_directions
from latentnav.generators import load_generator
from latentnav.errors import ConfigError
from latentnav.commands.ganspace import StreamingPCA, main, principal_axes, run_ganspace, top_eigh
from latentnav.commands.sefa import sefa
from tests.generators.test_stylegan2 import small_port_checkpoint


def test_streaming_pca_equals_pca_of_all_rows():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3000, 6, generator=g) @ torch.randn(6, 6, generator=g) + 5.0
    pca = StreamingPCA(6)
    for chunk in x.split(701):
        pca.update(chunk)
    moments = pca.compute()
    axes, variances = principal_axes(moments["covariance"], 3)
    values, vectors = torch.linalg.eigh(torch.cov(x.double().T))
    torch.testing.assert_close(variances, values.flip(0)[:3], atol=1e-8, rtol=1e-8)
    assert (axes @ vectors.flip(1)[:, :3]).abs().diagonal().min() > 1 - 1e-9
    torch.testing.assert_close(moments["mean"], x.double().mean(0))


def test_activation_pca_mapped_back_recovers_the_linear_layers_singular_vectors():
    """The demo generator's first layer is linear: y = M z + b. Then PCA of y has axes M v_i / |M v_i|
    (v_i: right singular vectors of M), and regressing z on the PCA coordinates gives back v_i, which
    are also SeFa's directions without row normalisation."""
    G = load_generator("demo")
    # The axes' sampling error shrinks like 1/sqrt(n): 20,000 samples gave cos 0.969-0.991, 40,000 0.995, 80,000 0.999.
    found = run_ganspace(G, "z", num_directions=3, num_samples=40000, batch_size=4000)
    assert found["layer"] == "net.fc" and found["directions"].shape == (3, 64)
    exact, _ = sefa([G.latent_weights("z")[0][1]], 3, normalize_rows=False)
    cos = (found["directions"] @ exact.T).abs().diagonal()
    assert cos.min() > 0.99, cos


def test_w_space_pca_and_bad_input(tmp_path, capsys):
    G = load_generator(small_port_checkpoint(tmp_path)[0])
    found = run_ganspace(G, "w", num_directions=4, num_samples=3000, batch_size=1000)
    w = G.to_space(G.latents_at(range(3000), seed=0), "w")  # the samples run_ganspace draws
    values, vectors = torch.linalg.eigh(torch.cov(w.double().T))
    assert (found["directions"].double() @ vectors.flip(1)[:, :4]).abs().diagonal().min() > 1 - 1e-4
    assert torch.all(found["variances"][1:] <= found["variances"][:-1])
    for kwargs, message in (({"space": "w+"}, "GANSpace works in 'z' or (StyleGAN2) 'w'"),
                            ({"num_directions": 0}, "num_directions: expected 1..32")):
        try:
            run_ganspace(G, **{"num_samples": 10, **kwargs})
        except ConfigError as e:
            assert message in str(e)
        else:
            raise AssertionError(kwargs)
    out = tmp_path / "gs.npz"
    assert main(["--num_directions", "5", "--num_samples", "2000", "--out", str(out)]) == 0
    found = read_directions(out)
    assert found["directions"].shape == (5, 64) and found["method"] == "GANSpace (z, net.fc)"
    from latentnav.commands.edit import main as edit_main

    assert edit_main([str(out), "--attributes", "pc01", "--seeds", "0", "--steps", "3",
                      "--out", str(tmp_path / "edits")]) == 0
    assert (tmp_path / "edits" / "pc01.png").is_file()
    assert main(["--layer", "net.nope", "--out", str(out)]) == 2
    assert "layer: 'net.nope' is not a module of DCGANAdapter" in capsys.readouterr().err


def planted_covariance(width: int, top: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric PSD (width, width) float64 with eigenvalues 1/i along random orthonormal U (width, top),
    and below 1/(top + 1) a bulk with random (non-isotropic) variances on the complement of U.
    Returns the matrix and U: its top eigenvectors, which a full eigh finds exactly."""
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(width, top, generator=g, dtype=torch.float64))
    bulk = torch.rand(width, generator=g, dtype=torch.float64) / (top + 1)
    du = bulk[:, None] * u  # diag(bulk) U
    # (I - UUᵀ) diag(bulk) (I - UUᵀ) + U diag(1/i) Uᵀ, by rank-`top` updates (no width³ product).
    c = torch.diag(bulk) - u @ du.T - du @ u.T + u @ ((u.T @ du) + torch.diag(1.0 / torch.arange(1, top + 1, dtype=torch.float64))) @ u.T
    return (c + c.T) / 2, u


def test_top_eigh_matches_eigh():
    c, u = planted_covariance(1024)
    values, vectors = top_eigh(c, 16)
    ref_values, ref_vectors = torch.linalg.eigh(c)
    torch.testing.assert_close(values, ref_values.flip(0)[:16], atol=1e-9, rtol=1e-9)
    assert (vectors.T @ ref_vectors.flip(1)[:, :16]).abs().diagonal().min() > 0.999
    assert (vectors.T @ u[:, :16]).abs().diagonal().min() > 0.999
    # 4,096 wide: against the planted eigenvectors (what eigh gives, at many times the cost).
    c, u = planted_covariance(4096)
    t0 = time.perf_counter()
    values, vectors = top_eigh(c, 16)
    print(f"top_eigh, 16 of 4096: {time.perf_counter() - t0:.1f} s")
    torch.testing.assert_close(values, 1.0 / torch.arange(1, 17, dtype=torch.float64), atol=1e-9, rtol=1e-9)
    assert (vectors.T @ u[:, :16]).abs().diagonal().min() > 0.999


def test_wide_covariances_take_the_top_k_solver():
    g = torch.Generator().manual_seed(1)
    c, _ = planted_covariance(300, top=40, seed=1)
    x = torch.randn(4000, 300, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(c).T + 3.0
    pca = StreamingPCA(300)
    for chunk in x.split(1000):
        pca.update(chunk)
    covariance = pca.compute()["covariance"]
    exact_axes, exact_values = principal_axes(covariance, 5)
    axes, values = principal_axes(covariance, 5, eigh_max_width=100)
    torch.testing.assert_close(values, exact_values, atol=1e-9, rtol=1e-7)
    torch.testing.assert_close(axes, exact_axes, atol=1e-5, rtol=0)  # same signs


def test_class_path_generator_and_torchscript(tmp_path, capsys):
    """generator_options load a state dict through class_path: GANSpace of its planted Linear layer
    recovers the right singular vectors. A TorchScript generator's layers cannot be hooked: one line."""
    from tests.generators.tiny import save_tiny
    from tests.commands.test_edit import CLASS_PATH, INIT_ARGS, save_planted_tiny

    v = save_planted_tiny(tmp_path / "tiny.pt")
    out = tmp_path / "gs.npz"
    options = json.dumps({"class_path": CLASS_PATH, "init_args": INIT_ARGS})
    assert main(["--generator", str(tmp_path / "tiny.pt"), "--generator_options", options, "--num_directions", "3",
                 "--num_samples", "8000", "--batch_size", "2000", "--accelerator", "cpu", "--out", str(out)]) == 0
    found = read_directions(out)
    assert found["method"] == "GANSpace (z, module.fc)" and found["generator"]["options"]["class_path"] == CLASS_PATH
    cos = (found["directions"] @ v[:, :3]).abs().diagonal()
    assert cos.min() > 0.97, cos
    save_tiny(tmp_path / "scripted.pt", scripted=True)
    with pytest.raises(ConfigError, match="'module.fc' is inside a TorchScript generator"):
        run_ganspace(load_generator(tmp_path / "scripted.pt"), num_directions=3, num_samples=10)
    capsys.readouterr()
    assert main(["--generator", str(tmp_path / "scripted.pt"), "--num_directions", "3", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "load its weights as a state dict with generator_options" in err


def test_two_processes_give_the_same_directions_as_one(tmp_path):
    """Both passes are Trainer test loops: on 2 processes (ddp, gloo, the Trainer's defaults) the samples
    are sliced across ranks and the float64 sums synced, so the directions equal one process's."""
    import os
    import subprocess
    import sys

    from tests.distributed import REPO

    common = ["--num_directions", "4", "--num_samples", "203", "--batch_size", "50", "--accelerator", "cpu"]
    assert main([*common, "--out", str(tmp_path / "one.npz")]) == 0
    done = subprocess.run([sys.executable, "-m", "latentnav.commands.ganspace", *common, "--out", str(tmp_path / "two.npz"),
                           "--devices", "2", "--strategy", "ddp"], cwd=tmp_path, text=True, capture_output=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = read_directions(tmp_path / "one.npz"), read_directions(tmp_path / "two.npz")
    torch.testing.assert_close(two["directions"], one["directions"], atol=1e-5, rtol=0)
    # Not an accident of the seed: another stream gives other directions.
    assert main([*common, "--seed", "1", "--out", str(tmp_path / "other.npz")]) == 0
    assert (read_directions(tmp_path / "other.npz")["directions"] - one["directions"]).abs().max() > 1e-3
