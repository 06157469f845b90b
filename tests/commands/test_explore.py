"""The explorer in a real (headless) Chromium: move a slider, see the face and the judge's readout
change the expected way, save a strip; and its one-line errors."""

import re
import shutil
import socket

import pytest
import torch

from latentnav.errors import ConfigError

BROWSER, DRIVER = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")


def _directions(tmp_path):
    """Least-squares Smiling and Male directions fitted to the annotator, in two files (two methods)."""
    from latentnav.directions_file import write_directions
    from latentnav.generators import load_generator
    from latentnav.lightning_modules.annotator import load_annotator

    G, own = load_generator("demo"), load_annotator("demo")
    z = G.sample(400, seed=3)
    with torch.no_grad():
        logits = own.logits(G.synthesize(z))
    x = torch.cat([z, torch.ones(len(z), 1)], 1)
    rows = {n: torch.linalg.lstsq(x, logits[:, own.attributes.index(n)][:, None]).solution[:-1, 0]
            for n in ("Smiling", "Male")}
    a = write_directions(tmp_path / "a.npz", torch.stack([rows["Smiling"], rows["Male"]]), ["Smiling", "Male"],
                         "lstsq A", "z", G.identity)
    b = write_directions(tmp_path / "b.npz", rows["Male"][None], ["Male"], "lstsq B", "z", G.identity)
    return a, b


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_explorer_maths_and_errors(tmp_path, capsys):
    from latentnav.commands.explore import Explorer, check_port

    a, b = _directions(tmp_path)
    ex = Explorer([str(a), str(b)], judge="demo_judge")
    _, before = ex.render(0, [0.0, 0.0], seed=5)  # seed 5 does not smile (seed 0 does)
    _, after = ex.render(0, [4.0, 0.0], seed=5)
    assert after["Smiling"] > before["Smiling"] + 0.3
    # keep Male: the Male direction is projected out of the Smiling edit (and only then)
    m = ex.methods[0]
    male = m["unit"][1]
    assert abs(float(ex.edit(m, [4.0, 0.0], []) @ male)) > 0.02
    assert abs(float(ex.edit(m, [4.0, 0.0], ["Male"]) @ male)) < 1e-4
    assert float(ex.edit(m, [4.0, 0.0], ["Male"]).norm()) == pytest.approx(4.0, rel=1e-5)
    paths = ex.save(0, [4.0, 0.0], 2, None, [], str(tmp_path / "saved"), frames=3)
    assert all(p.is_file() for p in paths) and paths[0].suffix == ".png" and paths[1].suffix == ".gif"
    # your own photo: projected, then pickable as a row
    from PIL import Image

    from latentnav.images import to_uint8

    with torch.no_grad():
        face = to_uint8(ex.G.synthesize(ex.G.sample(1, seed=9))[0])
    Image.fromarray(face).save(tmp_path / "me.png")
    assert ex.add_photo(str(tmp_path / "me.png"), steps=30) == 0 and ex.latents.shape == (1, 64)
    picture, _ = ex.render(0, [0.0, 0.0], row=0)
    assert picture.shape == (32, 32, 3)
    # rows are checked against the columns' space and latent shape
    with pytest.raises(ConfigError, match=r"latents: rows of shape \(1, 32\)"):
        ex.add_rows(torch.zeros(2, 1, 32))
    ex.methods[1]["latent_space"] = "w"
    with pytest.raises(ConfigError, match="need every directions file in one latent space; these are in w, z"):
        ex.add_photo(str(tmp_path / "me.png"), steps=1)
    ex.methods[1]["latent_space"] = "z"
    # a comparison's names and signs
    import json

    (tmp_path / "comparison.json").write_text(json.dumps([{"file": str(b), "directions": [
        {"name": "Male", "named": "Young", "sign": -1}]}]))
    named = Explorer([str(a), str(b)], judge="demo_judge", names=str(tmp_path / "comparison.json"))
    assert named.methods[1]["labels"] == ["Male -> Young"] and named.methods[0]["labels"] == ["Smiling", "Male"]
    assert torch.allclose(named.methods[1]["unit"], -ex.methods[1]["unit"])
    # one-line errors: another generator's file, a port in use
    import numpy as np

    np.savez(tmp_path / "other.npz", directions=np.ones((1, 64), np.float32), names=np.array(["x"]),
             method=np.array("x"), latent_space=np.array("z"),
             generator=np.array('{"sha256": "0000000000000000", "source": "elsewhere.pt"}'))
    with pytest.raises(ConfigError, match="made on different generators"):
        Explorer([str(a), str(tmp_path / "other.npz")])
    from latentnav.commands.explore import main

    torch.save({"format": "latentnav-latents/1", "latents": torch.zeros(2, 64), "space": "z",
                "generator": {"sha256": "0000000000000000", "source": "elsewhere.pt"}}, tmp_path / "theirs.pt")
    assert main(["--directions", json.dumps([str(a)]), "--latents", str(tmp_path / "theirs.pt"),
                 "--port", str(_free_port())]) == 2
    assert "theirs.pt: latents projected with generator elsewhere.pt" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(ConfigError, match=f"--port {busy.getsockname()[1]}: cannot listen"):
            check_port("127.0.0.1", busy.getsockname()[1])
        assert main(["--directions", json.dumps([str(a)]), "--port", str(busy.getsockname()[1])]) == 2


@pytest.mark.skipif(BROWSER is None or DRIVER is None,
                    reason="no headless browser: apt-get install chromium chromium-driver (.ci/run does)")
def test_the_app_in_a_headless_browser(tmp_path):
    pytest.importorskip("gradio", reason="the [explore] extra is not installed: pip install 'latentnav[explore]'")
    pytest.importorskip("selenium", reason="selenium is not installed (the [dev] extra has it)")
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    from latentnav.commands.explore import Explorer, build_app

    a, b = _directions(tmp_path)
    ex = Explorer([str(a), str(b)], judge="demo_judge")
    app = build_app(ex, str(tmp_path / "out"))
    app.queue()
    port = _free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    options = webdriver.ChromeOptions()
    options.binary_location = BROWSER
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER), options=options)
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(driver, 60)

        def image_src():
            found = driver.find_elements(By.CSS_SELECTOR, "#image-0 img")
            return found[0].get_attribute("src") if found else None

        def smiling():
            text = driver.find_element(By.ID, "probs-0").text
            match = re.search(r"Smiling (\d\.\d\d)", text)
            return float(match.group(1)) if match else None

        wait.until(lambda d: image_src() and smiling() is not None)
        start = image_src()
        seed = driver.find_element(By.CSS_SELECTOR, "#seed input")
        seed.send_keys(Keys.CONTROL, "a")
        seed.send_keys("5", Keys.ENTER)  # a face that does not smile (seed 0 does)
        wait.until(lambda d: image_src() != start and smiling() is not None and smiling() < 0.5)
        src0, p0 = image_src(), smiling()
        number = driver.find_element(By.CSS_SELECTOR, "#slider-0-0 input[type=number]")
        number.send_keys(Keys.CONTROL, "a")
        number.send_keys("4", Keys.ENTER)
        wait.until(lambda d: image_src() != src0 and smiling() is not None and smiling() != p0)
        assert smiling() > p0 + 0.3  # the readout moves the expected way: the held-out judge sees a smile
        driver.save_screenshot(str(tmp_path / "explorer.png"))
        driver.find_element(By.CSS_SELECTOR, "#save-0").click()
        wait.until(lambda d: "saved" in d.find_element(By.ID, "saved-0").text)
        saved = list((tmp_path / "out").glob("explore_*.png"))
        assert len(saved) == 1 and list((tmp_path / "out").glob("explore_*.gif"))
    finally:
        driver.quit()
        app.close()
