"""Stage 07 (analyze): training curves, the stop step, overfitting, run comparisons and sweeps.

A training run folder (written by :mod:`platelab.train`) holds::

    metrics.csv   one row per logged step: step, epoch, elapsed_s, lr, loss, class_loss,
                  box_loss (every log step); val_loss, val_class_loss, val_box_loss, mAP,
                  AP50, AP75, precision, recall, F1 and per-class ``<metric>/<label>``
                  columns (only at evaluation steps, empty elsewhere)
    config.json   the model configuration and every training parameter
    state.json    {"status": running|finished|early_stopped|nan_stopped, "step",
                  "best_step", "best_map"}
    metrics.json  the final figures

:func:`read_run` reads it without ever failing on a missing, empty or cut
``metrics.csv`` (each such thing is one line in ``Run.problems``); the plots
(:func:`plot_losses`, :func:`plot_metrics`, :func:`plot_per_class`,
:func:`plot_comparison`) return matplotlib Figures with labelled axes, a title
and a caption saying what to read from them; :func:`find_stop_step` says where
validation mAP stopped improving and :func:`diagnose_overfitting` whether
validation loss turned up while training loss kept falling;
:func:`compare_runs` tabulates several runs. :func:`run_sweep` (``platelab
sweep --params-grid FILE``) runs ``platelab run`` over a grid of parameters and
writes the comparison table.
"""

import argparse
import concurrent.futures
import csv
import datetime
import hashlib
import html
import itertools
import json
import logging
import math
import re
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from platelab import config, paths, visualize
from platelab.argtypes import positive
from platelab.atomic import atomic_write_json, atomic_write_text
from platelab.config import ConfigError
from platelab.exceptions import PlatelabError
from platelab.train import BASE_COLUMNS, PER_CLASS_METRICS  # metrics.csv's columns

logger = logging.getLogger(__name__)

METRICS_CSV = "metrics.csv"
CONFIG_JSON = "config.json"
STATE_JSON = "state.json"
SUMMARY_JSON = "metrics.json"

KEY_CONFIG = ("input_size", "width", "init", "batch_size")
"""The configuration values :func:`compare_runs` shows for each run."""
MIN_EVALUATIONS = 5
"""Fewer validation evaluations than this: :func:`find_stop_step` does not judge."""
NOISE_MULTIPLE = 3.0
"""The improvement threshold is at least this many noise levels (see :func:`find_stop_step`)."""
TREND_T = 3.0
"""A least-squares slope with a t statistic above this is a significant upward trend."""
STEP_LABEL = "training step (batches)"
SWEEP_KEYS = ("description", "base", "name", "stages", "grid")
"""The keys a sweep's grid file may have."""
_MISSING = object()


class RunError(PlatelabError, ValueError):
    """A run folder that cannot be read at all (one-line message)."""


@dataclass
class Run:
    """A training run folder, as read by :func:`read_run`.

    Attributes:
        name: the folder's name
        path: the folder
        metrics: metrics.csv as a DataFrame, one row per step (sorted; a step
            logged twice keeps its last row), every value a float (NaN where
            empty); always has the :data:`BASE_COLUMNS`, possibly no rows
        config: config.json (empty when absent)
        state: state.json (empty when absent)
        summary: metrics.json (empty when absent)
        problems: one line per problem with the folder's files
        notes: one line per thing worth knowing that is no problem (a resume)
    """

    name: str
    path: Path
    metrics: object
    config: dict = field(default_factory=dict)
    state: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    @property
    def labels(self):
        """The classes with per-class columns holding any value, in config.json's order."""
        found = set()
        for column in self.metrics.columns:
            metric, _, label = column.partition("/")
            if label and metric in PER_CLASS_METRICS and self.metrics[column].notna().any():
                found.add(label)
        configured = self.config_value("labels")
        configured = configured if isinstance(configured, list) else []
        order = [label for label in configured if label in found]
        return order + sorted(found - set(order))

    @property
    def status(self):
        """state.json's status, or ``"unknown"``."""
        return str(self.state.get("status") or "unknown")

    @property
    def last_step(self):
        """The last logged step (None when nothing was logged)."""
        steps = self.metrics["step"].dropna()
        return int(steps.iloc[-1]) if len(steps) else None

    @property
    def elapsed_s(self):
        """Seconds of training at the last row that has them (NaN when none)."""
        values = self.metrics["elapsed_s"].dropna()
        return float(values.iloc[-1]) if len(values) else math.nan

    def has(self, column):
        """Whether a column exists and holds at least one value."""
        return column in self.metrics.columns and bool(self.metrics[column].notna().any())

    def series(self, column):
        """The (steps, values) of one column where it has a finite value.

        Returns:
            two float numpy arrays (empty where the column is missing or empty)
        """
        if column not in self.metrics.columns:
            return np.array([]), np.array([])
        steps = self.metrics["step"].to_numpy(dtype=float)
        values = self.metrics[column].to_numpy(dtype=float)
        keep = np.isfinite(values) & np.isfinite(steps)
        return steps[keep], values[keep]

    def config_value(self, key, default=None):
        """A config.json value, looked up at the top level first, then in nested sections."""
        return _find_key(self.config, key, default)


@dataclass
class StopPoint:
    """Where validation stopped improving (see :func:`find_stop_step` for the rule).

    A StopPoint is always returned; when no stop step was found ``step`` is
    None, the StopPoint is falsy (``if stop:``) and ``reason`` says why.

    Attributes:
        step: the stop step, or None
        value: the best (median-of-three) value up to the stop step, or None
        steps_after: training steps logged after the stop step, or None
        seconds_after: training seconds after it (None without times)
        reason: one line: the rule's verdict with its numbers
        threshold: the improvement threshold used: max(tolerance, 3 x noise)
        noise: the estimated noise level (standard deviation) of one evaluation
        window: the steps that must follow a stop step
        best_step: the step of the best single evaluation (None without any)
        best_value: its value
    """

    step: int | None
    value: float | None
    steps_after: int | None
    seconds_after: float | None
    reason: str
    threshold: float = math.nan
    noise: float = math.nan
    window: float = math.nan
    best_step: int | None = None
    best_value: float | None = None

    def __bool__(self):
        return self.step is not None


@dataclass
class SweepResult:
    """What :func:`run_sweep` did.

    Attributes:
        sweep_dir: ``reports/sweep-<time>/`` (None for a dry run)
        runs: one dict per combination: name, overrides, params_file,
            report_dir, run_dir (the training run folder, or None), status
            (ok, failed, planned), returncode, duration_s, log
        table: the comparison (DataFrame; one row per combination)
    """

    sweep_dir: Path | None
    runs: list
    table: object

    @property
    def run_dirs(self):
        """The training run folders found, one per combination (None where none was found)."""
        return [run["run_dir"] for run in self.runs]


# --------------------------------------------------------------------------------------
# Reading runs


def read_run(run_dir):
    """Reads a training run folder.

    A missing, empty, cut or partly unreadable file is no error: the Run
    holds what could be read, and one line per problem in ``problems``
    (e.g. ``"<path>: metrics.csv truncated at line 57 (kept 55 rows)"``).

    Args:
        run_dir: the run folder

    Returns:
        a :class:`Run`

    Raises:
        RunError: if the folder does not exist (or is not a folder)
    """
    path = Path(run_dir)
    if not path.exists():
        raise RunError(f"{path}: no such run folder")
    if not path.is_dir():
        raise RunError(f"{path}: not a folder")
    problems = []
    notes = []
    metrics = _read_metrics(path, problems, notes)
    config_document = _read_json(path, CONFIG_JSON, problems, required=True)
    state = _read_json(path, STATE_JSON, problems, required=True)
    summary = _read_json(path, SUMMARY_JSON, problems, required=False)
    for line in problems:
        logger.info("%s", line)
    return Run(
        name=path.name,
        path=path,
        metrics=metrics,
        config=config_document,
        state=state,
        summary=summary,
        problems=problems,
        notes=notes,
    )


def find_runs(folder):
    """Lists the training run folders directly under a folder (those with any run file).

    Args:
        folder: e.g. ``data/<workspace>/models``

    Returns:
        the run folders, sorted by name (empty when the folder is missing)
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    markers = (METRICS_CSV, CONFIG_JSON, STATE_JSON)
    return sorted(
        item
        for item in folder.iterdir()
        if item.is_dir() and any((item / marker).is_file() for marker in markers)
    )


def summarize_run(run, metric="mAP", stop=None):
    """The key figures of one run, as a flat dict (NaN where unknown).

    Args:
        run: a :class:`Run`
        metric: the validation metric that picks the best step
        stop: a :class:`StopPoint` (default: :func:`find_run_stop` on ``metric``)

    Returns:
        a dict: run, status, the :data:`KEY_CONFIG` values, steps, minutes,
        evaluations, ``best_<metric>``, best_step, ``AP50/<label>`` (best per
        class), stop_step, problems
    """
    stop = find_run_stop(run, metric) if stop is None else stop
    steps, values = run.series(metric)
    row = {"run": run.name, "status": run.status}
    for key in KEY_CONFIG:
        row[key] = run.config_value(key)
    row["steps"] = run.last_step
    row["minutes"] = run.elapsed_s / 60
    row["evaluations"] = len(values)
    if len(values):
        index = int(np.argmax(values))
        row[f"best_{metric}"] = float(values[index])
        row["best_step"] = int(steps[index])
    else:
        row[f"best_{metric}"] = math.nan
        row["best_step"] = None
    for label in run.labels:
        _, per_class = run.series(f"AP50/{label}")
        row[f"AP50/{label}"] = float(per_class.max()) if len(per_class) else math.nan
    row["stop_step"] = stop.step
    row["problems"] = len(run.problems)
    return row


def per_class_table(run, step=None):
    """The per-class metrics at one evaluation step.

    Args:
        run: a :class:`Run`
        step: the step (default: the step with the best mAP, else the last evaluation)

    Returns:
        a DataFrame indexed by class, one column per metric of
        :data:`PER_CLASS_METRICS` (NaN where not logged); ``attrs["step"]``
        is the step shown (None when there is no evaluation)
    """
    import pandas as pd

    frame = run.metrics
    if step is None:
        steps, values = run.series("mAP")
        if len(values):
            step = int(steps[int(np.argmax(values))])
        else:
            per_class = [column for column in frame.columns if "/" in column]
            evaluated = frame.loc[frame[per_class].notna().any(axis=1), "step"]
            step = int(evaluated.iloc[-1]) if len(evaluated) else None
    rows = {}
    for label in run.labels:
        row = {}
        for metric in PER_CLASS_METRICS:
            column = f"{metric}/{label}"
            value = math.nan
            if step is not None and column in frame.columns:
                found = frame.loc[frame["step"] == step, column]
                value = float(found.iloc[-1]) if len(found) else math.nan
            row[metric] = value
        rows[label] = row
    table = pd.DataFrame.from_dict(rows, orient="index", columns=list(PER_CLASS_METRICS))
    table.index.name = "class"
    table.attrs["step"] = step
    return table


# --------------------------------------------------------------------------------------
# Curves


def smooth(values, weight=0.9):
    """TensorBoard's smoothing: a debiased exponential moving average.

    ``s_i = m_i / (1 - weight**n_i)`` with ``m_i = weight * m_(i-1) + (1 - weight) * x_i``
    over the finite values (``n_i`` of them so far); the debiasing keeps the
    start of the curve from being pulled towards 0. Non-finite values stay
    NaN in the output and do not move the average.

    Args:
        values: a sequence of numbers
        weight: 0 (no smoothing) to below 1 (heavy smoothing)

    Returns:
        a float numpy array of the same length

    Raises:
        ValueError: if weight is outside [0, 1)
    """
    if not 0 <= weight < 1:
        raise ValueError(f"smoothing weight must be in [0, 1), got {weight}")
    values = np.asarray(values, dtype=float)
    result = np.full(values.shape, np.nan)
    average = 0.0
    count = 0
    for index, value in enumerate(values):
        if not np.isfinite(value):
            continue
        average = weight * average + (1 - weight) * value
        count += 1
        result[index] = average / (1 - weight**count)
    return result


def find_stop_step(steps, values, tolerance=0.005, window=None, seconds=None):
    """Finds the step after which a validation curve (mAP) stopped improving.

    The rule, exactly:

    1. The finite (step, value) pairs are sorted by step; fewer than
       :data:`MIN_EVALUATIONS` (5): no judgement.
    2. The noise level ``sigma`` of one evaluation is estimated robustly
       from the raw values: 1.4826 x the median absolute deviation of the
       second differences, divided by sqrt(6) (a linear trend does not
       count as noise).
    3. The improvement threshold is ``tau = max(tolerance, 3 x sigma)``:
       an improvement smaller than three noise levels cannot be told from
       noise.
    4. The curve ``c`` is the running median of three evaluations (removes
       single-evaluation spikes without lagging a rising or flat stretch).
    5. The stop step ``s`` is the earliest evaluation step such that
       (a) no later ``c`` exceeds the best ``c`` up to ``s`` by more than
       ``tau``, (b) at least ``window`` steps follow ``s``, and (c) the raw
       values from ``s`` on show no significant upward trend (a
       least-squares slope with t > 3 whose rise over that span exceeds
       ``tolerance``); where (a) holds but (c) does not, the next steps are
       tried.
    6. The curve must have risen before ``s``: ``s`` is not the first
       evaluation, and the median of the raw values from ``s`` on exceeds
       the first evaluation by more than ``2 x tau``; otherwise there is "no
       improvement to speak of" (pure noise, or flat from the first
       evaluation) and no stop step.

    With no such ``s`` the curve is still improving (or too short to tell).
    A curve that peaks and declines (overfitting) stops at or just before
    its peak.

    Args:
        steps: the evaluation steps
        values: the metric at each (higher is better; NaN allowed)
        tolerance: the smallest improvement that counts, in the metric's
            units (0.005 = half a mAP point)
        window: steps that must follow the stop step (default: a fifth of
            the evaluated span, at least three evaluation intervals)
        seconds: optional training seconds at each step (for seconds_after)

    Returns:
        a :class:`StopPoint`; falsy (step None) when there is no stop step,
        its ``reason`` saying why
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    steps, values, times = _clean_curve(steps, values, seconds)
    if len(values) == 0:
        return StopPoint(None, None, None, None, "no evaluations")
    best_index = int(np.argmax(values))
    best = {"best_step": int(steps[best_index]), "best_value": float(values[best_index])}
    if len(values) < MIN_EVALUATIONS:
        return StopPoint(
            None,
            None,
            None,
            None,
            f"too few evaluations ({len(values)}) to judge; at least {MIN_EVALUATIONS} needed",
            **best,
        )
    sigma = _noise_level(values)
    tau = max(tolerance, NOISE_MULTIPLE * sigma)
    span = steps[-1] - steps[0]
    if window is None:
        window = max(0.2 * span, 3 * float(np.median(np.diff(steps))))
    curve = _median_of_three(values)
    best_so_far = np.maximum.accumulate(curve)
    best_after = np.append(np.maximum.accumulate(curve[::-1])[::-1][1:], -np.inf)
    numbers = {"threshold": tau, "noise": sigma, "window": float(window), **best}
    threshold_text = f"threshold {tau:.3g} = max(tolerance {tolerance:g}, 3 x noise {sigma:.3g})"
    index = int(np.argmax(best_after <= best_so_far + tau))
    while steps[-1] - steps[index] >= window and _rising(steps[index:], values[index:], tolerance):
        index += 1
    if steps[-1] - steps[index] < window:
        return StopPoint(
            None,
            None,
            None,
            None,
            f"no plateau yet: the curve still improved by more than {tau:.3g} (or kept rising) "
            f"within the last {window:.0f} steps ({threshold_text})",
            **numbers,
        )
    level = float(np.median(values[index:]))
    if index == 0 or level - values[0] <= 2 * tau:
        return StopPoint(
            None,
            None,
            None,
            None,
            f"no improvement to speak of: the level from step {steps[index]:.0f} on "
            f"({level:.3f}) is within 2 x {tau:.3g} of the first evaluation ({values[0]:.3f})",
            **numbers,
        )
    return _stop_at(steps, times, index, best_so_far, tau, threshold_text, numbers)


def _stop_at(steps, times, index, best_so_far, tau, threshold_text, numbers):
    """The :class:`StopPoint` of a plateau found at evaluation ``index``."""
    step = int(steps[index])
    seconds_after = None
    if times is not None and np.isfinite(times[-1]) and np.isfinite(times[index]):
        seconds_after = float(times[-1] - times[index])
    return StopPoint(
        step,
        float(best_so_far[index]),
        int(steps[-1] - steps[index]),
        seconds_after,
        f"after step {step} no evaluation beat the best so far ({best_so_far[index]:.3f}) by "
        f"more than {tau:.3g} for {steps[-1] - steps[index]:.0f} steps "
        f"({len(steps) - index - 1} evaluations; {threshold_text})",
        **numbers,
    )


def _clean_curve(steps, values, seconds):
    """The finite ``(step, value)`` pairs sorted by step, one per step (the last given).

    Returns:
        ``(steps, values, times)`` float arrays (``times`` None without ``seconds``)
    """
    steps = np.asarray(steps, dtype=float)
    values = np.asarray(values, dtype=float)
    times = None if seconds is None else np.asarray(seconds, dtype=float)
    keep = np.isfinite(steps) & np.isfinite(values)
    order = np.argsort(steps[keep], kind="stable")
    steps, values = steps[keep][order], values[keep][order]
    times = None if times is None else times[keep][order]
    last = np.append(steps[1:] != steps[:-1], True) if len(steps) else np.array([], dtype=bool)
    return steps[last], values[last], None if times is None else times[last]


def find_run_stop(run, metric="mAP", tolerance=0.005, window=None):
    """:func:`find_stop_step` on a run's validation metric.

    ``steps_after`` and ``seconds_after`` count to the run's last logged row,
    so they say how much training went on after the plateau.

    Args:
        run: a :class:`Run`
        metric: the metrics.csv column (higher is better)
        tolerance: see :func:`find_stop_step`
        window: see :func:`find_stop_step`

    Returns:
        a :class:`StopPoint`
    """
    steps, values = run.series(metric)
    frame = run.metrics
    times = None
    if len(steps):
        by_step = frame.drop_duplicates("step", keep="last").set_index("step")["elapsed_s"]
        times = by_step.reindex(steps).to_numpy(dtype=float)
    stop = find_stop_step(steps, values, tolerance=tolerance, window=window, seconds=times)
    if stop and run.last_step is not None:
        stop.steps_after = int(run.last_step - stop.step)
        end = run.elapsed_s
        start = frame.loc[frame["step"] == stop.step, "elapsed_s"].dropna()
        if np.isfinite(end) and len(start):
            stop.seconds_after = float(end - start.iloc[-1])
    return stop


def diagnose_overfitting(run, threshold=0.05, weight=0.9, val_weight=0.6):
    """Says in words whether validation loss turned up while training loss kept falling.

    Both losses are smoothed (:func:`smooth`; validation loss, evaluated
    less often, with the lighter ``val_weight``). The verdict compares the
    smoothed validation loss at its last evaluation with its minimum: a rise
    of more than ``threshold`` (relative) while the smoothed training loss
    fell over the same steps is overfitting; both rising is instability.

    Args:
        run: a :class:`Run`
        threshold: the relative rise of validation loss that counts (0.05 = 5%)
        weight: smoothing weight of the training loss
        val_weight: smoothing weight of the validation loss

    Returns:
        a dict: ``verdict`` (one sentence), ``overfitting`` (True, False, or
        None when it cannot be judged), ``val_min_step``, ``val_min``,
        ``val_final``, ``val_rise`` (relative), ``train_change`` (relative,
        from the validation minimum to the end), ``threshold``, and for mAP
        ``map_peak_step``, ``map_peak``, ``map_final``, ``map_drop``
        (smoothed likewise; NaN without mAP)
    """
    result = {
        "verdict": "",
        "overfitting": None,
        "val_min_step": None,
        "val_min": math.nan,
        "val_final": math.nan,
        "val_rise": math.nan,
        "train_change": math.nan,
        "threshold": threshold,
        "map_peak_step": None,
        "map_peak": math.nan,
        "map_final": math.nan,
        "map_drop": math.nan,
    }
    map_steps, map_values = run.series("mAP")
    if len(map_values):
        smoothed_map = smooth(map_values, val_weight)
        peak = int(np.nanargmax(smoothed_map))
        result.update(
            map_peak_step=int(map_steps[peak]),
            map_peak=float(smoothed_map[peak]),
            map_final=float(smoothed_map[-1]),
            map_drop=float(smoothed_map[peak] - smoothed_map[-1]),
        )
    val_steps, val_values = run.series("val_loss")
    if len(val_values) < 3:
        result["verdict"] = (
            f"cannot judge overfitting: {len(val_values)} validation loss evaluation(s), "
            "at least 3 needed"
        )
        return result
    smoothed_val = smooth(val_values, val_weight)
    low = int(np.argmin(smoothed_val))
    val_min, val_final = float(smoothed_val[low]), float(smoothed_val[-1])
    rise = (val_final - val_min) / abs(val_min) if val_min else math.inf
    result.update(
        val_min_step=int(val_steps[low]), val_min=val_min, val_final=val_final, val_rise=rise
    )
    train_steps, train_values = run.series("loss")
    train_change = math.nan
    if len(train_values) >= 2:
        smoothed_train = smooth(train_values, weight)
        at_low = float(np.interp(val_steps[low], train_steps, smoothed_train))
        at_end = float(np.interp(val_steps[-1], train_steps, smoothed_train))
        train_change = (at_end - at_low) / abs(at_low) if at_low else math.nan
    result["train_change"] = train_change
    overfitting, verdict = _overfitting_verdict(
        rise, train_change, int(val_steps[low]), low == len(val_values) - 1, threshold
    )
    if overfitting is not None:
        result["overfitting"] = overfitting
    result["verdict"] = verdict
    return result


def _overfitting_verdict(rise, train_change, low_step, low_is_last, threshold):
    """``(overfitting, verdict)`` from the rise of validation loss and the training loss change.

    ``overfitting`` is None where it cannot be told (no training loss).
    """
    if rise > threshold:
        if np.isfinite(train_change) and train_change < 0:
            return True, (
                f"validation loss rose {rise:.0%} from its minimum at step {low_step} while "
                f"training loss fell {-train_change:.0%}: overfitting"
            )
        if np.isfinite(train_change):
            return False, (
                f"validation loss rose {rise:.0%} from its minimum at step {low_step} and "
                f"training loss changed {train_change:+.0%}: unstable training "
                "(learning rate too high?), not overfitting"
            )
        return None, (
            f"validation loss rose {rise:.0%} from its minimum at step {low_step}; without "
            "training loss it cannot be told from unstable training"
        )
    if low_is_last:
        return False, (
            "no sign of overfitting: validation loss still falling (lowest at the last evaluation)"
        )
    return False, (
        f"no sign of overfitting: validation loss flat since step {low_step} "
        f"(within {rise:.1%} of its minimum; {threshold:.0%} would count)"
    )


# --------------------------------------------------------------------------------------
# Figures


def plot_losses(run, stop=None, weight=0.9, val_weight=0.6):
    """Training and validation loss against step, with the learning rate on a second axis.

    Raw values are drawn faint, smoothed ones (:func:`smooth`) bold.

    Args:
        run: a :class:`Run`
        stop: an optional :class:`StopPoint` to mark (:func:`mark_stop`)
        weight: smoothing weight of the training loss
        val_weight: smoothing weight of the validation loss (fewer points)

    Returns:
        the matplotlib Figure
    """
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(10, 4.5))
    drawn = []
    for column, smoothing, color, name in (
        ("loss", weight, "C0", "training loss"),
        ("val_loss", val_weight, "C1", "validation loss"),
    ):
        steps, values = run.series(column)
        if not len(values):
            continue
        marker = "o" if column == "val_loss" else None
        axis.plot(steps, values, color=color, alpha=0.25, linewidth=1, marker=marker, markersize=3)
        axis.plot(steps, smooth(values, smoothing), color=color, linewidth=2, label=name)
        drawn.append(values)
    if drawn:
        every = np.concatenate(drawn)
        if every.min() > 0 and every.max() / every.min() > 20:
            axis.set_yscale("log")
    else:
        _empty_note(axis, "no loss logged")
    axis.set_xlabel(STEP_LABEL)
    axis.set_ylabel("loss (per positive anchor, no unit)")
    handles, labels = axis.get_legend_handles_labels()
    lr_steps, lr_values = run.series("lr")
    if len(lr_values):
        rate_axis = axis.twinx()
        rate_axis.plot(lr_steps, lr_values, color="0.45", linestyle="--", linewidth=1.2)
        rate_axis.set_ylabel("learning rate (dashed)")
        rate_axis.set_ylim(bottom=0)
        rate_axis.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
        handles.append(rate_axis.lines[0])
        labels.append("learning rate")
    if stop is not None:
        line = mark_stop(axis, stop)
        if line is not None:
            handles.append(line)
            labels.append(line.get_label())
    if handles:
        axis.legend(handles, labels, loc="upper right", fontsize=9)
    axis.set_title(f"{run.name}: training and validation loss")
    visualize.add_caption(
        figure,
        "Both losses should fall and level off; validation loss turning up while training "
        "loss keeps falling is overfitting.",
    )
    return figure


def plot_metrics(run, stop=None, metrics=("mAP", "AP50", "precision", "recall")):
    """Validation metrics against step (mAP, AP50, precision, recall).

    Args:
        run: a :class:`Run`
        stop: an optional :class:`StopPoint` to mark (:func:`mark_stop`)
        metrics: the metrics.csv columns to draw (those without values are left out)

    Returns:
        the matplotlib Figure
    """
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(10, 4.5))
    drawn = 0
    for position, metric in enumerate(metrics):
        steps, values = run.series(metric)
        if not len(values):
            continue
        axis.plot(steps, values, marker="o", markersize=3, color=f"C{position}", label=metric)
        drawn += 1
    steps, values = run.series("mAP")
    if len(values) and "mAP" in metrics:
        index = int(np.argmax(values))
        color = f"C{list(metrics).index('mAP')}"
        axis.plot(steps[index], values[index], marker="*", markersize=14, color=color, linestyle="")
        axis.annotate(
            f"best mAP {values[index]:.3f}",
            (steps[index], values[index]),
            textcoords="offset points",
            xytext=(6, 6),
            fontsize=8,
        )
    if not drawn:
        _empty_note(axis, "no validation evaluation logged")
    if stop is not None:
        mark_stop(axis, stop)
    axis.set_ylim(0, 1.02)
    axis.set_xlabel(STEP_LABEL)
    axis.set_ylabel("score (0 to 1)")
    axis.set_title(f"{run.name}: validation metrics")
    if axis.get_legend_handles_labels()[0]:
        axis.legend(loc="lower right", fontsize=9)
    visualize.add_caption(
        figure,
        "mAP should rise and level off; precision well above recall means missed objects, "
        "the reverse false alarms.",
    )
    return figure


def plot_per_class(run, metric="AP50"):
    """One validation curve per class for a per-class metric (``<metric>/<label>`` columns).

    Args:
        run: a :class:`Run`
        metric: one of :data:`PER_CLASS_METRICS`

    Returns:
        the matplotlib Figure
    """
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(10, 4.5))
    for position, label in enumerate(run.labels):
        steps, values = run.series(f"{metric}/{label}")
        if len(values):
            axis.plot(steps, values, marker="o", markersize=3, color=f"C{position}", label=label)
    if axis.get_legend_handles_labels()[0]:
        axis.legend(title="class", loc="lower right", fontsize=9)
    else:
        _empty_note(axis, f"no per-class {metric} logged")
    axis.set_ylim(0, 1.02)
    axis.set_xlabel(STEP_LABEL)
    axis.set_ylabel(f"{metric} (0 to 1)")
    axis.set_title(f"{run.name}: validation {metric} per class")
    visualize.add_caption(
        figure,
        "A class well below the others is the one that needs more examples or a larger input size.",
    )
    return figure


def mark_stop(axis, stop):
    """Marks a stop step on an axis: a vertical dotted line with its step in the legend.

    Args:
        axis: a matplotlib Axes (x in steps)
        stop: a :class:`StopPoint` (nothing is drawn when it has no step)

    Returns:
        the line drawn, or None
    """
    if stop is None or stop.step is None:
        return None
    after = f", {stop.steps_after} steps after" if stop.steps_after is not None else ""
    return axis.axvline(
        stop.step,
        color="0.2",
        linestyle=":",
        linewidth=1.5,
        label=f"stop step {stop.step}{after}",
    )


# --------------------------------------------------------------------------------------
# Comparison


def compare_runs(runs, metric="mAP", tolerance=0.005, window=None):
    """One row per run: key configuration, length, best metric, best AP50 per class, stop step.

    Runs may have different class sets (``AP50/<label>`` is NaN where a run
    lacks the class) and different lengths. ``attrs["notes"]`` holds one
    line per thing that makes the runs hard to compare (different class
    sets, no common steps, no evaluations, problems reading a run).

    Args:
        runs: :class:`Run` objects or run folders
        metric: the validation metric that ranks the runs
        tolerance: see :func:`find_stop_step`
        window: see :func:`find_stop_step`

    Returns:
        a DataFrame: run, status, input_size, width, init, batch_size, steps,
        minutes, evaluations, ``best_<metric>``, best_step, ``AP50/<label>``...,
        stop_step, problems, best (True on the run with the highest
        ``best_<metric>``)
    """
    import pandas as pd

    runs = [run if isinstance(run, Run) else read_run(run) for run in runs]
    rows = [
        summarize_run(run, metric, find_run_stop(run, metric, tolerance=tolerance, window=window))
        for run in runs
    ]
    labels = _union_labels(runs)
    base = ["run", "status", *KEY_CONFIG, "steps", "minutes", "evaluations"]
    columns = [*base, f"best_{metric}", "best_step"]
    columns += [f"AP50/{label}" for label in labels] + ["stop_step", "problems"]
    table = pd.DataFrame(rows, columns=columns)
    for label in labels:
        table[f"AP50/{label}"] = table[f"AP50/{label}"].astype(float)
    scores = table[f"best_{metric}"].astype(float)
    table["best"] = False
    if scores.notna().any():
        table.loc[scores.idxmax(), "best"] = True
    table.attrs["notes"] = _comparison_notes(runs, metric)
    return table


# --------------------------------------------------------------------------------------
# Stage 07's notebook: each cell one call


def run_folder(name, workspace):
    """A run folder named in stage 07's parameters.

    Args:
        name: a run name under ``data/<workspace>/models/``, or a path (one holding a
            ``/`` or starting with ``.``; relative to the project)
        workspace: the workspace name

    Returns:
        the folder's Path (not checked to exist)
    """
    if "/" in name or name.startswith("."):
        return paths.resolve(name)
    return paths.models_dir(workspace) / name


def open_run(run_dir):
    """:func:`read_run`, with what is wrong said in lines instead of raised.

    Args:
        run_dir: the run folder

    Returns:
        ``(run, lines)``: the :class:`Run` (``None`` where the folder cannot be read)
        and its lines ``"problem: ..."`` then ``"note: ..."``
    """
    try:
        run = read_run(run_dir)
    except RunError as error:
        return None, [f"problem: {error}"]
    return run, [f"problem: {line}" for line in run.problems] + [
        f"note: {line}" for line in run.notes
    ]


def stop_line(stop):
    """One line on where validation mAP stopped improving (a :class:`StopPoint` or None)."""
    if stop is None:
        return "no stop step: no evaluations"
    if not stop:
        return f"no stop step: {stop.reason}"
    minutes = f" ({stop.seconds_after / 60:.1f} minutes)" if stop.seconds_after else ""
    return (
        f"validation mAP stopped improving at step {stop.step} (mAP {stop.value:.4f}); "
        f"{stop.steps_after} steps{minutes} ran after it"
    )


def other_runs(names, run_dir, workspace):
    """The run folders to compare a run with: those named, ``"*"`` for every other one.

    Args:
        names: run names or paths (:func:`run_folder`); ``"*"`` adds every run folder of
            the workspace (:func:`find_runs`) other than ``run_dir`` and export folders
            (``*-exports``)
        run_dir: the run analysed (left out of ``"*"``)
        workspace: the workspace name

    Returns:
        a list of Paths, those named first, in the order given
    """
    names = list(names)
    everything = "*" in names
    folders = [run_folder(str(name), workspace) for name in names if name != "*"]
    if everything:
        folders += [
            folder
            for folder in find_runs(paths.models_dir(workspace))
            if folder.resolve() != Path(run_dir).resolve() and not folder.name.endswith("-exports")
        ]
    return folders


def read_runs(run_dirs, first=None):
    """Reads run folders for a comparison, saying which could not be read.

    Args:
        run_dirs: run folders
        first: a :class:`Run` to put first (the one analysed), or ``None``

    Returns:
        ``(runs, lines)``: the :class:`Run` list and one ``"problem: ..."`` line per
        folder that could not be read
    """
    runs = [first] if first is not None else []
    lines = []
    for run_dir in run_dirs:
        run, said = open_run(run_dir)
        if run is None:
            lines += said
        else:
            runs.append(run)
    return runs, lines


TEST_TABLE_KEYS = ("AP", "AP50", "AP75", "precision", "recall", "F1", "num_gt", "num_pred")
"""The figures of stage 07's table of the best model on the held-out split."""


def analysis_figures(run_dir, *, stop, overfitting, split, test_metrics, heldout, trend, init=None):  # fmt: skip
    """Stage 07's few figures for the report index.

    Args:
        run_dir: the run analysed
        stop: its :class:`StopPoint`, or ``None`` without metrics (then ``overfitting``
            is left out too)
        overfitting: :func:`diagnose_overfitting`'s dict
        split: the name of the held-out split (``"test"``)
        test_metrics: the evaluation engine's metrics on it, or ``None``
        heldout: a :class:`platelab.goals.HeldoutEvaluation`, or ``None``
        trend: :func:`platelab.goals.map_trend`'s dict, or ``None``
        init: the run's ``init`` (``"n/a"`` for ``mAP rising`` when it was a detector,
            see :func:`platelab.goals.rising_figure`)

    Returns:
        a flat dict (floats rounded to 4 places): ``run``; ``stop step``,
        ``steps after stop``, ``overfitting``; ``<split> mAP``, ``<split> AP50``,
        ``<split> AP50 <label>``, ``<split> recall``; ``held-out AP50 <label>``,
        ``held-out frames``; ``mAP rising`` (each group only where measured)
    """
    from platelab import goals

    figures = {"run": Path(run_dir).name}
    if stop is not None:
        figures["stop step"] = stop.step if stop else None
        figures["steps after stop"] = stop.steps_after if stop else None
        figures["overfitting"] = overfitting.get("overfitting")
    if test_metrics is not None:
        figures[f"{split} mAP"] = test_metrics.get("AP")
        figures[f"{split} AP50"] = test_metrics.get("AP50")
        for label, values in test_metrics["per_class"].items():
            figures[f"{split} AP50 {label}"] = values.get("AP50")
        figures[f"{split} recall"] = test_metrics.get("recall")
    if heldout is not None:
        for row in goals.goal_rows(heldout.metrics):
            figures[f"held-out AP50 {row['class']}"] = row["AP50"]
        figures["held-out frames"] = heldout.frames
    if trend is not None:
        figures["mAP rising"] = goals.rising_figure(trend, init)
    return {
        key: (round(value, 4) if isinstance(value, float) else value)
        for key, value in figures.items()
    }


def analysis_details(run, run_dir, *, stop, overfitting, test_metrics, heldout, goal_rows, comparison, verdict_frames=()):  # fmt: skip
    """Stage 07's ``details`` for its ``metrics.json``.

    Args:
        run: the :class:`Run`, or ``None`` (not found)
        run_dir: its folder
        stop: its :class:`StopPoint`, or ``None``
        overfitting: :func:`diagnose_overfitting`'s dict
        test_metrics: the metrics on the held-out split, or ``None``
        heldout: a :class:`platelab.goals.HeldoutEvaluation`, or ``None``
        goal_rows: :func:`platelab.goals.goal_table`'s rows
        comparison: :func:`compare_runs`' DataFrame, or ``None``
        verdict_frames: the annotated frames saved for the run's index page
            (:func:`platelab.reports.save_frames`)

    Returns:
        a JSON-ready dict ``problems``, ``stop``, ``overfitting``, ``test_metrics``,
        ``heldout`` (``seed``, ``frames``, ``metrics``, ``plate_heights``,
        ``difficult_below_px``), ``goals``, ``comparison`` (records), ``verdict_frames``
    """
    return {
        "problems": run.problems if run is not None else [f"{run_dir}: not found"],
        "stop": {"step": stop.step, "reason": stop.reason, "steps_after": stop.steps_after}
        if stop is not None
        else None,
        "overfitting": overfitting,
        "test_metrics": test_metrics,
        "heldout": {
            "seed": heldout.seed,
            "frames": heldout.frames,
            "metrics": heldout.metrics,
            "plate_heights": heldout.plate_heights,
            "difficult_below_px": heldout.difficult_below_px,
        }
        if heldout is not None
        else None,
        "goals": goal_rows,
        "comparison": comparison.to_dict("records") if comparison is not None else None,
        "verdict_frames": list(verdict_frames),
    }


def add_to_run_summary(run_dir, *, split, test_metrics, heldout, goal_rows):
    """Adds stage 07's figures to the run's own ``metrics.json`` (model cards quote them).

    Nothing is written where neither ``test_metrics`` nor ``heldout`` is given. An
    unreadable ``metrics.json`` is started anew.

    Args:
        run_dir: the run folder
        split: the held-out split's name: the key ``<split>_metrics`` gets
            ``test_metrics``
        test_metrics: the metrics on the held-out split, or ``None``
        heldout: a :class:`platelab.goals.HeldoutEvaluation`, or ``None``: the key
            ``heldout_metrics`` gets ``seed``, ``frames`` and its metrics
        goal_rows: :func:`platelab.goals.goal_table`'s rows, under ``goals``

    Returns:
        the Path written, or ``None``
    """
    if test_metrics is None and heldout is None:
        return None
    path = Path(run_dir) / SUMMARY_JSON
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        summary = {}
    if test_metrics is not None:
        summary[f"{split}_metrics"] = test_metrics
    if heldout is not None:
        summary["heldout_metrics"] = {
            "seed": heldout.seed,
            "frames": heldout.frames,
            **heldout.metrics,
        }
    summary["goals"] = goal_rows
    atomic_write_json(path, summary)
    return path


def plot_comparison(runs, metric="mAP", x="step"):
    """Overlaid validation curves of several runs; the best run is drawn bold.

    Args:
        runs: :class:`Run` objects or run folders
        metric: the metrics.csv column to draw
        x: ``"step"`` (training steps) or ``"time"`` (training minutes)

    Returns:
        the matplotlib Figure; a boxed note on the plot says what makes the
        runs hard to compare (different class sets, no common steps)
    """
    import matplotlib.pyplot as plt

    if x not in ("step", "time"):
        raise ValueError(f"x must be 'step' or 'time', got {x!r}")
    runs = [run if isinstance(run, Run) else read_run(run) for run in runs]
    figure, axis = plt.subplots(figsize=(10, 4.8))
    bests = []
    for run in runs:
        _, values = run.series(metric)
        bests.append(float(values.max()) if len(values) else -math.inf)
    best_index = int(np.argmax(bests)) if bests and max(bests) > -math.inf else None
    for position, run in enumerate(runs):
        steps, values = run.series(metric)
        if not len(values):
            continue
        where = steps
        if x == "time":
            frame = run.metrics.drop_duplicates("step", keep="last").set_index("step")
            where = frame["elapsed_s"].reindex(steps).to_numpy(dtype=float) / 60
        emphasised = position == best_index
        axis.plot(
            where,
            values,
            marker="o",
            markersize=4 if emphasised else 2,
            linewidth=2.8 if emphasised else 1.2,
            alpha=1.0 if emphasised else 0.65,
            zorder=3 if emphasised else 2,
            color=f"C{position % 10}",
            label=f"{run.name} (best {bests[position]:.3f}){' - best' if emphasised else ''}",
        )
    if best_index is None:
        _empty_note(axis, f"no run has {metric} evaluations")
    else:
        axis.legend(loc="lower right", fontsize=8)
    axis.set_ylim(0, 1.02)
    axis.set_xlabel(STEP_LABEL if x == "step" else "training time (minutes)")
    axis.set_ylabel(f"validation {metric} (0 to 1)")
    axis.set_title(f"Validation {metric} of {len(runs)} run(s)")
    caption = f"The bold curve is the run with the highest {metric}; compare where curves level off"
    notes = _comparison_notes(runs, metric, short=True)
    if notes:
        axis.text(
            0.01,
            0.98,
            "\n".join(textwrap.fill(f"Note: {note}", 90) for note in notes),
            transform=axis.transAxes,
            va="top",
            fontsize=8,
            color="#8a1c1c",
            bbox={"facecolor": "white", "edgecolor": "#8a1c1c", "alpha": 0.9},
        )
        caption += "; the boxed note says why these runs do not compare like for like"
    visualize.add_caption(figure, caption + ".")
    return figure


# --------------------------------------------------------------------------------------
# Sweeps


def read_grid(path):
    """Reads and checks a sweep's grid file (YAML).

    The file::

        description: input size against width       # optional
        base: default            # a profile in params/ or a parameter file (default: default)
        name: sweep              # run-id prefix (default: sweep)
        stages: "06"             # stages each run executes (default: all)
        grid:                    # section.parameter: [values...]; every combination runs
          06_train.input_size: [320, 416]
          06_train.width: [0.5, 1.0]
          common.seed: [1, 2]

    Returns:
        the document (a dict)

    Raises:
        ConfigError: naming the file and the problem
    """
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: grid file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read grid file ({error})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: malformed YAML{where}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: expected a mapping with a 'grid' section")
    _check_grid(document, path)
    return document


def expand_grid(grid_document, base_dir=None):
    """Expands a sweep grid into one named parameter document per combination.

    Every combination of the ``grid`` values (the cartesian product, the
    first key varying slowest) is merged into the base profile: ``common.X``
    into its ``common`` section, ``<stage>.X`` into that stage's section
    (``06`` and ``06_train`` name the same section). Names are
    deterministic, ``<name>-<param>_<value>-...`` in grid order (e.g.
    ``sweep-input_size_320-width_0.5``; the section is kept where two keys
    share a parameter name; run ids allow no ``=``), characters other than
    letters, digits, ``.``, ``_`` and ``-`` become ``-``, and a name longer
    than 100 characters becomes ``<name>-<index>-<hash>``.

    Args:
        grid_document: the grid as a dict (see :func:`read_grid`) or a grid file
        base_dir: the folder a relative ``base`` file is looked up in first
            (default: the grid file's folder, else the project root)

    Returns:
        a list of (name, parameter document) pairs; each document is a dict
        in the parameter-file format (description, common, one section per stage)

    Raises:
        ConfigError: for a malformed grid or an unknown base profile
    """
    source = "grid"
    if not isinstance(grid_document, dict):
        source = Path(grid_document)
        base_dir = base_dir if base_dir is not None else source.parent
        grid_document = read_grid(source)
    else:
        _check_grid(grid_document, source)
    base_path = _base_params_path(grid_document.get("base") or "default", base_dir)
    base = config.load_params(base_path)
    prefix = str(grid_document.get("name") or "sweep")
    grid = grid_document["grid"]
    keys = list(grid)
    parsed = [_split_grid_key(key, source) for key in keys]
    names = [parameter for _, parameter in parsed]
    labels = [
        key if names.count(parameter) > 1 else parameter
        for key, (_, parameter) in zip(keys, parsed, strict=True)
    ]
    combinations = []
    used = {}
    for index, values in enumerate(itertools.product(*(grid[key] for key in keys))):
        overrides = dict(zip(keys, values, strict=True))
        name = "-".join(
            [prefix]
            + [
                f"{label}_{_format_value(value)}"
                for label, value in zip(labels, values, strict=True)
            ]
        )
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", name)
        if len(name) > 100:
            digest = hashlib.sha256(json.dumps(overrides, sort_keys=True).encode()).hexdigest()
            name = f"{prefix}-{index:03d}-{digest[:8]}"
        used[name] = used.get(name, 0) + 1
        if used[name] > 1:
            name = f"{name}-{used[name]}"
        document = {
            "description": (
                f"{grid_document.get('description') or base.description or base.name}; "
                f"sweep {prefix}: "
                + ", ".join(f"{key}={_format_value(value)}" for key, value in overrides.items())
            ),
            "common": dict(base.common),
            **{section: dict(values) for section, values in base.stages.items()},
        }
        for (section, parameter), value in zip(parsed, values, strict=True):
            target = _matching_section(document, section)
            document.setdefault(target, {})[parameter] = value
        # Each combination trains into a run folder of its own (else the runs would try
        # to resume one another's), unless the grid names the run folder itself.
        train_section = _matching_section(document, "06_train")
        if train_section in document and "run_name" not in document[train_section]:
            document[train_section]["run_name"] = name
        combinations.append((name, document))
    return combinations


def default_sweep_command(params_file, run_id, reports_dir, stages=None):
    """The command line one sweep run executes: ``platelab run`` with its own parameter file.

    Returns:
        a list of arguments for subprocess
    """
    command = [sys.executable, "-m", "platelab", "run", "--params", str(params_file)]
    command += ["--run-id", run_id, "--reports", str(reports_dir)]
    if stages:
        command += ["--stages", stages if isinstance(stages, str) else ",".join(stages)]
    return command


def find_training_run(report_dir):
    """Finds the training run folder a ``platelab run`` report folder points to.

    Each stage's ``metrics.json`` is read in stage order; the first
    ``details.run_dir`` (or ``key_figures.run_dir``) naming an existing
    folder is the answer, so the training notebook should save its run
    folder there.

    Args:
        report_dir: ``reports/<run-id>/`` (or a sweep run's folder)

    Returns:
        the Path, or None
    """
    report_dir = Path(report_dir)
    if not report_dir.is_dir():
        return None
    for stage_dir in sorted(item for item in report_dir.iterdir() if item.is_dir()):
        try:
            document = json.loads((stage_dir / SUMMARY_JSON).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        for section in ("details", "key_figures"):
            value = (document.get(section) or {}).get("run_dir")
            if value and paths.resolve(value).is_dir():
                return paths.resolve(value)
    return None


def run_sweep(
    grid_file,
    jobs=1,
    reports_dir=None,
    echo=print,
    command=None,
    locate=None,
    validate=True,
    notebooks_dir=None,
    dry_run=False,
):
    """Runs ``platelab run`` once per combination of a parameter grid, ``jobs`` at a time.

    Writes ``reports/sweep-<time>/``::

        params/<name>.yaml      each combination's parameter file (base profile + overrides)
        <name>/                 each run's reports (index.html...), ``--reports`` of its run
        <name>.log              what the run printed
        comparison.csv          one row per combination: its overrides, status and
                                :func:`compare_runs` figures of its training run
        comparison.html         the same table, the best run highlighted
        sweep.json              the grid, the combinations, their status and times

    Every parameter file is checked against the notebooks before any run
    starts. Runs that share a workspace share its data: give ``stages:``
    (e.g. the training stage) so that parallel runs do not rebuild it.

    Args:
        grid_file: the grid (see :func:`read_grid`)
        jobs: runs at a time
        reports_dir: where the sweep folder goes (default ``reports/``)
        echo: receives one progress line at a time
        command: a function (params_file, run_id, reports_dir, stages) ->
            argument list (default :func:`default_sweep_command`)
        locate: a function (run report folder) -> training run folder or None
            (default :func:`find_training_run`)
        validate: check each parameter file against the notebooks first
        notebooks_dir: the notebooks to check against (default ``notebooks/``)
        dry_run: only expand, check and list the combinations; run nothing

    Returns:
        a :class:`SweepResult`

    Raises:
        ConfigError: for a bad grid, base profile or parameter, before anything runs
    """
    if jobs < 1:
        raise ConfigError(f"jobs must be at least 1, got {jobs}")
    grid_path = Path(grid_file)
    document = read_grid(grid_path)
    combinations = expand_grid(document, base_dir=grid_path.parent)
    stages = document.get("stages")
    command = command or default_sweep_command
    locate = locate or find_training_run
    if validate:
        _validate_combinations(combinations, stages, notebooks_dir, grid_path)
    started = datetime.datetime.now()
    sweep_dir = None
    if not dry_run:
        root = Path(reports_dir or paths.REPORTS_DIR)
        sweep_dir = _new_folder(root, f"sweep-{started:%Y%m%d-%H%M%S}")
    runs = _plan_runs(combinations, document, sweep_dir)
    echo(
        f"sweep {grid_path}: {len(runs)} combination(s), {jobs} at a time"
        + (f", stages {stages}" if stages else "")
    )
    if jobs > 1 and not stages:
        echo(
            "warning: every run executes the whole chain in its workspace; "
            "give 'stages:' in the grid file to rerun only training"
        )
    if dry_run:
        for run in runs:
            echo(f"  {run['name']}: {_overrides_text(run['overrides'])}")
        return SweepResult(None, runs, _sweep_table(runs, []))
    for run, (_, params) in zip(runs, combinations, strict=True):
        atomic_write_text(run["params_file"], yaml.safe_dump(params, sort_keys=False))
    _write_sweep_json(sweep_dir, grid_path, document, runs, started)
    execute = _SweepRunner(command, sweep_dir, stages, echo)
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as executor:
        list(executor.map(execute, runs))
    table = _sweep_table(runs, _read_sweep_runs(runs, locate))
    table.to_csv(sweep_dir / "comparison.csv", index=False)
    atomic_write_text(sweep_dir / "comparison.html", _sweep_html(table, grid_path, started))
    _write_sweep_json(sweep_dir, grid_path, document, runs, started)
    ok = sum(run["status"] == "ok" for run in runs)
    echo(
        f"sweep: {ok} of {len(runs)} run(s) ok; comparison "
        f"{paths.display(sweep_dir / 'comparison.html')}"
    )
    return SweepResult(sweep_dir, runs, table)


def _plan_runs(combinations, document, sweep_dir):
    """One run record per combination: its overrides, files and (planned) status."""
    params_dir = (sweep_dir or Path()) / "params"
    return [
        {
            "name": name,
            "overrides": _overrides(params, document),
            "params_file": params_dir / f"{name}.yaml",
            "report_dir": (sweep_dir / name) if sweep_dir else None,
            "run_dir": None,
            "status": "planned",
            "returncode": None,
            "duration_s": None,
            "log": (sweep_dir / f"{name}.log") if sweep_dir else None,
        }
        for name, params in combinations
    ]


class _SweepRunner:
    """Runs one sweep combination as a process (its output to the run's log), thread-safe.

    Calling it with a run record fills ``returncode``, ``duration_s``, ``status`` and, if
    the process cannot start, ``error``; one progress line goes to ``echo`` at the start
    and at the end.
    """

    def __init__(self, command, sweep_dir, stages, echo):
        self.command, self.sweep_dir, self.stages, self.echo = command, sweep_dir, stages, echo
        self.lock = threading.Lock()

    def __call__(self, run):
        argv = self.command(run["params_file"], run["name"], self.sweep_dir, self.stages)
        self.say(f"[{run['name']}] started")
        begin = time.perf_counter()
        try:
            with open(run["log"], "w", encoding="utf-8") as log:
                completed = subprocess.run(
                    argv,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=str(paths.PROJECT_ROOT),
                    check=False,
                )
            run["returncode"] = completed.returncode
        except OSError as error:
            run["returncode"] = None
            run["error"] = f"cannot start {argv[0]}: {error.strerror or error}"
        run["duration_s"] = round(time.perf_counter() - begin, 2)
        run["status"] = "ok" if run["returncode"] == 0 else "failed"
        if run["status"] == "ok":
            self.say(f"[{run['name']}] ok in {run['duration_s']:.1f} s")
        else:
            why = run.get("error") or f"exit status {run['returncode']}"
            self.say(f"[{run['name']}] FAILED ({why}); see {run['log']}")

    def say(self, line):
        with self.lock:
            self.echo(line)


def _read_sweep_runs(runs, locate):
    """``(name, Run)`` of every finished run whose training run folder can be read."""
    read = []
    for run in runs:
        run["run_dir"] = locate(run["report_dir"])
        if run["run_dir"] is not None:
            try:
                read.append((run["name"], read_run(run["run_dir"])))
            except RunError as error:
                run["error"] = str(error)
                run["run_dir"] = None
    return read


def add_sweep_arguments(parser):
    """Adds the ``platelab sweep`` arguments to an argparse (sub)parser and sets its handler.

    Usage: ``add_sweep_arguments(commands.add_parser("sweep", help=...))``;
    the parsed namespace's ``handler`` is :func:`run_sweep_command`. Paths
    are relative to the current directory.
    """
    parser.description = (
        "Run `platelab run` once per combination of a parameter grid (a YAML file with a "
        "base profile and a grid of section.parameter: [values]) and compare the runs."
    )
    parser.add_argument(
        "--params-grid",
        required=True,
        type=paths.from_cwd,
        metavar="FILE",
        help="the grid file (YAML)",
    )
    parser.add_argument("-j", "--jobs", type=positive(int), default=1, help="runs at a time (1)")
    parser.add_argument(
        "--reports",
        type=paths.from_cwd,
        metavar="DIR",
        help="where the sweep folder goes (default: reports/)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="list and check the combinations; run nothing"
    )
    parser.add_argument("--notebooks", type=paths.from_cwd, metavar="DIR", help=argparse.SUPPRESS)
    parser.set_defaults(handler=run_sweep_command)
    return parser


def run_sweep_command(args):
    """Runs ``platelab sweep`` from parsed arguments.

    Returns:
        the exit status: 0 when every run succeeded (or on a dry run), else 1
    """
    result = run_sweep(
        args.params_grid,
        jobs=args.jobs,
        reports_dir=args.reports,
        notebooks_dir=getattr(args, "notebooks", None),
        dry_run=args.dry_run,
    )
    if args.dry_run:
        return 0
    return 0 if all(run["status"] == "ok" for run in result.runs) else 1


# --------------------------------------------------------------------------------------
# Private helpers


def _read_metrics(run_path, problems, notes):
    """Reads metrics.csv into a float DataFrame; every problem becomes one line."""
    import pandas as pd

    path = run_path / METRICS_CSV
    empty = pd.DataFrame({column: pd.Series(dtype=float) for column in BASE_COLUMNS})
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        problems.append(f"{run_path}: no {METRICS_CSV}")
        return empty
    except OSError as error:
        problems.append(f"{run_path}: cannot read {METRICS_CSV} ({error.strerror or error})")
        return empty
    text = data.decode("utf-8", errors="replace")
    if "\ufffd" in text:
        problems.append(f"{run_path}: {METRICS_CSV} has bytes that are not UTF-8 (replaced)")
    if not text.strip():
        problems.append(f"{run_path}: {METRICS_CSV} is empty")
        return empty
    lines = text.split("\n")
    complete = text.endswith("\n")
    if complete:
        lines = lines[:-1]
    header = next(csv.reader([lines[0].rstrip("\r")]))
    if len(lines) == 1 and not complete:
        problems.append(f"{run_path}: {METRICS_CSV} truncated at line 1 (kept 0 rows)")
        return empty
    if "step" not in header:
        problems.append(f"{run_path}: {METRICS_CSV} has no 'step' column in its header")
        return empty
    rows = []
    malformed = []
    for number, line in enumerate(lines[1:], start=2):
        line = line.rstrip("\r")
        if not complete and number == len(lines):
            problems.append(
                f"{run_path}: {METRICS_CSV} truncated at line {number} (kept {len(rows)} rows)"
            )
            break
        if not line.strip():
            continue
        fields = next(csv.reader([line]))
        if len(fields) != len(header):
            malformed.append(number)
            continue
        rows.append(fields)
    if malformed:
        problems.append(
            f"{run_path}: {METRICS_CSV}: {len(malformed)} line(s) with a wrong number of fields "
            f"skipped (first: line {malformed[0]})"
        )
    raw = pd.DataFrame(rows, columns=header, dtype=object)
    raw = raw.loc[:, ~raw.columns.duplicated()]
    frame = pd.DataFrame(index=raw.index)
    bad_values = 0
    first_bad = None
    for column in raw.columns:
        text_values = raw[column].astype(str).str.strip()
        numbers = pd.to_numeric(text_values.replace("", np.nan), errors="coerce")
        failed = numbers.isna() & text_values.ne("") & text_values.str.lower().ne("nan")
        if failed.any():
            bad_values += int(failed.sum())
            first_bad = first_bad or column
        frame[column] = numbers.astype(float)
    if bad_values:
        problems.append(
            f"{run_path}: {METRICS_CSV}: {bad_values} value(s) are not numbers "
            f"(first in column '{first_bad}'); read as missing"
        )
    for column in BASE_COLUMNS:
        if column not in frame.columns:
            frame[column] = np.nan
    no_step = frame["step"].isna()
    if no_step.any():
        problems.append(f"{run_path}: {METRICS_CSV}: {int(no_step.sum())} row(s) without a step")
        frame = frame.loc[~no_step]
    repeated = int(frame["step"].duplicated().sum())
    if repeated:
        notes.append(
            f"{run_path}: {METRICS_CSV} logs {repeated} step(s) twice (a resumed run): "
            "kept the last row of each"
        )
    frame = frame.drop_duplicates("step", keep="last").sort_values("step", kind="stable")
    ordered = list(BASE_COLUMNS) + [c for c in frame.columns if c not in BASE_COLUMNS]
    return frame[ordered].reset_index(drop=True)


def _read_json(run_path, name, problems, required):
    path = run_path / name
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if required:
            problems.append(f"{run_path}: no {name}")
        return {}
    except (OSError, ValueError) as error:
        problems.append(f"{run_path}: {name} unreadable ({' '.join(str(error).split())})")
        return {}
    if not isinstance(document, dict):
        problems.append(f"{run_path}: {name} is not a JSON object")
        return {}
    return document


def _find_key(document, key, default=None):
    if not isinstance(document, dict):
        return default
    if key in document:
        return document[key]
    for value in document.values():
        if isinstance(value, dict):
            found = _find_key(value, key, _MISSING)
            if found is not _MISSING:
                return found
    return default


def _noise_level(values):
    """Standard deviation of one value's noise, from second differences (robust to trends)."""
    if len(values) < 3:
        return 0.0
    second = values[:-2] - 2 * values[1:-1] + values[2:]
    deviation = np.median(np.abs(second - np.median(second)))
    return float(1.4826 * deviation / math.sqrt(6))


def _median_of_three(values):
    padded = np.pad(values, 1, mode="edge")
    return np.median(np.stack([padded[:-2], padded[1:-1], padded[2:]]), axis=0)


def _rising(steps, values, tolerance):
    """Whether values rise significantly (slope t > TREND_T) by more than tolerance over the span."""
    if len(values) < 4:
        return False
    centred = steps - steps.mean()
    spread = float(centred @ centred)
    if spread == 0:
        return False
    slope = float(centred @ (values - values.mean())) / spread
    residuals = values - values.mean() - slope * centred
    error = math.sqrt(float(residuals @ residuals) / (len(values) - 2) / spread)
    t = slope / error if error > 0 else (math.inf if slope > 0 else 0.0)
    return t > TREND_T and slope * (steps[-1] - steps[0]) > tolerance


def _empty_note(axis, text):
    axis.text(0.5, 0.5, text, transform=axis.transAxes, ha="center", va="center", color="0.4")


def _union_labels(runs):
    labels = []
    for run in runs:
        labels.extend(label for label in run.labels if label not in labels)
    return labels


def _comparison_notes(runs, metric, short=False):
    """The lines that say why runs may not compare like for like."""
    notes = []
    class_sets = {run.name: tuple(run.labels) for run in runs}
    if len({labels for labels in class_sets.values() if labels}) > 1:
        described = "; ".join(
            f"{name}: {', '.join(labels) or 'none'}" for name, labels in class_sets.items()
        )
        notes.append(
            f"the runs have different classes ({described}): {metric} averages different "
            "classes, compare per class"
            if not short
            else f"runs differ in classes, so {metric} averages differ; compare per class."
        )
    ranges = {}
    for run in runs:
        steps, _ = run.series(metric)
        if len(steps):
            ranges[run.name] = (steps.min(), steps.max())
        elif not short:
            notes.append(f"{run.name} has no {metric} evaluation")
    apart = [
        (first, second)
        for first, second in itertools.combinations(ranges, 2)
        if ranges[first][1] < ranges[second][0] or ranges[second][1] < ranges[first][0]
    ]
    if apart:
        first, second = apart[0]
        more = f" (and {len(apart) - 1} more pair(s))" if len(apart) > 1 else ""
        if short:
            notes.append(f"{first} and {second} share no steps{more}: compare shapes, not values.")
        else:
            notes.append(
                f"{first} (steps {ranges[first][0]:.0f}-{ranges[first][1]:.0f}) and {second} "
                f"(steps {ranges[second][0]:.0f}-{ranges[second][1]:.0f}) share no evaluated "
                f"steps{more}: their curves cannot be compared at equal steps"
            )
    if not short:
        notes.extend(problem for run in runs for problem in run.problems)
    return notes


def _check_grid(document, source):
    unknown = sorted(set(document) - set(SWEEP_KEYS))
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(map(str, unknown))} "
            f"(known: {', '.join(SWEEP_KEYS)})"
        )
    grid = document.get("grid")
    if not isinstance(grid, dict) or not grid:
        raise ConfigError(
            f"{source}: 'grid' must be a non-empty mapping of section.parameter: [values]"
        )
    for key, values in grid.items():
        _split_grid_key(key, source)
        if not isinstance(values, list) or not values:
            raise ConfigError(
                f"{source}: grid '{key}' must be a non-empty list of values, got {values!r}"
            )
    prefix = str(document.get("name") or "sweep")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}", prefix):
        raise ConfigError(
            f"{source}: name '{prefix}' must be letters, digits, '.', '_' and '-' (40 at most)"
        )
    base = document.get("base")
    if base is not None and not isinstance(base, str):
        raise ConfigError(f"{source}: 'base' must be a profile name or a parameter file")
    stages = document.get("stages")
    if stages is not None and not isinstance(stages, (str, list)):
        raise ConfigError(f"{source}: 'stages' must be a string like \"06\" or a list")


def _split_grid_key(key, source):
    section, dot, parameter = str(key).partition(".")
    if not dot or not section or not parameter or "." in parameter:
        raise ConfigError(
            f"{source}: grid key '{key}' must be 'section.parameter' "
            "(e.g. common.seed or 06_train.input_size)"
        )
    return section, parameter


def _matching_section(document, section):
    """The key of the document's section for a stage named by number or name."""
    if section == "common" or section in document:
        return section
    number = section.split("_")[0]
    if number.isdigit():
        number = number.zfill(2)
        for key in document:
            head = str(key).split("_")[0]
            if key not in config.RESERVED_KEYS and head.isdigit() and head.zfill(2) == number:
                return key
    return section


def _base_params_path(base, base_dir):
    candidate = Path(base).expanduser()
    looks_like_file = candidate.suffix in (".yaml", ".yml") or len(candidate.parts) > 1
    if looks_like_file:
        if candidate.is_absolute():
            return candidate
        for folder in (base_dir, paths.PROJECT_ROOT):
            if folder is not None and (Path(folder) / candidate).is_file():
                return Path(folder) / candidate
        raise ConfigError(f"base parameter file not found: {base}")
    return config.profile_path(base)


def _format_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _overrides(params, document):
    """The grid values one combination's parameter document carries, keyed as in the grid."""
    overrides = {}
    for key in document["grid"]:
        section, parameter = _split_grid_key(key, "grid")
        overrides[key] = params.get(_matching_section(params, section), {}).get(parameter)
    return overrides


def _overrides_text(overrides):
    return ", ".join(f"{key}={_format_value(value)}" for key, value in overrides.items())


def _validate_combinations(combinations, stages, notebooks_dir, grid_path):
    """Checks every combination's parameters against the notebooks; raises ConfigError."""
    all_stages = config.discover_stages(notebooks_dir)
    config.select_stages(all_stages, stages)
    for name, params in combinations:
        document = config.Params(
            name=name,
            path=Path(f"{grid_path} [{name}]"),
            description=str(params.get("description", "")),
            common=dict(params.get("common") or {}),
            stages={
                key: dict(value or {})
                for key, value in params.items()
                if key not in config.RESERVED_KEYS
            },
        )
        config.resolve_params(document, all_stages)


def _sweep_table(runs, read):
    """One row per combination: name, its grid values, status, and its training run's figures."""
    import pandas as pd

    by_name = dict(read)
    compared = compare_runs([run for _, run in read]) if read else pd.DataFrame()
    figures = {}
    if len(compared):
        for (name, _), (_, row) in zip(read, compared.iterrows(), strict=True):
            figures[name] = row.drop(labels=["run"]).to_dict()
    rows = []
    for run in runs:
        row = {"name": run["name"], **run["overrides"], "sweep_status": run["status"]}
        row["duration_s"] = run["duration_s"]
        row["run_dir"] = str(run["run_dir"]) if run["run_dir"] else ""
        row.update(figures.get(run["name"], {}))
        if run["name"] not in by_name and run["status"] != "planned":
            row["best"] = False
        rows.append(row)
    table = pd.DataFrame(rows)
    if "best" in table.columns:
        table["best"] = table["best"].fillna(False).astype(bool)
    table.attrs["notes"] = compared.attrs.get("notes", []) if len(compared) else []
    return table


def _sweep_html(table, grid_path, started):
    escape = html.escape
    columns = list(table.columns)
    head = "".join(f"<th>{escape(str(column))}</th>" for column in columns)
    body = []
    for _, row in table.iterrows():
        cells = []
        for column in columns:
            value = row[column]
            if column == "name":
                text = f"<a href='{escape(str(value))}/index.html'>{escape(str(value))}</a>"
            else:
                text = escape(_cell(value))
            cells.append(f"<td>{text}</td>")
        best = " class='best'" if bool(row.get("best", False)) else ""
        body.append(f"<tr{best}>{''.join(cells)}</tr>")
    notes = "".join(f"<li>{escape(note)}</li>" for note in table.attrs.get("notes", []))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>platelab sweep {escape(str(grid_path))}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #1d2430; }}
table {{ border-collapse: collapse; }} th, td {{ padding: .35rem .6rem;
border-bottom: 1px solid #e2e6ec; text-align: left; }} th {{ background: #f4f6f9; }}
tr.best {{ background: #d9f2e1; font-weight: 600; }}
</style></head><body>
<h1>Sweep <code>{escape(str(grid_path))}</code></h1>
<p>started {escape(started.isoformat(timespec="seconds"))}; the best run is highlighted.</p>
<table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>
{f"<h2>Notes</h2><ul>{notes}</ul>" if notes else ""}
</body></html>
"""


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _write_sweep_json(sweep_dir, grid_path, document, runs, started):
    atomic_write_json(
        sweep_dir / "sweep.json",
        {
            "grid_file": str(grid_path),
            "grid": document,
            "started_at": started.isoformat(timespec="seconds"),
            "runs": [
                {
                    key: (str(value) if isinstance(value, Path) else value)
                    for key, value in run.items()
                }
                for run in runs
            ],
        },
    )


def _new_folder(root, name):
    """Creates root/name (root/name-2, -3... when taken) and returns it."""
    for attempt in range(1, 1000):
        folder = root / (name if attempt == 1 else f"{name}-{attempt}")
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:
            continue
        except OSError as error:
            raise ConfigError(f"{folder}: cannot create ({error.strerror or error})") from None
    raise ConfigError(f"{root}: too many sweep folders named {name}")
