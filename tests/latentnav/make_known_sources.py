"""Write ``latentnav/known_network_sources.py``: the normalised-source sha256 of every published revision
of NVIDIA's network modules (run once, and again if NVIDIA publishes a new revision).

    python tests/latentnav/make_known_sources.py [--ada GIT_DIR] [--sg3 GIT_DIR]

The git directories are bare mirrors of github.com/NVlabs/stylegan2-ada-pytorch and
github.com/NVlabs/stylegan3 (defaults: ``/work/.mirror/NVlabs+<name>/repo``). Every commit on the
default branch's history that touched ``training/networks.py`` (ADA) or ``training/networks_stylegan2.py``
/ ``training/networks_stylegan3.py`` (StyleGAN3) is read with ``git show`` and hashed with
:func:`latentnav.nvidia_pickle.normalised_source_sha256` (syntax tree without docstrings, so comments,
layout and byte order marks do not matter). Forks' pull-request refs in a mirror are not NVIDIA's
revisions and are left out (only the first-parent history of HEAD is read).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from latentnav.nvidia_pickle import normalised_source_sha256  # noqa: E402

OUT = ROOT / "latentnav" / "known_network_sources.py"
SOURCES = [  # (mirror option, repository, path, version)
    ("ada", "NVlabs/stylegan2-ada-pytorch", "training/networks.py", "stylegan2-ada"),
    ("sg3", "NVlabs/stylegan3", "training/networks_stylegan2.py", "stylegan3-stylegan2"),
    ("sg3", "NVlabs/stylegan3", "training/networks_stylegan3.py", "stylegan3"),
]


def git(git_dir: str, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", git_dir, *args], check=True, capture_output=True).stdout.decode("utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ada", default="/work/.mirror/NVlabs+stylegan2-ada-pytorch/repo")
    parser.add_argument("--sg3", default="/work/.mirror/NVlabs+stylegan3/repo")
    args = parser.parse_args()
    table: dict[str, dict] = {}
    lines = []
    for option, repo, path, version in SOURCES:
        git_dir = getattr(args, option)
        commits = git(git_dir, "log", "--first-parent", "--format=%H", "HEAD", "--", path).split()
        assert commits, f"{repo}: no revision of {path} in {git_dir}"
        for commit in reversed(commits):  # oldest first
            digest = normalised_source_sha256(git(git_dir, "show", f"{commit}:{path}"))
            entry = table.setdefault(digest, {"version": version, "repo": repo, "path": path, "commits": []})
            assert entry["version"] == version, f"{path}@{commit} hashes like {entry['path']}"
            entry["commits"].append(commit)
            lines.append(f"{repo} {path} {commit[:10]} {digest[:16]}")
    body = ["# Made by tests/latentnav/make_known_sources.py from NVIDIA's public repositories; do not edit.",
            '"""Normalised-source sha256 (:func:`latentnav.nvidia_pickle.normalised_source_sha256`) of every published',
            "revision of NVIDIA's network modules -> the version, the file and the commits that have that tree.\"\"\"",
            "", "KNOWN_SOURCES = {"]
    for digest, entry in table.items():
        body.append(f"    {digest!r}: {{")
        body.append(f"        \"version\": {entry['version']!r}, \"repo\": {entry['repo']!r}, \"path\": {entry['path']!r},")
        body.append(f"        \"commits\": {entry['commits']!r},")
        body.append("    },")
    body.append("}")
    OUT.write_text("\n".join(body) + "\n")
    print("\n".join(lines))
    print(f"wrote {OUT} ({len(table)} distinct sources)")


if __name__ == "__main__":
    main()
