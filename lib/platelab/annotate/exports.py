"""Importing CVAT's "PASCAL VOC 1.1" exports, in every form they arrive in.

:func:`import_exports` loads exports (CVAT's zip, the same unzipped, a zip of
just ``Annotations/`` and ``JPEGImages/``, or a folder of several, plus the
user's own from ``raw/annotations/``) with
:func:`platelab.annotations.load_batch`, noting each export's form, task and
label spellings in an :class:`ImportedExport` and turning whatever cannot be
used into one-line problems of the :class:`ImportResult`.
:func:`exports_table` and :func:`gallery` show what came in.
"""

import dataclasses
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from platelab import LABELS, annotations, archives
from platelab.annotate.base import _one_line, user_exports_dir
from platelab.annotate.tasks import task_of
from platelab.atomic import process_temp_dir

logger = logging.getLogger(__name__)

_SIDECAR_SUFFIXES = (".json", ".txt", ".md", ".yaml", ".yml", ".csv")


@dataclasses.dataclass
class ImportedExport:
    """One export as imported.

    Attributes:
        source: the zip or folder it came from
        form: ``zip`` (CVAT's export), ``folder`` (unzipped) or ``zip_two_folders``
        task: the ``task_NNN`` its name points to, if any
        batch: the :class:`platelab.annotations.Batch`
        spellings: label as written -> canonical label (None where unknown)
    """

    source: Path
    form: str
    task: str | None
    batch: annotations.Batch
    spellings: dict


@dataclasses.dataclass
class ImportResult:
    """What :func:`import_exports` found.

    Attributes:
        exports: the :class:`ImportedExport` objects, in source order
        problems: one-line messages (files that could not be used, fixed boxes,
            unknown labels...)
        work_dir: where zips were extracted (delete it when done)
    """

    exports: list
    problems: list
    work_dir: Path

    def records(self):
        """Yields ``(export, record)`` for every image of every export."""
        for export in self.exports:
            for record in export.batch.records:
                yield export, record

    def cleanup(self):
        """Deletes the extracted zips (the records' image paths inside them stop working)."""
        shutil.rmtree(self.work_dir, ignore_errors=True)


def import_exports(sources=(), *, workspace=None, work_dir=None, aliases=None, progress=True):
    """Loads CVAT "PASCAL VOC 1.1" exports in every form.

    Each source may be a zip as CVAT exports it, the same unzipped, a zip of
    just ``Annotations/`` and ``JPEGImages/``, or a folder holding several of
    these. Sources that are not VOC exports (and unreadable zips) become
    one-line problems, as do the unsafe or broken members and items inside an
    export (each named once; see :func:`platelab.annotations.load_batch`),
    and links in a folder of exports that lead outside it; the rest goes on.
    Inputs are only read.

    Args:
        sources: a path or a list of paths
        workspace: when given, ``data/<workspace>/raw/annotations/`` (the
            user's own exports) is imported too, where present
        work_dir: where zips are extracted (a new temporary folder inside it;
            default: a new temporary folder, removed when the process exits or by
            :meth:`ImportResult.cleanup`)
        aliases: canonical label -> spellings (default
            :data:`platelab.annotations.DEFAULT_ALIASES`)
        progress: show a progress bar

    Returns:
        an :class:`ImportResult`
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    sources = [Path(source) for source in sources]
    if workspace is not None:
        user_folder = user_exports_dir(workspace)
        if user_folder.is_dir() and user_folder not in sources:
            sources.append(user_folder)
    if work_dir is not None:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
    extraction_root = (
        Path(tempfile.mkdtemp(prefix="platelab-import-", dir=work_dir))
        if work_dir is not None
        else process_temp_dir("platelab-import-")
    )
    lookup = annotations.build_alias_map(aliases)
    problems, candidates = [], []
    for source in sources:
        candidates.extend(_export_candidates(source, problems))
    exports = []
    for number, candidate in enumerate(tqdm(candidates, desc="exports", disable=not progress)):
        try:
            batch = annotations.load_batch(candidate, work_dir=extraction_root / f"{number:03d}")
        except (annotations.AnnotationError, archives.ArchiveError) as error:
            problems.append(_not_voc_message(candidate, error))
            continue
        form = _detect_form(candidate, batch)
        spellings = {}
        for record in batch.records:
            for item in record.objects:
                spellings.setdefault(
                    item["label"], annotations.normalize_label(item["label"], lookup)
                )
        for label in batch.labels:
            spellings.setdefault(label, annotations.normalize_label(label, lookup))
        for label, canonical in spellings.items():
            if canonical is None:
                problems.append(
                    f"{candidate}: label '{label}' is not a known spelling of {' or '.join(LABELS)}"
                )
        found = list(batch.problems)
        for record in batch.records:
            found.extend(record.problems)
        problems.extend(_inside_source(found, candidate, extraction_root / f"{number:03d}"))
        exports.append(ImportedExport(candidate, form, task_of(candidate.name), batch, spellings))
    logger.info(
        "imported %d export(s), %d images, %d problem(s)",
        len(exports),
        sum(len(export.batch.records) for export in exports),
        len(problems),
    )
    return ImportResult(exports, problems, extraction_root)


def exports_table(result, manifest=None):
    """Summarises imported exports: one row per export.

    Args:
        result: an :class:`ImportResult`
        manifest: optionally the simulated exports' document
            (:func:`platelab.synth.annotator.load_exports_manifest`), adding batch and frame naming

    Returns:
        a pandas DataFrame indexed by export name: ``task``, ``form``,
        ``batch``, ``frame names``, ``images``, ``negatives``, one column per
        canonical label (boxes), ``spellings`` (as written) and ``problems``
    """
    import pandas as pd

    simulated = {item["export"]: item for item in (manifest or {}).get("exports", [])}
    rows = []
    for export in result.exports:
        counts = {label: 0 for label in LABELS}
        written = {}
        for record in export.batch.records:
            for item in record.objects:
                canonical = export.spellings.get(item["label"])
                written[item["label"]] = written.get(item["label"], 0) + 1
                if canonical in counts:
                    counts[canonical] += 1
        extra = simulated.get(export.source.name, {})
        problems = len(export.batch.problems) + sum(
            len(record.problems) for record in export.batch.records
        )
        rows.append(
            {
                "export": export.source.name,
                "task": export.task,
                "form": export.form,
                "batch": extra.get("batch"),
                "frame names": extra.get("frame_names"),
                "images": len(export.batch.records),
                "negatives": sum(not record.objects for record in export.batch.records),
                **counts,
                "spellings": ", ".join(f"{label} ({count})" for label, count in written.items()),
                "problems": problems,
            }
        )
    columns = ["export", "task", "form", "batch", "frame names", "images", "negatives", *LABELS]
    columns += ["spellings", "problems"]
    return pd.DataFrame(rows, columns=columns).set_index("export")


def gallery(result, count=6, seed=0):
    """Draws a few imported images with their boxes as exported.

    Picks, round-robin over the exports, the images with the most boxes;
    boxes are coloured by canonical label and titled with the spellings.

    Args:
        result: an :class:`ImportResult`
        count: how many images
        seed: breaks ties between equally busy images

    Returns:
        (images, titles): BGR images with boxes drawn, and a title for each
    """
    import cv2

    from platelab import visualize

    rng = np.random.default_rng(seed)
    queues = []
    for export in result.exports:
        records = [
            record for record in export.batch.records if record.image_path and record.objects
        ]
        order = sorted(records, key=lambda record: (-len(record.objects), rng.random()))
        queues.append([(export, record) for record in order])
    picked = []
    while len(picked) < count and any(queues):
        for queue in queues:
            if queue and len(picked) < count:
                picked.append(queue.pop(0))
    images, titles = [], []
    for export, record in picked:
        image = cv2.imread(str(record.image_path), cv2.IMREAD_COLOR)
        if image is None:
            continue
        drawn = [
            dict(item, label=export.spellings.get(item["label"]) or item["label"])
            for item in record.objects
        ]
        images.append(visualize.draw_objects(image, drawn, thickness=1, show_labels=False))
        spelled = sorted({item["label"] for item in record.objects})
        titles.append(
            f"{export.source.name} · {record.name} · {len(record.objects)} boxes "
            f"({', '.join(spelled)})"
        )
    return images, titles


# --------------------------------------------------------------------------- private helpers


def _export_candidates(source, problems):
    """Expands a source into the exports it holds (itself, or the exports in a folder of several)."""
    if not source.exists():
        problems.append(f"{source}: not found")
        return []
    if source.is_file():
        if source.suffix.lower() == ".zip":
            return [source]
        problems.append(f"{source}: not a .zip or a folder; skipped")
        return []
    if (source / "Annotations").is_dir() or (source / "JPEGImages").is_dir():
        return [source]
    candidates = []
    for child in sorted(source.iterdir()):
        if child.name.startswith((".", "__MACOSX")):
            continue
        if child.is_symlink() and not child.resolve().is_relative_to(source.resolve()):
            problems.append(f"{child}: a link to {child.resolve()}, outside {source}; skipped")
            continue
        if child.is_dir() or child.suffix.lower() == ".zip":
            candidates.append(child)
        elif child.suffix.lower() in _SIDECAR_SUFFIXES:
            logger.debug("%s: a sidecar file, not an export", child)
        else:
            problems.append(f"{child}: not a .zip or a folder (not a VOC export); skipped")
    if not candidates:
        problems.append(f"{source}: holds no VOC export (no Annotations/ or JPEGImages/, no zips)")
    return candidates


def _not_voc_message(candidate, error):
    message = _one_line(error)
    if str(candidate) not in message:
        message = f"{candidate}: {message}"
    if "not a VOC export" not in message and isinstance(error, annotations.AnnotationError):
        message += " (not a VOC export)"
    return message + "; skipped"


def _inside_source(messages, candidate, scratch):
    """Names files extracted from a zip as ``<zip>/<member>`` rather than by their scratch path."""
    if candidate.is_dir() or not scratch.is_dir():
        return list(messages)
    extracted = [str(child) for child in scratch.iterdir()]
    named = []
    for message in messages:
        for folder in extracted:
            message = message.replace(folder, str(candidate))
        named.append(message)
    return named


def _detect_form(candidate, batch):
    if candidate.is_dir():
        return "folder"
    if (batch.root / "labelmap.txt").is_file() or (batch.root / "ImageSets").is_dir():
        return "zip"
    return "zip_two_folders"
