"""How well a likely-mistake ranking finds known mistakes (those a simulated annotator injected).

A mistake counts as found when its image lies in the top share of the
ranking a reviewer opens; :func:`review_quality` counts them, and
:func:`review_curve` draws the share found against the share reviewed.
"""

import math
from collections import Counter

import numpy as np

from platelab import visualize


def review_quality(ranking, mistakes, fraction=0.1):
    """How many known mistakes the top of a ranking holds.

    Args:
        ranking: the list of :func:`~platelab.review.rank_images` (most suspicious first)
        mistakes: the injected mistakes (``mistakes.json`` of
            :func:`platelab.annotate.simulate_annotator`, loaded), or a list of its
            records (``export`` or ``batch``, ``image``, ``kind``)
        fraction: the share of images reviewed (the top of the ranking)

    Returns:
        a dict: ``fraction``, ``images``, ``reviewed`` (images in the top),
        ``images_with_mistakes``, ``mistakes``, ``found`` (mistakes in
        reviewed images), ``recall`` (found / mistakes; None without
        mistakes), ``unmatched`` (mistakes naming no ranked image) and
        ``by_kind`` (kind -> [found, total])
    """
    records = mistakes.get("mistakes", []) if isinstance(mistakes, dict) else list(mistakes or [])
    ranked_keys = [item["key"] for item in ranking]
    reviewed = max(1, math.ceil(fraction * len(ranked_keys) - 1e-9)) if ranked_keys else 0
    top = set(ranked_keys[:reviewed])
    known = set(ranked_keys)
    by_kind = {}
    found = unmatched = 0
    images_with_mistakes = set()
    for record in records:
        key = mistake_key(record)
        counts = by_kind.setdefault(record.get("kind", "?"), [0, 0])
        counts[1] += 1
        if key not in known:
            unmatched += 1
            continue
        images_with_mistakes.add(key)
        if key in top:
            found += 1
            counts[0] += 1
    return {
        "fraction": fraction,
        "images": len(ranked_keys),
        "reviewed": reviewed,
        "images_with_mistakes": len(images_with_mistakes),
        "mistakes": len(records),
        "found": found,
        "recall": found / len(records) if records else None,
        "unmatched": unmatched,
        "by_kind": by_kind,
    }


def mistake_key(record):
    """The ``<batch>/<image>`` key of an injected-mistake record (the export's name without ``.zip``)."""
    batch = record.get("batch") or record.get("export") or ""
    if batch.lower().endswith(".zip"):
        batch = batch[: -len(".zip")]
    return f"{batch}/{record.get('image')}"


def review_curve(ranking, mistakes):
    """Share of the known mistakes found against the share of images reviewed, in ranking order.

    Returns:
        (reviewed fractions, found fractions): numpy arrays starting at 0
    """
    records = mistakes.get("mistakes", []) if isinstance(mistakes, dict) else list(mistakes or [])
    per_image = Counter(mistake_key(record) for record in records)
    counts = np.array([per_image.get(item["key"], 0) for item in ranking], dtype=float)
    reviewed = np.arange(len(counts) + 1) / max(len(counts), 1)
    found = np.concatenate([[0.0], np.cumsum(counts)]) / max(counts.sum(), 1.0)
    return reviewed, found


def plot_review_curve(ranking, mistakes, fraction=0.1):
    """The review curve (:func:`review_curve`) against random order, with the reviewed share marked.

    Returns:
        the matplotlib Figure
    """
    import matplotlib.pyplot as plt

    reviewed, found = review_curve(ranking, mistakes)
    quality = review_quality(ranking, mistakes, fraction)
    figure, axis = plt.subplots(figsize=(6.5, 4))
    axis.plot(100 * reviewed, 100 * found, label="model-free ranking")
    axis.plot([0, 100], [0, 100], linestyle="--", color="grey", label="random order")
    axis.axvline(100 * fraction, color="tab:red", linewidth=1)
    recall = quality["recall"] or 0.0
    axis.annotate(
        f"top {fraction:.0%}: {recall:.0%} of the mistakes",
        (100 * fraction, 100 * recall),
        xytext=(8, -14),
        textcoords="offset points",
        fontsize=9,
    )
    axis.set_xlabel("images reviewed, most suspicious first (%)")
    axis.set_ylabel("injected mistakes found (%)")
    axis.set_title(f"Review quality: {quality['mistakes']} mistakes in {quality['images']} images")
    axis.legend(loc="lower right")
    visualize.add_caption(
        figure,
        "The steeper the curve, the fewer images a reviewer must open to catch the annotators' mistakes.",
    )
    return figure
