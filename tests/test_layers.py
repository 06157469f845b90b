"""One layer order, no import running back up (see latentnav/__init__.py):

foundation -> generators -> lightning_modules -> datamodules -> callbacks -> commands.

Every import in every module counts, also those inside functions (a lazy import is still an arrow);
only an entry point's own code is exempt: a ``__main__.py`` and the body of an
``if __name__ == "__main__":`` block, which nothing imports.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The sub-packages of latentnav and their layers; all but ``commands`` (latentnav/commands/) are root folders.
PACKAGES = {"generators": 1, "lightning_modules": 2, "datamodules": 3, "callbacks": 4, "commands": 5}
ROOT_FOLDERS = [p for p in PACKAGES if p != "commands"]
NAMES = ["foundation", "generators", "lightning_modules", "datamodules", "callbacks", "commands"]


def layer_of(module: str) -> int | None:
    """Layer of a dotted latentnav module name (None: not latentnav's), read from its folder: a
    module directly in ``latentnav/`` is foundation, one in a sub-package has that package's layer."""
    parts = module.split(".")
    if parts[0] != "latentnav" or len(parts) == 1:
        return None
    return PACKAGES.get(parts[1], 0)


def modules():
    for folder, dotted in [(ROOT / "latentnav", "latentnav")] + [(ROOT / p, f"latentnav.{p}") for p in ROOT_FOLDERS]:
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder).with_suffix("")
            name = ".".join([dotted, *rel.parts]).removesuffix(".__init__")
            yield name, path


def _is_main_guard(node: ast.AST) -> bool:
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__")


def imports(path: Path, name: str):
    """(line, imported module) of every import outside a __main__ guard, relative imports resolved."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    skip = {id(n) for node in ast.walk(tree) if _is_main_guard(node) for n in ast.walk(node)}
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            yield node.lineno, base
            for alias in node.names:  # from latentnav import compare
                yield node.lineno, f"{base}.{alias.name}"


def upward_edges() -> list[str]:
    found = []
    for name, path in modules():
        if path.name == "__main__.py":
            continue
        mine = layer_of(name)
        for line, target in imports(path, name):
            theirs = layer_of(target)
            if theirs is not None and theirs > mine and not (name == "latentnav" and theirs == 0):
                found.append(f"{path.relative_to(ROOT)}:{line} ({NAMES[mine]}) imports {target} ({NAMES[theirs]})")
    return sorted(set(found))


def test_no_import_runs_back_up_the_layers():
    edges = upward_edges()
    assert not edges, "upward imports:\n" + "\n".join(edges)


def test_no_top_level_imports_of_the_root_folders():
    """The root folders are sub-packages of latentnav (installed: under latentnav/); a bare
    ``import generators`` would load a second copy in a checkout and fail in the wheel."""
    bare = []
    for folder in [ROOT / "latentnav", ROOT / "tests", ROOT / "bench", *(ROOT / p for p in ROOT_FOLDERS)]:
        for path in folder.rglob("*.py"):
            for line, target in imports(path, "x.y"):
                if target.split(".")[0] in PACKAGES:
                    bare.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert not bare, "\n".join(bare)


def test_the_walker_sees_an_upward_edge(tmp_path):
    """The check itself: a lazy import of a command from a generator module is an upward edge."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from latentnav.commands.compare import compare\n"
                     "if __name__ == '__main__':\n    from latentnav.commands.edit import main\n")
    assert [t for _, t in imports(probe, "latentnav.generators.probe")] == ["latentnav.commands.compare",
                                                                              "latentnav.commands.compare.compare"]
    assert layer_of("latentnav.commands.compare") == 5 and layer_of("latentnav.generators.base") == 1
    assert layer_of("latentnav.errors") == 0
    # The layer is the folder: a new module needs no list entry to be placed.
    assert layer_of("latentnav.commands.any_new_command") == 5 and layer_of("latentnav.any_new_format") == 0
