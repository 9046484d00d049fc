"""Speed of platelab.evaluate against pycocotools' COCOeval, on the same detections.

Usage::

    python benchmarks/bench_evaluate.py [--images 5000] [--boxes 5] [--predictions 20] [--seed 0]

Generates ``--images`` images with about ``--boxes`` ground-truth boxes each
(Poisson; 2 classes, sizes spread over COCO's small, medium and large, 5 %
marked difficult) and about ``--predictions`` predictions each: 60 % near a
ground-truth box (jittered, 10 % with the other label), the rest anywhere,
uniform random scores.

Times, in this process, one after the other (wall and CPU seconds):

* ``pycocotools``: ``COCO`` indexes of the ground truth and the results
  (given in COCO's own format, converted beforehand and not timed), then
  ``COCOeval(iouType="bbox")`` ``evaluate``, ``accumulate`` and ``summarize``;
* ``platelab``: :func:`platelab.evaluate.evaluate_detections` on platelab's
  format (input checks included), which also computes the operating point.

Prints both, their ratio and the largest difference between the
seven figures both report (AP, AP50, AP75, AP small/medium/large, AR@100).
The goal: platelab no slower than pycocotools (ratio >= 1).
"""

import argparse
import contextlib
import io
import os
import sys
import time

import numpy as np

from platelab import evaluate

CLASSES = ("vehicle", "license_plate")
STATS = {"AP": 0, "AP50": 1, "AP75": 2, "AP_small": 3, "AP_medium": 4, "AP_large": 5, "AR": 8}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000, help="images (5000)")
    parser.add_argument("--boxes", type=float, default=5, help="ground-truth boxes per image (5)")
    parser.add_argument("--predictions", type=float, default=20, help="predictions per image (20)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (0)")
    args = parser.parse_args(argv)
    print(
        f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, NumPy {np.__version__}"
    )
    ground_truth, predictions = _generate(args.images, args.boxes, args.predictions, args.seed)
    boxes = sum(len(image["labels"]) for image in ground_truth)
    print(
        f"generated {len(ground_truth)} images, {boxes} ground-truth boxes, "
        f"{len(predictions)} predictions, {len(CLASSES)} classes"
    )
    dataset, image_ids, category_ids = evaluate.coco_ground_truth(ground_truth, list(CLASSES))
    results = evaluate.write_coco_results(predictions, image_ids, category_ids)

    theirs, stats = _run_pycocotools(dataset, results)
    ours, metrics = _run_platelab(ground_truth, predictions)
    difference = max(
        abs((metrics[key] if metrics[key] is not None else -1) - stats[index])
        for key, index in STATS.items()
    )
    print()
    print(f"{'':34}{'wall s':>9}{'cpu s':>9}")
    print(f"{'pycocotools COCOeval':34}{theirs[0]:9.2f}{theirs[1]:9.2f}")
    print(f"{'platelab evaluate_detections':34}{ours[0]:9.2f}{ours[1]:9.2f}")
    ratio = theirs[0] / ours[0]
    print(
        f"ratio (pycocotools / platelab, wall): {ratio:.1f}x; goal >= 1: "
        f"{'met' if ratio >= 1 else 'MISSED'}"
    )
    print(
        f"AP {metrics['AP']:.4f}, AP50 {metrics['AP50']:.4f}, AP75 {metrics['AP75']:.4f}; "
        f"largest difference from pycocotools over {', '.join(STATS)}: {difference:.2e}"
    )
    return 0


def _run_pycocotools(dataset, results):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    wall, cpu = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = dataset
        truth.createIndex()
        run = COCOeval(truth, truth.loadRes(results), "bbox")
        run.evaluate()
        run.accumulate()
        run.summarize()
    return (time.perf_counter() - wall, time.process_time() - cpu), run.stats


def _run_platelab(ground_truth, predictions):
    wall, cpu = time.perf_counter(), time.process_time()
    metrics = evaluate.evaluate_detections(ground_truth, predictions, classes=list(CLASSES))
    return (time.perf_counter() - wall, time.process_time() - cpu), metrics


def _generate(images, boxes, predictions, seed, size=1280):
    rng = np.random.default_rng(seed)
    ground_truth, found = [], []
    for number in range(images):
        name = f"frame_{number:06d}"
        count = int(rng.poisson(boxes))
        corner = rng.uniform(0, size - 100, (count, 2))
        extent = np.exp(rng.uniform(np.log(8), np.log(300), (count, 2)))
        truth = np.column_stack([corner, corner + extent])
        labels = [CLASSES[value] for value in rng.integers(0, len(CLASSES), count)]
        ground_truth.append(
            {
                "image": name,
                "width": size + 300,
                "height": size + 300,
                "boxes": truth,
                "labels": labels,
                "ignore": rng.random(count) < 0.05,
            }
        )
        for _ in range(int(rng.poisson(predictions))):
            if count and rng.random() < 0.6:
                target = int(rng.integers(count))
                scale = np.r_[extent[target], extent[target]]
                box = truth[target] + rng.normal(0, 0.1, 4) * scale
                box[2:] = np.maximum(box[2:], box[:2] + 1)
                label = (
                    labels[target]
                    if rng.random() < 0.9
                    else CLASSES[1 - CLASSES.index(labels[target])]
                )
            else:
                corner = rng.uniform(0, size - 100, 2)
                box = np.r_[corner, corner + np.exp(rng.uniform(np.log(8), np.log(300), 2))]
                label = CLASSES[int(rng.integers(len(CLASSES)))]
            found.append(
                {"image": name, "label": label, "score": float(rng.random()), "bbox": box.tolist()}
            )
    return ground_truth, found


if __name__ == "__main__":
    sys.exit(main())
