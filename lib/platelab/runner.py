"""Running the notebook chain with papermill.

``platelab run`` executes the stage notebooks in order, each with its
parameters from the profile, and writes under ``reports/<run-id>/``::

    index.html                  every stage's status, duration and key figures
    run.json                    the same, machine-readable, with run metadata
    00_synthesize/notebook.ipynb  the executed notebook
    00_synthesize/report.html   its HTML rendering (code hidden by default)
    00_synthesize/metrics.json  key figures and input fingerprints (from the notebook)
    00_synthesize/log.txt       what the kernel printed

A failing stage stops the chain; the index says which stage failed and why,
and everything written before it stays.
"""

import datetime
import logging
import os
import re
import shlex
import sys
import time
from pathlib import Path

from platelab import config, metadata, paths, reports
from platelab.config import ConfigError

logger = logging.getLogger(__name__)

RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def run_chain(
    profile=None,
    params_file=None,
    stages=None,
    run_id=None,
    notebooks_dir=None,
    reports_dir=None,
    show_code=False,
    kernel_name=None,
    echo=print,
):
    """Runs the selected stages of the chain in order.

    Args:
        profile: a profile name in ``params/`` (default ``"default"`` when no
            ``params_file`` is given)
        params_file: a parameter file to use instead of a profile
        stages: None for every stage, or a selection for
            :func:`platelab.config.select_stages`
        run_id: the report folder's name (default: time and profile)
        notebooks_dir: where the stage notebooks are (default ``notebooks/``)
        reports_dir: where run folders go (default ``reports/``)
        show_code: keep code cells in the HTML reports
        kernel_name: the Jupyter kernel (default: the notebook's own, python3)
        echo: a function receiving one progress line at a time

    Returns:
        the run record (also written to ``run.json``); ``run["status"]`` is
        ``"ok"`` or ``"failed"``

    Raises:
        ConfigError: for a bad profile, parameter file, stage selection, run
            id or output folder, before any stage runs
    """
    if params_file and profile:
        raise ConfigError("give either a profile or a parameter file, not both")
    params_path = Path(params_file) if params_file else config.profile_path(profile or "default")
    params = config.load_params(params_path)
    all_stages = config.discover_stages(notebooks_dir)
    if not all_stages:
        raise ConfigError(
            f"{notebooks_dir or paths.NOTEBOOKS_DIR}: no stage notebooks (NN_name.ipynb)"
        )
    selected = config.select_stages(all_stages, stages)
    resolved = config.resolve_params(params, all_stages)

    started = datetime.datetime.now()
    run_id = run_id or f"{started:%Y%m%d-%H%M%S}-{params.name}"
    if not RUN_ID_PATTERN.match(run_id):
        raise ConfigError(f"invalid run id '{run_id}': use letters, digits, '.', '_' and '-'")
    run_dir = Path(reports_dir or paths.REPORTS_DIR) / run_id
    _check_writable(run_dir)

    run = _new_run_record(run_id, started, params, params_path, selected, resolved)
    reports.write_index(run_dir, run)
    echo(
        f"platelab run {run_id}: {len(selected)} stage(s), report {paths.display(run_dir)}/index.html"
    )

    for record, stage in zip(run["stages"], selected, strict=True):
        if not _run_stage(
            run, record, stage, run_dir, resolved[stage.name], kernel_name, show_code, echo
        ):
            break
    _finish_run(run, run_dir, echo)
    return run


def _new_run_record(run_id, started, params, params_path, selected, resolved):
    """The run record before any stage runs: every selected stage pending, with run metadata."""
    return {
        "run_id": run_id,
        "profile": params.name,
        "description": params.description,
        "params_file": paths.display(params_path),
        "params_sha256": metadata.sha256_file(params_path),
        "command": " ".join(shlex.quote(part) for part in sys.argv),
        "started_at": started.isoformat(timespec="seconds"),
        "status": "running",
        "parameters": {stage.name: resolved[stage.name] for stage in selected},
        "stages": [
            {"name": stage.name, "number": stage.number, "status": "pending"} for stage in selected
        ],
        "metadata": {
            "git": metadata.git_info(),
            "versions": metadata.package_versions(),
            "machine": metadata.machine_info(),
            "inputs": [metadata.fingerprint(params_path, paths.PROJECT_ROOT)]
            + [metadata.fingerprint(stage.path, paths.PROJECT_ROOT) for stage in selected],
        },
    }


def _run_stage(run, record, stage, run_dir, parameters, kernel_name, show_code, echo):
    """Runs one stage and fills in its record (status, duration, report, key figures).

    Args:
        run: the run record; the stage's input fingerprints join its metadata
        record: the stage's entry in ``run["stages"]``
        stage: the stage to run
        run_dir: the run's report folder
        parameters: the stage's resolved parameters
        kernel_name: the Jupyter kernel, or None for the notebook's own
        show_code: keep code cells in the HTML report
        echo: a function receiving one progress line at a time

    Returns:
        True if the stage succeeded, False if it failed (the chain stops)
    """
    stage_dir = run_dir / stage.name
    stage_dir.mkdir(parents=True, exist_ok=True)
    record["status"] = "running"
    reports.write_index(run_dir, run)
    echo(f"[{stage.name}] running")
    begin = time.perf_counter()
    error = _execute_stage(stage, stage_dir, parameters, kernel_name)
    record["duration_s"] = round(time.perf_counter() - begin, 2)
    _render_stage_report(record, stage, stage_dir, show_code)
    if error is None:
        stage_metrics = reports.load_metrics(stage_dir)
        if stage_metrics is None:
            error = f"the notebook wrote no {reports.METRICS_FILENAME}"
        else:
            record["key_figures"] = stage_metrics.get("key_figures", {})
            run["metadata"]["inputs"].extend(stage_metrics.get("inputs", []))
    if error is None:
        record["status"] = "ok"
        echo(f"[{stage.name}] ok in {record['duration_s']:.1f} s")
        return True
    record["status"] = "failed"
    record["error"] = error
    echo(f"[{stage.name}] FAILED after {record['duration_s']:.1f} s: {error}")
    return False


def _render_stage_report(record, stage, stage_dir, show_code):
    """Renders the executed notebook to HTML; the record links it (the notebook if that fails)."""
    notebook_path = stage_dir / reports.NOTEBOOK_FILENAME
    if not notebook_path.exists():
        return
    try:
        reports.render_notebook_html(
            notebook_path, stage_dir / reports.REPORT_FILENAME, show_code=show_code
        )
        record["report"] = f"{stage.name}/{reports.REPORT_FILENAME}"
    except Exception as render_error:  # noqa: BLE001 - a report problem must not hide the stage's
        logger.warning("Could not render %s: %s", notebook_path, render_error)
        record["report"] = f"{stage.name}/{reports.NOTEBOOK_FILENAME}"


def _finish_run(run, run_dir, echo):
    """Marks the stages never reached as skipped, sets the run's status and writes the index."""
    for record in run["stages"]:
        if record["status"] == "pending":
            record["status"] = "skipped"
    failed = any(record["status"] == "failed" for record in run["stages"])
    run["status"] = "failed" if failed else "ok"
    run["finished_at"] = datetime.datetime.now().isoformat(timespec="seconds")
    reports.write_index(run_dir, run)
    index = paths.display(run_dir / "index.html")
    echo(f"platelab run {run['run_id']}: {run['status']}; see {index}")


def _execute_stage(stage, stage_dir, parameters, kernel_name):
    """Executes one notebook; returns None on success or a one-line error."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    parameters = dict(parameters)
    parameters["report_dir"] = str(stage_dir)
    log_path = stage_dir / "log.txt"
    try:
        with open(log_path, "w", encoding="utf-8") as log:
            papermill.execute_notebook(
                str(stage.path),
                str(stage_dir / reports.NOTEBOOK_FILENAME),
                parameters=parameters,
                kernel_name=kernel_name,
                cwd=str(paths.PROJECT_ROOT),
                progress_bar=False,
                log_output=False,
                stdout_file=log,
                stderr_file=log,
                start_timeout=120,
                # The kernel's own start-up log (e.g. ipykernel's warning about TCP
                # without encryption on a loopback-only kernel) is not the stage's output.
                extra_arguments=["--IPKernelApp.log_level=ERROR"],
            )
    except PapermillExecutionError as error:
        evalue = " ".join(str(error.evalue).split())
        return f"{error.ename}: {evalue} (cell {error.exec_count})"
    except KeyboardInterrupt:
        raise
    except Exception as error:  # noqa: BLE001 - a dead kernel, a timeout, a broken notebook...
        text = " ".join(str(error).split()) or type(error).__name__
        return f"{type(error).__name__}: {text}"
    return None


def _check_writable(run_dir):
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as error:
        reason = error.strerror or str(error)
        raise ConfigError(f"{run_dir}: cannot write the run's reports ({reason})") from None
