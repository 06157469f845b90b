"""latentnav.names: names from data -> one safe file name each, unique; what cannot be made safe is one line."""

import pytest

from latentnav.errors import ConfigError, DataFormatError
from latentnav.names import MAX_STEM, safe_stem, unique_stems


@pytest.mark.parametrize("name, stem", [
    ("Smiling", "Smiling"), ("sefa03", "sefa03"), ("method A", "method A"), ("Black_Hair", "Black_Hair"),
    ("GANSpace (z, module.fc)", "GANSpace (z, module.fc)"), ("Lächeln", "Lächeln"),
    ("../../escape", "____escape"), ("/etc/passwd", "_etc_passwd"), ("a/b", "a_b"), ("a\\b", "a_b"),
    (".hidden", "_hidden"), ("..", "_"), ("a..b", "a_b"), ("x.", "x"), ("tab\there", "tab_here"),
    ("new\nline", "new_line"), ("nul\x00", "nul_"), ("C:x", "C_x"), ("what?", "what_"), ("CON", "_CON"),
])
def test_safe_stem(name, stem):
    assert safe_stem(name) == stem
    assert safe_stem(stem) == stem  # idempotent: a stem is its own stem


def test_long_names_are_cut_with_a_hash_that_keeps_them_apart():
    a, b = safe_stem("n" * 300), safe_stem("n" * 299 + "m")
    assert len(a) == len(b) == MAX_STEM and a != b and a[:-9] == b[:-9] and a[-9] == "-"
    assert safe_stem(a) == a
    wide = safe_stem("é" * 200)  # two bytes each: bounded in bytes too
    assert len(wide.encode()) <= MAX_STEM and wide.startswith("é") and safe_stem(wide) == wide
    assert safe_stem("n" * MAX_STEM) == "n" * MAX_STEM  # at the bound: unchanged


@pytest.mark.parametrize("name, problem", [("", "is empty"), ("   ", "is empty"), (".", "has nothing a file name can keep")])
def test_empty_names_are_refused_in_one_line(name, problem):
    with pytest.raises(ConfigError) as error:
        safe_stem(name, "d.npz: direction name")
    assert str(error.value) == f"d.npz: direction name: {name!r} {problem}; it cannot name a file (rename it)"


def test_unique_stems():
    assert unique_stems(["Smiling", "Male"]) == ["Smiling", "Male"]
    # different names that meet once made safe (or only by case, as a case-insensitive file system sees them)
    assert unique_stems(["a/b", "a_b", "A_B"]) == ["a_b", "a_b-2", "A_B-3"]
    with pytest.raises(ConfigError, match=r"^--attributes: 'x', 'y' given more than once; each name must be unique"):
        unique_stems(["x", "y", "x", "z", "y", "x"], "--attributes")
    assert unique_stems(["x", "x", "x"], on_duplicate="number") == ["x", "x-2", "x-3"]
    long = unique_stems(["n" * 300, "n" * 300], on_duplicate="number")
    assert long[1] == long[0][:MAX_STEM - 2] + "-2" and len(long[1]) == MAX_STEM
    with pytest.raises(ConfigError, match="is empty"):
        unique_stems(["ok", ""], "names")


def test_method_stems_of_the_comparison():
    from latentnav.commands.comparison_report import _cell, method_stems

    assert method_stems(["method A", "GANSpace (z, module.fc)"]) == ["method_A", "GANSpace_z_module_fc"]
    assert method_stems(["../../m", "SeFa", "SeFa", "sefa", "", "x" * 200]) == [
        "m", "SeFa", "SeFa-2", "sefa-3", "method", "x" * 60]
    assert _cell("a\tb\nc") == "a b c"


def test_a_name_on_two_rows_is_one_line():
    from latentnav.directions_file import row_of
    from latentnav.commands.edit import edit_tags

    found = {"names": ["a", "dup", "b", "dup"]}
    assert row_of(found, "b", "d.npz") == 2
    with pytest.raises(DataFormatError, match=r"^d.npz: direction name 'dup' is on rows \[1, 3\]; a name must pick "
                                              r"one row \(rename the duplicates\)$"):
        row_of(found, "dup", "d.npz")
    with pytest.raises(ConfigError, match="attribute 'c' is not in the directions file; it has a dup b dup"):
        row_of(found, "c", "d.npz")
    assert edit_tags(["a/b", "c"], ["../k"], True) == ["a_b_keep___k_guided", "c_keep___k_guided"]
    with pytest.raises(ConfigError, match="--keep: '' is empty"):
        edit_tags(["a"], [""], False)
