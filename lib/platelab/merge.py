"""Stage 05 (merge): annotation batches to one training dataset, split by group.

:func:`merge` reads any number of annotation batches (CVAT "PASCAL VOC 1.1"
exports, zipped or not: see :func:`platelab.annotations.load_batch`),
reconciles them into one set of samples, splits it into train/val/test by
group and writes the dataset. The steps, each reported:

* **Labels** go through the alias map (:data:`platelab.annotations.DEFAULT_ALIASES`,
  extended or overridden by a YAML file, see :func:`load_aliases`). Unknown
  labels are listed with the file they came from and dropped (or kept as
  classes of their own with ``unknown_labels="keep"``), never silently.
  Duplicate objects within one image (same label, IoU > 0.95) are listed and
  de-duplicated.
* **The same image arriving twice** is found by a content hash: by default
  the SHA-256 of the image **file's bytes** (CVAT exports image tasks with
  the uploaded files unchanged, and hashing bytes costs no decode);
  ``hash_mode="pixels"`` hashes the **decoded pixels** instead (shape, dtype
  and values), which also catches a frame re-encoded losslessly. The copies
  become one sample whose annotations follow a policy: ``later`` (default:
  the batch given last wins), ``earlier`` (the first wins) or ``union`` (all
  boxes; a box overlapping one of the same label from a later batch by IoU
  >= 0.5 is dropped as the same object). Copies whose annotations differ
  are listed as conflicts, with what differs.
* **File-name collisions** (CVAT names frames alike in every task) are
  resolved without loss: every sample of a colliding name is renamed to
  ``<batch>__<name>`` (deterministic; compared case-insensitively), and each
  sample records its original name and batch.
* **Review**: images tagged ``exclude`` in the stage-04 review (a FiftyOne
  dataset or a mapping, see :func:`load_review`) are left out and listed.
* **Groups and split**: every image belongs to a group, the unit that never
  straddles splits: its source video (``source_id`` from the review, the
  stage-03 task index or a stage-01 frame name ``<source>_t<ms>``), the
  CVAT task for frames named ``frame_NNNNNN`` without other metadata, or
  else the photo itself. :func:`split_groups` assigns whole groups, stratum
  (vantage point) by stratum, to the split furthest below its fraction, so
  each vantage point is spread over the splits as evenly as its groups allow.

Output folder (built in a temporary sibling and renamed into place, so an
interrupted merge leaves the previous dataset intact)::

    Annotations/<name>.xml          PASCAL VOC, float coordinates as annotated, CVAT-compatible
    JPEGImages/<name>.<ext>         the images, byte for byte
    ImageSets/Main/{train,val,test}.txt
    labelmap.txt                    CVAT's header "# label:color_rgb:parts:actions"
    label_map.pbtxt                 the TF Object Detection API's label map
    tfrecords/{train,val,test}.tfrecord   tf.train.Example records (see platelab.tfrecords)
    dataset.json                    counts, label map, samples, groups and their split,
                                    collisions, duplicates, exclusions, problems, fingerprints

The TFRecords use the TF Object Detection API's feature names plus a few of
platelab's own: see :mod:`platelab.tfrecords`.
"""

import argparse
import concurrent.futures
import contextlib
import datetime
import hashlib
import json
import logging
import os
import re
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

from tqdm.auto import tqdm

from platelab import LABELS, annotations, archives, metadata, visualize
from platelab import boxes as boxes_lib
from platelab.atomic import atomic_dir, json_default, process_temp_dir
from platelab.paths import from_cwd, safe_file_name
from platelab.tfimport import import_tensorflow
from platelab.tfrecords import encode_example

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
POLICIES = ("later", "earlier", "union")
HASH_MODES = ("bytes", "pixels")
UNKNOWN_LABEL_MODES = ("drop", "keep")
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)
DUPLICATE_OBJECT_IOU = 0.95
"""Two boxes of one label in one image overlapping more than this are one object."""
UNION_IOU = 0.5
"""Under the ``union`` policy, boxes of one label overlapping at least this much are one object."""
SAME_BOX_IOU = 0.9
"""Copies of an image conflict when a box moved below this IoU, or one was added or removed."""
SWAP_SEARCH_GROUPS = 64
"""Up to this many groups, the split is refined by moving and swapping groups (see split_groups)."""
UNKNOWN_VANTAGE = "unknown"
DATASET_FILENAME = "dataset.json"
FORMAT = "platelab-merged-dataset/1"
CVAT_LABELMAP_HEADER = "# label:color_rgb:parts:actions"
REVIEW_EXCLUDE_TAG = "exclude"
REVIEW_FIX_TAG = "fix"
REVIEW_HASH_FIELDS = ("sha256", "content_hash", "content_sha256", "hash")
METADATA_FIELDS = ("source_id", "vantage", "lighting", "time")
LABEL_COLORS_RGB = {"vehicle": (40, 160, 255), "license_plate": (255, 220, 40)}

_FRAME_NAME = re.compile(r"^(?P<source>.+)_t\d{8}$")
"""Stage-01 frame names: ``<source_id>_t<milliseconds:08d>``."""
_CVAT_VIDEO_FRAME = re.compile(r"^frame_\d{6}$")
"""CVAT's names for the frames of a video task."""


@dataclass
class Sample:
    """One image of the merged dataset.

    Attributes:
        name: the output stem, unique in the dataset
        sha256: SHA-256 of the kept image file's bytes
        image_path: the source image file the output copies
        width: width in pixels
        height: height in pixels
        objects: dicts with the canonical ``label``, ``bbox`` ([xmin, ymin,
            xmax, ymax] float pixels), ``difficult``, ``truncated``,
            ``occluded``, ``attributes``
        batch: the batch whose annotations were kept (the last one, under ``union``)
        original_name: the image's name in that batch
        members: every copy, ``{"batch", "name", "sha256"}`` (its file's hash), in batch order
        group: the split unit (source video, CVAT task or photo)
        source_id: the source video or photo, where known
        vantage: the vantage point (``unknown`` where not known)
        lighting: the lighting, where known
        time: seconds into the source video, where known
        split: ``train``, ``val`` or ``test``
        content_key: what made copies one sample: the file's SHA-256, or the
            decoded pixels' with ``hash_mode="pixels"``
        review_tags: the review's tags on any copy
    """

    name: str
    sha256: str
    image_path: Path
    width: int
    height: int
    objects: list
    batch: str
    original_name: str
    members: list = field(default_factory=list)
    group: str = ""
    source_id: str | None = None
    vantage: str = UNKNOWN_VANTAGE
    lighting: str | None = None
    time: float | None = None
    split: str | None = None
    content_key: str = ""
    review_tags: list = field(default_factory=list)

    @property
    def file_name(self):
        """The image's output file name (``name`` plus the source's extension)."""
        return self.name + self.image_path.suffix.lower()


@dataclass
class MergeResult:
    """What :func:`merge_batches` found and decided (nothing written yet).

    Attributes:
        samples: the merged samples, by name
        label_map: the class labels, in id order (id = index + 1)
        batches: per source: ``name``, ``source``, ``status`` (ok|skipped),
            ``images`` used, ``problems``
        collisions: per colliding name: ``name`` and ``samples`` (``batch``,
            ``original_name``, ``renamed_to``)
        duplicates: per image seen more than once: ``sha256``, ``name``,
            ``kept`` (batch), ``members``, ``conflict``, ``differences``
        excluded: images left out: ``batch``, ``name``, ``sha256``, ``reason``
        unknown_labels: label as written -> number of boxes
        unknown_objects: per box with an unknown label: ``file``, ``label``
        duplicate_objects: per de-duplicated box: ``file``, ``label``,
            ``bbox``, ``duplicate_of``, ``iou``
        problems: one-line messages about input files (each names its file)
        warnings: one-line messages about the result (empty splits, images
            still tagged ``fix``)
        groups: group -> ``split``, ``vantage``, ``images``
        parameters: the options the merge ran with
        timings: seconds per phase
    """

    samples: list
    label_map: list
    batches: list
    collisions: list = field(default_factory=list)
    duplicates: list = field(default_factory=list)
    excluded: list = field(default_factory=list)
    unknown_labels: dict = field(default_factory=dict)
    unknown_objects: list = field(default_factory=list)
    duplicate_objects: list = field(default_factory=list)
    problems: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    groups: dict = field(default_factory=dict)
    parameters: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    document: dict | None = None


def merge(sources, out_dir, tfrecords=True, progress=True, **options):
    """Merges annotation batches and writes the split dataset to ``out_dir``.

    Zips are extracted to a temporary folder, removed at the end.

    Args:
        sources: annotation batches (zips or folders); on duplicates the
            later ones win under the default policy
        out_dir: the dataset folder (replaced as a whole, atomically)
        tfrecords: whether to write the TFRecords
        progress: whether to show progress bars
        **options: see :func:`merge_batches`

    Returns:
        the :class:`MergeResult`, with ``document`` (dataset.json) filled in

    Raises:
        ValueError: on bad options, an output folder overlapping an input,
            or when no source yielded an image
        OSError: when the output cannot be written (the previous dataset stays)
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    sources = [Path(source) for source in sources]
    _check_output_location(out_dir, sources)
    with tempfile.TemporaryDirectory(prefix="platelab-merge-") as work_dir:
        result = merge_batches(sources, work_dir=work_dir, progress=progress, **options)
        write_dataset(result, out_dir, tfrecords=tfrecords, progress=progress)
    return result


def merge_batches(
    sources,
    aliases=None,
    review=None,
    index=None,
    policy="later",
    fractions=DEFAULT_FRACTIONS,
    seed=0,
    hash_mode="bytes",
    unknown_labels="drop",
    union_iou=UNION_IOU,
    duplicate_iou=DUPLICATE_OBJECT_IOU,
    work_dir=None,
    workers=None,
    progress=True,
):
    """Loads batches, reconciles duplicates and collisions and splits by group.

    Bad input never stops the batch: each file's problem becomes a one-line
    message in ``problems`` (an XML whose image is missing, an unreadable
    image, an unknown label, a duplicate box...); an image without XML is
    kept as a negative.

    Args:
        sources: annotation batches (zips or folders), in order
        aliases: canonical label -> spellings, extending and overriding
            :data:`platelab.annotations.DEFAULT_ALIASES`, or a YAML file of
            that (see :func:`load_aliases`)
        review: the stage-04 review: a FiftyOne dataset name or dataset, or
            a mapping (see :func:`load_review`); images tagged ``exclude``
            are left out. Its ``source_id``/``vantage``/``lighting`` fields
            also give each image its group and stratum
        index: the stage-03 task index (``interim/cvat/tasks/index.json``), a
            path or its loaded mapping (see :func:`load_task_index`)
        policy: ``later``, ``earlier`` or ``union`` (see the module docstring)
        fractions: train, val, test fractions: a sequence or ``"0.8,0.1,0.1"``
        seed: the split's seed
        hash_mode: ``bytes`` (SHA-256 of the file) or ``pixels`` (of the decoded image)
        unknown_labels: ``drop`` (listed) or ``keep`` (listed, and added to the label map)
        union_iou: the IoU at which the ``union`` policy takes two boxes as one
        duplicate_iou: the IoU above which two boxes of one label in one image are one
        work_dir: where zips are extracted (default: a temporary folder that
            is removed when the process exits; :func:`merge` cleans up its own)
        workers: threads for hashing (default: CPU count, at most 8)
        progress: whether to show progress bars

    Returns:
        a :class:`MergeResult`

    Raises:
        ValueError: on a bad option
    """
    started = time.perf_counter()
    _check_options(policy, hash_mode, unknown_labels)
    fractions = parse_fractions(fractions)
    alias_table = load_aliases(aliases) if isinstance(aliases, (str, Path)) else aliases
    alias_table = annotations.extend_aliases(alias_table)
    lookup = annotations.build_alias_map(alias_table)
    label_map = list(LABELS) + [label for label in alias_table if label not in LABELS]
    work_dir = Path(work_dir) if work_dir else process_temp_dir("platelab-merge-")
    workers = max(1, min(8, int(workers or os.cpu_count() or 1)))
    result = MergeResult(samples=[], label_map=label_map, batches=[])
    result.parameters = {
        "sources": [
            str(source)
            for source in ([sources] if isinstance(sources, (str, os.PathLike)) else sources)
        ],
        "policy": policy,
        "fractions": dict(zip(SPLITS, fractions, strict=True)),
        "seed": int(seed),
        "hash_mode": hash_mode,
        "unknown_labels": unknown_labels,
        "union_iou": float(union_iou),
        "duplicate_iou": float(duplicate_iou),
        "aliases": alias_table,
    }

    review_info = load_review(review) if review is not None else {}
    index_info = load_task_index(index) if index is not None else {}
    sources, missing = find_batches(sources)
    result.problems.extend(missing)
    entries = _load_entries(sources, work_dir, result, progress)
    loaded = time.perf_counter()
    entries = _hash_entries(entries, hash_mode, workers, result, progress)
    hashed = time.perf_counter()
    for entry in entries:
        entry["objects"] = _normalise_objects(
            entry, lookup, unknown_labels, duplicate_iou, label_map, result
        )
    samples = _reconcile(entries, policy, union_iou, review_info, result)
    _attach_all_metadata(samples, review_info, index_info, result)
    _assign_names(samples, result)
    reconciled = time.perf_counter()
    _split_samples(samples, fractions, seed, result)
    _log_findings(result)
    result.timings = _timings(started, loaded, hashed, reconciled, time.perf_counter())
    return result


def _timings(started, loaded, hashed, reconciled, finished):
    """Seconds per merge step from the ``time.perf_counter()`` readings between them."""
    return {
        "load_s": loaded - started,
        "hash_s": hashed - loaded,
        "reconcile_s": reconciled - hashed,
        "split_s": finished - reconciled,
        "total_s": finished - started,
    }


def _check_options(policy, hash_mode, unknown_labels):
    """Raises ValueError naming an unknown policy, hash mode or unknown-label mode."""
    if policy not in POLICIES:
        raise ValueError(
            f"unknown duplicate policy {policy!r}: choose one of {', '.join(POLICIES)}"
        )
    if hash_mode not in HASH_MODES:
        raise ValueError(f"unknown hash mode {hash_mode!r}: choose one of {', '.join(HASH_MODES)}")
    if unknown_labels not in UNKNOWN_LABEL_MODES:
        raise ValueError(
            f"unknown_labels must be one of {', '.join(UNKNOWN_LABEL_MODES)}, not {unknown_labels!r}"
        )


def _attach_all_metadata(samples, review_info, index_info, result):
    """Source, vantage, lighting, time and group of every sample; warns of unfixed reviews."""
    fixes = 0
    for sample in samples:
        _attach_metadata(sample, review_info, index_info)
        fixes += REVIEW_FIX_TAG in sample.review_tags
    if fixes:
        result.warnings.append(
            f"{fixes} merged image(s) are still tagged '{REVIEW_FIX_TAG}' in the review "
            "(their corrections may not be in these batches yet)"
        )


def _split_samples(samples, fractions, seed, result):
    """Assigns whole groups to splits (:func:`split_groups`); fills ``result.samples``."""
    groups = _group_table(samples)
    assignment, split_warnings = split_groups(groups, fractions, seed)
    result.warnings.extend(split_warnings)
    for sample in samples:
        sample.split = assignment[sample.group]
    result.groups = {
        group: {"split": assignment[group], **info} for group, info in sorted(groups.items())
    }
    result.samples = sorted(samples, key=lambda sample: sample.name)
    if not result.samples:
        result.warnings.append("no images to merge: every source was empty or unusable")


def _log_findings(result):
    for problem in result.problems:
        logger.info("%s", problem)
    for warning in result.warnings:
        logger.warning("%s", warning)


def write_dataset(result, out_dir, tfrecords=True, progress=True):
    """Writes a merged dataset: VOC folder, TFRecords per split and dataset.json.

    Everything is written into a temporary sibling of ``out_dir`` and renamed
    into place at the end; on any failure the previous ``out_dir`` is left as
    it was and the temporary folder is removed.

    Args:
        result: a :class:`MergeResult`
        out_dir: the dataset folder
        tfrecords: whether to write ``tfrecords/<split>.tfrecord``
        progress: whether to show a progress bar

    Returns:
        the dataset.json document (also set as ``result.document``)

    Raises:
        ValueError: if there is nothing to write, ``out_dir`` overlaps an
            input, or an input image changed since it was hashed
        OSError: when the output cannot be written
    """
    if not result.samples:
        first = f"; first problem: {result.problems[0]}" if result.problems else ""
        raise ValueError(
            f"nothing to merge: no usable image in {len(result.batches)} batch(es){first}"
        )
    out_dir = Path(out_dir)
    _check_output_location(out_dir, [Path(batch["source"]) for batch in result.batches])
    started = time.perf_counter()
    label_ids = {label: index + 1 for index, label in enumerate(result.label_map)}
    with atomic_dir(out_dir) as staging:
        for folder in ("Annotations", "JPEGImages", "ImageSets/Main", "tfrecords"):
            (staging / folder).mkdir(parents=True)
        with contextlib.ExitStack() as stack:
            writers = {}
            if tfrecords:
                tf = import_tensorflow()
                for split in SPLITS:
                    writer = tf.io.TFRecordWriter(str(staging / "tfrecords" / f"{split}.tfrecord"))
                    writers[split] = stack.enter_context(writer)
            for sample in tqdm(result.samples, desc="write", unit="image", disable=not progress):
                data = sample.image_path.read_bytes()
                if hashlib.sha256(data).hexdigest() != sample.sha256:
                    raise ValueError(f"{sample.image_path}: changed during the merge; run it again")
                (staging / "JPEGImages" / sample.file_name).write_bytes(data)
                (staging / "Annotations" / f"{sample.name}.xml").write_text(
                    _voc_xml(sample), encoding="utf-8"
                )
                if tfrecords:
                    example = encode_example(tf, sample, data, label_ids)
                    writers[sample.split].write(example.SerializeToString())
        for split in SPLITS:
            names = [sample.name for sample in result.samples if sample.split == split]
            (staging / "ImageSets" / "Main" / f"{split}.txt").write_text(
                "".join(f"{name}\n" for name in names), encoding="utf-8"
            )
        (staging / "labelmap.txt").write_text(_cvat_labelmap(result.label_map), encoding="utf-8")
        (staging / "label_map.pbtxt").write_text(_pbtxt(result.label_map), encoding="utf-8")
        document = _document(result, staging, tfrecords, time.perf_counter() - started)
        (staging / DATASET_FILENAME).write_text(
            json.dumps(document, indent=1, default=json_default) + "\n", encoding="utf-8"
        )
    result.document = document
    logger.info("wrote %d images to %s", len(result.samples), out_dir)
    return document


def split_groups(groups, fractions=DEFAULT_FRACTIONS, seed=0):
    """Assigns whole groups to train/val/test, stratum by stratum.

    Groups are taken stratum by stratum (strata in name order), in an order
    drawn from the seed within each stratum (a hash of seed and group name, so
    one group's place does not depend on the others); each goes to the split
    whose image count falls furthest short of its fraction of the images
    assigned so far (this choice minimises the squared error of the split
    sizes at every step). As the counts are balanced at the end of each
    stratum, each vantage point is spread over the splits as evenly as its
    groups allow, and a stratum of a single group is balanced by the next.
    A split with a positive fraction left empty then receives a group from
    a split holding several, where there are enough groups. With few groups
    (up to :data:`SWAP_SEARCH_GROUPS`), where one group is a large share of
    the images, groups are finally moved or swapped between splits while
    that brings the split sizes closer to the fractions.

    Args:
        groups: group -> ``{"images": int, "stratum": str}``
        fractions: train, val, test fractions (see :func:`parse_fractions`)
        seed: the seed (the same seed and groups give the same split)

    Returns:
        ``(assignment, warnings)``: group -> split name, and one-line
        messages about splits left empty
    """
    fractions = dict(zip(SPLITS, parse_fractions(fractions), strict=True))
    active = [split for split in SPLITS if fractions[split] > 0]
    strata = defaultdict(list)
    for group, info in groups.items():
        strata[str(info.get("stratum") or UNKNOWN_VANTAGE)].append(group)
    counts = dict.fromkeys(SPLITS, 0)
    members = {split: [] for split in SPLITS}
    assignment = {}
    assigned = 0
    for stratum in sorted(strata):
        for group in sorted(strata[stratum], key=lambda name: _seeded_key(seed, name)):
            size = max(1, int(groups[group].get("images") or 0))
            total = assigned + size
            split = max(
                active,
                key=lambda name: (
                    round(fractions[name] * total - counts[name], 9),
                    fractions[name],
                    -SPLITS.index(name),
                ),
            )
            assignment[group] = split
            members[split].append(group)
            counts[split] += size
            assigned = total
    sizes = {group: max(1, int(groups[group].get("images") or 0)) for group in groups}
    for empty in [split for split in active if not members[split]]:
        move = _best_move(empty, members, counts, sizes, fractions, seed)
        if move is None:
            continue
        group, donor = move
        members[donor].remove(group)
        members[empty].append(group)
        counts[donor] -= sizes[group]
        counts[empty] += sizes[group]
        assignment[group] = empty
    if len(groups) <= SWAP_SEARCH_GROUPS:
        _improve_by_swaps(assignment, members, counts, sizes, fractions, active, seed)
    warnings = []
    empty = [split for split in active if not members[split]]
    if empty and groups:
        warnings.append(
            f"split(s) {', '.join(empty)} got no images: only {len(groups)} group(s) "
            f"(source videos or photos) for {len(active)} splits with a positive fraction; "
            "add sources or set those fractions to 0"
        )
    return assignment, warnings


def parse_fractions(fractions):
    """Parses train/val/test fractions.

    Args:
        fractions: a sequence of three numbers or a string like ``"0.8,0.1,0.1"``

    Returns:
        a tuple of three floats

    Raises:
        ValueError: unless three non-negative numbers summing to 1 (within 0.001)
    """
    text = fractions if isinstance(fractions, str) else ",".join(str(part) for part in fractions)
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or any(value < 0 or value != value for value in values):
        raise ValueError(
            f"invalid split {text!r}: expected three non-negative fractions train,val,test, e.g. 0.8,0.1,0.1"
        )
    if abs(sum(values) - 1.0) > 1e-3:
        raise ValueError(f"invalid split {text!r}: the fractions sum to {sum(values):g}, not 1")
    return values


def load_aliases(path):
    """Reads a label-alias YAML file: canonical label -> list of spellings.

    Example::

        vehicle: [car, truck, bus, van]
        license_plate: [plate, "license plate", placa]
        motorcycle: [motorbike]        # a class of its own, added to the label map

    The file extends and overrides :data:`platelab.annotations.DEFAULT_ALIASES`
    (a spelling listed here is taken from the default it belonged to).

    Args:
        path: the YAML file

    Returns:
        the mapping canonical -> spellings, as written in the file

    Raises:
        ValueError: naming the file, when it cannot be read or is not such a mapping
    """
    return annotations.read_alias_file(path)  # AnnotationError is a ValueError


def load_review(review):
    """Reads the stage-04 review: per image hash, its tags and metadata.

    Args:
        review: a FiftyOne dataset name, a FiftyOne dataset or view, or a
            mapping ``sha256 -> {"tags": [...], "source_id": ..., "vantage":
            ..., "lighting": ...}``. For FiftyOne samples the hash is read
            from the first of the fields ``sha256``, ``content_hash``,
            ``content_sha256``, ``hash`` (SHA-256 of the file's bytes), or
            computed from the sample's file

    Returns:
        a dict sha256 -> ``{"tags": [...], "source_id", "vantage", "lighting", "time"}``

    Raises:
        ValueError: if the FiftyOne dataset does not exist
    """
    if isinstance(review, Mapping):
        return {str(key): dict(value) for key, value in review.items()}
    if isinstance(review, str):
        from platelab.fiftyone_setup import import_fiftyone

        fo = import_fiftyone()
        if not fo.dataset_exists(review):
            raise ValueError(f"review dataset {review!r} does not exist in FiftyOne")
        review = fo.load_dataset(review)
    schema = review.get_field_schema()
    hash_field = next((name for name in REVIEW_HASH_FIELDS if name in schema), None)
    wanted = [name for name in METADATA_FIELDS if name in schema]
    columns = ["filepath", "tags", *wanted] + ([hash_field] if hash_field else [])
    values = review.values(columns)
    found = {}
    for row in zip(*values, strict=True):
        record = dict(zip(columns, row, strict=True))
        digest = record.get(hash_field) if hash_field else None
        if not digest:
            try:
                digest = metadata.sha256_file(record["filepath"])
            except OSError:
                logger.warning(
                    "%s: review sample's image cannot be read; its tags are ignored",
                    record["filepath"],
                )
                continue
        info = found.setdefault(str(digest), {"tags": []})
        for name in wanted:
            if info.get(name) is None and record.get(name) is not None:
                info[name] = record[name]
        info["tags"] = sorted(set(info["tags"]) | set(record.get("tags") or []))
    return found


def load_task_index(index):
    """Reads the stage-03 task index: per image hash, its source, vantage, lighting and time.

    Any object in the JSON document carrying a ``sha256`` counts as one
    image; its ``source_id``, ``vantage``, ``lighting`` and ``time`` are kept.

    Args:
        index: the path of ``interim/cvat/tasks/index.json``, or the loaded document

    Returns:
        a dict sha256 -> metadata dict

    Raises:
        ValueError: naming the file, when it cannot be read or parsed
    """
    if isinstance(index, (str, Path)):
        path = Path(index)
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except OSError as error:
            raise ValueError(
                f"{path}: cannot read the task index ({error.strerror or error})"
            ) from None
        except ValueError as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from None
    else:
        document = index
    found = {}
    if isinstance(document, dict) and isinstance(document.get("images"), list):
        document = document["images"]
    stack = [document]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("sha256"), str):
                found[item["sha256"]] = {
                    name: item[name] for name in METADATA_FIELDS if item.get(name) is not None
                }
            stack.extend(value for value in item.values() if isinstance(value, (dict, list)))
        elif isinstance(item, list):
            stack.extend(value for value in item if isinstance(value, (dict, list)))
    return found


def find_batches(sources):
    """Expands sources into annotation batches: a zip, a VOC folder, or a folder of several.

    A folder with ``Annotations/`` or ``JPEGImages/`` directly inside is one
    batch; any other folder stands for the zips and folders it holds (in name
    order; side files such as ``exports.json`` are passed over, and a link
    there that leads outside the folder is skipped with a message). Inside a
    batch, links that lead outside it are skipped too (see
    :func:`platelab.annotations.load_batch`).

    Args:
        sources: paths (str or Path), in order

    Returns:
        ``(batches, problems)``: the batch paths in order, and one-line
        messages about sources that hold none
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    batches, problems = [], []
    for source in (Path(item) for item in sources):
        if not source.exists():
            problems.append(f"{source}: not found; skipped")
        elif source.is_file():
            if source.suffix.lower() == ".zip":
                batches.append(source)
            else:
                problems.append(f"{source}: not a .zip or a folder; skipped")
        elif (source / "Annotations").is_dir() or (source / "JPEGImages").is_dir():
            batches.append(source)
        else:
            found = []
            for child in sorted(source.iterdir()):
                if child.name.startswith((".", "__MACOSX")):
                    continue
                if not (child.is_dir() or child.suffix.lower() == ".zip"):
                    continue
                if child.is_symlink() and not child.resolve().is_relative_to(source.resolve()):
                    problems.append(
                        f"{child}: a link to {child.resolve()}, outside {source}; skipped"
                    )
                    continue
                found.append(child)
            if not found:
                problems.append(
                    f"{source}: holds no annotation batch (no VOC folder or zip); skipped"
                )
            batches.extend(found)
    return batches, problems


def load_dataset(out_dir):
    """Reads a merged dataset's ``dataset.json``.

    Raises:
        FileNotFoundError: if there is none
    """
    out_dir = Path(out_dir)
    document = json.loads((out_dir / DATASET_FILENAME).read_text(encoding="utf-8"))
    document["out_dir"] = str(out_dir)
    return document


def split_table(document, by="label"):
    """Counts per split, by class (boxes) or by vantage point (images).

    Args:
        document: a dataset.json document (:func:`load_dataset`, or ``result.document``)
        by: ``label`` (boxes per class; plus the images without any box)
            or ``vantage`` (images per vantage point)

    Returns:
        a pandas DataFrame: one row per class or vantage point plus ``all``,
        one column per split plus ``total`` and ``fraction`` per split
    """
    import pandas as pd

    if by not in ("label", "vantage"):
        raise ValueError(f"by must be 'label' or 'vantage', not {by!r}")
    counts = defaultdict(Counter)
    for sample in document["samples"]:
        if by == "label":
            for label, number in sample["objects"].items():
                counts[label][sample["split"]] += number
            if not sample["objects"]:
                counts["(no object)"][sample["split"]] += 1
        else:
            counts[sample["vantage"]][sample["split"]] += 1
    order = (
        [label for label in document["label_map"] if label in counts]
        + sorted(key for key in counts if key not in document["label_map"])
        if by == "label"
        else sorted(counts)
    )
    table = pd.DataFrame(
        [[counts[key][split] for split in SPLITS] for key in order],
        index=pd.Index(order, name="class (boxes)" if by == "label" else "vantage (images)"),
        columns=list(SPLITS),
    )
    if by == "label":
        table.loc["all boxes"] = table.drop(index="(no object)", errors="ignore").sum()
    else:
        table.loc["all images"] = table.sum()
    table["total"] = table[list(SPLITS)].sum(axis=1)
    for split in SPLITS:
        table[f"{split} %"] = (100 * table[split] / table["total"].where(table["total"] > 0)).round(
            1
        )
    return table


def plot_splits(document):
    """Bar charts of the split: images per vantage point and boxes per class.

    Returns:
        the matplotlib Figure
    """
    import matplotlib.pyplot as plt
    import numpy as np

    by_vantage = split_table(document, "vantage").drop(index="all images")
    by_label = split_table(document, "label").drop(index="all boxes")
    figure, axes = plt.subplots(1, 2, figsize=(13, 4.2))
    colors = {"train": "#3b75af", "val": "#ef8636", "test": "#519e3e"}
    for axis, table, ylabel, title in (
        (axes[0], by_vantage, "images", "Images per vantage point"),
        (axes[1], by_label, "boxes (images for '(no object)')", "Boxes per class"),
    ):
        positions = np.arange(len(table))
        width = 0.8 / len(SPLITS)
        for offset, split in enumerate(SPLITS):
            axis.bar(
                positions + (offset - 1) * width,
                table[split],
                width,
                label=f"{split} ({document['parameters']['fractions'][split]:.0%})",
                color=colors[split],
            )
        axis.set_xticks(positions)
        axis.set_xticklabels(table.index, rotation=20, ha="right")
        axis.set_ylabel(ylabel)
        axis.set_xlabel(table.index.name)
        axis.set_title(title)
        axis.legend(title="split (target)")
    visualize.add_caption(
        figure,
        "Whole groups (videos, photos) go to one split; each bar group should show the target fractions.",
    )
    return figure


def collisions_table(document):
    """One row per renamed sample: the colliding name, its batch and its new name (DataFrame)."""
    import pandas as pd

    rows = [
        {"name": item["name"], "batch": sample["batch"], "renamed to": sample["renamed_to"]}
        for item in document["collisions"]
        for sample in item["samples"]
    ]
    return pd.DataFrame(rows, columns=["name", "batch", "renamed to"])


def duplicates_table(document):
    """One row per image found in several places: copies, kept batch, conflict; conflicts first (DataFrame)."""
    import pandas as pd

    rows = [
        {
            "sample": item["name"],
            "copies": ", ".join(
                f"{member['batch']}/{member['name']}" for member in item["members"]
            ),
            "kept": item["kept"],
            "conflict": item["conflict"],
            "differences": "; ".join(item["differences"]),
        }
        for item in document["duplicates"]
    ]
    table = pd.DataFrame(rows, columns=["sample", "copies", "kept", "conflict", "differences"])
    return table.sort_values(["conflict", "sample"], ascending=[False, True], ignore_index=True)


def batches_table(document, root=None):
    """One row per input batch: source, status, images used and problems (DataFrame).

    Args:
        document: a dataset.json document
        root: sources are shown relative to this folder where they lie inside it
    """
    import pandas as pd

    rows = []
    for batch in document["batches"]:
        source = Path(batch["source"])
        if root is not None:
            with contextlib.suppress(ValueError):
                source = source.resolve().relative_to(Path(root).resolve())
        rows.append(
            {
                "batch": batch["name"],
                "source": source.as_posix(),
                "status": batch["status"],
                "images": batch["images"],
                "problems": batch["problems"],
            }
        )
    return pd.DataFrame(rows, columns=["batch", "source", "status", "images", "problems"])


def default_sources(workspace):
    """The annotation batches of a workspace, in merge order (later ones win on duplicates).

    Stage 03's exports (``interim/cvat/exports``), the user's own exports
    (``raw/annotations``), then annotations downloaded from a CVAT server
    (``interim/cvat/downloads``: the latest corrections); those present.

    Returns:
        a list of Paths
    """
    from platelab import paths

    interim = paths.interim_dir(workspace) / "cvat"
    candidates = [
        interim / "exports",
        paths.raw_dir(workspace) / "annotations",
        interim / "downloads",
    ]
    return [folder for folder in candidates if folder.is_dir() and find_batches([folder])[0]]


def record_splits(review, document):
    """Writes each image's split into the review dataset's ``split`` field (matched by sha256).

    Images of the review that are not in the merged dataset (excluded, or
    from other batches) get ``None``.

    Args:
        review: a FiftyOne dataset name or dataset with a ``sha256`` field
        document: the merged dataset's dataset.json document

    Returns:
        the number of review samples given a split

    Raises:
        ValueError: if the dataset does not exist or has no ``sha256`` field
    """
    from platelab.fiftyone_setup import import_fiftyone

    fo = import_fiftyone()
    if isinstance(review, str):
        if not fo.dataset_exists(review):
            raise ValueError(f"review dataset {review!r} does not exist in FiftyOne")
        review = fo.load_dataset(review)
    if "sha256" not in review.get_field_schema():
        raise ValueError(f"review dataset {review.name!r} has no sha256 field to match images by")
    split_of = {
        member["sha256"]: sample["split"]
        for sample in document["samples"]
        for member in sample["members"]
    }
    values = [split_of.get(digest) for digest in review.values("sha256")]
    if "split" not in review.get_field_schema():
        review.add_sample_field("split", fo.StringField)
    review.set_values("split", values)
    return sum(value is not None for value in values)


def to_fiftyone(out_dir, name=None, overwrite=True):
    """Loads a merged dataset into FiftyOne with its VOC importer: tags = splits, saved views.

    Each sample gets its split as a tag and the fields ``split``, ``group``,
    ``vantage``, ``batch`` and ``original_name``; a saved view per split.

    Args:
        out_dir: a merged dataset folder
        name: the FiftyOne dataset's name (default: ``platelab-merged-<folder name>``)
        overwrite: replace a dataset of that name

    Returns:
        the persistent FiftyOne dataset
    """
    from platelab.fiftyone_setup import import_fiftyone

    fo = import_fiftyone()
    out_dir = Path(out_dir)
    document = load_dataset(out_dir)
    name = name or f"platelab-merged-{out_dir.name}"
    if fo.dataset_exists(name):
        if not overwrite:
            raise ValueError(f"FiftyOne dataset {name!r} exists (pass overwrite=True)")
        fo.delete_dataset(name)
    dataset = fo.Dataset.from_dir(
        dataset_dir=str(out_dir),
        dataset_type=fo.types.VOCDetectionDataset,
        data_path="JPEGImages",
        labels_path="Annotations",
        label_field="ground_truth",
        name=name,
        progress=False,
    )
    dataset.persistent = True
    by_file = {sample["file"]: sample for sample in document["samples"]}
    files = [Path(path).name for path in dataset.values("filepath")]
    for field_name in ("split", "group", "vantage", "batch", "original_name"):
        dataset.set_values(field_name, [by_file[file][field_name] for file in files])
    dataset.set_values("tags", [[by_file[file]["split"]] for file in files])
    for split in SPLITS:
        dataset.save_view(split, dataset.match_tags(split), overwrite=True)
    return dataset


def example_images(out_dir, per_split=3, seed=0):
    """Draws a few images of each split with their boxes, read back from the written VOC folder.

    Args:
        out_dir: a merged dataset folder
        per_split: images per split
        seed: which images (a seeded choice per split)

    Returns:
        ``(images, titles)`` for :func:`platelab.visualize.image_grid`
    """
    import cv2
    import numpy as np

    from platelab import visualize

    out_dir = Path(out_dir)
    document = load_dataset(out_dir)
    rng = np.random.default_rng(seed)
    images, titles = [], []
    for split in SPLITS:
        chosen = [sample for sample in document["samples"] if sample["split"] == split]
        if not chosen:
            continue
        picks = sorted(rng.choice(len(chosen), size=min(per_split, len(chosen)), replace=False))
        for position in picks:
            sample = chosen[int(position)]
            image = cv2.imread(str(out_dir / "JPEGImages" / sample["file"]), cv2.IMREAD_COLOR)
            if image is None:
                continue
            parsed = annotations.parse_voc_xml(out_dir / "Annotations" / f"{sample['name']}.xml")
            images.append(visualize.draw_objects(image, parsed["objects"]))
            titles.append(f"{split}: {sample['name']} ({sample['vantage']})")
    return images, titles


def add_merge_arguments(parser):
    """Adds the ``platelab merge`` arguments to an argparse (sub)parser and sets its handler.

    Usage: ``add_merge_arguments(commands.add_parser("merge", help=...))``;
    the parsed namespace's ``handler`` is :func:`run_merge_command`. Paths
    are relative to the current directory.
    """
    parser.description = (
        "Merge annotation batches (CVAT 'PASCAL VOC 1.1' zips or folders) into one dataset "
        "split by group: VOC folder, TFRecords per split and dataset.json."
    )
    parser.add_argument(
        "sources",
        nargs="+",
        type=from_cwd,
        metavar="SRC",
        help="annotation batches, zip or folder; later ones win on duplicates",
    )
    parser.add_argument(
        "--out",
        required=True,
        type=from_cwd,
        metavar="DIR",
        help="the dataset folder (replaced atomically)",
    )
    parser.add_argument(
        "--aliases",
        type=from_cwd,
        metavar="FILE",
        help="YAML: canonical label -> spellings (extends the defaults)",
    )
    parser.add_argument(
        "--split", default="0.8,0.1,0.1", help="train,val,test fractions (0.8,0.1,0.1)"
    )
    parser.add_argument("--seed", type=int, default=0, help="split seed (0)")
    parser.add_argument(
        "--policy",
        choices=POLICIES,
        default="later",
        help="annotations of an image seen twice (later)",
    )
    parser.add_argument(
        "--hash",
        dest="hash_mode",
        choices=HASH_MODES,
        default="bytes",
        help="duplicate detection on file bytes or decoded pixels (bytes)",
    )
    parser.add_argument(
        "--index",
        type=from_cwd,
        metavar="FILE",
        help="stage-03 task index (source, vantage per image)",
    )
    parser.add_argument(
        "--review",
        metavar="DATASET",
        help="FiftyOne review dataset: images tagged exclude are left out",
    )
    parser.add_argument(
        "--keep-unknown-labels",
        action="store_true",
        help="keep unknown labels as classes (default: drop, listed)",
    )
    parser.add_argument(
        "--duplicate-iou",
        type=float,
        default=DUPLICATE_OBJECT_IOU,
        help="boxes of one label in one image overlapping more than this are one (0.95)",
    )
    parser.add_argument("--no-tfrecords", action="store_true", help="write the VOC folder only")
    parser.add_argument("--quiet", action="store_true", help="no progress bars, summary only")
    parser.set_defaults(handler=run_merge_command)
    return parser


def run_merge_command(args):
    """Runs ``platelab merge`` from parsed arguments; prints a summary.

    Returns:
        the exit status: 0 when the dataset was written

    Raises:
        ValueError: on bad arguments or input (the CLI prints it as one line)
    """
    result = merge(
        args.sources,
        args.out,
        aliases=args.aliases,
        review=args.review,
        index=args.index,
        policy=args.policy,
        fractions=args.split,
        seed=args.seed,
        hash_mode=args.hash_mode,
        unknown_labels="keep" if args.keep_unknown_labels else "drop",
        duplicate_iou=args.duplicate_iou,
        tfrecords=not args.no_tfrecords,
        progress=not args.quiet,
    )
    document = result.document
    for line in result.problems[:20]:
        print(f"platelab: problem: {line}", file=sys.stderr)
    if len(result.problems) > 20:
        print(
            f"platelab: ... and {len(result.problems) - 20} more problems (see {DATASET_FILENAME})",
            file=sys.stderr,
        )
    for line in result.warnings:
        print(f"platelab: warning: {line}", file=sys.stderr)
    counts = document["counts"]
    splits = ", ".join(f"{split} {document['splits'][split]['images']}" for split in SPLITS)
    print(
        f"merged {counts['images']} images from {counts['batches']} batch(es) into {args.out}: {splits}; "
        f"{counts['duplicate_images']} duplicate(s) ({counts['conflicts']} conflicting), "
        f"{counts['renamed']} renamed, {counts['excluded']} excluded, "
        f"{counts['unknown_label_boxes']} unknown-label box(es), {len(result.problems)} problem(s)"
    )
    return 0


def main_merge(argv=None):
    """Runs ``merge`` as a stand-alone command (``python -m platelab.merge``); returns the exit status."""
    parser = add_merge_arguments(argparse.ArgumentParser(prog="platelab merge"))
    args = parser.parse_args(argv)
    try:
        return run_merge_command(args)
    except (ValueError, OSError) as error:
        print(f"platelab: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2


def _load_entries(sources, work_dir, result, progress):
    """Loads every batch; returns one entry per usable image, in batch order."""
    entries = []
    names = Counter()
    for position, source in enumerate(
        tqdm(sources, desc="load", unit="batch", disable=not progress)
    ):
        stem = source.stem if source.suffix.lower() == ".zip" else source.name
        names[stem] += 1
        name = stem if names[stem] == 1 else f"{stem}-{names[stem]}"
        summary = {"name": name, "source": str(source), "status": "ok", "images": 0, "problems": 0}
        result.batches.append(summary)
        extracted = work_dir / f"{position:03d}"
        try:
            batch = annotations.load_batch(source, extracted, read_image_size=_header_size)
        except (annotations.AnnotationError, archives.ArchiveError) as error:
            summary["status"] = "skipped"
            summary["problems"] = 1
            result.problems.append(str(error))
            continue
        except OSError as error:
            summary["status"] = "skipped"
            summary["problems"] = 1
            result.problems.append(f"{source}: cannot read ({error.strerror or error})")
            continue
        shown = _Shown(source, extracted)
        problems = [shown(message) for message in batch.problems]
        for record in batch.records:
            problems.extend(shown(message) for message in record.problems)
            if record.image_path is None:
                continue
            entries.append(
                {"batch": name, "batch_index": position, "record": record, "shown": shown}
            )
            summary["images"] += 1
        summary["problems"] = len(problems)
        result.problems.extend(problems)
    return entries


class _Shown:
    """Rewrites paths inside a zip's extraction folder as ``<zip>/<member>`` in messages."""

    def __init__(self, source, extracted):
        self.source = str(source)
        self.prefix = None
        if source.is_file() and extracted.is_dir():
            children = sorted(path for path in extracted.iterdir() if path.is_dir())
            if len(children) == 1:
                self.prefix = str(children[0])

    def __call__(self, text):
        return text.replace(self.prefix, self.source) if self.prefix else text


def _hash_entries(entries, hash_mode, workers, result, progress):
    """Adds ``file_sha256`` and the duplicate ``key`` to each entry; drops unreadable ones."""

    def digest(entry):
        path = entry["record"].image_path
        try:
            file_digest = metadata.sha256_file(path)
            key = file_digest if hash_mode == "bytes" else _pixel_hash(path)
        except (OSError, ValueError) as error:
            return error
        return file_digest, key

    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as executor:
        digests = list(
            tqdm(
                executor.map(digest, entries),
                total=len(entries),
                desc="hash",
                unit="image",
                disable=not progress,
            )
        )
    kept = []
    for entry, value in zip(entries, digests, strict=True):
        if isinstance(value, Exception):
            shown = entry["shown"](str(entry["record"].image_path))
            result.problems.append(f"{shown}: cannot read ({value}); skipped")
            continue
        entry["file_sha256"], entry["key"] = value
        kept.append(entry)
    return kept


def _pixel_hash(path):
    """SHA-256 of an image's decoded pixels (shape, dtype and values)."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError("not a decodable image")
    digest = hashlib.sha256(f"{image.shape}:{image.dtype}:".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def _normalise_objects(entry, lookup, unknown_labels, duplicate_iou, label_map, result):
    """Canonical labels; lists unknown labels and duplicate boxes; returns the kept objects."""
    record = entry["record"]
    where = entry["shown"](str(record.xml_path or record.image_path))
    kept = []
    for item in record.objects:
        label = annotations.normalize_label(item["label"], lookup)
        if label is None:
            result.unknown_labels[item["label"]] = result.unknown_labels.get(item["label"], 0) + 1
            result.unknown_objects.append({"file": where, "label": item["label"]})
            if unknown_labels == "drop":
                result.problems.append(
                    f"{where}: unknown label '{item['label']}' (not in the label map or aliases); box dropped"
                )
                continue
            result.problems.append(
                f"{where}: unknown label '{item['label']}'; kept as a class of its own"
            )
            label = item["label"]
            if label not in label_map:
                label_map.append(label)
        candidate = dict(item, label=label, bbox=[float(value) for value in item["bbox"]])
        duplicate = next(
            (
                (other, overlap)
                for other in kept
                if other["label"] == label
                and (overlap := boxes_lib.iou(other["bbox"], candidate["bbox"])) > duplicate_iou
            ),
            None,
        )
        if duplicate is not None:
            other, overlap = duplicate
            result.duplicate_objects.append(
                {
                    "file": where,
                    "label": label,
                    "bbox": candidate["bbox"],
                    "duplicate_of": other["bbox"],
                    "iou": round(overlap, 4),
                }
            )
            result.problems.append(
                f"{where}: duplicate {label} box {candidate['bbox']} (IoU {overlap:.3f} with "
                f"{other['bbox']}); de-duplicated"
            )
            continue
        kept.append(candidate)
    return kept


def _reconcile(entries, policy, union_iou, review_info, result):
    """One sample per content key; annotations of copies follow the policy."""
    by_key = defaultdict(list)
    for entry in entries:
        by_key[entry["key"]].append(entry)
    samples = []
    for key, copies in by_key.items():
        copies.sort(key=lambda entry: (entry["batch_index"], entry["record"].name))
        member_list = [
            {"batch": entry["batch"], "name": entry["record"].name, "sha256": entry["file_sha256"]}
            for entry in copies
        ]
        tags = {
            tag
            for member in member_list
            for tag in (review_info.get(member["sha256"]) or {}).get("tags") or []
        }
        if REVIEW_EXCLUDE_TAG in tags:
            for member in member_list:
                result.excluded.append(
                    {**member, "reason": f"tagged '{REVIEW_EXCLUDE_TAG}' in the review"}
                )
            continue
        winner = copies[0] if policy == "earlier" else copies[-1]
        objects = [dict(item) for item in winner["objects"]]
        if policy == "union":
            for entry in reversed(copies[:-1]):
                for item in entry["objects"]:
                    if not any(
                        other["label"] == item["label"]
                        and boxes_lib.iou(other["bbox"], item["bbox"]) >= union_iou
                        for other in objects
                    ):
                        objects.append(dict(item))
        record = winner["record"]
        sample = Sample(
            name=record.name,
            sha256=winner["file_sha256"],
            image_path=record.image_path,
            width=int(record.width),
            height=int(record.height),
            objects=objects,
            batch=winner["batch"],
            original_name=record.name,
            members=member_list,
            content_key=key,
            review_tags=sorted(tags),
        )
        samples.append(sample)
        if len(copies) > 1:
            differences = []
            for entry in copies:
                if entry is winner:
                    continue
                here = f"{entry['batch']}/{entry['record'].name}"
                there = f"{winner['batch']}/{record.name}"
                text = _compare_objects(winner["objects"], entry["objects"], there, here)
                if text:
                    differences.append(f"{here} vs {there}: {text}")
            result.duplicates.append(
                {
                    "content_key": key,
                    "name": record.name,
                    "kept": winner["batch"] if policy != "union" else "union",
                    "members": member_list,
                    "conflict": bool(differences),
                    "differences": differences,
                    "sample": sample,
                }
            )
    return samples


def _compare_objects(kept, other, kept_name, other_name):
    """Says how another copy's boxes differ from the winning copy's ('' when they agree)."""
    pairs = sorted(
        (
            (boxes_lib.iou(first["bbox"], second["bbox"]), kept_index, other_index)
            for kept_index, first in enumerate(kept)
            for other_index, second in enumerate(other)
            if first["label"] == second["label"]
        ),
        reverse=True,
    )
    matched_kept, matched_other, moved = set(), set(), 0
    for overlap, kept_index, other_index in pairs:
        if overlap < UNION_IOU or kept_index in matched_kept or other_index in matched_other:
            continue
        matched_kept.add(kept_index)
        matched_other.add(other_index)
        moved += overlap < SAME_BOX_IOU
    only_kept = Counter(
        kept[index]["label"] for index in range(len(kept)) if index not in matched_kept
    )
    only_other = Counter(
        other[index]["label"] for index in range(len(other)) if index not in matched_other
    )
    parts = [f"{count} {label} only in {kept_name}" for label, count in sorted(only_kept.items())]
    parts += [
        f"{count} {label} only in {other_name}" for label, count in sorted(only_other.items())
    ]
    if moved:
        parts.append(f"{moved} box(es) moved (IoU < {SAME_BOX_IOU})")
    return ", ".join(parts)


def _attach_metadata(sample, review_info, index_info):
    """Fills source, vantage, lighting, time and group: review, then index, then the name.

    Every copy's file hash is looked up; the kept copy's information comes first.
    """
    digests = [sample.sha256] + [member["sha256"] for member in reversed(sample.members)]
    for table in (index_info, review_info):
        for name in METADATA_FIELDS:
            value = next(
                (
                    (table.get(digest) or {}).get(name)
                    for digest in digests
                    if (table.get(digest) or {}).get(name) is not None
                ),
                None,
            )
            if value is not None:
                setattr(sample, name, value)
    if sample.vantage in (None, ""):
        sample.vantage = UNKNOWN_VANTAGE
    sample.vantage = str(sample.vantage)
    if sample.source_id is None:
        match = _FRAME_NAME.match(Path(sample.original_name).name)
        if match:
            sample.source_id = match["source"]
    if sample.source_id is not None:
        sample.group = str(sample.source_id)
    elif _CVAT_VIDEO_FRAME.match(Path(sample.original_name).name):
        sample.group = f"task:{sample.batch}"
    else:
        sample.group = f"photo:{sample.content_key[:12]}"


def _assign_names(samples, result):
    """Unique, file-system-safe output names; every sample of a colliding name is renamed."""
    for sample in samples:
        sample.name = safe_file_name(sample.original_name)
    by_name = defaultdict(list)
    for sample in samples:
        by_name[sample.name.lower()].append(sample)
    for key in sorted(by_name):
        clashing = by_name[key]
        if len(clashing) < 2:
            continue
        clashing.sort(key=lambda sample: (sample.batch, sample.original_name, sample.sha256))
        entry = {"name": clashing[0].name, "samples": []}
        for sample in clashing:
            sample.name = f"{safe_file_name(sample.batch)}__{sample.name}"
            entry["samples"].append(
                {
                    "batch": sample.batch,
                    "original_name": sample.original_name,
                    "renamed_to": sample.name,
                }
            )
        result.collisions.append(entry)
    taken = Counter(sample.name.lower() for sample in samples)
    for sample in sorted(samples, key=lambda sample: (sample.name, sample.sha256)):
        if taken[sample.name.lower()] > 1:
            taken[sample.name.lower()] -= 1
            sample.name = f"{sample.name}-{sample.sha256[:8]}"
            taken[sample.name.lower()] += 1
    for duplicate in result.duplicates:
        duplicate["name"] = duplicate.pop("sample").name


def _group_table(samples):
    """Group -> number of images and stratum (its most frequent vantage point)."""
    images = Counter(sample.group for sample in samples)
    vantages = defaultdict(Counter)
    for sample in samples:
        vantages[sample.group][sample.vantage] += 1
    return {
        group: {
            "images": images[group],
            "stratum": sorted(vantages[group].items(), key=lambda item: (-item[1], item[0]))[0][0],
        }
        for group in images
    }


def _best_move(empty, members, counts, sizes, fractions, seed):
    """The (group, donor split) whose move into an empty split leaves the smallest size error."""
    total = sum(counts.values())
    best = None
    for donor in SPLITS:
        if len(members[donor]) < 2:
            continue
        for group in members[donor]:
            moved = dict(counts)
            moved[donor] -= sizes[group]
            moved[empty] += sizes[group]
            error = sum((moved[split] - fractions[split] * total) ** 2 for split in SPLITS)
            key = (round(error, 6), _seeded_key(seed, group))
            if best is None or key < best[0]:
                best = (key, group, donor)
    return None if best is None else (best[1], best[2])


def _improve_by_swaps(assignment, members, counts, sizes, fractions, active, seed):
    """Moves or swaps groups while that lowers the split sizes' squared error (few groups only).

    With a handful of groups the greedy pass can leave a large group in a
    small split; each step applies the best single move (keeping every
    active split non-empty) or swap of two groups, until none helps.
    """
    total = sum(counts.values())

    def error(trial):
        return sum((trial[split] - fractions[split] * total) ** 2 for split in SPLITS)

    for _ in range(4 * len(assignment) + 1):
        current = error(counts)
        best = None
        ordered = sorted(assignment, key=lambda name: _seeded_key(seed, name))
        for position, group in enumerate(ordered):
            source = assignment[group]
            for target in active:
                if target == source or len(members[source]) < 2:
                    continue
                trial = dict(counts)
                trial[source] -= sizes[group]
                trial[target] += sizes[group]
                gain = current - error(trial)
                if gain > 1e-9 and (best is None or gain > best[0]):
                    best = (gain, [(group, source, target)])
            for other in ordered[position + 1 :]:
                target = assignment[other]
                if target == source or sizes[other] == sizes[group]:
                    continue
                trial = dict(counts)
                trial[source] += sizes[other] - sizes[group]
                trial[target] += sizes[group] - sizes[other]
                gain = current - error(trial)
                if gain > 1e-9 and (best is None or gain > best[0]):
                    best = (gain, [(group, source, target), (other, target, source)])
        if best is None:
            return
        for group, source, target in best[1]:
            members[source].remove(group)
            members[target].append(group)
            counts[source] -= sizes[group]
            counts[target] += sizes[group]
            assignment[group] = target


def _seeded_key(seed, name):
    return hashlib.sha256(f"{seed}\0{name}".encode()).hexdigest()


def _header_size(path):
    """(width, height) from the image header (no decode), or None where unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, UnidentifiedImageError, ValueError):
        return None


def _check_output_location(out_dir, sources):
    out_dir = Path(out_dir).resolve()
    for source in sources:
        source = Path(source).resolve()
        if out_dir == source or out_dir.is_relative_to(source) or source.is_relative_to(out_dir):
            raise ValueError(
                f"{out_dir}: the output folder must lie outside the input {source} (and not contain it)"
            )


def _voc_xml(sample):
    """CVAT's VOC XML for a sample (``<attributes>`` only where there are some: FiftyOne's
    VOC reader fails on an empty one)."""
    objects = []
    for item in sample.objects:
        x0, y0, x1, y1 = item["bbox"]
        attributes = "".join(
            f"\n      <attribute>\n        <name>{escape(str(name))}</name>\n"
            f"        <value>{escape('' if value is None else str(value))}</value>\n      </attribute>"
            for name, value in (item.get("attributes") or {}).items()
        )
        objects.append(
            f"  <object>\n    <name>{escape(item['label'])}</name>\n"
            f"    <truncated>{int(bool(item.get('truncated')))}</truncated>\n"
            f"    <occluded>{int(bool(item.get('occluded')))}</occluded>\n"
            f"    <difficult>{int(bool(item.get('difficult')))}</difficult>\n"
            f"    <bndbox>\n      <xmin>{float(x0)!r}</xmin>\n      <ymin>{float(y0)!r}</ymin>\n"
            f"      <xmax>{float(x1)!r}</xmax>\n      <ymax>{float(y1)!r}</ymax>\n    </bndbox>\n"
            + (f"    <attributes>{attributes}\n    </attributes>\n" if attributes else "")
            + "  </object>\n"
        )
    return (
        "<annotation>\n  <folder></folder>\n"
        f"  <filename>{escape(sample.file_name)}</filename>\n"
        "  <source>\n    <database>platelab</database>\n"
        f"    <annotation>{escape(sample.batch)}</annotation>\n"
        f"    <image>{escape(sample.original_name)}</image>\n  </source>\n"
        f"  <size>\n    <width>{sample.width}</width>\n    <height>{sample.height}</height>\n"
        "    <depth></depth>\n  </size>\n  <segmented>0</segmented>\n"
        f"{''.join(objects)}</annotation>\n"
    )


def _cvat_labelmap(labels):
    lines = [CVAT_LABELMAP_HEADER, "background:0,0,0::"]
    for index, label in enumerate(labels):
        red, green, blue = LABEL_COLORS_RGB.get(label) or _palette(index)
        lines.append(f"{label}:{red},{green},{blue}::")
    return "\n".join(lines) + "\n"


def _palette(index):
    hue_colors = [(250, 50, 83), (61, 245, 61), (131, 224, 112), (255, 106, 77), (184, 61, 245)]
    return hue_colors[index % len(hue_colors)]


def _pbtxt(labels):
    return "".join(
        f"item {{\n  id: {index + 1}\n  name: '{label}'\n}}\n" for index, label in enumerate(labels)
    )


def _document(result, staging, tfrecords, write_seconds):
    samples = []
    for sample in result.samples:
        samples.append(
            {
                "name": sample.name,
                "file": sample.file_name,
                "split": sample.split,
                "group": sample.group,
                "source_id": sample.source_id,
                "vantage": sample.vantage,
                "lighting": sample.lighting,
                "time": sample.time,
                "batch": sample.batch,
                "original_name": sample.original_name,
                "members": sample.members,
                "sha256": sample.sha256,
                "content_key": sample.content_key,
                "review_tags": sample.review_tags,
                "width": sample.width,
                "height": sample.height,
                "objects": dict(Counter(item["label"] for item in sample.objects)),
            }
        )
    splits = {}
    for split in SPLITS:
        chosen = [sample for sample in result.samples if sample.split == split]
        splits[split] = {
            "fraction": result.parameters["fractions"][split],
            "images": len(chosen),
            "groups": len({sample.group for sample in chosen}),
            "boxes": dict(Counter(item["label"] for sample in chosen for item in sample.objects)),
            "negatives": sum(1 for sample in chosen if not sample.objects),
            "vantages": dict(Counter(sample.vantage for sample in chosen)),
        }
    content = hashlib.sha256()
    for sample in result.samples:
        boxes = ";".join(
            f"{item['label']}:{','.join(repr(value) for value in item['bbox'])}"
            for item in sample.objects
        )
        content.update(f"{sample.name}\0{sample.sha256}\0{sample.split}\0{boxes}\n".encode())
    outputs = [metadata.fingerprint(staging / "ImageSets", staging)]
    outputs[0]["path"] = "ImageSets"
    if tfrecords:
        for split in SPLITS:
            item = metadata.fingerprint(staging / "tfrecords" / f"{split}.tfrecord")
            item["path"] = f"tfrecords/{split}.tfrecord"
            outputs.append(item)
    inputs = []
    for batch in result.batches:
        source = Path(batch["source"])
        if source.exists():
            item = metadata.fingerprint(source)
            item["batch"] = batch["name"]
            inputs.append(item)
    parameters = dict(result.parameters)
    return {
        "format": FORMAT,
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "parameters": parameters,
        "label_map": list(result.label_map),
        "counts": {
            "batches": len(result.batches),
            "input_images": sum(batch["images"] for batch in result.batches),
            "images": len(result.samples),
            "boxes": dict(
                Counter(item["label"] for sample in result.samples for item in sample.objects)
            ),
            "negatives": sum(1 for sample in result.samples if not sample.objects),
            "groups": len(result.groups),
            "duplicate_images": len(result.duplicates),
            "conflicts": sum(1 for item in result.duplicates if item["conflict"]),
            "collisions": len(result.collisions),
            "renamed": sum(len(item["samples"]) for item in result.collisions),
            "excluded": len(result.excluded),
            "unknown_label_boxes": sum(result.unknown_labels.values()),
            "duplicate_boxes": len(result.duplicate_objects),
            "problems": len(result.problems),
        },
        "splits": splits,
        "groups": result.groups,
        "batches": result.batches,
        "collisions": result.collisions,
        "duplicates": result.duplicates,
        "excluded": result.excluded,
        "unknown_labels": result.unknown_labels,
        "unknown_objects": result.unknown_objects,
        "duplicate_objects": result.duplicate_objects,
        "problems": result.problems,
        "warnings": result.warnings,
        "timings": {**result.timings, "write_s": write_seconds},
        "fingerprints": {
            "content_sha256": content.hexdigest(),
            "inputs": inputs,
            "outputs": outputs,
        },
        "samples": samples,
    }


if __name__ == "__main__":
    sys.exit(main_merge())
