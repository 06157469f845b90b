"""Style space S through the commands on a small StyleGAN2: GANSpace in S writes a directions file that edit,
compare and the explorer take; SeFa refuses S in one line."""

import numpy as np
import torch
from PIL import Image

from latentnav.directions_file import read_directions
from latentnav.generators import load_generator
from tests.generators.test_stylegan2 import small_port_checkpoint


def test_an_s_directions_file_edits_compares_and_explores(tmp_path, capsys):
    from latentnav.commands.compare import compare
    from latentnav.commands.edit import main as edit_main
    from latentnav.commands.explore import Explorer
    from latentnav.commands.ganspace import main as ganspace_main
    from latentnav.commands.measuring import make_trainer
    from latentnav.commands.sefa import main as sefa_main

    ckpt = str(small_port_checkpoint(tmp_path)[0])
    G = load_generator(ckpt)
    out = tmp_path / "s.npz"
    assert ganspace_main(["--generator", ckpt, "--space", "s", "--num_directions", "3", "--num_samples", "600",
                          "--batch_size", "200", "--out", str(out), "--accelerator", "cpu"]) == 0
    found = read_directions(out)
    assert found["latent_space"] == "s" and found["directions"].shape == (3, G.latent_shape("s")[0])
    # the first axis is the top principal axis of the style vectors the pass drew
    s = G.to_space(G.latents_at(range(600), seed=0), "s").double()
    top = torch.linalg.eigh(torch.cov(s.T)).eigenvectors[:, -1]
    assert abs(float(found["directions"][0].double() @ top)) > 0.99

    assert edit_main([str(out), "--attributes", "pc01", "--seeds", "0", "1", "--steps", "3", "--alpha", "-3", "3",
                      "--generator", ckpt, "--out", str(tmp_path / "edits"), "--accelerator", "cpu"]) == 0
    strip = np.asarray(Image.open(tmp_path / "edits" / "pc01.png").convert("RGB")).astype(int)
    assert strip.std() > 5  # rendered faces, not a blank strip

    result = compare([str(out)], generator=ckpt, num_samples=8, batch_size=8, replicates=0, trainer=make_trainer("cpu"))
    assert result["results"][0]["space"] == "s" and len(result["results"][0]["target"]) == 3

    explorer = Explorer([str(out)], generator=ckpt)
    still, _ = explorer.render(0, [0.0, 0.0, 0.0])
    moved, _ = explorer.render(0, [3.0, 0.0, 0.0])
    assert np.abs(still.astype(int) - moved.astype(int)).max() > 8

    # a photo projected into S (the mean style start, its noise maps) edits along the same file
    from latentnav.commands.project import main as project_main
    from latentnav.images import to_uint8

    photos = tmp_path / "photos"
    photos.mkdir()
    with torch.no_grad():
        Image.fromarray(to_uint8(G.synthesize(G.sample(1, seed=9)))[0]).save(photos / "a.png")
    assert project_main(["--images", str(photos), "--generator", ckpt, "--space", "s", "--steps", "20",
                         "--out", str(tmp_path / "proj"), "--accelerator", "cpu"]) == 0
    assert edit_main([str(out), "--latents", str(tmp_path / "proj" / "latents.pt"), "--attributes", "pc01",
                      "--steps", "3", "--generator", ckpt, "--out", str(tmp_path / "edits_s"), "--accelerator", "cpu"]) == 0
    assert (tmp_path / "edits_s" / "pc01.png").is_file()

    assert sefa_main(["--generator", ckpt, "--space", "s", "--out", str(tmp_path / "sefa.npz")]) == 2
    assert "style space s has no latent-facing matrix" in capsys.readouterr().err
