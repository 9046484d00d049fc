"""The review's summary file (``review.json``): counts, QA, the ranking and its measured quality."""

from pathlib import Path

SUMMARY_FORMAT = "platelab.review/1"
SUMMARY_NAME = "review.json"
"""The review's summary file in ``data/<workspace>/interim/review/``."""


def write_summary(path, images, qa_table, ranking, quality=None, problems=()):
    """Writes the review's summary JSON (atomically): counts, QA, the ranking, the measured quality.

    Returns:
        the Path written
    """
    from platelab.atomic import atomic_write_json

    document = {
        "format": SUMMARY_FORMAT,
        "images": len(images),
        "boxes": sum(len(image.objects) for image in images),
        "batches": sorted({image.batch for image in images}),
        "qa": {
            check: {"images": int(row["images"]), "boxes": int(row["boxes"])}
            for check, row in qa_table.iterrows()
        },
        "ranking": [
            {
                "key": item["key"],
                "score": item["score"],
                "evidence": [entry["message"] for entry in item["evidence"]],
            }
            for item in ranking
            if item["score"] > 0
        ],
        "quality": quality,
        "problems": list(problems),
    }
    path = Path(path)
    atomic_write_json(path, document)
    return path
