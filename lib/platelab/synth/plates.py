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

``vary_look`` adds what real plates show beyond that plain design (a
PlateLook kept in ``PlateDesign.look``): graphic backgrounds, script state
names, separators, embossing, stickers, dealer frames drawn inside the plate's
outline, and wear. A design without a look is drawn exactly as before.
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
        look: None for the plain design, or a PlateLook: the decorations
            (graphic background, frame, stickers, wear, ...) that
            ``vary_look`` drew; ``plate_sprite`` draws them
    """

    style: str
    text: str
    region: str
    background: tuple
    ink: tuple
    accent: tuple
    slogan: str
    look: "PlateLook | None" = None

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
    if design.look is not None:
        _draw_look(image, design)
    elif design.style == "us":
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


# ----------------------------------------------------------------------------
# Looks: the decorations of real plates (graphic backgrounds, frames, wear).
# ----------------------------------------------------------------------------

US_INKS = (
    ((25, 25, 25), 35),
    ((105, 45, 15), 18),
    ((90, 30, 10), 12),
    ((30, 30, 140), 14),
    ((45, 25, 105), 6),
    ((40, 85, 25), 10),
    ((70, 50, 30), 5),
)
"""(BGR colour of the characters, weight): black, dark blues, dark reds, dark green."""

US_PALES = (
    (250, 250, 248),
    (255, 255, 255),
    (240, 243, 245),
    (228, 230, 230),
    (225, 238, 245),
    (205, 235, 245),
    (240, 228, 215),
    (228, 240, 228),
    (200, 228, 250),
    (110, 200, 245),
)
"""BGR backgrounds of the character zone: whites, greys, creams, pale blue and green, gold."""

US_TINTS = (
    (245, 215, 170),
    (240, 200, 140),
    (225, 225, 225),
    (170, 215, 245),
    (120, 200, 250),
    (210, 230, 210),
    (200, 200, 240),
    (230, 210, 215),
)
"""BGR tints for the ends of gradients: pale sky, blue, grey, sand, yellow, green, pink, lilac."""

US_MIDTONES = (
    (200, 175, 150),
    (215, 190, 160),
    (160, 195, 160),
    (150, 180, 205),
    (180, 190, 200),
    (190, 200, 175),
    (175, 175, 180),
    (215, 200, 205),
)
"""BGR middle tones for silhouettes and waves behind the characters."""

US_STRONG = (
    (110, 40, 10),
    (170, 90, 25),
    (220, 160, 60),
    (40, 40, 180),
    (50, 30, 110),
    (50, 115, 40),
    (140, 125, 30),
    (40, 130, 235),
    (120, 50, 100),
    (40, 175, 235),
    (35, 35, 35),
)
"""BGR colours of banners and gradient tops: navy, blue, sky, red, maroon, green,
teal, orange, purple, gold, black."""

US_NAME_COLOURS = (
    (35, 35, 190),
    (40, 30, 150),
    (150, 60, 20),
    (110, 40, 10),
    (30, 30, 30),
    (40, 110, 30),
    (50, 30, 130),
)
"""BGR colours of the state name: reds, blues, black, green, maroon."""

US_DARKS = ((25, 25, 25), (80, 30, 10), (40, 20, 70), (30, 60, 20))
"""BGR backgrounds of the few dark plates: black, navy, maroon, dark green."""

US_LIGHT_INKS = ((245, 245, 245), (80, 200, 245), (210, 225, 230))
"""BGR characters of the dark plates: white, yellow, pale grey."""

STICKER_COLOURS = (
    (0, 200, 255),
    (0, 140, 255),
    (40, 40, 220),
    (60, 170, 40),
    (200, 120, 30),
    (160, 60, 140),
    (235, 235, 235),
    (180, 120, 250),
    (40, 230, 200),
)
"""BGR registration sticker colours."""

FRAME_COLOURS = {
    "black": ((18, 18, 18), (28, 28, 30), (38, 36, 34)),
    "chrome": ((200, 200, 205), (215, 212, 210), (185, 190, 195)),
    "colour": ((30, 30, 130), (90, 40, 10), (30, 70, 20), (45, 25, 95), (130, 110, 95)),
}
"""BGR base colours of plate frames by kind."""

DEALERS = (
    "ROSE CHEVROLET",
    "AUTONATION",
    "TOYOTA OF DALLAS",
    "HONDA OF SEATTLE",
    "BOB JOHNSON FORD",
    "CARMAX",
    "SUNRISE NISSAN",
    "METRO KIA",
    "VALLEY HYUNDAI",
    "COURTESY CHEVROLET",
    "FRIENDLY FORD",
    "LONGO TOYOTA",
    "HENDRICK BMW",
    "LITHIA SUBARU",
    "PENSKE HONDA",
    "CLASSIC BUICK GMC",
    "MIKE'S AUTO SALES",
    "DESERT MAZDA",
)
"""Dealer names printed on US plate frames."""

EU_DEALERS = (
    "AUTOHAUS MULLER",
    "RENAULT PARIS 15",
    "AUTO ROSSI",
    "VW CENTRUM",
    "PEUGEOT",
    "AUTOHAUS SCHMIDT",
    "VAN DER MEER",
    "TOYOTA MADRID",
)
"""Dealer names printed on EU plate holders."""

FRAME_TOP_TEXTS = (
    "WWW.AUTONATION.COM",
    "CALL 555-0142",
    "SINCE 1968",
    "PROUD PARENT",
    "GO TEAM",
    "SALES - SERVICE - PARTS",
)
"""Texts on the top of US plate frames."""

US_BACKGROUND_KINDS = (
    ("flat", 30),
    ("gradient", 20),
    ("sunset", 9),
    ("mountains", 14),
    ("skyline", 6),
    ("waves", 15),
    ("dark", 4),
)
"""US plate background kinds and their weights."""

NAME_FONTS = {
    "block": cv2.FONT_HERSHEY_DUPLEX,
    "script": cv2.FONT_HERSHEY_SCRIPT_SIMPLEX,
    "italic": cv2.FONT_HERSHEY_TRIPLEX | cv2.FONT_ITALIC,
    "serif": cv2.FONT_HERSHEY_COMPLEX,
}
"""OpenCV fonts of the state name by look name."""

FRAME_KINDS = ("", "black", "chrome", "colour")
SEPARATORS = ("", "star", "blob", "dot")


@dataclasses.dataclass(frozen=True)
class PlateLook:
    """The decorations of a plate beyond its plain design, drawn by ``vary_look``.

    Every field is a string, a number or a tuple, so a look (and the frozen
    PlateDesign holding it) stays hashable. Colours are BGR tuples; sizes are
    fractions of the plate height.

    Attributes:
        background: ``"flat"``, ``"gradient"``, ``"sunset"``, ``"mountains"``,
            ``"skyline"``, ``"waves"`` or ``"dark"`` (EU plates: ``"flat"``)
        tones: colours of the background graphic (their roles depend on
            ``background``)
        banners: ``((where, colour), ...)``: coloured bands across the
            ``"top"`` and/or the ``"bottom"`` of the plate
        name_font: font of the state name: a key of NAME_FONTS
        slogan_colour: colour of the slogan
        separator: symbol drawn in the gap between two groups of characters:
            one of SEPARATORS (``""``: none)
        separator_colour: its colour
        weight: stroke thickness of the characters relative to their height
        emboss: offset in pixels of the embossing shadow and highlight (0: flat)
        stickers: ``((corner, colour), ...)``, corners ``"tl"``, ``"tr"``,
            ``"bl"``, ``"br"``
        edge: colour of the thin rim of a plate without a frame
        frame: one of FRAME_KINDS (``""``: no frame)
        frame_colour: base colour of the frame
        frame_widths: (top, side, bottom) thickness of the frame
        dealer: text on the bottom of the frame (may be empty)
        frame_top_text: text on the top of the frame (may be empty)
        frame_ink: colour of the frame's texts
        holes: whether mounting holes (or the frame's screws) show
        fade: 0 to 1: how far the colours fade towards grey
        dirt: 0 to 1: strength of the grime
        seed: seeds the small random details (shapes, dirt pattern, sticker sizes)
    """

    background: str = "flat"
    tones: tuple = ()
    banners: tuple = ()
    name_font: str = "block"
    slogan_colour: tuple = (30, 30, 30)
    separator: str = ""
    separator_colour: tuple = (30, 30, 30)
    weight: float = 0.16
    emboss: int = 0
    stickers: tuple = ()
    edge: tuple = (60, 60, 60)
    frame: str = ""
    frame_colour: tuple = (20, 20, 20)
    frame_widths: tuple = (0.0, 0.0, 0.0)
    dealer: str = ""
    frame_top_text: str = ""
    frame_ink: tuple = (235, 235, 235)
    holes: bool = True
    fade: float = 0.0
    dirt: float = 0.0
    seed: int = 0


def vary_look(design, rng):
    """Draws random decorations for a plate, as real plates show them.

    US plates get a graphic background (gradient, sunset, mountain or skyline
    silhouette, waves, banners), a state name in a block, script, italic or
    serif font, characters in black, dark blue, red or green, sometimes a
    symbol between two groups, embossing, zero to two stickers, often a dealer
    frame, and sometimes a faded or dirty surface. EU plates keep their blue
    band and get a tinted background, often a plate holder with a dealer name,
    and wear. The characters stay the dominant, high-contrast element and the
    plate keeps its size: the frame is drawn inside the sprite.

    Args:
        design: a PlateDesign (its ``look`` is ignored and replaced)
        rng: a numpy Generator; pass one of its own, not a scene's main one,
            so that the other draws of a scene stay those without looks

    Returns:
        a copy of the design with ``look`` set, and its ``background``,
        ``ink``, ``accent`` and ``slogan`` redrawn to match
    """
    if design.style == "us":
        return _vary_us(design, rng)
    if design.style == "eu":
        return _vary_eu(design, rng)
    raise ValueError(f"unknown plate style {design.style!r} (expected one of {PLATE_STYLES})")


def _pick(rng, options):
    return options[int(rng.integers(len(options)))]


def _pick_weighted(rng, pairs):
    weights = np.asarray([weight for _, weight in pairs], dtype=np.float64)
    return pairs[int(rng.choice(len(pairs), p=weights / weights.sum()))][0]


def _luminance(colour):
    blue, green, red = colour
    return 0.114 * blue + 0.587 * green + 0.299 * red


def _wear(rng):
    fade = 0.0 if rng.random() < 0.6 else round(float(rng.uniform(0.05, 0.35)), 3)
    dirt = 0.0 if rng.random() < 0.6 else round(float(rng.uniform(0.05, 0.3)), 3)
    return fade, dirt


def _vary_us(design, rng):
    background = _pick_weighted(rng, US_BACKGROUND_KINDS)
    if background == "dark":
        pale = _pick(rng, US_DARKS)
        ink = _pick(rng, US_LIGHT_INKS)
    else:
        pale = design.background if rng.random() < 0.4 else _pick(rng, US_PALES)
        ink = design.ink if rng.random() < 0.2 else _pick_weighted(rng, US_INKS)
    if background == "gradient":
        tones = (_pick(rng, US_TINTS), pale if rng.random() < 0.5 else _pick(rng, US_TINTS))
    elif background == "sunset":
        tones = (
            _pick(rng, ((90, 40, 150), (40, 70, 220), (150, 90, 40), (60, 40, 120))),
            _pick(rng, ((60, 150, 245), (120, 190, 250), (200, 160, 120))),
            _pick(rng, ((60, 130, 210), (90, 160, 220), (50, 110, 180))),
            _pick(rng, ((40, 70, 60), (50, 60, 110), (60, 60, 60))),
        )
        pale = _pick(rng, ((200, 235, 250), (190, 228, 250), (215, 240, 250)))
    elif background in ("mountains", "skyline", "waves"):
        sky = _pick(rng, US_TINTS) if rng.random() < 0.5 else pale
        tones = (sky, _pick(rng, US_MIDTONES), _pick(rng, US_MIDTONES))
    else:
        tones = ()
    banners = ()
    if background not in ("sunset", "dark"):
        if rng.random() < 0.22:
            banners += (("top", _pick(rng, US_STRONG)),)
        if rng.random() < 0.15:
            banners += (("bottom", _pick(rng, US_STRONG)),)
    has_top_banner = any(where == "top" for where, _ in banners)
    has_bottom_banner = any(where == "bottom" for where, _ in banners)
    if background == "dark":
        name_colour = ink
    elif has_top_banner:
        banner = next(colour for where, colour in banners if where == "top")
        if _luminance(banner) > 140:
            name_colour = _pick(rng, ((110, 40, 10), (30, 30, 30), (40, 30, 150)))
        else:
            name_colour = _pick(rng, ((250, 250, 250), (120, 220, 250)))
    else:
        name_colour = design.accent if rng.random() < 0.3 else _pick(rng, US_NAME_COLOURS)
    name_font = _pick_weighted(rng, (("block", 45), ("script", 30), ("italic", 15), ("serif", 10)))
    slogan = design.slogan if rng.random() < 0.75 else ""
    if background == "dark":
        slogan_colour = ink
    elif has_bottom_banner:
        banner = next(colour for where, colour in banners if where == "bottom")
        slogan_colour = (250, 250, 250) if _luminance(banner) <= 140 else (30, 30, 30)
    else:
        slogan_colour = name_colour if not has_top_banner else _pick(rng, US_NAME_COLOURS)
    separator = ""
    if " " in design.text:
        separator = _pick_weighted(rng, tuple(zip(SEPARATORS, (64, 12, 14, 10), strict=True)))
    separator_colour = (
        ink if rng.random() < 0.5 or has_top_banner or background == "dark" else name_colour
    )
    weight = round(float(rng.uniform(0.12, 0.17)), 3)
    emboss = int(rng.choice(3, p=(0.35, 0.45, 0.2)))
    count = int(rng.choice(3, p=(0.25, 0.45, 0.3)))
    corners = rng.choice(4, size=count, replace=False, p=(0.4, 0.4, 0.05, 0.15))
    stickers = tuple(
        (("tl", "tr", "bl", "br")[int(corner)], _pick(rng, STICKER_COLOURS)) for corner in corners
    )
    edge = _pick(rng, ((60, 60, 60), (140, 140, 140), ink, name_colour))
    frame = _pick_weighted(rng, tuple(zip(FRAME_KINDS, (30, 38, 22, 10), strict=True)))
    frame_colour = (20, 20, 20)
    frame_widths = (0.0, 0.0, 0.0)
    dealer = top_text = ""
    frame_ink = (235, 235, 235)
    if frame:
        frame_colour = _pick(rng, FRAME_COLOURS[frame])
        if rng.random() < 0.75:
            dealer = _pick(rng, DEALERS)
        if rng.random() < 0.25:
            top_text = _pick(rng, FRAME_TOP_TEXTS)
        top = rng.uniform(0.065, 0.09) if top_text else rng.uniform(0.035, 0.07)
        bottom = rng.uniform(0.09, 0.14) if dealer else rng.uniform(0.04, 0.08)
        frame_widths = tuple(
            round(float(value), 3) for value in (top, rng.uniform(0.03, 0.06), bottom)
        )
        if frame == "chrome":
            frame_ink = _pick(rng, ((30, 30, 30), (90, 40, 10), (40, 40, 150)))
        elif frame == "black":
            frame_ink = _pick(rng, ((235, 235, 235), (195, 195, 200), (90, 190, 230)))
        else:
            frame_ink = _pick(rng, ((240, 240, 240), (200, 200, 200)))
    holes = bool(rng.random() < (0.5 if frame else 0.7))
    fade, dirt = _wear(rng)
    look = PlateLook(
        background=background,
        tones=tones,
        banners=banners,
        name_font=name_font,
        slogan_colour=slogan_colour,
        separator=separator,
        separator_colour=separator_colour,
        weight=weight,
        emboss=emboss,
        stickers=stickers,
        edge=edge,
        frame=frame,
        frame_colour=frame_colour,
        frame_widths=frame_widths,
        dealer=dealer,
        frame_top_text=top_text,
        frame_ink=frame_ink,
        holes=holes,
        fade=fade,
        dirt=dirt,
        seed=int(rng.integers(2**31)),
    )
    return dataclasses.replace(
        design, background=pale, ink=ink, accent=name_colour, slogan=slogan, look=look
    )


def _vary_eu(design, rng):
    if design.region == "NL":
        background = _pick(rng, ((40, 200, 250), (30, 190, 245), (60, 205, 245)))
    else:
        background = _pick(rng, ((255, 255, 255), (245, 248, 250), (236, 240, 242)))
    frame = _pick_weighted(rng, (("", 40), ("black", 45), ("chrome", 8), ("colour", 7)))
    frame_colour = (20, 20, 20)
    frame_widths = (0.0, 0.0, 0.0)
    dealer = ""
    frame_ink = (235, 235, 235)
    if frame:
        frame_colour = _pick(rng, FRAME_COLOURS[frame])
        if rng.random() < 0.7:
            dealer = _pick(rng, EU_DEALERS)
        bottom = rng.uniform(0.1, 0.14) if dealer else rng.uniform(0.04, 0.07)
        frame_widths = tuple(
            round(float(value), 3)
            for value in (rng.uniform(0.035, 0.06), rng.uniform(0.03, 0.05), bottom)
        )
        frame_ink = (30, 30, 30) if frame == "chrome" else (235, 235, 235)
    fade, dirt = _wear(rng)
    look = PlateLook(
        frame=frame,
        frame_colour=frame_colour,
        frame_widths=frame_widths,
        dealer=dealer,
        frame_ink=frame_ink,
        holes=False,
        fade=fade,
        dirt=dirt,
        seed=int(rng.integers(2**31)),
    )
    return dataclasses.replace(design, background=background, look=look)


def _draw_look(image, design):
    look = design.look
    detail = np.random.default_rng(look.seed)
    height, width = image.shape[:2]
    top, side, bottom = (int(round(value * height)) for value in look.frame_widths)
    if design.style == "us":
        _draw_us_look(image, design, look, (side, top, width - side, height - bottom), detail)
    else:
        _draw_eu(image[top : height - bottom, side : width - side], design)
    if look.frame:
        _draw_frame(image, design, look, (side, top, width - side, height - bottom))
    _draw_wear(image, look, detail)


def _gradient(length, stops):
    """Colours (length x 3 float32) interpolated between (position, colour) stops."""
    positions = np.linspace(0.0, 1.0, length)
    stop_positions = [position for position, _ in stops]
    return np.stack(
        [
            np.interp(positions, stop_positions, [colour[channel] for _, colour in stops])
            for channel in range(3)
        ],
        axis=1,
    ).astype(np.float32)


def _fill_polygon(image, points, colour):
    cv2.fillPoly(image, [np.round(np.asarray(points)).astype(np.int32)], colour, cv2.LINE_AA)


def _draw_us_background(image, design, look, body, detail):
    height, width = image.shape[:2]
    x0, y0, x1, y1 = body
    body_height = y1 - y0
    kind, tones, pale = look.background, look.tones, design.background
    if kind == "gradient":
        colours = _gradient(body_height, ((0.0, tones[0]), (0.42, pale), (1.0, tones[1])))
        image[y0:y1] = np.round(colours[:, None, :]).astype(np.uint8)
    elif kind == "sunset":
        colours = _gradient(
            body_height,
            (
                (0.0, tones[0]),
                (0.16, tones[1]),
                (0.36, pale),
                (0.72, pale),
                (1.0, tones[2]),
            ),
        )
        image[y0:y1] = np.round(colours[:, None, :]).astype(np.uint8)
        # Low mesas or saguaros at the bottom corners.
        for left in (True, False):
            if detail.random() < 0.35:
                continue
            base = x0 if left else x1
            reach = detail.uniform(0.12, 0.22) * width
            direction = 1 if left else -1
            rise = detail.uniform(0.12, 0.2) * height
            points = [
                (base, y1),
                (base, y1 - rise),
                (base + direction * reach * 0.6, y1 - rise),
                (base + direction * reach, y1 - rise * 0.3),
                (base + direction * reach, y1),
            ]
            _fill_polygon(image, points, tones[3])
    elif kind in ("mountains", "skyline", "waves"):
        sky, near, far = tones
        colours = _gradient(body_height, ((0.0, sky), (0.45, pale), (1.0, pale)))
        image[y0:y1] = np.round(colours[:, None, :]).astype(np.uint8)
        if kind == "mountains":
            for tone, low, high in ((far, 0.42, 0.58), (near, 0.55, 0.72)):
                count = int(detail.integers(3, 7))
                xs = np.linspace(x0, x1, count * 2 + 1)
                ys = [
                    y0 + body_height * (detail.uniform(low, high) if k % 2 else high + 0.12)
                    for k in range(len(xs))
                ]
                _fill_polygon(image, [(x0, y1), *zip(xs, ys, strict=True), (x1, y1)], tone)
        elif kind == "skyline":
            x = float(x0)
            while x < x1:
                step = detail.uniform(0.03, 0.08) * width
                top = y0 + body_height * detail.uniform(0.5, 0.75)
                cv2.rectangle(image, (int(x), int(top)), (int(x + step), y1), near, -1, cv2.LINE_AA)
                x += step + detail.uniform(0.0, 0.01) * width
        else:
            for tone, level, amplitude in ((far, 0.62, 0.05), (near, 0.76, 0.04)):
                phase = detail.uniform(0, 2 * math.pi)
                waves = detail.uniform(1.0, 2.5)
                xs = np.linspace(x0, x1, 40)
                ys = y0 + body_height * (
                    level + amplitude * np.sin(phase + waves * 2 * math.pi * (xs - x0) / width)
                )
                _fill_polygon(image, [(x0, y1), *zip(xs, ys, strict=True), (x1, y1)], tone)
    # Banners over the graphics.
    for where, colour in look.banners:
        band = int(round(height * (0.2 if where == "top" else 0.13)))
        if where == "top":
            image[y0 : y0 + band, x0:x1] = colour
        else:
            image[y1 - band : y1, x0:x1] = colour


def _us_layout(image, design, look, body, margin):
    """Rows of the name and the slogan (None: no slogan) and the characters' box.

    The characters keep a margin (a fraction of the plate width) from the
    plate body's sides.
    """
    height, width = image.shape[:2]
    x0, y0, x1, y1 = body
    top_banner = any(where == "top" for where, _ in look.banners)
    bottom_banner = any(where == "bottom" for where, _ in look.banners)
    if top_banner:
        band = int(round(height * 0.2))
        name_box = (y0 + int(height * 0.03), y0 + band - int(height * 0.03))
        characters_top = y0 + band + int(height * 0.05)
    else:
        name_box = (y0 + int(height * 0.04), y0 + int(height * 0.21))
        characters_top = name_box[1] + int(height * 0.035)
    if bottom_banner:
        band = int(round(height * 0.13))
        slogan_box = (y1 - band + int(height * 0.025), y1 - int(height * 0.025))
        characters_bottom = y1 - band - int(height * 0.04)
    else:
        slogan_box = (y1 - int(height * 0.12), y1 - int(height * 0.03))
        characters_bottom = slogan_box[0] - int(height * 0.03)
        if not design.slogan or characters_bottom - characters_top < 0.36 * height:
            characters_bottom = y1 - int(height * 0.07)
            slogan_box = None
    if slogan_box is not None and not design.slogan:
        slogan_box = None
    spare = characters_bottom - characters_top - int(round(0.48 * height))
    if spare > 0:
        characters_top += spare // 2
        characters_bottom -= spare - spare // 2
    margin = int(width * margin)
    characters = (x0 + margin, characters_top, x1 - margin, characters_bottom)
    return name_box, characters, slogan_box


def _text_alpha(text, width, height, thickness_ratio, font=cv2.FONT_HERSHEY_SIMPLEX):
    """Text condensed into a width x height box as put_text_fitted draws it.

    Returns:
        (alpha, left, gaps): the float32 coverage (height x its own width),
        its offset from the box's left edge, and the x centres of the spaces
        (from the box's left edge)
    """
    glyph_scale = 3.0
    thickness = max(1, int(round(glyph_scale * 30 * thickness_ratio)))
    (text_width, text_height), _ = cv2.getTextSize(text, font, glyph_scale, thickness)
    pad = thickness
    canvas = np.zeros((text_height + 2 * pad, text_width + 2 * pad), dtype=np.uint8)
    cv2.putText(
        canvas, text, (pad, pad + text_height), font, glyph_scale, 255, thickness, cv2.LINE_AA
    )
    rows = np.flatnonzero(canvas.max(axis=1))
    columns = np.flatnonzero(canvas.max(axis=0))
    if len(rows) == 0:
        return np.zeros((height, width), dtype=np.float32), 0, []
    canvas = canvas[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
    natural_width = canvas.shape[1] * height / canvas.shape[0]
    left, used = 0, width
    if natural_width * 1.25 < width:
        left = int(round((width - natural_width * 1.25) / 2))
        used = width - 2 * left
    alpha = cv2.resize(canvas, (used, height), interpolation=cv2.INTER_AREA)
    scale = used / canvas.shape[1]
    gaps = []
    for index, character in enumerate(text):
        if character == " " and (index == 0 or text[index - 1] != " "):
            end = index
            while end < len(text) and text[end] == " ":
                end += 1
            before = cv2.getTextSize(text[:index], font, glyph_scale, thickness)[0][0]
            after = cv2.getTextSize(text[:end], font, glyph_scale, thickness)[0][0]
            gaps.append(left + ((before + after) / 2 + pad - columns[0]) * scale)
    return alpha.astype(np.float32) / 255.0, left, gaps


def _blend(image, alpha, x, y, colour, opacity=1.0):
    """Blends a colour through an alpha mask placed at (x, y), clipped to the image."""
    height, width = image.shape[:2]
    mask_height, mask_width = alpha.shape
    left, top = max(0, x), max(0, y)
    right, bottom = min(width, x + mask_width), min(height, y + mask_height)
    if right <= left or bottom <= top:
        return
    weight = alpha[top - y : bottom - y, left - x : right - x, None] * opacity
    region = image[top:bottom, left:right].astype(np.float32)
    region = region * (1.0 - weight) + np.asarray(colour, dtype=np.float32) * weight
    image[top:bottom, left:right] = np.round(region).astype(np.uint8)


def _symbol(kind, centre, size, detail):
    """Polygon points of a separator symbol."""
    cx, cy = centre
    if kind == "star":
        angles = -math.pi / 2 + np.arange(10) * math.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, size, size * 0.42)
    elif kind == "blob":
        # A state-like outline: a lumpy, slightly wide polygon.
        angles = np.linspace(0, 2 * math.pi, 12, endpoint=False) + detail.uniform(-0.15, 0.15, 12)
        radii = size * detail.uniform(0.75, 1.0, 12) * (1.0 + 0.2 * np.abs(np.cos(angles)))
    else:
        angles = np.linspace(0, 2 * math.pi, 16, endpoint=False)
        radii = np.full(16, size * 0.55)
    return np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)


def _draw_characters(image, design, look, box, detail):
    x0, y0, x1, y1 = box
    text = design.text.replace(" ", "  ") if look.separator else design.text
    alpha, left, gaps = _text_alpha(text, x1 - x0, y1 - y0, look.weight)
    x = x0 + left
    if look.emboss:
        background = np.asarray(design.background, dtype=np.float32)
        shadow = tuple(float(value) for value in background * 0.55)
        _blend(image, alpha, x + look.emboss, y0 + look.emboss, shadow, 0.7)
        _blend(image, alpha, x - 1, y0 - 1, (255, 255, 255), 0.5)
    _blend(image, alpha, x, y0, design.ink)
    if look.separator:
        size = (y1 - y0) * (0.14 if look.separator == "dot" else 0.2)
        for gap in gaps:
            points = _symbol(look.separator, (x0 + gap, (y0 + y1) / 2), size, detail)
            _fill_polygon(image, points, look.separator_colour)


def _draw_us_look(image, design, look, body, detail):
    height, width = image.shape[:2]
    x0, y0, x1, y1 = body
    _draw_us_background(image, design, look, body, detail)
    if not look.frame:
        border = max(2, height // 40)
        cv2.rectangle(image, (0, 0), (width - 1, height - 1), look.edge, border)
    margin = detail.uniform(0.06, 0.11)
    name_box, characters, slogan_box = _us_layout(image, design, look, body, margin)
    name = design.region.title() if look.name_font == "script" else design.region
    span = detail.uniform(0.22, 0.3) * width
    put_text_fitted(
        image,
        name,
        (int(width / 2 - span), name_box[0], int(width / 2 + span), name_box[1]),
        design.accent,
        thickness_ratio=0.09 if look.name_font == "block" else 0.07,
        font=NAME_FONTS[look.name_font],
    )
    for corner, colour in look.stickers:
        sticker_width = int(width * detail.uniform(0.1, 0.14))
        if corner[0] == "t":
            top = name_box[0]
            bottom = min(name_box[1], top + int(height * detail.uniform(0.11, 0.16)))
        else:
            bottom = y1 - int(height * 0.03)
            top = max(characters[3] + int(height * 0.02), bottom - int(height * 0.13))
            if bottom - top < int(height * 0.06):
                continue
        left = (
            x0 + int(width * 0.03) if corner[1] == "l" else x1 - int(width * 0.03) - sticker_width
        )
        cv2.rectangle(image, (left, top), (left + sticker_width, bottom), colour, -1)
        digits = f"{int(detail.integers(23, 28))}"
        ink = (20, 20, 20) if sum(colour) > 300 else (245, 245, 245)
        put_text_fitted(
            image,
            digits,
            (left + 2, top + (bottom - top) // 4, left + sticker_width - 2, bottom - 2),
            ink,
            thickness_ratio=0.12,
        )
    _draw_characters(image, design, look, characters, detail)
    if slogan_box is not None:
        put_text_fitted(
            image,
            design.slogan,
            (int(width * 0.2), slogan_box[0], int(width * 0.8), slogan_box[1]),
            look.slogan_colour,
            thickness_ratio=0.08,
        )
    if look.holes:
        radius = max(2, height // 40)
        row = max(y0 + int(height * 0.04), int(height * 0.1))
        for column in (int(width * 0.2), int(width * 0.8)):
            if look.frame:
                cv2.circle(image, (column, row), radius + 2, (200, 200, 205), -1, cv2.LINE_AA)
                cv2.line(image, (column - radius, row), (column + radius, row), (90, 90, 90), 1)
            else:
                cv2.circle(image, (column, row), radius, (120, 120, 120), -1, cv2.LINE_AA)


def _draw_frame(image, design, look, opening):
    height, width = image.shape[:2]
    x0, y0, x1, y1 = opening
    radius = max(2, min(x0, y0, height - y1))
    hole = np.zeros((height, width), dtype=np.uint8)
    cv2.rectangle(hole, (x0 + radius, y0), (x1 - 1 - radius, y1 - 1), 255, -1)
    cv2.rectangle(hole, (x0, y0 + radius), (x1 - 1, y1 - 1 - radius), 255, -1)
    for cx, cy in (
        (x0 + radius, y0 + radius),
        (x1 - 1 - radius, y0 + radius),
        (x0 + radius, y1 - 1 - radius),
        (x1 - 1 - radius, y1 - 1 - radius),
    ):
        cv2.circle(hole, (cx, cy), radius, 255, -1, cv2.LINE_AA)
    base = np.asarray(look.frame_colour, dtype=np.float32)
    rows = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    if look.frame == "chrome":
        shade = np.interp(rows, (0.0, 0.3, 0.55, 1.0), (1.12, 0.8, 0.95, 0.72))
    else:
        shade = np.interp(rows, (0.0, 0.5, 1.0), (1.5, 1.0, 0.85))
    layer = np.clip(
        base[None, None, :] * shade[..., None] + (6.0 if look.frame == "black" else 0), 0, 255
    )
    layer = np.broadcast_to(layer, image.shape)
    # A shadow of the frame on the plate, just inside the opening.
    inner = cv2.erode(hole, np.ones((3, 3), np.uint8), iterations=max(1, height // 75))
    shadow = ((hole > 0) & (inner == 0))[..., None]
    image[:] = np.where(shadow, np.round(image * 0.6), image).astype(np.uint8)
    weight = 1.0 - hole.astype(np.float32)[..., None] / 255.0
    image[:] = np.round(image * (1.0 - weight) + layer * weight).astype(np.uint8)
    if look.dealer:
        band = height - y1
        middle = y1 + band / 2
        text_height = band * 0.58
        span = min(0.34 * width, len(look.dealer) * text_height * 0.42)
        put_text_fitted(
            image,
            look.dealer,
            (
                int(width / 2 - span),
                int(round(middle - text_height / 2)),
                int(width / 2 + span),
                int(round(middle + text_height / 2)),
            ),
            look.frame_ink,
            thickness_ratio=0.11,
            font=cv2.FONT_HERSHEY_DUPLEX,
        )
    if look.frame_top_text:
        text_height = y0 * 0.6
        span = min(0.3 * width, len(look.frame_top_text) * text_height * 0.4)
        put_text_fitted(
            image,
            look.frame_top_text,
            (
                int(width / 2 - span),
                int(round(y0 / 2 - text_height / 2)),
                int(width / 2 + span),
                int(round(y0 / 2 + text_height / 2)),
            ),
            look.frame_ink,
            thickness_ratio=0.1,
        )


def _draw_wear(image, look, detail):
    if not look.fade and not look.dirt:
        return
    height, width = image.shape[:2]
    pixels = image.astype(np.float32)
    if look.fade:
        grey = np.asarray((150, 155, 160), dtype=np.float32)
        pixels = pixels * (1.0 - look.fade) + grey * look.fade
    if look.dirt:
        blotches = cv2.resize(
            detail.random((3, 6)).astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC
        )
        ramp = np.linspace(0.2, 1.0, height, dtype=np.float32)[:, None]
        grime = np.clip(look.dirt * (0.55 * blotches + 0.45 * ramp), 0.0, 1.0)[..., None]
        brown = np.asarray((60, 85, 110), dtype=np.float32)
        pixels = pixels * (1.0 - 0.5 * grime) + brown * (0.5 * grime)
        pixels *= 1.0 - 0.3 * grime
    image[:] = np.clip(np.round(pixels), 0, 255).astype(np.uint8)
