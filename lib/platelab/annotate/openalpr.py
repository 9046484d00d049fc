"""Plates annotated in the OpenALPR benchmark format, read into CVAT's VOC layout.

The public openalpr/benchmarks repository (folder ``endtoend``) holds real photos of
US, EU and Brazilian plates. Each photo ``<name>.jpg`` has a text file ``<name>.txt``
beside it with one line per annotated plate, tab- or space-separated::

    <image file name>  <x>  <y>  <width>  <height>  <plate text>

with the box in pixels from the top-left corner of the photo. The US part is what
elevated fixed cameras see (150 of its 222 photos are 1280x720 frames, plates 58-159
px wide), so it is a real stand-in for traffic cameras; only one plate per photo is
annotated (others in view are not, and score as false positives).

:func:`read_openalpr_folder` turns a folder into :class:`~platelab.annotate.voc.VocImage`
objects (label ``license_plate``, the text as a ``text`` attribute) and one-line
problems; :func:`write_openalpr_voc` writes them as a VOC folder for ``platelab
evaluate``. The source folder is never modified.
"""

import logging
from pathlib import Path

import cv2

from platelab.annotate.voc import VocImage, write_voc

logger = logging.getLogger(__name__)

LABEL = "license_plate"
"""The label every OpenALPR box gets."""


def read_openalpr_folder(folder):
    """Reads a folder of OpenALPR benchmark photos and their ``.txt`` annotations.

    Args:
        folder: e.g. ``benchmarks/endtoend/us`` (``<name>.jpg`` and ``<name>.txt``)

    Returns:
        ``(images, problems)``: :class:`VocImage` objects, sorted by name, with boxes
        ``[xmin, ymin, xmax, ymax]`` in pixels (clipped to the photo), and one-line
        messages naming each file skipped and why (an unreadable line or photo, a box
        outside the photo, a missing photo)

    Raises:
        FileNotFoundError: if ``folder`` is not a folder
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder of OpenALPR benchmark photos")
    images, problems = [], []
    for text_file in sorted(folder.glob("*.txt")):
        image, problem = _read_one(text_file)
        if problem:
            problems.append(problem)
        if image is not None:
            images.append(image)
    names = [image.name for image in images]
    if len(set(names)) != len(names):
        duplicates = sorted({name for name in names if names.count(name) > 1})
        problems.append(f"{folder}: photos annotated twice, skipped: {', '.join(duplicates)}")
        images = [image for image in images if image.name not in duplicates]
    return images, problems


def _read_one(text_file):
    """One annotation file: ``(VocImage or None, problem or None)``."""
    try:
        lines = [line for line in text_file.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as error:
        return None, f"{text_file}: not readable ({error}), skipped"
    if not lines:
        return None, f"{text_file}: no plate annotated, skipped"
    boxes, photo_name = [], None
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        try:
            name = fields[0]
            x, y, width, height = (float(value) for value in fields[1:5])
        except (IndexError, ValueError):
            return None, (
                f"{text_file}: line {number} is not 'file x y width height text', skipped"
            )
        if photo_name not in (None, name):
            return None, f"{text_file}: names two photos ({photo_name}, {name}), skipped"
        photo_name = name
        if width <= 0 or height <= 0:
            return None, f"{text_file}: line {number} has an empty box, skipped"
        text = " ".join(fields[5:])
        boxes.append(((x, y, x + width, y + height), text))
    photo = text_file.parent / Path(photo_name).name
    if photo.stem.startswith(".") or not photo.stem:
        return None, f"{text_file}: names the photo {photo_name!r}, not a safe name, skipped"
    image = cv2.imread(str(photo)) if photo.is_file() else None
    if image is None:
        return None, f"{photo}: missing or not a readable image, skipped"
    height, width = image.shape[:2]
    objects = []
    for (x1, y1, x2, y2), text in boxes:
        clipped = [max(0.0, x1), max(0.0, y1), min(float(width), x2), min(float(height), y2)]
        if clipped[2] - clipped[0] < 1 or clipped[3] - clipped[1] < 1:
            return None, f"{text_file}: a box lies outside the {width}x{height} photo, skipped"
        item = {"label": LABEL, "bbox": clipped}
        if text:
            item["attributes"] = {"text": text}
        objects.append(item)
    return VocImage(photo.stem, photo, width, height, objects), None


def write_openalpr_voc(folder, destination):
    """Writes a folder of OpenALPR benchmark photos as a VOC folder.

    Args:
        folder: the OpenALPR folder (see :func:`read_openalpr_folder`)
        destination: the VOC folder to write (``Annotations/``, ``JPEGImages/``,
            ``ImageSets/Main/default.txt``, ``labelmap.txt``); replaced as a whole,
            written under a temporary name first

    Returns:
        ``(images, problems)``: the photos written, and the files skipped
    """
    images, problems = read_openalpr_folder(folder)
    for problem in problems:
        logger.warning(problem)
    if not images:
        raise FileNotFoundError(f"{folder}: no annotated OpenALPR photos found")
    write_voc(images, destination, form="folder", labels=[LABEL])
    return images, problems
