"""The ranking's track evidence: what the neighbouring frames of the same video say about an image.

Every object of an image's two neighbouring frames is looked for in the
image by template matching (:func:`_locate`); each neighbour's matches make
a :class:`Finding`, and :func:`_combine_findings` turns an image's findings
into ``track_gap`` (a box left out) and ``track_jump`` (a box shifted)
:class:`~platelab.review.evidence.Evidence`, plus votes on the labels of the
image's boxes. Images are grey ``uint8`` arrays, boxes ``xyxy`` pixels.
"""

import functools
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from platelab import boxes as boxes_lib
from platelab.review.evidence import DEFAULT_THRESHOLDS, Evidence
from platelab.review.records import ReviewImage, box_area, grown, inside_fraction


@dataclass
class Located:
    """One object of a neighbouring frame, found in the image.

    Attributes:
        item: the neighbour's object (a dict of :attr:`ReviewImage.objects`)
        box: where it lies in the image (``xyxy`` pixels)
        ncc: the match's normalised cross-correlation (ambiguity deducted)
        offset: (x, y) pixels the search was centred on moved by: its
            vehicle's motion for a plate found with it, else (0, 0)
        candidates: (index, IoU) of the image's boxes of its label overlapping
            ``box`` by more than the candidate overlap
        other: (index, IoU) of the image's best-overlapping box of another
            label, (None, 0.0) without one
        same: (index, IoU) of the box of its label assigned to it (one box
            per object, greedily by IoU), (None, 0.0) without one
        returns: whether matching ``box`` back into the neighbour leads to the
            object (None until checked)
    """

    item: dict
    box: list
    ncc: float
    offset: tuple
    candidates: list
    other: tuple
    same: tuple = (None, 0.0)
    returns: bool | None = None


@dataclass
class Finding:
    """What one neighbouring frame says about an image: its objects found there.

    Attributes:
        neighbour: the neighbouring frame (a :class:`ReviewImage`)
        source: the neighbour's grey pixels
        target: the image's grey pixels
        located: a :class:`Located` per object of the neighbour found in the image
    """

    neighbour: ReviewImage
    source: np.ndarray
    target: np.ndarray
    located: list


class Candidate(NamedTuple):
    """An object a neighbouring frame shows where the image has no box for it (or an off one)."""

    number: int
    """Which finding (neighbour) it comes from."""
    entry: Located
    """The object, found."""
    value: float
    """How strongly it says so: match confidence, disagreement and reliability."""
    still: bool
    """Whether the other neighbour has its box in the same place (it stands still)."""


# --------------------------------------------------------------------------- neighbouring frames


def _frames_by_source(images):
    """The images of each source video that know their time, in time order (a list per video)."""
    by_source = defaultdict(list)
    for image in images:
        if image.source_id is not None and image.time is not None:
            by_source[image.source_id].append(image)
    return [sorted(members, key=lambda image: image.time) for members in by_source.values()]


def _neighbour_frames(images, thresholds=DEFAULT_THRESHOLDS):
    """key -> the frames just before and after it in the same video (within the track gap)."""
    neighbours = {}
    for members in _frames_by_source(images):
        for position, image in enumerate(members):
            around = []
            for other_position in (position - 1, position + 1):
                if 0 <= other_position < len(members):
                    other = members[other_position]
                    if abs(other.time - image.time) <= thresholds.track_max_gap:
                        around.append(other)
            neighbours[image.key] = around
    return neighbours


def _track_neighbours(images, thresholds=DEFAULT_THRESHOLDS):
    """key -> the two frames of the same video the track evidence compares it with.

    The frames just before and after; at a video's ends or beside a gap
    longer than the track gap (:attr:`RankingThresholds.track_max_gap`), the
    two nearest on one side.
    """
    neighbours = {}
    for members in _frames_by_source(images):
        for position, image in enumerate(members):
            near = [
                other
                for other in range(position - 2, position + 3)
                if other != position
                and 0 <= other < len(members)
                and abs(members[other].time - image.time) <= thresholds.track_max_gap
            ]
            around = [other for other in (position - 1, position + 1) if other in near]
            if len(around) == 1:
                side = around[0] + (around[0] - position)  # one further on the same side
                if side in near:
                    around.append(side)
            neighbours[image.key] = [members[other] for other in around]
    return neighbours


# --------------------------------------------------------------------------- the evidence


def _track_evidence(images, read_image=None, check=None, thresholds=DEFAULT_THRESHOLDS):
    """Evidence from the neighbouring frames of each video (see :mod:`platelab.review.ranking`).

    Args:
        images: the :class:`ReviewImage` objects
        read_image: function path -> BGR image or None
        check: key -> indexes of boxes whose label the neighbouring frames
            should confirm (each looked for in them, besides the votes that
            looking for the neighbours' objects here gives)
        thresholds: the :class:`~platelab.review.evidence.RankingThresholds`

    Returns:
        (evidence, votes): key -> :class:`Evidence` list; key -> {object index:
        [agree, disagree]} (how many neighbouring frames give the object at
        that box the same or the other label)
    """
    import cv2

    reader = read_image or (lambda path: cv2.imread(str(path), cv2.IMREAD_COLOR))

    @functools.lru_cache(maxsize=6)
    def grey(path):
        pixels = reader(path)
        if pixels is None or pixels.ndim == 2:
            return pixels
        return cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY)

    neighbours = _track_neighbours(images, thresholds)
    evidence, votes = defaultdict(list), {}
    ordered = sorted(
        (image for image in images if image.key in neighbours),
        key=lambda image: (image.source_id, image.time),
    )
    for image in ordered:
        findings = []
        for other in neighbours[image.key]:
            found = _frame_findings(image, other, grey, thresholds)
            if found is not None:
                findings.append(found)
        if findings:
            evidence[image.key], votes[image.key] = _combine_findings(image, findings, thresholds)
            for index in (check or {}).get(image.key, ()):
                agree, disagree = _label_seen(image.objects[index], findings, thresholds)
                counts = votes[image.key].setdefault(index, [0, 0])
                counts[0] = max(counts[0], agree)
                counts[1] = max(counts[1], disagree)
    return evidence, votes


def _label_seen(item, findings, thresholds=DEFAULT_THRESHOLDS):
    """How many neighbouring frames give the object at ``item``'s box the same label, and the other.

    The box's content is looked for in each neighbour; the neighbour's box
    there (IoU of the boxes grown by a pixel at least the same-place IoU)
    gives its label.
    """
    agree = disagree = 0
    for finding in findings:
        found = _locate(item["bbox"], finding.target, finding.source, thresholds=thresholds)
        if found is None or _match_confidence(found[1], thresholds) < thresholds.confident_match:
            continue
        there = [
            other
            for other in finding.neighbour.objects
            if other["known"]
            and boxes_lib.iou(grown(other["bbox"]), grown(found[0])) >= thresholds.same_place
        ]
        labels = {other["label"] for other in there}
        if item["label"] in labels:
            agree += 1
        elif labels:
            disagree += 1
    return agree, disagree


# --------------------------------------------------------------------------- template matching


def _locate(
    box,
    source,
    target,
    radius_factor=1.0,
    offset=(0.0, 0.0),
    sizes=(1.0,),
    thresholds=DEFAULT_THRESHOLDS,
):
    """Where the content of ``box`` in ``source`` lies in ``target`` (grey images).

    The box (grown by the template padding, and to the minimum template
    size) is the template, searched within ``radius_factor`` box sizes plus
    the search margin around its place moved by ``offset`` (pixels); among
    near-equal peaks the nearer wins, and a look-alike elsewhere in the
    window (a stream of similar cars at night) lowers the returned
    correlation by what the peak's lead over it lacks of the ambiguity
    margin. With several ``sizes`` the template is also matched grown or
    shrunk by those factors (an approaching or receding vehicle), the best
    match winning.

    Args:
        box: ``xyxy`` pixels in ``source``
        source: the grey image holding the box
        target: the grey image to search (the same shape)
        radius_factor: the search radius in box sizes
        offset: (x, y) pixels the search is centred on moved by
        sizes: the template's scale factors to try
        thresholds: the :class:`~platelab.review.evidence.RankingThresholds`

    Returns:
        (the box moved there, the peak's normalised cross-correlation), or
        None where the template is flat, too small or the search window too narrow
    """
    import cv2

    height, width = source.shape[:2]
    x0, y0, x1, y1 = box
    box_width, box_height = x1 - x0, y1 - y0
    pad_x = max(
        thresholds.template_padding * box_width,
        (thresholds.match_min_template - box_width) / 2,
        2.0,
    )
    pad_y = max(
        thresholds.template_padding * box_height,
        (thresholds.match_min_template - box_height) / 2,
        2.0,
    )
    left, top = max(0, int(math.floor(x0 - pad_x))), max(0, int(math.floor(y0 - pad_y)))
    right = min(width, int(math.ceil(x1 + pad_x)))
    bottom = min(height, int(math.ceil(y1 + pad_y)))
    if right - left < 6 or bottom - top < 6:
        return None
    radius = radius_factor * max(box_width, box_height) + thresholds.search_margin
    centre_x, centre_y = left + offset[0], top + offset[1]
    window_left = max(0, int(centre_x - radius))
    window_top = max(0, int(centre_y - radius))
    window_right = min(width, int(centre_x + (right - left) + radius))
    window_bottom = min(height, int(centre_y + (bottom - top) + radius))
    scale = min(1.0, math.sqrt(thresholds.match_template_area / ((right - left) * (bottom - top))))
    template = source[top:bottom, left:right]
    window = target[window_top:window_bottom, window_left:window_right]
    if scale < 1.0:
        template = cv2.resize(template, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        window = cv2.resize(window, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    if min(template.shape[:2]) < 4 or float(template.std()) < thresholds.match_texture:
        return None
    best = None
    # The template's place without motion, in the (scaled) window.
    origin = ((centre_x - window_left) * scale, (centre_y - window_top) * scale)
    for size in sizes:
        match = _match_size(window, template, size, origin, radius * scale, thresholds)
        if match is None:
            continue
        penalised, peak_y, peak_x, scores, sized_shape = match
        if best is not None and penalised <= best[0]:
            continue
        peak = _unambiguous_ncc(scores, peak_y, peak_x, sized_shape, thresholds)
        new_x0 = window_left + peak_x / scale + (x0 - left) * size
        new_y0 = window_top + peak_y / scale + (y0 - top) * size
        found = [new_x0, new_y0, new_x0 + box_width * size, new_y0 + box_height * size]
        best = (float(penalised), found, peak)
    return None if best is None else (best[1], best[2])


def _match_size(window, template, size, origin, reach, thresholds=DEFAULT_THRESHOLDS):
    """The best peak of ``template`` scaled by ``size`` in ``window``, the nearer of near-equal peaks winning.

    Args:
        window: the grey search window
        template: the grey template (at the window's scale)
        size: the template's scale factor
        origin: (x, y) of the unscaled template's top-left corner without motion, in the window
        reach: the search radius in the window's pixels
        thresholds: the :class:`~platelab.review.evidence.RankingThresholds`

    Returns:
        (penalised correlation at the peak, peak row, peak column, the
        correlation map, the scaled template's shape), or None where the
        scaled template is too small or does not fit the window
    """
    import cv2

    sized = template
    if size != 1.0:
        sized = cv2.resize(template, None, fx=size, fy=size, interpolation=cv2.INTER_LINEAR)
    if (
        min(sized.shape[:2]) < 4
        or window.shape[0] < sized.shape[0]
        or window.shape[1] < sized.shape[1]
    ):
        return None
    scores = cv2.matchTemplate(window, sized, cv2.TM_CCOEFF_NORMED)
    scores = np.nan_to_num(scores, nan=-1.0, posinf=-1.0, neginf=-1.0)
    # The template's place without motion, its centre kept when it is resized.
    still_x = origin[0] + (template.shape[1] - sized.shape[1]) / 2
    still_y = origin[1] + (template.shape[0] - sized.shape[0]) / 2
    rows, columns = np.mgrid[0 : scores.shape[0], 0 : scores.shape[1]]
    distance = np.hypot(columns - still_x, rows - still_y) / max(reach, 1.0)
    penalised = (
        scores
        - thresholds.distance_penalty * distance
        - (0.0 if size == 1.0 else thresholds.resize_penalty)
    )
    peak_y, peak_x = np.unravel_index(int(np.argmax(penalised)), scores.shape)
    return penalised[peak_y, peak_x], peak_y, peak_x, scores, sized.shape[:2]


def _unambiguous_ncc(scores, peak_y, peak_x, sized_shape, thresholds=DEFAULT_THRESHOLDS):
    """The peak's correlation, lowered by what its lead over the best elsewhere lacks of the ambiguity margin.

    "Elsewhere" is at least half the template's height or width away from the peak.
    """
    peak = float(scores[peak_y, peak_x])
    rows, columns = np.ogrid[0 : scores.shape[0], 0 : scores.shape[1]]
    reach_y, reach_x = max(1, sized_shape[0] // 2), max(1, sized_shape[1] // 2)
    elsewhere = (np.abs(rows - peak_y) >= reach_y) | (np.abs(columns - peak_x) >= reach_x)
    if elsewhere.any():
        peak -= max(0.0, thresholds.ambiguity - (peak - float(scores[elsewhere].max())))
    return peak


def _match_confidence(ncc, thresholds=DEFAULT_THRESHOLDS):
    """A match's confidence in [0, 1]: its correlation on the ramp of :attr:`RankingThresholds.match_ncc`."""
    low, high = thresholds.match_ncc
    return min(1.0, max(0.0, (ncc - low) / (high - low)))


# --------------------------------------------------------------------------- one neighbour's findings


def _frame_findings(current, neighbour, grey, thresholds=DEFAULT_THRESHOLDS):
    """Each object of ``neighbour`` looked for in ``current``, and the box of ``current`` it meets.

    Vehicles are looked for first: a plate is then looked for where its
    vehicle went (it moves with it, often further than its own size).

    Args:
        current: the image (a :class:`ReviewImage`)
        neighbour: its neighbouring frame
        grey: function path -> grey pixels or None
        thresholds: the :class:`~platelab.review.evidence.RankingThresholds`

    Returns:
        None without pixels (or of different shapes), else a :class:`Finding`
    """
    source = grey(neighbour.image_path)
    target = grey(current.image_path)
    if source is None or target is None or source.shape != target.shape:
        return None
    located, moved = [], {}
    carriers = _carriers(neighbour.objects, thresholds)
    for item in sorted(
        (item for item in neighbour.objects if item["known"]),
        key=lambda item: item["label"] != "vehicle",  # vehicles first: they carry the plates
    ):
        carrier = carriers.get(id(item))
        found, offset = None, (0.0, 0.0)
        if carrier is not None and id(carrier) in moved:
            offset = moved[id(carrier)]
            found = _locate(
                item["bbox"],
                source,
                target,
                thresholds.carried_radius,
                offset,
                thresholds=thresholds,
            )
        if found is None:
            sizes = thresholds.vehicle_sizes if item["label"] == "vehicle" else (1.0,)
            found = _locate(item["bbox"], source, target, sizes=sizes, thresholds=thresholds)
            offset = (0.0, 0.0)
        if found is None:
            continue
        box, ncc = found
        if item["label"] == "vehicle" and _match_confidence(ncc, thresholds) > 0:
            moved[id(item)] = (box[0] - item["bbox"][0], box[1] - item["bbox"][1])
        located.append(_located(item, box, ncc, offset, current, thresholds))
    _assign_boxes(located)
    return Finding(neighbour=neighbour, source=source, target=target, located=located)


def _located(item, box, ncc, offset, current, thresholds=DEFAULT_THRESHOLDS):
    """The :class:`Located` of a neighbour's object found at ``box`` in ``current``, with the boxes it meets."""
    overlaps = [
        (index, boxes_lib.iou(box, other["bbox"]), other["label"] == item["label"])
        for index, other in enumerate(current.objects)
        if other["known"]
    ]
    return Located(
        item=item,
        box=box,
        ncc=ncc,
        offset=offset,
        candidates=[
            (index, iou)
            for index, iou, same in overlaps
            if same and iou > thresholds.candidate_overlap
        ],
        other=max(
            ((index, iou) for index, iou, same in overlaps if not same),
            key=lambda pair: pair[1],
            default=(None, 0.0),
        ),
    )


def _assign_boxes(located):
    """Gives each :class:`Located` its ``same`` box: one box per object, greedily by IoU."""
    pairs = sorted(
        (
            (iou, number, index)
            for number, entry in enumerate(located)
            for index, iou in entry.candidates
        ),
        reverse=True,
    )
    taken_entries, taken_boxes = set(), set()
    for entry in located:
        entry.same = (None, 0.0)
    for iou, number, index in pairs:
        if number in taken_entries or index in taken_boxes:
            continue
        taken_entries.add(number)
        taken_boxes.add(index)
        located[number].same = (index, iou)


def _carriers(objects, thresholds=DEFAULT_THRESHOLDS):
    """id(plate) -> the smallest vehicle box holding at least half of it, for the plates that have one."""
    vehicles = [item for item in objects if item["known"] and item["label"] == "vehicle"]
    found = {}
    for item in objects:
        if item["label"] != "license_plate" or not item["known"]:
            continue
        holding = [
            vehicle
            for vehicle in vehicles
            if inside_fraction(item["bbox"], vehicle["bbox"]) >= thresholds.enclosed_fraction
        ]
        if holding:
            found[id(item)] = min(holding, key=lambda vehicle: box_area(vehicle["bbox"]))
    return found


# --------------------------------------------------------------------------- combining the findings


def _combine_findings(image, findings, thresholds=DEFAULT_THRESHOLDS):
    """Track evidence of one image from its neighbouring frames' findings (see :mod:`platelab.review.ranking`).

    Each object a neighbour shows where the image has no box of its label
    (or an off one) is a :class:`Candidate` (:func:`_candidate`); candidates
    both neighbours make at one place count fully, those of one neighbour
    less (:func:`_paired_evidence`). Boxes a still object's box seems moved
    to add ``track_jump`` evidence (:func:`_still_shift_evidence`).

    Args:
        image: the :class:`ReviewImage`
        findings: its :class:`Finding` objects (one per neighbouring frame)
        thresholds: the :class:`~platelab.review.evidence.RankingThresholds`

    Returns:
        (:class:`Evidence` list, votes {object index: [agree, disagree]}):
        how many neighbours' objects found on a box have its label, or the other
    """
    votes = defaultdict(lambda: [0, 0])
    candidates = []
    for number, finding in enumerate(findings):
        for entry in finding.located:
            candidate = _candidate(image, findings, number, entry, votes, thresholds)
            if candidate is not None:
                candidates.append(candidate)
    evidence = _paired_evidence(image, findings, candidates, thresholds)
    jumped = {item.object for item in evidence if item.kind == "track_jump"}
    for item in _still_shift_evidence(image, findings, thresholds):
        if item.object not in jumped:
            jumped.add(item.object)
            evidence.append(item)
    return evidence, {index: list(counts) for index, counts in votes.items()}


def _candidate(image, findings, number, entry, votes, thresholds=DEFAULT_THRESHOLDS):
    """The :class:`Candidate` one located object makes, or None (then maybe a vote on a box's label).

    An object found on a box of its label votes for that label, on a box of
    the other label (confidently) against it; found elsewhere, with a match
    that leads back to it, it is a candidate weighed by the match's
    confidence, how far the image's box is off and how reliable the object is.

    Args:
        image: the :class:`ReviewImage`
        findings: its :class:`Finding` objects
        number: which finding ``entry`` belongs to
        entry: the :class:`Located` object
        votes: object index -> [agree, disagree], updated
        thresholds: the :class:`~platelab.review.evidence.RankingThresholds`
    """
    confidence = _match_confidence(entry.ncc, thresholds)
    if confidence <= 0:
        return None
    item = entry.item
    index, overlap = entry.same
    if index is not None and overlap >= thresholds.same_place:
        votes[index][0] += 1
        return None
    if any(iou >= thresholds.same_place for _, iou in entry.candidates):
        return None  # a box is there, which another object of the neighbour also claims
    other_index, other_overlap = entry.other
    if other_index is not None and other_overlap >= thresholds.same_place:
        if confidence >= thresholds.confident_match:
            votes[other_index][1] += 1
        return None  # written with the other label: the label evidence covers it
    support = overlap
    if index is not None and _edges_agree(entry.box, image.objects[index]["bbox"], thresholds):
        support = max(support, thresholds.same_place)  # cut by an occluder, still there
    disagreement = min(
        1.0, max(0.0, (thresholds.same_place - support) / thresholds.disagreement_span)
    )
    if disagreement <= 0:
        return None
    still = _still_elsewhere(item, findings, number, thresholds)
    if still and boxes_lib.iou(entry.box, item["bbox"]) < thresholds.same_place:
        return None  # it stood still in both neighbours but is not where it stood: hidden
    if entry.returns is None:
        entry.returns = _returns(entry, findings[number], thresholds)
    if not entry.returns:
        return None  # the match does not lead back to the object: chance likeness
    reliability = _size_reliability(item["bbox"], item["label"], thresholds)
    if item["occluded"] or item["truncated"]:
        reliability *= thresholds.hidden_factor
    box = entry.box
    if box[0] < 0 or box[1] < 0 or box[2] > image.width or box[3] > image.height:
        reliability *= thresholds.leaving_factor  # leaving the image
    value = confidence * disagreement * reliability
    return Candidate(number, entry, value, still) if value > 0 else None


def _returns(entry, finding, thresholds=DEFAULT_THRESHOLDS):
    """Whether matching the found box back into the neighbour leads to the object (no chance likeness)."""
    item = entry.item
    radius = thresholds.carried_radius if entry.offset != (0.0, 0.0) else 1.0
    back = _locate(
        entry.box,
        finding.target,
        finding.source,
        radius,
        (-entry.offset[0], -entry.offset[1]),
        thresholds.vehicle_sizes if item["label"] == "vehicle" else (1.0,),
        thresholds=thresholds,
    )
    return back is not None and boxes_lib.iou(back[0], item["bbox"]) >= thresholds.same_place


def _paired_evidence(image, findings, candidates, thresholds=DEFAULT_THRESHOLDS):
    """``track_gap`` and ``track_jump`` evidence of the candidates, pairing those both neighbours make.

    A candidate found at the same place from the other neighbour, moving
    steadily, counts fully (the weaker of the two); one that stood still in
    both neighbours counts fully too; one only one neighbour makes counts
    the single-neighbour share, less where the other neighbour says it is
    the odd one out (:func:`_third_frame`).
    """
    evidence, used = [], set()
    for position, (number, entry, value, still) in enumerate(candidates):
        if position in used:
            continue
        used.add(position)
        partners = [
            (other_position, other_value)
            for other_position, (other_number, other, other_value, _) in enumerate(candidates)
            if other_number != number
            and other_position not in used
            and other.item["label"] == entry.item["label"]
            and boxes_lib.iou(other.box, entry.box) >= thresholds.same_place
            and _steady(
                image, (findings[number], entry), (findings[other_number], other), thresholds
            )
        ]
        if partners:
            other_position, other_value = max(partners, key=lambda pair: pair[1])
            used.add(other_position)
            strength, seen = min(value, other_value), "both neighbouring frames"
        elif still:
            # Both neighbours have its box here and the image shows it here.
            strength, seen = value, "both neighbouring frames (standing still)"
        else:
            strength = (
                thresholds.single_neighbour
                * value
                * _third_frame(entry, findings, number, thresholds)
            )
            seen = f"the frame at {_entry_time(findings, number)}"
        if strength < thresholds.min_track_strength:
            continue
        evidence.append(_track_item_evidence(entry, strength, seen, thresholds))
    return evidence


def _track_item_evidence(entry, strength, seen, thresholds=DEFAULT_THRESHOLDS):
    """The :class:`Evidence` of a located object: ``track_jump`` on the box it meets, else ``track_gap``."""
    item = entry.item
    index, overlap = entry.same
    box = [round(value) for value in entry.box]
    text = item["attributes"].get("text")
    name = f"{item['label']} {text}" if text else item["label"]
    if index is not None and overlap > thresholds.candidate_overlap:
        return Evidence(
            kind="track_jump",
            strength=strength,
            object=index,
            message=f"{name}: {seen} show it at {box}, box {index} is off (IoU {overlap:.2f})",
        )
    return Evidence(
        kind="track_gap",
        strength=strength,
        object=None,
        message=f"{name}: {seen} show it at {box}, no box there (missing)",
    )


def _size_reliability(box, label, thresholds=DEFAULT_THRESHOLDS):
    """0 for boxes of the tiny-box limit's size (square root of the area), rising to 1 at twice it.

    Tiny objects flicker in and out of annotations and match poorly.
    """
    side = math.sqrt(max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1]))
    tiny = thresholds.tiny_limit(label)
    return min(1.0, max(0.0, (side - tiny) / tiny))


def _edges_agree(predicted, box, thresholds=DEFAULT_THRESHOLDS):
    """Whether ``box`` keeps an edge of ``predicted`` on both axes (the object cut by an occluder)."""
    tolerance_x = (
        thresholds.edge_tolerance * (predicted[2] - predicted[0]) + thresholds.edge_tolerance_pixels
    )
    tolerance_y = (
        thresholds.edge_tolerance * (predicted[3] - predicted[1]) + thresholds.edge_tolerance_pixels
    )
    return (
        abs(box[0] - predicted[0]) <= tolerance_x or abs(box[2] - predicted[2]) <= tolerance_x
    ) and (abs(box[1] - predicted[1]) <= tolerance_y or abs(box[3] - predicted[3]) <= tolerance_y)


def _still_elsewhere(item, findings, number, thresholds=DEFAULT_THRESHOLDS):
    """Whether another neighbouring frame has a box of ``item``'s label where it stands (it stands still)."""
    return any(
        other["label"] == item["label"]
        and boxes_lib.iou(grown(other["bbox"]), grown(item["bbox"]))
        >= thresholds.still_elsewhere_overlap
        for other_number, finding in enumerate(findings)
        if other_number != number
        for other in finding.neighbour.objects
    )


def _still_shift_evidence(image, findings, thresholds=DEFAULT_THRESHOLDS):
    """Boxes of the image that look like a still object's box moved: same size, off its place.

    An object whose box is the same in both neighbouring frames stood still;
    where the image has no box of its label in that place but one of the
    same size (within 5 % or a pixel and a half) overlapping it, that box
    was most likely drawn off the object (the image need not be matched,
    so this holds where the object is hard to find, e.g. partly hidden).
    """
    if len(findings) < 2:
        return []
    first, second = (finding.neighbour for finding in findings[:2])
    found = []
    for item in first.objects:
        if not item["known"] or not any(
            other["known"]
            and other["label"] == item["label"]
            and boxes_lib.iou(grown(other["bbox"]), grown(item["bbox"]))
            >= thresholds.still_shift_overlap
            for other in second.objects
        ):
            continue
        box = item["bbox"]
        same_label = [
            (index, other)
            for index, other in enumerate(image.objects)
            if other["known"] and other["label"] == item["label"]
        ]
        if any(
            boxes_lib.iou(grown(other["bbox"]), grown(box)) >= thresholds.same_place
            for _, other in same_label
        ):
            continue
        moved = _moved_box(item, same_label, thresholds)
        if moved is not None:
            found.append(moved)
    return found


def _moved_box(item, same_label, thresholds=DEFAULT_THRESHOLDS):
    """The ``track_jump`` :class:`Evidence` on the first box of ``same_label`` (index, object) of the
    still object ``item``'s size that overlaps its place, or None."""
    box = item["bbox"]
    width, height = box[2] - box[0], box[3] - box[1]
    for index, other in same_label:
        other_width = other["bbox"][2] - other["bbox"][0]
        other_height = other["bbox"][3] - other["bbox"][1]
        overlap = boxes_lib.iou(other["bbox"], box)
        if (
            overlap > 0
            and abs(other_width - width)
            <= max(thresholds.still_shift_pixels, thresholds.still_shift_fraction * width)
            and abs(other_height - height)
            <= max(thresholds.still_shift_pixels, thresholds.still_shift_fraction * height)
        ):
            return Evidence(
                kind="track_jump",
                strength=thresholds.still_shift_strength
                * _size_reliability(box, item["label"], thresholds),
                object=index,
                message=(
                    f"{item['label']} box {index}: the same size as a {item['label']} that "
                    f"stood still at {[round(value) for value in box]} in both neighbouring "
                    f"frames, but off it (IoU {overlap:.2f})"
                ),
            )
    return None


def _steady(image, first, second, thresholds=DEFAULT_THRESHOLDS):
    """Whether two neighbours' objects found at one place move as one object would: steadily.

    Each (:class:`Finding`, :class:`Located`) gives the object's velocity
    from this image to its neighbour (pixels per second); one object keeps it
    within half its size plus 4 pixels per half second (look-alike vehicles
    of a stream, found at one place from both sides, move against each other).
    """
    velocities = []
    for finding, entry in (first, second):
        elapsed = finding.neighbour.time - image.time
        if not elapsed:
            return True
        velocities.append(
            [(entry.item["bbox"][side] - entry.box[side]) / elapsed for side in range(4)]
        )
    box = first[1].box
    size = max(box[2] - box[0], box[3] - box[1])
    change = max(abs(a - b) for a, b in zip(*velocities, strict=True)) * 0.5  # per half second
    return change <= thresholds.steady_size * size + thresholds.steady_pixels


def _third_frame(entry, findings, number, thresholds=DEFAULT_THRESHOLDS):
    """How the other neighbouring frame settles a finding only one neighbour makes.

    What the image shows where the object was found is looked for in the
    other neighbour: a box of the object's label there means two of the
    three frames annotate it (1: the finding holds); no box there means the
    first neighbour is the odd one out (:attr:`RankingThresholds.odd_one_out`);
    not found, 1.
    """
    others = [finding for other, finding in enumerate(findings) if other != number]
    if not others:
        return 1.0
    other = others[0]
    found = _locate(entry.box, other.target, other.source, thresholds=thresholds)
    if found is None or _match_confidence(found[1], thresholds) < thresholds.confident_match:
        return 1.0
    label = entry.item["label"]
    annotated = any(
        item["known"]
        and item["label"] == label
        and boxes_lib.iou(grown(item["bbox"]), grown(found[0])) >= thresholds.same_place
        for item in other.neighbour.objects
    )
    return 1.0 if annotated else thresholds.odd_one_out


def _entry_time(findings, number):
    """The time of a finding's neighbouring frame, for messages."""
    time_seconds = findings[number].neighbour.time
    return "?" if time_seconds is None else f"{time_seconds:g} s"
