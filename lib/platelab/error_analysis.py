"""Final evaluation of a trained detector on a held-out split, and its error review.

:func:`evaluate_run` scores a run's best model on a split of the merged dataset
(COCO metrics through :mod:`platelab.evaluate`); the other functions break the
result down (by object size, vantage point, lighting, plate style), plot it
(precision-recall, F1 against the score threshold, confusion matrix), and put
every box's verdict into FiftyOne (true positive, false positive, false negative)
with saved views of the worst false positives and the missed plates.

Plate style is not annotated: it is read from the plate box's aspect ratio
(width / height at least :data:`EU_ASPECT` is a one-line EU plate, else a US
plate), which is what the anchors see too.
"""

import collections
import dataclasses
import logging
from pathlib import Path

import numpy as np

from platelab import detector, evaluate, train, tta, visualize

logger = logging.getLogger(__name__)

EU_ASPECT = 3.3
"""Plate boxes at least this many times wider than high are counted as EU plates."""


@dataclasses.dataclass
class SplitEvaluation:
    """A model's evaluation on one split.

    Attributes:
        split: the split's name
        ground_truth: the evaluation engine's per-image dicts (pixels)
        predictions: flat predictions (score >= ``min_score``)
        metrics: :func:`platelab.evaluate.evaluate_detections` at the operating threshold
        data: the split in memory (:class:`platelab.train.SplitData`)
        labels: the model's labels
        score_threshold: the operating threshold
        dataset_dir: the merged dataset folder
    """

    split: str
    ground_truth: list
    predictions: list
    metrics: dict
    data: object
    labels: list
    score_threshold: float
    dataset_dir: Path


def evaluate_run(run_dir, dataset_dir, split="test", score_threshold=None, min_score=0.05):
    """Scores a run's best model on a split of a merged dataset.

    The run's ``tta`` applies as in :meth:`platelab.detector.Detector.predict` (with
    ``flip``, each stored input's mirror, :meth:`platelab.model.InputGeometry.mirror`,
    is scored too and the two fused).

    Args:
        run_dir: a training run folder
        dataset_dir: the merged dataset (stage 05)
        split: ``test`` (default), ``val`` or ``train``
        score_threshold: operating threshold (default: the run's ``score_threshold``)
        min_score: lowest score kept for AP (the curves need low scores too)

    Returns:
        a :class:`SplitEvaluation`

    Raises:
        platelab.detector.ModelError: no usable model in ``run_dir``
        platelab.train.TrainingError: the split is missing or empty
    """
    model = detector.load(run_dir, allow_unfinished=True)
    data = train.load_split(dataset_dir, split, model.labels, model.geometry)
    if len(data) == 0:
        raise train.TrainingError(f"{dataset_dir}: the {split} split is empty")
    threshold = model.score_threshold if score_threshold is None else float(score_threshold)
    predictions = []
    for start in range(0, len(data), 8):
        batch = data.images[start : start + 8].astype(np.float32)
        sizes = [tuple(int(value) for value in size) for size in data.sizes[start : start + 8]]
        views = [batch]
        if model.tta == "flip":  # the mirror images' inputs, from the stored ones
            views.append(
                np.stack(
                    [
                        model.geometry.mirror(image, *size)
                        for image, size in zip(batch, sizes, strict=True)
                    ]
                )
            )
        results = [
            result for view in views for result in model.detect_prepared(view, sizes, min_score)
        ]
        merged = tta.merge(results, sizes, model.tta, model.nms_iou, model.max_detections)
        for offset, result in enumerate(merged):
            for box, score, label in zip(
                result["boxes"], result["scores"], result["labels"], strict=True
            ):
                predictions.append(
                    {
                        "image": data.names[start + offset],
                        "label": label,
                        "score": float(score),
                        "bbox": [float(value) for value in box],
                    }
                )
    ground_truth = data.ground_truth()
    metrics = evaluate.evaluate_detections(
        ground_truth, predictions, classes=list(model.labels), score_threshold=threshold
    )
    return SplitEvaluation(
        split,
        ground_truth,
        predictions,
        metrics,
        data,
        list(model.labels),
        threshold,
        Path(dataset_dir),
    )


def breakdown(evaluation, field):
    """COCO metrics per value of an image field (``vantage``, ``lighting``, ``group``).

    Args:
        evaluation: a :class:`SplitEvaluation`
        field: a key of the images' info (see :class:`platelab.train.SplitData`)

    Returns:
        a DataFrame, one row per value: images, boxes, AP, AP50 and per-class AP50
    """
    import pandas as pd

    values = [info.get(field) or "(unknown)" for info in evaluation.data.info]
    rows = []
    for value in sorted(set(values)):
        chosen = [
            gt for gt, found in zip(evaluation.ground_truth, values, strict=True) if found == value
        ]
        names = {gt["image"] for gt in chosen}
        predictions = [item for item in evaluation.predictions if item["image"] in names]
        metrics = evaluate.evaluate_detections(
            chosen,
            predictions,
            classes=evaluation.labels,
            score_threshold=evaluation.score_threshold,
        )
        row = {
            field: value,
            "images": len(chosen),
            "boxes": sum(len(gt["labels"]) for gt in chosen),
            "AP": metrics["AP"],
            "AP50": metrics["AP50"],
        }
        for label in evaluation.labels:
            row[f"AP50 {label}"] = metrics["per_class"].get(label, {}).get("AP50")
        rows.append(row)
    return pd.DataFrame(rows)


def size_table(evaluation):
    """AP by object size (COCO's small < 32² px <= medium < 96² px <= large), per class."""
    import pandas as pd

    rows = []
    for label, values in [("all", evaluation.metrics), *evaluation.metrics["per_class"].items()]:
        rows.append(
            {
                "class": label,
                **{size: values.get(f"AP_{size}") for size in ("small", "medium", "large")},
            }
        )
    return pd.DataFrame(rows).set_index("class")


def plate_style_recall(evaluation, iou_threshold=0.5):
    """Recall of plates by style (US / EU from the box's aspect ratio) at the operating threshold.

    Returns:
        a DataFrame: style, plates, found, recall
    """
    import pandas as pd

    if "license_plate" not in evaluation.labels:
        return pd.DataFrame()
    matched = _match(evaluation, iou_threshold)
    counts = {"US (aspect < 3.3)": [0, 0], "EU (aspect >= 3.3)": [0, 0]}
    for gt, statuses in zip(evaluation.ground_truth, matched["ground_truth"], strict=True):
        for box, label, status in zip(gt["boxes"], gt["labels"], statuses, strict=True):
            if label != "license_plate" or status["status"] not in ("found", "missed"):
                continue
            aspect = (box[2] - box[0]) / max(box[3] - box[1], 1e-6)
            key = "EU (aspect >= 3.3)" if aspect >= EU_ASPECT else "US (aspect < 3.3)"
            counts[key][0] += 1
            counts[key][1] += status["status"] == "found"
    return pd.DataFrame(
        [
            {
                "style": style,
                "plates": total,
                "found": found,
                "recall": found / total if total else None,
            }
            for style, (total, found) in counts.items()
        ]
    )


def plot_pr_curves(evaluation):
    """Precision against recall per class at IoU 0.5, the operating point marked."""
    import matplotlib.pyplot as plt

    curves = evaluate.pr_curves(evaluation.ground_truth, evaluation.predictions, evaluation.labels)
    figure, axis = plt.subplots(figsize=(7, 5))
    for label, curve in curves.items():
        if not curve["num_gt"]:
            continue
        axis.plot(
            curve["recall_grid"],
            curve["precision_grid"],
            label=f"{label} (AP50 {curve['ap'] or 0:.2f})",
        )
        chosen = np.asarray(curve["scores"]) >= evaluation.score_threshold
        if chosen.any():
            last = np.flatnonzero(chosen)[-1]
            axis.scatter(curve["recall"][last], curve["precision"][last], s=50, zorder=3)
    axis.set_xlabel("recall (share of ground-truth boxes found, IoU >= 0.5)")
    axis.set_ylabel("precision (share of detections that are right)")
    axis.set_xlim(0, 1.02)
    axis.set_ylim(0, 1.02)
    axis.set_title(f"Precision-recall on the {evaluation.split} split")
    axis.legend(loc="lower left")
    visualize.add_caption(
        figure,
        f"The further up and right the better; dots: the operating threshold {evaluation.score_threshold:.2f}.",
    )
    return figure


def plot_f1_threshold(evaluation):
    """F1 against score threshold per class, the operating threshold marked."""
    import matplotlib.pyplot as plt

    curves = evaluate.pr_curves(evaluation.ground_truth, evaluation.predictions, evaluation.labels)
    figure, axis = plt.subplots(figsize=(7, 4.5))
    best = {}
    for label, curve in curves.items():
        if not curve["num_gt"] or not len(curve["scores"]):
            continue
        axis.plot(curve["scores"], curve["f1"], label=label)
        index = int(np.argmax(curve["f1"]))
        best[label] = (float(curve["scores"][index]), float(curve["f1"][index]))
    axis.axvline(
        evaluation.score_threshold, color="black", linestyle="--", label="operating threshold"
    )
    axis.set_xlabel("score threshold (detections kept at or above it)")
    axis.set_ylabel("F1 (harmonic mean of precision and recall)")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.02)
    axis.set_title(f"F1 against the score threshold ({evaluation.split} split)")
    axis.legend()
    text = "; ".join(
        f"{label} peaks at {score:.2f} (F1 {f1:.2f})" for label, (score, f1) in best.items()
    )
    visualize.add_caption(
        figure, f"The dashed line should sit near each curve's peak: {text or 'no detections'}."
    )
    return figure, best


def plot_confusion(evaluation, iou_threshold=0.5):
    """The confusion matrix with background, at the operating threshold."""
    import matplotlib.pyplot as plt

    matrix, names = evaluate.confusion_matrix(
        evaluation.ground_truth,
        evaluation.predictions,
        evaluation.labels,
        iou_threshold=iou_threshold,
        score_threshold=evaluation.score_threshold,
    )
    figure, axis = plt.subplots(figsize=(5.5, 4.5))
    axis.imshow(np.log1p(matrix), cmap="Blues")
    for row in range(len(names)):
        for column in range(len(names)):
            axis.text(column, row, int(matrix[row, column]), ha="center", va="center")
    axis.set_xticks(range(len(names)), names, rotation=20)
    axis.set_yticks(range(len(names)), names)
    axis.set_xlabel("predicted class (boxes)")
    axis.set_ylabel("true class (boxes)")
    axis.set_title(
        f"Confusion matrix, score >= {evaluation.score_threshold:.2f}, IoU >= {iou_threshold}"
    )
    visualize.add_caption(
        figure,
        "The diagonal is right; the last column is missed boxes, the last row detections of nothing.",
    )
    return figure, matrix, names


def error_examples(evaluation, kind, count=6, iou_threshold=0.5):
    """Images of the worst errors, drawn: ``false_positives`` (highest-scored wrong
    detections) or ``missed_plates`` (plates with no detection).

    Returns:
        ``(images_bgr, titles)`` for :func:`platelab.visualize.image_grid`
    """

    matched = _match(evaluation, iou_threshold)
    picks = []
    if kind == "false_positives":
        wrong = [
            (evaluation.predictions[index]["score"], index)
            for index, item in enumerate(matched["predictions"])
            if item["status"] == "fp"
        ]
        for score, index in sorted(wrong, reverse=True)[:count]:
            prediction = evaluation.predictions[index]
            picks.append(
                (
                    prediction["image"],
                    [dict(prediction, label=prediction["label"])],
                    f"{prediction['label']} {score:.2f}: no such object",
                )
            )
    elif kind == "missed_plates":
        for gt, statuses in zip(evaluation.ground_truth, matched["ground_truth"], strict=True):
            for box, label, status in zip(gt["boxes"], gt["labels"], statuses, strict=True):
                if label == "license_plate" and status["status"] == "missed" and len(picks) < count:
                    height = box[3] - box[1]
                    picks.append(
                        (
                            gt["image"],
                            [{"label": label, "bbox": list(box)}],
                            f"missed plate, {height:.0f} px high",
                        )
                    )
    else:
        raise ValueError(f"unknown error kind {kind!r}")
    images, titles = [], []
    for name, objects, title in picks:
        image = _read_original(evaluation, name)
        if image is None:
            continue
        images.append(visualize.draw_objects(image, objects))
        titles.append(f"{name}: {title}")
    return images, titles


def verdict_frames(evaluation, count=3, iou_threshold=0.5):
    """A few test frames drawn as a reader should first see the model: for the run's index page.

    The frames are spread over the split (sorted by name, so over its videos), each the
    busiest of its stretch. Predictions at the operating threshold are drawn in their
    label's colour with their score; ground-truth objects nothing found, in red.

    Args:
        evaluation: a :class:`SplitEvaluation`
        count: frames wanted
        iou_threshold: IoU at which a prediction finds an object

    Returns:
        a list of HxWx3 uint8 BGR images (fewer than ``count`` when the split is smaller)
    """
    matched = _match(evaluation, iou_threshold)
    order = sorted(
        range(len(evaluation.ground_truth)), key=lambda i: evaluation.ground_truth[i]["image"]
    )
    stretches = [
        order[i * len(order) // count : (i + 1) * len(order) // count] for i in range(count)
    ]
    chosen = [
        max(stretch, key=lambda i: len(evaluation.ground_truth[i]["boxes"]))
        for stretch in stretches
        if stretch
    ]
    shown = collections.defaultdict(list)
    for prediction, item in zip(evaluation.predictions, matched["predictions"], strict=True):
        if item["status"] in ("tp", "fp", "ignored"):
            shown[prediction["image"]].append(prediction)
    images = []
    for index in chosen:
        truth = evaluation.ground_truth[index]
        image = _read_original(evaluation, truth["image"])
        if image is None:
            continue
        objects = list(shown[truth["image"]])
        for box, label, status in zip(
            truth["boxes"], truth["labels"], matched["ground_truth"][index], strict=True
        ):
            if status["status"] == "missed":
                objects.append(
                    {
                        "label": f"missed {label}",
                        "bbox": list(box),
                        "color": visualize.MISSED_COLOR_BGR,
                    }
                )
        images.append(visualize.draw_objects(image, objects))
    return images


def to_fiftyone(evaluation, name, overwrite=True, iou_threshold=0.5):
    """Writes the split with ground truth and predictions into a FiftyOne dataset and runs
    FiftyOne's own detection evaluation (``eval`` = tp / fp / fn on every box).

    Saved views: ``worst_false_positives`` (false-positive predictions, highest confidence
    first) and ``missed_plates`` (images with an unfound plate, only those plates shown).

    Returns:
        the FiftyOne dataset
    """
    from platelab.fiftyone_setup import import_fiftyone

    fo = import_fiftyone()
    from fiftyone import ViewField as F

    if fo.dataset_exists(name):
        if not overwrite:
            return fo.load_dataset(name)
        fo.delete_dataset(name)
    dataset = fo.Dataset(name, persistent=True)
    samples = []
    by_image = {}
    for prediction in evaluation.predictions:
        by_image.setdefault(prediction["image"], []).append(prediction)
    for gt, info in zip(evaluation.ground_truth, evaluation.data.info, strict=True):
        path = _original_path(evaluation, gt["image"])
        if path is None:
            continue
        width, height = gt["width"], gt["height"]

        sample = fo.Sample(filepath=str(path))
        sample["ground_truth"] = fo.Detections(
            detections=[
                _detection(fo, label, box, width, height, iscrowd=bool(ignore))
                for box, label, ignore in zip(gt["boxes"], gt["labels"], gt["ignore"], strict=True)
            ]
        )
        sample["predictions"] = fo.Detections(
            detections=[
                _detection(fo, item["label"], item["bbox"], width, height, confidence=item["score"])
                for item in by_image.get(gt["image"], [])
                if item["score"] >= evaluation.score_threshold
            ]
        )
        sample["vantage"] = info.get("vantage")
        sample["lighting"] = info.get("lighting")
        sample.tags.append(evaluation.split)
        samples.append(sample)
    dataset.add_samples(samples, progress=False)
    dataset.evaluate_detections(
        "predictions",
        gt_field="ground_truth",
        eval_key="eval",
        iou=iou_threshold,
        classes=evaluation.labels,
        progress=False,
    )
    worst = dataset.filter_labels("predictions", F("eval") == "fp").sort_by(
        F("predictions.detections.confidence").max(), reverse=True
    )
    dataset.save_view("worst_false_positives", worst)
    missed = dataset.filter_labels(
        "ground_truth", (F("eval") == "fn") & (F("label") == "license_plate")
    )
    dataset.save_view("missed_plates", missed)
    return dataset


def _detection(fo, label, box, width, height, **extra):
    x0, y0, x1, y1 = box
    return fo.Detection(
        label=label,
        bounding_box=[x0 / width, y0 / height, (x1 - x0) / width, (y1 - y0) / height],
        **extra,
    )


def _match(evaluation, iou_threshold):
    """:func:`platelab.evaluate.match_detections` of an evaluation at its operating threshold."""
    return evaluate.match_detections(
        evaluation.ground_truth,
        evaluation.predictions,
        classes=evaluation.labels,
        iou_threshold=iou_threshold,
        score_threshold=evaluation.score_threshold,
    )


def _original_path(evaluation, name):
    folder = evaluation.dataset_dir / "JPEGImages"
    for candidate in sorted(folder.glob(f"{name}.*")):
        return candidate
    return None


def _read_original(evaluation, name):
    import cv2

    path = _original_path(evaluation, name)
    if path is not None:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is not None:
            return image
    index = evaluation.data.names.index(name)
    width, height = (int(value) for value in evaluation.data.sizes[index])
    # The image part of the network input (a letterboxed input also holds padding).
    shown = evaluation.data.geometry.content(evaluation.data.images[index], width, height)
    return cv2.resize(shown[:, :, ::-1], (width, height))
