"""One command-line grammar for every ``latentnav`` subcommand.

Each command is a typed function (or a dict of them, one per sub-subcommand), parsed by jsonargparse
as LightningCLI parses ``fit``: every default is visible in the signature, ``--config FILE.yaml``
and ``--print_config`` come with it, and a value given on the line overrides the file. On top of
jsonargparse, :func:`normalise` makes the grammar the one a shell user expects:

- options are spelt with underscores (``--batch_size``, ``--num_nodes``, ``--generator_options``);
  the hyphenated spellings of earlier docs (``--batch-size``) are aliases of the same option;
- a bool option is also a switch (``--guided`` = ``--guided true``);
- a list option takes plain words (``--images a.png b/ c/``, ``--alpha -6 6``) as well as its YAML
  form (``--images '[a.png, b/]'``) and jsonargparse's ``--images+ a.png``;
- a command may name one optional positional (``latentnav generator quality demo``).
"""

from __future__ import annotations

import argparse
import collections.abc
import inspect
import json
import re
import sys
import typing
from dataclasses import dataclass, field
from typing import Callable, Optional, Union

from latentnav.errors import run_command

_BOOL_WORDS = {"true", "false", "yes", "no", "1", "0", "on", "off"}
_NUMBER = re.compile(r"^-(\d|\.\d|inf$|nan$)")


def _is_flag(token: str) -> bool:
    """An option (``--x``, ``-h``), not a value such as ``-6`` or ``-0.5``."""
    return token.startswith("-") and not _NUMBER.match(token)


def _list_element(hint) -> Optional[type]:
    """The element type of a list/tuple hint (``Optional[list[int]]`` -> int; ``list[str]`` -> str), or
    None when ``hint`` takes no list. Other element types come back as ``str`` (the words stay words)."""
    origin = typing.get_origin(hint)
    if origin is Union:
        found = [_list_element(h) for h in typing.get_args(hint) if h is not type(None)]
        return next((f for f in found if f is not None), None)
    if origin in (list, tuple, collections.abc.Sequence):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        element = args[0] if args else str
        return element if element in (int, float) else str
    return None


def _is_bool(hint) -> bool:
    return hint is bool or (typing.get_origin(hint) is Union and set(typing.get_args(hint)) == {bool, type(None)})


def bool_options(function: Callable) -> set[str]:
    """``function``'s bool parameters: a bare ``--guided`` means ``--guided true``."""
    hints = typing.get_type_hints(function)
    return {name for name in inspect.signature(function).parameters if _is_bool(hints.get(name))}


def list_options(function: Callable) -> dict[str, type]:
    """{parameter name: element type} of ``function``'s list-typed parameters."""
    hints = typing.get_type_hints(function)
    found = {}
    for name in inspect.signature(function).parameters:
        element = _list_element(hints.get(name))
        if element is not None:
            found[name] = element
    return found


def _takes_a_word(hint) -> bool:
    """Whether ``hint`` also takes one plain string (``Union[str, Sequence[int]]``: ``--layers coarse``)."""
    return hint is str or (typing.get_origin(hint) is Union and any(_takes_a_word(h) for h in typing.get_args(hint)))


def _word(text: str, element: type):
    if element in (int, float):
        try:
            return element(text)
        except ValueError:
            return text  # jsonargparse names the option and the expected type
    return text


def normalise(argv: list[str], function: Callable, optional_positional: Optional[str] = None) -> list[str]:
    """``argv`` in jsonargparse's grammar for ``function`` (see the module docstring)."""
    names = set(inspect.signature(function).parameters)
    lists, flags = list_options(function), bool_options(function)
    hints = typing.get_type_hints(function)
    out: list[str] = []
    i = 0
    if optional_positional and argv and not _is_flag(argv[0]):
        out += [f"--{optional_positional}", argv[0]]
        i = 1
    while i < len(argv):
        token = argv[i]
        if token == "--":
            out += argv[i:]
            break
        if not token.startswith("--") or not _is_flag(token):
            out.append(token)
            i += 1
            continue
        name, eq, value = token[2:].partition("=")
        plus = name.endswith("+")
        key = name.rstrip("+").replace("-", "_")
        if key not in names and key.split(".")[0] not in names and key not in ("print_config", "config"):
            out.append(token)  # jsonargparse says what it does not know
            i += 1
            continue
        if key in lists and not eq and not plus:
            words = []
            j = i + 1
            while j < len(argv) and not _is_flag(argv[j]):
                words.append(argv[j])
                j += 1
            if len(words) == 1 and (words[0].lstrip().startswith("[") or _takes_a_word(hints.get(key))):
                out += [f"--{key}", words[0]]  # the YAML form, or the one word a str-or-list option takes
            elif words:
                out.append(f"--{key}=" + json.dumps([_word(w, lists[key]) for w in words]))
            else:
                out.append(f"--{key}")
            i = j
            continue
        if key in flags and not eq and (i + 1 == len(argv) or argv[i + 1].lower() not in _BOOL_WORDS):
            out.append(f"--{key}=true")  # a switch, as argparse's store_true
        else:
            out.append(f"--{key}{'+' if plus else ''}" + (f"={value}" if eq else ""))
        i += 1
    return out


@dataclass
class Command:
    """A subcommand: ``function`` (or {name: function} for ``latentnav NAME sub ...``) parsed by jsonargparse.

    ``positional``: parameters without a default become positionals (``latentnav edit DIRECTIONS ...``);
    otherwise every parameter is an option. ``optional_positional``: {sub-subcommand or "": parameter}
    whose value may stand first without its flag."""

    function: Union[Callable, dict]
    prog: str
    positional: bool = False
    optional_positional: dict = field(default_factory=dict)

    def functions(self) -> dict[str, Callable]:
        return dict(self.function) if isinstance(self.function, dict) else {"": self.function}

    def normalise(self, argv: list[str]) -> list[str]:
        subs = self.functions()
        if "" in subs:
            return normalise(argv, subs[""], self.optional_positional.get(""))
        if argv and argv[0] in subs:
            return [argv[0]] + normalise(argv[1:], subs[argv[0]], self.optional_positional.get(argv[0]))
        return list(argv)

    def _cli(self, argv: list[str]):
        from jsonargparse import CLI

        # exit_on_error=False: a parse error is raised (argparse.ArgumentError), and main prints it as one line.
        # allow_abbrev=False: an option is its full name (a renamed flag must not live on as a prefix).
        return CLI(self.function, args=self.normalise(argv), as_positional=self.positional, prog=self.prog,
                   exit_on_error=False, allow_abbrev=False)

    def parser(self):
        """The jsonargparse parser (nothing is run): for tests and the docs check."""
        from jsonargparse import capture_parser

        return capture_parser(lambda: self._cli([]))

    def parse(self, argv: list[str]):
        """Parse ``argv`` as the command would (config files read and checked), without running it."""
        return self.parser().parse_args(self.normalise(argv))

    def main(self, argv: Optional[list[str]] = None) -> int:
        """Parse and run; a user error, the command line's included, is one line on stderr and exit 2."""
        argv = sys.argv[1:] if argv is None else list(argv)
        try:
            return run_command(lambda: self._cli(argv))
        except argparse.ArgumentError as e:
            print(f"latentnav: error: {parse_error_line(str(e), self.prog)}", file=sys.stderr)
            return 2


def parse_error_line(message: str, prog: str) -> str:
    """jsonargparse's parse error (several lines for a value of the wrong type) as one line."""
    key = re.match(r'Parser key "([^"]+)":', message)
    if key:
        types = [t for t in re.findall(r"Expected a <class '(\w+)'>", message) if t != "NoneType"]
        given = re.search(r"(?:Given value|Got value): (.*)$", message, flags=re.M)
        expected = " or ".join(dict.fromkeys(types)) or "another value"
        got = given.group(1).strip() if given else "?"
        return f"--{key.group(1)}: expected {expected}, got {got[:80]} ({prog} --help lists the options)"
    first = next((line.strip() for line in message.splitlines() if line.strip()), "cannot parse the command line")
    return f"{first} ({prog} --help lists the options)"

