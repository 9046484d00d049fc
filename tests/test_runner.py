"""The papermill chain runner (platelab.runner) and ``platelab run``."""

import os
import subprocess
import sys

import pytest

from conftest import PROJECT_ROOT, read_json, write_notebook
from platelab import runner
from platelab.config import ConfigError

PARAMETERS = 'workspace: str = ""  # a folder\nreport_dir: str = ""  # set by the runner\n'
SAVE = (
    "from platelab import reports\nreports.save_metrics(report_dir, {name!r}, {{'step': {step}}})"
)


@pytest.fixture
def chain(tmp_path):
    """Four notebooks: two that work (the second needs the first's output), one that fails, one after."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    workspace = tmp_path / "work"
    write_notebook(
        folder / "00_make.ipynb",
        [
            "from pathlib import Path\nPath(workspace).mkdir(parents=True, exist_ok=True)\n"
            "Path(workspace, 'made.txt').write_text('made by 00')",
            SAVE.format(name="00_make", step=0),
        ],
        PARAMETERS,
    )
    write_notebook(
        folder / "01_use.ipynb",
        [
            "from pathlib import Path\ntext = Path(workspace, 'made.txt').read_text()\nprint(text)",
            SAVE.format(name="01_use", step=1),
        ],
        PARAMETERS,
    )
    write_notebook(
        folder / "02_fail.ipynb",
        ["raise ValueError('boom in stage 02')"],
        PARAMETERS,
    )
    write_notebook(
        folder / "03_after.ipynb",
        ["from pathlib import Path\nPath(workspace, 'after.txt').write_text('should not run')"],
        PARAMETERS,
    )
    params = tmp_path / "params.yaml"
    params.write_text(f"description: test chain\ncommon:\n  workspace: {workspace}\n")
    return {
        "notebooks": folder,
        "params": params,
        "workspace": workspace,
        "reports": tmp_path / "reports",
    }


def _run(chain, **kwargs):
    lines = []
    run = runner.run_chain(
        params_file=chain["params"],
        notebooks_dir=chain["notebooks"],
        reports_dir=chain["reports"],
        echo=lines.append,
        **kwargs,
    )
    return run, lines


def test_runs_stages_in_order_with_reports(chain):
    run, lines = _run(chain, stages="00,01", run_id="ordered")
    assert run["status"] == "ok"
    assert [stage["status"] for stage in run["stages"]] == ["ok", "ok"]
    run_dir = chain["reports"] / "ordered"
    for name, step in (("00_make", 0), ("01_use", 1)):
        assert (run_dir / name / "notebook.ipynb").is_file()
        html = (run_dir / name / "report.html").read_text()
        assert "<html" in html
        assert read_json(run_dir / name / "metrics.json")["key_figures"] == {"step": step}
    assert "made by 00" in (run_dir / "01_use" / "log.txt").read_text()
    index = (run_dir / "index.html").read_text()
    assert "00_make/report.html" in index and "01_use/report.html" in index
    recorded = read_json(run_dir / "run.json")
    assert recorded["parameters"]["00_make"]["workspace"] == str(chain["workspace"])
    assert recorded["metadata"]["versions"]["papermill"]
    assert any(item["path"].endswith("params.yaml") for item in recorded["metadata"]["inputs"])
    assert lines[-1].startswith("platelab run ordered: ok")


def test_code_hidden_by_default(chain):
    _run(chain, stages="00", run_id="hidden")
    _run(chain, stages="00", run_id="shown", show_code=True)
    hidden = (chain["reports"] / "hidden" / "00_make" / "report.html").read_text()
    shown = (chain["reports"] / "shown" / "00_make" / "report.html").read_text()
    assert "made.txt" not in hidden
    assert "made.txt" in shown


def test_failing_stage_stops_the_chain(chain):
    run, lines = _run(chain, run_id="failing")
    assert [stage["status"] for stage in run["stages"]] == ["ok", "ok", "failed", "skipped"]
    failed = run["stages"][2]
    assert failed["error"].startswith("ValueError: boom in stage 02")
    assert run["status"] == "failed"
    assert not (chain["workspace"] / "after.txt").exists()
    run_dir = chain["reports"] / "failing"
    index = (run_dir / "index.html").read_text()
    assert "boom in stage 02" in index and "failed" in index
    # The failed stage's notebook and report are kept, with the traceback, and so is everything earlier.
    assert "boom in stage 02" in (run_dir / "02_fail" / "report.html").read_text()
    assert (run_dir / "00_make" / "report.html").is_file()
    assert (chain["workspace"] / "made.txt").read_text() == "made by 00"
    assert any("FAILED" in line for line in lines)


def test_notebook_without_metrics_fails(chain):
    write_notebook(chain["notebooks"] / "04_silent.ipynb", ["x = 1"], PARAMETERS)
    run, _ = _run(chain, stages="04", run_id="silent")
    assert run["stages"][0]["status"] == "failed"
    assert "wrote no metrics.json" in run["stages"][0]["error"]


def test_unwritable_reports_folder(chain, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    chain["reports"] = blocker / "reports"
    with pytest.raises(ConfigError, match="cannot write the run's reports"):
        _run(chain, stages="00")


def test_bad_run_id(chain):
    with pytest.raises(ConfigError, match="invalid run id"):
        _run(chain, run_id="../escape")


def _cli(*args, env_extra=None):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-m", "platelab", *args],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env=env,
        timeout=300,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--profile", "nope"], "platelab: error: unknown profile 'nope'"),
        (["run", "--stages", "42"], "platelab: error: unknown stage '42'"),
        (["run", "--params", "{bad}"], "bad.yaml: malformed YAML at line 3"),
        (["run", "--run-id", "a/b"], "platelab: error: invalid run id"),
        (["run", "--reports", "{blocked}"], "cannot write the run's reports"),
        (["synth", "--out", "x", "--size", "big"], "platelab: error: invalid size 'big'"),
    ],
)
def test_cli_bad_input_is_one_line(tmp_path, args, message):
    bad = tmp_path / "bad.yaml"
    bad.write_text("common:\n  workspace: [unclosed\n")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    args = [arg.format(bad=bad, blocked=blocker / "reports") for arg in args]
    result = _cli(*args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stderr


def test_cli_bad_input_keeps_earlier_reports(tmp_path):
    reports_dir = tmp_path / "reports"
    earlier = reports_dir / "kept"
    earlier.mkdir(parents=True)
    (earlier / "index.html").write_text("earlier run")
    result = _cli("run", "--profile", "nope", "--run-id", "kept", "--reports", str(reports_dir))
    assert result.returncode == 2
    assert (earlier / "index.html").read_text() == "earlier run"


def test_cli_failing_chain_exits_nonzero(chain):
    result = _cli(
        "run",
        "--params",
        str(chain["params"]),
        "--notebooks",
        str(chain["notebooks"]),
        "--reports",
        str(chain["reports"]),
        "--run-id",
        "cli",
        "--stages",
        "00,02,03",
    )
    assert result.returncode == 1
    assert "[02_fail] FAILED" in result.stdout
    assert read_json(chain["reports"] / "cli" / "run.json")["status"] == "failed"


def test_stages_command_documents_parameters():
    result = _cli("stages")
    assert result.returncode == 0, result.stderr
    assert "00_synthesize" in result.stdout
    assert "seed: int = 1234  # random seed" in result.stdout
