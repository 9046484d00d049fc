"""The likely-mistake ranking: images ordered by model-free evidence of annotation mistakes.

No detector is involved: the evidence comes from the annotations
themselves, the pixels under them, and the neighbouring frames of the same
video (stage 03's index gives each image its source video and time). Each
piece of :class:`~platelab.review.evidence.Evidence` has a strength in
[0, 1]; the weights (:attr:`RankingThresholds.evidence_weights`) are all 1,
each strength carrying its own reliability. Every threshold named below is
a field of :class:`~platelab.review.evidence.RankingThresholds`. What each
kind catches of the four usual mistakes (a box left out, a shifted box, a
wrong label, a box drawn twice):

* ``duplicate`` (drawn twice): two boxes of one label on the same object
  (IoU above 0.7, or every edge within 1.5 px at IoU 0.6 or more: a double
  click or a copy-paste); tiny pairs count little where the neighbouring
  frames hold two boxes there too (rows of far vehicles are real).
* ``plate_outside_vehicle`` (left out, shifted, wrong label): a plate not
  inside any vehicle box, in a batch that annotates vehicles: its vehicle's
  box is missing or shifted away, or a vehicle is labelled a plate.
* ``track_gap`` (left out) and ``track_jump`` (shifted), in
  :mod:`platelab.review.tracking`: every object of the two neighbouring
  frames (0.5 s apart at 2 fps; at a video's ends, the two on one side) is
  looked for in this image by template matching (normalised
  cross-correlation of its grey pixels within a box size around its place;
  vehicles also 15 % smaller and larger, plates around where their vehicle
  went; checked by matching back; a look-alike elsewhere in the window
  lowers the match), so the image, not the boxes, says where it is now.
  Found with a good match but no box of its label there (IoU under 0.5, a
  box cut by an occluder excepted) is a ``track_gap``; a box of its label
  nearby but off (IoU under 0.5) is a ``track_jump`` on that box. Found
  from both neighbours at the same place, moving steadily, it counts fully
  (also when it stood still in both and the image shows it in that place);
  from one only, 40 %, and a quarter of that when the other neighbour has no
  box where the image shows the object (the first neighbour is then the odd
  one out). Weak matches, tiny boxes, objects flagged occluded or truncated,
  and objects leaving the image count less; an object that stood still in
  both neighbours but is found elsewhere now is taken as hidden. Besides, a
  box of the same size as an object that stood still in both neighbours,
  overlapping its place but off it, is a ``track_jump`` even where the image
  cannot be matched (partly hidden objects).
* ``label_outlier`` (wrong label), in :mod:`platelab.review.outliers`: a box
  whose shape, context (size, aspect, position, which boxes it lies in or
  holds) and look (a tiny grey thumbnail, brightness, contrast, colour,
  edges) fit the other class, judged by a gradient-boosting classifier
  trained out of fold on the batch's own boxes (mistakes are rare, so the
  batch teaches what each class looks like); then checked in the
  neighbouring frames: the box is looked for there and the label of the box
  found there agrees (a quarter counts), disagrees (raised to at least half
  per neighbour) or is unknown (60 %). A box both neighbours label otherwise
  counts 0.7 even where its shape looks right. Boxes marked difficult count
  60 %.

An image's score is its strongest evidence plus 30 % of the rest (one sure
mistake outranks a few vague hints; several hints add up).
``benchmarks/bench_review_quality.py`` measures how many injected mistakes
the top of this ranking holds (:mod:`platelab.review.quality`).
"""

from platelab import boxes as boxes_lib
from platelab.review.evidence import DEFAULT_THRESHOLDS, Evidence
from platelab.review.outliers import _appearance, _label_outlier_evidence
from platelab.review.records import grown, inside_fraction
from platelab.review.tracking import _neighbour_frames, _track_evidence


def rank_images(images, *, seed=0, read_image=None, thresholds=None):
    """Ranks images by model-free evidence of annotation mistakes.

    The evidence and how it is weighed are described in
    :mod:`platelab.review.ranking`.

    Args:
        images: :class:`~platelab.review.records.ReviewImage` objects
        seed: seed of the classifiers' fold assignment and training
        read_image: function path -> BGR image or None (default OpenCV)
        thresholds: a :class:`~platelab.review.evidence.RankingThresholds`
            (default :data:`~platelab.review.evidence.DEFAULT_THRESHOLDS`)

    Returns:
        a list of dicts, most suspicious first: ``key``, ``batch``, ``name``,
        ``score``, ``evidence`` (dicts ``kind``, ``strength``, ``object``
        (index into the image's objects, or None), ``message``; see
        :meth:`Evidence.to_dict <platelab.review.evidence.Evidence.to_dict>`)
    """
    thresholds = thresholds or DEFAULT_THRESHOLDS
    images = list(images)
    evidence = _collect_evidence(images, seed, read_image, thresholds)
    ranking = []
    for image in images:
        found, score = _score(evidence[image.key], thresholds)
        ranking.append(
            {
                "key": image.key,
                "batch": image.batch,
                "name": image.name,
                "score": round(float(score), 6),
                "evidence": [item.to_dict() for item in found],
            }
        )
    ranking.sort(key=lambda item: (-item["score"], item["key"]))
    return ranking


def _collect_evidence(images, seed, read_image, thresholds=DEFAULT_THRESHOLDS):
    """key -> the :class:`Evidence` list of every image, of every kind (see the module docstring)."""
    evidence = {image.key: [] for image in images}
    neighbours = _neighbour_frames(images, thresholds)
    for image in images:
        evidence[image.key].extend(
            _duplicate_evidence(image, neighbours.get(image.key, []), thresholds)
        )
    vehicle_batches = {
        image.batch for image in images for item in image.objects if item["label"] == "vehicle"
    }
    for image in images:
        if image.batch in vehicle_batches:
            evidence[image.key].extend(_plate_outside_evidence(image, thresholds))
    appearance = _appearance(images, read_image, thresholds)
    for key, found in _label_outlier_evidence(images, seed, appearance, thresholds).items():
        evidence[key].extend(found)
    check = {
        key: {item.object for item in found if item.kind == "label_outlier"}
        for key, found in evidence.items()
    }
    track, votes = _track_evidence(images, read_image, check, thresholds)
    _weigh_label_outliers(images, evidence, votes, thresholds)
    _label_votes_evidence(images, votes, evidence, thresholds)
    for key, found in track.items():
        evidence[key].extend(found)
    return evidence


def _score(evidence, thresholds=DEFAULT_THRESHOLDS):
    """(the evidence strongest first, the image's score): the strongest plus the rest weight of the rest.

    Strengths are multiplied by their kind's weight first; no evidence scores 0.
    """
    found = sorted(evidence, key=lambda item: -item.strength * thresholds.weight(item.kind))
    weighted = [thresholds.weight(item.kind) * item.strength for item in found]
    if not weighted:
        return found, 0.0
    return found, max(weighted) + thresholds.rest_weight * (sum(weighted) - max(weighted))


def _duplicate_evidence(image, neighbours=(), thresholds=DEFAULT_THRESHOLDS):
    """Pairs of same-label boxes on one object; near-identical tiny boxes count only if the
    neighbouring frames hold a single box there (rows of tiny far vehicles are real)."""
    found = []
    objects = image.objects
    for first in range(len(objects)):
        for second in range(first + 1, len(objects)):
            a, b = objects[first], objects[second]
            if a["label"] != b["label"]:
                continue
            overlap = boxes_lib.iou(a["bbox"], b["bbox"])
            edges = max(abs(x - y) for x, y in zip(a["bbox"], b["bbox"], strict=True))
            by_overlap = min(
                1.0,
                max(
                    0.0,
                    (overlap - thresholds.duplicate_overlap_from)
                    / thresholds.duplicate_overlap_span,
                ),
            )
            by_edges = (
                1.0
                if edges <= thresholds.duplicate_edge_pixels
                and overlap >= thresholds.duplicate_edge_overlap
                else 0.0
            )
            if by_edges > by_overlap and _pair_in_neighbours(a, b, neighbours, thresholds):
                by_edges = thresholds.duplicate_row_strength
            strength = max(by_overlap, by_edges)
            if strength > 0:
                found.append(
                    Evidence(
                        kind="duplicate",
                        strength=strength,
                        object=second,
                        message=f"{a['label']} boxes {first} and {second} overlap (IoU {overlap:.2f})",
                    )
                )
    return found


def _pair_in_neighbours(first, second, neighbours, thresholds=DEFAULT_THRESHOLDS):
    """Whether a neighbouring frame also holds two boxes of this label where ``first`` and ``second`` are."""
    for other in neighbours:
        near = [
            item
            for item in other.objects
            if item["label"] == first["label"]
            and max(
                boxes_lib.iou(grown(item["bbox"]), grown(box["bbox"])) for box in (first, second)
            )
            >= thresholds.duplicate_row_overlap
        ]
        if len(near) >= 2:
            return True
    return False


def _plate_outside_evidence(image, thresholds=DEFAULT_THRESHOLDS):
    """Plates not inside any vehicle box: the less inside, the stronger."""
    found = []
    vehicles = [item["bbox"] for item in image.objects if item["label"] == "vehicle"]
    for position, item in enumerate(image.objects):
        if item["label"] != "license_plate":
            continue
        inside = max((inside_fraction(item["bbox"], box) for box in vehicles), default=0.0)
        if inside < thresholds.enclosed_fraction:
            found.append(
                Evidence(
                    kind="plate_outside_vehicle",
                    strength=1.0 - inside / thresholds.enclosed_fraction,
                    object=position,
                    message=f"plate {position} is {inside:.0%} inside the nearest vehicle box",
                )
            )
    return found


def _weigh_label_outliers(images, evidence, votes, thresholds=DEFAULT_THRESHOLDS):
    """Scales label evidence by the labels the neighbouring frames give the object at the box.

    Neighbours agreeing with the label divide it by four; neighbours giving
    the other label raise it to at least half per such neighbour; without a
    neighbour's view it keeps 60 %. A box its annotator marked difficult
    keeps 60 % of that (odd shapes are expected there).

    Args:
        images: the :class:`~platelab.review.records.ReviewImage` objects
        evidence: key -> :class:`Evidence` list (its ``label_outlier`` items are changed in place)
        votes: key -> {object index: [agree, disagree]} of the track evidence
        thresholds: the :class:`~platelab.review.evidence.RankingThresholds`
    """
    by_key = {image.key: image for image in images}
    for key, found in evidence.items():
        image_votes = votes.get(key, {})
        for item in found:
            if item.kind != "label_outlier":
                continue
            agree, disagree = image_votes.get(item.object, (0, 0))
            if agree and not disagree:
                item.strength *= thresholds.agree_factor
                item.message += "; the neighbouring frames agree with the label"
            elif disagree and not agree:
                item.strength = max(
                    item.strength, min(1.0, thresholds.disagree_strength * disagree)
                )
                item.message += "; the neighbouring frames label it otherwise"
            else:
                item.strength *= thresholds.unconfirmed_factor
            if by_key[key].objects[item.object]["difficult"]:
                item.strength *= thresholds.difficult_factor


def _label_votes_evidence(images, votes, evidence, thresholds=DEFAULT_THRESHOLDS):
    """Boxes both neighbouring frames label otherwise, where the label evidence said nothing.

    Appends ``label_outlier`` :class:`Evidence` to ``evidence`` (key -> list) in place.
    """
    by_key = {image.key: image for image in images}
    for key, image_votes in votes.items():
        flagged = {item.object for item in evidence.get(key, []) if item.kind == "label_outlier"}
        for index, (agree, disagree) in image_votes.items():
            if index in flagged or agree or disagree < 2:
                continue
            item = by_key[key].objects[index]
            evidence[key].append(
                Evidence(
                    kind="label_outlier",
                    strength=thresholds.votes_strength,
                    object=index,
                    message=f"{item['label']} box {index}: both neighbouring frames label it otherwise",
                )
            )


# --------------------------------------------------------------------------- the ranking shown


def ranking_table(ranking, images=None, count=20):
    """The top of a ranking as a pandas DataFrame: rank, image, score, evidence count, strongest reason.

    Args:
        ranking: the list of :func:`rank_images`
        images: the :class:`~platelab.review.records.ReviewImage` objects, to add source and vantage
        count: how many rows
    """
    import pandas as pd

    by_key = {image.key: image for image in images or []}
    rows = []
    for position, item in enumerate(ranking[:count], 1):
        image = by_key.get(item["key"])
        rows.append(
            {
                "rank": position,
                "image": item["key"],
                "source": image.source_id if image else None,
                "vantage": image.vantage if image else None,
                "score": round(item["score"], 3),
                "evidence": len(item["evidence"]),
                "strongest": item["evidence"][0]["message"] if item["evidence"] else "",
            }
        )
    return pd.DataFrame(
        rows, columns=["rank", "image", "source", "vantage", "score", "evidence", "strongest"]
    ).set_index("rank")


def mistakes_gallery(images, ranking, count=6, columns=3):
    """The most suspicious images with their boxes; the suspected boxes drawn thick.

    Args:
        images: :class:`~platelab.review.records.ReviewImage` objects
        ranking: the list of :func:`rank_images`
        count: how many images
        columns: images per row

    Returns:
        the matplotlib Figure
    """
    import cv2

    from platelab import visualize

    by_key = {image.key: image for image in images}
    pictures, titles = [], []
    for item in ranking[:count]:
        image = by_key.get(item["key"])
        if image is None or item["score"] <= 0:
            continue
        pixels = cv2.imread(str(image.image_path), cv2.IMREAD_COLOR)
        if pixels is None:
            continue
        suspected = {entry["object"] for entry in item["evidence"] if entry["object"] is not None}
        normal = [obj for index, obj in enumerate(image.objects) if index not in suspected]
        flagged = [
            dict(obj, label="suspect")
            for index, obj in enumerate(image.objects)
            if index in suspected
        ]
        drawn = visualize.draw_objects(pixels, normal, thickness=1, show_labels=False)
        drawn = visualize.draw_objects(drawn, flagged, thickness=2, show_labels=False)
        pictures.append(drawn)
        reason = item["evidence"][0]["message"] if item["evidence"] else ""
        titles.append(f"{item['key']} · score {item['score']:.2f}\n{reason[:70]}")
    return visualize.image_grid(
        pictures,
        titles,
        columns=columns,
        caption="Most suspicious images first; suspected boxes thick (magenta), others thin.",
    )
