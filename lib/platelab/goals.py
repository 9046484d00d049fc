"""The detector's quality goals, measured: held-out synthetic video and rising mAP.

Stage 06's goals (the input pipeline's throughput is
:func:`platelab.train.measure_input_throughput`):

* **held-out synthetic video**: the run's best model on frames of videos rendered
  with a generator seed that no training video used (:func:`evaluate_heldout_videos`),
  scored by the evaluation engine. The goal, set for the ``full`` profile, is AP50 of
  at least :data:`HELDOUT_AP50_GOALS` per class (:func:`goal_rows`);
* **rising mAP**: the ``default`` profile's validation mAP should clearly rise within
  its time budget (:func:`map_trend`).

The held-out frames are sampled from the rendered videos at the collection stage's
rate; their ground truth is the generator's, with difficult objects (plates under
8 px high, vehicles under 16 px, mostly hidden objects) ignored as everywhere else.
"""

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np

from platelab import LABELS, detector, evaluate, paths, synth

logger = logging.getLogger(__name__)

HELDOUT_AP50_GOALS = {"vehicle": 0.95, "license_plate": 0.90}
"""AP50 per class on held-out synthetic video that a ``full``-profile model should reach."""

GOAL_PROFILE = "full"
"""The profile the held-out AP50 goals are set for."""

PROFILE_GOALS = {
    "default": {"vehicle": 0.90, "license_plate": 0.80},
    "full": HELDOUT_AP50_GOALS,
}
"""Held-out AP50 goals per profile: the default chain (the starter fine-tuned for 7
minutes) and ``full`` (a longer fine-tune on more data)."""


def goals_for(workspace):
    """``(profile, label -> AP50 goal)`` for a workspace: its profile's, else ``full``'s."""
    profile = workspace if workspace in PROFILE_GOALS else GOAL_PROFILE
    return profile, PROFILE_GOALS[profile]


RISING_CORRELATION = 0.8
"""Rank correlation of validation mAP with step from which the curve counts as rising."""

RISING_FACTOR = 2.0
"""The best validation mAP must also be at least this many times the first."""


@dataclasses.dataclass
class HeldoutEvaluation:
    """A model scored on frames of held-out synthetic videos.

    Attributes:
        ground_truth: the evaluation engine's per-frame dicts (pixels)
        predictions: flat predictions (score >= the ``min_score`` asked for)
        metrics: :func:`platelab.evaluate.evaluate_detections` at the operating threshold
        videos: the held-out videos' manifest entries
        frames: frames scored
        seed: the generator seed of the held-out videos
        score_threshold: the operating threshold
        plate_heights: license-plate AP50 per box-height bin
            (:func:`platelab.evaluate.ap_by_height`: 8-16, 16-32, 32+ px)
        difficult_below_px: the generator's difficulty heights per class (boxes lower
            than these are ignored, neither a hit nor a miss)
    """

    ground_truth: list
    predictions: list
    metrics: dict
    videos: list
    frames: int
    seed: int
    score_threshold: float
    plate_heights: list = dataclasses.field(default_factory=list)
    difficult_below_px: dict = dataclasses.field(default_factory=dict)


def evaluate_heldout_videos(
    run_dir,
    out_dir,
    *,
    seed,
    videos=6,
    seconds=5.0,
    fps=10.0,
    size=(960, 540),
    vantages=None,
    sample_fps=2.0,
    training_seed=None,
    score_threshold=None,
    min_score=0.05,
    progress=True,
):
    """Scores a run's best model on frames of synthetic videos no training video came from.

    The videos are rendered into ``out_dir`` (or reused when it already holds the same
    set, see :func:`platelab.synth.synthesize_or_reuse`); every ``fps / sample_fps``-th
    frame is decoded and scored against the generator's ground truth.

    Args:
        run_dir: a training run folder (its best model), or a
            :class:`platelab.detector.Detector`
        out_dir: the folder for the held-out videos
        seed: the generator seed of the held-out videos
        videos: number of videos (the vantage points are cycled)
        seconds: length of each video
        fps: frame rate of the videos
        size: ``(width, height)`` of the videos (the training videos' size)
        vantages: vantage points (default: all)
        sample_fps: frames scored per second of video
        training_seed: the training videos' seed, refused as ``seed``
        score_threshold: operating threshold (default: the run's)
        min_score: lowest score kept for AP
        progress: show progress bars

    Returns:
        a :class:`HeldoutEvaluation`

    Raises:
        ValueError: ``seed`` is the training seed, or a count or rate is not positive
        platelab.detector.ModelError: no usable model in ``run_dir``
    """
    from tqdm.auto import tqdm

    _check_heldout_arguments(seed, training_seed, videos, seconds, fps, sample_fps)
    model = (
        run_dir
        if isinstance(run_dir, detector.Detector)
        else detector.load(run_dir, allow_unfinished=True)
    )
    out_dir = Path(out_dir)
    manifest = synth.synthesize_or_reuse(
        out_dir,
        videos=int(videos),
        seconds=float(seconds),
        fps=float(fps),
        size=tuple(int(value) for value in size),
        seed=int(seed),
        vantages=vantages,
        progress=progress,
        purpose="evaluation",
    )
    every = max(1, int(round(float(fps) / float(sample_fps))))
    labels = [label for label in model.labels if label in LABELS]
    ground_truth, predictions = [], []
    for entry in tqdm(manifest["videos"], desc="held-out videos", disable=not progress):
        names, images, truths = _decode_scored_frames(out_dir, entry, every, labels)
        ground_truth += truths
        results = model.predict(images, score_threshold=min_score)
        predictions += [
            prediction
            for prediction in detector.flat_predictions(names, results)
            if prediction["label"] in labels
        ]
    threshold = model.score_threshold if score_threshold is None else float(score_threshold)
    metrics = evaluate.evaluate_detections(
        ground_truth, predictions, classes=labels, score_threshold=threshold
    )
    logger.info("held-out seed %s: %d frames scored", seed, len(ground_truth))
    plate_heights = (
        evaluate.ap_by_height(ground_truth, predictions, "license_plate")
        if "license_plate" in labels
        else []
    )
    return HeldoutEvaluation(
        ground_truth=ground_truth,
        predictions=predictions,
        metrics=metrics,
        videos=list(manifest["videos"]),
        frames=len(ground_truth),
        seed=int(seed),
        score_threshold=threshold,
        plate_heights=plate_heights,
        difficult_below_px=manifest.get("parameters", {}).get("difficult_below_px", {}),
    )


def training_video_parameters(workspace):
    """The generator parameters of a workspace's training videos, from stage 00's manifest.

    Args:
        workspace: a workspace name (``data/<workspace>/``)

    Returns:
        the manifest's ``parameters`` dict (``seed``, ``size``, ``fps``, ...), or ``None``
        where the workspace has no readable synthetic-video manifest (real footage)
    """
    path = paths.raw_dir(workspace) / "synthetic" / "manifest.json"
    try:
        parameters = json.loads(path.read_text(encoding="utf-8")).get("parameters")
    except (OSError, ValueError, AttributeError):
        return None
    return parameters if isinstance(parameters, dict) else None


RANDOM_INIT_REFERENCE = {
    "vehicle": 0.483,
    "license_plate": 0.312,
    "frames": 120,
    "source": "benchmarks/bench_time_to_accuracy.py, row crop192 (7 minutes from random "
    "weights, default recipe, seed 4242)",
}
"""Held-out AP50 of the default recipe trained 7 minutes from random weights (measured)."""


def starter_rows(run_dir, out_dir, *, starter_dir=None, progress=False, **heldout):
    """What the starter brings: held-out AP50 zero-shot, after this run, from random weights.

    The first two rows are measured now on the same held-out frames
    (:func:`evaluate_heldout_videos`); the third is quoted from the benchmark
    (:data:`RANDOM_INIT_REFERENCE`).

    Args:
        run_dir: the training run (its best model)
        out_dir: the held-out videos' folder (reused when it holds the same set)
        starter_dir: the starter (default: the shipped one)
        progress: show progress bars
        **heldout: :func:`evaluate_heldout_videos` arguments (``seed``, ``videos``...)

    Returns:
        a list of dicts ``model``, ``measured``, ``frames``, then AP50 per class
    """
    from platelab import starter as starter_lib

    starter = starter_lib.load(starter_dir)
    run = detector.load(run_dir, allow_unfinished=True)
    fused = ", each frame and its mirror fused (tta flip)" if run.tta == "flip" else ""
    rows = []
    for name, model in (
        ("starter, zero-shot (no fine-tuning)", starter.detector()),
        (f"this run (fine-tuned{fused})", run),
    ):
        evaluation = evaluate_heldout_videos(model, out_dir, progress=progress, **heldout)
        per_class = evaluation.metrics["per_class"]
        rows.append(
            {
                "model": name,
                "measured": "now",
                "frames": evaluation.frames,
                **{label: _ap50(per_class.get(label, {})) for label in HELDOUT_AP50_GOALS},
            }
        )
    rows.append(
        {
            "model": "random weights, 7 minutes",
            "measured": RANDOM_INIT_REFERENCE["source"],
            "frames": RANDOM_INIT_REFERENCE["frames"],
            **{label: RANDOM_INIT_REFERENCE[label] for label in HELDOUT_AP50_GOALS},
        }
    )
    return rows


def _ap50(values):
    value = values.get("AP50")
    if value is None or np.isnan(value) or not values.get("num_gt", 0):
        return None
    return round(float(value), 3)


def goal_rows(metrics, goals=None):
    """The held-out AP50 goals against what was measured, one row per class.

    Args:
        metrics: :func:`platelab.evaluate.evaluate_detections` output
        goals: label -> AP50 goal (default :data:`HELDOUT_AP50_GOALS`)

    Returns:
        a list of dicts ``class``, ``AP50``, ``goal``, ``met`` (``None`` where the class
        has no ground truth to score)
    """
    goals = HELDOUT_AP50_GOALS if goals is None else goals
    rows = []
    for label, goal in goals.items():
        values = metrics.get("per_class", {}).get(label, {})
        value = values.get("AP50")
        scored = value is not None and not np.isnan(value) and values.get("num_gt", 0) > 0
        rows.append(
            {
                "class": label,
                "AP50": float(value) if scored else None,
                "goal": goal,
                "met": bool(value >= goal) if scored else None,
            }
        )
    return rows


def map_trend(steps, values):
    """Does validation mAP clearly rise over a run?

    Rising means both: the rank correlation of mAP with step is at least
    :data:`RISING_CORRELATION` (a steady trend, not one lucky evaluation), and the
    best mAP is at least :data:`RISING_FACTOR` times the first.

    Args:
        steps: the evaluation steps
        values: validation mAP at those steps (NaN entries are left out)

    Returns:
        a dict ``evaluations``, ``first``, ``best``, ``last``, ``correlation`` (Spearman),
        ``rising`` (``None`` with fewer than three evaluations)
    """
    steps = np.asarray(steps, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    kept = ~np.isnan(values)
    steps, values = steps[kept], values[kept]
    result = {
        "evaluations": int(len(values)),
        "first": float(values[0]) if len(values) else None,
        "best": float(values.max()) if len(values) else None,
        "last": float(values[-1]) if len(values) else None,
        "correlation": None,
        "rising": None,
    }
    if len(values) < 3:
        return result
    correlation = _spearman(steps, values)
    result["correlation"] = correlation
    result["rising"] = bool(
        correlation >= RISING_CORRELATION
        and values.max() >= RISING_FACTOR * values[0]
        and values.max() > values[0]
    )
    return result


def run_map_trend(metrics):
    """:func:`map_trend` of a run's ``metrics.csv`` table, where it has validation mAP.

    Args:
        metrics: the run's metrics as a DataFrame (``analyze.Run.metrics``: columns
            ``step`` and ``mAP``, NaN on rows without an evaluation), or ``None``

    Returns:
        :func:`map_trend`'s dict, or ``None`` without rows or without an ``mAP`` column
    """
    if metrics is None or len(metrics) == 0 or "mAP" not in metrics:
        return None
    return map_trend(metrics["step"], metrics["mAP"])


def trend_lines(trend, state):
    """Stage 06's lines on validation mAP: first against best, then whether it rises.

    Args:
        trend: :func:`map_trend`'s dict, or ``None`` (no evaluation)
        state: the training run's final state (``status``, ``step``, ``best_step``)

    Returns:
        a list of one or two lines of text (the second only with a verdict on rising)
    """
    first = trend["first"] if trend is not None and trend["first"] is not None else np.nan
    best = trend["best"] if trend is not None and trend["best"] is not None else np.nan
    keep = state.get("keep", "map")
    kept = (
        f" (step {state.get('best_step')})"
        if keep == "map"
        else f"; kept step {state.get('best_step')} by {detector.KEEP_METRICS.get(keep, keep)}"
    )
    lines = [
        f"validation mAP {first:.4f} at the first evaluation -> {best:.4f} at best{kept}; "
        f"status {state['status']} at step {state['step']}"
    ]
    if trend is not None and trend["rising"] is not None:
        lines.append(
            f"rank correlation of validation mAP with step {trend['correlation']:.2f} over "
            f"{trend['evaluations']} evaluations: "
            + ("rising" if trend["rising"] else "not clearly rising")
            + f" (goal: correlation >= {RISING_CORRELATION}, best >= {RISING_FACTOR:g}x first)"
        )
    return lines


def heldout_frame_size(size, training_videos=None):
    """The held-out videos' frame size: the one asked for, else the training videos'.

    Args:
        size: ``"WxH"`` text (e.g. ``"960x540"``); empty: the training videos' size
        training_videos: :func:`training_video_parameters`' dict, or ``None``

    Returns:
        ``(width, height)`` ints; ``(960, 540)`` without either
    """
    if size:
        width, height = (int(part) for part in size.lower().split("x"))
        return width, height
    width, height = (training_videos or {}).get("size", (960, 540))
    return int(width), int(height)


def heldout_line(heldout, size):
    """One line on a :class:`HeldoutEvaluation`: seed, videos, frames, mAP and AP50.

    Args:
        heldout: a :class:`HeldoutEvaluation`
        size: ``(width, height)`` of its frames (:func:`heldout_frame_size`)
    """
    vantages = sorted({video["vantage"] for video in heldout.videos})
    return (
        f"held-out seed {heldout.seed}: {len(heldout.videos)} videos ({', '.join(vantages)}), "
        f"{heldout.frames} frames at {size[0]}x{size[1]}; "
        f"mAP {heldout.metrics['AP']:.4f}, AP50 {heldout.metrics['AP50']:.4f}"
    )


def detection_pretrained(init):
    """Whether a run's ``init`` was a detector already (the starter, a starter or run
    folder), rather than random weights or an ImageNet backbone alone."""
    init = str(init or "none").strip()
    return init.lower() not in ("none", "auto", "imagenet") and not init.endswith(".h5")


def rising_figure(trend, init):
    """The ``mAP rising`` key figure: the trend's verdict, ``"n/a"`` for a run fine-tuned
    from a detector (see :func:`goal_table`), None without a verdict."""
    if trend is None or trend.get("rising") is None:
        return None
    return "n/a" if detection_pretrained(init) else trend["rising"]


def goal_table(heldout, trend, throughput, workspace, init=None):
    """The training stage's goals against what was measured, one row per goal.

    Args:
        heldout: a :class:`HeldoutEvaluation`, or ``None`` (not evaluated)
        trend: :func:`map_trend`'s dict, or ``None`` (no validation mAP)
        throughput: :func:`platelab.train.measure_input_throughput`'s dict (``ratio``,
            ``real_images_per_s``, ``bare_images_per_s``), or ``None`` (not measured)
        workspace: the workspace name, which picks the held-out goals (:func:`goals_for`)
        init: the run's ``init`` (``config.json``). The rising-mAP goal is for training
            that starts without a detector: a run fine-tuned from one
            (:func:`detection_pretrained`) starts near its best, so the row says
            ``n/a`` (``met`` None) and why; 06's starter table compares such a run
            with the starter as is

    Returns:
        a list of dicts ``goal``, ``measured`` (text), ``target`` (text), ``met``
        (bool, or ``None`` where it cannot be judged): the held-out AP50 per class,
        then rising mAP, then input throughput, each only where measured
    """
    from platelab.train import THROUGHPUT_GOAL

    rows = []
    if heldout is not None:
        profile, profile_goals = goals_for(workspace)
        for row in goal_rows(heldout.metrics, profile_goals):
            rows.append(
                {
                    "goal": f"held-out AP50 {row['class']} ({profile} profile)",
                    "measured": "no ground truth" if row["AP50"] is None else f"{row['AP50']:.4f}",
                    "target": f">= {row['goal']}",
                    "met": row["met"],
                }
            )
    if trend is not None:
        measured = (
            f"{trend['first']:.4f} -> {trend['best']:.4f} over {trend['evaluations']} "
            f"evaluations, rank correlation {trend['correlation']:.2f}"
            if trend["correlation"] is not None
            else f"{trend['evaluations']} evaluation(s)"
        )
        target = f"correlation >= {RISING_CORRELATION}, best >= {RISING_FACTOR:g}x first"
        pretrained = detection_pretrained(init)
        rows.append(
            {
                "goal": "validation mAP rising (default profile)",
                "measured": measured,
                "target": f"n/a: fine-tuned from a detector (init {init}), no doubling to "
                f"expect ({target} is for training without one)"
                if pretrained
                else target,
                "met": None if pretrained else trend["rising"],
            }
        )
    if throughput:
        rows.append(
            {
                "goal": "input pipeline throughput",
                "measured": f"{throughput['real_images_per_s']:.1f} / "
                f"{throughput['bare_images_per_s']:.1f} images/s = {throughput['ratio']:.3f}",
                "target": f">= {THROUGHPUT_GOAL}",
                "met": throughput["ratio"] >= THROUGHPUT_GOAL,
            }
        )
    return rows


def plate_height_table(heldout):
    """License-plate AP50 per box-height bin of a held-out evaluation, as a table.

    Args:
        heldout: a :class:`HeldoutEvaluation`

    Returns:
        a DataFrame indexed by ``bin`` (``"8-16 px"``, ...) with columns ``plates``
        (boxes in the bin) and ``plate AP50`` (rounded to 3 places; NaN: no box)
    """
    import pandas as pd

    return (
        pd.DataFrame(heldout.plate_heights, columns=["bin", "low", "high", "num_gt", "AP50"])
        .drop(columns=["low", "high"])
        .set_index("bin")
        .rename(columns={"num_gt": "plates", "AP50": "plate AP50"})
        .round(3)
    )


def _check_heldout_arguments(seed, training_seed, videos, seconds, fps, sample_fps):
    """Raises ValueError for the training seed as held-out seed, or a count not positive."""
    if training_seed is not None and int(seed) == int(training_seed):
        raise ValueError(
            f"held-out seed {seed} is the training videos' seed: choose another generator seed"
        )
    if videos < 1 or seconds <= 0 or fps <= 0 or sample_fps <= 0:
        raise ValueError(
            "videos, seconds, fps and sample_fps must be positive, got "
            f"{videos}, {seconds}, {fps}, {sample_fps}"
        )


def _decode_scored_frames(out_dir, entry, every, labels):
    """Decodes every ``every``-th frame of one held-out video with its ground truth.

    Returns:
        ``(names, images, ground_truth)``: ``"<source_id>/<frame>"`` names, ``(H, W, 3)``
        uint8 RGB frames and the evaluation engine's per-frame dicts

    Raises:
        ValueError: frames of the ground truth that the video does not hold
    """
    import cv2

    truth = json.loads((out_dir / entry["ground_truth"]).read_text(encoding="utf-8"))
    wanted = {frame["index"]: frame for frame in truth["frames"] if frame["index"] % every == 0}
    names, images, ground_truth = [], [], []
    capture = cv2.VideoCapture(str(out_dir / entry["video"]))
    try:
        index = 0
        while wanted:
            ok, frame_bgr = capture.read()
            if not ok:
                break
            frame = wanted.pop(index, None)
            if frame is not None:
                name = f"{entry['source_id']}/{index:06d}"
                names.append(name)
                images.append(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB))
                ground_truth.append(_ground_truth_entry(name, frame, truth, labels))
            index += 1
    finally:
        capture.release()
    if wanted:
        raise ValueError(
            f"{out_dir / entry['video']}: {len(wanted)} frame(s) of its ground truth "
            "could not be decoded"
        )
    return names, images, ground_truth


def _ground_truth_entry(name, frame, truth, labels):
    objects = [item for item in frame["objects"] if item["label"] in labels]
    return {
        "image": name,
        "width": int(truth["width"]),
        "height": int(truth["height"]),
        "boxes": np.asarray([item["box"] for item in objects], np.float32).reshape(-1, 4),
        "labels": [item["label"] for item in objects],
        "ignore": [bool(item.get("difficult")) for item in objects],
    }


def _spearman(first, second):
    """Spearman's rank correlation (pandas: average ranks for ties); 0 where one side is constant."""
    import pandas as pd

    if np.ptp(first) == 0 or np.ptp(second) == 0:
        return 0.0
    return float(pd.Series(first).corr(pd.Series(second), method="spearman"))
