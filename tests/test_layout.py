"""The README's stage table stays true: each stage's notebook, module, command, tests and benchmark exist."""

import importlib.util
import re

import pytest

from conftest import PROJECT_ROOT
from platelab import cli

README = PROJECT_ROOT / "README.md"
MARKER = "<!-- stage-table: checked by tests/test_layout.py -->"
STAGES = (
    "synthesize",
    "collect",
    "curate",
    "annotate",
    "review",
    "merge",
    "train",
    "analyze",
    "deploy",
)


def stage_rows(text):
    """The stage table under MARKER: {stage: {column: cell}}, cells as written."""
    lines = text[text.index(MARKER) :].splitlines()[1:]
    table = []
    for line in lines:
        if not line.startswith("|"):
            break
        table.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    header, rows = table[0], table[2:]
    return {row[0]: dict(zip(header, row, strict=True)) for row in rows}


def code_spans(cell):
    """The `code` spans of a cell, in order."""
    return re.findall(r"`([^`]+)`", cell)


def cli_verbs():
    """Every ``platelab`` subcommand name, aliases included."""
    parser = cli._build_parser()
    (commands,) = (
        action for action in parser._actions if action.choices and action.dest == "==SUPPRESS=="
    )
    return set(commands.choices)


def problems_of(rows, verbs):
    """Every cell of the table that names something missing, as one line each."""
    problems = []
    if list(rows) != list(STAGES):
        problems.append(f"stages {list(rows)}, expected {list(STAGES)}")
    for stage, row in rows.items():
        notebooks = code_spans(row["notebook"])
        if len(notebooks) != 1 or not re.fullmatch(rf"notebooks/\d\d_{stage}\.ipynb", notebooks[0]):
            problems.append(f"{stage}: notebook {notebooks}")
        for path in notebooks:
            if not (PROJECT_ROOT / path).is_file():
                problems.append(f"{stage}: no notebook {path}")
        modules = [span for span in code_spans(row["module"]) if span.startswith("platelab.")]
        if not modules:
            problems.append(f"{stage}: no module")
        for module in modules:
            if importlib.util.find_spec(module) is None:
                problems.append(f"{stage}: no module {module}")
        for verb in code_spans(row["CLI verb"]):
            if verb not in verbs:
                problems.append(f"{stage}: no command platelab {verb}")
        for column, folder in (("tests", "tests/"), ("benchmark", "benchmarks/")):
            paths = code_spans(row[column])
            if column == "tests" and not paths:
                problems.append(f"{stage}: no tests")
            for path in paths:
                if not path.startswith(folder) or not (PROJECT_ROOT / path).is_file():
                    problems.append(f"{stage}: no {column} file {path}")
    return problems


def test_the_readme_stage_table_names_what_exists():
    rows = stage_rows(README.read_text(encoding="utf-8"))
    assert not problems_of(rows, cli_verbs())


def test_each_stage_has_a_command_or_module_of_its_name():
    rows = stage_rows(README.read_text(encoding="utf-8"))
    verbs = cli_verbs()
    for stage, row in rows.items():
        assert stage in verbs or f"platelab.{stage}" in code_spans(row["module"]), stage


def test_the_earlier_command_names_still_work():
    verbs = cli_verbs()
    assert {"synth", "sample", "synthesize", "collect"} <= verbs
    parser = cli._build_parser()
    for old, new in (("synth", "synthesize"), ("sample", "collect")):
        arguments = ["--out", "o"] + (["v.mp4"] if new == "collect" else [])
        assert (
            parser.parse_args([old, *arguments]).handler
            is parser.parse_args([new, *arguments]).handler
        )


@pytest.mark.parametrize(
    "column, cell",
    [
        ("notebook", "`notebooks/01_gather.ipynb`"),
        ("module", "`platelab.gather`"),
        ("CLI verb", "`gather`"),
        ("tests", "`tests/test_gather.py`"),
        ("benchmark", "`benchmarks/bench_gather.py`"),
    ],
)
def test_the_check_fails_on_a_renamed_file(column, cell):
    rows = stage_rows(README.read_text(encoding="utf-8"))
    rows["collect"][column] = cell
    assert problems_of(rows, cli_verbs())
