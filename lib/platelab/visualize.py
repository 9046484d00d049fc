"""Figures shared by the notebooks: annotated frames and image grids."""

import logging

import cv2
import numpy as np

logger = logging.getLogger(__name__)

LABEL_COLORS_BGR = {
    "vehicle": (255, 160, 40),
    "license_plate": (40, 220, 255),
}
DEFAULT_COLOR_BGR = (200, 80, 255)
MISSED_COLOR_BGR = (40, 40, 220)
"""Red: objects the model missed, drawn beside its predictions."""


def draw_objects(image_bgr, objects, thickness=2, show_labels=True):
    """Draws labelled boxes on a copy of an image.

    Args:
        image_bgr: an HxWx3 uint8 BGR image
        objects: dicts with ``label``, ``bbox`` or ``box`` ([xmin, ymin,
            xmax, ymax] in pixels, xmax/ymax exclusive) and optionally ``score``
            and ``color`` (BGR; default: the label's)
        thickness: line width in pixels
        show_labels: whether to write the label (and score) above each box

    Returns:
        the annotated copy
    """
    canvas = image_bgr.copy()
    scale = max(0.35, min(canvas.shape[:2]) / 1400)
    for item in objects:
        color = item.get("color") or LABEL_COLORS_BGR.get(item["label"], DEFAULT_COLOR_BGR)
        box = item["bbox"] if "bbox" in item else item["box"]
        x0, y0, x1, y1 = (int(round(value)) for value in box)
        cv2.rectangle(canvas, (x0, y0), (max(x0, x1 - 1), max(y0, y1 - 1)), color, thickness)
        if not show_labels:
            continue
        text = item["label"].replace("license_plate", "plate")
        if item.get("score") is not None:
            text += f" {item['score']:.2f}"
        draw_label(canvas, text, x0, y0, y1, color, scale)
    return canvas


def draw_label(canvas, text, x0, y0, y1, color, scale, below_when_clipped=False):
    """Writes a filled text label above a box, in place.

    Args:
        canvas: the BGR image to draw on
        text: the label
        x0: the box's left edge
        y0: the box's top edge
        y1: the box's bottom edge
        color: the label's background colour (BGR); the text is black
        scale: OpenCV font scale
        below_when_clipped: put the label under the box when there is no
            room above it (otherwise it is pushed down to the image's top)
    """
    (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    top = y0 - height - baseline - 2
    if top < 0:
        top = y1 + 1 if below_when_clipped else 0
    cv2.rectangle(canvas, (x0, top), (x0 + width + 2, top + height + baseline + 2), color, -1)
    cv2.putText(
        canvas,
        text,
        (x0 + 1, top + height + 1),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        (0, 0, 0),
        1,
        cv2.LINE_AA,
    )


def image_grid(images_bgr, titles=None, columns=3, width_inches=15.0, caption=None):
    """Lays out images in a matplotlib grid.

    Args:
        images_bgr: a list of BGR uint8 images (any sizes)
        titles: optional titles, one per image
        columns: images per row
        width_inches: the figure's width
        caption: an optional line under the grid saying what to read from it

    Returns:
        the matplotlib Figure
    """
    import matplotlib.pyplot as plt

    count = max(1, len(images_bgr))
    columns = max(1, min(columns, count))
    rows = int(np.ceil(count / columns))
    aspect = 9 / 16
    if images_bgr:
        height, width = images_bgr[0].shape[:2]
        aspect = height / width
    figure, axes = plt.subplots(
        rows,
        columns,
        figsize=(width_inches, width_inches / columns * aspect * rows + (0.5 if caption else 0.2)),
        squeeze=False,
    )
    for index, axis in enumerate(axes.flat):
        axis.axis("off")
        if index >= len(images_bgr):
            continue
        axis.imshow(cv2.cvtColor(images_bgr[index], cv2.COLOR_BGR2RGB))
        if titles:
            axis.set_title(titles[index], fontsize=9)
    if caption:
        figure.text(0.5, 0.005, caption, ha="center", va="bottom", fontsize=10, style="italic")
    figure.tight_layout(rect=(0, 0.03 if caption else 0, 1, 1))
    return figure


def read_video_frame(video_path, index):
    """Reads one frame (0-based index) of a video as a BGR image.

    Raises:
        ValueError: if the video cannot be opened or has no such frame
    """
    capture = cv2.VideoCapture(str(video_path))
    try:
        if not capture.isOpened():
            raise ValueError(f"{video_path}: cannot open video")
        capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, frame = capture.read()
    finally:
        capture.release()
    if not ok:
        raise ValueError(f"{video_path}: no frame {index}")
    return frame


def add_caption(figure, text):
    """Writes a one-line caption under a figure saying what to read from it, and lays it out.

    Args:
        figure: a matplotlib Figure
        text: the caption
    """
    figure.text(0.5, 0.005, text, ha="center", va="bottom", fontsize=9, style="italic")
    figure.tight_layout(rect=(0, 0.05, 1, 1))


def plot_object_heights(heights, anchor_spec, readable_px=8, title=None):
    """Histogram of box heights at the network input, per class, beside the anchor heights.

    Args:
        heights: ``{label: (M,) heights in network pixels}`` (see
            :func:`platelab.train.object_heights`)
        anchor_spec: the model's anchor spec in network pixels (``"unit": "px"``)
        readable_px: the height below which a box is too small to score (a dashed line)
        title: the figure's title

    Returns:
        the matplotlib figure
    """
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(9, 4.5))
    values = [np.asarray(value, float) for value in heights.values() if len(value)]
    top = max([value.max() for value in values] + [2 * readable_px])
    bins = np.geomspace(1, max(top, 2), 40)
    for label, value in heights.items():
        if len(value):
            color = np.asarray(LABEL_COLORS_BGR.get(label, DEFAULT_COLOR_BGR)[::-1]) / 255
            axis.hist(value, bins=bins, alpha=0.55, color=color, label=f"{label} ({len(value)})")
    for shapes in anchor_spec["shapes"]:
        for _, height in shapes:
            axis.axvline(height, color="black", alpha=0.25, linewidth=1)
    axis.axvline(
        readable_px, color="red", linestyle="--", label=f"{readable_px} px: readable from here"
    )
    axis.set_xscale("log")
    axis.set_xlabel("box height in pixels at the network input (grey lines: anchor heights)")
    axis.set_ylabel("boxes")
    axis.set_title(title or "Box heights at the network input")
    axis.legend()
    small = sum(int((value < readable_px).sum()) for value in values)
    total = sum(len(value) for value in values)
    add_caption(
        figure,
        f"{small} of {total} boxes are under {readable_px} px high at this input size "
        "(ignored as difficult in training and scoring).",
    )
    return figure
