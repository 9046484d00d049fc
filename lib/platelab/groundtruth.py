"""Reading the synthetic videos' ground truth: tables, gallery frames and statistics.

Stage 00 writes one JSON file per video (see :mod:`platelab.synth`); later
stages turn it into annotation batches, and the notebooks summarise it with
the functions here.
"""

import json
import logging
from collections import Counter
from pathlib import Path

import numpy as np

from platelab import visualize
from platelab.boxes import iou_matrix

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


def object_under(box, objects, label):
    """The truth object a tracked box lies on.

    Args:
        box: ``[x1, y1, x2, y2]`` in pixels
        objects: one frame's truth objects (``frame["objects"]`` of
            :func:`load_ground_truth`), each with ``id``, ``label`` and ``box``
        label: the box's label

    Returns:
        the ``id`` of the object of ``label`` whose box holds ``box``'s centre and
        overlaps it most (IoU), or None when no box of ``label`` holds the centre
    """
    x, y = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
    holding = [
        item
        for item in objects
        if item["label"] == label
        and item["box"][0] <= x < item["box"][2]
        and item["box"][1] <= y < item["box"][3]
    ]
    if not holding:
        return None
    overlaps = iou_matrix(
        np.asarray(box, np.float64)[None], np.array([i["box"] for i in holding], np.float64)
    )
    return holding[int(np.argmax(overlaps[0]))]["id"]


def follow_tracks(track_log, truth, labels=("vehicle", "license_plate")):
    """What each confirmed track followed, frame by frame.

    Args:
        track_log: ``(frame index, track id, label, [x1, y1, x2, y2])`` for each
            confirmed track's box in each frame (:attr:`VideoResult.track_log
            <platelab.deploy.video.VideoResult>`); frame indices count from 0, as the
            truth's ``frames`` do
        truth: the video's ground-truth dict (:func:`load_ground_truth`)
        labels: the labels followed

    Returns:
        ``{label: {track id: Counter of truth object ids (None: no object)}}``
    """
    followed = {label: {} for label in labels}
    frames = truth["frames"]
    for frame, track, label, box in track_log:
        if label in followed and 0 <= frame < len(frames):
            owner = object_under(box, frames[frame]["objects"], label)
            followed[label].setdefault(track, Counter())[owner] += 1
    return followed


def count_breakdown(followed, truth, label):
    """Where a tracker's count of one label comes from.

    Tracks and truth objects are paired one to one, greedily by the frames a track's box
    lay on the object (:func:`object_under`), most first, as IDF1 pairs trajectories (by
    an optimal assignment there): a track that hops from car to car follows the car it
    stayed on longest that no other track followed longer. Each object is *followed* by
    its track, or *missed*. A track left unpaired is an extra track (a *fragment*) when
    it lay mostly on a counted object, *false* when mostly on no object, and *ignored*
    when mostly on an object the truth does not count (*difficult* in every frame: too
    small or too hidden to score); so is a track paired with such an object. Then
    ``tracks = objects - missed + fragments + false + ignored``: a count near the truth
    can hide misses offset by extra tracks.

    Args:
        followed: one label's ``{track id: Counter of object ids}`` (:func:`follow_tracks`)
        truth: the video's ground-truth dict
        label: the label

    Returns:
        a dict of counts: ``tracks``; ``objects`` (counted, :func:`distinct_objects`);
        ``missed`` (counted objects no track follows); ``fragments``; ``false``;
        ``ignored``
    """
    countable = {
        item["id"]
        for frame in truth["frames"]
        for item in frame["objects"]
        if item["label"] == label and not item.get("difficult")
    }
    pairs = sorted(
        (
            (-frames, str(track), str(owner), track, owner)
            for track, votes in followed.items()
            for owner, frames in votes.items()
            if owner is not None
        ),
    )
    paired = {}
    for *_, track, owner in pairs:
        if track not in paired and owner not in paired.values():
            paired[track] = owner
    kinds = Counter()
    for track, votes in followed.items():
        owner = paired.get(track)
        if owner is not None:
            kinds["followed" if owner in countable else "ignored"] += 1
            continue
        most = votes.most_common(1)[0][0]
        kinds["false" if most is None else "fragments" if most in countable else "ignored"] += 1
    return {
        "tracks": len(followed),
        "objects": len(countable),
        "missed": len(countable) - kinds["followed"],
        "fragments": kinds["fragments"],
        "false": kinds["false"],
        "ignored": kinds["ignored"],
    }


def track_breakdown(track_log, truth, labels=("vehicle", "license_plate")):
    """:func:`count_breakdown` for each label of a tracked video.

    Returns:
        ``{label: count_breakdown dict}``
    """
    followed = follow_tracks(track_log, truth, labels)
    return {label: count_breakdown(followed[label], truth, label) for label in labels}


def track_breakdown_table(breakdown):
    """A pandas DataFrame of :func:`track_breakdown`: one row per label.

    The columns read left to right as a sum: the true objects, less those missed, plus
    extra tracks on one object, tracks on nothing and tracks on objects too small to
    count, give the tracks (the count compared with the true objects).
    """
    import pandas as pd

    columns = {
        "objects": "true objects",
        "missed": "missed",
        "fragments": "extra tracks on one object",
        "false": "tracks on nothing",
        "ignored": "tracks on objects too small to count",
        "tracks": "tracks (the count)",
    }
    rows = {
        label: {name: parts[key] for key, name in columns.items()}
        for label, parts in breakdown.items()
    }
    return pd.DataFrame.from_dict(rows, orient="index")


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
