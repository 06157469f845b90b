"""TorchScript and class_path generators, the bundled demo generator, and the shared contract."""

import pytest
import torch

from latentnav.generators import BUNDLED, load_generator
from latentnav.generators.adapters import DCGANAdapter, ModuleAdapter
from latentnav.errors import ConfigError, DataFormatError
from tests.generators.tiny import save_tiny


def test_torchscript_generator_is_probed(tmp_path):
    net = save_tiny(tmp_path / "tiny.pt")
    G = load_generator(tmp_path / "tiny.pt")
    assert isinstance(G, ModuleAdapter) and G.identity["format"] == "torchscript"
    assert (G.z_dim, G.resolution) == (8, 8)
    z = G.sample(5, seed=0)
    torch.testing.assert_close(G.synthesize(z), net(z))
    torch.testing.assert_close(G.latent_weights()[0][1], net.fc.weight)
    with pytest.raises(ConfigError, match=r"resolution is 8, config says 16"):
        load_generator(tmp_path / "tiny.pt", resolution=16)


def test_class_path_and_state_dict(tmp_path):
    net = save_tiny(tmp_path / "tiny_sd.pt", scripted=False)
    G = load_generator(tmp_path / "tiny_sd.pt", class_path="tests.generators.tiny.TinyGenerator", init_args={"z_dim": 8})
    z = G.sample(3, seed=1)
    torch.testing.assert_close(G.synthesize(z), net(z))
    assert G.identity["class_path"] == "tests.generators.tiny.TinyGenerator"
    with pytest.raises(DataFormatError, match=r"state dict does not fit TinyGenerator; unexpected keys: none; missing keys: norm.weight"):
        sd = dict(net.state_dict())
        del sd["norm.weight"]
        torch.save(sd, tmp_path / "broken.pt")
        load_generator(tmp_path / "broken.pt", class_path="tests.generators.tiny.TinyGenerator")
    with pytest.raises(ConfigError, match=r"cannot import 'tests.generators.tiny.Nope'"):
        load_generator(tmp_path / "tiny_sd.pt", class_path="tests.generators.tiny.Nope")


def test_frozen_whatever_the_caller_does(tmp_path):
    save_tiny(tmp_path / "tiny.pt")
    G = load_generator(tmp_path / "tiny.pt")
    before = {k: v.clone() for k, v in G.state_dict().items()}
    G.train()
    G.requires_grad_(True)
    assert not G.training and not any(m.training for m in G.modules())
    assert not any(p.requires_grad for p in G.parameters())
    z = torch.randn(16, 8, requires_grad=True)
    G.synthesize(z * 3).mean().backward()  # batch-norm in eval mode: statistics stay
    assert z.grad.abs().sum() > 0
    assert all(torch.equal(v, before[k]) for k, v in G.state_dict().items())


def test_bundled_demo_generator():
    G = load_generator("demo")
    assert isinstance(G, DCGANAdapter) and G.identity["source"] == str(BUNDLED["demo"])
    assert (G.z_dim, G.resolution, G.latent_spaces) == (64, 32, ("z",))
    assert BUNDLED["demo"].stat().st_size <= 10 * 2**20
    z = G.sample(4, seed=0)
    torch.testing.assert_close(z, G.sample(4, seed=0))
    images = G.synthesize(z)
    assert images.shape == (4, 3, 32, 32) and images.min() >= -1 and images.max() <= 1
    (name, matrix), = G.latent_weights()
    assert name == "fc" and matrix.shape == (128 * 16, 64)


def test_demo_generator_quality_as_reported():
    """The classifier is confident on the bundled generator's samples (2,000, seed 2024)."""
    from latentnav.commands.generator_tools import quality_summary_for

    from latentnav.commands.measuring import make_trainer

    summary = quality_summary_for("demo", 2000, "demo", 2024, trainer=make_trainer(accelerator="cpu"))
    assert summary["confident_mean"] >= REPORTED_CONFIDENT_MEAN - 0.02
    assert summary["confident_min"] >= REPORTED_CONFIDENT_MIN - 0.05
    assert summary["freq_gap_max"] <= REPORTED_FREQ_GAP_MAX + 0.02


# Measured with `python -m latentnav.generators quality demo --num 2000` for the shipped weights
# (PacGAN 4, 16,000 iterations; lowest Wearing_Lipstick; the gap is Young: 0.774 generated vs 0.704 real; latents latents_at(range(2000), 2024)).
REPORTED_CONFIDENT_MEAN = 0.912
REPORTED_CONFIDENT_MIN = 0.859
REPORTED_FREQ_GAP_MAX = 0.070


def test_unknown_spaces_and_missing_sources():
    G = load_generator("demo")
    with pytest.raises(ConfigError, match=r"latent space 'w' is not supported by DCGANAdapter; expected one of z"):
        G.sample(2, space="w")
    with pytest.raises(DataFormatError, match=r"generator file not found \(bundled names: demo\)"):
        load_generator("dem0")


def test_recorded_options_describe_and_never_command(tmp_path):
    """``load_generator_like``: the recorded file (or the user's copy), its sha256 compared first; small
    numeric sizes taken from the record, anything else recorded refused until the user repeats it."""
    import json
    import shutil

    from latentnav.generators import load_generator_like

    demo = load_generator("demo").identity
    recorded = {"source": demo["source"], "sha256": demo["sha256"]}
    G = load_generator_like(dict(recorded, options={"w_avg_samples": 500}))  # descriptive: applied
    assert G.identity["options"] == {"w_avg_samples": 500}
    for options in ({"w_avg_samples": 10 ** 12}, {"z_dim": True}, {"class_path": "x.Y"}, {"evil": 1},
                    {"state_dict_key": "g_ema"}, {"strip_prefix": "module."}):
        with pytest.raises(ConfigError, match=r"^d.npz records generator options .*; a directions file cannot "
                                              r"choose code to run or lift a safety flag: pass them yourself with "
                                              r"--generator_options '.*' if you trust them$"):
            load_generator_like(dict(recorded, options=options), what="d.npz")
    # repeated by the user (the user's value wins), unknown names are the user's typo: one line
    net = save_tiny(tmp_path / "tiny_sd.pt", scripted=False)
    from latentnav.safe_load import sha256_of

    tiny = {"source": str(tmp_path / "tiny_sd.pt"), "sha256": sha256_of(tmp_path / "tiny_sd.pt"),
            "options": {"class_path": "subprocess.Popen", "init_args": {"args": ["true"]}}}
    options = {"class_path": "tests.generators.tiny.TinyGenerator", "init_args": {"z_dim": 8}}
    G = load_generator_like(tiny, options=options)
    torch.testing.assert_close(G.synthesize(torch.ones(1, 8)), net(torch.ones(1, 8)))
    assert json.dumps(G.identity["options"], sort_keys=True) == json.dumps(options, sort_keys=True)  # the user's
    with pytest.raises(ConfigError, match="--generator_options: unknown clas_path"):
        load_generator_like(tiny, options={"clas_path": "x"})
    # the user's copy: the recorded sha256 still decides; a recorded path that is gone is one line
    shutil.copy(tmp_path / "tiny_sd.pt", tmp_path / "moved.pt")
    assert load_generator_like(dict(tiny, source=str(tmp_path / "gone.pt")), source=tmp_path / "moved.pt",
                               options=options).identity["source"] == str(tmp_path / "moved.pt")
    with pytest.raises(DataFormatError, match=r"generator \(recorded in the file; give --generator\): .*gone.pt: "
                                              r"generator file not found"):
        load_generator_like(dict(tiny, source=str(tmp_path / "gone.pt")), options=options)
    with pytest.raises(ConfigError, match=r"the directions file was made for generator .* not .*demo_generator.pt"):
        load_generator_like(tiny, source="demo", options=options)
    # a file made on another machine: the bundled generator with the recorded sha256
    moved_demo = dict(recorded, source="/elsewhere/site-packages/latentnav/generators/pretrained/demo_generator.pt")
    assert load_generator_like(moved_demo).identity["sha256"] == demo["sha256"]


def test_compile_option_runs_the_synthesis_through_torch_compile(monkeypatch):
    """``compile`` wraps the synthesis in torch.compile (here the eager backend: the plumbing, not inductor's
    kernels), leaves the images as they were and is not recorded in the generator's identity."""
    import torch

    seen = []
    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: seen.append(kw) or real(fn, **kw))
    plain = load_generator("demo")
    compiled = load_generator("demo", compile="eager")
    # the synthesis and the noise-map path (a projection's) both
    assert seen == [{"backend": "eager", "dynamic": True}] * 2 and compiled.compiled and not plain.compiled
    z = plain.sample(3, seed=1)
    assert torch.allclose(compiled.synthesize(z), plain.synthesize(z), atol=1e-6)
    assert "options" not in compiled.identity
    assert compiled.compile_synthesis(None).synthesize(z).shape == (3, 3, 32, 32) and not compiled.compiled
