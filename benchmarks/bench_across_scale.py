"""Across scale: a model trained only on close-up plates, scored on the same plates shrunk to 1/4.

Usage::

    python benchmarks/bench_across_scale.py [--minutes 8] [--rows default,no_zoom_out]
        [--shrink 0.25] [--shared ../shared/data/openalpr-br] [--seed 0] [--work DIR]

openalpr-br's photos are close-ups: plates fill 12-30 % of the image width. Traffic
cameras see plates at 5-8 % of the width. A detector trained on the close-ups must
still find plates that small, which needs anchors at every scale on every level and
augmentation that zooms out as well as in. This benchmark shows whether it does:

1. ``platelab merge`` of both exports (group-safe split by photo, ``--seed``);
2. per row, :func:`platelab.train.train` from random weights for ``--minutes`` on the
   train photos only (all close-ups), with the default recipe (``default``, what
   ``platelab train --init none`` runs) or the same recipe without zoom-out
   (``no_zoom_out``: crops only at scales 0.6-1.6); ``closeup``: 320 px crops from
   scale 0.4 (the close-ups whole in a crop) at the learning rate for random weights
   (0.006), then with half the crops zoomed out down to 0.15 (``closeup-zoom50``), or
   half the images a 2x2 mosaic (``closeup-mosaic``);
3. ``platelab evaluate`` of each model on the test photos as they are (``1x``) and on
   the same test photos shrunk by ``--shrink`` (each side) onto a neutral canvas of the
   original size at a seeded position (``shrunk``): the same plates at 3-8 % of the
   width, the network input unchanged.

Only ``license_plate`` is scored (the set annotates one plate a photo; vehicles and
other plates are not annotated). Prints per row: steps, test AP50 and recall at 1x
and shrunk, and the shrunk/1x ratio. Trainings run one after the other.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from bench_openalpr_finetune import run_platelab
from choices import chosen

from platelab import annotate, annotations, detector, paths, train

# For random weights at the rate the docs give them (0.006), on crops that hold these
# close-ups (320 px from scale 0.4, as bench_openalpr_finetune's rows).
CLOSEUP = {"input_size": 320, "scale_min": 0.4, "learning_rate": 0.006, "warmup_steps": 30}
ROWS = {
    "default": {},
    "no_zoom_out": {"zoom_out": 0.0},
    "closeup": CLOSEUP,
    "closeup-zoom50": {**CLOSEUP, "zoom_out": 0.5, "zoom_out_min": 0.15},
    "closeup-mosaic": {**CLOSEUP, "mosaic": 0.5},
}

# A neutral grey for the canvas around a shrunk photo (the letterbox padding value).
CANVAS_VALUE = 114


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shared",
        default=str(paths.PROJECT_ROOT.parent / "shared" / "data" / "openalpr-br"),
        help="folder holding br_task_1_voc.zip and br_task_2_voc.zip",
    )
    parser.add_argument("--minutes", type=float, default=8.0, help="training budget per row (8)")
    parser.add_argument("--rows", default="default,no_zoom_out", help=f"rows: {', '.join(ROWS)}")
    parser.add_argument("--shrink", type=float, default=0.25, help="scale of each side (0.25)")
    parser.add_argument("--split", default="0.7,0.15,0.15", help="train,val,test by photo")
    parser.add_argument("--seed", type=int, default=0, help="split, canvas and training seed")
    parser.add_argument("--work", help="work folder (default: a temporary one)")
    arguments = parser.parse_args(argv)
    rows = chosen(arguments.rows, ROWS)
    exports = sorted(Path(arguments.shared).glob("br_task_*_voc.zip"))
    if len(exports) != 2:
        sys.exit(f"SKIP: {arguments.shared}: the two openalpr-br exports are not there")
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as scratch:
        work = Path(arguments.work or scratch).resolve()
        work.mkdir(parents=True, exist_ok=True)
        dataset = work / "dataset"
        if not dataset.is_dir():
            run_platelab(
                "merge", *map(str, exports), "--out", str(dataset), "--split", arguments.split,
                "--seed", str(arguments.seed), "--quiet",
            )  # fmt: skip
        shrunk = work / f"test-shrunk-{arguments.shrink:g}"
        heights = write_shrunk_split(dataset, "test", shrunk, arguments.shrink, arguments.seed)
        print(
            f"test photos: {len(heights['1x'])}; plate height px median "
            f"{np.median(heights['1x']):.0f} (1x), {np.median(heights['shrunk']):.0f} (shrunk); "
            f"plate width share of the image median {np.median(heights['width_share']):.3f} (1x)"
        )
        results = []
        for name in rows:
            run_dir = work / f"run-{name}"
            # The library call, not the CLI: the rows change parameters that notebook 06
            # does not expose (zoom_out). A finished run folder of the same configuration
            # is reused as it is.
            values = dict(
                init="none", steps=100000, max_minutes=arguments.minutes, seed=arguments.seed,
                **ROWS[name],
            )  # fmt: skip
            try:
                train.train(dataset, run_dir, values, progress=False, echo=lambda line: None)
            except train.RunMismatchError as error:
                sys.exit(f"FAIL: {error} (or choose another --work)")
            row = {"row": name, "steps": detector.read_state(run_dir).get("step")}
            for scale, plate in score_plates(run_dir, dataset, shrunk, work / name).items():
                row[scale] = {"AP50": plate["AP50"], "recall": plate["recall"]}
            results.append(row)
            print(_format(row, arguments.shrink), flush=True)
        (work / "results.json").write_text(json.dumps(results, indent=2))
    return 0


def score_plates(model, dataset, shrunk, stem):
    """``platelab evaluate`` of a model's plates on the test photos, as they are and shrunk.

    Args:
        model: a run or starter folder
        dataset: the merged dataset (its ``test`` split is scored)
        shrunk: the shrunk test photos (:func:`write_shrunk_split`)
        stem: path prefix of the metrics files (``<stem>-1x.json``, ``<stem>-shrunk.json``)

    Returns:
        ``{"1x": metrics, "shrunk": metrics}``: ``license_plate``'s per-class metrics
    """
    scores = {}
    for scale, data, split in (("1x", dataset, ["--split", "test"]), ("shrunk", shrunk, [])):
        out = Path(f"{stem}-{scale}.json")
        run_platelab(
            "evaluate", "--model", str(model), "--data", str(data), *split,
            "--classes", "license_plate", "--out", str(out),
        )  # fmt: skip
        scores[scale] = json.loads(out.read_text())["per_class"]["license_plate"]
    return scores


def write_shrunk_split(dataset, split, destination, shrink, seed):
    """Writes a VOC folder of a split's photos, each shrunk onto a canvas of its size.

    Each photo is resized by ``shrink`` per side (area interpolation) and placed at a
    seeded random position on a ``CANVAS_VALUE`` grey canvas of the photo's own size;
    its boxes move with it. Nothing in ``dataset`` is modified.

    Args:
        dataset: a merged dataset folder (VOC layout with ``ImageSets/Main/<split>.txt``)
        split: the split to shrink
        destination: the VOC folder to write (replaced as a whole)
        shrink: scale of each side, 0 < shrink <= 1
        seed: seed of the positions

    Returns:
        ``{"1x": heights, "shrunk": heights, "width_share": shares}``: plate heights in
        pixels before and after, and plate widths as a share of the image width
    """
    batch = annotations.load_batch(dataset)
    names = set((Path(dataset) / "ImageSets" / "Main" / f"{split}.txt").read_text().split())
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory(prefix="shrunk-") as images_dir:
        return _write_shrunk(batch, names, Path(images_dir), destination, shrink, rng)


def _write_shrunk(batch, names, images_dir, destination, shrink, rng):
    written, heights = [], {"1x": [], "shrunk": [], "width_share": []}
    for record in batch.records:
        if record.name not in names or record.image_path is None:
            continue
        photo = cv2.imread(str(record.image_path))
        if photo is None:
            print(f"{record.image_path}: not a readable image, skipped")
            continue
        height, width = photo.shape[:2]
        small_w, small_h = max(1, round(width * shrink)), max(1, round(height * shrink))
        small = cv2.resize(photo, (small_w, small_h), interpolation=cv2.INTER_AREA)
        left = int(rng.integers(0, width - small_w + 1))
        top = int(rng.integers(0, height - small_h + 1))
        canvas = np.full_like(photo, CANVAS_VALUE)
        canvas[top : top + small_h, left : left + small_w] = small
        path = images_dir / f"{record.name}.png"
        cv2.imwrite(str(path), canvas)
        objects = []
        for item in record.objects:
            x1, y1, x2, y2 = item["bbox"]
            heights["1x"].append(y2 - y1)
            heights["width_share"].append((x2 - x1) / width)
            moved = [
                left + x1 * small_w / width,
                top + y1 * small_h / height,
                left + x2 * small_w / width,
                top + y2 * small_h / height,
            ]
            heights["shrunk"].append(moved[3] - moved[1])
            objects.append({**item, "bbox": moved})
        written.append(annotate.VocImage(record.name, path, width, height, objects))
    annotate.write_voc(written, destination, form="folder")
    return heights


def _format(row, shrink):
    one, small = row["1x"], row["shrunk"]
    ratio = small["AP50"] / one["AP50"] if one["AP50"] else float("nan")
    return (
        f"{row['row']:>12}: steps {row['steps']}, plate AP50 1x {one['AP50']:.3f} "
        f"(recall {one['recall']:.3f}), shrunk to {shrink:g} {small['AP50']:.3f} "
        f"(recall {small['recall']:.3f}), shrunk/1x {ratio:.2f}"
    )


if __name__ == "__main__":
    sys.exit(main())
