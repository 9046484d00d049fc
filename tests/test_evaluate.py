"""Detection metrics (platelab.evaluate): parity with pycocotools, operating point, loading, CLI."""

import argparse
import contextlib
import io
import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from platelab import annotate, evaluate

PARITY = 1e-6
"""Largest difference allowed from pycocotools (the issue asks for 1e-3; it is rounding)."""
CLASSES = ["vehicle", "license_plate"]
COCO_STATS = {"AP": 0, "AP50": 1, "AP75": 2, "AP_small": 3, "AP_medium": 4, "AP_large": 5, "AR": 8}


def _reference(ground_truth, predictions, classes):
    """pycocotools' figures, overall (stats) and per class, with None for its -1.

    The COCO datasets are built here, independently of platelab: ids from 1 in
    input order, ``bbox`` [x, y, w, h], ``area`` w * h, ignored boxes as
    ``iscrowd`` (pycocotools takes its ignore flag from there). The results
    are built as ``COCO.loadRes`` does (which refuses an empty list).
    """
    categories = {label: number + 1 for number, label in enumerate(classes)}
    images, boxes = [], []
    for number, image in enumerate(ground_truth):
        images.append({"id": number + 1, "width": 1000, "height": 1000})
        flags = image.get("ignore")
        flags = [False] * len(image["labels"]) if flags is None else flags
        for box, label, flag in zip(
            np.asarray(image["boxes"], float).reshape(-1, 4).tolist(),
            image["labels"],
            flags,
            strict=True,
        ):
            if label not in categories:
                continue
            width, height = box[2] - box[0], box[3] - box[1]
            boxes.append(
                {
                    "id": len(boxes) + 1,
                    "image_id": number + 1,
                    "category_id": categories[label],
                    "bbox": [box[0], box[1], width, height],
                    "area": width * height,
                    "iscrowd": int(flag),
                    "ignore": int(flag),
                }
            )
    ids = {image["image"]: number + 1 for number, image in enumerate(ground_truth)}
    results = []
    for item in predictions:
        if item["label"] not in categories:
            continue
        x0, y0, x1, y1 = item["bbox"]
        results.append(
            {
                "id": len(results) + 1,
                "image_id": ids[item["image"]],
                "category_id": categories[item["label"]],
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "area": (x1 - x0) * (y1 - y0),
                "score": item["score"],
                "iscrowd": 0,
            }
        )
    cats = [{"id": value, "name": label} for label, value in categories.items()]
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = {"images": images, "annotations": boxes, "categories": cats}
        truth.createIndex()
        found = COCO()
        found.dataset = {"images": images, "annotations": results, "categories": cats}
        found.createIndex()
        run = COCOeval(truth, found, "bbox")
        run.evaluate()
        run.accumulate()
        run.summarize()
    overall = {
        key: None if run.stats[index] < 0 else run.stats[index] for key, index in COCO_STATS.items()
    }
    precision, recall = run.eval["precision"], run.eval["recall"]
    per_class = {}
    for position, label in enumerate(classes):
        figures = {
            "AP": precision[:, :, position, 0, 2],
            "AP50": precision[0, :, position, 0, 2],
            "AP75": precision[5, :, position, 0, 2],
            "AP_small": precision[:, :, position, 1, 2],
            "AP_medium": precision[:, :, position, 2, 2],
            "AP_large": precision[:, :, position, 3, 2],
            "AR": recall[:, position, 0, 2],
        }
        per_class[label] = {
            key: None if np.all(values == -1) else float(np.mean(values))
            for key, values in figures.items()
        }
    return overall, per_class


def _assert_parity(ground_truth, predictions, classes=CLASSES):
    """Asserts platelab's figures equal pycocotools'; returns the largest difference."""
    metrics = evaluate.evaluate_detections(ground_truth, predictions, classes=classes)
    overall, per_class = _reference(ground_truth, predictions, classes)
    worst = 0.0
    for ours, theirs, where in [(metrics, overall, "overall")] + [
        (metrics["per_class"][label], per_class[label], label) for label in classes
    ]:
        for key in COCO_STATS:
            if theirs[key] is None:
                assert ours[key] is None, f"{where} {key}: pycocotools has none"
                continue
            assert ours[key] == pytest.approx(theirs[key], abs=PARITY), f"{where} {key}"
            worst = max(worst, abs(ours[key] - theirs[key]))
    return metrics, worst


def _scene(seed, images=120, boxes=5, predictions=20, jitter=8.0, size=640, ignored=0.1):
    """Random ground truth (some images empty) and predictions near it, mislabelled or spurious."""
    rng = np.random.default_rng(seed)
    ground_truth, found = [], []
    for number in range(images):
        count = int(rng.poisson(boxes))
        corner = rng.uniform(0, size, (count, 2))
        extent = np.exp(rng.uniform(np.log(4), np.log(250), (count, 2)))
        truth = np.column_stack([corner, corner + extent])
        labels = [CLASSES[value] for value in rng.integers(0, 2, count)]
        name = f"frame_{number:04d}"
        ground_truth.append(
            {
                "image": name,
                "width": size + 250,
                "height": size + 250,
                "boxes": truth,
                "labels": labels,
                "ignore": rng.random(count) < ignored,
            }
        )
        for _ in range(int(rng.poisson(predictions))):
            if count and rng.random() < 0.6:
                target = int(rng.integers(count))
                box = (
                    truth[target]
                    + rng.normal(0, jitter, 4) * np.r_[extent[target], extent[target]] / 50
                )
                box[2:] = np.maximum(box[2:], box[:2] + 1)
                label = labels[target] if rng.random() < 0.9 else CLASSES[int(rng.integers(2))]
            else:
                corner = rng.uniform(0, size, 2)
                box = np.r_[corner, corner + np.exp(rng.uniform(np.log(4), np.log(250), 2))]
                label = CLASSES[int(rng.integers(2))]
            found.append(
                {"image": name, "label": label, "score": float(rng.random()), "bbox": box.tolist()}
            )
    return ground_truth, found


def _hand_made():
    """Three images, known answers at score 0.5 and IoU 0.5 (see test_operating_point)."""
    ground_truth = [
        {
            "image": "a",
            "width": 640,
            "height": 480,
            "boxes": [[10, 10, 110, 60], [200, 200, 300, 250], [0, 0, 400, 300]],
            "labels": ["license_plate", "license_plate", "vehicle"],
        },
        {
            "image": "b",
            "width": 640,
            "height": 480,
            "boxes": [[50, 50, 150, 100], [10, 10, 210, 160]],
            "labels": ["license_plate", "vehicle"],
            "ignore": [True, False],
        },
        {"image": "c", "width": 640, "height": 480, "boxes": [], "labels": []},
    ]
    predictions = [
        {"image": "a", "label": "license_plate", "score": 0.9, "bbox": [10, 10, 110, 60]},
        {"image": "a", "label": "license_plate", "score": 0.8, "bbox": [12, 10, 112, 60]},
        {"image": "a", "label": "license_plate", "score": 0.3, "bbox": [200, 200, 300, 250]},
        {"image": "b", "label": "license_plate", "score": 0.95, "bbox": [50, 50, 150, 100]},
        {"image": "c", "label": "license_plate", "score": 0.7, "bbox": [0, 0, 50, 50]},
        {"image": "a", "label": "vehicle", "score": 0.6, "bbox": [0, 0, 400, 300]},
        {"image": "b", "label": "vehicle", "score": 0.99, "bbox": [300, 300, 400, 400]},
        {"image": "b", "label": "tree", "score": 0.9, "bbox": [0, 0, 10, 10]},
    ]
    return ground_truth, predictions


def test_parity_random():
    ground_truth, predictions = _scene(0)
    metrics, _ = _assert_parity(ground_truth, predictions)
    assert 0 < metrics["AP"] < metrics["AP50"] < 1
    assert metrics["num_images"] == 120
    assert set(metrics["per_class"]) == set(CLASSES) == set(metrics["classes"])
    json.dumps(metrics)  # JSON-able as is


def test_parity_empty_predictions_and_images_without_boxes():
    ground_truth, _ = _scene(1, images=30)
    ground_truth += [{"image": f"empty_{n}", "boxes": [], "labels": []} for n in range(5)]
    metrics, _ = _assert_parity(ground_truth, [])
    assert metrics["AP"] == 0 and metrics["AR"] == 0
    assert metrics["precision"] is None and metrics["recall"] == 0 and metrics["F1"] == 0

    # A class with no ground truth is undefined (pycocotools: -1) and left out of the mean.
    plates_only = [
        dict(
            image,
            boxes=np.asarray(image["boxes"]).reshape(-1, 4)[keep],
            labels=["license_plate"] * int(sum(keep)),
            ignore=None,
        )
        for image in ground_truth
        for keep in [np.array([label == "license_plate" for label in image["labels"]], bool)]
    ]
    _, predictions = _scene(1, images=30)
    metrics, _ = _assert_parity(plates_only, predictions)
    assert metrics["per_class"]["vehicle"]["AP"] is None
    assert metrics["AP"] == metrics["per_class"]["license_plate"]["AP"]
    assert (
        metrics["per_class"]["vehicle"]["fp"] > 0
        and metrics["per_class"]["vehicle"]["recall"] is None
    )

    # Nothing annotated at all: every figure undefined, none raised.
    nothing = evaluate.evaluate_detections(
        [{"image": "x", "boxes": [], "labels": []}], [], classes=CLASSES
    )
    assert nothing["AP"] is None and nothing["precision"] is None and nothing["F1"] is None


def test_parity_crowded_ties_and_over_the_limit():
    """Many overlapping boxes, duplicates, equal scores, equal IoUs, > 100 predictions per image."""
    rng = np.random.default_rng(2)
    ground_truth, predictions = [], []
    for number in range(6):
        centre = rng.uniform(100, 300, (40, 2))
        truth = np.column_stack([centre - 20, centre + rng.uniform(10, 60, (40, 2))])
        truth[:5] = truth[5]  # identical boxes
        labels = [CLASSES[value] for value in rng.integers(0, 2, 40)]
        ground_truth.append({"image": f"crowd_{number}", "boxes": truth, "labels": labels})
        for index in range(240):
            box = truth[index % 40] + rng.normal(0, 4, 4)
            box[2:] = np.maximum(box[2:], box[:2] + 1)
            score = float(np.round(rng.random(), 1))  # many equal scores
            label = labels[index % 40] if index % 7 else CLASSES[index % 2]
            predictions.append(
                {"image": f"crowd_{number}", "label": label, "score": score, "bbox": box.tolist()}
            )
        # An exact copy of a box that five others equal (IoU 1 with six boxes).
        predictions.append(
            {
                "image": f"crowd_{number}",
                "label": labels[5],
                "score": 0.5,
                "bbox": truth[5].tolist(),
            }
        )
    # Equal IoU (0.818) with two boxes: pycocotools takes the later one, which leaves the
    # earlier one to the next prediction at IoU 1 (taking the first would leave 0.667).
    ground_truth.append(
        {"image": "tie", "boxes": [[0, 0, 10, 10], [2, 0, 12, 10]], "labels": ["vehicle"] * 2}
    )
    predictions += [
        {"image": "tie", "label": "vehicle", "score": 0.9, "bbox": [1, 0, 11, 10]},
        {"image": "tie", "label": "vehicle", "score": 0.8, "bbox": [0, 0, 10, 10]},
    ]
    metrics, _ = _assert_parity(ground_truth, predictions)
    assert 0 < metrics["AP"] < 1


def test_parity_all_wrong():
    ground_truth, predictions = _scene(3, images=40)
    swapped = [dict(item, label=CLASSES[1 - CLASSES.index(item["label"])]) for item in predictions]
    _assert_parity(ground_truth, swapped)
    far = [
        dict(
            item,
            bbox=[item["bbox"][0] + 5000, item["bbox"][1], item["bbox"][2] + 5000, item["bbox"][3]],
        )
        for item in predictions
    ]
    metrics, _ = _assert_parity(ground_truth, far)
    assert metrics["AP"] == 0 and metrics["AP50"] == 0 and metrics["precision"] == 0
    assert metrics["tp"] == 0 and metrics["fn"] == metrics["num_gt"]


def test_parity_ignored_boxes_and_area_boundaries():
    """Difficult boxes behave as pycocotools' crowd regions; areas exactly 32² and 96² count in both ranges."""
    ground_truth, predictions = _scene(4, images=60, ignored=0.4)
    # Boxes of area exactly 32*32 and 96*96, hit and missed.
    for number, side in enumerate((32.0, 96.0, 32.0, 96.0)):
        box = [10.0, 10.0, 10.0 + side, 10.0 + side]
        ground_truth.append(
            {"image": f"edge_{number}", "boxes": [box], "labels": ["license_plate"]}
        )
        if number < 2:
            predictions.append(
                {"image": f"edge_{number}", "label": "license_plate", "score": 0.5, "bbox": box}
            )
    # Several predictions inside one ignored box: all absorbed, none a false positive.
    ground_truth.append(
        {
            "image": "difficult",
            "boxes": [[0, 0, 200, 200], [300, 300, 340, 330]],
            "labels": ["vehicle", "vehicle"],
            "ignore": [True, False],
        }
    )
    for offset in range(5):
        predictions.append(
            {
                "image": "difficult",
                "label": "vehicle",
                "score": 0.9 - offset / 10,
                "bbox": [offset * 10, 0, offset * 10 + 50, 50],
            }
        )
    metrics, _ = _assert_parity(ground_truth, predictions)
    assert metrics["num_ignored"] > 0
    alone = evaluate.evaluate_detections(ground_truth[-1:], predictions[-5:])
    assert alone["fp"] == 0 and alone["tp"] == 0 and alone["fn"] == 1 and alone["num_ignored"] == 1


def test_parity_hand_made():
    ground_truth, predictions = _hand_made()
    _assert_parity(ground_truth, predictions)


@pytest.mark.parametrize("seed", [10, 11, 12])
def test_parity_more_random_scenes(seed):
    ground_truth, predictions = _scene(seed, images=50, boxes=3, predictions=12, jitter=20)
    _assert_parity(ground_truth, predictions)


def test_operating_point():
    ground_truth, predictions = _hand_made()
    metrics = evaluate.evaluate_detections(ground_truth, predictions, score_threshold=0.5)
    plates = metrics["per_class"]["license_plate"]
    # p1 found, its duplicate and the one on an empty image are false, the ignored one counts nowhere,
    # the right box scoring 0.3 is below the threshold.
    assert (plates["tp"], plates["fp"], plates["fn"]) == (1, 2, 1)
    assert plates["precision"] == pytest.approx(1 / 3)
    assert plates["recall"] == pytest.approx(1 / 2)
    assert plates["F1"] == pytest.approx(0.4)
    assert (plates["num_gt"], plates["num_ignored"], plates["num_pred"]) == (2, 1, 5)
    vehicles = metrics["per_class"]["vehicle"]
    assert (vehicles["tp"], vehicles["fp"], vehicles["fn"]) == (1, 1, 1)
    assert vehicles["precision"] == vehicles["recall"] == vehicles["F1"] == 0.5
    # Overall: pooled counts.
    assert (metrics["tp"], metrics["fp"], metrics["fn"]) == (2, 3, 2)
    assert metrics["precision"] == pytest.approx(0.4)
    assert metrics["recall"] == pytest.approx(0.5)
    assert metrics["F1"] == pytest.approx(4 / 9)
    assert metrics["unscored_predictions"] == {"tree": 1}
    assert metrics["classes"] == ["vehicle", "license_plate"]
    assert metrics["score_threshold"] == 0.5 and metrics["num_images"] == 3

    # A lower threshold takes the 0.3 plate in; a class list scores just that class.
    lower = evaluate.evaluate_detections(ground_truth, predictions, score_threshold=0.2)
    assert lower["per_class"]["license_plate"]["tp"] == 2
    only = evaluate.evaluate_detections(ground_truth, predictions, classes=["license_plate"])
    assert list(only["per_class"]) == ["license_plate"]
    assert only["unscored_predictions"] == {"tree": 1, "vehicle": 2}
    assert only["AP"] == only["per_class"]["license_plate"]["AP"]
    # An operating IoU off COCO's grid is matched on its own.
    strict = evaluate.evaluate_detections(ground_truth, predictions, iou_threshold=0.97)
    assert strict["per_class"]["license_plate"]["tp"] == 1
    assert strict["AP"] == metrics["AP"]


def test_match_detections():
    ground_truth, predictions = _hand_made()
    matches = evaluate.match_detections(ground_truth, predictions, score_threshold=0.5)
    statuses = [item["status"] for item in matches["predictions"]]
    assert statuses == ["tp", "fp", "below_threshold", "ignored", "fp", "tp", "fp", "unscored"]
    first, duplicate = matches["predictions"][:2]
    assert first["gt_index"] == 0 and first["iou"] == 1.0 and first["image_index"] == 0
    assert duplicate["gt_index"] is None and duplicate["iou"] == pytest.approx(4900 / 5100)
    assert matches["predictions"][3]["gt_index"] == 0  # the ignored box of image b
    assert matches["predictions"][6]["iou"] == 0.0
    boxes = matches["ground_truth"]
    assert boxes[0] == [
        {"status": "found", "prediction_index": 0},
        {"status": "missed", "prediction_index": None},
        {"status": "found", "prediction_index": 5},
    ]
    assert [item["status"] for item in boxes[1]] == ["ignored", "missed"]
    assert boxes[2] == []
    limited = evaluate.match_detections(ground_truth, predictions, max_detections=1)
    assert limited["predictions"][1]["status"] == "over_limit"
    only = evaluate.match_detections(ground_truth, predictions, classes=["vehicle"])
    assert only["ground_truth"][0][0]["status"] == "unscored"


def test_confusion_matrix():
    ground_truth, predictions = _hand_made()
    # A plate predicted as a vehicle: class-agnostic matching finds it, labels differ.
    predictions = predictions + [
        {"image": "a", "label": "vehicle", "score": 0.55, "bbox": [200, 200, 300, 250]}
    ]
    matrix, names = evaluate.confusion_matrix(ground_truth, predictions)
    assert names == ["vehicle", "license_plate", "background"]
    assert matrix.tolist() == [
        [1, 0, 1],  # vehicle: found once, v2 missed
        [1, 1, 0],  # plate: p1 found, p2 taken for a vehicle
        [1, 2, 0],  # spurious: the vehicle far off; the duplicate plate and the one on image c
    ]


def test_pr_curves_agree_with_the_metrics():
    ground_truth, predictions = _scene(5, images=60)
    metrics = evaluate.evaluate_detections(ground_truth, predictions)
    curves = evaluate.pr_curves(ground_truth, predictions)
    for label in CLASSES:
        curve = curves[label]
        assert curve["ap"] == pytest.approx(metrics["per_class"][label]["AP50"], abs=1e-12)
        assert len(curve["recall_grid"]) == len(curve["precision_grid"]) == 101
        assert np.all(np.diff(curve["scores"]) <= 0) and np.all(np.diff(curve["recall"]) >= 0)
        assert len(curve["scores"]) == len(curve["precision"]) == len(curve["f1"])
        at = np.flatnonzero(curve["scores"] >= 0.5)[-1]
        entry = metrics["per_class"][label]
        assert curve["recall"][at] == pytest.approx(entry["recall"])
        assert curve["precision"][at] == pytest.approx(entry["precision"])
        assert curve["f1"][at] == pytest.approx(entry["F1"])


def test_coco_converters_feed_pycocotools():
    ground_truth, predictions = _scene(6, images=20)
    dataset, image_ids, category_ids = evaluate.coco_ground_truth(ground_truth)
    results = evaluate.write_coco_results(predictions, image_ids, category_ids)
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = dataset
        truth.createIndex()
        run = COCOeval(truth, truth.loadRes(results), "bbox")
        run.evaluate()
        run.accumulate()
        run.summarize()
    metrics = evaluate.evaluate_detections(ground_truth, predictions)
    assert metrics["AP"] == pytest.approx(run.stats[0], abs=PARITY)
    assert metrics["AP_small"] == pytest.approx(run.stats[3], abs=PARITY)


def test_bad_input():
    ground_truth, predictions = _hand_made()
    with pytest.raises(
        ValueError, match=r"2 prediction\(s\) on images not in the ground truth.*nowhere, zz"
    ):
        evaluate.evaluate_detections(
            ground_truth,
            predictions + [dict(predictions[0], image="zz"), dict(predictions[0], image="nowhere")],
        )
    for broken, message in [
        ({"image": "a", "label": "vehicle", "score": 0.5}, "prediction 8: missing bbox"),
        (dict(predictions[0], score="high"), "prediction 8: 'score' must be a finite number"),
        (dict(predictions[0], score=float("nan")), "'score' must be a finite number"),
        (dict(predictions[0], bbox=[1, 2, 3]), "'bbox' must be 4 finite numbers"),
        (dict(predictions[0], bbox=[5, 5, 1, 9]), "xmax < xmin"),
        (dict(predictions[0], label=""), "'label' must be a non-empty string"),
        ("a string", "prediction 8: not an object"),
    ]:
        with pytest.raises(ValueError, match=message):
            evaluate.evaluate_detections(ground_truth, predictions + [broken])
    with pytest.raises(ValueError, match="names an image twice: a"):
        evaluate.evaluate_detections(ground_truth + ground_truth[:1], [])
    with pytest.raises(ValueError, match="3 boxes but 2 labels"):
        evaluate.evaluate_detections([dict(ground_truth[0], labels=["vehicle"] * 2)], [])
    # Predictions find their image by path, file name or stem as well.
    named = [dict(image, path=f"/data/JPEGImages/{image['image']}.jpg") for image in ground_truth]
    by_path = [dict(item, image=f"{item['image']}.jpg") for item in predictions]
    assert evaluate.evaluate_detections(named, by_path) == evaluate.evaluate_detections(
        ground_truth, predictions
    )


def test_load_predictions(tmp_path):
    _, predictions = _hand_made()
    good = tmp_path / "preds.json"
    good.write_text(json.dumps(predictions))
    assert evaluate.load_predictions(good) == predictions
    for name, content, message in [
        ("missing.json", None, "missing.json: predictions file not found"),
        ("broken.json", "[{", "broken.json: not valid JSON"),
        ("object.json", '{"a": 1}', "object.json: expected a list"),
        (
            "field.json",
            json.dumps([{"image": "a", "label": "x", "score": 1}]),
            "field.json: prediction 0: missing bbox",
        ),
        (
            "box.json",
            json.dumps([dict(predictions[0], bbox="1,2,3,4")]),
            "box.json: prediction 0: 'bbox' must be",
        ),
    ]:
        path = tmp_path / name
        if content is not None:
            path.write_text(content)
        with pytest.raises(ValueError, match=message) as caught:
            evaluate.load_predictions(path)
        assert "\n" not in str(caught.value)


def _voc_folder(tmp_path, name, objects_by_image, splits=None):
    """A CVAT-style VOC folder written with platelab.annotate, PNG images of 64x48."""
    images = []
    for image_name, objects in objects_by_image.items():
        path = tmp_path / f"{name}-pixels" / f"{image_name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), np.zeros((48, 64, 3), np.uint8))
        images.append(annotate.VocImage(image_name, path, 64, 48, objects))
    folder = annotate.write_voc(images, tmp_path / name, form="folder")
    for split, names in (splits or {}).items():
        (folder / "ImageSets" / "Main" / f"{split}.txt").write_text(
            "".join(f"{n}\n" for n in names)
        )
    return folder


def test_load_ground_truth(tmp_path, caplog):
    objects = {
        "img_1": [
            {"label": "car", "bbox": [1, 2, 30, 20]},
            {"label": "Licence Plate", "bbox": [5, 5, 15, 9], "difficult": True},
            {"label": "tree", "bbox": [40, 1, 60, 40]},
        ],
        "img_2": [{"label": "plate", "bbox": [10.5, 10, 20, 14]}],
        "img_3": [],
    }
    folder = _voc_folder(tmp_path, "batch_a", objects, {"test": ["img_2", "img_3"], "val": []})
    with caplog.at_level(logging.WARNING, logger="platelab.evaluate"):
        loaded = evaluate.load_ground_truth(folder)
    assert "dropped 1 box(es) with unknown labels: tree (1)" in caplog.text
    assert [image["image"] for image in loaded] == ["img_1", "img_2", "img_3"]
    first = loaded[0]
    assert first["labels"] == ["vehicle", "license_plate"]
    assert first["ignore"].tolist() == [False, True]
    assert first["boxes"].tolist() == [[1, 2, 30, 20], [5, 5, 15, 9]]
    assert first["dropped_labels"] == ["tree"]
    assert (first["width"], first["height"]) == (64, 48)
    assert loaded[1]["boxes"].tolist() == [[10.5, 10, 20, 14]]

    # Split selection; a missing or empty split is a clear error naming the file.
    test = evaluate.load_ground_truth(folder, split="test")
    assert [image["image"] for image in test] == ["img_2", "img_3"]
    with pytest.raises(
        ValueError,
        match=r"ImageSets/Main/train.txt: no such split file \(splits there: default, test, val\)",
    ):
        evaluate.load_ground_truth(folder, split="train")
    with pytest.raises(ValueError, match="val.txt: the split lists no images"):
        evaluate.load_ground_truth(folder, split="val")

    # An alias file makes the unknown label a class of its own.
    aliases = tmp_path / "aliases.yaml"
    aliases.write_text("vegetation: [tree]\n")
    assert evaluate.load_ground_truth(folder, aliases=aliases)[0]["labels"][-1] == "vegetation"

    # Two sources naming images alike: the clashing keys get the source's name.
    other = _voc_folder(
        tmp_path, "batch_b", {"img_1": [{"label": "bus", "bbox": [0, 0, 9, 9]}], "img_9": []}
    )
    both = evaluate.load_ground_truth([folder, other])
    assert [image["image"] for image in both] == [
        "batch_a/img_1",
        "img_2",
        "img_3",
        "batch_b/img_1",
        "img_9",
    ]

    # The ground truth against itself scores 1 on the classes it has.
    predictions = [
        {"image": image["image"], "label": label, "score": 1.0, "bbox": box}
        for image in loaded
        for label, box in zip(image["labels"], image["boxes"].tolist(), strict=True)
    ]
    metrics = evaluate.evaluate_detections(loaded, predictions)
    # (precision is tp / (tp + fp + eps), as in pycocotools: 1 to rounding)
    assert metrics["AP"] == pytest.approx(1.0) and metrics["F1"] == 1.0
    assert metrics["num_ignored"] == 1


def test_evaluate_command(tmp_path, capsys):
    folder = _voc_folder(
        tmp_path,
        "batch",
        {
            "one": [
                {"label": "plate", "bbox": [2, 2, 20, 12]},
                {"label": "car", "bbox": [0, 0, 60, 40]},
            ],
            "two": [{"label": "license plate", "bbox": [30, 30, 50, 40]}],
        },
        {"test": ["one", "two"]},
    )
    predictions = [
        {"image": "one", "label": "Plate", "score": 0.9, "bbox": [2, 2, 20, 12]},
        {"image": "two.png", "label": "license_plate", "score": 0.4, "bbox": [30, 30, 50, 40]},
        {"image": "two", "label": "car", "score": 0.8, "bbox": [0, 0, 9, 9]},
    ]
    (tmp_path / "preds.json").write_text(json.dumps(predictions))
    parser = evaluate.add_evaluate_arguments(argparse.ArgumentParser())
    out = tmp_path / "out" / "metrics.json"
    args = parser.parse_args(
        [
            "--predictions",
            str(tmp_path / "preds.json"),
            "--data",
            str(folder),
            "--out",
            str(out),
            "--split",
            "test",
        ]
    )
    assert args.handler(args) == 0
    metrics = json.loads(out.read_text())
    assert metrics["per_class"]["license_plate"]["AP"] == pytest.approx(1.0)
    assert metrics["per_class"]["license_plate"]["recall"] == 0.5
    assert metrics["per_class"]["vehicle"]["fp"] == 1
    assert metrics["split"] == "test" and metrics["num_images"] == 2
    assert "2 images, 3 boxes: AP" in capsys.readouterr().out

    class FakeDetector:
        def predict(self, images, score_threshold=None):
            assert all(image.shape == (48, 64, 3) and image.dtype == np.uint8 for image in images)
            return [
                {
                    "boxes": np.array([[2, 2, 20, 12]], np.float32),
                    "scores": np.array([0.9]),
                    "labels": ["license_plate"],
                }
                for _ in images
            ]

    saved = tmp_path / "model_preds.json"
    args = parser.parse_args(
        [
            "--model",
            "runs/x",
            "--data",
            str(folder),
            "--out",
            str(out),
            "--save-predictions",
            str(saved),
        ]
    )
    assert evaluate.run_evaluate_command(args, detector_loader=lambda path: FakeDetector()) == 0
    metrics = json.loads(out.read_text())
    # Recorded as given on the command line: relative to the current directory.
    assert metrics["model"] == str(Path.cwd() / "runs" / "x") and metrics["num_pred"] == 2
    assert metrics["per_class"]["license_plate"]["tp"] == 1
    assert len(json.loads(saved.read_text())) == 2

    with pytest.raises(SystemExit):
        parser.parse_args(
            ["--data", str(folder), "--out", str(out)]
        )  # neither predictions nor model
    args = parser.parse_args(
        ["--predictions", str(tmp_path / "nope.json"), "--data", str(folder), "--out", str(out)]
    )
    with pytest.raises(ValueError, match="nope.json: predictions file not found"):
        evaluate.run_evaluate_command(args)


@pytest.mark.shared
@pytest.mark.slow
def test_real_cvat_exports_against_themselves(shared_data, tmp_path):
    exports = sorted((shared_data / "openalpr-br").glob("*.zip"))
    truth = evaluate.load_ground_truth(exports, split="default", work_dir=tmp_path)
    assert len(truth) == 114
    assert {label for image in truth for label in image["labels"]} == {"license_plate"}
    itself = [
        {"image": image["image"], "label": label, "score": 1.0, "bbox": box}
        for image in truth
        for label, box in zip(image["labels"], image["boxes"].tolist(), strict=True)
    ]
    metrics, _ = _assert_parity(truth, itself, classes=["license_plate"])
    assert metrics["AP"] == pytest.approx(1.0) and metrics["AP50"] == pytest.approx(1.0)
    assert metrics["F1"] == 1.0
    assert metrics["classes"] == ["license_plate"] and metrics["num_gt"] == 114

    rng = np.random.default_rng(0)
    jittered = []
    for item in itself:
        box = np.array(item["bbox"])
        size = np.r_[box[2:] - box[:2], box[2:] - box[:2]]
        moved = box + rng.normal(0, 0.08, 4) * size
        moved[2:] = np.maximum(moved[2:], moved[:2] + 1)
        jittered.append(dict(item, score=float(rng.random()), bbox=moved.tolist()))
    metrics, _ = _assert_parity(truth, jittered, classes=["license_plate"])
    assert 0.2 < metrics["AP"] < 1.0 and metrics["AP50"] > metrics["AP75"]


def test_ap_by_height_scores_each_bin_on_its_own():
    boxes = np.array([[10, 10, 40, 20], [100, 100, 140, 120], [200, 200, 280, 240], [0, 0, 8, 4]])
    ground_truth = [
        {
            "image": "a",
            "width": 400,
            "height": 300,
            "boxes": boxes,
            "labels": ["license_plate"] * 4,
            "ignore": [False, False, False, True],
        }
    ]
    found = [boxes[0], boxes[2]]  # the 10 px and the 40 px plates; the 20 px one missed
    predictions = [
        {"image": "a", "label": "license_plate", "score": 0.9, "bbox": list(map(float, box))}
        for box in found
    ]
    rows = evaluate.ap_by_height(ground_truth, predictions, "license_plate")
    assert [row["bin"] for row in rows] == ["8-16 px", "16-32 px", "32+ px"]
    assert [row["num_gt"] for row in rows] == [1, 1, 1]
    assert rows[0]["AP50"] == pytest.approx(1.0)
    assert rows[1]["AP50"] == pytest.approx(0.0)
    assert rows[2]["AP50"] == pytest.approx(1.0)
    # A false alarm of the bin's size counts against it; one of another size does not.
    predictions.append(
        {"image": "a", "label": "license_plate", "score": 0.95, "bbox": [300.0, 10, 330, 22]}
    )
    rows = evaluate.ap_by_height(ground_truth, predictions, "license_plate")
    assert rows[0]["AP50"] < 1.0 and rows[2]["AP50"] == pytest.approx(1.0)


def test_metrics_rows_all_first_then_each_class():
    metrics = {
        "AP": 0.5, "AP50": 0.7, "recall": 0.6,
        "per_class": {"vehicle": {"AP": 0.6, "AP50": 0.8}, "license_plate": {"AP": 0.4}},
    }  # fmt: skip
    rows = evaluate.metrics_rows(metrics, ("AP", "AP50", "recall"))
    assert list(rows) == ["all", "vehicle", "license_plate"]
    assert rows["all"] == {"AP": 0.5, "AP50": 0.7, "recall": 0.6}
    assert rows["vehicle"] == {"AP": 0.6, "AP50": 0.8, "recall": None}
    assert rows["license_plate"] == {"AP": 0.4, "AP50": None, "recall": None}
    assert evaluate.metrics_rows({"AP": 0.1}, ("AP",)) == {"all": {"AP": 0.1}}
