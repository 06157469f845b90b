"""The bundled demo domain: procedurally rendered faces served through the CelebA reader."""

from __future__ import annotations

from typing import Optional

from pytorch_lightning.utilities import rank_zero_info

from latentnav.datamodules.celeba import CelebADataModule
from latentnav.errors import ConfigError
from latentnav.datamodules.demo_faces import DEMO_ATTRIBUTES, RENDERER_VERSION, read_metadata, write_celeba_layout


class DemoFacesDataModule(CelebADataModule):
    """Demo faces in CelebA's layout under ``root``, rendered there first if missing or stale.

    Args:
        root: folder to render into and read from.
        attributes: subset of the demo attributes to predict; None = all twelve.
        num_faces: faces to render (80/10/10 train/val/test in file order).
        render_seed: seed of the renderer; changing it re-renders the folder.
        image_size: side in pixels; 32 is the demo default, 64 works too.
        batch_size, num_workers, hflip, seed: as in :class:`CelebADataModule`.
    """

    def __init__(
        self,
        root: str = "data/demo_faces",
        attributes: Optional[list[str]] = None,
        num_faces: int = 20000,
        render_seed: int = 0,
        image_size: int = 32,
        batch_size: int = 64,
        num_workers: int = 0,
        hflip: bool = False,
        seed: int = 0,
    ) -> None:
        # Checked here, on every rank: prepare_data() runs on one process only.
        if num_faces < 10:
            raise ConfigError(f"data.num_faces: expected at least 10 faces, got {num_faces}")
        if image_size < 16:
            raise ConfigError(f"data.image_size: the demo renderer needs at least 16 pixels, got {image_size}")
        super().__init__(
            root=root,
            attributes=attributes,
            image_size=image_size,
            crop_size=None,
            batch_size=batch_size,
            num_workers=num_workers,
            hflip=hflip,
            seed=seed,
        )
        self.num_faces = num_faces
        self.render_seed = render_seed

    @property
    def attribute_names(self) -> list[str]:
        if self.table is None and self.attributes is None:
            return list(DEMO_ATTRIBUTES)
        return super().attribute_names

    def _wanted(self) -> dict:
        return {
            "renderer_version": RENDERER_VERSION,
            "num": self.num_faces,
            "seed": self.render_seed,
            "image_size": self.image_size,
        }

    def prepare_data(self) -> None:
        # Runs on one process per node before setup(); other ranks wait at a barrier.
        if read_metadata(self.root) == self._wanted():
            return
        rank_zero_info(f"rendering {self.num_faces} demo faces ({self.image_size} px) into {self.root} ...")
        write_celeba_layout(self.root, self.num_faces, seed=self.render_seed, image_size=self.image_size)
