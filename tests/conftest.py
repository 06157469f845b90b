import numpy as np
import pytest
from PIL import Image

from latentnav.datamodules.demo_faces import write_celeba_layout

DEMO_FACES = 4000


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory):
    """4,000 demo faces (32 px, seed 0) in CelebA's layout, rendered once per session."""
    return write_celeba_layout(tmp_path_factory.mktemp("demo_faces"), DEMO_FACES, seed=0, image_size=32)


def fake_celeba(root, n=6, size=(178, 218), names=("Smiling", "Male", "Young")):
    """A tiny folder in the real layout: JPEGs of CelebA's size, real-format list files."""
    images = root / "img_align_celeba"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    files = [f"{i + 1:06d}.jpg" for i in range(n)]
    for name in files:
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        pixels[:, : size[0] // 2] = 0  # left half black: tells a flip from the original
        Image.fromarray(pixels).save(images / name)
    labels = np.where(rng.random((n, len(names))) < 0.5, 1, -1)
    rows = [name + " " + " ".join(f"{v:2d}" for v in row) for name, row in zip(files, labels)]
    (root / "list_attr_celeba.txt").write_bytes(
        (f"{n}\r\n" + " ".join(names) + " \r\n" + "\r\n".join(rows) + "\r\n").encode()
    )
    parts = [0] * (n - 2) + [1, 2]
    (root / "list_eval_partition.txt").write_text("".join(f"{a} {p}\n" for a, p in zip(files, parts)))
    return labels
