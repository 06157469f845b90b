"""The encoder: its training step (gradients reach the encoder, never the generator), resume, a
2-process fit of its config, and its use as the projection's start."""

import pytest
import torch

from latentnav.errors import ConfigError, DataFormatError
from latentnav.lightning_modules.encoder import LatentEncoder, load_encoder
from tests.distributed import REPO, ddp, run_train


def test_training_steps_lower_both_losses_and_never_touch_the_generator():
    torch.manual_seed(0)
    enc = LatentEncoder("demo", backbone="small_cnn", width=16, lr=3e-3, stats_samples=500)
    before = {k: v.clone() for k, v in enc.generator.state_dict().items()}
    optimiser = torch.optim.Adam([p for p in enc.parameters() if p.requires_grad], lr=3e-3)
    g = torch.Generator().manual_seed(1)
    z_val = torch.randn(64, 64, generator=g)
    with torch.no_grad():
        first = enc._losses((z_val,))
    for _ in range(60):
        out = enc._losses((torch.randn(32, 64, generator=g),))
        optimiser.zero_grad()
        out["loss"].backward()
        assert all(p.grad is None for p in enc.generator.parameters())
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.net.parameters())
        optimiser.step()
    with torch.no_grad():
        last = enc._losses((z_val,))
    assert last["latent"] < 0.9 * first["latent"] and last["reconstruction"] < 0.9 * first["reconstruction"]
    assert all(torch.equal(before[k], v) for k, v in enc.generator.state_dict().items())
    # The output is on the latent's scale: centred on the prior's mean with its spread.
    assert enc(torch.zeros(2, 3, 32, 32)).shape == (2, 64)


def test_bad_settings_are_one_line():
    with pytest.raises(ConfigError, match="model.space: expected one of z"):
        LatentEncoder("demo", space="w+", stats_samples=10)
    with pytest.raises(ConfigError, match="model.reconstruction_weight: expected a number >= 0"):
        LatentEncoder("demo", reconstruction_weight=-1, stats_samples=10)


def test_two_process_fit_resume_and_use_as_the_projection_start(tmp_path):
    """The config on 2 processes (Trainer defaults), a resume to more steps, and the checkpoint as the
    projection's start (steps 0: the encoder's output as it is)."""
    short = ["--data.init_args.steps_per_epoch", "2", "--data.init_args.num_val", "32",
             "--data.init_args.batch_size", "16", "--model.init_args.stats_samples", "200"]
    out = run_train(["fit", "--config", str(REPO / "configs/encoder/demo.yaml"), *ddp(), "--trainer.max_steps", "4",
                     *short], tmp_path)
    assert out.count("fit finished at global step 4") == 1
    ckpt = tmp_path / "runs/encoder_demo/version_0/checkpoints/last.ckpt"
    saved = torch.load(ckpt, weights_only=True)
    assert saved["global_step"] == 4 and not any(k.startswith("generator.") for k in saved["state_dict"])
    out = run_train(["fit", "--config", str(REPO / "configs/encoder/demo.yaml"), "--trainer.max_steps", "6",
                     *short, "--ckpt_path", str(ckpt)], tmp_path)
    assert "fit finished at global step 6" in out
    last = tmp_path / "runs/encoder_demo/version_1/checkpoints/last.ckpt"
    enc = load_encoder(str(last))
    assert enc.space == "z" and not enc.training
    from latentnav.lightning_modules.projection import Projection

    images = enc.generator.synthesize(enc.generator.sample(3, seed=4))
    module = Projection(enc.generator, "z", steps=0, encoder=enc)
    result = module.predict_step({"indices": torch.arange(3), "images": images}, 0)
    assert torch.allclose(result["latents"], enc(images), atol=1e-5)
    with pytest.raises(ConfigError, match="steps: expected a positive number"):
        Projection(enc.generator, "z", steps=0)
    # Given a generator, it is used as it is; another generator than the encoder's is one line.
    assert load_encoder(str(last), generator=enc.generator).generator is enc.generator
    from latentnav.generators import load_generator
    from tests.generators.tiny import save_tiny

    save_tiny(tmp_path / "tiny.pt", z_dim=16)  # checked before the encoder is built for its other latent size
    with pytest.raises(ConfigError, match="encoder trained for generator .*demo_generator.pt"):
        load_encoder(str(last), generator=load_generator(str(tmp_path / "tiny.pt")))
    with pytest.raises(DataFormatError, match="not a Lightning training checkpoint"):
        load_encoder(str(REPO / "lightning_modules/pretrained/demo_judge.pt"))
