"""A tiny detection dataset in stage 05's layout, and tiny training runs, for the tests.

The images are noise with blue "vehicles" (large rectangles) each carrying a white
"plate" (a small wide rectangle), easy enough for a tiny model to learn in a few
dozen steps.
"""

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np

from platelab.tfimport import import_tensorflow
from platelab.tfrecords import encode_example

LABELS = ["vehicle", "license_plate"]
TINY_TRAINING = {
    "input_size": 128,
    "infer_size": 192,
    "width": 0.35,
    "levels": (8, 16, 32, 64),
    "anchors_per_level": 2,
    "init": "none",
    "batch_size": 8,
    "steps": 12,
    "learning_rate": 0.006,
    "warmup_steps": 2,
    "log_every": 2,
    "eval_every": 4,
    "checkpoint_every": 4,
    "seed": 3,
}


def scene(rng, width=160, height=120, vehicles=None):
    """One image (BGR) and its objects (pixel boxes)."""
    image = rng.integers(60, 120, (height, width, 3), dtype=np.uint8)
    objects = []
    count = rng.integers(1, 3) if vehicles is None else vehicles
    for _ in range(count):
        vehicle_w = int(rng.integers(50, 75))
        vehicle_h = int(vehicle_w * rng.uniform(0.5, 0.7))
        x0 = int(rng.integers(0, width - vehicle_w))
        y0 = int(rng.integers(0, height - vehicle_h))
        cv2.rectangle(image, (x0, y0), (x0 + vehicle_w - 1, y0 + vehicle_h - 1), (200, 60, 30), -1)
        plate_w = vehicle_w // 3
        plate_h = max(4, plate_w // 3)
        px0 = x0 + (vehicle_w - plate_w) // 2
        py0 = y0 + vehicle_h - plate_h - 3
        cv2.rectangle(
            image, (px0, py0), (px0 + plate_w - 1, py0 + plate_h - 1), (250, 250, 250), -1
        )
        objects.append({"label": "vehicle", "bbox": [x0, y0, x0 + vehicle_w, y0 + vehicle_h]})
        objects.append({"label": "license_plate", "bbox": [px0, py0, px0 + plate_w, py0 + plate_h]})
    return image, objects


def make_dataset(folder, counts=(24, 8, 8), seed=0, corrupt=0, labels=LABELS, extra_label=None):
    """Writes ``tfrecords/{train,val,test}.tfrecord`` and ``dataset.json`` under ``folder``.

    Args:
        folder: the dataset folder to create
        counts: images per split (train, val, test)
        seed: the scenes' seed
        corrupt: train records whose image bytes are garbage
        labels: the dataset's label map
        extra_label: a label of the first train image's first box (not in the label map)

    Returns:
        the folder (a Path)
    """
    tf = import_tensorflow()
    folder = Path(folder)
    (folder / "tfrecords").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    label_ids = {label: index + 1 for index, label in enumerate(labels)}
    for split, count in zip(("train", "val", "test"), counts, strict=True):
        with tf.io.TFRecordWriter(str(folder / "tfrecords" / f"{split}.tfrecord")) as writer:
            for index in range(count):
                image, objects = scene(rng)
                objects = [item for item in objects if item["label"] in label_ids]
                data = cv2.imencode(".png", image)[1].tobytes()
                if split == "train" and index < corrupt:
                    data = b"\x89PNG not really" + bytes(64)
                if extra_label and split == "train" and index == 0 and objects:
                    objects[0] = dict(objects[0], label=extra_label)
                ids = dict(label_ids, **({extra_label: 99} if extra_label else {}))
                sample = SimpleNamespace(
                    image_path=f"{split}_{index:04d}.png",
                    height=image.shape[0],
                    width=image.shape[1],
                    file_name=f"{split}_{index:04d}.png",
                    name=f"{split}_{index:04d}",
                    sha256=hashlib.sha256(data).hexdigest(),
                    objects=objects,
                    group=f"{split}-video",
                    source_id=f"{split}-video",
                    vantage="overpass",
                    lighting="day",
                    time=float(index),
                    batch="batch_001",
                    original_name=f"frame_{index:06d}",
                )
                writer.write(encode_example(tf, sample, data, ids).SerializeToString())
    (folder / "dataset.json").write_text(json.dumps({"label_map": list(labels)}))
    return folder
