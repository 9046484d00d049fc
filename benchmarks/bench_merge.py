"""Speed of stage 05 (platelab.merge) against FiftyOne's own merge_samples, on the same input.

Usage::

    python benchmarks/bench_merge.py [--images 10000] [--batches 10] [--no-fiftyone] [--no-write]

Generates ``--images`` annotated images as ``--batches`` CVAT-like "PASCAL
VOC 1.1" folders (every batch names its frames ``frame_000000``... as CVAT
does, so nearly every name collides across batches; 5 % of each batch's
images are byte copies of the previous batch's, half of them with an extra
box: duplicates to reconcile and conflicts to list). Each image is a tiny
distinct PNG (32x24); a stage-03 style task index gives every image its
source video (100 videos over 6 vantage points), so the split is by group
and stratified.

Prints, each timed in this process (wall seconds, and CPU seconds):

* ``merge_batches``: loading every XML (defusedxml) and image header,
  SHA-256 of every file's bytes, label aliases, duplicate and collision
  resolution, the group split. The goal: <= 20 s for 10,000 images;
* ``write_dataset``: the VOC folder with image copies, the TFRecords per split
  (TensorFlow's import included) and dataset.json (skipped with --no-write);
* FiftyOne: ``Dataset.from_dir(dataset_type=VOCDetectionDataset)`` per batch,
  then ``merge_samples`` of every batch into one dataset (temporary datasets
  in platelab's FiftyOne database, deleted at the end); with the ratio of the two. FiftyOne's merge keys samples
  by file path, so it neither recognises the copies nor resolves the names;
  the comparison is of the machinery, not of the result.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from platelab import merge
from platelab.metadata import sha256_file

VANTAGES = ("overpass", "street_high", "street_low", "parking", "storefront", "dashcam")
LABEL_SPELLINGS = (("car", "license plate"), ("vehicles", "license_plates"), ("vehicle", "plate"))
OBJECT = (
    "  <object>\n    <name>{label}</name>\n    <truncated>0</truncated>\n    <occluded>0</occluded>\n"
    "    <difficult>0</difficult>\n    <bndbox>\n      <xmin>{x0:.1f}</xmin>\n      <ymin>{y0:.1f}</ymin>\n"
    "      <xmax>{x1:.1f}</xmax>\n      <ymax>{y1:.1f}</ymax>\n    </bndbox>\n  </object>\n"
)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--images", type=int, default=10_000, help="annotated images in all (10000)"
    )
    parser.add_argument("--batches", type=int, default=10, help="annotation batches (10)")
    parser.add_argument("--videos", type=int, default=100, help="source videos (groups) (100)")
    parser.add_argument("--no-fiftyone", action="store_true", help="skip the FiftyOne comparison")
    parser.add_argument("--no-write", action="store_true", help="skip writing the dataset")
    args = parser.parse_args(argv)
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="bench-merge-") as folder:
        folder = Path(folder)
        started = time.perf_counter()
        batches, index = _generate(folder / "input", args.images, args.batches, args.videos)
        print(
            f"generated {args.images} images in {len(batches)} batches "
            f"(index {index.name}) in {time.perf_counter() - started:.1f} s"
        )
        ours = _run_merge(batches, index, folder / "work", folder / "dataset", not args.no_write)
        if not args.no_fiftyone:
            theirs = _run_fiftyone(batches)
            print()
            print(f"{'':34}{'wall s':>9}{'cpu s':>9}")
            print(f"{'platelab merge_batches':34}{ours[0]:9.2f}{ours[1]:9.2f}")
            print(f"{'FiftyOne from_dir + merge_samples':34}{theirs[0]:9.2f}{theirs[1]:9.2f}")
            print(f"ratio (FiftyOne / platelab, wall): {theirs[0] / ours[0]:.1f}x")
    return 0


def _generate(root, images, batches, videos):
    """Writes the batches; returns (batch folders, task index)."""
    rng = np.random.default_rng(0)
    per_batch = images // batches
    index = {"images": []}
    folders = []
    previous = []
    for number in range(batches):
        folder = root / f"task_{number + 1:03d}_voc"
        (folder / "Annotations").mkdir(parents=True)
        (folder / "JPEGImages").mkdir()
        (folder / "ImageSets" / "Main").mkdir(parents=True)
        vehicle, plate = LABEL_SPELLINGS[number % len(LABEL_SPELLINGS)]
        names, current = [], []
        copies = set(range(0, per_batch, 20)) if previous else set()
        for position in range(per_batch):
            name = f"frame_{position:06d}"
            image_path = folder / "JPEGImages" / f"{name}.png"
            if position in copies:
                source_path, boxes = previous[position]
                image_path.write_bytes(source_path.read_bytes())
                if position % 40 == 0:
                    boxes = [*boxes, ("vehicle", (1.0, 1.0, 9.0, 7.0))]
            else:
                serial = number * per_batch + position
                pixels = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
                pixels[0, 0] = (serial % 256, (serial // 256) % 256, serial // 65536)
                cv2.imwrite(str(image_path), pixels)
                x0, y0 = rng.uniform(0, 16), rng.uniform(0, 12)
                boxes = [
                    ("vehicle", (x0, y0, x0 + 14.0, y0 + 10.0)),
                    ("license_plate", (x0 + 4.0, y0 + 6.0, x0 + 9.0, y0 + 8.0)),
                ]
                serial_video = serial * videos // images
                index["images"].append(
                    {
                        "sha256": sha256_file(image_path),
                        "source_id": f"video_{serial_video:03d}",
                        "vantage": VANTAGES[serial_video % len(VANTAGES)],
                        "lighting": "day",
                        "time": position / 10,
                    }
                )
            spelled = {"vehicle": vehicle, "license_plate": plate}
            objects = "".join(
                OBJECT.format(label=spelled[label], x0=box[0], y0=box[1], x1=box[2], y1=box[3])
                for label, box in boxes
            )
            (folder / "Annotations" / f"{name}.xml").write_text(
                f"<annotation>\n  <folder></folder>\n  <filename>{name}.png</filename>\n"
                "  <size>\n    <width>32</width>\n    <height>24</height>\n    <depth></depth>\n"
                f"  </size>\n  <segmented>0</segmented>\n{objects}</annotation>\n"
            )
            names.append(name)
            current.append((image_path, boxes))
        (folder / "ImageSets" / "Main" / "default.txt").write_text("\n".join(names) + "\n")
        (folder / "labelmap.txt").write_text(
            f"# label:color_rgb:parts:actions\nbackground:0,0,0::\n{vehicle}:51,221,255::\n"
            f"{plate}:250,50,83::\n"
        )
        folders.append(folder)
        previous = current
    index_path = root / "index.json"
    index_path.write_text(json.dumps(index))
    return folders, index_path


def _run_merge(batches, index, work_dir, out_dir, write):
    wall, cpu = time.perf_counter(), time.process_time()
    result = merge.merge_batches(batches, index=index, work_dir=work_dir, progress=False)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    phases = ", ".join(f"{name[:-2]} {value:.2f}" for name, value in result.timings.items())
    counts = {
        split: sum(sample.split == split for sample in result.samples) for split in merge.SPLITS
    }
    print(
        f"merge_batches: {wall:.2f} s wall, {cpu:.2f} s CPU ({phases} s): "
        f"{len(result.samples)} samples, {len(result.duplicates)} duplicates "
        f"({sum(item['conflict'] for item in result.duplicates)} conflicting), "
        f"{sum(len(item['samples']) for item in result.collisions)} renamed, "
        f"{len(result.groups)} groups, split {counts}; goal <= 20 s: "
        f"{'met' if wall <= 20 else 'MISSED'}"
    )
    if write:
        started = time.perf_counter()
        document = merge.write_dataset(result, out_dir, progress=False)
        print(
            f"write_dataset: {time.perf_counter() - started:.2f} s (VOC folder with image copies, "
            f"TFRecords incl. TensorFlow import, dataset.json); "
            f"dataset.json {(out_dir / merge.DATASET_FILENAME).stat().st_size / 1e6:.1f} MB, "
            f"{document['counts']['images']} images"
        )
    return wall, cpu


def _run_fiftyone(batches):
    from platelab.fiftyone_setup import import_fiftyone

    fo = import_fiftyone()
    fo.Dataset(name=None).delete()  # starts the database outside the timing
    datasets = []
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        for batch in batches:
            datasets.append(
                fo.Dataset.from_dir(
                    dataset_dir=str(batch),
                    dataset_type=fo.types.VOCDetectionDataset,
                    data_path="JPEGImages",
                    labels_path="Annotations",
                    label_field="ground_truth",
                    progress=False,
                )
            )
        loaded = time.perf_counter() - wall
        merged = fo.Dataset()
        datasets.append(merged)
        for dataset in datasets[:-1]:
            merged.merge_samples(dataset, progress=False)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(
            f"FiftyOne: {wall:.2f} s wall, {cpu:.2f} s CPU (from_dir {loaded:.2f} s, "
            f"merge_samples {wall - loaded:.2f} s): {len(merged)} samples"
        )
    finally:
        for dataset in datasets:
            dataset.delete()
    return wall, cpu


if __name__ == "__main__":
    sys.exit(main())
