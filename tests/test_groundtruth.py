"""The ground truth against a tracker: which object each track followed, and the counts."""

import pytest

from platelab import groundtruth


def _object(id_, label, box, difficult=False):
    return {"id": id_, "label": label, "box": box, "difficult": difficult}


def _truth(frames=3):
    """Two cars, a plate on the first, and a plate too small to count in every frame."""
    return {
        "frames": [
            {
                "objects": [
                    _object(1, "vehicle", [0, 0, 100, 60]),
                    _object(2, "vehicle", [200, 0, 300, 60]),
                    _object(3, "license_plate", [40, 40, 60, 50]),
                    _object(4, "license_plate", [240, 50, 246, 53], difficult=True),
                ]
            }
            for _ in range(frames)
        ]
    }


def test_object_under_picks_the_box_holding_the_centre_that_overlaps_most():
    objects = [
        _object(1, "vehicle", [0, 0, 100, 100]),
        _object(2, "vehicle", [40, 40, 60, 60]),
        _object(3, "license_plate", [45, 45, 55, 55]),
    ]
    assert groundtruth.object_under([42, 42, 58, 58], objects, "vehicle") == 2
    assert groundtruth.object_under([0, 0, 90, 90], objects, "vehicle") == 1
    assert groundtruth.object_under([45, 45, 55, 55], objects, "license_plate") == 3
    # The centre outside every box of the label: no object.
    assert groundtruth.object_under([150, 150, 160, 160], objects, "vehicle") is None
    assert groundtruth.object_under([0, 0, 20, 20], objects, "license_plate") is None


def test_breakdown_adds_up_to_the_tracks_and_leaves_out_objects_too_small_to_count():
    truth = _truth()
    log = []
    for frame in range(3):
        log += [
            (frame, 1, "vehicle", [2, 2, 98, 58]),  # car 1
            (frame, 2, "vehicle", [0, 0, 50, 58]),  # car 1 again, half of it: a fragment
            (frame, 3, "vehicle", [500, 0, 560, 40]),  # nothing there
            (frame, 4, "license_plate", [41, 41, 59, 49]),  # plate 3
            (frame, 5, "license_plate", [239, 49, 247, 54]),  # plate 4, difficult throughout
        ]
    log.append((7, 9, "vehicle", [200, 0, 300, 60]))  # a frame the truth does not have
    breakdown = groundtruth.track_breakdown(log, truth)
    assert breakdown["vehicle"] == {
        "tracks": 3, "objects": 2, "missed": 1, "fragments": 1, "false": 1, "ignored": 0,
    }  # fmt: skip
    assert breakdown["license_plate"] == {
        "tracks": 2, "objects": 1, "missed": 0, "fragments": 0, "false": 0, "ignored": 1,
    }  # fmt: skip
    for parts in breakdown.values():
        assert parts["tracks"] == (
            parts["objects"] - parts["missed"] + parts["fragments"] + parts["false"]
            + parts["ignored"]
        )  # fmt: skip
    table = groundtruth.track_breakdown_table(breakdown)
    assert list(table.index) == ["vehicle", "license_plate"]
    assert table.loc["license_plate", "tracks on objects too small to count"] == 1
    assert table.loc["license_plate", "tracks (the count)"] == 2


def test_tracks_and_objects_are_paired_one_to_one_by_the_frames_they_share():
    truth = _truth(frames=5)
    car1, car2 = [2, 2, 98, 58], [202, 2, 298, 58]
    # Track 1 lies on car 1 in every frame. Track 2 on car 1 three times, then hops to
    # car 2 twice: car 1 is track 1's, so track 2 follows car 2 (by its most frames it
    # would be an extra track on car 1, and car 2 missed).
    log = [(frame, 1, "vehicle", car1) for frame in range(5)]
    log += [(frame, 2, "vehicle", car1) for frame in range(3)]
    log += [(frame, 2, "vehicle", car2) for frame in range(3, 5)]
    followed = groundtruth.follow_tracks(log, truth)
    assert followed["vehicle"][2] == {1: 3, 2: 2}
    parts = groundtruth.count_breakdown(followed["vehicle"], truth, "vehicle")
    assert parts == {
        "tracks": 2, "objects": 2, "missed": 0, "fragments": 0, "false": 0, "ignored": 0
    }  # fmt: skip
    # Pairs go by the most frames shared: a third track, on car 2 in four frames, takes
    # it from track 2, which is then an extra track on car 1.
    log += [(frame, 3, "vehicle", car2) for frame in range(1, 5)]
    parts = groundtruth.track_breakdown(log, truth)["vehicle"]
    assert (parts["tracks"], parts["missed"], parts["fragments"]) == (3, 0, 1)
    # A plate track lying on the difficult plate twice and on plate 3 three times
    # follows plate 3; alone on the difficult plate it is ignored.
    log = [(frame, 1, "license_plate", [239, 49, 247, 54]) for frame in range(2)]
    log += [(frame, 1, "license_plate", [41, 41, 59, 49]) for frame in range(2, 5)]
    parts = groundtruth.track_breakdown(log, truth)["license_plate"]
    assert (parts["ignored"], parts["missed"]) == (0, 0)
    log = [(frame, 1, "license_plate", [239, 49, 247, 54]) for frame in range(5)]
    parts = groundtruth.track_breakdown(log, truth)["license_plate"]
    assert (parts["ignored"], parts["missed"]) == (1, 1)


def test_an_object_difficult_in_one_frame_only_is_counted():
    truth = _truth()
    truth["frames"][1]["objects"][3]["difficult"] = False
    assert groundtruth.distinct_objects(truth)["license_plate"] == 2
    log = [(frame, 5, "license_plate", [239, 49, 247, 54]) for frame in range(3)]
    parts = groundtruth.track_breakdown(log, truth)["license_plate"]
    assert (parts["tracks"], parts["ignored"], parts["missed"]) == (1, 0, 1)


@pytest.mark.parametrize("labels", [("vehicle",), ("license_plate",)])
def test_breakdown_only_for_the_labels_asked(labels):
    assert list(groundtruth.track_breakdown([], _truth(), labels)) == list(labels)
