"""Stage 02: curating sampled frames and photos before annotation.

:func:`curate` takes frame folders written by stage 01 (``manifest.json``,
PNGs and ``signatures.npy``), plain folders of photos, or image files, and
decides which images are worth annotating:

1. **Exact duplicates**: images whose *file bytes* have the same SHA-256 (no
   decoding needed; stage 01 writes byte-identical PNGs for identical pixels,
   such as a frozen feed) keep the first one. Only files that share their
   size and signature with another file can be byte-identical, so only those
   are hashed when the signatures are cached (photos are hashed as they are
   decoded).
2. **Near duplicates**: images whose signatures (64x36 grey thumbnails, see
   :mod:`platelab.signatures`) differ in at most ``threshold`` cells after
   gain and offset alignment (:func:`signature_distance`) are grouped by
   union-find over verified candidate pairs; the sharpest image of a group is
   kept. Candidate pairs are never all pairs (:func:`find_duplicates`).
3. **Empty images** (optional, ``drop_empty``): a ``detector`` callable
   decides when one is given; otherwise a motion heuristic compares each
   frame with the per-source median background.

Nothing is deleted: ``<out_dir>/curated.json`` lists every input image once,
as kept (with its duplicate group) or dropped (with the reason and the image
kept in its place), and ``<out_dir>/kept.txt`` lists the kept images' paths.
A rerun with unchanged inputs and parameters does no work.
"""

import collections
import concurrent.futures
import dataclasses
import datetime
import hashlib
import io
import json
import logging
import math
import os
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from platelab import atomic, metadata, signatures, visualize

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
"""Version of the curated.json layout and of the decisions behind it (part of the fingerprint)."""
DEFAULT_THRESHOLD = 3
"""Default near-duplicate threshold: changed thumbnail cells (of :data:`CELLS`)."""
CELLS = signatures.SIGNATURE_LENGTH
NOISE_FLOOR = 6.0
"""Smallest per-cell difference (grey levels, after alignment) that counts as a change."""
NOISE_SIGMAS = 5.0
"""A cell changed when its difference exceeds this many robust noise deviations of the pair."""
NOISE_CEILING = 16.0
"""Largest per-cell noise allowance, so a big moving object cannot raise it without bound."""
HASH_BANDS = 4
"""The 64-bit difference hash is split into this many bands for multi-index hashing."""
BUCKET_LIMIT = 8
"""Hash buckets up to this size are compared all-pairs; larger ones against group leaders."""
LEADERS = 4
"""Group leaders an oversized hash bucket is compared against (see ``_leader_pass``)."""
TEMPORAL_WINDOW = 2
"""Each frame is compared with this many following frames of the same source."""
PROJECTIONS = 4
"""Random projections of the centred thumbnails sorted for neighbour candidates."""
PROJECTION_WINDOW = 6
"""Each image is compared with this many following images in each projection's order."""
BATCH_PAIRS = 512
COARSE_BLOCK = 4
REFIT_BOUND = 8
"""Pairs with more than this many times (threshold + 1) changed cells at first fit are not refitted."""
COARSE_MARGIN = 6.0
"""Extra grey levels a coarse cell must differ by before the prefilter rejects a pair."""
SATURATED = 250.0
"""Cells at or above this (or at or below 255 minus it) may be clipped by the exposure."""
DEFAULT_THRESHOLDS = (0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128)
EMPTY_FLOOR = 12.0
"""Per-cell difference from the background (grey levels) that counts as foreground."""
MIN_FOREGROUND = 0.003
"""Frames with a smaller foreground fraction (of the thumbnail) count as empty."""
MIN_BACKGROUND_FRAMES = 5
"""A source needs this many frames for a median background; others are never judged empty."""
BLANK_STD = 2.0
"""A thumbnail with a smaller grey-level standard deviation is blank (black feed) and empty."""
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
REASONS = ("exact_duplicate", "near_duplicate", "empty", "unreadable")
CURATED_NAME = "curated.json"
KEPT_NAME = "kept.txt"
CACHE_DIR = "cache"


@dataclasses.dataclass
class Duplicates:
    """The result of :func:`find_duplicates`.

    Attributes:
        labels: group id per signature (int array); groups are numbered in
            order of their first member, singletons included
        pairs: (k, 2) verified candidate pairs (first < second)
        distances: the distance of each verified pair (changed cells)
        comparisons: number of candidate pairs verified
        fine_comparisons: how many of them needed the full distance (the
            others differ so much in a 16x9 reduction that they cannot be
            duplicates)
        candidates: candidate pairs proposed per strategy (before removing
            pairs already compared or already grouped)
    """

    labels: np.ndarray
    pairs: np.ndarray
    distances: np.ndarray
    comparisons: int
    fine_comparisons: int
    candidates: dict

    @property
    def groups(self):
        """Lists of member indices of the groups with more than one member."""
        order = np.argsort(self.labels, kind="stable")
        bounds = np.flatnonzero(np.diff(self.labels[order])) + 1
        return [chunk.tolist() for chunk in np.split(order, bounds) if len(chunk) > 1]


def signature_distance(first, second):
    """Counts the thumbnail cells that differ between two signatures.

    The second thumbnail is aligned to the first by a gain and an offset
    (auto-exposure and flicker change the whole image), refitted on the
    unchanged cells; a cell counts as changed when its aligned difference
    exceeds the pair's noise allowance: :data:`NOISE_SIGMAS` robust standard
    deviations of the differences, clipped to [:data:`NOISE_FLOOR`,
    :data:`NOISE_CEILING`] grey levels. Sensor noise and compression average
    out in the 64x36 area-averaged cells; a vehicle that moved changes whole
    cells by tens of grey levels. The distance is symmetric.

    Args:
        first: a signature (flat uint8 array of length :data:`CELLS`)
        second: another signature

    Returns:
        the number of changed cells (an int in [0, :data:`CELLS`])
    """
    first = np.asarray(first, dtype=np.uint8).reshape(1, -1)
    second = np.asarray(second, dtype=np.uint8).reshape(1, -1)
    return int(_changed_cells(first, second)[0])


def find_duplicates(
    signature_rows,
    hashes=None,
    threshold=DEFAULT_THRESHOLD,
    sources=None,
    times=None,
    keep_all_pairs=False,
    progress=False,
):
    """Groups near-duplicate signatures without comparing all pairs.

    Candidate pairs come from four strategies, each O(n log n) or O(n):
    identical signatures (a hash table, no comparison), temporal neighbours
    within a source, multi-index hashing of the 64-bit difference hashes
    (:data:`HASH_BANDS` bands; by the pigeonhole principle every pair of hashes
    within Hamming distance < bands shares a band; buckets larger than
    :data:`BUCKET_LIMIT`, such as a black feed, are compared against at most
    :data:`LEADERS` group leaders instead of all pairs) and neighbours in
    the sort orders of a few random projections of the centred thumbnails.
    A cheap 16x9 prefilter rejects pairs that differ grossly before the full
    distance is computed.
    Each candidate is verified with :func:`signature_distance` and joined by
    union-find when within ``threshold``; pairs already in one group are
    skipped unless ``keep_all_pairs``.

    Args:
        signature_rows: (n, :data:`CELLS`) uint8 signatures
        hashes: n 64-bit difference hashes (ints or uint64), computed from the
            signatures when None
        threshold: largest distance (changed cells) of a duplicate pair
        sources: optional n source ids (temporal neighbours are only looked
            for within a source)
        times: optional n times (seconds or frame numbers) ordering a source
        keep_all_pairs: verify every candidate, even within a group, so that
            :attr:`Duplicates.pairs` can be re-thresholded at any value up to
            ``threshold`` (slower; used by :func:`threshold_curve`)
        progress: whether to show a progress bar

    Returns:
        a :class:`Duplicates`

    Raises:
        ValueError: on badly shaped arrays
    """
    signature_rows = _as_signatures(signature_rows)
    count = len(signature_rows)
    if hashes is None:
        hashes = [signatures.difference_hash(row) for row in signature_rows]
    hashes = np.array([int(value) for value in hashes], dtype=np.uint64)
    if len(hashes) != count:
        raise ValueError(f"{len(hashes)} hashes for {count} signatures")
    if sources is not None and len(sources) != count:
        raise ValueError(f"{len(sources)} sources for {count} signatures")
    if times is not None and len(times) != count:
        raise ValueError(f"{len(times)} times for {count} signatures")
    search = _Search(signature_rows, threshold, keep_all_pairs)
    distinct = search.join_identical()
    strategies = (
        ("temporal", lambda: _temporal_pairs(distinct, sources, times)),
        ("hash_bands", lambda: _band_pairs(search, distinct, hashes)),
        ("projections", lambda: _projection_pairs(signature_rows, distinct)),
    )
    bar = tqdm(total=len(strategies), desc="near duplicates", unit="strategy", disable=not progress)
    with bar:
        for name, make_pairs in strategies:
            pairs = make_pairs()
            search.candidates[name] = search.candidates.get(name, 0) + len(pairs)
            search.verify(pairs)
            bar.update()
    return search.result()


def threshold_curve(result_or_signatures, thresholds=DEFAULT_THRESHOLDS, sources=None, times=None):
    """Counts the images kept at each near-duplicate threshold.

    Candidates are verified once at the largest threshold and re-grouped at
    each value, so the counts are non-increasing in the threshold. They match
    :func:`curate` at its threshold up to the few pairs that oversized hash
    buckets (compared against leaders only) pair differently.

    Args:
        result_or_signatures: the dict returned by :func:`curate` (or
            :func:`load_result`), or an (n, :data:`CELLS`) signature array
        thresholds: thresholds in changed cells
        sources: optional source ids when signatures are given
        times: optional times when signatures are given

    Returns:
        a pandas DataFrame with columns ``threshold``, ``kept``, ``dropped``,
        ``kept_fraction`` and ``groups`` (groups of two or more images);
        unreadable images are left out, and empty ones are counted (the
        curve shows the duplicate removal alone)
    """
    import pandas as pd

    if isinstance(result_or_signatures, dict):
        signature_rows, sources, times = _result_signatures(result_or_signatures)
    else:
        signature_rows = _as_signatures(result_or_signatures)
    thresholds = sorted({int(value) for value in thresholds})
    if not thresholds:
        raise ValueError("thresholds is empty")
    count = len(signature_rows)
    found = find_duplicates(
        signature_rows, threshold=thresholds[-1], sources=sources, times=times, keep_all_pairs=True
    )
    # One pass: merge pairs in order of distance, reading off the counts at each threshold.
    order = np.argsort(found.distances, kind="stable")
    pairs, distances = found.pairs[order].tolist(), found.distances[order].tolist()
    parent = list(range(count))
    size = [1] * count
    groups = kept = count
    multi = 0
    position = 0
    rows = []
    for threshold in thresholds:
        while position < len(pairs) and distances[position] <= threshold:
            first, second = (_find_root(parent, index) for index in pairs[position])
            position += 1
            if first == second:
                continue
            if size[first] < size[second]:
                first, second = second, first
            multi -= (size[first] > 1) + (size[second] > 1) - 1
            parent[second] = first
            size[first] += size[second]
            groups -= 1
        kept = groups
        rows.append(
            {
                "threshold": threshold,
                "kept": kept,
                "dropped": count - kept,
                "kept_fraction": kept / count if count else 1.0,
                "groups": multi,
            }
        )
    return pd.DataFrame(rows)


def plot_threshold_curve(curve, chosen=None):
    """Plots images kept against the near-duplicate threshold.

    Args:
        curve: the DataFrame from :func:`threshold_curve`
        chosen: the threshold in use, marked with a vertical line

    Returns:
        the matplotlib Figure
    """
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 4.2))
    axis.plot(curve["threshold"], curve["kept"], marker="o", color="tab:blue", label="kept")
    axis.plot(
        curve["threshold"],
        curve["groups"],
        marker=".",
        color="tab:orange",
        label="duplicate groups",
    )
    if chosen is not None:
        axis.axvline(chosen, color="tab:red", linestyle="--", label=f"chosen threshold = {chosen}")
    positive = curve["threshold"][curve["threshold"] > 0]
    if len(positive) and positive.max() / max(positive.min(), 1) > 20:
        axis.set_xscale("symlog", linthresh=1)
    axis.set_xlim(left=0)
    axis.set_xlabel(f"near-duplicate threshold (changed thumbnail cells, of {CELLS})")
    axis.set_ylabel("images (count)")
    axis.set_ylim(bottom=0)
    axis.grid(True, alpha=0.3)
    axis.legend(loc="best")
    axis.set_title("Images kept against the near-duplicate threshold")
    visualize.add_caption(
        figure,
        "Choose a threshold where the curve is flat; higher values also merge frames in which a vehicle moved.",
    )
    return figure


def curate(
    inputs,
    out_dir,
    threshold=DEFAULT_THRESHOLD,
    drop_empty=None,
    detector=None,
    min_foreground=MIN_FOREGROUND,
    workers=None,
    force=False,
    progress=True,
):
    """Removes duplicate (and optionally empty) images; writes curated.json and kept.txt.

    Args:
        inputs: a path or a list of paths, each a frames folder of stage 01
            (with ``manifest.json``; its ``signatures.npy`` is used when
            present), a folder of images (searched recursively) or an image file
        out_dir: the output folder (created; the inputs are never modified)
        threshold: near-duplicate threshold in changed thumbnail cells (see
            :func:`signature_distance` and :func:`threshold_curve`)
        drop_empty: whether to drop images with no object of interest;
            None (the default) drops them only when a ``detector`` is given
        detector: optional callable ``detector(image_bgr) -> list of
            detections``; with ``drop_empty`` an image with no detection is
            empty. Without one, a motion heuristic decides (see
            :func:`empty_frames`). It may carry a ``fingerprint`` attribute
            naming its checkpoint, so that a new checkpoint reruns curation
        min_foreground: foreground fraction below which the heuristic calls a
            frame empty
        workers: threads decoding and hashing images (default: CPU count, at most 8)
        force: redo the work even when inputs and parameters are unchanged
        progress: whether to show progress bars

    Returns:
        the curated.json document as a dict, with ``out_dir`` added (see the
        module docstring and :func:`load_result`)

    Raises:
        FileNotFoundError: if an input does not exist
        ValueError: on a bad argument, a malformed manifest, or an ``out_dir``
            inside an input folder (the inputs are never written to)
    """
    out_dir = Path(out_dir).resolve()
    if int(threshold) < 0:
        raise ValueError(f"threshold must be >= 0 changed cells, got {threshold}")
    if detector is not None and not callable(detector):
        raise ValueError("detector must be a callable image -> list of detections")
    if drop_empty is None:
        drop_empty = detector is not None
    parameters = {
        "threshold": int(threshold),
        "drop_empty": bool(drop_empty),
        "detector": _detector_name(detector) if drop_empty else None,
        "min_foreground": float(min_foreground) if drop_empty and detector is None else None,
    }
    sources_in, records = _collect(inputs)
    for item in sources_in:
        if item["path"] is not None and out_dir.is_relative_to(item["path"]):
            raise ValueError(f"out_dir {out_dir} is inside the input folder {item['path']}")
    fingerprint = _fingerprint(parameters, sources_in, records)
    previous = _load_previous(out_dir)
    if not force and previous is not None and previous.get("fingerprint") == fingerprint:
        logger.info("%s is up to date (inputs and parameters unchanged); nothing to do", out_dir)
        previous["out_dir"] = str(out_dir)
        return previous
    started = datetime.datetime.now(datetime.timezone.utc)
    problems = _scan(records, out_dir, workers, progress)
    readable = [record for record in records if record["signature"] is not None]
    search_stats = _group_duplicates(records, readable, int(threshold), progress)
    if drop_empty:
        _mark_empty(records, readable, detector, float(min_foreground), progress)
    document = _document(
        parameters, fingerprint, sources_in, records, problems, search_stats, started
    )
    _write_cache(out_dir, records)
    atomic.atomic_write_text(
        out_dir / KEPT_NAME, "".join(f"{entry['path']}\n" for entry in document["kept"])
    )
    atomic.atomic_write_json(out_dir / CURATED_NAME, document)
    counts = document["counts"]
    logger.info(
        "curated %d images: %d kept, %d exact and %d near duplicates, %d empty, %d unreadable",
        counts["input"],
        counts["kept"],
        counts["exact_duplicate"],
        counts["near_duplicate"],
        counts["empty"],
        counts["unreadable"],
    )
    document["out_dir"] = str(out_dir)
    return document


def load_result(out_dir):
    """Loads ``<out_dir>/curated.json`` as written by :func:`curate`.

    Raises:
        FileNotFoundError: if it does not exist
    """
    out_dir = Path(out_dir).resolve()
    document = json.loads((out_dir / CURATED_NAME).read_text(encoding="utf-8"))
    document["out_dir"] = str(out_dir)
    return document


def empty_frames(signature_rows, sources, min_foreground=MIN_FOREGROUND):
    """Flags frames with nothing moving, from their signatures alone.

    Each source with at least :data:`MIN_BACKGROUND_FRAMES` frames gets a
    per-cell median background; a frame's foreground is the fraction of
    cells differing from it by more than :data:`EMPTY_FLOOR` grey levels
    after gain and offset alignment. Frames below ``min_foreground`` are
    empty, and so is any blank (near-uniform, e.g. black) thumbnail. Vehicles
    parked through most of a source are part of its background, so a
    parked-only frame counts as empty: prefer a detector when one exists.

    Args:
        signature_rows: (n, :data:`CELLS`) uint8 signatures
        sources: n source ids
        min_foreground: foreground fraction below which a frame is empty

    Returns:
        (empty, foreground): a bool array and the foreground fractions (NaN
        where a source is too short to judge)
    """
    signature_rows = _as_signatures(signature_rows)
    count = len(signature_rows)
    if len(sources) != count:
        raise ValueError(f"{len(sources)} sources for {count} signatures")
    foreground = np.full(count, np.nan)
    blank = signature_rows.std(axis=1) < BLANK_STD if count else np.zeros(0, dtype=bool)
    by_source = collections.defaultdict(list)
    for index, source in enumerate(sources):
        by_source[source].append(index)
    for members in by_source.values():
        members = np.asarray(members)
        usable = members[~blank[members]]
        if len(usable) < MIN_BACKGROUND_FRAMES:
            continue
        background = np.median(signature_rows[usable], axis=0).astype(np.uint8)
        for start in range(0, len(members), BATCH_PAIRS):
            chunk = members[start : start + BATCH_PAIRS]
            repeated = np.broadcast_to(background, (len(chunk), CELLS))
            changed = _changed_cells(repeated, signature_rows[chunk], floor=EMPTY_FLOOR)
            foreground[chunk] = changed / CELLS
    with np.errstate(invalid="ignore"):
        empty = blank | (foreground < min_foreground)
    return empty, foreground


def counts_by_source(result):
    """Counts images in and out per source.

    Args:
        result: the dict returned by :func:`curate` or :func:`load_result`

    Returns:
        a pandas DataFrame indexed by source id with columns ``input``,
        ``kept``, one per drop reason, and ``kept_percent``; the last row
        (``all``) sums the sources
    """
    import pandas as pd

    columns = ["input", "kept", *REASONS]
    table = collections.defaultdict(lambda: dict.fromkeys(columns, 0))
    for entry in result["kept"]:
        row = table[entry.get("source_id") or "?"]
        row["input"] += 1
        row["kept"] += 1
    for entry in result["dropped"]:
        row = table[entry.get("source_id") or "?"]
        row["input"] += 1
        row[entry["reason"]] += 1
    frame = pd.DataFrame.from_dict(table, orient="index", columns=columns).sort_index()
    frame.loc["all"] = frame.sum()
    frame["kept_percent"] = (100.0 * frame["kept"] / frame["input"].clip(lower=1)).round(1)
    frame.index.name = "source_id"
    return frame


def duplicate_gallery(result, frames_dir=None, max_groups=6, max_per_group=5, min_size=2):
    """Shows the largest duplicate groups, the kept image of each marked.

    Args:
        result: the dict returned by :func:`curate` or :func:`load_result`
        frames_dir: optional folder the images' relative paths are resolved
            against, when their recorded absolute paths no longer exist
        max_groups: rows (groups) to show, largest groups first
        max_per_group: images shown per group (the kept one first)
        min_size: smallest group size shown

    Returns:
        the matplotlib Figure
    """
    import matplotlib.pyplot as plt

    groups = _groups_of(result)
    chosen = [members for members in groups.values() if len(members) >= min_size]
    chosen.sort(key=lambda members: (-len(members), members[0]["path"]))
    chosen = chosen[: max(0, int(max_groups))]
    columns = max(1, min(max_per_group, max((len(members) for members in chosen), default=1)))
    rows = max(1, len(chosen))
    figure, axes = plt.subplots(
        rows, columns, figsize=(3.2 * columns, 2.5 * rows + 0.7), squeeze=False
    )
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
        for spine in axis.spines.values():
            spine.set_visible(False)
    if not chosen:
        axes[0, 0].text(0.5, 0.5, "no duplicate groups", ha="center", va="center")
    for row, members in enumerate(chosen):
        for column, entry in enumerate(members[:columns]):
            axis = axes[row, column]
            image = _read_for_display(entry, frames_dir)
            kept = entry.get("reason") is None
            if image is None:
                axis.text(0.5, 0.5, "unreadable", ha="center", va="center")
            else:
                height, width = image.shape[:2]
                axis.imshow(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), extent=(0, width, height, 0))
                axis.set_xticks([0, width])
                axis.set_yticks([0, height])
                axis.tick_params(labelsize=6)
            color = "tab:green" if kept else "tab:red"
            for spine in axis.spines.values():
                spine.set_visible(True)
                spine.set_color(color)
                spine.set_linewidth(4 if kept else 1.5)
            status = "KEPT" if kept else entry["reason"].replace("_", " ")
            if not kept and entry.get("distance") is not None:
                status += f" (d={entry['distance']})"
            time = entry.get("time")
            when = (
                f"t={time:.1f} s" if isinstance(time, (int, float)) else Path(entry["image"]).name
            )
            axis.set_title(f"{status} · {when}", fontsize=7, color=color)
            axis.set_xlabel(f"x (px) · sharpness {entry.get('sharpness') or 0:.0f}", fontsize=7)
            if column == 0:
                source = entry.get("source_id") or ""
                axis.set_ylabel(
                    f"group {entry['group']} ({len(members)} images)\n{source}\ny (px)", fontsize=7
                )
    figure.suptitle("Largest duplicate groups (kept image first, green frame)", fontsize=11)
    figure.text(
        0.5,
        0.005,
        "Each row is one duplicate group; only the green-framed image is kept, the others point to it. d = changed thumbnail cells.",
        ha="center",
        va="bottom",
        fontsize=9,
        style="italic",
    )
    figure.tight_layout(rect=(0, 0.04, 1, 0.97))
    return figure


def build_fiftyone_dataset(
    result, name="platelab-curate", overwrite=True, persistent=False, similarity=True
):
    """Builds a FiftyOne dataset of the curated images for the App.

    Every readable input image becomes a sample with the fields
    ``dup_group`` (int), ``group_size``, ``kept`` (bool), ``reason`` (drop
    reason or None), ``representative`` (path of the image kept in its place),
    ``sharpness``, ``source_id``, ``time`` and ``frame_index``, and the tag
    ``kept`` or ``dropped``. Use ``dataset.sort_by("dup_group")`` or
    ``dataset.group_by("dup_group")`` to browse groups. With ``similarity``
    the signatures are indexed with ``fiftyone.brain.compute_similarity``
    (sklearn backend, brain key ``curate_signatures``, no model download), so
    the App can sort by similarity and :func:`fiftyone_near_duplicates` can
    list neighbours.

    Args:
        result: the dict returned by :func:`curate` or :func:`load_result`
        name: the dataset name
        overwrite: replace an existing dataset of that name
        persistent: keep the dataset after the Python session ends
        similarity: whether to add the similarity index

    Returns:
        the fiftyone Dataset
    """
    from platelab.fiftyone_setup import import_fiftyone

    fo = import_fiftyone()
    if fo.dataset_exists(name):
        if not overwrite:
            raise ValueError(f"FiftyOne dataset {name!r} exists (pass overwrite=True)")
        fo.delete_dataset(name)
    dataset = fo.Dataset(name)
    dataset.persistent = bool(persistent)
    for field, kind in (
        ("dup_group", fo.IntField),
        ("group_size", fo.IntField),
        ("kept", fo.BooleanField),
        ("reason", fo.StringField),
        ("representative", fo.StringField),
        ("sharpness", fo.FloatField),
        ("source_id", fo.StringField),
        ("time", fo.FloatField),
        ("frame_index", fo.IntField),
    ):
        dataset.add_sample_field(field, kind)
    entries = [entry for entry in _all_entries(result) if entry.get("reason") != "unreadable"]
    samples = []
    for entry in entries:
        kept = entry.get("reason") is None
        samples.append(
            fo.Sample(
                filepath=entry["path"],
                tags=["kept" if kept else "dropped"],
                dup_group=entry.get("group"),
                group_size=entry.get("group_size"),
                kept=kept,
                reason=entry.get("reason"),
                representative=entry.get("representative"),
                sharpness=entry.get("sharpness"),
                source_id=entry.get("source_id"),
                time=entry.get("time"),
                frame_index=entry.get("frame_index"),
            )
        )
    dataset.add_samples(samples, progress=False)
    dataset.info["curate"] = {
        "threshold": result["parameters"]["threshold"],
        "counts": result["counts"],
    }
    dataset.save()
    if similarity and len(dataset):
        embeddings = _embeddings_for(result, entries)
        import fiftyone.brain as fob

        fob.compute_similarity(
            dataset,
            embeddings=embeddings,
            backend="sklearn",
            metric="euclidean",
            brain_key="curate_signatures",
            progress=False,
        )
    return dataset


def fiftyone_exact_duplicates(dataset):
    """Finds byte-identical media with ``fiftyone.brain.compute_exact_duplicates``.

    FiftyOne hashes every file of the dataset with Python's built-in 64-bit
    ``hash()`` of its bytes: about as fast as curate's SHA-256 (see
    ``benchmarks/bench_curate.py``), but only once MongoDB runs and the
    images are samples in it. :func:`curate` does not depend on that: it
    hashes with SHA-256, and only the files that share their size and
    signature with another. This wrapper is offered to cross-check inside
    FiftyOne.

    Returns:
        {sample id: [ids of its exact duplicates]}
    """
    import fiftyone.brain as fob

    return fob.compute_exact_duplicates(dataset, progress=False)


def fiftyone_duplicate_groups(dataset):
    """Returns a view of the duplicate groups for the App: one dynamic group per ``dup_group``.

    Only groups of two or more images are shown, the sharpest (kept) first.

    Args:
        dataset: a dataset from :func:`build_fiftyone_dataset`

    Returns:
        a fiftyone view grouped by ``dup_group``
    """
    from fiftyone import ViewField

    return (
        dataset.match(ViewField("group_size") > 1)
        .sort_by("dup_group")
        .group_by("dup_group", order_by="sharpness", reverse=True)
    )


def fiftyone_near_duplicates(dataset, threshold=None, brain_key="curate_signatures"):
    """Runs FiftyOne's near-duplicate search on the signature similarity index.

    The index holds unit-scaled centred thumbnails (see
    :func:`build_fiftyone_dataset`); FiftyOne's Euclidean threshold is not the
    changed-cell distance of :func:`signature_distance`, which decides the
    groups of :func:`curate`, so use this to browse, not to decide.

    Args:
        dataset: a dataset from :func:`build_fiftyone_dataset`
        threshold: Euclidean distance between the unit-scaled embeddings
            (default 0.0075; on the synthetic pair set of the tests it gives
            precision 0.93 and recall 0.95, against 0.99 and 1.00 for the
            changed-cell distance)
        brain_key: the similarity index's brain key

    Returns:
        the similarity index, after ``find_duplicates``: see its
        ``neighbors_map`` and ``duplicates_view()``
    """
    index = dataset.load_brain_results(brain_key)
    index.find_duplicates(thresh=0.0075 if threshold is None else float(threshold))
    return index


# -- private helpers -------------------------------------------------------------------------------


class _Search:
    """Union-find over signatures plus the verification of candidate pairs."""

    def __init__(self, signature_rows, threshold, keep_all_pairs):
        self.signatures = signature_rows
        self.threshold = int(threshold)
        self.keep_all_pairs = keep_all_pairs
        # Re-thresholding (keep_all_pairs) needs the leaders to absorb only close members.
        self.leader_threshold = (
            min(self.threshold, DEFAULT_THRESHOLD) if keep_all_pairs else self.threshold
        )
        self.parent = list(range(len(signature_rows)))
        self.compared = set()
        self.coarse = _coarse_thumbnails(signature_rows)
        self.comparisons = 0
        self.fine_comparisons = 0
        self.candidates = {}
        self.pairs = []
        self.distances = []

    def find(self, index):
        parent = self.parent
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    def union(self, first, second):
        first, second = self.find(first), self.find(second)
        if first != second:
            if first > second:
                first, second = second, first
            self.parent[second] = first

    def join_identical(self):
        """Joins identical signatures without comparing them; returns the distinct indices."""
        seen = {}
        distinct = []
        for index, row in enumerate(self.signatures):
            key = row.tobytes()
            if key in seen:
                self.union(seen[key], index)
                self._record(seen[key], index, 0)
            else:
                seen[key] = index
                distinct.append(index)
        self.candidates["identical"] = len(self.signatures) - len(distinct)
        return np.asarray(distinct, dtype=np.int64)

    def verify(self, pairs):
        """Verifies candidate pairs (an (k, 2) array) and joins the duplicates."""
        if len(pairs) == 0:
            return
        pairs = np.sort(np.asarray(pairs, dtype=np.int64).reshape(-1, 2), axis=1)
        pairs = pairs[pairs[:, 0] != pairs[:, 1]]
        count = len(self.signatures)
        keys = np.unique(pairs[:, 0] * count + pairs[:, 1])
        compared = self.compared
        keys = np.fromiter((key for key in keys.tolist() if key not in compared), dtype=np.int64)
        for start in range(0, len(keys), BATCH_PAIRS):
            chunk = keys[start : start + BATCH_PAIRS]
            first, second = chunk // count, chunk % count
            if not self.keep_all_pairs:
                find = self.find
                apart = np.fromiter(
                    (
                        find(a) != find(b)
                        for a, b in zip(first.tolist(), second.tolist(), strict=True)
                    ),
                    dtype=bool,
                    count=len(chunk),
                )
                first, second, chunk = first[apart], second[apart], chunk[apart]
            compared.update(chunk.tolist())
            self._verify_pairs(first, second)

    def verify_now(self, first, second):
        """Verifies aligned index arrays now; returns their distances (CELLS + 1 if rejected early)."""
        return self._verify_pairs(
            np.asarray(first, dtype=np.int64), np.asarray(second, dtype=np.int64)
        )

    def result(self):
        labels = _labels_from_roots([self.find(index) for index in range(len(self.parent))])
        pairs = np.array(self.pairs, dtype=np.int64).reshape(-1, 2)
        distances = np.array(self.distances, dtype=np.int64)
        return Duplicates(
            labels, pairs, distances, self.comparisons, self.fine_comparisons, dict(self.candidates)
        )

    def _verify_pairs(self, first, second):
        distances = np.full(len(first), CELLS + 1, dtype=np.int64)
        if len(first) == 0:
            return distances
        self.comparisons += len(first)
        close = _coarse_changed(self.coarse[first], self.coarse[second]) <= self.threshold
        if np.any(close):
            self.fine_comparisons += int(np.count_nonzero(close))
            distances[close] = _changed_cells(
                self.signatures[first[close]],
                self.signatures[second[close]],
                bound=REFIT_BOUND * (self.threshold + 1),
            )
        for a, b, distance in zip(
            first[close].tolist(), second[close].tolist(), distances[close].tolist(), strict=True
        ):
            if distance <= self.threshold:
                self.union(a, b)
                self._record(a, b, distance)
            elif self.keep_all_pairs:
                self._record(a, b, distance)
        return distances

    def _record(self, first, second, distance):
        self.pairs.append((min(first, second), max(first, second)))
        self.distances.append(int(distance))


def _changed_cells(first, second, floor=NOISE_FLOOR, bound=None):
    """Vectorized :func:`signature_distance` over rows of two (m, CELLS) uint8 arrays.

    Round one fits gain and offset on all cells and estimates the noise;
    rows with some changed cells are refitted on the unchanged ones (so a
    moved vehicle does not bias the fit) and counted again. The noise
    deviation is 1.25 times the mean absolute residual clipped at the
    ceiling: robust to a few changed cells and much cheaper than a median.

    Args:
        first: (m, CELLS) uint8
        second: (m, CELLS) uint8
        floor: smallest allowance in grey levels
        bound: rows whose first count exceeds this are not refitted (their
            distance is far above any threshold of interest); None refits all
    """
    x = first.astype(np.float32)
    y = second.astype(np.float32)
    counts, weights = _fit_and_count(x, y, None, floor)
    refit = counts > 0
    if bound is not None:
        refit &= counts <= bound
    if np.any(refit):
        counts[refit], _ = _fit_and_count(x[refit], y[refit], weights[refit], floor)
    return counts


def _fit_and_count(x, y, weights, floor):
    """One round of gain/offset fitting (on weighted cells); returns (counts, inlier weights)."""
    ceiling = max(NOISE_CEILING, floor)
    if weights is None:
        total = np.float32(x.shape[1])
        mean_x = x.sum(axis=1, keepdims=True) / total
        mean_y = y.sum(axis=1, keepdims=True) / total
    else:
        total = np.maximum(weights.sum(axis=1, keepdims=True), 1.0)
        mean_x = np.einsum("ij,ij->i", weights, x)[:, None] / total
        mean_y = np.einsum("ij,ij->i", weights, y)[:, None] / total
    centred_x = x - mean_x
    centred_y = y - mean_y
    if weights is None:
        var_x = np.einsum("ij,ij->i", centred_x, centred_x)
        var_y = np.einsum("ij,ij->i", centred_y, centred_y)
    else:
        var_x = np.einsum("ij,ij->i", centred_x * weights, centred_x)
        var_y = np.einsum("ij,ij->i", centred_y * weights, centred_y)
    textured = (var_x > total.reshape(-1)) & (var_y > total.reshape(-1))
    gain = np.ones_like(var_x)
    gain[textured] = np.sqrt(var_y[textured] / var_x[textured])
    gain = np.clip(gain, 0.5, 2.0)[:, None]
    residual = _aligned_residual(x, y, mean_x, mean_y, gain)
    spread = np.minimum(residual, ceiling).mean(axis=1)
    limit = np.clip(1.25 * NOISE_SIGMAS * spread, floor, ceiling)[:, None]
    outside = residual > limit
    return np.count_nonzero(outside, axis=1).astype(np.int64), (~outside).astype(np.float32)


def _coarse_thumbnails(signature_rows):
    """Averages 4x4 blocks of cells: (n, CELLS) uint8 -> (n, 144) float32."""
    width, height = signatures.THUMBNAIL_SIZE
    blocks = signature_rows.reshape(
        -1, height // COARSE_BLOCK, COARSE_BLOCK, width // COARSE_BLOCK, COARSE_BLOCK
    )
    return blocks.mean(axis=(2, 4), dtype=np.float32).reshape(len(signature_rows), -1)


def _coarse_changed(first, second):
    """Counts coarse cells that differ beyond any noise allowance (a lower bound on the distance).

    A coarse cell is the mean of 16 cells, so when its aligned difference
    exceeds the largest allowance (plus a margin for the coarser alignment),
    at least one of its cells is changed: the count never exceeds the fine
    distance of a pair that is not grossly misaligned.
    """
    mean_x = first.mean(axis=1, keepdims=True)
    mean_y = second.mean(axis=1, keepdims=True)
    centred_x, centred_y = first - mean_x, second - mean_y
    var_x = np.einsum("ij,ij->i", centred_x, centred_x)
    var_y = np.einsum("ij,ij->i", centred_y, centred_y)
    textured = (var_x > first.shape[1]) & (var_y > first.shape[1])
    gain = np.ones_like(var_x)
    gain[textured] = np.sqrt(var_y[textured] / var_x[textured])
    gain = np.clip(gain, 0.5, 2.0)[:, None]
    residual = _aligned_residual(first, second, mean_x, mean_y, gain)
    return np.count_nonzero(residual > NOISE_CEILING + COARSE_MARGIN, axis=1)


def _aligned_residual(x, y, mean_x, mean_y, gain):
    """Absolute differences after gain/offset alignment, symmetric and aware of clipping.

    Without saturation the residual of y predicted from x, divided by the
    square root of the gain, equals that of x predicted from y, multiplied by
    it. Rows where a cell is near 0 or 255 in either image also predict each
    image from the other with the prediction clipped to [0, 255] and take the
    smaller residual, so a cell saturated in both (a white truck, a lit sign)
    does not count as changed when the exposure differs.
    """
    root = np.sqrt(gain)
    residual = x - mean_x
    residual *= gain
    residual += mean_y
    residual -= y
    np.abs(residual, out=residual)
    residual /= root
    extreme = (
        (x.max(axis=1) >= SATURATED)
        | (y.max(axis=1) >= SATURATED)
        | (x.min(axis=1) <= 255 - SATURATED)
        | (y.min(axis=1) <= 255 - SATURATED)
    )
    if np.any(extreme):
        x, y, mean_x, mean_y, gain, root = (
            value[extreme] for value in (x, y, mean_x, mean_y, gain, root)
        )
        predicted_y = np.clip(mean_y + gain * (x - mean_x), 0.0, 255.0)
        predicted_y -= y
        np.abs(predicted_y, out=predicted_y)
        predicted_y /= root
        predicted_x = np.clip(mean_x + (y - mean_y) / gain, 0.0, 255.0)
        predicted_x -= x
        np.abs(predicted_x, out=predicted_x)
        predicted_x *= root
        residual[extreme] = np.minimum(predicted_y, predicted_x, out=predicted_y)
    return residual


def _as_signatures(signature_rows):
    array = np.ascontiguousarray(np.asarray(signature_rows, dtype=np.uint8))
    if array.ndim == 1 and array.size == 0:
        array = array.reshape(0, CELLS)
    if array.ndim != 2 or array.shape[1] != CELLS:
        raise ValueError(f"signatures must be (n, {CELLS}) uint8, got shape {array.shape}")
    return array


def _labels_from_roots(roots):
    labels = np.empty(len(roots), dtype=np.int64)
    numbering = {}
    for index, root in enumerate(roots):
        labels[index] = numbering.setdefault(root, len(numbering))
    return labels


def _find_root(parent, index):
    while parent[index] != index:
        parent[index] = parent[parent[index]]
        index = parent[index]
    return index


def _temporal_pairs(distinct, sources, times):
    if sources is None or len(distinct) < 2:
        return np.zeros((0, 2), dtype=np.int64)
    sources = np.asarray([str(value) for value in sources], dtype=object)[distinct]
    order_key = (
        np.asarray(times, dtype=np.float64)[distinct]
        if times is not None
        else distinct.astype(np.float64)
    )
    _, source_codes = np.unique(sources.astype(str), return_inverse=True)
    order = np.lexsort((distinct, order_key, source_codes))
    ordered, codes = distinct[order], source_codes[order]
    pairs = []
    for step in range(1, TEMPORAL_WINDOW + 1):
        same = codes[step:] == codes[:-step]
        pairs.append(np.stack([ordered[:-step][same], ordered[step:][same]], axis=1))
    return np.concatenate(pairs) if pairs else np.zeros((0, 2), dtype=np.int64)


def _band_pairs(search, distinct, hashes):
    """Multi-index hashing: pairs sharing a band; oversized buckets go through leaders."""
    pairs = []
    band_bits = 64 // HASH_BANDS
    mask = np.uint64((1 << band_bits) - 1)
    values = hashes[distinct]
    oversized = 0
    for band in range(HASH_BANDS):
        keys = (values >> np.uint64(band * band_bits)) & mask
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        bounds = np.flatnonzero(np.diff(sorted_keys)) + 1
        for bucket in np.split(distinct[order], bounds):
            size = len(bucket)
            if size < 2:
                continue
            if size <= BUCKET_LIMIT:
                first, second = np.triu_indices(size, k=1)
                pairs.append(np.stack([bucket[first], bucket[second]], axis=1))
            else:
                oversized += size
                _leader_pass(search, np.sort(bucket))
    search.candidates["hash_leaders"] = oversized
    return np.concatenate(pairs) if pairs else np.zeros((0, 2), dtype=np.int64)


def _leader_pass(search, members):
    """Groups an oversized bucket around at most :data:`LEADERS` leaders.

    The first member is a leader; every other member is compared with it in
    one batch, those within the threshold join it, and the first of the rest
    becomes the next leader. A bucket of m images costs at most
    m x :data:`LEADERS` comparisons (m for a black feed, which has one
    leader); members left over are for the other strategies to pair.
    """
    remaining = members
    count = len(search.parent)
    for _ in range(LEADERS):
        if len(remaining) < 2:
            return
        leader, remaining = remaining[0], remaining[1:]
        if not search.keep_all_pairs:
            root = search.find(int(leader))
            apart = np.fromiter(
                (search.find(member) != root for member in remaining.tolist()),
                dtype=bool,
                count=len(remaining),
            )
            remaining = remaining[apart]
        keys = np.minimum(remaining, leader) * count + np.maximum(remaining, leader)
        fresh = np.fromiter(
            (key not in search.compared for key in keys.tolist()), dtype=bool, count=len(keys)
        )
        search.compared.update(keys[fresh].tolist())
        distances = np.full(len(remaining), CELLS + 1, dtype=np.int64)
        for start in range(0, len(remaining), BATCH_PAIRS):
            chunk = np.flatnonzero(fresh[start : start + BATCH_PAIRS]) + start
            others = remaining[chunk]
            distances[chunk] = search.verify_now(np.full(len(others), leader), others)
        remaining = remaining[distances > search.leader_threshold]


def _projection_pairs(signature_rows, distinct):
    if len(distinct) < 2:
        return np.zeros((0, 2), dtype=np.int64)
    generator = np.random.default_rng(20240611)
    directions = generator.standard_normal((CELLS, PROJECTIONS)).astype(np.float32)
    directions /= np.linalg.norm(directions, axis=0, keepdims=True)
    rows = signature_rows[distinct].astype(np.float32)
    rows -= rows.mean(axis=1, keepdims=True)
    projected = rows @ directions
    pairs = []
    for column in range(PROJECTIONS):
        ordered = distinct[np.argsort(projected[:, column], kind="stable")]
        for step in range(1, min(PROJECTION_WINDOW, len(ordered) - 1) + 1):
            pairs.append(np.stack([ordered[:-step], ordered[step:]], axis=1))
    return np.concatenate(pairs)


def _detector_name(detector):
    if detector is None:
        return None
    named = getattr(detector, "fingerprint", None)
    if named:
        return str(named)
    kind = detector if hasattr(detector, "__qualname__") else type(detector)
    return f"{getattr(kind, '__module__', '?')}.{getattr(kind, '__qualname__', repr(kind))}"


def _collect(inputs):
    """Lists the input images: (input descriptions, one record per image)."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    inputs = list(inputs)
    if not inputs:
        raise ValueError("no inputs given")
    described, records, seen = [], [], set()
    loose_index = None
    for raw in inputs:
        path = Path(raw).expanduser().resolve()
        if not path.exists():
            raise FileNotFoundError(f"input {raw} does not exist")
        if path.is_file():
            if loose_index is None:
                loose_index = len(described)
                described.append({"path": None, "kind": "files", "images": 0})
            entries = [_file_record(path, path.name, path.parent.name, loose_index)]
        elif (path / "manifest.json").is_file():
            described.append({"path": str(path), "kind": "frames", "images": 0})
            entries = _frames_records(path, len(described) - 1)
        else:
            described.append({"path": str(path), "kind": "images", "images": 0})
            entries = _folder_records(path, len(described) - 1)
        for entry in entries:
            if entry["path"] in seen:
                logger.info("%s is listed twice; curating it once", entry["path"])
                continue
            seen.add(entry["path"])
            described[entry["input"]]["images"] += 1
            records.append(entry)
    return described, records


def _file_record(path, relative, source_id, input_index):
    return {
        "path": str(path),
        "image": relative,
        "input": input_index,
        "source_id": source_id,
        "time": None,
        "frame_index": None,
        "width": None,
        "height": None,
        "sharpness": None,
        "sha256": None,
        "signature": None,
        "dhash": None,
    }


def _folder_records(folder, input_index):
    records = []
    files = sorted(
        item
        for item in folder.rglob("*")
        if item.suffix.lower() in IMAGE_SUFFIXES
        and item.is_file()
        and not any(part.startswith(".") for part in item.relative_to(folder).parts)
    )
    for item in files:
        relative = item.relative_to(folder)
        parent = relative.parent.as_posix()
        source_id = folder.name if parent == "." else f"{folder.name}/{parent}"
        records.append(_file_record(item, relative.as_posix(), source_id, input_index))
    return records


def _frames_records(folder, input_index):
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    frames = manifest.get("frames")
    if not isinstance(frames, list):
        raise ValueError(f"{folder / 'manifest.json'}: no 'frames' list")
    cached = None
    signature_file = folder / "signatures.npy"
    if signature_file.is_file():
        cached = np.load(signature_file, allow_pickle=False)
        if cached.dtype != np.uint8 or cached.shape != (len(frames), CELLS):
            logger.warning(
                "%s has shape %s, expected (%d, %d); signatures will be recomputed",
                signature_file,
                cached.shape,
                len(frames),
                CELLS,
            )
            cached = None
    records = []
    for index, frame in enumerate(frames):
        if "image" not in frame:
            raise ValueError(f"{folder / 'manifest.json'}: frame {index} has no 'image'")
        record = _file_record(
            (folder / frame["image"]).resolve(),
            frame["image"],
            frame.get("source_id") or folder.name,
            input_index,
        )
        record.update(
            time=frame.get("time"),
            frame_index=frame.get("frame_index"),
            width=frame.get("width"),
            height=frame.get("height"),
            sha256=frame.get("sha256"),
        )
        if cached is not None:
            record["signature"] = cached[index]
            record["sharpness"] = frame.get("sharpness")
            dhash = frame.get("dhash")
            record["dhash"] = int(dhash, 16) if isinstance(dhash, str) and dhash else None
        records.append(record)
    return records


def _fingerprint(parameters, described, records):
    digest = hashlib.sha256()
    settings = {
        "version": FORMAT_VERSION,
        "parameters": parameters,
        "algorithm": [NOISE_FLOOR, NOISE_SIGMAS, NOISE_CEILING, EMPTY_FLOOR, BLANK_STD],
        "signature": [signatures.THUMBNAIL_SIZE, signatures.SHARPNESS_WIDTH],
    }
    digest.update(json.dumps(settings).encode())
    for item in described:
        if item["kind"] != "frames":
            continue
        for name in ("manifest.json", "signatures.npy"):
            path = Path(item["path"]) / name
            digest.update(f"{path}\0{_stat_key(path)}\n".encode())
    for record in records:
        digest.update(f"{record['path']}\0{_stat_key(Path(record['path']))}\n".encode())
    return digest.hexdigest()


def _stat_key(path):
    try:
        status = path.stat()
    except OSError:
        return "missing"
    return f"{status.st_size}:{status.st_mtime_ns}"


def _load_previous(out_dir):
    if not (out_dir / CURATED_NAME).is_file() or not (out_dir / KEPT_NAME).is_file():
        return None
    try:
        return json.loads((out_dir / CURATED_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _read_cache(out_dir):
    """Loads the per-file cache: {path: entry with ``stat``, ``sha256``, ``signature`` or ``problem``}."""
    index_path = out_dir / CACHE_DIR / "index.json"
    signature_path = out_dir / CACHE_DIR / "signatures.npy"
    if not index_path.is_file() or not signature_path.is_file():
        return {}
    try:
        entries = json.loads(index_path.read_text(encoding="utf-8"))["entries"]
        rows = np.load(signature_path, allow_pickle=False)
    except (OSError, ValueError, KeyError):
        return {}
    if rows.ndim != 2 or rows.shape[1] != CELLS:
        return {}
    cache = {}
    for entry in entries:
        row = entry.get("row")
        if row is not None and not 0 <= row < len(rows):
            return {}
        cache[entry["path"]] = dict(entry, signature=None if row is None else rows[row])
    return cache


def _write_cache(out_dir, records):
    """Saves content hashes, signatures and problems so a rerun with new parameters reads no image."""
    entries, rows = [], []
    for record in records:
        entry = {
            "path": record["path"],
            "stat": record["stat"],
            "sha256": record["sha256"],
            "sharpness": record["sharpness"],
            "width": record["width"],
            "height": record["height"],
            "row": None,
        }
        if record["signature"] is not None:
            entry["row"] = len(rows)
            rows.append(record["signature"])
        else:
            entry["problem"] = record.get("problem")
        entries.append(entry)
    stacked = np.stack(rows) if rows else np.zeros((0, CELLS), dtype=np.uint8)
    atomic.atomic_write_bytes(out_dir / CACHE_DIR / "signatures.npy", _npy_bytes(stacked))
    atomic.atomic_write_json(out_dir / CACHE_DIR / "index.json", {"entries": entries})


def _npy_bytes(array):
    stream = io.BytesIO()
    np.save(stream, array, allow_pickle=False)
    return stream.getvalue()


def _scan(records, out_dir, workers, progress):
    """Fills in content hashes, signatures and sharpness; returns the problem lines."""
    cache = _read_cache(out_dir)
    pending = []
    problems = []
    for record in records:
        record["stat"] = _stat_key(Path(record["path"]))
        if record["stat"] == "missing":
            _record_problem(record, "file missing", problems)
            continue
        known = cache.get(record["path"])
        if known is not None and known.get("stat") == record["stat"]:
            if known["signature"] is None and record["signature"] is None:
                _record_problem(record, known.get("problem") or "unreadable", problems)
                continue
            record["sha256"] = record["sha256"] or known["sha256"]
            if record["signature"] is None:
                record.update(
                    signature=known["signature"],
                    sharpness=known["sharpness"],
                    width=record["width"] or known["width"],
                    height=record["height"] or known["height"],
                )
        if record["signature"] is None:
            pending.append(record)
    if pending:
        workers = workers or min(8, os.cpu_count() or 1)
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, int(workers))) as pool:
            outcomes = pool.map(_scan_file, pending)
            for record, outcome in tqdm(
                zip(pending, outcomes, strict=True),
                total=len(pending),
                desc="hashing and reading images",
                unit="image",
                disable=not progress,
            ):
                if isinstance(outcome, str):
                    _record_problem(record, outcome, problems)
                    continue
                record["sha256"] = record["sha256"] or outcome["sha256"]
                if record["signature"] is None:
                    record.update(
                        signature=outcome["signature"],
                        sharpness=outcome["sharpness"],
                        width=outcome["width"],
                        height=outcome["height"],
                    )
    _hash_lookalikes(records, workers, progress, problems)
    for record in records:
        if record["signature"] is not None and record["dhash"] is None:
            record["dhash"] = signatures.difference_hash(record["signature"])
    return problems


def _hash_lookalikes(records, workers, progress, problems):
    """Hashes the files that could be exact duplicates of another: same size and same signature.

    Byte-identical files have the same size and, decoded by the same code,
    the same signature, so files unique in (size, signature) need no hash;
    frames whose signatures stage 01 cached are then never read at all.
    """
    lookalikes = collections.defaultdict(list)
    for record in records:
        if record["signature"] is not None and record["sha256"] is None:
            size = record["stat"].split(":")[0]
            lookalikes[(size, record["signature"].tobytes())].append(record)
    pending = [record for group in lookalikes.values() if len(group) > 1 for record in group]
    if not pending:
        return
    workers = workers or min(8, os.cpu_count() or 1)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, int(workers))) as pool:
        digests = pool.map(_hash_file, [record["path"] for record in pending])
        for record, digest in tqdm(
            zip(pending, digests, strict=True),
            total=len(pending),
            desc="hashing look-alike files",
            unit="file",
            disable=not progress,
        ):
            if isinstance(digest, OSError):
                _record_problem(record, str(digest), problems)
            else:
                record["sha256"] = digest


def _hash_file(path):
    try:
        return metadata.sha256_file(path)
    except OSError as error:
        return OSError(f"cannot read: {error.strerror or error}")


def _record_problem(record, message, problems):
    record["signature"] = None
    record["problem"] = message
    problems.append(f"{record['path']}: {message}")
    logger.warning("%s: %s (left out of curation)", record["path"], message)


def _scan_file(record):
    """Hashes a file's bytes and, where needed, decodes it; returns a dict or a problem string."""
    path = Path(record["path"])
    try:
        data = path.read_bytes()
    except OSError as error:
        return f"cannot read: {error.strerror or error}"
    outcome = {"sha256": hashlib.sha256(data).hexdigest()}
    if not data:
        return "empty file"
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
    if image is None or image.size == 0:
        return "cannot decode: not an image or corrupt"
    outcome.update(
        signature=signatures.compute_signature(image),
        sharpness=signatures.sharpness(image),
        width=int(image.shape[1]),
        height=int(image.shape[0]),
    )
    return outcome


def _group_duplicates(records, readable, threshold, progress):
    """Exact pass by content hash, then near pass on the exact representatives."""
    for record in records:
        record.update(reason=None, representative=None, group=None, group_size=None, distance=None)
        if record["signature"] is None:
            record["reason"] = "unreadable"
    first_by_hash = {}
    exact_of = {}
    distinct = []
    for position, record in enumerate(readable):
        key = (
            record["sha256"] or record["path"]
        )  # no hash: no other file has its size and signature
        if key in first_by_hash:
            exact_of[position] = first_by_hash[key]
        else:
            first_by_hash[key] = position
            distinct.append(position)
    if not distinct:
        return {"distinct_images": 0, "candidates": {}, "comparisons": 0, "all_pairs": 0}
    rows = np.stack([readable[position]["signature"] for position in distinct])
    found = find_duplicates(
        rows,
        hashes=[readable[position]["dhash"] for position in distinct],
        threshold=threshold,
        sources=[readable[position]["source_id"] for position in distinct],
        times=[_order_value(readable[position], position) for position in distinct],
        progress=progress,
    )
    search_stats = {
        "distinct_images": len(distinct),
        "candidates": found.candidates,
        "comparisons": found.comparisons,
        "all_pairs": len(distinct) * (len(distinct) - 1) // 2,
    }
    members = collections.defaultdict(list)
    for label, position in zip(found.labels.tolist(), distinct, strict=True):
        members[label].append(position)
    group_of = {}
    representative_of_group = {}
    for label, positions in members.items():
        best = max(positions, key=lambda position: (_sharpness(readable[position]), -position))
        representative_of_group[label] = best
        for position in positions:
            group_of[position] = label
    for position, original in exact_of.items():
        group_of[position] = group_of[original]
    sizes = collections.Counter(group_of.values())
    # Number groups in input order of their kept image.
    numbering = {}
    for label in sorted(representative_of_group, key=lambda label: representative_of_group[label]):
        numbering[label] = len(numbering)
    for position, record in enumerate(readable):
        label = group_of[position]
        best = representative_of_group[label]
        record["group"] = numbering[label]
        record["group_size"] = sizes[label]
        if position == best:
            continue
        record["representative"] = readable[best]["path"]
        if (
            position in exact_of
            and readable[exact_of[position]]["sha256"] == readable[best]["sha256"]
        ):
            record["reason"] = "exact_duplicate"
            record["distance"] = 0
        elif position in exact_of:
            record["reason"] = "exact_duplicate"
            record["distance"] = signature_distance(
                record["signature"], readable[best]["signature"]
            )
        else:
            record["reason"] = "near_duplicate"
            record["distance"] = signature_distance(
                record["signature"], readable[best]["signature"]
            )
    return search_stats


def _order_value(record, position):
    if isinstance(record.get("time"), (int, float)):
        return float(record["time"])
    if isinstance(record.get("frame_index"), (int, float)):
        return float(record["frame_index"])
    return float(position)


def _sharpness(record):
    value = record.get("sharpness")
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else -1.0


def _mark_empty(records, readable, detector, min_foreground, progress):
    """Marks kept representatives without an object of interest as empty."""
    kept = [record for record in readable if record["reason"] is None]
    if detector is None:
        rows = np.stack([record["signature"] for record in readable])
        empty, foreground = empty_frames(
            rows, [record["source_id"] for record in readable], min_foreground
        )
        flags = {}
        for record, flag, fraction in zip(
            readable, empty.tolist(), foreground.tolist(), strict=True
        ):
            record["foreground"] = None if math.isnan(fraction) else round(fraction, 5)
            flags[record["path"]] = flag
        for record in kept:
            if flags[record["path"]]:
                record["reason"] = "empty"
        return
    for record in tqdm(kept, desc="detecting objects", unit="image", disable=not progress):
        image = cv2.imread(record["path"], cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"{record['path']}: cannot decode for the detector")
        detections = detector(image)
        record["detections"] = len(detections)
        if not detections:
            record["reason"] = "empty"


def _document(parameters, fingerprint, described, records, problems, search_stats, started):
    kept, dropped = [], []
    fields = ("image", "path", "input", "source_id", "time", "frame_index", "width", "height")
    for record in records:
        entry = {name: record.get(name) for name in fields}
        entry["sharpness"] = (
            None if record.get("sharpness") is None else round(float(record["sharpness"]), 3)
        )
        entry["sha256"] = record.get("sha256")
        entry["group"] = record.get("group")
        entry["group_size"] = record.get("group_size")
        for optional in ("foreground", "detections"):
            if optional in record:
                entry[optional] = record[optional]
        if record["reason"] is None:
            kept.append(entry)
            continue
        entry["reason"] = record["reason"]
        entry["representative"] = record.get("representative")
        entry["distance"] = record.get("distance")
        if record.get("problem"):
            entry["message"] = record["problem"]
        dropped.append(entry)
    counts = {"input": len(records), "kept": len(kept)}
    for reason in REASONS:
        counts[reason] = sum(1 for entry in dropped if entry["reason"] == reason)
    finished = datetime.datetime.now(datetime.timezone.utc)
    return {
        "stage": "02_curate",
        "format_version": FORMAT_VERSION,
        "created": finished.isoformat(timespec="seconds"),
        "seconds": round((finished - started).total_seconds(), 3),
        "fingerprint": fingerprint,
        "parameters": parameters,
        "content_hash": "sha256 of the file bytes (null: no other file has the same size and signature)",
        "distance": (
            f"changed cells of the {signatures.THUMBNAIL_SIZE[0]}x{signatures.THUMBNAIL_SIZE[1]} "
            "grey thumbnail after gain and offset alignment"
        ),
        "inputs": described,
        "counts": counts,
        "search": search_stats,
        "kept": kept,
        "dropped": dropped,
        "problems": problems,
    }


def _all_entries(result):
    return sorted(
        [*result["kept"], *result["dropped"]],
        key=lambda entry: (entry.get("input") or 0, entry["path"]),
    )


def _groups_of(result):
    groups = collections.defaultdict(list)
    for entry in result["kept"]:
        groups[entry["group"]].append(entry)
    for entry in result["dropped"]:
        if entry.get("group") is not None:
            groups[entry["group"]].append(entry)
    for members in groups.values():
        members.sort(
            key=lambda entry: (entry.get("reason") is not None, entry.get("distance") or 0)
        )
    return groups


def _read_for_display(entry, frames_dir):
    candidates = [Path(entry["path"])]
    if frames_dir is not None:
        candidates.insert(0, Path(frames_dir) / entry["image"])
    for candidate in candidates:
        if candidate.is_file():
            image = cv2.imread(str(candidate), cv2.IMREAD_COLOR)
            if image is not None:
                return image
    return None


def _result_signatures(result):
    """Signatures, sources and times of the readable images of a result."""
    out_dir = Path(result["out_dir"])
    cache = _read_cache(out_dir)
    if not cache:
        raise FileNotFoundError(f"{out_dir / CACHE_DIR} is missing: rerun curate")
    entries = [
        entry
        for entry in _all_entries(result)
        if entry.get("reason") != "unreadable" and entry["path"] in cache
    ]
    rows = (
        np.stack([cache[entry["path"]]["signature"] for entry in entries])
        if entries
        else np.zeros((0, CELLS), dtype=np.uint8)
    )
    sources = [entry.get("source_id") for entry in entries]
    times = [_order_value(entry, position) for position, entry in enumerate(entries)]
    return rows, sources, times


def _embeddings_for(result, entries):
    cache = _read_cache(Path(result["out_dir"]))
    rows = np.stack([cache[entry["path"]]["signature"] for entry in entries]).astype(np.float32)
    rows -= rows.mean(axis=1, keepdims=True)
    return rows / (255.0 * math.sqrt(CELLS))
