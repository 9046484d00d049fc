"""The ranking's label evidence: boxes whose shape, context and look fit the other class.

A gradient-boosting classifier, trained out of fold on the batch's own boxes
(mistakes are rare, so the batch teaches what each class looks like), gives
each box the probability of its written label from label-free features; a
low probability is ``label_outlier`` :class:`~platelab.review.evidence.Evidence`.
"""

import contextlib
import math
from collections import defaultdict

import numpy as np

from platelab import LABELS
from platelab.review.evidence import DEFAULT_THRESHOLDS, Evidence
from platelab.review.records import inside_fraction


def _appearance(images, read_image=None, thresholds=DEFAULT_THRESHOLDS):
    """key -> per object, its :func:`_appearance_features` (one read of each image)."""
    import cv2

    reader = read_image or (lambda path: cv2.imread(str(path), cv2.IMREAD_COLOR))
    found = {}
    for image in images:
        pixels = reader(image.image_path) if image.objects else None
        found[image.key] = [
            _appearance_features(pixels, item["bbox"], thresholds) for item in image.objects
        ]
    return found


def _box_context_features(image, thresholds=DEFAULT_THRESHOLDS):
    """Label-free features of every box: size, aspect, position, and which boxes it lies in or holds."""
    rows = []
    for position, item in enumerate(image.objects):
        x0, y0, x1, y1 = item["bbox"]
        width, height = max(x1 - x0, 0.5), max(y1 - y0, 0.5)
        in_vehicle = in_plate = 0.0
        holds_plates = holds_vehicles = 0
        for other_position, other in enumerate(image.objects):
            if other_position == position or not other["known"]:
                continue
            inside = inside_fraction(item["bbox"], other["bbox"])
            holds = inside_fraction(other["bbox"], item["bbox"]) >= thresholds.enclosed_fraction
            if other["label"] == "vehicle":
                in_vehicle = max(in_vehicle, inside)
                holds_vehicles += holds
            else:
                in_plate = max(in_plate, inside)
                holds_plates += holds
        rows.append(
            [
                math.log(width / image.width),
                math.log(height / image.height),
                math.log(width / height),
                (x0 + x1) / 2 / image.width,
                (y0 + y1) / 2 / image.height,
                in_vehicle,
                in_plate,
                holds_plates,
                holds_vehicles,
            ]
        )
    return rows


def _appearance_features(pixels, box, thresholds=DEFAULT_THRESHOLDS):
    """Label-free look of a box's crop: brightness, contrast, colour, edges, a tiny grey thumbnail.

    Plates are bright, saturated or high-contrast rectangles with text;
    vehicles are larger blobs of body colour and glass. NaN where the crop
    cannot be read (the classifier takes missing values).
    """
    import cv2

    size = thresholds.appearance_size
    count = 6 + size[0] * size[1]
    if pixels is None:
        return [math.nan] * count
    height, width = pixels.shape[:2]
    x0, y0 = int(max(0, math.floor(box[0]))), int(max(0, math.floor(box[1])))
    x1, y1 = int(min(width, math.ceil(box[2]))), int(min(height, math.ceil(box[3])))
    if x1 - x0 < 1 or y1 - y0 < 1:
        return [math.nan] * count
    crop = pixels[y0:y1, x0:x1]
    if crop.ndim == 2:
        crop = cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR)
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY).astype(np.float32)
    saturation = cv2.cvtColor(crop, cv2.COLOR_BGR2HSV)[..., 1].astype(np.float32)
    across = float(np.abs(np.diff(grey, axis=1)).mean()) if grey.shape[1] > 1 else 0.0
    down = float(np.abs(np.diff(grey, axis=0)).mean()) if grey.shape[0] > 1 else 0.0
    thumbnail = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    thumbnail = (thumbnail - thumbnail.mean()) / (thumbnail.std() + 8.0)
    return [
        float(grey.mean()) / 255.0,
        float(grey.std()) / 64.0,
        float(saturation.mean()) / 255.0,
        float(crop.max()) / 255.0,
        across / 32.0,
        down / 32.0,
        *(float(value) for value in thumbnail.ravel()),
    ]


def _label_outlier_evidence(images, seed, appearance=None, thresholds=DEFAULT_THRESHOLDS):
    """Out-of-fold P(label | box shape, context and look); a low probability of the written label is evidence.

    Args:
        images: the :class:`~platelab.review.records.ReviewImage` objects
        seed: seed of the fold assignment and the classifiers
        appearance: key -> per object, :func:`_appearance_features` (None: shape and context only)
        thresholds: the :class:`~platelab.review.evidence.RankingThresholds`

    Returns:
        key -> list of :class:`Evidence` (a defaultdict)
    """
    rows, labels, owners, groups = [], [], [], []
    for image_number, image in enumerate(images):
        looks = (appearance or {}).get(image.key)
        for position, features in enumerate(_box_context_features(image, thresholds)):
            item = image.objects[position]
            if not item["known"] or item["label"] not in LABELS:
                continue
            rows.append(features + (list(looks[position]) if looks is not None else []))
            labels.append(LABELS.index(item["label"]))
            owners.append((image.key, position, item["label"]))
            groups.append(image_number)
    found = defaultdict(list)
    probabilities = _out_of_fold_probabilities(
        np.array(rows, dtype=float), np.array(labels), np.array(groups), seed, thresholds
    )
    if probabilities is None:
        return found
    for (key, position, label), row_probabilities, target in zip(
        owners, probabilities, labels, strict=True
    ):
        probability = float(row_probabilities[target])
        strength = min(
            1.0,
            max(
                0.0,
                (thresholds.outlier_probability - probability)
                / thresholds.outlier_probability_span,
            ),
        )
        if strength > 0:
            other = LABELS[1 - target]
            found[key].append(
                Evidence(
                    kind="label_outlier",
                    strength=strength,
                    object=position,
                    message=f"{label} box {position} looks like a {other} (P({label}) = {probability:.2f})",
                )
            )
    return found


def _out_of_fold_probabilities(rows, targets, groups, seed, thresholds=DEFAULT_THRESHOLDS):
    """Class probabilities of each row from a gradient-boosting model that did not see its group.

    The models train on one thread: on a busy machine OpenMP's threads
    oversubscribe the cores and run ten times slower.

    Args:
        rows: features, shape (boxes, features)
        targets: class indexes, shape (boxes,)
        groups: group (image) numbers, shape (boxes,): a group stays in one fold
        seed: seed of the fold assignment and the models
        thresholds: the :class:`~platelab.review.evidence.RankingThresholds`

    Returns:
        probabilities, shape (boxes, classes); None with too few boxes,
        classes or groups
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    if len(rows) < thresholds.outlier_min_boxes or len(set(targets.tolist())) < 2:
        return None
    unique_groups = np.unique(groups)
    folds = min(thresholds.outlier_folds, len(unique_groups))
    if folds < 2:
        return None
    shuffled = np.random.default_rng(seed).permutation(len(unique_groups))
    group_fold = dict(zip(unique_groups.tolist(), (shuffled % folds).tolist(), strict=True))
    fold_of = np.array([group_fold[group] for group in groups.tolist()])
    probabilities = np.zeros((len(rows), int(targets.max()) + 1))
    with _one_thread():
        for fold in range(folds):
            test = fold_of == fold
            train = ~test
            if not test.any():
                continue
            if len(set(targets[train].tolist())) < 2:
                probabilities[test, :] = np.bincount(
                    targets, minlength=probabilities.shape[1]
                ) / len(targets)
                continue
            model = HistGradientBoostingClassifier(
                max_iter=thresholds.outlier_iterations,
                learning_rate=thresholds.outlier_learning_rate,
                random_state=seed,
            )
            model.fit(rows[train], targets[train])
            predicted = model.predict_proba(rows[test])
            for column, label in enumerate(model.classes_):
                probabilities[test, int(label)] = predicted[:, column]
    return probabilities


def _one_thread():
    """A context limiting native thread pools (OpenMP, BLAS) to one thread, where threadpoolctl exists."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn depends on it
        return contextlib.nullcontext()
    return threadpool_limits(limits=1)
