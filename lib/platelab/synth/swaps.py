"""Synthetic US and EU plates drawn over the plates of real photos (plate swaps).

Fine-tuned on real close-ups of one country's plates (openalpr-br: Brazilian plates,
about 3:1, a fifth of the photo wide), a detector learns plates of that look at
close-up sizes, while US (2:1) and EU (4.7:1) plates it has seen only in the synthetic
corpus, where they are at most a few dozen pixels wide. On real EU close-ups
(openalpr/benchmarks' ``endtoend/eu``, plates a quarter of the photo wide) such a
fine-tune finds the plates at half their size far better than as they are (AP50 0.98
against 0.87). :func:`swap` shows the fine-tune those plates at close-up sizes in
real scenes: over each plate of a copy of a photo it draws a synthetic US or EU plate
(:mod:`platelab.synth.plates`, with the corpus' varied looks on most), as wide as the
plate it replaces at its own aspect ratio (a US plate is taller than a Brazilian one and
hides it; an EU plate is lower, and a dark plate holder the old plate's size behind it
hides the rest); the new plate's box replaces the old one. It is copy-paste augmentation
(Ghiasi et al., 2021) in which the pasted object hides the one it replaces.
"""

import logging
import math

import cv2
import numpy as np

from platelab.synth import plates

logger = logging.getLogger(__name__)

STYLES = ("us", "eu")
"""The plate styles drawn, with equal odds."""
LOOK_SHARE = 0.8
"""Share of the drawn plates given the real plates' looks (:func:`plates.vary_look`:
graphic backgrounds, frames, stickers, wear); the rest are plain."""
COVER = (1.0, 1.12)
"""How much wider than the old plate a new plate is drawn (uniform), so that no strip of
the old plate shows: never wider than that, since plates (and boxes) larger than the
photos' own teach the fine-tune to box whole gates and bumpers as plates."""
HOLDER = (15.0, 70.0)
"""Grey level of the plate holder drawn behind a plate longer than the one it replaces
(uniform): black and grey plastic."""
BRIGHTNESS = (0.55, 1.05)
"""The new plate's brightness, a factor of the sprite's (uniform): photos' plates lie
in shade and under grey skies."""
BLUR = (0.0, 1.0)
"""Gaussian blur of the new plate, sigma in pixels of the photo (uniform)."""
NOISE = (0.0, 4.0)
"""Gaussian noise on the new plate, its sigma in grey levels (uniform)."""


def swap(rng, image, boxes, styles=STYLES, look_share=LOOK_SHARE):
    """Draws a synthetic plate over each plate box of an RGB photo.

    Args:
        rng: a numpy Generator (the caller's: seeded by the run)
        image: ``(H, W, 3)`` uint8 RGB, changed in place (a view works)
        boxes: ``(N, 4)`` pixel boxes ``[xmin, ymin, xmax, ymax]`` of the plates
        styles: the plate styles drawn from (:data:`platelab.synth.plates.PLATE_STYLES`)
        look_share: share of plates drawn with varied looks

    Returns:
        ``(N, 4)`` float32 pixel boxes of the new plates, in the order of ``boxes``
        (clipped to the image; a box too small to draw over is returned unchanged)
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    drawn = boxes.copy()
    for index, (x0, y0, x1, y1) in enumerate(boxes):
        old_w, old_h = float(x1 - x0), float(y1 - y0)
        if old_w < 2 or old_h < 2:
            continue
        design = plates.random_plate(rng, styles[int(rng.integers(len(styles)))])
        if rng.random() < look_share:
            design = plates.vary_look(design, np.random.default_rng(int(rng.integers(2**31))))
        sprite = plates.plate_sprite(design)[:, :, ::-1]  # BGR to RGB
        aspect = sprite.shape[1] / sprite.shape[0]
        cover = rng.uniform(*COVER)
        centre = ((x0 + x1) / 2, (y0 + y1) / 2)
        new_w = old_w * cover
        new_h = new_w / aspect
        if new_h < old_h * cover:
            # A plate longer than the old one (EU over Brazilian) hides its width, not
            # its height: a dark plate holder of the old plate's size goes behind it.
            holder = _outward(centre, new_w, old_h * cover)
            shade = rng.uniform(*HOLDER)
            colour = np.full((holder[3], holder[2], 3), shade, np.float32)
            colour += rng.normal(0.0, 3.0, colour.shape).astype(np.float32)
            _paste(image, np.clip(colour, 0, 255).astype(np.uint8), holder[0], holder[1])
        left, top, full_w, full_h = _outward(centre, new_w, new_h)
        box = _paste(image, _photographed(rng, sprite, full_w, full_h), left, top)
        if box is not None:
            drawn[index] = box
    return drawn


def _outward(centre, width, height):
    """``(left, top, width, height)`` in whole pixels of a box of a centre and size,
    rounded outward (so that it covers every pixel of the box)."""
    left = math.floor(centre[0] - width / 2)
    top = math.floor(centre[1] - height / 2)
    right = max(left + 2, math.ceil(centre[0] + width / 2))
    bottom = max(top + 2, math.ceil(centre[1] + height / 2))
    return left, top, right - left, bottom - top


def _paste(image, patch, left, top):
    """Draws the part of ``patch`` that falls inside the image at ``(left, top)``;
    returns that part's box ``(x0, y0, x1, y1)``, or None where under 2 px a side."""
    height, width = image.shape[:2]
    a, b = max(0, left), max(0, top)
    c, d = min(width, left + patch.shape[1]), min(height, top + patch.shape[0])
    if c - a < 2 or d - b < 2:
        return None
    image[b:d, a:c] = patch[b - top : d - top, a - left : c - left]
    return a, b, c, d


def _photographed(rng, sprite, width, height):
    """The sprite at ``width`` x ``height`` pixels, dimmed, blurred and noisy as a photo's
    plate; uint8 RGB."""
    patch = cv2.resize(sprite, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32)
    patch *= rng.uniform(*BRIGHTNESS)
    sigma = rng.uniform(*BLUR)
    if sigma > 0.3:
        patch = cv2.GaussianBlur(patch, (0, 0), sigma)
    patch += rng.normal(0.0, rng.uniform(*NOISE), patch.shape).astype(np.float32)
    return np.clip(patch, 0, 255).astype(np.uint8)
