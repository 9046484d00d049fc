"""Conventions every stage notebook follows, and smoke runs through papermill."""

import ast
import re

import nbformat
import pytest

from conftest import read_json
from platelab import config, runner

STAGES = config.discover_stages()
PARAMETER_LINE = re.compile(
    r"^(?P<name>[a-z_][a-z0-9_]*): (?P<type>int|float|str|bool|list|dict)"
    r" = (?P<value>.+?)  # (?P<help>\S.*)$"
)


@pytest.fixture(params=STAGES, ids=[stage.name for stage in STAGES])
def notebook(request):
    return request.param, nbformat.read(str(request.param.path), as_version=4)


def test_there_are_stages():
    assert STAGES and STAGES[0].name == "00_synthesize"


def test_title_and_purpose(notebook):
    stage, document = notebook
    first = document.cells[0]
    assert first.cell_type == "markdown"
    lines = [line for line in first.source.splitlines() if line.strip()]
    assert lines[0].startswith("# "), f"{stage.name}: first cell must start with a '# ' title"
    assert len(lines) >= 2, f"{stage.name}: a one-line purpose must follow the title"
    last = document.cells[-1]
    assert last.cell_type == "markdown" and "summary" in last.source.lower(), (
        f"{stage.name}: the last cell must be a markdown summary"
    )


def test_parameters_cell(notebook):
    stage, document = notebook
    tagged = [cell for cell in document.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{stage.name}: exactly one cell tagged 'parameters'"
    cell = tagged[0]
    assert cell.cell_type == "code"
    names = []
    for line in cell.source.splitlines():
        if not line.strip():
            continue
        match = PARAMETER_LINE.match(line)
        assert match, (
            f"{stage.name}: parameter line not 'name: type = literal  # comment': {line!r}"
        )
        value = ast.literal_eval(match["value"])  # literals only: nothing derived or heavy
        expected = {
            "int": int,
            "float": float,
            "str": str,
            "bool": bool,
            "list": list,
            "dict": dict,
        }
        assert isinstance(value, expected[match["type"]]), f"{stage.name}: {line!r}"
        names.append(match["name"])
    assert "report_dir" in names, f"{stage.name}: needs a report_dir parameter for the runner"
    # Nothing but imports and markdown before the parameters cell.
    before = document.cells[: document.cells.index(cell)]
    for earlier in before:
        if earlier.cell_type == "code":
            tree = ast.parse(earlier.source)
            assert all(isinstance(node, (ast.Import, ast.ImportFrom)) for node in tree.body), (
                f"{stage.name}: only imports may come before the parameters cell"
            )


def test_papermill_documents_every_parameter(notebook):
    stage, document = notebook
    declared = config.declared_parameters(stage.path)
    (cell,) = [cell for cell in document.cells if "parameters" in cell.metadata.get("tags", [])]
    lines = [line for line in cell.source.splitlines() if line.strip()]
    assert len(declared) == len(lines), (
        f"{stage.name}: papermill could not parse every parameter line"
    )
    for name, info in declared.items():
        assert info["help"], f"{stage.name}: parameter {name} has no help comment"
        assert info["type"] != "None", f"{stage.name}: parameter {name} has no type annotation"


def test_committed_without_outputs(notebook):
    stage, document = notebook
    for cell in document.cells:
        if cell.cell_type == "code":
            assert not cell.outputs, f"{stage.name}: committed with outputs"
            assert cell.execution_count is None, f"{stage.name}: committed with execution counts"
    assert document.metadata.get("kernelspec", {}).get("name") == "python3"
    assert "papermill" not in document.metadata


@pytest.mark.slow
def test_smoke_chain(tmp_path):
    """Every stage, in order, through papermill with the tiny smoke profile."""
    params = tmp_path / "smoke.yaml"
    text = (config.paths.PARAMS_DIR / "smoke.yaml").read_text()
    params.write_text(text.replace("workspace: smoke", f"workspace: {tmp_path / 'work'}"))
    run = runner.run_chain(
        params_file=params, reports_dir=tmp_path / "reports", run_id="smoke", echo=print
    )
    failures = {
        stage["name"]: stage.get("error") for stage in run["stages"] if stage["status"] != "ok"
    }
    assert run["status"] == "ok", failures
    run_dir = tmp_path / "reports" / "smoke"
    index = (run_dir / "index.html").read_text()
    for stage in STAGES:
        report = (run_dir / stage.name / "report.html").read_text()
        assert "Traceback" not in report
        assert "data:image/png;base64" in report, f"{stage.name}: report has no figure"
        assert stage.name in index
        assert read_json(run_dir / stage.name / "metrics.json")["key_figures"]
    # The goals are measured and reported: input throughput (06), held-out video (07).
    annotate = read_json(run_dir / "03_annotate" / "metrics.json")["key_figures"]
    # No trained model in a fresh workspace: the shipped starter pre-annotates the tasks.
    assert annotate["pre-annotated by"].startswith("starter ")
    training = read_json(run_dir / "06_train" / "metrics.json")
    assert 0 < training["key_figures"]["input ratio"] < 5
    assert training["details"]["throughput"]["steps"] == 2
    starter_rows = training["details"]["starter_table"]
    assert [row["model"] for row in starter_rows][:2] == [
        "starter, zero-shot (no fine-tuning)",
        "this run (fine-tuned)",
    ]
    assert all(row["frames"] == 10 for row in starter_rows[:2])
    analysis = read_json(run_dir / "07_analyze" / "metrics.json")
    # 2 videos of 1 s at 5 fps, every 2nd frame (2 a second of 5): frames 0, 2, 4.
    assert analysis["key_figures"]["held-out frames"] == 2 * 3
    assert 0 <= analysis["key_figures"]["held-out AP50 vehicle"] <= 1
    plates = analysis["key_figures"]["held-out AP50 license_plate"]
    assert plates is None or 0 <= plates <= 1  # None: no plate big enough at 320x180
    goal_names = [row["goal"] for row in analysis["details"]["goals"]]
    assert "input pipeline throughput" in goal_names
    assert "held-out AP50 license_plate (full profile)" in goal_names
    assert "Goals" in (run_dir / "07_analyze" / "report.html").read_text()
    # 08's tracks, each assigned to the novel video's truth object it followed.
    video = read_json(run_dir / "08_deploy" / "metrics.json")["details"]["video"]
    assert set(video["breakdown"]) == set(video["true_counts"])
    for label, parts in video["breakdown"].items():
        assert parts["tracks"] == video["tracks"].get(label, 0)
        assert parts["objects"] == video["true_counts"][label]

    # A batch rerun of the review once a model exists: its predictions give mistakenness.
    params.write_text(params.read_text().replace("04_review:\n", "04_review:\n  model: latest\n"))
    rerun = runner.run_chain(
        params_file=params,
        stages="04",
        reports_dir=tmp_path / "reports",
        run_id="review-again",
        echo=print,
    )
    assert rerun["status"] == "ok", rerun["stages"]
    review_report = (
        tmp_path / "reports" / "review-again" / "04_review" / "report.html"
    ).read_text()
    assert "predicted boxes stored from" in review_report


@pytest.mark.slow
def test_stage_00_reproduces_byte_for_byte(tmp_path):
    """The same parameters and seed give the same data files, through the whole runner."""
    fingerprints = []
    for attempt in ("first", "second"):
        params = tmp_path / f"{attempt}.yaml"
        params.write_text(
            f"common:\n  workspace: {tmp_path / attempt}\n  seed: 11\n"
            "00_synthesize:\n  videos: 2\n  seconds: 1.0\n  fps: 4.0\n  width: 320\n  height: 180\n"
        )
        run = runner.run_chain(
            params_file=params,
            stages="00",
            reports_dir=tmp_path / "reports",
            run_id=attempt,
            echo=print,
        )
        assert run["status"] == "ok", run["stages"]
        metrics = read_json(tmp_path / "reports" / attempt / "00_synthesize" / "metrics.json")
        fingerprints.append(metrics["outputs"][0])
    assert fingerprints[0]["files"] > 0
    assert fingerprints[0]["sha256"] == fingerprints[1]["sha256"]


def test_notebook_06_defaults_are_the_training_defaults():
    """06's parameters default to TrainConfig's, so the notebook and `platelab train` agree.

    ``seed`` is the exception: it is the workspace's common seed, shared by every stage.
    """
    import dataclasses

    from platelab import train

    path = next(stage.path for stage in config.discover_stages() if stage.name == "06_train")
    cell = next(
        cell
        for cell in nbformat.read(path, as_version=4).cells
        if "parameters" in cell.metadata.get("tags", [])
    )
    defaults = {
        node.target.id: ast.literal_eval(node.value)
        for node in ast.parse(cell.source).body
        if isinstance(node, ast.AnnAssign)
    }
    notebook_values = train.config_values(defaults)
    library = dataclasses.asdict(train.TrainConfig())
    differing = {
        key: (value, library[key])
        for key, value in notebook_values.items()
        if key != "seed" and value != library[key]
    }
    assert differing == {}
    assert notebook_values["init"] == "starter"
