"""Stage 03 (annotate): exchanging images and annotations with CVAT.

Curated frames go to CVAT in tasks of a few dozen images, annotators draw
boxes (optionally correcting a detector's pre-annotations), and each task
comes back as a "PASCAL VOC 1.1" export, with label spellings that drift
from batch to batch.

* :func:`export_tasks` cuts stage 02's kept images into task batches:
  ``tasks/task_NNN/`` with the images (hard links or copies), a zip to upload
  when creating the CVAT task, ``labels.json`` (CVAT's label-constructor
  format, the fixed label set :data:`LABEL_SET`) and, given a detector's
  predictions, pre-annotations as a CVAT-importable VOC zip;
  ``tasks/index.json`` maps every task image back to its source.
* :func:`write_voc` writes CVAT's exact "PASCAL VOC 1.1" layout in the three
  forms met in practice (:data:`EXPORT_FORMS`).
* :func:`simulate_annotator` plays the annotator on synthetic data: stage 00's
  ground truth for each task's frames, exported in rotating forms with label
  drift, CVAT's ``frame_NNNNNN`` renaming and, optionally, a known set of
  injected mistakes (``mistakes.json``) for stage 04 to find.
* :func:`import_exports` loads exports in every form (and the user's own,
  from ``data/<workspace>/raw/annotations/``) with
  :func:`platelab.annotations.load_batch`, collecting one-line problems.
* :func:`upload_tasks` / :func:`download_annotations` talk to a real CVAT
  server through FiftyOne's CVAT annotation backend, when a URL is given.

On-disk layout (``data/<workspace>/interim/cvat/``)::

    tasks/index.json                      every task image -> its source (see export_tasks)
    tasks/labels.json                     the label set, CVAT label-constructor JSON
    tasks/task_NNN/images/<name>.png      the task's images (hard links or copies)
    tasks/task_NNN/task_NNN_images.zip    upload this when creating the CVAT task
    tasks/task_NNN/labels.json            the same label set (paste into "Raw")
    tasks/task_NNN/task_NNN_preannotations_voc.zip   optional: "Upload annotations", PASCAL VOC 1.1
    exports/task_NNN_voc.zip | task_NNN_voc/          one simulated export per task
    exports/exports.json                  what each export holds (form, batch, spellings...)
    exports/mistakes.json                 the injected mistakes (task, image, kind, boxes)
    downloads/task_NNN_voc/               annotations downloaded from a CVAT server
"""

import contextlib
import copy
import dataclasses
import json
import logging
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
from tqdm.auto import tqdm

from platelab import LABELS, annotations, archives, paths, visualize
from platelab import boxes as boxes_lib
from platelab.atomic import atomic_dir, atomic_write_json
from platelab.exceptions import PlatelabError
from platelab.metadata import sha256_file

logger = logging.getLogger(__name__)

INDEX_FORMAT = "platelab.cvat.tasks/1"
EXPORTS_FORMAT = "platelab.cvat.exports/1"
MISTAKES_FORMAT = "platelab.cvat.mistakes/1"
INDEX_NAME = "index.json"
LABELS_NAME = "labels.json"
EXPORTS_NAME = "exports.json"
MISTAKES_NAME = "mistakes.json"
DEFAULT_BATCH_SIZE = 50

EXPORT_FORMS = ("zip", "folder", "zip_two_folders")
"""The forms an export arrives in: CVAT's zip as exported, the same unzipped,
and a zip of just ``Annotations/`` and ``JPEGImages/`` (how other sources re-zip it)."""

LABEL_COLORS = {"vehicle": "#33ddff", "license_plate": "#fa3253"}
"""CVAT label colours (``license_plate``'s is the one in the real exports' labelmap)."""
FALLBACK_COLORS = ("#34d1b7", "#ff007c", "#ddff33", "#24b353", "#b83df5", "#66ff66", "#32b7fa")

_FLAG_ATTRIBUTES = [
    {
        "name": "difficult",
        "mutable": False,
        "input_type": "checkbox",
        "default_value": "false",
        "values": ["false"],
    },
    {
        "name": "truncated",
        "mutable": False,
        "input_type": "checkbox",
        "default_value": "false",
        "values": ["false"],
    },
]
LABEL_SET = [
    {
        "name": "vehicle",
        "color": LABEL_COLORS["vehicle"],
        "type": "rectangle",
        "attributes": [
            {
                "name": "type",
                "mutable": False,
                "input_type": "select",
                "default_value": "sedan",
                "values": ["sedan", "truck", "bus"],
            },
            *_FLAG_ATTRIBUTES,
        ],
    },
    {
        "name": "license_plate",
        "color": LABEL_COLORS["license_plate"],
        "type": "rectangle",
        "attributes": [
            {
                "name": "text",
                "mutable": False,
                "input_type": "text",
                "default_value": "",
                "values": [""],
            },
            *_FLAG_ATTRIBUTES,
        ],
    },
]
"""The fixed label set in CVAT's label-constructor ("Raw") JSON. ``difficult``
and ``truncated`` are checkbox attributes because CVAT's VOC export writes
those two elements from attributes of those names; ``occluded`` is CVAT's own
shape flag."""

DRIFT_SPELLINGS = (
    {"vehicle": "car", "license_plate": "license plate"},
    {"vehicle": "vehicles", "license_plate": "license_plates"},
    {"vehicle": "vehicle", "license_plate": "license_plate"},
)
"""Label spellings of successive simulated batches: the drift the alias map must undo."""

MISTAKE_KINDS = ("missing", "shifted", "wrong_label", "duplicate")
OCCLUDED_FLAG = 0.2
"""A simulated annotator ticks "occluded" when at least this fraction of an object is hidden."""
TRUNCATED_FLAG = 0.05
"""... and writes ``<truncated>1`` when at least this fraction is cut by the frame edge."""
SHIFT_RANGE = (0.3, 0.6)
"""A shifted box moves by this fraction of its width and of its height (IoU with the truth <= 0.35)."""

DUPLICATE_JITTER = 0.05
"""A duplicate box's edges move by up to this fraction of the box's size (at most 1 pixel)."""

_ZIP_DATE = (2024, 1, 1, 0, 0, 0)
_ZIP_MODE = 0o600 << 16  # as in CVAT's exports
_SIDECAR_SUFFIXES = (".json", ".txt", ".md", ".yaml", ".yml", ".csv")
_TASK_PATTERN = re.compile(r"(task_\d{3,})")


class CvatError(PlatelabError, ValueError):
    """A problem that stops an exchange with CVAT (one-line message naming the file or URL)."""


@dataclasses.dataclass
class VocImage:
    """One image of a VOC export as written.

    Attributes:
        name: the stem, unique in the export (``Annotations/<name>.xml``)
        image_path: the image file, copied to ``JPEGImages/<name><suffix>``
        width: image width in pixels
        height: image height in pixels
        objects: dicts with ``label`` (as written), ``bbox`` ([xmin, ymin,
            xmax, ymax] pixels, floats or ints), optionally ``difficult``,
            ``truncated``, ``occluded`` (bools or 0/1) and ``attributes`` (a dict)
    """

    name: str
    image_path: Path
    width: int
    height: int
    objects: list = dataclasses.field(default_factory=list)

    @property
    def file_name(self):
        """The image's file name in the export (the name plus the source file's suffix)."""
        return f"{self.name}{Path(self.image_path).suffix}"


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


# --------------------------------------------------------------------------- folders


def cvat_dir(workspace):
    """Returns ``data/<workspace>/interim/cvat``."""
    return paths.interim_dir(workspace) / "cvat"


def tasks_dir(workspace):
    """Returns ``data/<workspace>/interim/cvat/tasks``."""
    return cvat_dir(workspace) / "tasks"


def exports_dir(workspace):
    """Returns ``data/<workspace>/interim/cvat/exports`` (the simulated annotator's exports)."""
    return cvat_dir(workspace) / "exports"


def downloads_dir(workspace):
    """Returns ``data/<workspace>/interim/cvat/downloads`` (annotations fetched from a server)."""
    return cvat_dir(workspace) / "downloads"


def user_exports_dir(workspace):
    """Returns ``data/<workspace>/raw/annotations``: put your own CVAT exports here."""
    return paths.raw_dir(workspace) / "annotations"


# --------------------------------------------------------------------------- task batches


def export_tasks(
    curated,
    out_dir,
    *,
    batch_size=DEFAULT_BATCH_SIZE,
    synthetic_dir=None,
    predictions=None,
    min_score=0.5,
    link_images=True,
    progress=True,
):
    """Cuts the curated images into CVAT task batches.

    Images keep their file names (names that clash within a task get a
    ``_2``, ``_3`` suffix) and stage 02's order, so a task holds consecutive
    frames of one or two videos. A curated image that vanished or cannot be
    read is left out with a one-line problem; the rest goes on. The folder is
    built beside ``out_dir`` and renamed into place.

    Args:
        curated: stage 02's result (the dict of :func:`platelab.curate.load_result`),
            its folder, or its ``curated.json``
        out_dir: the tasks folder to write (``interim/cvat/tasks``)
        batch_size: images per task
        synthetic_dir: stage 00's folder (``raw/synthetic``), for each frame's
            vantage point, lighting and ground truth; found from the frames'
            source videos when None
        predictions: optional pre-annotations: a list of dicts ``{"image",
            "label", "score", "bbox"}`` (``image``: the curated image's path,
            its path relative to the frames folder, or its file name; ``bbox``:
            [xmin, ymin, xmax, ymax] pixels; labels in any known spelling), or a
            callable ``predictions(image_bgr) -> [{"label", "score", "bbox"}]``
        min_score: predictions scoring lower are not pre-annotated
        link_images: hard-link the task images to the curated frames (falls
            back to copying across file systems); False copies

    Returns:
        the index (also written to ``out_dir/index.json``): ``format``,
        ``batch_size``, ``labels``, ``curated`` (its path and fingerprint),
        ``sources`` (source_id -> kind, media, vantage, lighting,
        ground_truth), ``tasks`` (per task: ``task``, ``images``, ``folder``,
        ``zip``, ``labels``, ``preannotations``, ``preannotated_boxes``) and
        ``images`` (per image: ``task``, ``position`` (frame number in the
        task), ``name`` (file name as uploaded), ``cvat_frame`` (CVAT's
        ``frame_NNNNNN`` name for it), ``source_id``, ``kind`` (frame|photo),
        ``vantage``, ``lighting``, ``time``, ``frame_index``, ``sha256``,
        ``original`` (path relative to its frames folder), ``path``
        (the curated file), ``width``, ``height``); plus ``problems``
        (one-line messages, also written)

    Raises:
        CvatError: for a missing curated list, a bad batch size or an
            output folder that cannot be written
    """
    batch_size = int(batch_size)
    if batch_size < 1:
        raise CvatError(f"batch_size must be at least 1, not {batch_size}")
    curated = _load_curated(curated)
    out_dir = Path(out_dir)
    _check_writable(out_dir)
    problems = []
    sources = _describe_sources(curated, synthetic_dir, problems)
    entries = _usable_entries(curated, problems, progress)
    tasks, images = [], []
    predictor = predictions if callable(predictions) else None
    by_image = _index_predictions(predictions, entries, problems) if predictions is not None else {}
    lookup = annotations.build_alias_map()
    try:
        with atomic_dir(out_dir) as staging:
            atomic_write_json(staging / LABELS_NAME, LABEL_SET)
            batches = [
                entries[start : start + batch_size] for start in range(0, len(entries), batch_size)
            ]
            for number, batch in enumerate(tqdm(batches, desc="tasks", disable=not progress), 1):
                task = f"task_{number:03d}"
                task_images = _write_task(staging, task, batch, sources, link_images, problems)
                preannotated = None
                boxes = 0
                if predictions is not None:
                    voc_images = _preannotate(
                        task_images,
                        staging / task,
                        by_image,
                        predictor,
                        min_score,
                        lookup,
                        problems,
                    )
                    boxes = sum(len(image.objects) for image in voc_images)
                    preannotated = f"{task}/{task}_preannotations_voc.zip"
                    write_voc(
                        voc_images,
                        staging / preannotated,
                        form="zip",
                        labels=list(LABELS),
                        include_images=False,
                    )
                tasks.append(
                    {
                        "task": task,
                        "images": len(task_images),
                        "folder": f"{task}/images",
                        "zip": f"{task}/{task}_images.zip",
                        "labels": f"{task}/{LABELS_NAME}",
                        "preannotations": preannotated,
                        "preannotated_boxes": boxes,
                    }
                )
                images.extend(task_images)
            index = {
                "format": INDEX_FORMAT,
                "batch_size": batch_size,
                "labels": list(LABELS),
                "curated": {
                    "path": curated.get("out_dir"),
                    "fingerprint": curated.get("fingerprint"),
                },
                "sources": sources,
                "tasks": tasks,
                "images": images,
                "problems": problems,
            }
            atomic_write_json(staging / INDEX_NAME, index)
    except OSError as error:
        raise CvatError(f"{out_dir}: cannot write the tasks ({error.strerror or error})") from None
    logger.info("wrote %d task(s) with %d images to %s", len(tasks), len(images), out_dir)
    return index


def preannotator(source="auto", workspace=None, run_name="ssd"):
    """A detector for pre-annotating tasks (model-assisted labelling), and its name.

    Args:
        source: ``auto`` (the workspace's trained run ``run_name`` where it has a model,
            else the shipped starter: from the very first batch), ``starter``, a starter
            folder, a run folder, or ``none``
        workspace: the workspace whose run ``auto`` looks for
        run_name: that run's folder name under ``data/<workspace>/models/``

    Returns:
        ``(predict, name)``: ``predict(image_bgr) -> [{"label", "score", "bbox"}]`` (the
        callable :func:`export_tasks` takes, ``bbox`` ``[xmin, ymin, xmax, ymax]`` pixels)
        and the model's name; ``(None, "none")`` for ``none``

    Raises:
        platelab.starter.StarterError, platelab.detector.ModelError: no usable model
    """
    from platelab import detector
    from platelab import starter as starter_lib

    source = str(source or "none")
    if source.lower() == "none":
        return None, "none"
    if source == "auto":
        run = paths.models_dir(workspace) / run_name if workspace else None
        found = run is not None and (run / detector.BEST_MODEL_FILENAME).is_file()
        source = str(run) if found else "starter"
    starter_dir = starter_lib.resolve(source)
    if starter_dir is not None:
        model = starter_lib.load(starter_dir).detector()
        name = f"starter {starter_dir}"
    else:
        model = detector.load(paths.resolve(source), allow_unfinished=True)
        name = f"run {paths.resolve(source)}"

    def predict(image_bgr):
        result = model.predict([image_bgr[:, :, ::-1]])[0]
        return [
            {"label": label, "score": float(score), "bbox": [float(value) for value in box]}
            for label, score, box in zip(
                result["labels"], result["scores"], result["boxes"], strict=True
            )
        ]

    return predict, name


def load_predictions(path):
    """Reads a detector's predictions for pre-annotation from a JSON file.

    Args:
        path: a JSON file holding a list of ``{"image", "label", "score", "bbox"}``

    Returns:
        the list

    Raises:
        CvatError: if the file is missing, not JSON, or not such a list
    """
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CvatError(f"{path}: predictions file not found") from None
    except (OSError, ValueError) as error:
        raise CvatError(f"{path}: unreadable predictions ({_one_line(error)})") from None
    if not isinstance(document, list) or not all(isinstance(item, dict) for item in document):
        raise CvatError(f"{path}: expected a JSON list of {{image, label, score, bbox}} objects")
    return document


def load_index(tasks_folder):
    """Reads ``index.json`` as written by :func:`export_tasks`.

    Args:
        tasks_folder: the tasks folder, or the index file itself

    Raises:
        CvatError: if it is missing or not a task index
    """
    path = Path(tasks_folder)
    if path.is_dir():
        path = path / INDEX_NAME
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CvatError(f"{path}: no task index (run export_tasks first)") from None
    except (OSError, ValueError) as error:
        raise CvatError(f"{path}: unreadable task index ({error})") from None
    if not isinstance(document, dict) or document.get("format") != INDEX_FORMAT:
        raise CvatError(f"{path}: not a platelab task index")
    return document


def find_source(index, *, task=None, name=None, image_path=None):
    """Finds the index entry of an image that came back from CVAT.

    Tries the image's content first (SHA-256: survives any renaming), then its
    name within the task, as uploaded or as CVAT's ``frame_NNNNNN``.

    Args:
        index: the dict of :func:`load_index`
        task: the task (``task_NNN``) the image belongs to, if known
        name: the image's name in the export (with or without its suffix)
        image_path: the image file, if at hand

    Returns:
        the index's image entry (source_id, vantage, time, frame_index...) or None
    """
    candidates = index["images"]
    if task is not None:
        in_task = [entry for entry in candidates if entry["task"] == task]
    else:
        in_task = candidates
    if image_path is not None and Path(image_path).is_file():
        digest = sha256_file(image_path)
        matches = [entry for entry in in_task if entry["sha256"] == digest]
        matches = matches or [entry for entry in candidates if entry["sha256"] == digest]
        if matches:
            return matches[0]
    if name is not None and task is not None:
        stem = Path(name).stem
        for entry in in_task:
            if stem in (Path(entry["name"]).stem, entry["cvat_frame"]):
                return entry
    return None


def task_of(name):
    """Returns the ``task_NNN`` named in an export's file name, or None."""
    match = _TASK_PATTERN.search(str(name))
    return match.group(1) if match else None


def tasks_table(index):
    """Returns a pandas DataFrame with one row per task: images, sources, vantages, pre-annotations."""
    import pandas as pd

    rows = []
    for task in index["tasks"]:
        members = [entry for entry in index["images"] if entry["task"] == task["task"]]
        rows.append(
            {
                "task": task["task"],
                "images": task["images"],
                "sources": len({entry["source_id"] for entry in members}),
                "vantages": ", ".join(sorted({entry["vantage"] or "?" for entry in members})),
                "photos": sum(entry["kind"] == "photo" for entry in members),
                "pre-annotated boxes": task["preannotated_boxes"],
            }
        )
    columns = ["task", "images", "sources", "vantages", "photos", "pre-annotated boxes"]
    return pd.DataFrame(rows, columns=columns).set_index("task")


# --------------------------------------------------------------------------- VOC writer


def voc_xml(image):
    """Returns the ``Annotations/<name>.xml`` text CVAT writes for one image.

    Two-space indentation, no XML declaration, an empty ``<folder>`` and
    ``<depth>``, ``Unknown`` source fields, ``<segmented>0``, per object
    ``truncated``/``occluded``/``difficult`` as 0/1, float coordinates and an
    ``<attributes>`` block when the object has attributes.

    Args:
        image: a :class:`VocImage`
    """
    lines = [
        "<annotation>",
        "  <folder></folder>",
        f"  <filename>{escape(image.file_name)}</filename>",
        "  <source>",
        "    <database>Unknown</database>",
        "    <annotation>Unknown</annotation>",
        "    <image>Unknown</image>",
        "  </source>",
        "  <size>",
        f"    <width>{int(image.width)}</width>",
        f"    <height>{int(image.height)}</height>",
        "    <depth></depth>",
        "  </size>",
        "  <segmented>0</segmented>",
    ]
    for item in image.objects:
        lines += [
            "  <object>",
            f"    <name>{escape(str(item['label']))}</name>",
            f"    <truncated>{int(bool(item.get('truncated')))}</truncated>",
            f"    <occluded>{int(bool(item.get('occluded')))}</occluded>",
            f"    <difficult>{int(bool(item.get('difficult')))}</difficult>",
            "    <bndbox>",
        ]
        for key, value in zip(("xmin", "ymin", "xmax", "ymax"), item["bbox"], strict=True):
            lines.append(f"      <{key}>{_coordinate(value)}</{key}>")
        lines.append("    </bndbox>")
        attributes = item.get("attributes") or {}
        if attributes:
            lines.append("    <attributes>")
            for name, value in attributes.items():
                lines += [
                    "      <attribute>",
                    f"        <name>{escape(str(name))}</name>",
                    f"        <value>{escape(_attribute_text(value))}</value>",
                    "      </attribute>",
                ]
            lines.append("    </attributes>")
        lines.append("  </object>")
    lines.append("</annotation>")
    return "\n".join(lines) + "\n"


def labelmap_text(labels):
    """Returns CVAT's ``labelmap.txt`` for a list of label spellings.

    Header ``# label:color_rgb:parts:actions``, then ``background:0,0,0::``
    and one ``label:r,g,b::`` line per label (canonical colours for every
    spelling of a known label).
    """
    lookup = annotations.build_alias_map()
    lines = ["# label:color_rgb:parts:actions", "background:0,0,0::"]
    spare = iter(FALLBACK_COLORS * (len(labels) // len(FALLBACK_COLORS) + 1))
    for label in labels:
        canonical = annotations.normalize_label(label, lookup)
        color = LABEL_COLORS.get(canonical) or next(spare)
        red, green, blue = (int(color[index : index + 2], 16) for index in (1, 3, 5))
        lines.append(f"{label}:{red},{green},{blue}::")
    return "\n".join(lines) + "\n"


def write_voc(images, destination, form="zip", labels=None, include_images=True):
    """Writes images and boxes in CVAT's "PASCAL VOC 1.1" layout.

    Forms (see :data:`EXPORT_FORMS`):

    * ``zip``: as CVAT exports it: ``labelmap.txt``, then per image
      ``JPEGImages/<name><suffix>`` and, if it has boxes,
      ``Annotations/<name>.xml``, then ``ImageSets/Main/default.txt`` listing
      every image (images without boxes have no XML and appear only there);
    * ``folder``: the same files, unzipped, in the folder ``destination``;
    * ``zip_two_folders``: a zip of just ``Annotations/`` and ``JPEGImages/``.

    Zips carry fixed timestamps, so the same input gives the same bytes. The
    output is written to a temporary name and renamed into place.

    Args:
        images: :class:`VocImage` objects (names unique)
        destination: the ``.zip`` file (zip forms) or the folder (``folder``)
        form: one of :data:`EXPORT_FORMS`
        labels: the label spellings for ``labelmap.txt``, in order (default:
            those used, in order of first use)
        include_images: False leaves ``JPEGImages/`` out (annotations to
            upload into an existing task)

    Returns:
        the destination Path

    Raises:
        ValueError: for an unknown form or duplicate or unsafe names
        OSError: if an image cannot be read or the destination written
    """
    if form not in EXPORT_FORMS:
        raise ValueError(f"unknown export form {form!r} (known: {', '.join(EXPORT_FORMS)})")
    images = list(images)
    names = [image.name for image in images]
    if len(set(names)) != len(names):
        raise ValueError("image names must be unique within an export")
    for name in names:
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise ValueError(f"unsafe image name {name!r} in an export")
    if labels is None:
        labels = list(dict.fromkeys(item["label"] for image in images for item in image.objects))
    members = _voc_members(images, form, labels, include_images)
    destination = Path(destination)
    if form == "folder":
        with atomic_dir(destination) as staging:
            for relative, content in members:
                target = staging / relative
                if content is None:
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                if isinstance(content, Path):
                    shutil.copyfile(content, target)
                else:
                    target.write_bytes(content)
        return destination
    _write_zip(destination, members)
    return destination


def read_voc_annotations(source):
    """Reads just the boxes of a VOC export, images or not (e.g. a pre-annotation zip).

    Unlike :func:`platelab.annotations.load_batch`, nothing is checked
    against the images, so annotations meant for upload into an existing
    CVAT task can be read back.

    Args:
        source: a zip or a folder with ``Annotations/``

    Returns:
        a dict: image name (the XML's stem) -> objects (see
        :class:`platelab.annotations.ImageRecord`)

    Raises:
        CvatError: for a missing source, an unreadable zip or a malformed XML
            file (unsafe members of a zip are skipped, each logged as a warning)
    """
    source = Path(source)
    with tempfile.TemporaryDirectory(prefix="platelab-voc-") as scratch:
        folder = source
        if source.is_file():
            folder = Path(scratch) / "export"
            try:
                archives.safe_extract(source, folder)
            except archives.ArchiveError as error:
                raise CvatError(str(error)) from None
        elif not source.is_dir():
            raise CvatError(f"{source}: not found")
        annotations_folder = folder / "Annotations"
        found = {}
        for xml_path in sorted(annotations_folder.rglob("*.xml")):
            try:
                parsed = annotations.parse_voc_xml(xml_path)
            except annotations.AnnotationError as error:
                raise CvatError(f"{source}: {error}") from None
            found[xml_path.relative_to(annotations_folder).with_suffix("").as_posix()] = parsed[
                "objects"
            ]
    return found


# --------------------------------------------------------------------------- the simulated annotator


def simulate_annotator(
    tasks_folder,
    out_dir,
    *,
    forms=EXPORT_FORMS,
    label_drift=True,
    spellings=DRIFT_SPELLINGS,
    inject_mistakes=0.0,
    rename_frames=True,
    seed=0,
    progress=True,
):
    """Annotates every task from stage 00's ground truth and exports it as CVAT would.

    For each task image that is a frame of a synthetic video, the objects are
    the ground truth of that frame (frames manifest -> ``source_id`` +
    ``frame_index`` -> the video's ground-truth ``frames[frame_index]``):
    difficult objects are written with ``<difficult>1</difficult>``; objects
    the generator already left out (hidden beyond its thresholds) stay absent.
    Images without ground truth (photos, videos that are not synthetic) are
    left out of the exports and listed in ``without_truth``: nobody annotated
    them, and writing them as negatives would teach the detector that their
    vehicles are background. A task without any such image gets no export.

    The tasks are split into consecutive batches, one per entry of
    ``spellings`` (``label_drift``); each task's export takes the next form of
    ``forms``; with ``rename_frames`` the odd-numbered tasks (task_001,
    task_003...) come back with CVAT's ``frame_NNNNNN`` names, so two exports
    hold a ``frame_000000.png`` (merge must keep them apart;
    :func:`find_source` maps them back).

    With ``inject_mistakes`` > 0 each object independently gets, at that
    rate, one mistake of :data:`MISTAKE_KINDS`: left out (``missing``),
    moved by 30-60 % of its size (``shifted``), written with the other label
    (``wrong_label``) or drawn twice (``duplicate``). Each is recorded in
    ``mistakes.json`` with the task, image, kind, true and written boxes.

    Args:
        tasks_folder: the folder written by :func:`export_tasks`
        out_dir: the exports folder to write (replaced as a whole)
        forms: export forms to rotate through (see :data:`EXPORT_FORMS`)
        label_drift: spell labels per batch (False: canonical labels throughout)
        spellings: per batch, canonical label -> spelling
        inject_mistakes: the per-object mistake rate, in [0, 1]
        rename_frames: whether some exports use CVAT's frame names
        seed: seed of the mistakes (per task: ``[seed, task number]``)
        progress: show a progress bar

    Returns:
        the exports document (also ``out_dir/exports.json``): ``format``,
        ``parameters``, ``exports`` (per task: ``task``, ``export``,
        ``form``, ``batch``, ``spellings``, ``frame_names``, ``images``,
        ``negatives``, ``boxes`` (per spelling), ``difficult``, ``mistakes``),
        ``without_truth``, ``problems``, and ``mistakes`` (the document also
        written to ``out_dir/mistakes.json``: ``rate``, ``seed``, ``objects``,
        ``counts`` per kind and ``mistakes``)

    Raises:
        CvatError: for a missing task index, bad parameters or an output
            folder that cannot be written
    """
    forms = list(forms)
    unknown = [form for form in forms if form not in EXPORT_FORMS]
    if not forms or unknown:
        raise CvatError(f"export forms must be among {', '.join(EXPORT_FORMS)}; got {forms}")
    rate = float(inject_mistakes)
    if not 0.0 <= rate <= 1.0:
        raise CvatError(f"inject_mistakes must be a rate in [0, 1], not {inject_mistakes}")
    spellings = (
        [dict(item) for item in spellings] if label_drift else [{label: label for label in LABELS}]
    )
    if not spellings or any(set(item) != set(LABELS) for item in spellings):
        raise CvatError(f"each spelling set must spell exactly {', '.join(LABELS)}")
    tasks_folder = Path(tasks_folder)
    index = load_index(tasks_folder)
    out_dir = Path(out_dir)
    _check_writable(out_dir)
    problems, without_truth, exports, mistakes = [], [], [], []
    objects_seen = 0
    truth_cache = {}
    task_count = len(index["tasks"])
    batches = min(len(spellings), task_count) or 1
    try:
        with atomic_dir(out_dir) as staging:
            for position, task in enumerate(
                tqdm(index["tasks"], desc="exports", disable=not progress)
            ):
                batch = position * batches // max(task_count, 1)
                spelled = spellings[batch]
                form = forms[position % len(forms)]
                renamed = bool(rename_frames) and position % 2 == 0
                rng = np.random.default_rng([int(seed), position + 1])
                export_name = _export_name(task["task"], form)
                members = [entry for entry in index["images"] if entry["task"] == task["task"]]
                voc_images = []
                for entry in members:
                    truth = _truth_for(entry, index, tasks_folder, truth_cache, problems)
                    if truth is None:
                        without_truth.append(
                            {
                                "task": entry["task"],
                                "image": entry["name"],
                                "source_id": entry["source_id"],
                                "kind": entry["kind"],
                            }
                        )
                        continue
                    name = entry["cvat_frame"] if renamed else Path(entry["name"]).stem
                    image_path = tasks_folder / task["folder"] / entry["name"]
                    if not image_path.is_file():
                        problems.append(f"{image_path}: task image is missing; left out")
                        continue
                    voc_image = VocImage(name, image_path, entry["width"], entry["height"])
                    for item in truth:
                        objects_seen += 1
                        written = _voc_object(item, spelled)
                        mistake = _maybe_mistake(rng, rate, item, written, spelled, entry)
                        if mistake is None:
                            voc_image.objects.append(written)
                            continue
                        kind, extra = mistake
                        if kind != "missing":
                            voc_image.objects.append(written)
                        if extra is not None:
                            voc_image.objects.append(extra)
                        mistakes.append(
                            _mistake_record(
                                task["task"],
                                export_name,
                                voc_image,
                                entry,
                                item,
                                kind,
                                written,
                                extra,
                            )
                        )
                    voc_images.append(voc_image)
                if not voc_images:
                    logger.info("%s has no image with ground truth: no export", task["task"])
                    continue
                labels = [spelled[label] for label in LABELS]
                write_voc(voc_images, staging / export_name, form=form, labels=labels)
                boxes = {label: 0 for label in labels}
                for image in voc_images:
                    for item in image.objects:
                        boxes[item["label"]] = boxes.get(item["label"], 0) + 1
                exports.append(
                    {
                        "task": task["task"],
                        "export": export_name,
                        "form": form,
                        "batch": batch + 1,
                        "spellings": spelled,
                        "frame_names": "cvat" if renamed else "original",
                        "images": len(voc_images),
                        "negatives": sum(not image.objects for image in voc_images),
                        "boxes": boxes,
                        "difficult": sum(
                            bool(item.get("difficult"))
                            for image in voc_images
                            for item in image.objects
                        ),
                        "mistakes": sum(record["task"] == task["task"] for record in mistakes),
                    }
                )
            mistakes_document = {
                "format": MISTAKES_FORMAT,
                "rate": rate,
                "seed": int(seed),
                "kinds": list(MISTAKE_KINDS),
                "objects": objects_seen,
                "counts": {
                    kind: sum(record["kind"] == kind for record in mistakes)
                    for kind in MISTAKE_KINDS
                },
                "mistakes": mistakes,
            }
            document = {
                "format": EXPORTS_FORMAT,
                "parameters": {
                    "forms": forms,
                    "label_drift": bool(label_drift),
                    "spellings": spellings,
                    "inject_mistakes": rate,
                    "rename_frames": bool(rename_frames),
                    "seed": int(seed),
                },
                "exports": exports,
                "without_truth": without_truth,
                "problems": problems,
            }
            atomic_write_json(staging / MISTAKES_NAME, mistakes_document)
            atomic_write_json(staging / EXPORTS_NAME, document)
    except OSError as error:
        raise CvatError(
            f"{out_dir}: cannot write the exports ({error.strerror or error})"
        ) from None
    if without_truth:
        logger.info(
            "%d image(s) without ground truth (photos or non-synthetic videos) left out of the exports",
            len(without_truth),
        )
    document["mistakes"] = mistakes_document
    return document


def batches_table(simulated):
    """The label spellings of each simulated batch: a pandas DataFrame indexed by batch.

    Args:
        simulated: the document returned by :func:`simulate_annotator` (or
            :func:`load_exports_manifest`)

    Returns:
        columns ``<label> written as`` per canonical label, ``tasks``, ``forms``
        and ``frame names``
    """
    import pandas as pd

    rows = {}
    for item in (simulated or {}).get("exports", []):
        row = rows.setdefault(
            item["batch"],
            {f"{label} written as": item["spellings"][label] for label in LABELS}
            | {"tasks": [], "forms": [], "frame names": []},
        )
        row["tasks"].append(item["task"])
        row["forms"].append(item["form"])
        row["frame names"].append(item["frame_names"])
    for row in rows.values():
        for key in ("tasks", "forms", "frame names"):
            row[key] = ", ".join(row[key])
    columns = [f"{label} written as" for label in LABELS] + ["tasks", "forms", "frame names"]
    table = pd.DataFrame.from_dict(rows, orient="index", columns=columns)
    table.index.name = "batch"
    return table


def load_mistakes(exports_folder):
    """Reads ``mistakes.json`` from an exports folder (None where there is none)."""
    return _read_json_or_none(Path(exports_folder) / MISTAKES_NAME)


def load_exports_manifest(exports_folder):
    """Reads ``exports.json`` from an exports folder (None where there is none)."""
    return _read_json_or_none(Path(exports_folder) / EXPORTS_NAME)


def mistakes_table(mistakes):
    """Counts injected mistakes per kind and true label (a pandas DataFrame, 'all' row last)."""
    import pandas as pd

    table = pd.DataFrame(0, index=list(MISTAKE_KINDS), columns=list(LABELS))
    for record in (mistakes or {}).get("mistakes", []):
        table.loc[record["kind"], record["label"]] += 1
    table["all"] = table.sum(axis=1)
    table.loc["all"] = table.sum()
    table.index.name = "kind"
    return table


def plot_mistakes(mistakes):
    """Bar chart of the injected mistakes per kind and true label.

    Returns:
        the matplotlib Figure
    """
    import matplotlib.pyplot as plt

    table = mistakes_table(mistakes).drop(index="all", columns="all")
    figure, axis = plt.subplots(figsize=(7, 3.2))
    positions = np.arange(len(table.index))
    width = 0.38
    for offset, label in enumerate(LABELS):
        axis.bar(positions + (offset - 0.5) * width, table[label].to_numpy(), width, label=label)
    axis.set_xticks(positions, table.index)
    axis.set_xlabel("injected mistake")
    axis.set_ylabel("boxes (count)")
    total = (mistakes or {}).get("objects", 0)
    rate = (mistakes or {}).get("rate", 0.0)
    axis.set_title(f"{int(table.to_numpy().sum())} mistakes in {total} objects (rate {rate:g})")
    axis.legend(title="true label")
    visualize.add_caption(
        figure,
        "Known mistakes hidden in the simulated exports: stage 04's review should find them.",
    )
    return figure


# --------------------------------------------------------------------------- import


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
            default: a new temporary folder)
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
    extraction_root = Path(tempfile.mkdtemp(prefix="platelab-import-", dir=work_dir))
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
            (:func:`load_exports_manifest`), adding batch and frame naming

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


# --------------------------------------------------------------------------- CVAT server (FiftyOne backend)


def fiftyone_label_schema():
    """The label set as FiftyOne's CVAT label schema (per-class attributes).

    Every attribute lists its values, as CVAT 2.5 and later require: the
    choices of a select, ``[]`` for a text, ``[True, False]`` for a checkbox.
    """
    classes = []
    for label in LABEL_SET:
        attributes = {}
        for attribute in label["attributes"]:
            kind = attribute["input_type"]
            spec = {"type": kind}
            if kind == "select":
                spec["values"] = list(attribute["values"])
                spec["default"] = attribute["default_value"]
            elif kind == "checkbox":
                spec["values"] = [True, False]
                spec["default"] = False
            else:
                spec["values"] = []
            attributes[attribute["name"]] = spec
        classes.append({"classes": [label["name"]], "attributes": attributes})
    return {"ground_truth": {"type": "detections", "classes": classes}}


def check_server(url, timeout=5.0):
    """Checks that a CVAT server answers at ``url``.

    Any HTTP answer counts (even 401: the server is there); a refused or
    timed-out connection or a bad URL raises.

    Raises:
        CvatError: one line naming the URL and the reason
    """
    parsed = urllib.parse.urlparse(str(url))
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise CvatError(f"{url}: not an http(s) URL of a CVAT server")
    probe_url = f"{str(url).rstrip('/')}/api/server/about"
    try:
        with urllib.request.urlopen(probe_url, timeout=timeout):  # noqa: S310 - http(s) checked above
            pass
    except urllib.error.HTTPError:
        return
    except urllib.error.URLError as error:
        reason = getattr(error.reason, "strerror", None) or str(error.reason)
        raise CvatError(f"{url}: CVAT server unreachable ({reason})") from None
    except (OSError, ValueError) as error:
        raise CvatError(f"{url}: CVAT server unreachable ({error})") from None


def upload_tasks(
    tasks_folder, url, *, dataset_name=None, username=None, password=None, timeout=5.0
):
    """Creates one CVAT task per task batch through FiftyOne's CVAT backend.

    Skipped (returns None) when ``url`` is empty. Credentials default to
    FiftyOne's ``FIFTYONE_CVAT_USERNAME`` / ``FIFTYONE_CVAT_PASSWORD``
    environment variables. The task images go into a persistent FiftyOne
    dataset (one sample per image, with its index entry as fields and any
    pre-annotations as ``ground_truth`` to correct); each task is one
    annotation run keyed by its name, uploaded once (a failed upload is
    forgotten, so the next call tries that task again). Text attributes come
    back as typed (``coerce_text_attrs=False``: plate text stays text).

    Args:
        tasks_folder: the folder written by :func:`export_tasks`
        url: the CVAT server's URL (empty: skip)
        dataset_name: the FiftyOne dataset (default ``platelab-cvat-<hash of the folder>``)
        username: CVAT user name (default: FiftyOne's configuration)
        password: CVAT password (default: FiftyOne's configuration)
        timeout: seconds to wait for the server's first answer

    Returns:
        None when skipped, else ``{"dataset": name, "uploaded": [task...], "already": [task...]}``

    Raises:
        CvatError: when the server is unreachable or refuses the upload
    """
    if not url:
        logger.info("no CVAT server URL configured: upload skipped")
        return None
    check_server(url, timeout)
    tasks_folder = Path(tasks_folder)
    index = load_index(tasks_folder)
    dataset = _cvat_dataset(index, tasks_folder, dataset_name)
    credentials = _credentials(username, password)
    uploaded, already = [], []
    for task in index["tasks"]:
        anno_key = task["task"]
        if anno_key in dataset.list_annotation_runs():
            already.append(anno_key)
            continue
        view = dataset.match_tags(anno_key)
        try:
            view.annotate(
                anno_key,
                backend="cvat",
                label_schema=fiftyone_label_schema(),
                url=url,
                task_name=anno_key,
                segment_size=max(len(view), 1),
                occluded_attr="occluded",
                coerce_text_attrs=False,  # plate text "0042" stays "0042", not the number 42
                launch_editor=False,
                **credentials,
            )
        except Exception as error:  # noqa: BLE001 - the backend raises requests', CVAT's and its own errors
            # FiftyOne registers the run before it uploads: forget a failed one, so that
            # the next call uploads the task instead of counting it as already uploaded.
            if anno_key in dataset.list_annotation_runs():
                dataset.delete_annotation_run(anno_key)
            raise CvatError(f"{url}: uploading {anno_key} failed ({_one_line(error)})") from None
        uploaded.append(anno_key)
    return {"dataset": dataset.name, "uploaded": uploaded, "already": already}


def download_annotations(
    tasks_folder, url, out_dir, *, dataset_name=None, username=None, password=None, timeout=5.0
):
    """Fetches the annotations of uploaded tasks and writes them as VOC folders.

    Skipped (returns None) when ``url`` is empty. Each task uploaded by
    :func:`upload_tasks` is loaded back into the FiftyOne dataset and written
    to ``out_dir/<task>_voc/`` in the ``folder`` form, ready for
    :func:`import_exports`.

    Args:
        tasks_folder: the folder written by :func:`export_tasks`
        url: the CVAT server's URL (empty: skip)
        out_dir: where the downloaded exports go (``interim/cvat/downloads``)
        dataset_name: as for :func:`upload_tasks`
        username: CVAT user name (default: FiftyOne's configuration)
        password: CVAT password (default: FiftyOne's configuration)
        timeout: seconds to wait for the server's first answer

    Returns:
        None when skipped, else the list of written export folders

    Raises:
        CvatError: when the server is unreachable, nothing was uploaded yet,
            or the download fails
    """
    if not url:
        logger.info("no CVAT server URL configured: download skipped")
        return None
    check_server(url, timeout)
    fiftyone = _fiftyone()
    tasks_folder = Path(tasks_folder)
    load_index(tasks_folder)  # fails clearly on a folder that holds no tasks
    name = dataset_name or _dataset_name(tasks_folder)
    if not fiftyone.dataset_exists(name):
        raise CvatError(f"{tasks_folder}: no tasks uploaded yet (no FiftyOne dataset {name})")
    dataset = fiftyone.load_dataset(name)
    credentials = _credentials(username, password)
    out_dir = Path(out_dir)
    written = []
    for anno_key in dataset.list_annotation_runs():
        try:
            dataset.load_annotations(anno_key, url=url, unexpected="keep", **credentials)
        except Exception as error:  # noqa: BLE001 - the backend raises requests', CVAT's and its own errors
            raise CvatError(f"{url}: downloading {anno_key} failed ({_one_line(error)})") from None
        voc_images = []
        for sample in dataset.match_tags(anno_key).iter_samples():
            entry = {
                "name": sample["task_name"],
                "width": sample["width"],
                "height": sample["height"],
            }
            objects = []
            for detection in sample["ground_truth"].detections if sample["ground_truth"] else []:
                x, y, width, height = detection.bounding_box
                attributes = {}
                if detection.label == "license_plate" and _attribute(detection, "text"):
                    attributes["text"] = _attribute(detection, "text")
                if detection.label == "vehicle" and _attribute(detection, "type"):
                    attributes["type"] = _attribute(detection, "type")
                objects.append(
                    {
                        "label": detection.label,
                        "bbox": [
                            x * entry["width"],
                            y * entry["height"],
                            (x + width) * entry["width"],
                            (y + height) * entry["height"],
                        ],
                        "difficult": bool(_attribute(detection, "difficult")),
                        "truncated": bool(_attribute(detection, "truncated")),
                        "occluded": bool(_attribute(detection, "occluded")),
                        "attributes": attributes,
                    }
                )
            voc_images.append(
                VocImage(
                    Path(entry["name"]).stem,
                    Path(sample.filepath),
                    entry["width"],
                    entry["height"],
                    objects,
                )
            )
        target = out_dir / f"{anno_key}_voc"
        write_voc(voc_images, target, form="folder", labels=list(LABELS))
        written.append(target)
    return written


# --------------------------------------------------------------------------- private helpers


def _load_curated(curated):
    if isinstance(curated, dict):
        if "kept" not in curated:
            raise CvatError("the curated result has no 'kept' list (not stage 02's output)")
        return curated
    path = Path(curated)
    if path.is_dir():
        path = path / "curated.json"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CvatError(f"{path}: no curated list (run stage 02 first)") from None
    except (OSError, ValueError) as error:
        raise CvatError(f"{path}: unreadable curated list ({error})") from None
    if not isinstance(document, dict) or not isinstance(document.get("kept"), list):
        raise CvatError(f"{path}: not stage 02's curated list (no 'kept' list)")
    document.setdefault("out_dir", str(path.parent.resolve()))
    return document


def _check_writable(out_dir):
    """Raises CvatError unless a folder can be created beside and renamed to ``out_dir``."""
    out_dir = Path(out_dir)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        probe = tempfile.mkdtemp(prefix=f".{out_dir.name}.probe-", dir=out_dir.parent)
        os.rmdir(probe)
    except OSError as error:
        reason = error.strerror or str(error)
        blocking = next((parent for parent in out_dir.parents if parent.exists()), None)
        if blocking is not None and not blocking.is_dir():
            reason = f"{blocking} is a file, not a folder"
        raise CvatError(f"{out_dir}: output folder cannot be written ({reason})") from None
    if out_dir.exists() and not out_dir.is_dir():
        raise CvatError(f"{out_dir}: output folder is a file")


def _describe_sources(curated, synthetic_dir, problems):
    """source_id -> kind, media, vantage, lighting, ground truth (from the frames and synth manifests)."""
    synth_by_path, synth_by_id = {}, {}
    manifests = []
    if synthetic_dir is not None:
        manifests.append(Path(synthetic_dir))
    frame_sources = {}
    for item in curated.get("inputs", []):
        if item.get("kind") != "frames" or not item.get("path"):
            continue
        manifest_path = Path(item["path"]) / "manifest.json"
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            problems.append(
                f"{manifest_path}: unreadable frames manifest ({error}); sources unknown"
            )
            continue
        for source in manifest.get("sources", []):
            frame_sources[source["source_id"]] = source
            media = source.get("path")
            if media and synthetic_dir is None and source.get("kind") == "video":
                manifests.append(Path(media).resolve().parent.parent)
    for folder in dict.fromkeys(manifests):
        manifest_path = folder / "manifest.json"
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if manifest.get("generator") != "platelab.synth":
            continue
        for video in manifest.get("videos", []):
            described = {
                "vantage": video.get("vantage"),
                "lighting": video.get("lighting"),
                "ground_truth": str((folder / video["ground_truth"]).resolve()),
            }
            synth_by_path[str((folder / video["video"]).resolve())] = described
            synth_by_id[video["source_id"]] = described
    sources = {}
    for entry in curated["kept"]:
        source_id = entry.get("source_id") or "?"
        if source_id in sources:
            continue
        frame_source = frame_sources.get(source_id, {})
        media = frame_source.get("path")
        kind = frame_source.get("kind") or (
            "video" if entry.get("frame_index") is not None else "photo"
        )
        described = None
        if media:
            described = synth_by_path.get(str(Path(media).resolve()))
        if described is None and kind == "video":
            described = synth_by_id.get(source_id)
        sources[source_id] = {
            "kind": kind,
            "media": media,
            "vantage": (described or {}).get("vantage"),
            "lighting": (described or {}).get("lighting"),
            "ground_truth": (described or {}).get("ground_truth"),
        }
    return sources


def _usable_entries(curated, problems, progress):
    """The kept images that still exist, with their sizes and SHA-256."""
    usable = []
    for entry in tqdm(curated["kept"], desc="checking images", disable=not progress):
        path = Path(entry.get("path") or "")
        if not entry.get("path") or not path.is_file():
            problems.append(
                f"{path}: curated image is missing (moved or deleted after stage 02); left out"
            )
            continue
        width, height = entry.get("width"), entry.get("height")
        if not width or not height:
            size = annotations.image_size(path)
            if size is None:
                problems.append(f"{path}: curated image cannot be read; left out")
                continue
            width, height = size
        try:
            digest = sha256_file(path)
        except OSError as error:
            problems.append(
                f"{path}: curated image cannot be read ({error.strerror or error}); left out"
            )
            continue
        usable.append(dict(entry, width=int(width), height=int(height), sha256=digest))
    return usable


def _write_task(staging, task, batch, sources, link_images, problems):
    """Writes one task folder; returns its index image entries."""
    folder = staging / task / "images"
    folder.mkdir(parents=True)
    entries, taken = [], set()
    for entry in batch:
        source = Path(entry["path"])
        name = _unique_name(source.name, taken)
        try:
            _link_or_copy(source, folder / name, link_images)
        except FileNotFoundError:
            if not folder.is_dir():
                raise
            problems.append(f"{source}: curated image vanished while writing {task}; left out")
            continue
        position = len(entries)
        described = sources.get(entry.get("source_id") or "?", {})
        is_photo = described.get("kind") == "photo" or entry.get("frame_index") is None
        entries.append(
            {
                "task": task,
                "position": position,
                "name": name,
                "cvat_frame": f"frame_{position:06d}",
                "source_id": entry.get("source_id"),
                "kind": "photo" if is_photo else "frame",
                "vantage": described.get("vantage"),
                "lighting": described.get("lighting"),
                "time": None if is_photo else entry.get("time"),
                "frame_index": None if is_photo else entry.get("frame_index"),
                "sha256": entry["sha256"],
                "original": entry.get("image"),
                "path": str(source),
                "width": entry["width"],
                "height": entry["height"],
            }
        )
    _write_zip(
        staging / task / f"{task}_images.zip",
        [(item["name"], folder / item["name"]) for item in entries],
        compression=zipfile.ZIP_STORED,
    )
    atomic_write_json(staging / task / LABELS_NAME, LABEL_SET)
    return entries


def _unique_name(name, taken):
    candidate, number = name, 1
    while candidate.lower() in taken:
        number += 1
        candidate = f"{Path(name).stem}_{number}{Path(name).suffix}"
    taken.add(candidate.lower())
    return candidate


def _link_or_copy(source, target, link_images):
    if link_images:
        try:
            os.link(source, target)
            return
        except FileNotFoundError:
            raise
        except OSError:
            logger.debug("cannot hard-link %s (another file system?); copying it", source)
    shutil.copyfile(source, target)


def _index_predictions(predictions, entries, problems):
    """Groups a predictions list by curated image path; callables are used per image later."""
    if callable(predictions):
        return {}
    keys = {}
    for entry in entries:
        path = str(Path(entry["path"]))
        for key in (path, entry.get("image"), Path(path).name):
            if key:
                keys.setdefault(key, path)
    grouped, unmatched = {}, set()
    for number, prediction in enumerate(predictions):
        if not isinstance(prediction, dict) or "image" not in prediction:
            problems.append(
                f"predictions[{number}]: not a dict with 'image', 'label', 'score', 'bbox'; skipped"
            )
            continue
        image = str(prediction["image"])
        path = keys.get(image) or keys.get(str(Path(image))) or keys.get(Path(image).name)
        if path is None:
            unmatched.add(image)
            continue
        grouped.setdefault(path, []).append(prediction)
    if unmatched:
        shown = ", ".join(sorted(unmatched)[:3]) + (" ..." if len(unmatched) > 3 else "")
        problems.append(f"predictions for {len(unmatched)} image(s) in no task ({shown}); skipped")
    return grouped


def _preannotate(task_images, task_folder, by_image, predictor, min_score, lookup, problems):
    """Pre-annotation VocImages for one task (canonical labels, predictions at or above min_score)."""
    import cv2

    voc_images = []
    for entry in task_images:
        image_path = task_folder / "images" / entry["name"]
        if predictor is not None:
            image_bgr = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
            if image_bgr is None:
                problems.append(f"{image_path}: unreadable; not pre-annotated")
                predicted = []
            else:
                try:
                    predicted = list(predictor(image_bgr) or [])
                except Exception as error:  # noqa: BLE001 - a user's detector may raise anything
                    problems.append(
                        f"{image_path}: the detector failed ({_one_line(error)}); not pre-annotated"
                    )
                    predicted = []
        else:
            predicted = by_image.get(entry["path"], [])
        objects = []
        for prediction in predicted:
            item = _prediction_object(prediction, entry, lookup, min_score, image_path, problems)
            if item is not None:
                objects.append(item)
        voc_images.append(
            VocImage(Path(entry["name"]).stem, image_path, entry["width"], entry["height"], objects)
        )
    return voc_images


def _prediction_object(prediction, entry, lookup, min_score, image_path, problems):
    try:
        score = float(prediction.get("score", 1.0))
        x0, y0, x1, y1 = (float(value) for value in prediction["bbox"])
    except (KeyError, TypeError, ValueError):
        problems.append(
            f"{image_path}: prediction {prediction!r} has no numeric score and bbox; skipped"
        )
        return None
    if score < min_score:
        return None
    label = annotations.normalize_label(prediction.get("label", ""), lookup)
    if label is None:
        problems.append(
            f"{image_path}: prediction label {prediction.get('label')!r} is not {' or '.join(LABELS)}; skipped"
        )
        return None
    x0, x1 = max(0.0, min(x0, x1)), min(float(entry["width"]), max(x0, x1))
    y0, y1 = max(0.0, min(y0, y1)), min(float(entry["height"]), max(y0, y1))
    if x1 - x0 < 1 or y1 - y0 < 1:
        problems.append(
            f"{image_path}: predicted {label} box {prediction['bbox']} is empty inside the image; skipped"
        )
        return None
    return {"label": label, "bbox": [round(x0, 2), round(y0, 2), round(x1, 2), round(y1, 2)]}


def _voc_members(images, form, labels, include_images):
    """The (relative path, bytes | Path | None for a folder) members of an export, in CVAT's order."""
    members = []
    if form == "zip_two_folders":
        members.append(("Annotations/", None))
        for image in images:
            if image.objects:
                members.append((f"Annotations/{image.name}.xml", voc_xml(image).encode("utf-8")))
        if include_images:
            members.append(("JPEGImages/", None))
            for image in images:
                members.append((f"JPEGImages/{image.file_name}", Path(image.image_path)))
        return members
    members.append(("labelmap.txt", labelmap_text(labels).encode("utf-8")))
    for image in images:
        if include_images:
            members.append((f"JPEGImages/{image.file_name}", Path(image.image_path)))
        if image.objects:
            members.append((f"Annotations/{image.name}.xml", voc_xml(image).encode("utf-8")))
    listing = "".join(f"{image.name}\n" for image in images)
    members.append(("ImageSets/Main/default.txt", listing.encode("utf-8")))
    return members


def _write_zip(destination, members, compression=zipfile.ZIP_DEFLATED):
    """Writes a zip with fixed timestamps and modes, through a temporary file."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent
    )
    os.close(handle)
    try:
        with zipfile.ZipFile(temporary, "w") as archive:
            for relative, content in members:
                info = zipfile.ZipInfo(relative, date_time=_ZIP_DATE)
                info.create_system = 3
                if content is None:
                    info.external_attr = (0o40700 << 16) | 0x10
                    archive.writestr(info, b"")
                    continue
                info.compress_type = compression
                info.external_attr = _ZIP_MODE
                data = content.read_bytes() if isinstance(content, Path) else content
                archive.writestr(info, data)
        os.chmod(temporary, 0o644)
        os.replace(temporary, destination)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _coordinate(value):
    return repr(round(float(value), 2))


def _attribute_text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _export_name(task, form):
    return f"{task}_voc" if form == "folder" else f"{task}_voc.zip"


def _truth_for(entry, index, tasks_folder, cache, problems):
    """The ground-truth objects of a task image, or None when it has none."""
    if entry.get("frame_index") is None or entry["kind"] != "frame":
        return None
    source = index["sources"].get(entry["source_id"] or "?", {})
    truth_path = source.get("ground_truth")
    if not truth_path:
        return None
    if truth_path not in cache:
        try:
            cache[truth_path] = json.loads(Path(truth_path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            problems.append(f"{truth_path}: unreadable ground truth ({error}); its frames left out")
            cache[truth_path] = None
    truth = cache[truth_path]
    if truth is None:
        return None
    frames = truth.get("frames", [])
    index_number = int(entry["frame_index"])
    if (
        not 0 <= index_number < len(frames)
        or frames[index_number].get("index", index_number) != index_number
    ):
        problems.append(
            f"{truth_path}: no ground truth for frame {index_number} ({entry['name']}); left out"
        )
        return None
    if (truth.get("width"), truth.get("height")) != (entry["width"], entry["height"]):
        problems.append(
            f"{tasks_folder / entry['task']}: {entry['name']} is {entry['width']}x{entry['height']} but its "
            f"ground truth is {truth.get('width')}x{truth.get('height')}; left out"
        )
        return None
    return frames[index_number]["objects"]


def _voc_object(item, spelled):
    """A ground-truth object as the annotator writes it (label spelled per batch)."""
    attributes = {}
    if item["label"] == "vehicle" and item.get("type"):
        attributes["type"] = item["type"]
    if item["label"] == "license_plate" and item.get("text"):
        attributes["text"] = item["text"]
    return {
        "label": spelled[item["label"]],
        "bbox": [float(value) for value in item["box"]],
        "difficult": bool(item.get("difficult")),
        "truncated": float(item.get("truncated") or 0.0) >= TRUNCATED_FLAG,
        "occluded": float(item.get("occluded") or 0.0) >= OCCLUDED_FLAG,
        "attributes": attributes,
    }


def _maybe_mistake(rng, rate, item, written, spelled, entry):
    """Draws whether this object gets a mistake; applies it to ``written`` in place.

    Returns:
        None, or (kind, extra box to add or None)
    """
    draw = rng.random()
    kind = MISTAKE_KINDS[int(rng.integers(len(MISTAKE_KINDS)))]
    if rate <= 0 or draw >= rate:
        return None
    if kind == "shifted":
        written["bbox"] = _shifted_box(rng, written["bbox"], entry["width"], entry["height"])
    elif kind == "wrong_label":
        other = [label for label in LABELS if label != item["label"]][0]
        written["label"] = spelled[other]
        written["attributes"] = {}
    elif kind == "duplicate":
        extra = copy.deepcopy(written)
        x0, y0, x1, y1 = written["bbox"]
        reach = np.minimum(1.0, DUPLICATE_JITTER * np.array([x1 - x0, y1 - y0] * 2))
        jitter = rng.uniform(-1.0, 1.0, size=4) * reach
        extra["bbox"] = _clip_box(
            [value + offset for value, offset in zip(written["bbox"], jitter, strict=True)],
            entry["width"],
            entry["height"],
        ) or list(written["bbox"])
        return kind, extra
    return kind, None


def _shifted_box(rng, box, width, height):
    x0, y0, x1, y1 = box
    box_width, box_height = x1 - x0, y1 - y0
    dx = rng.uniform(*SHIFT_RANGE) * box_width * rng.choice((-1, 1))
    dy = rng.uniform(*SHIFT_RANGE) * box_height * rng.choice((-1, 1))
    for sign_x, sign_y in ((1, 1), (-1, 1), (1, -1), (-1, -1)):
        moved = _clip_box(
            [x0 + sign_x * dx, y0 + sign_y * dy, x1 + sign_x * dx, y1 + sign_y * dy], width, height
        )
        if moved is not None and moved != [float(value) for value in box]:
            return moved
    return [float(value) for value in box]


def _clip_box(box, width, height):
    x0, y0, x1, y1 = box
    clipped = [
        round(min(max(x0, 0.0), width), 2),
        round(min(max(y0, 0.0), height), 2),
        round(min(max(x1, 0.0), width), 2),
        round(min(max(y1, 0.0), height), 2),
    ]
    if clipped[2] - clipped[0] < 1 or clipped[3] - clipped[1] < 1:
        return None
    return clipped


def _mistake_record(task, export_name, voc_image, entry, item, kind, written, extra):
    true_box = [float(value) for value in item["box"]]
    if kind == "missing":
        written_box, written_label = None, None
    elif kind == "duplicate":
        written_box, written_label = extra["bbox"], extra["label"]
    else:
        written_box, written_label = written["bbox"], written["label"]
    return {
        "task": task,
        "export": export_name,
        "image": voc_image.name,
        "file": voc_image.file_name,
        "original": entry.get("original"),
        "kind": kind,
        "label": item["label"],
        "written_label": written_label,
        "object_id": item.get("id"),
        "true_box": true_box,
        "written_box": written_box,
        "iou": None if written_box is None else round(boxes_lib.iou(true_box, written_box), 3),
    }


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


def _one_line(error):
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _attribute(detection, name):
    return detection[name] if detection.has_field(name) else None


def _fiftyone():
    from platelab.fiftyone_setup import import_fiftyone

    return import_fiftyone()


def _dataset_name(tasks_folder):
    import hashlib

    digest = hashlib.sha256(str(Path(tasks_folder).resolve()).encode("utf-8")).hexdigest()[:8]
    return f"platelab-cvat-{digest}"


def _credentials(username, password):
    credentials = {}
    if username:
        credentials["username"] = username
    if password:
        credentials["password"] = password
    return credentials


def _cvat_dataset(index, tasks_folder, dataset_name):
    """The persistent FiftyOne dataset of the task images (created or completed)."""
    fiftyone = _fiftyone()
    name = dataset_name or _dataset_name(tasks_folder)
    dataset = (
        fiftyone.load_dataset(name) if fiftyone.dataset_exists(name) else fiftyone.Dataset(name)
    )
    dataset.persistent = True
    present = set(dataset.values("filepath"))
    preannotations = {}
    for task in index["tasks"]:
        if task.get("preannotations"):
            found = read_voc_annotations(tasks_folder / task["preannotations"])
            preannotations.update(
                {(task["task"], name): objects for name, objects in found.items()}
            )
    samples = []
    for entry in index["images"]:
        filepath = str((tasks_folder / entry["task"] / "images" / entry["name"]).resolve())
        if filepath in present:
            continue
        sample = fiftyone.Sample(filepath=filepath, tags=[entry["task"]])
        for key in ("task", "source_id", "vantage", "lighting", "time", "frame_index", "sha256"):
            sample[key] = entry[key]
        sample["task_name"] = entry["name"]
        sample["width"], sample["height"] = entry["width"], entry["height"]
        objects = preannotations.get((entry["task"], Path(entry["name"]).stem))
        if objects:
            detections = []
            for item in objects:
                x0, y0, x1, y1 = item["bbox"]
                detections.append(
                    fiftyone.Detection(
                        label=item["label"],
                        bounding_box=[
                            x0 / entry["width"],
                            y0 / entry["height"],
                            (x1 - x0) / entry["width"],
                            (y1 - y0) / entry["height"],
                        ],
                    )
                )
            sample["ground_truth"] = fiftyone.Detections(detections=detections)
        samples.append(sample)
    if samples:
        dataset.add_samples(samples)
    return dataset


def _read_json_or_none(path):
    """Reads a JSON file; None where it does not exist, CvatError where it is unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise CvatError(f"{path}: unreadable ({error})") from None
