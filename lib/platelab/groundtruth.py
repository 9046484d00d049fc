"""Reading the synthetic videos' ground truth: tables, gallery frames and statistics.

Stage 00 writes one JSON file per video (see :mod:`platelab.synth`); later
stages turn it into annotation batches, and the notebooks summarise it with
the functions here.
"""

import json
import logging
from pathlib import Path

import numpy as np

from platelab import visualize

logger = logging.getLogger(__name__)


def load_ground_truth(output_dir, video):
    """Reads one video's ground-truth JSON.

    Args:
        output_dir: the synthetic set's folder (holding ``manifest.json``)
        video: the video's manifest entry

    Returns:
        the ground-truth dict
    """
    path = Path(output_dir) / video["ground_truth"]
    return json.loads(path.read_text(encoding="utf-8"))


def distinct_objects(truth, labels=("vehicle", "license_plate")):
    """The number of distinct objects of each label in a video: what a tracker should count.

    An object counts when it is not *difficult* (too small or too hidden to score, see
    :mod:`platelab.synth`) in at least one frame.

    Args:
        truth: a video's ground-truth dict (:func:`load_ground_truth`)
        labels: the labels counted

    Returns:
        ``{label: count}`` for every label in ``labels``
    """
    ids = {label: set() for label in labels}
    for frame in truth["frames"]:
        for item in frame["objects"]:
            if item["label"] in ids and not item.get("difficult"):
                ids[item["label"]].add(item["id"])
    return {label: len(found) for label, found in ids.items()}


def manifest_table(manifest):
    """Returns a pandas DataFrame with one row per video of a manifest."""
    import pandas as pd

    rows = []
    for video in manifest["videos"]:
        counts = video.get("objects", {})
        rows.append(
            {
                "source_id": video["source_id"],
                "vantage": video["vantage"],
                "lighting": video.get("lighting"),
                "frames": video["frames"],
                "seconds": round(video["frames"] / video["fps"], 2),
                "vehicle boxes": counts.get("vehicle", 0),
                "plate boxes": counts.get("license_plate", 0),
            }
        )
    return pd.DataFrame(rows).set_index("source_id")


def ground_truth_table(output_dir, manifest):
    """Returns every ground-truth object of a synthetic set as a pandas DataFrame.

    Columns: ``source_id``, ``vantage``, ``lighting``, ``frame``, ``state``,
    ``label``, ``width``, ``height``, ``aspect``, ``occluded``, ``truncated``,
    ``difficult``, ``style`` (plates) and ``type`` (vehicles).
    """
    import pandas as pd

    rows = []
    for video in manifest["videos"]:
        truth = load_ground_truth(output_dir, video)
        for frame in truth["frames"]:
            for item in frame["objects"]:
                x0, y0, x1, y1 = item["box"]
                width, height = x1 - x0, y1 - y0
                rows.append(
                    {
                        "source_id": video["source_id"],
                        "vantage": video["vantage"],
                        "lighting": truth.get("lighting"),
                        "frame": frame["index"],
                        "state": frame.get("state", "ok"),
                        "label": item["label"],
                        "width": width,
                        "height": height,
                        "aspect": width / height if height else np.nan,
                        "occluded": item.get("occluded", 0.0),
                        "truncated": bool(item.get("truncated", False)),
                        "difficult": bool(item.get("difficult", False)),
                        "style": item.get("style"),
                        "type": item.get("type"),
                    }
                )
    columns = [
        "source_id", "vantage", "lighting", "frame", "state", "label", "width", "height",
        "aspect", "occluded", "truncated", "difficult", "style", "type",
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def frame_states(output_dir, manifest):
    """Counts frames per state (``ok``, ``black``, ``frozen``, ``empty``) per video.

    Returns:
        a pandas DataFrame indexed by source id
    """
    import pandas as pd

    counts = {}
    for video in manifest["videos"]:
        truth = load_ground_truth(output_dir, video)
        states = {}
        for frame in truth["frames"]:
            state = frame.get("state", "ok")
            states[state] = states.get(state, 0) + 1
        counts[video["source_id"]] = states
    return pd.DataFrame.from_dict(counts, orient="index").fillna(0).astype(int)


def gallery_frames(output_dir, manifest, per_video=1):
    """Picks frames with many objects from each video and draws their ground truth.

    Frames are decoded from the mp4 files, so the gallery also checks that
    the encoded video and the ground truth line up.

    Args:
        output_dir: the synthetic set's folder
        manifest: its manifest
        per_video: frames to take from each video

    Returns:
        (images, titles): annotated BGR images and a title for each
    """
    images, titles = [], []
    for video in manifest["videos"]:
        truth = load_ground_truth(output_dir, video)
        candidates = [frame for frame in truth["frames"] if frame.get("state", "ok") == "ok"]
        candidates.sort(
            key=lambda frame: (
                -sum(item["label"] == "license_plate" for item in frame["objects"]),
                -len(frame["objects"]),
                frame["index"],
            )
        )
        for frame in candidates[:per_video]:
            image = visualize.read_video_frame(Path(output_dir) / video["video"], frame["index"])
            images.append(visualize.draw_objects(image, frame["objects"]))
            plates = sum(item["label"] == "license_plate" for item in frame["objects"])
            titles.append(
                f"{video['vantage']} · {truth.get('lighting', '')} · frame {frame['index']} · "
                f"{len(frame['objects']) - plates} vehicles, {plates} plates"
            )
    return images, titles


def plot_statistics(objects, manifest=None):
    """Plots box heights per class, plate aspect ratios and plate styles.

    Args:
        objects: the DataFrame from :func:`ground_truth_table`
        manifest: unused; kept for a stable call signature in notebooks

    Returns:
        the matplotlib Figure
    """
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    bins = np.logspace(0, np.log10(max(2.0, objects["height"].max() if len(objects) else 2)), 40)
    for label, color in (("vehicle", "tab:orange"), ("license_plate", "goldenrod")):
        heights = objects.loc[objects["label"] == label, "height"]
        axes[0].hist(heights, bins=bins, alpha=0.6, label=f"{label} ({len(heights)})", color=color)
    axes[0].set_xscale("log")
    axes[0].set_xlabel("box height (pixels, log scale)")
    axes[0].set_ylabel("boxes")
    axes[0].set_title("Box heights: plates are small")
    axes[0].legend()

    plates = objects[objects["label"] == "license_plate"]
    for style, color in (("us", "tab:red"), ("eu", "tab:blue")):
        aspects = plates.loc[plates["style"] == style, "aspect"].dropna()
        axes[1].hist(
            aspects, bins=30, alpha=0.6, label=f"{style.upper()} ({len(aspects)})", color=color
        )
    axes[1].set_xlabel("plate box width / height")
    axes[1].set_ylabel("plates")
    axes[1].set_title("Plate box aspect ratio (after perspective)")
    axes[1].legend()

    counts = objects.groupby(["vantage", "label"]).size().unstack(fill_value=0)
    counts.plot.bar(ax=axes[2], color=["goldenrod", "tab:orange"][: len(counts.columns)])
    axes[2].set_xlabel("vantage point")
    axes[2].set_ylabel("boxes")
    axes[2].set_title("Boxes per vantage point")
    axes[2].tick_params(axis="x", rotation=30)
    visualize.add_caption(
        figure,
        "Read: the smallest plate heights set the smallest anchors; the aspect spread sets the anchor ratios.",
    )
    return figure
