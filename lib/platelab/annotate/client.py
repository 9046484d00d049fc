"""A real CVAT server, reached through FiftyOne's CVAT annotation backend.

:func:`check_server` checks that a server answers; :func:`upload_tasks`
creates one CVAT task per task batch (the images and their pre-annotations go
into a persistent FiftyOne dataset first, see :func:`fiftyone_label_schema`
for the label schema); :func:`download_annotations` brings the annotations
back as VOC folders for :func:`platelab.annotate.exports.import_exports`.
Both are skipped when no server URL is configured. FiftyOne is imported only
when a server is used.
"""

import logging
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from platelab import LABELS
from platelab.annotate.base import LABEL_SET, CvatError, _one_line
from platelab.annotate.tasks import load_index
from platelab.annotate.voc import VocImage, read_voc_annotations, write_voc

logger = logging.getLogger(__name__)


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
        tasks_folder: the folder written by :func:`platelab.annotate.tasks.export_tasks`
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
    :func:`platelab.annotate.exports.import_exports`.

    Args:
        tasks_folder: the folder written by :func:`platelab.annotate.tasks.export_tasks`
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
