"""Detection metrics: COCO-style AP per class and overall, an operating point, PR curves.

:func:`evaluate_detections` scores predicted boxes against ground truth the way
``pycocotools`` (``COCOeval``, ``iouType="bbox"``, default parameters) does,
and agrees with it to floating-point rounding: per image and class the
predictions are sorted by score (stable), the top ``max_detections`` kept and
matched greedily, at each IoU threshold 0.50:0.05:0.95, to the unmatched ground
truth box of highest IoU, preferring boxes that are not ignored; precision is
interpolated (monotone envelope) at 101 recall points. The matching runs for
all images at once with NumPy, many times faster than ``pycocotools``
(``benchmarks/bench_evaluate.py``).

Inputs:

* **ground truth**: one dict per image, ``{"image": key, "width", "height",
  "boxes": (n, 4) [xmin, ymin, xmax, ymax] pixels, "labels": n names,
  "ignore": n bools (optional)}``, as :func:`load_ground_truth` returns for a
  VOC folder or zip (a CVAT "PASCAL VOC 1.1" export or a merged dataset);
* **predictions**: a flat list of ``{"image", "label", "score", "bbox"}``
  (``bbox`` ``[xmin, ymin, xmax, ymax]`` pixels), the ``platelab predict``
  JSON (see :func:`load_predictions`). ``image`` names a ground-truth image by
  its key, path, file name or stem.

Semantics:

* **Classes**: only the classes scored (``classes``; default: the labels the
  ground truth has) count; predictions of other labels are left out and
  counted (``unscored_predictions``), so a dataset that annotates only some
  classes is scored on those only. Overall AP figures are the mean over the
  classes that have ground truth (a class without is ``None``, as
  ``pycocotools`` gives -1 and leaves it out of the mean).
* **Ignored boxes** (VOC ``difficult``) behave exactly like COCO's crowd
  regions, which is what ``pycocotools`` makes of ``ignore`` (it takes the
  flag from ``iscrowd``): a prediction matched to one is neither a true nor a
  false positive; the overlap used is intersection over the *prediction's*
  area, and one ignored box absorbs any number of predictions. They are not
  counted in recall.
* **Areas** (small < 32², medium 32²-96², large > 96², both ends inclusive as
  in ``pycocotools``) are ``w * h`` of the boxes in the original image's pixels.
* **Operating point**: ``precision``, ``recall`` and ``F1`` count the
  predictions scoring at least ``score_threshold`` matched at ``iou_threshold``
  (over all areas); overall figures pool the counts of every scored class
  (micro average). Precision is ``None`` without predictions, recall without
  ground truth.

The metrics document (JSON-able; ``None`` where undefined)::

    {"AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR",
     "precision", "recall", "F1", "tp", "fp", "fn",
     "num_images", "num_gt", "num_ignored", "num_pred",
     "score_threshold", "iou_threshold", "max_detections",
     "classes": [...], "unscored_predictions": {label: count},
     "per_class": {label: {"AP", "AP50", "AP75", "AP_small", "AP_medium",
                           "AP_large", "AR", "precision", "recall", "F1",
                           "tp", "fp", "fn", "num_gt", "num_ignored", "num_pred"}}}

``AR`` is COCO's AR@``max_detections`` (mean recall over the IoU thresholds).
"""

import argparse
import json
import logging
import math
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import numpy as np

from platelab import LABELS, annotations
from platelab.atomic import atomic_write_json
from platelab.boxes import coco_iou_matrix, coco_iou_pairs
from platelab.paths import from_cwd

logger = logging.getLogger(__name__)

IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
"""COCO's IoU thresholds 0.50:0.05:0.95 (computed exactly as ``pycocotools`` does)."""
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
"""COCO's 101 recall points at which precision is interpolated."""
AREA_RANGES = {
    "all": (0.0, 1e5**2),
    "small": (0.0, 32.0**2),
    "medium": (32.0**2, 96.0**2),
    "large": (96.0**2, 1e5**2),
}
"""COCO's object area ranges in square pixels (both ends inclusive)."""
METRIC_KEYS = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR")
OPERATING_KEYS = ("precision", "recall", "F1", "tp", "fp", "fn")
BACKGROUND = "background"
PREDICTION_STATUSES = ("tp", "fp", "ignored", "below_threshold", "over_limit", "unscored")
"""What :func:`match_detections` says of each prediction (see there)."""
GROUND_TRUTH_STATUSES = ("found", "missed", "ignored", "unscored")

_MATCH_BUDGET = 1 << 22
"""Cells (groups x predictions x boxes) the matcher holds at once."""


def evaluate_detections(
    ground_truth,
    predictions,
    classes=None,
    score_threshold=0.5,
    iou_threshold=0.5,
    max_detections=100,
):
    """Scores predictions against ground truth: COCO AP figures and an operating point.

    Args:
        ground_truth: per-image dicts (see the module docstring); every image
            counts, with or without boxes
        predictions: ``{"image", "label", "score", "bbox"}`` dicts
        classes: the class labels to score (default: those in the ground truth,
            :data:`platelab.LABELS` first)
        score_threshold: lowest score of the predictions counted in
            ``precision``, ``recall`` and ``F1``
        iou_threshold: IoU at which the operating point matches
        max_detections: predictions kept per image and class, best first
            (COCO's 100)

    Returns:
        the metrics dict (see the module docstring), JSON-able

    Raises:
        ValueError: for malformed input, or predictions on images not in the
            ground truth (naming the first few)
    """
    iou_threshold = float(iou_threshold)
    thresholds, operating = _thresholds_with(iou_threshold)
    run = _evaluate(ground_truth, predictions, classes, thresholds, AREA_RANGES, max_detections)
    curves = _accumulate(run)
    index_50 = int(np.flatnonzero(np.isclose(thresholds, 0.5))[0])
    index_75 = int(np.flatnonzero(np.isclose(thresholds, 0.75))[0])
    coco = slice(0, len(IOU_THRESHOLDS))
    per_class = {}
    totals = Counter()
    for position, label in enumerate(run.classes):
        precision = curves["precision"][position]  # (A, T, R), NaN where undefined
        recall = curves["recall"][position]  # (A, T)
        counts = _operating_counts(run, position, operating, score_threshold)
        totals.update(counts)
        entry = {
            "AP": _mean(precision[0, coco]),
            "AP50": _mean(precision[0, index_50]),
            "AP75": _mean(precision[0, index_75]),
            "AP_small": _mean(precision[1, coco]),
            "AP_medium": _mean(precision[2, coco]),
            "AP_large": _mean(precision[3, coco]),
            "AR": _mean(recall[0, coco]),
        }
        entry.update(_operating_point(counts))
        entry.update(
            num_gt=int(curves["num_gt"][position]),
            num_ignored=int(np.count_nonzero((run.gt_class == position) & run.gt_flag)),
            num_pred=int(np.count_nonzero(run.pred_class == position)),
        )
        per_class[label] = entry
    document = {}
    for key in METRIC_KEYS:
        values = [entry[key] for entry in per_class.values() if entry[key] is not None]
        document[key] = float(np.mean(values)) if values else None
    document.update(_operating_point(totals))
    document.update(
        num_images=len(run.images),
        num_gt=sum(entry["num_gt"] for entry in per_class.values()),
        num_ignored=sum(entry["num_ignored"] for entry in per_class.values()),
        num_pred=sum(entry["num_pred"] for entry in per_class.values()),
        score_threshold=float(score_threshold),
        iou_threshold=iou_threshold,
        max_detections=int(max_detections),
        classes=list(run.classes),
        unscored_predictions=dict(sorted(run.unscored.items())),
        per_class=per_class,
    )
    return document


def pr_curves(ground_truth, predictions, classes=None, iou_threshold=0.5, max_detections=100):
    """Per-class precision-recall curves and F1 against score, for plots.

    Args:
        ground_truth: per-image dicts (see the module docstring)
        predictions: ``{"image", "label", "score", "bbox"}`` dicts
        classes: the classes (default: those in the ground truth)
        iou_threshold: the IoU at which predictions match
        max_detections: predictions kept per image and class

    Returns:
        a dict label -> NumPy arrays: ``scores``, ``precision``, ``recall`` and
        ``f1`` per prediction, by descending score (predictions on ignored
        boxes left out), ``recall_grid`` (the 101 COCO recall points) and
        ``precision_grid`` (interpolated precision there), plus ``ap`` (the AP
        at this IoU; None without ground truth) and ``num_gt``
    """
    run = _evaluate(
        ground_truth,
        predictions,
        classes,
        np.array([float(iou_threshold)]),
        {"all": AREA_RANGES["all"]},
        max_detections,
    )
    curves = _accumulate(run, keep_curves=True)
    result = {}
    for position, label in enumerate(run.classes):
        result[label] = dict(curves["curves"][position])
        result[label]["recall_grid"] = RECALL_THRESHOLDS.copy()
        grid = curves["precision"][position][0, 0]
        result[label]["precision_grid"] = np.nan_to_num(grid, nan=0.0)
        result[label]["ap"] = _mean(grid)
        result[label]["num_gt"] = int(curves["num_gt"][position])
    return result


def match_detections(
    ground_truth,
    predictions,
    classes=None,
    iou_threshold=0.5,
    score_threshold=0.5,
    max_detections=100,
):
    """Says, box by box, which predictions are right and which ground-truth boxes were found.

    The matching is COCO's (see the module docstring) at one IoU threshold;
    the predictions scoring at least ``score_threshold`` are the ones matched.

    Args:
        ground_truth: per-image dicts (see the module docstring)
        predictions: ``{"image", "label", "score", "bbox"}`` dicts
        classes: the classes scored (default: those in the ground truth)
        iou_threshold: the IoU at which a prediction matches a box
        score_threshold: the lowest score of a prediction that counts
        max_detections: predictions kept per image and class, best first

    Returns:
        a dict with ``predictions``: one dict per prediction, in input order,
        with ``status`` (``tp``; ``fp``; ``ignored``: matched to an ignored
        box; ``below_threshold``; ``over_limit``: beyond ``max_detections``;
        ``unscored``: a label not scored), ``image_index`` (into
        ``ground_truth``), ``gt_index`` (the matched box, an index into that
        image's ``boxes``; else None) and ``iou`` (with the matched box; for a
        false positive the highest overlap with a box of its class, to tell a
        poor box from a spurious one; else None); and ``ground_truth``: per
        image a list of dicts per box with ``status`` (``found``, ``missed``,
        ``ignored``, ``unscored``) and ``prediction_index`` (the prediction
        that found it; else None)
    """
    run = _evaluate(
        ground_truth,
        predictions,
        classes,
        np.array([float(iou_threshold)]),
        {"all": AREA_RANGES["all"]},
        max_detections,
    )
    statuses = np.full(len(run.pred_class), "unscored", dtype=object)
    statuses[run.pred_class >= 0] = "over_limit"
    gt_index = np.full(len(run.pred_class), -1, dtype=np.int64)
    overlaps = np.full(len(run.pred_class), np.nan)
    boxes_found = [
        [{"status": "unscored", "prediction_index": None} for _ in image["labels"]]
        for image in run.images
    ]
    for image, within, flag in zip(
        run.gt_image.tolist(), run.gt_within.tolist(), run.gt_flag.tolist(), strict=True
    ):
        boxes_found[image][within]["status"] = "ignored" if flag else "missed"
    box = run.matched[0, 0]
    counted = run.det_score >= score_threshold
    hit = counted & (box >= 0)
    on_ignored = hit & run.gt_flag[np.where(hit, box, 0)] if len(run.gt_flag) else hit
    source = run.det_source
    statuses[source[~counted]] = "below_threshold"
    statuses[source[counted & ~hit]] = "fp"
    statuses[source[hit]] = "tp"
    statuses[source[on_ignored]] = "ignored"
    overlaps[source[counted & ~hit]] = run.det_best_iou[counted & ~hit]
    overlaps[source[hit]] = coco_iou_pairs(
        run.det_box[hit], run.gt_box[box[hit]], run.gt_flag[box[hit]]
    )
    gt_index[source[hit]] = run.gt_within[box[hit]]
    for prediction, matched_box in zip(
        source[hit & ~on_ignored].tolist(), box[hit & ~on_ignored].tolist(), strict=True
    ):
        image, within = int(run.gt_image[matched_box]), int(run.gt_within[matched_box])
        boxes_found[image][within] = {"status": "found", "prediction_index": prediction}
    return {
        "predictions": [
            {
                "status": status,
                "image_index": image,
                "gt_index": None if index < 0 else index,
                "iou": None if math.isnan(overlap) else overlap,
            }
            for status, image, index, overlap in zip(
                statuses.tolist(),
                run.pred_image.tolist(),
                gt_index.tolist(),
                overlaps.tolist(),
                strict=True,
            )
        ],
        "ground_truth": boxes_found,
    }


def confusion_matrix(
    ground_truth, predictions, classes=None, iou_threshold=0.5, score_threshold=0.5
):
    """Counts which class each ground-truth box was predicted as, background included.

    Per image, the predictions scoring at least ``score_threshold`` (of the
    scored classes), best first, each take the unmatched ground-truth box of
    any scored class with the highest IoU of at least ``iou_threshold``; only
    then are labels compared. A prediction on an ignored box counts nowhere.

    Args:
        ground_truth: per-image dicts (see the module docstring)
        predictions: ``{"image", "label", "score", "bbox"}`` dicts
        classes: the classes (default: those in the ground truth)
        iou_threshold: the overlap at which a prediction matches a box
        score_threshold: the lowest score counted

    Returns:
        ``(matrix, names)``: an ``(n + 1, n + 1)`` int array, rows the true
        class and columns the predicted one, and the n class names plus
        ``"background"`` (last row: spurious predictions; last column: missed
        boxes)
    """
    _check_iou(iou_threshold)
    images, lookup = _check_ground_truth(ground_truth)
    given = _check_predictions(predictions)
    classes = _resolve_classes(images, classes)
    index = {label: position for position, label in enumerate(classes)}
    background = len(classes)
    matrix = np.zeros((background + 1, background + 1), dtype=np.int64)
    positions = _image_positions(lookup, given.images, images)
    predicted = np.array([index.get(label, -1) for label in given.labels], dtype=np.int64)
    counted = np.flatnonzero((predicted >= 0) & (given.scores >= score_threshold))
    counted = counted[np.lexsort((counted, -given.scores[counted], positions[counted]))]
    starts = np.searchsorted(positions[counted], np.arange(len(images) + 1))
    for number, image in enumerate(images):
        keep = [position for position, label in enumerate(image["labels"]) if label in index]
        truth = np.array([index[image["labels"][position]] for position in keep], dtype=np.int64)
        flags = image["ignore"][keep] if keep else np.zeros(0, dtype=bool)
        boxes = _to_xywh(image["boxes"][keep]) if keep else np.zeros((0, 4))
        found = counted[starts[number] : starts[number + 1]]
        overlaps = coco_iou_matrix(_to_xywh(given.boxes[found]), boxes, flags)
        taken = np.zeros(len(truth), dtype=bool)
        for row, prediction in enumerate(found):
            candidates = (overlaps[row] >= iou_threshold) & ~taken & ~flags
            if candidates.any():
                best = int(np.argmax(np.where(candidates, overlaps[row], -1.0)))
                taken[best] = True
                matrix[truth[best], predicted[prediction]] += 1
            elif not np.any((overlaps[row] >= iou_threshold) & flags):
                matrix[background, predicted[prediction]] += 1
        for position in np.flatnonzero(~taken & ~flags):
            matrix[truth[position], background] += 1
    return matrix, [*classes, BACKGROUND]


def load_ground_truth(source, aliases=None, split=None, work_dir=None):
    """Reads ground truth from VOC folders or zips, labels normalised.

    Each source is a CVAT "PASCAL VOC 1.1" export (zip or folder) or a merged
    dataset folder (``platelab merge``), read with
    :func:`platelab.annotations.load_batch`. Labels go through the alias map;
    unknown labels are dropped, listed per image (``dropped_labels``) and
    logged. ``difficult`` boxes are marked ``ignore``. Problems with files
    are logged; images that cannot be read are left out.

    Args:
        source: a folder or ``.zip``, or a list of them; their images are
            concatenated, a key seen in two sources renamed ``<source>/<name>``
        aliases: canonical label -> spellings, or a YAML file of them,
            extending :data:`platelab.annotations.DEFAULT_ALIASES` (default:
            those)
        split: keep only the images listed in ``ImageSets/Main/<split>.txt``
            (e.g. ``test``; CVAT exports list theirs in ``default``)
        work_dir: where zips are extracted (default: a new temporary folder,
            left in place: the images' paths point into it)

    Returns:
        per-image dicts ``{"image", "path", "source", "width", "height",
        "boxes" (n, 4) float array, "labels", "ignore" (n,) bool array,
        "dropped_labels"}``, by source then name

    Raises:
        ValueError: when a source is missing or not a VOC layout, the alias
            file is bad, or the split file is missing or lists no images
    """
    sources = [source] if isinstance(source, (str, Path)) else list(source)
    if not sources:
        raise ValueError("no ground-truth source given")
    if isinstance(aliases, (str, Path)):
        aliases = annotations.read_alias_file(aliases)
    lookup = annotations.build_alias_map(annotations.extend_aliases(aliases))
    loaded = []
    for item in sources:
        batch = annotations.load_batch(item, work_dir=work_dir)
        for problem in batch.problems:
            logger.warning("%s", problem)
        records = batch.records
        if split is not None:
            records = _select_split(batch, records, split)
        loaded.append((item, batch, records))
    seen = Counter(record.name for _, _, records in loaded for record in records)
    batch_names = Counter()
    result = []
    dropped = Counter()
    for origin, batch, records in loaded:
        batch_names[batch.name] += 1
        prefix = (
            batch.name
            if batch_names[batch.name] == 1
            else f"{batch.name}-{batch_names[batch.name]}"
        )
        for record in records:
            for problem in record.problems:
                logger.info("%s", problem)
            if record.image_path is None:
                logger.warning("%s: image unreadable or missing; left out", record.name)
                continue
            boxes, labels, ignore, unknown = [], [], [], []
            for item in record.objects:
                label = annotations.normalize_label(item["label"], lookup)
                if label is None:
                    unknown.append(item["label"])
                    continue
                boxes.append(item["bbox"])
                labels.append(label)
                ignore.append(bool(item.get("difficult")))
            dropped.update(unknown)
            result.append(
                {
                    "image": record.name if seen[record.name] == 1 else f"{prefix}/{record.name}",
                    "path": str(record.image_path),
                    "source": str(origin),
                    "width": record.width,
                    "height": record.height,
                    "boxes": np.array(boxes, dtype=np.float64).reshape(-1, 4),
                    "labels": labels,
                    "ignore": np.array(ignore, dtype=bool),
                    "dropped_labels": unknown,
                }
            )
    keys = Counter(entry["image"] for entry in result)
    clashes = [key for key, count in keys.items() if count > 1]
    if clashes:
        raise ValueError(f"image keys still collide after prefixing: {', '.join(clashes[:3])}")
    if dropped:
        logger.warning(
            "dropped %d box(es) with unknown labels: %s",
            sum(dropped.values()),
            ", ".join(f"{label} ({count})" for label, count in dropped.most_common()),
        )
    return result


def load_predictions(path):
    """Reads a predictions JSON file: a list of ``{"image", "label", "score", "bbox"}``.

    Args:
        path: the file (``bbox`` ``[xmin, ymin, xmax, ymax]`` pixels)

    Returns:
        the list, as read (checked: every item has a non-empty string ``image``
        and ``label``, a finite number ``score`` and four finite ``bbox``
        numbers with ``xmin <= xmax`` and ``ymin <= ymax``)

    Raises:
        ValueError: one line naming the file and the problem (missing, not
            JSON, not such a list, a prediction with a bad field)
    """
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: predictions file not found") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text") from None
    except OSError as error:
        raise ValueError(f"{path}: cannot read ({error.strerror or error})") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from None
    if isinstance(document, dict) and isinstance(document.get("predictions"), list):
        document = document["predictions"]
    _check_predictions(document, where=f"{path}: ")
    return document


def coco_ground_truth(ground_truth, classes=None):
    """Converts ground truth to a COCO dataset dict (for ``pycocotools`` or other tools).

    Ignored boxes become ``iscrowd: 1`` (and ``ignore: 1``); ``area`` is the box's.

    Args:
        ground_truth: per-image dicts (see the module docstring)
        classes: the classes, in category-id order (default: those in the ground truth)

    Returns:
        ``(dataset, image_ids, category_ids)``: the dict with ``images``,
        ``annotations`` and ``categories``, image key -> id and label -> id
        (both from 1)
    """
    images, _ = _check_ground_truth(ground_truth)
    classes = _resolve_classes(images, classes)
    category_ids = {label: position + 1 for position, label in enumerate(classes)}
    image_ids = {image["image"]: position + 1 for position, image in enumerate(images)}
    dataset = {
        "images": [
            {
                "id": image_ids[image["image"]],
                "file_name": image["image"],
                "width": image.get("width"),
                "height": image.get("height"),
            }
            for image in images
        ],
        "annotations": [],
        "categories": [{"id": value, "name": label} for label, value in category_ids.items()],
    }
    for image in images:
        for box, label, flag in zip(
            _to_xywh(image["boxes"]).tolist(), image["labels"], image["ignore"], strict=True
        ):
            if label not in category_ids:
                continue
            dataset["annotations"].append(
                {
                    "id": len(dataset["annotations"]) + 1,
                    "image_id": image_ids[image["image"]],
                    "category_id": category_ids[label],
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": int(flag),
                    "ignore": int(flag),
                }
            )
    return dataset, image_ids, category_ids


def write_coco_results(predictions, image_ids, category_ids=None, path=None):
    """Converts predictions to COCO's results format (``[{image_id, category_id, bbox, score}]``).

    Args:
        predictions: ``{"image", "label", "score", "bbox"}`` dicts
        image_ids: image key -> COCO image id (see :func:`coco_ground_truth`)
        category_ids: label -> COCO category id (default: :data:`platelab.LABELS`
            from 1); predictions of other labels are left out
        path: also write the list there as JSON (atomically)

    Returns:
        the list (``bbox`` as ``[x, y, width, height]``)

    Raises:
        ValueError: for a prediction on an image without an id
    """
    category_ids = category_ids or {label: position + 1 for position, label in enumerate(LABELS)}
    given = _check_predictions(predictions)
    results = []
    missing = []
    for image, label, score, box in zip(
        given.images, given.labels, given.scores.tolist(), given.boxes.tolist(), strict=True
    ):
        if label not in category_ids:
            continue
        if image not in image_ids:
            missing.append(image)
            continue
        x0, y0, x1, y1 = box
        results.append(
            {
                "image_id": image_ids[image],
                "category_id": category_ids[label],
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "score": score,
            }
        )
    if missing:
        raise ValueError(f"predictions on images without an id: {_few(sorted(set(missing)))}")
    if path is not None:
        atomic_write_json(path, results)
    return results


def add_evaluate_arguments(parser):
    """Adds the ``platelab evaluate`` arguments to an argparse (sub)parser and sets its handler.

    Usage: ``add_evaluate_arguments(commands.add_parser("evaluate", help=...))``;
    the parsed namespace's ``handler`` is :func:`run_evaluate_command`. Paths
    are relative to the current directory.
    """
    parser.description = (
        "Score a detector's predictions (or a trained model) against VOC ground truth: "
        "COCO AP, AP50, AP75, AP by size, and precision, recall and F1 at a score threshold."
    )
    given = parser.add_mutually_exclusive_group(required=True)
    given.add_argument(
        "--predictions",
        type=from_cwd,
        metavar="FILE",
        help="JSON list of {image, label, score, bbox [xmin, ymin, xmax, ymax] pixels}",
    )
    given.add_argument(
        "--model",
        type=from_cwd,
        metavar="DIR",
        help="a training run folder: predict on the images first",
    )
    parser.add_argument(
        "--data",
        nargs="+",
        required=True,
        type=from_cwd,
        metavar="VOC",
        help="ground truth: VOC folders or zips (CVAT exports, a merged dataset)",
    )
    parser.add_argument(
        "--out", required=True, type=from_cwd, metavar="FILE", help="the metrics JSON to write"
    )
    parser.add_argument("--split", help="only the images in ImageSets/Main/<split>.txt (e.g. test)")
    parser.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="score threshold of the precision/recall/F1 operating point (0.5)",
    )
    parser.add_argument("--iou", type=float, default=0.5, help="IoU of the operating point (0.5)")
    parser.add_argument(
        "--classes", help="comma-separated classes to score (default: those annotated)"
    )
    parser.add_argument(
        "--aliases",
        type=from_cwd,
        metavar="FILE",
        help="YAML: canonical label -> spellings (extends the defaults)",
    )
    parser.add_argument(
        "--min-score",
        type=float,
        default=0.01,
        help="with --model: the lowest score kept (0.01; AP needs the low-scoring ones)",
    )
    parser.add_argument(
        "--save-predictions",
        type=from_cwd,
        metavar="FILE",
        help="with --model: also write the predictions",
    )
    parser.set_defaults(handler=run_evaluate_command)
    return parser


def run_evaluate_command(args, detector_loader=None):
    """Runs ``platelab evaluate`` from parsed arguments; writes the metrics and prints a summary.

    Args:
        args: the namespace from :func:`add_evaluate_arguments`'s parser
        detector_loader: path -> an object with ``predict(list of RGB uint8
            arrays, score_threshold=...)`` returning per image ``boxes``,
            ``scores``, ``labels`` (default: :func:`platelab.detector.load`)

    Returns:
        the exit status, 0

    Raises:
        ValueError: on bad arguments or input (the CLI prints it as one line)
    """
    with tempfile.TemporaryDirectory(prefix="platelab-evaluate-") as work_dir:
        ground_truth = load_ground_truth(
            args.data, aliases=args.aliases, split=args.split, work_dir=work_dir
        )
        if not ground_truth:
            raise ValueError(f"{', '.join(map(str, args.data))}: no images to evaluate on")
        if getattr(args, "model", None):
            predictions = _predict_with_model(
                args.model, ground_truth, detector_loader, getattr(args, "min_score", 0.01)
            )
            if getattr(args, "save_predictions", None):
                atomic_write_json(args.save_predictions, predictions)
        else:
            predictions = load_predictions(args.predictions)
    lookup = annotations.build_alias_map(
        annotations.extend_aliases(
            annotations.read_alias_file(args.aliases) if args.aliases else None
        )
    )
    for record in predictions:
        record["label"] = annotations.normalize_label(record["label"], lookup) or record["label"]
    classes = None
    if getattr(args, "classes", None):
        classes = [
            annotations.normalize_label(item, lookup) or item.strip()
            for item in args.classes.split(",")
            if item.strip()
        ]
    metrics = evaluate_detections(
        ground_truth,
        predictions,
        classes=classes,
        score_threshold=args.threshold,
        iou_threshold=getattr(args, "iou", 0.5),
    )
    dropped = Counter(label for image in ground_truth for label in image["dropped_labels"])
    metrics["dropped_gt_labels"] = dict(dropped.most_common())
    metrics["data"] = [str(item) for item in args.data]
    metrics["split"] = args.split
    metrics["predictions"] = None if getattr(args, "model", None) else str(args.predictions)
    metrics["model"] = str(args.model) if getattr(args, "model", None) else None
    atomic_write_json(args.out, metrics)
    if dropped:
        print(
            f"platelab: warning: dropped {sum(dropped.values())} ground-truth box(es) with "
            f"unknown labels: {', '.join(sorted(dropped))}",
            file=sys.stderr,
        )
    if metrics["unscored_predictions"]:
        print(
            "platelab: warning: predictions of classes not scored, left out: "
            + ", ".join(f"{k} ({v})" for k, v in metrics["unscored_predictions"].items()),
            file=sys.stderr,
        )
    print(summary_line(metrics) + f"; written to {args.out}")
    return 0


def summary_line(metrics):
    """One line: images, AP figures and the operating point of a metrics dict."""

    def show(value):
        return "n/a" if value is None else f"{value:.3f}"

    per_class = ", ".join(
        f"{label} AP {show(entry['AP'])}" for label, entry in metrics["per_class"].items()
    )
    return (
        f"{metrics['num_images']} images, {metrics['num_gt']} boxes: AP {show(metrics['AP'])}, "
        f"AP50 {show(metrics['AP50'])}, AP75 {show(metrics['AP75'])} ({per_class}); "
        f"at score >= {metrics['score_threshold']:g}: precision {show(metrics['precision'])}, "
        f"recall {show(metrics['recall'])}, F1 {show(metrics['F1'])}"
    )


def metrics_rows(metrics, keys):
    """A metrics dict as table rows: ``all`` classes first, then one row per class.

    Args:
        metrics: :func:`evaluate_detections`' dict (its figures, and ``per_class``:
            label -> the same figures for one class)
        keys: the figures wanted, e.g. ``("AP", "AP50", "recall")``

    Returns:
        ``{"all": {key: value}, "<label>": {key: value}, ...}`` (``None`` where a figure
        is missing; ``pd.DataFrame(rows).T``: one row per class)
    """
    rows = {"all": {key: metrics.get(key) for key in keys}}
    for label, values in metrics.get("per_class", {}).items():
        rows[label] = {key: values.get(key) for key in keys}
    return rows


def main_evaluate(argv=None):
    """Runs ``evaluate`` stand-alone (``python -m platelab.evaluate``); returns the exit status."""
    parser = add_evaluate_arguments(argparse.ArgumentParser(prog="platelab evaluate"))
    args = parser.parse_args(argv)
    try:
        return run_evaluate_command(args)
    except (ValueError, OSError) as error:
        print(f"platelab: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2


class _Predictions(NamedTuple):
    """Checked predictions as columns."""

    images: list
    labels: list
    scores: np.ndarray
    boxes: np.ndarray


class _Run:
    """One evaluation's state: ``gt_*`` arrays by image then class, ``det_*`` by group then score."""


def _evaluate(ground_truth, predictions, classes, thresholds, area_ranges, max_detections):
    """Checks the input, keeps the top predictions per image and class and matches them."""
    if int(max_detections) < 1:
        raise ValueError(f"max_detections must be at least 1, not {max_detections}")
    for value in thresholds:
        _check_iou(value)
    images, lookup = _check_ground_truth(ground_truth)
    given = _check_predictions(predictions)
    classes = _resolve_classes(images, classes)
    class_index = {label: position for position, label in enumerate(classes)}
    num_classes = max(len(classes), 1)
    run = _Run()
    run.classes, run.images = classes, images
    run.thresholds = np.minimum(np.asarray(thresholds, dtype=np.float64), 1 - 1e-10)
    ranges = np.array(list(area_ranges.values()), dtype=np.float64)

    # Ground truth of the scored classes, image by image in box order (so sorted by group).
    counts = np.array([len(image["labels"]) for image in images], dtype=np.int64)
    labels = [label for image in images for label in image["labels"]]
    every_class = np.array([class_index.get(label, -1) for label in labels], dtype=np.int64)
    keep = every_class >= 0
    run.gt_image = np.repeat(np.arange(len(images)), counts)[keep]
    run.gt_within = (np.arange(len(labels)) - np.repeat(np.cumsum(counts) - counts, counts))[keep]
    run.gt_class = every_class[keep]
    run.gt_box = _to_xywh(
        np.concatenate([image["boxes"] for image in images])[keep] if images else np.zeros((0, 4))
    )
    run.gt_flag = (
        np.concatenate([image["ignore"] for image in images])[keep]
        if images
        else np.zeros(0, dtype=bool)
    )
    order = np.lexsort((run.gt_class, run.gt_image))  # by group, box order kept
    for name in ("gt_image", "gt_within", "gt_class", "gt_box", "gt_flag"):
        setattr(run, name, getattr(run, name)[order])
    gt_group = run.gt_image * num_classes + run.gt_class
    gt_area = run.gt_box[:, 2] * run.gt_box[:, 3]
    run.gt_ignored = run.gt_flag[None, :] | _outside(gt_area, ranges)  # (A, G)

    # Predictions of the scored classes, by group then score (stable), the top ones kept.
    run.pred_image = _image_positions(lookup, given.images, images)
    run.pred_class = np.array(
        [class_index.get(label, -1) for label in given.labels], dtype=np.int64
    )
    run.unscored = Counter(label for label in given.labels if label not in class_index)
    scores, boxes = given.scores, given.boxes
    scored = np.flatnonzero(run.pred_class >= 0)
    group = run.pred_image[scored] * num_classes + run.pred_class[scored]
    order = scored[np.lexsort((scored, -scores[scored], group))]
    group = run.pred_image[order] * num_classes + run.pred_class[order]
    rank = np.arange(len(order)) - np.searchsorted(group, group, side="left")
    kept = rank < int(max_detections)
    run.det_source = order[kept]
    run.det_group = group[kept]
    run.det_rank = rank[kept]
    run.det_image = run.pred_image[run.det_source]
    run.det_class = run.pred_class[run.det_source]
    run.det_score = scores[run.det_source]
    run.det_box = _to_xywh(boxes[run.det_source])
    det_area = run.det_box[:, 2] * run.det_box[:, 3]
    det_outside = _outside(det_area, ranges)  # (A, D)

    # Every (prediction, box) pair of one group; the pairs that may match, matched.
    pair_det, pair_gt = _pairs(run.det_group, gt_group)
    pair_iou = coco_iou_pairs(run.det_box[pair_det], run.gt_box[pair_gt], run.gt_flag[pair_gt])
    run.det_best_iou = np.zeros(len(run.det_source))
    regular = ~run.gt_flag[pair_gt]
    np.maximum.at(run.det_best_iou, pair_det[regular], pair_iou[regular])
    candidate = pair_iou >= run.thresholds.min()
    run.matched = _match(
        pair_det[candidate],
        pair_gt[candidate],
        pair_iou[candidate],
        run.det_group,
        gt_group,
        run.gt_ignored,
        run.gt_flag,
        run.thresholds,
    )
    hit = run.matched >= 0
    if len(run.gt_flag):
        areas = np.arange(len(ranges))[:, None, None]
        on_ignored = run.gt_ignored[areas, np.where(hit, run.matched, 0)]
    else:
        on_ignored = np.zeros_like(hit)
    run.det_ignored = np.where(hit, on_ignored, det_outside[:, None, :])  # (A, T, D)
    return run


def _accumulate(run, keep_curves=False):
    """COCO's accumulate: per class, area range and IoU, interpolated precision and recall."""
    num_areas, num_thresholds = run.gt_ignored.shape[0], len(run.thresholds)
    hit = run.matched >= 0
    order = np.lexsort((run.det_rank, run.det_image, -run.det_score))
    result = {"precision": [], "recall": [], "num_gt": [], "curves": []}
    for position in range(len(run.classes)):
        chosen = order[run.det_class[order] == position]
        in_class = run.gt_class == position
        num_gt = np.count_nonzero(in_class[None, :] & ~run.gt_ignored, axis=1)  # (A,)
        counted = ~run.det_ignored[:, :, chosen]
        tp = np.cumsum(hit[:, :, chosen] & counted, axis=2, dtype=np.float64)
        fp = np.cumsum(~hit[:, :, chosen] & counted, axis=2, dtype=np.float64)
        precision = np.full((num_areas, num_thresholds, len(RECALL_THRESHOLDS)), np.nan)
        recall = np.full((num_areas, num_thresholds), np.nan)
        count = len(chosen)
        for area in range(num_areas):
            if num_gt[area] == 0:
                continue  # pycocotools: -1, left out of the means
            precision[area] = 0.0
            recall[area] = 0.0
            if not count:
                continue
            recalls = tp[area] / num_gt[area]
            precisions = tp[area] / (fp[area] + tp[area] + np.spacing(1))
            envelope = np.maximum.accumulate(precisions[:, ::-1], axis=1)[:, ::-1]
            recall[area] = recalls[:, -1]
            for threshold in range(num_thresholds):
                where = np.searchsorted(recalls[threshold], RECALL_THRESHOLDS, side="left")
                inside = where < count
                precision[area, threshold, inside] = envelope[threshold, where[inside]]
        result["precision"].append(precision)
        result["recall"].append(recall)
        result["num_gt"].append(int(num_gt[0]))
        if keep_curves:
            result["curves"].append(
                _curve(run, chosen, counted[0, 0], tp[0, 0], fp[0, 0], num_gt[0])
            )
    return result


def _curve(run, chosen, counted, tp, fp, num_gt):
    """Precision, recall and F1 after each counted prediction, by descending score."""
    tp, fp = tp[counted], fp[counted]
    precision = tp / np.maximum(tp + fp, 1)
    if num_gt:
        recall = tp / num_gt
        f1 = 2 * tp / (tp + fp + num_gt)
    else:
        recall = np.full(len(tp), np.nan)
        f1 = np.full(len(tp), np.nan)
    return {
        "scores": run.det_score[chosen][counted],
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }


def _operating_counts(run, position, threshold_index, score_threshold):
    """True positives, false positives and misses of one class at the operating point."""
    in_class = (run.det_class == position) & (run.det_score >= score_threshold)
    hits = run.matched[0, threshold_index] >= 0
    skip = run.det_ignored[0, threshold_index]
    tp = int(np.count_nonzero(in_class & hits & ~skip))
    fp = int(np.count_nonzero(in_class & ~hits & ~skip))
    num_gt = int(np.count_nonzero((run.gt_class == position) & ~run.gt_ignored[0]))
    return {"tp": tp, "fp": fp, "fn": num_gt - tp}


def _operating_point(counts):
    tp, fp, fn = counts.get("tp", 0), counts.get("fp", 0), counts.get("fn", 0)
    return {
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
        "F1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None,
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


def _match(pair_det, pair_gt, pair_iou, det_group, gt_group, gt_ignored, crowd, thresholds):
    """COCO's greedy matching, for every image and class at once.

    Per group (image and class), predictions by descending score each take,
    at each IoU threshold and area range, the box of highest IoU (the last
    of equals, as ``pycocotools``) among those not taken (ignored-as-crowd
    boxes are never used up), preferring boxes not ignored. Groups are padded
    to the next power of two of their candidate boxes and processed in
    chunks, one prediction rank at a time.

    Args:
        pair_det, pair_gt, pair_iou: the candidate pairs (overlap at least the
            lowest threshold), global prediction and box indices
        det_group, gt_group: the group of every prediction / box; predictions
            sorted by group then score, boxes by group then order
        gt_ignored: (A, G) ignored per area range
        crowd: (G,) ignore flags (crowd semantics: never used up)
        thresholds: (T,) IoU thresholds

    Returns:
        (A, T, D) int: the matched box per prediction, -1 where none
    """
    num_areas, num_thresholds = gt_ignored.shape[0], len(thresholds)
    matched = np.full((num_areas, num_thresholds, len(det_group)), -1, dtype=np.int64)
    if not len(pair_det):
        return matched
    # Rows: a group's candidate predictions by score; columns: its candidate boxes in order.
    dets, boxes = np.unique(pair_det), np.unique(pair_gt)
    groups, first_det, det_counts = np.unique(
        det_group[dets], return_index=True, return_counts=True
    )
    _, first_box, box_counts = np.unique(gt_group[boxes], return_index=True, return_counts=True)
    row_of = np.full(len(det_group), -1, dtype=np.int64)
    row_of[dets] = np.arange(len(dets)) - np.repeat(first_det, det_counts)
    col_of = np.full(len(gt_group), -1, dtype=np.int64)
    col_of[boxes] = np.arange(len(boxes)) - np.repeat(first_box, box_counts)
    width = 1 << np.ceil(np.log2(box_counts)).astype(np.int64)
    # Groups of one padded width together, most predictions first; pairs in that order.
    group_order = np.lexsort((-det_counts, width))
    position_of = np.empty(len(groups), dtype=np.int64)
    position_of[group_order] = np.arange(len(groups))
    pair_position = position_of[np.searchsorted(groups, det_group[pair_det])]
    pair_order = np.argsort(pair_position, kind="stable")
    pair_position = pair_position[pair_order]
    start = 0
    while start < len(groups):
        size = int(width[group_order[start]])
        rows = int(det_counts[group_order[start]])
        limit = max(1, _MATCH_BUDGET // (size * (rows + num_areas * num_thresholds)))
        stop = min(start + limit, len(groups))
        stop = start + int(np.count_nonzero(width[group_order[start:stop]] == size))
        chunk = group_order[start:stop]
        lo, hi = np.searchsorted(pair_position, [start, stop])
        selected = pair_order[lo:hi]
        overlap = np.full((len(chunk), rows, size), -1.0)
        overlap[
            pair_position[lo:hi] - start, row_of[pair_det[selected]], col_of[pair_gt[selected]]
        ] = pair_iou[selected]
        column_box = _ragged(boxes, first_box[chunk], box_counts[chunk], size)
        row_det = _ragged(dets, first_det[chunk], det_counts[chunk], rows)
        _match_chunk(
            overlap, column_box, row_det, det_counts[chunk], gt_ignored, crowd, thresholds, matched
        )
        start = stop
    return matched


def _match_chunk(overlap, column_box, row_det, det_counts, gt_ignored, crowd, thresholds, matched):
    """Greedy matching of a chunk of groups, prediction rank by prediction rank.

    Args:
        overlap: (S, rows, size) IoU of each group's candidate predictions and
            boxes, -1 where padded or below every threshold
        column_box: (S, size) global box index per column, -1 for padding
        row_det: (S, rows) global prediction index per row, -1 for padding
        det_counts: (S,) candidate predictions per group, descending
        gt_ignored, crowd, thresholds: see :func:`_match`
        matched: (A, T, D) filled in place
    """
    slots, rows, size = overlap.shape
    num_areas, num_thresholds = gt_ignored.shape[0], len(thresholds)
    valid = column_box >= 0
    safe = np.where(valid, column_box, 0)
    ignored = np.where(valid[:, None, :], gt_ignored[:, safe].transpose(1, 0, 2), True)
    ignored = ignored[:, :, None, :]  # (S, A, 1, size)
    reusable = np.where(valid, crowd[safe], False)[:, None, None, :]
    taken = np.zeros((slots, num_areas, num_thresholds, size), dtype=bool)
    columns = np.arange(size)
    levels = thresholds[None, None, :, None]
    for row in range(rows):
        active = int(np.count_nonzero(det_counts > row))
        current = overlap[:active, row, None, None, :]
        eligible = (~taken[:active] | reusable[:active]) & (current >= levels)
        regular = eligible & ~ignored[:active]
        best_regular, has_regular = _last_argmax(np.where(regular, current, -1.0))
        best_ignored, has_ignored = _last_argmax(np.where(eligible & ~regular, current, -1.0))
        choice = np.where(has_regular, best_regular, np.where(has_ignored, best_ignored, -1))
        taken[:active] |= choice[..., None] == columns
        slot, area, threshold = np.nonzero(choice >= 0)
        matched[area, threshold, row_det[slot, row]] = column_box[
            slot, choice[slot, area, threshold]
        ]


def _ragged(values, starts, counts, width):
    """(len(starts), width): values[start : start + count] per row, -1 padded."""
    table = np.full((len(starts), width), -1, dtype=np.int64)
    rows = np.repeat(np.arange(len(starts)), counts)
    columns = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
    table[rows, columns] = values[np.repeat(starts, counts) + columns]
    return table


def _last_argmax(values):
    """Index of the last maximum along the last axis, and whether it is >= 0."""
    flipped = values[..., ::-1]
    position = values.shape[-1] - 1 - np.argmax(flipped, axis=-1)
    best = np.take_along_axis(values, position[..., None], axis=-1)[..., 0]
    return position, best >= 0


def _pairs(det_group, gt_group):
    """Every (prediction, box) index pair sharing a group; both inputs sorted by group."""
    if not len(det_group) or not len(gt_group):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    starts = np.searchsorted(gt_group, det_group, side="left")
    counts = np.searchsorted(gt_group, det_group, side="right") - starts
    pair_det = np.repeat(np.arange(len(det_group)), counts)
    offsets = np.arange(len(pair_det)) - np.repeat(np.cumsum(counts) - counts, counts)
    pair_gt = np.repeat(starts, counts) + offsets
    return pair_det, pair_gt


def _to_xywh(boxes):
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.column_stack(
        [boxes[:, 0], boxes[:, 1], boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]]
    )


def _outside(area, ranges):
    """(A, n): whether each area lies outside each range."""
    return (area[None, :] < ranges[:, :1]) | (area[None, :] > ranges[:, 1:])


def _thresholds_with(iou_threshold):
    """COCO's IoU thresholds, plus the operating point's if it is not one; and its index."""
    close = np.flatnonzero(np.isclose(IOU_THRESHOLDS, iou_threshold, rtol=0, atol=1e-9))
    if len(close):
        return IOU_THRESHOLDS.copy(), int(close[0])
    return np.append(IOU_THRESHOLDS, iou_threshold), len(IOU_THRESHOLDS)


def _check_iou(value):
    if not 0 < float(value) <= 1:
        raise ValueError(f"an IoU threshold must be in (0, 1], not {value}")


def _mean(values):
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0 or np.isnan(values).any():
        return None
    return float(values.mean())


def _check_ground_truth(ground_truth):
    """Validates per-image dicts; returns normalised copies and a lookup of image names."""
    if isinstance(ground_truth, dict) or not hasattr(ground_truth, "__iter__"):
        raise ValueError("ground truth must be a list of per-image dicts")
    images = []
    for position, image in enumerate(ground_truth):
        where = f"ground truth image {position}"
        if not isinstance(image, dict) or "image" not in image:
            raise ValueError(f"{where}: not a dict with 'image', 'boxes' and 'labels'")
        where = f"ground truth image {image['image']!r}"
        try:
            boxes = np.asarray(image.get("boxes", []), dtype=np.float64)
        except (TypeError, ValueError):
            boxes = None
        if boxes is not None and boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        if boxes is None or boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"{where}: 'boxes' must be an (n, 4) array of numbers")
        labels = [str(label) for label in image.get("labels", [])]
        flags = image.get("ignore")
        flags = np.zeros(len(labels), dtype=bool) if flags is None else np.asarray(flags, bool)
        if len(labels) != len(boxes) or flags.shape != (len(boxes),):
            raise ValueError(
                f"{where}: {len(boxes)} boxes but {len(labels)} labels and {flags.size} ignore flags"
            )
        if not np.isfinite(boxes).all() or np.any(boxes[:, 2:] < boxes[:, :2]):
            raise ValueError(f"{where}: boxes must be finite [xmin, ymin, xmax, ymax]")
        images.append(
            dict(image, image=str(image["image"]), boxes=boxes, labels=labels, ignore=flags)
        )
    keys = Counter(image["image"] for image in images)
    duplicated = [key for key, count in keys.items() if count > 1]
    if duplicated:
        raise ValueError(f"ground truth names an image twice: {_few(duplicated)}")
    return images, {image["image"]: position for position, image in enumerate(images)}


def _other_names(images):
    """Image path, file name and stem -> image index, where they name one image only."""
    names = {}
    for position, image in enumerate(images):
        found = {Path(image["image"]).name, Path(image["image"]).stem}
        if image.get("path"):
            path = Path(str(image["path"]))
            found |= {str(image["path"]), str(path), path.name, path.stem}
        for name in found:
            names.setdefault(name, set()).add(position)
    return {name: next(iter(found)) for name, found in names.items() if len(found) == 1}


def _check_predictions(predictions, where=""):
    """Validates ``{"image", "label", "score", "bbox"}`` dicts; returns them as columns.

    Returns:
        a :class:`_Predictions`

    Raises:
        ValueError: naming ``where`` and the first bad prediction
    """
    if isinstance(predictions, _Predictions):
        return predictions
    if isinstance(predictions, dict) or not isinstance(predictions, (list, tuple)):
        raise ValueError(f"{where}expected a list of {{image, label, score, bbox}} objects")
    try:
        images = [item["image"] for item in predictions]
        labels = [item["label"] for item in predictions]
        scores = np.array([item["score"] for item in predictions])
        boxes = np.array(
            [item["bbox"] for item in predictions] if predictions else np.zeros((0, 4))
        )
        fine = (
            all(type(value) is str and value for value in images)
            and all(type(value) is str and value for value in labels)
            and scores.dtype.kind in "if"
            and scores.shape == (len(predictions),)
            and boxes.dtype.kind in "if"
            and boxes.shape == (len(predictions), 4)
        )
    except (TypeError, KeyError, ValueError, IndexError):
        fine = False
    if fine:
        scores, boxes = scores.astype(np.float64), boxes.astype(np.float64)
        fine = bool(
            np.isfinite(scores).all()
            and np.isfinite(boxes).all()
            and np.all(boxes[:, 2:] >= boxes[:, :2])
        )
    if not fine:
        for position, item in enumerate(predictions):
            _check_prediction(item, f"{where}prediction {position}")
        raise ValueError(f"{where}expected a list of {{image, label, score, bbox}} objects")
    return _Predictions(images, labels, scores, boxes)


def _check_prediction(item, name):
    """Raises ValueError naming the first problem of one prediction."""
    if not isinstance(item, dict):
        raise ValueError(f"{name}: not an object with image, label, score, bbox")
    missing = [key for key in ("image", "label", "score", "bbox") if key not in item]
    if missing:
        raise ValueError(f"{name}: missing {', '.join(missing)}")
    for key in ("image", "label"):
        if not isinstance(item[key], str) or not item[key]:
            raise ValueError(f"{name}: {key!r} must be a non-empty string, not {item[key]!r}")
    score = item["score"]
    if not _is_number(score):
        raise ValueError(f"{name}: 'score' must be a finite number, not {score!r}")
    bbox = item["bbox"]
    bbox = bbox.tolist() if hasattr(bbox, "tolist") else bbox
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not all(map(_is_number, bbox)):
        raise ValueError(
            f"{name}: 'bbox' must be 4 finite numbers [xmin, ymin, xmax, ymax], not {bbox!r}"
        )
    if bbox[2] < bbox[0] or bbox[3] < bbox[1]:
        raise ValueError(f"{name}: 'bbox' {list(bbox)} has xmax < xmin or ymax < ymin")


def _is_number(value):
    number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, bool
    )
    return number and math.isfinite(value)


def _image_positions(lookup, names, images):
    """Ground-truth image index per prediction (by key, else path, file name or stem).

    Raises:
        ValueError: naming the first few images not in the ground truth
    """
    positions = np.empty(len(names), dtype=np.int64)
    others = None
    absent = []
    for number, name in enumerate(names):
        position = lookup.get(name)
        if position is None:
            others = _other_names(images) if others is None else others
            position = others.get(name, others.get(str(Path(name)), others.get(Path(name).name)))
        if position is None:
            absent.append(name)
            position = -1
        positions[number] = position
    if absent:
        raise ValueError(
            f"{len(absent)} prediction(s) on images not in the ground truth "
            f"({len(images)} images): {_few(sorted(set(absent)))}"
        )
    return positions


def _resolve_classes(images, classes):
    if classes is None:
        present = {label for image in images for label in image["labels"]}
        ordered = [label for label in LABELS if label in present]
        return ordered + sorted(present - set(ordered))
    if isinstance(classes, str):
        classes = [classes]
    classes = [str(label) for label in classes]
    if len(set(classes)) != len(classes):
        raise ValueError(f"classes listed twice: {classes}")
    return classes


def _select_split(batch, records, split):
    path = batch.root / "ImageSets" / "Main" / f"{split}.txt"
    if not path.is_file():
        present = (
            sorted(item.stem for item in path.parent.glob("*.txt")) if path.parent.is_dir() else []
        )
        known = (
            f" (splits there: {', '.join(present)})" if present else " (no ImageSets/Main lists)"
        )
        raise ValueError(f"{path}: no such split file{known}")
    chosen = [record for record in records if split in record.subsets]
    if not chosen:
        raise ValueError(f"{path}: the split lists no images")
    return chosen


def _predict_with_model(model_path, ground_truth, detector_loader, min_score, batch_size=8):
    """Runs a detector over the ground truth's images; returns predictions dicts."""
    import cv2

    if detector_loader is None:
        from platelab import detector as detector_module

        detector_loader = detector_module.load
    detector = detector_loader(model_path)
    predictions = []
    for start in range(0, len(ground_truth), batch_size):
        chunk = ground_truth[start : start + batch_size]
        pixels = []
        for image in chunk:
            loaded = cv2.imread(image["path"], cv2.IMREAD_COLOR)
            if loaded is None:
                raise ValueError(f"{image['path']}: unreadable image")
            pixels.append(cv2.cvtColor(loaded, cv2.COLOR_BGR2RGB))
        outputs = detector.predict(pixels, score_threshold=min_score)
        for image, output in zip(chunk, outputs, strict=True):
            for box, score, label in zip(
                np.asarray(output["boxes"]).tolist(),
                np.asarray(output["scores"]).tolist(),
                output["labels"],
                strict=True,
            ):
                predictions.append(
                    {
                        "image": image["image"],
                        "label": str(label),
                        "score": float(score),
                        "bbox": [float(value) for value in box],
                    }
                )
    logger.info("%s: %d predictions on %d images", model_path, len(predictions), len(ground_truth))
    return predictions


def _few(names, shown=3):
    names = [str(name) for name in names]
    return ", ".join(names[:shown]) + (
        f" and {len(names) - shown} more" if len(names) > shown else ""
    )


if __name__ == "__main__":
    sys.exit(main_evaluate())


HEIGHT_BINS = ((8.0, 16.0), (16.0, 32.0), (32.0, float("inf")))
"""Box-height bins (pixels in the source image) of :func:`ap_by_height`: plates from
8 px high are readable; nothing below is scored anywhere."""


def ap_by_height(ground_truth, predictions, label, bins=HEIGHT_BINS):
    """AP of one class per bin of box height, COCO-style, so that nothing hides in a mean.

    For each bin ``[low, high)``, boxes of ``label`` outside it are ignored (as COCO
    ignores boxes outside an area range), and a prediction of ``label`` outside it
    is left out unless it overlaps a box inside it (IoU at least 0.5):
    a detection of a box of another size is neither a hit nor a false alarm here.

    Args:
        ground_truth: per-image dicts (see the module docstring), boxes in pixels
        predictions: ``{"image", "label", "score", "bbox"}`` dicts (pixels)
        label: the class scored
        bins: ``(low, high)`` pixel heights

    Returns:
        a list of dicts ``bin`` (e.g. ``"8-16 px"``), ``low``, ``high``, ``num_gt`` and
        ``AP50`` (None where the bin holds no box)
    """
    rows = []
    by_image = {}
    for item in predictions:
        if item["label"] == label:
            by_image.setdefault(item["image"], []).append(item)
    for low, high in bins:
        truth, inside_boxes = [], {}
        for image in ground_truth:
            boxes = np.asarray(image["boxes"], np.float64).reshape(-1, 4)
            heights = boxes[:, 3] - boxes[:, 1]
            ignored = np.array(image.get("ignore") or [False] * len(boxes), bool)
            mine = np.array([name == label for name in image["labels"]], bool)
            inside = mine & (heights >= low) & (heights < high)
            truth.append(dict(image, ignore=(ignored | (mine & ~inside)).tolist()))
            inside_boxes[image["image"]] = boxes[inside & ~ignored]
        kept = [item for item in predictions if item["label"] != label]
        for name, items in by_image.items():
            targets = inside_boxes.get(name, np.zeros((0, 4)))
            for item in items:
                box = np.asarray(item["bbox"], np.float64)
                height = box[3] - box[1]
                if low <= height < high:
                    kept.append(item)
                elif len(targets):
                    overlap = coco_iou_matrix(
                        _to_xywh(box[None]), _to_xywh(targets), np.zeros(len(targets), bool)
                    )
                    if overlap.max() >= 0.5:
                        kept.append(item)
        metrics = evaluate_detections(truth, kept, classes=[label])
        entry = metrics["per_class"][label]
        name = f"{low:g}-{high:g} px" if np.isfinite(high) else f"{low:g}+ px"
        rows.append(
            {
                "bin": name,
                "low": low,
                "high": high,
                "num_gt": entry["num_gt"],
                "AP50": entry["AP50"] if entry["num_gt"] else None,
            }
        )
    return rows
