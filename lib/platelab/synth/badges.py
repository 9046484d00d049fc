"""Make and model lettering on vehicles ("badges"): a scene detail.

Real vehicles carry their make, model and trim in chrome or dark letters on the
tailgate or boot lid, beside or above the plate ("CAMRY", "SXT", "HYBRID"), sometimes
a wide word across a pickup's tailgate ("T I T A N", "CHEVROLET") and a make on the
front grille ("GMC", "RAM"). To a plate detector these rows of characters near a
plate look like plates, so scenes may show them (``details=("badges",)``, see
:func:`platelab.synth.video_specs`); they are never annotated (hard negatives).

:func:`add_badges` adds the lettering to a vehicle model as texture decals on its end
faces (BGRA: the paint or the grille shows between the letters), kept clear of the
plate and of the lamps, panels and seams already on the face. It draws from a generator of
its own (see scene.build_scene), so that a scene without badges stays as it was; the
decals lie inside their face and leave the vehicle's outline, and so its ground
truth, as they were.
"""

import dataclasses
import logging

import cv2
import numpy as np

from platelab.synth.plates import PLATE_SIZES, put_text_fitted
from platelab.synth.vehicles import GLASS, Decal, plate_corners

logger = logging.getLogger(__name__)

PROBABILITY = 0.7
"""Share of the vehicles (of the kinds that carry them) with lettering."""

MAKES = (
    "TOYOTA", "HONDA", "NISSAN", "FORD", "CHEVROLET", "GMC", "DODGE", "JEEP", "KIA",
    "HYUNDAI", "MAZDA", "SUBARU", "VOLVO", "RENAULT", "LADA", "PEUGEOT", "OPEL", "SKODA",
    "BUICK", "LEXUS", "ACURA", "CHRYSLER", "TESLA", "MITSUBISHI",
)  # fmt: skip
"""Makes, written above the plate (and on front grilles)."""
MODELS = (
    "CAMRY", "COROLLA", "ACCORD", "CIVIC", "ALTIMA", "SENTRA", "MALIBU", "IMPALA",
    "FUSION", "FOCUS", "YUKON", "TAHOE", "EXPLORER", "ESCAPE", "CHARGER", "RAV4", "CR-V",
    "PILOT", "SONATA", "ELANTRA", "OPTIMA", "OUTBACK", "PRIUS", "GOLF", "PASSAT",
    "JETTA", "LOGAN", "VESTA", "CLIO", "MEGANE", "ODYSSEY", "CX-5",
)  # fmt: skip
"""Model names, written beside the plate (usually on the image's right)."""
TRIMS = (
    "SXT", "GTD", "TDI", "GTI", "HYBRID", "4X4", "AWD", "4WD", "LIMITED", "SPORT", "LE",
    "SE", "XLE", "EX-L", "LX", "SLT", "LTZ", "Z71", "V6", "TURBO", "DENALI", "SR5", "TRD",
)  # fmt: skip
"""Trims and drivetrains, written beside the plate (usually on the image's left)."""
PICKUP_WORDS = (
    "TITAN", "TUNDRA", "TACOMA", "TOYOTA", "CHEVROLET", "GMC", "FORD", "RAM", "SIERRA",
    "SILVERADO", "NISSAN", "DODGE", "FRONTIER", "F-150",
)  # fmt: skip
"""Words written large across a pickup's tailgate."""
GRILLE_WORDS = ("GMC", "RAM", "TOYOTA", "FORD", "NISSAN", "DODGE", "JEEP", "KIA", "TESLA")
"""Makes written on front grilles of cars and pickups."""
TRUCK_MAKES = ("ISUZU", "HINO", "FUSO", "FORD", "GMC", "INTERNATIONAL", "FREIGHTLINER")
"""Makes on box trucks' grilles."""
BUS_MAKES = (
    "VOLVO", "MAN", "SCANIA", "IVECO", "MERCEDES-BENZ", "NEW FLYER", "GILLIG", "NOVA BUS",
    "SETRA", "SOLARIS", "HYBRID",
)  # fmt: skip
"""Makes (and the odd HYBRID) on buses."""

FONTS = (
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_TRIPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
)
PLATE_GAP = 0.025
"""Metres kept clear around the plate."""
DECAL_GAP = 0.015
"""Metres kept clear around lamps, panels and other lettering."""
LINE_GAP = 0.005
"""Metres kept clear around lines (seams, grille bars)."""
EDGE = 0.025
"""Metres kept clear of the face's edges."""

_TEXTURE_LETTER = 48
"""Letter height of the badge textures in pixels."""
_TEXTURE_PAD = 0.12
"""Texture margin around the letters, a share of the letter height."""
_OFFSET = 0.005
"""How far the lettering stands out of its face (metres; lamps and panels: 0.004)."""


@dataclasses.dataclass
class Badge:
    """One lettering decal added to a vehicle model.

    Attributes:
        position: ``front`` or ``rear``
        slot: ``make`` (above the plate), ``model`` and ``trim`` (beside it), ``wide``
            (across a pickup's tailgate) or ``grille`` (on the front)
        text: the lettering
        rect: (u0, u1, y0, y1): its extent in metres on the face, ``u`` across it as
            seen from outside (left to right), ``y`` up from the ground
        corners: (4, 3) corners in vehicle coordinates (top-left, top-right,
            bottom-right, bottom-left as seen from outside)
        ink: BGR colour of the letters (chrome or dark; before lighting)
    """

    position: str
    slot: str
    text: str
    rect: tuple
    corners: np.ndarray
    ink: tuple


def add_badges(rng, model, plates=None):
    """Adds make and model lettering to a vehicle model (in place).

    About :data:`PROBABILITY` of the vehicles get one or two words on the rear (a make
    above the plate, a model and a trim beside it; on pickups sometimes a wide word
    across the tailgate), and some a make on the front; box trucks on the front only.

    Args:
        rng: the badges' own numpy Generator
        model: a :class:`platelab.synth.vehicles.VehicleModel` not yet drawn (its
            decals are cached on the first drawing)
        plates: optional ``{position: (4, 3) corners}`` of the plates mounted; at
            a mount without one given both plate styles' corners are kept clear

    Returns:
        the list of :class:`Badge` added (empty for the vehicles without, and where no
        word finds room)
    """
    if rng.random() >= PROBABILITY:
        return []
    plates = plates or {}
    added = []
    variant = model.variant
    if variant != "box_truck":
        end = end_face(model, "rear")
        if end is not None:
            added += _rear(rng, model, end, plates)
    if rng.random() < (0.8 if variant == "box_truck" else 0.3):
        end = end_face(model, "front")
        if end is not None:
            added += _front(rng, model, end, plates)
    return added


@dataclasses.dataclass
class _End:
    """An end face of a vehicle and what lies on its plane.

    Attributes:
        position: ``front`` or ``rear``
        face: the painted Face
        holder: the Face whose decals the lettering joins: the last one holding decals
            on the plane (some models keep their lamps, bumper and seams on the
            neighbouring face's list), so that the lettering is drawn after them
        decals: every decal on its plane
        a: the plane's ``a``
        outward: +1 at the rear, -1 at the front
        side: ``b = side * u`` (``u`` left to right as seen from outside)
        half: the usable half width (edge margin deducted)
        bottom: the lowest usable ``y``
        top: the highest usable ``y``
    """

    position: str
    face: object
    holder: object
    decals: list
    a: float
    outward: float
    side: float
    half: float
    bottom: float
    top: float


def end_face(model, position, parts=("body", "cab")):
    """The painted end face of the body (or the cab) at the front or rear, or None.

    ``parts`` names the parts searched (``("box",)``: a box truck's load box).
    """
    outward = 1.0 if position == "rear" else -1.0
    best = None
    for part in model.parts:
        if part.name not in parts:
            continue
        for face in part.faces.values():
            if face.material != "paint" or face.normal[0] * outward < 0.999:
                continue
            a = float(face.points[:, 0].mean())
            if best is None or a * outward > best[2] * outward:
                best = (part, face, a)
    if best is None:
        return None
    part, face, a = best
    decals, holder = [], face
    for other in part.faces.values():
        on_plane = [
            decal for decal in other.decals if np.all(np.abs(decal.points[:, 0] - a) < 0.02)
        ]
        if on_plane:
            decals += on_plane
            holder = other
    points = face.points
    return _End(
        position=position,
        face=face,
        holder=holder,
        decals=decals,
        a=a,
        outward=outward,
        side=1.0 if outward < 0 else -1.0,
        half=float(np.abs(points[:, 1]).min()) - EDGE,
        bottom=float(points[:, 2].min()) + EDGE,
        top=float(points[:, 2].max()) - EDGE,
    )


def _rear(rng, model, end, plates):
    variant = model.variant
    if variant == "city_bus":
        plans = [("make", BUS_MAKES)]
    elif variant == "pickup" and rng.random() < 0.45:
        plans = [("wide", PICKUP_WORDS)]
        if rng.random() < 0.4:
            plans.append(("trim", TRIMS))
    else:
        models = PICKUP_WORDS if variant == "pickup" else MODELS
        plans = [("make", MAKES), ("model", models), ("trim", TRIMS)]
        count = 1 if rng.random() < 0.45 else 2
        chosen = sorted(rng.choice(len(plans), size=count, replace=False, p=(0.3, 0.45, 0.25)))
        plans = [plans[int(index)] for index in chosen]
    added = []
    for slot, words in plans:
        badge = _place(rng, model, end, slot, words, plates, added)
        if badge is not None:
            added.append(badge)
    return added


def _front(rng, model, end, plates):
    if model.variant == "box_truck":
        words = TRUCK_MAKES
    elif model.variant == "city_bus":
        words = BUS_MAKES[:-1]
    else:
        words = GRILLE_WORDS
    badge = _place(rng, model, end, "grille", words, plates, [])
    return [] if badge is None else [badge]


def _place(rng, model, end, slot, words, plates, taken):
    """Sizes and places one word in its slot of an end face; None if it finds no room."""
    plate = plate_box(model, end, plates)
    obstacles = [(plate, PLATE_GAP, False)]
    # Lettering may cover a grille's bars and a pickup tailgate's crease.
    lines = slot != "grille" and not (model.variant == "pickup" and slot in ("make", "wide"))
    obstacles += decal_obstacles(end, lines=lines)
    obstacles += [(badge.rect, DECAL_GAP, False) for badge in taken]
    text = words[int(rng.integers(len(words)))]
    font = FONTS[int(rng.choice(len(FONTS), p=(0.35, 0.35, 0.15, 0.15)))]
    condense = float(rng.uniform(0.8, 1.15))
    if slot == "wide":
        if rng.random() < 0.6:
            text = " ".join(text.replace(" ", ""))
        letter = model.height * float(rng.uniform(0.06, 0.10))
        widest = 0.6 * model.width
    else:
        # 2.5-7 % of the width, mostly the small end (real badges are 2-5 cm high).
        letter = model.width * (0.025 + 0.045 * float(rng.beta(1.2, 3.2)))
        widest = 0.45 * model.width
    aspect = text_aspect(text, font) * condense
    letter = min(letter, widest / aspect)
    smallest = 0.02 * model.width
    inside_ok = slot == "grille" or model.variant == "city_bus"
    u_plate0, u_plate1, y_plate0, y_plate1 = plate
    if slot in ("make", "wide", "grille"):
        region = (-end.half, end.half, y_plate1 + PLATE_GAP, end.top)
    elif slot == "model":
        region = (u_plate1 + PLATE_GAP, end.half, y_plate0, end.top)
    else:
        region = (-end.half, u_plate0 - PLATE_GAP, y_plate0, end.top)
    centred = slot in ("make", "wide", "grille")
    while letter >= smallest:
        pad = _TEXTURE_PAD * letter
        size = (letter * aspect + 2 * pad, letter + 2 * pad)
        rect = fit(rng, region, size, obstacles, centred, inside_ok)
        if rect is not None:
            return _attach(rng, model, end, slot, text, font, rect)
        letter *= 0.8
    return None


def fit(rng, region, size, obstacles, centred, inside_ok):
    """A free (u0, u1, y0, y1) of a size in a region, or None after a few tries."""
    u0, u1, y0, y1 = region
    width, height = size
    if width > u1 - u0 or height > y1 - y0:
        return None
    for _ in range(12):
        if centred:
            centre_u = float(np.clip(rng.normal(0.0, 0.015), u0 + width / 2, u1 - width / 2))
        else:
            centre_u = float(rng.uniform(u0 + width / 2, u1 - width / 2))
        # Low in the region (near the plate's height) more often than high.
        centre_y = y0 + height / 2 + (y1 - y0 - height) * float(rng.beta(1.3, 2.2))
        rect = (
            centre_u - width / 2,
            centre_u + width / 2,
            centre_y - height / 2,
            centre_y + height / 2,
        )
        if all(
            not _overlap(rect, box, gap) or (inside_ok and panel and _within(rect, box))
            for box, gap, panel in obstacles
        ):
            return rect
    return None


def _attach(rng, model, end, slot, text, font, rect):
    u0, u1, y0, y1 = rect
    background = background_under(end, rect)
    ink = pick_ink(rng, background)
    texture = lettering_texture(rng, text, font, background, ink, (u1 - u0) / (y1 - y0))
    corners = rect_corners(end, rect, _OFFSET)
    end.holder.decals.append(
        Decal(corners, background, kind="texture", texture=texture, solid=False)
    )
    model.flat = None  # drawn afresh with the new decal
    return Badge(end.position, slot, text, rect, corners, ink)


def rect_corners(end, rect, offset):
    """The (4, 3) corners in vehicle coordinates of a rect ``(u0, u1, y0, y1)`` on an end
    face, ``offset`` metres out of it (top-left, top-right, bottom-right, bottom-left as
    seen from outside)."""
    u0, u1, y0, y1 = rect
    a, side = end.a + offset * end.outward, end.side
    return np.array(
        [[a, side * u0, y1], [a, side * u1, y1], [a, side * u1, y0], [a, side * u0, y0]]
    )


def plate_box(model, end, plates):
    """(u0, u1, y0, y1) the plate takes on the face: the plate given, else both plate
    styles' at the mount, else a nominal plate in the middle of the face."""
    if end.position in plates:
        quads = [np.asarray(plates[end.position], dtype=np.float64)]
    elif end.position in model.plates:
        quads = [plate_corners(model, end.position, size) for size in PLATE_SIZES.values()]
    else:
        width, height = PLATE_SIZES["us"]
        middle = (end.bottom + end.top) / 2
        return (-width / 2, width / 2, middle - height / 2, middle + height / 2)
    corners = np.concatenate(quads)
    u = end.side * corners[:, 1]
    return (float(u.min()), float(u.max()), float(corners[:, 2].min()), float(corners[:, 2].max()))


def decal_obstacles(end, lines=True):
    """``((u0, u1, y0, y1), gap, lettering may sit inside)`` of the lamps, panels and
    (with ``lines``) the lines' segments on an end face."""
    obstacles = []
    for decal in end.decals:
        u, y = end.side * decal.points[:, 1], decal.points[:, 2]
        if decal.kind == "line":
            if not lines:
                continue
            half = decal.width / 2
            for start in range(len(u) - 1):
                pair = slice(start, start + 2)
                box = (
                    float(u[pair].min() - half),
                    float(u[pair].max() + half),
                    float(y[pair].min() - half),
                    float(y[pair].max() + half),
                )
                obstacles.append((box, LINE_GAP, False))
            continue
        panel = decal.light is None and decal.kind == "polygon" and tuple(decal.colour) != GLASS
        box = (float(u.min()), float(u.max()), float(y.min()), float(y.max()))
        obstacles.append((box, DECAL_GAP, panel))
    return obstacles


def background_under(end, rect):
    """The colour beneath a rect: that of the last panel holding it, else the paint."""
    colour = end.face.colour
    for decal in end.decals:
        if decal.kind != "polygon" or decal.light is not None:
            continue
        u = end.side * decal.points[:, 1]
        box = (u.min(), u.max(), decal.points[:, 2].min(), decal.points[:, 2].max())
        if _within(rect, box):
            colour = decal.colour
    return tuple(int(value) for value in colour)


def pick_ink(rng, background):
    """Chrome (light grey) or dark letters, mostly the ones that show on the background."""
    light = float(np.mean(background)) > 150
    dark = rng.random() < (0.6 if light else 0.15)
    if dark:
        value = int(rng.integers(20, 61))
        return (value, value, value)
    value = int(rng.integers(170, 231))
    return (min(value + 6, 255), value, max(value - 4, 0))


def lettering_texture(rng, text, font, background, ink, aspect):
    """The lettering image (BGRA: the paint shows between the letters); chrome letters
    shade light to dark downwards, with a thin shadow beneath (relief)."""
    height = int(round(_TEXTURE_LETTER * (1 + 2 * _TEXTURE_PAD)))
    width = max(int(round(height * aspect)), 8)
    pad = int(round(_TEXTURE_LETTER * _TEXTURE_PAD))
    drawn = np.zeros((height, width, 3), dtype=np.uint8)
    thickness = float(rng.uniform(0.1, 0.17))
    put_text_fitted(
        drawn, text, (pad, pad, width - pad, height - pad), (255, 255, 255), thickness, font
    )
    letters_alpha = drawn[..., :1].astype(np.float32) / 255.0
    colour = np.empty((height, width, 3), dtype=np.float32)
    colour[:] = ink
    alpha = letters_alpha
    if float(np.mean(ink)) > 100:  # chrome
        colour *= np.linspace(1.12, 0.82, height, dtype=np.float32)[:, None, None]
        shift = max(1, int(round(_TEXTURE_LETTER * 0.06)))
        shadow = np.zeros_like(letters_alpha)
        shadow[shift:, shift // 2 :] = letters_alpha[:-shift, : width - shift // 2]
        shadow *= 0.55 * (1.0 - letters_alpha)
        dark = np.asarray(background, dtype=np.float32) * 0.35
        alpha = letters_alpha + shadow
        colour = (colour * letters_alpha + dark * shadow) / np.maximum(alpha, 1e-6)
        colour = np.where(alpha > 0, colour, np.asarray(ink, dtype=np.float32))
    image = np.concatenate([colour, alpha * 255.0], axis=2)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def text_aspect(text, font):
    """Width over height of a text's letters in a font (as put_text_fitted draws them)."""
    (width, height), _ = cv2.getTextSize(text, font, 3.0, 9)
    return width / max(height, 1)


def _overlap(rect, box, gap):
    return (
        rect[0] < box[1] + gap
        and box[0] - gap < rect[1]
        and rect[2] < box[3] + gap
        and box[2] - gap < rect[3]
    )


def _within(rect, box):
    return box[0] <= rect[0] and rect[1] <= box[1] and box[2] <= rect[2] and rect[3] <= box[3]
