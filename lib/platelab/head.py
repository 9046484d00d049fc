"""The detector's head as one object: its anchors, training targets, loss and decoding.

:class:`DetectionHead` owns everything that ties the network's outputs to boxes, in
the manner of keras-io RetinaNet's ``LabelEncoder`` and ``DecodePredictions``:

* **geometry**: :meth:`DetectionHead.anchors` lays the anchor spec out over an input of
  any ``(height, width)`` (a 320x320 training crop, a 960x576 whole frame);
* **targets**: :meth:`DetectionHead.encode` assigns boxes to anchors, by ATSS
  (adaptive training sample selection: per level the ``topk`` anchors nearest each
  box, kept where their IoU reaches the mean plus one standard deviation of those
  candidates' IoUs and their centre lies inside the box) or by SSD's fixed IoU
  threshold. ATSS gives a plate 8 px high the same few positives as a bus, where a
  fixed IoU threshold gives it none;
* **loss**: :meth:`DetectionHead.loss`, focal cross-entropy over every anchor (or SSD's
  hard-negative mining) plus a GIoU loss on the decoded boxes (or SSD's Huber loss on
  the deltas);
* **decoding**: :meth:`DetectionHead.decode`, softmax scores and per-class NMS.

Boxes are ``[xmin, ymin, xmax, ymax]`` fractions of the network input; class ids are
1-based, 0 background and :data:`IGNORE` neither positive nor negative (anchors on
*difficult* boxes, such as plates too small to read).

TensorFlow is imported inside the methods: importing it takes seconds.
"""

import dataclasses
import logging

import numpy as np

from platelab import model as model_lib
from platelab.tfimport import import_tensorflow

logger = logging.getLogger(__name__)

IGNORE = -1
"""Class target of an anchor left out of the loss."""

BACKGROUND_PRIOR = 0.01
"""Initial foreground probability of every anchor (RetinaNet's prior): the class
layers' biases start there so that the focal loss does not open with a burst from
thousands of background anchors."""


MIN_CENTRE_REGION = 12.0
"""ATSS's anchor-centre test treats a box as at least this many pixels wide and high."""


@dataclasses.dataclass(frozen=True)
class HeadConfig:
    """How targets are assigned and the loss is computed.

    Attributes:
        assigner: ``"atss"`` or ``"iou"`` (SSD: IoU at least ``match_iou``, and each
            box's best anchor)
        atss_topk: ATSS candidates per level and box
        match_iou: the ``iou`` assigner's threshold
        class_loss: ``"focal"`` (every anchor, easy ones down-weighted) or ``"ohem"``
            (SSD's hard-negative mining, ``neg_pos_ratio`` negatives per positive)
        focal_gamma: the focal loss's focusing exponent
        neg_pos_ratio: ``ohem``'s negatives per positive
        box_loss: ``"giou"`` (on decoded boxes) or ``"huber"`` (on the deltas)
        box_weight: weight of the box loss against the class loss
        ignore_iou: background anchors overlapping a difficult box at least this much
            are ignored as well
    """

    assigner: str = "atss"
    atss_topk: int = 9
    match_iou: float = 0.5
    class_loss: str = "focal"
    focal_gamma: float = 2.0
    neg_pos_ratio: float = 3.0
    box_loss: str = "giou"
    box_weight: float = 2.0
    ignore_iou: float = 0.3

    def __post_init__(self):
        if self.assigner not in ("atss", "iou"):
            raise ValueError(f"unknown assigner {self.assigner!r} (atss or iou)")
        if self.class_loss not in ("focal", "ohem"):
            raise ValueError(f"unknown class_loss {self.class_loss!r} (focal or ohem)")
        if self.box_loss not in ("giou", "huber"):
            raise ValueError(f"unknown box_loss {self.box_loss!r} (giou or huber)")
        if self.atss_topk < 1:
            raise ValueError(f"atss_topk must be at least 1, got {self.atss_topk}")

    @classmethod
    def from_dict(cls, values):
        """A config from a dict (None or missing keys: the defaults), unknown keys left out."""
        known = {item.name for item in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in (values or {}).items() if key in known})

    def to_dict(self):
        return dataclasses.asdict(self)


class DetectionHead:
    """Anchors, target encoding, loss and decoding of one detector.

    Args:
        anchor_spec: the model's anchor spec (see :mod:`platelab.model`)
        num_classes: object classes, background not counted
        config: a :class:`HeadConfig` (or a dict of its fields)
    """

    def __init__(self, anchor_spec, num_classes, config=None):
        self.anchor_spec = anchor_spec
        self.num_classes = int(num_classes)
        if config is None or isinstance(config, dict):
            config = HeadConfig.from_dict(config)
        self.config = config
        self._anchors = {}

    # -- geometry -------------------------------------------------------------------

    def anchors(self, shape):
        """``(N, 4)`` float32 anchors (fractions) for a ``(height, width)`` input (cached)."""
        shape = model_lib._input_shape(shape)
        if shape not in self._anchors:
            self._anchors[shape] = model_lib.generate_anchors(self.anchor_spec, shape)
        return self._anchors[shape]

    def level_counts(self, shape):
        """Anchors per level, in output order (the ATSS per-level candidate blocks)."""
        return [count for _, count in model_lib.anchors_per_level(self.anchor_spec, shape)]

    # -- targets --------------------------------------------------------------------

    def encode(self, boxes, classes, difficult, shape):
        """Training targets of one image (works inside ``tf.data``).

        Args:
            boxes: ``(G, 4)`` fractions of the input; classes ``(G,)`` 1-based, rows
                with 0 are padding; difficult ``(G,)`` bool (ignored boxes)
            shape: the input's ``(height, width)``

        Returns:
            ``(class_targets, box_targets)``: ``(N,)`` int32 (0 background, -1
            ignored) and ``(N, 4)`` float32 deltas (zeros where not positive)
        """
        tf = import_tensorflow()
        anchors = tf.constant(self.anchors(shape))
        classes = tf.cast(tf.reshape(classes, [-1]), tf.int32)
        kept = classes > 0
        boxes = tf.boolean_mask(tf.reshape(tf.cast(boxes, tf.float32), [-1, 4]), kept)
        difficult = tf.boolean_mask(tf.cast(tf.reshape(difficult, [-1]), tf.bool), kept)
        classes = tf.boolean_mask(classes, kept)
        # One padding box far outside the image keeps every array non-empty.
        boxes = tf.concat([boxes, tf.constant([[-3.0, -3.0, -2.0, -2.0]])], axis=0)
        classes = tf.concat([classes, tf.zeros([1], tf.int32)], axis=0)
        difficult = tf.concat([difficult, tf.zeros([1], tf.bool)], axis=0)
        valid = classes > 0
        if self.config.assigner == "atss":
            positive, matched, iou = self._assign_atss(anchors, boxes, valid, shape)
        else:
            positive, matched, iou = self._assign_iou(anchors, boxes, valid)
        matched_class = tf.gather(classes, matched)
        matched_difficult = tf.gather(difficult, matched)
        class_targets = tf.where(positive & ~matched_difficult, matched_class, 0)
        # Anchors on (or overlapping) a difficult box are neither positive nor negative.
        hard_iou = tf.reduce_max(tf.where(difficult[None, :], iou, 0.0), axis=1)
        ignored = (positive & matched_difficult) | (
            (class_targets == 0) & (hard_iou >= self.config.ignore_iou)
        )
        class_targets = tf.where(ignored, IGNORE, class_targets)
        matched_boxes = tf.gather(boxes, matched)
        box_targets = encode_deltas(anchors, matched_boxes)
        box_targets = tf.where((class_targets > 0)[:, None], box_targets, 0.0)
        return tf.cast(class_targets, tf.int32), tf.cast(box_targets, tf.float32)

    def _assign_iou(self, anchors, boxes, valid):
        """SSD matching: IoU at least ``match_iou``, plus each box's best anchor."""
        tf = import_tensorflow()
        count = tf.shape(anchors)[0]
        iou = tf.where(valid[None, :], _pairwise_iou(tf, anchors, boxes), -1.0)  # (N, G)
        best_anchor = tf.argmax(iou, axis=0, output_type=tf.int32)  # (G,)
        forced = (tf.range(count)[:, None] == best_anchor[None, :]) & valid[None, :]
        score = tf.where(forced, 2.0, iou)
        matched = tf.argmax(score, axis=1, output_type=tf.int32)
        positive = tf.reduce_max(score, axis=1) >= self.config.match_iou
        return positive, tf.where(positive, matched, 0), tf.maximum(iou, 0.0)

    def _assign_atss(self, anchors, boxes, valid, shape):
        """ATSS (Zhang et al., 2020): adaptive IoU threshold over per-level nearest anchors."""
        tf = import_tensorflow()
        height, width = model_lib._input_shape(shape)
        scale = tf.constant([width, height, width, height], tf.float32)
        anchors_px, boxes_px = anchors * scale, boxes * scale
        count = int(anchors.shape[0])
        iou = _pairwise_iou(tf, anchors_px, boxes_px)  # (N, G)
        anchor_centre = (anchors_px[:, :2] + anchors_px[:, 2:]) / 2
        box_centre = (boxes_px[:, :2] + boxes_px[:, 2:]) / 2
        distance = tf.norm(anchor_centre[:, None, :] - box_centre[None, :, :], axis=-1)
        # Per level, the topk anchors nearest each box: those within its k-th smallest
        # distance (a tie may add one; no one-hot of N anchors per box is built).
        blocks, start = [], 0
        for level_count in self.level_counts(shape):
            k = min(self.config.atss_topk, level_count)
            block = distance[start : start + level_count]  # (n, G)
            kth = -tf.math.top_k(-tf.transpose(block), k).values[:, -1]  # (G,)
            blocks.append(block <= kth[None, :])
            start += level_count
        candidate = tf.concat(blocks, axis=0)  # (N, G)
        candidate_iou = tf.where(candidate, iou, 0.0)
        number = tf.maximum(tf.reduce_sum(tf.cast(candidate, tf.float32), axis=0), 1.0)
        mean = tf.reduce_sum(candidate_iou, axis=0) / number
        variance = tf.reduce_sum(
            tf.where(candidate, (iou - mean[None, :]) ** 2, 0.0), axis=0
        ) / number  # fmt: skip
        threshold = mean + tf.sqrt(variance)
        # The centre test, on boxes widened to at least MIN_CENTRE_REGION px: a plate
        # 8 px high can fall between two rows of stride-8 centres.
        half = tf.maximum((boxes_px[:, 2:] - boxes_px[:, :2]) / 2, MIN_CENTRE_REGION / 2)
        offset = tf.abs(anchor_centre[:, None, :] - box_centre[None, :, :])  # (N, G, 2)
        inside = tf.reduce_all(offset < half[None, :, :], axis=-1)
        positive = candidate & (iou >= threshold[None, :]) & inside & valid[None, :]
        # A box left without a positive (tiny, or between anchor centres) gets its best
        # candidate: every box teaches something.
        lonely = ~tf.reduce_any(positive, axis=0) & valid  # (G,)
        best = tf.argmax(tf.where(candidate, iou, -1.0), axis=0, output_type=tf.int32)
        forced = (tf.range(count)[:, None] == best[None, :]) & lonely[None, :]
        positive = positive | forced
        score = tf.where(positive, iou, -1.0)
        matched = tf.argmax(score, axis=1, output_type=tf.int32)
        any_positive = tf.reduce_any(positive, axis=1)
        return any_positive, tf.where(any_positive, matched, 0), tf.where(valid[None, :], iou, 0.0)

    # -- loss -----------------------------------------------------------------------

    def loss(self, class_targets, box_targets, class_logits, box_deltas, shape):
        """The batch's class and box losses, each divided by the number of positives.

        Args:
            class_targets: ``(B, N)`` int (0 background, -1 ignored)
            box_targets: ``(B, N, 4)`` encoded deltas
            class_logits: ``(B, N, C + 1)`` the model's logits
            box_deltas: ``(B, N, 4)`` the model's deltas
            shape: the input's ``(height, width)`` (anchors for the GIoU loss)

        Returns:
            ``(class_loss, box_loss)`` float32 scalars
        """
        tf = import_tensorflow()
        class_targets = tf.cast(class_targets, tf.int32)
        class_logits = tf.cast(class_logits, tf.float32)
        box_deltas = tf.cast(box_deltas, tf.float32)
        box_targets = tf.cast(box_targets, tf.float32)
        positive = class_targets > 0
        positives = tf.maximum(tf.reduce_sum(tf.cast(positive, tf.float32)), 1.0)
        cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.maximum(class_targets, 0), logits=class_logits
        )
        if self.config.class_loss == "focal":
            weight = (1.0 - tf.exp(-cross_entropy)) ** self.config.focal_gamma
            counted = tf.cast(class_targets >= 0, tf.float32)
            class_loss = tf.reduce_sum(weight * cross_entropy * counted) / positives
        else:
            class_loss = _hard_negative_loss(
                tf, class_targets, cross_entropy, self.config.neg_pos_ratio, positives
            )
        mask = tf.cast(positive, tf.float32)
        if self.config.box_loss == "giou":
            anchors = tf.constant(self.anchors(shape))
            predicted = decode_deltas(box_deltas, anchors)
            target = decode_deltas(box_targets, anchors)
            per_anchor = 1.0 - _giou(tf, predicted, target)
        else:
            difference = tf.abs(box_targets - box_deltas)
            per_anchor = tf.reduce_sum(
                tf.where(difference < 1.0, 0.5 * difference**2, difference - 0.5), axis=-1
            )
        box_loss = self.config.box_weight * tf.reduce_sum(per_anchor * mask) / positives
        return class_loss, box_loss

    # -- decoding -------------------------------------------------------------------

    def decode(
        self, class_logits, box_deltas, shape, score_threshold, iou_threshold, max_detections
    ):
        """Scores, boxes and per-class NMS (:func:`platelab.model.postprocess`)."""
        return model_lib.postprocess(
            class_logits,
            box_deltas,
            self.anchors(shape),
            score_threshold=score_threshold,
            iou_threshold=iou_threshold,
            max_detections=max_detections,
        )


def set_background_prior(net, num_classes, prior=BACKGROUND_PRIOR):
    """Starts every anchor's background probability at ``1 - prior`` (the class layers' biases).

    Args:
        net: a model from :func:`platelab.model.build_ssd`
        num_classes: object classes, background not counted
        prior: the starting probability of the object classes together
    """
    background = float(np.log((1.0 - prior) / prior * num_classes))
    for layer in net.layers:
        if layer.name.endswith("_cls_out"):
            bias = np.zeros(layer.bias.shape, np.float32)
            bias[:: num_classes + 1] = background
            layer.bias.assign(bias)


def encode_deltas(anchors, boxes):
    """SSD deltas of ``boxes`` against ``anchors`` (both ``(..., 4)`` xyxy fractions)."""
    tf = import_tensorflow()
    variance = tf.constant(model_lib.BOX_VARIANCE, tf.float32)
    anchor_wh = tf.maximum(anchors[..., 2:] - anchors[..., :2], 1e-6)
    anchor_centre = (anchors[..., :2] + anchors[..., 2:]) / 2
    box_wh = tf.maximum(boxes[..., 2:] - boxes[..., :2], 1e-6)
    box_centre = (boxes[..., :2] + boxes[..., 2:]) / 2
    offset = (box_centre - anchor_centre) / anchor_wh  # x, y
    log_size = tf.math.log(box_wh / anchor_wh)  # w, h
    deltas = tf.stack([offset[..., 1], offset[..., 0], log_size[..., 1], log_size[..., 0]], -1)
    return deltas / variance


def decode_deltas(deltas, anchors):
    """Boxes (xyxy fractions) from SSD deltas ``(..., N, 4)`` against ``(N, 4)`` anchors."""
    tf = import_tensorflow()
    deltas = deltas * tf.constant(model_lib.BOX_VARIANCE, tf.float32)
    anchor_wh = anchors[..., 2:] - anchors[..., :2]
    anchor_centre = (anchors[..., :2] + anchors[..., 2:]) / 2
    centre = tf.stack([deltas[..., 1], deltas[..., 0]], -1) * anchor_wh + anchor_centre
    # Clip the log-size so that a wild early prediction cannot overflow exp.
    size = tf.exp(tf.minimum(tf.stack([deltas[..., 3], deltas[..., 2]], -1), 4.0)) * anchor_wh
    return tf.concat([centre - size / 2, centre + size / 2], axis=-1)


def _pairwise_iou(tf, first, second):
    """``(N, G)`` IoU of two sets of xyxy boxes."""
    top_left = tf.maximum(first[:, None, :2], second[None, :, :2])
    bottom_right = tf.minimum(first[:, None, 2:], second[None, :, 2:])
    overlap = tf.reduce_prod(tf.maximum(bottom_right - top_left, 0.0), axis=-1)
    area_first = tf.reduce_prod(first[:, 2:] - first[:, :2], axis=-1)
    area_second = tf.reduce_prod(second[:, 2:] - second[:, :2], axis=-1)
    return overlap / tf.maximum(area_first[:, None] + area_second[None, :] - overlap, 1e-9)


def _giou(tf, first, second):
    """Element-wise generalised IoU of two ``(..., 4)`` xyxy box arrays."""
    top_left = tf.maximum(first[..., :2], second[..., :2])
    bottom_right = tf.minimum(first[..., 2:], second[..., 2:])
    overlap = tf.reduce_prod(tf.maximum(bottom_right - top_left, 0.0), axis=-1)
    area_first = tf.reduce_prod(tf.maximum(first[..., 2:] - first[..., :2], 0.0), axis=-1)
    area_second = tf.reduce_prod(tf.maximum(second[..., 2:] - second[..., :2], 0.0), axis=-1)
    union = tf.maximum(area_first + area_second - overlap, 1e-9)
    hull = tf.reduce_prod(
        tf.maximum(first[..., 2:], second[..., 2:]) - tf.minimum(first[..., :2], second[..., :2]),
        axis=-1,
    )
    return overlap / union - (hull - union) / tf.maximum(hull, 1e-9)


def _hard_negative_loss(tf, class_targets, cross_entropy, neg_pos_ratio, positives):
    """SSD's class loss: positives plus the hardest ``neg_pos_ratio`` negatives per positive."""
    positive = class_targets > 0
    negative = tf.equal(class_targets, 0)
    positives_per_image = tf.reduce_sum(tf.cast(positive, tf.int32), axis=1)
    negatives_available = tf.reduce_sum(tf.cast(negative, tf.int32), axis=1)
    wanted = tf.cast(tf.cast(positives_per_image, tf.float32) * neg_pos_ratio, tf.int32)
    wanted = tf.minimum(tf.maximum(wanted, 8), negatives_available)
    negative_loss = tf.where(negative, cross_entropy, -1.0)
    order = tf.argsort(negative_loss, axis=1, direction="DESCENDING", stable=True)
    rank = tf.argsort(order, axis=1, stable=True)
    hard_negative = negative & (rank < wanted[:, None])
    selected = tf.cast(positive | hard_negative, tf.float32)
    return tf.reduce_sum(cross_entropy * selected) / positives
