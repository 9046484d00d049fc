"""Training-run analysis (platelab.analyze): reading runs, the stop step, overfitting, sweeps."""

import argparse
import json
import sys

import matplotlib
import numpy as np
import pytest
import yaml

from conftest import read_json, write_notebook
from platelab import analyze
from platelab.config import ConfigError

matplotlib.use("Agg")

LABELS = ("vehicle", "license_plate")
SEEDS = range(10)
INTERVAL = 100
"""Evaluation interval of the synthetic curves, in steps."""


# --------------------------------------------------------------------------------------
# Synthetic curves and run folders


def knee_curve(seed, knee=2500, sigma=0.01, count=60):
    """Validation mAP rising linearly from 0.05 to 0.6 at step ``knee``, then flat, plus noise."""
    rng = np.random.default_rng(seed)
    steps = np.arange(1, count + 1) * INTERVAL
    trend = np.where(steps < knee, 0.05 + 0.55 * steps / knee, 0.6)
    return steps, trend + rng.normal(0, sigma, count)


def overfit_curve(seed, peak=2500, sigma=0.01, count=60):
    """Validation mAP rising to 0.6 at ``peak``, then declining by 0.1 by the end."""
    rng = np.random.default_rng(seed)
    steps = np.arange(1, count + 1) * INTERVAL
    end = steps[-1]
    trend = np.where(
        steps < peak, 0.05 + 0.55 * steps / peak, 0.6 - 0.1 * (steps - peak) / (end - peak)
    )
    return steps, trend + rng.normal(0, sigma, count)


def noise_curve(seed, sigma=0.01, count=60):
    """Pure noise around a constant 0.3: nothing to stop."""
    rng = np.random.default_rng(seed)
    return np.arange(1, count + 1) * INTERVAL, 0.3 + rng.normal(0, sigma, count)


def write_run(
    folder,
    steps,
    mAP=None,
    val_loss=None,
    loss=None,
    labels=LABELS,
    config=None,
    state=None,
    lr=None,
):
    """Writes a run folder in platelab.train's format; arrays are per step (NaN: empty)."""
    folder.mkdir(parents=True, exist_ok=True)
    steps = np.asarray(steps)
    nan = np.full(len(steps), np.nan)
    mAP = nan if mAP is None else np.asarray(mAP, dtype=float)
    val_loss = nan if val_loss is None else np.asarray(val_loss, dtype=float)
    loss = np.linspace(1.0, 0.3, len(steps)) if loss is None else np.asarray(loss, dtype=float)
    lr = np.linspace(1e-3, 0, len(steps)) if lr is None else lr
    columns = list(analyze.BASE_COLUMNS) + [
        f"{metric}/{label}" for label in labels for metric in analyze.PER_CLASS_METRICS
    ]
    lines = [",".join(columns)]
    for index, step in enumerate(steps):
        row = dict.fromkeys(columns, "")
        row.update(step=int(step), epoch=int(step) // 1000, elapsed_s=float(step) * 0.5)
        row.update(lr=lr[index], loss=loss[index], class_loss=loss[index] * 0.6)
        row["box_loss"] = loss[index] * 0.4
        if np.isfinite(val_loss[index]):
            row["val_loss"] = val_loss[index]
        if np.isfinite(mAP[index]):
            value = mAP[index]
            row.update(mAP=value, AP50=min(1, value + 0.2), precision=0.7, recall=0.6)
            for position, label in enumerate(labels):
                row[f"AP50/{label}"] = min(1, value + 0.25 - 0.1 * position)
                row[f"AP/{label}"] = value - 0.05 * position
        lines.append(",".join(_text(row[column]) for column in columns))
    (folder / "metrics.csv").write_text("\n".join(lines) + "\n")
    document = {"input_size": 320, "width": 0.5, "init": "imagenet", "batch_size": 16}
    document.update(labels=list(labels), **(config or {}))
    (folder / "config.json").write_text(json.dumps(document))
    (folder / "state.json").write_text(json.dumps(state or {"status": "finished"}))
    return folder


def _text(value):
    if value == "" or value is None:
        return ""
    if isinstance(value, float):
        return "" if np.isnan(value) else f"{value:.6g}"
    return str(value)


def every_step(steps, eval_steps, values):
    """Spreads values given at eval_steps over all steps (NaN elsewhere)."""
    result = np.full(len(steps), np.nan)
    positions = np.searchsorted(steps, eval_steps)
    result[positions] = values
    return result


@pytest.fixture
def tiny_run(tmp_path):
    """Three log steps, one evaluation each: the smallest run a plot must handle."""
    return analyze.read_run(
        write_run(tmp_path / "tiny", [0, 200, 400], mAP=[0.1, 0.2, 0.3], val_loss=[1, 0.9, 0.8])
    )


# --------------------------------------------------------------------------------------
# Reading runs


def test_read_run(tmp_path):
    steps = np.arange(0, 1001, 100)
    folder = write_run(tmp_path / "run-a", steps, mAP=np.linspace(0, 0.5, len(steps)))
    run = analyze.read_run(folder)
    assert run.name == "run-a" and run.path == folder
    assert run.problems == [] and run.notes == []
    assert list(run.metrics["step"]) == list(steps)
    assert run.labels == list(LABELS)
    assert run.status == "finished"
    assert run.last_step == 1000 and run.elapsed_s == 500
    assert run.config_value("input_size") == 320
    assert run.metrics["mAP"].dtype == float


def test_missing_folder_raises(tmp_path):
    with pytest.raises(analyze.RunError, match="no such run folder"):
        analyze.read_run(tmp_path / "nowhere")


def test_missing_metrics(tmp_path):
    folder = tmp_path / "empty-run"
    folder.mkdir()
    run = analyze.read_run(folder)
    assert f"{folder}: no metrics.csv" in run.problems
    assert f"{folder}: no config.json" in run.problems
    assert len(run.metrics) == 0 and "mAP" in run.metrics.columns
    assert run.labels == [] and run.last_step is None and np.isnan(run.elapsed_s)


def test_empty_metrics(tmp_path):
    folder = write_run(tmp_path / "run", [0, 100])
    (folder / "metrics.csv").write_text("")
    run = analyze.read_run(folder)
    assert run.problems == [f"{folder}: metrics.csv is empty"]
    assert len(run.metrics) == 0


def test_header_only_is_no_problem(tmp_path):
    folder = write_run(tmp_path / "run", [0])
    header = (folder / "metrics.csv").read_text().splitlines()[0]
    (folder / "metrics.csv").write_text(header + "\n")
    run = analyze.read_run(folder)
    assert run.problems == [] and len(run.metrics) == 0


def test_truncated_metrics(tmp_path):
    steps = np.arange(56) * 100
    folder = write_run(tmp_path / "killed", steps, mAP=np.linspace(0, 0.5, 56))
    text = (folder / "metrics.csv").read_text()
    (folder / "metrics.csv").write_text(text[: text.rstrip("\n").rfind(",") - 3])  # cut mid-row
    run = analyze.read_run(folder)
    assert run.problems == [f"{folder}: metrics.csv truncated at line 57 (kept 55 rows)"]
    assert len(run.metrics) == 55 and run.last_step == 5400


def test_truncated_header(tmp_path):
    folder = write_run(tmp_path / "killed", [0])
    (folder / "metrics.csv").write_text("step,epoch,elap")
    run = analyze.read_run(folder)
    assert run.problems == [f"{folder}: metrics.csv truncated at line 1 (kept 0 rows)"]


def test_resume_keeps_the_last_row_of_a_step(tmp_path):
    folder = write_run(tmp_path / "resumed", [0, 100, 200], mAP=[0.1, 0.2, 0.3])
    lines = (folder / "metrics.csv").read_text().splitlines()
    fields = lines[3].split(",")
    fields[analyze.BASE_COLUMNS.index("mAP")] = "0.35"
    again = ",".join(fields)  # step 200 logged again after a resume, with another value
    (folder / "metrics.csv").write_text("\n".join([*lines, lines[2], again]) + "\n")
    run = analyze.read_run(folder)
    assert run.problems == []
    assert len(run.notes) == 1 and "2 step(s) twice" in run.notes[0]
    assert list(run.metrics["step"]) == [0, 100, 200]
    assert run.metrics["mAP"].iloc[-1] == pytest.approx(0.35)


def test_bad_rows_and_values(tmp_path):
    folder = write_run(tmp_path / "messy", [0, 100, 200, 300], mAP=[0.1, 0.2, 0.3, 0.4])
    lines = (folder / "metrics.csv").read_text().splitlines()
    lines[2] = "100,1,2"  # too few fields
    fields = lines[3].split(",")
    fields[analyze.BASE_COLUMNS.index("mAP")] = "oops"
    lines[3] = ",".join(fields)
    (folder / "metrics.csv").write_text("\n".join(lines) + "\n")
    (folder / "state.json").write_text("{not json")
    run = analyze.read_run(folder)
    assert len(run.problems) == 3, run.problems
    assert "1 line(s) with a wrong number of fields skipped (first: line 3)" in run.problems[0]
    assert "1 value(s) are not numbers (first in column 'mAP')" in run.problems[1]
    assert "state.json unreadable" in run.problems[2]
    assert list(run.metrics["step"]) == [0, 200, 300]
    assert np.isnan(run.metrics["mAP"].iloc[1])
    assert run.status == "unknown"


def test_find_runs(tmp_path):
    write_run(tmp_path / "b", [0])
    write_run(tmp_path / "a", [0])
    (tmp_path / "not-a-run").mkdir()
    assert [path.name for path in analyze.find_runs(tmp_path)] == ["a", "b"]
    assert analyze.find_runs(tmp_path / "missing") == []


def test_per_class_table(tmp_path):
    run = analyze.read_run(
        write_run(tmp_path / "r", [0, 100, 200], mAP=[0.2, 0.5, 0.4], labels=("license_plate",))
    )
    table = analyze.per_class_table(run)
    assert table.attrs["step"] == 100
    assert list(table.index) == ["license_plate"]
    assert table.loc["license_plate", "AP50"] == pytest.approx(0.75)
    assert np.isnan(table.loc["license_plate", "precision"])


# --------------------------------------------------------------------------------------
# Smoothing


def test_smooth_matches_tensorboard():
    values = [1.0, 2.0, 3.0]
    weight = 0.5
    # TensorBoard: m = w*m + (1-w)*x; shown m / (1 - w**n)
    expected = [1.0, (0.25 + 1.0) / 0.75, (0.625 + 1.5) / 0.875]
    assert analyze.smooth(values, weight) == pytest.approx(expected)
    assert analyze.smooth([5.0] * 4, 0.9) == pytest.approx([5.0] * 4)  # debiased: no pull to 0
    assert analyze.smooth(values, 0) == pytest.approx(values)


def test_smooth_skips_nan():
    result = analyze.smooth([1.0, np.nan, 1.0, np.inf], 0.9)
    assert result[0] == pytest.approx(1.0) and result[2] == pytest.approx(1.0)
    assert np.isnan(result[1]) and np.isnan(result[3])
    assert len(analyze.smooth([], 0.9)) == 0
    with pytest.raises(ValueError, match="smoothing weight"):
        analyze.smooth([1.0], 1.0)


# --------------------------------------------------------------------------------------
# The stop step


@pytest.mark.parametrize(
    ("knee", "sigma"), [(2500, 0.01), (2500, 0.02), (4000, 0.005), (1500, 0.01)]
)
def test_stop_step_finds_a_known_plateau(knee, sigma):
    """Rising then flat with noise: the stop step is within 5 evaluations (500 steps) of the knee.

    Measured (seeds 0-9; found - knee, in steps): knee 2500 sigma 0.01: 0, 200, -100, 0,
    -100, 0, -100, -100, -100, -100; sigma 0.02: -300 to 0; knee 4000 sigma 0.005: -100
    to 100; knee 1500 sigma 0.01: -100 to 400.
    """
    errors = []
    for seed in SEEDS:
        steps, values = knee_curve(seed, knee=knee, sigma=sigma)
        stop = analyze.find_stop_step(steps, values)
        assert stop, f"seed {seed}: {stop.reason}"
        errors.append(stop.step - knee)
        assert stop.steps_after == steps[-1] - stop.step
        assert stop.value == pytest.approx(0.6, abs=4 * sigma + 0.01)
        assert stop.threshold >= 0.005 and stop.threshold == pytest.approx(
            max(0.005, 3 * stop.noise)
        )
    assert max(abs(error) for error in errors) <= 5 * INTERVAL, errors


def test_stop_step_over_many_seeds():
    """95% of 200 noisy knees within 3 evaluations; none off by more than a fifth of the run."""
    errors = []
    for seed in range(200):
        steps, values = knee_curve(1000 + seed)
        stop = analyze.find_stop_step(steps, values)
        errors.append(abs(stop.step - 2500) if stop else np.inf)
    errors = np.array(errors)
    assert np.mean(errors <= 3 * INTERVAL) >= 0.95, np.sort(errors)[-12:]
    assert np.mean(errors <= 0.2 * 6000) >= 0.99


def test_stop_step_at_an_overfit_peak():
    """mAP peaks then declines: the stop step is at or up to 3 evaluations before the peak.

    Measured (seeds 0-9): -100 or -200 steps.
    """
    for seed in SEEDS:
        steps, values = overfit_curve(seed)
        stop = analyze.find_stop_step(steps, values)
        assert stop, stop.reason
        assert 2500 - 3 * INTERVAL <= stop.step <= 2500 + INTERVAL, (seed, stop.step)


@pytest.mark.parametrize("sigma", [0.003, 0.01, 0.03])
def test_no_false_plateau_on_pure_noise(sigma):
    for seed in SEEDS:
        steps, values = noise_curve(seed, sigma=sigma)
        stop = analyze.find_stop_step(steps, values)
        assert not stop and stop.step is None
        assert stop.reason.startswith("no improvement to speak of"), stop.reason
    false = sum(bool(analyze.find_stop_step(*noise_curve(seed, sigma))) for seed in range(300))
    assert false == 0


def test_no_plateau_while_still_rising():
    """A steady rise under noise twice the per-evaluation gain is not a plateau."""
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        steps = np.arange(1, 41) * INTERVAL
        values = np.linspace(0.05, 0.6, 40) + rng.normal(0, 0.02, 40)
        stop = analyze.find_stop_step(steps, values)
        assert not stop and stop.reason.startswith("no plateau yet"), stop.reason


def test_stop_step_edge_cases():
    assert analyze.find_stop_step([], []).reason == "no evaluations"
    few = analyze.find_stop_step([1, 2, 3], [0.1, 0.5, 0.5])
    assert not few and few.reason.startswith("too few evaluations (3)")
    assert few.best_step == 2
    # NaNs and a shuffled order change nothing; a repeated step keeps its last value.
    steps, values = knee_curve(0)
    clean = analyze.find_stop_step(steps, values)
    order = np.random.default_rng(0).permutation(len(steps))
    noisy_steps = np.concatenate([steps[order], [150, 250, steps[-1]]])
    noisy_values = np.concatenate([values[order], [np.nan, np.nan, values[-1]]])
    assert analyze.find_stop_step(noisy_steps, noisy_values).step == clean.step
    with pytest.raises(ValueError, match="tolerance"):
        analyze.find_stop_step(steps, values, tolerance=-1)
    # A window longer than what follows the knee: no plateau yet.
    assert not analyze.find_stop_step(steps, values, window=4000)


def test_find_run_stop_counts_time_after(tmp_path):
    steps = np.arange(0, 6001, 50)
    eval_steps, values = knee_curve(3)
    folder = write_run(tmp_path / "r", steps, mAP=every_step(steps, eval_steps, values))
    run = analyze.read_run(folder)
    stop = analyze.find_run_stop(run)
    assert stop and abs(stop.step - 2500) <= 5 * INTERVAL
    assert stop.steps_after == 6000 - stop.step
    assert stop.seconds_after == pytest.approx(0.5 * (6000 - stop.step))


# --------------------------------------------------------------------------------------
# Overfitting


def loss_run(tmp_path, name, val_trend, seed=0):
    rng = np.random.default_rng(seed)
    steps = np.arange(0, 6001, 100)
    eval_steps = steps[steps % 200 == 0][1:]
    train = 0.2 + np.exp(-steps / 1500) + rng.normal(0, 0.02, len(steps))
    val = val_trend(eval_steps) + rng.normal(0, 0.01, len(eval_steps))
    return analyze.read_run(
        write_run(tmp_path / name, steps, loss=train, val_loss=every_step(steps, eval_steps, val))
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_overfitting_verdict(tmp_path, seed):
    """Validation loss U-shaped (minimum near step 2500) while training loss falls."""

    def u_shape(steps):
        return 0.4 + 0.6 * np.exp(-steps / 700) + 0.3 * np.maximum(0, (steps - 2500) / 3500)

    diagnosis = analyze.diagnose_overfitting(loss_run(tmp_path, "overfit", u_shape, seed))
    assert diagnosis["overfitting"] is True, diagnosis["verdict"]
    assert diagnosis["verdict"].endswith(": overfitting")
    assert "validation loss rose" in diagnosis["verdict"]
    assert 1500 <= diagnosis["val_min_step"] <= 3500
    assert diagnosis["val_rise"] > 0.3 and diagnosis["train_change"] < -0.3


@pytest.mark.parametrize("seed", SEEDS)
def test_no_overfitting_verdict(tmp_path, seed):
    def falling(steps):
        return 0.4 + 0.6 * np.exp(-steps / 1500)

    def levelled(steps):
        return 0.4 + 0.6 * np.exp(-steps / 400)

    diagnosis = analyze.diagnose_overfitting(loss_run(tmp_path, "falling", falling, seed))
    assert diagnosis["overfitting"] is False
    assert diagnosis["verdict"].startswith("no sign of overfitting"), diagnosis["verdict"]
    diagnosis = analyze.diagnose_overfitting(loss_run(tmp_path, "flat", levelled, seed))
    assert diagnosis["overfitting"] is False
    assert diagnosis["verdict"].startswith("no sign of overfitting"), diagnosis["verdict"]


def test_unstable_is_not_overfitting(tmp_path):
    steps = np.arange(0, 3001, 100)
    eval_steps = steps[steps % 500 == 0][1:]
    folder = write_run(
        tmp_path / "diverged",
        steps,
        loss=0.5 + steps / 3000,
        val_loss=every_step(steps, eval_steps, 0.5 + eval_steps / 2000),
    )
    diagnosis = analyze.diagnose_overfitting(analyze.read_run(folder))
    assert diagnosis["overfitting"] is False
    assert "not overfitting" in diagnosis["verdict"]


def test_overfitting_needs_evaluations(tmp_path, tiny_run):
    folder = tmp_path / "nothing"
    folder.mkdir()
    diagnosis = analyze.diagnose_overfitting(analyze.read_run(folder))
    assert diagnosis["overfitting"] is None
    assert diagnosis["verdict"].startswith("cannot judge overfitting: 0 validation")
    assert analyze.diagnose_overfitting(tiny_run)["overfitting"] is False


# --------------------------------------------------------------------------------------
# Figures


def _check_figure(figure, ylabel_word):
    axis = figure.axes[0]
    assert axis.get_xlabel() == analyze.STEP_LABEL
    assert ylabel_word in axis.get_ylabel()
    assert axis.get_title()
    assert any(text.get_text() for text in figure.texts), "no caption"


def _all_text(figure):
    texts = [*figure.texts, *(text for axis in figure.axes for text in axis.texts)]
    return " ".join(text.get_text() for text in texts).replace("\n", " ")


def test_plots_on_a_tiny_run(tiny_run):
    import matplotlib.pyplot as plt

    figure = analyze.plot_losses(tiny_run)
    _check_figure(figure, "loss")
    assert figure.axes[1].get_ylabel().startswith("learning rate")
    _check_figure(analyze.plot_metrics(tiny_run), "score")
    _check_figure(analyze.plot_per_class(tiny_run), "AP50")
    _check_figure(analyze.plot_per_class(tiny_run, metric="AP"), "AP")
    plt.close("all")


def test_plots_on_an_empty_run(tmp_path):
    import matplotlib.pyplot as plt

    folder = tmp_path / "empty"
    folder.mkdir()
    run = analyze.read_run(folder)
    _check_figure(analyze.plot_losses(run), "loss")
    _check_figure(analyze.plot_metrics(run), "score")
    _check_figure(analyze.plot_per_class(run), "AP50")
    _check_figure(analyze.plot_comparison([run]), "mAP")
    plt.close("all")


def test_stop_marked_on_plots(tmp_path):
    import matplotlib.pyplot as plt

    steps, values = knee_curve(0)
    run = analyze.read_run(write_run(tmp_path / "r", steps, mAP=values, val_loss=1 - values))
    stop = analyze.find_run_stop(run)
    for figure in (analyze.plot_losses(run, stop), analyze.plot_metrics(run, stop)):
        marks = [line for line in figure.axes[0].lines if line.get_label().startswith("stop step")]
        assert len(marks) == 1 and marks[0].get_xdata()[0] == stop.step
    figure, axis = plt.subplots()
    assert analyze.mark_stop(axis, analyze.StopPoint(None, None, None, None, "none")) is None
    plt.close("all")


# --------------------------------------------------------------------------------------
# Comparison


def test_compare_runs_with_different_classes_and_lengths(tmp_path):
    both = write_run(tmp_path / "both", np.arange(0, 2001, 100), mAP=np.linspace(0.1, 0.5, 21))
    plates = write_run(
        tmp_path / "plates",
        np.arange(0, 4001, 100),
        mAP=np.linspace(0.1, 0.7, 41),
        labels=("license_plate",),
        config={"input_size": 416, "width": 1.0},
    )
    table = analyze.compare_runs([both, analyze.read_run(plates)])
    assert list(table["run"]) == ["both", "plates"]
    assert list(table["input_size"]) == [320, 416]
    assert list(table["steps"]) == [2000, 4000]
    assert table["best_mAP"].tolist() == pytest.approx([0.5, 0.7])
    assert np.isnan(table.loc[1, "AP50/vehicle"])
    assert table.loc[1, "AP50/license_plate"] == pytest.approx(0.95)
    assert table["best"].tolist() == [False, True]
    assert any("different classes" in note for note in table.attrs["notes"])
    figure = analyze.plot_comparison([both, plates])
    assert "differ in classes" in _all_text(figure)
    assert figure.axes[0].get_xlabel() == analyze.STEP_LABEL
    widths = sorted(line.get_linewidth() for line in figure.axes[0].lines)
    assert widths[-1] > widths[0]  # the best run is bold


def test_compare_runs_without_common_steps(tmp_path):
    early = write_run(tmp_path / "early", np.arange(0, 1001, 100), mAP=np.linspace(0, 0.3, 11))
    late = write_run(tmp_path / "late", np.arange(3000, 5001, 100), mAP=np.linspace(0.3, 0.5, 21))
    table = analyze.compare_runs([early, late])
    assert table["best"].tolist() == [False, True]
    notes = " ".join(table.attrs["notes"])
    assert "early (steps 0-1000) and late (steps 3000-5000) share no evaluated steps" in notes
    figure = analyze.plot_comparison([early, late], x="time")
    assert "share no steps" in _all_text(figure)
    assert figure.axes[0].get_xlabel() == "training time (minutes)"


def test_compare_runs_without_evaluations(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    blank = write_run(tmp_path / "blank", [0, 100])
    table = analyze.compare_runs([empty, blank])
    assert table["best"].tolist() == [False, False]
    assert table["best_mAP"].isna().all()
    assert table["stop_step"].isna().all()
    assert any("no metrics.csv" in note for note in table.attrs["notes"])
    with pytest.raises(ValueError, match="x must be"):
        analyze.plot_comparison([blank], x="epoch")


# --------------------------------------------------------------------------------------
# Sweeps


@pytest.fixture
def base_params(tmp_path):
    path = tmp_path / "base.yaml"
    path.write_text(
        "description: base for the sweep\n"
        "common:\n  workspace: sweepws\n  seed: 3\n"
        "06_train:\n  input_size: 320\n  steps: 100\n"
    )
    return path


def _grid(tmp_path, text):
    path = tmp_path / "grid.yaml"
    path.write_text(text)
    return path


def test_expand_grid(tmp_path, base_params):
    grid = _grid(
        tmp_path,
        "base: base.yaml\n"
        "grid:\n  '06.input_size': [320, 416]\n  06_train.width: [0.5, 1.0]\n"
        "  common.augment: [true]\n",
    )
    combinations = analyze.expand_grid(grid)
    assert [name for name, _ in combinations] == [
        "sweep-input_size_320-width_0.5-augment_true",
        "sweep-input_size_320-width_1.0-augment_true",
        "sweep-input_size_416-width_0.5-augment_true",
        "sweep-input_size_416-width_1.0-augment_true",
    ]
    name, params = combinations[2]
    # Each combination trains into a run folder of its own, named after it.
    assert params["06_train"] == {"input_size": 416, "steps": 100, "width": 0.5, "run_name": name}
    assert "06" not in params  # '06' names the base's 06_train section
    assert params["common"] == {"workspace": "sweepws", "seed": 3, "augment": True}
    assert params["description"].startswith("base for the sweep; sweep sweep: 06.input_size=416")
    # The base stays untouched from one combination to the next.
    assert combinations[0][1]["06_train"]["input_size"] == 320
    # A dict document gives the same, with the base looked up from base_dir.
    document = yaml.safe_load(grid.read_text())
    assert analyze.expand_grid(document, base_dir=tmp_path) == combinations


def test_expand_grid_names(tmp_path, base_params):
    document = {
        "base": str(base_params),
        "name": "try",
        "grid": {
            "common.seed": [1],
            "06_train.seed": [2],
            "06_train.split": ["0.8,0.1,0.1", "0.8 0.1 0.1"],
            "06_train.learning_rate": [1e-4],
        },
    }
    names = [name for name, _ in analyze.expand_grid(document)]
    assert names == [
        "try-common.seed_1-06_train.seed_2-split_0.8-0.1-0.1-learning_rate_0.0001",
        "try-common.seed_1-06_train.seed_2-split_0.8-0.1-0.1-learning_rate_0.0001-2",
    ]
    long = {"base": str(base_params), "grid": {"06_train.init": ["x" * 120, "y" * 120]}}
    names = [name for name, _ in analyze.expand_grid(long)]
    assert all(len(name) <= 100 and name.startswith("sweep-") for name in names)
    assert names[0].startswith("sweep-000-") and names[1].startswith("sweep-001-")
    assert names == [name for name, _ in analyze.expand_grid(long)]  # deterministic


def test_expand_grid_on_a_profile():
    (name, params), *_ = analyze.expand_grid({"base": "smoke", "grid": {"common.seed": [1, 2]}})
    assert name == "sweep-seed_1"
    assert params["common"]["seed"] == 1 and params["common"]["workspace"] == "smoke"
    assert params["00_synthesize"]["videos"] == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("base: default\n", "'grid' must be a non-empty mapping"),
        ("grid: {}\n", "'grid' must be a non-empty mapping"),
        ("grid:\n  seed: [1]\n", "must be 'section.parameter'"),
        ("grid:\n  common.seed: 1\n", "must be a non-empty list"),
        ("grid:\n  common.seed: []\n", "must be a non-empty list"),
        ("grid:\n  common.seed: [1]\nbogus: 1\n", "unknown key"),
        ("grid:\n  common.seed: [1]\nname: 'a b'\n", "name 'a b'"),
        ("grid:\n  common.seed: [1]\nbase: nosuchprofile\n", "unknown profile"),
        ("grid:\n  common.seed: [1]\nbase: missing.yaml\n", "base parameter file not found"),
        ("- just a list\n", "expected a mapping"),
        ("grid: [\n", "malformed YAML"),
    ],
)
def test_expand_grid_errors(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        analyze.expand_grid(_grid(tmp_path, text))


def test_read_grid_missing(tmp_path):
    with pytest.raises(ConfigError, match="grid file not found"):
        analyze.read_grid(tmp_path / "none.yaml")


FAKE_RUN = """
import json, sys
from pathlib import Path
import yaml
params_file, run_id, reports = sys.argv[1:4]
params = yaml.safe_load(open(params_file))
seed = params["common"]["seed"]
if seed == 99:
    print("boom"); sys.exit(3)
run_dir = Path(reports).parent / "models" / run_id
run_dir.mkdir(parents=True)
rows = ["step,elapsed_s,loss,mAP,AP50/license_plate"]
rows += [f"{step},{step},0.5,{seed / 10 * step / 300},{seed / 10}" for step in (100, 200, 300)]
(run_dir / "metrics.csv").write_text("\\n".join(rows) + "\\n")
(run_dir / "config.json").write_text(json.dumps({"input_size": 320, "seed": seed}))
(run_dir / "state.json").write_text(json.dumps({"status": "finished"}))
stage = Path(reports) / run_id / "01_train"
stage.mkdir(parents=True)
(stage / "metrics.json").write_text(json.dumps({"details": {"run_dir": str(run_dir)}}))
print("trained", run_id)
"""


def fake_command(calls):
    def command(params_file, run_id, reports_dir, stages):
        calls.append((run_id, stages))
        return [sys.executable, "-c", FAKE_RUN, str(params_file), run_id, str(reports_dir)]

    return command


@pytest.fixture
def fake_notebooks(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    parameters = (
        'workspace: str = ""  # a folder\nseed: int = 0  # a seed\n'
        'report_dir: str = ""  # set by the runner\n'
    )
    write_notebook(folder / "00_data.ipynb", ["pass"], parameters)
    write_notebook(
        folder / "01_train.ipynb", ["pass"], parameters + "width: float = 0.5  # a width\n"
    )
    return folder


def test_run_sweep(tmp_path, base_params, fake_notebooks):
    base_params.write_text("common:\n  workspace: w\n  seed: 0\n01_train:\n  width: 0.5\n")
    grid = _grid(
        tmp_path,
        "base: base.yaml\nstages: '01'\n"
        "grid:\n  common.seed: [2, 99, 5]\n  01_train.width: [0.25]\n",
    )
    calls, lines = [], []
    result = analyze.run_sweep(
        grid,
        jobs=2,
        reports_dir=tmp_path / "reports",
        echo=lines.append,
        command=fake_command(calls),
        notebooks_dir=fake_notebooks,
    )
    names = ["sweep-seed_2-width_0.25", "sweep-seed_99-width_0.25", "sweep-seed_5-width_0.25"]
    assert sorted(run_id for run_id, _ in calls) == sorted(names)
    assert {stages for _, stages in calls} == {"01"}
    sweep_dir = result.sweep_dir
    assert sweep_dir.parent == tmp_path / "reports" and sweep_dir.name.startswith("sweep-")
    assert [run["status"] for run in result.runs] == ["ok", "failed", "ok"]
    assert result.runs[1]["returncode"] == 3
    assert "boom" in (sweep_dir / "sweep-seed_99-width_0.25.log").read_text()
    assert result.run_dirs[0] == sweep_dir.parent / "models" / names[0]
    assert result.run_dirs[1] is None
    written = yaml.safe_load((sweep_dir / "params" / f"{names[2]}.yaml").read_text())
    assert written["common"] == {"workspace": "w", "seed": 5}
    assert written["01_train"] == {"width": 0.25}

    table = result.table
    assert list(table["name"]) == names
    assert list(table["common.seed"]) == [2, 99, 5]
    assert list(table["sweep_status"]) == ["ok", "failed", "ok"]
    assert table["best"].tolist() == [False, False, True]
    assert table.loc[2, "best_mAP"] == pytest.approx(0.5)
    saved = (sweep_dir / "comparison.csv").read_text().splitlines()
    assert len(saved) == 4 and saved[0].startswith("name,common.seed,01_train.width")
    page = (sweep_dir / "comparison.html").read_text()
    assert "<tr class='best'><td><a href='sweep-seed_5-width_0.25/index.html'>" in page
    record = read_json(sweep_dir / "sweep.json")
    assert [run["status"] for run in record["runs"]] == ["ok", "failed", "ok"]
    assert any("FAILED (exit status 3)" in line for line in lines)
    assert lines[-1].startswith("sweep: 2 of 3 run(s) ok")


def test_run_sweep_checks_parameters_first(tmp_path, base_params, fake_notebooks):
    base_params.write_text("common:\n  seed: 0\n")
    grid = _grid(tmp_path, "base: base.yaml\ngrid:\n  01_train.depth: [1, 2]\n")
    calls = []
    with pytest.raises(ConfigError, match="'01_train.depth' is not a parameter of 01_train"):
        analyze.run_sweep(
            grid,
            reports_dir=tmp_path / "reports",
            echo=lambda line: None,
            command=fake_command(calls),
            notebooks_dir=fake_notebooks,
        )
    assert calls == [] and not (tmp_path / "reports").exists()
    grid = _grid(tmp_path, "base: base.yaml\nstages: '07'\ngrid:\n  common.seed: [1]\n")
    with pytest.raises(ConfigError, match="unknown stage '07'"):
        analyze.run_sweep(grid, echo=lambda line: None, notebooks_dir=fake_notebooks)


def test_sweep_command_dry_run(tmp_path, base_params, fake_notebooks, capsys):
    base_params.write_text("common:\n  seed: 0\n")
    grid = _grid(tmp_path, "base: base.yaml\ngrid:\n  common.seed: [1, 2]\n")
    parser = analyze.add_sweep_arguments(argparse.ArgumentParser(prog="platelab sweep"))
    args = parser.parse_args(
        ["--params-grid", str(grid), "-j", "2", "--dry-run", "--notebooks", str(fake_notebooks)]
    )
    assert args.handler is analyze.run_sweep_command and args.jobs == 2
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert "2 combination(s), 2 at a time" in out
    assert "sweep-seed_1: common.seed=1" in out and "sweep-seed_2: common.seed=2" in out
    with pytest.raises(SystemExit):
        parser.parse_args(["--params-grid", str(grid), "-j", "0"])


# --------------------------------------------------------------------------------------
# Stage 07's cells as calls


def test_run_folder_other_runs_and_read_runs(tmp_path):
    workspace = tmp_path / "work"
    models = workspace / "models"
    main = write_run(models / "ssd", [0, 100], mAP=[0.1, 0.2])
    write_run(models / "ssd.previous", [0, 100], mAP=[0.1, 0.3])
    write_run(models / "ssd-exports", [0, 100])
    assert analyze.run_folder("ssd", workspace) == models / "ssd"
    assert analyze.run_folder(str(main), workspace) == main
    assert analyze.other_runs([], main, workspace) == []
    assert analyze.other_runs(["*"], main, workspace) == [models / "ssd.previous"]
    named = analyze.other_runs(["gone", "*"], main, workspace)
    assert named == [models / "gone", models / "ssd.previous"]
    first = analyze.read_run(main)
    runs, lines = analyze.read_runs(named, first=first)
    assert [run.name for run in runs] == ["ssd", "ssd.previous"]
    assert lines == [f"problem: {models / 'gone'}: no such run folder"]


def test_open_run_says_problems_and_notes(tmp_path):
    run, lines = analyze.open_run(tmp_path / "missing")
    assert run is None and lines == [f"problem: {tmp_path / 'missing'}: no such run folder"]
    folder = write_run(tmp_path / "run", [0, 100], mAP=[0.1, 0.2])
    (folder / "state.json").unlink()
    run, lines = analyze.open_run(folder)
    assert run.name == "run" and run.problems
    assert lines == [f"problem: {line}" for line in run.problems]


def test_stop_line():
    assert analyze.stop_line(None) == "no stop step: no evaluations"
    none = analyze.StopPoint(None, None, None, None, "the curve never rose")
    assert analyze.stop_line(none) == "no stop step: the curve never rose"
    stop = analyze.StopPoint(600, 0.41234, 400, 150.0, "stopped")
    assert analyze.stop_line(stop) == (
        "validation mAP stopped improving at step 600 (mAP 0.4123); 400 steps (2.5 minutes) "
        "ran after it"
    )
    untimed = analyze.StopPoint(600, 0.4, 400, None, "stopped")
    assert analyze.stop_line(untimed).endswith("; 400 steps ran after it")


def test_analysis_figures_details_and_run_summary(tmp_path):
    from platelab import goals

    test_metrics = {
        "AP": 0.123456,
        "AP50": 0.5,
        "recall": 0.25,
        "per_class": {"vehicle": {"AP50": 0.91}},
    }
    heldout = goals.HeldoutEvaluation(
        ground_truth=[], predictions=[], videos=[], frames=6, seed=4242, score_threshold=0.5,
        metrics={"AP": 0.3, "per_class": {"vehicle": {"AP50": 0.812345, "num_gt": 3}}},
    )  # fmt: skip
    stop = analyze.StopPoint(600, 0.4, 400, None, "stopped")
    trend = {"rising": False}
    figures = analyze.analysis_figures(
        tmp_path / "ssd", stop=stop, overfitting={"overfitting": False}, split="test",
        test_metrics=test_metrics, heldout=heldout, trend=trend,
    )  # fmt: skip
    assert figures == {
        "run": "ssd",
        "stop step": 600,
        "steps after stop": 400,
        "overfitting": False,
        "test mAP": 0.1235,
        "test AP50": 0.5,
        "test AP50 vehicle": 0.91,
        "test recall": 0.25,
        "held-out AP50 vehicle": 0.8123,
        "held-out AP50 license_plate": None,
        "held-out frames": 6,
        "mAP rising": False,
    }
    starter_figures = analyze.analysis_figures(
        tmp_path / "ssd", stop=stop, overfitting={"overfitting": False}, split="test",
        test_metrics=test_metrics, heldout=heldout, trend=trend, init="starter",
    )  # fmt: skip
    assert starter_figures == {**figures, "mAP rising": "n/a"}
    no_stop = analyze.StopPoint(None, None, None, None, "flat")
    assert analyze.analysis_figures(
        tmp_path / "ssd", stop=no_stop, overfitting={}, split="val", test_metrics=None,
        heldout=None, trend=None,
    ) == {"run": "ssd", "stop step": None, "steps after stop": None, "overfitting": None}  # fmt: skip
    assert analyze.analysis_figures(
        tmp_path / "ssd", stop=None, overfitting={}, split="test", test_metrics=None,
        heldout=None, trend=None,
    ) == {"run": "ssd"}  # fmt: skip

    rows = [{"goal": "g", "measured": "1", "target": ">= 1", "met": True}]
    details = analyze.analysis_details(
        None, tmp_path / "ssd", stop=stop, overfitting={"verdict": "v"}, test_metrics=None,
        heldout=heldout, goal_rows=rows, comparison=None,
    )  # fmt: skip
    assert details["problems"] == [f"{tmp_path / 'ssd'}: not found"]
    assert details["stop"] == {"step": 600, "reason": "stopped", "steps_after": 400}
    assert details["heldout"]["seed"] == 4242 and details["heldout"]["frames"] == 6
    assert details["goals"] == rows and details["comparison"] is None
    json.dumps(details)

    run_dir = tmp_path / "ssd"
    assert (
        analyze.add_to_run_summary(
            run_dir, split="test", test_metrics=None, heldout=None, goal_rows=rows
        )
        is None
    )
    run_dir.mkdir()
    (run_dir / "metrics.json").write_text(json.dumps({"anchor_fit": 0.7}))
    path = analyze.add_to_run_summary(
        run_dir, split="test", test_metrics=test_metrics, heldout=heldout, goal_rows=rows
    )
    summary = read_json(path)
    assert summary["anchor_fit"] == 0.7 and summary["test_metrics"] == test_metrics
    assert summary["heldout_metrics"] == {"seed": 4242, "frames": 6, **heldout.metrics}
    assert summary["goals"] == rows
    (run_dir / "metrics.json").write_text("{")  # unreadable: started anew
    analyze.add_to_run_summary(
        run_dir, split="val", test_metrics=test_metrics, heldout=None, goal_rows=[]
    )
    assert read_json(run_dir / "metrics.json") == {"val_metrics": test_metrics, "goals": []}
