"""The ranking's track evidence, step by step (platelab.review.tracking).

Template matching (``_locate``), one neighbour's findings (``_frame_findings``),
and how an image's findings combine into evidence and label votes
(``_combine_findings``): on drawn frames, and on findings written by hand.
"""

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest

from platelab import review
from platelab.review.evidence import DEFAULT_THRESHOLDS
from platelab.review.tracking import (
    Finding,
    Located,
    _combine_findings,
    _frame_findings,
    _locate,
    _match_confidence,
    _steady,
    _still_shift_evidence,
    _track_neighbours,
)

CAR = [40, 50, 88, 80]
"""The car's box in the first frame; it drives 12 px right per frame (0.5 s)."""


def _textured(rng, height, width, smooth=5):
    noise = rng.integers(0, 255, (height, width), np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), smooth)


def _moved(box, dx, dy=0):
    return [box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy]


def _object(label, bbox, **flags):
    return {
        "label": label,
        "original_label": label,
        "known": True,
        "bbox": [float(value) for value in bbox],
        "raw_bbox": [float(value) for value in bbox],
        "difficult": False,
        "occluded": flags.get("occluded", False),
        "truncated": False,
        "attributes": flags.get("attributes", {}),
    }


def _image(name, objects, time, path=None):
    return review.ReviewImage(
        batch="batch",
        name=name,
        image_path=Path(path or f"/nonexistent/{name}.png"),
        width=200,
        height=120,
        objects=objects,
        source_id="video",
        time=time,
    )


@pytest.fixture(scope="module")
def street():
    """A static textured street (grey, 120 x 200) and a car (30 x 48) with a bright plate."""
    rng = np.random.default_rng(7)
    background = _textured(rng, 120, 200)
    car = _textured(rng, 30, 48, smooth=1)
    car[22:28, 17:31] = 235
    car[24:26, 19:29:3] = 20
    return background, car


def _frame(street, x0, y0=50, scale=1.0):
    background, car = street
    pixels = background.copy()
    if scale != 1.0:
        car = cv2.resize(car, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    pixels[y0 : y0 + car.shape[0], x0 : x0 + car.shape[1]] = car
    return pixels


# --------------------------------------------------------------------------- template matching


def test_locate_follows_a_moved_object(street):
    box, ncc = _locate(CAR, _frame(street, 40), _frame(street, 52))
    assert box == pytest.approx(_moved(CAR, 12), abs=1.0)
    assert ncc > 0.9
    assert _match_confidence(ncc) > 0.8


def test_locate_searches_around_an_offset_within_the_radius(street):
    far = _frame(street, 140)  # 100 px on: beyond a box size and the margin
    found = _locate(CAR, _frame(street, 40), far)
    assert found is None or _match_confidence(found[1]) < 0.5
    box, ncc = _locate(CAR, _frame(street, 40), far, radius_factor=0.5, offset=(100.0, 0.0))
    assert box == pytest.approx(_moved(CAR, 100), abs=1.0) and ncc > 0.9


def test_locate_gives_up_on_a_flat_template():
    flat = np.full((120, 200), 128, np.uint8)
    assert _locate(CAR, flat, flat) is None
    assert _locate([5, 5, 6, 6], flat, flat) is None


def test_a_look_alike_in_the_window_lowers_the_match(street):
    background, car = street
    small = car[:16, :24]
    source, target, twice = background.copy(), background.copy(), background.copy()
    source[50:66, 40:64] = small
    target[50:66, 52:76] = small
    twice[50:66, 52:76] = small
    twice[50:66, 8:32] = small  # a look-alike further from where the object stood
    box, alone = _locate([40, 50, 64, 66], source, target)
    ambiguous_box, ambiguous = _locate([40, 50, 64, 66], source, twice)
    assert box == pytest.approx([52, 50, 76, 66], abs=1.0)
    assert ambiguous_box == pytest.approx(box, abs=1.0)  # the nearer of the two wins
    assert ambiguous < alone - 0.05
    unconcerned = dataclasses.replace(DEFAULT_THRESHOLDS, ambiguity=0.0)
    assert _locate([40, 50, 64, 66], source, twice, thresholds=unconcerned)[1] > ambiguous


def test_locate_finds_an_approaching_vehicle_at_another_size(street):
    source, target = _frame(street, 40), _frame(street, 52, scale=1.18)
    one_size = _locate(CAR, source, target)
    box, ncc = _locate(CAR, source, target, sizes=DEFAULT_THRESHOLDS.vehicle_sizes)
    assert ncc > one_size[1]
    assert box[2] - box[0] == pytest.approx(48 * 1.18)


@pytest.mark.parametrize(
    ("ncc", "confidence"), [(0.5, 0.0), (0.7, 0.0), (0.825, 0.5), (0.95, 1.0), (1.0, 1.0)]
)
def test_match_confidence_ramps_between_the_two_correlations(ncc, confidence):
    assert _match_confidence(ncc) == pytest.approx(confidence)


def test_track_neighbours_are_the_two_nearest_frames_within_the_gap():
    frames = [_image(f"f{number}", [], time) for number, time in enumerate([0, 0.5, 1, 1.5, 4])]
    photo = dataclasses.replace(frames[0], name="photo", source_id=None)
    neighbours = _track_neighbours([*reversed(frames), photo])
    names = {key: [image.name for image in found] for key, found in neighbours.items()}
    assert names == {
        "batch/f0": ["f1", "f2"],  # the video's start: two on one side
        "batch/f1": ["f0", "f2"],
        "batch/f2": ["f1", "f3"],
        "batch/f3": ["f2", "f1"],  # a gap after it
        "batch/f4": [],
    }
    assert _track_neighbours(
        frames, dataclasses.replace(DEFAULT_THRESHOLDS, track_max_gap=0.4)
    ) == {f"batch/f{number}": [] for number in range(5)}


# --------------------------------------------------------------------------- findings on drawn frames


def _video(street, tmp_path, written):
    """Three frames 0.5 s apart, the car driving right; ``written(frame, car, plate)`` gives the boxes."""
    images = []
    for frame in range(3):
        path = tmp_path / f"video_t{500 * frame:06d}.png"
        cv2.imwrite(str(path), _frame(street, 40 + 12 * frame))
        car = _moved(CAR, 12 * frame)
        plate = [car[0] + 17, car[1] + 22, car[0] + 31, car[1] + 28]
        images.append(_image(path.stem, written(frame, car, plate), 0.5 * frame, path))
    return images


def _findings(images):
    def grey(path):
        return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)

    middle = images[1]
    return [_frame_findings(middle, other, grey) for other in (images[0], images[2])]


def _written(mistake=None):
    def written(frame, car, plate):
        objects = [
            _object("vehicle", car),
            _object("license_plate", plate, attributes={"text": "AB 123"}),
        ]
        if frame == 1 and mistake == "missing":
            del objects[0]
        if frame == 1 and mistake == "shifted":
            objects[0]["bbox"] = _moved(car, 19, -12)
        if frame == 1 and mistake == "wrong_label":
            objects[0]["label"] = "license_plate"
        return objects

    return written


def test_frame_findings_find_the_plate_where_its_vehicle_went(street, tmp_path):
    images = _video(street, tmp_path, _written())
    finding = _findings(images)[0]
    assert isinstance(finding, Finding) and finding.neighbour is images[0]
    vehicle, plate = finding.located  # vehicles first
    assert vehicle.item["label"] == "vehicle" and vehicle.offset == (0.0, 0.0)
    assert vehicle.box == pytest.approx(_moved(CAR, 12), abs=1.0)
    assert vehicle.same[0] == 0 and vehicle.same[1] > 0.9
    assert plate.item["label"] == "license_plate"
    assert plate.offset == pytest.approx((12.0, 0.0), abs=1.0)  # searched where the car went
    assert plate.same[0] == 1 and plate.same[1] > 0.5
    assert plate.other[0] == 0  # the car's box, of the other label
    assert vehicle.returns is None  # not checked until it matters


def test_frame_findings_need_pixels_of_one_shape(street, tmp_path):
    images = _video(street, tmp_path, _written())
    assert _frame_findings(images[1], images[0], lambda path: None) is None
    shapes = {images[0].image_path: np.zeros((120, 200), np.uint8)}
    assert (
        _frame_findings(
            images[1], images[0], lambda path: shapes.get(path, np.zeros((60, 100), np.uint8))
        )
        is None
    )


def test_a_clean_frame_gives_no_evidence_and_votes_for_its_labels(street, tmp_path):
    images = _video(street, tmp_path, _written())
    evidence, votes = _combine_findings(images[1], _findings(images))
    assert evidence == []
    assert votes == {0: [2, 0], 1: [2, 0]}


@pytest.mark.parametrize(
    ("mistake", "kind", "index"), [("missing", "track_gap", None), ("shifted", "track_jump", 0)]
)
def test_both_neighbours_reveal_a_missing_or_shifted_box(street, tmp_path, mistake, kind, index):
    images = _video(street, tmp_path, _written(mistake))
    evidence, _ = _combine_findings(images[1], _findings(images))
    assert [(item.kind, item.object) for item in evidence] == [(kind, index)]
    assert evidence[0].strength >= 0.5
    message = evidence[0].message
    assert message.startswith("vehicle: both neighbouring frames show it at [")
    shown = [float(value) for value in message.split("[")[1].split("]")[0].split(",")]
    assert shown == pytest.approx(_moved(CAR, 12), abs=1.0)  # where the car is in the middle frame


def test_the_neighbours_vote_against_a_wrong_label(street, tmp_path):
    images = _video(street, tmp_path, _written("wrong_label"))
    evidence, votes = _combine_findings(images[1], _findings(images))
    assert evidence == []  # the label evidence covers it
    assert votes == {0: [0, 2], 1: [2, 0]}


def test_one_neighbour_alone_counts_less(street, tmp_path):
    images = _video(street, tmp_path, _written("missing"))
    first = _findings(images)[0]
    evidence, _ = _combine_findings(images[1], [first])
    assert [item.kind for item in evidence] == ["track_gap"]
    assert 0.05 <= evidence[0].strength <= DEFAULT_THRESHOLDS.single_neighbour
    assert "the frame at 0 s" in evidence[0].message


def test_the_other_neighbour_without_the_box_makes_the_first_the_odd_one_out(street, tmp_path):
    def written(frame, car, plate):
        objects = [_object("vehicle", car), _object("license_plate", plate)]
        return objects if frame == 0 else objects[1:]  # only the first frame boxes the car

    images = _video(street, tmp_path, written)
    findings = _findings(images)
    (alone,), _ = _combine_findings(images[1], findings[:1])
    (outvoted,), _ = _combine_findings(images[1], findings)
    assert outvoted.kind == "track_gap"
    assert outvoted.strength == pytest.approx(alone.strength * DEFAULT_THRESHOLDS.odd_one_out)


# --------------------------------------------------------------------------- findings written by hand


FLAT = np.zeros((120, 200), np.uint8)
"""Pixels of hand-written findings: flat, so nothing is found when a step looks again."""


def _hand_finding(neighbour, box, **located):
    """A finding of ``neighbour``'s first object at ``box`` in the image (its match checked already)."""
    entry = Located(
        item=neighbour.objects[0],
        box=[float(value) for value in box],
        ncc=located.pop("ncc", 0.95),
        offset=(0.0, 0.0),
        candidates=located.pop("candidates", []),
        other=located.pop("other", (None, 0.0)),
        same=located.pop("same", (None, 0.0)),
        returns=located.pop("returns", True),
    )
    return Finding(neighbour=neighbour, source=FLAT, target=FLAT, located=[entry])


def _hand_findings(image_objects=(), before=CAR, after=None, **located):
    """The image at 0.5 s, its neighbours at 0 and 1 s with a car at ``before`` and ``after``;
    both neighbours find their car at 52..100 in the image."""
    after = after or _moved(CAR, 24)
    flags = {"occluded": located.pop("occluded", False)}
    image = _image("middle", list(image_objects), 0.5)
    neighbours = [
        _image("before", [_object("vehicle", before, **flags)], 0.0),
        _image("after", [_object("vehicle", after, **flags)], 1.0),
    ]
    found = _moved(CAR, 12)
    return image, [_hand_finding(neighbour, found, **located) for neighbour in neighbours]


def test_combine_findings_both_neighbours_agree_on_a_missing_box():
    image, findings = _hand_findings()
    evidence, votes = _combine_findings(image, findings)
    assert [item.to_dict() for item in evidence] == [
        {
            "kind": "track_gap",
            "strength": 1.0,
            "object": None,
            "message": "vehicle: both neighbouring frames show it at [52, 50, 100, 80], no box there (missing)",
        }
    ]
    assert votes == {}


def test_combine_findings_weighs_hidden_objects_less():
    image, findings = _hand_findings(occluded=True)
    evidence, _ = _combine_findings(image, findings)
    assert evidence[0].strength == pytest.approx(DEFAULT_THRESHOLDS.hidden_factor)
    weaker = dataclasses.replace(DEFAULT_THRESHOLDS, hidden_factor=0.5)
    assert _combine_findings(image, findings, weaker)[0][0].strength == pytest.approx(0.5)


def test_combine_findings_drops_matches_that_do_not_lead_back_and_weak_ones():
    image, findings = _hand_findings(returns=False)
    assert _combine_findings(image, findings) == ([], {})
    image, findings = _hand_findings(ncc=0.7)  # no confidence at all
    assert _combine_findings(image, findings) == ([], {})


def test_combine_findings_turns_boxes_met_into_votes():
    box = _object("vehicle", _moved(CAR, 12))
    image, findings = _hand_findings([box], candidates=[(0, 0.9)], same=(0, 0.9))
    assert _combine_findings(image, findings) == ([], {0: [2, 0]})
    plate_box = _object("license_plate", _moved(CAR, 12))
    image, findings = _hand_findings([plate_box], other=(0, 0.9))
    assert _combine_findings(image, findings) == ([], {0: [0, 2]})
    image, findings = _hand_findings([plate_box], other=(0, 0.9), ncc=0.8)  # confidence 0.4
    assert _combine_findings(image, findings) == ([], {})


def test_combine_findings_names_the_box_that_is_off():
    off = _moved(CAR, 32)  # IoU 0.41 with where the car is
    image, findings = _hand_findings(
        [_object("vehicle", off)], candidates=[(0, 0.4118)], same=(0, 0.4118)
    )
    evidence, votes = _combine_findings(image, findings)
    assert [(item.kind, item.object) for item in evidence] == [("track_jump", 0)]
    assert evidence[0].strength == pytest.approx((0.5 - 0.4118) / 0.2)
    assert "box 0 is off (IoU 0.41)" in evidence[0].message
    assert votes == {}


def test_combine_findings_keeps_a_box_cut_by_an_occluder():
    cut = [
        52.0,
        50.0,
        70.0,
        80.0,
    ]  # the car's left part (IoU 0.375): its left, top and bottom edges
    image, findings = _hand_findings(
        [_object("vehicle", cut)], candidates=[(0, 0.375)], same=(0, 0.375)
    )
    assert _combine_findings(image, findings) == ([], {})
    shifted = [62.0, 56.0, 80.0, 86.0]  # as large, but off every edge
    image, findings = _hand_findings(
        [_object("vehicle", shifted)], candidates=[(0, 0.375)], same=(0, 0.375)
    )
    assert [item.kind for item in _combine_findings(image, findings)[0]] == ["track_jump"]


def test_combine_findings_counts_unsteady_neighbours_one_by_one():
    # The car seen driving right before and left after: two look-alikes, not one object.
    image, findings = _hand_findings(after=_moved(CAR, -18))
    assert not _steady(
        image, (findings[0], findings[0].located[0]), (findings[1], findings[1].located[0])
    )
    evidence, _ = _combine_findings(image, findings)
    single = (
        DEFAULT_THRESHOLDS.single_neighbour
    )  # the odd-one-out check finds nothing in flat pixels
    assert [(item.kind, item.strength) for item in evidence] == [("track_gap", single)] * 2
    assert [
        "the frame at 0 s" in evidence[0].message,
        "the frame at 1 s" in evidence[1].message,
    ] == [
        True,
        True,
    ]


def test_a_box_moved_off_a_still_object_is_a_jump():
    still = [
        _image(name, [_object("vehicle", CAR)], time) for name, time in (("a", 0.0), ("b", 1.0))
    ]
    findings = [Finding(neighbour=other, source=FLAT, target=FLAT, located=[]) for other in still]
    moved = _image(
        "middle",
        [_object("license_plate", [0, 0, 10, 5]), _object("vehicle", _moved(CAR, 20))],
        0.5,
    )
    (item,) = _still_shift_evidence(moved, findings)
    assert (item.kind, item.object, item.strength) == ("track_jump", 1, 0.8)
    assert "stood still at [40, 50, 88, 80]" in item.message
    assert _combine_findings(moved, findings)[0] == [item]
    resized = _image("middle", [_object("vehicle", [60, 50, 120, 80])], 0.5)
    assert _still_shift_evidence(resized, findings) == []  # another size: another object
    in_place = _image("middle", [_object("vehicle", _moved(CAR, 5))], 0.5)
    assert _still_shift_evidence(in_place, findings) == []
    assert _still_shift_evidence(moved, findings[:1]) == []
