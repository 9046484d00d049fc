"""Vehicle models: sedans, trucks and buses as prisms with decals.

A vehicle is modelled in its own coordinates, metres: ``a`` along its length
(0 at the front bumper, ``length`` at the rear), ``b`` across it (0 on the
centre line), ``y`` up from the ground. It is made of convex prisms (the body,
the cabin, the cargo box, the wheels), each the extrusion of a side profile
across the width, with a half-width per profile vertex so that cabins taper.
Faces carry decals (windows, lights, grilles, bumpers, doors, text) and the
front and rear ends carry license-plate mounts. ``sprites.render_sprite``
draws a model seen from a direction.
"""

import dataclasses
import logging
import math

import cv2
import numpy as np

from platelab.synth.plates import put_text_fitted

logger = logging.getLogger(__name__)

VEHICLE_TYPES = ("sedan", "truck", "bus")

PAINTS = (
    ((235, 235, 235), 0.20),  # white
    ((30, 30, 32), 0.17),  # black
    ((170, 170, 165), 0.15),  # silver
    ((95, 95, 95), 0.12),  # grey
    ((35, 35, 170), 0.09),  # red
    ((130, 70, 25), 0.09),  # blue
    ((60, 85, 40), 0.04),  # dark green
    ((130, 170, 190), 0.04),  # beige
    ((80, 40, 20), 0.04),  # dark blue
    ((20, 170, 235), 0.03),  # yellow (taxi)
    ((20, 100, 200), 0.03),  # orange
)
BUS_PAINTS = (
    ((0, 185, 245), 0.30),  # school-bus yellow
    ((238, 238, 238), 0.30),  # white
    ((40, 40, 190), 0.15),  # red
    ((70, 135, 35), 0.12),  # green
    ((165, 95, 25), 0.13),  # blue
)
BOX_PAINTS = (
    ((240, 240, 240), 0.55),
    ((200, 200, 200), 0.15),
    ((40, 120, 220), 0.10),
    ((150, 80, 30), 0.10),
    ((60, 60, 180), 0.10),
)
COMPANIES = (
    "FRESH FOODS",
    "ACME MOVING",
    "CITY LOGISTICS",
    "BEST DELIVERY",
    "NORTH FREIGHT",
    "QUICK PARCEL",
    "GREEN GROCERS",
    "METRO SUPPLY",
)
DESTINATIONS = (
    "42 CENTRAL STN",
    "7 AIRPORT",
    "15 UNIVERSITY",
    "3 HARBOUR",
    "88 OLD TOWN",
    "21 MALL",
)

GLASS = (70, 55, 45)
DARK = (38, 38, 40)
TYRE = (28, 28, 30)
RIM = (165, 165, 170)
CHROME = (175, 175, 180)
HEADLIGHT_OFF = (205, 205, 200)
HEADLIGHT_ON = (235, 250, 255)
TAILLIGHT_OFF = (40, 30, 150)
TAILLIGHT_ON = (70, 60, 255)
INDICATOR = (40, 140, 240)


@dataclasses.dataclass
class Decal:
    """A flat detail drawn on a face.

    Attributes:
        points: (N, 3) polygon in vehicle coordinates (a, b, y); for ``line``
            decals the polyline
        colour: BGR colour (before lighting)
        kind: ``polygon``, ``line`` or ``texture``
        light: ``None``, ``"head"`` or ``"tail"`` (lights glow when switched on)
        texture: the image for ``texture`` decals (corners: top-left, top-right,
            bottom-right, bottom-left as seen from outside): BGR, or BGRA to blend it
            by its alpha over what lies beneath (lettering without a background)
        width: line width in metres for ``line`` decals
        solid: for ``texture`` decals, whether the texture's pixels also count as the
            vehicle's (its sprite mask); False for lettering that lies inside its face
            (badges), which so leaves the vehicle's outline as it was to the pixel
        emissive: for ``texture`` decals, drawn at the texture's own brightness, not
            shaded by the scene's light (lit lamps, see lamps.py)
    """

    points: np.ndarray
    colour: tuple
    kind: str = "polygon"
    light: str | None = None
    texture: np.ndarray | None = None
    width: float = 0.03
    solid: bool = True
    emissive: bool = False


@dataclasses.dataclass
class Face:
    """A planar polygon of a prism with its outward normal, colour and decals."""

    points: np.ndarray
    normal: np.ndarray
    colour: tuple
    material: str = "paint"
    decals: list = dataclasses.field(default_factory=list)
    plane: np.ndarray | None = None


@dataclasses.dataclass
class Part:
    """A convex prism: faces drawn together; ``layer`` orders parts (wheels,
    then base parts far to near, then parts sitting on top)."""

    name: str
    faces: dict
    layer: int
    centre: np.ndarray


@dataclasses.dataclass
class VehicleModel:
    """The geometry and looks of one vehicle.

    Attributes:
        kind: ``sedan``, ``truck`` or ``bus``
        variant: the body style (sedan, hatchback, suv, box_truck, city_bus, ...)
        length: metres
        width: metres
        height: metres
        paint: BGR body colour
        parts: list of Part
        plates: {"front" | "rear": (a, y, outward, roll)} where plates are mounted:
            the end face, the height of the plate centre, the face's outward
            direction along ``a`` and a small tilt in radians
    """

    kind: str
    variant: str
    length: float
    width: float
    height: float
    paint: tuple
    parts: list
    plates: dict
    flat: dict | None = None


def random_model(rng, kind, plate_positions=("front", "rear")):
    """Builds a random vehicle of a kind.

    Args:
        rng: a numpy Generator
        kind: ``sedan``, ``truck`` or ``bus``
        plate_positions: where plates are mounted (``front``, ``rear``)

    Returns:
        a VehicleModel
    """
    if kind == "sedan":
        variant = ("sedan", "sedan", "hatchback", "suv")[rng.integers(4)]
        model = _car(rng, variant)
    elif kind == "truck":
        variant = ("box_truck", "box_truck", "pickup")[rng.integers(3)]
        model = _box_truck(rng) if variant == "box_truck" else _pickup(rng)
    elif kind == "bus":
        model = _bus(rng)
    else:
        raise ValueError(f"unknown vehicle kind {kind!r} (expected one of {VEHICLE_TYPES})")
    model.plates = {key: value for key, value in model.plates.items() if key in plate_positions}
    return model


def plate_corners(model, position, size):
    """Corners of a plate mounted on a vehicle, in vehicle coordinates.

    Args:
        model: a VehicleModel
        position: ``"front"`` or ``"rear"``
        size: (width, height) of the plate in metres

    Returns:
        (4, 3) array: top-left, top-right, bottom-right, bottom-left as seen from outside
    """
    a, y, outward, roll = model.plates[position]
    return _plate_corners(a, y, size, outward, roll)


def cabin_rear_face(model):
    """The rear face of a model's cabin (a car's rear window, a pickup's cab back), or
    None for models without a cabin or whose cabin has no face looking backwards."""
    cabins = [part for part in model.parts if part.name == "cabin"]
    if not cabins:
        return None
    face = max(cabins[0].faces.values(), key=lambda candidate: candidate.normal[0])
    return face if face.normal[0] >= 0.3 else None


def quad_edges(face):
    """A four-cornered face's top and bottom edges, each (2, 3) ordered by ``b``."""
    points = np.asarray(face.points, dtype=np.float64)
    order = np.argsort(points[:, 2])
    bottom, top = points[order[:2]], points[order[2:]]
    return top[np.argsort(top[:, 1])], bottom[np.argsort(bottom[:, 1])]


def point_on_quad(top, bottom, u, v):
    """The point ``u`` of the way along (by ``b``) and ``v`` of the way down a quad
    given by its top and bottom edges (:func:`quad_edges`)."""
    upper = top[0] + (top[1] - top[0]) * u
    lower = bottom[0] + (bottom[1] - bottom[0]) * u
    return upper + (lower - upper) * v


def pick_paint(rng, palette=PAINTS):
    """Draws a BGR colour from a weighted palette, with a little variation."""
    weights = np.array([weight for _, weight in palette])
    colour = palette[rng.choice(len(palette), p=weights / weights.sum())][0]
    jitter = rng.integers(-10, 11, size=3)
    return tuple(
        int(np.clip(value + delta, 0, 255)) for value, delta in zip(colour, jitter, strict=True)
    )


def _prism(
    name, profile, half_widths, edge_colours, cap_colour, layer=1, centre_b=0.0, materials=None
):
    """Extrudes a counter-clockwise (a, y) profile across the width.

    Faces: ``"left"`` (b > 0), ``"right"`` (b < 0) and one per profile edge,
    keyed by its index (edge i joins vertex i and i + 1).
    """
    profile = np.asarray(profile, dtype=np.float64)
    half_widths = np.broadcast_to(np.asarray(half_widths, dtype=np.float64), (len(profile),))
    count = len(profile)
    left = np.column_stack([profile[:, 0], centre_b + half_widths, profile[:, 1]])
    right = np.column_stack([profile[:, 0], centre_b - half_widths, profile[:, 1]])
    faces = {
        "left": Face(left[::-1].copy(), np.array([0.0, 1.0, 0.0]), cap_colour),
        "right": Face(right.copy(), np.array([0.0, -1.0, 0.0]), cap_colour),
    }
    for index in range(count):
        following = (index + 1) % count
        delta = profile[following] - profile[index]
        normal = np.array([delta[1], 0.0, -delta[0]])
        length = np.linalg.norm(normal)
        if length < 1e-9:
            continue
        points = np.array([right[index], right[following], left[following], left[index]])
        material = materials[index] if materials is not None else "paint"
        faces[index] = Face(points, normal / length, edge_colours[index], material)
    centre = np.array([profile[:, 0].mean(), centre_b, profile[:, 1].mean()])
    return Part(name, faces, layer, centre)


def _cap_point(part, side, a, y):
    """A point (a, b, y) on a side cap of a part (fitting its plane)."""
    face = part.faces[side]
    coefficients = face.plane
    if coefficients is None:
        points = face.points
        design = np.column_stack([np.ones(len(points)), points[:, 0], points[:, 2]])
        coefficients, *_ = np.linalg.lstsq(design, points[:, 1], rcond=None)
        face.plane = coefficients
    offset = 0.004 if side == "left" else -0.004
    return np.array([a, coefficients[0] + coefficients[1] * a + coefficients[2] * y + offset, y])


def _cap_polygon(part, points_ay, colour, **options):
    """Adds the same (a, y) polygon decal to both side caps of a part."""
    for side in ("left", "right"):
        points = np.array([_cap_point(part, side, a, y) for a, y in points_ay])
        part.faces[side].decals.append(Decal(points, colour, **options))


def _cap_circle(part, a, y, radius, colour, segments=18):
    angles = np.linspace(0, 2 * math.pi, segments, endpoint=False)
    points = [(a + radius * math.cos(angle), y + radius * math.sin(angle)) for angle in angles]
    _cap_polygon(part, points, colour)


def _end_rectangle(part, face_key, a, b0, b1, y0, y1, colour, **options):
    """Adds a rectangle decal on a face perpendicular to the length (a = const)."""
    face = part.faces[face_key]
    outward = 0.004 * np.sign(face.normal[0])
    points = np.array(
        [[a + outward, b0, y1], [a + outward, b1, y1], [a + outward, b1, y0], [a + outward, b0, y0]]
    )
    face.decals.append(Decal(points, colour, **options))


def _mirrored_end_rectangles(part, face_key, a, b0, b1, y0, y1, colour, **options):
    _end_rectangle(part, face_key, a, b0, b1, y0, y1, colour, **options)
    _end_rectangle(part, face_key, a, -b1, -b0, y0, y1, colour, **options)


def _plate_corners(a, y, style_size, outward, roll):
    """Plate corners on an end face (top-left, top-right, bottom-right,
    bottom-left as seen from outside)."""
    width, height = style_size
    cos_roll, sin_roll = math.cos(roll), math.sin(roll)
    corners = []
    # Seen from the front (outward = -1) image-left is -b; from the rear, +b.
    side = 1.0 if outward < 0 else -1.0
    for offset_b, offset_y in (
        (-width / 2, height / 2),
        (width / 2, height / 2),
        (width / 2, -height / 2),
        (-width / 2, -height / 2),
    ):
        rotated_b = offset_b * cos_roll - offset_y * sin_roll
        rotated_y = offset_b * sin_roll + offset_y * cos_roll
        corners.append([a + 0.012 * outward, side * rotated_b, y + rotated_y])
    return np.array(corners)


def _wheels(rng, axles, radius, half_width, tyre_width, body_part):
    parts = []
    angles = np.linspace(0, 2 * math.pi, 12, endpoint=False)
    for axle in axles:
        profile = [
            (axle + radius * math.cos(angle), radius + radius * math.sin(angle)) for angle in angles
        ]
        for sign in (1, -1):
            centre_b = sign * (half_width - tyre_width / 2 - 0.02)
            parts.append(
                _prism(
                    "wheel", profile, tyre_width / 2, [TYRE] * 12, TYRE, layer=0, centre_b=centre_b
                )
            )
        _cap_circle(body_part, axle, radius, radius * 1.12, (22, 22, 24))
        _cap_circle(body_part, axle, radius, radius * 0.98, TYRE)
        _cap_circle(body_part, axle, radius, radius * 0.58, RIM, segments=12)
        _cap_circle(body_part, axle, radius, radius * 0.2, (110, 110, 115), segments=8)
    return parts


def _car(rng, variant):
    paint = pick_paint(rng)
    stretch = rng.uniform(0.95, 1.06)
    if variant == "suv":
        length, width, clearance = 4.7 * stretch, 1.92, 0.36
        face_top, hood_front, cowl = 0.98, (0.2, 1.06), (1.3, 1.12)
        roof_front, roof_rear, deck, rear_top = (2.05, 1.76), (4.5, 1.74), (4.66, 1.16), 1.1
        wheel_radius = 0.37
    elif variant == "hatchback":
        length, width, clearance = 4.1 * stretch, 1.76, 0.22
        face_top, hood_front, cowl = 0.7, (0.15, 0.8), (1.1, 0.9)
        roof_front, roof_rear, deck, rear_top = (1.85, 1.46), (3.55, 1.43), (4.05, 0.98), 0.86
        wheel_radius = 0.31
    else:
        length, width, clearance = 4.65 * stretch, 1.82, 0.22
        face_top, hood_front, cowl = 0.68, (0.15, 0.8), (1.3, 0.92)
        roof_front, roof_rear, deck, rear_top = (2.1, 1.44), (3.25, 1.42), (3.9, 0.95), 0.8
        wheel_radius = 0.32
    scale_a = length / {"suv": 4.7, "hatchback": 4.1}.get(variant, 4.65)

    def along(point):
        return (point[0] * scale_a, point[1])

    hood_front, cowl, roof_front, roof_rear, deck = map(
        along, (hood_front, cowl, roof_front, roof_rear, deck)
    )
    half = width / 2
    body_top_rear = (length - 0.1, deck[1] - 0.02)
    body_profile = [
        (0.1, clearance),
        (length - 0.1, clearance),
        (length, clearance + 0.12),
        (length, rear_top),
        body_top_rear,
        cowl,
        hood_front,
        (0.0, face_top),
        (0.0, clearance + 0.12),
    ]
    edge_colours = [DARK, DARK, paint, paint, paint, paint, paint, paint, DARK]
    body = _prism(
        "body",
        body_profile,
        [half, half, half, half * 0.95, half * 0.93, half * 0.93, half * 0.93, half * 0.95, half],
        edge_colours,
        paint,
    )

    def body_top_y(a):
        fraction = (a - cowl[0]) / (body_top_rear[0] - cowl[0])
        return cowl[1] + fraction * (body_top_rear[1] - cowl[1]) - 0.02

    cabin_profile = [
        (cowl[0], body_top_y(cowl[0])),
        (deck[0], body_top_y(deck[0])),
        roof_rear,
        roof_front,
    ]
    cabin = _prism(
        "cabin",
        cabin_profile,
        [half * 0.9, half * 0.9, half * 0.74, half * 0.74],
        [DARK, GLASS, paint, GLASS],
        paint,
        layer=2,
        materials=["paint", "glass", "paint", "glass"],
    )
    # Side windows and pillars.
    inset = 0.07
    bottom_front = (cowl[0] + 0.28, cowl[1] + 0.06)
    bottom_rear = (deck[0] - 0.2, deck[1] + 0.05)
    top_rear = (roof_rear[0] - 0.06, roof_rear[1] - inset)
    top_front = (roof_front[0] + 0.05, roof_front[1] - inset)
    _cap_polygon(cabin, [bottom_front, bottom_rear, top_rear, top_front], GLASS)
    pillar_a = (bottom_front[0] + bottom_rear[0]) / 2 + 0.1
    _cap_polygon(
        cabin,
        [
            (pillar_a - 0.05, bottom_front[1] - 0.02),
            (pillar_a + 0.05, bottom_front[1] - 0.02),
            (pillar_a + 0.04, top_front[1] + 0.02),
            (pillar_a - 0.06, top_front[1] + 0.02),
        ],
        paint,
    )
    # Windscreen and roof details.
    windscreen = cabin.faces[3]
    highlight = windscreen.points.copy()
    highlight = np.array(
        [
            highlight[0] * 0.7 + highlight[3] * 0.3,
            highlight[0] * 0.45 + highlight[3] * 0.55,
            highlight[1] * 0.75 + highlight[2] * 0.25,
            highlight[1] * 0.95 + highlight[2] * 0.05,
        ]
    )
    highlight[:, 0] -= 0.005
    highlight[:, 2] += 0.005
    windscreen.decals.append(Decal(highlight, (125, 110, 100)))
    # Doors.
    door_top = body_top_y(pillar_a) - 0.04
    for door_a in (cowl[0] + 0.22, pillar_a, min(deck[0] - 0.05, length - 1.05)):
        _cap_polygon(
            body,
            [(door_a, clearance + 0.14), (door_a, door_top)],
            (45, 45, 48),
            kind="line",
            width=0.018,
        )
    for handle_a in (pillar_a - 0.35, (pillar_a + deck[0]) / 2 - 0.05):
        _cap_polygon(
            body,
            [
                (handle_a, door_top - 0.14),
                (handle_a + 0.16, door_top - 0.14),
                (handle_a + 0.16, door_top - 0.18),
                (handle_a, door_top - 0.18),
            ],
            CHROME,
        )
    _cap_polygon(
        body,
        [
            (0.05, face_top - 0.14),
            (0.3, face_top - 0.12),
            (0.3, face_top - 0.2),
            (0.05, face_top - 0.22),
        ],
        INDICATOR,
    )
    _cap_polygon(
        body,
        [
            (length - 0.05, rear_top - 0.06),
            (length - 0.3, rear_top - 0.05),
            (length - 0.3, rear_top - 0.17),
            (length - 0.05, rear_top - 0.19),
        ],
        TAILLIGHT_OFF,
    )
    # Front face: bumper, grille, headlights.
    front = 7
    scale_b = width / 1.82
    _end_rectangle(
        body,
        front,
        0.0,
        -half * 0.95,
        half * 0.95,
        clearance + 0.12,
        clearance + 0.22,
        (45, 45, 48),
    )
    _end_rectangle(
        body,
        front,
        0.0,
        -0.34 * scale_b,
        0.34 * scale_b,
        clearance + 0.26,
        face_top - 0.05,
        (32, 32, 34),
    )
    _end_rectangle(
        body,
        front,
        0.0,
        -0.3 * scale_b,
        0.3 * scale_b,
        clearance + 0.3,
        face_top - 0.09,
        (60, 60, 62),
        kind="line",
        width=0.015,
    )
    _mirrored_end_rectangles(
        body,
        front,
        0.0,
        0.5 * scale_b,
        0.84 * scale_b,
        face_top - 0.16,
        face_top - 0.04,
        HEADLIGHT_OFF,
        light="head",
    )
    _mirrored_end_rectangles(
        body,
        front,
        0.0,
        0.52 * scale_b,
        0.66 * scale_b,
        clearance + 0.15,
        clearance + 0.2,
        (150, 150, 150),
    )
    # Rear face: bumper, taillights, trunk line.
    rear = 3
    _end_rectangle(
        body,
        rear,
        length,
        -half * 0.95,
        half * 0.95,
        clearance + 0.12,
        clearance + 0.24,
        (45, 45, 48),
    )
    _mirrored_end_rectangles(
        body,
        rear,
        length,
        0.5 * scale_b,
        0.86 * scale_b,
        rear_top - 0.2,
        rear_top - 0.04,
        TAILLIGHT_OFF,
        light="tail",
    )
    _end_rectangle(
        body,
        rear,
        length,
        -0.48 * scale_b,
        0.48 * scale_b,
        rear_top - 0.07,
        rear_top - 0.06,
        (50, 50, 50),
        kind="line",
        width=0.012,
    )
    roll = rng.normal(0, 0.02)
    plates = {
        "front": (0.0, clearance + 0.22, -1.0, roll),
        "rear": (length, (clearance + 0.24 + rear_top - 0.2) / 2 + 0.02, 1.0, roll),
    }
    parts = _wheels(rng, (0.95 * scale_a, length - 1.05 * scale_a), wheel_radius, half, 0.22, body)
    parts += [body, cabin]
    return VehicleModel("sedan", variant, length, width, roof_front[1], paint, parts, plates)


def _box_truck(rng):
    length = rng.uniform(6.5, 8.5)
    width = 2.4
    half = width / 2
    cab_colour = pick_paint(rng, PAINTS[:7])
    box_colour = pick_paint(rng, BOX_PAINTS)
    box_height = rng.uniform(3.3, 3.7)
    cab_profile = [
        (0.0, 0.4),
        (2.25, 0.4),
        (2.25, 2.75),
        (1.05, 2.75),
        (0.8, 1.75),
        (0.1, 1.6),
        (0.0, 1.45),
    ]
    cab = _prism(
        "cab",
        cab_profile,
        [half * 0.96, half * 0.96, half * 0.92, half * 0.92, half * 0.94, half * 0.96, half * 0.96],
        [DARK, cab_colour, cab_colour, GLASS, cab_colour, cab_colour, cab_colour],
        cab_colour,
        materials=["paint", "paint", "paint", "glass", "paint", "paint", "paint"],
    )
    _cap_polygon(cab, [(1.05, 1.8), (2.0, 1.8), (2.0, 2.55), (1.12, 2.55)], GLASS)
    _cap_polygon(cab, [(0.95, 0.55), (0.95, 2.6)], (40, 40, 40), kind="line", width=0.02)
    _cap_polygon(cab, [(2.1, 0.55), (2.1, 2.6)], (40, 40, 40), kind="line", width=0.02)
    front = 6
    _end_rectangle(cab, front, 0.0, -half * 0.96, half * 0.96, 0.4, 0.7, (60, 60, 62))
    _end_rectangle(cab, front, 0.0, -0.55, 0.55, 0.82, 1.38, (45, 45, 48))
    for line_y in np.linspace(0.88, 1.32, 5):
        _end_rectangle(
            cab, front, 0.0, -0.5, 0.5, line_y, line_y + 0.01, CHROME, kind="line", width=0.012
        )
    _mirrored_end_rectangles(cab, front, 0.0, 0.7, 1.05, 0.95, 1.22, HEADLIGHT_OFF, light="head")
    _mirrored_end_rectangles(cab, front, 0.0, 0.82, 1.05, 0.78, 0.88, INDICATOR)
    box = _prism(
        "box",
        [(2.35, 0.95), (length, 0.95), (length, box_height), (2.35, box_height)],
        half * 1.0,
        [DARK, box_colour, box_colour, box_colour],
        box_colour,
    )
    company = COMPANIES[rng.integers(len(COMPANIES))]
    texture = np.empty((80, 480, 3), dtype=np.uint8)
    texture[:] = box_colour
    ink = (30, 60, 160) if sum(box_colour) > 450 else (245, 245, 245)
    put_text_fitted(
        texture, company, (10, 8, 470, 72), ink, thickness_ratio=0.14, font=cv2.FONT_HERSHEY_DUPLEX
    )
    text_a0, text_a1 = 2.35 + 0.6, length - 0.6
    text_y0, text_y1 = box_height * 0.5, box_height * 0.5 + (text_a1 - text_a0) / 6.0
    for side, a_order in (("left", (text_a0, text_a1)), ("right", (text_a1, text_a0))):
        corners = np.array(
            [
                _cap_point(box, side, a_order[0], text_y1),
                _cap_point(box, side, a_order[1], text_y1),
                _cap_point(box, side, a_order[1], text_y0),
                _cap_point(box, side, a_order[0], text_y0),
            ]
        )
        box.faces[side].decals.append(Decal(corners, ink, kind="texture", texture=texture))
    rear = 1
    _end_rectangle(
        box,
        rear,
        length,
        -half * 0.94,
        half * 0.94,
        1.0,
        box_height - 0.06,
        tuple(int(value * 0.9) for value in box_colour),
        kind="line",
        width=0.03,
    )
    _end_rectangle(
        box, rear, length, 0.0, 0.0, 1.0, box_height - 0.06, (60, 60, 60), kind="line", width=0.025
    )
    _mirrored_end_rectangles(box, rear, length, 0.25, 0.31, 1.6, 2.3, CHROME)
    chassis = _prism(
        "chassis",
        [(2.25, 0.45), (length - 0.15, 0.45), (length - 0.15, 0.95), (2.25, 0.95)],
        half * 0.8,
        [DARK] * 4,
        DARK,
    )
    bumper = _prism(
        "bumper",
        [(length - 0.2, 0.45), (length, 0.45), (length, 0.92), (length - 0.2, 0.92)],
        half * 0.96,
        [DARK, (70, 70, 72), DARK, DARK],
        DARK,
    )
    _mirrored_end_rectangles(bumper, 1, length, 0.8, 1.12, 0.6, 0.82, TAILLIGHT_OFF, light="tail")
    roll = rng.normal(0, 0.02)
    plates = {
        "front": (0.0, 0.56, -1.0, roll),
        "rear": (length, 0.68, 1.0, roll),
    }
    parts = _wheels(rng, (1.0, length - 1.7), 0.5, half, 0.3, cab)
    rear_wheels = _wheels(rng, (length - 1.7,), 0.5, half, 0.45, chassis)
    parts = parts[:2] + rear_wheels + [chassis, cab, box, bumper]
    # The cab's side carries the front wheel arch only: drop the rear axle decals from it.
    for side in ("left", "right"):
        cab.faces[side].decals = [
            decal
            for decal in cab.faces[side].decals
            if decal.kind != "polygon" or decal.points[:, 0].mean() < 2.2
        ]
    return VehicleModel("truck", "box_truck", length, width, box_height, cab_colour, parts, plates)


def _pickup(rng):
    paint = pick_paint(rng)
    length, width = rng.uniform(5.3, 5.9), 2.0
    half = width / 2
    clearance = 0.42
    cab_end = 3.1
    body_profile = [
        (0.1, clearance),
        (length - 0.1, clearance),
        (length, clearance + 0.1),
        (length, 1.05),
        (0.25, 1.12),
        (0.0, 1.02),
        (0.0, clearance + 0.1),
    ]
    body = _prism(
        "body",
        body_profile,
        [half, half, half, half, half * 0.96, half * 0.97, half],
        [DARK, DARK, paint, paint, paint, paint, DARK],
        paint,
    )
    cabin = _prism(
        "cabin",
        [(1.55, 1.1), (cab_end, 1.08), (cab_end, 1.86), (2.25, 1.88)],
        [half * 0.92, half * 0.92, half * 0.82, half * 0.82],
        [DARK, paint, paint, GLASS],
        paint,
        layer=2,
        materials=["paint", "paint", "paint", "glass"],
    )
    _cap_polygon(
        cabin, [(1.85, 1.16), (cab_end - 0.12, 1.16), (cab_end - 0.12, 1.78), (2.3, 1.8)], GLASS
    )
    _cap_polygon(cabin, [(2.45, 1.14), (2.55, 1.14), (2.55, 1.82), (2.45, 1.82)], paint)
    bed = _prism(
        "bed",
        [(cab_end + 0.1, 1.05), (length - 0.1, 1.04), (length - 0.1, 1.08), (cab_end + 0.1, 1.09)],
        half * 0.9,
        [DARK, (40, 40, 42), (35, 35, 36), DARK],
        (40, 40, 42),
        layer=2,
    )
    _cap_polygon(
        body, [(cab_end, clearance + 0.15), (cab_end, 1.05)], (45, 45, 48), kind="line", width=0.02
    )
    _cap_polygon(
        body, [(1.6, clearance + 0.15), (1.6, 1.08)], (45, 45, 48), kind="line", width=0.02
    )
    front = 5
    _end_rectangle(
        body, front, 0.0, -half * 0.97, half * 0.97, clearance + 0.1, clearance + 0.26, CHROME
    )
    _end_rectangle(body, front, 0.0, -0.5, 0.5, clearance + 0.32, 0.95, (35, 35, 36))
    _mirrored_end_rectangles(body, front, 0.0, 0.58, 0.92, 0.78, 0.95, HEADLIGHT_OFF, light="head")
    rear = 3
    _end_rectangle(
        body, rear, length, -half * 0.97, half * 0.97, clearance + 0.1, clearance + 0.24, CHROME
    )
    _mirrored_end_rectangles(body, rear, length, 0.78, 0.96, 0.7, 1.0, TAILLIGHT_OFF, light="tail")
    _end_rectangle(
        body, rear, length, -0.7, 0.7, 0.98, 0.99, (50, 50, 50), kind="line", width=0.012
    )
    roll = rng.normal(0, 0.02)
    plates = {
        "front": (0.0, clearance + 0.18, -1.0, roll),
        "rear": (length, clearance + 0.42, 1.0, roll),
    }
    parts = _wheels(rng, (1.0, length - 1.35), 0.4, half, 0.26, body) + [body, cabin, bed]
    return VehicleModel("truck", "pickup", length, width, 1.88, paint, parts, plates)


def _bus(rng):
    paint = pick_paint(rng, BUS_PAINTS)
    length = rng.uniform(10.5, 12.5)
    width = 2.55
    half = width / 2
    height = rng.uniform(3.0, 3.25)
    clearance = 0.32
    profile = [
        (0.0, clearance),
        (length, clearance),
        (length, height - 0.12),
        (length - 0.15, height),
        (0.15, height),
        (0.0, height - 0.12),
    ]
    roof_colour = tuple(int(min(255, value * 1.05 + 10)) for value in paint)
    body = _prism(
        "body",
        profile,
        [half, half, half, half * 0.96, half * 0.96, half],
        [DARK, paint, paint, roof_colour, paint, paint],
        paint,
    )
    # Windscreen, destination sign, lights.
    front = 5
    _end_rectangle(body, front, 0.0, -half * 0.92, half * 0.92, 1.05, height - 0.45, GLASS)
    _end_rectangle(body, front, 0.0, -half * 0.9, -0.02, 1.2, height - 0.55, (110, 95, 85))
    sign = np.zeros((60, 400, 3), dtype=np.uint8)
    sign[:] = (20, 20, 20)
    put_text_fitted(
        sign,
        DESTINATIONS[rng.integers(len(DESTINATIONS))],
        (8, 8, 392, 52),
        (0, 170, 255),
        thickness_ratio=0.13,
    )
    sign_corners = np.array(
        [
            [-0.004, -half * 0.8, height - 0.12],
            [-0.004, half * 0.8, height - 0.12],
            [-0.004, half * 0.8, height - 0.4],
            [-0.004, -half * 0.8, height - 0.4],
        ]
    )
    body.faces[front].decals.append(Decal(sign_corners, (0, 0, 0), kind="texture", texture=sign))
    _end_rectangle(
        body, front, 0.0, -half * 0.98, half * 0.98, clearance, clearance + 0.22, (50, 50, 52)
    )
    _mirrored_end_rectangles(body, front, 0.0, 0.8, 1.15, 0.55, 0.75, HEADLIGHT_OFF, light="head")
    # Sides: windows, doors, a stripe.
    stripe = (40, 40, 40) if paint[1] > 150 and paint[2] > 150 and paint[0] < 100 else (160, 90, 30)
    _cap_polygon(body, [(0.2, 1.0), (length - 0.2, 1.0), (length - 0.2, 1.15), (0.2, 1.15)], stripe)
    window_start, window_end = 1.9, length - 0.5
    count = max(int((window_end - window_start) / 1.3), 3)
    edges = np.linspace(window_start, window_end, count + 1)
    middle_door = edges[count // 2]
    for left_edge, right_edge in zip(edges[:-1], edges[1:], strict=True):
        if abs(left_edge - middle_door) < 1e-6:
            continue
        _cap_polygon(
            body,
            [
                (left_edge + 0.06, 1.45),
                (right_edge - 0.06, 1.45),
                (right_edge - 0.06, height - 0.5),
                (left_edge + 0.06, height - 0.5),
            ],
            GLASS,
        )
    for door_start, door_end in ((0.35, 1.5), (middle_door, middle_door + 1.2)):
        _cap_polygon(
            body,
            [
                (door_start, clearance + 0.1),
                (door_end, clearance + 0.1),
                (door_end, height - 0.45),
                (door_start, height - 0.45),
            ],
            (60, 55, 50),
        )
        _cap_polygon(
            body,
            [
                ((door_start + door_end) / 2, clearance + 0.12),
                ((door_start + door_end) / 2, height - 0.47),
            ],
            (30, 30, 30),
            kind="line",
            width=0.03,
        )
    # Rear: window, engine grille, lights.
    rear = 1
    _end_rectangle(body, rear, length, -half * 0.8, half * 0.8, height - 1.05, height - 0.3, GLASS)
    _end_rectangle(
        body, rear, length, -0.8, 0.8, 0.95, 1.7, tuple(int(value * 0.75) for value in paint)
    )
    for line_y in np.linspace(1.02, 1.62, 7):
        _end_rectangle(
            body,
            rear,
            length,
            -0.75,
            0.75,
            line_y,
            line_y + 0.01,
            (40, 40, 40),
            kind="line",
            width=0.015,
        )
    _end_rectangle(
        body, rear, length, -half * 0.98, half * 0.98, clearance, clearance + 0.2, (50, 50, 52)
    )
    _mirrored_end_rectangles(body, rear, length, 0.95, 1.2, 0.6, 1.5, TAILLIGHT_OFF, light="tail")
    air = _prism(
        "air_conditioner",
        [(3.0, height - 0.02), (5.2, height - 0.02), (5.0, height + 0.25), (3.2, height + 0.25)],
        half * 0.6,
        [DARK, (150, 150, 150), (190, 190, 190), (150, 150, 150)],
        (160, 160, 160),
        layer=2,
    )
    roll = rng.normal(0, 0.015)
    plates = {
        "front": (0.0, 0.52, -1.0, roll),
        "rear": (length, 0.62, 1.0, roll),
    }
    parts = _wheels(rng, (2.4, length - 3.0), 0.5, half, 0.32, body) + [body, air]
    return VehicleModel("bus", "city_bus", length, width, height, paint, parts, plates)
