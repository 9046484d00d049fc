"""HTML reports: each stage's rendered notebook, its metrics, and the run's index page.

Notebooks call :func:`save_metrics` at their end; ``platelab run`` renders each
executed notebook with nbconvert (:func:`render_notebook_html`) and keeps
``reports/<run-id>/index.html`` up to date after every stage
(:func:`write_index`).
"""

import dataclasses
import datetime
import html
import json
import logging
import re
from pathlib import Path

from platelab import paths
from platelab.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text

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
    stands alone. The page is cleaned for a reader (:func:`clean_outputs`): library
    log lines leave the red error blocks and paths read relative to the project.

    Args:
        notebook_path: the executed notebook
        html_path: where to write the HTML
        show_code: whether to keep the code cells (hidden by default)
    """
    import nbformat
    from nbconvert import HTMLExporter

    notebook = clean_outputs(nbformat.read(str(notebook_path), as_version=4))
    exporter = HTMLExporter(template_name="lab")
    exporter.exclude_input = not show_code
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    # nbconvert warns that matplotlib figures carry no alt text; the captions beside
    # them say what each shows, so keep the run's output to what matters.
    exporter.log.setLevel(logging.ERROR)
    body, _ = exporter.from_notebook_node(notebook)
    atomic_write_text(html_path, body)


LIBRARY_LOG_LINE = re.compile(
    r"^(?:INFO: |WARNING: |[IW]\d{4} \d\d:\d\d:\d|(?:INFO|WARNING):(?:absl|tensorflow|root):|"
    r"fully_quantize: |Estimated count of arithmetic ops|"
    r"WARNING: All log messages before absl::InitializeLog)"
)
"""A line that native libraries (TensorFlow Lite, absl, the TFLite quantizer) write
to stderr as information or a warning, not an error of the stage."""

_INFO_LINE = re.compile(
    r"^(?:INFO: |INFO:\w+:|I\d{4} |fully_quantize: |Estimated count of arithmetic ops)"
)


def clean_outputs(notebook):
    """Prepares an executed notebook's outputs for a report (the notebook file is untouched).

    * Library log lines on stderr (:data:`LIBRARY_LOG_LINE`): INFO lines are dropped
      (they stay in the stage's ``log.txt``), WARNING lines are kept as plain output,
      so neither shows as a red error block. Other stderr text stays as it was.
    * The project root's absolute path is taken out of every text output
      (:func:`platelab.paths.relative_text`).

    Args:
        notebook: an ``nbformat`` notebook node (changed in place)

    Returns:
        the notebook
    """
    for cell in notebook.cells:
        outputs = []
        for output in cell.get("outputs", []):
            outputs += _clean_output(output)
        if "outputs" in cell:
            cell.outputs = outputs
    return notebook


def _clean_output(output):
    """One output as the report shows it: a list of zero, one or two outputs."""
    if output.get("output_type") == "stream":
        text = paths.relative_text(output.get("text", ""))
        if output.get("name") != "stderr":
            output["text"] = text
            return [output]
        kept, plain = [], []
        for line in text.splitlines(keepends=True):
            if not LIBRARY_LOG_LINE.match(line):
                kept.append(line)
            elif not _INFO_LINE.match(line):
                plain.append(line)
        cleaned = []
        if plain:
            cleaned.append({**output, "name": "stdout", "text": "".join(plain)})
        if kept:
            cleaned.append({**output, "text": "".join(kept)})
        return [type(output)(item) for item in cleaned]
    for key in ("data", "text"):
        data = output.get(key)
        if isinstance(data, dict):
            for mime in ("text/plain", "text/html", "text/markdown"):
                if isinstance(data.get(mime), str):
                    data[mime] = paths.relative_text(data[mime])
    if isinstance(output.get("traceback"), list):
        output["traceback"] = [paths.relative_text(line) for line in output["traceback"]]
    if isinstance(output.get("evalue"), str):
        output["evalue"] = paths.relative_text(output["evalue"])
    return [output]


def write_index(run_dir, run):
    """Writes ``index.html`` and ``run.json`` for a run.

    The page opens with the run's :class:`Verdict` (:func:`run_verdict`); the table of
    stages follows. Paths in both files are relative to the project.

    Args:
        run_dir: the run's report folder
        run: the run record kept by the runner (see :mod:`platelab.runner`)
    """
    run_dir = Path(run_dir)
    run = _relative_record(run)
    atomic_write_json(run_dir / "run.json", run)
    try:
        verdict = run_verdict(run_dir, run)
    except Exception as error:  # noqa: BLE001 - a stage's odd metrics.json must not stop the run
        logger.warning("%s: no verdict (%s)", run_dir, error)
        verdict = Verdict(headline="No verdict: a stage's metrics could not be read.",
                          goals=[], frames=[], next_steps=[])  # fmt: skip
    atomic_write_text(run_dir / "index.html", _index_html(run, verdict))


def _relative_record(value):
    """A JSON-like value with the project root taken out of every string in it."""
    if isinstance(value, str):
        return paths.relative_text(value)
    if isinstance(value, dict):
        return {key: _relative_record(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_relative_record(item) for item in value]
    return value


TRACK_TOLERANCE = 0.2
"""The tracker's distinct counts on the novel video may be this share off the true
counts (the ``default`` profile's goal)."""

FRAME_STEM = "verdict"
"""File-name stem of the annotated frames a stage saves for the index page."""


@dataclasses.dataclass
class Verdict:
    """What a run's index page says first, to be read in five seconds.

    Attributes:
        headline: one sentence: goals met, or where the run failed
        goals: ``{"goal", "measured", "target", "met"}`` rows (stage 07's goals and
            stage 08's tracked counts); ``met`` None: not applicable, not counted
        frames: annotated frames, as paths relative to the run's report folder
        next_steps: what to do next, most important first
    """

    headline: str
    goals: list
    frames: list
    next_steps: list


def save_frames(report_dir, stage, images_bgr, max_width=640):
    """Saves annotated frames for the index page's verdict (JPEG, written atomically).

    Args:
        report_dir: the notebook's ``report_dir`` parameter (may be empty)
        stage: the stage's name
        images_bgr: HxWx3 uint8 BGR images
        max_width: wider images are shrunk to this width

    Returns:
        the files' names, relative to the stage's report folder
    """
    import cv2

    folder = stage_report_dir(report_dir, stage)
    names = []
    for number, image in enumerate(images_bgr, 1):
        if image.shape[1] > max_width:
            height = round(image.shape[0] * max_width / image.shape[1])
            image = cv2.resize(image, (max_width, height), interpolation=cv2.INTER_AREA)
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
        if not ok:
            continue
        name = f"{FRAME_STEM}_{number:02d}.jpg"
        atomic_write_bytes(folder / name, encoded.tobytes())
        names.append(name)
    return names


def run_verdict(run_dir, run):
    """Reads a run's stage metrics and says how the detector stands and what to do next.

    Args:
        run_dir: the run's report folder (holding ``<stage>/metrics.json``)
        run: the run record kept by the runner

    Returns:
        a :class:`Verdict`
    """
    run_dir = Path(run_dir)
    records = {stage["name"][:2]: stage for stage in run.get("stages", [])}
    details = {
        number: ((load_metrics(run_dir / record["name"]) or {}).get("details") or {})
        for number, record in records.items()
    }
    goals = [dict(row) for row in details.get("07", {}).get("goals") or []]
    goals += _track_rows(details.get("08", {}).get("video") or {})
    frames = [
        f"{records['07']['name']}/{name}"
        for name in details.get("07", {}).get("verdict_frames") or []
    ]
    failed = [record for record in run.get("stages", []) if record.get("status") == "failed"]
    steps = [
        f"Stage {record['name']} failed ({record.get('error', 'see its report')}): "
        "fix that first, then rerun from it with --stages."
        for record in failed
    ]
    steps += _next_steps(goals, details)
    judged = [row for row in goals if row.get("met") is not None]
    missed = [row for row in judged if not row["met"]]
    if failed:
        headline = f"The run failed at {failed[0]['name']}."
    elif not judged:
        headline = "No goals measured yet: stages 07 and 08 measure the detector."
    elif not missed:
        headline = f"All {len(judged)} goals met."
    else:
        headline = f"{len(judged) - len(missed)} of {len(judged)} goals met."
    finished = all(record.get("status") in ("ok", "skipped") for record in run.get("stages", []))
    if finished and judged and not missed and records.get("08", {}).get("status") == "ok":
        steps.append("The detector is ready to deploy: stage 08's exports carry their model cards.")
    return Verdict(headline=headline, goals=goals, frames=frames, next_steps=steps)


def _track_rows(video):
    """Goal rows for the tracker's distinct counts against the novel video's true counts.

    Where stage 08 broke the counts down (``details.video.breakdown``, see
    :func:`platelab.groundtruth.count_breakdown`), the row says where the count came from.
    """
    rows = []
    if video.get("tracks") is None:
        return rows
    breakdown = video.get("breakdown") or {}
    for label, true in (video.get("true_counts") or {}).items():
        tracked = video["tracks"].get(label, 0)
        if not true:
            continue
        off = (tracked - true) / true
        measured = f"{tracked} against {true} true ({off:+.0%})"
        parts = breakdown.get(label)
        if parts:
            measured += (
                f": {true - parts['missed']} followed, {parts['missed']} missed, "
                f"{parts['fragments']} extra, {parts['false']} on nothing, {parts['ignored']} "
                f"on {label.replace('_', ' ')}s too small to count"
            )
        rows.append(
            {
                "goal": f"distinct {label.replace('_', ' ')}s tracked on the novel video",
                "measured": measured,
                "target": f"within {TRACK_TOLERANCE:.0%}",
                "met": abs(off) <= TRACK_TOLERANCE + 1e-9,
            }
        )
    return rows


def _target_value(row):
    """The number in a goal row's ``target`` (``">= 0.8"`` gives 0.8), or None."""
    try:
        return float(str((row or {}).get("target", "")).split()[-1])
    except (IndexError, ValueError):
        return None


def _next_steps(goals, details):
    """Advice from the goals missed and the figures that explain them."""
    steps = []
    missed = {row["goal"]: row for row in goals if row.get("met") is False}
    train, analysis = details.get("06", {}), details.get("07", {})
    heldout_missed = [goal for goal in missed if goal.startswith("held-out AP50")]
    table = train.get("starter_table") or []
    starter = next((row for row in table if row.get("model", "").startswith("starter")), None)
    mine = next((row for row in table if row.get("model", "").startswith("this run")), None)
    lost = [
        label
        for label in ("vehicle", "license_plate")
        if starter
        and mine
        and None not in (starter.get(label), mine.get(label))
        and mine[label] < starter[label] - 0.005
    ]
    if heldout_missed and lost:
        figures = ", ".join(f"{label} {starter[label]:.3f} -> {mine[label]:.3f}" for label in lost)
        steps.append(
            f"Fine-tuning lost held-out accuracy against the starter as is ({figures}): lower "
            "06's learning_rate or train fewer steps, or annotate more frames."
        )
    trend, state = train.get("map_trend") or {}, train.get("state") or {}
    if heldout_missed and state.get("status") == "time_limited" and trend.get("rising"):
        steps.append(
            "Train longer: stage 06 stopped at its time limit with validation mAP still "
            "rising (raise max_minutes or steps)."
        )
    plate_goal = next((row for goal, row in missed.items() if "license_plate" in goal), None)
    small = next(
        (
            b
            for b in (analysis.get("heldout") or {}).get("plate_heights") or []
            if b.get("low") == 8.0
        ),
        None,
    )
    plate_target = _target_value(plate_goal)
    if (
        plate_goal
        and small
        and small.get("num_gt")
        and small.get("AP50") is not None
        and (plate_target is None or small["AP50"] < plate_target)
    ):
        steps.append(
            f"More plates under 16 px high are needed: held-out AP50 {small['AP50']:.3f} on "
            f"{small['num_gt']} plates 8-16 px high. Annotate frames with small plates, or "
            "raise 06's infer_size."
        )
    if (analysis.get("overfitting") or {}).get("overfitting"):
        steps.append("Validation loss rose while training loss fell: more data, or stop earlier.")
    if heldout_missed and not steps:
        steps.append(
            "Look at stage 07's breakdowns and error galleries for where it fails (vantage, "
            "lighting, object size) and annotate more frames like those."
        )
    breakdown = ((details.get("08") or {}).get("video") or {}).get("breakdown") or {}
    for goal, row in missed.items():
        if not goal.startswith("distinct "):
            continue
        label = goal.split(" tracked")[0].removeprefix("distinct ")
        parts = breakdown.get(label.removesuffix("s").replace(" ", "_"))
        if parts:
            steps += _count_advice(label, parts, over="(+" in row["measured"])
        elif "(+" in row["measured"]:
            steps.append(
                f"The tracker over-counts {label}: tracks break up. Raise 08's threshold, or "
                "improve the detector's recall so that tracks are not lost."
            )
        else:
            steps.append(
                f"The tracker under-counts {label}: detections are missed. Lower 08's "
                "threshold, or improve the detector on objects like these."
            )
    return steps


def _count_advice(label, parts, over):
    """Advice for a count goal missed, from where the count came from (the breakdown of
    :func:`platelab.groundtruth.count_breakdown`): each cause that pushed it the way it
    went."""
    advice = []
    if over and parts["fragments"]:
        advice.append(
            f"The tracker over-counts {label}: {parts['fragments']} extra track(s) on an "
            "object already followed (tracks break up). Improve the detector's recall so "
            "that tracks are not lost, or raise 08's threshold."
        )
    if over and parts["false"]:
        advice.append(
            f"The tracker over-counts {label}: {parts['false']} track(s) on nothing (false "
            "detections held for min_hits frames). Raise 08's threshold."
        )
    if over and parts["ignored"]:
        advice.append(
            f"The tracker over-counts {label}: {parts['ignored']} track(s) follow {label} "
            "the truth does not count (too small or hidden in every frame): the detector "
            "finds them, so the tracker is not at fault there."
        )
    if not over and parts["missed"]:
        advice.append(
            f"The tracker under-counts {label}: {parts['missed']} of them no track followed. "
            "Lower 08's threshold, or improve the detector on objects like these."
        )
    return advice


_INDEX_CSS = """\
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 1100px; color: #1d2430; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
.sub { color: #5a6473; margin-top: 0; }
table { border-collapse: collapse; width: 100%; margin: 1rem 0; }
th, td { text-align: left; padding: .45rem .6rem; border-bottom: 1px solid #e2e6ec;
         vertical-align: top; }
th { background: #f4f6f9; font-weight: 600; }
td.num { text-align: right; white-space: nowrap; }
.status { padding: .1rem .5rem; border-radius: .8rem; font-size: .85rem; font-weight: 600; }
.ok { background: #d9f2e1; color: #17613a; }
.failed { background: #fbdcdc; color: #8a1c1c; }
.running { background: #fff1c9; color: #7a5800; }
.pending, .skipped { background: #eceff3; color: #4a5360; }
.k { color: #5a6473; } .v { font-weight: 600; }
.error { color: #8a1c1c; font-family: ui-monospace, monospace; font-size: .85rem;
          white-space: pre-wrap; margin-top: .3rem; }
details { margin: 1rem 0; } summary { cursor: pointer; font-weight: 600; }
pre { background: #f4f6f9; padding: .8rem; overflow-x: auto; font-size: .85rem; }
code { font-size: .85rem; }
.verdict { border: 1px solid #d5dbe3; border-radius: .6rem; padding: .8rem 1.2rem;
            margin: 1rem 0 1.5rem; background: #fbfcfd; }
.verdict h2 { margin: .2rem 0 .6rem; font-size: 1.25rem; }
.verdict table { margin: .4rem 0; }
.met { color: #17613a; font-weight: 700; white-space: nowrap; }
.missed { color: #8a1c1c; font-weight: 700; white-space: nowrap; }
.na { color: #5a6473; white-space: nowrap; }
.frames { display: flex; gap: .6rem; flex-wrap: wrap; margin: .6rem 0; }
.frames img { width: 32%; min-width: 220px; border-radius: .3rem; border: 1px solid #d5dbe3; }
.next li { margin: .25rem 0; }
"""
"""The run index page's style sheet."""


def _index_html(run, verdict):
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
{_INDEX_CSS}</style></head>
<body>
<h1>platelab run <code>{escape(run["run_id"])}</code> <span class="status {overall}">{overall}</span></h1>
<p class="sub">profile <b>{escape(run.get("profile", ""))}</b> &middot;
started {escape(run.get("started_at", ""))} &middot; {escape(run.get("description", ""))}</p>
{_verdict_html(verdict)}
<h2>Stages</h2>
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


_GOAL_MARKS = {
    True: ("met", "&#10003; met"),
    False: ("missed", "&#10007; missed"),
    None: ("na", "&ndash; n/a"),
}


def _verdict_html(verdict):
    """The verdict block: headline, goals, a few annotated frames, next steps."""
    escape = html.escape
    rows = "".join(
        "<tr>"
        f"<td class='{_GOAL_MARKS[row.get('met')][0]}'>{_GOAL_MARKS[row.get('met')][1]}</td>"
        f"<td>{escape(str(row.get('goal', '')))}</td>"
        f"<td>{escape(str(row.get('measured', '')))}</td>"
        f"<td>{escape(str(row.get('target', '')))}</td>"
        "</tr>"
        for row in verdict.goals
    )
    goals = (
        "<table><thead><tr><th></th><th>goal</th><th>measured</th><th>target</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
        if rows
        else ""
    )
    frames = "".join(
        f"<img src='{escape(frame)}' alt='annotated test frame {number}: predictions at the "
        "operating threshold, missed boxes marked'>"
        for number, frame in enumerate(verdict.frames, 1)
    )
    frames_html = (
        f"<div class='frames'>{frames}</div><p class='sub'>Test-split frames: predictions at the "
        "operating threshold (vehicles blue, plates yellow); missed objects in red.</p>"
        if frames
        else ""
    )
    steps = "".join(f"<li>{escape(step)}</li>" for step in verdict.next_steps)
    steps_html = f"<h3>Next</h3><ul class='next'>{steps}</ul>" if steps else ""
    return (
        f"<section class='verdict'><h2>{escape(verdict.headline)}</h2>"
        f"{goals}{frames_html}{steps_html}</section>"
    )


def _format_value(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
