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

Measured on openalpr-br (``benchmarks/bench_openalpr_finetune.py``, split 0, one copy,
session 24; README): every variant tried lifted the real EU close-ups (AP50 0.89-0.94
against 0.87) and cost the real US traffic-camera frames (0.76-0.85 against 0.88), whose
new false positives are large boxes on gate panels and car bodies; the bench's row
does not use it.
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
the old plate shows; never wider, so that the new plates keep the photos' plate sizes."""
HOLDER = (15.0, 70.0)
"""Grey level of the plate holder drawn behind a plate longer than the one it replaces
(uniform): black and grey plastic."""
BRIGHTNESS = (0.8, 1.15)
"""The new plate's brightness: the old plate's mean brightness over the sprite's, times
a factor drawn from this range (uniform), at most :data:`BRIGHTEST` times the sprite's:
the new plate lies in the old one's light."""
BRIGHTEST = 1.1
"""The brightest a new plate is drawn, a factor of its sprite's."""
FEATHER = (0.5, 1.5)
"""Sigma in pixels (uniform) of the soft edge with which a new plate (and holder) is
blended into the photo, rather than a hard pasted rectangle."""
BLUR = (0.0, 1.0)
"""Gaussian blur of the new plate, sigma in pixels of the photo (uniform)."""
NOISE = (1.0, 6.0)
"""Gaussian noise on the new plate, its sigma in grey levels (uniform)."""
SHADING = 0.25
"""Largest change of brightness across a new plate (a linear ramp in a random
direction, uniform up to this share): sun, shade and reflections are never flat."""
JPEG_QUALITY = (40, 90)
"""JPEG quality (uniform) with which a new plate is compressed: the photos' plates
carry their camera's block artefacts."""


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
        old = image[max(0, int(y0)) : max(0, int(y1)), max(0, int(x0)) : max(0, int(x1))]
        light = float(old.mean()) if old.size else float(image.mean())
        if new_h < old_h * cover:
            # A plate longer than the old one (EU over Brazilian) hides its width, not
            # its height: a dark plate holder of the old plate's size goes behind it.
            holder = _outward(centre, new_w, old_h * cover)
            shade = rng.uniform(*HOLDER)
            colour = np.full((holder[3], holder[2], 3), shade, np.float32)
            colour += rng.normal(0.0, 3.0, colour.shape).astype(np.float32)
            _paste(image, colour, holder[0], holder[1], rng.uniform(*FEATHER))
        left, top, full_w, full_h = _outward(centre, new_w, new_h)
        patch = _photographed(rng, sprite, full_w, full_h, light)
        box = _paste(image, patch, left, top, rng.uniform(*FEATHER))
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


def _paste(image, patch, left, top, feather=0.0):
    """Blends the part of ``patch`` (float RGB) that falls inside the image at ``(left,
    top)`` into it, its edge softened by a Gaussian of sigma ``feather`` pixels;
    returns that part's box ``(x0, y0, x1, y1)``, or None where under 2 px a side."""
    height, width = image.shape[:2]
    a, b = max(0, left), max(0, top)
    c, d = min(width, left + patch.shape[1]), min(height, top + patch.shape[0])
    if c - a < 2 or d - b < 2:
        return None
    part = patch[b - top : d - top, a - left : c - left].astype(np.float32)
    alpha = np.ones(part.shape[:2], np.float32)
    if feather > 0:
        # The patch's own rectangle, blurred: half opaque on its edge (so the box still
        # ends where it ends), whole a few sigma inside.
        pad = int(math.ceil(3 * feather))
        mask = np.pad(alpha, pad)
        alpha = cv2.GaussianBlur(mask, (0, 0), feather)[pad:-pad, pad:-pad]
    region = image[b:d, a:c].astype(np.float32)
    blended = region + alpha[..., None] * (part - region)
    image[b:d, a:c] = np.clip(np.round(blended), 0, 255).astype(np.uint8)
    return a, b, c, d


def _photographed(rng, sprite, width, height, light):
    """The sprite at ``width`` x ``height`` pixels, lit like the old plate (mean
    brightness ``light``), shaded, blurred, noisy and JPEG-compressed as a photo's
    plate; float32 RGB."""
    patch = cv2.resize(sprite, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32)
    gain = light / max(float(patch.mean()), 1.0) * rng.uniform(*BRIGHTNESS)
    patch *= min(gain, BRIGHTEST)
    angle = rng.uniform(0.0, 2.0 * math.pi)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = (xs / max(width - 1, 1) - 0.5) * math.cos(angle)
    ramp += (ys / max(height - 1, 1) - 0.5) * math.sin(angle)
    patch *= (1.0 + rng.uniform(0.0, SHADING) * ramp)[..., None]
    sigma = rng.uniform(*BLUR)
    if sigma > 0.3:
        patch = cv2.GaussianBlur(patch, (0, 0), sigma)
    patch += rng.normal(0.0, rng.uniform(*NOISE), patch.shape).astype(np.float32)
    patch = np.clip(patch, 0, 255).astype(np.uint8)
    quality = int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1))
    bgr = np.ascontiguousarray(patch[:, :, ::-1])
    _, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR)[:, :, ::-1].astype(np.float32)
