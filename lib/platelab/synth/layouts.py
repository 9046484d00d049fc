"""The six vantage points: camera, static background, lanes, parking and props.

``build_layout`` dispatches to the vantage's builder: the overpass and the
dashcam are here, the town scenes (streets, parking, shop fronts) in town.py.
Each builder returns a ``scene.Layout``. World units are
metres; the camera stands at x = z = 0 looking along +z. Traffic keeps to the
right: on a road along z, vehicles on the camera's right drive away (rear
views) and those on its left come towards it (front views).
"""

import logging

import cv2
import numpy as np

from platelab.synth import geometry, props, town
from platelab.synth.scene import Lane, Layout, Prop

logger = logging.getLogger(__name__)


def build_layout(spec, lighting, rng):
    """Builds the Layout of a video's vantage.

    Args:
        spec: the VideoSpec
        lighting: the scene's Lighting
        rng: the video's numpy Generator

    Returns:
        a scene.Layout
    """
    builders = {
        "overpass": _overpass,
        "street_high": town.street_high,
        "street_low": town.street_low,
        "parking": town.parking,
        "storefront": town.storefront,
        "dashcam": _dashcam,
        "traffic_camera": town.traffic_camera,
    }
    return builders[spec.vantage](spec, lighting, rng)


def _overpass(spec, lighting, rng):
    camera = geometry.Camera.create(
        spec.width, spec.height, rng.uniform(52, 62), rng.uniform(8, 11), rng.uniform(20, 30)
    )
    image, canvas = props.start_canvas(spec, camera, lighting, rng)
    far = 0.8 * camera.focal * 960.0 / spec.width + 150.0
    lanes_per_side = int(rng.integers(2, 4))
    lane_width = 3.6
    median = float(rng.uniform(-1.5, 1.5))
    inner = 0.9
    right_edge = median + inner + lanes_per_side * lane_width
    left_edge = median - inner - lanes_per_side * lane_width
    props.ground(
        canvas, left_edge - 3.0, right_edge + 3.0, -5, far * 2, lighting.shade(props.ASPHALT, 1.0)
    )
    props.ground(
        canvas, right_edge, right_edge + 3.0, -5, far * 2, lighting.shade(props.ASPHALT_LIGHT, 1.0)
    )
    props.ground(
        canvas, left_edge - 3.0, left_edge, -5, far * 2, lighting.shade(props.ASPHALT_LIGHT, 1.0)
    )
    white = lighting.shade(props.WHITE_PAINT, 1.0)
    for edge in (right_edge, left_edge, median + inner, median - inner):
        props.line_z(canvas, edge, -5, far * 2, 0.2, white)
    for lane in range(1, lanes_per_side):
        props.line_z(canvas, median + inner + lane * lane_width, -5, far * 2, 0.15, white, 3.0, 9.0)
        props.line_z(canvas, median - inner - lane * lane_width, -5, far * 2, 0.15, white, 3.0, 9.0)
    # Median barrier and sound walls.
    barrier = lighting.shade(props.CONCRETE, 1.0)
    props.ground(
        canvas, median - 0.3, median + 0.3, -5, far * 2, lighting.shade(props.CONCRETE, 1.15), 0.85
    )
    props.wall_z(canvas, median - 0.3, -5, far * 2, 0.0, 0.85, barrier)
    props.wall_z(canvas, median + 0.3, -5, far * 2, 0.0, 0.85, lighting.shade(props.CONCRETE, 0.8))
    for side, edge in ((1, right_edge + 9.0), (-1, left_edge - 9.0)):
        props.ground(
            canvas,
            min(edge, edge - side * 6),
            max(edge, edge - side * 6),
            -5,
            far * 2,
            lighting.shade(props.GRASS, 1.0),
        )
        props.wall_z(
            canvas,
            edge,
            -5,
            far * 2,
            0.0,
            4.0,
            lighting.shade((130, 140, 140), 0.9 if side > 0 else 1.05),
        )
    billboard_side = 1 if rng.random() < 0.5 else -1
    props.billboard(
        canvas,
        (right_edge + 16) if billboard_side > 0 else (left_edge - 16),
        float(rng.uniform(90, 160)),
        14.0,
        5.0,
        7.0,
        rng,
        lighting,
    )
    layout_props = []
    for z in np.arange(float(rng.uniform(20, 50)), far, 50.0):
        layout_props.append(props.lamp_post(median, z, 10.0, lighting, arm=0.0))
        if lighting.lights_on:
            props.lamp_pool(image, camera, median + 3, z, 6.0, 40)
            props.lamp_pool(image, camera, median - 3, z, 6.0, 40)
    style = spec.plate_style
    for z in (float(rng.uniform(25, 60)), float(rng.uniform(120, 200))):
        sign = props.speed_sign(style, props.speed_limit(rng, style))
        layout_props.append(
            props.sign_post(
                right_edge + 2.0,
                z,
                sign,
                0.9,
                0.9 if style == "eu" else 1.1,
                2.0,
                lighting,
                round_sign=style == "eu",
            )
        )
    layout_props.append(
        _gantry(
            rng,
            lighting,
            float(rng.uniform(110, 170)),
            left_edge - 1.5,
            right_edge + 1.5,
            median,
            style,
        )
    )
    lanes = []
    for lane in range(lanes_per_side):
        speed = float(rng.uniform(21, 32)) - lane * 2.0
        mix = (0.6, 0.3, 0.1) if lane == lanes_per_side - 1 else (0.85, 0.12, 0.03)
        gap = float(rng.uniform(15, 45))
        lanes.append(
            Lane(
                "z",
                median + inner + (lane + 0.5) * lane_width,
                "rear",
                speed,
                (-12.0, far),
                gap,
                mix,
                min_gap=10.0,
            )
        )
        lanes.append(
            Lane(
                "z",
                median - inner - (lane + 0.5) * lane_width,
                "front",
                -speed,
                (-12.0, far),
                gap,
                mix,
                min_gap=10.0,
            )
        )
    # No empty stretches: from an overpass the road is visible for hundreds of
    # metres, so an empty frame would need an implausibly long gap in traffic.
    variant = f"{lanes_per_side}+{lanes_per_side}_lanes"
    return Layout(
        camera,
        image,
        lanes,
        [],
        layout_props,
        allows_empty=False,
        variant=variant,
        sites={"road": (left_edge, right_edge), "walls": (left_edge - 9.0, right_edge + 9.0)},
    )


def _gantry(rng, lighting, z, x0, x1, median, style):
    """An overhead sign gantry across the road: green (US) or blue (EU) direction signs."""
    steel = lighting.shade((150, 150, 150), 0.95)
    colour = (60, 110, 20) if style == "us" else (150, 80, 20)
    texts = (
        [("EXIT 23", "MAIN ST"), ("DOWNTOWN", "1/2 MILE"), ("I-90", "WEST")]
        if style == "us"
        else [("A7", "HAMBURG"), ("AUSFAHRT", "500 m"), ("E45", "NORD")]
    )
    boards = []
    for title, subtitle in texts:
        board = props.text_board(
            title,
            colour,
            (245, 245, 245),
            400,
            200,
            border=(245, 245, 245),
            lines=[title, subtitle],
        )
        boards.append(board if lighting.lights_on else lighting.shade_image(board, 1.0))
    width = 4.0

    def draw(canvas, dx=0.0, dz=0.0):
        for leg in (x0, x1):
            canvas.polygon(_beam(leg - 0.2, leg + 0.2, 0.0, 7.5, z), steel)
        canvas.polygon(_beam(x0, x1, 6.6, 7.4, z), steel)
        for number, board in enumerate(boards):
            centre = median + 1.0 + width / 2 + number * (width + 0.6)
            if centre + width / 2 > x1:
                break
            props.texture_x(
                canvas, board, centre - width / 2, centre + width / 2, 4.9, 6.9, z - 0.05
            )
        back = lighting.shade((120, 120, 120), 0.9)
        centre = median - 1.0 - width / 2
        canvas.polygon(_beam(centre - width / 2, centre + width / 2, 4.9, 6.9, z - 0.05), back)

    return Prop(depth_z=z, draw=draw, x=median)


def _beam(x0, x1, y0, y1, z):
    return np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]])


def _dashcam(spec, lighting, rng):
    camera = geometry.Camera.create(
        spec.width, spec.height, rng.uniform(62, 72), rng.uniform(1.2, 1.45), rng.uniform(1.0, 3.0)
    )
    image, canvas = props.start_canvas(spec, camera, lighting, rng)
    ego = float(rng.uniform(10, 20))
    lane_width = 3.5
    right_lanes = 2 if rng.random() < 0.5 else 1
    oncoming = 2 if rng.random() < 0.4 else 1
    right_edge = lane_width / 2 + (right_lanes - 1) * lane_width
    centre_line = -lane_width / 2
    left_edge = centre_line - oncoming * lane_width
    # The road disappears over a hill crest: what lies beyond is hidden.
    far = float(rng.uniform(140, 220))
    props.ground(canvas, -200, 200, -5, far * 3, lighting.shade(props.GRASS, 1.0))
    props.ground(
        canvas, left_edge - 1.5, right_edge + 2.0, -5, far * 3, lighting.shade(props.ASPHALT, 1.0)
    )
    white = lighting.shade(props.WHITE_PAINT, 1.0)
    props.line_z(canvas, right_edge, -5, far * 3, 0.15, white)
    props.line_z(canvas, left_edge, -5, far * 3, 0.15, white)
    if spec.plate_style == "us":
        yellow = lighting.shade(props.YELLOW_PAINT, 1.0)
        props.line_z(canvas, centre_line - 0.12, -5, far * 3, 0.1, yellow)
        props.line_z(canvas, centre_line + 0.12, -5, far * 3, 0.1, yellow)
    else:
        props.line_z(canvas, centre_line, -5, far * 3, 0.15, white)
    if lighting.name == "night":
        _headlight_beam(image, camera)
    dashes = [centre_line + lane_width * (number + 1) for number in range(right_lanes - 1)]
    dashes += [centre_line - lane_width * (number + 1) for number in range(oncoming - 1)]
    last_time = spec.frames / spec.fps

    def dynamic(frame, id_map, time):
        moving = geometry.Canvas(frame, camera)
        for x in dashes:
            props.line_z(moving, x, 0.0, far, 0.15, white, 3.0, 9.0, phase=-ego * time)

    layout_props = [_crest(far, left_edge - 1.5, right_edge + 2.0, lighting, rng)]
    spacing = float(rng.uniform(25, 45))
    for z in np.arange(float(rng.uniform(5, 20)), far + ego * last_time, spacing):
        for side, x in (
            (1, right_edge + float(rng.uniform(3, 6))),
            (-1, left_edge - float(rng.uniform(3, 6))),
        ):
            choice = rng.random()
            if choice < 0.45:
                prop = props.tree(x, z, rng, lighting)
            elif choice < 0.75:
                prop = props.lamp_post(x, z, 8.0, lighting)
            elif choice < 0.85 and side > 0:
                sign = props.speed_sign(spec.plate_style, props.speed_limit(rng, spec.plate_style))
                prop = props.sign_post(
                    x - 1.5,
                    z,
                    sign,
                    0.7,
                    0.7 if spec.plate_style == "eu" else 0.9,
                    2.0,
                    lighting,
                    round_sign=spec.plate_style == "eu",
                )
            else:
                continue
            prop.velocity = (0.0, -ego)
            layout_props.append(prop)
    lanes = [
        Lane(
            "z",
            0.0,
            "rear",
            -float(rng.uniform(1.0, 4.0)),
            (9.0, far),
            float(rng.uniform(15, 35)),
            min_gap=15.0,
            through=False,
        )
    ]
    if right_lanes == 2:
        lanes.append(
            Lane(
                "z",
                lane_width,
                "rear",
                float(rng.uniform(-5, 3)),
                (-15.0, far),
                float(rng.uniform(15, 35)),
                min_gap=12.0,
            )
        )
    for number in range(oncoming):
        lanes.append(
            Lane(
                "z",
                centre_line - (number + 0.5) * lane_width,
                "front",
                -ego - float(rng.uniform(10, 18)),
                (-5.0, far),
                float(rng.uniform(15, 45)),
                min_gap=15.0,
            )
        )
    bonnet = _bonnet(spec, lighting, rng)
    clock = (
        int(rng.integers(2019, 2025)),
        int(rng.integers(1, 13)),
        int(rng.integers(1, 29)),
        int(rng.integers(0, 24)),
        int(rng.integers(0, 60)),
        int(rng.integers(0, 60)),
    )

    def foreground(frame, id_map, index, time):
        top, colour, mask = bonnet
        np.copyto(frame[top:], colour, where=mask[..., None])
        id_map[top:][mask] = 0
        _overlay(frame, id_map, clock, time, ego)

    # Every other dashcam video starts on an empty road (which also clears the
    # cars ahead at the start: they would stay in view all along).
    allows_empty = (spec.index + spec.seed) % 2 == 1
    return Layout(
        camera,
        image,
        lanes,
        [],
        layout_props,
        allows_empty=allows_empty,
        variant=f"{right_lanes}+{oncoming}_lanes",
        dynamic=dynamic,
        foreground=foreground,
    )


def _crest(z, road_left, road_right, lighting, rng):
    """A hill crest across the view at distance z hiding the road beyond."""
    grass = lighting.shade(props.GRASS, 1.05)
    asphalt = lighting.shade(props.ASPHALT, 1.0)
    xs = np.linspace(-400, 400, 33)
    heights = 2.6 + np.abs(xs) * float(rng.uniform(0.01, 0.03)) + rng.uniform(0, 1.0, size=len(xs))
    heights[np.abs(xs - (road_left + road_right) / 2) < 30] = 2.6

    def draw(canvas, dx=0.0, dz=0.0):
        outline = np.column_stack([xs, heights, np.full(len(xs), z)])
        polygon = np.concatenate([outline, [[400, -1.0, z], [-400, -1.0, z]]])
        canvas.polygon(polygon, grass)
        canvas.polygon(
            np.array(
                [
                    [road_left, -1.0, z - 0.01],
                    [road_right, -1.0, z - 0.01],
                    [road_right * 0.6, 2.6, z - 0.01],
                    [road_left * 0.6, 2.6, z - 0.01],
                ]
            ),
            asphalt,
        )

    return Prop(depth_z=z, draw=draw, x=0.0)


def _headlight_beam(image, camera):
    """Brightens the road ahead as the car's own headlights would (night)."""
    height, width = image.shape[:2]
    horizon = max(camera.horizon_y, 0.0)
    rows = np.arange(height, dtype=np.float32)[:, None]
    columns = np.arange(width, dtype=np.float32)[None, :]
    below = np.clip((rows - horizon) / max(height - horizon, 1.0), 0, 1)
    spread = 0.15 + 0.6 * below
    lateral = np.exp(-(((columns - width / 2) / (width * spread)) ** 2))
    strength = (np.clip(below * 4, 0, 1) * np.exp(-below * 1.5) * lateral * 2.2)[..., None]
    boosted = image.astype(np.float32) * (1.0 + strength) + strength * 12
    image[:] = np.clip(boosted, 0, 255).astype(np.uint8)


def _bonnet(spec, lighting, rng):
    """The dashcam car's bonnet at the bottom of the frame: (first row, colour, mask)."""
    width, height = spec.width, spec.height
    top = height * float(rng.uniform(0.86, 0.92))
    columns = np.linspace(-0.05 * width, 1.05 * width, 40)
    curve = top + (height - top) * 0.55 * ((columns - width / 2) / (width * 0.6)) ** 2
    polygon = np.concatenate(
        [
            np.column_stack([columns, curve]),
            [[1.05 * width, height + 5], [-0.05 * width, height + 5]],
        ]
    )
    mask = np.zeros((height, width), dtype=np.uint8)
    geometry.fill_polygon(mask, polygon, 1)
    paint = lighting.shade(tuple(int(value) for value in rng.integers(20, 90, size=3)), 0.9)
    colour = np.empty((height, width, 3), dtype=np.uint8)
    colour[:] = paint
    rows = np.arange(height, dtype=np.float32)[:, None, None]
    shine = np.clip(1.3 - (rows - top) / max(height - top, 1) * 0.6, 0.6, 1.3)
    colour = np.clip(colour.astype(np.float32) * shine, 0, 255).astype(np.uint8)
    first = int(np.flatnonzero(mask.any(axis=1))[0])
    return first, colour[first:].copy(), mask[first:].astype(bool)


def _overlay(frame, id_map, clock, time, speed):
    """The dashcam's time-stamp and speed overlay (text on a dark strip)."""
    height, width = frame.shape[:2]
    seconds = clock[5] + int(time)
    minutes = clock[4] + seconds // 60
    hours = (clock[3] + minutes // 60) % 24
    text = f"{clock[0]}-{clock[1]:02d}-{clock[2]:02d} {hours:02d}:{minutes % 60:02d}:{seconds % 60:02d}  {speed * 3.6:.0f} km/h"
    scale = max(height / 1000.0, 0.3)
    thickness = max(1, int(round(scale * 2)))
    (text_width, text_height), baseline = cv2.getTextSize(
        text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness
    )
    x0, y0 = int(width * 0.02), int(height * 0.03)
    x1, y1 = x0 + text_width + 8, y0 + text_height + baseline + 8
    frame[y0:y1, x0:x1] = (frame[y0:y1, x0:x1] * 0.3).astype(np.uint8)
    id_map[y0:y1, x0:x1] = 0
    cv2.putText(
        frame,
        text,
        (x0 + 4, y1 - baseline - 4),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        (235, 235, 235),
        thickness,
        cv2.LINE_AA,
    )
