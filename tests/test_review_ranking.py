"""The likely-mistake ranking's thresholds, evidence and steps (platelab.review.evidence, .ranking, .outliers)."""

import ast
import dataclasses
import inspect
from pathlib import Path

import pytest

from platelab import review
from platelab.review import evidence as evidence_module
from platelab.review.evidence import DEFAULT_THRESHOLDS, Evidence, RankingThresholds
from platelab.review.outliers import _label_outlier_evidence, _out_of_fold_probabilities
from platelab.review.ranking import (
    _duplicate_evidence,
    _label_votes_evidence,
    _plate_outside_evidence,
    _score,
    _weigh_label_outliers,
)


def _object(label, bbox, **flags):
    return {
        "label": label,
        "original_label": label,
        "known": True,
        "bbox": [float(value) for value in bbox],
        "raw_bbox": [float(value) for value in bbox],
        "difficult": flags.get("difficult", False),
        "occluded": False,
        "truncated": False,
        "attributes": {},
    }


def _image(name, objects, width=200, height=120, **extra):
    return review.ReviewImage(
        batch="batch",
        name=name,
        image_path=Path(f"/nonexistent/{name}.png"),
        width=width,
        height=height,
        objects=objects,
        **extra,
    )


# --------------------------------------------------------------------------- thresholds and evidence


def test_thresholds_are_one_frozen_dataclass_with_a_docstring_per_field():
    thresholds = RankingThresholds()
    assert thresholds == DEFAULT_THRESHOLDS
    with pytest.raises(dataclasses.FrozenInstanceError):
        thresholds.same_place = 0.3
    tree = ast.parse(inspect.getsource(RankingThresholds))
    body = tree.body[0].body
    documented = {
        statement.target.id
        for statement, following in zip(body, body[1:], strict=False)
        if isinstance(statement, ast.AnnAssign)
        and isinstance(following, ast.Expr)
        and isinstance(following.value, ast.Constant)
        and isinstance(following.value.value, str)
    }
    fields = {item.name for item in dataclasses.fields(RankingThresholds)}
    assert fields - documented == set()
    hash(thresholds)  # truly immutable: usable as a cache key


def test_the_single_modules_constants_are_the_default_thresholds():
    assert review.TRACK_MAX_GAP == DEFAULT_THRESHOLDS.track_max_gap == 1.5
    assert review.MATCH_NCC == DEFAULT_THRESHOLDS.match_ncc == (0.7, 0.95)
    assert review.MATCH_SAME_PLACE == DEFAULT_THRESHOLDS.same_place == 0.5
    assert DEFAULT_THRESHOLDS.vehicle_sizes == review.VEHICLE_SIZES
    assert review.SINGLE_NEIGHBOUR == DEFAULT_THRESHOLDS.single_neighbour == 0.4
    assert review.HIDDEN_FACTOR == DEFAULT_THRESHOLDS.hidden_factor == 0.85
    assert review.APPEARANCE_SIZE == DEFAULT_THRESHOLDS.appearance_size == (6, 3)
    assert {kind: 1.0 for kind in evidence_module.EVIDENCE_KINDS} == review.EVIDENCE_WEIGHTS
    assert DEFAULT_THRESHOLDS.enclosed_fraction == review.ENCLOSED_FRACTION
    assert dict(DEFAULT_THRESHOLDS.tiny_box_pixels) == review.TINY_BOX_PIXELS
    assert DEFAULT_THRESHOLDS.tiny_limit("vehicle") == 8.0
    assert DEFAULT_THRESHOLDS.tiny_limit("bicycle") == 3.0  # the smallest limit for other labels


def test_evidence_becomes_the_rankings_dict():
    item = Evidence(kind="duplicate", strength=0.5, object=1, message="m")
    assert item.to_dict() == {"kind": "duplicate", "strength": 0.5, "object": 1, "message": "m"}
    assert list(item.to_dict()) == ["kind", "strength", "object", "message"]


# --------------------------------------------------------------------------- the score


def test_score_is_the_strongest_plus_a_share_of_the_rest():
    weak = Evidence("track_gap", 0.2, None, "weak")
    strong = Evidence("duplicate", 0.9, 1, "strong")
    found, score = _score([weak, strong])
    assert found == [strong, weak]
    assert score == pytest.approx(0.9 + 0.3 * 0.2)
    assert _score([]) == ([], 0.0)
    halved = dataclasses.replace(
        DEFAULT_THRESHOLDS,
        evidence_weights=(("duplicate", 0.1), *DEFAULT_THRESHOLDS.evidence_weights[1:]),
    )
    found, score = _score([weak, strong], halved)
    assert found == [weak, strong]  # the duplicate now weighs 0.09
    assert score == pytest.approx(0.2 + 0.3 * 0.09)


def test_rank_images_takes_other_thresholds():
    images = [
        _image(
            "two_hints",
            [
                _object("license_plate", [150, 100, 170, 110]),
                _object("license_plate", [10, 100, 30, 110]),
                _object("vehicle", [100, 10, 140, 40]),
            ],
        ),
        _image("clean", [_object("vehicle", [10, 10, 60, 50])]),
    ]
    ranking = review.rank_images(images, read_image=lambda path: None)
    assert [item["key"] for item in ranking] == ["batch/two_hints", "batch/clean"]
    assert ranking[0]["score"] == pytest.approx(1.3)
    assert [entry["kind"] for entry in ranking[0]["evidence"]] == ["plate_outside_vehicle"] * 2
    assert ranking[1]["score"] == 0 and ranking[1]["evidence"] == []
    alone = dataclasses.replace(DEFAULT_THRESHOLDS, rest_weight=0.0)
    assert review.rank_images(images, read_image=lambda path: None, thresholds=alone)[0][
        "score"
    ] == pytest.approx(1.0)


# --------------------------------------------------------------------------- duplicates and lonely plates


@pytest.mark.parametrize(
    ("second", "strength"),
    [
        ([10, 10, 60, 50], 1.0),  # drawn twice
        ([10, 10, 60, 42], pytest.approx(0.5)),  # IoU 0.8: half way up the ramp
        ([30, 10, 80, 50], None),  # IoU 0.43: two objects
    ],
)
def test_duplicate_evidence_ramps_with_overlap(second, strength):
    image = _image("pair", [_object("vehicle", [10, 10, 60, 50]), _object("vehicle", second)])
    found = _duplicate_evidence(image)
    if strength is None:
        assert found == []
        return
    assert [(item.kind, item.object) for item in found] == [("duplicate", 1)]
    assert found[0].strength == strength


def test_duplicate_evidence_of_other_labels_and_other_thresholds():
    other_label = _image(
        "mixed", [_object("vehicle", [10, 10, 60, 50]), _object("license_plate", [10, 10, 60, 50])]
    )
    assert _duplicate_evidence(other_label) == []
    pair = _image(
        "pair", [_object("vehicle", [10, 10, 60, 50]), _object("vehicle", [10, 10, 60, 42])]
    )
    assert _duplicate_evidence(pair)[0].strength == pytest.approx(0.5)  # IoU 0.8
    stricter = dataclasses.replace(DEFAULT_THRESHOLDS, duplicate_overlap_from=0.85)
    assert _duplicate_evidence(pair, thresholds=stricter) == []


def test_a_near_identical_tiny_pair_counts_little_where_a_neighbour_holds_two_boxes_too():
    tiny = [_object("vehicle", [10, 10, 15, 15]), _object("vehicle", [11, 10, 16, 15])]
    image = _image("row", tiny)  # IoU 0.67: no duplicate by overlap, but every edge within 1.5 px
    assert _duplicate_evidence(image)[0].strength == 1.0
    one_box = _image("before", [_object("vehicle", [10.5, 10, 15.5, 15])])
    assert _duplicate_evidence(image, [one_box])[0].strength == 1.0
    two_boxes = _image(
        "after", [_object("vehicle", [9.5, 10, 14.5, 15]), _object("vehicle", [11.5, 10, 16.5, 15])]
    )
    assert (
        _duplicate_evidence(image, [two_boxes])[0].strength
        == DEFAULT_THRESHOLDS.duplicate_row_strength
    )


@pytest.mark.parametrize(
    ("plate", "strength"),
    [
        ([150, 100, 170, 110], 1.0),  # outside
        ([45, 40, 65, 50], 1.0 - 0.25 / 0.5),  # a quarter inside
        ([20, 20, 40, 30], None),  # inside
    ],
)
def test_plate_outside_evidence_is_stronger_the_less_inside(plate, strength):
    image = _image("plate", [_object("vehicle", [0, 0, 55, 45]), _object("license_plate", plate)])
    found = _plate_outside_evidence(image)
    if strength is None:
        assert found == []
        return
    assert [(item.kind, item.object) for item in found] == [("plate_outside_vehicle", 1)]
    assert found[0].strength == pytest.approx(strength)


# --------------------------------------------------------------------------- label evidence and votes


@pytest.mark.parametrize(
    ("votes", "difficult", "strength", "said"),
    [
        ((2, 0), False, 0.8 * 0.25, "agree with the label"),
        ((0, 2), False, 1.0, "label it otherwise"),
        ((0, 1), False, 0.8, "label it otherwise"),  # at least 0.5 per neighbour: 0.8 stays
        ((0, 0), False, 0.8 * 0.6, None),
        ((1, 1), True, 0.8 * 0.6 * 0.6, None),
    ],
)
def test_label_outliers_are_weighed_by_the_neighbouring_frames(votes, difficult, strength, said):
    image = _image(
        "label",
        [
            _object("vehicle", [0, 0, 50, 40]),
            _object("license_plate", [0, 0, 50, 40], difficult=difficult),
        ],
    )
    evidence = {
        image.key: [Evidence("label_outlier", 0.8, 1, "m"), Evidence("duplicate", 0.8, 1, "d")]
    }
    _weigh_label_outliers([image], evidence, {image.key: {1: list(votes)}})
    outlier, duplicate = evidence[image.key]
    assert outlier.strength == pytest.approx(strength)
    if said:
        assert said in outlier.message
    else:
        assert outlier.message == "m"
    assert (duplicate.strength, duplicate.message) == (0.8, "d")  # other kinds untouched


def test_boxes_both_neighbours_label_otherwise_become_label_evidence():
    image = _image(
        "votes", [_object("vehicle", [0, 0, 50, 40]), _object("vehicle", [60, 0, 110, 40])]
    )
    evidence = {image.key: []}
    _label_votes_evidence([image], {image.key: {0: [0, 2], 1: [0, 1]}}, evidence)
    assert [(item.kind, item.object, item.strength) for item in evidence[image.key]] == [
        ("label_outlier", 0, 0.7)
    ]
    assert "both neighbouring frames label it otherwise" in evidence[image.key][0].message
    # A box the label evidence already names, or one a neighbour agrees with, adds nothing.
    flagged = {image.key: [Evidence("label_outlier", 0.3, 0, "m")]}
    _label_votes_evidence([image], {image.key: {0: [0, 2], 1: [1, 2]}}, flagged)
    assert len(flagged[image.key]) == 1


def test_a_box_shaped_like_the_other_class_is_a_label_outlier():
    images = []
    for number in range(60):
        x = 5 + 3 * (number % 6)
        objects = [
            _object("vehicle", [x, 20, x + 90, 80]),
            _object("license_plate", [x + 35, 65, x + 55, 72]),
        ]
        if number == 7:
            objects[0]["label"] = "license_plate"  # a vehicle labelled a plate
        images.append(_image(f"frame{number:02d}", objects))
    found = _label_outlier_evidence(images, seed=0)
    assert set(found) == {"batch/frame07"}
    (item,) = found["batch/frame07"]
    assert (item.kind, item.object) == ("label_outlier", 0)
    assert item.strength > 0.5 and "looks like a vehicle" in item.message


def test_out_of_fold_probabilities_need_enough_boxes_of_two_classes():
    import numpy as np

    rows = np.arange(40, dtype=float).reshape(20, 2)
    groups = np.arange(20)
    assert _out_of_fold_probabilities(rows[:19], np.arange(19) % 2, groups[:19], seed=0) is None
    assert _out_of_fold_probabilities(rows, np.zeros(20, int), groups, seed=0) is None
    assert _out_of_fold_probabilities(rows, np.arange(20) % 2, np.zeros(20, int), seed=0) is None
    probabilities = _out_of_fold_probabilities(rows, (np.arange(20) >= 10).astype(int), groups, 0)
    assert probabilities.shape == (20, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
