"""The model's shell commands: ``platelab train``, ``predict``, ``evaluate``, ``export``, ``video``."""

import json

import cv2
import numpy as np
import pytest
from test_cli import _cli

from train_helpers import TINY_TRAINING, make_dataset, scene


@pytest.mark.slow
def test_train_predict_evaluate_export_from_the_shell(tmp_path):
    dataset = make_dataset(tmp_path / "dataset", counts=(16, 4, 4))
    params = tmp_path / "params.yaml"
    section = {key: value for key, value in TINY_TRAINING.items() if key != "levels"}
    section.update(steps=6, eval_every=3, log_every=3, checkpoint_every=3, memory_batch_sizes="")
    params.write_text(
        json.dumps({"common": {"workspace": str(tmp_path / "work")}, "06_train": section})
    )
    run_dir = tmp_path / "run"
    done = _cli("train", "--data", dataset, "--out", run_dir, "--params", params, "--quiet")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "finished at step 6" in done.stdout
    # The same command again: nothing more to do.
    again = _cli("train", "--data", dataset, "--out", run_dir, "--params", params, "--quiet")
    assert again.returncode == 0 and "already finished" in again.stdout
    # Another configuration into the same folder: one clear line, exit status 2.
    other = _cli(
        "train",
        "--data",
        dataset,
        "--out",
        run_dir,
        "--params",
        params,
        "--width",
        "0.5",
        "--quiet",
    )
    assert other.returncode == 2
    assert other.stderr.startswith("platelab: error:")
    assert other.stderr.count("width: 0.35 != 0.5") == 1
    assert len(other.stderr.strip().splitlines()) == 1

    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    rng = np.random.default_rng(4)
    for index in range(3):
        cv2.imwrite(str(images / "sub" / f"frame_{index}.png"), scene(rng)[0])
    (images / "broken.jpg").write_bytes(b"not a jpeg")
    preds = tmp_path / "preds.json"
    done = _cli(
        "predict",
        "--model",
        run_dir,
        "--images",
        images,
        "--out",
        preds,
        "--threshold",
        "0.001",  # six steps from the focal loss's prior (foreground 0.005 an anchor)
        "--quiet",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    predictions = json.loads(preds.read_text())
    assert predictions and {item["image"] for item in predictions} <= {
        f"sub/frame_{index}.png" for index in range(3)
    }
    assert set(predictions[0]) == {"image", "label", "score", "bbox"}
    assert "1 images skipped" in done.stdout
    coco = tmp_path / "coco.json"
    done = _cli(
        "predict", "--model", run_dir, "--images", images, "--out", coco, "--coco", "--quiet"
    )
    assert done.returncode == 0
    ids = json.loads((tmp_path / "coco.images.json").read_text())
    assert [item["file_name"] for item in ids["images"]] == [f"sub/frame_{i}.png" for i in range(3)]

    voc = _voc_folder(tmp_path / "voc", count=4)
    metrics_path = tmp_path / "metrics.json"
    done = _cli(
        "evaluate", "--model", run_dir, "--data", voc, "--split", "test", "--out", metrics_path
    )
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads(metrics_path.read_text())
    assert set(metrics["per_class"]) == {"vehicle", "license_plate"}
    assert metrics["num_images"] == 4 and 0.0 <= metrics["per_class"]["vehicle"]["AP50"] <= 1.0

    exported = tmp_path / "tflite"
    done = _cli("export", "--model", run_dir, "--format", "tflite", "--out", exported)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (exported / "model.tflite").is_file() and (exported / "MODEL_CARD.md").is_file()
    bad = _cli(
        "export",
        "--model",
        run_dir,
        "--format",
        "onnx",
        "--quantize",
        "int8",
        "--out",
        tmp_path / "x",
    )
    assert bad.returncode == 2 and "int8" in bad.stderr


def _voc_folder(folder, count):
    """A PASCAL VOC folder of the helper's scenes, all in ImageSets/Main/test.txt."""
    (folder / "Annotations").mkdir(parents=True)
    (folder / "JPEGImages").mkdir()
    (folder / "ImageSets" / "Main").mkdir(parents=True)
    rng = np.random.default_rng(11)
    names = []
    for index in range(count):
        image, objects = scene(rng)
        name = f"image_{index:03d}"
        names.append(name)
        cv2.imwrite(str(folder / "JPEGImages" / f"{name}.png"), image)
        boxes = "".join(
            f"<object><name>{item['label']}</name><difficult>0</difficult><bndbox>"
            f"<xmin>{item['bbox'][0]}</xmin><ymin>{item['bbox'][1]}</ymin>"
            f"<xmax>{item['bbox'][2]}</xmax><ymax>{item['bbox'][3]}</ymax></bndbox></object>"
            for item in objects
        )
        (folder / "Annotations" / f"{name}.xml").write_text(
            f"<annotation><filename>{name}.png</filename><size><width>{image.shape[1]}</width>"
            f"<height>{image.shape[0]}</height><depth>3</depth></size>{boxes}</annotation>"
        )
    (folder / "ImageSets" / "Main" / "test.txt").write_text("".join(n + "\n" for n in names))
    return folder
