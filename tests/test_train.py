"""Training (platelab.train): data, loss, augmentation, the loop, resume, bad input."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from platelab import detector, train
from platelab import model as model_lib
from platelab.tfimport import import_tensorflow
from train_helpers import LABELS, TINY_TRAINING, make_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("dataset") / "dataset")


def test_batch_indices_cover_every_image_once_per_epoch():
    count, batch = 10, 4
    drawn = np.concatenate([train.batch_indices(step, batch, count, seed=5) for step in range(5)])
    assert sorted(drawn[:10]) == list(range(10))  # epoch 0
    assert sorted(drawn[10:20]) == list(range(10))  # epoch 1
    assert not np.array_equal(drawn[:10], drawn[10:20])  # reshuffled
    again = np.concatenate([train.batch_indices(step, batch, count, seed=5) for step in range(5)])
    assert np.array_equal(drawn, again)  # a pure function of (step, seed)
    other = np.concatenate([train.batch_indices(step, batch, count, seed=6) for step in range(5)])
    assert not np.array_equal(drawn, other)


@pytest.mark.parametrize("scale", [0.5, 1.0, 1.5])
def test_augmentation_keeps_boxes_on_their_objects(scale):
    tf = import_tensorflow()
    size = 96
    config = train.TrainConfig(
        input_size=size, infer_size=160, levels=(8, 16, 32), scale_min=scale, scale_max=scale,
        zoom_out=0.0,
    )  # fmt: skip
    image = np.zeros((144, 160, 3), np.float32)
    image[36:72, 20:100] = 255.0  # one white box
    boxes = np.array([[20 / 160, 36 / 144, 100 / 160, 72 / 144]], np.float32)
    kept = 0
    for seed in range(12):
        out, out_boxes, out_classes, _ = train.augment(
            tf.constant(image),
            tf.constant(boxes),
            tf.constant([1]),
            tf.constant([False]),
            tf.constant([seed, 7], tf.int64),
            (size, size),
            config,
        )
        out = np.asarray(out)
        assert out.shape == (size, size, 3)
        if int(out_classes[0]) == 0:
            continue  # its centre left the crop
        kept += 1
        x0, y0, x1, y1 = (np.asarray(out_boxes[0]) * size).round().astype(int)
        # The box keeps its size at the crop's scale (where the crop did not cut it).
        if x0 > 0 and x1 < size:
            assert abs((x1 - x0) - 80 * scale) <= 2, (seed, x0, x1)
        inside = out[y0 + 2 : y1 - 2, x0 + 2 : x1 - 2].mean()
        outside = np.delete(out, np.s_[max(0, y0 - 2) : y1 + 2], axis=0).mean()
        assert inside > 120 > outside + 40, (seed, inside, outside)
    assert kept >= 8  # object-aware crops keep the object most of the time


def test_zoom_out_shrinks_the_frame_onto_a_padded_canvas():
    tf = import_tensorflow()
    config = train.TrainConfig(
        input_size=128, infer_size=128, levels=(8, 16, 32), scale_min=0.5, scale_max=0.5,
        zoom_out=0.0, object_crops=0.0, augment=True,
    )  # fmt: skip
    image = np.full((128, 128, 3), 200.0, np.float32)
    boxes = np.array([[0.25, 0.25, 0.75, 0.5]], np.float32)
    out, out_boxes, out_classes, difficult = train.augment(
        tf.constant(image), tf.constant(boxes), tf.constant([2]), tf.constant([False]),
        tf.constant([3, 1], tf.int64), (128, 128), config,
    )  # fmt: skip
    out = np.asarray(out)
    # Half the scale: the frame covers a quarter of the canvas, the rest is padding.
    bright = (out.mean(axis=2) > 60).mean()
    assert 0.2 < bright < 0.3
    if int(out_classes[0]):
        width = float(out_boxes[0, 2] - out_boxes[0, 0])
        assert width == pytest.approx(0.25, abs=0.02)
        assert not bool(difficult[0])  # 16 px high: above min_object_px


def test_small_boxes_after_scaling_become_difficult():
    tf = import_tensorflow()
    config = train.TrainConfig(
        input_size=128, infer_size=128, levels=(8, 16, 32), scale_min=0.25, scale_max=0.25,
        zoom_out=0.0, min_object_px=8.0,
    )  # fmt: skip
    image = np.zeros((128, 128, 3), np.float32)
    boxes = np.array([[0.4, 0.4, 0.6, 0.5]], np.float32)  # 13 px high, 3 px after scaling
    *_, classes, difficult = train.augment(
        tf.constant(image), tf.constant(boxes), tf.constant([2]), tf.constant([False]),
        tf.constant([0, 0], tf.int64), (128, 128), config,
    )  # fmt: skip
    assert int(classes[0]) == 2 and bool(difficult[0])


@pytest.mark.parametrize("min_visible", [0.0, 0.5])
def test_boxes_a_crop_cuts_below_min_visible_become_difficult(min_visible):
    tf = import_tensorflow()
    config = train.TrainConfig(
        input_size=64, infer_size=256, levels=(8, 16, 32), scale_min=1.0, scale_max=1.0,
        zoom_out=0.0, object_crops=1.0, min_visible=min_visible,
    )  # fmt: skip
    image = np.zeros((256, 256, 3), np.float32)
    # A 160x128 "bus" (a 64 px crop sees at most a fifth of it) and a 16x16 car.
    boxes = np.array([[0.1, 0.1, 0.725, 0.6], [0.8, 0.8, 0.8625, 0.8625]], np.float32)
    seen = {"bus": 0, "car": 0}
    for seed in range(24):
        _, out_boxes, classes, difficult = train.augment(
            tf.constant(image), tf.constant(boxes), tf.constant([1, 1]),
            tf.constant([False, False]), tf.constant([seed, 2], tf.int64), (64, 64), config,
        )  # fmt: skip
        for index, name in enumerate(("bus", "car")):
            if not int(classes[index]):
                continue  # its centre left the crop
            seen[name] += 1
            box = np.asarray(out_boxes[index]) * 64
            visible = (box[2] - box[0]) * (box[3] - box[1]) / (16.0 * 16 if index else 160.0 * 128)
            # Cut below min_visible: ignored, neither positive nor background.
            assert bool(difficult[index]) == bool(visible < min_visible - 1e-3), (seed, name)
    assert seen["bus"] >= 4 and seen["car"] >= 4


def test_a_run_older_than_min_visible_resumes_only_as_it_was_trained(dataset, tmp_path):
    run_dir = tmp_path / "run"
    config = dict(TINY_TRAINING, steps=2, eval_every=2, log_every=1, checkpoint_every=2)
    train.train(dataset, run_dir, dict(config, min_visible=0.0), progress=False)
    stored = json.loads((run_dir / "config.json").read_text())
    del stored["training"]["min_visible"]  # as a run made before the key was
    (run_dir / "config.json").write_text(json.dumps(stored))
    assert train.earlier_values(stored["training"]) == {"min_visible": 0.0}
    with pytest.raises(train.RunMismatchError, match=r"\(min_visible: 0.0 != 0.5\)"):
        train.train(dataset, run_dir, config, progress=False)  # today's default, 0.5
    state = train.train(dataset, run_dir, dict(config, min_visible=0.0), progress=False)
    assert state["status"] == "finished"


def test_mosaic_puts_four_images_in_the_four_quarters_with_their_boxes():
    tf = import_tensorflow()
    config = train.TrainConfig(
        input_size=128, infer_size=128, levels=(8, 16, 32), scale_min=1.0, scale_max=1.0,
        zoom_out=0.0, object_crops=1.0, mosaic=1.0, augment=True,
    )  # fmt: skip
    # Four 128x128 images, each one grey level with one bright 32x32 box near its centre.
    levels = [40.0, 80.0, 120.0, 160.0]
    images = np.stack([np.full((128, 128, 3), level, np.float32) for level in levels])
    for image in images:
        image[48:80, 48:80] = 250.0
    boxes = np.tile(np.array([[[0.375, 0.375, 0.625, 0.625], [0, 0, 0, 0]]], np.float32), (4, 1, 1))
    classes = np.array([[1, 0], [2, 0], [1, 0], [2, 0]], np.int32)
    difficult = np.zeros((4, 2), bool)
    split = tuple(
        tf.constant(array) for array in (images.astype(np.uint8), boxes, classes, difficult)
    )
    out, out_boxes, out_classes, out_difficult = train.augment(
        tf.constant(images[0]), tf.constant(boxes[0]), tf.constant(classes[0]),
        tf.constant(difficult[0]), tf.constant([5, 2], tf.int64), (128, 128), config, split=split,
    )  # fmt: skip
    out, out_boxes, out_classes = np.asarray(out), np.asarray(out_boxes), np.asarray(out_classes)
    assert out.shape == (128, 128, 3)
    assert out_boxes.shape == (8, 4) and out_classes.shape == (8,) and out_difficult.shape == (8,)
    real = out_classes > 0
    assert real.sum() == 4  # one object from each quarter's image
    # Each box lies in its own quarter: 32 px at scale 1 is 0.25 of the mosaic, less where
    # the quarter's edge cuts it (its centre stays inside, so at least 0.19 is left).
    quarters = {(int(x0 >= 0.5), int(y0 >= 0.5)) for x0, y0, _, _ in out_boxes[real]}
    assert len(quarters) == 4
    for x0, y0, x1, y1 in out_boxes[real]:
        assert 0.19 <= x1 - x0 <= 0.26 and 0.19 <= y1 - y0 <= 0.26
        assert (x0 < 0.5) == (x1 <= 0.5) and (y0 < 0.5) == (y1 <= 0.5)
        inside = out[int(y0 * 128) + 3 : int(y1 * 128) - 3, int(x0 * 128) + 3 : int(x1 * 128) - 3]
        assert inside.mean() > out.mean() + 40  # the bright box is where its box says
    # Without the split (or with mosaic 0) the same call gives one crop, boxes padded alike.
    *_, single_classes, _ = train.augment(
        tf.constant(images[0]), tf.constant(boxes[0]), tf.constant(classes[0]),
        tf.constant(difficult[0]), tf.constant([5, 2], tf.int64), (128, 128), config,
    )  # fmt: skip
    assert np.asarray(single_classes).shape == (2,)


def test_load_split_skips_corrupt_images_and_counts_unknown_labels(tmp_path):
    folder = make_dataset(tmp_path / "data", counts=(6, 2, 2), corrupt=2, extra_label="bicycle")
    data = train.load_split(folder, "train", LABELS, 64)
    assert len(data) == 4 and len(data.skipped) == 2
    assert "cannot be decoded" in data.skipped[0] and "train.tfrecord" in data.skipped[0]
    assert data.images.shape == (4, 64, 64, 3) and data.images.dtype == np.uint8
    clean = make_dataset(tmp_path / "clean", counts=(6, 2, 2), extra_label="bicycle")
    assert train.load_split(clean, "train", LABELS, 64).unknown_labels == {"bicycle": 1}


@pytest.mark.slow
def test_training_run_folder_and_learning(dataset, tmp_path):
    run_dir = tmp_path / "run"
    config = dict(TINY_TRAINING, steps=40, eval_every=20, log_every=10, checkpoint_every=20)
    lines = []
    state = train.train(dataset, run_dir, config, progress=False, echo=lines.append)
    assert state["status"] == "finished" and state["step"] == 40
    for name in (
        "config.json",
        "labels.txt",
        "best.keras",
        "last.keras",
        "metrics.csv",
        "state.json",
    ):
        assert (run_dir / name).is_file(), name
    assert list((run_dir / "tensorboard").iterdir())
    rows = train.read_metrics(run_dir)
    assert [row["step"] for row in rows] == [10, 20, 30, 40]
    assert rows[0]["loss"] > rows[-1]["loss"]  # it learns
    evaluated = [row for row in rows if row["mAP"] is not None]
    assert [row["step"] for row in evaluated] == [20, 40]
    assert all(row["val_loss"] is not None for row in evaluated)
    header = (run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header == train.metrics_columns(LABELS)

    loaded = detector.load(run_dir)
    assert loaded.labels == LABELS and loaded.input_size == 128
    # 160x120 frames at 192 px with 32 px round them: 256x208, rounded to 256x256.
    assert loaded.geometry == model_lib.InputGeometry(256, 256, "letterbox", 32)
    from train_helpers import scene

    image, _ = scene(np.random.default_rng(9))
    result = loaded.predict([image[:, :, ::-1].copy()], score_threshold=0.0)[0]
    assert result["boxes"].shape[1] == 4 and len(result["labels"]) == len(result["scores"])
    assert np.all(result["boxes"][:, 2] <= image.shape[1] + 1e-3)

    # Rerunning a finished run does nothing more.
    again = train.train(dataset, run_dir, config, progress=False, echo=lines.append)
    assert again["step"] == 40 and len(train.read_metrics(run_dir)) == 4


def test_the_learning_rate_follows_the_init_unless_given(tmp_path):
    weights = tmp_path / "backbone.weights.h5"
    weights.write_bytes(b"")
    for init, rate in [
        ("starter", 3e-4),
        (str(tmp_path), 3e-4),  # a run or starter folder: a detector
        ("none", 0.006),
        ("imagenet", 0.006),
        ("auto", 0.006),
        (str(weights), 0.006),  # a backbone's weights
    ]:
        values = {key: value for key, value in TINY_TRAINING.items() if key != "learning_rate"}
        config = train.TrainConfig.from_dict(dict(values, init=init))
        assert config.learning_rate == pytest.approx(rate), init
        given = train.TrainConfig.from_dict(dict(values, init=init, learning_rate=0.002))
        assert given.learning_rate == 0.002
    assert train.TrainConfig().learning_rate == 0.0  # resolved by validate()


def test_the_inference_margin_is_stored_and_a_run_older_than_it_keeps_none(dataset, tmp_path):
    """Today's runs letterbox with ``infer_margin`` (32) round the frame; a run from before
    the key loads and resumes as it was trained, without one."""
    config = dict(TINY_TRAINING, steps=2, eval_every=2, log_every=1, checkpoint_every=2)
    run_dir = tmp_path / "run"
    train.train(dataset, run_dir, config, progress=False, echo=lambda line: None)
    stored = json.loads((run_dir / "config.json").read_text())
    # 160x120 frames at 192 px: 192x144, 32 px round them: 256x208, rounded to 256x256.
    assert stored["infer_margin"] == 32 and stored["training"]["infer_margin"] == 32
    assert stored["infer_size"] == [256, 256]
    loaded = detector.load(run_dir)
    assert loaded.geometry == model_lib.InputGeometry(256, 256, margin=32)
    del stored["infer_margin"], stored["training"]["infer_margin"]
    stored["infer_size"] = [192, 192]
    (run_dir / "config.json").write_text(json.dumps(stored))
    assert detector.load(run_dir).geometry == model_lib.InputGeometry(192, 192)
    with pytest.raises(train.RunMismatchError, match=r"infer_margin: 0 != 32"):
        train.train(dataset, run_dir, config, progress=False)
    with pytest.raises(train.TrainingError, match="infer_margin must be 0 or a multiple of 32"):
        train.TrainConfig.from_dict(dict(TINY_TRAINING, infer_margin=16))


def test_the_inference_scale_cap_is_stored_used_by_the_detector_and_free_on_resume(
    dataset, tmp_path
):
    """``infer_max_scale`` 1.0: the run's detector never enlarges an image (its 160x120
    frames would go into 192x144 at scale 1.2), training sees the frames as without it,
    and a run resumes with another value (an inference setting, like ``tta``)."""
    config = dict(
        TINY_TRAINING, steps=2, eval_every=2, log_every=1, checkpoint_every=2, infer_max_scale=1.0
    )
    run_dir = tmp_path / "run"
    lines = []
    train.train(dataset, run_dir, config, progress=False, echo=lines.append)
    stored = json.loads((run_dir / "config.json").read_text())
    assert stored["infer_max_scale"] == 1.0 and stored["training"]["infer_max_scale"] == 1.0
    loaded = detector.load(run_dir)
    assert loaded.geometry == model_lib.InputGeometry(256, 256, margin=32, max_scale=1.0)
    assert loaded.geometry.scale(160, 120) == (1.0, 1.0)
    assert any("scale at most 1" in line for line in lines)
    parsed = train.TrainConfig.from_dict(config)
    assert parsed.geometry(160, 120).scale(160, 120) == (1.2, 1.2)  # training: as before
    assert parsed.inference_geometry(160, 120).scale(160, 120) == (1.0, 1.0)
    resumed = dict(config, infer_max_scale=0)  # not a RunMismatchError
    train.train(dataset, run_dir, resumed, progress=False, echo=lambda line: None)
    assert detector.read_state(run_dir)["step"] == 2
    assert (
        train.TrainConfig.from_dict(dict(TINY_TRAINING, infer_max_scale=None)).infer_max_scale == 0
    )
    squashed = train.TrainConfig.from_dict(dict(TINY_TRAINING, infer_size=0, infer_max_scale=1))
    assert squashed.infer_max_scale == 0
    with pytest.raises(
        train.TrainingError, match=r"infer_max_scale must be 0 \(none\) or above, got -1"
    ):
        train.TrainConfig.from_dict(dict(TINY_TRAINING, infer_max_scale=-1))


def test_kept_value_follows_the_keep_metric():
    metrics = {"AP": 0.4, "AP50": 0.7}
    assert train.kept_value("map", metrics, 30) == 0.4
    assert train.kept_value("ap50", metrics, 30) == 0.7
    assert train.kept_value("last", metrics, 30) == 30.0
    assert train.kept_value("ap50", {"AP": None, "AP50": None}, 30) == -1.0
    with pytest.raises(train.TrainingError, match="keep must be one of map, ap50, last"):
        train.TrainConfig.from_dict(dict(TINY_TRAINING, keep="loss"))
    with pytest.raises(train.TrainingError, match="patience_steps needs keep map or ap50"):
        train.TrainConfig.from_dict(dict(TINY_TRAINING, keep="last", patience_steps=100))
    with pytest.raises(train.TrainingError, match="tta must be one of none, flip, got 'mirror'"):
        train.TrainConfig.from_dict(dict(TINY_TRAINING, tta="mirror"))


@pytest.mark.parametrize("keep", ["ap50", "last"])
def test_best_keras_is_kept_by_the_keep_metric(dataset, tmp_path, keep):
    run_dir = tmp_path / "run"
    config = dict(TINY_TRAINING, steps=30, eval_every=5, log_every=5, checkpoint_every=5, keep=keep)
    tta = "flip" if keep == "ap50" else "none"  # inference only: validation scores one pass
    config["tta"] = tta
    state = train.train(dataset, run_dir, config, progress=False, echo=lambda line: None)
    assert detector.read_config(run_dir)["tta"] == tta and detector.load(run_dir).tta == tta
    evaluated = [row for row in train.read_metrics(run_dir) if row["mAP"] is not None]
    assert [row["step"] for row in evaluated] == [5, 10, 15, 20, 25, 30]
    if keep == "last":
        kept = evaluated[-1]
    else:  # the first evaluation with the highest AP50 (a later tie does not replace it)
        kept = max(evaluated, key=lambda row: (row["AP50"], -row["step"]))
    assert state["keep"] == keep and detector.read_state(run_dir)["keep"] == keep
    assert state["best_step"] == kept["step"]
    assert state["best_map"] == pytest.approx(kept["mAP"], abs=1e-4)
    best = detector.load(run_dir).model.get_weights()
    last = detector.load(run_dir, which="last").model.get_weights()
    same = all(np.array_equal(a, b) for a, b in zip(best, last, strict=True))
    assert same == (kept["step"] == 30)


def _train_command(dataset, run_dir, config):
    code = (
        "import json, sys; from platelab import train; "
        f"train.train({str(dataset)!r}, {str(run_dir)!r}, json.loads(sys.argv[1]), progress=False, echo=print)"
    )
    return [sys.executable, "-c", code, json.dumps(config)]


@pytest.mark.slow
def test_resume_after_sigkill_reaches_the_same_result(dataset, tmp_path):
    config = dict(TINY_TRAINING, steps=24, eval_every=8, log_every=4, checkpoint_every=4)
    env = dict(os.environ, TF_DETERMINISTIC_OPS="1")
    straight = tmp_path / "straight"
    subprocess.run(
        _train_command(dataset, straight, config), check=True, env=env, capture_output=True
    )

    killed = tmp_path / "killed"
    process = subprocess.Popen(
        _train_command(dataset, killed, config), env=env, stdout=subprocess.PIPE, text=True
    )
    deadline = time.time() + 300
    while time.time() < deadline:
        state = detector.read_state(killed) if (killed / "state.json").exists() else {}
        if state.get("step", 0) >= 12:
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert detector.read_state(killed)["status"] == "running"
    with pytest.raises(detector.ModelError, match="unfinished"):
        detector.load(killed)
    done = subprocess.run(
        _train_command(dataset, killed, config), check=True, env=env, capture_output=True, text=True
    )
    assert "resumed from" in done.stdout
    first, second = train.read_metrics(straight), train.read_metrics(killed)
    assert [row["step"] for row in first] == [row["step"] for row in second]
    for a, b in zip(first, second, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=0.02, abs=1e-3), (a["step"], a, b)
        if a["val_loss"] is not None:
            assert b["val_loss"] == pytest.approx(a["val_loss"], rel=0.02)
    assert detector.read_state(killed)["status"] == "finished"


def test_bad_input_is_refused_with_a_clear_message(tmp_path, dataset):
    empty_val = make_dataset(tmp_path / "noval", counts=(4, 0, 2))
    with pytest.raises(train.TrainingError, match="val split is empty"):
        train.train(empty_val, tmp_path / "r1", TINY_TRAINING, progress=False)
    with pytest.raises(train.TrainingError, match="no such dataset"):
        train.train(tmp_path / "missing", tmp_path / "r2", TINY_TRAINING, progress=False)
    with pytest.raises(train.TrainingError, match="unknown training parameter"):
        train.train(dataset, tmp_path / "r3", dict(TINY_TRAINING, colour="red"), progress=False)
    with pytest.raises(train.TrainingError, match="no such weights file or run folder"):
        train.train(dataset, tmp_path / "r4", dict(TINY_TRAINING, init="/nope.h5"), progress=False)


@pytest.mark.slow
def test_resume_and_init_refuse_another_configuration(dataset, tmp_path):
    run_dir = tmp_path / "run"
    config = dict(TINY_TRAINING, steps=4, eval_every=4, log_every=2, checkpoint_every=4)
    train.train(dataset, run_dir, config, progress=False)
    with pytest.raises(train.TrainingError, match=r"another configuration \(input_size: 128 != 64"):
        train.train(dataset, run_dir, dict(config, input_size=64), progress=False)
    with pytest.raises(train.TrainingError, match="width 0.35, this run 0.5"):
        train.train(
            dataset, tmp_path / "other", dict(config, width=0.5, init=str(run_dir)), progress=False
        )
    # Same backbone, another input size: weights carry over.
    lines = []
    state = train.train(
        dataset,
        tmp_path / "fine",
        dict(config, input_size=64, init=str(run_dir)),
        progress=False,
        echo=lines.append,
    )
    assert state["status"] == "finished"
    assert any(line.startswith("init: ") and "layers from" in line for line in lines)


def test_replay_mixes_another_datasets_train_images_in(dataset, tmp_path):
    replay = make_dataset(tmp_path / "replay", counts=(10, 2, 1), seed=5)
    geometry = model_lib.InputGeometry(192, 192, "letterbox")
    # A seeded draw of whole records, the same every time.
    drawn = train.load_split(replay, "train", LABELS, geometry, pick=6, seed=3)
    again = train.load_split(replay, "train", LABELS, geometry, pick=6, seed=3)
    every = train.load_split(replay, "train", LABELS, geometry)
    assert len(drawn) == 6 and drawn.names == again.names and set(drawn.names) < set(every.names)
    # Joined: images in order, boxes padded to the larger count.
    own = train.load_split(dataset, "train", LABELS, geometry)
    joined = train.join_splits(own, drawn)
    assert len(joined) == len(own) + 6 and joined.names == own.names + drawn.names
    most = max(own.boxes.shape[1], drawn.boxes.shape[1])
    assert joined.boxes.shape == (len(own) + 6, most, 4) and joined.classes.shape[1] == most
    assert np.array_equal(joined.images[len(own) :], drawn.images)
    assert (joined.classes[len(own) :, : drawn.classes.shape[1]] == drawn.classes).all()

    run_dir = tmp_path / "run"
    config = dict(TINY_TRAINING, steps=4, eval_every=4, log_every=2, checkpoint_every=4)
    lines = []
    state = train.train(
        dataset,
        run_dir,
        dict(config, replay=str(replay), replay_frames=6),
        progress=False,
        echo=lines.append,
    )
    assert state["status"] == "finished"
    assert f"replay: 6 train images of {replay} mixed into the {len(own)} of the dataset" in (
        "\n".join(lines)
    )
    written = json.loads((run_dir / "config.json").read_text())
    assert (written["replay_images"], written["train_images"]) == (6, len(own))
    assert len(written["replay_fingerprint"]) == 3
    with pytest.raises(train.TrainingError, match="replay_frames: 6 != 8"):
        train.train(dataset, run_dir, dict(config, replay=str(replay), replay_frames=8))
    with pytest.raises(train.TrainingError, match="no such dataset folder") as raised:
        train.train(dataset, tmp_path / "r2", dict(config, replay=str(tmp_path / "nope")))
    assert "\n" not in str(raised.value)


def _four_steps(dataset, run_dir, **options):
    """A four-step tiny training with ``options``: its config (without them), final
    state and echoed lines."""
    config = dict(TINY_TRAINING, steps=4, eval_every=4, log_every=2, checkpoint_every=4)
    lines = []
    state = train.train(
        dataset, run_dir, dict(config, **options), progress=False, echo=lines.append
    )
    return config, state, lines


def test_negatives_paste_distractors_into_copies_of_the_train_images(dataset, tmp_path):
    geometry = model_lib.InputGeometry(256, 256, "letterbox", 32)
    own = train.load_split(dataset, "train", LABELS, geometry)
    pasted = train.with_negatives(own, 2, seed=3)
    again = train.with_negatives(own, 2, seed=3)
    assert len(pasted) == 2 * len(own) and np.array_equal(pasted.images, again.images)
    assert pasted.names[: len(own)] == [f"{name}~neg0" for name in own.names]
    assert pasted.names[len(own) :] == [f"{name}~neg1" for name in own.names]
    # The truth is the original's; the boxes' pixels and the letterbox padding unchanged.
    order = np.tile(np.arange(len(own)), 2)
    assert np.array_equal(pasted.boxes, own.boxes[order])
    assert np.array_equal(pasted.classes, own.classes[order])
    originals = own.images[order]
    changed = np.any(pasted.images != originals, axis=3)
    assert changed.any(axis=(1, 2)).mean() > 0.8
    for index in range(len(pasted)):
        width, height = geometry.content_size(*pasted.sizes[index])
        inside = np.zeros(changed.shape[1:], bool)
        inside[32 : 32 + height, 32 : 32 + width] = True
        assert not (changed[index] & ~inside).any()
        for box, label in zip(pasted.boxes[index], pasted.classes[index], strict=True):
            if label:
                x0, y0, x1, y1 = np.round(box * 256).astype(int)
                assert not changed[index, y0:y1, x0:x1].any()
    assert not np.array_equal(
        train.with_negatives(own, 1, seed=4).images, pasted.images[: len(own)]
    )

    run_dir = tmp_path / "run"
    config, state, lines = _four_steps(dataset, run_dir, negatives=1)
    assert state["status"] == "finished"
    count = len(train.load_split(dataset, "train", LABELS, 64))
    assert any(line.startswith(f"negatives: {count} copies of the {count} train") for line in lines)
    written = json.loads((run_dir / "config.json").read_text())
    assert (written["negatives_images"], written["train_images"]) == (count, count)
    with pytest.raises(train.TrainingError, match="negatives: 1 != 2"):
        train.train(dataset, run_dir, dict(config, negatives=2))
    with pytest.raises(train.TrainingError, match="negatives must be a whole number"):
        train.TrainConfig.from_dict(dict(config, negatives=-1))


def test_plate_swaps_draw_new_plates_over_copies_of_the_photos_with_plates(dataset, tmp_path):
    geometry = model_lib.InputGeometry(256, 256, "letterbox", 32)
    own = train.load_split(dataset, "train", LABELS, geometry)
    plate = LABELS.index("license_plate") + 1
    with_plates = [index for index in range(len(own)) if (own.classes[index] == plate).any()]
    assert with_plates
    swapped = train.with_plate_swaps(own, 2, seed=3)
    again = train.with_plate_swaps(own, 2, seed=3)
    assert len(swapped) == 2 * len(with_plates) and np.array_equal(swapped.images, again.images)
    assert swapped.names[: len(with_plates)] == [f"{own.names[i]}~swap0" for i in with_plates]
    assert swapped.labels_list == own.labels_list
    order = np.tile(with_plates, 2)
    assert np.array_equal(swapped.classes, own.classes[order])
    changed = np.any(swapped.images != own.images[order], axis=3)
    for index, source in enumerate(order):
        is_plate = own.classes[source] == plate
        # Other boxes as they were; each plate's box now spans the old plate's width.
        assert np.array_equal(swapped.boxes[index][~is_plate], own.boxes[source][~is_plate])
        old, new = own.boxes[source][is_plate], swapped.boxes[index][is_plate]
        assert (new[:, 0] <= old[:, 0] + 1e-6).all() and (new[:, 2] >= old[:, 2] - 1e-6).all()
        # Drawn only over the new plates and the old ones (a plate holder behind a lower
        # new plate), never in the letterbox padding.
        inside = np.zeros(changed.shape[1:], bool)
        for (x0, y0, x1, y1), (_, top, _, bottom) in zip(new * 256, old * 256, strict=True):
            margin = 0.06 * (bottom - top) + 1
            top, bottom = min(y0, top - margin), max(y1, bottom + margin)
            inside[int(top) : int(np.ceil(bottom)), int(x0) : int(np.ceil(x1))] = True
        assert changed[index].any() and not (changed[index] & ~inside).any()
    # With negatives: the same new plates and boxes, distractors pasted clear of them.
    mixed = train.with_plate_swaps(own, 2, seed=3, negatives=True)
    assert np.array_equal(mixed.boxes, swapped.boxes)
    extra = np.any(mixed.images != swapped.images, axis=3)
    assert extra.any(axis=(1, 2)).mean() > 0.8
    for index in range(len(mixed)):
        for x0, y0, x1, y1 in np.round(mixed.boxes[index][mixed.classes[index] > 0] * 256):
            assert not extra[index, int(y0) : int(y1), int(x0) : int(x1)].any()

    run_dir = tmp_path / "run"
    config, state, lines = _four_steps(dataset, run_dir, plate_swaps=1)
    assert state["status"] == "finished"
    small = train.load_split(dataset, "train", LABELS, 64)
    count = int((small.classes == plate).any(axis=1).sum())
    assert any(line.startswith(f"plate swaps: {count} copies of the") for line in lines)
    written = json.loads((run_dir / "config.json").read_text())
    assert written["plate_swaps_images"] == count
    with pytest.raises(train.TrainingError, match="plate_swaps must be a whole number"):
        train.TrainConfig.from_dict(dict(config, plate_swaps=1.5))


def _starter_provenance(folder, corpus):
    folder.mkdir(parents=True)
    (folder / "provenance.json").write_text(json.dumps({"corpus": corpus}))
    return folder


def test_replay_starter_renders_a_corpus_drawn_like_the_starters_once(
    dataset, tmp_path, monkeypatch
):
    # init none: the shipped starter's corpus, here one of before traffic_camera.
    shipped = _starter_provenance(tmp_path / "shipped", {"videos": 600})
    monkeypatch.setattr(train.starter_lib, "STARTER_DIR", shipped)
    config = dict(TINY_TRAINING, steps=2, eval_every=2, log_every=2, checkpoint_every=2)
    config.update(replay="starter", replay_frames=5)
    lines = []
    state = train.train(
        dataset, tmp_path / "models" / "a", config, progress=False, echo=lines.append
    )
    assert state["status"] == "finished"
    folder = tmp_path / "models" / train.REPLAY_DIR / "corpus"
    corpus = json.loads((folder / "corpus.json").read_text())
    # The pretraining corpus' own first seeds, one frame of each video (one per vantage),
    # and one shard more than five frames need, for the val videos and dead feed.
    assert corpus["parameters"]["seeds"] == [20_000, 20_001]
    assert corpus["parameters"]["videos"] == 12 and corpus["parameters"]["seconds"] == 0.5
    assert "vantages" not in corpus["parameters"]
    assert 11 <= corpus["frames"] <= 12
    assert any("replay: a corpus like the starter's (shipped: overpass, " in x for x in lines)
    names = sorted(path.name for path in (folder / "frames").iterdir())
    assert len({name.rsplit("_t", 1)[0] for name in names}) == len(names)
    assert json.loads((tmp_path / "models" / "a" / "config.json").read_text())["replay_images"] == 5
    assert any(line.startswith("replay: 5 train images of ") for line in lines)
    # Another run of the workspace reuses it.
    before = (folder / "corpus.json").stat().st_mtime_ns
    train.train(dataset, tmp_path / "models" / "b", config, progress=False)
    assert (folder / "corpus.json").stat().st_mtime_ns == before
    # replay_frames 0: as many as the dataset's own train images, an even mix.
    own = json.loads((tmp_path / "models" / "a" / "config.json").read_text())["train_images"]
    train.train(dataset, tmp_path / "models" / "c", dict(config, replay_frames=0), progress=False)
    written = json.loads((tmp_path / "models" / "c" / "config.json").read_text())
    assert written["replay_images"] == own


def test_replay_starter_draws_the_vantages_its_starter_learnt_from(dataset, tmp_path, monkeypatch):
    vantages = ["overpass", "street_high", "street_low", "parking", "storefront", "dashcam"]
    shipped = _starter_provenance(tmp_path / "shipped", {"vantages": [*vantages, "traffic_camera"]})
    monkeypatch.setattr(train.starter_lib, "STARTER_DIR", shipped)
    config = dict(TINY_TRAINING, steps=2, eval_every=2, log_every=2, checkpoint_every=2)
    config.update(replay="starter", replay_frames=5)
    train.train(dataset, tmp_path / "models" / "a", config, progress=False)
    folder = tmp_path / "models" / train.REPLAY_DIR / "corpus"
    corpus = json.loads((folder / "corpus.json").read_text())
    # Seven videos a shard, two shards: the six scenes of before and a traffic camera.
    assert corpus["parameters"]["vantages"] == [*vantages, "traffic_camera"]
    assert corpus["parameters"]["videos"] == 14
    assert corpus["parameters"]["seeds"] == [20_000, 20_001]
    names = {path.name.rsplit("_t", 1)[0] for path in (folder / "frames").iterdir()}
    assert sum("traffic_camera" in name for name in names) == 2, sorted(names)
    # A starter without a readable provenance is named, not a traceback.
    (shipped / "provenance.json").write_text("{")
    with pytest.raises(train.TrainingError, match=r"replay: starter: .*provenance.json"):
        train.train(dataset, tmp_path / "models" / "b", config, progress=False)
    (shipped / "provenance.json").write_text(json.dumps({"corpus": {"vantages": "dashcam"}}))
    with pytest.raises(train.TrainingError, match=r"provenance.json: .*not a list of names"):
        train.train(dataset, tmp_path / "models" / "b", config, progress=False)


def test_replay_starter_draws_the_scene_details_its_starter_learnt_from(
    dataset, tmp_path, monkeypatch
):
    shipped = _starter_provenance(tmp_path / "shipped", {"details": ["osd", "badges"]})
    monkeypatch.setattr(train.starter_lib, "STARTER_DIR", shipped)
    config = dict(TINY_TRAINING, steps=2, eval_every=2, log_every=2, checkpoint_every=2)
    config.update(replay="starter", replay_frames=5)
    lines = []
    train.train(dataset, tmp_path / "models" / "a", config, progress=False, echo=lines.append)
    corpus = json.loads(
        (tmp_path / "models" / train.REPLAY_DIR / "corpus" / "corpus.json").read_text()
    )
    assert corpus["parameters"]["details"] == ["osd", "badges"]
    assert any("; with osd, badges), 5 frames" in line for line in lines), lines
    (shipped / "provenance.json").write_text(json.dumps({"corpus": {"details": "osd"}}))
    with pytest.raises(train.TrainingError, match=r"provenance.json: .*details are not a list"):
        train.train(dataset, tmp_path / "models" / "b", config, progress=False)


def test_freeze_bn_keeps_every_batch_norm_layer_as_initialised(dataset, tmp_path):
    config = dict(TINY_TRAINING, steps=3, eval_every=3, log_every=3, checkpoint_every=3)
    train.train(dataset, tmp_path / "frozen", dict(config, freeze_bn=True), progress=False)
    train.train(dataset, tmp_path / "free", config, progress=False)

    def batch_norms(run):
        net = detector.load(run, which="last").model
        layers = model_lib.batch_norm_layers(net)
        return [[np.asarray(w) for w in layer.get_weights()] for layer in layers]

    frozen, free = batch_norms(tmp_path / "frozen"), batch_norms(tmp_path / "free")
    assert len(frozen) > 50
    # Built with gamma 1, beta 0, moving mean 0 and variance 1; trained, they move.
    assert all(
        np.allclose(g, 1) and np.allclose(b, 0) and np.allclose(m, 0) and np.allclose(v, 1)
        for g, b, m, v in frozen
    )
    assert not all(np.allclose(m, 0) for _, _, m, _ in free)


@pytest.mark.slow
def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(dataset, tmp_path):
    run_dir = tmp_path / "run"
    config = dict(TINY_TRAINING, steps=30, learning_rate=1e9, warmup_steps=1, checkpoint_every=2)
    lines = []
    state = train.train(dataset, run_dir, config, progress=False, echo=lines.append)
    assert state["status"] == "nan_stopped"
    assert any("loss became NaN" in line for line in lines)
    assert json.loads((run_dir / "state.json").read_text())["status"] == "nan_stopped"


def _free_ports(count):
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for item in sockets:
        item.bind(("127.0.0.1", 0))
    ports = [item.getsockname()[1] for item in sockets]
    for item in sockets:
        item.close()
    return ports


@pytest.mark.slow
def test_multi_worker_training_on_two_local_cpu_workers(dataset, tmp_path):
    """MultiWorkerMirroredStrategy from TF_CONFIG: two CPU workers on localhost, one run."""
    config = dict(TINY_TRAINING, steps=4, eval_every=4, log_every=2, checkpoint_every=4)
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    run_dir = tmp_path / "run"
    processes = []
    for index in range(2):
        env = dict(
            os.environ,
            TF_CONFIG=json.dumps(
                {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
            ),
        )
        processes.append(
            subprocess.Popen(
                _train_command(dataset, run_dir, config),
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = [process.communicate(timeout=600)[0] for process in processes]
    for process, output in zip(processes, outputs, strict=True):
        assert process.returncode == 0, output[-3000:]
    state = detector.read_state(run_dir)
    assert state["status"] == "finished" and state["step"] == 4
    assert [row["step"] for row in train.read_metrics(run_dir)] == [2, 4]
    assert "replicas 2" in outputs[0]


@pytest.mark.slow
def test_time_limit_stops_evaluated_and_saved(dataset, tmp_path):
    run_dir = tmp_path / "run"
    lines = []
    state = train.train(
        dataset,
        run_dir,
        dict(TINY_TRAINING, steps=500, max_minutes=0.0005),
        progress=False,
        echo=lines.append,
    )
    assert state["status"] == "time_limited" and state["step"] < 500
    rows = train.read_metrics(run_dir)
    assert rows[-1]["step"] == state["step"] and rows[-1]["mAP"] is not None
    assert (run_dir / "best.keras").is_file()
    assert any(line.startswith("time limit: stopped at step") for line in lines)
    # Rerunning with the same limit does not train on; a raised limit continues the run.
    assert (
        train.train(
            dataset, run_dir, dict(TINY_TRAINING, steps=500, max_minutes=0.0005), progress=False
        )["step"]
        == state["step"]
    )
    trained_minutes = rows[-1]["elapsed_s"] / 60
    more = dict(TINY_TRAINING, steps=500, max_minutes=trained_minutes + 0.02)
    continued = train.train(dataset, run_dir, more, progress=False)
    assert continued["status"] == "time_limited" and state["step"] < continued["step"] < 500
    assert [row["step"] for row in train.read_metrics(run_dir)][-1] == continued["step"]


@pytest.mark.slow
def test_it_learns_easy_scenes_and_inference_matches_training(tmp_path):
    """On scenes a tiny model can learn, validation AP50 passes 0.8 within 75 steps.

    Guards the parts a falling training loss alone does not: target encoding and
    decoding, evaluation, and batch-norm statistics that inference mode relies on.
    """
    dataset = make_dataset(tmp_path / "data", counts=(64, 16, 4))
    config = dict(
        TINY_TRAINING,
        input_size=128,
        batch_size=16,
        steps=75,
        eval_every=25,
        log_every=25,
        checkpoint_every=75,
    )
    train.train(dataset, tmp_path / "run", config, progress=False)
    rows = [row for row in train.read_metrics(tmp_path / "run") if row["AP50"] is not None]
    assert rows[-1]["AP50"] >= 0.8, rows
    assert rows[-1]["val_loss"] < 2 * rows[-1]["loss"]


def test_an_infer_size_off_the_largest_stride_is_refused_naming_valid_sizes():
    with pytest.raises(train.TrainingError, match="infer_size: .*use 960 or 1024"):
        train.TrainConfig.from_dict({"infer_size": 1000})
    with pytest.raises(train.TrainingError, match="input_size must be a multiple of 64"):
        train.TrainConfig.from_dict({"input_size": 288})
    square = train.TrainConfig.from_dict({"infer_size": 0, "input_size": 288})
    assert square.geometry(960, 540) == model_lib.InputGeometry(288, 288, "squash")
    assert square.infer_margin == 0  # a squashed square has no letterbox to pad


@pytest.mark.slow
def test_ema_weights_are_evaluated_and_saved_then_training_goes_on(tmp_path):
    dataset = make_dataset(tmp_path / "data", counts=(8, 2, 2))
    config = dict(TINY_TRAINING, steps=4, eval_every=2, checkpoint_every=2, log_every=2, ema=0.5)
    state = train.train(dataset, tmp_path / "run", config, progress=False)
    assert state["status"] == "finished" and state["step"] == 4
    saved = detector.load(tmp_path / "run", which="last").model.get_weights()
    plain = train.train(dataset, tmp_path / "plain", dict(config, ema=0.0), progress=False)
    assert plain["step"] == 4
    other = detector.load(tmp_path / "plain", which="last").model.get_weights()
    # The same seed and batches: only the averaging differs what last.keras holds.
    assert any(not np.allclose(a, b) for a, b in zip(saved, other, strict=True))


def test_resuming_a_folder_of_another_configuration_raises_run_mismatch(tmp_path):
    config = {"input_size": 64, "width": 0.35, "levels": [8, 16], "anchors": {}, "labels": LABELS}
    config["training"] = {"steps": 10, "eval_every": 5, "seed": 0}
    run_dir = tmp_path / "run"
    (run_dir / train.CHECKPOINT_DIR).mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps(config))
    assert train._check_resume(run_dir, config) is True
    logging_only = dict(config, training={**config["training"], "eval_every": 2})
    assert train._check_resume(run_dir, logging_only)  # how often it evaluates may change
    inference_only = dict(config, training={**config["training"], "tta": "flip"})
    assert train._check_resume(run_dir, inference_only)  # so may its test-time augmentation
    for other in (dict(config, input_size=128), dict(config, training={"steps": 20, "seed": 0})):
        with pytest.raises(train.RunMismatchError, match="holds a run of another configuration"):
            train._check_resume(run_dir, other)
    (run_dir / "config.json").write_text("{")
    with pytest.raises(train.TrainingError, match="cannot resume") as unreadable:
        train._check_resume(run_dir, config)
    assert not isinstance(unreadable.value, train.RunMismatchError)


def test_train_or_restart_moves_a_run_of_another_configuration_aside(tmp_path, monkeypatch):
    run_dir = tmp_path / "ssd"
    run_dir.mkdir()
    (run_dir / "old.txt").write_text("old run")
    (tmp_path / "ssd.previous").mkdir()  # an earlier one is replaced
    (tmp_path / "ssd.previous" / "older.txt").write_text("older run")
    calls = []

    def fake_train(dataset_dir, run_dir, config=None, progress=True, echo=None):
        calls.append((run_dir.exists(), progress))
        if len(calls) == 1:
            raise train.RunMismatchError(f"{run_dir} holds a run of another configuration")
        run_dir.mkdir()
        return {"status": "finished", "step": 3}

    monkeypatch.setattr(train, "train", fake_train)
    said = []
    state, previous = train.train_or_restart("data", run_dir, {}, echo=said.append)
    assert state == {"status": "finished", "step": 3}
    assert previous == tmp_path / "ssd.previous"
    assert (previous / "old.txt").read_text() == "old run" and not (previous / "older.txt").exists()
    assert calls == [(True, False), (False, False)]  # resumed first, then afresh
    assert said[0].endswith("holds a run of another configuration")
    assert said[1] == f"the old run folder is now {previous}; training afresh"


def test_train_or_restart_without_resume_always_starts_afresh(tmp_path, monkeypatch):
    monkeypatch.setattr(train, "train", lambda *args, **kwargs: {"status": "finished"})
    said = []
    fresh = tmp_path / "new"
    assert train.train_or_restart("data", fresh, resume=False, echo=said.append) == (
        {"status": "finished"},
        None,
    )
    assert said == []  # nothing to move aside
    run_dir = tmp_path / "ssd"
    run_dir.mkdir()
    state, previous = train.train_or_restart("data", run_dir, resume=False, echo=said.append)
    assert previous == tmp_path / "ssd.previous" and previous.is_dir() and not run_dir.exists()
    assert said == [f"started afresh; the old run folder is {previous}"]
    # Resuming a folder of the same configuration moves nothing.
    run_dir.mkdir()
    assert train.train_or_restart("data", run_dir, echo=said.append)[1] is None
    assert run_dir.is_dir()


def _split(classes, difficult, skipped=(), unknown=None):
    classes = np.asarray(classes, np.int32)
    return train.SplitData(
        images=np.zeros((len(classes), 4, 4, 3), np.uint8),
        boxes=np.zeros((*classes.shape, 4), np.float32),
        classes=classes,
        difficult=np.asarray(difficult, bool),
        names=[f"image{index}" for index in range(len(classes))],
        sizes=np.zeros((len(classes), 2)),
        info=[{}] * len(classes),
        skipped=list(skipped),
        unknown_labels=dict(unknown or {}),
    )


def test_split_table_counts_boxes_per_class_and_what_was_left_out():
    data = _split([[1, 2, 2], [1, 0, 0]], [[False, True, False], [False, True, False]])
    other = _split([[2, 0, 0]], [[False, False, False]], skipped=["bad.png"], unknown={"bus": 3})
    table = train.split_table({"train": data, "val": other}, LABELS)
    assert table == {
        "train": {
            "images": 2,
            "vehicle boxes": 2,
            "license_plate boxes": 2,
            "difficult boxes": 1,  # padding marked difficult is no box
            "skipped images": 0,
            "unknown-label boxes": 0,
        },
        "val": {
            "images": 1,
            "vehicle boxes": 0,
            "license_plate boxes": 1,
            "difficult boxes": 0,
            "skipped images": 1,
            "unknown-label boxes": 3,
        },
    }


def test_anchor_table_lists_every_shape_per_stride():
    spec = {"levels": [8, 16], "shapes": [[(12.0, 6.0), (8.0, 8.0)], [(30.0, 7.5)]]}
    assert train.anchor_table(spec) == [
        {"stride": 8, "anchor (w x h px at input)": "12.0 x 6.0", "aspect (w/h)": 2.0},
        {"stride": 8, "anchor (w x h px at input)": "8.0 x 8.0", "aspect (w/h)": 1.0},
        {"stride": 16, "anchor (w x h px at input)": "30.0 x 7.5", "aspect (w/h)": 4.0},
    ]
    generic = model_lib.generic_anchor_spec((8, 16, 32, 64))
    rows = train.anchor_table(generic)
    assert len(rows) == sum(len(shapes) for shapes in generic["shapes"])
    assert [row["stride"] for row in rows] == sorted(row["stride"] for row in rows)


def test_height_bins_put_each_box_in_one_bin():
    heights = {"license_plate": np.array([3.0, 7.99, 8.0, 15.9, 16.0, 31.0, 32.0, 80.0]),
               "vehicle": np.zeros(0)}  # fmt: skip
    table = train.height_bins(heights)
    assert table["license_plate"] == {
        "boxes": 8, "under 8 px": 2, "8-16 px": 2, "16-32 px": 2, "32 px and up": 2,
    }  # fmt: skip
    assert table["vehicle"] == {
        "boxes": 0, "under 8 px": 0, "8-16 px": 0, "16-32 px": 0, "32 px and up": 0,
    }  # fmt: skip
    assert list(train.height_bins({"x": [5, 50]}, edges=(10,))["x"].items()) == [
        ("boxes", 2), ("under 10 px", 1), ("10 px and up", 1),
    ]  # fmt: skip


def test_memory_verdict_and_table():
    rows = [
        {"batch_size": 0, "peak_mib": 900.0, "status": "ok"},
        {"batch_size": 4, "peak_mib": 1000.0, "status": "ok"},
        {"batch_size": 8, "peak_mib": 1100.0, "status": "ok"},
        {"batch_size": 16, "peak_mib": None, "status": "out of memory"},
    ]
    assert (
        train.memory_verdict(rows, 8) == "about 25 MiB more per image in the batch; batch 8 chosen"
    )
    assert "no slope" in train.memory_verdict(rows[:2], 4)
    assert train.memory_verdict([], 16) == "memory_batch_sizes is empty: not measured"
    assert train.memory_table("", None) == [] and train.memory_table(" , ", None) == []


def test_throughput_line():
    assert train.throughput_line(None) == "throughput_steps is 0: not measured"
    line = train.throughput_line(
        {"bare_images_per_s": 80.0, "real_images_per_s": 76.04, "ratio": 0.9505}
    )
    assert line == (
        "bare train step 80.0 images/s, real training 76.0 images/s: ratio 0.951 (goal >= 0.9)"
    )


def test_run_summary_and_key_figures():
    config = train.TrainConfig(input_size=192, infer_size=960)
    geometry = config.geometry(960, 540)
    metrics = {
        "AP": 0.123456, "AP50": 0.5, "per_class": {"vehicle": {"AP50": 0.71234}, "license_plate": {}},
    }  # fmt: skip
    state = {"status": "finished", "step": 40, "best_step": 30}
    trend = {"evaluations": 3, "first": 0.0123456, "best": 0.2, "rising": True}
    summary = train.run_summary(
        "data/x/models/ssd", state, config, geometry, val_metrics=metrics, anchor_fit=0.7,
        memory=[], throughput={"ratio": 0.95678}, map_trend=trend, starter_table=[],
    )  # fmt: skip
    assert list(summary) == [
        "run_dir", "init", "state", "val_metrics", "anchor_fit", "geometry", "memory",
        "throughput", "map_trend", "starter_table",
    ]  # fmt: skip
    assert summary["init"] == "starter"
    assert summary["run_dir"] == "data/x/models/ssd"
    assert summary["geometry"] == {
        "infer_size": [geometry.width, geometry.height],
        "resize": geometry.mode,
        "infer_margin": geometry.margin,
        "infer_max_scale": None,
        "train_shape": [192, 192],
    }
    json.dumps(summary)  # JSON-ready
    assert train.key_figures(summary, elapsed_s=363.0) == {
        "status": "finished",
        "steps": 40,
        "best step": 30,
        "val mAP": 0.1235,
        "val AP50": 0.5,
        "val AP50 vehicle": 0.7123,
        "val AP50 license_plate": None,
        "first val mAP": 0.0123,
        "mAP rising": "n/a",  # fine-tuned from the starter: no doubling to expect
        "input ratio": 0.957,
        "minutes": 6.0,
    }
    assert train.key_figures(dict(summary, init="none"))["mAP rising"] is True
    bare = train.key_figures(dict(summary, map_trend=None, throughput=None), elapsed_s=None)
    assert math.isnan(bare["first val mAP"])
    assert bare["mAP rising"] is None and bare["input ratio"] is None and bare["minutes"] is None


def test_crop_advice_speaks_when_boxes_outgrow_the_crops():
    config = train.TrainConfig.from_dict(dict(input_size=192, scale_min=0.6))
    small = np.array([[60.0, 30.0]] * 19 + [[330.0, 90.0]])  # one in 20: 5 %, over 320
    assert "5% of the training boxes are larger than a 192 px crop" in train.crop_advice(
        config, small
    )
    assert "the largest 330 px" in train.crop_advice(config, small)
    assert train.crop_advice(config, small[:-1]) == ""
    wider = train.TrainConfig.from_dict(dict(input_size=320, scale_min=0.4))
    assert train.crop_advice(wider, small) == ""  # 330 < 800
    whole = train.TrainConfig.from_dict(dict(crop_training=False))
    assert train.crop_advice(whole, small) == ""
