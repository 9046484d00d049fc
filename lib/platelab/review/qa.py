"""QA checks of the annotations (each a saved view and a count) and their statistics.

The checks (:data:`QA_CHECKS`) flag boxes outside the image or degenerate,
tiny boxes, duplicate boxes, plates outside every vehicle, images without
labels and unknown labels; the statistics are the class balance per batch or
vantage point and the boxes' sizes and aspects, as tables and figures.
"""

from collections import Counter, defaultdict

import numpy as np

from platelab import LABELS, visualize
from platelab import boxes as boxes_lib
from platelab.review.records import inside_fraction

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


def run_qa_checks(images, tiny_pixels=None, duplicate_iou=DUPLICATE_IOU):
    """Runs the QA checks (:data:`QA_CHECKS`) on loaded images.

    Sets ``qa_flags`` on every image and box, and returns the counts.

    Args:
        images: :class:`~platelab.review.ReviewImage` objects
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
                inside = max((inside_fraction(item["bbox"], box) for box in vehicles), default=0.0)
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
        images: :class:`~platelab.review.ReviewImage` objects
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
