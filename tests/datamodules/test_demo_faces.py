import numpy as np
import pytest

from latentnav.datamodules.celeba_files import read_attribute_file, read_partition_file
from latentnav.datamodules.demo_faces import (
    DEMO_ATTRIBUTES,
    _sample_nuisance,
    generate,
    read_metadata,
    render_faces,
    sample_attributes,
    write_celeba_layout,
)

HAIR = ["Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair"]


def test_deterministic_per_seed_and_independent_of_chunking():
    a_img, a_lab = generate(40, seed=7)
    b_img, b_lab = generate(40, seed=7, chunk=9)
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_lab, b_lab)
    c_img, _ = generate(40, seed=8)
    assert (a_img != c_img).any()
    assert a_img.shape == (40, 32, 32, 3) and a_img.dtype == np.uint8
    assert a_lab.shape == (40, len(DEMO_ATTRIBUTES)) and set(np.unique(a_lab)) == {-1, 1}


def test_64px_renders():
    images, _ = generate(4, seed=0, image_size=64)
    assert images.shape == (4, 64, 64, 3)
    assert images.std() > 20  # a face on a background, not a flat image


@pytest.fixture(scope="module")
def labels():
    attrs = sample_attributes(20000, np.random.default_rng(123))
    return {k: v.astype(np.float64) for k, v in attrs.items()}


@pytest.mark.parametrize(
    "a, b, target, tolerance",
    [
        ("Male", "Wearing_Lipstick", -0.70, 0.05),
        ("Male", "No_Beard", -0.50, 0.05),
        ("Young", "Gray_Hair", -0.50, 0.05),
        ("Young", "Bald", -0.24, 0.06),
        ("Wearing_Hat", "Bald", -0.18, 0.05),
    ],
)
def test_documented_correlations(labels, a, b, target, tolerance):
    phi = np.corrcoef(labels[a], labels[b])[0, 1]
    assert abs(phi - target) <= tolerance, f"{a}/{b}: phi {phi:.3f}, documented {target}"


def test_frequencies_and_exclusive_hair(labels):
    for name in DEMO_ATTRIBUTES:
        assert 0.095 <= labels[name].mean() <= 0.905, name
    hair = np.stack([labels[h] for h in HAIR], axis=1)
    np.testing.assert_array_equal(hair.sum(1), 1.0 - labels["Bald"])
    assert not (labels["Bald"] * labels["Wearing_Hat"]).any()


@pytest.mark.parametrize("name", [a for a in DEMO_ATTRIBUTES if a not in HAIR])
def test_each_attribute_is_visible(name):
    """Toggling one attribute alone changes a visible patch of every face (32 px)."""
    rng = np.random.default_rng(5)
    attrs = sample_attributes(32, rng)
    nuisance = _sample_nuisance(32, rng)
    if name == "Bald":  # baldness and a hat are exclusive; bald faces have no hair colour
        attrs["Wearing_Hat"][:] = False
    flipped = dict(attrs, **{name: ~attrs[name]})
    a = render_faces(attrs, nuisance, 32).astype(np.int16)
    b = render_faces(flipped, nuisance, 32).astype(np.int16)
    changed = (np.abs(a - b).max(-1) > 40).sum(axis=(1, 2))  # pixels per face
    assert changed.min() >= 4, f"{name}: toggling changed only {changed.min()} pixels of some face"


def test_hair_colours_are_distinguishable():
    rng = np.random.default_rng(6)
    attrs = sample_attributes(8, rng)
    nuisance = _sample_nuisance(8, rng)
    attrs["Bald"][:] = False
    renders = []
    for colour in HAIR:
        for h in HAIR:
            attrs[h] = np.full(8, h == colour)
        renders.append(render_faces(attrs, nuisance, 32).astype(np.int16))
    for i in range(4):
        for j in range(i + 1, 4):
            changed = (np.abs(renders[i] - renders[j]).max(-1) > 40).sum(axis=(1, 2))
            assert changed.min() >= 20, (HAIR[i], HAIR[j])


def test_writes_celeba_layout(tmp_path):
    root = write_celeba_layout(tmp_path / "faces", 30, seed=2)
    header = (root / "list_attr_celeba.txt").read_text().split("\n")
    assert header[0] == "30" and header[1].endswith(" ") and "  1" in header[2]
    table = read_attribute_file(root / "list_attr_celeba.txt")
    _, expected = generate(30, seed=2)
    assert table.names == DEMO_ATTRIBUTES
    np.testing.assert_array_equal(table.values, expected)
    split = read_partition_file(root / "list_eval_partition.txt")
    assert sorted(split.values()).count(0) == 24 and sorted(split.values()).count(2) == 3
    assert len(list((root / "img_align_celeba").glob("*.png"))) == 30
    assert read_metadata(root)["num"] == 30
