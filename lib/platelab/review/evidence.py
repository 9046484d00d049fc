"""What the likely-mistake ranking weighs: its thresholds, and the evidence its steps produce.

:class:`RankingThresholds` holds every threshold and factor of the ranking
(:func:`platelab.review.rank_images`) in one frozen dataclass;
:data:`DEFAULT_THRESHOLDS` is the one the ranking uses unless told otherwise.
Each step of the ranking yields :class:`Evidence`; the ranking hands it out
as plain dicts (:meth:`Evidence.to_dict`).
"""

from dataclasses import dataclass

from platelab.review.qa import ENCLOSED_FRACTION, TINY_BOX_PIXELS

EVIDENCE_KINDS = ("duplicate", "plate_outside_vehicle", "label_outlier", "track_gap", "track_jump")
"""The kinds of evidence, in the order the ranking describes them."""


@dataclass(frozen=True)
class RankingThresholds:
    """The thresholds and factors of the model-free likely-mistake ranking.

    Boxes are ``xyxy`` pixels; IoUs, strengths and factors lie in [0, 1]. A
    "ramp" ``(from, span)`` maps a value to a strength that is 0 at ``from``
    and 1 at ``from + span``.
    """

    # ------------------------------------------------------------- the score
    evidence_weights: tuple = tuple((kind, 1.0) for kind in EVIDENCE_KINDS)
    """(kind, weight) pairs: how much each kind of evidence counts (multiplies its strength).

    All 1: each strength already carries its own reliability."""
    rest_weight: float = 0.3
    """An image's score is its strongest evidence plus this share of the rest."""

    # ------------------------------------------------------------- shared box limits
    tiny_box_pixels: tuple = tuple(TINY_BOX_PIXELS.items())
    """(label, pixels) pairs: the tiny-box limits of the QA check; evidence about boxes this
    small (square root of the area) counts nothing, rising to fully at twice it."""
    enclosed_fraction: float = ENCLOSED_FRACTION
    """A plate lies in a vehicle when at least this fraction of it is in the vehicle's box."""

    # ------------------------------------------------------------- duplicate boxes
    duplicate_overlap_from: float = 0.7
    """IoU of two same-label boxes from which they start to look like one object drawn twice."""
    duplicate_overlap_span: float = 0.2
    """IoU above :attr:`duplicate_overlap_from` at which the duplicate counts fully."""
    duplicate_edge_pixels: float = 1.5
    """Two boxes whose every edge lies within this many pixels of the other's are a double click..."""
    duplicate_edge_overlap: float = 0.6
    """...provided their IoU reaches this."""
    duplicate_row_overlap: float = 0.3
    """IoU (boxes grown by a pixel) at which a neighbouring frame's box lies where one of the pair is."""
    duplicate_row_strength: float = 0.2
    """What a near-identical pair counts where a neighbouring frame holds two boxes there too
    (rows of tiny far vehicles are real)."""

    # ------------------------------------------------------------- label outliers
    outlier_probability: float = 0.5
    """Out-of-fold probability of the written label below which a box is a label outlier..."""
    outlier_probability_span: float = 0.45
    """...counting fully this far below it."""
    outlier_min_boxes: int = 20
    """Fewer boxes than this (or a single class) train no classifier: no label evidence."""
    outlier_folds: int = 5
    """Folds of the out-of-fold classifiers (images are kept whole within one fold)."""
    outlier_iterations: int = 60
    """Boosting iterations of each classifier."""
    outlier_learning_rate: float = 0.2
    """Learning rate of each classifier."""
    appearance_size: tuple = (6, 3)
    """Width and height of the grey thumbnail in a box's appearance features."""
    agree_factor: float = 0.25
    """What a label outlier counts where the neighbouring frames agree with its label."""
    disagree_strength: float = 0.5
    """A label outlier counts at least this per neighbouring frame that labels it otherwise."""
    unconfirmed_factor: float = 0.6
    """What a label outlier counts without a neighbouring frame's view of it."""
    difficult_factor: float = 0.6
    """What a label outlier counts on a box its annotator marked difficult (odd shapes expected)."""
    votes_strength: float = 0.7
    """Strength of a box both neighbouring frames label otherwise, where its look raised nothing."""

    # ------------------------------------------------------------- neighbouring frames
    track_max_gap: float = 1.5
    """Frames further apart than this (seconds) are not compared by the track evidence."""
    match_min_template: float = 12.0
    """Pixels: objects smaller than this are matched with their surroundings up to this size."""
    match_template_area: float = 900.0
    """Templates are shrunk to about this many pixels before matching (speed; large boxes)."""
    match_texture: float = 3.0
    """Grey-level standard deviation below which a template is too flat to be found."""
    match_ncc: tuple = (0.7, 0.95)
    """Normalised cross-correlation from which a match counts at all, and fully."""
    template_padding: float = 0.15
    """A template is its box grown by this fraction of its size on each side."""
    search_margin: float = 8.0
    """Pixels added to the search radius (box sizes) around the template's place."""
    distance_penalty: float = 0.05
    """Correlation a peak loses per search radius away from the template's place (the nearer wins)."""
    resize_penalty: float = 0.02
    """Correlation a peak of a resized template loses (the unscaled match wins a tie)."""
    vehicle_sizes: tuple = (0.85, 1.0, 1.18)
    """Vehicles are also looked for this much smaller and larger (approaching or receding between frames)."""
    ambiguity: float = 0.1
    """A match whose correlation leads the best elsewhere in its window by less than this counts that much less."""
    carried_radius: float = 0.5
    """Search radius (box sizes) around a moved place: a plate where its vehicle went, a match back."""
    confident_match: float = 0.5
    """Match confidence (of :attr:`match_ncc`'s ramp) from which a match settles a label or a place."""
    candidate_overlap: float = 0.05
    """IoU above which a box of the image is a candidate for an object found there."""
    same_place: float = 0.5
    """IoU from which two boxes mark the same object (PASCAL VOC's criterion)."""
    disagreement_span: float = 0.2
    """IoU below :attr:`same_place` at which a found object's missing or shifted box counts fully."""
    edge_tolerance: float = 0.1
    """A box keeps an edge of the found object within this fraction of its size..."""
    edge_tolerance_pixels: float = 1.5
    """...plus this many pixels (an object cut by an occluder keeps its other edges)."""
    still_elsewhere_overlap: float = 0.8
    """IoU (boxes grown by a pixel) at which an object stands still across neighbouring frames."""
    single_neighbour: float = 0.4
    """What a finding only one of the two neighbouring frames makes counts (the neighbour may be wrong)."""
    odd_one_out: float = 0.25
    """What such a finding keeps where the other neighbour has no box where the image shows the object."""
    hidden_factor: float = 0.85
    """What a finding about an object flagged occluded or truncated counts."""
    leaving_factor: float = 0.5
    """What a finding about an object reaching outside the image counts."""
    min_track_strength: float = 0.05
    """Track evidence weaker than this is dropped."""
    steady_size: float = 0.5
    """One object's velocity seen from both neighbours differs by at most this share of its size..."""
    steady_pixels: float = 4.0
    """...plus this many pixels, per half second (look-alikes moving against each other differ more)."""
    still_shift_overlap: float = 0.9
    """IoU (boxes grown by a pixel) of a box in both neighbouring frames: the object stood still."""
    still_shift_pixels: float = 1.5
    """A box of the image within this many pixels of a still object's width and height..."""
    still_shift_fraction: float = 0.05
    """...or this fraction of them, overlapping its place but off it, is that object's box moved."""
    still_shift_strength: float = 0.8
    """Strength of such a moved box (times the size reliability)."""

    def weight(self, kind):
        """How much evidence of ``kind`` counts."""
        return dict(self.evidence_weights)[kind]

    def tiny_limit(self, label):
        """The tiny-box limit in pixels of ``label`` (the smallest limit for other labels)."""
        limits = dict(self.tiny_box_pixels)
        return limits.get(label, min(limits.values()))


DEFAULT_THRESHOLDS = RankingThresholds()
"""The thresholds :func:`platelab.review.rank_images` uses unless given others."""

# The single module's names for the default thresholds (kept importable).
EVIDENCE_WEIGHTS = dict(DEFAULT_THRESHOLDS.evidence_weights)
"""How much each kind of evidence counts (see :attr:`RankingThresholds.evidence_weights`)."""
TRACK_MAX_GAP = DEFAULT_THRESHOLDS.track_max_gap
"""See :attr:`RankingThresholds.track_max_gap`."""
MATCH_MIN_TEMPLATE = DEFAULT_THRESHOLDS.match_min_template
"""See :attr:`RankingThresholds.match_min_template`."""
MATCH_TEMPLATE_AREA = DEFAULT_THRESHOLDS.match_template_area
"""See :attr:`RankingThresholds.match_template_area`."""
MATCH_TEXTURE = DEFAULT_THRESHOLDS.match_texture
"""See :attr:`RankingThresholds.match_texture`."""
MATCH_NCC = DEFAULT_THRESHOLDS.match_ncc
"""See :attr:`RankingThresholds.match_ncc`."""
VEHICLE_SIZES = DEFAULT_THRESHOLDS.vehicle_sizes
"""See :attr:`RankingThresholds.vehicle_sizes`."""
AMBIGUITY = DEFAULT_THRESHOLDS.ambiguity
"""See :attr:`RankingThresholds.ambiguity`."""
MATCH_SAME_PLACE = DEFAULT_THRESHOLDS.same_place
"""See :attr:`RankingThresholds.same_place`."""
SINGLE_NEIGHBOUR = DEFAULT_THRESHOLDS.single_neighbour
"""See :attr:`RankingThresholds.single_neighbour`."""
HIDDEN_FACTOR = DEFAULT_THRESHOLDS.hidden_factor
"""See :attr:`RankingThresholds.hidden_factor`."""
APPEARANCE_SIZE = DEFAULT_THRESHOLDS.appearance_size
"""See :attr:`RankingThresholds.appearance_size`."""


@dataclass
class Evidence:
    """One piece of evidence that an image holds an annotation mistake.

    Attributes:
        kind: one of :data:`EVIDENCE_KINDS`
        strength: in [0, 1], its reliability included
        object: the index into the image's objects of the box it concerns,
            or None (a box missing)
        message: one line for the reviewer
    """

    kind: str
    strength: float
    object: int | None
    message: str

    def to_dict(self):
        """The plain dict of the ranking's output: ``kind``, ``strength``, ``object``, ``message``."""
        return {
            "kind": self.kind,
            "strength": self.strength,
            "object": self.object,
            "message": self.message,
        }
