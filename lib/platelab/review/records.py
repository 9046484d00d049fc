"""The review's record of one annotated image, its error type, and the box geometry its checks share.

Boxes are ``[xmin, ymin, xmax, ymax]`` in pixels (floats), as
:class:`ReviewImage` holds them.
"""

from dataclasses import dataclass, field
from pathlib import Path

from platelab.exceptions import PlatelabError


class ReviewError(PlatelabError, ValueError):
    """A problem that stops the review (one-line message naming the file or dataset)."""


@dataclass
class ReviewImage:
    """One annotated image as the review sees it.

    Attributes:
        batch: the batch (export) it came in
        name: its name within the batch (the VOC file stem)
        image_path: the image file
        width: width in pixels
        height: height in pixels
        objects: dicts with ``label`` (canonical, or as written when unknown),
            ``original_label``, ``known`` (bool), ``bbox`` ([xmin, ymin, xmax,
            ymax] pixels, floats, clipped to the image), ``raw_bbox`` (as
            written in the XML), ``difficult``, ``occluded``, ``truncated``,
            ``attributes`` (dict) and ``qa_flags`` (list)
        source_id: the video (or photo) it comes from, if known
        vantage: the source's vantage point, if known
        lighting: the source's lighting, if known
        time: seconds into the source video, if known
        frame_index: frame number in the source video, if known
        sha256: SHA-256 of the image file
        problems: one-line messages about this image
        dropped_boxes: boxes of the XML the loader dropped (empty inside the image)
        qa_flags: the QA checks the image fails (see :func:`platelab.review.run_qa_checks`)
    """

    batch: str
    name: str
    image_path: Path
    width: int
    height: int
    objects: list = field(default_factory=list)
    source_id: str | None = None
    vantage: str | None = None
    lighting: str | None = None
    time: float | None = None
    frame_index: int | None = None
    sha256: str | None = None
    problems: list = field(default_factory=list)
    dropped_boxes: int = 0
    qa_flags: list = field(default_factory=list)

    @property
    def key(self):
        """``<batch>/<name>``: unique over all batches."""
        return f"{self.batch}/{self.name}"


def box_area(box):
    """Area of an ``xyxy`` box in square pixels (0 for an inverted box)."""
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def inside_fraction(inner, outer):
    """The fraction of ``inner``'s area that lies in ``outer`` (``xyxy`` boxes; 0 for an empty ``inner``)."""
    x0, y0 = max(inner[0], outer[0]), max(inner[1], outer[1])
    x1, y1 = min(inner[2], outer[2]), min(inner[3], outer[3])
    intersection = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    area = box_area(inner)
    return intersection / area if area > 0 else 0.0


def grown(box, pixels=1.0):
    """The box grown by a pixel on each side: tiny boxes' IoU then forgives rounding to whole pixels."""
    return [box[0] - pixels, box[1] - pixels, box[2] + pixels, box[3] + pixels]
