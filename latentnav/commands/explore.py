"""An edit explorer in the browser: sliders over directions files, methods side by side on one face.

    pip install 'latentnav[explore]'
    latentnav explore runs/directions/linear_map_lambda1.npz runs/directions/sefa.npz --judge demo_judge

A local Gradio app (bound to 127.0.0.1 unless ``--host`` says otherwise; nothing is downloaded: the
app's front end ships inside the gradio package). Pick a seed, a row of a latents file
(``--latents``, e.g. a projection's ``latents.pt``) or your own image (``--images``: projected once at
start; or uploaded in the app, projected then); every directions file is a column with one slider per direction (named as the file names
them, or as a ``latentnav compare`` output names them with ``--names comparison.json``), the edited
face, and the judge's probabilities of every attribute under it. "keep" projects the kept
attributes' directions out of each edit (InterFaceGAN's conditional edit); "guided" follows the
summed edit in steps, holding the kept attributes with the annotator's gradients. "save strip / GIF"
writes the current edit, from no edit to the sliders' values, as the edit command would.
Rendering runs on the generator's device (``--device``).

A class-conditional generator (``--classes 239 207``; default: the classes the files recorded, else all): a
"class" menu picks the class the face is rendered in (directions are shared across classes); "auto" renders a
seed in the first chosen class (``classes_at([0])``) and row k of a latents file in ``classes[k % n]``, the class
``latentnav project`` projected image k in (the classes the latents file records; an uploaded photo: the menu's
class, else the first).

Only this machine can reach it by default. A ``--host`` other than a loopback address (127.0.0.0/8,
::1, ``localhost``) is refused unless ``--allow_remote`` is given; then a random access token
(``secrets.token_urlsafe``) is printed once and every request needs it (Gradio's login page: the token
is the password, any user name). Saved files land only inside ``--out``, under sanitised names.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import socket
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from latentnav.commands.grammar import Command
from latentnav.errors import ConfigError

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # nothing leaves this machine (read when gradio loads)

SLIDER_RANGE = 8.0  # each slider moves its unit direction by -8 .. 8


class Explorer:
    """The maths behind the app, testable without a browser: one face, several methods, their sliders."""

    def __init__(self, files: list[str], generator: Optional[str] = None, annotator: str = "demo",
                 judge: Optional[str] = None, latents: Optional[torch.Tensor] = None, device: str = "cpu",
                 names: Optional[str] = None, generator_options: Optional[dict] = None,
                 classes: Optional[list[int]] = None) -> None:
        from latentnav.directions_file import read_directions
        from latentnav.generators import load_generator_like
        from latentnav.commands.measuring import merge_classes
        from latentnav.lightning_modules.annotator import load_annotator

        if not files:
            raise ConfigError("directions: give at least one directions.npz")
        self.methods = [dict(read_directions(f), file=str(f)) for f in files]
        shas = {m["generator"].get("sha256") for m in self.methods}
        if len(shas) > 1:
            raise ConfigError("directions: the files were made on different generators: " + ", ".join(
                f"{m['file']} ({str(m['generator'].get('sha256'))[:12]})" for m in self.methods))
        self.device = torch.device(device)
        # sha256 compared before loading; code-choosing load options only from the user, never from the files.
        self.G = load_generator_like(self.methods[0]["generator"], source=generator,
                                     options=merge_classes(generator_options, classes), map_location=self.device,
                                     what=self.methods[0]["file"])
        self.G = self.G.to(self.device)
        self.annotator = load_annotator(annotator, map_location=self.device).to(self.device)
        self.judge = load_annotator(judge, map_location=self.device).to(self.device) if judge else self.annotator
        self.latents: Optional[torch.Tensor] = None  # pickable rows (N, ...) on the CPU
        self.row_noise: list[Optional[list[torch.Tensor]]] = []  # a row's own noise maps (a projection's), or None
        self.row_classes: list[Optional[int]] = []  # a conditional generator's class of each row, else None
        renamed = _names_from_comparison(names) if names else {}
        for m in self.methods:
            space = m["latent_space"]
            if m["directions"].shape[1] != int(np.prod(self.G.latent_shape(space))):
                raise ConfigError(f"{m['file']}: directions have size {m['directions'].shape[1]}, the generator's "
                                  f"{space} latents have {int(np.prod(self.G.latent_shape(space)))}")
            unit = torch.nn.functional.normalize(m["directions"].float(), dim=1)
            signs, labels = torch.ones(len(unit)), list(m["names"])
            for i, n in enumerate(m["names"]):  # a comparison's names and signs, where it named this file
                key = (str(Path(m["file"]).resolve()), i)
                if key in renamed:
                    labels[i], signs[i] = renamed[key]
            m["unit"] = (unit * signs[:, None]).to(self.device)
            m["labels"] = labels
        self.keepable = sorted({n for m in self.methods for n in m["names"] if n in self.annotator.attributes})
        if latents is not None:
            self.add_rows(latents)

    def row_space(self) -> str:
        """The one latent space every column edits in: rows of latents are shown in every column."""
        spaces = sorted({m["latent_space"] for m in self.methods})
        if len(spaces) > 1:
            raise ConfigError("latent rows (--latents, --images, a photo) need every directions file in one latent "
                              f"space; these are in {', '.join(spaces)}")
        return spaces[0]

    def add_rows(self, latents: torch.Tensor, noise: Optional[list[torch.Tensor]] = None,
                 classes: Optional[torch.Tensor] = None) -> int:
        """Append pickable rows: ``latents`` (N, *latent_shape) in :meth:`row_space`, and optionally their
        per-layer noise maps ((N, 1, r, r) each, a projection's), which their faces are then rendered with.
        ``classes`` (N,): a conditional generator's class of each row (default: row k of the file in
        ``classes_at([k])``, the class a projection gave its image k). Returns the first new row."""
        shape = tuple(self.G.latent_shape(self.row_space()))
        latents = torch.as_tensor(latents).detach().float().cpu()
        if tuple(latents.shape[1:]) != shape:
            raise ConfigError(f"latents: rows of shape {tuple(latents.shape[1:])}, the directions' "
                              f"{self.row_space()} space has {shape}")
        first = 0 if self.latents is None else len(self.latents)
        self.latents = latents if self.latents is None else torch.cat([self.latents, latents])
        self.row_noise += [[n[i:i + 1].float().cpu() for n in noise] if noise else None for i in range(len(latents))]
        if classes is None:
            classes = self.G.classes_at(range(len(latents)))
        self.row_classes += [None] * len(latents) if classes is None else [int(c) for c in classes.reshape(-1)]
        return first

    def classes_for(self, row: Optional[int], class_id: Optional[int] = None) -> Optional[torch.Tensor]:
        """The (1,) class the face is rendered in (None: unconditional): ``class_id`` when given, else the row's,
        else (a seed) the first chosen class."""
        if not self.G.conditional:
            return None
        if class_id is not None:
            return self.G.check_classes(torch.tensor([int(class_id)]), 1)  # an id out of range: one line
        if self.latents is not None and row is not None and 0 <= row < len(self.row_classes):
            return torch.tensor([self.row_classes[row]], device=self.G.device)
        return self.G.classes_at([0])  # a seed (a row out of range is refused by latent())

    def latent(self, seed: int, row: Optional[int], space: str, classes: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.latents is not None and row is not None:
            if not 0 <= row < len(self.latents):
                raise ConfigError(f"latent row {row}: the latents file has rows 0..{len(self.latents) - 1}")
            return self.latents[row:row + 1].to(self.device)
        return self.G.sample(1, seed=int(seed), space=space, classes=classes).to(self.device)

    def edit(self, m: dict, amounts: list[float], keep: list[str]) -> torch.Tensor:
        """The summed edit (d,) of method ``m`` for slider values ``amounts``, kept attributes projected out."""
        from latentnav.lightning_modules.interfacegan import conditional_direction

        d = torch.zeros(m["unit"].shape[1], device=self.device)
        kept = [m["names"].index(k) for k in keep if k in m["names"]]
        for i, a in enumerate(amounts):
            if a:
                v = m["unit"][i] if not kept or i in kept else \
                    conditional_direction(m["unit"].cpu(), i, kept).to(self.device) * m["unit"][i].norm()
                d = d + float(a) * v
        return d

    @torch.no_grad()
    def render(self, method: int, amounts: list[float], seed: int = 0, row: Optional[int] = None,
               keep: Optional[list[str]] = None, guided: bool = False,
               class_id: Optional[int] = None) -> tuple[np.ndarray, dict[str, float]]:
        """(uint8 (R, R, 3) image, the judge's {attribute: probability}) of one method's edit of the face
        (``class_id``: a conditional generator's class to render it in, see :meth:`classes_for`)."""
        from latentnav.images import to_uint8

        m = self.methods[method]
        space = m["latent_space"]
        classes = self.classes_for(row, class_id)
        z = self.latent(seed, row, space, classes)
        d = self.edit(m, amounts, keep or [])
        if guided and keep and float(d.norm()) > 0:
            from latentnav.lightning_modules.edit_metrics import guided_step

            held = [self.annotator.attributes.index(k) for k in keep]
            steps = max(1, int(np.ceil(float(d.norm()) / 0.5)))
            unit = d / d.norm()
            for _ in range(steps):
                z = guided_step(self.G, self.annotator, z, unit, held, float(d.norm()) / steps, space,
                                classes=classes)
        else:
            z = z + d.view_as(z[0])
        noise = self.row_noise[row] if row is not None and self.latents is not None and not guided else None
        image = (self.G.synthesize_with_noise(z, space, noise, classes=classes) if noise
                 else self.G.synthesize(z, space, classes=classes))
        probs = self.judge(image)[0].float().cpu().tolist()
        return to_uint8(image[0]), dict(zip(self.judge.attributes, probs))

    def add_photo(self, path: str, steps: int = 200, class_id: Optional[int] = None) -> int:
        """Project the image file ``path`` into the columns' space (``Projection``, on the generator's
        device; StyleGAN2's noise maps too, as ``latentnav project`` does) and append it to the pickable
        rows; returns its row. A conditional generator projects it in ``class_id`` (default the first chosen)."""
        from latentnav.images import load_square_image
        from latentnav.lightning_modules.projection import Projection

        space = self.row_space()
        target = load_square_image(path, self.G.resolution)[None]
        classes = self.classes_for(None, class_id)
        latent, noise = Projection(self.G, space, steps=steps).to(self.device).project(target, rows=torch.tensor([0]),
                                                                                        classes=classes)
        return self.add_rows(latent, noise, classes.cpu() if classes is not None else None)

    def save(self, method: int, amounts: list[float], seed: int, row: Optional[int], keep: list[str], out: str,
             frames: int = 9, scale: int = 3, name: Optional[str] = None,
             class_id: Optional[int] = None) -> list[Path]:
        """A strip and a GIF of the current edit, from no edit to the sliders' values (``frames`` steps):
        ``<out>/<name>.png`` and ``.gif``, the name made a safe file stem (``latentnav.names.safe_stem``;
        default, also for an empty name, ``explore_<file>_seed<s>``) and both paths checked to lie inside
        ``out`` (:func:`inside_folder`)."""
        from latentnav.callbacks.edit_writer import write_edit

        from latentnav.names import safe_stem

        if name is None or not str(name).strip():
            name = f"explore_{Path(self.methods[method]['file']).stem}_seed{seed if row is None else f'row{row}'}"
        tag = safe_stem(name, "save: name")
        for suffix in (".png", ".gif"):  # before any work: nothing is rendered for a refused name
            inside_folder(out, tag + suffix)
        images = [self.render(method, [a * t for a in amounts], seed, row, keep, class_id=class_id)[0]
                  for t in np.linspace(0.0, 1.0, frames)]
        Path(out).mkdir(parents=True, exist_ok=True)
        return write_edit(np.stack(images)[:, None], list(np.linspace(0.0, 1.0, frames)), Path(out), tag, scale)


def _trainer_on(device: torch.device):
    """One process on ``device`` (the explorer's ``--device``) for the start-up projection."""
    from latentnav.commands.measuring import make_trainer

    if device.type == "cuda":
        return make_trainer("gpu", [device.index or 0], inference_mode=False)
    return make_trainer(device.type, 1, inference_mode=False)


def inside_folder(folder: str | os.PathLike, name: str) -> Path:
    """``folder / name`` once checked to resolve (symbolic links followed) inside ``folder``; anything
    else is one ``ConfigError`` line."""
    root = Path(folder).resolve()
    target = (root / name).resolve()
    if target.parent != root and root not in target.parents:
        raise ConfigError(f"save: {name!r} resolves to {target}, outside the output folder {root}; not written")
    return root / name


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (127.0.0.0/8, ::1, an IPv4-mapped 127.x) or ``localhost``."""
    if host.strip().lower().rstrip(".") in ("localhost", "localhost.localdomain"):
        return True
    try:
        address = ipaddress.ip_address(host.strip().strip("[]"))
    except ValueError:
        return False  # a host name: it may name any interface
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def check_host(host: str, allow_remote: bool) -> None:
    """A non-loopback ``--host`` without ``--allow_remote`` is one line."""
    if not is_loopback(host) and not allow_remote:
        raise ConfigError(f"--host {host!r}: not a loopback address (127.0.0.1, ::1, localhost), so other machines "
                          "could use the explorer; pass --allow_remote to serve it there behind an access token")


def _names_from_comparison(path: str) -> dict:
    """{(file, direction index): (name, sign)} from a ``latentnav compare`` comparison.json."""
    from latentnav.errors import DataFormatError

    try:
        table = json.loads(Path(path).read_text())
        return {(str(Path(e["file"]).resolve()), i): (f"{d['name']} -> {d['named']}", float(d.get("sign", 1)))
                for e in table for i, d in enumerate(e["directions"])}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataFormatError(f"{path}: not a comparison.json ({type(e).__name__}: {e})") from None


def check_port(host: str, port: int) -> None:
    """A port already in use is one line (before Gradio would pick another one silently or fail)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise ConfigError(f"--port {port}: cannot listen on {host}:{port} ({e.strerror}); choose another port") \
                from None


def launch(app, host: str, port: int, token: Optional[str] = None) -> None:
    """Serve ``app`` (queued, in the background) on ``host:port``; with ``token``, Gradio's login is
    required for every route (page, config, queue, uploads, files): any user name, ``token`` the password."""
    def password_is_token(username: str, password: str) -> bool:
        return secrets.compare_digest(str(password).encode(), token.encode())

    app.queue()
    app.launch(server_name=host, server_port=port, share=False, inbrowser=False, prevent_thread_lock=True,
               show_error=True, quiet=True, ssr_mode=False, auth=password_is_token if token else None,
               auth_message="latentnav explorer: the access token printed at start is the password")


def build_app(explorer: Explorer, out: str = "runs/explore", display: int = 256):
    """The Gradio Blocks app. Element ids (for tests and scripts): ``seed``, ``keep``, ``guided``,
    ``image-<m>``, ``probs-<m>``, ``slider-<m>-<i>``, ``save-<m>``, ``saved-<m>``. Faces are shown about
    ``display`` pixels wide (nearest-neighbour upscaling: the generator's own pixels)."""
    try:
        import gradio as gr
    except ImportError:
        raise ConfigError("latentnav explore needs gradio: pip install 'latentnav[explore]'") from None

    def readout(probs: dict[str, float]) -> str:
        return " · ".join(f"{k} {v:.2f}" for k, v in probs.items())

    with gr.Blocks(title="latentnav explorer", analytics_enabled=False) as app:
        gr.Markdown(f"### latentnav explorer: generator {Path(str(explorer.G.identity.get('source'))).name}, "
                    f"probabilities by {Path(explorer.judge.source).name}")
        with gr.Row():
            seed = gr.Number(value=0, precision=0, label="seed", elem_id="seed")
            row = gr.Number(value=0 if explorer.latents is not None else None, precision=0,
                            label="latent row (--latents / --images)", visible=explorer.latents is not None,
                            elem_id="row")
            keep = gr.CheckboxGroup(explorer.keepable, label="keep (project out)", elem_id="keep")
            guided = gr.Checkbox(False, label="guided (hold kept attributes with the annotator's gradients)",
                                 elem_id="guided")
            upload = gr.Image(type="filepath", label="your photo (projected, then its row is picked)",
                              elem_id="upload", height=128)
            klass = gr.Dropdown(["auto"] + [str(c) for c in explorer.G.class_choice], value="auto",
                                label="class (auto: the row's, a seed's the first chosen)",
                                visible=explorer.G.conditional, elem_id="class")
        columns = []
        with gr.Row():
            for mi, m in enumerate(explorer.methods):
                with gr.Column():
                    gr.Markdown(f"**{m['method']}** ({Path(m['file']).name}, {m['latent_space']})")
                    image = gr.Image(type="numpy", label="edited", elem_id=f"image-{mi}", height=256)
                    probs = gr.Markdown(elem_id=f"probs-{mi}")
                    sliders = [gr.Slider(-SLIDER_RANGE, SLIDER_RANGE, value=0.0, step=0.25, label=label,
                                         elem_id=f"slider-{mi}-{i}") for i, label in enumerate(m["labels"])]
                    save = gr.Button("save strip / GIF", elem_id=f"save-{mi}")
                    saved = gr.Markdown(elem_id=f"saved-{mi}")
                columns.append((mi, image, probs, sliders, save, saved))

        def row_of(value) -> Optional[int]:
            return None if explorer.latents is None or value is None else int(value)

        def class_of(value) -> Optional[int]:
            return None if value in (None, "", "auto") else int(value)

        for mi, image, probs, sliders, save, saved in columns:
            def update(seed_value, row_value, keep_value, guided_value, class_value, *amounts, mi=mi):
                picture, p = explorer.render(mi, list(amounts), int(seed_value or 0), row_of(row_value),
                                             list(keep_value or []), bool(guided_value), class_of(class_value))
                scale = max(1, display // picture.shape[0])
                return picture.repeat(scale, axis=0).repeat(scale, axis=1), readout(p)

            def write(seed_value, row_value, keep_value, class_value, *amounts, mi=mi):
                paths = explorer.save(mi, list(amounts), int(seed_value or 0), row_of(row_value),
                                      list(keep_value or []), out, class_id=class_of(class_value))
                return "saved " + " and ".join(str(p) for p in paths)

            inputs = [seed, row, keep, guided, klass, *sliders]
            if mi == 0:
                def add_photo(path, class_value):
                    if not path:
                        return gr.update()
                    index = explorer.add_photo(path, class_id=class_of(class_value))
                    return gr.update(value=index, visible=True)

                upload.upload(add_photo, [upload, klass], [row])
            for control in (seed, row, keep, guided, klass, *sliders):
                control.change(update, inputs, [image, probs], show_progress="hidden")
            app.load(update, inputs, [image, probs])
            save.click(write, [seed, row, keep, klass, *sliders], saved)
    return app


def main_function(directions: list[str], generator: Optional[str] = None, generator_options: Optional[dict] = None,
                  annotator: str = "demo",
                  judge: Optional[str] = "demo_judge", latents: Optional[str] = None,
                  images: Optional[list[str]] = None, names: Optional[str] = None, host: str = "127.0.0.1",
                  port: int = 7860, device: str = "cpu", out: str = "runs/explore", open_for: float = 0,
                  allow_remote: bool = False, classes: Optional[list[int]] = None) -> None:
    """Start the explorer.

    Args:
        directions: directions.npz files, all made on one generator (one column each).
        generator: generator source (default: the one recorded in the files; its sha256 must match).
        generator_options: load_generator keyword arguments (class_path, init_args, trust_pickle, ...): never
            read from the directions files, which only record them.
        annotator: the classifier that steers guided edits and whose attributes can be kept.
        judge: the classifier whose probabilities are shown under each face (a held-out one by default).
        latents: a latents file (a projection's ``latents.pt``) whose rows can be picked.
        images: your own images, projected once at start (into the files' one latent space, with StyleGAN2's noise maps).
        names: a ``latentnav compare`` comparison.json naming the directions.
        host, port: where to listen (127.0.0.1: this machine only).
        device: where the generator renders (cpu, cuda, ...).
        out: folder for saved strips and GIFs.
        open_for: seconds to serve before exiting (0: until interrupted).
        allow_remote: allow a ``host`` other than a loopback address (0.0.0.0, a LAN address); every
            request then needs the access token printed at start (the login page's password).
        classes: a class-conditional generator's class ids (the load option ``classes``; default: the files',
            else all): the app's class menu offers them.
    """
    check_host(host, allow_remote)
    if port < 1 or port > 65535:
        raise ConfigError(f"--port: expected 1..65535, got {port}")
    check_port(host, port)
    explorer = Explorer(list(directions), generator, annotator, judge, None, device, names,
                        generator_options=generator_options, classes=classes)
    if latents or images:
        from latentnav.directions_file import read_latents

        space = explorer.row_space()
    if latents:  # its generator and space must be the directions'
        from latentnav.commands.edit import latents_file_classes

        found = read_latents(latents, explorer.G.identity, space)
        explorer.add_rows(found["latents"], found["noise"],
                          latents_file_classes(explorer.G, found["generator"], len(found["latents"]), classes))
    if images:  # appended after --latents' rows
        from latentnav.commands.project import project_images

        folder = Path(out) / "projection"
        project_images(images, space=space, G=explorer.G, out=str(folder), trainer=_trainer_on(explorer.device))
        explorer.G.to(explorer.device)  # the Trainer's teardown moved its module, and the shared G in it, to the CPU
        found = read_latents(folder / "latents.pt", explorer.G.identity, space)
        explorer.add_rows(found["latents"], found["noise"])
    app = build_app(explorer, out)
    token = None if is_loopback(host) else secrets.token_urlsafe(24)
    launch(app, host, port, token)
    print(f"latentnav: explorer on http://{host}:{port} (Ctrl-C to stop)", flush=True)
    if token:
        print(f"latentnav: access token (the login page's password, any user name; shown only now): {token}",
              flush=True)
    try:
        deadline = time.monotonic() + open_for if open_for > 0 else None
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        app.close()


COMMAND = Command(main_function, prog="latentnav explore")


main = COMMAND.main


if __name__ == "__main__":
    sys.exit(main())
