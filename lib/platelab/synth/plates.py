"""License plates: random realistic text and the plate images ("sprites").

Two styles are drawn:

* ``us``: about 2:1 (12 x 6 inches), a pale background, a state name in a
  coloured strip at the top, dark characters, sometimes a slogan below;
* ``eu``: about 4.7:1 (520 x 110 mm), white with black characters and a blue
  band on the left holding a ring of yellow dots (the EU stars) above the
  country letters.

The text is drawn with ``cv2.putText`` onto the plate image, condensed to the
width of the plate as real plate fonts are; the image is later warped onto
the vehicle with a perspective transform.
"""

import dataclasses
import logging
import math
import string

import cv2
import numpy as np

logger = logging.getLogger(__name__)

PLATE_STYLES = ("us", "eu")

PLATE_SIZES = {"us": (0.305, 0.152), "eu": (0.52, 0.11)}
"""Physical plate sizes in metres (width, height)."""

SPRITE_HEIGHT = {"us": 150, "eu": 110}
"""Height of the plate images in pixels (their width follows the aspect ratio)."""

US_STATES = (
    ("CALIFORNIA", "dmv.ca.gov", (40, 40, 200), (120, 40, 20)),
    ("TEXAS", "THE LONE STAR STATE", (30, 30, 30), (40, 40, 40)),
    ("NEW YORK", "EXCELSIOR", (120, 60, 10), (120, 60, 10)),
    ("FLORIDA", "SUNSHINE STATE", (40, 110, 20), (40, 90, 20)),
    ("OHIO", "BIRTHPLACE OF AVIATION", (40, 40, 170), (60, 40, 20)),
    ("ILLINOIS", "LAND OF LINCOLN", (30, 30, 160), (30, 30, 30)),
    ("ARIZONA", "GRAND CANYON STATE", (30, 80, 150), (90, 60, 20)),
    ("NEVADA", "HOME MEANS NEVADA", (120, 60, 30), (120, 60, 30)),
    ("OREGON", "", (60, 100, 30), (90, 60, 40)),
    ("GEORGIA", "PEACH STATE", (30, 30, 30), (30, 30, 30)),
    ("WASHINGTON", "EVERGREEN STATE", (110, 60, 30), (110, 60, 30)),
    ("MICHIGAN", "PURE MICHIGAN", (100, 50, 20), (100, 50, 20)),
)
"""(name, slogan, BGR colour of the name, BGR colour of the characters)."""

US_BACKGROUNDS = (
    (250, 250, 248),
    (245, 245, 240),
    (235, 240, 245),
    (205, 235, 245),
    (240, 225, 215),
    (150, 215, 245),
)
"""BGR plate backgrounds: white, off-white, cream, pale yellow, pale blue, gold."""

EU_COUNTRIES = ("D", "F", "I", "E", "NL", "PL", "B")

EU_BLUE = (153, 51, 0)
EU_YELLOW = (0, 204, 255)


@dataclasses.dataclass(frozen=True)
class PlateDesign:
    """What a plate shows.

    Attributes:
        style: ``"us"`` or ``"eu"``
        text: the registration as printed (the ground-truth text)
        region: US state name or EU country code
        background: BGR background colour
        ink: BGR colour of the characters
        accent: BGR colour of the state name (US)
        slogan: the line under the characters (US; may be empty)
    """

    style: str
    text: str
    region: str
    background: tuple
    ink: tuple
    accent: tuple
    slogan: str

    @property
    def size(self):
        """Physical size (width, height) in metres."""
        return PLATE_SIZES[self.style]


def random_plate(rng, style):
    """Draws a random plate design of a style.

    Args:
        rng: a numpy Generator
        style: ``"us"`` or ``"eu"``

    Returns:
        a PlateDesign
    """
    if style == "us":
        name, slogan, accent, ink = US_STATES[rng.integers(len(US_STATES))]
        background = US_BACKGROUNDS[rng.integers(len(US_BACKGROUNDS))]
        if rng.random() < 0.3:
            slogan = ""
        return PlateDesign("us", _us_text(rng), name, background, ink, accent, slogan)
    if style == "eu":
        country = EU_COUNTRIES[rng.integers(len(EU_COUNTRIES))]
        background = (255, 255, 255) if country != "NL" else (40, 200, 250)
        return PlateDesign(
            "eu", _eu_text(rng, country), country, background, (20, 20, 20), EU_BLUE, ""
        )
    raise ValueError(f"unknown plate style {style!r} (expected one of {PLATE_STYLES})")


def plate_sprite(design):
    """Draws a plate image (BGR uint8) at SPRITE_HEIGHT pixels high.

    Args:
        design: a PlateDesign

    Returns:
        the plate image; its aspect ratio is that of the physical plate
    """
    width_m, height_m = design.size
    height = SPRITE_HEIGHT[design.style]
    width = int(round(height * width_m / height_m))
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:] = design.background
    if design.style == "us":
        _draw_us(image, design)
    else:
        _draw_eu(image, design)
    return image


def put_text_fitted(image, text, box, colour, thickness_ratio=0.12, font=cv2.FONT_HERSHEY_SIMPLEX):
    """Draws text with cv2.putText stretched to fill a box (x0, y0, x1, y1).

    The text is rendered at a large size onto its own canvas, then resized
    (usually condensed) into the box; the background shows through.

    Args:
        image: destination BGR image (modified in place)
        text: the string
        box: (x0, y0, x1, y1) integer pixel box
        colour: BGR colour
        thickness_ratio: stroke thickness relative to the glyph height
        font: an OpenCV Hershey font
    """
    x0, y0, x1, y1 = (int(value) for value in box)
    if x1 <= x0 or y1 <= y0 or not text.strip():
        return
    glyph_scale = 3.0
    thickness = max(1, int(round(glyph_scale * 30 * thickness_ratio)))
    (text_width, text_height), baseline = cv2.getTextSize(text, font, glyph_scale, thickness)
    pad = thickness
    canvas = np.zeros((text_height + 2 * pad, text_width + 2 * pad), dtype=np.uint8)
    cv2.putText(
        canvas, text, (pad, pad + text_height), font, glyph_scale, 255, thickness, cv2.LINE_AA
    )
    rows = np.flatnonzero(canvas.max(axis=1))
    columns = np.flatnonzero(canvas.max(axis=0))
    if len(rows) == 0:
        return
    canvas = canvas[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
    # Condense freely, but stretch short texts by at most a quarter: centre them instead.
    natural_width = canvas.shape[1] * (y1 - y0) / canvas.shape[0]
    if natural_width * 1.25 < x1 - x0:
        margin = int(round((x1 - x0 - natural_width * 1.25) / 2))
        x0, x1 = x0 + margin, x1 - margin
    alpha = cv2.resize(canvas, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
    alpha = alpha.astype(np.float32)[..., None] / 255.0
    region = image[y0:y1, x0:x1].astype(np.float32)
    region = region * (1.0 - alpha) + np.asarray(colour, dtype=np.float32) * alpha
    image[y0:y1, x0:x1] = np.round(region).astype(np.uint8)


def _us_text(rng):
    letters = "ABCDEFGHJKLMNPRSTUVWXYZ"
    digits = string.digits

    def pick(alphabet, count):
        return "".join(alphabet[index] for index in rng.integers(len(alphabet), size=count))

    pattern = rng.integers(5)
    if pattern == 0:
        return str(rng.integers(1, 10)) + pick(letters, 3) + pick(digits, 3)
    if pattern == 1:
        return pick(letters, 3) + "-" + pick(digits, 4)
    if pattern == 2:
        return pick(letters, 3) + " " + pick(digits, 3)
    if pattern == 3:
        return pick(digits, 3) + " " + pick(letters, 3)
    return pick(letters, 2) + pick(digits, 1) + " " + pick(letters, 1) + pick(digits, 2)


def _eu_text(rng, country):
    letters = "ABCDEFGHJKLMNPRSTVWXYZ"
    digits = string.digits

    def pick(alphabet, count):
        return "".join(alphabet[index] for index in rng.integers(len(alphabet), size=count))

    if country == "D":
        city = ("M", "B", "K", "HH", "F", "S", "DO", "HB", "BN", "GE")[rng.integers(10)]
        return f"{city} {pick(letters, int(rng.integers(1, 3)))} {rng.integers(1, 10000)}"
    if country == "F":
        return f"{pick(letters, 2)}-{pick(digits, 3)}-{pick(letters, 2)}"
    if country == "I":
        return f"{pick(letters, 2)} {pick(digits, 3)}{pick(letters, 2)}"
    if country == "E":
        return f"{pick(digits, 4)} {pick('BCDFGHJKLMNPRSTVWXYZ', 3)}"
    if country == "NL":
        return f"{pick(digits, 2)}-{pick(letters, 3)}-{pick(digits, 1)}"
    if country == "PL":
        return f"{pick('WKGPLS', 1)}{pick(letters, 1)} {pick(digits, 5)}"
    return f"{rng.integers(1, 3)}-{pick(letters, 3)}-{pick(digits, 3)}"


def _draw_us(image, design):
    height, width = image.shape[:2]
    border = max(2, height // 30)
    cv2.rectangle(image, (0, 0), (width - 1, height - 1), (60, 60, 60), border)
    strip_height = int(height * 0.22)
    put_text_fitted(
        image,
        design.region,
        (
            int(width * 0.25),
            int(height * 0.06),
            int(width * 0.75),
            int(height * 0.06) + strip_height,
        ),
        design.accent,
        thickness_ratio=0.09,
        font=cv2.FONT_HERSHEY_DUPLEX,
    )
    # Registration stickers in the top corners.
    cv2.rectangle(
        image, (border + 4, border + 4), (int(width * 0.16), int(height * 0.2)), (40, 160, 230), -1
    )
    cv2.rectangle(
        image,
        (width - int(width * 0.16), border + 4),
        (width - border - 4, int(height * 0.2)),
        (200, 120, 30),
        -1,
    )
    text_box = (int(width * 0.07), int(height * 0.32), int(width * 0.93), int(height * 0.80))
    put_text_fitted(image, design.text, text_box, design.ink, thickness_ratio=0.16)
    if design.slogan:
        put_text_fitted(
            image,
            design.slogan,
            (int(width * 0.2), int(height * 0.85), int(width * 0.8), int(height * 0.95)),
            design.accent,
            thickness_ratio=0.08,
        )
    # Mounting holes.
    for column in (int(width * 0.2), int(width * 0.8)):
        cv2.circle(image, (column, int(height * 0.13)), max(2, height // 40), (120, 120, 120), -1)


def _draw_eu(image, design):
    height, width = image.shape[:2]
    border = max(2, height // 25)
    cv2.rectangle(image, (0, 0), (width - 1, height - 1), (20, 20, 20), border)
    band_width = int(round(height * 0.4))
    cv2.rectangle(image, (border, border), (border + band_width, height - border - 1), EU_BLUE, -1)
    ring_centre = (border + band_width / 2.0, height * 0.32)
    ring_radius = band_width * 0.3
    for index in range(12):
        angle = 2 * math.pi * index / 12
        cv2.circle(
            image,
            (
                int(round(ring_centre[0] + ring_radius * math.cos(angle))),
                int(round(ring_centre[1] + ring_radius * math.sin(angle))),
            ),
            max(1, int(round(band_width * 0.05))),
            EU_YELLOW,
            -1,
            cv2.LINE_AA,
        )
    put_text_fitted(
        image,
        design.region,
        (
            border + int(band_width * (0.3 if len(design.region) == 1 else 0.12)),
            int(height * 0.6),
            border + int(band_width * (0.7 if len(design.region) == 1 else 0.88)),
            int(height * 0.86),
        ),
        (255, 255, 255),
        thickness_ratio=0.14,
    )
    text_left = border + band_width + int(height * 0.12)
    put_text_fitted(
        image,
        design.text,
        (text_left, int(height * 0.17), width - int(height * 0.14), int(height * 0.83)),
        design.ink,
        thickness_ratio=0.15,
    )
