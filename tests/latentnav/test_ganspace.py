import torch

from callbacks.direction_report import read_directions
from generators import load_generator
from latentnav.errors import ConfigError
from latentnav.ganspace import StreamingPCA, main, run_ganspace
from latentnav.sefa import sefa
from tests.generators.test_stylegan2 import small_port_checkpoint


def test_streaming_pca_equals_pca_of_all_rows():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3000, 6, generator=g) @ torch.randn(6, 6, generator=g) + 5.0
    pca = StreamingPCA()
    for chunk in x.split(701):
        pca.update(chunk)
    axes, variances = pca.components(3)
    values, vectors = torch.linalg.eigh(torch.cov(x.double().T))
    torch.testing.assert_close(variances, values.flip(0)[:3], atol=1e-8, rtol=1e-8)
    assert (axes @ vectors.flip(1)[:, :3]).abs().diagonal().min() > 1 - 1e-9
    torch.testing.assert_close(pca.mean, x.double().mean(0))


def test_activation_pca_mapped_back_recovers_the_linear_layers_singular_vectors():
    """The demo generator's first layer is linear: y = M z + b. Then PCA of y has axes M v_i / |M v_i|
    (v_i: right singular vectors of M), and regressing z on the PCA coordinates gives back v_i, which
    are also SeFa's directions without row normalisation."""
    G = load_generator("demo")
    found = run_ganspace(G, "z", num_directions=3, num_samples=20000, batch_size=2000)
    assert found["layer"] == "net.fc" and found["directions"].shape == (3, 64)
    exact, _ = sefa([G.latent_weights("z")[0][1]], 3, normalize_rows=False)
    cos = (found["directions"] @ exact.T).abs().diagonal()
    assert cos.min() > 0.97, cos


def test_w_space_pca_and_bad_input(tmp_path, capsys):
    G = load_generator(small_port_checkpoint(tmp_path)[0])
    found = run_ganspace(G, "w", num_directions=4, num_samples=3000, batch_size=1000)
    w = G.to_space(G.sample(3000, generator=torch.Generator().manual_seed(0)), "w")
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
    from latentnav.edit import main as edit_main

    assert edit_main([str(out), "--attributes", "pc01", "--seeds", "0", "--steps", "3",
                      "--out", str(tmp_path / "edits")]) == 0
    assert (tmp_path / "edits" / "pc01.png").is_file()
    assert main(["--layer", "net.nope", "--out", str(out)]) == 2
    assert "layer: 'net.nope' is not a module of DCGANAdapter" in capsys.readouterr().err
