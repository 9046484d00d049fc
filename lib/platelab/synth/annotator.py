"""A simulated CVAT annotator: stage 00's ground truth, exported as CVAT would.

:func:`simulate_annotator` plays the annotator of stage 03 on synthetic data:
each task's frames get their ground truth, exported in CVAT's "PASCAL VOC 1.1"
layout in rotating forms, with label spellings that drift from batch to
batch, CVAT's ``frame_NNNNNN`` renaming and, optionally, a known set of
injected mistakes (``mistakes.json``) for stage 04's review to find.
:func:`batches_table`, :func:`mistakes_table` and :func:`plot_mistakes` show
what it did. It builds on :mod:`platelab.annotate` (the task index and the VOC
writer); :mod:`platelab.annotate` re-exports its public names (loaded on
first use). ``import platelab.synth`` does not import this module.
"""

import copy
import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from platelab import LABELS, visualize
from platelab import boxes as boxes_lib
from platelab.annotate.base import CvatError, check_writable
from platelab.annotate.tasks import load_index
from platelab.annotate.voc import EXPORT_FORMS, VocImage, write_voc
from platelab.atomic import atomic_dir, atomic_write_json

logger = logging.getLogger(__name__)

EXPORTS_FORMAT = "platelab.cvat.exports/1"
MISTAKES_FORMAT = "platelab.cvat.mistakes/1"
EXPORTS_NAME = "exports.json"
MISTAKES_NAME = "mistakes.json"

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


@dataclasses.dataclass
class _Tally:
    """What :func:`simulate_annotator` gathers across the tasks."""

    problems: list = dataclasses.field(default_factory=list)
    without_truth: list = dataclasses.field(default_factory=list)
    exports: list = dataclasses.field(default_factory=list)
    mistakes: list = dataclasses.field(default_factory=list)
    objects_seen: int = 0
    truth_cache: dict = dataclasses.field(default_factory=dict)


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
    :func:`platelab.annotate.tasks.find_source` maps them back).

    With ``inject_mistakes`` > 0 each object independently gets, at that
    rate, one mistake of :data:`MISTAKE_KINDS`: left out (``missing``),
    moved by 30-60 % of its size (``shifted``), written with the other label
    (``wrong_label``) or drawn twice (``duplicate``). Each is recorded in
    ``mistakes.json`` with the task, image, kind, true and written boxes.

    Args:
        tasks_folder: the folder written by :func:`platelab.annotate.tasks.export_tasks`
        out_dir: the exports folder to write (replaced as a whole)
        forms: export forms to rotate through (see :data:`platelab.annotate.voc.EXPORT_FORMS`)
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
    parameters = _checked_parameters(
        forms, inject_mistakes, label_drift, spellings, rename_frames, seed
    )
    tasks_folder = Path(tasks_folder)
    index = load_index(tasks_folder)
    out_dir = Path(out_dir)
    check_writable(out_dir)
    tally = _Tally()
    task_count = len(index["tasks"])
    batches = min(len(parameters["spellings"]), task_count) or 1
    try:
        with atomic_dir(out_dir) as staging:
            for position, task in enumerate(
                tqdm(index["tasks"], desc="exports", disable=not progress)
            ):
                batch = position * batches // max(task_count, 1)
                _export_task(staging, tasks_folder, index, task, tally, parameters, batch, position)
            mistakes_document = _mistakes_document(parameters, tally)
            document = {
                "format": EXPORTS_FORMAT,
                "parameters": parameters,
                "exports": tally.exports,
                "without_truth": tally.without_truth,
                "problems": tally.problems,
            }
            atomic_write_json(staging / MISTAKES_NAME, mistakes_document)
            atomic_write_json(staging / EXPORTS_NAME, document)
    except OSError as error:
        raise CvatError(
            f"{out_dir}: cannot write the exports ({error.strerror or error})"
        ) from None
    if tally.without_truth:
        logger.info(
            "%d image(s) without ground truth (photos or non-synthetic videos) left out of the exports",
            len(tally.without_truth),
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


# --------------------------------------------------------------------------- one task's export


def _checked_parameters(forms, inject_mistakes, label_drift, spellings, rename_frames, seed):
    """Checks :func:`simulate_annotator`'s parameters.

    Returns:
        the parameters as ``exports.json`` records them: ``forms`` (a list),
        ``label_drift``, ``spellings`` (the spelling sets to use, one per
        batch), ``inject_mistakes`` (the mistake rate, a float),
        ``rename_frames`` and ``seed`` (an int)

    Raises:
        CvatError: for an unknown form, a rate outside [0, 1] or a spelling
            set that does not spell exactly the canonical labels
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
    return {
        "forms": forms,
        "label_drift": bool(label_drift),
        "spellings": spellings,
        "inject_mistakes": rate,
        "rename_frames": bool(rename_frames),
        "seed": int(seed),
    }


def _export_task(staging, tasks_folder, index, task, tally, parameters, batch, position):
    """Annotates one task's images and writes its export (none where no image has ground truth).

    The task's export takes the batch's spellings, the next form in turn and,
    for every other task, CVAT's ``frame_NNNNNN`` names; its mistakes are
    drawn from a generator seeded with ``[seed, position + 1]``.

    Args:
        staging: the exports folder being written
        tasks_folder: the folder written by :func:`platelab.annotate.tasks.export_tasks`
        index: its index (:func:`platelab.annotate.tasks.load_index`)
        task: the index's entry of the task
        tally: the :class:`_Tally` to add the export, mistakes and problems to
        parameters: the dict of :func:`_checked_parameters`
        batch: the task's batch (0-based)
        position: the task's position in the index (0-based)
    """
    spelled = parameters["spellings"][batch]
    form = parameters["forms"][position % len(parameters["forms"])]
    renamed = parameters["rename_frames"] and position % 2 == 0
    rng = np.random.default_rng([parameters["seed"], position + 1])
    export_name = _export_name(task["task"], form)
    members = [entry for entry in index["images"] if entry["task"] == task["task"]]
    voc_images = []
    for entry in members:
        voc_image = _annotate_image(
            entry,
            index,
            tasks_folder,
            task,
            tally,
            renamed=renamed,
            export_name=export_name,
            spelled=spelled,
            rng=rng,
            rate=parameters["inject_mistakes"],
        )
        if voc_image is not None:
            voc_images.append(voc_image)
    if not voc_images:
        logger.info("%s has no image with ground truth: no export", task["task"])
        return
    labels = [spelled[label] for label in LABELS]
    write_voc(voc_images, staging / export_name, form=form, labels=labels)
    boxes = {label: 0 for label in labels}
    for image in voc_images:
        for item in image.objects:
            boxes[item["label"]] = boxes.get(item["label"], 0) + 1
    tally.exports.append(
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
                bool(item.get("difficult")) for image in voc_images for item in image.objects
            ),
            "mistakes": sum(record["task"] == task["task"] for record in tally.mistakes),
        }
    )


def _annotate_image(
    entry, index, tasks_folder, task, tally, *, renamed, export_name, spelled, rng, rate
):
    """One task image as the annotator exports it, mistakes included; None where it is left out.

    An image without ground truth goes to ``tally.without_truth``, a missing
    task image to ``tally.problems``; each object of the ground truth may get
    a mistake (drawn from ``rng`` at ``rate``), recorded in ``tally.mistakes``.
    """
    truth = _truth_for(entry, index, tasks_folder, tally.truth_cache, tally.problems)
    if truth is None:
        tally.without_truth.append(
            {
                "task": entry["task"],
                "image": entry["name"],
                "source_id": entry["source_id"],
                "kind": entry["kind"],
            }
        )
        return None
    name = entry["cvat_frame"] if renamed else Path(entry["name"]).stem
    image_path = tasks_folder / task["folder"] / entry["name"]
    if not image_path.is_file():
        tally.problems.append(f"{image_path}: task image is missing; left out")
        return None
    voc_image = VocImage(name, image_path, entry["width"], entry["height"])
    for item in truth:
        tally.objects_seen += 1
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
        tally.mistakes.append(
            _mistake_record(task["task"], export_name, voc_image, entry, item, kind, written, extra)
        )
    return voc_image


def _mistakes_document(parameters, tally):
    """The ``mistakes.json`` document: the rate, seed, kinds, objects seen, counts per kind, mistakes."""
    return {
        "format": MISTAKES_FORMAT,
        "rate": parameters["inject_mistakes"],
        "seed": parameters["seed"],
        "kinds": list(MISTAKE_KINDS),
        "objects": tally.objects_seen,
        "counts": {
            kind: sum(record["kind"] == kind for record in tally.mistakes) for kind in MISTAKE_KINDS
        },
        "mistakes": tally.mistakes,
    }


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


def _read_json_or_none(path):
    """Reads a JSON file; None where it does not exist, CvatError where it is unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise CvatError(f"{path}: unreadable ({error})") from None
