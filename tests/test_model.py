"""The SSD model, its anchors, target encoding and post-processing (no downloads, no training)."""

import urllib.error

import numpy as np
import pytest

from platelab import model


def _two_clusters(seed=0, count=60):
    """Box sizes (fractions of a 320 px input): 2:1 around 40x20 px and 4.7:1 around 47x10 px."""
    rng = np.random.default_rng(seed)
    wide = np.column_stack([40 * rng.normal(1, 0.05, count), 20 * rng.normal(1, 0.05, count)])
    plates = np.column_stack([47 * rng.normal(1, 0.05, count), 10 * rng.normal(1, 0.05, count)])
    return np.concatenate([wide, plates]) / 320


def test_model_outputs_one_row_per_anchor():
    # Small boxes only: the stride-64 level gets no anchors and must get no head.
    spec = model.anchors_from_boxes(
        np.concatenate([_two_clusters(), [[0.5, 0.25]]]), 160, levels=(8, 16, 32, 64), per_level=2
    )
    assert spec["shapes"][-1] == []
    net = model.build_ssd(num_classes=2, input_size=160, width=0.35, anchors=spec, weights=None)
    anchors = model.generate_anchors(spec, 160)
    outputs = net(np.random.default_rng(0).uniform(0, 255, (2, 160, 160, 3)).astype("float32"))
    assert tuple(outputs["class_logits"].shape) == (2, len(anchors), 3)
    assert tuple(outputs["box_deltas"].shape) == (2, len(anchors), 4)
    assert np.all(np.isfinite(np.asarray(outputs["box_deltas"])))
    assert net.get_layer("backbone") is not None

    default = model.build_ssd(num_classes=1, input_size=160, width=0.35, weights=None)
    default_anchors = model.generate_anchors(model.default_anchor_spec(160), 160)
    # Grids 20, 10, 5 and 3 cells across, three shapes each.
    assert len(default_anchors) == 3 * (20 * 20 + 10 * 10 + 5 * 5 + 3 * 3)
    assert [output.shape[1] for output in default.outputs] == [len(default_anchors)] * 2


def test_anchors_recover_the_aspect_ratios():
    boxes = _two_clusters()
    spec = model.anchors_from_boxes(boxes, 320, levels=(8, 16, 32, 64), per_level=2, seed=3)
    shapes = np.asarray([shape for level in spec["shapes"] for shape in level])
    ratios = np.sort(shapes[:, 0] / shapes[:, 1])
    assert ratios == pytest.approx([2.0, 4.7], rel=0.05)
    assert model.anchor_fit(boxes, spec) > 0.85
    assert spec == model.anchors_from_boxes(boxes, 320, per_level=2, seed=3)

    # Vehicles four times larger go to a coarser level than the plates.
    rng = np.random.default_rng(1)
    vehicles = np.column_stack([160 * rng.normal(1, 0.05, 40), 80 * rng.normal(1, 0.05, 40)]) / 320
    plates = _two_clusters()[60:]
    spec = model.anchors_from_boxes(np.concatenate([vehicles, plates]), 320, per_level=1)
    ratio_by_level = {
        stride: shapes[0][0] / shapes[0][1]
        for stride, shapes in zip(spec["levels"], spec["shapes"], strict=True)
        if shapes
    }
    assert list(ratio_by_level) == [8, 32]
    assert ratio_by_level[8] == pytest.approx(4.7, rel=0.05)
    assert ratio_by_level[32] == pytest.approx(2.0, rel=0.05)
    # A single square anchor fits these boxes worse than the derived shapes.
    square = {"levels": [8], "shapes": [[[0.1, 0.1]]]}
    assert model.anchor_fit(plates, square) < model.anchor_fit(plates, spec)

    with pytest.raises(ValueError, match="positive"):
        model.anchors_from_boxes([[0.1, 0.0]], 320)


def test_encode_decode_round_trip():
    anchors = model.generate_anchors(model.default_anchor_spec(320), 320)
    gt_boxes = np.array(
        [
            [0.10, 0.20, 0.45, 0.40],  # a vehicle
            [0.60, 0.70, 0.64, 0.71],  # a tiny plate: matched only through its best anchor
            [0.00, 0.00, 0.00, 0.00],  # padding
        ],
        dtype="float32",
    )
    gt_labels = np.array([1, 2, 0])
    class_targets, box_targets = model.encode_targets(
        gt_boxes, gt_labels, anchors, iou_threshold=0.5
    )
    class_targets = np.asarray(class_targets)
    box_targets = np.asarray(box_targets)
    assert class_targets.shape == (len(anchors),) and box_targets.shape == (len(anchors), 4)
    assert set(np.unique(class_targets)) == {0, 1, 2}
    assert np.all(box_targets[class_targets == 0] == 0)

    decoded = np.asarray(model.decode_predictions(box_targets, anchors))
    for label, box in zip(gt_labels[:2], gt_boxes[:2], strict=True):
        positives = decoded[class_targets == label]
        assert len(positives) >= 1
        np.testing.assert_allclose(positives, np.broadcast_to(box, positives.shape), atol=1e-5)
    assert np.sum(class_targets == 2) == 1

    empty_classes, empty_boxes = model.encode_targets(np.zeros((0, 4)), np.zeros((0,)), anchors)
    assert not np.any(np.asarray(empty_classes)) and not np.any(np.asarray(empty_boxes))


def test_postprocess_removes_a_duplicate():
    anchors = np.array(
        [
            [0.10, 0.10, 0.30, 0.20],
            [0.11, 0.10, 0.31, 0.20],
            [0.60, 0.60, 0.80, 0.70],
            [0.40, 0.40, 0.50, 0.50],
        ],
        dtype="float32",
    )
    class_logits = np.array([[0, 5, 0], [0, 4, 0], [0, 0, 5], [5, 0, 0]], dtype="float32")
    deltas = np.zeros((4, 4), dtype="float32")
    result = model.postprocess(
        class_logits, deltas, anchors, score_threshold=0.3, iou_threshold=0.5, max_detections=10
    )
    assert result["num_detections"] == 2
    kept = slice(0, int(result["num_detections"]))
    np.testing.assert_allclose(result["boxes"][kept], anchors[[0, 2]], atol=1e-6)
    assert list(result["classes"][kept]) == [1, 2]
    assert np.all(result["scores"][kept] > 0.9)
    assert not np.any(result["classes"][2:])

    batched = model.postprocess(class_logits[None], deltas[None], anchors, max_detections=10)
    assert batched["boxes"].shape == (1, 10, 4) and list(batched["num_detections"]) == [2]


def test_missing_weights_path_is_a_clear_error(tmp_path):
    missing = tmp_path / "nowhere.h5"
    with pytest.raises(ValueError, match="weights file .*nowhere.h5 does not exist"):
        model.build_ssd(input_size=160, width=0.35, weights=missing)


def test_failed_imagenet_download_says_where_to_place_the_file(tmp_path, monkeypatch, capsys):
    import keras.src.backend.config as keras_config
    import keras.src.utils.file_utils as file_utils

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("network unreachable")

    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(tmp_path))
    monkeypatch.setattr(file_utils, "urlretrieve", no_network)
    name = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5"
    with pytest.raises(RuntimeError) as raised:
        model.build_ssd(input_size=96, width=0.35, weights="imagenet", levels=(8, 16, 32))
    message = str(raised.value)
    assert "\n" not in message
    assert str(tmp_path / "models" / name) in message
    assert "network unreachable" in message
    # Keras's "Downloading data from ..." is not left in the output before the message.
    assert "Downloading data from" not in capsys.readouterr().out


def test_imagenet_weights_placed_in_the_keras_cache_are_loaded(tmp_path, monkeypatch):
    """The file the offline message names, placed there, is what the backbone loads."""
    import h5py
    import keras
    import keras.src.backend.config as keras_config
    import keras.src.utils.file_utils as file_utils
    from keras.src.legacy.saving import legacy_h5_format

    def no_network(*args, **kwargs):
        raise AssertionError("no download when the file is in the cache")

    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(tmp_path))
    monkeypatch.setattr(file_utils, "urlretrieve", no_network)
    keras.utils.set_random_seed(5)
    source = keras.applications.MobileNetV2(
        input_shape=(96, 96, 3), alpha=0.35, include_top=False, weights=None
    )
    name = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5"
    (tmp_path / "models").mkdir()
    with h5py.File(tmp_path / "models" / name, "w") as handle:  # Keras's ImageNet file layout
        legacy_h5_format.save_weights_to_hdf5_group(handle, source)
    net = model.build_ssd(input_size=96, width=0.35, weights="imagenet", levels=(8, 16, 32))
    for layer_name in ("Conv1", "block_16_project"):
        loaded = net.get_layer("backbone").get_layer(layer_name).get_weights()[0]
        np.testing.assert_array_equal(loaded, source.get_layer(layer_name).get_weights()[0])


def test_weights_path_loads_into_the_backbone(tmp_path):
    import keras

    backbone = keras.applications.MobileNetV2(
        input_shape=(96, 96, 3), alpha=0.35, include_top=False, weights=None
    )
    path = tmp_path / "backbone.weights.h5"
    backbone.save_weights(path)
    net = model.build_ssd(input_size=96, width=0.35, weights=path, levels=(8, 16, 32))
    loaded = net.get_layer("backbone").get_layer("Conv1").get_weights()[0]
    np.testing.assert_array_equal(loaded, backbone.get_layer("Conv1").get_weights()[0])
