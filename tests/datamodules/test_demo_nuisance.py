import numpy as np
import pytest
import torch

from latentnav.datamodules.demo_faces import (
    NUISANCE_FACTORS,
    _sample_nuisance,
    generate,
    nuisance_factors,
    render_faces,
    render_with_nuisance,
    sample_attributes,
)
from latentnav.datamodules.demo_nuisance import DemoNuisanceDataModule, split_seed
from latentnav.errors import ConfigError
from latentnav.lightning_modules.nuisance_regressor import DEMO_FACTORS


def test_render_with_nuisance_is_generate_plus_the_drawn_factors():
    images, labels, factors = render_with_nuisance(40, seed=7, chunk=9)
    g_images, g_labels = generate(40, seed=7)
    np.testing.assert_array_equal(images, g_images)  # the demo's own distribution, face for face
    np.testing.assert_array_equal(labels, g_labels)
    rng = np.random.default_rng(7)
    attrs = sample_attributes(40, rng)
    nuisance = _sample_nuisance(40, rng)
    assert factors.shape == (40, 8) and factors.dtype == np.float32
    expected = np.column_stack([nuisance["cx"], nuisance["cy"], nuisance["scale"], nuisance["skin"],
                                nuisance["background"][:, 0], nuisance["background"][:, 1], nuisance["background"][:, 2],
                                nuisance["gradient"]])
    np.testing.assert_array_equal(factors, expected)
    np.testing.assert_array_equal(nuisance_factors(nuisance), expected)
    np.testing.assert_array_equal(render_faces(attrs, nuisance, 32), images)
    assert NUISANCE_FACTORS == DEMO_FACTORS  # the regressor's default names (a layer below) are the renderer's


def small(**kwargs):
    return DemoNuisanceDataModule(**{"num_train": 48, "num_val": 20, "num_test": 12, "batch_size": 16, **kwargs})


def test_batches_are_the_renderer_faces_and_factors_in_units():
    dm = small(render_seed=3)
    dm.setup("fit")
    images, factors = next(iter(dm.val_dataloader()))
    assert images.shape == (16, 3, 32, 32) and images.dtype == torch.float32
    assert factors.shape == (16, 8) and factors.dtype == torch.float32
    raw, _, truth = render_with_nuisance(20, seed=split_seed(3, "val"))
    # As the CelebA reader serves the demo faces: uint8 / 127.5 - 1, channels first.
    expected = torch.from_numpy(raw[:16]).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    torch.testing.assert_close(images, expected, rtol=0, atol=1e-6)
    assert images.min() >= -1 and images.max() <= 1
    np.testing.assert_array_equal(factors.numpy(), truth[:16])
    # Units, not standardised values: the renderer's ranges.
    all_factors = dm.render("train").factors
    assert -0.08 <= all_factors[:, 0].min() and all_factors[:, 0].max() <= 0.08
    assert 0.88 <= all_factors[:, 2].min() and all_factors[:, 2].max() <= 1.04
    assert dm.factor_names == list(NUISANCE_FACTORS)


def test_deterministic_per_seed_and_splits_distinct():
    a, b, c = small(render_seed=1), small(render_seed=1), small(render_seed=2)
    for dm in (a, b, c):
        dm.setup("fit")
        dm.setup("test")
    for split in ("train", "val", "test"):
        assert torch.equal(a.render(split).images, b.render(split).images)
        assert torch.equal(a.render(split).factors, b.render(split).factors)
        assert not torch.equal(a.render(split).factors, c.render(split).factors)
    seeds = {split_seed(s, split) for s in (0, 1, 2) for split in ("train", "val", "test")}
    assert len(seeds) == 9
    assert not torch.equal(a.render("train").factors[:12], a.render("test").factors)
    # The training order follows data.seed (per rank), the faces do not.
    first = [next(iter(small(render_seed=1, seed=s).train_dataloader()))[1] for s in (0, 0, 1)]
    assert torch.equal(first[0], first[1]) and not torch.equal(first[0], first[2])


def test_factor_statistics_are_the_training_split():
    dm = small()
    mean, std = dm.factor_statistics()
    factors = dm.render("train").factors.double()
    np.testing.assert_allclose(mean, factors.mean(0).numpy(), rtol=1e-6)
    np.testing.assert_allclose(std, factors.std(0).numpy(), rtol=1e-6)


@pytest.mark.parametrize("field, value", [("num_train", 0), ("batch_size", -1), ("image_size", 8), ("render_seed", -2)])
def test_bad_settings_are_one_line(field, value):
    with pytest.raises(ConfigError, match=f"data.{field}"):
        DemoNuisanceDataModule(**{field: value})
