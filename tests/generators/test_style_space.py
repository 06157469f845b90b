"""Style space S of the StyleGAN2 port: s_l = affine_l(w_l) per layer, synthesis from S, truncation and edits."""

import pytest
import torch

from latentnav.errors import ConfigError
from latentnav.generators import load_generator
from tests.generators.test_stylegan2 import SMALL, small_port_checkpoint


@pytest.fixture(scope="module")
def G(tmp_path_factory):
    path, _ = small_port_checkpoint(tmp_path_factory.mktemp("g"))
    return load_generator(path)


def test_layout_covers_every_styled_layer_in_synthesis_order(G):
    layout = G.style_space_layout()
    names = [name for name, _, _ in layout]
    assert names == ["conv1", "to_rgb1", "convs.0", "convs.1", "to_rgbs.0", "convs.2", "convs.3", "to_rgbs.1",
                     "convs.4", "convs.5", "to_rgbs.2"]
    assert layout[0][1] == 0 and all(a[2] == b[1] for a, b in zip(layout, layout[1:]))
    assert layout[-1][2] == G.latent_shape("s")[0]
    # each layer's slice has its input width: convs.2 upsamples 64 -> 32 channels, so it reads 64
    widths = {name: stop - start for name, start, stop in layout}
    assert widths["convs.2"] == SMALL.channels[1] and widths["convs.3"] == SMALL.channels[2]


@pytest.mark.parametrize("truncation, cutoff", [(1.0, None), (0.6, None), (0.6, 3)])
def test_synthesis_from_s_equals_synthesis_from_w_plus(G, truncation, cutoff):
    z = G.sample(3, seed=4)
    s = G.to_space(z, "s")
    assert s.shape == (3, G.latent_shape("s")[0])
    from_s = G.synthesize(s, "s", truncation=truncation, truncation_cutoff=cutoff)
    from_w = G.synthesize(G.to_space(z, "w+"), "w+", truncation=truncation, truncation_cutoff=cutoff)
    torch.testing.assert_close(from_s, from_w, atol=1e-5, rtol=0)
    if truncation < 1:  # truncation really acted (S is pulled towards the mean w's styles)
        assert (from_s - G.synthesize(s, "s")).abs().max() > 1e-3


def test_one_channel_edit_changes_its_layer_only_and_gradients_reach_s(G):
    s = G.sample(2, seed=1, space="s")
    name, start, stop = G.style_space_layout()[5]  # convs.2
    direction = torch.zeros_like(s[0])
    direction[start + 3] = 1.0
    edited = G.synthesize(s + 5.0 * direction, "s")
    assert (edited - G.synthesize(s, "s")).abs().max() > 1e-3
    # the edited styles are the originals except one channel of one layer
    styles, moved = G.truncated_styles(s), G.truncated_styles(s + 5.0 * direction)
    changed = [i for i, (a, b) in enumerate(zip(styles, moved)) if not torch.equal(a, b)]
    assert changed == [5] and (moved[5] - styles[5]).nonzero()[:, 1].unique().tolist() == [3]

    latent = s.clone().requires_grad_(True)
    G.synthesize(latent, "s").square().mean().backward()
    assert latent.grad.abs().sum() > 0 and all(p.grad is None for p in G.parameters())


def test_noise_maps_and_bad_s_latents(G):
    s = G.sample(1, seed=2, space="s")
    noise = [torch.zeros_like(n) for n in G.noise_maps()]
    torch.testing.assert_close(G.synthesize_with_noise(s, "s", noise), G.synthesize(s, "s", noise_mode="none"))
    with pytest.raises(ConfigError, match=r"s latent: expected shape \(batch, 544\)"):
        G.synthesize(torch.zeros(1, 32), "s")
    with pytest.raises(ConfigError, match="style space s has no latent-facing matrix"):
        G.latent_weights("s")
