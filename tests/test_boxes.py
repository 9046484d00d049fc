"""Box overlap (platelab.boxes): formats, edge cases, and agreement between the variants."""

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from platelab import boxes


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ([0, 0, 10, 10], [0, 0, 10, 10], 1.0),
        ([0, 0, 10, 10], [5, 0, 15, 10], 50 / 150),  # half of each: no +1 pixel
        ([0, 0, 10, 10], [2, 2, 4, 4], 4 / 100),  # one inside the other
        ([0, 0, 10, 10], [10, 0, 20, 10], 0.0),  # touching edges
        ([0, 0, 10, 10], [20, 20, 30, 30], 0.0),
        ([0.5, 0.5, 2.5, 1.5], [1.5, 0.5, 3.5, 1.5], 1 / 3),
        ([5, 5, 5, 5], [5, 5, 5, 5], 0.0),  # empty union
        ([10, 10, 0, 0], [0, 0, 10, 10], 0.0),  # swapped corners overlap nothing
    ],
)
def test_iou_of_two_xyxy_boxes(first, second, expected):
    assert boxes.iou(first, second) == pytest.approx(expected, abs=1e-12)
    assert boxes.iou(second, first) == pytest.approx(expected, abs=1e-12)
    assert isinstance(boxes.iou(first, second), float)


def test_iou_matrix_is_iou_pair_by_pair():
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 50, (2, 30, 2, 2))
    first = np.concatenate([corners[0].min(1), corners[0].max(1)], axis=1)
    second = np.concatenate([corners[1].min(1), corners[1].max(1)], axis=1)
    second[:4] = first[:4]  # some identical pairs
    second[4] = [60, 60, 70, 70]  # and one far away
    matrix = boxes.iou_matrix(first[:7], second)
    assert matrix.shape == (7, 30)
    expected = [[boxes.iou(a, b) for b in second] for a in first[:7]]
    np.testing.assert_allclose(matrix, expected, rtol=0, atol=1e-12)
    assert np.allclose(np.diag(matrix[:4, :4]), 1.0)
    assert boxes.iou_matrix(first, np.zeros((0, 4))).shape == (30, 0)


def test_overlap_matrix_is_over_the_smaller_box():
    whole = np.array([[0.0, 0.0, 100.0, 50.0]])
    others = np.array(
        [
            [10, 10, 30, 20],  # inside: 1 however small (IoU 0.04)
            [50, 0, 150, 50],  # half of each: 0.5
            [90, 0, 130, 50],  # a quarter of the smaller one
            [200, 0, 210, 10],  # apart
            [20, 20, 20, 40],  # empty: overlaps nothing
        ],
        float,
    )
    matrix = boxes.overlap_matrix(whole, others)
    np.testing.assert_allclose(matrix, [[1.0, 0.5, 0.25, 0.0, 0.0]], atol=1e-12)
    np.testing.assert_allclose(boxes.overlap_matrix(others, whole), matrix.T, atol=1e-12)
    assert boxes.iou_matrix(whole, others[:1])[0, 0] == pytest.approx(200 / 5000)
    assert boxes.overlap_matrix(whole, np.zeros((0, 4))).shape == (1, 0)


def test_nms_iou_takes_corners_in_either_order_and_empty_boxes_overlap_nothing():
    box = np.array([0.0, 0.0, 10.0, 10.0])
    others = np.array(
        [
            [5.0, 0.0, 15.0, 10.0],
            [15.0, 10.0, 5.0, 0.0],  # the same box, corners swapped
            [0.0, 0.0, 10.0, 10.0],
            [3.0, 3.0, 3.0, 8.0],  # zero width
            [20.0, 20.0, 30.0, 30.0],
        ]
    )
    np.testing.assert_allclose(boxes.nms_iou(box, others), [1 / 3, 1 / 3, 1.0, 0.0, 0.0])
    np.testing.assert_allclose(boxes.nms_iou(box[[2, 3, 0, 1]], others[:1]), [1 / 3])
    empty = np.array([4.0, 4.0, 4.0, 4.0])
    assert boxes.nms_iou(empty, others[2:3]).tolist() == [0.0]
    assert boxes.nms_iou(empty, empty[None]).tolist() == [0.0]  # not 0/0
    assert boxes.nms_iou(box, np.zeros((0, 4))).shape == (0,)


def test_greedy_nms_matches_tensorflows_non_max_suppression_also_on_equal_scores():
    from platelab.tfimport import import_tensorflow

    tf = import_tensorflow()
    rng = np.random.default_rng(1)
    candidates = rng.uniform(0, 40, (40, 4)).astype(np.float32)  # corners in any order
    scores = rng.uniform(0, 1, 40).astype(np.float32)
    scores[10:30] = 0.5  # equal scores: taken in index order by both
    order = np.argsort(-scores, kind="stable")
    for threshold, limit in [(0.3, 40), (0.1, 40), (0.3, 5)]:
        kept = boxes.greedy_nms(candidates, order, threshold, limit)
        # TensorFlow takes [y1, x1, y2, x2]
        expected = tf.image.non_max_suppression(
            candidates[:, [1, 0, 3, 2]], scores, limit, threshold
        )
        assert kept == expected.numpy().tolist()
    # IoU exactly at the threshold keeps the box (as TensorFlow does); above drops it
    square, half = np.array([[0, 0, 4, 4], [0, 0, 4, 2]], np.float32), np.array([0, 1])
    assert boxes.greedy_nms(square, half, 0.5, 10) == [0, 1]
    assert boxes.greedy_nms(square, half, 0.49, 10) == [0]
    assert boxes.greedy_nms(square, np.array([], np.int64), 0.5, 10) == []


def test_coco_iou_matches_pycocotools_with_crowd_boxes():
    rng = np.random.default_rng(2)
    det = np.column_stack([rng.uniform(0, 50, (12, 2)), rng.uniform(1, 30, (12, 2))])
    gt = np.column_stack([rng.uniform(0, 50, (9, 2)), rng.uniform(1, 30, (9, 2))])
    gt[0] = det[0]
    crowd = np.array([False, True, False, False, True, False, False, False, False])
    matrix = boxes.coco_iou_matrix(det, gt, crowd)
    assert matrix.shape == (12, 9)
    expected = coco_mask.iou(det.tolist(), gt.tolist(), crowd.astype(np.uint8).tolist())
    np.testing.assert_allclose(matrix, expected, rtol=0, atol=1e-9)
    assert matrix[0, 0] == pytest.approx(1.0)


def test_coco_crowd_overlap_is_over_the_detections_area():
    det = np.array([[2.0, 2.0, 4.0, 4.0]])  # xywh, inside the crowd box
    gt = np.array([[0.0, 0.0, 10.0, 10.0]])
    assert boxes.coco_iou_pairs(det, gt, np.array([True])).tolist() == [1.0]
    assert boxes.coco_iou_pairs(det, gt, np.array([False])).tolist() == [pytest.approx(0.16)]


def test_coco_iou_pairs_are_zero_apart_and_empty_for_no_pairs():
    det = np.array([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]])
    gt = np.array([[10.0, 0.0, 5.0, 5.0], [5.0, 5.0, 10.0, 10.0]])  # touching; overlapping
    np.testing.assert_allclose(
        boxes.coco_iou_pairs(det, gt, np.array([False, False])), [0.0, 25 / 175]
    )
    assert boxes.coco_iou_pairs(np.zeros((0, 4)), np.zeros((0, 4)), []).shape == (0,)
    assert boxes.coco_iou_matrix(det, np.zeros((0, 4)), []).shape == (2, 0)
    assert boxes.coco_iou_matrix(np.zeros((0, 4)), gt, [False, False]).shape == (0, 2)
