"""Tiny generators for tests: a z -> image one (Linear, BatchNorm whose statistics must never move, tanh), and a
class-conditional z/w one behind the FrozenGenerator contract (:class:`TinyConditionalAdapter`)."""

from pathlib import Path
from typing import Optional

import torch
from torch import nn

from latentnav.generators.base import FrozenGenerator


class TinyGenerator(nn.Module):
    def __init__(self, z_dim: int = 8, resolution: int = 8) -> None:
        super().__init__()
        self.resolution = resolution
        self.fc = nn.Linear(z_dim, 3 * resolution * resolution)
        self.norm = nn.BatchNorm1d(3 * resolution * resolution)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.norm(self.fc(z)))
        return x.view(z.shape[0], 3, self.resolution, self.resolution)


def save_tiny(path, seed: int = 0, scripted: bool = True, z_dim: int = 8) -> TinyGenerator:
    torch.manual_seed(seed)
    net = TinyGenerator(z_dim)
    with torch.no_grad():
        net.norm.running_mean.normal_(0, 0.1)
        net.norm.running_var.uniform_(0.5, 1.5)
    net.eval()
    if scripted:
        torch.jit.script(net).save(str(path))
    else:
        torch.save({"state_dict": net.state_dict()}, path)
    return net


class BrokenTinyGenerator(TinyGenerator):
    """A :class:`TinyGenerator` that renders NaN for every latent whose first component is positive (a
    broken checkpoint: some latents render, some do not)."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = super().forward(z)
        return torch.where((z[:, 0] > 0).view(-1, 1, 1, 1), torch.full_like(x, float("nan")), x)


# ------------------------------------------------------------------ a class-conditional one
TINY_CONDITIONAL_FORMAT = "tests.tiny-conditional/1"


class TinyConditionalAdapter(FrozenGenerator):
    """A class-conditional z/w generator for tests (``num_classes`` 3 by default), NVIDIA-like and BigGAN-like at
    once: w = tanh(mapping(z) + embed[c]) and image = tanh(synthesis(w) + colour[c] + 0.1 noise), so the class
    enters both the mapping and the synthesis, and changes the image in either space. One (1, 1, R, R) noise map.

    ``seen``: every call's classes, ``("to_space" | "synthesize", [class ids])``, in order, so a test can see
    which classes reached the generator."""

    latent_spaces = ("z", "w")

    def __init__(self, z_dim: int = 8, w_dim: int = 8, resolution: int = 8, num_classes: int = 3, seed: int = 0,
                 identity: Optional[dict] = None) -> None:
        super().__init__(resolution, z_dim, identity, num_classes=num_classes)
        self.config = {"z_dim": z_dim, "w_dim": w_dim, "resolution": resolution, "num_classes": num_classes}
        g = torch.Generator().manual_seed(seed)
        self.mapping = nn.Linear(z_dim, w_dim)
        self.embed = nn.Embedding(num_classes, w_dim)
        self.synthesis = nn.Linear(w_dim, 3 * resolution * resolution)
        self.colour = nn.Embedding(num_classes, 3)
        with torch.no_grad():
            self.mapping.weight.copy_(torch.randn(w_dim, z_dim, generator=g) / z_dim ** 0.5)
            self.mapping.bias.zero_()
            self.embed.weight.copy_(torch.randn(num_classes, w_dim, generator=g))
            self.synthesis.weight.copy_(torch.randn(3 * resolution * resolution, w_dim, generator=g) / w_dim ** 0.5)
            self.synthesis.bias.zero_()
            # Class c tints the image strongly (+/-0.8 per channel): a class is seen in every image.
            self.colour.weight.copy_(0.8 * torch.sign(torch.randn(num_classes, 3, generator=g))
                                     + 0.05 * torch.arange(num_classes)[:, None])
        self.register_buffer("noise_const", torch.randn(1, 1, resolution, resolution, generator=g))
        self.register_buffer("w_avg", torch.zeros(w_dim))
        self.seen: list[tuple[str, list[int]]] = []
        self.freeze()

    def latent_shape(self, space: str = "z") -> tuple[int, ...]:
        self._check_space(space)
        return (self.z_dim,) if space == "z" else (self.config["w_dim"],)

    def _map(self, z: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.mapping(z) + self.embed(classes))

    def to_space(self, z: torch.Tensor, space: str, classes=None) -> torch.Tensor:
        self.check_latent(z, "z")
        self._check_space(space)
        if space == "z":
            return z
        classes = self.check_classes(classes, z.shape[0])
        self.seen.append(("to_space", classes.tolist()))
        return self._map(z.to(self.device), classes)

    def _render(self, latent, space, classes, noise) -> torch.Tensor:
        w = self._map(latent, classes) if space == "z" else latent
        r = self.resolution
        x = self.synthesis(w).view(-1, 3, r, r) + self.colour(classes)[:, :, None, None]
        return torch.tanh(x + 0.1 * noise)

    def _synthesize(self, latent, space, truncation, noise_mode, truncation_latent, classes=None,
                    truncation_cutoff=None):
        self.seen.append(("synthesize", classes.tolist()))
        if truncation < 1.0:
            centre = truncation_latent if truncation_latent is not None else (
                torch.zeros_like(latent[0]) if space == "z" else self.w_avg)
            latent = centre + truncation * (latent - centre)
        noise = {"const": self.noise_const, "none": torch.zeros_like(self.noise_const)}.get(noise_mode)
        if noise is None:
            noise = torch.randn(latent.shape[0], 1, self.resolution, self.resolution, device=latent.device)
        return self._render(latent, space, classes, noise)

    def noise_maps(self) -> list[torch.Tensor]:
        return [self.noise_const]

    def synthesize_with_noise(self, latent, space, noise, classes=None) -> torch.Tensor:
        self.check_latent(latent, space)
        classes = self.check_classes(classes, latent.shape[0])
        self.seen.append(("synthesize", classes.tolist()))
        return self._render(latent.to(self.device), space, classes, noise[0].to(self.device))

    def latent_weights(self, space: str = "z", layers=None):
        self._check_space(space)
        layer = self.mapping if space == "z" else self.synthesis
        return [("mapping" if space == "z" else "synthesis", layer.weight.detach().clone())]

    def seen_classes(self, kind: str = "synthesize") -> set[int]:
        """Every class id that reached ``kind`` calls."""
        return {c for k, ids in self.seen if k == kind for c in ids}


def save_tiny_conditional(path, seed: int = 0, **config) -> Path:
    """A :class:`TinyConditionalAdapter` as a weights-only file that :func:`tiny_conditional_loader` loads."""
    G = TinyConditionalAdapter(seed=seed, **config)
    state = {k: v for k, v in G.state_dict().items()}
    torch.save({"format": TINY_CONDITIONAL_FORMAT, "config": G.config, "state_dict": state}, path)
    return Path(path)


def tiny_conditional_loader(monkeypatch) -> list:
    """Teach ``load_generator`` (and so every command and module, in this process) the test format of
    :func:`save_tiny_conditional`, as a family loader would be wired in ``generators/loading.py``: recognised by
    its ``format``, identity (source, sha256, the recorded options) as the loader records it; any other file goes
    to the real loader. Returns the list every generator loaded this way is appended to (to read their ``seen``)."""
    from latentnav.generators import loading
    from latentnav.safe_load import sha256_of

    real = loading._load
    loaded: list[TinyConditionalAdapter] = []

    def _load(source, **kw):
        path = loading.resolve_source(source, "generator")
        try:
            blob = torch.load(path, weights_only=True, map_location="cpu")
        except Exception:
            blob = None
        if not (isinstance(blob, dict) and blob.get("format") == TINY_CONDITIONAL_FORMAT):
            return real(source, **kw)
        options = {k: v for k, v in kw.items() if k != "map_location" and v not in (None, False)
                   and not (k == "w_avg_samples" and v == 10000)}
        if options.get("classes") is not None:
            options["classes"] = list(options["classes"])
        identity = {"source": str(path), "sha256": sha256_of(path), "format": "tiny-conditional",
                    **({"options": options} if options else {})}
        G = TinyConditionalAdapter(**blob["config"], identity=identity)
        G.load_state_dict(blob["state_dict"])
        loaded.append(G)
        return G.to(kw.get("map_location") or "cpu")

    monkeypatch.setattr(loading, "_load", _load)
    return loaded
