"""The review's FiftyOne dataset: samples, saved views, predictions, the App and review tags.

The images go into **one persistent FiftyOne dataset**, reloaded
idempotently (samples keyed by their stable file path; review tags kept
across reloads). Labels are written as spelled and mapped to the canonical
labels with ``map_labels``; each QA check and the likely-mistake ranking is a
saved view. With a detector's predictions, FiftyOne Brain's mistakenness
and missing-box candidates are saved views too.
"""

import re
from collections import defaultdict

from tqdm.auto import tqdm

from platelab import annotations
from platelab.review.load import load_aliases
from platelab.review.qa import QA_CHECKS
from platelab.review.records import ReviewError

REVIEW_TAGS = ("fix", "ok", "exclude")
"""The tags a reviewer gives images (stage 05 leaves out ``exclude``, warns about ``fix``)."""

LIKELY_MISTAKES_VIEW = "likely_mistakes"
"""Saved view: images with any evidence of a mistake, most suspicious first."""
MISTAKENNESS_VIEW = "mistakenness"
"""Saved view (with predictions): images by FiftyOne Brain's mistakenness, highest first."""
MISSING_CANDIDATES_VIEW = "missing_box_candidates"
"""Saved view (with predictions): confident predictions without a matching ground-truth box."""


def build_dataset(images, name, *, aliases=None, ranking=None, persistent=True, progress=True):
    """Loads the images into one FiftyOne dataset, idempotently.

    Samples are keyed by their stable file path: a reload updates fields and
    labels but keeps review tags; samples no longer in any batch are removed
    (and listed in the returned problems). Labels are written as spelled, then
    mapped to the canonical labels with ``map_labels``; unknown spellings stay
    as written with ``unknown_label=True``. QA flags (run :func:`~platelab.review.run_qa_checks`
    first) and the ranking's evidence are stored, and the saved views made
    (:func:`save_views`).

    Args:
        images: :class:`~platelab.review.ReviewImage` objects with stable image paths
        name: the dataset name (e.g. :func:`~platelab.review.default_dataset_name`)
        aliases: canonical -> spellings (default :func:`~platelab.review.load_aliases`)
        ranking: optionally the list of :func:`~platelab.review.rank_images`
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


def _label_key(label):
    """A label's spelling as the alias map keys it: lower case, runs of spaces, ``_`` and ``-`` one space."""
    return re.sub(r"[\s_\-]+", " ", str(label).strip().lower())


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
    """The FiftyOne sample of a :class:`~platelab.review.ReviewImage` (labels as written; mapped afterwards)."""
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
