"""Smoke test of an installed wheel, run from outside the checkout: python wheel_smoke.py REPO_ROOT.

Loads the bundled generator and classifier from the installed package, fits supervised directions
for a few steps with the repository's demo config (configs are the user's files, not package data)
and edits along them with the ``latentnav`` command. Exit status 0 = the wheel works.
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> int:
    repo = Path(sys.argv[1]).resolve()
    work = Path(tempfile.mkdtemp(prefix="latentnav_wheel_"))
    os.chdir(work)
    import latentnav
    from latentnav.generators import load_generator
    from latentnav.lightning_modules.annotator import load_annotator

    where = Path(latentnav.__file__).resolve()
    assert repo not in where.parents, f"latentnav imported from the checkout ({where}), not the wheel"
    G, judge = load_generator("demo"), load_annotator("demo")
    assert repo not in Path(G.identity["source"]).parents and Path(G.identity["source"]).is_file()
    probs = judge(G.synthesize(G.sample(4, seed=0)))
    assert probs.shape == (4, len(judge.attributes)) and 0 <= float(probs.min()) <= float(probs.max()) <= 1
    # A user's NVIDIA pickle and a genforce checkpoint load through the installed package (read, never run).
    for fixture in ("stylegan2_ada_cond.pkl", "genforce_stylegan2.pth"):
        family = load_generator(repo / "tests" / "fixtures" / fixture, classes=[1] if "cond" in fixture else None)
        z = family.sample(2, seed=0)
        assert family.synthesize(z, classes=family.classes_at([0, 1])).isfinite().all(), fixture
    for name in ("generators", "callbacks", "datamodules", "lightning_modules", "commands", "train"):
        try:
            __import__(name)
        except ModuleNotFoundError:
            continue
        raise AssertionError(f"the wheel installed a top-level {name!r}")
    latentnav_bin = Path(sys.executable).with_name("latentnav")
    fit = [str(latentnav_bin), "fit", "--config", str(repo / "configs/supervised/demo.yaml"),
           "--data.init_args.num_train", "256", "--data.init_args.num_val", "128", "--data.init_args.shard_size", "256",
           "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false",
           "--trainer.callbacks.init_args.num_samples", "16", "--trainer.callbacks.init_args.export_to", "smoke.npz",
           "--trainer.callbacks.init_args.compare_with", "null"]
    subprocess.run(fit, check=True)
    subprocess.run([str(latentnav_bin), "edit", "smoke.npz", "--attributes", "Smiling", "--seeds", "0", "1",
                    "--steps", "3", "--out", "edits"], check=True)
    assert (work / "edits" / "Smiling.png").stat().st_size > 0 and (work / "edits" / "Smiling.gif").is_file()
    print(f"wheel smoke test passed in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
