"""Steel fences and gates: the ``fences`` scene detail (hard negatives, never annotated).

Real fixed cameras at parking lots and compound gates see fences of vertical steel bars
(railings, sliding gates with diagonal braces) and chain-link fences behind and beside
the cars; a detector that never saw them takes their regular bars for plate
characters. :func:`add_fences` adds one to three such fences to a fixed camera's
layout, where a real site has them: along the back and sides of a parking lot (an open
sliding gate beside the aisle's opening), against a garage's walls, before shop fronts
(railings, closed security gates) and front yards (with gates across driveways, some
with a car behind them), along a street's building lines and kerbs, across a dead end,
along a motorway's verge. Not on the dashcam. They stand off the lanes and parking
spots (:func:`traffic_zones`; an opening where a lane passes), mostly behind the
traffic. Their randomness comes from a generator of their own (``scene.build_scene``
seeds it with ``(seed, index, 7004)``), so that a video without them is unchanged.

Each fence is drawn by casting the rays of its pixels onto its plane (no texture
warping): bars, rails, posts, braces and chain-link wires are filtered over each
pixel's footprint, so that far fences fade to a haze as a camera sees them instead of
aliasing. The props are drawn opaque (the renderer bakes static props with a binary
mask), so partly covered pixels are dithered with an ordered 4x4 pattern: a far
fence or a chain-link mesh hides the share of the pixels of what stands behind it that
it covers, and the id map (hence the truth's occlusion figures) agrees with the pixels.
Each fence is a ``scene.Prop`` ordered by its far end, like the other props: a vehicle
behind it is hidden where its bars are, one in front is drawn over it.
"""

import dataclasses
import logging
import math

import numpy as np

from platelab.synth import geometry, vehicles
from platelab.synth.scene import Prop

logger = logging.getLogger(__name__)

PROBABILITY = 0.7
"""Chance that a video of a vantage with fences gets any."""

COLOURS = {
    "black": (30, 30, 32),
    "dark_grey": (64, 66, 68),
    "green": (46, 84, 40),
    "galvanised": (150, 153, 152),
}
"""Unlit BGR colours of painted and galvanised steel."""

KINDS = ("bars", "gate", "chainlink")
"""``bars``: a railing of vertical bars between posts; ``gate``: a framed gate leaf of
bars, often braced diagonally; ``chainlink``: a diamond wire mesh between round posts."""

_WIDTHS = {"sedan": 1.92, "truck": 2.4, "bus": 2.55}
_LENGTHS = {"sedan": 5.0, "truck": 8.5, "bus": 12.5}
_JITTER = 0.6
"""How far (metres) a moving vehicle may stray across its lane from the lane's centre."""
_MARGIN = 0.3
_SUBSAMPLES = 3
_BAYER = (
    np.array([[0, 8, 2, 10], [12, 4, 14, 6], [3, 11, 1, 9], [15, 7, 13, 5]], dtype=np.float32) + 0.5
) / 16.0
_CHUNK = 1_200_000


@dataclasses.dataclass(frozen=True)
class Fence:
    """One straight stretch of fence, or one gate leaf, standing on the ground.

    Attributes:
        kind: one of :data:`KINDS`
        start: (x, z) ground point where its base line starts (metres)
        end: (x, z) where it ends; the line runs along x (facing the camera) or along z
        height: top of the infill (metres above the ground)
        colour: unlit BGR colour of the steel
        bar_width: width of the vertical bars (0: none)
        spacing: distance between bar centres
        round_bars: round bars (shaded across) instead of square ones
        spikes: height of the pointed bar tops above ``height`` (0: flat top)
        rails: heights of the horizontal rails' centres
        rail_width: height of a rail (and width of braces and a gate's frame)
        posts: distance between posts (0: none)
        post_width: width of a post
        end_posts: whether a post stands at the start and at the end
        braces: diagonal members ``(s0, y0, s1, y1)`` in metres along the line and up
        mesh: size of a chain-link diamond (0: no mesh)
        wire: thickness of the chain-link wire
        phase: where the start lies along the whole fence it was cut from (the bars and
            posts of the pieces of one fence line up)
    """

    kind: str
    start: tuple
    end: tuple
    height: float
    colour: tuple
    bar_width: float = 0.03
    spacing: float = 0.15
    round_bars: bool = False
    spikes: float = 0.0
    rails: tuple = ()
    rail_width: float = 0.05
    posts: float = 0.0
    post_width: float = 0.08
    end_posts: tuple = (True, True)
    braces: tuple = ()
    mesh: float = 0.0
    wire: float = 0.005
    phase: float = 0.0

    @property
    def length(self):
        """Length of the base line in metres."""
        return math.hypot(self.end[0] - self.start[0], self.end[1] - self.start[1])

    @property
    def along_x(self):
        """Whether it runs along x (a plane z = const, facing the camera)."""
        return abs(self.end[1] - self.start[1]) < 1e-9

    @property
    def depth(self):
        """Its far end's z: where it is ordered among vehicles and other props."""
        return max(self.start[1], self.end[1])

    @property
    def top(self):
        """Height of its highest point."""
        return self.height + max(self.spikes, 0.05)


def add_fences(layout, spec, lighting, rng):
    """Adds fences and gates to a layout (the ``fences`` scene detail).

    On the fixed cameras' vantage points (not the dashcam), with probability
    :data:`PROBABILITY`, one to three fences where the layout's ``sites`` say a real
    site has them, cut wherever a vehicle may stand or drive (:func:`traffic_zones`).

    Args:
        layout: a ``scene.Layout``; its ``props`` get the fences
        spec: the VideoSpec
        lighting: the scene's Lighting
        rng: a numpy Generator of the fences' own (never the scene's)

    Returns:
        the list of Fence pieces added (empty when none)
    """
    plans = _PLANS.get(spec.vantage)
    if plans is None or not layout.sites or rng.random() >= PROBABILITY:
        return []
    plans = plans.get(layout.variant, plans.get("")) if isinstance(plans, dict) else plans
    if not plans:
        return []
    zones = traffic_zones(layout)
    wanted = int(rng.integers(1, 4))
    order = rng.permutation(len(plans))
    added = []
    drawn = 0
    for number in order:
        if drawn >= wanted:
            break
        pieces = []
        for fence in plans[number](layout, rng):
            pieces.extend(piece for piece in cut(fence, zones) if seen(piece, layout.camera))
        if not pieces:
            continue
        drawn += 1
        for piece in pieces:
            layout.props.append(fence_prop(piece, lighting))
        added.extend(pieces)
    logger.debug("%s: %d fence pieces", spec.source_id, len(added))
    return added


def traffic_zones(layout):
    """Ground rectangles where the layout's vehicles may stand or drive.

    Lanes along z: their width (the widest vehicle their mix holds and how far a
    vehicle strays) from the near side to the far end of their stretch plus the longest
    vehicle; lanes along x: their width over their stretch (plus one and a half of the
    longest vehicle); parking spots: the largest footprint of their kind.

    Returns:
        a list of (x0, x1, z0, z1) in metres
    """
    zones = []
    for lane in layout.lanes:
        kinds = [
            kind for kind, share in zip(vehicles.VEHICLE_TYPES, lane.mix, strict=True) if share > 0
        ]
        kinds = kinds or list(_WIDTHS)
        half = max(_WIDTHS[kind] for kind in kinds) / 2 + _JITTER
        longest = max(_LENGTHS[kind] for kind in kinds)
        low, high = lane.extent
        if lane.axis == "z":
            zones.append((lane.offset - half, lane.offset + half, -math.inf, high + longest))
        else:
            zones.append(
                (low - 1.5 * longest, high + 1.5 * longest, lane.offset - half, lane.offset + half)
            )
    for spot in layout.spots:
        width, length = _WIDTHS.get(spot.kind, 2.55), _LENGTHS.get(spot.kind, 12.5)
        if spot.view == "side":
            zones.append((spot.x - length / 2, spot.x + length / 2, spot.z, spot.z + width))
        else:
            zones.append((spot.x - width / 2, spot.x + width / 2, spot.z, spot.z + length))
    return zones


def seen(fence, camera, smallest=4):
    """Whether a fence's outline reaches into the camera's frame (at least ``smallest``
    pixels each way)."""
    (x0, z0), (x1, z1) = fence.start, fence.end
    corners = np.array([[x0, 0.0, z0], [x1, 0.0, z1], [x1, fence.top, z1], [x0, fence.top, z0]])
    polygon = geometry.clip_near(camera, corners)
    if polygon is None:
        return False
    pixels = camera.project(polygon)[0]
    if not np.all(np.isfinite(pixels)):
        return False
    low = np.maximum(pixels.min(axis=0), 0.0)
    high = np.minimum(pixels.max(axis=0), (camera.width, camera.height))
    return bool(np.all(high - low >= smallest))


def cut(fence, zones, margin=_MARGIN, shortest=1.0):
    """The pieces of a fence left where it crosses none of the zones (each at least
    ``shortest`` metres long; a gate leaf is kept whole or dropped).

    Args:
        fence: a Fence
        zones: (x0, x1, z0, z1) ground rectangles (see traffic_zones)
        margin: clearance kept from every zone (metres)
        shortest: shorter pieces are dropped

    Returns:
        a list of Fence (with posts at the new ends)
    """
    (x0, z0), (x1, z1) = fence.start, fence.end
    length = fence.length
    if length <= 0:
        return []
    if fence.along_x:
        across, low, step = z0, x0, 1.0 if x1 >= x0 else -1.0
    else:
        across, low, step = x0, z0, 1.0 if z1 >= z0 else -1.0
    blocked = []
    for zx0, zx1, zz0, zz1 in zones:
        if fence.along_x:
            near, far, begin, finish = zz0, zz1, zx0, zx1
        else:
            near, far, begin, finish = zx0, zx1, zz0, zz1
        if near - margin <= across <= far + margin:
            # Along the line, s = (coordinate - low) * step.
            ends = sorted(((begin - margin - low) * step, (finish + margin - low) * step))
            blocked.append((ends[0], ends[1]))
    blocked.sort()
    free, position = [], 0.0
    for begin, finish in blocked:
        if begin > position:
            free.append((position, min(begin, length)))
        position = max(position, finish)
        if position >= length:
            break
    if position < length:
        free.append((position, length))
    free = [(begin, finish) for begin, finish in free if finish - begin >= shortest]
    if fence.kind == "gate":
        return [fence] if free == [(0.0, length)] else []
    pieces = []
    for begin, finish in free:
        start = _point(fence, begin)
        end = _point(fence, finish)
        pieces.append(
            dataclasses.replace(
                fence,
                start=start,
                end=end,
                phase=fence.phase + begin,
                end_posts=(
                    fence.end_posts[0] if begin <= 0 else True,
                    fence.end_posts[1] if finish >= length else True,
                ),
            )
        )
    return pieces


def split(fence, longest):
    """Cuts a fence into pieces at most ``longest`` metres long (the pattern runs on).

    Pieces of a fence along z are ordered by their own far ends, so that what stands
    beside a long fence is hidden only by the part of it nearer than itself.
    """
    count = max(int(math.ceil(fence.length / longest - 1e-9)), 1)
    if count == 1 or fence.kind == "gate":
        return [fence]
    pieces = []
    for number in range(count):
        begin, finish = fence.length * number / count, fence.length * (number + 1) / count
        pieces.append(
            dataclasses.replace(
                fence,
                start=_point(fence, begin),
                end=_point(fence, finish),
                phase=fence.phase + begin,
                end_posts=(
                    fence.end_posts[0] if number == 0 else False,
                    fence.end_posts[1] if number == count - 1 else False,
                ),
            )
        )
    return pieces


def fence_prop(fence, lighting):
    """The ``scene.Prop`` of a fence (static, ordered by its far end)."""
    # Lit like the building faces: facing the camera, or a side of the street.
    intensity = 0.95 if fence.along_x else (1.05 if fence.start[0] > 0 else 0.8)
    colour = lighting.shade(fence.colour, intensity)

    def draw(canvas, dx=0.0, dz=0.0):
        draw_fence(canvas, fence, colour, (dx, dz))

    return Prop(depth_z=fence.depth, draw=draw, x=(fence.start[0] + fence.end[0]) / 2)


def draw_fence(canvas, fence, colour, shift=(0.0, 0.0)):
    """Draws a fence onto a ``geometry.Canvas`` (and its mask), ray by ray.

    Every pixel's rays (3x3 a pixel) meet the fence's plane; there the bars, rails,
    posts, braces and wires are box-filtered over the ray's footprint; the pixels'
    mean cover is dithered into opaque pixels.

    Args:
        canvas: the Canvas
        fence: a Fence
        colour: lit BGR colour of the steel
        shift: (dx, dz) world shift (moving props)
    """
    camera = canvas.camera
    dx, dz = shift
    x0, z0 = fence.start[0] + dx, fence.start[1] + dz
    x1, z1 = fence.end[0] + dx, fence.end[1] + dz
    length = fence.length
    if length <= 0:
        return
    top = fence.top
    corners = np.array([[x0, 0.0, z0], [x1, 0.0, z1], [x1, top, z1], [x0, top, z0]])
    polygon = geometry.clip_near(camera, corners)
    if polygon is None:
        return
    pixels = camera.project(polygon)[0] - canvas.offset
    if not np.all(np.isfinite(pixels)):
        return
    height, width = canvas.image.shape[:2]
    column0 = max(int(math.floor(pixels[:, 0].min())) - 1, 0)
    column1 = min(int(math.ceil(pixels[:, 0].max())) + 1, width)
    row0 = max(int(math.floor(pixels[:, 1].min())) - 1, 0)
    row1 = min(int(math.ceil(pixels[:, 1].max())) + 1, height)
    if column1 <= column0 or row1 <= row0:
        return
    direction = np.array([x1 - x0, z1 - z0]) / length
    normal = np.array([-direction[1], direction[0]])
    plane = float(normal @ (x0, z0))
    if abs(plane) < 1e-6:  # seen edge-on, through the camera
        return
    columns = column1 - column0
    rows_per_chunk = max(1, _CHUNK // (columns * _SUBSAMPLES**2))
    lit = np.asarray(colour, dtype=np.float32)
    for first in range(row0, row1, rows_per_chunk):
        last = min(first + rows_per_chunk, row1)
        cover, shade = _cover(
            camera,
            canvas.offset,
            fence,
            (x0, z0),
            direction,
            normal,
            plane,
            column0,
            column1,
            first,
            last,
        )
        threshold = _BAYER[
            (np.arange(first, last) % 4)[:, None], (np.arange(column0, column1) % 4)[None, :]
        ]
        on = cover > threshold
        if not on.any():
            continue
        region = canvas.image[first:last, column0:column1]
        painted = np.clip(lit[None, None, :] * shade[..., None], 0, 255).astype(np.uint8)
        region[on] = painted[on]
        if canvas.mask is not None:
            canvas.mask[first:last, column0:column1][on] = canvas.mask_value


def fence_texture(fence, pixels_per_metre):
    """A fence seen square-on, as an image: its members box-filtered over each pixel.

    Args:
        fence: a :class:`Fence` (its length along the base line, its top up)
        pixels_per_metre: the image's scale

    Returns:
        ``(h, w, 4)`` uint8 BGRA, the unlit colour shaded per member; alpha is the cover
        (0 between the bars)
    """
    step = 1.0 / float(pixels_per_metre)
    width = max(int(round(fence.length * pixels_per_metre)), 1)
    height = max(int(round(fence.top * pixels_per_metre)), 1)
    s = (np.arange(width) + 0.5)[None, :] * step
    y = fence.top - (np.arange(height) + 0.5)[:, None] * step  # row 0 at the top
    s, y = np.broadcast_to(s, (height, width)), np.broadcast_to(y, (height, width))
    steps = np.full((height, width), step)
    covers, shades = _elements(fence, s, y, steps, steps)
    clear = np.ones((height, width))
    weighted = np.zeros((height, width))
    total = np.zeros((height, width))
    for cover, shade in zip(covers, shades, strict=True):
        clear *= 1.0 - cover
        weighted += cover * shade
        total += cover
    shade = np.where(total > 0, weighted / np.maximum(total, 1e-9), 1.0)
    colour = np.asarray(fence.colour, np.float32)[None, None, :] * shade[..., None]
    alpha = (1.0 - clear)[..., None] * 255.0
    return np.clip(np.round(np.concatenate([colour, alpha], axis=2)), 0, 255).astype(np.uint8)


def random_fence(rng, length):
    """A railing, gate leaf or chain-link fence ``length`` metres long, of random look
    (as :func:`add_fences` draws them), its base line from ``(0, 0)`` along x."""
    kind = KINDS[int(rng.integers(len(KINDS)))]
    if kind == "gate":
        return _gate(rng, (0.0, 0.0), (length, 0.0))
    if kind == "chainlink":
        return _chainlink(rng, (0.0, 0.0), (length, 0.0))
    return _bars(rng, (0.0, 0.0), (length, 0.0))


def _cover(camera, offset, fence, origin, direction, normal, plane, column0, column1, row0, row1):
    """Per pixel of a block: the fence's mean cover (0 to 1) and its shading factor."""
    k = _SUBSAMPLES
    sub = (np.arange(k) + 0.5) / k
    us = (np.arange(column0, column1)[:, None] + sub[None, :]).ravel() + offset[0]
    vs = (np.arange(row0, row1)[:, None] + sub[None, :]).ravel() + offset[1]
    a = ((us - camera.cx) / camera.focal)[None, :]
    b = ((vs - camera.cy) / camera.focal)[:, None]
    sin_pitch, cos_pitch = math.sin(camera.pitch), math.cos(camera.pitch)
    forward = cos_pitch - b * sin_pitch
    denominator = normal[0] * a + normal[1] * forward
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = plane / denominator
    valid = np.isfinite(depth) & (depth >= geometry.NEAR) & (depth < 5000.0)
    depth = np.where(valid, depth, np.nan)
    x = a * depth
    z = forward * depth
    y = camera.elevation + depth * (-b * cos_pitch - sin_pitch)
    s = direction[0] * (x - origin[0]) + direction[1] * (z - origin[1])
    # A ray's footprint on the plane: the spread of s and y from one ray to the next.
    step_s = np.abs(np.gradient(s, axis=1)) + np.abs(np.gradient(s, axis=0))
    step_y = np.abs(np.gradient(y, axis=1)) + np.abs(np.gradient(y, axis=0))
    step_s = np.maximum(np.nan_to_num(step_s, nan=1.0), 1e-4)
    step_y = np.maximum(np.nan_to_num(step_y, nan=1.0), 1e-4)
    covers, shades = _elements(fence, s, y, step_s, step_y)
    clear = np.ones_like(s)
    weighted = np.zeros_like(s)
    total = np.zeros_like(s)
    for cover, shade in zip(covers, shades, strict=True):
        cover = np.nan_to_num(cover, nan=0.0)
        clear *= 1.0 - cover
        weighted += cover * shade
        total += cover
    union = np.where(valid, 1.0 - clear, 0.0)
    shade = np.where(total > 0, weighted / np.maximum(total, 1e-9), 1.0)
    rows, columns = row1 - row0, column1 - column0
    cover = union.reshape(rows, k, columns, k).mean(axis=(1, 3))
    # Members several pixels wide get crisp edges (as the other props have); only what
    # is finer than a pixel is dithered.
    pixel_s = step_s.reshape(rows, k, columns, k).mean(axis=(1, 3)) * k
    finest = min(
        size
        for size in (fence.bar_width, fence.wire if fence.mesh > 0 else 0.0, fence.rail_width)
        if size > 0
    )
    gain = np.clip(finest / pixel_s, 1.0, 6.0)
    cover = np.where(cover > 0, np.clip((cover - 0.5) * gain + 0.5, 0.0, 1.0), 0.0)
    shade_pixels = (union * shade).reshape(rows, k, columns, k).sum(axis=(1, 3))
    shade_pixels = np.where(cover > 0, shade_pixels / np.maximum(cover * k * k, 1e-9), 1.0)
    return cover.astype(np.float32), shade_pixels.astype(np.float32)


def _elements(fence, s, y, step_s, step_y):
    """Cover and shading of each kind of member at the rays' points (s along, y up)."""
    length = fence.length
    inside = _box(s, 0.0, length, step_s)
    covers, shades = [], []
    phase = fence.phase
    along = s + phase
    if fence.bar_width > 0 and fence.spacing > 0:
        half = fence.bar_width / 2
        first = math.ceil((phase + half) / fence.spacing)
        last = math.floor((phase + length - half) / fence.spacing)
        if last >= first:
            # A gate's bars stand on its bottom frame; a railing's just off the ground.
            low = fence.rails[0] if fence.kind == "gate" and fence.rails else 0.04
            index = np.clip(np.round(along / fence.spacing), first, last)
            offset = along - index * fence.spacing
            blend = np.clip((step_s - fence.spacing / 2) / (fence.spacing / 2), 0.0, 1.0)
            span = _box(along, first * fence.spacing - half, last * fence.spacing + half, step_s)
            across = (
                _box(offset, -half, half, step_s) * (1 - blend)
                + blend * (2 * half / fence.spacing) * span
            )
            cover = across * _box(y, low, fence.height, step_y)
            if fence.spikes > 0:
                tip = (half * 1.8) * np.clip(1.0 - (y - fence.height) / fence.spikes, 0.0, 1.0)
                tip_across = (
                    _box(offset, -tip, tip, step_s) * (1 - blend)
                    + blend * (1.8 * half / fence.spacing) * span
                )
                cover = np.maximum(
                    cover, tip_across * _box(y, fence.height, fence.height + fence.spikes, step_y)
                )
            if fence.round_bars:
                shade = 1.0 - 0.15 * np.clip(offset / half, -1.0, 1.0)
            else:
                shade = np.where(offset < 0, 1.05, 0.93)
            # Bars are never quite alike: paint, rust, galvanising.
            shade = shade * (1.0 + 0.07 * np.sin(index * 12.9898 + 1.7) * np.sin(index * 4.1414))
            covers.append(cover)
            shades.append(shade)
    for level in fence.rails:
        covers.append(
            _box(y, level - fence.rail_width / 2, level + fence.rail_width / 2, step_y) * inside
        )
        shades.append(1.0 + 0.3 * np.clip((y - level) / fence.rail_width, -0.5, 0.5))
    post_top = fence.height + (0.06 if fence.kind != "gate" else 0.0)
    post_half = fence.post_width / 2
    if fence.posts > 0:
        first = math.ceil((phase - post_half) / fence.posts)
        last = math.floor((phase + length + post_half) / fence.posts)
        if last >= first:
            index = np.clip(np.round(along / fence.posts), first, last)
            offset = along - index * fence.posts
            blend = np.clip((step_s - fence.posts / 2) / (fence.posts / 2), 0.0, 1.0)
            across = _box(offset, -post_half, post_half, step_s) * (1 - blend) + blend * (
                2 * post_half / fence.posts
            )
            covers.append(across * _box(y, 0.0, post_top, step_y) * inside)
            shades.append(np.where(offset < 0, 1.06, 0.9))
    for at_start, centre in zip(fence.end_posts, (post_half, length - post_half), strict=True):
        if at_start:
            covers.append(
                _box(s, centre - post_half, centre + post_half, step_s)
                * _box(y, 0.0, post_top, step_y)
            )
            shades.append(np.where(s < centre, 1.06, 0.9))
    for s0, y0, s1, y1 in fence.braces:
        span = math.hypot(s1 - s0, y1 - y0)
        unit_s, unit_y = (s1 - s0) / span, (y1 - y0) / span
        relative_s, relative_y = s - s0, y - y0
        position = relative_s * unit_s + relative_y * unit_y
        distance = relative_s * unit_y - relative_y * unit_s
        footprint = abs(unit_y) * step_s + abs(unit_s) * step_y
        half = fence.rail_width * 0.4
        covers.append(_box(distance, -half, half, footprint) * (position >= 0) * (position <= span))
        shades.append(np.ones_like(s))
    if fence.mesh > 0:
        period = fence.mesh / math.sqrt(2.0)
        footprint = (step_s + step_y) / math.sqrt(2.0)
        blend = np.clip((footprint - period / 2) / (period / 2), 0.0, 1.0)
        wires = []
        for sign in (1.0, -1.0):
            u = (along + sign * y) / math.sqrt(2.0)
            offset = u - np.round(u / period) * period
            near = _box(offset, -fence.wire / 2, fence.wire / 2, footprint)
            wires.append(near * (1 - blend) + blend * fence.wire / period)
        cover = 1.0 - (1.0 - wires[0]) * (1.0 - wires[1])
        covers.append(cover * _box(y, 0.03, fence.height, step_y) * inside)
        shades.append(np.full_like(s, 1.12))
    return covers, shades


def _box(q, low, high, width):
    """Share of the interval ``[q - width / 2, q + width / 2]`` inside ``[low, high]``."""
    return np.clip(
        (np.minimum(q + width / 2, high) - np.maximum(q - width / 2, low)) / width, 0.0, 1.0
    )


def _point(fence, s):
    """The ground point ``s`` metres along a fence's base line."""
    (x0, z0), (x1, z1) = fence.start, fence.end
    fraction = s / fence.length
    return (float(x0 + (x1 - x0) * fraction), float(z0 + (z1 - z0) * fraction))


def _colour(rng, galvanised=0.25):
    weights = np.array([0.35, 0.25, 0.15, galvanised])
    names = list(COLOURS)
    name = names[int(rng.choice(len(names), p=weights / weights.sum()))]
    jitter = rng.uniform(0.9, 1.1)
    return tuple(int(min(255, value * jitter)) for value in COLOURS[name])


def _bars(rng, start, end, height=None, spikes=None):
    """A railing of vertical bars between posts."""
    height = float(rng.uniform(1.2, 2.2)) if height is None else height
    rail_width = float(rng.uniform(0.04, 0.07))
    count = int(rng.integers(1, 4))
    top_rail = height - (0.08 if rng.random() < 0.6 else rail_width / 2)
    rails = [top_rail]
    if count >= 2:
        rails.append(float(rng.uniform(0.08, 0.2)))
    if count == 3:
        rails.append(float(rng.uniform(0.4, 0.6)) * height)
    if spikes is None:
        spikes = float(rng.uniform(0.06, 0.15)) if rng.random() < 0.35 else 0.0
    return Fence(
        "bars",
        start,
        end,
        height,
        _colour(rng),
        bar_width=float(rng.uniform(0.02, 0.04)),
        spacing=float(rng.uniform(0.1, 0.2)),
        round_bars=bool(rng.random() < 0.4),
        spikes=spikes,
        rails=tuple(rails),
        rail_width=rail_width,
        posts=float(rng.uniform(2.0, 2.6)),
        post_width=float(rng.uniform(0.06, 0.1)),
    )


def _chainlink(rng, start, end, height=None):
    """A chain-link fence: a diamond wire mesh between round posts, with a top rail."""
    height = float(rng.uniform(1.2, 2.2)) if height is None else height
    rails = [height - 0.02]
    if rng.random() < 0.3:
        rails.append(float(rng.uniform(0.1, 0.2)))
    return Fence(
        "chainlink",
        start,
        end,
        height,
        _colour(rng, galvanised=1.2),
        bar_width=0.0,
        rails=tuple(rails),
        rail_width=float(rng.uniform(0.035, 0.05)),
        posts=float(rng.uniform(2.4, 3.0)),
        post_width=float(rng.uniform(0.05, 0.075)),
        mesh=float(rng.uniform(0.05, 0.065)),
        wire=float(rng.uniform(0.0035, 0.0055)),
    )


def _gate(rng, start, end, height=None, like=None):
    """A gate leaf: bars in a heavy frame, often braced diagonally (a sliding gate)."""
    length = math.hypot(end[0] - start[0], end[1] - start[1])
    height = float(rng.uniform(1.4, 2.2)) if height is None else height
    frame = float(rng.uniform(0.06, 0.1))
    rails = [frame / 2, height - frame / 2]
    if rng.random() < 0.4:
        rails.append(height * float(rng.uniform(0.45, 0.6)))
    bays = max(int(round(length / float(rng.uniform(1.8, 3.0)))), 1)
    braces = []
    if rng.random() < 0.65:
        for bay in range(bays):
            s0, s1 = length * bay / bays, length * (bay + 1) / bays
            if (bay % 2 == 0) or rng.random() < 0.3:
                braces.append((s0, frame, s1, height - frame))
            else:
                braces.append((s0, height - frame, s1, frame))
    colour = like.colour if like is not None else _colour(rng)
    return Fence(
        "gate",
        start,
        end,
        height,
        colour,
        bar_width=like.bar_width
        if like is not None and like.bar_width > 0
        else float(rng.uniform(0.02, 0.04)),
        spacing=like.spacing
        if like is not None and like.bar_width > 0
        else float(rng.uniform(0.1, 0.2)),
        round_bars=bool(rng.random() < 0.3),
        spikes=float(rng.uniform(0.06, 0.12)) if rng.random() < 0.25 else 0.0,
        rails=tuple(rails),
        rail_width=frame,
        posts=length / bays if bays > 1 else 0.0,
        post_width=frame,
        braces=tuple(braces),
    )


def _fence(rng, start, end, chainlink=0.35, height=None):
    """A railing of bars, or (with probability ``chainlink``) a chain-link fence."""
    if rng.random() < chainlink:
        return _chainlink(rng, start, end, height)
    return _bars(rng, start, end, height)


def _with_opening_gate(rng, fence, zones, behind):
    """The fence and, beside one of the openings traffic cuts into it, its sliding gate
    pushed open (parallel to it, ``behind`` metres further from the camera)."""
    pieces = cut(fence, zones)
    if len(pieces) < 2 or rng.random() < 0.3:
        return [fence]
    number = int(rng.integers(len(pieces) - 1))
    left, right = pieces[number], pieces[number + 1]
    # Along the line (from its start): the opening between the two pieces.
    opening_start = left.phase + left.length - fence.phase
    opening_end = right.phase - fence.phase
    width = min(max(opening_end - opening_start, 4.0), 8.0)
    if rng.random() < 0.5:
        begin, finish = opening_start - width, opening_start - 0.1
    else:
        begin, finish = opening_end + 0.1, opening_end + width
    if begin < 0 or finish > fence.length:
        return [fence]
    start, end = _point(fence, begin), _point(fence, finish)
    if fence.along_x:
        start, end = (start[0], start[1] + behind), (end[0], end[1] + behind)
    else:
        outward = behind if fence.start[0] > 0 else -behind
        start, end = (start[0] + outward, start[1]), (end[0] + outward, end[1])
    gate_height = min(fence.height + float(rng.uniform(-0.1, 0.2)), 2.3)
    gate = _gate(rng, start, end, gate_height, like=fence)
    return [fence] + cut(gate, zones)


def _with_closed_gate(rng, fence, width):
    """The fence with a stretch of it (``width`` metres, away from its ends) a gate leaf
    between heavier posts."""
    if fence.length < width + 4.0:
        return [fence]
    begin = float(rng.uniform(2.0, fence.length - width - 2.0))
    return list(_with_closed_gate_at(rng, fence, begin, width))


def _pieces(fences, near_piece=4.0):
    """Fences along z cut into pieces that grow with distance (see split)."""
    pieces = []
    for fence in fences:
        if fence.along_x:
            pieces.append(fence)
        else:
            pieces.extend(split(fence, max(near_piece, 0.12 * min(fence.start[1], fence.end[1]))))
    return pieces


# Where fences stand, per vantage point: each plan returns the fences of one site.


def _lot_back(layout, rng):
    sites = layout.sites
    left, right = sites["lot"]
    z = sites["back"] + float(rng.uniform(0.3, 2.0))
    start = (left - float(rng.uniform(0.0, 12.0)), z)
    end = (right + float(rng.uniform(0.0, 12.0)), z)
    fence = _fence(rng, start, end)
    return _with_opening_gate(rng, fence, traffic_zones(layout), behind=0.3)


def _lot_side(side):
    def plan(layout, rng):
        sites = layout.sites
        left, right = sites["lot"]
        x = (
            (right + float(rng.uniform(0.5, 3.0)))
            if side > 0
            else (left - float(rng.uniform(0.5, 3.0)))
        )
        far = sites["back"] + float(rng.uniform(0.0, 2.0))
        fence = _fence(rng, (x, 1.0), (x, far))
        return _pieces([fence])

    return plan


def _garage_back(layout, rng):
    sites = layout.sites
    left, right = sites["walls"]
    z = sites["back"] - float(rng.uniform(0.25, 0.6))
    height = min(float(rng.uniform(1.6, 2.2)), sites["ceiling"] - 0.4)
    begin = left + float(rng.uniform(0.3, 6.0))
    finish = right - float(rng.uniform(0.3, 6.0))
    return [_fence(rng, (begin, z), (finish, z), chainlink=0.4, height=height)]


def _garage_side(layout, rng):
    sites = layout.sites
    left, right = sites["walls"]
    x = (right - 0.3) if rng.random() < 0.5 else (left + 0.3)
    height = min(float(rng.uniform(1.6, 2.2)), sites["ceiling"] - 0.4)
    fence = _fence(rng, (x, 2.0), (x, sites["back"] - 0.5), chainlink=0.4, height=height)
    return _pieces([fence])


def _shop_railing(layout, rng):
    z = layout.sites["parking_end"] + float(rng.uniform(0.5, 1.0))
    centre, length = float(rng.uniform(-20, 20)), float(rng.uniform(10, 45))
    fence = _bars(
        rng, (centre - length / 2, z), (centre + length / 2, z), float(rng.uniform(1.2, 1.6))
    )
    return [fence]


def _shop_grille(layout, rng):
    z = layout.sites["facade"] - float(rng.uniform(0.3, 0.6))
    fences = []
    for _ in range(int(rng.integers(1, 3))):
        centre, length = float(rng.uniform(-18, 18)), float(rng.uniform(3.0, 8.0))
        fences.append(
            _gate(
                rng,
                (centre - length / 2, z),
                (centre + length / 2, z),
                float(rng.uniform(1.9, 2.2)),
            )
        )
    return fences


def _yard(layout, rng):
    sites = layout.sites
    z = sites["lawn"] + float(rng.uniform(0.9, 1.6))
    centre, length = float(rng.uniform(-15, 15)), float(rng.uniform(15, 60))
    fence = _fence(rng, (centre - length / 2, z), (centre + length / 2, z), chainlink=0.3)
    pieces = []
    spots = sorted(layout.spots, key=lambda spot: spot.x)
    for piece in cut(fence, traffic_zones(layout)):
        # A gate across the driveway of a car parked behind the fence.
        for spot in spots:
            if spot.z < z + _MARGIN or not piece.start[0] + 2.0 < spot.x < piece.end[0] - 2.0:
                continue
            if rng.random() < 0.7:
                before, gate, piece = _with_closed_gate_at(
                    rng, piece, spot.x - 1.7 - piece.start[0], 3.4
                )
                pieces.extend([before, gate])
        pieces.append(piece)
    return pieces


def _with_closed_gate_at(rng, fence, begin, width):
    """(the fence before, the gate leaf, the fence after) for a gate ``width`` metres
    wide from ``begin`` metres along the fence."""
    finish = begin + width
    before = dataclasses.replace(
        fence, end=_point(fence, begin), end_posts=(fence.end_posts[0], True)
    )
    after = dataclasses.replace(
        fence,
        start=_point(fence, finish),
        phase=fence.phase + finish,
        end_posts=(True, fence.end_posts[1]),
    )
    gate = _gate(rng, _point(fence, begin + 0.05), _point(fence, finish - 0.05), like=fence)
    gate = dataclasses.replace(gate, height=min(gate.height, fence.height + 0.2))
    return before, gate, after


def _street_side(side):
    def plan(layout, rng):
        sites = layout.sites
        left, right = sites["buildings"]
        cross, cross_half = sites["cross"]
        x = (
            (right - float(rng.uniform(0.2, 0.6)))
            if side > 0
            else (left + float(rng.uniform(0.2, 0.6)))
        )
        if rng.random() < 0.4:
            low, high = 6.0, cross - cross_half - 1.5
        else:
            low, high = cross + cross_half + 1.5, min(sites["far"] - 5.0, 150.0)
        if high - low < 6.0:
            return []
        length = min(float(rng.uniform(8.0, 35.0)), high - low)
        begin = float(rng.uniform(low, high - length))
        fence = _fence(rng, (x, begin), (x, begin + length), chainlink=0.25)
        fences = [fence]
        if fence.kind == "bars" and rng.random() < 0.5:
            fences = _with_closed_gate(rng, fence, float(rng.uniform(3.5, 6.0)))
        return _pieces(fences)

    return plan


def _kerb_railing(side):
    def plan(layout, rng):
        """A pedestrian guard railing along the kerb before (or after) the crossing."""
        sites = layout.sites
        cross, cross_half = sites["cross"]
        curb = sites["curbs"][1 if side > 0 else 0]
        if rng.random() < 0.6:
            finish = cross - cross_half - float(rng.uniform(0.5, 2.0))
            begin = finish - float(rng.uniform(6.0, 25.0))
        else:
            begin = cross + cross_half + float(rng.uniform(0.5, 2.0))
            finish = begin + float(rng.uniform(6.0, 25.0))
        zones = traffic_zones(layout)
        height = float(rng.uniform(1.2, 1.4))
        for inset in (0.4, 1.1, 1.6):
            x = curb + side * inset
            fence = _bars(rng, (x, max(begin, 2.0)), (x, finish), height, spikes=0.0)
            pieces = cut(fence, zones)
            if sum(piece.length for piece in pieces) > 0.6 * fence.length:
                return _pieces(pieces)
        return []

    return plan


def _street_end(layout, rng):
    sites = layout.sites
    if not sites.get("dead_end"):
        return []
    left, right = sites["buildings"]
    z = sites["far"] + float(rng.uniform(2.0, 3.5))
    start = (left - float(rng.uniform(5.0, 30.0)), z)
    end = (right + float(rng.uniform(5.0, 30.0)), z)
    fence = _fence(rng, start, end, chainlink=0.25)
    return _with_opening_gate(rng, fence, traffic_zones(layout), behind=0.3)


def _verge(side):
    def plan(layout, rng):
        left, right = layout.sites["road"]
        x = (
            (right + float(rng.uniform(4.5, 7.5)))
            if side > 0
            else (left - float(rng.uniform(4.5, 7.5)))
        )
        begin = float(rng.uniform(5.0, 30.0))
        fence = _fence(
            rng, (x, begin), (x, begin + float(rng.uniform(120.0, 300.0))), chainlink=0.6
        )
        return _pieces([fence], near_piece=6.0)

    return plan


_STREET = {
    "street_high": [_street_side(-1), _street_side(1), _street_end, _kerb_railing(-1)],
    "street_low": [_street_side(-1), _street_side(1), _street_end, _kerb_railing(-1)],
    "traffic_camera": [
        _street_side(-1),
        _street_side(1),
        _street_end,
        _kerb_railing(-1),
        _kerb_railing(1),
    ],
}
_PLANS = {
    "parking": {
        "lot": [_lot_back, _lot_side(-1), _lot_side(1)],
        "garage": [_garage_back, _garage_side],
    },
    "storefront": {"shops": [_shop_railing, _shop_grille], "houses": [_yard]},
    "overpass": [_verge(1), _verge(-1)],
    **_STREET,
}
"""Per vantage point (and per variant): the plans, drawn from without repeating one."""
