"""Rear lamps with the insides of real ones, lit when braking ("lamps"): a scene detail.

The plain models' tail lamps are flat red rectangles. Real ones show LED rows and
bars, rings and clear reverse-lamp sections behind their lenses; many cars add a
light bar across the boot and a third brake lamp (a CHMSL) above the rear window. A
car braking at a gate or in a queue lights them in daylight too, and a camera then
sees a bright, saturated rectangle with a pattern inside, about a plate's size and
shape: the real traffic cameras' false plates include lit LED lamps and light bars.
So scenes may show them (``details=("lamps",)``, see
:func:`platelab.synth.video_specs`); they are never annotated (hard negatives).

:func:`add_lamps` lays a texture over each rear lamp of a vehicle model (BGR decals
inside the lamp's own rectangle: the outline, and so the ground truth, stay as they
were), maybe a light bar between them (kept clear of the plate), and a third brake lamp
on cars' rear windows and pickups' cabs. Lit lamps are emissive: drawn at their own
brightness whatever the scene's light (:attr:`platelab.synth.vehicles.Decal.emissive`).
It draws from a generator of its own (see scene.build_scene), so that a scene without
lamps stays as it was.
"""

import dataclasses
import logging

import cv2
import numpy as np

from platelab.synth.badges import end_face, plate_box, rect_corners
from platelab.synth.vehicles import Decal, cabin_rear_face, point_on_quad, quad_edges

logger = logging.getLogger(__name__)

BRAKING = 0.4
"""Share of the moving vehicles whose brake lamps are lit (in any light)."""
STYLES = ("solid", "bars", "dots", "ring")
"""What lights a lamp: one glowing area, horizontal LED bars, rows of LEDs, a ring."""
STYLE_WEIGHTS = (0.25, 0.35, 0.2, 0.2)
CLEAR_SHARE = 0.35
"""Share of the lamps with a clear (white) reverse-lamp band."""
BAR_SHARE = 0.2
"""Share of the cars (sedan, SUV, hatchback) with a light bar across the boot."""
CHMSL_SHARE = 0.7
"""Share of the cars and pickups with a third brake lamp."""
TAIL_LEVEL = 0.65
"""Brightness of lit lamps that are tail lamps only (lights on, not braking)."""

_HEIGHT = 40
"""Texture height in pixels (its width follows the lamp's aspect)."""
_OFFSET = 0.006
"""Metres the textures stand proud of the lamp (drawn after it)."""
_UNLIT = (42, 32, 140)
_UNLIT_RIDGE = (70, 58, 175)
_LIT = (40, 30, 235)
_LIT_CORE = (205, 195, 255)
_CLEAR_UNLIT = (168, 166, 170)
_CARS = ("sedan", "suv", "hatchback")


@dataclasses.dataclass
class Lamp:
    """One textured lamp added: ``kind`` (``tail``, ``bar`` or ``chmsl``), its style,
    whether lit, and its corners (4, 3) in vehicle coordinates."""

    kind: str
    style: str
    lit: bool
    corners: np.ndarray


def add_lamps(rng, model, moving=True, lights_on=False, plates=None):
    """Gives a vehicle model's rear lamps real insides, lit when braking (in place).

    Args:
        rng: the lamps' own numpy Generator
        model: a :class:`platelab.synth.vehicles.VehicleModel` not yet drawn
        moving: whether the vehicle drives (parked ones never brake)
        lights_on: whether its lamps are lit anyway (tail lamps at night)
        plates: optional ``{position: (4, 3) corners}`` of the plates mounted (a light
            bar keeps clear of the rear one, or of both styles' where none is given)

    Returns:
        the list of :class:`Lamp` added (tail lamps, a light bar, a third brake lamp)
    """
    end = end_face(model, "rear")
    if end is None:
        return []
    braking = moving and rng.random() < BRAKING
    level = 1.0 if braking else TAIL_LEVEL if lights_on else 0.0
    style = STYLES[int(rng.choice(len(STYLES), p=STYLE_WEIGHTS))]
    clear = rng.random() < CLEAR_SHARE
    tails = [decal for decal in end.decals if decal.light == "tail" and decal.kind == "polygon"]
    added = []
    if tails:
        u = end.side * tails[0].points[:, 1]
        height = float(np.ptp(tails[0].points[:, 2]))
        aspect = float(np.ptp(u)) / max(height, 1e-6)
        texture = lamp_texture(rng, aspect, style, level, clear)
        for decal in tails:
            corners = _proud(decal.points, end)
            # The lamps mirror each other: the one on the image's right is flipped.
            mirrored = float(np.mean(end.side * corners[:, 1])) > 0
            _attach(end.holder, corners, texture[:, ::-1] if mirrored else texture, level)
            added.append(Lamp("tail", style, level > 0, corners))
    if model.variant in _CARS and tails and rng.random() < BAR_SHARE:
        bar = _light_bar(rng, model, end, tails, plates or {}, style, level)
        if bar is not None:
            added.append(bar)
    if model.variant in (*_CARS, "pickup") and rng.random() < CHMSL_SHARE:
        third = _third_lamp(rng, model, 1.0 if braking else 0.0)
        if third is not None:
            added.append(third)
    if added:
        model.flat = None  # drawn afresh with the new decals
    return added


def _proud(points, end):
    """A decal's corners moved off the face (outward) so that they are drawn over it."""
    corners = np.array(points, dtype=np.float64)
    corners[:, 0] = end.a + _OFFSET * end.outward
    return corners


def _attach(face, corners, texture, level):
    face.decals.append(
        Decal(
            corners,
            tuple(int(value) for value in texture[texture.shape[0] // 2, 0]),
            kind="texture",
            texture=np.ascontiguousarray(texture),
            solid=False,
            emissive=level > 0,
        )
    )


def _light_bar(rng, model, end, tails, plates, style, level):
    """A bar of lamp across the boot between the tail lamps, clear of the plate."""
    u = np.concatenate([end.side * decal.points[:, 1] for decal in tails])
    y = np.concatenate([decal.points[:, 2] for decal in tails])
    inner = float(np.min(np.abs(u)))
    top = float(y.max())
    thickness = float(rng.uniform(0.035, 0.07))
    y0, y1 = top - thickness, top
    u_plate0, u_plate1, y_plate0, y_plate1 = plate_box(model, end, plates)
    if y0 < y_plate1 + 0.02 and u_plate0 < inner and u_plate1 > -inner:
        return None
    corners = rect_corners(end, (-inner, inner, y0, y1), _OFFSET)
    texture = lamp_texture(rng, 2 * inner / thickness, "bars" if style == "ring" else style, level)
    _attach(end.holder, corners, texture, level)
    return Lamp("bar", style, level > 0, corners)


def _third_lamp(rng, model, level):
    """A thin third brake lamp at the top of a car's rear window or a pickup's cab."""
    face = cabin_rear_face(model)
    if face is None:
        return None
    top, bottom = quad_edges(face)
    width = float(rng.uniform(0.18, 0.3))
    share = min(width / max(float(np.ptp(top[:, 1])), 1e-6), 0.8)
    low, high = float(rng.uniform(0.02, 0.05)), float(rng.uniform(0.08, 0.12))
    u0, u1 = 0.5 - share / 2, 0.5 + share / 2
    # u across the window (0..1), v down from its top edge (0..1); seen from behind,
    # the image's left is +b: the top-left corner is at u1.
    corners = np.array(
        [
            point_on_quad(top, bottom, u, v)
            for u, v in ((u1, low), (u0, low), (u0, high), (u1, high))
        ]
    )
    corners += face.normal * 0.004
    length = np.linalg.norm(corners[1] - corners[0])
    tall = np.linalg.norm(corners[3] - corners[0])
    texture = lamp_texture(rng, length / max(tall, 1e-6), "dots", level)
    face.decals.append(
        Decal(corners, _UNLIT, kind="texture", texture=texture, solid=False, emissive=level > 0)
    )
    return Lamp("chmsl", "dots", level > 0, corners)


def lamp_texture(rng, aspect, style, level, clear=False):
    """A lamp's face, ``_HEIGHT`` px high and ``aspect`` times as wide (BGR, uint8).

    Unlit (``level`` 0): a dark red lens with lighter ridges where the light sources
    sit. Lit: saturated red with near-white cores (a camera's view of LEDs, clipped),
    softened into a bloom, at ``level`` of full brightness.
    """
    height = _HEIGHT
    width = int(np.clip(round(height * aspect), 8, 16 * height))
    lit = level > 0
    image = np.empty((height, width, 3), np.float32)
    image[:] = _LIT if lit else _UNLIT
    light = np.zeros((height, width), np.float32)
    top = 0
    if clear:  # a clear reverse-lamp band along the top
        top = int(height * rng.uniform(0.25, 0.4))
        image[:top] = _CLEAR_UNLIT
    inner = (slice(top, height), slice(0, width))
    h, w = height - top, width
    stroke = max(2, int(round(h * rng.uniform(0.08, 0.14))))
    if style == "solid":
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        spot = np.exp(-(((xx - w / 2) / (0.45 * w)) ** 2 + ((yy - h / 2) / (0.5 * h)) ** 2))
        light[inner] = spot
    elif style == "bars":
        count = int(rng.integers(1, 4))
        for row in np.linspace(0, h, count + 2)[1:-1]:
            y = top + int(row)
            cv2.line(light, (stroke, y), (w - 1 - stroke, y), 1.0, stroke)
    elif style == "dots":
        rows = int(rng.integers(1, 4))
        pitch = h / (rows + 0.5)
        columns = max(3, int(w / pitch))
        radius = max(1, int(pitch * rng.uniform(0.18, 0.3)))
        for y in np.linspace(pitch * 0.75, h - pitch * 0.75, rows):
            for x in np.linspace(pitch * 0.6, w - pitch * 0.6, columns):
                cv2.circle(light, (int(x), top + int(y)), radius, 1.0, -1)
    else:  # ring: a C-shaped or round light guide
        centre = (int(w * rng.uniform(0.3, 0.7)), top + h // 2)
        axes = (max(2, int(min(w * 0.35, h * 0.8))), max(2, int(h * 0.35)))
        cv2.ellipse(light, centre, axes, 0, 20, 340, 1.0, stroke)
    if lit:
        bloom = cv2.GaussianBlur(light, (0, 0), max(1.0, stroke * 0.8))
        light = np.clip(np.maximum(light, 1.6 * bloom), 0.0, 1.0)
        image[inner] = _mix(image[inner], _LIT_CORE, light[inner])
        image *= level
    else:
        image[inner] = _mix(image[inner], _UNLIT_RIDGE, light[inner])
        # Fresnel ridges of the lens: faint horizontal lines.
        for y in range(top + 2, height, 4):
            image[y] = image[y] * 0.92
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def _mix(image, colour, weight):
    """``image`` blended towards ``colour`` by ``weight`` (H, W in 0..1)."""
    weight = weight[..., None]
    return image * (1.0 - weight) + np.asarray(colour, np.float32) * weight
