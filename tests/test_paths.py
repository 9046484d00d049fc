"""File names made safe (platelab.paths.safe_name, safe_file_name).

The path rules themselves (:func:`platelab.paths.from_cwd`) are tested with the
commands in test_cli_paths.py.
"""

import pytest

from platelab import paths


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("batch-01_a.v2", "batch-01_a.v2"),
        ("day 1/a b", "day_1_a_b"),
        ("  x  ", "_x_"),
        ("été", "_t_"),
        ("..", ".."),
        (7, "7"),
        ("", "batch"),
    ],
)
def test_safe_name(name, expected):
    assert paths.safe_name(name) == expected


def test_safe_name_fallback():
    assert paths.safe_name("", fallback="other") == "other"
    assert paths.safe_name("???", fallback="other") == "_"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("frame_0001.png", "frame_0001.png"),
        ("sub/dir/x.png", "sub__dir__x.png"),
        ("a b/c.png", "a_b__c.png"),
        ("/abs.png", "abs.png"),
        ("../up.png", "up.png"),
        (".hidden_", "hidden"),
        ("..", "image"),
        ("", "image"),
    ],
)
def test_safe_file_name(name, expected):
    assert paths.safe_file_name(name) == expected


def test_safe_file_name_keeps_slashes_apart_from_underscores():
    assert paths.safe_file_name("a/b.png") != paths.safe_file_name("a_b.png")
    assert paths.safe_file_name("", fallback="batch") == "batch"


def test_display_and_relative_text(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "PROJECT_ROOT", tmp_path / "proj")
    assert paths.display(tmp_path / "proj" / "data" / "x") == "data/x"
    assert paths.display(tmp_path / "elsewhere") == str(tmp_path / "elsewhere")
    root = str(tmp_path / "proj")
    text = f"see {root}/data/x, {root} and {root}2/y"
    assert paths.relative_text(text) == f"see data/x, . and {root}2/y"
    # Only the root as a whole path: not a sibling, a backup or a longer path ending in it.
    for other in (f"{root}-old/x", f"{root}.bak/y", f"/mnt{root}/data"):
        assert paths.relative_text(f"at {other} now") == f"at {other} now"
    assert paths.relative_text(f"'{root}/' and ({root})") == "'./' and (.)"
