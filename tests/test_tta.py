"""Test-time augmentation (platelab.tta): the mirror pass, fused back into one result."""

import numpy as np
import pytest

import model_helpers
from platelab import detector as detector_lib
from platelab import tta
from platelab.deploy import export

LABELS = model_helpers.LABELS


def _result(boxes, scores, classes):
    return {
        "boxes": np.asarray(boxes, np.float32).reshape(-1, 4),
        "scores": np.asarray(scores, np.float32),
        "classes": np.asarray(classes, np.int64),
        "labels": [LABELS[value - 1] for value in classes],
    }


def test_modes_are_checked():
    assert tta.check_mode(None) == "none" and tta.check_mode("") == "none"
    assert tta.check_mode("flip") == "flip"
    assert (tta.views("none"), tta.views("flip")) == (1, 2)
    with pytest.raises(ValueError, match="tta must be one of none, flip, got 'flop'"):
        tta.check_mode("flop")


def test_augment_adds_the_mirror_images_after_the_originals():
    images = [np.arange(12, dtype=np.uint8).reshape(2, 2, 3), np.zeros((3, 5, 3), np.uint8)]
    assert tta.augment(images, "none") == images
    views = tta.augment(images, "flip")
    assert len(views) == 4 and views[0] is images[0]
    np.testing.assert_array_equal(views[2], images[0][:, ::-1])
    assert views[3].shape == (3, 5, 3) and views[2].flags["C_CONTIGUOUS"]


def test_merge_fuses_what_both_views_found_and_keeps_what_one_found():
    width = 100
    plain = _result([[10, 20, 30, 40], [50, 50, 60, 55]], [0.9, 0.4], [1, 1])
    # The same vehicle seen in the mirror at x 12-32 (mirrored: 68-88); a plate only the
    # mirror found at x 40-50 (mirrored: 50-60), beside a vehicle box it must not join.
    mirrored = _result([[68, 20, 88, 40], [50, 10, 60, 15]], [0.6, 0.7], [1, 2])
    (merged,) = tta.merge([plain, mirrored], [(width, 80)], "flip", iou_threshold=0.5)
    assert merged["labels"] == ["vehicle", "license_plate", "vehicle"]
    # Each box scores the mean over the views of their best score there: (0.9 + 0.6) / 2
    # where both saw the vehicle, half the score where one view alone saw a box.
    np.testing.assert_allclose(merged["scores"], [0.75, 0.35, 0.2], atol=1e-6)
    # Score-weighted mean of x 10 and 12 (0.9 and 0.6): 10.8.
    np.testing.assert_allclose(merged["boxes"][0], [10.8, 20, 30.8, 40], atol=1e-4)
    np.testing.assert_allclose(merged["boxes"][1], [40, 10, 50, 15], atol=1e-4)
    np.testing.assert_allclose(merged["boxes"][2], [50, 50, 60, 55], atol=1e-4)
    np.testing.assert_array_equal(merged["classes"], [1, 2, 1])
    # Below the IoU threshold, two boxes of one class stay two.
    apart = _result([[45, 20, 65, 40]], [0.5], [1])
    (two,) = tta.merge([plain, apart], [(width, 80)], "flip")
    assert len(two["boxes"]) == 3
    (capped,) = tta.merge([plain, mirrored], [(width, 80)], "flip", max_detections=2)
    np.testing.assert_allclose(capped["scores"], [0.75, 0.35], atol=1e-6)
    (empty,) = tta.merge([_result([], [], []), _result([], [], [])], [(width, 80)], "flip")
    assert empty["boxes"].shape == (0, 4) and empty["labels"] == []
    assert tta.merge([plain], [(width, 80)], "none") == [plain]
    with pytest.raises(ValueError, match="1 results for 1 images and 2 views"):
        tta.merge([plain], [(width, 80)], "flip")


def test_a_flip_detector_sees_an_image_and_its_mirror_alike(tmp_path):
    """Fused over both views, the detections of a mirrored image are the mirror of the
    image's; one pass alone is not symmetric (the network is not)."""
    images, _ = model_helpers.scene_set(4, seed=11, width=150, height=100)
    mirrors = [np.ascontiguousarray(image[:, ::-1]) for image in images]

    def detections(run, pictures):
        return detector_lib.load(run).predict(pictures, score_threshold=0.2)

    def unmirrored(result):
        boxes = result["boxes"][:, [2, 1, 0, 3]].copy()
        boxes[:, [0, 2]] = 150 - boxes[:, [0, 2]]
        return boxes

    def by_score(boxes, scores):
        order = np.lexsort((boxes[:, 0], -np.round(scores, 4)))
        return boxes[order], scores[order]

    flip = model_helpers.trained_run_folder(tmp_path / "flip", tta="flip")
    plain = model_helpers.trained_run_folder(tmp_path / "plain")
    assert detector_lib.load(flip).tta == "flip" and detector_lib.load(plain).tta == "none"
    asymmetric = 0
    for run in (flip, plain):
        for seen, mirrored in zip(detections(run, images), detections(run, mirrors), strict=True):
            same = len(seen["boxes"]) == len(mirrored["boxes"])
            if same:
                first = by_score(seen["boxes"], seen["scores"])
                second = by_score(unmirrored(mirrored), mirrored["scores"])
                same = np.allclose(first[1], second[1], atol=1e-4) and np.allclose(
                    first[0], second[0], atol=1e-2
                )
            if run == flip:
                assert same, (seen, mirrored)
            asymmetric += not same
    assert asymmetric, "one pass was symmetric too: the test cannot tell"


def test_every_predictor_applies_the_runs_tta(tmp_path):
    run = model_helpers.trained_run_folder(tmp_path / "run", tta="flip")
    images, _ = model_helpers.scene_set(3, seed=2, width=150, height=100)
    reference = detector_lib.load(run).predict(images, score_threshold=0.2)
    keras = export.load_predictor(run)
    assert keras.tta == "flip" and len(keras.preprocess(images)) == 6
    exported = tmp_path / "tflite"
    export.export(run, "tflite", exported, progress=False)
    tflite = export.load_predictor(exported)
    assert tflite.tta == "flip" and tflite.card["model"]["tta"] == "flip"
    card = (exported / export.CARD_MARKDOWN).read_text()
    assert "test-time augmentation (tta flip)" in card and "in one pass" in card
    for predictor, tolerance in ((keras, 1e-5), (tflite, 1e-3)):
        for ours, theirs in zip(
            predictor.predict(images, score_threshold=0.2), reference, strict=True
        ):
            assert ours["labels"] == theirs["labels"], predictor.name
            np.testing.assert_allclose(ours["scores"], theirs["scores"], atol=tolerance)
            np.testing.assert_allclose(ours["boxes"], theirs["boxes"], atol=tolerance * 100)
