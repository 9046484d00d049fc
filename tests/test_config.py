"""Profiles, parameter files and stage selection (platelab.config)."""

import pytest

from conftest import write_notebook
from platelab import config
from platelab.config import ConfigError

PARAMETERS = 'workspace: str = "x"  # data folder\ncount: int = 3  # how many\nratio: float = 0.5  # a ratio\nflag: bool = False  # a switch\n'


@pytest.fixture
def notebooks(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    write_notebook(folder / "00_first.ipynb", ["pass"], PARAMETERS)
    write_notebook(folder / "01_second.ipynb", ["pass"], 'workspace: str = "x"  # data folder\n')
    write_notebook(folder / "03_third.ipynb", ["pass"], "")
    (folder / "notes.ipynb").write_text("{}")  # not a stage: no number
    return folder


def test_discover_orders_by_number(notebooks):
    stages = config.discover_stages(notebooks)
    assert [stage.name for stage in stages] == ["00_first", "01_second", "03_third"]


def test_discover_refuses_duplicate_numbers(notebooks):
    write_notebook(notebooks / "01_other.ipynb", ["pass"], "")
    with pytest.raises(ConfigError, match="stage number 01"):
        config.discover_stages(notebooks)


@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        (None, ["00_first", "01_second", "03_third"]),
        ("03,00", ["00_first", "03_third"]),
        ("1", ["01_second"]),
        ("00_first, 03", ["00_first", "03_third"]),
        ("00-01", ["00_first", "01_second"]),
        (["01"], ["01_second"]),
    ],
)
def test_select_stages(notebooks, selection, expected):
    stages = config.discover_stages(notebooks)
    assert [stage.name for stage in config.select_stages(stages, selection)] == expected


@pytest.mark.parametrize("selection", ["02", "07_train", "5-9", "x"])
def test_select_unknown_stage(notebooks, selection):
    stages = config.discover_stages(notebooks)
    with pytest.raises(ConfigError) as error:
        config.select_stages(stages, selection)
    assert "known: 00_first, 01_second, 03_third" in str(error.value)
    assert "\n" not in str(error.value)


def test_load_and_resolve(notebooks, tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(
        "description: test\ncommon:\n  workspace: w\n00_first:\n  count: 5\n  ratio: 2\n'01':\n  workspace: v\n"
    )
    params = config.load_params(path)
    resolved = config.resolve_params(params, config.discover_stages(notebooks))
    assert resolved["00_first"] == {"workspace": "w", "count": 5, "ratio": 2}
    assert resolved["01_second"] == {"workspace": "v"}
    assert resolved["03_third"] == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("common: [1, 2\n", "malformed YAML at line"),
        ("- a\n- b\n", "expected a mapping at the top level, got list"),
        ("common: 3\n", "'common' must be a mapping"),
        ("00_first: 3\n", "section '00_first' must be a mapping"),
    ],
)
def test_malformed_params(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        config.load_params(path)
    assert message in str(error.value)
    assert str(path) in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "00_first:\n  cuont: 1\n",
            "'00_first.cuont' is not a parameter of 00_first (known: count, flag, ratio, workspace)",
        ),
        ("00_first:\n  count: 1.5\n", "'00_first.count' should be int, got float 1.5"),
        ("00_first:\n  count: true\n", "should be int, got bool"),
        ("00_first:\n  flag: 'yes'\n", "should be bool, got str"),
        ("09_none:\n  count: 1\n", "section '09_none' names no stage"),
        ("common:\n  nothing: 1\n", "'common.nothing' is not a parameter of any stage"),
        ("00_first:\n  report_dir: x\n", "is set by the runner"),
    ],
)
def test_resolve_rejects(notebooks, tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    params = config.load_params(path)
    with pytest.raises(ConfigError) as error:
        config.resolve_params(params, config.discover_stages(notebooks))
    assert message in str(error.value)


def test_missing_params_file(tmp_path):
    with pytest.raises(ConfigError, match="parameter file not found"):
        config.load_params(tmp_path / "nope.yaml")


def test_unknown_profile():
    with pytest.raises(ConfigError, match="unknown profile 'nope'.*available: .*default"):
        config.profile_path("nope")


def test_shipped_profiles_resolve():
    stages = config.discover_stages()
    for profile in ("default", "full", "research", "smoke"):
        params = config.load_params(config.profile_path(profile))
        resolved = config.resolve_params(params, stages)
        assert resolved["00_synthesize"]["workspace"] == profile
