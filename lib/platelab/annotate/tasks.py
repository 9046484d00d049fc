"""CVAT task batches: stage 02's kept images cut into tasks, pre-annotated on request.

:func:`export_tasks` writes ``interim/cvat/tasks/``: per task its images
(hard links or copies), the zip to upload when creating the CVAT task, the
label set and, given a detector's predictions (a list, or a callable such as
the one :func:`preannotator` returns), pre-annotations as a CVAT-importable
VOC zip; ``index.json`` maps every task image back to its source.
:func:`load_index`, :func:`find_source` and :func:`task_of` map images that
come back from CVAT (renamed or not) to that index; :func:`tasks_table`
summarises it.
"""

import json
import logging
import os
import re
import shutil
import zipfile
from pathlib import Path

from tqdm.auto import tqdm

from platelab import LABELS, annotations, paths
from platelab.annotate.base import LABEL_SET, CvatError, _one_line, check_writable
from platelab.annotate.voc import VocImage, write_voc, write_zip
from platelab.atomic import atomic_dir, atomic_write_json
from platelab.metadata import sha256_file

logger = logging.getLogger(__name__)

INDEX_FORMAT = "platelab.cvat.tasks/1"
INDEX_NAME = "index.json"
LABELS_NAME = "labels.json"
DEFAULT_BATCH_SIZE = 50

_TASK_PATTERN = re.compile(r"(task_\d{3,})")


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
    check_writable(out_dir)
    problems = []
    sources = _describe_sources(curated, synthetic_dir, problems)
    entries = _usable_entries(curated, problems, progress)
    tasks, images = [], []
    predictor = predictions if callable(predictions) else None
    by_image = _index_predictions(predictions, entries, problems) if predictions is not None else {}
    try:
        with atomic_dir(out_dir) as staging:
            atomic_write_json(staging / LABELS_NAME, LABEL_SET)
            batches = [
                entries[start : start + batch_size] for start in range(0, len(entries), batch_size)
            ]
            for number, batch in enumerate(tqdm(batches, desc="tasks", disable=not progress), 1):
                task = f"task_{number:03d}"
                task_images = _write_task(staging, task, batch, sources, link_images, problems)
                preannotated, boxes = None, 0
                if predictions is not None:
                    preannotated, boxes = _write_preannotations(
                        staging, task, task_images, by_image, predictor, min_score, problems
                    )
                tasks.append(_task_entry(task, len(task_images), preannotated, boxes))
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
    write_zip(
        staging / task / f"{task}_images.zip",
        [(item["name"], folder / item["name"]) for item in entries],
        compression=zipfile.ZIP_STORED,
    )
    atomic_write_json(staging / task / LABELS_NAME, LABEL_SET)
    return entries


def _task_entry(task, images, preannotated, boxes):
    """The index's entry of a task: its image count and the paths of its files."""
    return {
        "task": task,
        "images": images,
        "folder": f"{task}/images",
        "zip": f"{task}/{task}_images.zip",
        "labels": f"{task}/{LABELS_NAME}",
        "preannotations": preannotated,
        "preannotated_boxes": boxes,
    }


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


def _write_preannotations(staging, task, task_images, by_image, predictor, min_score, problems):
    """Writes a task's pre-annotations as a VOC zip without images (CVAT's "Upload annotations").

    Returns:
        ``(path, boxes)``: the zip's path relative to the tasks folder and the
        number of boxes in it
    """
    voc_images = _preannotate(
        task_images,
        staging / task,
        by_image,
        predictor,
        min_score,
        annotations.build_alias_map(),
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
    return preannotated, boxes


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
