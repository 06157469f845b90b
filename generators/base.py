"""The frozen-generator contract every method in latentnav works against.

A :class:`FrozenGenerator` wraps a pretrained network and promises:

- ``latent_spaces``: the spaces it accepts, e.g. ``("z",)`` or ``("z", "w", "w+")``, with
  ``latent_shape(space)`` giving one latent's shape (``(d,)``, or ``(n_latent, d)`` for ``w+``);
- ``sample(n, seed=..., space=...)``: latents from the model's own prior (z ~ N(0, I),
  w = mapping(z)), float32 on the wrapper's device;
- ``synthesize(latent, space=..., truncation=..., noise_mode=...)``: images float32
  (B, 3, resolution, resolution) in [-1, 1]. Gradients flow to the latent (later methods
  need them); no gradient ever reaches the weights;
- ``latent_weights(space)``: the weight matrices that act first on a latent of that space,
  each as a matrix A of shape (out, d) with h = A @ latent (for the closed-form methods);
- ``identity``: source path, sha256 and class, stored in the checkpoints of modules that
  use the generator, so that resuming against another generator fails loudly;
- ``num_classes``: 0 for an unconditional generator; > 0 for a class-conditional one, where a sample is a
  pair (latent, class): ``to_space``, ``synthesize`` and ``synthesize_with_noise`` then take ``classes``, a
  (B,) integer tensor of class ids in [0, num_classes). Directions are shared across classes. Which classes a
  run draws from is the user's choice (``classes``, default all); latent i's class is a pure function of i
  (:meth:`FrozenGenerator.classes_at`), so 1 or N processes agree, as they do on the latents.

Frozen means (:class:`latentnav.frozen.Frozen`): parameters that cannot require grad, even under a
parent's ``requires_grad_(True)``, from construction on (before any DDP wrapping), and eval mode that
``train()`` cannot undo, so batch-norm statistics never move.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

from latentnav.errors import ConfigError, NonFiniteOutput
from latentnav.frozen import Frozen

NOISE_MODES = ("const", "random", "none")


def latent_rng(seed: int, index: int) -> np.random.Generator:
    """The RNG of latent ``index`` of stream ``seed``: PCG64 keyed by numpy's SeedSequence of the pair,
    so distinct pairs give independent streams. (A torch CPU generator keeps only the low 32 bits of
    its seed: packing (seed, index) into one integer made streams ``seed`` and ``seed + 2`` identical.)"""
    if index < 0 or index >= 2**63:
        raise ConfigError(f"latent index {index} out of range [0, 2**63)")
    if seed < 0:
        raise ConfigError(f"seed: expected a non-negative integer, got {seed}")
    return np.random.default_rng((int(seed), int(index)))


class FrozenGenerator(Frozen, nn.Module):
    """Base class; subclasses implement ``_synthesize``, ``_sample_z``/``_map`` and ``latent_weights``."""

    latent_spaces: tuple[str, ...] = ("z",)

    def __init__(self, resolution: int, z_dim: int, identity: Optional[dict] = None, num_classes: int = 0) -> None:
        super().__init__()
        self.resolution = resolution
        self.z_dim = z_dim
        self.identity = dict(identity or {})
        self.num_classes = int(num_classes)
        self.class_choice: tuple[int, ...] = tuple(range(self.num_classes))

    def describe(self) -> dict:
        """What the contract sees, for ``latentnav generator info``: family (the file format recognised),
        resolution, spaces and shapes, classes, mapping depth and where truncation's centre comes from.
        Adapters add their own facts by overriding and extending this dict."""
        return {
            "family": self.identity.get("format", type(self).__name__),
            "resolution": self.resolution,
            "spaces": {s: tuple(self.latent_shape(s)) for s in self.latent_spaces},
            "classes": (f"{self.num_classes} (drawing from {len(self.class_choice)})" if self.conditional
                        else "unconditional"),
            "mapping_layers": getattr(self, "mapping_layers", None),
            "truncation": self.identity.get("w_avg", self.truncation_source),
            "noise_inputs": len(self.noise_maps()),
        }

    #: The module whose output GANSpace reads in z space (its "first layer on z"); None: the first Linear / Conv.
    feature_layer: Optional[str] = None

    #: Where truncation's centre comes from (adapters with a mean w say so in ``identity["w_avg"]``).
    truncation_source = "the prior's mean (psi scales z)"

    # ----------------------------------------------------------------- classes
    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    def use_classes(self, classes: Optional[Sequence[int]]) -> "FrozenGenerator":
        """Draw samples from these class ids (``--classes 239 207``); ``None``: all classes. Latent i gets
        ``classes[i % len(classes)]``. Refused in one line for an unconditional generator or an id out of range."""
        if classes is None or (not self.conditional and len(classes) == 0):
            self.class_choice = tuple(range(self.num_classes))
            return self
        if not self.conditional:
            raise ConfigError(f"classes: {type(self).__name__} is not class-conditional; leave --classes out")
        chosen = tuple(int(c) for c in classes)
        bad = [c for c in chosen if not 0 <= c < self.num_classes]
        if not chosen or bad:
            raise ConfigError(f"classes: expected class ids in 0..{self.num_classes - 1}, got {list(classes)}")
        self.class_choice = chosen
        return self

    def classes_at(self, indices) -> Optional[torch.Tensor]:
        """The class of each latent index ((B,) int64 on the wrapper's device), or None when unconditional."""
        if not self.conditional:
            return None
        idx = torch.as_tensor(indices.tolist() if isinstance(indices, torch.Tensor) else list(indices), dtype=torch.int64)
        choice = torch.tensor(self.class_choice, dtype=torch.int64)
        return choice[idx.remainder(len(choice))].to(self.device)

    def sample_classes(self, n: int, generator: Optional[torch.Generator] = None) -> Optional[torch.Tensor]:
        """``n`` classes drawn uniformly from the chosen ones (None when unconditional)."""
        if not self.conditional:
            return None
        pick = torch.randint(len(self.class_choice), (n,), generator=generator)
        return torch.tensor(self.class_choice, dtype=torch.int64)[pick].to(self.device)

    def check_classes(self, classes, batch: int) -> Optional[torch.Tensor]:
        """``classes`` as a (batch,) int64 tensor on the device, or one line: a conditional generator needs them,
        an unconditional one takes none."""
        if not self.conditional:
            if classes is not None:
                raise ConfigError(f"classes: {type(self).__name__} is not class-conditional; give no classes")
            return None
        if classes is None:
            raise ConfigError(f"{type(self).__name__} is class-conditional ({self.num_classes} classes): "
                              "every sample needs a class (give classes, e.g. --classes 0 1)")
        classes = torch.as_tensor(classes).reshape(-1)
        if classes.dtype.is_floating_point or classes.dtype == torch.bool:
            raise ConfigError(f"classes: expected integer class ids, got {classes.dtype}")
        if classes.numel() == 1 and batch != 1:
            classes = classes.expand(batch)
        if classes.numel() != batch:
            raise ConfigError(f"classes: expected {batch} class ids (one per sample), got {classes.numel()}")
        if classes.numel() and (int(classes.min()) < 0 or int(classes.max()) >= self.num_classes):
            raise ConfigError(f"classes: expected ids in 0..{self.num_classes - 1}, got {classes.tolist()[:8]}")
        return classes.to(self.device, torch.int64)

    def freeze(self) -> "FrozenGenerator":
        """Call at the end of a subclass ``__init__`` (see :class:`latentnav.frozen.Frozen`)."""
        Frozen.freeze(self)
        self.identity.setdefault("class", f"{type(self).__module__}.{type(self).__qualname__}")
        return self

    @property
    def device(self) -> torch.device:
        for t in list(self.parameters()) + list(self.buffers()):
            return t.device
        return torch.device("cpu")

    # ----------------------------------------------------------------- latents
    def latent_shape(self, space: str = "z") -> tuple[int, ...]:
        self._check_space(space)
        return (self.z_dim,)

    def _check_space(self, space: str) -> None:
        if space not in self.latent_spaces:
            raise ConfigError(
                f"latent space {space!r} is not supported by {type(self).__name__}; "
                f"expected one of {', '.join(self.latent_spaces)}"
            )

    def check_latent(self, latent: torch.Tensor, space: str = "z") -> None:
        """Raise a one-line error unless ``latent`` is a batch of ``space`` latents."""
        self._check_space(space)
        shape = self.latent_shape(space)
        if not isinstance(latent, torch.Tensor) or latent.ndim != len(shape) + 1 or tuple(latent.shape[1:]) != shape:
            got = tuple(latent.shape) if isinstance(latent, torch.Tensor) else type(latent).__name__
            raise ConfigError(
                f"{space} latent: expected shape (batch, {', '.join(map(str, shape))}), got {got}"
            )

    def sample(self, n: int, seed: Optional[int] = None, space: str = "z",
               generator: Optional[torch.Generator] = None, classes=None) -> torch.Tensor:
        """``n`` latents of ``space`` from the prior; ``seed`` or ``generator`` make it reproducible. A
        class-conditional generator's w latents depend on the class: give ``classes`` for ``w``/``w+``."""
        self._check_space(space)
        if generator is None:
            generator = torch.Generator()
            generator.manual_seed(seed) if seed is not None else generator.seed()
        z = torch.randn(n, self.z_dim, generator=generator).to(self.device)
        return z if space == "z" else self.to_space(z, space, classes=classes)

    def latents_at(self, indices, seed: int = 0, space: str = "z") -> torch.Tensor:
        """Latents (len(indices), *latent_shape(space)) on the wrapper's device: latent i is a pure
        function of (seed, i), so any process can make any latent, and 1 or N processes (any batch
        size, any slicing) see the same latent i. z_i ~ N(0, I) from :func:`latent_rng` (seed, i)
        (about 30 µs a latent on the CPU)."""
        self._check_space(space)
        rows = [latent_rng(seed, int(i)).standard_normal(self.z_dim, dtype=np.float32)
                for i in (indices.tolist() if isinstance(indices, torch.Tensor) else indices)]
        z = (torch.from_numpy(np.stack(rows)) if rows else torch.zeros(0, self.z_dim)).to(self.device)
        if space == "z":
            return z
        # float32 under a mixed-precision loop too: the latents are data (stored, edited, averaged), and
        # autocast would round a mapped w to half precision.
        with torch.autocast(z.device.type, enabled=False):
            return self.to_space(z, space, classes=self.classes_at(indices)).float()

    def to_space(self, z: torch.Tensor, space: str, classes=None) -> torch.Tensor:
        """Map z latents (B, z_dim) to ``space`` (identity for ``z``); ``classes`` (B,) for a conditional one."""
        self.check_latent(z, "z")
        if space == "z":
            return z
        raise NotImplementedError

    # ----------------------------------------------------------------- images
    def synthesize(self, latent: torch.Tensor, space: str = "z", truncation: float = 1.0,
                   noise_mode: str = "const", truncation_latent: Optional[torch.Tensor] = None,
                   classes=None, truncation_cutoff: Optional[int] = None) -> torch.Tensor:
        """Images (B, 3, resolution, resolution) in [-1, 1] for a batch of latents of ``space``.

        ``truncation`` psi in [0, 1] (1: none) pulls the latent towards ``truncation_latent`` (default:
        the generator's own centre, e.g. StyleGAN2's mean w); the rosinality port applies psi < 1 only,
        so psi > 1 (extrapolation) is refused rather than silently treated differently.
        ``truncation_cutoff`` k: psi applies to the first k rows of w+ only (NVIDIA's cutoff; None: all).
        ``classes``: (B,) class ids, required by a class-conditional generator (see ``num_classes``)."""
        self.check_latent(latent, space)
        if noise_mode not in NOISE_MODES:
            raise ConfigError(f"noise_mode: expected one of {', '.join(NOISE_MODES)}, got {noise_mode!r}")
        if not 0.0 <= float(truncation) <= 1.0:
            raise ConfigError(f"truncation: expected psi in [0, 1] (1 = no truncation), got {truncation}; "
                              "the StyleGAN2 port ignores psi >= 1 and latentnav does not extrapolate")
        if truncation_latent is not None:
            truncation_latent = truncation_latent.to(self.device, torch.float32)
        if truncation_cutoff is not None and (isinstance(truncation_cutoff, bool) or int(truncation_cutoff) < 0):
            raise ConfigError(f"truncation_cutoff: expected a non-negative number of w+ rows, got {truncation_cutoff}")
        classes = self.check_classes(classes, latent.shape[0])
        return self._synthesize(latent.to(self.device), space, float(truncation), noise_mode, truncation_latent,
                   classes, None if truncation_cutoff is None else int(truncation_cutoff))

    def compile_synthesis(self, backend: Optional[str] = "inductor") -> "FrozenGenerator":
        """Run :meth:`synthesize` through ``torch.compile(backend=backend)`` (None: eager again). The images are
        the same up to the compiled kernels' rounding; whether it pays (a one-off compile of tens of seconds,
        then faster calls) depends on the pass's size and the machine: ``bench/RESULTS.md``. Shapes are
        compiled dynamic, so a pass's last, smaller batch does not compile again. :meth:`synthesize_with_noise`
        (a projection's optimised noise maps) is compiled too."""
        for name in self._COMPILED:  # an instance attribute shadows the class's method while compiled
            self.__dict__.pop(name, None)
            if backend is not None:
                self.__dict__[name] = torch.compile(getattr(self, name), backend=backend, dynamic=True)
        return self

    _COMPILED = ("_synthesize", "synthesize_with_noise")

    @property
    def compiled(self) -> bool:
        """Whether :meth:`compile_synthesis` is in effect."""
        return "_synthesize" in self.__dict__

    def forward(self, latent: torch.Tensor, space: str = "z") -> torch.Tensor:
        return self.synthesize(latent, space)

    def noise_maps(self) -> list[torch.Tensor]:
        """The per-layer noise inputs the generator uses (``noise_mode="const"``), e.g. StyleGAN2's
        (1, 1, r, r) maps; empty for generators without noise inputs."""
        return []

    def synthesize_with_noise(self, latent: torch.Tensor, space: str, noise: Sequence[torch.Tensor],
                              classes=None) -> torch.Tensor:
        """Images for ``latent`` with the given per-layer ``noise`` maps ((B, 1, r, r) each, as
        :meth:`noise_maps`), e.g. a projection's optimised ones; a generator without noise ignores them."""
        if noise:
            raise ConfigError(f"{type(self).__name__} has no noise inputs")
        return self.synthesize(latent, space, classes=classes)

    def _synthesize(self, latent: torch.Tensor, space: str, truncation: float, noise_mode: str,
                    truncation_latent: Optional[torch.Tensor], classes: Optional[torch.Tensor] = None,
                    truncation_cutoff: Optional[int] = None) -> torch.Tensor:
        raise NotImplementedError

    def sefa_pool(self, space: str) -> Optional[list[tuple[str, int]]]:
        """SeFa's default layer choice for ``space`` as the authors' release makes it for this family:
        ``[(name in latent_weights, output resolution)]``, the pool that ``--layers all / coarse / middle /
        fine`` and layer indices pick from; None: every layer ``latent_weights`` lists, no resolution groups."""
        return None

    def latent_weights(self, space: str = "z", layers: Optional[Sequence[int]] = None) -> list[tuple[str, torch.Tensor]]:
        """``[(name, A)]``: matrices (out, d) acting first on a ``space`` latent (h = A @ latent)."""
        raise NotImplementedError(f"{type(self).__name__} does not expose its latent-facing weights")


def truncate_z(z: torch.Tensor, truncation: float, centre: Optional[torch.Tensor]) -> torch.Tensor:
    """z pulled towards ``centre`` (default 0, the prior's mean) by psi < 1: the truncation of z-only generators."""
    if truncation >= 1.0:
        return z
    return z * truncation if centre is None else centre + truncation * (z - centre)


def linear_weight_as_matrix(layer: nn.Module) -> torch.Tensor:
    """The (out, d) matrix of the layer that acts first on a d-dimensional latent.

    ``nn.Linear`` stores (out, in) already. A transposed convolution applied to a latent
    seen as (B, d, 1, 1) stores (in=d, out, k, k): every output position is a linear map
    of the latent, so the matrix is the weight permuted to (out, k, k, d) and flattened.
    A convolution on a (B, d, 1, 1) latent only uses its kernel's centre tap. Scripted
    (TorchScript) layers are recognised by their ``original_name``.
    """
    kind = getattr(layer, "original_name", type(layer).__name__)
    w = layer.weight.detach()
    if kind == "Linear":
        return w.clone()
    if kind == "ConvTranspose2d":
        return w.permute(1, 2, 3, 0).reshape(-1, w.shape[0]).clone()
    if kind == "Conv2d":
        return w[:, :, w.shape[2] // 2, w.shape[3] // 2].clone()
    raise ConfigError(f"latent weights: cannot read a matrix from a {kind}")


def check_finite(images: torch.Tensor, indices, where: str, sample_dims: int = 1) -> None:
    """One :class:`NonFiniteOutput` line naming the latents whose images hold NaN or inf (a broken
    generator drew black frames or wrote NaN into the annotation store, exit 0). ``images``: the first
    ``sample_dims`` dimensions index the samples' rows (an edit's frames are (A, B, ...): ``sample_dims=2``,
    rows along dimension 1); ``indices``: each row's latent index, as the user knows it (seed order, file
    order, latent index)."""
    flat = images.detach().flatten(sample_dims)
    bad = ~torch.isfinite(flat).all(dim=-1)
    if sample_dims == 2:
        bad = bad.any(dim=0)
    if not bool(bad.any()):
        return
    named = [int(i) for i in torch.as_tensor(indices).reshape(-1)[bad.cpu()].tolist()]
    shown = ", ".join(map(str, named[:10])) + (f" and {len(named) - 10} more" if len(named) > 10 else "")
    raise NonFiniteOutput(f"{where}: the generator's output is NaN or inf for latent(s) {shown}; it cannot render "
                          "them (check the generator file, or leave these latents out)")
