"""The comparison's outputs: ``comparison.md`` (the report text), ``comparison.json``, the
``effects_<method>.png`` heat-maps, ``names_<method>.tsv`` and TensorBoard, from ``compare()``'s summary.

Published together (:func:`latentnav.atomic.publish`): everything is written into a hidden staging folder
inside ``out`` and renamed into place at the end, ``comparison.json`` (the completion marker) deleted first
and renamed in last. A run killed before that leaves the previous comparison whole; a run killed during it
leaves no ``comparison.json``. ``comparison.md`` and every entry of ``comparison.json`` carry the run's id
(``run_id``), so a reader can check that they belong together; the ``tensorboard`` folder is replaced whole,
and heat-maps and tables of methods the run does not compare are removed. A finished run deletes the
staging folders of killed runs.

Method names are data (a directions file's ``method``): their stems go through ``latentnav.names`` (safe
characters, bounded length; two methods with one name get ``-2``, ``-3``), and names in the TSV tables are
kept to one cell (tabs and line breaks become spaces).
"""

from __future__ import annotations

import json
import math
import re
import secrets
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from latentnav.atomic import (atomic_write, atomic_write_text, publish, remove_stale_staging,
                              remove_stale_temporaries, staging_folder)
from latentnav.names import unique_stems
from latentnav.lightning_modules.bootstrap import interval_of
from latentnav.lightning_modules.evaluation_protocol import (AD_LEVEL, side_effect_cells, side_effect_header,
                                                             side_effects_explained)


def _abbreviation(name: str) -> str:
    """Black_Hair -> BlaH, Wearing_Lipstick -> WeaL, Smiling -> Smi: short column labels."""
    parts = [p for p in re.split(r"[_\s]+", name) if p] or [name]
    return parts[0][:3] + "".join(p[0] for p in parts[1:])


def _labels(names: list[str]) -> list[str]:
    short = [_abbreviation(n) for n in names]
    return [s if short.count(s) == 1 else f"{s}{i}" for i, s in enumerate(short)]


def _heatmap(effect: np.ndarray, row_names: list[str], column_names: list[str], cell: int = 28) -> np.ndarray:
    from latentnav.images import heatmap, labelled_rows

    rgb = heatmap(torch.from_numpy(np.nan_to_num(effect, nan=0.0)), cell=cell)
    return labelled_rows(rgb, row_names, _labels(column_names), margin=170)


def _or_none(x: float) -> Optional[float]:
    return None if x != x else x  # JSON has no NaN


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")[:60] or "method"


def method_stems(methods: list[str]) -> list[str]:
    """One file stem per method (``effects_<stem>.png``, ``names_<stem>.tsv``): readable (:func:`_slug`),
    safe and unique (:func:`latentnav.names.unique_stems`: the same method twice, or two that slug alike,
    get ``-2``, ``-3``)."""
    return unique_stems([_slug(str(m)) for m in methods], "method", on_duplicate="number")


def _cell(text: str) -> str:
    """A name as one TSV cell: tabs, line breaks and other control characters become spaces."""
    return re.sub(r"[\x00-\x1f\x7f]", " ", str(text))


def new_run_id() -> str:
    """``<UTC time>-<random>``: tells one comparison's files from another's."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(4)


OUTPUTS = ("comparison.md", "comparison.json")  # with effects_*.png, names_*.tsv and tensorboard/


def _f(x: float, fmt: str = ".3f") -> str:
    return "n/a" if x != x else format(x, fmt)


DISAGREE = 0.02  # off-target change (probability units) by which the two judges may differ unflagged


def purest(scores: dict, targets: list[int], attribute: int) -> Optional[int]:
    """The direction with the highest purity among those named ``attribute`` that flip it within the
    grid (by ``scores``: one classifier's), or None."""
    idx = [i for i, t in enumerate(targets) if t == attribute and scores["step"][i] == scores["step"][i]]
    return max(idx, key=lambda i: float(scores["purity"][i])) if idx else None


def common_attributes(results: list[dict], key: Optional[str] = None) -> list[int]:
    """Attributes that every method flips (by its purest direction), under the annotator (``key`` None)
    or the held-out judge (``key`` = "judge"): the set method averages are taken over."""
    n = max((max(r["target"], default=-1) for r in results), default=-1) + 1
    return [j for j in range(n) if all(purest(r[key] if key else r, r["target"], j) is not None for r in results)]


def like_with_like(results: list[dict], key: Optional[str] = None) -> tuple[list[int], list[float]]:
    """(the common set, per method the mean off-target change of its purest direction per attribute of it)."""
    common = common_attributes(results, key)
    means = []
    for r in results:
        scores = r[key] if key else r
        offs = [float(scores["off_target"][purest(scores, r["target"], j)]) for j in common]
        means.append(sum(offs) / len(offs) if offs else math.nan)
    return common, means


def _ci(value: float, replicates: Optional[torch.Tensor]) -> str:
    low, high = interval_of(replicates)
    return _f(value) + ("" if low != low else f" [{low:.3f}, {high:.3f}]")


def _boot(r: dict, key: Optional[str]) -> Optional[dict]:
    return r.get("judge_boot" if key == "judge" else "boot")


def common_mean_replicates(results: list[dict], key: Optional[str] = None) -> list[Optional[torch.Tensor]]:
    """Per method, the replicates (R,) of its like-with-like mean (the directions chosen on the full sample)."""
    common = common_attributes(results, key)
    out = []
    for r in results:
        scores, boot = (r[key] if key else r), _boot(r, key)
        if boot is None or not common:
            out.append(None)
            continue
        out.append(boot["off_target"][:, [purest(scores, r["target"], j) for j in common]].mean(1))
    return out


def significance(results: list[dict], attrs: list[str], key: Optional[str] = None) -> list[str]:
    """Lines saying, per attribute every method flips (and for the method means), which method has the
    lowest off-target change and whether each difference to it is significant: the paired bootstrap
    interval of the difference (same latents, same weights) excludes 0."""
    if len(results) < 2 or _boot(results[0], key) is None:
        return []
    lines = []
    common = common_attributes(results, key)
    for j in common:
        picks = []
        for r in results:
            scores = r[key] if key else r
            i = purest(scores, r["target"], j)
            picks.append((float(scores["off_target"][i]), _boot(r, key)["off_target"][:, i]))
        lines.append(_versus(attrs[j], [r["method"] for r in results], picks))
    means = like_with_like(results, key)[1]
    lines.append(_versus("mean over the common set", [r["method"] for r in results],
                         list(zip(means, common_mean_replicates(results, key)))))
    return lines


def _versus(what: str, methods: list[str], picks: list[tuple[float, torch.Tensor]]) -> str:
    best = min(range(len(picks)), key=lambda m: picks[m][0] if picks[m][0] == picks[m][0] else math.inf)
    parts = []
    for m, (value, reps) in enumerate(picks):
        if m == best:
            continue
        low, high = interval_of(reps - picks[best][1])
        verdict = "significant" if low > 0 else "not significant"
        parts.append(f"{methods[m]} +{value - picks[best][0]:.3f} [{low:+.3f}, {high:+.3f}] {verdict}")
    return f"- {what}: lowest {methods[best]} ({picks[best][0]:.3f}); " + "; ".join(parts)


def common_ad(results: list[dict], m: int, key: Optional[str] = None) -> tuple[float, Optional[torch.Tensor]]:
    """Method ``m``'s mean AD over the attributes every method flips (by that judge), with replicates."""
    common = common_attributes(results, key)
    r = results[m]
    scores = r[key] if key else r
    idx = [purest(scores, r["target"], j) for j in common]
    if not idx:
        return math.nan, None
    value, reps = r["side"]["ad"]
    return float(value[idx].mean()), None if reps is None else reps[:, idx].mean(1)


def _controlled(scores: dict, targets: list[int], attrs: list[str]) -> list[str]:
    return sorted({attrs[t] for t, c in zip(targets, scores["controls"].tolist()) if c})


def _drift_note(summary: dict) -> str:
    """A sentence when realism drift was not measured, or with fewer replicates than the rest (memory)."""
    results = summary.get("results") or []
    if results and all(bool(torch.isnan(r["side"]["drift"][0]).all()) for r in results):
        return " Realism drift: not measured (the judge's features are wider than 512)."
    counts = sorted({r.get("drift_replicates") for r in results} - {summary.get("replicates")})
    return f" Realism drift intervals from {', '.join(map(str, counts))} replicates (memory)." if counts else ""


def by_class(summary: dict) -> dict[int, tuple[list[int], list[dict], list[float]]]:
    """A class-conditional generator's figures per class (empty otherwise): {class id: (the attributes every
    method flips in that class, per method its per-class scores with ``target``, per method the mean off-target
    change of its purest direction over those attributes)}, each class at its own equal target success."""
    results = summary["results"]
    classes = sorted({c for r in results for c in (r.get("by_class") or {})})
    out = {}
    for c in classes:
        per = [dict(r["by_class"][c], target=r["target"]) for r in results if c in (r.get("by_class") or {})]
        if len(per) != len(results):
            continue
        common, means = like_with_like(per)
        out[c] = (common, per, means)
    return out


def _by_class_lines(summary: dict) -> list[str]:
    """``## By class``: per class and method, the attributes controlled and the like-with-like mean off-target
    change (own judge, no intervals)."""
    table = by_class(summary)
    if not table:
        return []
    attrs = summary["attributes"]
    lines = ["## By class", "",
             f"A class-conditional generator (classes {', '.join(map(str, summary.get('classes') or sorted(table)))}): "
             "latent i is in class classes[i % n], and the directions are shared across classes. Per class, on that "
             "class's latents alone, each direction at the class's own equal target success, by the own judge (no "
             "intervals): the attributes controlled, and the mean off-target change of each method's purest direction "
             "over the attributes every method flips in that class.", "",
             "| class | method | attributes controlled (own judge) | # | mean off-target change (common set of the class) "
             "| common set |", "|---|---|---|---|---|---|"]
    for c, (common, per, means) in table.items():
        for r, scores, mean in zip(summary["results"], per, means):
            ctrl = _controlled(scores, r["target"], attrs)
            lines.append(f"| {c} | {r['method']} | {', '.join(ctrl) or 'none'} | {len(ctrl)} | {_f(mean)} | "
                         f"{', '.join(attrs[j] for j in common) or 'none'} |")
    return lines + [""]


def report(summary: dict) -> str:
    attrs, results = summary["attributes"], summary["results"]
    judged = summary.get("judge") is not None
    lines = [f"# Comparison of edit directions on {summary['generator'].get('source')} "
             f"(sha256 {str(summary['generator'].get('sha256'))[:12]})", "",
             f"{summary['num_samples']} samples; naming at alpha = +/-{summary['naming_alpha']:g}; a direction "
             f"controls its attribute when purity >= {summary['purity_threshold']:g} and it flips the attribute on "
             "for half of the samples where it was off within the step grid. Purity: at that step, the named "
             "attribute's share of the total absolute change of all attributes' probabilities, on the samples where "
             "it was off. Off-target change: the mean absolute change of the other attributes' probabilities at that "
             "step over all samples (equal target success).", ""]
    lines += [f"Own judge: the annotator {summary.get('annotator')} (it labelled the supervised methods' data and "
              "names every direction)." + (f" Held-out judge: {summary['judge']}, which scores the same edited images "
                                            "at its own equal target success." if judged else
                                            " No held-out judge was given (`--judge`): these figures grade the "
                                            "supervised methods with the classifier they were fitted to."), ""]
    lines += [side_effects_explained(judged, summary.get("nuisance_factors"), summary.get("identity"))
              + _drift_note(summary), ""]
    judges = [(None, "own judge")] + ([("judge", "held-out judge")] if judged else [])
    lines += ["## Per method", ""]
    for key, label in judges:
        common, means = like_with_like(results, key)
        lines += [f"Mean off-target change by the {label}: over the attributes every method flips by that judge "
                  f"({', '.join(attrs[j] for j in common) or 'none'}), each method's purest direction per attribute "
                  "(an average over different sets of attributes would compare different things).", ""]
    header = "| method | directions | attributes controlled (own judge) | #"
    header += " | attributes controlled (held-out judge) | #" if judged else ""
    header += " | mean off-target change, own judge" + (" | mean off-target change, held-out judge" if judged else "")
    header += f" | mean AD at {AD_LEVEL:g} sigma ({'held-out' if judged else 'own'} judge) | compute time |"
    lines += [header, "|" + "---|" * (header.count("|") - 1)]
    own_means = like_with_like(results)[1]
    own_reps = common_mean_replicates(results)
    judge_means = like_with_like(results, "judge")[1] if judged else None
    judge_reps = common_mean_replicates(results, "judge") if judged else None
    for m, r in enumerate(results):
        ctrl = _controlled(r, r["target"], attrs)
        row = f"| {r['method']} | {len(r['names'])} | {', '.join(ctrl) or 'none'} | {len(ctrl)}"
        if judged:
            jctrl = _controlled(r["judge"], r["target"], attrs)
            row += f" | {', '.join(jctrl) or 'none'} | {len(jctrl)}"
        row += f" | {_ci(own_means[m], own_reps[m])}" + (f" | {_ci(judge_means[m], judge_reps[m])}" if judged else "")
        secs = r["seconds"]
        ad_value, ad_reps = common_ad(results, m, "judge" if judged else None)
        row += f" | {_ci(ad_value, ad_reps)}"
        lines.append(row + f" | {'n/a' if secs != secs else f'{secs:.2f} s'} |")
    union_un = sorted({attrs[t] for r in results if not r["method"].startswith(("linear map", "InterFaceGAN"))
                       for t, c in zip(r["target"], r["controls"].tolist()) if c})
    lines += ["", f"Unsupervised and closed-form methods together control {len(union_un)} of {len(attrs)} "
              f"attributes (own judge): {', '.join(union_un) or 'none'}.", "",
              *([f"## Significance (paired bootstrap, {summary.get('replicates')} replicates, 95 %)", "",
                 "Off-target change of each method's purest direction per attribute that every method flips; a "
                 "difference to the lowest is significant when the interval of the paired difference (same latents, "
                 "same bootstrap weights) excludes 0. Intervals in brackets elsewhere are 95 % percentile intervals.",
                 ""] if summary.get("replicates") and len(results) > 1 else []),
              *[line for key, label in judges for line in ([f"By the {label}:", ""] + significance(results, attrs, key)
                                                             + [""] if summary.get("replicates") and len(results) > 1
                                                             else [])],
              *_by_class_lines(summary),
              "## Per attribute: each method's purest direction", "",
              "Purity / off-target change of the direction with the highest purity among those named by the "
              "attribute that flip it on within the grid; **bold** = it controls the attribute (purity >= "
              f"{summary['purity_threshold']:g}); '-' = no direction of the method flips it."
              + (f" Own judge first, held-out judge after the bar; ! = the judges disagree (off-target change "
                 f"differs by more than {DISAGREE:g}, or only one says the direction controls it)." if judged else ""),
              "", "| attribute | " + " | ".join(r["method"] for r in results) + " |", "|---|" + "---|" * len(results)]
    for j, a in enumerate(attrs):
        cells = []
        for r in results:
            parts, flags = [], []
            for key, _ in judges:
                scores = r[key] if key else r
                best = purest(scores, r["target"], j)
                if best is None:
                    parts.append("-")
                    flags.append(None)
                    continue
                cell = f"{float(scores['purity'][best]):.2f} / {_f(float(scores['off_target'][best]))}"
                parts.append(f"**{cell}**" if bool(scores["controls"][best]) else cell)
                flags.append((float(scores["off_target"][best]), bool(scores["controls"][best])))
            disagree = judged and ((flags[0] is None) != (flags[1] is None) or flags[0] is not None and (
                abs(flags[0][0] - flags[1][0]) > DISAGREE or flags[0][1] != flags[1][1]))
            cells.append(" \\| ".join(parts) + (" !" if disagree else ""))
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    for r in results:
        head = ("| direction | named | sign | purity at the 50 % flip step | change at naming alpha | step to 50 % flip | "
                "off-target |") + (" purity (held-out) | step (held-out) | off-target (held-out) |" if judged else "") + (
                " " + " | ".join(side_effect_header(summary.get("nuisance_factors"), bool(summary.get("identity")))) + " |")
        lines += ["", f"## {r['method']} ({r['file']})", "", head, "|" + "---|" * (head.count("|") - 1)]
        for i, n in enumerate(r["names"]):
            row = (f"| {n} | {attrs[r['target'][i]]}{'' if bool(r['controls'][i]) else ' (no control)'} | "
                   f"{'+' if r['sign'][i] > 0 else '-'} | {float(r['purity'][i]):.2f} | "
                   f"{float(r['change'][i]):+.3f} | {_f(float(r['step'][i]), '.2f')} | "
                   f"{_ci(float(r['off_target'][i]), r['boot']['off_target'][:, i] if r.get('boot') else None)} |")
            if judged:
                jr, jb = r["judge"], r.get("judge_boot")
                row += (f" {float(jr['purity'][i]):.2f} | {_f(float(jr['step'][i]), '.2f')} | "
                        f"{_ci(float(jr['off_target'][i]), jb['off_target'][:, i] if jb else None)} |")
            row += " " + " | ".join(side_effect_cells(r["side"], i, summary.get("nuisance_factors"))) + " |"
            lines.append(row)
    lines += ["", "Attribute abbreviations in the heat-maps: " +
              ", ".join(f"{b} = {a}" for a, b in zip(attrs, _labels(attrs))) + "."]
    if summary.get("run_id"):
        lines += ["", f"Run id: {summary['run_id']} (comparison.json's entries carry the same)."]
    return "\n".join(lines) + "\n"


def _side_json(side: dict, i: int, factors: Optional[list[str]]) -> dict:
    """Direction ``i``'s side effects for comparison.json: value and 95 % interval each."""
    names = {"ad": "ad", "pixels": "pixel_change", "features": "feature_distance", "drift": "realism_drift",
             "identity": "identity_distance"}
    out = {}
    for key, name in names.items():
        if key in side:
            value, reps = side[key]
            out[name] = _or_none(float(value[i]))
            out[name + "_ci"] = [_or_none(v) for v in interval_of(None if reps is None else reps[:, i])]
    if factors:
        value, reps = side["nuisance"]
        out["nuisance"] = {f: _or_none(float(value[i, j])) for j, f in enumerate(factors)}
        out["nuisance_ci"] = {f: [_or_none(v) for v in interval_of(None if reps is None else reps[:, i, j])]
                              for j, f in enumerate(factors)}
    return out


def write(summary: dict, out: Path) -> Path:
    """comparison.md, comparison.json, effects_*.png, names_*.tsv and TensorBoard under ``out``, published
    together (see the module docstring); ``summary["run_id"]`` is set (when missing) and recorded in both."""
    started = time.time()
    out = Path(out)
    summary.setdefault("run_id", new_run_id())
    staging = staging_folder(out)
    try:
        _write_into(summary, staging)
        publish(staging, out, last="comparison.json", supersedes=("effects_*.png", "names_*.tsv"))
    except BaseException:
        remove_stale_staging(out)  # this process's staging folder: nothing half-written stays
        raise
    remove_stale_staging(out)  # those of killed runs
    remove_stale_temporaries(out, OUTPUTS, started=started)  # of runs that wrote into out directly
    return out / "comparison.md"


def _write_into(summary: dict, out: Path) -> None:
    from PIL import Image
    from torch.utils.tensorboard import SummaryWriter

    text = report(summary)
    atomic_write_text(out / "comparison.md", text)
    attrs = summary["attributes"]
    stems = method_stems([r["method"] for r in summary["results"]])
    writer = SummaryWriter(str(out / "tensorboard"))
    writer.add_text("comparison", text, 0)
    table = []
    judged = summary.get("judge") is not None
    common, own_means = like_with_like(summary["results"])
    own_reps = common_mean_replicates(summary["results"])
    jcommon, judge_means = like_with_like(summary["results"], "judge") if judged else ([], [])
    judge_reps = common_mean_replicates(summary["results"], "judge") if judged else []
    classes = by_class(summary)
    for m, r in enumerate(summary["results"]):
        slug = stems[m]
        rows = [f"{n} -> {attrs[t]}{'' if c else ' (x)'}" for n, t, c in zip(r["names"], r["target"], r["controls"].tolist())]
        img = _heatmap(r["changes"].numpy(), rows, attrs)
        atomic_write(out / f"effects_{slug}.png", lambda f: Image.fromarray(img).save(f, format="PNG"))
        writer.add_image(f"effects/{slug}", img, 0, dataformats="HWC")
        mask = r["controls"]
        writer.add_scalar(f"controlled/{slug}", int(len({t for t, c in zip(r['target'], mask.tolist()) if c})), 0)
        if own_means[m] == own_means[m]:
            writer.add_scalar(f"off_target_common/{slug}", own_means[m], 0)
        atomic_write_text(out / f"names_{slug}.tsv", "direction\tnamed\tsign\tpurity\toff_target\tcontrols\n" + "".join(
            f"{_cell(n)}\t{attrs[t]}\t{int(s)}\t{float(p):.4f}\t{float(o):.4f}\t{int(c)}\n"
            for n, t, s, p, o, c in zip(r["names"], r["target"], r["sign"].tolist(), r["purity"], r["off_target"],
                                        mask.tolist())))
        ad_value, ad_reps = common_ad(summary["results"], m, "judge" if judged else None)
        entry = {"run_id": summary["run_id"], "method": r["method"], "file": r["file"], "seconds": None if r["seconds"] != r["seconds"] else r["seconds"],
                 "mean_ad_common": _or_none(ad_value), "mean_ad_common_ci": [_or_none(v) for v in interval_of(ad_reps)],
                 "controls": _controlled(r, r["target"], attrs),
                 "common_attributes": [attrs[j] for j in common], "mean_off_target_common": _or_none(own_means[m]),
                 "mean_off_target_common_ci": [_or_none(v) for v in interval_of(own_reps[m])],
                 "directions": [{"name": n, "named": attrs[t], "sign": int(r["sign"][i]), "purity": float(p),
                                 "off_target": _or_none(float(o)),
                                 "controls": bool(c), **_side_json(r["side"], i, summary.get("nuisance_factors"))}
                                for i, (n, t, p, o, c) in enumerate(zip(r["names"], r["target"], r["purity"],
                                                                        r["off_target"], mask.tolist()))]}
        if judged:
            jr = r["judge"]
            entry["judge"] = {"source": summary["judge"], "controls": _controlled(jr, r["target"], attrs),
                              "common_attributes": [attrs[j] for j in jcommon],
                              "mean_off_target_common": _or_none(judge_means[m]),
                              "mean_off_target_common_ci": [_or_none(v) for v in interval_of(judge_reps[m])],
                              "directions": [{"purity": float(p), "off_target": _or_none(float(o)), "controls": bool(c)}
                                             for p, o, c in zip(jr["purity"], jr["off_target"], jr["controls"].tolist())]}
        if classes:
            entry["by_class"] = {str(c): {"controls": _controlled(per[m], r["target"], attrs),
                                          "common_attributes": [attrs[j] for j in common],
                                          "mean_off_target_common": _or_none(means[m])}
                                 for c, (common, per, means) in classes.items()}
        table.append(entry)
    writer.close()
    atomic_write_text(out / "comparison.json", json.dumps(table, indent=1, default=lambda x: None))
