"""Test-time augmentation: a detector run on each image and on its mirror image.

With ``tta: flip`` (a run's ``config.json``, ``TrainConfig.tta``) every image is also
detected mirrored left to right; the mirror's boxes are flipped back and the two sets
are fused class by class, as weighted box fusion does (Solovyev et al., 2021): boxes of
one class overlapping by at least the NMS IoU form one cluster around the
highest-scoring box left, and the cluster becomes one box, the score-weighted mean of
its boxes, scored the mean over the two views of each view's best score in it (a view
that found nothing there counts 0, so a box only one view found keeps half its score).

It costs a second forward pass. On the held-out frames of seeds 5151-5153 (1280x720
letterboxed to 1152x704; means of three sets of 120 frames), vehicle / plate AP50:

- the session-14 ``full`` model: 0.931 / 0.897 in one pass; 0.941 / 0.921 with the
  mirror's boxes merged by NMS; 0.943 / 0.925 fused with the cluster's highest score;
- the session-15 ``full`` model: 0.930 / 0.904 in one pass; fused with the highest score
  0.940 / 0.928; with the mean over the views (the rule kept) 0.943 / 0.929 (vehicles higher
  on each of the three sets); clusters from IoU 0.6 instead of 0.5: 0.940 / 0.928 and
  0.944 / 0.927.

:func:`augment` and :func:`merge` are the one home of it:
:meth:`platelab.detector.Detector.predict` and every exported format's
:class:`platelab.deploy.export.Predictor` call them.
"""

import numpy as np

from platelab.boxes import iou_matrix

MODES = ("none", "flip")
"""``tta`` values: ``none`` (one pass) or ``flip`` (the image and its mirror)."""


def check_mode(mode):
    """``mode`` as one of :data:`MODES` (``""`` and None read as ``none``).

    Raises:
        ValueError: another value
    """
    mode = "none" if mode in (None, "") else str(mode)
    if mode not in MODES:
        raise ValueError(f"tta must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def views(mode):
    """Passes per image: 1 for ``none``, 2 for ``flip``."""
    return 2 if check_mode(mode) == "flip" else 1


def augment(images, mode):
    """The images each pass sees: the images, then (``flip``) their mirror images.

    Args:
        images: a list of ``(H, W, 3)`` arrays
        mode: one of :data:`MODES`

    Returns:
        a list of ``len(images) * views(mode)`` arrays (the originals first)
    """
    images = list(images)
    if views(mode) == 1:
        return images
    return images + [np.ascontiguousarray(image[:, ::-1]) for image in images]


def merge(results, sizes, mode, iou_threshold=0.5, max_detections=100):
    """Fuses the passes of :func:`augment` back into one result per image.

    Args:
        results: ``len(sizes) * views(mode)`` result dicts in :func:`augment`'s order,
            each with ``boxes`` ``(n, 4)`` ``[xmin, ymin, xmax, ymax]`` in its (possibly
            mirrored) image's pixels, ``scores`` ``(n,)``, ``classes`` ``(n,)`` 1-based
            ids and ``labels`` (n names)
        sizes: ``(width, height)`` of each original image
        mode: one of :data:`MODES`
        iou_threshold: boxes of one class overlapping by at least this IoU are one
            object
        max_detections: detections kept per image, highest score first

    Returns:
        one result dict per image, highest score first (``results`` itself for ``none``)
    """
    count = views(mode)
    if count == 1:
        return list(results)
    if len(results) != count * len(sizes):
        raise ValueError(f"{len(results)} results for {len(sizes)} images and {count} views")
    merged = []
    for index, (width, _height) in enumerate(sizes):
        plain, mirrored = results[index], results[index + len(sizes)]
        flipped = np.asarray(mirrored["boxes"], np.float64).reshape(-1, 4)[:, [2, 1, 0, 3]]
        flipped[:, [0, 2]] = width - flipped[:, [0, 2]]
        boxes = np.concatenate([np.asarray(plain["boxes"], np.float64).reshape(-1, 4), flipped])
        scores = np.concatenate([plain["scores"], mirrored["scores"]]).astype(np.float64)
        classes = np.concatenate([plain["classes"], mirrored["classes"]]).astype(np.int64)
        labels = [*plain["labels"], *mirrored["labels"]]
        names = {int(c): name for c, name in zip(classes, labels, strict=True)}
        view = np.repeat([0, 1], [len(plain["scores"]), len(mirrored["scores"])])
        merged.append(
            _fuse(boxes, scores, classes, view, names, iou_threshold, max_detections, count)
        )
    return merged


def _fuse(boxes, scores, classes, view, names, iou_threshold, max_detections, views):
    """Clusters each class's boxes around the highest-scoring one left; one box each,
    scored the mean over ``views`` of each view's best score in the cluster."""
    out_boxes, out_scores, out_classes = [], [], []
    for class_id in np.unique(classes):
        members = np.flatnonzero(classes == class_id)
        members = members[np.argsort(-scores[members], kind="stable")]
        alive = np.ones(len(members), bool)
        overlaps = iou_matrix(boxes[members], boxes[members])
        for position in range(len(members)):
            if not alive[position]:
                continue
            cluster = alive & (overlaps[position] >= iou_threshold)
            cluster[position] = True
            chosen = members[cluster]
            weights = np.maximum(scores[chosen], 1e-9)
            out_boxes.append((boxes[chosen] * weights[:, None]).sum(0) / weights.sum())
            best = [scores[chosen][view[chosen] == k].max(initial=0.0) for k in range(views)]
            out_scores.append(sum(best) / views)
            out_classes.append(int(class_id))
            alive &= ~cluster
    order = np.argsort(-np.asarray(out_scores), kind="stable")[:max_detections]
    return {
        "boxes": np.asarray(out_boxes, np.float32).reshape(-1, 4)[order],
        "scores": np.asarray(out_scores, np.float32)[order],
        "classes": np.asarray(out_classes, np.int64)[order],
        "labels": [names[out_classes[k]] for k in order],
    }
