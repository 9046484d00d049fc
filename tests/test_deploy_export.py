"""Exports (SavedModel, TFLite float32/float16/int8, ONNX): parity with Keras, model cards, bad input.

The parity tests use a tiny model trained on synthetic scenes (tests/model_helpers.py),
so that AP50 compares a model that finds things, not noise.
"""

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import model_helpers
from platelab import LABELS, evaluate
from platelab import detector as detector_lib
from platelab import model as model_lib
from platelab.deploy import export

RUN_METRICS = {
    "test": {
        "AP50": 0.91,
        "AP": 0.6,
        "precision": 0.9,
        "recall": 0.85,
        "F1": 0.87,
        "num_gt": 40,
        "score_threshold": 0.3,
        "per_class": {
            "vehicle": {"AP50": 0.95, "AP": 0.7, "precision": 0.93, "recall": 0.9, "num_gt": 20},
            "license_plate": {"AP50": 0.87, "AP": 0.5, "recall": 0.8, "num_gt": 20},
        },
    }
}
FLOAT32_EXPORTS = [
    ("saved_model", "none", None),
    ("tflite", "none", None),
    ("onnx", "none", "onnxruntime"),
    ("onnx", "none", "opencv"),
]


# ---------------------------------------------------------------------------- fast


def test_resize_in_numpy_and_in_the_graph_agree():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    cases = [(300, 500, 128), (540, 960, 320), (128, 128, 128), (90, 100, 160), (1080, 1920, 320)]
    cases += [(720, 1280, 320), (1081, 1920, 320), (2160, 3840, 512)]  # halved first (or not: odd)
    for height, width, size in cases:
        image = cv2.GaussianBlur(
            rng.integers(0, 256, (height, width, 3)).astype(np.uint8), (5, 5), 2
        )
        resized = export.resize_image(image, size)
        in_graph = model_lib.resize_images_tf(tf.constant(image[None]), size).numpy()[0]
        # Shrinking: area averaging, equal up to rounding ties; enlarging: bilinear.
        assert np.abs(resized - in_graph).max() <= 1.0
        assert np.mean(resized != in_graph) < 0.01 or min(height, width) < size
        # a BGR frame seen as RGB through a reversed view
        flipped = np.ascontiguousarray(image[:, :, ::-1])[:, :, ::-1]
        np.testing.assert_array_equal(export.resize_image(flipped, size), resized)
    # Shrinking averages: a one-pixel line survives as a faint line, not by chance.
    lines = np.zeros((960, 960, 3), np.uint8)
    lines[::3] = 255
    assert export.resize_image(lines, 320).std() < 1.0


def test_numpy_postprocess_matches_the_savedmodels_nms_also_on_equal_scores():
    """The exports' NumPy NMS and the Keras model's and SavedModel's TensorFlow one
    keep the same boxes in the same order, also where anchors score
    exactly alike (as in letterbox padding: there a rule for equal scores decides
    which boxes survive; ``combined_non_max_suppression`` has none)."""
    import tensorflow as tf

    spec = model_lib.default_anchor_spec(128, levels=(8, 16, 32))
    anchors = model_lib.generate_anchors(spec, 128)
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 2, (len(anchors), 3)).astype(np.float32)
    logits[:, 0] += 2.5  # mostly background, as a trained model
    deltas = rng.normal(0, 1, (len(anchors), 4)).astype(np.float32)
    # a run of neighbouring anchors with one score and one delta: overlapping boxes
    # that tie, as the padding's anchors do
    tied = np.arange(40, 400, 3)
    logits[tied] = [0.0, 4.0, -3.0]
    deltas[tied] = [0.0, 0.0, 1.5, 1.5]
    np.testing.assert_allclose(
        model_lib.decode_numpy(deltas, anchors),
        np.asarray(model_lib.decode_predictions(deltas, anchors)),
        atol=1e-6,
    )
    scores = tf.nn.softmax(logits)[None, :, 1:]
    boxes = tf.convert_to_tensor(model_lib.decode_predictions(deltas, anchors))[None]
    for threshold, iou, limit in [
        (0.05, 0.5, 100),
        (0.3, 0.5, 100),
        (0.3, 0.3, 7),
        (0.9, 0.5, 100),
    ]:
        ours = model_lib.postprocess_numpy(logits, deltas, anchors, threshold, iou, limit)
        batched = model_lib.postprocess(logits[None], deltas[None], anchors, threshold, iou, limit)
        graph = model_lib.nms_tf(boxes, scores, tf.constant(threshold), iou, limit)
        count = int(graph["num_detections"][0])
        assert len(ours[1]) == count == batched["num_detections"][0]
        np.testing.assert_allclose(ours[1], graph["scores"][0, :count], atol=1e-6)
        np.testing.assert_array_equal(ours[2], graph["classes"][0, :count])
        np.testing.assert_allclose(ours[0], graph["boxes"][0, :count], atol=1e-5)
        np.testing.assert_allclose(batched["boxes"][0, :count], ours[0], atol=1e-5)
        np.testing.assert_allclose(batched["scores"][0, :count], ours[1], atol=1e-6)
        np.testing.assert_array_equal(batched["classes"][0, :count], ours[2])
        assert not batched["scores"][0, count:].any()
        assert np.all(ours[0] >= 0) and np.all(ours[0] <= 1)
    # the tie itself: of equal scores, the first anchor's box is kept first
    boxes_kept, scores_kept, _ = model_lib.postprocess_numpy(logits, deltas, anchors, 0.3)
    tied_box = model_lib.decode_numpy(deltas[tied[:1]], anchors[tied[:1]])
    tie_score = float(tf.nn.softmax(logits[tied[0]])[1])
    first_tied = np.flatnonzero(np.abs(scores_kept - tie_score) < 1e-6)[0]
    np.testing.assert_allclose(boxes_kept[first_tied], np.clip(tied_box[0], 0, 1), atol=1e-6)
    assert np.sum(scores_kept == scores_kept[first_tied]) > 1  # some ties survive NMS too
    empty = model_lib.postprocess_numpy(logits, deltas, anchors, 0.999999)
    assert [len(item) for item in empty] == [0, 0, 0]


def test_keras_predictor_equals_the_detector(untrained_run):
    images, _ = model_helpers.scene_set(3, seed=2, width=150, height=100)
    predictor = export.load_predictor(untrained_run)
    assert isinstance(predictor, export.KerasPredictor)
    ours = predictor.predict(images, score_threshold=0.2)
    theirs = detector_lib.load(untrained_run).predict(images, score_threshold=0.2)
    for first, second in zip(ours, theirs, strict=True):
        for key in ("boxes", "scores", "classes"):
            np.testing.assert_array_equal(first[key], second[key])
        assert first["labels"] == second["labels"]
    with pytest.raises(ValueError, match="uint8"):
        predictor.predict([images[0].astype(np.float32)])


def test_bad_export_requests_are_refused_before_any_work(untrained_run, tmp_path):
    with pytest.raises(export.ExportError, match="unknown export format 'pb'"):
        export.export(untrained_run, "pb", tmp_path / "out")
    with pytest.raises(
        export.ExportError, match="onnx export does not offer quantize='int8'.*tflite"
    ):
        export.export(untrained_run, "onnx", tmp_path / "out", quantize="int8")
    with pytest.raises(export.ExportError, match="saved_model export does not offer"):
        export.export(untrained_run, "saved_model", tmp_path / "out", quantize="float16")

    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    with pytest.raises(export.ExportError, match="not an earlier export"):
        export.export(untrained_run, "tflite", occupied)
    assert (occupied / "notes.txt").read_text() == "mine"
    (tmp_path / "file").write_text("")
    with pytest.raises(export.ExportError, match="is a file"):
        export.export(untrained_run, "tflite", tmp_path / "file")

    empty = tmp_path / "no-images"
    empty.mkdir()
    with pytest.raises(export.ExportError, match="representative set is empty"):
        export.export(untrained_run, "tflite", tmp_path / "out", "int8", representative=empty)
    with pytest.raises(export.ExportError, match="representative set is empty"):
        export.export(untrained_run, "tflite", tmp_path / "out", "int8", representative=[])
    with pytest.raises(export.ExportError, match="no such representative data"):
        export.export(untrained_run, "tflite", tmp_path / "out", "int8", tmp_path / "nowhere")
    # no representative given and the run's dataset has no TFRecords
    with pytest.raises(export.ExportError, match="--representative"):
        export.export(untrained_run, "tflite", tmp_path / "out", "int8")

    with pytest.raises(detector_lib.ModelError, match="no such model folder"):
        export.export(tmp_path / "no-run", "tflite", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unfinished_run_is_refused_unless_forced(tmp_path):
    net, spec = model_helpers.tiny_model(input_size=96, levels=(8, 16, 32))
    run = model_helpers.make_run_folder(tmp_path / "run", net, spec, status="running")
    with pytest.raises(detector_lib.ModelError, match="unfinished.*force"):
        export.export(run, "onnx", tmp_path / "out")
    card = export.export(run, "onnx", tmp_path / "out", force=True, progress=False)
    assert card["training"]["status"] == "running"
    # exporting again replaces the earlier export
    export.export(run, "onnx", tmp_path / "out", force=True, progress=False)
    assert {path.name for path in (tmp_path / "out").iterdir()} == {
        export.CARD_MARKDOWN,
        export.CARD_JSON,
        "model.onnx",
    }
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]


def test_representative_images_from_tfrecords_and_folders(tmp_path):
    import tensorflow as tf

    images, _ = model_helpers.scene_set(5, seed=4, width=64, height=48)
    folder = tmp_path / "merged" / "tfrecords"
    folder.mkdir(parents=True)
    with tf.io.TFRecordWriter(str(folder / "train.tfrecord")) as writer:
        for image in images:
            encoded = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes()
            feature = {
                "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded]))
            }
            example = tf.train.Example(features=tf.train.Features(feature=feature))
            writer.write(example.SerializeToString())
    loaded = export.load_representative(tmp_path / "merged", 32, count=3)
    assert len(loaded) == 3 and loaded[0].shape == (32, 32, 3) and loaded[0].dtype == np.float32
    np.testing.assert_allclose(loaded[0], export.resize_image(images[0], 32), atol=1e-4)
    assert len(export.load_representative(folder / "train.tfrecord", 32)) == 5

    photos = tmp_path / "photos" / "sub"
    photos.mkdir(parents=True)
    for index, image in enumerate(images):
        cv2.imwrite(str(photos / f"{index}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    (photos / "broken.png").write_bytes(b"not a png")
    assert len(export.load_representative(tmp_path / "photos", 32, count=100)) == 5
    with pytest.raises(export.ExportError, match="must be a merged dataset folder"):
        export.load_representative(photos / "0.png", 32)


def test_load_predictor_names_what_is_missing(tmp_path, untrained_run):
    with pytest.raises(detector_lib.ModelError, match="no such model"):
        export.load_predictor(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(detector_lib.ModelError, match="not a model"):
        export.load_predictor(tmp_path / "empty")
    (tmp_path / "model.tflite").write_bytes(b"")
    with pytest.raises(detector_lib.ModelError, match="no model_card.json beside it"):
        export.load_predictor(tmp_path / "model.tflite")
    card = tmp_path / "bad" / export.CARD_JSON
    card.parent.mkdir()
    card.write_text("{}")
    with pytest.raises(detector_lib.ModelError, match="not a platelab model card"):
        export.load_predictor(card.parent)


# ---------------------------------------------------------------------------- slow: parity


@pytest.mark.slow
@pytest.mark.parametrize(("fmt", "quantize", "backend"), FLOAT32_EXPORTS)
def test_float32_exports_give_the_keras_detections(
    exports, keras_reference, scenes, fmt, quantize, backend
):
    predictor = export.load_predictor(exports[fmt, quantize], backend=backend)
    assert predictor.format == fmt
    images, ground_truth = scenes
    ours = predictor.predict(images, score_threshold=0.3)
    theirs = keras_reference["operating"]
    assert sum(len(item["scores"]) for item in theirs) >= len(images)
    for first, second in zip(ours, theirs, strict=True):
        assert sorted(first["labels"]) == sorted(second["labels"])
        score_gap, box_gap = export.detection_gaps(first, second)
        assert score_gap < 1e-3
        assert box_gap < 1.0
    _assert_ap50_close(predictor, scenes, keras_reference["ap50"], 0.01)


@pytest.mark.slow
def test_float16_export_is_close(exports, keras_reference, scenes):
    predictor = export.load_predictor(exports["tflite", "float16"])
    ours = predictor.predict(scenes[0], score_threshold=0.3)
    same = 0
    for first, second in zip(ours, keras_reference["operating"], strict=True):
        if sorted(first["labels"]) != sorted(second["labels"]):
            continue
        same += 1
        score_gap, box_gap = export.detection_gaps(first, second)
        assert score_gap < 0.02 and box_gap < 2.0
    assert same >= 0.9 * len(ours)
    _assert_ap50_close(predictor, scenes, keras_reference["ap50"], 0.01)


@pytest.mark.slow
def test_int8_export_keeps_ap50(exports, keras_reference, scenes):
    predictor = export.load_predictor(exports["tflite", "int8"])
    assert predictor.interpreter.get_input_details()[0]["dtype"] == np.uint8
    _assert_ap50_close(predictor, scenes, keras_reference["ap50"], 0.03)


@pytest.mark.slow
def test_model_card_beside_each_export(exports, trained_run):
    for (fmt, quantize), folder in exports.items():
        card = json.loads((folder / export.CARD_JSON).read_text())
        assert card["export"]["format"] == fmt and card["export"]["quantize"] == quantize
        assert card["model"]["labels"] == list(LABELS)
        assert card["model"]["input_size"] == model_helpers.INPUT_SIZE
        assert card["operating_threshold"] == 0.3
        assert card["training"]["run_dir"] == str(trained_run)
        assert card["training"]["status"] == "finished"
        assert card["metrics"] == RUN_METRICS
        if quantize == "none":
            assert card["verification"]["same_detections"], card["verification"]
        markdown = (folder / export.CARD_MARKDOWN).read_text()
        for text in (
            "## Intended use",
            "## Known limits",
            "## Preprocessing",
            "vehicle, license_plate",
        ):
            assert text in markdown
        assert "| license_plate | 0.870 |" in markdown
        assert (
            folder / ("saved_model.pb" if fmt == "saved_model" else card["export"]["file"])
        ).is_file()
    card = json.loads((exports["saved_model", "none"] / export.CARD_JSON).read_text())
    assert "normalised" in card["export"]["outputs"]["boxes"]["meaning"]


@pytest.mark.slow
def test_saved_model_signatures_take_uint8_images(exports):
    import tensorflow as tf

    module = tf.saved_model.load(str(exports["saved_model", "none"]))
    assert set(module.signatures) == {"serving_default", "detect"}
    images, _ = model_helpers.scene_set(2, seed=9, width=200, height=150)
    outputs = module.signatures["serving_default"](images=tf.constant(np.stack(images)))
    assert outputs["boxes"].shape == (2, 100, 4)
    count = int(outputs["num_detections"][0])
    assert count >= 1
    boxes = outputs["boxes"].numpy()[0, :count]
    assert np.all(boxes >= 0) and np.all(boxes <= 1)
    assert np.all(outputs["scores"].numpy()[0, :count] > 0.3)


# ---------------------------------------------------------------------------- fixtures


def _assert_ap50_close(predictor, scenes, reference, tolerance):
    ap50 = _ap50(predictor.predict(scenes[0], score_threshold=0.01), scenes[1])
    for label in LABELS:
        assert abs(ap50[label] - reference[label]) <= tolerance, (predictor.name, ap50, reference)


def _ap50(results, ground_truth):
    predictions = [
        {"image": truth["image"], "label": label, "score": float(score), "bbox": box.tolist()}
        for truth, result in zip(ground_truth, results, strict=True)
        for box, score, label in zip(
            result["boxes"], result["scores"], result["labels"], strict=True
        )
    ]
    metrics = evaluate.evaluate_detections(ground_truth, predictions, classes=list(LABELS))
    return {label: metrics["per_class"][label]["AP50"] for label in LABELS}


@pytest.fixture(scope="module")
def untrained_run(tmp_path_factory):
    net, spec = model_helpers.tiny_model()
    return model_helpers.make_run_folder(tmp_path_factory.mktemp("untrained") / "run", net, spec)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    return model_helpers.trained_run_folder(
        tmp_path_factory.mktemp("trained") / "run", metrics=RUN_METRICS
    )


@pytest.fixture(scope="session")
def scenes():
    """30 test scenes at another size than the model input (the resize counts too)."""
    return model_helpers.scene_set(30, seed=7, width=200, height=150)


@pytest.fixture(scope="module")
def keras_reference(trained_run, scenes):
    images, ground_truth = scenes
    keras_detector = detector_lib.load(trained_run)
    ap50 = _ap50(keras_detector.predict(images, score_threshold=0.01), ground_truth)
    assert min(ap50.values()) > 0.8, f"the test model learnt too little: {ap50}"
    return {"ap50": ap50, "operating": keras_detector.predict(images, score_threshold=0.3)}


@pytest.fixture(scope="module")
def exports(trained_run, tmp_path_factory):
    """Every export of the trained run (ONNX through the command-line helpers)."""
    folder = tmp_path_factory.mktemp("exports")
    calibration, _ = model_helpers.scene_set(40, seed=3)
    made = {}
    for fmt, quantize in [
        ("saved_model", "none"),
        ("tflite", "none"),
        ("tflite", "float16"),
        ("tflite", "int8"),
    ]:
        made[fmt, quantize] = folder / f"{fmt}-{quantize}"
        export.export(
            trained_run,
            fmt,
            made[fmt, quantize],
            quantize,
            representative=calibration,
            progress=False,
        )
    parser = export.add_export_arguments(argparse.ArgumentParser())
    made["onnx", "none"] = folder / "nested" / "onnx"  # parents are created
    args = parser.parse_args(
        ["--model", str(trained_run), "--format", "onnx", "--out", str(made["onnx", "none"])]
    )
    assert args.handler(args) == 0
    return made


@pytest.mark.slow
@pytest.mark.parametrize(
    "margin, first_frame, inner, max_scale",
    [
        (0, (200, 150), (192, 128), None),
        (32, (192, 96), (192, 128), None),
        (32, (128, 96), (256, 192), 1.0),
    ],
)
def test_letterboxed_exports_agree_with_keras_on_frames_of_other_shapes(
    tmp_path, margin, first_frame, inner, max_scale
):
    """A run of today's geometry (letterbox into 192x128, or with a 32 px margin into
    256x192) exports with that geometry: every format and the Keras detector find the
    same boxes on 4:3 (2:1) and 1:1 frames. With ``infer_max_scale`` 1.0 (into 320x256)
    both frames are smaller than the input and go in at their own size, unenlarged, in
    every format.

    With the margin the frames need no resizing: the SavedModel's in-graph resize
    differs from OpenCV's by rounding ties (up to 1 grey level on 26 pixels of the 4:3
    frame, the same pixels at either margin; see
    ``test_in_graph_letterbox_equals_the_numpy_one``), on which this tiny model's score
    moved by 0.005 at the margin's position. Here the margin's own arithmetic (placing,
    box mapping) is held to the same 0.001."""
    net, spec = model_helpers.train_tiny_model()
    size = [inner[0] + 2 * margin, inner[1] + 2 * margin]
    run = model_helpers.make_run_folder(
        tmp_path / "run",
        net,
        spec,
        infer_size=size,
        infer_margin=margin,
        infer_max_scale=max_scale,
    )
    keras_predictor = export.load_predictor(run)
    assert keras_predictor.geometry == model_lib.InputGeometry(
        *size, "letterbox", margin, max_scale
    )
    if max_scale is not None:  # both frames would be enlarged without the cap
        assert keras_predictor.geometry.scale(*first_frame) == (1.0, 1.0)
        assert keras_predictor.geometry.scale(128, 128) == (1.0, 1.0)
    rng = np.random.default_rng(4)
    images = [
        model_helpers.draw_scene(rng, *first_frame)[0],
        model_helpers.draw_scene(rng, 128, 128)[0],
    ]
    reference = keras_predictor.predict(images, score_threshold=0.3)
    assert sum(len(item["scores"]) for item in reference) >= 2
    for image, found in zip(images, reference, strict=True):
        boxes = found["boxes"]
        assert np.all(boxes[:, 2] <= image.shape[1] + 1e-3) and np.all(
            boxes[:, 3] <= image.shape[0] + 1e-3
        )
    for fmt in ("saved_model", "tflite"):
        folder = Path(export.export(run, fmt, tmp_path / fmt, progress=False)["path"])
        card = json.loads((folder / export.CARD_JSON).read_text())
        assert card["model"]["infer_size"] == size and card["model"]["resize"] == "letterbox"
        assert card["model"]["infer_margin"] == margin
        assert card["model"]["infer_max_scale"] == max_scale
        assert f"letterboxed into {size[0]}x{size[1]}" in card["preprocessing"]
        assert ("placed 32 px from the top left" in card["preprocessing"]) == bool(margin)
        text = (folder / export.CARD_MARKDOWN).read_text()
        assert f"{size[0]}x{size[1]}, letterbox" in text
        assert ("a 32 px margin round the frame" in text) == bool(margin)
        assert ("never scaled by more than 1" in text) == (max_scale is not None)
        assert ("never scaled by more than 1" in card["preprocessing"]) == (max_scale is not None)
        predictor = export.load_predictor(folder)
        ours = predictor.predict(images, score_threshold=0.3)
        for first, second in zip(ours, reference, strict=True):
            assert sorted(first["labels"]) == sorted(second["labels"]), fmt
            score_gap, box_gap = export.detection_gaps(first, second)
            assert score_gap < 1e-3 and box_gap < 1.0, (fmt, score_gap, box_gap)


def test_card_for_report_demotes_headings_outside_code(tmp_path):
    (tmp_path / export.CARD_MARKDOWN).write_text(
        "# Model card: x\n\ntext # not a heading\n\n## Model\n\n```\n# a comment\n```\n"
    )
    text = export.card_for_report(tmp_path)
    assert text.splitlines()[0] == "### Model card: x"
    assert "#### Model" in text and "# a comment" in text and "## # a comment" not in text
    assert "text # not a heading" in text
    with pytest.raises(detector_lib.ModelError, match="MODEL_CARD.md: unreadable") as raised:
        export.card_for_report(tmp_path / "nowhere")
    assert "\n" not in str(raised.value)
