"""Stickers and commercial lettering on vehicles' rears ("stickers"): a scene detail.

Besides their make and model (badges.py), real vehicles carry words and numbers of
their owners': bumper stickers ("COEXIST", "26.2"), vinyl lettering on rear windows
("In Loving Memory", a university), and on work vehicles a company's name, telephone
number, web address and US DOT number across a box truck's doors or a pickup's
tailgate; buses carry fleet numbers. Short rows of digits and capitals on a
rectangle, near a plate: the real traffic cameras' false plates include them (a van's
telephone number, a school bus's fleet number, a memorial window decal). So scenes
may show them (``details=("stickers",)``, see :func:`platelab.synth.video_specs`);
they are never annotated (hard negatives).

:func:`add_stickers` adds them as texture decals inside the faces they lie on (so the
vehicle's outline, and its ground truth, stay as they were), kept clear of the plate,
its lamps and of the badges' lettering where those came first. It draws from a
generator of its own (see scene.build_scene), so that a scene without stickers stays
as it was.
"""

import dataclasses
import logging

import cv2
import numpy as np

from platelab.synth import badges
from platelab.synth.plates import put_text_fitted
from platelab.synth.vehicles import (
    COMPANIES,
    Decal,
    cabin_rear_face,
    point_on_quad,
    quad_edges,
)

logger = logging.getLogger(__name__)

BUMPER_SHARE = 0.25
"""Share of the cars and pickups with a bumper sticker."""
WINDOW_SHARE = 0.15
"""Share of the cars with lettering on the rear window."""
WORK_SHARE = {"box_truck": 0.75, "pickup": 0.15, "city_bus": 0.6}
"""Share of each work vehicle with its company's lettering (buses: a fleet number)."""

BUMPER_WORDS = (
    "COEXIST", "26.2", "13.1", "OBX", "I LOVE NY", "PROUD PARENT", "SAVE THE BEES",
    "LIFE IS GOOD", "NO FEAR", "GO BLUE", "ROLL TIDE", "VOTE", "USMC", "ARMY", "NAVY",
    "STUDENT DRIVER", "BABY ON BOARD", "KEEP AUSTIN WEIRD", "ADOPT DON'T SHOP",
    "HONOR STUDENT", "SURF", "BORN TO FISH", "IN DOG WE TRUST", "MY OTHER CAR IS A BIKE",
)  # fmt: skip
"""Bumper stickers (one line each)."""
WINDOW_WORDS = (
    "In Loving Memory", "Forever In My Heart", "JUST MARRIED", "Baby on Board",
    "STATE UNIVERSITY", "ALUMNI", "Blessed", "MOM TAXI", "Class of 2024", "Go Tigers",
    "Family", "Adventure Awaits", "AUTONATION", "CARMAX",
)  # fmt: skip
"""Vinyl lettering on rear windows."""
TRADES = (
    "PLUMBING", "ROOFING", "ELECTRIC", "LAWN CARE", "MOVING", "HVAC", "PAINTING",
    "LANDSCAPING", "CATERING", "STORAGE", "PEST CONTROL", "FLOORING",
)  # fmt: skip
NAMES = ("ACE", "SMITH", "PRO", "AAA", "BEST", "STAR", "METRO", "ALLIED", "EAGLE", "RAPID")
_PAPERS = ((245, 245, 245), (40, 200, 250), (170, 90, 20), (40, 40, 190), (40, 140, 40))
FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_TRIPLEX)
_SCRIPT = (cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, cv2.FONT_HERSHEY_SCRIPT_COMPLEX)
_OFFSET = 0.006
"""Metres the stickers stand proud of their face (over lamps and lettering: 0.004-0.005)."""


@dataclasses.dataclass
class Sticker:
    """One sticker or line of lettering added: ``kind`` (``bumper``, ``window``,
    ``work`` or ``fleet``), its text and its corners (4, 3) in vehicle coordinates
    (top-left, top-right, bottom-right, bottom-left as seen from behind)."""

    kind: str
    text: str
    corners: np.ndarray


def add_stickers(rng, model, plates=None):
    """Adds stickers and lettering to a vehicle model's rear (in place).

    Args:
        rng: the stickers' own numpy Generator
        model: a :class:`platelab.synth.vehicles.VehicleModel` not yet drawn
        plates: optional ``{position: (4, 3) corners}`` of the plates mounted (kept
            clear of the rear one, or of both styles' where none is given)

    Returns:
        the list of :class:`Sticker` added
    """
    plates = plates or {}
    variant = model.variant
    added = []
    if variant == "box_truck":
        end = badges.end_face(model, "rear", parts=("box",))
    else:
        end = badges.end_face(model, "rear")
    if end is None:
        return []
    if variant in WORK_SHARE and rng.random() < WORK_SHARE[variant]:
        lines = _fleet_number(rng) if variant == "city_bus" else work_lines(rng, variant)
        kind = "fleet" if variant == "city_bus" else "work"
        added += _letter_lines(rng, model, end, plates, lines, kind)
    if variant in ("sedan", "suv", "hatchback", "pickup") and rng.random() < BUMPER_SHARE:
        sticker = _bumper_sticker(rng, model, end, plates)
        if sticker is not None:
            added.append(sticker)
    if variant in ("sedan", "suv", "hatchback") and rng.random() < WINDOW_SHARE:
        sticker = _window_lettering(rng, model)
        if sticker is not None:
            added.append(sticker)
    if added:
        model.flat = None  # drawn afresh with the new decals
    return added


def _phone(rng):
    digits = [int(value) for value in rng.integers(0, 10, size=10)]
    area = "".join(str(value) for value in [int(rng.integers(2, 10)), *digits[:2]])
    exchange = "".join(str(value) for value in [int(rng.integers(2, 10)), *digits[2:4]])
    line = "".join(str(value) for value in digits[4:8])
    form = int(rng.integers(5))
    if form == 0:
        return f"({area}) {exchange}-{line}"
    if form == 1:
        return f"{area}-{exchange}-{line}"
    if form == 2:
        return f"{area}.{exchange}.{line}"
    if form == 3:
        return f"1-800-{exchange}-{line}"
    return f"CALL {exchange}-{line}"


def work_lines(rng, variant):
    """A company's lines: its name, then a telephone number, web address or DOT number."""
    if rng.random() < 0.4:
        name = COMPANIES[int(rng.integers(len(COMPANIES)))]
    else:
        name = f"{NAMES[int(rng.integers(len(NAMES)))]} {TRADES[int(rng.integers(len(TRADES)))]}"
    extras = [_phone(rng)]
    if rng.random() < 0.5:
        extras.append(f"www.{name.split()[0].lower()}{name.split()[-1][:4].lower()}.com")
    if variant == "box_truck" and rng.random() < 0.6:
        extras.append(f"USDOT {int(rng.integers(100000, 3999999))}")
    order = rng.permutation(len(extras))
    chosen = [extras[int(index)] for index in order[: int(rng.integers(1, len(extras) + 1))]]
    lines = [name, *chosen] if variant == "box_truck" or rng.random() < 0.5 else chosen
    return lines


def _fleet_number(rng):
    return [str(int(rng.integers(100, 10000)))]


def _letter_lines(rng, model, end, plates, lines, kind):
    """Stacks lines of lettering down a rear face, each where it finds room."""
    plate = badges.plate_box(model, end, plates)
    obstacles = [(plate, badges.PLATE_GAP, False)]
    obstacles += badges.decal_obstacles(end, lines=False)
    paint = end.face.colour
    ink = _contrasting(rng, paint)
    font = FONTS[int(rng.integers(len(FONTS)))]
    first = model.height * float(rng.uniform(0.04, 0.07))
    added = []
    top = end.top
    for index, text in enumerate(lines):
        letter = first if index == 0 else first * float(rng.uniform(0.45, 0.8))
        aspect = badges.text_aspect(text, font) * float(rng.uniform(0.8, 1.1))
        letter = min(letter, 0.85 * 2 * end.half / aspect)
        region = (-end.half, end.half, end.bottom, top)
        rect = None
        while rect is None and letter >= 0.025:
            size = (letter * aspect * 1.1, letter * 1.3)
            rect = badges.fit(rng, region, size, obstacles, True, False)
            letter *= 0.8
        if rect is None:
            continue
        obstacles.append((rect, badges.DECAL_GAP, False))
        top = rect[2]
        background = badges.background_under(end, rect)
        texture = badges.lettering_texture(rng, text, font, background, ink, _aspect_of(rect))
        added.append(_attach_flat(end, rect, texture, kind, text))
    return added


def _bumper_sticker(rng, model, end, plates):
    """A printed sticker on the bumper or boot, clear of the plate and lamps."""
    plate = badges.plate_box(model, end, plates)
    obstacles = [(plate, badges.PLATE_GAP, False)]
    obstacles += badges.decal_obstacles(end, lines=True)
    width = float(rng.uniform(0.2, 0.3))
    height = width / float(rng.uniform(2.8, 4.2))
    region = (-end.half, end.half, end.bottom, end.top)
    rect = badges.fit(rng, region, (width, height), obstacles, False, True)
    if rect is None:
        return None
    text = BUMPER_WORDS[int(rng.integers(len(BUMPER_WORDS)))]
    texture = sticker_texture(rng, text, _aspect_of(rect))
    return _attach_flat(end, rect, texture, "bumper", text)


def sticker_texture(rng, text, aspect):
    """A printed sticker: ``text`` on paper, sometimes framed, 48 px high.

    Args:
        rng: a numpy Generator
        text: its words (one line)
        aspect: width over height

    Returns:
        ``(48, w, 3)`` uint8 BGR
    """
    paper = _PAPERS[int(rng.integers(len(_PAPERS)))]
    ink = _contrasting(rng, paper)
    texture = np.empty((48, max(8, int(48 * aspect)), 3), np.uint8)
    texture[:] = paper
    if rng.random() < 0.5:  # a border
        cv2.rectangle(texture, (2, 2), (texture.shape[1] - 3, 45), ink, 2)
    font = FONTS[int(rng.integers(len(FONTS)))]
    margin = 8
    put_text_fitted(texture, text, (margin, 9, texture.shape[1] - margin, 39), ink, 0.14, font=font)
    return texture


def _window_lettering(rng, model):
    """White (or silver) vinyl letters across the lower part of a car's rear window."""
    face = cabin_rear_face(model)
    if face is None:
        return None
    top, bottom = quad_edges(face)
    text = WINDOW_WORDS[int(rng.integers(len(WINDOW_WORDS)))]
    script = text[1:] != text[1:].upper()
    font = _SCRIPT[int(rng.integers(2))] if script and rng.random() < 0.6 else FONTS[0]
    width = float(rng.uniform(0.35, 0.7))
    span = float(np.ptp(bottom[:, 1]))
    share = min(width / max(span, 1e-6), 0.85)
    centre = 0.5 + float(rng.uniform(-0.5, 0.5)) * (1.0 - share)
    u0, u1 = centre - share / 2, centre + share / 2
    height = width / max(badges.text_aspect(text, font), 1.0)
    tall = float(np.linalg.norm(top.mean(axis=0) - bottom.mean(axis=0)))
    v1 = float(rng.uniform(0.8, 0.92))
    v0 = max(0.1, v1 - 1.3 * height / max(tall, 1e-6))
    corners = np.array(
        [point_on_quad(top, bottom, u, v) for u, v in ((u1, v0), (u0, v0), (u0, v1), (u1, v1))]
    )
    corners += face.normal * 0.004
    ink = (235, 235, 235) if rng.random() < 0.8 else (190, 190, 195)
    aspect = float(np.linalg.norm(corners[1] - corners[0])) / max(
        float(np.linalg.norm(corners[3] - corners[0])), 1e-6
    )
    texture = badges.lettering_texture(rng, text, font, face.colour, ink, aspect)
    face.decals.append(Decal(corners, ink, kind="texture", texture=texture, solid=False))
    return Sticker("window", text, corners)


def _attach_flat(end, rect, texture, kind, text):
    """A texture decal over ``rect`` (u0, u1, y0, y1) of an end face."""
    corners = badges.rect_corners(end, rect, _OFFSET)
    colour = tuple(int(value) for value in texture[texture.shape[0] // 2, 0, :3])
    end.holder.decals.append(Decal(corners, colour, kind="texture", texture=texture, solid=False))
    return Sticker(kind, text, corners)


def _aspect_of(rect):
    return (rect[1] - rect[0]) / max(rect[3] - rect[2], 1e-6)


def _contrasting(rng, paper):
    """An ink that shows on ``paper``: dark on light, white or yellow on dark."""
    if float(np.mean(paper)) > 140:
        choices = ((20, 20, 20), (150, 60, 10), (30, 30, 170))
    else:
        choices = ((245, 245, 245), (40, 210, 250))
    return choices[int(rng.integers(len(choices)))]
