"""InterFaceGAN's own PGGAN / StyleGAN files, read as genforce's layout (same networks, older names).

InterFaceGAN (commit 8da3fc0) publishes ``pggan_celebahq.pth``, ``stylegan_celebahq.pth`` and
``stylegan_ffhq.pth``: plain state dicts (``torch.save(model.state_dict())``) of its own model classes
(``models/pggan_generator_model.py``, ``models/stylegan_generator_model.py``), converted from the same
official TensorFlow pickles as genforce's. They hold the same tensors under other names, the weight
scale kept apart from the convolution::

    InterFaceGAN                                        genforce
    layer{i}.conv.weight / layer{i}.wscale.bias         layer{i}.weight / .bias            (PGGAN)
    layer{i}.weight  (k, k, in, out), fused upsampling  layer{i}.weight (in, out, k, k)    (PGGAN)
    output{b}.conv.weight / output{b}.wscale.bias       output{b}.weight / .bias           (PGGAN)
    mapping.dense{i}.linear.weight / .wscale.bias       mapping.dense{i}.weight / .bias
    truncation.truncation  (1, n, 1) psi per w+ row     (none: psi is a call's argument)
    synthesis.layer0.first_layer                        synthesis.layer0.const
    synthesis.layer{i}.conv.weight                      synthesis.layer{i}.weight
    synthesis.layer{i}.weight  (k, k, in, out), fused   synthesis.layer{i}.weight (out, in, k, k)
    synthesis.layer{i}.epilogue.bias                    synthesis.layer{i}.bias
    synthesis.layer{i}.epilogue.apply_noise.*           synthesis.layer{i}.apply_noise.*
    synthesis.layer{i}.epilogue.style_mod.dense.linear.weight / .wscale.bias
                                                        synthesis.layer{i}.style.weight / .bias
    synthesis.output{b}.conv.weight / .bias             synthesis.output{b}.weight / .bias

The arithmetic is genforce's (same scales, gains, blur, noise, instance norm), so the translated state dict
runs on genforce's ports. Two things differ in how InterFaceGAN runs them: its StyleGAN wrapper always
truncates z and w inputs (psi 0.7 on the first 8 w+ rows, its ``model_settings``; the file's
``truncation.truncation`` buffer is replaced by those settings on load): pass ``truncation=0.7,
truncation_cutoff=8`` to reproduce its images; and its level-of-detail switch does not blend
(a fractional ``lod`` is refused; published files have 0).
"""

from __future__ import annotations

import re

import torch

from latentnav.errors import DataFormatError


def is_interfacegan_pggan(state: dict) -> bool:
    return isinstance(state, dict) and "layer0.conv.weight" in state and "output0.conv.weight" in state \
        and "layer0.wscale.bias" in state


def is_interfacegan_stylegan(state: dict) -> bool:
    return isinstance(state, dict) and "synthesis.layer0.first_layer" in state and "mapping.dense0.linear.weight" in state


def interfacegan_family(state) -> str | None:
    if is_interfacegan_pggan(state):
        return "pggan"
    if is_interfacegan_stylegan(state):
        return "stylegan"
    return None


_PGGAN = [
    (re.compile(r"^(layer|output)(\d+)\.conv\.weight$"), r"\1\2.weight"),
    (re.compile(r"^(layer|output)(\d+)\.wscale\.bias$"), r"\1\2.bias"),
]
_STYLEGAN = [
    (re.compile(r"^mapping\.dense(\d+)\.linear\.weight$"), r"mapping.dense\1.weight"),
    (re.compile(r"^mapping\.dense(\d+)\.wscale\.bias$"), r"mapping.dense\1.bias"),
    (re.compile(r"^synthesis\.layer0\.first_layer$"), r"synthesis.layer0.const"),
    (re.compile(r"^synthesis\.(layer|output)(\d+)\.conv\.weight$"), r"synthesis.\1\2.weight"),
    (re.compile(r"^synthesis\.layer(\d+)\.epilogue\.bias$"), r"synthesis.layer\1.bias"),
    (re.compile(r"^synthesis\.layer(\d+)\.epilogue\.apply_noise\.(weight|noise)$"), r"synthesis.layer\1.apply_noise.\2"),
    (re.compile(r"^synthesis\.layer(\d+)\.epilogue\.style_mod\.dense\.linear\.weight$"), r"synthesis.layer\1.style.weight"),
    (re.compile(r"^synthesis\.layer(\d+)\.epilogue\.style_mod\.dense\.wscale\.bias$"), r"synthesis.layer\1.style.bias"),
]
_FUSED_PGGAN = re.compile(r"^layer(\d+)\.weight$")
_FUSED_STYLEGAN = re.compile(r"^synthesis\.layer(\d+)\.weight$")
_SAME = {"lod", "truncation.w_avg", "synthesis.lod"}
_SAME_PATTERN = re.compile(r"^(synthesis\.output\d+\.bias|synthesis\.layer\d+\.blur\.kernel)$")


def interfacegan_to_genforce(state: dict, family: str, source: str) -> tuple[dict, dict]:
    """(genforce state dict, notes) of an InterFaceGAN ``family`` ("pggan" / "stylegan") state dict. The
    notes say which layers upsample fused (``fused_layers``: their weights are stored apart, so the file
    tells) and what InterFaceGAN's own truncation buffer held. An unknown key is one line."""
    rules = _PGGAN if family == "pggan" else _STYLEGAN
    fused = _FUSED_PGGAN if family == "pggan" else _FUSED_STYLEGAN
    out, notes = {}, {"layout": "InterFaceGAN"}
    for key, value in state.items():
        if key == "truncation.truncation":
            coefs = value.reshape(-1)
            rows = int((coefs != 1).sum())
            notes["interfacegan_truncation"] = (f"psi {float(coefs[0]):.3g} on the first {rows} rows" if rows
                                                else "none")
            continue
        if key in _SAME or _SAME_PATTERN.match(key):
            out[key] = value
            continue
        m = fused.match(key)
        if m:  # fused upsampling kernel stored (k, k, in, out)
            if value.ndim != 4:
                raise DataFormatError(f"{source}: {key} has shape {tuple(value.shape)}, expected (k, k, in, out)")
            out[key] = value.permute(2, 3, 0, 1) if family == "pggan" else value.permute(3, 2, 0, 1)
            notes.setdefault("fused_layers", []).append(int(m.group(1)))
            continue
        for pattern, target in rules:
            if pattern.match(key):
                out[pattern.sub(target, key)] = value
                break
        else:
            raise DataFormatError(f"{source}: {key} is not a tensor of InterFaceGAN's {family} layout")
    if "lod" in out:
        out["lod"] = out["lod"].detach().reshape(())
    if "synthesis.lod" in out:
        out["synthesis.lod"] = out["synthesis.lod"].detach().reshape(())
    lod = out.get("lod", out.get("synthesis.lod"))
    if lod is not None and float(lod) != int(float(lod)):
        raise DataFormatError(f"{source}: level of detail {float(lod)}: InterFaceGAN's code does not blend "
                              "between resolutions; only whole levels load")
    return out, notes


def as_tensors(state: dict) -> bool:
    return isinstance(state, dict) and bool(state) and all(isinstance(v, torch.Tensor) for v in state.values())
