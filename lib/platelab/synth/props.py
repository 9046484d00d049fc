"""Scenery: sky, roads, markings, buildings, signs, poles, trees.

Helpers here draw world geometry onto a ``geometry.Canvas``; the props (things
that can stand in front of a vehicle) are returned as ``scene.Prop`` objects
whose ``draw(canvas, dx, dz)`` is called per frame (or once, for static ones).
Text on signs, shop fronts, billboards and house numbers is drawn with
``cv2.putText``: these are the plate-like distractors, never ground truth.
"""

import logging

import cv2
import numpy as np

from platelab.synth import geometry
from platelab.synth.plates import put_text_fitted
from platelab.synth.scene import Prop

logger = logging.getLogger(__name__)

ASPHALT = (78, 80, 82)
ASPHALT_LIGHT = (102, 104, 106)
CONCRETE = (160, 165, 168)
SIDEWALK = (150, 155, 160)
GRASS = (60, 120, 85)
WHITE_PAINT = (225, 228, 230)
YELLOW_PAINT = (40, 190, 230)
POLE = (95, 100, 105)
SHOP_NAMES = (
    "BAKERY",
    "PHARMACY",
    "CAFE",
    "HARDWARE",
    "BOOKS",
    "PIZZA",
    "FLOWERS",
    "DELI",
    "BARBER",
    "OPTICIAN",
    "LAUNDRY",
    "MARKET",
    "SUSHI",
    "TOYS",
    "BANK",
    "SHOES",
)
BILLBOARD_TEXTS = (
    ("DRINK FIZZ", "ICE COLD"),
    ("CALL 555-0199", "LAW OFFICES"),
    ("NEW SUV", "DRIVE TODAY"),
    ("BIG SALE", "50% OFF"),
    ("RADIO 99.5", "HITS ALL DAY"),
    ("HOTEL 8 MI", "EXIT 12"),
)
BUILDING_COLOURS = (
    (120, 140, 170),
    (90, 100, 150),
    (170, 175, 180),
    (140, 160, 190),
    (80, 90, 110),
    (190, 200, 205),
)
STREET_NAMES = (
    "MAIN ST",
    "OAK AVE",
    "ELM ST",
    "2ND AVE",
    "PARK RD",
    "MILL LN",
    "HIGH ST",
    "KING ST",
)


def start_canvas(spec, camera, lighting, rng):
    """A new background image with the sky drawn, and a Canvas onto it."""
    image = np.zeros((spec.height, spec.width, 3), dtype=np.uint8)
    sky(image, camera, lighting, rng)
    return image, geometry.Canvas(image, camera)


def sky(image, camera, lighting, rng):
    """Fills the image with the sky gradient and a distant skyline at the horizon."""
    height, width = image.shape[:2]
    horizon = camera.horizon_y
    rows = np.arange(height, dtype=np.float32)
    fraction = np.clip((horizon - rows) / max(height * 0.6, 1.0), 0.0, 1.0)[:, None]
    top = np.asarray(lighting.sky_top, dtype=np.float32)
    bottom = np.asarray(lighting.sky_horizon, dtype=np.float32)
    gradient = bottom * (1.0 - fraction) + top * fraction
    image[:] = np.round(gradient).astype(np.uint8)[:, None, :]
    if -height * 0.1 < horizon < height * 1.1:
        _skyline(image, horizon, lighting, rng)


def ground(canvas, x0, x1, z0, z1, colour, height=0.0):
    """Fills an axis-aligned ground rectangle."""
    canvas.ground([(x0, z0), (x1, z0), (x1, z1), (x0, z1)], colour, height)


def line_z(canvas, x, z0, z1, width, colour, dash=None, gap=None, phase=0.0):
    """A painted line along z, solid or dashed (dash and gap lengths in metres)."""
    if dash is None:
        ground(canvas, x - width / 2, x + width / 2, z0, z1, colour, 0.01)
        return
    period = dash + gap
    start = z0 - ((z0 - phase) % period)
    for z in np.arange(start, z1, period):
        ground(canvas, x - width / 2, x + width / 2, max(z, z0), min(z + dash, z1), colour, 0.01)


def line_x(canvas, z, x0, x1, width, colour, dash=None, gap=None):
    """A painted line along x, solid or dashed."""
    if dash is None:
        ground(canvas, x0, x1, z - width / 2, z + width / 2, colour, 0.01)
        return
    for x in np.arange(x0, x1, dash + gap):
        ground(canvas, x, min(x + dash, x1), z - width / 2, z + width / 2, colour, 0.01)


def wall_z(canvas, x, z0, z1, y0, y1, colour):
    """A vertical wall in the plane x = const."""
    canvas.polygon(np.array([[x, y0, z0], [x, y0, z1], [x, y1, z1], [x, y1, z0]]), colour)


def wall_x(canvas, z, x0, x1, y0, y1, colour):
    """A vertical wall in the plane z = const (facing the camera)."""
    canvas.polygon(np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]]), colour)


def texture_x(canvas, texture, x0, x1, y0, y1, z):
    """A texture on a vertical quad facing the camera (plane z = const)."""
    canvas.texture(texture, np.array([[x0, y1, z], [x1, y1, z], [x1, y0, z], [x0, y0, z]]))


def texture_z(canvas, texture, x, z0, z1, y0, y1):
    """A texture on a vertical quad in the plane x = const, read from the road."""
    if x < 0:
        corners = [[x, y1, z0], [x, y1, z1], [x, y0, z1], [x, y0, z0]]
    else:
        corners = [[x, y1, z1], [x, y1, z0], [x, y0, z0], [x, y0, z1]]
    canvas.texture(texture, np.array(corners))


def text_board(text, background, ink, width=400, height=100, border=None, lines=None):
    """A sign texture: text (one or more lines) on a coloured board."""
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:] = background
    if border is not None:
        cv2.rectangle(image, (0, 0), (width - 1, height - 1), border, max(2, height // 20))
    lines = lines or [text]
    line_height = height / len(lines)
    for number, line in enumerate(lines):
        top = int(number * line_height + line_height * 0.18)
        bottom = int((number + 1) * line_height - line_height * 0.18)
        put_text_fitted(image, line, (int(width * 0.08), top, int(width * 0.92), bottom), ink)
    return image


def speed_limit(rng, style):
    """A plausible speed limit: mph for US roads, km/h for European ones."""
    if style == "us":
        return int(rng.choice([25, 30, 35, 40, 45, 55, 65, 70]))
    return int(rng.choice([30, 50, 60, 70, 80, 100, 120]))


def speed_sign(style, limit):
    """A speed-limit sign texture: US white rectangle or EU red ring."""
    if style == "us":
        image = np.full((150, 120, 3), 245, dtype=np.uint8)
        cv2.rectangle(image, (4, 4), (115, 145), (20, 20, 20), 4)
        put_text_fitted(image, "SPEED", (18, 14, 102, 38), (20, 20, 20))
        put_text_fitted(image, "LIMIT", (18, 44, 102, 68), (20, 20, 20))
        put_text_fitted(image, str(limit), (20, 78, 100, 136), (20, 20, 20), thickness_ratio=0.16)
        return image
    image = np.full((120, 120, 3), 0, dtype=np.uint8)
    image[:] = POLE
    cv2.circle(image, (60, 60), 58, (30, 30, 200), -1, cv2.LINE_AA)
    cv2.circle(image, (60, 60), 44, (245, 245, 245), -1, cv2.LINE_AA)
    put_text_fitted(image, str(limit), (30, 40, 90, 80), (20, 20, 20), thickness_ratio=0.16)
    return image


def house_number(number):
    """A small house-number plaque (plate-like)."""
    return text_board(str(number), (150, 70, 20), (245, 245, 245), 160, 70, border=(240, 240, 240))


def building_face_x(canvas, z, x0, x1, height, colour, rng, lighting, shops=True, floors_from=0):
    """A building facade facing the camera (plane z = const) with windows,
    and at street level shop windows, doors, signs and house numbers."""
    wall_x(canvas, z, x0, x1, 0.0, height, lighting.shade(colour, 0.95))
    floor_height = 3.2
    window_colour = lighting.shade((95, 80, 70), 1.0)
    lit_colour = (90, 190, 235)
    first_floor = 1 if shops else 0
    for floor in range(max(first_floor, floors_from), int(height / floor_height)):
        y0 = floor * floor_height + 0.9
        for x in np.arange(x0 + 0.8, x1 - 1.6, 2.6):
            lit = lighting.lights_on and rng.random() < 0.35
            wall_x(canvas, z - 0.01, x, x + 1.3, y0, y0 + 1.6, lit_colour if lit else window_colour)
    if not shops:
        return
    x = x0
    while x < x1 - 3.0:
        shop_width = float(rng.uniform(5.0, 9.0))
        right = min(x + shop_width, x1)
        glass = lighting.shade((100, 85, 75), 1.1)
        if lighting.lights_on:
            glass = (110, 170, 200)
        wall_x(canvas, z - 0.01, x + 0.4, right - 2.2, 0.5, 2.6, glass)
        wall_x(
            canvas, z - 0.01, right - 1.9, right - 0.6, 0.0, 2.4, lighting.shade((60, 50, 45), 1.0)
        )
        sign_colour = tuple(int(value) for value in rng.integers(30, 230, size=3))
        ink = (255, 255, 255) if sum(sign_colour) < 380 else (20, 20, 20)
        name = SHOP_NAMES[rng.integers(len(SHOP_NAMES))]
        board = text_board(name, sign_colour, ink, 480, 80)
        if not lighting.lights_on:
            board = lighting.shade_image(board, 1.0)
        texture_x(canvas, board, x + 0.5, right - 0.5, 2.8, 3.5, z - 0.02)
        plaque = house_number(int(rng.integers(1, 2000)))
        texture_x(
            canvas,
            lighting.shade_image(plaque, 1.0),
            right - 0.55,
            right - 0.15,
            1.6,
            1.78,
            z - 0.02,
        )
        x = right + 0.3


def building_row_z(canvas, x, z0, z1, rng, lighting, base_colours, shops=True):
    """A row of buildings whose facades lie in the plane x = const, along z."""
    z = z0
    side_intensity = 0.8 if x < 0 else 1.05
    while z < z1:
        length = float(rng.uniform(10, 25))
        height = float(rng.uniform(7, 22))
        colour = base_colours[rng.integers(len(base_colours))]
        end = min(z + length, z1)
        wall_z(canvas, x, z, end, 0.0, height, lighting.shade(colour, side_intensity))
        window_colour = lighting.shade((95, 80, 70), side_intensity)
        for floor in range(1 if shops else 0, int(height / 3.2)):
            y0 = floor * 3.2 + 0.9
            for window_z in np.arange(z + 0.8, end - 1.5, 2.6):
                lit = lighting.lights_on and rng.random() < 0.35
                colour_here = (90, 190, 235) if lit else window_colour
                wall_z(
                    canvas,
                    x - 0.01 * np.sign(x),
                    window_z,
                    window_z + 1.3,
                    y0,
                    y0 + 1.6,
                    colour_here,
                )
        if shops:
            glass = (
                (110, 170, 200)
                if lighting.lights_on
                else lighting.shade((100, 85, 75), side_intensity)
            )
            wall_z(canvas, x - 0.01 * np.sign(x), z + 0.5, end - 0.5, 0.5, 2.6, glass)
            if end - z > 6 and rng.random() < 0.7:
                sign_colour = tuple(int(value) for value in rng.integers(30, 230, size=3))
                ink = (255, 255, 255) if sum(sign_colour) < 380 else (20, 20, 20)
                board = text_board(
                    SHOP_NAMES[rng.integers(len(SHOP_NAMES))], sign_colour, ink, 480, 80
                )
                if not lighting.lights_on:
                    board = lighting.shade_image(board, side_intensity)
                texture_z(
                    canvas, board, x - 0.02 * np.sign(x), z + 1.0, min(z + 7.0, end - 0.5), 2.8, 3.5
                )
        z = end + float(rng.uniform(0.0, 1.0))


def lamp_pool(image, camera, x, z, radius, strength=60.0):
    """Adds the warm light pool of a street lamp onto the ground of an image."""
    centre, depth = camera.project(np.array([x, 0.0, z]))
    if depth < geometry.NEAR:
        return
    scale = float(camera.scale_at(depth))
    far, _ = camera.project(np.array([x, 0.0, z + radius]))
    axis_x = radius * scale
    axis_y = max(abs(float(centre[1] - far[1])), 1.0)
    if axis_x < 1 or not np.all(np.isfinite(centre)):
        return
    glow(image, centre, axis_x, axis_y, (60, 150, 230), strength / 255.0)


def glow(image, centre, radius_x, radius_y, colour, strength):
    """Adds a soft elliptical glow (a Gaussian spot) onto an image, in place."""
    height, width = image.shape[:2]
    x0 = int(max(centre[0] - 2 * radius_x, 0))
    x1 = int(min(centre[0] + 2 * radius_x + 1, width))
    y0 = int(max(centre[1] - 2 * radius_y, 0))
    y1 = int(min(centre[1] + 2 * radius_y + 1, height))
    if x1 <= x0 or y1 <= y0:
        return
    xs = (np.arange(x0, x1, dtype=np.float32) + 0.5 - centre[0]) / max(radius_x, 0.5)
    ys = (np.arange(y0, y1, dtype=np.float32) + 0.5 - centre[1]) / max(radius_y, 0.5)
    weight = np.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) * 1.5) * strength
    addition = weight[..., None] * np.asarray(colour, dtype=np.float32)
    region = image[y0:y1, x0:x1]
    region[:] = np.clip(region.astype(np.float32) + addition, 0, 255).astype(np.uint8)


def lamp_post(x, z, height, lighting, arm=1.5):
    """A street lamp: pole, arm towards the road (towards x = 0) and lamp head."""
    direction = -np.sign(x) if x != 0 else 1.0
    pole_colour = lighting.shade(POLE, 0.9)
    head_colour = (200, 240, 255) if lighting.lights_on else lighting.shade((180, 180, 175), 1.0)

    def draw(canvas, dx=0.0, dz=0.0):
        px, pz = x + dx, z + dz
        canvas.polygon(_upright(px, pz, 0.09, 0.0, height), pole_colour)
        end = px + direction * arm
        canvas.polygon(
            np.array(
                [
                    [px, height - 0.1, pz],
                    [end, height + 0.1, pz],
                    [end, height, pz],
                    [px, height - 0.2, pz],
                ]
            ),
            pole_colour,
        )
        canvas.polygon(
            np.array(
                [
                    [end - 0.3, height, pz],
                    [end + 0.3, height, pz],
                    [end + 0.25, height - 0.18, pz],
                    [end - 0.25, height - 0.18, pz],
                ]
            ),
            head_colour,
        )

    return Prop(depth_z=z, draw=draw, x=x)


def tree(x, z, rng, lighting):
    """A street tree: trunk and a crown of overlapping discs."""
    trunk_height = float(rng.uniform(2.2, 3.2))
    crown = [
        (
            float(rng.normal(0, 0.8)),
            trunk_height + float(rng.uniform(0.8, 2.6)),
            float(rng.uniform(0.9, 1.7)),
        )
        for _ in range(7)
    ]
    greens = [
        lighting.shade((int(g * 0.6), int(g), int(g * 0.75)), 0.8 + 0.4 * rng.random())
        for g in rng.integers(80, 150, size=7)
    ]
    trunk_colour = lighting.shade((50, 70, 90), 0.8)

    def draw(canvas, dx=0.0, dz=0.0):
        px, pz = x + dx, z + dz
        canvas.polygon(_upright(px, pz, 0.16, 0.0, trunk_height + 1.0), trunk_colour)
        for (offset, height, radius), colour in zip(crown, greens, strict=True):
            canvas.circle(np.array([px + offset, height, pz]), radius, colour)

    return Prop(depth_z=z, draw=draw, x=x)


def sign_post(x, z, texture, width, height, post_height, lighting, round_sign=False):
    """A sign on a post, facing the camera."""
    pole_colour = lighting.shade(POLE, 0.9)
    shaded = lighting.shade_image(texture, 1.0)

    def draw(canvas, dx=0.0, dz=0.0):
        px, pz = x + dx, z + dz
        canvas.polygon(_upright(px, pz, 0.05, 0.0, post_height), pole_colour)
        top = post_height + height
        if round_sign:
            # The texture is square with the disc in it; draw the disc with the texture on it.
            canvas.circle(
                np.array([px, post_height + height / 2, pz - 0.02]),
                width / 2,
                lighting.shade((30, 30, 200), 1.0),
            )
            inner = width * 0.36
            texture_x(
                canvas,
                shaded[26:94, 26:94],
                px - inner,
                px + inner,
                post_height + height / 2 - inner,
                post_height + height / 2 + inner,
                pz - 0.03,
            )
        else:
            texture_x(canvas, shaded, px - width / 2, px + width / 2, post_height, top, pz - 0.02)

    return Prop(depth_z=z, draw=draw, x=x)


def traffic_light(x, z, lighting, rng):
    """A traffic-light pole with a lamp housing (one lamp lit)."""
    pole_colour = lighting.shade((60, 60, 62), 0.9)
    lit = int(rng.integers(3))
    lamp_colours = [(30, 30, 230), (30, 200, 240), (90, 220, 60)]

    def draw(canvas, dx=0.0, dz=0.0):
        px, pz = x + dx, z + dz
        canvas.polygon(_upright(px, pz, 0.08, 0.0, 3.0), pole_colour)
        canvas.polygon(_upright(px, pz - 0.05, 0.2, 3.0, 4.0), lighting.shade((40, 40, 40), 1.0))
        for number in range(3):
            colour = lamp_colours[number] if number == lit else lighting.shade((50, 50, 50), 1.0)
            canvas.circle(np.array([px, 3.83 - number * 0.33, pz - 0.1]), 0.12, colour)

    return Prop(depth_z=z, draw=draw, x=x)


def building_block(x, z0, z1, rng, lighting, colours, shops=True):
    """A row of buildings as a prop (so that vehicles behind it are hidden);
    ordered by its far end."""
    seed = int(rng.integers(2**31))

    def draw(canvas, dx=0.0, dz=0.0):
        building_row_z(
            canvas, x + dx, z0 + dz, z1 + dz, np.random.default_rng(seed), lighting, colours, shops
        )

    return Prop(depth_z=z1, draw=draw, x=x)


def pillar(x, z, width, height, lighting):
    """A square concrete pillar (garages, bridges)."""
    front = lighting.shade(CONCRETE, 0.95)
    side = lighting.shade(CONCRETE, 0.75)

    def draw(canvas, dx=0.0, dz=0.0):
        px, pz = x + dx, z + dz
        near_x = px - width / 2 if px > 0 else px + width / 2
        wall_z(canvas, near_x, pz, pz + width, 0.0, height, side)
        wall_x(canvas, pz, px - width / 2, px + width / 2, 0.0, height, front)
        wall_x(
            canvas,
            pz - 0.01,
            px - width / 2,
            px + width / 2,
            1.0,
            1.3,
            lighting.shade((40, 200, 240), 1.0),
        )

    return Prop(depth_z=z, draw=draw, x=x)


def billboard(canvas, x, z, width, height, elevation, rng, lighting):
    """A billboard on two legs, facing the camera (drawn into the background)."""
    title, subtitle = BILLBOARD_TEXTS[rng.integers(len(BILLBOARD_TEXTS))]
    background = tuple(int(value) for value in rng.integers(40, 220, size=3))
    ink = (255, 255, 255) if sum(background) < 380 else (20, 20, 20)
    board = text_board(
        title, background, ink, 600, 240, border=(240, 240, 240), lines=[title, subtitle]
    )
    cv2.circle(board, (530, 60), 40, (20, 200, 250), -1)
    if not lighting.lights_on:
        board = lighting.shade_image(board, 1.0)
    for leg in (x - width * 0.3, x + width * 0.3):
        canvas.polygon(_upright(leg, z + 0.1, 0.2, 0.0, elevation), lighting.shade(POLE, 0.9))
    texture_x(canvas, board, x - width / 2, x + width / 2, elevation, elevation + height, z)


def _upright(x, z, half_width, y0, y1):
    return np.array(
        [
            [x - half_width, y0, z],
            [x + half_width, y0, z],
            [x + half_width, y1, z],
            [x - half_width, y1, z],
        ]
    )


def _skyline(image, horizon, lighting, rng):
    """Distant trees, hills or buildings just above the horizon."""
    height, width = image.shape[:2]
    kind = rng.integers(3)
    base = (95, 110, 100) if kind != 2 else (120, 115, 110)
    colour = lighting.shade(base, 0.8)
    points = []
    x = 0.0
    while x <= width:
        if kind == 2:
            step = float(rng.uniform(0.02, 0.06)) * width
            top = horizon - float(rng.uniform(0.01, 0.09)) * height
            points += [(x, top), (x + step, top)]
        else:
            step = float(rng.uniform(0.005, 0.02)) * width
            top = horizon - float(rng.uniform(0.005, 0.03 if kind == 0 else 0.06)) * height
            points.append((x, top))
        x += step
    points += [(width + 1.0, horizon + 2.0), (-1.0, horizon + 2.0)]
    geometry.fill_polygon(image, np.array(points), colour)
    if kind == 2 and lighting.lights_on:
        for _ in range(int(width * 0.05)):
            window_x = float(rng.uniform(0, width))
            window_y = float(rng.uniform(horizon - 0.07 * height, horizon))
            if image[
                int(min(max(window_y, 0), height - 1)), int(min(window_x, width - 1))
            ].tolist() == list(colour):
                image[int(window_y) : int(window_y) + 1, int(window_x) : int(window_x) + 2] = (
                    90,
                    190,
                    235,
                )
