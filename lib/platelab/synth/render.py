"""Rendering frames of a Scene, with pixel-exact ground truth.

Objects are drawn far to near (painter's order) onto a copy of the static
background while an id map records, per pixel, the id of the object whose
pixel shows (0 for background and for props such as poles and trees). The
ground-truth boxes are the tight boxes of the visible pixels in the id map,
so they stay correct under occlusion and at the frame edges.

Box format: ``[xmin, ymin, xmax, ymax]`` in integer pixel-edge coordinates,
``xmax`` and ``ymax`` exclusive (the box covers columns ``xmin .. xmax - 1``;
its width is ``xmax - xmin``).

With ``effects=False`` the frame is exactly background + objects; the effects
(shadows, motion blur, lamp glow, lens softness, exposure flicker, sensor
noise, JPEG artefacts) are applied on top and never change the id map.
"""

import logging
import math

import cv2
import numpy as np

from platelab import visualize
from platelab.synth import geometry, props
from platelab.synth.scene import build_scene, placement, sprite_for

logger = logging.getLogger(__name__)

MIN_VISIBLE_PIXELS = 4
"""Objects showing fewer pixels are left out of the ground truth."""

DIFFICULT_OCCLUSION = 0.5
"""Objects hidden beyond this fraction are marked difficult."""

PLATE_MAX_OCCLUSION = 0.8
"""Plates hidden beyond this fraction are left out."""

DIFFICULT_PLATE_HEIGHT = 8
"""Plates whose box is fewer pixels high are marked difficult (too small to read):
ignored in training and scoring, neither a hit nor a miss, as KITTI ignores boxes
under its height limits."""

DIFFICULT_VEHICLE_HEIGHT = 16
"""Vehicles whose box is fewer pixels high are marked difficult."""

BOX_COLOURS = {"vehicle": (60, 220, 60), "license_plate": (255, 60, 255)}

_EXPOSURE = {"day": 1 / 250, "dusk": 1 / 80, "night": 1 / 30}
_PROP_RANGE = (0.6, 450.0)


def render_video(spec):
    """Renders a video in memory, frame by frame.

    Args:
        spec: a VideoSpec (see video_specs)

    Yields:
        (frame, truth): the BGR uint8 frame (height x width x 3) and its ground
        truth ``{"index", "time", "state", "objects"}``; ``state`` is ``ok``,
        ``black`` (dead feed), ``frozen`` (the previous frame repeated) or
        ``empty`` (no vehicle in view)
    """
    return scene_frames(build_scene(spec))


def scene_frames(scene):
    """Renders the frames of an already built Scene (see render_video)."""
    spec = scene.spec
    last_frame, last_objects = None, []
    for index in range(spec.frames):
        state = scene.states[index]
        if state == "black":
            frame = np.zeros((spec.height, spec.width, 3), dtype=np.uint8)
            objects = []
        elif state == "frozen" and last_frame is not None:
            frame, objects = last_frame, [dict(item) for item in last_objects]
        else:
            frame, objects, _ = render_frame(scene, index)
            state = "ok" if any(item["label"] == "vehicle" for item in objects) else "empty"
            last_frame, last_objects = frame, objects
        yield (
            frame,
            {
                "index": index,
                "time": round(index / spec.fps, 6),
                "state": state,
                "objects": objects,
            },
        )


def render_frame(scene, index, exclude_ids=(), effects=True):
    """Renders one frame of a scene.

    Args:
        scene: a Scene (see build_scene)
        index: the frame index
        exclude_ids: ids of objects to leave out (a vehicle's id leaves out its
            plate too)
        effects: whether to apply shadows, blur, glow, noise, flicker and
            compression; without them a pixel difference isolates an object

    Returns:
        (image, objects, id_map): the BGR uint8 image, the ground-truth objects
        (list of dicts, sorted by id) and the int32 id map (0 = background)
    """
    spec = scene.spec
    time = index / spec.fps
    exclude_ids = set(exclude_ids)
    _prepare(scene)
    image = (_effects_background(scene) if effects else scene.background).copy()
    id_map = np.zeros((spec.height, spec.width), dtype=np.int32)
    if scene.dynamic is not None:
        scene.dynamic(image, id_map, time)
    items = []
    for vehicle in scene.vehicles:
        if vehicle.id in exclude_ids:
            continue
        placed = placement(scene, vehicle, index)
        if placed is not None:
            items.append((-vehicle.position(time)[1], 0, vehicle.id, vehicle, placed))
    for number, prop in enumerate(scene.props):
        if prop.velocity is None:
            continue
        depth = prop.depth_z + prop.velocity[1] * time
        if _PROP_RANGE[0] < depth < _PROP_RANGE[1]:
            items.append((-depth, 1, number, prop, None))
    items.sort(key=lambda item: item[:3])
    records, glows = [], []
    for _, kind, _number, thing, placed in items:
        if kind == 1:
            _draw_prop(scene, thing, image, id_map, time)
            continue
        record = _draw_vehicle(
            scene, thing, placed, index, image, id_map, exclude_ids, effects, glows
        )
        if record is not None:
            records.append(record)
    if scene.foreground is not None:
        scene.foreground(image, id_map, index, time)
    objects = _ground_truth(scene, records, id_map)
    if effects:
        image = _apply_effects(scene, index, image, id_map, glows)
    return image, objects, id_map


def draw_boxes(image_bgr, objects, thickness=2):
    """Draws labelled ground-truth boxes on a copy of an image.

    Vehicles are green with their type, plates magenta with their text;
    difficult objects get a thin box.

    Args:
        image_bgr: BGR uint8 image
        objects: ground-truth objects (dicts with ``label`` and ``box``)
        thickness: line thickness of the boxes in pixels

    Returns:
        the annotated copy
    """
    canvas = image_bgr.copy()
    height = canvas.shape[0]
    font_scale = max(0.3, height / 1400.0)
    for item in sorted(objects, key=lambda entry: entry["label"] != "vehicle"):
        x0, y0, x1, y1 = (int(round(value)) for value in item["box"])
        colour = BOX_COLOURS.get(item["label"], (0, 200, 255))
        line = 1 if item.get("difficult") else thickness
        cv2.rectangle(canvas, (x0, y0), (x1 - 1, y1 - 1), colour, line)
        if item["label"] == "vehicle":
            caption = f"{item.get('type', 'vehicle')} {item.get('id', '')}"
        else:
            caption = item.get("text", "plate")
        if (y1 - y0) >= (18 if item["label"] == "vehicle" else 7):
            visualize.draw_label(
                canvas, caption, x0, y0, y1, colour, font_scale, below_when_clipped=True
            )
    return canvas


def _prepare(scene):
    """On the first frame: bakes the static props into the background (far to
    near) and keeps their masks, which hide the vehicles behind them."""
    if scene.occluders is not None:
        return
    rendered = []
    for prop in scene.props:
        if prop.velocity is not None:
            continue
        result = _render_static_prop(scene, prop)
        if result is not False:
            rendered.append((prop.depth_z, *result))
    rendered.sort(key=lambda entry: -entry[0])
    scene.raw_background = scene.background
    scene.baked_props = [entry[1:] for entry in rendered]
    scene.background = _paste_props(scene.background.copy(), scene.baked_props)
    scene.occluders = {
        "depth": np.array([entry[0] for entry in rendered], dtype=np.float64),
        "rect": np.array([entry[1] for entry in rendered], dtype=np.int64).reshape(-1, 4),
        "mask": [entry[3] for entry in rendered],
    }


def _paste_props(image, rendered_props):
    for (x0, y0, x1, y1), colour, mask in rendered_props:
        np.copyto(image[y0:y1, x0:x1], colour, where=mask[..., None])
    return image


def _hide_behind_props(scene, z, rect, covered):
    """Clears the pixels of a piece that static props nearer than z cover."""
    occluders = scene.occluders
    if len(occluders["depth"]) == 0:
        return
    x0, y0, x1, y1 = rect
    rects = occluders["rect"]
    candidates = np.flatnonzero(
        (occluders["depth"] <= z)
        & (rects[:, 0] < x1)
        & (rects[:, 2] > x0)
        & (rects[:, 1] < y1)
        & (rects[:, 3] > y0)
    )
    for number in candidates:
        px0, py0, px1, py1 = rects[number]
        ix0, iy0, ix1, iy1 = max(x0, px0), max(y0, py0), min(x1, px1), min(y1, py1)
        covered[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] &= ~occluders["mask"][number][
            iy0 - py0 : iy1 - py0, ix0 - px0 : ix1 - px0
        ]


def _draw_prop(scene, prop, image, id_map, time):
    """Draws a moving prop (static ones are part of the background)."""
    canvas = geometry.Canvas(image, scene.camera, mask=id_map, mask_value=0)
    prop.draw(canvas, prop.velocity[0] * time, prop.velocity[1] * time)


def _render_static_prop(scene, prop):
    spec = scene.spec
    colour = np.zeros((spec.height, spec.width, 3), dtype=np.uint8)
    mask = np.zeros((spec.height, spec.width), dtype=np.uint8)
    prop.draw(geometry.Canvas(colour, scene.camera, mask=mask, mask_value=1), 0.0, 0.0)
    rows = np.flatnonzero(mask.any(axis=1))
    columns = np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        return False
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, columns[0], columns[-1] + 1
    return (x0, y0, x1, y1), colour[y0:y1, x0:x1].copy(), mask[y0:y1, x0:x1].astype(bool)


def _draw_vehicle(scene, vehicle, placed, index, image, id_map, exclude_ids, effects, glows):
    """Pastes a vehicle (and its plate); returns what the ground truth needs."""
    pixel, scale, key = placed
    sprite = sprite_for(scene, vehicle, key)
    ratio = scale / sprite.scale
    sprite_height, sprite_width = sprite.mask.shape
    new_width = int(round(sprite_width * ratio))
    new_height = int(round(sprite_height * ratio))
    if new_width < 1 or new_height < 1:
        return None
    ratio_x, ratio_y = new_width / sprite_width, new_height / sprite_height
    x0 = int(round(pixel[0] - sprite.anchor[0] * ratio_x))
    y0 = int(round(pixel[1] - sprite.anchor[1] * ratio_y))
    with_plate = (
        vehicle.plate_id is not None
        and sprite.plate_quad is not None
        and vehicle.plate_id not in exclude_ids
    )
    cache_key = (vehicle.id, key, x0, y0, new_width, new_height, with_plate)
    piece = scene.piece_cache.get(cache_key)
    if piece is None:
        z = vehicle.track["z"][index]
        piece = _make_piece(scene, vehicle, sprite, (x0, y0, new_width, new_height), with_plate, z)
        if vehicle.parked and vehicle.velocity == (0.0, 0.0):
            scene.piece_cache[cache_key] = piece
    if piece is False:
        return None
    fx0, fy0, fx1, fy1 = piece["rect"]
    if effects and scene.lighting.name != "night" and not piece["static"]:
        _shadow(scene, vehicle, index, image)
    covered = piece["covered"]
    np.copyto(image[fy0:fy1, fx0:fx1], piece["colour"], where=covered[..., None])
    np.copyto(id_map[fy0:fy1, fx0:fx1], piece["ids"], where=covered)
    if effects:
        _motion_blur(scene, vehicle, index, image, piece)
        if vehicle.lights_on:
            for light_x, light_y, radius, light_colour in sprite.lights:
                centre = (x0 + light_x * ratio_x, y0 + light_y * ratio_y)
                glows.append((vehicle.id, centre, max(radius * ratio_x, 0.6), light_colour))
    return {"vehicle": vehicle, **piece}


def _make_piece(scene, vehicle, sprite, placement_box, with_plate, z):
    """The vehicle as it lands in the frame: its colours, the ids per pixel
    (vehicle or plate), and counts for the occlusion and truncation figures.

    Returns:
        a dict, or False when nothing of it falls inside the frame
    """
    x0, y0, new_width, new_height = placement_box
    sprite_height, sprite_width = sprite.mask.shape
    ratio_x, ratio_y = new_width / sprite_width, new_height / sprite_height
    height, width = scene.spec.height, scene.spec.width
    fx0, fy0 = max(x0, 0), max(y0, 0)
    fx1, fy1 = min(x0 + new_width, width), min(y0 + new_height, height)
    if fx1 <= fx0 or fy1 <= fy0:
        return False
    # Resize only the part of the sprite that lands in the frame (plus a margin).
    src_x0 = max(int(math.floor((fx0 - x0) / ratio_x)) - 2, 0)
    src_y0 = max(int(math.floor((fy0 - y0) / ratio_y)) - 2, 0)
    src_x1 = min(int(math.ceil((fx1 - x0) / ratio_x)) + 2, sprite_width)
    src_y1 = min(int(math.ceil((fy1 - y0) / ratio_y)) + 2, sprite_height)
    colour, mask = _resized(sprite, ratio_x, ratio_y, (src_x0, src_y0, src_x1, src_y1))
    crop_x0 = x0 + int(round(src_x0 * ratio_x))
    crop_y0 = y0 + int(round(src_y0 * ratio_y))
    colour, mask = _fit(colour, mask, (fx0 - crop_x0, fy0 - crop_y0), (fy1 - fy0, fx1 - fx0))
    in_frame = int(np.count_nonzero(mask))
    if in_frame == 0:
        return False
    full = in_frame
    if (fx0, fy0, fx1, fy1) != (x0, y0, x0 + new_width, y0 + new_height):
        # Cut by the frame edge: count the whole resized mask.
        whole = cv2.resize(
            sprite.mask.view(np.uint8), (new_width, new_height), interpolation=cv2.INTER_NEAREST
        )
        full = max(int(np.count_nonzero(whole)), in_frame)
    ids = np.full(mask.shape, vehicle.id, dtype=np.int32)
    plate = None
    if with_plate:
        quad = sprite.plate_quad * (ratio_x, ratio_y) + (x0, y0)
        plate = _plate_onto(scene, vehicle, quad, (fx0, fy0), colour, mask, ids)
    mask = mask.copy()
    _hide_behind_props(scene, z, (fx0, fy0, fx1, fy1), mask)
    return {
        "rect": (fx0, fy0, fx1, fy1),
        "colour": colour,
        "covered": mask,
        "ids": ids,
        "full": full,
        "in_frame": in_frame,
        "plate": plate,
        "static": vehicle.parked and vehicle.velocity == (0.0, 0.0),
    }


def _resized(sprite, ratio_x, ratio_y, source):
    """The sprite (cropped to ``source``) resized by the ratios."""
    src_x0, src_y0, src_x1, src_y1 = source
    crop_image = sprite.image[src_y0:src_y1, src_x0:src_x1]
    crop_mask = sprite.mask[src_y0:src_y1, src_x0:src_x1].view(np.uint8)
    out_width = max(int(round((src_x1 - src_x0) * ratio_x)), 1)
    out_height = max(int(round((src_y1 - src_y0) * ratio_y)), 1)
    interpolation = cv2.INTER_AREA if ratio_x < 1 else cv2.INTER_LINEAR
    colour = cv2.resize(crop_image, (out_width, out_height), interpolation=interpolation)
    mask = cv2.resize(crop_mask, (out_width, out_height), interpolation=cv2.INTER_NEAREST)
    return colour, mask.astype(bool)


def _fit(colour, mask, offset, shape):
    """Cuts (and pads where rounding left it short) a resized piece to the frame region."""
    offset_x, offset_y = offset
    fitted_colour = np.zeros((*shape, 3), dtype=np.uint8)
    fitted_mask = np.zeros(shape, dtype=bool)
    piece_colour = colour[offset_y : offset_y + shape[0], offset_x : offset_x + shape[1]]
    piece_mask = mask[offset_y : offset_y + shape[0], offset_x : offset_x + shape[1]]
    rows, columns = piece_mask.shape
    fitted_colour[:rows, :columns] = piece_colour
    fitted_mask[:rows, :columns] = piece_mask
    return fitted_colour, fitted_mask


def _plate_onto(scene, vehicle, quad, origin, colour, mask, ids):
    """Warps the plate image onto a vehicle piece (only onto its own pixels)."""
    height, width = scene.spec.height, scene.spec.width
    quad_area = abs(cv2.contourArea(quad.astype(np.float32)))
    if quad_area <= 0:
        return None
    frame_polygon = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    overlap, _ = cv2.intersectConvexConvex(quad.astype(np.float32), frame_polygon)
    truncated = 1.0 - min(overlap / quad_area, 1.0)
    local = quad - origin
    target_width = float(np.linalg.norm(quad[1] - quad[0]))
    texture = _plate_texture(scene, vehicle, target_width)
    warped = geometry.warp_quad(texture, local, mask.shape)
    if warped is None:
        return None
    (x0, y0, x1, y1), plate_colour, covered = warped
    covered &= mask[y0:y1, x0:x1]
    count = int(np.count_nonzero(covered))
    if count == 0:
        return None
    colour[y0:y1, x0:x1][covered] = plate_colour[covered]
    ids[y0:y1, x0:x1][covered] = vehicle.plate_id
    return {
        "rect": (origin[0] + x0, origin[1] + y0, origin[0] + x1, origin[1] + y1),
        "in_frame": count,
        "truncated": truncated,
    }


def _plate_texture(scene, vehicle, target_width):
    """The plate image at the smallest pre-shrunk level still 1.5 times the target."""
    levels = scene.plate_images[vehicle.plate_id]
    if isinstance(levels, np.ndarray):
        pyramid = [levels]
        while pyramid[-1].shape[1] > 24:
            pyramid.append(
                cv2.resize(pyramid[-1], None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
            )
        scene.plate_images[vehicle.plate_id] = levels = pyramid
    chosen = levels[0]
    for level in levels:
        if level.shape[1] >= 1.5 * target_width:
            chosen = level
    return chosen


def _shadow(scene, vehicle, index, image):
    """Darkens the ground under a vehicle (day and dusk)."""
    time = index / scene.spec.fps
    polygon = geometry.clip_near(scene.camera, _footprint(vehicle, time))
    if polygon is None:
        return
    pixels, _ = scene.camera.project(polygon)
    height, width = image.shape[:2]
    x0 = max(int(pixels[:, 0].min()) - 1, 0)
    y0 = max(int(pixels[:, 1].min()) - 1, 0)
    x1 = min(int(pixels[:, 0].max()) + 2, width)
    y1 = min(int(pixels[:, 1].max()) + 2, height)
    if x1 <= x0 or y1 <= y0:
        return
    mask = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    geometry.fill_polygon(mask, pixels - (x0, y0), 1)
    region = image[y0:y1, x0:x1]
    shaded = cv2.convertScaleAbs(region, alpha=_shadow_strength(scene))
    np.copyto(region, shaded, where=mask.astype(bool)[..., None])


def _footprint(vehicle, time):
    x_low, x_high, z_low, z_high = vehicle.bounds(time)
    return np.array(
        [
            [x_low - 0.15, 0.0, z_low - 0.1],
            [x_high + 0.15, 0.0, z_low - 0.1],
            [x_high + 0.15, 0.0, z_high + 0.3],
            [x_low - 0.15, 0.0, z_high + 0.3],
        ]
    )


def _shadow_strength(scene):
    return 0.55 if scene.lighting.name == "day" else 0.75


def _effects_background(scene):
    """The background with the shadows of parked vehicles baked in (cached)."""
    if scene.shadowed_background is None:
        image = scene.raw_background.copy()
        if scene.lighting.name != "night":
            mask = np.zeros(image.shape[:2], dtype=np.uint8)
            for vehicle in scene.vehicles:
                if vehicle.parked and vehicle.velocity == (0.0, 0.0):
                    polygon = geometry.clip_near(scene.camera, _footprint(vehicle, 0.0))
                    if polygon is not None:
                        geometry.fill_polygon(mask, scene.camera.project(polygon)[0], 1)
            shaded = (image.astype(np.float32) * _shadow_strength(scene)).astype(np.uint8)
            np.copyto(image, shaded, where=mask.astype(bool)[..., None])
        scene.shadowed_background = _paste_props(image, scene.baked_props)
    return scene.shadowed_background


def _motion_blur(scene, vehicle, index, image, piece):
    """Smears a moving vehicle along its image motion during the exposure."""
    if piece["static"]:
        return
    track = vehicle.track
    following = min(index + 1, scene.spec.frames - 1)
    previous = following - 1
    if previous < 0:
        return
    motion = (track["pixel"][following] - track["pixel"][previous]) * scene.spec.fps
    length = float(np.hypot(*motion)) * _EXPOSURE[scene.lighting.name]
    if not np.isfinite(length) or length < 1.5:
        return
    length = int(round(min(length, 25.0)))
    # A box blur along the dominant axis of the motion (vehicles move mostly
    # across or up and down the image): as fast for long smears as short ones.
    horizontal = abs(motion[0]) >= abs(motion[1])
    kernel = (length, 1) if horizontal else (1, length)
    x0, y0, x1, y1 = piece["rect"]
    height, width = image.shape[:2]
    pad = length // 2 + 1
    bx0, by0 = (max(x0 - pad, 0), y0) if horizontal else (x0, max(y0 - pad, 0))
    bx1, by1 = (min(x1 + pad, width), y1) if horizontal else (x1, min(y1 + pad, height))
    region = image[by0:by1, bx0:bx1]
    blurred = cv2.blur(region, kernel, borderType=cv2.BORDER_REPLICATE)
    spread = np.zeros((by1 - by0, bx1 - bx0), dtype=np.uint8)
    spread[y0 - by0 : y1 - by0, x0 - bx0 : x1 - bx0] = piece["covered"]
    spread = cv2.dilate(spread, np.ones((kernel[1], kernel[0]), dtype=np.uint8))
    np.copyto(region, blurred, where=spread.astype(bool)[..., None])


def _ground_truth(scene, records, id_map):
    objects = []
    for record in records:
        vehicle = record["vehicle"]
        x0, y0, x1, y1 = record["rect"]
        region = id_map[y0:y1, x0:x1]
        mine = region == vehicle.id
        if vehicle.plate_id is not None:
            mine |= region == vehicle.plate_id
        visible = int(np.count_nonzero(mine))
        if visible < MIN_VISIBLE_PIXELS:
            continue
        box = _tight_box(mine, x0, y0)
        occluded = 1.0 - visible / record["in_frame"]
        truncated = 1.0 - min(record["in_frame"] / record["full"], 1.0)
        objects.append(
            {
                "id": vehicle.id,
                "label": "vehicle",
                "box": box,
                "type": vehicle.model.kind,
                "variant": vehicle.model.variant,
                "view": vehicle.view,
                "parked": vehicle.parked,
                "occluded": round(max(occluded, 0.0), 3),
                "truncated": round(max(truncated, 0.0), 3),
                "difficult": occluded > DIFFICULT_OCCLUSION
                or box[3] - box[1] < DIFFICULT_VEHICLE_HEIGHT,
            }
        )
        plate = record["plate"]
        if plate is None:
            continue
        px0, py0, px1, py1 = plate["rect"]
        plate_pixels = id_map[py0:py1, px0:px1] == vehicle.plate_id
        plate_visible = int(np.count_nonzero(plate_pixels))
        plate_occluded = 1.0 - plate_visible / plate["in_frame"]
        if plate_visible < MIN_VISIBLE_PIXELS or plate_occluded > PLATE_MAX_OCCLUSION:
            continue
        plate_box = _tight_box(plate_pixels, px0, py0)
        objects.append(
            {
                "id": vehicle.plate_id,
                "label": "license_plate",
                "box": plate_box,
                "style": vehicle.plate.style,
                "text": vehicle.plate.text,
                "region": vehicle.plate.region,
                "vehicle_id": vehicle.id,
                "occluded": round(max(plate_occluded, 0.0), 3),
                "truncated": round(max(plate["truncated"], 0.0), 3),
                "difficult": plate_occluded > DIFFICULT_OCCLUSION
                or plate_box[3] - plate_box[1] < DIFFICULT_PLATE_HEIGHT,
            }
        )
    objects.sort(key=lambda item: item["id"])
    return objects


def _tight_box(mask, x0, y0):
    rows = np.flatnonzero(mask.any(axis=1))
    columns = np.flatnonzero(mask.any(axis=0))
    return [
        int(x0 + columns[0]),
        int(y0 + rows[0]),
        int(x0 + columns[-1] + 1),
        int(y0 + rows[-1] + 1),
    ]


def _apply_effects(scene, index, image, id_map, glows):
    spec = scene.spec
    rng = np.random.default_rng((spec.seed, spec.index, index, 7))
    lighting = scene.lighting
    if lighting.lights_on and glows:
        strength = 1.0 if lighting.name == "night" else 0.5
        for vehicle_id, centre, radius, colour in glows:
            column, row = int(centre[0]), int(centre[1])
            if not (0 <= row < spec.height and 0 <= column < spec.width):
                continue
            if id_map[row, column] != vehicle_id:
                continue
            props.glow(image, centre, radius * 2.2, radius * 1.6, colour, strength * 0.9)
    image = cv2.GaussianBlur(image, (3, 3), 0.6)
    gain = 1.0 + scene.effects["exposure_jitter"] * float(rng.standard_normal())
    if abs(gain - 1.0) > 1e-3:
        image = cv2.convertScaleAbs(image, alpha=gain)
    sigma = scene.effects["noise"]
    if sigma > 0:
        positive, negative = _noise(scene, rng)
        image = cv2.subtract(cv2.add(image, positive), negative)
    if rng.random() < scene.effects["jpeg_probability"]:
        quality = int(scene.effects["jpeg_quality"] + rng.integers(-5, 6))
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:
            image = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
    return image


def _noise(scene, rng):
    """Sensor noise: a random window of one of a few pre-drawn noise fields."""
    spec = scene.spec
    margin = 16
    if not scene.noise_bank:
        bank_rng = np.random.default_rng((spec.seed, spec.index, 11))
        for _ in range(2):
            field = bank_rng.standard_normal(
                (spec.height + margin, spec.width + margin, 3), dtype=np.float32
            )
            field *= scene.effects["noise"]
            field = np.round(field)
            scene.noise_bank.append(
                (np.clip(field, 0, 255).astype(np.uint8), np.clip(-field, 0, 255).astype(np.uint8))
            )
    positive, negative = scene.noise_bank[int(rng.integers(len(scene.noise_bank)))]
    dy, dx = (int(value) for value in rng.integers(0, margin, size=2))
    window = (slice(dy, dy + spec.height), slice(dx, dx + spec.width))
    return positive[window], negative[window]
