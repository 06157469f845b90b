"""One command-line grammar: every subcommand parses through jsonargparse, takes ``--config``, spells
each option one way, and takes a list option as plain words."""

import json

import pytest

from latentnav.commands.cli import SUBCOMMANDS, command
from latentnav.commands.grammar import normalise


def _options(parser) -> dict[str, list[str]]:
    """{where: option strings} of a jsonargparse parser and its sub-subcommands."""
    found = {"": [o for a in parser._actions for o in a.option_strings]}
    subs = getattr(parser, "_subcommands_action", None)
    for name, sub in (subs.choices.items() if subs is not None else []):
        found.update({f"{name} {k}".strip(): v for k, v in _options(sub).items()})
    return found


def every_option() -> dict[str, list[str]]:
    """{"edit", "generator quality", ...: option strings} of every latentnav subcommand, and LightningCLI's."""
    from jsonargparse import capture_parser

    from latentnav.commands.cli import LatentNavCLI

    found = {}
    for name in SUBCOMMANDS:
        found.update({f"{name} {k}".strip(): v for k, v in _options(command(name).parser()).items()})
    fit = capture_parser(lambda: LatentNavCLI(args=["fit"]))
    found.update({f"lightning {k}".strip(): v for k, v in _options(fit).items()})
    return found


def two_spellings(options: dict[str, list[str]]) -> list[str]:
    """Options spelt two ways anywhere (``--batch-size`` beside ``--batch_size``), and hyphenated long
    options (the project spells with underscores)."""
    seen: dict[str, set[str]] = {}
    for where, strings in options.items():
        for o in strings:
            if o.startswith("--"):
                seen.setdefault(o[2:].replace("-", "_").rstrip("+"), set()).add(o.rstrip("+"))
    found = [f"{key}: {' / '.join(sorted(s))}" for key, s in seen.items() if len(s) > 1]
    found += [f"{where}: {o}" for where, strings in options.items() for o in strings
              if o.startswith("--") and "-" in o[2:].split(".")[-1]]
    return sorted(set(found))


@pytest.fixture(scope="module")
def options():
    return every_option()


def test_every_subcommand_takes_config_and_spells_each_option_once(options):
    assert set(SUBCOMMANDS) <= {k.split()[0] for k in options}
    for where, strings in options.items():
        if where in ("generator", "classifier", "lightning"):  # the parents of sub-subcommands
            continue
        assert "--config" in strings, where
    assert not two_spellings(options)
    shared = {"--batch_size", "--num_nodes", "--generator_options", "--devices", "--precision"}
    assert all(o in options["generator quality"] for o in shared)
    assert {"--batch_size", "--num_nodes", "--crop_size"} <= set(options["edit"]) and "--crop_size" in options["project"]


def test_the_spelling_check_sees_two_spellings():
    assert two_spellings({"a": ["--batch_size"], "b": ["--batch-size"]}) == ["b: --batch-size",
                                                                              "batch_size: --batch-size / --batch_size"]
    assert two_spellings({"a": ["--batch_size", "--trainer.num_nodes"]}) == []


def test_list_options_take_plain_words_and_the_yaml_form():
    project = command("project")
    assert project.parse(["--images", "a.png", "b/", "c/", "--out", "o"]).images == ["a.png", "b/", "c/"]
    assert project.parse(["--images", "photos/", "--out", "o"]).images == ["photos/"]
    assert project.parse(["--images", json.dumps(["x", "y"])]).images == ["x", "y"]
    assert project.parse(["--images+", "x", "--images+", "y"]).images == ["x", "y"]
    edit = command("edit").parse(["d.npz", "--attributes", "Young", "Smiling", "--alpha", "-6", "6.5",
                                  "--seeds", "0", "1", "--keep", "Male", "--batch-size", "4"])
    assert (edit.directions, edit.attributes, tuple(edit.alpha), edit.seeds, edit.keep, edit.batch_size) == (
        "d.npz", ["Young", "Smiling"], (-6.0, 6.5), [0, 1], ["Male"], 4)


def test_old_hyphenated_spellings_are_aliases():
    quality = command("generator").parse(["quality", "demo", "--num", "8", "--batch-size", "4", "--num-nodes", "1",
                                          "--generator-options", '{"z_dim": 64}'])
    q = quality.quality
    assert (q.source, q.num, q.batch_size, q.num_nodes, q.generator_options) == ("demo", 8, 4, 1, {"z_dim": 64})
    assert command("generator").parse(["quality", "--num", "8"]).quality.source == "demo"


def test_a_config_file_gives_the_values_and_the_line_overrides_it(tmp_path):
    config = tmp_path / "edit.yaml"
    config.write_text("attributes: [Smiling]\nsteps: 5\nout: from_file\n")
    parsed = command("edit").parse(["d.npz", "--config", str(config), "--steps", "7"])
    assert (parsed.attributes, parsed.steps, parsed.out) == (["Smiling"], 7, "from_file")


def test_normalise_leaves_values_and_unknown_flags_alone():
    def f(images: list[str], steps: int = 1, alpha: tuple[float, float] = (0.0, 1.0)) -> None:
        pass

    assert normalise(["--steps", "-3", "--bogus-flag", "x"], f) == ["--steps", "-3", "--bogus-flag", "x"]
    assert normalise(["--alpha", "-1e-3", "-.5"], f) == ["--alpha=[-0.001, -0.5]"]
    assert normalise(["--images", "a", "--", "--images"], f) == ['--images=["a"]', "--", "--images"]


def test_a_str_or_list_option_keeps_one_word_as_a_word():
    sefa = command("sefa")
    assert sefa.parse(["--layers", "coarse"]).layers == "coarse"
    assert sefa.parse(["--layers", "0", "1", "conv3"]).layers == [0, 1, "conv3"]  # indices and names
    assert sefa.parse(["--layers", "[0, 1]"]).layers == [0, 1]


def test_a_bool_option_is_a_switch_too():
    edit = command("edit")
    assert edit.parse(["d.npz", "--guided", "--labels", "false", "--attributes", "A"]).guided is True
    assert edit.parse(["d.npz", "--guided", "--labels", "false"]).labels is False
    assert edit.parse(["d.npz", "--labels"]).labels is True and edit.parse(["d.npz"]).guided is False


def test_an_option_is_its_full_name():
    """No prefix matching: ``--attr`` is not ``--attributes`` (a renamed flag must not live on as a prefix)."""
    from argparse import ArgumentError

    with pytest.raises(ArgumentError):
        command("edit").parse(["d.npz", "--attr", "Smiling"])


def test_a_misspelt_option_is_one_line(capsys):
    from latentnav.commands.cli import main

    with pytest.raises(SystemExit) as raised:
        main(["project", "--imagez", "a.png"])
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert "--imagez" in err and "Traceback" not in err
