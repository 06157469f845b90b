"""Latent i of stream seed is a pure function of (seed, i), and distinct streams are independent."""

import pytest
import torch

from latentnav.generators import load_generator
from latentnav.errors import ConfigError


def test_latents_at_is_a_pure_function_of_seed_and_index():
    G = load_generator("demo")
    z = G.latents_at(range(12), seed=5)
    assert z.shape == (12, 64) and z.dtype == torch.float32
    torch.testing.assert_close(G.latents_at([7, 3], seed=5), z[[7, 3]], atol=0, rtol=0)  # any order, any batch
    torch.testing.assert_close(G.latents_at(torch.tensor([11]), seed=5), z[11:], atol=0, rtol=0)
    assert G.latents_at([], seed=5).shape == (0, 64)


def test_streams_differ_for_every_seed_and_index():
    """A torch CPU generator keeps only the low 32 bits of its seed: packing (seed, index) into one
    integer made streams 0 and 2 identical. Every pair of these streams must differ, latent by latent."""
    G = load_generator("demo")
    streams = {seed: G.latents_at(range(50), seed=seed) for seed in (0, 1, 2, 3, 2**31, 2**32)}
    for a in streams:
        for b in streams:
            if a < b:
                assert (streams[a] - streams[b]).abs().amax(1).min() > 0.1, (a, b)
    z = streams[0]
    assert len({tuple(row.tolist()) for row in z}) == 50
    # N(0, I): 4,000 latents' moments within a few standard errors.
    many = G.latents_at(range(4000), seed=9).double()
    assert abs(float(many.mean())) < 0.01 and abs(float(many.var()) - 1) < 0.02
    assert float((many.T @ many / 4000 - torch.eye(64, dtype=torch.float64)).abs().max()) < 0.1
    with pytest.raises(ConfigError, match="latent index -1 out of range"):
        G.latents_at([-1])
    with pytest.raises(ConfigError, match="seed: expected a non-negative integer, got -3"):
        G.latents_at([0], seed=-3)


def test_mapped_latents_stay_float32_under_mixed_precision(tmp_path):
    """A bf16-mixed loop (annotation, GANSpace's w pass) gets the same w as a float32 one, not w rounded
    by autocast to bfloat16."""
    from latentnav.generators import load_generator
    from tests.generators.test_stylegan2 import small_port_checkpoint

    G = load_generator(str(small_port_checkpoint(tmp_path)[0]))
    plain = G.latents_at(range(6), seed=3, space="w")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = G.latents_at(range(6), seed=3, space="w")
        assert G.to_space(G.latents_at(range(6), seed=3), "w").dtype == torch.bfloat16  # what autocast would do
    assert mixed.dtype == torch.float32 and torch.equal(mixed, plain)
