"""HTML reports: each stage's rendered notebook, its metrics, and the run's index page.

Notebooks call :func:`save_metrics` at their end; ``platelab run`` renders each
executed notebook with nbconvert (:func:`render_notebook_html`) and keeps
``reports/<run-id>/index.html`` up to date after every stage
(:func:`write_index`).
"""

import datetime
import html
import json
import logging
from pathlib import Path

from platelab import paths
from platelab.atomic import atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)

METRICS_FILENAME = "metrics.json"
NOTEBOOK_FILENAME = "notebook.ipynb"
REPORT_FILENAME = "report.html"


def stage_report_dir(report_dir, stage):
    """Returns the folder a notebook writes its metrics and figures to.

    Args:
        report_dir: the value of the notebook's ``report_dir`` parameter; empty
            when the notebook runs interactively
        stage: the stage's name, e.g. ``"00_synthesize"``

    Returns:
        a Path: ``report_dir`` itself, or ``reports/interactive/<stage>``
    """
    if report_dir:
        return paths.resolve(report_dir)
    return paths.REPORTS_DIR / "interactive" / stage


def save_metrics(report_dir, stage, key_figures, inputs=(), outputs=(), details=None):
    """Writes a stage's ``metrics.json``.

    Args:
        report_dir: the notebook's ``report_dir`` parameter (may be empty)
        stage: the stage's name
        key_figures: a flat dict of the few figures shown on the index page
            (numbers or short strings)
        inputs: fingerprints (:func:`platelab.metadata.fingerprint`) of what
            the stage read
        outputs: fingerprints of what it wrote
        details: any further JSON-serialisable results

    Returns:
        the Path of the written file
    """
    folder = stage_report_dir(report_dir, stage)
    document = {
        "stage": stage,
        "written_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "key_figures": dict(key_figures),
        "inputs": list(inputs),
        "outputs": list(outputs),
        "details": details or {},
    }
    path = folder / METRICS_FILENAME
    atomic_write_json(path, document)
    logger.info("Wrote %s", path)
    return path


def load_metrics(folder):
    """Reads a stage's ``metrics.json``; returns None where it is missing or unreadable."""
    path = Path(folder) / METRICS_FILENAME
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def render_notebook_html(notebook_path, html_path, show_code=False):
    """Renders an executed notebook to a standalone HTML file.

    Figures are embedded (base64) in the notebook already, so the page
    stands alone.

    Args:
        notebook_path: the executed notebook
        html_path: where to write the HTML
        show_code: whether to keep the code cells (hidden by default)
    """
    import nbformat
    from nbconvert import HTMLExporter

    notebook = nbformat.read(str(notebook_path), as_version=4)
    exporter = HTMLExporter(template_name="lab")
    exporter.exclude_input = not show_code
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    # nbconvert warns that matplotlib figures carry no alt text; the captions beside
    # them say what each shows, so keep the run's output to what matters.
    exporter.log.setLevel(logging.ERROR)
    body, _ = exporter.from_notebook_node(notebook)
    atomic_write_text(html_path, body)


def write_index(run_dir, run):
    """Writes ``index.html`` and ``run.json`` for a run.

    Args:
        run_dir: the run's report folder
        run: the run record kept by the runner (see :mod:`platelab.runner`)
    """
    run_dir = Path(run_dir)
    atomic_write_json(run_dir / "run.json", run)
    atomic_write_text(run_dir / "index.html", _index_html(run))


def _index_html(run):
    escape = html.escape
    rows = []
    for stage in run["stages"]:
        status = stage["status"]
        duration = stage.get("duration_s")
        figures = stage.get("key_figures") or {}
        figure_html = "".join(
            f"<div><span class='k'>{escape(str(key))}</span> "
            f"<span class='v'>{escape(_format_value(value))}</span></div>"
            for key, value in figures.items()
        )
        if stage.get("error"):
            figure_html += f"<div class='error'>{escape(stage['error'])}</div>"
        link = stage.get("report")
        name = escape(stage["name"])
        name_html = f"<a href='{escape(link)}'>{name}</a>" if link else name
        rows.append(
            "<tr>"
            f"<td>{name_html}</td>"
            f"<td><span class='status {escape(status)}'>{escape(status)}</span></td>"
            f"<td class='num'>{'' if duration is None else f'{duration:.1f} s'}</td>"
            f"<td>{figure_html}</td>"
            "</tr>"
        )
    meta = run.get("metadata", {})
    git = meta.get("git", {})
    versions = meta.get("versions", {})
    fingerprints = meta.get("inputs", [])
    version_rows = "".join(
        f"<tr><td>{escape(name)}</td><td>{escape(str(version))}</td></tr>"
        for name, version in versions.items()
    )
    fingerprint_rows = "".join(
        f"<tr><td>{escape(item.get('path', ''))}</td><td><code>{escape(item.get('sha256', '')[:16])}"
        f"</code></td><td class='num'>{item.get('files', '')}</td></tr>"
        for item in fingerprints
    )
    commit = git.get("commit") or "not a git checkout"
    dirty = " (uncommitted changes)" if git.get("dirty") else ""
    overall = escape(run.get("status", "running"))
    parameters = escape(json.dumps(run.get("parameters", {}), indent=2))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>platelab run {escape(run["run_id"])}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 1100px; color: #1d2430; padding: 0 1rem; }}
h1 {{ font-size: 1.6rem; margin-bottom: .2rem; }}
.sub {{ color: #5a6473; margin-top: 0; }}
table {{ border-collapse: collapse; width: 100%; margin: 1rem 0; }}
th, td {{ text-align: left; padding: .45rem .6rem; border-bottom: 1px solid #e2e6ec;
         vertical-align: top; }}
th {{ background: #f4f6f9; font-weight: 600; }}
td.num {{ text-align: right; white-space: nowrap; }}
.status {{ padding: .1rem .5rem; border-radius: .8rem; font-size: .85rem; font-weight: 600; }}
.ok {{ background: #d9f2e1; color: #17613a; }}
.failed {{ background: #fbdcdc; color: #8a1c1c; }}
.running {{ background: #fff1c9; color: #7a5800; }}
.pending, .skipped {{ background: #eceff3; color: #4a5360; }}
.k {{ color: #5a6473; }} .v {{ font-weight: 600; }}
.error {{ color: #8a1c1c; font-family: ui-monospace, monospace; font-size: .85rem;
          white-space: pre-wrap; margin-top: .3rem; }}
details {{ margin: 1rem 0; }} summary {{ cursor: pointer; font-weight: 600; }}
pre {{ background: #f4f6f9; padding: .8rem; overflow-x: auto; font-size: .85rem; }}
code {{ font-size: .85rem; }}
</style></head>
<body>
<h1>platelab run <code>{escape(run["run_id"])}</code> <span class="status {overall}">{overall}</span></h1>
<p class="sub">profile <b>{escape(run.get("profile", ""))}</b> &middot;
started {escape(run.get("started_at", ""))} &middot; {escape(run.get("description", ""))}</p>
<table>
<thead><tr><th>stage</th><th>status</th><th>duration</th><th>key figures</th></tr></thead>
<tbody>
{"".join(rows)}
</tbody></table>
<h2>Run metadata</h2>
<table>
<tr><th>git commit</th><td><code>{escape(commit)}</code>{escape(dirty)}</td></tr>
<tr><th>parameters file</th><td>{escape(run.get("params_file", ""))}
 <code>{escape(run.get("params_sha256", "")[:16])}</code></td></tr>
<tr><th>machine</th><td>{escape(json.dumps(meta.get("machine", {})))}</td></tr>
<tr><th>command</th><td><code>{escape(run.get("command", ""))}</code></td></tr>
</table>
<details><summary>Parameters per stage</summary><pre>{parameters}</pre></details>
<details><summary>Input fingerprints</summary>
<table><thead><tr><th>path</th><th>sha256</th><th>files</th></tr></thead>
<tbody>{fingerprint_rows}</tbody></table></details>
<details><summary>Package versions</summary><table>{version_rows}</table></details>
</body></html>
"""


def _format_value(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
