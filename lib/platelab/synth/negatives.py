"""Hard negatives pasted into real photos: lettering, stickers, lit lamps, time stamps.

Fine-tuned on real close-ups whose only writing is the plate (openalpr-br), the
starter learns that any row of characters or bright rectangle is a plate: on real US
traffic-camera photos most false positives of such a fine-tune are make and model
lettering (SILVERADO, GMC, TITAN), company lettering and telephone numbers, lit LED
brake lamps and the cameras' burnt-in time stamps. The scene details of the synthetic
corpus (``badges``, ``stickers``, ``lamps``, ``osd``: :func:`platelab.synth.video_specs`)
teach the starter that these are not plates, and a fine-tune on photos without them
undoes it. :func:`paste` brings the same distractors into the fine-tune's photos
(``negatives`` in :class:`platelab.train.TrainConfig`): drawn by the scene details' own
texture code, placed away from every annotated box, never annotated. Copy-paste
augmentation (Ghiasi et al., 2021) pastes objects with their labels; these are pasted
as background, to be learnt as not-a-plate at the sizes the photos show plates.
"""

import logging
import math

import numpy as np

from platelab.synth import badges, fences, lamps, stickers
from platelab.synth import osd as osd_lib

logger = logging.getLogger(__name__)

KINDS = ("lettering", "sticker", "lamp", "stamp", "fence")
"""What :func:`paste` draws: make and model lettering, a sticker or company lettering
(with a telephone number, web address or US DOT number), a lit lamp, a time stamp, a
stretch of railing, gate or chain-link fence (:mod:`platelab.synth.fences`)."""
COUNT = (2, 5)
"""How many distractors a photo gets (inclusive range)."""
WIDTH = (0.04, 0.3)
"""A distractor's width as a share of the photo's width (log-uniform): the width of the
plates of openalpr-br's close-ups (12-36 %) and smaller."""
FENCE_WIDTH = (0.15, 0.6)
"""A fence's width as a share of the photo's width (log-uniform): fixed cameras' gates
fill a quarter to a half of the frame."""
GAP = 0.1
"""Clearance around every annotated box, a share of the distractor's width."""
_FENCE_PIXELS = 400
"""Width in pixels at which a fence's texture is drawn (then resized by area, so that thin
bars fade as a camera's pixels average them)."""
_TRIES = 20
"""Placements tried for one distractor before it is left out."""


def paste(rng, image, boxes, count=COUNT, width=WIDTH, kinds=KINDS):
    """Pastes synthetic hard negatives into an RGB photo, clear of its boxes.

    Args:
        rng: a numpy Generator (the caller's: seeded by the run)
        image: ``(H, W, 3)`` uint8 RGB, changed in place (a view works)
        boxes: ``(G, 4)`` pixel boxes ``[xmin, ymin, xmax, ymax]`` kept clear (every
            annotated object, of every class)
        count: ``(low, high)`` distractors to paste, inclusive
        width: ``(low, high)`` share of the image width of each (log-uniform; fences
            :data:`FENCE_WIDTH`)
        kinds: which of :data:`KINDS` to draw from

    Returns:
        the pasted distractors, ``[(kind, (x0, y0, x1, y1)), ...]`` in pixels (a time
        stamp whose camera name is in another corner gives two)
    """
    full = image.shape[1]
    keep_clear = [tuple(float(value) for value in box) for box in np.asarray(boxes).reshape(-1, 4)]
    placed = []
    for _ in range(int(rng.integers(count[0], count[1] + 1))):
        kind = kinds[int(rng.integers(len(kinds)))]
        low, high = FENCE_WIDTH if kind == "fence" else width
        for _ in range(_TRIES):
            wide = full * math.exp(rng.uniform(math.log(low), math.log(high)))
            where = _place_stamp if kind == "stamp" else _place_texture
            drawn = where(rng, image, kind, wide, keep_clear, placed)
            if drawn:
                placed.extend((kind, box) for box in drawn)
                break
    return placed


def texture(rng, kind, background):
    """One distractor's image, before it is sized (48 px high or so).

    Args:
        rng: a numpy Generator
        kind: ``lettering``, ``sticker``, ``lamp`` or ``fence``
        background: the BGR colour it lies on (lettering picks an ink that shows)

    Returns:
        ``(h, w, 4)`` uint8 BGRA (alpha 255 where opaque)
    """
    if kind == "lettering":
        words = badges.MAKES + badges.MODELS + badges.TRIMS + badges.PICKUP_WORDS
        word = words[int(rng.integers(len(words)))]
        if rng.random() < 0.2:  # "T I T A N" across a tailgate
            word = " ".join(word)
        font = stickers.FONTS[int(rng.integers(len(stickers.FONTS)))]
        ink = badges.pick_ink(rng, background)
        return badges.lettering_texture(
            rng, word, font, background, ink, badges.text_aspect(word, font)
        )
    if kind == "sticker":
        if rng.random() < 0.5:  # a bumper sticker
            text = stickers.BUMPER_WORDS[int(rng.integers(len(stickers.BUMPER_WORDS)))]
            font = stickers.FONTS[int(rng.integers(len(stickers.FONTS)))]
            aspect = badges.text_aspect(text, font) * 1.25
            return _opaque(stickers.sticker_texture(rng, text, aspect))
        lines = stickers.work_lines(rng, "box_truck")  # a company's name, telephone, web...
        text = lines[int(rng.integers(len(lines)))]
        font = stickers.FONTS[int(rng.integers(len(stickers.FONTS)))]
        ink = badges.pick_ink(rng, background)
        return badges.lettering_texture(
            rng, text, font, background, ink, badges.text_aspect(text, font)
        )
    if kind == "lamp":
        style = lamps.STYLES[int(rng.integers(len(lamps.STYLES)))]
        aspect = float(rng.uniform(2.5, 10.0))
        lit = float(rng.uniform(0.7, 1.0))
        return _opaque(lamps.lamp_texture(rng, aspect, style, lit, clear=rng.random() < 0.2))
    if kind == "fence":  # drawn fine (bars 5-16 px wide), to be shrunk by area
        length = float(rng.uniform(2.0, 6.0))
        return fences.fence_texture(fences.random_fence(rng, length), _FENCE_PIXELS / length)
    raise ValueError(f"unknown distractor kind {kind!r} (expected one of {KINDS})")


def _place_texture(rng, image, kind, wide, boxes, placed):
    """Draws one texture ``wide`` pixels wide somewhere clear: ``[its box]``, or ``[]``."""
    height, width = image.shape[:2]
    x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
    background = tuple(int(value) for value in image[y, x, ::-1])
    drawn = texture(rng, kind, background)
    w = max(8, int(round(wide)))
    h = max(4, int(round(w * drawn.shape[0] / drawn.shape[1])))
    box = (x, y, x + w, y + h)
    if box[2] > width or box[3] > height or _hits(box, boxes, GAP * w):
        return []
    from platelab.model import resize_image

    sized = resize_image(drawn, (h, w), dtype=None)
    alpha = sized[..., 3:].astype(np.float32) / 255.0
    region = image[y : y + h, x : x + w].astype(np.float32)
    colour = sized[..., 2::-1].astype(np.float32)  # BGR -> RGB
    image[y : y + h, x : x + w] = np.round(region * (1.0 - alpha) + colour * alpha).astype(np.uint8)
    return [box]


def _place_stamp(rng, image, kind, wide, boxes, placed):
    """A camera's time stamp (:mod:`platelab.synth.osd`, sized as cameras write it, not
    ``wide``), in a corner: its text blocks' boxes, or ``[]`` where it would cover an
    annotated box or the photo has one already."""
    if any(other == "stamp" for other, _ in placed):
        return []
    height, width = image.shape[:2]
    look = None
    while look is None:
        look = osd_lib.random_osd(rng, width, height)
    before = image.copy()
    drawn = look.draw(image[..., ::-1], np.zeros((height, width), np.int32), rng.uniform(0, 86400))
    if any(_hits(box, boxes, 0) for box in drawn):
        image[:] = before
        return []
    return [tuple(int(value) for value in box) for box in drawn if box[2] > box[0]]


def _hits(box, boxes, gap):
    """Whether ``box`` comes within ``gap`` pixels of any of ``boxes``."""
    x0, y0, x1, y1 = box
    return any(
        x0 - gap < other[2] and other[0] < x1 + gap and y0 - gap < other[3] and other[1] < y1 + gap
        for other in boxes
    )


def _opaque(bgr):
    """A BGR image as BGRA, fully opaque."""
    alpha = np.full((*bgr.shape[:2], 1), 255, np.uint8)
    return np.concatenate([bgr, alpha], axis=2)
