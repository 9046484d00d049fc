"""Inference settings of one trained model: held-out AP50 with and without a margin and the mirror.

Usage::

    python benchmarks/bench_analyze_inference.py [--model data/full/models/ssd] [--seeds 5151,5152,5153]
        [--videos 12] [--seconds 5] [--size 1280x720] [--rows plain,margin,plain-flip,margin-flip]
        [--work DIR]

A model's inference has settings that need no training: the padding round the
letterboxed frame (``infer_margin``, :class:`platelab.model.InputGeometry`) and the
test-time augmentation (``tta``, :mod:`platelab.tta`). This scores one model under each
row on held-out synthetic videos of seeds that no training, pretraining or evaluation
data uses (5151-5153 by default; the evaluation seeds 4242, 987654 and every seed from
1,000,000 are refused, so that a setting is never chosen on the frames that judge it):

* ``plain``: the frame letterboxed at the model's long side, no margin, one pass;
* ``margin``: the same with 32 px of padding round the frame (the input 64 px larger
  each way), as training crops that run past the frame's edge see it;
* ``plain-flip`` and ``margin-flip``: each with the mirror image fused
  (``tta: flip``).

The long side is the model's own (its ``infer_size`` less its margin). Each seed renders
``--videos`` videos (the six vantage points cycled) of ``--seconds`` at 10 FPS and
scores 2 frames a second, as stage 07 does (:func:`platelab.goals.evaluate_heldout_videos`).
Prints per row and seed vehicle and plate AP50, their means, the mean's ratio to the
first row's, and how many vehicles the frame's left or right edge cuts were missed at the
operating threshold (no detection with IoU 0.5), against those no edge cuts.
"""

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from choices import chosen, tuning_seeds

from platelab import detector, goals
from platelab import model as model_lib
from platelab.boxes import nms_iou

ROWS = {
    "plain": {"margin": 0, "tta": "none"},
    "margin": {"margin": 32, "tta": "none"},
    "plain-flip": {"margin": 0, "tta": "flip"},
    "margin-flip": {"margin": 32, "tta": "flip"},
}
LABELS = ("vehicle", "license_plate")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="data/full/models/ssd", help="a run folder or starter")
    parser.add_argument("--seeds", default="5151,5152,5153", help="held-out seeds (5151-5153)")
    parser.add_argument("--videos", type=int, default=12, help="videos per seed (12)")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per video (5)")
    parser.add_argument("--size", default="1280x720", help="frame size WxH (1280x720)")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"rows: {', '.join(ROWS)}")
    parser.add_argument("--work", help="folder for the rendered videos, reused by a later run")
    args = parser.parse_args(argv)
    rows = chosen(args.rows, ROWS)
    seeds = tuning_seeds(args.seeds)
    width, height = goals.heldout_frame_size(args.size)
    work = Path(args.work or tempfile.mkdtemp(prefix="platelab-inference-"))
    base = detector.load(args.model, allow_unfinished=True)
    geometry = base.geometry
    if geometry.mode != "letterbox":
        sys.exit(f"{args.model}: a square (squashed) input has no letterbox to pad")
    long_side = max(geometry.width, geometry.height) - 2 * geometry.margin
    largest = max(base.config["levels"])
    print(
        f"model {args.model}: long side {long_side}, its own margin {geometry.margin}, tta "
        f"{base.tta}; seeds {seeds}, {args.videos} videos of {args.seconds:g} s at "
        f"{width}x{height}"
    )
    results = {}
    for name in rows:
        setting = ROWS[name]
        shaped = model_lib.InputGeometry.for_frames(
            width, height, long_side, largest, setting["margin"]
        )
        model = detector.Detector(
            base.model,
            dict(
                base.config,
                infer_size=[shaped.width, shaped.height],
                resize="letterbox",
                infer_margin=setting["margin"],
                tta=setting["tta"],
            ),
        )
        per_seed, edge = [], np.zeros(4, int)
        for seed in seeds:
            heldout = goals.evaluate_heldout_videos(
                model,
                work / f"heldout-{seed}-{width}x{height}",
                seed=seed,
                videos=args.videos,
                seconds=args.seconds,
                size=(width, height),
                progress=False,
            )
            classes = heldout.metrics["per_class"]
            per_seed.append([classes[label]["AP50"] or 0.0 for label in LABELS])
            edge += _edge_misses(heldout, width, model.score_threshold)
        per_seed = np.array(per_seed)
        results[name] = per_seed.mean(axis=0)
        reference = results[rows[0]]
        seeds_text = "  ".join(f"{v:.3f}/{p:.3f}" for v, p in per_seed)
        print(
            f"{name:12s} {shaped.width}x{shaped.height}  {seeds_text}  mean "
            f"{results[name][0]:.4f}/{results[name][1]:.4f}  ratio to {rows[0]} "
            f"{results[name][0] / reference[0]:.3f}/{results[name][1] / reference[1]:.3f}  "
            f"vehicles missed: cut left or right {edge[0]}/{edge[1]}, uncut {edge[2]}/{edge[3]}",
            flush=True,
        )


def _edge_misses(heldout, width, threshold):
    """``[missed cut, cut, missed uncut, uncut]`` vehicles (not difficult) of a held-out set.

    A vehicle is cut when its box touches the frame's left or right edge, and missed when no
    vehicle detection scored ``threshold`` or more overlaps it by IoU 0.5.
    """
    found = {}
    for item in heldout.predictions:
        if item["label"] == "vehicle" and item["score"] >= threshold:
            found.setdefault(item["image"], []).append(item["bbox"])
    counts = np.zeros(4, int)
    for image in heldout.ground_truth:
        boxes = np.asarray(image["boxes"], np.float64).reshape(-1, 4)
        ignored = image.get("ignore") or [False] * len(boxes)
        detections = np.asarray(found.get(image["image"], []), np.float64).reshape(-1, 4)
        for box, label, skip in zip(boxes, image["labels"], ignored, strict=True):
            if label != "vehicle" or skip:
                continue
            cut = box[0] <= 1 or box[2] >= width - 1
            missed = not len(detections) or nms_iou(box, detections).max() < 0.5
            counts[0 if cut else 2] += missed
            counts[1 if cut else 3] += 1
    return counts


if __name__ == "__main__":
    main()
