"""Every documented command parses: each shell command in README.md and docs/ that calls ``latentnav``,
``train.py`` or ``python -m latentnav...`` names a subcommand that exists, only options it accepts,
and config files that exist. Nothing is run: long commands are only parsed (config files are read and
checked against the classes they name)."""

import contextlib
import os
import re
import shlex
from argparse import ArgumentError
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LIGHTNING = ("fit", "validate", "test", "predict")
_STARTS = ("latentnav ", ".venv/bin/latentnav ", "python -m latentnav", ".venv/bin/python -m latentnav",
           "python train.py", ".venv/bin/python train.py", "python3 train.py")


def shell_lines(text: str) -> list[str]:
    """The lines of the fenced shell blocks (continuations joined) and the inline code spans that start
    like a command."""
    lines: list[str] = []
    fence = None  # the open block's language
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fence = line.strip()[3:].strip() if fence is None else None
            continue
        if fence in ("bash", "sh", "shell", "console", ""):
            if lines and lines[-1].endswith("\\"):
                lines[-1] = lines[-1][:-1] + " " + line
            else:
                lines.append(line)
    outside = re.sub(r"```.*?```", "", text, flags=re.S)
    lines += [span for span in re.findall(r"(?<!`)`([^`\n]+)`(?!`)", outside) if span.startswith(_STARTS)]
    return lines


def commands_in(line: str) -> list[list[str]]:
    """The latentnav invocations in one shell line, as argv lists starting at the subcommand: [] if none.
    ``latentnav X``, ``python -m latentnav X``, ``python -m latentnav.generators X``, ``train.py X``."""
    try:
        words = shlex.split(line, comments=True)
    except ValueError:
        return []
    found, current = [], []
    for w in words + ["&&"]:
        if w in ("&&", "||", ";", "|"):
            if current:
                found.append(current)
            current = []
        else:
            current.append(w)
    calls = []
    for words in found:
        while words and re.match(r"^[A-Z_]+=", words[0]):  # OMP_NUM_THREADS=1 ...
            words = words[1:]
        for i, w in enumerate(words):
            if w.endswith("/latentnav") or w == "latentnav":
                calls.append(words[i + 1:])
                break
            if w == "-m" and i + 1 < len(words) and words[i + 1].startswith("latentnav"):
                module = words[i + 1]
                calls.append(({"latentnav.generators": ["generator"]}.get(module, []) + words[i + 2:])
                             if module in ("latentnav", "latentnav.generators") else ["<module>", module])
                break
            if w.endswith("train.py"):
                calls.append(words[i + 1:])
                break
    return calls


def documented() -> list[tuple[str, list[str]]]:
    found = []
    for doc in DOCS:
        for line in shell_lines(doc.read_text()):
            found += [(f"{doc.relative_to(ROOT)}: {line.strip()[:120]}", argv) for argv in commands_in(line)]
    return found


def check(argv: list[str]) -> None:
    """Parse one documented invocation; raise with the reason when it would not parse."""
    from jsonargparse import capture_parser

    from latentnav.commands.cli import SUBCOMMANDS, LatentNavCLI, command

    assert argv and argv[0] != "<module>", f"not a latentnav command module: {argv[1:]}"
    for word in argv:
        if word.endswith((".yaml", ".yml")) and word.startswith("configs/"):
            assert (ROOT / word).is_file(), f"config file {word} does not exist"
    with _in_checkout():  # config paths are written relative to the checkout
        if argv[0] in LIGHTNING:
            capture_parser(lambda: LatentNavCLI(args=[argv[0]])).parse_args(argv)
            return
        assert argv[0] in SUBCOMMANDS, f"no subcommand {argv[0]!r}"
        if len(argv) > 1:  # `latentnav edit` alone names the command
            command(argv[0]).parse(argv[1:])


@contextlib.contextmanager
def _in_checkout():
    before = Path.cwd()
    os.chdir(ROOT)
    try:
        yield
    finally:
        os.chdir(before)


def test_the_docs_name_commands():
    found = documented()
    assert len(found) > 30
    assert {argv[0] for _, argv in found if argv} >= {"fit", "edit", "project", "compare", "sefa", "generator"}


@pytest.mark.parametrize("where,argv", documented(), ids=lambda x: x if isinstance(x, str) else "")
def test_documented_command_parses(where, argv):
    try:
        check(argv)
    except ArgumentError as e:
        pytest.fail(f"{where}: {e}")
    except SystemExit as e:  # LightningCLI's error exit (the message is on stderr); --print_config exits 0
        if e.code:
            pytest.fail(f"{where}: does not parse (exit {e.code})")


def test_a_renamed_flag_fails_the_check():
    """The check itself: a flag that no longer exists, a missing config and an unknown subcommand fail."""
    for argv in (["project", "--images", "a/", "--image_dir", "b"], ["fit", "--config", "configs/nope.yaml"],
                 ["edit", "d.npz", "--attributes", "Smiling", "--alphas", "1", "2"], ["annotat", "--num_train", "1"]):
        with pytest.raises((SystemExit, AssertionError, ArgumentError)):
            check(argv)
    check(["edit", "d.npz", "--attributes", "Smiling", "--alpha", "1", "2"])


def test_the_extractor_reads_blocks_spans_and_continuations():
    text = ("Run `latentnav sefa --config configs/sefa/demo.yaml` or\n```bash\nOMP_NUM_THREADS=1 .venv/bin/python"
            " train.py fit \\\n  --config configs/supervised/demo.yaml && .venv/bin/python -m latentnav edit d.npz"
            " --attributes Male  # a comment\n```\n")
    calls = [argv for line in shell_lines(text) for argv in commands_in(line)]
    assert calls == [["fit", "--config", "configs/supervised/demo.yaml"], ["edit", "d.npz", "--attributes", "Male"],
                     ["sefa", "--config", "configs/sefa/demo.yaml"]]
