"""(latent, classifier score) pairs: latents from the generator's prior, labelled by the frozen classifier.

Two modes:

- ``cached`` (default): each split is an annotated-latents store under ``cache_dir/<split>``
  (shards + ``manifest.json``, see ``latentnav/annotation_shards.py``), read lazily from
  memory-mapped shards, so 10 M labelled latents never have to fit in memory. When a split's
  manifest is missing, ``prepare_data`` makes it with the annotation predict job
  (``lightning_modules/latent_annotation.py``) on this process's device, resuming from the
  shards already there; for big stores run that job yourself first on all your devices
  (``train.py predict --config configs/annotate/...``, same generator, classifier, space,
  seed and sizes). A store made with another generator, classifier, space, seed or size is
  refused with one line; an unreadable one (a zero-byte manifest, a truncated shard) is
  re-annotated. Two runs of one config take turns on the store's lock: the second waits and
  finds it finished. Training shards the rows across DDP ranks (disjoint).
- ``stream``: every training batch is freshly sampled from the prior and labelled on the fly
  (never the same latent twice; streams disjoint per rank and worker by seed); validation
  still uses the cached split.

A class-conditional generator (``generator_options: {classes: [239, 207]}``, default all classes): latent i of a
store is rendered in class ``classes[i % n]`` (``FrozenGenerator.classes_at``), the store's key records the
classes given, and streamed latents draw their class from the same seeded stream. The stored latents are the
class's (a w latent depends on it); the directions fitted to them are shared across classes.
"""

from __future__ import annotations

import functools
import math
import shutil
from pathlib import Path
from typing import Literal, Optional

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from latentnav.annotation_shards import (LOCK, ShardedLatents, check_manifest, complete_shards, make_key,
                                         store_finished)
from latentnav.assets import resolve_source
from latentnav.atomic import file_lock, remove_orphans
from latentnav.datamodules.loaders import rank_seed, split_loader
from latentnav.errors import ConfigError, check_count
from latentnav.safe_load import sha256_of

VAL_SEED_OFFSET = 1_000_003  # the validation split's stream: seed + this


class AnnotatedLatentsDataModule(pl.LightningDataModule):
    """Batches ``(latents (B, d), targets (B, K))``.

    Args:
        generator, generator_options: the frozen generator (see ``latentnav.generators.load_generator``).
        annotator: the frozen attribute classifier (see ``latentnav.lightning_modules.annotator``).
        attributes: columns to keep, in order; None = all of the classifier's.
        space: latent space to sample and store (``z``; ``w`` for StyleGAN2).
        num_train, num_val: latents per split (val uses a different seed).
        target: ``probabilities`` (default: on the demo, λ = 1 edits had a mean off-target change of
            0.059 with them vs 0.060 with logits, max 0.357 vs 0.371) or ``logits`` of the classifier.
        cache_dir: where the annotated splits are stored (``<cache_dir>/train``, ``<cache_dir>/val``).
        annotate_batch_size: latents per generator call when annotating.
        shard_size: latents per shard file of the stores.
        annotate_precision: the annotation job's precision when this module runs it (``32-true``
            default: bf16 moves the demo's logits enough to flip decisions, see bench/RESULTS.md).
    """

    def __init__(
        self,
        generator: str = "demo",
        annotator: str = "demo",
        attributes: Optional[list[str]] = None,
        space: str = "z",
        num_train: int = 20000,
        num_val: int = 2000,
        target: Literal["logits", "probabilities"] = "probabilities",
        batch_size: int = 256,
        seed: int = 0,
        cache_dir: str = "data/annotated_latents",
        annotate_batch_size: int = 500,
        generator_options: Optional[dict] = None,
        mode: Literal["cached", "stream"] = "cached",
        stream_batches_per_epoch: int = 100,
        shard_size: int = 10000,
        annotate_precision: str = "32-true",
    ) -> None:
        super().__init__()
        if mode not in ("cached", "stream"):
            raise ConfigError(f"data.mode: expected 'cached' or 'stream', got {mode!r}")
        self.mode, self.stream_batches_per_epoch = mode, stream_batches_per_epoch
        if target not in ("logits", "probabilities"):
            raise ConfigError(f"data.target: expected 'logits' or 'probabilities', got {target!r}")
        # Every count >= 1 before any work: a batch size of 0 used to fail in a traceback after the annotation.
        for field, value in (("num_train", num_train), ("num_val", num_val), ("batch_size", batch_size),
                             ("annotate_batch_size", annotate_batch_size), ("shard_size", shard_size),
                             ("stream_batches_per_epoch", stream_batches_per_epoch)):
            check_count(f"data.{field}", value, 1)
        self.generator, self.annotator = generator, annotator
        self.generator_options = dict(generator_options or {})
        self.attributes = list(attributes) if attributes is not None else None
        self.space, self.target = space, target
        self.sizes = {"train": num_train, "val": num_val}
        self.batch_size, self.seed = batch_size, seed
        self.cache_dir = Path(cache_dir)
        self.annotate_batch_size, self.shard_size, self.annotate_precision = annotate_batch_size, shard_size, annotate_precision
        self.data: dict[str, ShardedLatents] = {}
        self.names: Optional[list[str]] = None
        # Annotation writes shared files: once per job (global rank 0), not once per node.
        self.prepare_data_per_node = False

    def _splits(self) -> tuple[str, ...]:
        return ("val",) if self.mode == "stream" else ("train", "val")

    def split_seed(self, split: str) -> int:
        return self.seed + (0 if split == "train" else VAL_SEED_OFFSET)

    @functools.cached_property
    def _sources_sha256(self) -> tuple[str, str]:
        # Hashed once: a StyleGAN2 checkpoint is ~120 MB, and the key is needed per split and stage.
        return (sha256_of(resolve_source(self.generator, "generator", "data.generator")),
                sha256_of(resolve_source(self.annotator, "annotator", "data.annotator")))

    def source_identity(self) -> dict[str, dict[str, str]]:
        """The files the data is made from, ``{field: {"source", "sha256"}}``: a checkpoint records them
        so that a resume with another generator or classifier is refused (``callbacks/run_identity.py``)."""
        generator, annotator = self._sources_sha256
        return {"data.generator": {"source": str(self.generator), "sha256": generator},
                "data.annotator": {"source": str(self.annotator), "sha256": annotator}}

    def _key(self, split: str) -> dict:
        from latentnav.datamodules.annotation_writer import with_classes

        return with_classes(make_key(*self._sources_sha256, self.space, self.split_seed(split), self.sizes[split],
                                     self.shard_size), self.generator_options.get("classes"))

    def store(self, split: str) -> Path:
        return self.cache_dir / split

    def _finished(self, split: str) -> bool:
        return store_finished(self.store(split), self._key(split))

    def prepare_data(self) -> None:
        for split in self._splits():
            self._key(split)  # the generator and classifier files exist (one line otherwise), before any folder is made
        job = None
        for split in self._splits():
            # Two runs of one config started together meet here: "finished? else annotate and write the
            # manifest" is one step under the store's lock, so the second waits, then finds it finished.
            with file_lock(self.store(split) / LOCK):
                remove_orphans(self.store(split))  # temporary files of a killed writer
                if not self._finished(split):
                    if job is None:
                        job = self._annotation_module()
                        self._check_disk(job)
                    self._annotate(split, job)

    def _annotation_module(self):
        from latentnav.lightning_modules.latent_annotation import LatentAnnotation

        return LatentAnnotation(self.generator, self.annotator, self.space, self.generator_options)

    def store_bytes(self, job) -> int:
        """Bytes the unfinished splits' shards will take: float32 latents and logits per sample, plus a
        little per shard (the shards already complete are not counted)."""
        per_sample = 4 * (math.prod(job.generator.latent_shape(self.space)) + len(job.annotator.attributes))
        total = 0
        for split in self._splits():
            if not self._finished(split):
                done = len(complete_shards(self.store(split), self._key(split)))
                left = max(0, self.sizes[split] - done * self.shard_size)
                total += left * per_sample + 4096 * math.ceil(left / self.shard_size)
        return total

    def _check_disk(self, job) -> None:
        """One line before any annotation when the store would not fit on its disk (``num_train 1e9`` asked
        for ~300 GB and started anyway)."""
        need = self.store_bytes(job)
        folder = self.cache_dir
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        free = shutil.disk_usage(folder).free
        if need > free:
            raise ConfigError(f"data.num_train / data.num_val: the annotation store in {self.cache_dir} needs about "
                              f"{need / 1e9:.1f} GB, and {free / 1e9:.1f} GB are free there; annotate fewer latents "
                              "or point data.cache_dir at a larger disk")

    def _annotate(self, split: str, job) -> None:
        """Run the annotation predict job for ``split`` on this process's device (resumes from its shards);
        the caller holds the store's lock."""
        from latentnav.datamodules.annotation_writer import AnnotationWriter
        from latentnav.datamodules.latent_indices import LatentIndicesDataModule

        store = self.store(split)
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        trainer = pl.Trainer(accelerator="gpu" if device.type == "cuda" else "cpu",
                             devices=[device.index or 0] if device.type == "cuda" else 1,
                             precision=self.annotate_precision, logger=False, enable_checkpointing=False,
                             enable_model_summary=False,
                             callbacks=[AnnotationWriter(str(store), lock=False)])  # prepare_data holds the lock
        trainer.predict(job, datamodule=LatentIndicesDataModule(self.sizes[split], self.split_seed(split),
                                                               self.annotate_batch_size, self.shard_size),
                        return_predictions=False)

    def setup(self, stage: Optional[str] = None) -> None:
        if self.data:
            return
        for split in self._splits():
            manifest = check_manifest(self.store(split), self._key(split))
            names = list(manifest["attributes"])
            wanted = self.attributes or names
            unknown = [a for a in wanted if a not in names]
            if unknown:
                raise ConfigError(f"data.attributes: unknown {', '.join(unknown)}; the classifier has {' '.join(names)}")
            self.data[split] = ShardedLatents(self.store(split), manifest, [names.index(a) for a in wanted],
                                              probabilities=self.target == "probabilities")
            self.names = wanted

    @functools.cached_property
    def latent_dim(self) -> int:
        """Size of one (flattened) latent of ``space``, read from the generator itself (the CLI links it
        into ``model.init_args.latent_dim``); a space the generator lacks is one line here, at
        instantiation, before any annotation starts."""
        from math import prod

        from latentnav.generators import load_generator

        G = load_generator(self.generator, **self.generator_options)
        return prod(G.latent_shape(self.space))

    @property
    def attribute_names(self) -> list[str]:
        if self.names is None:
            raise RuntimeError("attribute_names: call setup() first")
        return self.names

    def train_dataloader(self) -> DataLoader:
        rank = self.trainer.global_rank if self.trainer is not None else 0
        if self.mode == "stream":
            from latentnav.generators import load_generator
            from latentnav.lightning_modules.annotator import load_annotator

            stream = LabelledLatentStream(load_generator(self.generator, **self.generator_options),
                                          load_annotator(self.annotator), self.names, self.space, self.target,
                                          self.batch_size, self.stream_batches_per_epoch, self.seed, rank,
                                          start_epoch=self.trainer.current_epoch if self.trainer is not None else 0)
            return DataLoader(stream, batch_size=None)
        return DataLoader(self.data["train"], batch_size=self.batch_size, shuffle=True,
                          generator=torch.Generator().manual_seed(rank_seed(self.seed, rank)))

    def val_dataloader(self) -> DataLoader:
        # Sliced across ranks unpadded: Lightning's default sampler would repeat latents when num_val is not a
        # multiple of the processes, and the validation figures the exports are checked against count them twice.
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else (0, 1)
        return split_loader(self.data["val"], self.batch_size, False, rank, world, 0, self.seed,
                            lambda n: ConfigError(f"data.num_val: {n} latent(s) for {world} processes; every process "
                                                  "needs one"))


class LabelledLatentStream(torch.utils.data.IterableDataset):
    """Endless-per-epoch batches ``(latents, targets)`` sampled and labelled on the fly.

    The stream of (rank r, worker w, epoch e) is seeded by (seed, r, w, e), so ranks and
    workers never share latents and a rerun reproduces them. Targets use the same
    columns and kind (logits / probabilities) as the cached mode.
    """

    def __init__(self, generator, annotator, names: list[str], space: str, target: str, batch_size: int,
                 batches: int, seed: int, rank: int, start_epoch: int = 0) -> None:
        self.generator, self.annotator = generator, annotator
        self.columns = [annotator.attributes.index(n) for n in names]
        self.space, self.target = space, target
        self.batch_size, self.batches, self.seed, self.rank = batch_size, batches, seed, rank
        self.epoch = start_epoch  # a resumed fit goes on with its next epoch's latents, not epoch 0's again

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        g = torch.Generator().manual_seed(hash((self.seed, self.rank, worker, self.epoch)) % (2**63))
        self.epoch += 1
        for _ in range(worker, self.batches, workers):
            with torch.no_grad():
                z = self.generator.sample(self.batch_size, space="z", generator=g)
                classes = self.generator.sample_classes(self.batch_size, generator=g)  # None: unconditional
                latents = z if self.space == "z" else self.generator.to_space(z, self.space, classes=classes)
                images = self.generator.synthesize(latents, self.space, classes=classes)
                scores = self.annotator.logits(images)[:, self.columns].float()
            yield latents.flatten(1).cpu(), (torch.sigmoid(scores) if self.target == "probabilities" else scores).cpu()


if __name__ == "__main__":  # python -m ... (an entry point: it may reach the commands layer)
    from latentnav.commands.tools import annotate_main

    raise SystemExit(annotate_main())
