"""Box overlap (intersection over union): the one home of every IoU in platelab.

Boxes are in pixels, as floats, and no ``+1`` is added to a width or height
(a box from x 10 to 20 is 10 pixels wide, as in COCO and TensorFlow, not 11
as in the old PASCAL VOC devkit). Two formats occur:

- ``xyxy``: ``[x1, y1, x2, y2]``, the top-left and bottom-right corners
  (the annotations, the merge, the review, the exports, the video tracker);
- ``xywh``: ``[x, y, width, height]``, the top-left corner and the size
  (COCO's evaluation, :mod:`platelab.evaluate`).

Which function to use:

- :func:`iou`: two single ``xyxy`` boxes, plain Python (fast in loops over a
  handful of boxes, as the merge and the review run them);
- :func:`iou_matrix`: every ``xyxy`` box of one array with every box of
  another, the same numbers as :func:`iou` pair by pair;
- :func:`overlap_matrix`: how much of the smaller box of each pair the other
  covers (intersection over the smaller area): 1 for a box inside another,
  where IoU is only their area ratio;
- :func:`nms_iou`: one ``xyxy`` box with many, as TensorFlow's non-maximum
  suppression computes it (corners in either order; an empty box overlaps
  nothing), so that NumPy NMS matches the exported models' own;
- :func:`greedy_nms`: non-maximum suppression over boxes already in the
  order to keep them (by :func:`nms_iou`, as TensorFlow's ``non_max_suppression``);
- :func:`coco_iou_pairs` and :func:`coco_iou_matrix`: ``xywh`` boxes as
  ``pycocotools`` computes them, with COCO's crowd rule.
"""

import numpy as np


def iou(first, second):
    """IoU of two ``xyxy`` boxes.

    A box whose corners are swapped (``x2 < x1`` or ``y2 < y1``) overlaps
    nothing. No ``+1`` pixel convention.

    Args:
        first: ``[x1, y1, x2, y2]`` (any sequence of 4 numbers)
        second: ``[x1, y1, x2, y2]``

    Returns:
        the IoU, a float from 0 to 1; 0.0 where the boxes do not overlap or
        their union is empty
    """
    x0, y0 = max(first[0], second[0]), max(first[1], second[1])
    x1, y1 = min(first[2], second[2]), min(first[3], second[3])
    intersection = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (first[2] - first[0]) * (first[3] - first[1]) + (second[2] - second[0]) * (
        second[3] - second[1]
    )
    union -= intersection
    return intersection / union if union > 0 else 0.0


def iou_matrix(first, second):
    """IoU of every ``xyxy`` box in ``first`` with every one in ``second``.

    Element ``[i, j]`` equals ``iou(first[i], second[j])``.

    Args:
        first: ``(M, 4)`` array of ``[x1, y1, x2, y2]`` rows
        second: ``(N, 4)`` array of ``[x1, y1, x2, y2]`` rows

    Returns:
        ``(M, N)`` float array of IoUs (0 where the union is empty)
    """
    intersection = _intersection_matrix(first, second)
    area_first = (first[:, 2] - first[:, 0]) * (first[:, 3] - first[:, 1])
    area_second = (second[:, 2] - second[:, 0]) * (second[:, 3] - second[:, 1])
    union = area_first[:, None] + area_second[None, :] - intersection
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, intersection / union, 0.0)


def _intersection_matrix(first, second):
    """``(M, N)`` intersection areas of every ``xyxy`` box pair (0 where apart)."""
    x0 = np.maximum(first[:, None, 0], second[None, :, 0])
    y0 = np.maximum(first[:, None, 1], second[None, :, 1])
    x1 = np.minimum(first[:, None, 2], second[None, :, 2])
    y1 = np.minimum(first[:, None, 3], second[None, :, 3])
    return np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)


def overlap_matrix(first, second):
    """Intersection over the smaller area, for every ``xyxy`` box pair.

    Element ``[i, j]`` is the share of the smaller of ``first[i]`` and
    ``second[j]`` that the other covers: 1.0 for a box that lies inside the
    other (a part of an object inside the whole), however small it is.

    Args:
        first: ``(M, 4)`` array of ``[x1, y1, x2, y2]`` rows
        second: ``(N, 4)`` array of ``[x1, y1, x2, y2]`` rows

    Returns:
        ``(M, N)`` float array from 0 to 1 (0 where the smaller box is empty)
    """
    intersection = _intersection_matrix(first, second)
    area_first = np.clip(first[:, 2] - first[:, 0], 0, None) * np.clip(
        first[:, 3] - first[:, 1], 0, None
    )
    area_second = np.clip(second[:, 2] - second[:, 0], 0, None) * np.clip(
        second[:, 3] - second[:, 1], 0, None
    )
    smaller = np.minimum(area_first[:, None], area_second[None, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(smaller > 0, intersection / smaller, 0.0)


def nms_iou(box, boxes):
    """IoU of one box with many, as TensorFlow's ``non_max_suppression`` computes it.

    Unlike :func:`iou`, the two corners may come in either order (each box is
    first put in ``x1 <= x2``, ``y1 <= y2`` order), and a box of zero area has
    IoU 0 with everything, itself included.

    Args:
        box: ``(4,)`` array, ``[x1, y1, x2, y2]``
        boxes: ``(N, 4)`` array of ``[x1, y1, x2, y2]`` rows

    Returns:
        ``(N,)`` float array of IoUs
    """
    x0 = np.minimum(box[0], box[2])
    y0 = np.minimum(box[1], box[3])
    x1 = np.maximum(box[0], box[2])
    y1 = np.maximum(box[1], box[3])
    bx0 = np.minimum(boxes[:, 0], boxes[:, 2])
    by0 = np.minimum(boxes[:, 1], boxes[:, 3])
    bx1 = np.maximum(boxes[:, 0], boxes[:, 2])
    by1 = np.maximum(boxes[:, 1], boxes[:, 3])
    area = (x1 - x0) * (y1 - y0)
    areas = (bx1 - bx0) * (by1 - by0)
    width = np.maximum(np.minimum(x1, bx1) - np.maximum(x0, bx0), 0.0)
    height = np.maximum(np.minimum(y1, by1) - np.maximum(y0, by0), 0.0)
    intersection = width * height
    union = area + areas - intersection
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((area > 0) & (areas > 0), intersection / union, 0.0)


def greedy_nms(boxes, order, iou_threshold, limit):
    """Greedy non-maximum suppression, as TensorFlow's ``non_max_suppression``.

    The first box of ``order`` is kept; every later box whose :func:`nms_iou` with it
    exceeds ``iou_threshold`` is dropped; and so on down the rest. A box exactly at
    ``iou_threshold`` is kept.

    Args:
        boxes: ``(N, 4)`` ``xyxy`` boxes (any unit)
        order: indices into ``boxes``, the best first (ties already broken)
        iou_threshold: IoU above which a box is suppressed
        limit: most boxes kept

    Returns:
        list of kept indices, in the order kept
    """
    kept = []
    remaining = np.asarray(order, np.int64)
    while len(remaining) and len(kept) < limit:
        best, rest = remaining[0], remaining[1:]
        kept.append(int(best))
        remaining = rest[nms_iou(boxes[best], boxes[rest]) <= iou_threshold]
    return kept


def coco_iou_pairs(det, gt, crowd):
    """IoU of paired ``xywh`` boxes, computed as ``pycocotools``' ``bbIou``.

    Against a crowd box the overlap is over the detection's own area
    (intersection / detection area), not over the union: COCO's rule, so that
    a detection inside a crowd region matches it.

    Args:
        det: ``(P, 4)`` array of detections, ``[x, y, width, height]`` rows
        gt: ``(P, 4)`` array of ground-truth boxes, ``[x, y, width, height]``,
            paired row by row with ``det``
        crowd: ``(P,)`` booleans, whether each ``gt`` box is a crowd box

    Returns:
        ``(P,)`` float array; 0 where a pair does not overlap
    """
    if not len(det):
        return np.zeros(0)
    det_area = det[:, 2] * det[:, 3]
    gt_area = gt[:, 2] * gt[:, 3]
    width = np.minimum(det[:, 2] + det[:, 0], gt[:, 2] + gt[:, 0]) - np.maximum(det[:, 0], gt[:, 0])
    height = np.minimum(det[:, 3] + det[:, 1], gt[:, 3] + gt[:, 1]) - np.maximum(
        det[:, 1], gt[:, 1]
    )
    intersection = width * height
    union = np.where(crowd, det_area, det_area + gt_area - intersection)
    with np.errstate(invalid="ignore", divide="ignore"):
        overlap = intersection / union
    return np.where((width > 0) & (height > 0), overlap, 0.0)


def coco_iou_matrix(det, gt, crowd):
    """IoU of every ``xywh`` detection with every ``xywh`` ground-truth box.

    Element ``[i, j]`` is :func:`coco_iou_pairs` of ``det[i]`` and ``gt[j]``.

    Args:
        det: ``(D, 4)`` array of ``[x, y, width, height]`` rows
        gt: ``(G, 4)`` array of ``[x, y, width, height]`` rows
        crowd: ``(G,)`` booleans, whether each ``gt`` box is a crowd box

    Returns:
        ``(D, G)`` float array
    """
    if not len(det) or not len(gt):
        return np.zeros((len(det), len(gt)))
    rows = np.repeat(np.arange(len(det)), len(gt))
    cols = np.tile(np.arange(len(gt)), len(det))
    return coco_iou_pairs(det[rows], gt[cols], np.asarray(crowd, dtype=bool)[cols]).reshape(
        len(det), len(gt)
    )
