"""Fault suite, issue 22 item 8 (project's inputs): every common image mode is converted with the right
values (16-bit scaled, not clipped to white), each file that cannot be used is one line and the run goes
on without it; ``--strict`` stops at the first such file in one line; nothing readable is one line."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from latentnav.errors import DataFormatError
from latentnav.images import load_square_image

S = 8  # every test image is S x S: loaded at size S, nothing is cropped or resized, the values are exact


def _pixels(t: torch.Tensor) -> np.ndarray:
    """A loaded image (3, S, S) in [-1, 1] back to uint8 (S, S, 3)."""
    return ((t + 1) * 127.5).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()


def _grey(values: np.ndarray) -> np.ndarray:
    return np.repeat(values[..., None], 3, axis=-1).astype(np.uint8)


@pytest.fixture
def folder(tmp_path):
    """One file of each kind, in name order; returns (folder, {name: expected uint8 (S, S, 3) or None})."""
    d = tmp_path / "photos"
    d.mkdir()
    rng = np.random.default_rng(0)
    expected = {}
    # 16-bit grey spanning 0..65535 (Pillow reads it as I;16): 8 bits by round(v * 255 / 65535)
    v16 = np.linspace(0, 65535, S * S).round().astype(np.uint16).reshape(S, S)
    Image.fromarray(v16).save(d / "a_sixteen.png")
    expected["a_sixteen.png"] = _grey(np.round(v16.astype(np.float64) * 255 / 65535))
    # 8-bit grey
    grey = rng.integers(0, 256, (S, S), dtype=np.uint8)
    Image.fromarray(grey, "L").save(d / "b_grey.png")
    expected["b_grey.png"] = _grey(grey)
    # RGBA: composited on black
    rgba = rng.integers(0, 256, (S, S, 4), dtype=np.uint8)
    rgba[0, :, 3], rgba[1, :, 3] = 0, 255  # a transparent row (black), an opaque one (unchanged)
    Image.fromarray(rgba, "RGBA").save(d / "c_rgba.png")
    expected["c_rgba.png"] = np.round(rgba[..., :3].astype(np.float64) * rgba[..., 3:] / 255).astype(np.uint8)
    # a palette image: its colours
    palette = rng.integers(0, 256, (256, 3), dtype=np.uint8)
    index = rng.integers(0, 256, (S, S), dtype=np.uint8)
    p = Image.fromarray(index, "P")
    p.putpalette(palette.flatten().tolist())
    p.save(d / "d_palette.png")
    expected["d_palette.png"] = palette[index]
    # an animated GIF: its first frame
    frames = []
    for k in range(3):
        f = Image.fromarray(((index.astype(int) + 50 * k) % 256).astype(np.uint8), "P")
        f.putpalette(palette.flatten().tolist())
        frames.append(f)
    frames[0].save(d / "e_anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    expected["e_anim.gif"] = palette[index]
    # not images: a text file, a corrupt PNG (a real one cut short), a PNG that is random bytes
    (d / "f_notes.txt").write_text("not a picture\n")
    whole = (d / "b_grey.png").read_bytes()
    (d / "g_cut.png").write_bytes(whole[: len(whole) // 2])
    (d / "h_noise.png").write_bytes(rng.integers(0, 256, 200, dtype=np.uint8).tobytes())
    expected.update({"f_notes.txt": None, "g_cut.png": None, "h_noise.png": None})
    return d, expected


def test_each_mode_loads_with_the_right_values(folder):
    d, expected = folder
    for name, want in expected.items():
        if want is None:
            with pytest.raises(DataFormatError, match=f"{name}: ") as e:
                load_square_image(d / name, S)
            assert "\n" not in str(e.value)
            continue
        got = _pixels(load_square_image(d / name, S))
        np.testing.assert_array_equal(got, want, err_msg=name)
    sixteen = _pixels(load_square_image(d / "a_sixteen.png", S))
    assert sixteen.min() == 0 and sixteen.max() == 255 and len(np.unique(sixteen)) > 50  # not clipped to white
    # a transparent pixel is black whatever colour it hides
    assert (_pixels(load_square_image(d / "c_rgba.png", S))[0] == 0).all()


def _skipped_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("latentnav: skipped ")]


def test_a_folder_projects_the_readable_files_and_reports_each_other_one(folder, tmp_path, capsys):
    from latentnav.commands.project import main

    d, expected = folder
    out = tmp_path / "proj"
    assert main(["--images", json.dumps([str(d)]), "--steps", "2", "--accelerator", "cpu", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    readable = sorted(n for n, v in expected.items() if v is not None)
    bad = sorted(n for n, v in expected.items() if v is None)
    lines = _skipped_lines(captured.err)
    assert len(lines) == len(bad) and "Traceback" not in captured.err, captured.err
    for name in bad:  # one line each, naming the file and why
        (line,) = [line for line in lines if f"{d / name}: " in line]
        assert line.split(f"{d / name}: ", 1)[1].strip()
    assert "not an image file" in next(line for line in lines if "f_notes.txt" in line)
    assert f"projected {len(readable)} image(s)" in captured.out and f"{len(bad)} file(s) skipped" in captured.out
    saved = torch.load(out / "latents.pt", weights_only=True)
    assert [p.rsplit("/", 1)[1] for p in saved["files"]] == readable and saved["latents"].shape[0] == len(readable)
    assert len((out / "projection.tsv").read_text().splitlines()) == 1 + len(readable)


def test_strict_stops_at_the_first_bad_file_in_one_line(folder, tmp_path, capsys):
    from latentnav.commands.project import main
    from latentnav.datamodules.image_files import ImageFilesDataModule

    d, _ = folder
    out = tmp_path / "strict"
    assert main(["--images", json.dumps([str(d)]), "--steps", "2", "--accelerator", "cpu", "--out", str(out),
                 "--strict"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("latentnav: error: ") and "f_notes.txt: not an image file" in err[0]
    assert "--strict" in err[0] and not out.exists()
    (d / "f_notes.txt").unlink()
    with pytest.raises(DataFormatError, match="g_cut.png: unreadable image") as e:
        ImageFilesDataModule([str(d)], 32, strict=True)
    assert "\n" not in str(e.value)
    relaxed = ImageFilesDataModule([str(d)], 32)  # the default: skipped, listed, not raised
    assert [f.name for f in relaxed.files] == ["a_sixteen.png", "b_grey.png", "c_rgba.png", "d_palette.png",
                                               "e_anim.gif"]
    assert [p.name for p, _ in relaxed.skipped] == ["g_cut.png", "h_noise.png"]


def test_nothing_readable_is_one_line(folder, tmp_path, capsys):
    from latentnav.commands.project import main

    d, expected = folder
    for name, want in expected.items():
        if want is not None:
            (d / name).unlink()
    assert main(["--images", json.dumps([str(d)]), "--steps", "2", "--accelerator", "cpu",
                 "--out", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no readable image; 3 file(s) skipped" in err[0], err
