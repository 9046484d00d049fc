"""Stage 04 (review): annotation QA and likely mistakes, reviewed in FiftyOne.

Every annotation batch (CVAT "PASCAL VOC 1.1" exports as
:func:`platelab.cvat.import_exports` loads them) goes into **one persistent
FiftyOne dataset**, reloaded idempotently: a sample per batch image, its file
copied out of the temporary extraction folder to a stable place
(``data/<workspace>/interim/review/images/<batch>/<name>.<ext>``), and review
tags (``fix``, ``ok``, ``exclude``) kept across reloads.

* **Labels** are normalised through an alias map (``params/aliases.yaml``,
  default :data:`platelab.annotations.DEFAULT_ALIASES`) with FiftyOne's
  ``map_labels``. Unknown labels keep their spelling, are flagged
  (``unknown_label`` attribute) and listed; nothing is dropped.
* **QA checks** (:data:`QA_CHECKS`), each a saved view and a count: boxes
  outside the image or degenerate, tiny boxes, duplicate boxes, plates outside
  every vehicle, images without labels, unknown labels.
* **Likely mistakes**: :func:`rank_images` scores every image by model-free
  evidence (see its docstring): duplicate boxes, plates outside any vehicle,
  objects of the neighbouring frames of the same video found in the image
  (template matching) without their box or beside a shifted one, and boxes
  whose shape and look fit the other class (a classifier learnt out of fold
  from the batch itself) unless the neighbouring frames agree. With a
  detector's predictions, :func:`compute_prediction_mistakenness` adds
  FiftyOne Brain's mistakenness and missing-box candidates.
* **Review**: the App (:func:`launch_app`), the ipywidgets panel in
  :mod:`platelab.review_widgets`, and :func:`export_tags` /
  :func:`tagged_images` for stage 05.

Sample fields of the dataset: ``filepath``, ``tags``, ``metadata``
(width, height), ``batch``, ``image_name``, ``source_id``, ``vantage``,
``lighting``, ``time``, ``frame_index``, ``split`` (None until stage 05),
``sha256``, ``ground_truth`` (Detections, relative coordinates; attributes
``original_label``, ``unknown_label``, ``difficult``, ``occluded``,
``truncated``, ``text``, ``vehicle_type``, ``qa_flags``, ``evidence``), ``qa_flags``
(list of the checks the image fails), ``suspicion`` (the model-free ranking
score), ``suspicion_reasons`` (one line per piece of evidence) and, with
predictions, ``predictions`` and ``mistakenness``.
"""

import logging
import math
import os
import re
import shutil
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from platelab import LABELS, annotations, paths, visualize
from platelab import boxes as boxes_lib
from platelab.exceptions import PlatelabError
from platelab.metadata import sha256_file
from platelab.paths import safe_name

logger = logging.getLogger(__name__)

REVIEW_TAGS = ("fix", "ok", "exclude")
"""The tags a reviewer gives images (stage 05 leaves out ``exclude``, warns about ``fix``)."""

TINY_BOX_PIXELS = {"vehicle": 8.0, "license_plate": 3.0}
"""Boxes narrower or lower than this many pixels are "tiny" (per canonical label)."""
DUPLICATE_IOU = 0.9
"""Two boxes of the same label overlapping by more than this are duplicates (QA check)."""
ENCLOSED_FRACTION = 0.5
"""A plate counts as inside a vehicle when at least this fraction of it lies in the vehicle's box."""

QA_CHECKS = {
    "qa_outside_or_degenerate": "boxes reaching outside the image, or without area",
    "qa_tiny_boxes": "boxes narrower or lower than the tiny-box limit of their label",
    "qa_duplicate_boxes": f"two boxes of the same label with IoU > {DUPLICATE_IOU}",
    "qa_plate_outside_vehicle": "license plates not inside any vehicle box",
    "qa_no_labels": "images without any box",
    "qa_unknown_labels": "boxes whose label is no known spelling of vehicle or license_plate",
}
"""QA check name (also its saved view's name) -> what it finds."""

SUMMARY_FORMAT = "platelab.review/1"
SUMMARY_NAME = "review.json"
"""The review's summary file in ``data/<workspace>/interim/review/``."""

LIKELY_MISTAKES_VIEW = "likely_mistakes"
"""Saved view: images with any evidence of a mistake, most suspicious first."""
MISTAKENNESS_VIEW = "mistakenness"
"""Saved view (with predictions): images by FiftyOne Brain's mistakenness, highest first."""
MISSING_CANDIDATES_VIEW = "missing_box_candidates"
"""Saved view (with predictions): confident predictions without a matching ground-truth box."""

TRACK_MAX_GAP = 1.5
"""Frames further apart than this (seconds) are not compared by the track evidence."""

# The track evidence looks for every object of the neighbouring frames in the image
# by template matching (normalised cross-correlation of grey pixels).
MATCH_MIN_TEMPLATE = 12.0
"""Pixels: objects smaller than this are matched with their surroundings up to this size."""
MATCH_TEMPLATE_AREA = 900.0
"""Templates are shrunk to about this many pixels before matching (speed; large boxes)."""
MATCH_TEXTURE = 3.0
"""Grey-level standard deviation below which a template is too flat to be found."""
MATCH_NCC = (0.7, 0.95)
"""Normalised cross-correlation from which a match counts at all, and fully."""
VEHICLE_SIZES = (0.85, 1.0, 1.18)
"""Vehicles are also looked for this much smaller and larger (approaching or receding between frames)."""
AMBIGUITY = 0.1
"""A match whose correlation leads the best elsewhere in its window by less than this counts that much less."""
MATCH_SAME_PLACE = 0.5
"""IoU from which two boxes mark the same object (PASCAL VOC's criterion)."""
SINGLE_NEIGHBOUR = 0.4
"""What a finding only one of the two neighbouring frames makes counts (the neighbour may be wrong)."""
HIDDEN_FACTOR = 0.85
"""What a finding about an object flagged occluded or truncated counts."""

APPEARANCE_SIZE = (6, 3)
"""Width and height of the grey thumbnail in a box's appearance features."""

EVIDENCE_WEIGHTS = {
    "duplicate": 1.0,
    "plate_outside_vehicle": 1.0,
    "label_outlier": 1.0,
    "track_gap": 1.0,
    "track_jump": 1.0,
}
"""How much each kind of evidence counts when images are ranked (multiplies its strength in [0, 1]).

All 1: each strength already carries its own reliability (see :func:`rank_images`)."""


class ReviewError(PlatelabError, ValueError):
    """A problem that stops the review (one-line message naming the file or dataset)."""


@dataclass
class ReviewImage:
    """One annotated image as the review sees it.

    Attributes:
        batch: the batch (export) it came in
        name: its name within the batch (the VOC file stem)
        image_path: the image file
        width: width in pixels
        height: height in pixels
        objects: dicts with ``label`` (canonical, or as written when unknown),
            ``original_label``, ``known`` (bool), ``bbox`` ([xmin, ymin, xmax,
            ymax] pixels, floats, clipped to the image), ``raw_bbox`` (as
            written in the XML), ``difficult``, ``occluded``, ``truncated``,
            ``attributes`` (dict) and ``qa_flags`` (list)
        source_id: the video (or photo) it comes from, if known
        vantage: the source's vantage point, if known
        lighting: the source's lighting, if known
        time: seconds into the source video, if known
        frame_index: frame number in the source video, if known
        sha256: SHA-256 of the image file
        problems: one-line messages about this image
        dropped_boxes: boxes of the XML the loader dropped (empty inside the image)
        qa_flags: the QA checks the image fails (see :func:`run_qa_checks`)
    """

    batch: str
    name: str
    image_path: Path
    width: int
    height: int
    objects: list = field(default_factory=list)
    source_id: str | None = None
    vantage: str | None = None
    lighting: str | None = None
    time: float | None = None
    frame_index: int | None = None
    sha256: str | None = None
    problems: list = field(default_factory=list)
    dropped_boxes: int = 0
    qa_flags: list = field(default_factory=list)

    @property
    def key(self):
        """``<batch>/<name>``: unique over all batches."""
        return f"{self.batch}/{self.name}"


# --------------------------------------------------------------------------- loading


def default_dataset_name(workspace):
    """Returns the review dataset's name for a workspace: ``platelab-<workspace>``."""
    return f"platelab-{paths.workspace_dir(workspace).name}"


def review_dir(workspace):
    """Returns ``data/<workspace>/interim/review`` (stable copies of the batch images live here)."""
    return paths.interim_dir(workspace) / "review"


def load_aliases(path=None):
    """Reads the label alias map: canonical label -> spellings.

    The YAML file maps each canonical label to a list of spellings, e.g.
    ``vehicle: [car, truck, bus]``; it extends and overrides
    :data:`platelab.annotations.DEFAULT_ALIASES` (a spelling listed under
    another label moves there).

    Args:
        path: the YAML file; None or a missing default gives the defaults

    Returns:
        a dict canonical -> list of spellings

    Raises:
        ReviewError: naming the file, if it is not such a mapping
    """
    if path is None:
        return annotations.extend_aliases()
    try:
        return annotations.extend_aliases(annotations.read_alias_file(path))
    except annotations.AnnotationError as error:
        raise ReviewError(str(error)) from None


def load_images(
    sources, *, images_dir=None, aliases=None, index=None, work_dir=None, progress=True
):
    """Loads annotation batches into :class:`ReviewImage` objects.

    Each source may be a CVAT "PASCAL VOC 1.1" export (zip or folder) or a
    folder of them (see :func:`platelab.cvat.import_exports`). A source that
    is not a VOC export, an image that disappeared or an unreadable file
    becomes a one-line problem; the rest loads. Labels are mapped through the
    alias map; unknown ones keep their spelling with ``known=False``.

    Args:
        sources: a path or a list of paths
        aliases: canonical -> spellings (default :func:`load_aliases`'s defaults)
        images_dir: where the images get stable copies
            (``<images_dir>/<batch>/<file name>``; see :func:`stage_image`);
            None leaves them where the batch holds them (zips: extracted to a
            temporary folder)
        index: stage 03's task index (path or loaded dict, see
            :func:`platelab.cvat.load_index`) giving each image's source video,
            vantage, lighting and time by content hash; without it the
            source is read from stage-01 frame names (``<source>_t<ms>``)
        work_dir: where zips are extracted (default: a temporary folder)
        progress: show progress bars

    Returns:
        (images, problems, spellings): the :class:`ReviewImage` list (batch,
        name order), one-line problems, and a dict spelling -> {"canonical",
        "boxes", "batches"}
    """
    from platelab import cvat

    aliases = aliases or load_aliases()
    lookup = annotations.build_alias_map(aliases)
    if index is not None and not isinstance(index, dict):
        index = cvat.load_index(index)
    by_hash = {entry["sha256"]: entry for entry in (index or {}).get("images", [])}
    sources_info = (index or {}).get("sources", {})
    result = cvat.import_exports(sources, work_dir=work_dir, aliases=aliases, progress=progress)
    problems = list(result.problems)
    images, spellings = [], {}
    for export, record in tqdm(
        list(result.records()), desc="images", disable=not progress, leave=False
    ):
        batch_name = export.batch.name
        if record.image_path is None and record.problems:
            continue  # already named once by the import ("unreadable image; skipped")
        if record.image_path is None or not Path(record.image_path).is_file():
            problems.append(f"{export.source}: {record.name}: image missing or unreadable; skipped")
            continue
        digest = sha256_file(record.image_path)
        image_path = Path(record.image_path)
        if images_dir is not None:
            try:
                image_path = stage_image(
                    image_path, Path(images_dir) / safe_name(batch_name), digest
                )
            except OSError as error:
                problems.append(
                    f"{record.image_path}: cannot copy to {images_dir} ({error.strerror or error}); skipped"
                )
                continue
        entry = by_hash.get(digest) or {}
        source_id = entry.get("source_id")
        time_seconds = entry.get("time")
        if not entry:
            source_id, time_seconds = _source_from_name(record.name)
        source = sources_info.get(source_id or "", {})
        image = ReviewImage(
            batch=batch_name,
            name=record.name,
            image_path=image_path,
            width=int(record.width),
            height=int(record.height),
            source_id=source_id,
            vantage=entry.get("vantage") or source.get("vantage"),
            lighting=entry.get("lighting") or source.get("lighting"),
            time=None if time_seconds is None else float(time_seconds),
            frame_index=entry.get("frame_index"),
            sha256=digest,
            problems=list(record.problems),
        )
        image.dropped_boxes, raw_boxes = _raw_boxes(record)
        for item in record.objects:
            canonical = annotations.normalize_label(item["label"], lookup)
            attributes = dict(item.get("attributes") or {})
            image.objects.append(
                {
                    "label": canonical or item["label"],
                    "original_label": item["label"],
                    "known": canonical is not None,
                    "bbox": [float(value) for value in item["bbox"]],
                    "difficult": bool(item.get("difficult")),
                    "occluded": bool(item.get("occluded")),
                    "truncated": bool(item.get("truncated")),
                    "attributes": attributes,
                    "raw_bbox": _pop_raw_box(raw_boxes, item),
                }
            )
            spelled = spellings.setdefault(
                item["label"], {"canonical": canonical, "boxes": 0, "batches": set()}
            )
            spelled["boxes"] += 1
            spelled["batches"].add(batch_name)
        images.append(image)
    for spelled in spellings.values():
        spelled["batches"] = sorted(spelled["batches"])
    images.sort(key=lambda item: (item.batch, item.name))
    if images_dir is not None and work_dir is None:
        shutil.rmtree(result.work_dir, ignore_errors=True)
    return images, problems, spellings


def stage_image(image_path, folder, digest=None):
    """Gives an image a stable copy: ``folder/<file name>`` (a hard link where possible).

    An existing copy with the same content is kept as it is; otherwise the
    file is written under a temporary name and renamed into place.

    Args:
        image_path: the image
        folder: the stable folder
        digest: the image's SHA-256, if known

    Returns:
        the stable Path
    """
    image_path = Path(image_path)
    target = Path(folder) / image_path.name
    digest = digest or sha256_file(image_path)
    if target.is_file() and sha256_file(target) == digest:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    try:
        os.link(image_path, temporary)
    except OSError:
        shutil.copyfile(image_path, temporary)
    os.replace(temporary, target)
    return target


# --------------------------------------------------------------------------- likely mistakes


def rank_images(images, *, seed=0, read_image=None):
    """Ranks images by model-free evidence of annotation mistakes.

    No detector is involved: the evidence comes from the annotations
    themselves, the pixels under them, and the neighbouring frames of the
    same video (stage 03's index gives each image its source video and
    time). Each piece has a strength in [0, 1]; the weights
    (:data:`EVIDENCE_WEIGHTS`) are all 1, each strength carrying its own
    reliability. What each catches of the four usual mistakes (a box left
    out, a shifted box, a wrong label, a box drawn twice):

    * ``duplicate`` (drawn twice): two boxes of one label on the same object
      (IoU above 0.7, or every edge within 1.5 px at IoU 0.6 or more: a
      double click or a copy-paste); tiny pairs count little where the
      neighbouring frames hold two boxes there too (rows of far vehicles
      are real).
    * ``plate_outside_vehicle`` (left out, shifted, wrong label): a plate
      not inside any vehicle box, in a batch that annotates vehicles: its
      vehicle's box is missing or shifted away, or a vehicle is labelled a
      plate.
    * ``track_gap`` (left out) and ``track_jump`` (shifted): every object
      of the two neighbouring frames (0.5 s apart at 2 fps; at a video's
      ends, the two on one side) is looked for in this image by template
      matching (normalised cross-correlation of its grey pixels within a
      box size around its place; vehicles also 15 % smaller and larger,
      plates around where their vehicle went; checked by matching back;
      a look-alike elsewhere in the window lowers the match), so the image,
      not the boxes, says where it is now. Found with a good match but no
      box of its label there (IoU under 0.5, a box cut by an occluder
      excepted) is a ``track_gap``; a box of its label nearby but off
      (IoU under 0.5) is a ``track_jump`` on that box. Found from both
      neighbours at the same place, moving steadily, it counts fully (also
      when it stood still in both and the image shows it in that place);
      from one only, 40 %, and a quarter of that when the other neighbour
      has no box where the image shows the object (the first neighbour is
      then the odd one out). Weak matches, tiny boxes, objects flagged
      occluded or truncated, and objects leaving the image count less; an
      object that stood still in both neighbours but is found elsewhere now
      is taken as hidden. Besides, a box of the same size as an object that
      stood still in both neighbours, overlapping its place but off it, is
      a ``track_jump`` even where the image cannot be matched (partly
      hidden objects).
    * ``label_outlier`` (wrong label): a box whose shape, context (size,
      aspect, position, which boxes it lies in or holds) and look (a tiny
      grey thumbnail, brightness, contrast, colour, edges) fit the other
      class, judged by a gradient-boosting classifier trained out of fold
      on the batch's own boxes (mistakes are rare, so the batch teaches
      what each class looks like); then checked in the neighbouring
      frames: the box is looked for there and the label of the box found
      there agrees (a quarter counts), disagrees (raised to at least half
      per neighbour) or is unknown (60 %). A box both neighbours label
      otherwise counts 0.7 even where its shape looks right. Boxes marked
      difficult count 60 %.

    An image's score is its strongest evidence plus 30 % of the rest (one
    sure mistake outranks a few vague hints; several hints add up).

    ``benchmarks/bench_review_quality.py`` measures how many injected
    mistakes the top of this ranking holds on held-out synthetic seeds (its
    figure is in the README's "Measured here" table).

    Args:
        images: :class:`ReviewImage` objects
        seed: seed of the classifiers' fold assignment and training
        read_image: function path -> BGR image or None (default OpenCV)

    Returns:
        a list of dicts, most suspicious first: ``key``, ``batch``, ``name``,
        ``score``, ``evidence`` (dicts ``kind``, ``strength``, ``object``
        (index into the image's objects, or None), ``message``)
    """
    images = list(images)
    evidence = {image.key: [] for image in images}
    neighbours = _neighbour_frames(images)
    for image in images:
        evidence[image.key].extend(_duplicate_evidence(image, neighbours.get(image.key, [])))
    vehicle_batches = {
        image.batch for image in images for item in image.objects if item["label"] == "vehicle"
    }
    for image in images:
        if image.batch in vehicle_batches:
            evidence[image.key].extend(_plate_outside_evidence(image))
    appearance = _appearance(images, read_image)
    for key, found in _label_outlier_evidence(images, seed, appearance).items():
        evidence[key].extend(found)
    check = {
        key: {item["object"] for item in found if item["kind"] == "label_outlier"}
        for key, found in evidence.items()
    }
    track, votes = _track_evidence(images, read_image, check)
    _weigh_label_outliers(images, evidence, votes)
    _label_votes_evidence(images, votes, evidence)
    for key, found in track.items():
        evidence[key].extend(found)
    ranking = []
    for image in images:
        found = sorted(
            evidence[image.key], key=lambda item: -item["strength"] * EVIDENCE_WEIGHTS[item["kind"]]
        )
        weighted = [EVIDENCE_WEIGHTS[item["kind"]] * item["strength"] for item in found]
        score = (max(weighted) + 0.3 * (sum(weighted) - max(weighted))) if weighted else 0.0
        ranking.append(
            {
                "key": image.key,
                "batch": image.batch,
                "name": image.name,
                "score": round(float(score), 6),
                "evidence": found,
            }
        )
    ranking.sort(key=lambda item: (-item["score"], item["key"]))
    return ranking


def review_quality(ranking, mistakes, fraction=0.1):
    """How many known mistakes the top of a ranking holds.

    Args:
        ranking: the list of :func:`rank_images` (most suspicious first)
        mistakes: the injected mistakes (``mistakes.json`` of
            :func:`platelab.cvat.simulate_annotator`, loaded), or a list of its
            records (``export`` or ``batch``, ``image``, ``kind``)
        fraction: the share of images reviewed (the top of the ranking)

    Returns:
        a dict: ``fraction``, ``images``, ``reviewed`` (images in the top),
        ``images_with_mistakes``, ``mistakes``, ``found`` (mistakes in
        reviewed images), ``recall`` (found / mistakes; None without
        mistakes), ``unmatched`` (mistakes naming no ranked image) and
        ``by_kind`` (kind -> [found, total])
    """
    records = mistakes.get("mistakes", []) if isinstance(mistakes, dict) else list(mistakes or [])
    ranked_keys = [item["key"] for item in ranking]
    reviewed = max(1, math.ceil(fraction * len(ranked_keys) - 1e-9)) if ranked_keys else 0
    top = set(ranked_keys[:reviewed])
    known = set(ranked_keys)
    by_kind = {}
    found = unmatched = 0
    images_with_mistakes = set()
    for record in records:
        key = mistake_key(record)
        counts = by_kind.setdefault(record.get("kind", "?"), [0, 0])
        counts[1] += 1
        if key not in known:
            unmatched += 1
            continue
        images_with_mistakes.add(key)
        if key in top:
            found += 1
            counts[0] += 1
    return {
        "fraction": fraction,
        "images": len(ranked_keys),
        "reviewed": reviewed,
        "images_with_mistakes": len(images_with_mistakes),
        "mistakes": len(records),
        "found": found,
        "recall": found / len(records) if records else None,
        "unmatched": unmatched,
        "by_kind": by_kind,
    }


def mistake_key(record):
    """The ``<batch>/<image>`` key of an injected-mistake record (the export's name without ``.zip``)."""
    batch = record.get("batch") or record.get("export") or ""
    if batch.lower().endswith(".zip"):
        batch = batch[: -len(".zip")]
    return f"{batch}/{record.get('image')}"


def ranking_table(ranking, images=None, count=20):
    """The top of a ranking as a pandas DataFrame: rank, image, score, evidence count, strongest reason.

    Args:
        ranking: the list of :func:`rank_images`
        images: the :class:`ReviewImage` objects, to add source and vantage
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


def label_table(spellings):
    """The label normalisation table: spelling as written -> canonical label, boxes, batches.

    Args:
        spellings: the third value of :func:`load_images`

    Returns:
        a pandas DataFrame indexed by spelling; unknown spellings have
        canonical label ``(unknown: kept, flagged)`` and come first
    """
    import pandas as pd

    rows = [
        {
            "spelling": spelling,
            "canonical": info["canonical"] or "(unknown: kept, flagged)",
            "known": info["canonical"] is not None,
            "boxes": info["boxes"],
            "batches": ", ".join(info["batches"]),
        }
        for spelling, info in spellings.items()
    ]
    table = pd.DataFrame(rows, columns=["spelling", "canonical", "known", "boxes", "batches"])
    table = table.sort_values(["known", "canonical", "spelling"]).set_index("spelling")
    return table


def unknown_labels(spellings):
    """The spellings that map to no canonical label (they are kept as written and flagged)."""
    return sorted(spelling for spelling, info in spellings.items() if info["canonical"] is None)


def find_batches(workspace, inputs=()):
    """The annotation batches to review: ``inputs``, or stage 03's exports and the user's own.

    Args:
        workspace: the workspace name
        inputs: exports (zips or folders) or folders of them; empty: stage 03's
            ``interim/cvat/exports`` and ``raw/annotations`` where present

    Returns:
        a list of Paths

    Raises:
        ReviewError: if there is nothing to review (one line naming the folders)
    """
    from platelab import cvat

    if inputs:
        return [paths.resolve(item) for item in inputs]
    found = [
        folder
        for folder in (cvat.exports_dir(workspace), cvat.user_exports_dir(workspace))
        if folder.is_dir()
    ]
    if not found:
        raise ReviewError(
            f"no annotation batches: neither {cvat.exports_dir(workspace)} nor "
            f"{cvat.user_exports_dir(workspace)} exists (run stage 03 or put CVAT exports there)"
        )
    return found


def review_curve(ranking, mistakes):
    """Share of the known mistakes found against the share of images reviewed, in ranking order.

    Returns:
        (reviewed fractions, found fractions): numpy arrays starting at 0
    """
    records = mistakes.get("mistakes", []) if isinstance(mistakes, dict) else list(mistakes or [])
    per_image = Counter(mistake_key(record) for record in records)
    counts = np.array([per_image.get(item["key"], 0) for item in ranking], dtype=float)
    reviewed = np.arange(len(counts) + 1) / max(len(counts), 1)
    found = np.concatenate([[0.0], np.cumsum(counts)]) / max(counts.sum(), 1.0)
    return reviewed, found


def plot_review_curve(ranking, mistakes, fraction=0.1):
    """The review curve (:func:`review_curve`) against random order, with the reviewed share marked.

    Returns:
        the matplotlib Figure
    """
    import matplotlib.pyplot as plt

    reviewed, found = review_curve(ranking, mistakes)
    quality = review_quality(ranking, mistakes, fraction)
    figure, axis = plt.subplots(figsize=(6.5, 4))
    axis.plot(100 * reviewed, 100 * found, label="model-free ranking")
    axis.plot([0, 100], [0, 100], linestyle="--", color="grey", label="random order")
    axis.axvline(100 * fraction, color="tab:red", linewidth=1)
    recall = quality["recall"] or 0.0
    axis.annotate(
        f"top {fraction:.0%}: {recall:.0%} of the mistakes",
        (100 * fraction, 100 * recall),
        xytext=(8, -14),
        textcoords="offset points",
        fontsize=9,
    )
    axis.set_xlabel("images reviewed, most suspicious first (%)")
    axis.set_ylabel("injected mistakes found (%)")
    axis.set_title(f"Review quality: {quality['mistakes']} mistakes in {quality['images']} images")
    axis.legend(loc="lower right")
    visualize.add_caption(
        figure,
        "The steeper the curve, the fewer images a reviewer must open to catch the annotators' mistakes.",
    )
    return figure


def write_summary(path, images, qa_table, ranking, quality=None, problems=()):
    """Writes the review's summary JSON (atomically): counts, QA, the ranking, the measured quality.

    Returns:
        the Path written
    """
    from platelab.atomic import atomic_write_json

    document = {
        "format": SUMMARY_FORMAT,
        "images": len(images),
        "boxes": sum(len(image.objects) for image in images),
        "batches": sorted({image.batch for image in images}),
        "qa": {
            check: {"images": int(row["images"]), "boxes": int(row["boxes"])}
            for check, row in qa_table.iterrows()
        },
        "ranking": [
            {
                "key": item["key"],
                "score": item["score"],
                "evidence": [entry["message"] for entry in item["evidence"]],
            }
            for item in ranking
            if item["score"] > 0
        ],
        "quality": quality,
        "problems": list(problems),
    }
    path = Path(path)
    atomic_write_json(path, document)
    return path


# --------------------------------------------------------------------------- QA checks


def run_qa_checks(images, tiny_pixels=None, duplicate_iou=DUPLICATE_IOU):
    """Runs the QA checks (:data:`QA_CHECKS`) on loaded images.

    Sets ``qa_flags`` on every image and box, and returns the counts.

    Args:
        images: :class:`ReviewImage` objects
        tiny_pixels: per canonical label, the tiny-box limit in pixels
            (default :data:`TINY_BOX_PIXELS`)
        duplicate_iou: IoU above which two boxes of one label are duplicates

    Returns:
        a pandas DataFrame indexed by check: ``images``, ``boxes``, ``what``
    """
    import pandas as pd

    tiny_pixels = dict(TINY_BOX_PIXELS, **(tiny_pixels or {}))
    counts = {check: [0, 0] for check in QA_CHECKS}
    for image in images:
        flags = set()
        for item in image.objects:
            item["qa_flags"] = []
        for item in image.objects:
            raw = item.get("raw_bbox") or item["bbox"]
            if (
                min(raw[0], raw[2]) < 0
                or min(raw[1], raw[3]) < 0
                or max(raw[0], raw[2]) > image.width
                or max(raw[1], raw[3]) > image.height
                or raw[2] - raw[0] < 1
                or raw[3] - raw[1] < 1
            ):
                item["qa_flags"].append("qa_outside_or_degenerate")
            limit = tiny_pixels.get(item["label"], min(tiny_pixels.values()))
            if min(item["bbox"][2] - item["bbox"][0], item["bbox"][3] - item["bbox"][1]) < limit:
                item["qa_flags"].append("qa_tiny_boxes")
            if not item["known"]:
                item["qa_flags"].append("qa_unknown_labels")
        for first in range(len(image.objects)):
            for second in range(first + 1, len(image.objects)):
                a, b = image.objects[first], image.objects[second]
                if a["label"] == b["label"] and boxes_lib.iou(a["bbox"], b["bbox"]) > duplicate_iou:
                    for item in (a, b):
                        if "qa_duplicate_boxes" not in item["qa_flags"]:
                            item["qa_flags"].append("qa_duplicate_boxes")
        vehicles = [item["bbox"] for item in image.objects if item["label"] == "vehicle"]
        for item in image.objects:
            if item["label"] == "license_plate":
                inside = max((_inside_fraction(item["bbox"], box) for box in vehicles), default=0.0)
                if inside < ENCLOSED_FRACTION:
                    item["qa_flags"].append("qa_plate_outside_vehicle")
        for item in image.objects:
            flags.update(item["qa_flags"])
            for check in item["qa_flags"]:
                counts[check][1] += 1
        if image.dropped_boxes:
            flags.add("qa_outside_or_degenerate")
            counts["qa_outside_or_degenerate"][1] += image.dropped_boxes
        if not image.objects:
            flags.add("qa_no_labels")
        image.qa_flags = sorted(flags)
        for check in flags:
            counts[check][0] += 1
    table = pd.DataFrame(
        [
            {"check": check, "images": counts[check][0], "boxes": counts[check][1], "what": what}
            for check, what in QA_CHECKS.items()
        ]
    ).set_index("check")
    table.loc["qa_no_labels", "boxes"] = 0
    return table


def class_balance(images, by="batch"):
    """Boxes per canonical label (unknown labels as one column) per batch or vantage point.

    Args:
        images: :class:`ReviewImage` objects
        by: ``batch``, ``vantage``, ``lighting`` or ``source_id``

    Returns:
        a pandas DataFrame (rows: the groups, plus ``images``; columns: labels)
    """
    import pandas as pd

    counts = defaultdict(Counter)
    image_counts = Counter()
    for image in images:
        group = getattr(image, by) or "(unknown)"
        image_counts[group] += 1
        for item in image.objects:
            counts[group][item["label"] if item["known"] else "(unknown label)"] += 1
    columns = list(LABELS) + sorted(
        {label for counter in counts.values() for label in counter} - set(LABELS)
    )
    table = pd.DataFrame(
        [[counts[group].get(label, 0) for label in columns] for group in sorted(image_counts)],
        index=sorted(image_counts),
        columns=columns,
    )
    table.insert(0, "images", [image_counts[group] for group in table.index])
    table.index.name = by
    return table


def box_shapes(images):
    """One row per box: label, width and height (pixels), area fraction, aspect (width / height)."""
    import pandas as pd

    rows = []
    for image in images:
        for item in image.objects:
            width = item["bbox"][2] - item["bbox"][0]
            height = item["bbox"][3] - item["bbox"][1]
            rows.append(
                {
                    "label": item["label"] if item["known"] else "(unknown label)",
                    "width": width,
                    "height": height,
                    "area_fraction": width * height / (image.width * image.height),
                    "aspect": width / height if height > 0 else float("nan"),
                    "batch": image.batch,
                    "vantage": image.vantage,
                }
            )
    return pd.DataFrame(
        rows, columns=["label", "width", "height", "area_fraction", "aspect", "batch", "vantage"]
    )


def plot_class_balance(images):
    """Bar charts of boxes per label, per batch and per vantage point.

    Returns:
        the matplotlib Figure
    """
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(13, 3.8))
    for axis, by, title in (
        (axes[0], "batch", "per batch"),
        (axes[1], "vantage", "per vantage point"),
    ):
        table = class_balance(images, by=by).drop(columns="images")
        positions = np.arange(len(table.index))
        width = 0.8 / max(1, len(table.columns))
        for offset, label in enumerate(table.columns):
            axis.bar(
                positions + (offset - (len(table.columns) - 1) / 2) * width,
                table[label],
                width,
                label=label,
            )
        axis.set_xticks(positions, table.index, rotation=30, ha="right", fontsize=8)
        axis.set_xlabel(by)
        axis.set_ylabel("boxes (count)")
        axis.set_title(f"Class balance {title}")
        axis.legend(fontsize=8)
    visualize.add_caption(
        figure,
        "Boxes per canonical label; a batch or vantage point with few plates teaches the detector little about them.",
    )
    return figure


def plot_box_shapes(images):
    """Histograms of box size (sqrt of area fraction) and aspect (log scale) per class.

    Returns:
        the matplotlib Figure
    """
    import matplotlib.pyplot as plt

    table = box_shapes(images)
    figure, axes = plt.subplots(1, 2, figsize=(13, 3.8))
    for label in sorted(table["label"].unique()) if len(table) else []:
        rows = table[table["label"] == label]
        axes[0].hist(
            100 * np.sqrt(rows["area_fraction"]), bins=40, alpha=0.6, label=f"{label} ({len(rows)})"
        )
        aspects = rows["aspect"].replace([np.inf, -np.inf], np.nan).dropna()
        axes[1].hist(np.log2(aspects.clip(lower=1 / 64, upper=64)), bins=40, alpha=0.6, label=label)
    axes[0].set_xlabel("box size: square root of the area fraction (% of the image side)")
    axes[0].set_ylabel("boxes (count)")
    axes[0].set_title("Box size per class")
    axes[1].set_xlabel("aspect: log2(width / height)")
    axes[1].set_ylabel("boxes (count)")
    axes[1].set_title("Box aspect per class")
    for axis in axes:
        axis.legend(fontsize=8)
    visualize.add_caption(
        figure,
        "Plates are small and wide, vehicles larger and squarer; boxes far from their class's bulk are worth a look.",
    )
    return figure


def mistakes_gallery(images, ranking, count=6, columns=3):
    """The most suspicious images with their boxes; the suspected boxes drawn thick.

    Args:
        images: :class:`ReviewImage` objects
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


# --------------------------------------------------------------------------- the FiftyOne dataset


def build_dataset(images, name, *, aliases=None, ranking=None, persistent=True, progress=True):
    """Loads the images into one FiftyOne dataset, idempotently.

    Samples are keyed by their stable file path: a reload updates fields and
    labels but keeps review tags; samples no longer in any batch are removed
    (and listed in the returned problems). Labels are written as spelled, then
    mapped to the canonical labels with ``map_labels``; unknown spellings stay
    as written with ``unknown_label=True``. QA flags (run :func:`run_qa_checks`
    first) and the ranking's evidence are stored, and the saved views made
    (:func:`save_views`).

    Args:
        images: :class:`ReviewImage` objects with stable image paths
        name: the dataset name (e.g. :func:`default_dataset_name`)
        aliases: canonical -> spellings (default :func:`load_aliases`)
        ranking: optionally the list of :func:`rank_images`
        persistent: keep the dataset in the database
        progress: show progress bars

    Returns:
        (dataset, problems): the fiftyone Dataset and one-line messages
    """
    from platelab.fiftyone_setup import import_fiftyone

    fo = import_fiftyone()
    aliases = aliases or load_aliases()
    lookup = annotations.build_alias_map(aliases)
    dataset = fo.load_dataset(name) if fo.dataset_exists(name) else fo.Dataset(name)
    dataset.persistent = bool(persistent)
    _declare_fields(dataset, fo)
    ranked = {item["key"]: item for item in ranking or []}
    samples = [
        _sample(fo, image, ranked.get(image.key))
        for image in tqdm(images, desc="samples", disable=not progress, leave=False)
    ]
    problems = []
    wanted = {str(sample.filepath) for sample in samples}
    stale = [
        sample_id
        for sample_id, filepath in zip(*dataset.values(["id", "filepath"]), strict=True)
        if filepath not in wanted
    ]
    if stale:
        problems.append(
            f"{name}: {len(stale)} sample(s) no longer in any batch removed from the dataset"
        )
        dataset.delete_samples(stale)
    if samples:
        dataset.merge_samples(
            samples,
            key_field="filepath",
            merge_lists=False,
            overwrite=True,
            omit_fields=["tags", "split"],
            progress=False,
        )
    mapping = {
        spelling: lookup[_label_key(spelling)]
        for spelling in set(dataset.distinct("ground_truth.detections.label"))
        if _label_key(spelling) in lookup and lookup[_label_key(spelling)] != spelling
    }
    if mapping:
        dataset.map_labels("ground_truth", mapping).save("ground_truth")
    dataset.info["review"] = {
        "aliases": aliases,
        "unknown_labels": sorted(
            {obj["original_label"] for image in images for obj in image.objects if not obj["known"]}
        ),
    }
    dataset.save()
    save_views(dataset)
    return dataset, problems


def save_views(dataset):
    """(Re)creates the saved views: one per QA check, and the likely-mistakes ranking.

    Returns:
        a dict view name -> number of samples in it
    """
    from platelab.fiftyone_setup import import_fiftyone

    import_fiftyone()
    from fiftyone import ViewField as F

    counts = {}
    for check in QA_CHECKS:
        view = dataset.match(F("qa_flags").contains(check))
        dataset.save_view(check, view, description=QA_CHECKS[check], overwrite=True)
        counts[check] = len(view)
    view = dataset.match(F("suspicion") > 0).sort_by("suspicion", reverse=True)
    dataset.save_view(
        LIKELY_MISTAKES_VIEW,
        view,
        description="images with evidence of an annotation mistake, most suspicious first",
        overwrite=True,
    )
    counts[LIKELY_MISTAKES_VIEW] = len(view)
    if dataset.has_sample_field("mistakenness"):
        view = dataset.exists("mistakenness").sort_by("mistakenness", reverse=True)
        dataset.save_view(
            MISTAKENNESS_VIEW,
            view,
            description="FiftyOne Brain mistakenness, highest first",
            overwrite=True,
        )
        counts[MISTAKENNESS_VIEW] = len(view)
    if dataset.has_sample_field("possible_missing"):
        view = dataset.match(F("possible_missing") > 0).filter_labels(
            "predictions",
            F("possible_missing") == True,  # noqa: E712 - a query expression
        )
        dataset.save_view(
            MISSING_CANDIDATES_VIEW,
            view,
            description="confident predictions without a matching ground-truth box",
            overwrite=True,
        )
        counts[MISSING_CANDIDATES_VIEW] = len(view)
    return counts


def add_predictions(dataset, predictions, min_score=0.05, progress=True):
    """Stores a detector's predictions in the ``predictions`` field.

    Args:
        dataset: the review dataset
        predictions: a mapping (sample file path, ``<batch>/<name>`` key or
            SHA-256) -> list of ``{"label", "score", "bbox"}`` (pixels; any
            known spelling), or a callable ``predictions(image_bgr) -> such a
            list``
        min_score: predictions scoring lower are left out
        progress: show a progress bar

    Returns:
        the number of predicted boxes stored
    """
    import cv2

    from platelab.fiftyone_setup import import_fiftyone

    fo = import_fiftyone()
    lookup = annotations.build_alias_map(
        dataset.info.get("review", {}).get("aliases") or load_aliases()
    )
    stored = 0
    for sample in tqdm(
        dataset.iter_samples(autosave=True, progress=False),
        total=len(dataset),
        desc="predictions",
        disable=not progress,
    ):
        width, height = sample.metadata.width, sample.metadata.height
        if callable(predictions):
            pixels = cv2.imread(sample.filepath, cv2.IMREAD_COLOR)
            found = predictions(pixels) if pixels is not None else []
        else:
            key = f"{sample['batch']}/{sample['image_name']}"
            found = next(
                (
                    predictions[item]
                    for item in (sample.filepath, key, sample["sha256"])
                    if item in predictions
                ),
                [],
            )
        detections = []
        for item in found:
            if float(item.get("score", 1.0)) < min_score:
                continue
            x0, y0, x1, y1 = (float(value) for value in item["bbox"])
            label = annotations.normalize_label(item["label"], lookup) or str(item["label"])
            detections.append(
                fo.Detection(
                    label=label,
                    bounding_box=[x0 / width, y0 / height, (x1 - x0) / width, (y1 - y0) / height],
                    confidence=float(item.get("score", 1.0)),
                )
            )
        sample["predictions"] = fo.Detections(detections=detections)
        stored += len(detections)
    return stored


def compute_prediction_mistakenness(dataset, pred_field="predictions", min_confidence=0.5):
    """FiftyOne Brain's mistakenness of the ground truth, given a detector's predictions.

    Runs ``fiftyone.brain.compute_mistakenness`` (no model involved: it
    compares the stored predictions with the ground truth), which sets
    ``mistakenness`` per sample and box, ``possible_missing`` (confident
    predictions without a matching box) and ``possible_spurious``; then saves
    the ``mistakenness`` and ``missing_box_candidates`` views.

    Args:
        dataset: the review dataset, with predictions (see :func:`add_predictions`)
        pred_field: the predictions field
        min_confidence: predictions below this confidence are ignored

    Returns:
        a pandas DataFrame of the samples by mistakenness: image, mistakenness,
        possible missing, possible spurious
    """
    import pandas as pd

    from platelab.fiftyone_setup import import_fiftyone

    import_fiftyone()
    import fiftyone.brain as fob
    from fiftyone import ViewField as F

    if not dataset.has_sample_field(pred_field):
        raise ReviewError(f"{dataset.name}: no '{pred_field}' field (add predictions first)")
    view = dataset.filter_labels(pred_field, F("confidence") >= min_confidence, only_matches=False)
    if dataset.has_brain_run("mistakenness"):
        dataset.delete_brain_run("mistakenness")
    fob.compute_mistakenness(view, pred_field, label_field="ground_truth", progress=False)
    save_views(dataset)
    keys, mistakenness, missing, spurious = dataset.values(
        [
            F("batch").concat("/").concat(F("image_name")),
            "mistakenness",
            "possible_missing",
            "possible_spurious",
        ]
    )
    table = pd.DataFrame(
        {
            "image": keys,
            "mistakenness": mistakenness,
            "possible missing": missing,
            "possible spurious": spurious,
        }
    )
    return table.sort_values("mistakenness", ascending=False, na_position="last").reset_index(
        drop=True
    )


def launch_app(dataset, view=None, port=None, auto=False):
    """Opens the FiftyOne App on 127.0.0.1 (in JupyterLab with ``auto=True``).

    Args:
        dataset: the review dataset
        view: a view or a saved view's name to open on
        port: the port (default FiftyOne's)
        auto: show the App in the notebook cell output

    Returns:
        the fiftyone Session (``session.url``; close it with ``session.close()``)
    """
    from platelab.fiftyone_setup import import_fiftyone

    fo = import_fiftyone()
    if isinstance(view, str):
        view = dataset.load_saved_view(view)
    keywords = {"address": "127.0.0.1", "auto": auto}
    if port is not None:
        keywords["port"] = int(port)
    return fo.launch_app(dataset, view=view, **keywords)


def set_tag(dataset, sample_id, tag):
    """Gives an image one review tag (:data:`REVIEW_TAGS`), replacing any other review tag.

    Raises:
        ReviewError: for a tag that is not a review tag
    """
    if tag not in REVIEW_TAGS:
        raise ReviewError(f"'{tag}' is not a review tag ({', '.join(REVIEW_TAGS)})")
    sample = dataset[sample_id]
    sample.tags = [item for item in sample.tags if item not in REVIEW_TAGS] + [tag]
    sample.save()


def export_tags(dataset):
    """The review tags for stage 05: per image hash, its tags and metadata.

    Returns:
        a dict sha256 -> ``{"tags", "filepath", "batch", "image_name",
        "source_id", "vantage", "lighting", "time"}`` (the mapping
        :func:`platelab.merge.load_review` accepts)
    """
    fields = [
        "sha256",
        "tags",
        "filepath",
        "batch",
        "image_name",
        "source_id",
        "vantage",
        "lighting",
        "time",
    ]
    values = dataset.values(fields)
    exported = {}
    for row in zip(*values, strict=True):
        record = dict(zip(fields, row, strict=True))
        digest = record.pop("sha256")
        if not digest:
            continue
        entry = exported.setdefault(digest, dict(record, tags=[]))
        entry["tags"] = sorted(set(entry["tags"]) | set(record["tags"] or []))
    return exported


def tagged_images(dataset, tag):
    """The images tagged ``tag``: a list of dicts ``filepath``, ``batch``, ``image_name``, ``sha256``."""
    view = dataset.match_tags(tag)
    fields = ["filepath", "batch", "image_name", "sha256"]
    return [dict(zip(fields, row, strict=True)) for row in zip(*view.values(fields), strict=True)]


# --------------------------------------------------------------------------- private helpers


def _raw_boxes(record):
    """(boxes dropped by the loader, [(label, box as written)]) of a record's XML."""
    if record.xml_path is None:
        return 0, []
    try:
        parsed = annotations.parse_voc_xml(record.xml_path)
    except annotations.AnnotationError:
        return 0, []
    raw = [(item["label"], item["bbox"]) for item in parsed["objects"]]
    return max(0, len(raw) - len(record.objects)), raw


def _pop_raw_box(raw_boxes, item):
    """The box as written for a loaded (possibly clipped) object; consumed in order."""
    for position, (label, box) in enumerate(raw_boxes):
        if label != item["label"]:
            continue
        low_x, high_x = sorted((box[0], box[2]))
        low_y, high_y = sorted((box[1], box[3]))
        inside = (
            low_x <= item["bbox"][0] + 1e-6
            and low_y <= item["bbox"][1] + 1e-6
            and high_x >= item["bbox"][2] - 1e-6
            and high_y >= item["bbox"][3] - 1e-6
        )
        if inside:
            del raw_boxes[: position + 1]
            return [float(value) for value in box]
    return [float(value) for value in item["bbox"]]


def _duplicate_evidence(image, neighbours=()):
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
            by_overlap = min(1.0, max(0.0, (overlap - 0.7) / 0.2))
            by_edges = 1.0 if edges <= 1.5 and overlap >= 0.6 else 0.0
            if by_edges > by_overlap and _pair_in_neighbours(a, b, neighbours):
                by_edges = 0.2
            strength = max(by_overlap, by_edges)
            if strength > 0:
                found.append(
                    {
                        "kind": "duplicate",
                        "strength": strength,
                        "object": second,
                        "message": f"{a['label']} boxes {first} and {second} overlap (IoU {overlap:.2f})",
                    }
                )
    return found


def _pair_in_neighbours(first, second, neighbours):
    """Whether a neighbouring frame also holds two boxes of this label where ``first`` and ``second`` are."""
    for other in neighbours:
        near = [
            item
            for item in other.objects
            if item["label"] == first["label"]
            and max(
                boxes_lib.iou(_grown(item["bbox"]), _grown(box["bbox"])) for box in (first, second)
            )
            >= 0.3
        ]
        if len(near) >= 2:
            return True
    return False


def _plate_outside_evidence(image):
    found = []
    vehicles = [item["bbox"] for item in image.objects if item["label"] == "vehicle"]
    for position, item in enumerate(image.objects):
        if item["label"] != "license_plate":
            continue
        inside = max((_inside_fraction(item["bbox"], box) for box in vehicles), default=0.0)
        if inside < ENCLOSED_FRACTION:
            found.append(
                {
                    "kind": "plate_outside_vehicle",
                    "strength": 1.0 - inside / ENCLOSED_FRACTION,
                    "object": position,
                    "message": f"plate {position} is {inside:.0%} inside the nearest vehicle box",
                }
            )
    return found


def _inside_fraction(inner, outer):
    x0, y0 = max(inner[0], outer[0]), max(inner[1], outer[1])
    x1, y1 = min(inner[2], outer[2]), min(inner[3], outer[3])
    intersection = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    area = _area(inner)
    return intersection / area if area > 0 else 0.0


def _area(box):
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def _label_key(label):
    return re.sub(r"[\s_\-]+", " ", str(label).strip().lower())


def _source_from_name(name):
    """(source_id, time) from a stage-01 frame name ``<source>_t<milliseconds>``, else (None, None)."""
    match = re.fullmatch(r"(.+)_t(\d{6,})", Path(str(name)).stem)
    if not match:
        return None, None
    return match.group(1), int(match.group(2)) / 1000.0


def _appearance(images, read_image=None):
    """key -> per object, its :func:`_appearance_features` (one read of each image)."""
    import cv2

    reader = read_image or (lambda path: cv2.imread(str(path), cv2.IMREAD_COLOR))
    found = {}
    for image in images:
        pixels = reader(image.image_path) if image.objects else None
        found[image.key] = [_appearance_features(pixels, item["bbox"]) for item in image.objects]
    return found


def _neighbour_frames(images):
    """key -> the frames just before and after it in the same video (within the track gap)."""
    neighbours = {}
    for members in _frames_by_source(images):
        for position, image in enumerate(members):
            around = []
            for other_position in (position - 1, position + 1):
                if 0 <= other_position < len(members):
                    other = members[other_position]
                    if abs(other.time - image.time) <= TRACK_MAX_GAP:
                        around.append(other)
            neighbours[image.key] = around
    return neighbours


def _frames_by_source(images):
    """The images of each source video that know their time, in time order (a list per video)."""
    by_source = defaultdict(list)
    for image in images:
        if image.source_id is not None and image.time is not None:
            by_source[image.source_id].append(image)
    return [sorted(members, key=lambda image: image.time) for members in by_source.values()]


def _track_neighbours(images):
    """key -> the two frames of the same video the track evidence compares it with.

    The frames just before and after; at a video's ends or beside a gap
    longer than :data:`TRACK_MAX_GAP`, the two nearest on one side.
    """
    neighbours = {}
    for members in _frames_by_source(images):
        for position, image in enumerate(members):
            near = [
                other
                for other in range(position - 2, position + 3)
                if other != position
                and 0 <= other < len(members)
                and abs(members[other].time - image.time) <= TRACK_MAX_GAP
            ]
            around = [other for other in (position - 1, position + 1) if other in near]
            if len(around) == 1:
                side = around[0] + (around[0] - position)  # one further on the same side
                if side in near:
                    around.append(side)
            neighbours[image.key] = [members[other] for other in around]
    return neighbours


def _box_context_features(image):
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
            inside = _inside_fraction(item["bbox"], other["bbox"])
            holds = _inside_fraction(other["bbox"], item["bbox"]) >= ENCLOSED_FRACTION
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


def _appearance_features(pixels, box):
    """Label-free look of a box's crop: brightness, contrast, colour, edges, a tiny grey thumbnail.

    Plates are bright, saturated or high-contrast rectangles with text;
    vehicles are larger blobs of body colour and glass. NaN where the crop
    cannot be read (the classifier takes missing values).
    """
    import cv2

    count = 6 + APPEARANCE_SIZE[0] * APPEARANCE_SIZE[1]
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
    thumbnail = cv2.resize(grey, APPEARANCE_SIZE, interpolation=cv2.INTER_AREA)
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


def _label_outlier_evidence(images, seed, appearance=None):
    """Out-of-fold P(label | box shape, context and look); a low probability of the written label is evidence.

    Args:
        images: the :class:`ReviewImage` objects
        seed: seed of the fold assignment and the classifiers
        appearance: key -> per object, :func:`_appearance_features` (None: shape and context only)
    """
    rows, labels, owners, groups = [], [], [], []
    for image_number, image in enumerate(images):
        looks = (appearance or {}).get(image.key)
        for position, features in enumerate(_box_context_features(image)):
            item = image.objects[position]
            if not item["known"] or item["label"] not in LABELS:
                continue
            rows.append(features + (list(looks[position]) if looks is not None else []))
            labels.append(LABELS.index(item["label"]))
            owners.append((image.key, position, item["label"]))
            groups.append(image_number)
    found = defaultdict(list)
    probabilities = _out_of_fold_probabilities(
        np.array(rows, dtype=float), np.array(labels), np.array(groups), seed
    )
    if probabilities is None:
        return found
    for (key, position, label), row_probabilities, target in zip(
        owners, probabilities, labels, strict=True
    ):
        probability = float(row_probabilities[target])
        strength = min(1.0, max(0.0, (0.5 - probability) / 0.45))
        if strength > 0:
            other = LABELS[1 - target]
            found[key].append(
                {
                    "kind": "label_outlier",
                    "strength": strength,
                    "object": position,
                    "message": f"{label} box {position} looks like a {other} (P({label}) = {probability:.2f})",
                }
            )
    return found


def _out_of_fold_probabilities(rows, targets, groups, seed, folds=5):
    """Class probabilities of each row from a gradient-boosting model that did not see its group.

    The models train on one thread: on a busy machine OpenMP's threads
    oversubscribe the cores and run ten times slower.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    if len(rows) < 20 or len(set(targets.tolist())) < 2:
        return None
    unique_groups = np.unique(groups)
    folds = min(folds, len(unique_groups))
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
                max_iter=60, learning_rate=0.2, random_state=seed
            )
            model.fit(rows[train], targets[train])
            predicted = model.predict_proba(rows[test])
            for column, label in enumerate(model.classes_):
                probabilities[test, int(label)] = predicted[:, column]
    return probabilities


def _one_thread():
    """A context limiting native thread pools (OpenMP, BLAS) to one thread, where threadpoolctl exists."""
    import contextlib

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn depends on it
        return contextlib.nullcontext()
    return threadpool_limits(limits=1)


def _track_evidence(images, read_image=None, check=None):
    """Evidence from the neighbouring frames of each video (see :func:`rank_images`).

    Args:
        images: the :class:`ReviewImage` objects
        read_image: function path -> BGR image or None
        check: key -> indexes of boxes whose label the neighbouring frames
            should confirm (each looked for in them, besides the votes that
            looking for the neighbours' objects here gives)

    Returns:
        (evidence, votes): key -> evidence list; key -> {object index: [agree, disagree]}
        (how many neighbouring frames give the object at that box the same or the other label)
    """
    import functools

    import cv2

    reader = read_image or (lambda path: cv2.imread(str(path), cv2.IMREAD_COLOR))

    @functools.lru_cache(maxsize=6)
    def grey(path):
        pixels = reader(path)
        if pixels is None or pixels.ndim == 2:
            return pixels
        return cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY)

    neighbours = _track_neighbours(images)
    evidence, votes = defaultdict(list), {}
    ordered = sorted(
        (image for image in images if image.key in neighbours),
        key=lambda image: (image.source_id, image.time),
    )
    for image in ordered:
        findings = []
        for other in neighbours[image.key]:
            found = _frame_findings(image, other, grey)
            if found is not None:
                findings.append(found)
        if findings:
            evidence[image.key], votes[image.key] = _combine_findings(image, findings)
            for index in (check or {}).get(image.key, ()):
                agree, disagree = _label_seen(image.objects[index], findings)
                counts = votes[image.key].setdefault(index, [0, 0])
                counts[0] = max(counts[0], agree)
                counts[1] = max(counts[1], disagree)
    return evidence, votes


def _label_seen(item, findings):
    """How many neighbouring frames give the object at ``item``'s box the same label, and the other.

    The box's content is looked for in each neighbour; the neighbour's box
    there (IoU of the boxes grown by a pixel at least 0.5) gives its label.
    """
    agree = disagree = 0
    for finding in findings:
        found = _locate(item["bbox"], finding["target"], finding["source"])
        if found is None or _match_confidence(found[1]) < 0.5:
            continue
        there = [
            other
            for other in finding["neighbour"].objects
            if other["known"]
            and boxes_lib.iou(_grown(other["bbox"]), _grown(found[0])) >= MATCH_SAME_PLACE
        ]
        labels = {other["label"] for other in there}
        if item["label"] in labels:
            agree += 1
        elif labels:
            disagree += 1
    return agree, disagree


def _locate(box, source, target, radius_factor=1.0, offset=(0.0, 0.0), sizes=(1.0,)):
    """Where the content of ``box`` in ``source`` lies in ``target`` (grey images).

    The box (grown by 15 %, and to :data:`MATCH_MIN_TEMPLATE` pixels) is
    the template, searched within ``radius_factor`` box sizes plus 8 pixels
    around its place moved by ``offset`` (pixels); among near-equal peaks the
    nearer wins, and a look-alike elsewhere in the window (a stream of
    similar cars at night) lowers the returned correlation by what the
    peak's lead over it lacks of :data:`AMBIGUITY`. With several
    ``sizes`` the template is also matched grown or shrunk by those factors
    (an approaching or receding vehicle), the best match winning.

    Returns:
        (the box moved there, the peak's normalised cross-correlation), or
        None where the template is flat, too small or the search window too narrow
    """
    import cv2

    height, width = source.shape[:2]
    x0, y0, x1, y1 = box
    box_width, box_height = x1 - x0, y1 - y0
    pad_x = max(0.15 * box_width, (MATCH_MIN_TEMPLATE - box_width) / 2, 2.0)
    pad_y = max(0.15 * box_height, (MATCH_MIN_TEMPLATE - box_height) / 2, 2.0)
    left, top = max(0, int(math.floor(x0 - pad_x))), max(0, int(math.floor(y0 - pad_y)))
    right = min(width, int(math.ceil(x1 + pad_x)))
    bottom = min(height, int(math.ceil(y1 + pad_y)))
    if right - left < 6 or bottom - top < 6:
        return None
    radius = radius_factor * max(box_width, box_height) + 8.0
    centre_x, centre_y = left + offset[0], top + offset[1]
    window_left = max(0, int(centre_x - radius))
    window_top = max(0, int(centre_y - radius))
    window_right = min(width, int(centre_x + (right - left) + radius))
    window_bottom = min(height, int(centre_y + (bottom - top) + radius))
    scale = min(1.0, math.sqrt(MATCH_TEMPLATE_AREA / ((right - left) * (bottom - top))))
    template = source[top:bottom, left:right]
    window = target[window_top:window_bottom, window_left:window_right]
    if scale < 1.0:
        template = cv2.resize(template, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        window = cv2.resize(window, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    if min(template.shape[:2]) < 4 or float(template.std()) < MATCH_TEXTURE:
        return None
    best = None
    for size in sizes:
        sized = template
        if size != 1.0:
            sized = cv2.resize(template, None, fx=size, fy=size, interpolation=cv2.INTER_LINEAR)
        if (
            min(sized.shape[:2]) < 4
            or window.shape[0] < sized.shape[0]
            or window.shape[1] < sized.shape[1]
        ):
            continue
        scores = cv2.matchTemplate(window, sized, cv2.TM_CCOEFF_NORMED)
        scores = np.nan_to_num(scores, nan=-1.0, posinf=-1.0, neginf=-1.0)
        # The template's place without motion, its centre kept when it is resized.
        still_x = (centre_x - window_left) * scale + (template.shape[1] - sized.shape[1]) / 2
        still_y = (centre_y - window_top) * scale + (template.shape[0] - sized.shape[0]) / 2
        rows, columns = np.mgrid[0 : scores.shape[0], 0 : scores.shape[1]]
        distance = np.hypot(columns - still_x, rows - still_y) / max(radius * scale, 1.0)
        penalised = scores - 0.05 * distance - (0.0 if size == 1.0 else 0.02)
        peak_y, peak_x = np.unravel_index(int(np.argmax(penalised)), scores.shape)
        if best is not None and penalised[peak_y, peak_x] <= best[0]:
            continue
        peak = float(scores[peak_y, peak_x])
        reach_y, reach_x = max(1, sized.shape[0] // 2), max(1, sized.shape[1] // 2)
        elsewhere = (np.abs(rows - peak_y) >= reach_y) | (np.abs(columns - peak_x) >= reach_x)
        if elsewhere.any():
            peak -= max(0.0, AMBIGUITY - (peak - float(scores[elsewhere].max())))
        new_x0 = window_left + peak_x / scale + (x0 - left) * size
        new_y0 = window_top + peak_y / scale + (y0 - top) * size
        found = [new_x0, new_y0, new_x0 + box_width * size, new_y0 + box_height * size]
        best = (float(penalised[peak_y, peak_x]), found, peak)
    return None if best is None else (best[1], best[2])


def _frame_findings(current, neighbour, grey):
    """Each object of ``neighbour`` looked for in ``current``, and the box of ``current`` it meets.

    Returns:
        None without pixels, else a dict: ``neighbour``, ``source`` and
        ``target`` (grey images) and ``located``: per object found, dicts
        ``item``, ``box`` (where it lies now), ``ncc``, ``same`` ((index,
        IoU) of the same-label box assigned to it, one box per object,
        greedily by IoU; (None, 0) when none overlaps) and ``other`` ((index,
        IoU) of the best other-label box)
    """
    source = grey(neighbour.image_path)
    target = grey(current.image_path)
    if source is None or target is None or source.shape != target.shape:
        return None
    located, moved = [], {}
    carriers = _carriers(neighbour.objects)
    for item in sorted(
        (item for item in neighbour.objects if item["known"]),
        key=lambda item: item["label"] != "vehicle",  # vehicles first: they carry the plates
    ):
        carrier = carriers.get(id(item))
        found, offset = None, (0.0, 0.0)
        if carrier is not None and id(carrier) in moved:
            # A plate moves with its vehicle, often further than its own size.
            offset = moved[id(carrier)]
            found = _locate(item["bbox"], source, target, 0.5, offset)
        if found is None:
            sizes = VEHICLE_SIZES if item["label"] == "vehicle" else (1.0,)
            found, offset = _locate(item["bbox"], source, target, sizes=sizes), (0.0, 0.0)
        if found is None:
            continue
        box, ncc = found
        if item["label"] == "vehicle" and _match_confidence(ncc) > 0:
            moved[id(item)] = (box[0] - item["bbox"][0], box[1] - item["bbox"][1])
        overlaps = [
            (index, boxes_lib.iou(box, other["bbox"]), other["label"] == item["label"])
            for index, other in enumerate(current.objects)
            if other["known"]
        ]
        located.append(
            {
                "item": item,
                "box": box,
                "ncc": ncc,
                "offset": offset,
                "candidates": [
                    (index, iou) for index, iou, same in overlaps if same and iou > 0.05
                ],
                "other": max(
                    ((index, iou) for index, iou, same in overlaps if not same),
                    key=lambda pair: pair[1],
                    default=(None, 0.0),
                ),
            }
        )
    pairs = sorted(
        (
            (iou, number, index)
            for number, entry in enumerate(located)
            for index, iou in entry["candidates"]
        ),
        reverse=True,
    )
    taken_entries, taken_boxes = set(), set()
    for entry in located:
        entry["same"] = (None, 0.0)
    for iou, number, index in pairs:
        if number in taken_entries or index in taken_boxes:
            continue
        taken_entries.add(number)
        taken_boxes.add(index)
        located[number]["same"] = (index, iou)
    return {"neighbour": neighbour, "source": source, "target": target, "located": located}


def _carriers(objects):
    """id(plate) -> the smallest vehicle box holding at least half of it, for the plates that have one."""
    vehicles = [item for item in objects if item["known"] and item["label"] == "vehicle"]
    found = {}
    for item in objects:
        if item["label"] != "license_plate" or not item["known"]:
            continue
        holding = [
            vehicle
            for vehicle in vehicles
            if _inside_fraction(item["bbox"], vehicle["bbox"]) >= ENCLOSED_FRACTION
        ]
        if holding:
            found[id(item)] = min(holding, key=lambda vehicle: _area(vehicle["bbox"]))
    return found


def _match_confidence(ncc):
    low, high = MATCH_NCC
    return min(1.0, max(0.0, (ncc - low) / (high - low)))


def _size_reliability(box, label):
    """0 for boxes of the tiny-box limit's size (square root of the area), rising to 1 at twice it.

    Tiny objects flicker in and out of annotations and match poorly.
    """
    side = math.sqrt(max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1]))
    tiny = TINY_BOX_PIXELS.get(label, min(TINY_BOX_PIXELS.values()))
    return min(1.0, max(0.0, (side - tiny) / tiny))


def _edges_agree(predicted, box):
    """Whether ``box`` keeps an edge of ``predicted`` on both axes (the object cut by an occluder)."""
    tolerance_x = 0.1 * (predicted[2] - predicted[0]) + 1.5
    tolerance_y = 0.1 * (predicted[3] - predicted[1]) + 1.5
    return (
        abs(box[0] - predicted[0]) <= tolerance_x or abs(box[2] - predicted[2]) <= tolerance_x
    ) and (abs(box[1] - predicted[1]) <= tolerance_y or abs(box[3] - predicted[3]) <= tolerance_y)


def _still_elsewhere(item, findings, number):
    """Whether another neighbouring frame has a box of ``item``'s label where it stands (it stands still)."""
    return any(
        other["label"] == item["label"]
        and boxes_lib.iou(_grown(other["bbox"]), _grown(item["bbox"])) >= 0.8
        for other_number, finding in enumerate(findings)
        if other_number != number
        for other in finding["neighbour"].objects
    )


def _combine_findings(image, findings):
    """Track evidence of one image from its neighbouring frames' findings (see :func:`rank_images`).

    Returns:
        (evidence list, votes {object index: [agree, disagree]})
    """
    votes = defaultdict(lambda: [0, 0])
    candidates = []
    for number, finding in enumerate(findings):
        for entry in finding["located"]:
            confidence = _match_confidence(entry["ncc"])
            if confidence <= 0:
                continue
            item = entry["item"]
            index, overlap = entry["same"]
            if index is not None and overlap >= MATCH_SAME_PLACE:
                votes[index][0] += 1
                continue
            if any(iou >= MATCH_SAME_PLACE for _, iou in entry["candidates"]):
                continue  # a box is there, which another object of the neighbour also claims
            other_index, other_overlap = entry["other"]
            if other_index is not None and other_overlap >= MATCH_SAME_PLACE:
                if confidence >= 0.5:
                    votes[other_index][1] += 1
                continue  # written with the other label: the label evidence covers it
            support = overlap
            if index is not None and _edges_agree(entry["box"], image.objects[index]["bbox"]):
                support = max(support, MATCH_SAME_PLACE)  # cut by an occluder, still there
            disagreement = min(1.0, max(0.0, (MATCH_SAME_PLACE - support) / 0.2))
            if disagreement <= 0:
                continue
            still = _still_elsewhere(item, findings, number)
            if still and boxes_lib.iou(entry["box"], item["bbox"]) < 0.5:
                continue  # it stood still in both neighbours but is not where it stood: hidden
            if "returns" not in entry:
                radius = 0.5 if entry["offset"] != (0.0, 0.0) else 1.0
                back = _locate(
                    entry["box"],
                    finding["target"],
                    finding["source"],
                    radius,
                    (-entry["offset"][0], -entry["offset"][1]),
                    VEHICLE_SIZES if item["label"] == "vehicle" else (1.0,),
                )
                entry["returns"] = back is not None and boxes_lib.iou(back[0], item["bbox"]) >= 0.5
            if not entry["returns"]:
                continue  # the match does not lead back to the object: chance likeness
            reliability = _size_reliability(item["bbox"], item["label"])
            if item["occluded"] or item["truncated"]:
                reliability *= HIDDEN_FACTOR
            box = entry["box"]
            if box[0] < 0 or box[1] < 0 or box[2] > image.width or box[3] > image.height:
                reliability *= 0.5  # leaving the image
            value = confidence * disagreement * reliability
            if value > 0:
                candidates.append((number, entry, value, still))
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
            and other["item"]["label"] == entry["item"]["label"]
            and boxes_lib.iou(other["box"], entry["box"]) >= MATCH_SAME_PLACE
            and _steady(image, (findings[number], entry), (findings[other_number], other))
        ]
        if partners:
            other_position, other_value = max(partners, key=lambda pair: pair[1])
            used.add(other_position)
            strength, seen = min(value, other_value), "both neighbouring frames"
        elif still:
            # Both neighbours have its box here and the image shows it here.
            strength, seen = value, "both neighbouring frames (standing still)"
        else:
            strength = SINGLE_NEIGHBOUR * value * _third_frame(entry, findings, number)
            seen = f"the frame at {_entry_time(findings, number)}"
        if strength < 0.05:
            continue
        item = entry["item"]
        index, overlap = entry["same"]
        box = [round(value) for value in entry["box"]]
        text = item["attributes"].get("text")
        name = f"{item['label']} {text}" if text else item["label"]
        if index is not None and overlap > 0.05:
            evidence.append(
                {
                    "kind": "track_jump",
                    "strength": strength,
                    "object": index,
                    "message": (
                        f"{name}: {seen} show it at {box}, box {index} is off (IoU {overlap:.2f})"
                    ),
                }
            )
        else:
            evidence.append(
                {
                    "kind": "track_gap",
                    "strength": strength,
                    "object": None,
                    "message": f"{name}: {seen} show it at {box}, no box there (missing)",
                }
            )
    jumped = {item["object"] for item in evidence if item["kind"] == "track_jump"}
    for item in _still_shift_evidence(image, findings):
        if item["object"] not in jumped:
            jumped.add(item["object"])
            evidence.append(item)
    return evidence, {index: list(counts) for index, counts in votes.items()}


def _still_shift_evidence(image, findings):
    """Boxes of the image that look like a still object's box moved: same size, off its place.

    An object whose box is the same in both neighbouring frames stood still;
    where the image has no box of its label in that place but one of the
    same size (within 5 % or a pixel and a half) overlapping it, that box
    was most likely drawn off the object (the image need not be matched,
    so this holds where the object is hard to find, e.g. partly hidden).
    """
    if len(findings) < 2:
        return []
    first, second = (finding["neighbour"] for finding in findings[:2])
    found = []
    for item in first.objects:
        if not item["known"] or not any(
            other["known"]
            and other["label"] == item["label"]
            and boxes_lib.iou(_grown(other["bbox"]), _grown(item["bbox"])) >= 0.9
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
            boxes_lib.iou(_grown(other["bbox"]), _grown(box)) >= MATCH_SAME_PLACE
            for _, other in same_label
        ):
            continue
        width, height = box[2] - box[0], box[3] - box[1]
        for index, other in same_label:
            other_width = other["bbox"][2] - other["bbox"][0]
            other_height = other["bbox"][3] - other["bbox"][1]
            overlap = boxes_lib.iou(other["bbox"], box)
            if (
                overlap > 0
                and abs(other_width - width) <= max(1.5, 0.05 * width)
                and abs(other_height - height) <= max(1.5, 0.05 * height)
            ):
                found.append(
                    {
                        "kind": "track_jump",
                        "strength": 0.8 * _size_reliability(box, item["label"]),
                        "object": index,
                        "message": (
                            f"{item['label']} box {index}: the same size as a {item['label']} that "
                            f"stood still at {[round(value) for value in box]} in both neighbouring "
                            f"frames, but off it (IoU {overlap:.2f})"
                        ),
                    }
                )
                break
    return found


def _steady(image, first, second):
    """Whether two neighbours' objects found at one place move as one object would: steadily.

    Each (finding, entry) gives the object's velocity from this image to its
    neighbour (pixels per second); one object keeps it within half its size
    plus 4 pixels per half second (look-alike vehicles of a stream, found at
    one place from both sides, move against each other).
    """
    velocities = []
    for finding, entry in (first, second):
        elapsed = finding["neighbour"].time - image.time
        if not elapsed:
            return True
        velocities.append(
            [(entry["item"]["bbox"][side] - entry["box"][side]) / elapsed for side in range(4)]
        )
    box = first[1]["box"]
    size = max(box[2] - box[0], box[3] - box[1])
    change = max(abs(a - b) for a, b in zip(*velocities, strict=True)) * 0.5
    return change <= 0.5 * size + 4.0


def _third_frame(entry, findings, number):
    """How the other neighbouring frame settles a finding only one neighbour makes.

    What the image shows where the object was found is looked for in the
    other neighbour: a box of the object's label there means two of the
    three frames annotate it (1: the finding holds); no box there means the
    first neighbour is the odd one out (0.25); not found, 1.
    """
    others = [finding for other, finding in enumerate(findings) if other != number]
    if not others:
        return 1.0
    other = others[0]
    found = _locate(entry["box"], other["target"], other["source"])
    if found is None or _match_confidence(found[1]) < 0.5:
        return 1.0
    label = entry["item"]["label"]
    annotated = any(
        item["known"]
        and item["label"] == label
        and boxes_lib.iou(_grown(item["bbox"]), _grown(found[0])) >= MATCH_SAME_PLACE
        for item in other["neighbour"].objects
    )
    return 1.0 if annotated else 0.25


def _entry_time(findings, number):
    """The time of a finding's neighbouring frame, for messages."""
    time_seconds = findings[number]["neighbour"].time
    return "?" if time_seconds is None else f"{time_seconds:g} s"


def _weigh_label_outliers(images, evidence, votes):
    """Scales label evidence by the labels the neighbouring frames give the object at the box.

    Neighbours agreeing with the label divide it by four; neighbours giving
    the other label raise it to at least half per such neighbour; without a
    neighbour's view it keeps 60 %. A box its annotator marked difficult
    keeps 60 % of that (odd shapes are expected there).
    """
    by_key = {image.key: image for image in images}
    for key, found in evidence.items():
        image_votes = votes.get(key, {})
        for item in found:
            if item["kind"] != "label_outlier":
                continue
            agree, disagree = image_votes.get(item["object"], (0, 0))
            if agree and not disagree:
                item["strength"] *= 0.25
                item["message"] += "; the neighbouring frames agree with the label"
            elif disagree and not agree:
                item["strength"] = max(item["strength"], min(1.0, 0.5 * disagree))
                item["message"] += "; the neighbouring frames label it otherwise"
            else:
                item["strength"] *= 0.6
            if by_key[key].objects[item["object"]]["difficult"]:
                item["strength"] *= 0.6


def _label_votes_evidence(images, votes, evidence):
    """Boxes both neighbouring frames label otherwise, where the label evidence said nothing."""
    by_key = {image.key: image for image in images}
    for key, image_votes in votes.items():
        flagged = {
            item["object"] for item in evidence.get(key, []) if item["kind"] == "label_outlier"
        }
        for index, (agree, disagree) in image_votes.items():
            if index in flagged or agree or disagree < 2:
                continue
            item = by_key[key].objects[index]
            evidence[key].append(
                {
                    "kind": "label_outlier",
                    "strength": 0.7,
                    "object": index,
                    "message": f"{item['label']} box {index}: both neighbouring frames label it otherwise",
                }
            )


def _grown(box, pixels=1.0):
    """The box grown by a pixel on each side: tiny boxes' IoU then forgives rounding to whole pixels."""
    return [box[0] - pixels, box[1] - pixels, box[2] + pixels, box[3] + pixels]


def _declare_fields(dataset, fo):
    """Declares the sample fields (idempotent), so empty values keep their types."""
    for name, kind, extra in (
        ("batch", fo.StringField, {}),
        ("image_name", fo.StringField, {}),
        ("source_id", fo.StringField, {}),
        ("vantage", fo.StringField, {}),
        ("lighting", fo.StringField, {}),
        ("time", fo.FloatField, {}),
        ("frame_index", fo.IntField, {}),
        ("split", fo.StringField, {}),
        ("sha256", fo.StringField, {}),
        ("qa_flags", fo.ListField, {"subfield": fo.StringField}),
        ("suspicion", fo.FloatField, {}),
        ("suspicion_reasons", fo.ListField, {"subfield": fo.StringField}),
        ("ground_truth", fo.EmbeddedDocumentField, {"embedded_doc_type": fo.Detections}),
    ):
        if not dataset.has_sample_field(name):
            dataset.add_sample_field(name, kind, **extra)


def _sample(fo, image, ranked):
    """The FiftyOne sample of a :class:`ReviewImage` (labels as written; mapped afterwards)."""
    evidence_by_object = defaultdict(list)
    for item in (ranked or {}).get("evidence", []):
        if item["object"] is not None:
            evidence_by_object[item["object"]].append(item["message"])
    detections = []
    for index, item in enumerate(image.objects):
        x0, y0, x1, y1 = item["bbox"]
        attributes = item.get("attributes") or {}
        detections.append(
            fo.Detection(
                label=item["original_label"],
                bounding_box=[
                    x0 / image.width,
                    y0 / image.height,
                    (x1 - x0) / image.width,
                    (y1 - y0) / image.height,
                ],
                original_label=item["original_label"],
                unknown_label=not item["known"],
                difficult=bool(item["difficult"]),
                occluded=bool(item["occluded"]),
                truncated=bool(item["truncated"]),
                text=attributes.get("text"),
                vehicle_type=attributes.get("type"),
                qa_flags=list(item.get("qa_flags") or []),
                evidence=evidence_by_object.get(index) or None,
            )
        )
    return fo.Sample(
        filepath=str(image.image_path),
        metadata=fo.ImageMetadata(width=image.width, height=image.height),
        batch=image.batch,
        image_name=image.name,
        source_id=image.source_id,
        vantage=image.vantage,
        lighting=image.lighting,
        time=image.time,
        frame_index=image.frame_index,
        split=None,
        sha256=image.sha256,
        qa_flags=list(image.qa_flags),
        suspicion=float((ranked or {}).get("score", 0.0)),
        suspicion_reasons=[item["message"] for item in (ranked or {}).get("evidence", [])],
        ground_truth=fo.Detections(detections=detections),
    )
