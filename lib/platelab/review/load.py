"""Loading annotation batches for the review: CVAT exports -> :class:`~platelab.review.ReviewImage` objects.

Each batch image gets a stable copy (``data/<workspace>/interim/review/images/<batch>/``),
its source video and time (stage 03's index, or the stage-01 frame name) and
its labels normalised through the alias map; unknown labels keep their
spelling and are listed in the label table.
"""

import os
import re
import shutil
from pathlib import Path

from tqdm.auto import tqdm

from platelab import annotations, paths
from platelab.metadata import sha256_file
from platelab.paths import safe_name
from platelab.review.records import ReviewError, ReviewImage


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
    """Loads annotation batches into :class:`~platelab.review.ReviewImage` objects.

    Each source may be a CVAT "PASCAL VOC 1.1" export (zip or folder) or a
    folder of them (see :func:`platelab.annotate.import_exports`). A source that
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
            :func:`platelab.annotate.load_index`) giving each image's source video,
            vantage, lighting and time by content hash; without it the
            source is read from stage-01 frame names (``<source>_t<ms>``)
        work_dir: where zips are extracted (default: a temporary folder)
        progress: show progress bars

    Returns:
        (images, problems, spellings): the :class:`~platelab.review.ReviewImage` list (batch,
        name order), one-line problems, and a dict spelling -> {"canonical",
        "boxes", "batches"}
    """
    from platelab import annotate

    aliases = aliases or load_aliases()
    lookup = annotations.build_alias_map(aliases)
    if index is not None and not isinstance(index, dict):
        index = annotate.load_index(index)
    by_hash = {entry["sha256"]: entry for entry in (index or {}).get("images", [])}
    sources_info = (index or {}).get("sources", {})
    result = annotate.import_exports(sources, work_dir=work_dir, aliases=aliases, progress=progress)
    problems = list(result.problems)
    images, spellings = [], {}
    for export, record in tqdm(
        list(result.records()), desc="images", disable=not progress, leave=False
    ):
        image = _review_image(export, record, images_dir, by_hash, sources_info, problems)
        if image is None:
            continue
        _add_objects(image, record, lookup, spellings)
        images.append(image)
    for spelled in spellings.values():
        spelled["batches"] = sorted(spelled["batches"])
    images.sort(key=lambda item: (item.batch, item.name))
    if images_dir is not None and work_dir is None:
        shutil.rmtree(result.work_dir, ignore_errors=True)
    return images, problems, spellings


def _review_image(export, record, images_dir, by_hash, sources_info, problems):
    """The :class:`~platelab.review.ReviewImage` of one export record, without its objects; None (and a problem) if it cannot load.

    Args:
        export: the record's export (of :func:`platelab.annotate.import_exports`)
        record: the image's record
        images_dir: where the image gets its stable copy, or None
        by_hash: the task index's image entries by SHA-256
        sources_info: the task index's sources (source id -> vantage, lighting)
        problems: the list the one-line problems are appended to
    """
    batch_name = export.batch.name
    if record.image_path is None and record.problems:
        return None  # already named once by the import ("unreadable image; skipped")
    if record.image_path is None or not Path(record.image_path).is_file():
        problems.append(f"{export.source}: {record.name}: image missing or unreadable; skipped")
        return None
    digest = sha256_file(record.image_path)
    image_path = Path(record.image_path)
    if images_dir is not None:
        try:
            image_path = stage_image(image_path, Path(images_dir) / safe_name(batch_name), digest)
        except OSError as error:
            problems.append(
                f"{record.image_path}: cannot copy to {images_dir} ({error.strerror or error}); skipped"
            )
            return None
    entry = by_hash.get(digest) or {}
    source_id = entry.get("source_id")
    time_seconds = entry.get("time")
    if not entry:
        source_id, time_seconds = _source_from_name(record.name)
    source = sources_info.get(source_id or "", {})
    return ReviewImage(
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


def _add_objects(image, record, lookup, spellings):
    """Gives ``image`` the record's objects (labels normalised through ``lookup``) and counts their spellings.

    Args:
        image: the :class:`~platelab.review.ReviewImage` (its ``objects`` and ``dropped_boxes`` are set)
        record: its export record
        lookup: the alias map (:func:`platelab.annotations.build_alias_map`)
        spellings: spelling -> {"canonical", "boxes", "batches" (a set)}, updated
    """
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
        spelled["batches"].add(image.batch)


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
    from platelab import annotate

    if inputs:
        return [paths.resolve(item) for item in inputs]
    found = [
        folder
        for folder in (annotate.exports_dir(workspace), annotate.user_exports_dir(workspace))
        if folder.is_dir()
    ]
    if not found:
        raise ReviewError(
            f"no annotation batches: neither {annotate.exports_dir(workspace)} nor "
            f"{annotate.user_exports_dir(workspace)} exists (run stage 03 or put CVAT exports there)"
        )
    return found


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


def _source_from_name(name):
    """(source_id, time) from a stage-01 frame name ``<source>_t<milliseconds>``, else (None, None)."""
    match = re.fullmatch(r"(.+)_t(\d{6,})", Path(str(name)).stem)
    if not match:
        return None, None
    return match.group(1), int(match.group(2)) / 1000.0
