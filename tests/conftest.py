import pytest

from datamodules.demo_faces import write_celeba_layout

DEMO_FACES = 4000


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory):
    """4,000 demo faces (32 px, seed 0) in CelebA's layout, rendered once per session."""
    return write_celeba_layout(tmp_path_factory.mktemp("demo_faces"), DEMO_FACES, seed=0, image_size=32)
