"""Town vantage points: high and low street views, a parking lot, shop fronts.

Each public function returns a ``scene.Layout`` (see layouts.py for the
conventions: metres, camera at x = z = 0 looking along +z, traffic on the
right).
"""

import logging
import math

import numpy as np

from platelab.synth import geometry, plates, props
from platelab.synth.scene import Lane, Layout, Spot

logger = logging.getLogger(__name__)


def street_high(spec, lighting, rng):
    """A camera 6 to 9 m up (on a building or pole) looking down a town street."""
    camera = geometry.Camera.create(
        spec.width, spec.height, rng.uniform(60, 70), rng.uniform(6, 9), rng.uniform(17, 27)
    )
    return _street(spec, lighting, rng, camera, centre=None, parked=rng.random() < 0.5)


def traffic_camera(spec, lighting, rng):
    """A traffic or plate-reading camera 5 to 8 m up on a pole over a town street, with
    a narrow lens (16 to 30 degrees across) aimed 10 to 31 m ahead, where a US plate is
    45 to 70 px wide at 1280 px across (EU plates 1.7 times as wide): the views of
    elevated static traffic cameras."""
    fov = float(rng.uniform(16, 30))
    elevation = float(rng.uniform(5, 8))
    focal = spec.width / 2.0 / math.tan(math.radians(fov) / 2.0)
    # Aimed where a US plate (0.305 m wide) is 45 to 70 px wide at 1280 px across.
    distance = plates.PLATE_SIZES["us"][0] * focal / (rng.uniform(45, 70) * spec.width / 1280)
    pitch = math.degrees(math.atan((elevation - 0.5) / distance))
    camera = geometry.Camera.create(spec.width, spec.height, fov, elevation, pitch)
    return _street(spec, lighting, rng, camera, centre="over_lanes", parked=rng.random() < 0.3)


def street_low(spec, lighting, rng):
    """A camera at eye level on the sidewalk, just behind a row of parked cars."""
    camera = geometry.Camera.create(
        spec.width, spec.height, rng.uniform(55, 66), rng.uniform(1.15, 1.6), rng.uniform(1.0, 4.0)
    )
    return _street(spec, lighting, rng, camera, centre=None, parked=True)


def parking(spec, lighting, rng):
    """A parking lot in front of a store (variant ``lot``) or a parking garage
    (variant ``garage``): rows of parked cars, a few moving along the aisles."""
    if rng.random() < 0.4:
        return _garage(spec, lighting, rng)
    return _lot(spec, lighting, rng)


def storefront(spec, lighting, rng):
    """A camera across the street from shop fronts (variant ``shops``: signs,
    nose-in parking before them) or houses (variant ``houses``: lawns,
    driveways, house numbers); traffic passes sideways."""
    camera = geometry.Camera.create(
        spec.width, spec.height, rng.uniform(50, 60), rng.uniform(2.5, 4.0), rng.uniform(3, 8)
    )
    image, canvas = props.start_canvas(spec, camera, lighting, rng)
    bottom = camera.ground_z_at_row(spec.height)
    facade = max(float(rng.uniform(21, 26)), bottom + 17.0)
    road_far = facade - 9.1
    road_near = road_far - 7.0
    props.ground(canvas, -200, 200, -5, facade + 40, lighting.shade(props.SIDEWALK, 1.0))
    props.ground(canvas, -200, 200, road_near, road_far, lighting.shade(props.ASPHALT, 1.0))
    centre_colour = lighting.shade(
        props.YELLOW_PAINT if spec.plate_style == "us" else props.WHITE_PAINT, 1.0
    )
    props.line_x(canvas, (road_near + road_far) / 2, -200, 200, 0.15, centre_colour, 3.0, 5.0)
    speed = float(rng.uniform(6, 12))
    lanes = [
        Lane("x", road_near + 1.75, "side", speed, (-80.0, 80.0), float(rng.uniform(10, 30))),
        Lane("x", road_far - 1.75, "side", -speed, (-80.0, 80.0), float(rng.uniform(10, 30))),
    ]
    if rng.random() < 0.35:
        variant = "houses"
        spots, layout_props = _houses(canvas, rng, lighting, facade, road_far)
        if rng.random() < 0.5:
            # A few cars parked along the far curb (seen from the side).
            lanes.append(
                Lane(
                    "x",
                    road_far + 1.1,
                    "side",
                    0.0,
                    (-60.0, 60.0),
                    14.0,
                    (0.95, 0.05, 0.0),
                    parked=True,
                    min_gap=2.0,
                )
            )
    else:
        variant = "shops"
        spots, layout_props = _shops(canvas, rng, lighting, facade, road_far)
    near_sidewalk = road_near - 1.0
    if near_sidewalk > bottom + 1.0:
        x = float(rng.uniform(-6, 6)) * (near_sidewalk / 10.0)
        layout_props.append(
            props.lamp_post(x, near_sidewalk, 6.0, lighting, arm=1.0)
            if rng.random() < 0.5
            else props.tree(x, near_sidewalk, rng, lighting)
        )
        sign = props.speed_sign(spec.plate_style, props.speed_limit(rng, spec.plate_style))
        layout_props.append(
            props.sign_post(
                x + float(rng.choice([-5.0, 5.0])),
                near_sidewalk,
                sign,
                0.6,
                0.6 if spec.plate_style == "eu" else 0.75,
                2.0,
                lighting,
                round_sign=spec.plate_style == "eu",
            )
        )
    if lighting.lights_on:
        for x in np.arange(-30.0, 30.0, 12.0):
            props.lamp_pool(image, camera, x, road_near + 3.5, 6.0, 45)
    parked_anywhere = bool(spots) or any(lane.parked for lane in lanes)
    sites = {"road": (road_near, road_far), "facade": facade}
    if variant == "shops":
        sites["parking_end"] = facade - 3.5
    else:
        sites["lawn"] = road_far + 2.5
    return Layout(
        camera,
        image,
        lanes,
        spots,
        layout_props,
        allows_empty=not parked_anywhere,
        variant=variant,
        sites=sites,
    )


_STALL_WIDTH, _STALL_DEPTH, _AISLE = 2.6, 5.3, 7.0


_ROOFS = ((60, 60, 140), (70, 70, 75), (50, 80, 120), (90, 90, 95))


_WALLS = ((200, 215, 225), (150, 180, 205), (210, 200, 170), (120, 140, 170), (230, 230, 232))


def _street(spec, lighting, rng, camera, centre, parked):
    """A town street along z with a cross street, parked cars, trees and shops.

    ``centre``: ``"over_lanes"`` puts the camera over the lanes, anywhere across the
    road; None on the right (over the parking lane or curb when high, on the sidewalk
    when low).
    """
    image, canvas = props.start_canvas(spec, camera, lighting, rng)
    lane_width = 3.3
    lanes_per_side = 1 if rng.random() < 0.6 else 2
    parking_width = 2.2
    sidewalk = 3.5
    half_road = lanes_per_side * lane_width + parking_width
    high = camera.elevation > 3
    if centre == "over_lanes":
        # On a pole arm or gantry over the lanes, somewhere across the road.
        centre = float(rng.uniform(-0.8, 0.8)) * lanes_per_side * lane_width
    elif high:
        # Mounted above the right-hand parking lane or the curb.
        centre = -(half_road - float(rng.uniform(0.0, 2.0)))
    else:
        # Standing on the right-hand sidewalk, just behind the curb.
        centre = -(half_road + float(rng.uniform(0.5, 1.2)))
        sidewalk = 5.0
    right_curb, left_curb = centre + half_road, centre - half_road
    cross = float(rng.uniform(30, 45)) if high else float(rng.uniform(40, 60))
    cross_half = lane_width + 1.0
    # Without parked cars the street ends at a T-junction (a building across
    # it), so that a lull in traffic can empty the view.
    far = 400.0 if parked else float(rng.uniform(110, 160))
    props.ground(
        canvas,
        left_curb - sidewalk,
        right_curb + sidewalk,
        -5,
        far,
        lighting.shade(props.SIDEWALK, 1.0),
    )
    asphalt = lighting.shade(props.ASPHALT, 1.0)
    props.ground(canvas, left_curb, right_curb, -5, far, asphalt)
    props.ground(canvas, -far, far, cross - cross_half, cross + cross_half, asphalt)
    white = lighting.shade(props.WHITE_PAINT, 1.0)
    yellow = lighting.shade(props.YELLOW_PAINT, 1.0)
    centre_colour = yellow if spec.plate_style == "us" else white
    for segment in ((-5, cross - cross_half - 4), (cross + cross_half + 4, far)):
        props.line_z(canvas, centre, segment[0], segment[1], 0.15, centre_colour, 3.0, 5.0)
        for side in (1, -1):
            props.line_z(
                canvas,
                centre + side * lanes_per_side * lane_width,
                segment[0],
                segment[1],
                0.12,
                white,
            )
            if lanes_per_side == 2:
                props.line_z(
                    canvas,
                    centre + side * lane_width,
                    segment[0],
                    segment[1],
                    0.12,
                    white,
                    2.0,
                    6.0,
                )
    # Crosswalks and stop line.
    for stripe in np.arange(left_curb + 0.3, right_curb - 0.3, 1.0):
        props.ground(
            canvas,
            stripe,
            stripe + 0.5,
            cross - cross_half - 3.8,
            cross - cross_half - 0.8,
            white,
            0.01,
        )
    props.line_x(canvas, cross - cross_half - 4.3, centre, right_curb, 0.4, white)
    props.line_x(canvas, cross, -far, left_curb - sidewalk, 0.15, centre_colour, 3.0, 5.0)
    props.line_x(canvas, cross, right_curb + sidewalk, far, 0.15, centre_colour, 3.0, 5.0)
    # Far buildings (behind everything) are background; near blocks are props.
    building_right, building_left = right_curb + sidewalk, left_curb - sidewalk
    props.building_row_z(
        canvas, building_right, cross + cross_half + 1, far, rng, lighting, props.BUILDING_COLOURS
    )
    props.building_row_z(
        canvas, building_left, cross + cross_half + 1, far, rng, lighting, props.BUILDING_COLOURS
    )
    if not parked:
        props.building_face_x(
            canvas,
            far + 4.0,
            left_curb - 60,
            right_curb + 60,
            float(rng.uniform(10, 20)),
            props.BUILDING_COLOURS[rng.integers(len(props.BUILDING_COLOURS))],
            rng,
            lighting,
        )
    layout_props = [
        props.building_block(
            building_right, -10, cross - cross_half - 1, rng, lighting, props.BUILDING_COLOURS
        ),
        props.building_block(
            building_left, -10, cross - cross_half - 1, rng, lighting, props.BUILDING_COLOURS
        ),
    ]
    for side, curb in ((1, right_curb), (-1, left_curb)):
        x = curb + side * 0.8
        first = float(rng.uniform(12, 18)) if high or side > 0 else float(rng.uniform(4, 9))
        for z in np.arange(first, min(150, far - 5), float(rng.uniform(9, 14))):
            if abs(z - cross) < cross_half + 2:
                continue
            if rng.random() < 0.6:
                layout_props.append(props.tree(x, z, rng, lighting))
            elif rng.random() < 0.5:
                layout_props.append(props.lamp_post(x, z, 7.0, lighting))
                if lighting.lights_on:
                    props.lamp_pool(image, camera, x - side * 1.5, z, 5.0)
        layout_props.append(
            props.traffic_light(curb + side * 0.5, cross - cross_half - 0.5, lighting, rng)
        )
    style = spec.plate_style
    sign = props.speed_sign(style, props.speed_limit(rng, style))
    layout_props.append(
        props.sign_post(
            right_curb + 0.5,
            float(rng.uniform(12, 25)),
            sign,
            0.6,
            0.6 if style == "eu" else 0.75,
            2.0,
            lighting,
            round_sign=style == "eu",
        )
    )
    street_sign = props.text_board(
        props.STREET_NAMES[rng.integers(len(props.STREET_NAMES))],
        (60, 110, 20),
        (245, 245, 245),
        400,
        90,
        border=(245, 245, 245),
    )
    layout_props.append(
        props.sign_post(
            right_curb + 1.0, cross - cross_half - 1.2, street_sign, 1.2, 0.27, 2.8, lighting
        )
    )
    lanes = []
    speed = float(rng.uniform(8, 13))
    gap = float(rng.uniform(20, 40))
    for lane in range(lanes_per_side):
        offset = (lane + 0.5) * lane_width
        lanes.append(Lane("z", centre + offset, "rear", speed, (-8.0, far - 3), gap, min_gap=5.0))
        lanes.append(Lane("z", centre - offset, "front", -speed, (-8.0, far - 3), gap, min_gap=5.0))
    cross_speed = float(rng.uniform(7, 12))
    lanes.append(
        Lane(
            "x",
            cross - lane_width / 2,
            "side",
            cross_speed,
            (-120.0, 120.0),
            float(rng.uniform(25, 45)),
        )
    )
    lanes.append(
        Lane(
            "x",
            cross + lane_width / 2,
            "side",
            -cross_speed,
            (-120.0, 120.0),
            float(rng.uniform(25, 45)),
        )
    )
    if parked:
        for low, high in ((1.0, cross - cross_half - 5), (cross + cross_half + 5, 160.0)):
            lanes.append(
                Lane(
                    "z",
                    right_curb - parking_width / 2,
                    "rear",
                    0.0,
                    (low, high),
                    3.0,
                    (0.88, 0.12, 0.0),
                    parked=True,
                    min_gap=0.8,
                )
            )
            lanes.append(
                Lane(
                    "z",
                    left_curb + parking_width / 2,
                    "front",
                    0.0,
                    (low, high),
                    3.0,
                    (0.88, 0.12, 0.0),
                    parked=True,
                    min_gap=0.8,
                )
            )
    variant = "parked_cars" if parked else "t_junction"
    sites = {
        "curbs": (left_curb, right_curb),
        "buildings": (building_left, building_right),
        "cross": (cross, cross_half),
        "far": far,
        "dead_end": not parked,
    }
    return Layout(
        camera,
        image,
        lanes,
        [],
        layout_props,
        allows_empty=not parked,
        variant=variant,
        sites=sites,
    )


def _lot(spec, lighting, rng):
    camera = geometry.Camera.create(
        spec.width, spec.height, rng.uniform(60, 70), rng.uniform(5, 8), rng.uniform(22, 30)
    )
    image, canvas = props.start_canvas(spec, camera, lighting, rng)
    bottom = camera.ground_z_at_row(spec.height)
    extent = 22.0
    offset_x = float(rng.uniform(-3, 3))
    props.ground(canvas, -60, 60, -5, 400, lighting.shade(props.GRASS, 1.0))
    props.ground(
        canvas,
        offset_x - extent - 4,
        offset_x + extent + 4,
        -5,
        130,
        lighting.shade(props.ASPHALT, 1.05),
    )
    main_aisle = offset_x + float(rng.uniform(-6, 6))
    spots, aisles, islands, end = _stall_rows(
        canvas, rng, lighting, bottom - 2.0, 3, offset_x, extent, main_aisle
    )
    layout_props = []
    for island in islands:
        for side in (-1, 1):
            x = main_aisle + side * (_AISLE / 2 + 0.6)
            if side > 0:
                layout_props.append(props.lamp_post(x, island, 8.0, lighting, arm=0.0))
                if lighting.lights_on:
                    props.lamp_pool(image, camera, x, island, 7.0, 50)
            else:
                layout_props.append(props.tree(x, island, rng, lighting))
    # The store at the back.
    store_z = end + _AISLE + 6.0
    props.ground(
        canvas,
        offset_x - 60,
        offset_x + 60,
        end + _AISLE,
        store_z,
        lighting.shade(props.SIDEWALK, 1.0),
    )
    names = props.SHOP_NAMES + ("SUPERMARKET", "MALL", "HOME CENTER")
    store = names[rng.integers(len(names))]
    props.building_face_x(
        canvas, store_z, offset_x - 60, offset_x + 60, 9.0, (170, 180, 190), rng, lighting
    )
    board = props.text_board(store, (40, 40, 170), (245, 245, 245), 600, 120)
    board = board if lighting.lights_on else lighting.shade_image(board, 1.0)
    props.texture_x(canvas, board, offset_x - 8, offset_x + 8, 5.0, 8.0, store_z - 0.1)
    parking_sign = props.text_board(
        "P", (160, 80, 20), (245, 245, 245), 120, 120, border=(245, 245, 245)
    )
    layout_props.append(
        props.sign_post(
            main_aisle + _AISLE / 2 + 0.3, bottom + 3.0, parking_sign, 0.6, 0.6, 2.0, lighting
        )
    )
    lanes = _aisle_lanes(rng, aisles, offset_x, extent, main_aisle, (bottom - 6, store_z - 3))
    sites = {
        "lot": (offset_x - extent - 4, offset_x + extent + 4),
        "back": end + _AISLE,
        "store": store_z,
        "main_aisle": main_aisle,
    }
    return Layout(
        camera, image, lanes, spots, layout_props, allows_empty=False, variant="lot", sites=sites
    )


def _garage(spec, lighting, rng):
    camera = geometry.Camera.create(
        spec.width, spec.height, rng.uniform(66, 76), rng.uniform(2.1, 2.5), rng.uniform(4, 9)
    )
    image, canvas = props.start_canvas(spec, camera, lighting, rng)
    bottom = camera.ground_z_at_row(spec.height)
    ceiling = 2.9
    extent = 16.0
    offset_x = float(rng.uniform(-2, 2))
    left, right = offset_x - extent - 4, offset_x + extent + 4
    # Off the camera's axis, so that cars in it do not pass right under the camera.
    main_aisle = float(rng.choice([-1.0, 1.0]) * rng.uniform(5.5, 8.0))
    props.ground(canvas, left, right, -5, 200, lighting.shade((120, 124, 126), 1.0))
    spots, aisles, islands, end = _stall_rows(
        canvas, rng, lighting, min(bottom, 6.0) - 2.0, 2, offset_x, extent, main_aisle
    )
    back = end + _AISLE
    concrete = lighting.shade(props.CONCRETE, 0.9)
    props.wall_z(canvas, left, -5, back, 0.0, ceiling, lighting.shade(props.CONCRETE, 1.0))
    props.wall_z(canvas, right, -5, back, 0.0, ceiling, lighting.shade(props.CONCRETE, 0.8))
    props.wall_x(canvas, back, left, right, 0.0, ceiling, concrete)
    props.wall_x(canvas, back - 0.01, left, right, 0.0, 1.0, lighting.shade((40, 170, 220), 0.9))
    level = props.text_board(
        f"P{rng.integers(1, 5)}", (150, 70, 20), (245, 245, 245), 200, 200, border=(245, 245, 245)
    )
    props.texture_x(
        canvas,
        lighting.shade_image(level, 1.0),
        main_aisle - 4.0,
        main_aisle - 2.4,
        1.2,
        2.8,
        back - 0.02,
    )
    exit_sign = props.text_board(
        "EXIT", (40, 140, 30), (245, 245, 245), 300, 110, border=(245, 245, 245)
    )
    props.texture_x(canvas, exit_sign, main_aisle + 1.0, main_aisle + 2.6, 2.2, 2.8, back - 0.02)
    # Ceiling with beams and light strips (always lit).
    props.ground(
        canvas, left, right, -5, back, lighting.shade((105, 108, 110), 0.7), height=ceiling
    )
    beam = lighting.shade((85, 88, 90), 0.6)
    for z in np.arange(2.0, back, 8.0):
        props.ground(canvas, left, right, z, z + 0.6, beam, height=ceiling - 0.01)
    for x in np.arange(offset_x - extent, offset_x + extent + 1, 8.0):
        for z in np.arange(4.0, back - 1, 6.0):
            props.ground(
                canvas, x - 0.1, x + 0.1, z, z + 1.4, (235, 250, 255), height=ceiling - 0.02
            )
    layout_props = []
    for island in islands:
        for x in np.arange(offset_x - extent, offset_x + extent + 0.01, 3 * _STALL_WIDTH):
            if abs(x - main_aisle) > _AISLE / 2 + 0.5:
                layout_props.append(props.pillar(x, island - 0.3, 0.6, ceiling, lighting))
    lanes = _aisle_lanes(rng, aisles, offset_x, extent, main_aisle, (bottom - 6, back - 2))
    sites = {"walls": (left, right), "back": back, "main_aisle": main_aisle, "ceiling": ceiling}
    return Layout(
        camera, image, lanes, spots, layout_props, allows_empty=False, variant="garage", sites=sites
    )


def _stall_rows(canvas, rng, lighting, first_z, pairs, offset_x, extent, main_aisle):
    """Painted double rows of stalls across x, mostly occupied.

    In each pair the near row's cars are parked nose-in away from the camera
    (rear views) and the far row's nose-in towards it (front views), some
    backed in. Returns (spots, aisle centres, island z of each pair, end z).
    """
    white = lighting.shade(props.WHITE_PAINT, 1.0)
    spots, aisles, islands = [], [], []
    z = first_z
    occupancy = float(rng.uniform(0.7, 0.9))
    for _ in range(pairs):
        aisles.append(z + _AISLE / 2)
        row_start = z + _AISLE
        for row, view in ((0, "rear"), (1, "front")):
            near = row_start + row * _STALL_DEPTH
            props.line_x(
                canvas,
                near + (_STALL_DEPTH if row == 0 else 0.0),
                offset_x - extent,
                offset_x + extent,
                0.12,
                white,
            )
            for stall_x in np.arange(offset_x - extent, offset_x + extent + 0.01, _STALL_WIDTH):
                if abs(stall_x - main_aisle) < _AISLE / 2:
                    continue
                props.line_z(canvas, stall_x, near + 0.3, near + _STALL_DEPTH - 0.3, 0.12, white)
                centre = stall_x + _STALL_WIDTH / 2
                if abs(centre - main_aisle) < _AISLE / 2 + 1.0 or centre > offset_x + extent:
                    continue
                if rng.random() < occupancy:
                    kind = "truck" if rng.random() < 0.08 else "sedan"
                    backed_in = rng.random() < 0.15
                    spot_view = view if not backed_in else ("front" if view == "rear" else "rear")
                    depth_start = near + (0.25 if row == 0 else 0.35) + float(rng.uniform(0, 0.3))
                    spots.append(
                        Spot(centre + float(rng.normal(0, 0.1)), depth_start, spot_view, kind)
                    )
        islands.append(row_start + _STALL_DEPTH)
        z = row_start + 2 * _STALL_DEPTH
    return spots, aisles, islands, z


def _aisle_lanes(rng, aisles, offset_x, extent, main_aisle, main_extent):
    """Slow traffic along the aisles (side views) and the main aisle (front and rear)."""
    lanes = []
    mix = (0.9, 0.1, 0.0)
    for lane_z in aisles:
        speed = float(rng.uniform(2.5, 5.0)) * (1 if rng.random() < 0.5 else -1)
        offset = lane_z + float(rng.uniform(-0.8, 0.8))
        lanes.append(
            Lane(
                "x",
                offset,
                "side",
                speed,
                (offset_x - extent - 10, offset_x + extent + 10),
                float(rng.uniform(25, 60)),
                mix,
            )
        )
    speed = float(rng.uniform(3, 6))
    gap = float(rng.uniform(20, 40))
    lanes.append(Lane("z", main_aisle + 1.4, "rear", speed, main_extent, gap, mix))
    lanes.append(Lane("z", main_aisle - 1.4, "front", -speed, main_extent, gap, mix))
    return lanes


def _shops(canvas, rng, lighting, facade, road_far):
    """Shop fronts with signs and awnings, nose-in parking before them."""
    sidewalk_far = facade - 3.5
    parking_near = road_far
    props.ground(
        canvas, -60, 60, parking_near, sidewalk_far, lighting.shade(props.ASPHALT_LIGHT, 1.0)
    )
    white = lighting.shade(props.WHITE_PAINT, 1.0)
    stall_width = 2.7
    spots = []
    occupancy = float(rng.uniform(0.5, 0.8)) if rng.random() < 0.65 else 0.0
    for stall_x in np.arange(-40.0, 40.0, stall_width):
        props.line_z(canvas, stall_x, parking_near + 0.4, sidewalk_far - 0.2, 0.12, white)
        if rng.random() < occupancy:
            kind = "truck" if rng.random() < 0.1 else "sedan"
            view = "rear" if rng.random() < 0.85 else "front"
            x = stall_x + stall_width / 2 + float(rng.normal(0, 0.1))
            spots.append(Spot(x, parking_near + 0.4 + float(rng.uniform(0, 0.4)), view, kind))
    colour = props.BUILDING_COLOURS[rng.integers(len(props.BUILDING_COLOURS))]
    props.building_face_x(
        canvas, facade, -200, 200, float(rng.uniform(8, 14)), colour, rng, lighting
    )
    # Awnings over some shop windows.
    for x in np.arange(-40.0, 40.0, 11.0):
        if rng.random() < 0.5:
            awning = lighting.shade(
                tuple(int(value) for value in rng.integers(40, 220, size=3)), 1.0
            )
            canvas.polygon(
                np.array(
                    [
                        [x, 2.7, facade - 0.05],
                        [x + 5, 2.7, facade - 0.05],
                        [x + 5, 2.3, facade - 1.4],
                        [x, 2.3, facade - 1.4],
                    ]
                ),
                awning,
            )
    layout_props = []
    for x in np.arange(float(rng.uniform(-30, -20)), 30, float(rng.uniform(12, 20))):
        layout_props.append(
            props.tree(x, sidewalk_far + 1.0, rng, lighting)
            if rng.random() < 0.5
            else props.lamp_post(x, sidewalk_far + 1.0, 5.5, lighting, arm=0.0)
        )
    return spots, layout_props


def _houses(canvas, rng, lighting, facade, road_far):
    """Detached houses behind lawns, with driveways (some with a car in them),
    house numbers by the doors and a few front-yard trees."""
    sidewalk_end = road_far + 2.5
    props.ground(canvas, -200, 200, sidewalk_end, facade + 40, lighting.shade(props.GRASS, 1.0))
    concrete = lighting.shade((175, 180, 182), 1.0)
    spots, layout_props = [], []
    number = int(rng.integers(10, 900)) * 2
    x = -60.0
    while x < 60.0:
        width = float(rng.uniform(9, 13))
        setback = facade + float(rng.uniform(-1.0, 2.0))
        driveway = x + width + 0.3
        props.ground(canvas, driveway, driveway + 3.2, sidewalk_end, setback, concrete, 0.005)
        if rng.random() < 0.55:
            view = "rear" if rng.random() < 0.7 else "front"
            kind = "truck" if rng.random() < 0.15 else "sedan"
            spots.append(
                Spot(driveway + 1.6 + float(rng.normal(0, 0.1)), setback - 6.2, view, kind)
            )
        _house(canvas, rng, lighting, x, x + width, setback, number)
        if rng.random() < 0.4:
            layout_props.append(
                props.tree(
                    x + float(rng.uniform(1, width - 1)),
                    setback - float(rng.uniform(3, 5)),
                    rng,
                    lighting,
                )
            )
        number += 2
        x += width + 3.8
    return spots, layout_props


def _house(canvas, rng, lighting, x0, x1, z, number):
    storeys = int(rng.integers(1, 3))
    eave = 3.0 * storeys
    wall = lighting.shade(_WALLS[rng.integers(len(_WALLS))], 0.95)
    props.wall_x(canvas, z, x0, x1, 0.0, eave, wall)
    roof = lighting.shade(_ROOFS[rng.integers(len(_ROOFS))], 1.1)
    ridge = eave + float(rng.uniform(2.0, 3.2))
    canvas.polygon(
        np.array(
            [
                [x0 - 0.4, eave - 0.1, z - 0.5],
                [x1 + 0.4, eave - 0.1, z - 0.5],
                [x1 - 0.5, ridge, z + 4.0],
                [x0 + 0.5, ridge, z + 4.0],
            ]
        ),
        roof,
    )
    door_x = x0 + float(rng.uniform(1.5, (x1 - x0) / 2))
    door = lighting.shade(tuple(int(value) for value in rng.integers(30, 160, size=3)), 1.0)
    props.wall_x(canvas, z - 0.01, door_x, door_x + 1.0, 0.0, 2.1, door)
    plaque = props.house_number(number)
    props.texture_x(
        canvas, lighting.shade_image(plaque, 1.0), door_x + 1.2, door_x + 1.6, 1.6, 1.78, z - 0.02
    )
    window = lighting.shade((95, 80, 70), 1.0)
    for storey in range(storeys):
        for window_x in np.arange(x0 + 0.8, x1 - 1.2, 2.4):
            if storey == 0 and door_x - 1.3 < window_x < door_x + 1.1:
                continue
            lit = lighting.lights_on and rng.random() < 0.4
            props.wall_x(
                canvas,
                z - 0.01,
                window_x,
                window_x + 1.2,
                storey * 3.0 + 0.9,
                storey * 3.0 + 2.2,
                (90, 190, 235) if lit else window,
            )
