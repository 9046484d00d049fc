"""Video plans and scenes: what each synthetic video shows, frame by frame.

``video_specs`` makes the per-video plans (vantage, lighting, seed, size,
length); ``build_scene`` turns one plan into a Scene: a camera, a static
background image, the vehicles with their tracks, the props that can hide
them, and the stretches a user would cut (black and frozen feed, empty road).
All randomness comes from ``numpy.random.default_rng((seed, video index))``, but for
the optional details (:data:`DETAILS`): each has generators of its own, so that asking
for them changes nothing else.
"""

import dataclasses
import logging
import math

import numpy as np

from platelab.synth import badges, geometry, lamps, osd, plates, sprites, stickers, vehicles

logger = logging.getLogger(__name__)

VANTAGES = ("overpass", "street_high", "street_low", "parking", "storefront", "dashcam")
"""The vantage points a batch cycles through by default."""
EXTRA_VANTAGES = ("traffic_camera",)
"""Vantage points rendered only when asked for by name (``vantages=``): a default batch,
and so every seed's scenes from before them, stay as they were."""
DETAILS = ("osd", "badges", "plates", "fences", "lamps", "stickers")
"""Optional scene details a batch may ask for (``details=``), none by default: ``osd``
(a fixed camera's on-screen time stamp, see osd.py), ``badges`` (make and model
lettering on vehicles, see badges.py), ``plates`` (plates with the looks of real
ones: graphic backgrounds, script state names, dealer frames, fading and dirt, see
:func:`platelab.synth.plates.vary_look`; the plates and their boxes stay the same),
``fences`` (steel bar fences, sliding gates and chain-link fences at the edges of the
fixed cameras' scenes, see fences.py; they hide what stands behind them), ``lamps``
(rear lamps with LED bars, rows and rings, light bars and third brake lamps, lit when
braking, see lamps.py) and ``stickers`` (bumper stickers, rear-window lettering, work
vehicles' names, telephone numbers and DOT numbers, buses' fleet numbers, see
stickers.py). All but ``plates`` are never annotated (hard negatives). They all draw
their randomness from generators of their own, so that a video without them is
byte-identical to one rendered before they existed."""
LIGHTINGS = ("day", "dusk", "night")
STATES = ("ok", "black", "frozen", "empty")

_LIGHTING_CYCLE = ("day", "night", "dusk", "day", "night", "day")
_DEFAULT_MIX = (0.75, 0.17, 0.08)
_SPRITE_BUCKET = math.radians(7.0)
_MAX_AZIMUTH = math.radians(40.0)
_NEAREST = 2.5
_OSD_STREAM = 7001
_BADGE_STREAM = 7002
_LOOK_STREAM = 7003
_FENCE_STREAM = 7004
_LAMP_STREAM = 7005
_STICKER_STREAM = 7006


@dataclasses.dataclass(frozen=True)
class VideoSpec:
    """The plan of one synthetic video.

    Attributes:
        index: position of the video in its batch
        source_id: e.g. ``syn_s0_v03_parking``
        vantage: one of VANTAGES or EXTRA_VANTAGES
        lighting: one of LIGHTINGS
        seed: the batch seed (the video's randomness is seeded by (seed, index))
        fps: frames per second
        frames: number of frames
        width: frame width in pixels
        height: frame height in pixels
        plate_style: the local plate style (``us`` or ``eu``; a few plates are foreign)
        details: the optional scene details drawn, a subset of :data:`DETAILS` (none by
            default)
    """

    index: int
    source_id: str
    vantage: str
    lighting: str
    seed: int
    fps: float
    frames: int
    width: int
    height: int
    plate_style: str
    details: frozenset = frozenset()

    @property
    def seconds(self):
        """Length of the video in seconds."""
        return self.frames / self.fps


@dataclasses.dataclass(frozen=True)
class Lighting:
    """How the light of a time of day changes colours.

    Attributes:
        name: ``day``, ``dusk`` or ``night``
        level: overall brightness multiplier of lit surfaces
        contrast: how much surface orientation matters (sunlight vs. diffuse)
        tint: BGR multipliers of the light's colour
        lights_on: whether vehicle and street lights are lit
        noise: sensor-noise standard deviation in grey levels
        sky_top: BGR sky colour at the top
        sky_horizon: BGR sky colour at the horizon
        plate_level: brightness of plates (lit at night)
    """

    name: str
    level: float
    contrast: float
    tint: tuple
    lights_on: bool
    noise: float
    sky_top: tuple
    sky_horizon: tuple
    plate_level: float

    @classmethod
    def named(cls, name):
        """The Lighting of ``day``, ``dusk`` or ``night``."""
        if name == "day":
            return cls(
                "day", 1.0, 1.0, (1.0, 1.0, 1.0), False, 0.8, (205, 150, 95), (235, 215, 190), 1.0
            )
        if name == "dusk":
            return cls(
                "dusk", 0.55, 0.5, (0.95, 0.85, 0.9), True, 1.4, (120, 70, 60), (110, 150, 235), 0.7
            )
        if name == "night":
            return cls(
                "night", 0.3, 0.3, (0.85, 0.95, 1.15), True, 2.0, (40, 22, 18), (70, 50, 45), 0.8
            )
        raise ValueError(f"unknown lighting {name!r} (expected one of {LIGHTINGS})")

    def shade(self, colour, intensity=1.0):
        """A surface colour (BGR) lit with a relative intensity (1 = facing the light)."""
        factor = self.level * (1.0 + self.contrast * (intensity - 1.0))
        return tuple(
            int(min(255.0, max(0.0, value * factor * tint)))
            for value, tint in zip(colour, self.tint, strict=True)
        )

    def shade_image(self, image, intensity=1.0):
        """Applies ``shade`` to every pixel of a BGR image."""
        factor = self.level * (1.0 + self.contrast * (intensity - 1.0))
        scaled = image.astype(np.float32) * (np.asarray(self.tint, dtype=np.float32) * factor)
        return np.clip(scaled, 0, 255).astype(np.uint8)


@dataclasses.dataclass(frozen=True)
class Lane:
    """A traffic lane or parking lane, straight along the world x or z axis.

    Attributes:
        axis: ``"z"`` (vehicles seen from the front or rear) or ``"x"`` (side)
        offset: lane centre: x for z lanes, z for x lanes (metres)
        view: ``front``, ``rear`` or ``side``
        velocity: signed speed along the axis, m/s (relative to the camera;
            0 for parked vehicles)
        extent: (low, high) stretch of the axis where the lane exists
        gap: mean free gap between vehicles (metres)
        mix: probabilities of sedan, truck, bus
        parked: whether the vehicles are parked
        min_gap: smallest free gap (metres)
        through: whether vehicles enter and leave at the low end (False for
            the dashcam's own lane: nobody drives through the camera car)

    Vehicles are drawn only while their reference point lies within
    ``extent`` (beyond the far end something hides the road: a hill crest, a
    building, the frame edge).
    """

    axis: str
    offset: float
    view: str
    velocity: float
    extent: tuple
    gap: float
    mix: tuple = _DEFAULT_MIX
    parked: bool = False
    min_gap: float = 4.0
    through: bool = True


@dataclasses.dataclass(frozen=True)
class Spot:
    """One parked vehicle at a fixed place (parking stalls)."""

    x: float
    z: float
    view: str
    kind: str = "sedan"


@dataclasses.dataclass
class Vehicle:
    """A vehicle of a scene, with its track.

    Attributes:
        id: object id (also its value in the id map)
        plate_id: the id of its plate, or None
        model: its VehicleModel
        view: ``front``, ``rear`` or ``side``
        facing: +1 / -1 for side views (front towards +x / -x)
        parked: whether it is parked
        start: (x, z) world position of the reference point at time 0
        velocity: (vx, vz) m/s relative to the camera
        plate: its PlateDesign or None
        plate_corners: (4, 3) plate corners in vehicle coordinates or None
        lights_on: whether its lamps are lit
        track: per-frame placement (see compute_track), set by build_scene
        extent: (axis, low, high): where along the axis its reference point
            may be drawn, or None for everywhere
    """

    id: int
    plate_id: int | None
    model: vehicles.VehicleModel
    view: str
    facing: int
    parked: bool
    start: tuple
    velocity: tuple
    plate: plates.PlateDesign | None
    plate_corners: np.ndarray | None
    lights_on: bool
    track: dict | None = None
    extent: tuple | None = None

    def position(self, time):
        """World (x, z) of the reference point at a time in seconds."""
        return (self.start[0] + self.velocity[0] * time, self.start[1] + self.velocity[1] * time)

    def bounds(self, time):
        """World ground footprint (x0, x1, z0, z1) at a time."""
        x, z = self.position(time)
        if self.view == "side":
            half = self.model.length / 2
            return x - half, x + half, z, z + self.model.width
        half = self.model.width / 2
        return x - half, x + half, z, z + self.model.length


@dataclasses.dataclass
class Prop:
    """Something standing in the scene that hides vehicles behind it.

    Attributes:
        depth_z: world z used to order it among the vehicles (the far end of
            long things such as building rows)
        draw: ``draw(canvas, dx, dz)`` draws it (world geometry shifted by dx, dz)
        velocity: (vx, vz) m/s relative to the camera, or None if static
        x: world x (for ordering ties and culling)
    """

    depth_z: float
    draw: object
    velocity: tuple | None = None
    x: float = 0.0


@dataclasses.dataclass
class Layout:
    """What a vantage contributes to a scene (see layouts.py).

    ``sites`` names places of the layout's ground plan (road edges, building lines, the
    back of a parking lot; metres) where optional details may stand (see fences.py).
    """

    camera: geometry.Camera
    background: np.ndarray
    lanes: list
    spots: list
    props: list
    allows_empty: bool
    variant: str = ""
    dynamic: object = None
    foreground: object = None
    plate_positions: tuple = ("front", "rear")
    sites: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Scene:
    """Everything needed to render the frames of one video.

    Attributes:
        spec: the VideoSpec
        camera: the Camera
        lighting: the Lighting
        variant: sub-kind of the vantage (e.g. ``lot`` or ``garage``)
        background: static BGR background (vehicles and props drawn over it)
        vehicles: list of Vehicle
        props: list of Prop
        states: planned state per frame (``ok``, ``black``, ``frozen``); ``empty``
            is decided from the rendered ground truth
        frozen_source: {frame index: index of the frame it repeats}
        dynamic: optional ``dynamic(image, id_map, time)`` drawing moving
            background parts (the dashcam's lane markings) before the vehicles
        foreground: optional ``foreground(image, id_map, index, time)`` drawing
            what lies in front of everything (the dashcam's bonnet and overlay)
        effects: {"jpeg_probability", "jpeg_quality", "exposure_jitter", "noise"}
        osd: the on-screen display drawn over the frames (an ``osd.Osd``), or None
        sprite_cache: {(vehicle id, bucket): Sprite} filled while rendering
        plate_images: {plate id: plate image shaded for the lighting (then a
            list of ever smaller copies)}
        piece_cache: {placement: composited parked vehicle} filled while rendering
        noise_bank: pre-drawn sensor-noise fields
        shadowed_background: the background with parked vehicles' shadows
        occluders: the static props' depths, pixel rects and masks: the props
            are baked into the background on the first rendered frame (which
            keeps the bare background in ``raw_background`` and the rendered
            props in ``baked_props``) and hide the vehicles behind them
    """

    spec: VideoSpec
    camera: geometry.Camera
    lighting: Lighting
    variant: str
    background: np.ndarray
    vehicles: list
    props: list
    states: list
    frozen_source: dict
    dynamic: object
    foreground: object
    effects: dict
    sprite_cache: dict = dataclasses.field(default_factory=dict)
    plate_images: dict = dataclasses.field(default_factory=dict)
    piece_cache: dict = dataclasses.field(default_factory=dict)
    noise_bank: list = dataclasses.field(default_factory=list)
    shadowed_background: np.ndarray | None = None
    occluders: dict | None = None
    raw_background: np.ndarray | None = None
    baked_props: list = dataclasses.field(default_factory=list)
    osd: object = None


def parse_vantages(text):
    """Vantage names from a comma-separated list (a CLI option, a notebook parameter).

    Args:
        text: e.g. ``"overpass, traffic_camera"``; empty: the default cycle

    Returns:
        the names in order, or None for an empty text (:data:`VANTAGES`)

    Raises:
        ValueError: naming the unknown names and the known ones
    """
    names = [name.strip() for name in str(text).split(",") if name.strip()]
    check_vantages(names)
    return names or None


def check_vantages(names):
    """Raises ValueError naming the vantages of ``names`` that are not known ones (of
    :data:`VANTAGES` and :data:`EXTRA_VANTAGES`), and the known ones."""
    unknown = [name for name in names if name not in VANTAGES + EXTRA_VANTAGES]
    if unknown:
        raise ValueError(
            f"unknown vantage(s) {', '.join(unknown)}: expected some of "
            f"{', '.join(VANTAGES + EXTRA_VANTAGES)}"
        )


def parse_details(text):
    """Scene-detail names from a comma-separated list (a CLI option, a notebook parameter).

    Args:
        text: e.g. ``"osd, badges"``; empty: none

    Returns:
        the names in order (a tuple, empty for an empty text)

    Raises:
        ValueError: naming the unknown names and the known ones
    """
    names = tuple(name.strip() for name in str(text).split(",") if name.strip())
    check_details(names)
    return names


def check_details(names):
    """Raises ValueError naming the details of ``names`` that are not of :data:`DETAILS`,
    and the known ones."""
    if isinstance(names, str):
        raise ValueError(f"details must be a list of names, got the text {names!r}")
    unknown = [str(name) for name in names if name not in DETAILS]
    if unknown:
        raise ValueError(
            f"unknown scene detail(s) {', '.join(unknown)}: expected some of {', '.join(DETAILS)}"
        )


def video_specs(videos, seconds, fps, size, seed, vantages=None, details=()):
    """Plans a batch of synthetic videos.

    Args:
        videos: number of videos
        seconds: length of each video in seconds
        fps: frame rate
        size: (width, height) in pixels
        seed: batch seed (a non-negative integer)
        vantages: list of vantage names, cycled over the videos (default: VANTAGES)
        details: optional scene details of :data:`DETAILS` drawn in every video (default
            none: the videos are those rendered before details existed)

    Returns:
        a list of VideoSpec

    Raises:
        ValueError: on a bad argument
    """
    if int(videos) < 1:
        raise ValueError(f"videos must be at least 1, got {videos}")
    if float(seconds) <= 0 or float(fps) <= 0:
        raise ValueError(f"seconds and fps must be positive, got {seconds} and {fps}")
    if int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    width, height = (int(value) for value in size)
    if width < 32 or height < 32 or width % 2 or height % 2:
        raise ValueError(
            f"size must be even and at least 32x32 (H.264 4:2:0), got {width}x{height}"
        )
    vantages = list(vantages) if vantages else list(VANTAGES)
    check_vantages(vantages)
    details = details or ()
    check_details(details)
    frames = max(int(round(float(seconds) * float(fps))), 1)
    specs = []
    for index in range(int(videos)):
        vantage = vantages[index % len(vantages)]
        specs.append(
            VideoSpec(
                index=index,
                source_id=f"syn_s{int(seed)}_v{index:02d}_{vantage}",
                vantage=vantage,
                lighting=_LIGHTING_CYCLE[(index + int(seed)) % len(_LIGHTING_CYCLE)],
                seed=int(seed),
                fps=float(fps),
                frames=frames,
                width=width,
                height=height,
                plate_style=plates.PLATE_STYLES[(index + int(seed)) % 2],
                details=frozenset(details),
            )
        )
    return specs


def build_scene(spec):
    """Builds the Scene of a VideoSpec (deterministic from its seed and index).

    Args:
        spec: a VideoSpec

    Returns:
        a Scene
    """
    from platelab.synth import fences, layouts

    rng = np.random.default_rng((spec.seed, spec.index))
    lighting = Lighting.named(spec.lighting)
    layout = layouts.build_layout(spec, lighting, rng)
    if "fences" in spec.details:
        # A generator of its own: the scene's draws stay those of a video without fences.
        fences.add_fences(
            layout, spec, lighting, np.random.default_rng((spec.seed, spec.index, _FENCE_STREAM))
        )
    times = np.arange(spec.frames) / spec.fps
    counter = _Counter()
    scene_vehicles = []
    for spot in layout.spots:
        scene_vehicles.append(
            _make_vehicle(
                rng,
                counter,
                spec,
                lighting,
                layout,
                spot.kind,
                spot.view,
                1,
                True,
                (spot.x, spot.z),
                (0.0, 0.0),
            )
        )
    for lane in layout.lanes:
        scene_vehicles.extend(_populate_lane(rng, counter, spec, lighting, layout, lane, times[-1]))
    states, frozen_source, empty_window = _plan_events(rng, spec, layout)
    if empty_window is not None:
        scene_vehicles = [
            vehicle
            for vehicle in scene_vehicles
            if not _box_in_view(
                layout.camera, vehicle, times[empty_window[0] : empty_window[1]]
            ).any()
        ]
    for vehicle in scene_vehicles:
        vehicle.track = compute_track(layout.camera, vehicle, times)
    scene_vehicles = [vehicle for vehicle in scene_vehicles if vehicle.track["active"].any()]
    scene_vehicles.sort(key=lambda vehicle: vehicle.id)
    effects = {
        "jpeg_probability": float(rng.choice([0.0, 0.0, 0.15, 0.5])),
        "jpeg_quality": int(rng.integers(18, 45)),
        "exposure_jitter": float(rng.uniform(0.0, 0.03)),
        "noise": lighting.noise * float(rng.uniform(0.8, 1.2)),
        "blur": True,
    }
    foreground, scene_osd = layout.foreground, None
    if "osd" in spec.details and spec.vantage != "dashcam":  # the dashcam has its own
        scene_osd = osd.random_osd(
            np.random.default_rng((spec.seed, spec.index, _OSD_STREAM)), spec.width, spec.height
        )
        foreground = osd.over(foreground, scene_osd)
    scene = Scene(
        spec=spec,
        camera=layout.camera,
        lighting=lighting,
        variant=layout.variant,
        background=layout.background,
        vehicles=scene_vehicles,
        props=layout.props,
        states=states,
        frozen_source=frozen_source,
        dynamic=layout.dynamic,
        foreground=foreground,
        effects=effects,
        osd=scene_osd,
    )
    for vehicle in scene_vehicles:
        if vehicle.plate is not None:
            image = plates.plate_sprite(vehicle.plate)
            level = (
                1.0
                if lighting.name == "day"
                else lighting.plate_level * (1.0 if vehicle.view == "rear" else 0.7)
            )
            scene.plate_images[vehicle.plate_id] = np.clip(
                image.astype(np.float32) * level * np.asarray(lighting.tint, dtype=np.float32),
                0,
                255,
            ).astype(np.uint8)
    return scene


def placement(scene, vehicle, index):
    """Where a vehicle is in a frame and which sprite shows it.

    Returns:
        (pixel (x, y) of the reference point, pixels per metre, sprite key) or
        None when it is behind the camera or out of view
    """
    track = vehicle.track
    if not track["active"][index]:
        return None
    key = (
        int(track["elevation_key"][index]),
        int(track["azimuth_key"][index]),
        bool(track["small"][index]),
    )
    return track["pixel"][index], float(track["scale"][index]), key


def sprite_for(scene, vehicle, key):
    """The (cached) sprite of a vehicle for a placement key.

    The sprite is drawn once per key at the largest scale the vehicle reaches
    while that key is in use (capped at a fifth of the frame width per
    metre), seen from the key's angles.
    """
    cache_key = (vehicle.id, key)
    sprite = scene.sprite_cache.get(cache_key)
    if sprite is not None:
        return sprite
    track = vehicle.track
    using = (
        track["active"]
        & (track["elevation_key"] == key[0])
        & (track["azimuth_key"] == key[1])
        & (track["small"] == key[2])
    )
    if not using.any():
        raise KeyError(f"vehicle {vehicle.id} never uses sprite key {key}")
    nearest = int(np.argmax(np.where(using, track["scale"], -1.0)))
    cap = scene.spec.width / 5.0
    bucket = 2 * _SPRITE_BUCKET if key[2] else _SPRITE_BUCKET
    plate = None
    if vehicle.plate_corners is not None:
        plate = (vehicle.view, vehicle.plate_corners)
    sprite = sprites.render_sprite(
        vehicle.model,
        vehicle.view,
        key[0] * bucket,
        key[1] * bucket,
        float(track["distance"][nearest]),
        min(float(track["scale"][nearest]) * 1.02, cap),
        scene.lighting,
        lights_on=vehicle.lights_on,
        facing=vehicle.facing,
        plate=plate,
    )
    scene.sprite_cache[cache_key] = sprite
    return sprite


def compute_track(camera, vehicle, times):
    """Per-frame placement of a vehicle (vectorised over the frames).

    Returns:
        dict of arrays over frames: ``pixel`` (F, 2) reference point in pixels,
        ``depth``, ``scale`` (pixels per metre), ``distance``,
        ``elevation_key`` and ``azimuth_key`` (sprite buckets; 14 degrees
        instead of 7 where ``small``), ``active``
        (in front of the camera and possibly in view), ``box`` (F, 4) a
        conservative pixel box of its 3D extent and ``z`` (world z)
    """
    times = np.asarray(times, dtype=np.float64)
    x = vehicle.start[0] + vehicle.velocity[0] * times
    z = vehicle.start[1] + vehicle.velocity[1] * times
    points = np.stack([x, np.zeros_like(x), z], axis=-1)
    pixel, depth = camera.project(points)
    horizontal = np.hypot(x, z)
    elevation = np.arctan2(camera.elevation, np.maximum(horizontal, 1e-6))
    azimuth = -np.arctan2(x, np.maximum(z, 1e-6))
    if vehicle.view == "side":
        azimuth = -azimuth * vehicle.facing
    azimuth = np.clip(azimuth, -_MAX_AZIMUTH, _MAX_AZIMUTH)
    scale = camera.scale_at(depth)
    # Small vehicles: coarser angle steps (fewer sprites to draw, no visible change).
    small = scale * max(vehicle.model.length, 3.0) < 60.0
    bucket = np.where(small, 2 * _SPRITE_BUCKET, _SPRITE_BUCKET)
    in_view, boxes = _box_in_view(camera, vehicle, times, with_boxes=True)
    # Nearer than 2.5 m the flat sprite no longer passes for the vehicle (and
    # in these layouts it is then out of the frame anyway): not drawn.
    active = (depth >= _NEAREST) & in_view
    return {
        "box": boxes,
        "z": z,
        "pixel": pixel,
        "depth": depth,
        "scale": scale,
        "distance": np.hypot(horizontal, camera.elevation),
        "small": small,
        "elevation_key": np.round(elevation / bucket).astype(np.int64),
        "azimuth_key": np.round(azimuth / bucket).astype(np.int64),
        "active": active,
    }


class _Counter:
    def __init__(self):
        self.value = 0

    def next(self):
        self.value += 1
        return self.value


def _make_vehicle(
    rng, counter, spec, lighting, layout, kind, view, facing, parked, start, velocity
):
    model = vehicles.random_model(rng, kind, layout.plate_positions)
    vehicle_id = counter.next()
    plate = plate_id = corners = None
    if view in ("front", "rear") and view in model.plates:
        style = (
            spec.plate_style
            if rng.random() < 0.9
            else plates.PLATE_STYLES[1 - plates.PLATE_STYLES.index(spec.plate_style)]
        )
        # Many US states need no front plate.
        if not (view == "front" and style == "us" and rng.random() < 0.3):
            plate = plates.random_plate(rng, style)
            plate_id = counter.next()
            if "plates" in spec.details:  # a generator of its own, as for badges
                plate = plates.vary_look(
                    plate, np.random.default_rng((spec.seed, spec.index, _LOOK_STREAM, plate_id))
                )
            corners = vehicles.plate_corners(model, view, plate.size)
    lights_on = lighting.lights_on and not parked
    if not parked and lighting.name == "day" and rng.random() < 0.15:
        lights_on = True
    if "lamps" in spec.details and view == "rear":
        # Before the badges, which keep clear of the light bar.
        lamps.add_lamps(
            np.random.default_rng((spec.seed, spec.index, _LAMP_STREAM, vehicle_id)),
            model,
            moving=not parked,
            lights_on=lights_on,
            plates={view: corners} if corners is not None else None,
        )
    if "badges" in spec.details:
        # A generator of its own: the scene's draws stay those of a video without badges.
        badges.add_badges(
            np.random.default_rng((spec.seed, spec.index, _BADGE_STREAM, vehicle_id)),
            model,
            {view: corners} if corners is not None else None,
        )
    if "stickers" in spec.details and view == "rear":
        # After the lamps and badges, whose decals they keep clear of.
        stickers.add_stickers(
            np.random.default_rng((spec.seed, spec.index, _STICKER_STREAM, vehicle_id)),
            model,
            {view: corners} if corners is not None else None,
        )
    return Vehicle(
        id=vehicle_id,
        plate_id=plate_id,
        model=model,
        view=view,
        facing=int(facing),
        parked=bool(parked),
        start=(float(start[0]), float(start[1])),
        velocity=(float(velocity[0]), float(velocity[1])),
        plate=plate,
        plate_corners=corners,
        lights_on=lights_on,
    )


def _populate_lane(rng, counter, spec, lighting, layout, lane, last_time):
    """Places vehicles along a lane at time 0 so that traffic flows through the
    whole video (same speed within a lane, so they never collide)."""
    low, high = lane.extent
    velocity = lane.velocity
    start = low - 15.0 - max(velocity, 0.0) * last_time
    if not lane.through:
        start = low - min(velocity, 0.0) * last_time
    end = high - min(velocity, 0.0) * last_time
    position = start + rng.uniform(0, lane.gap)
    placed = []
    previous_length = 0.0
    mix = np.asarray(lane.mix, dtype=np.float64)
    while position < end:
        kind = vehicles.VEHICLE_TYPES[rng.choice(3, p=mix / mix.sum())]
        facing = 1
        if lane.axis == "x":
            facing = 1 if velocity > 0 else -1
            if lane.parked:
                facing = 1 if rng.random() < 0.5 else -1
        vehicle = _make_vehicle(
            rng,
            counter,
            spec,
            lighting,
            layout,
            kind,
            lane.view,
            facing,
            lane.parked,
            (0.0, 0.0),
            (0.0, 0.0),
        )
        length = vehicle.model.length
        if lane.axis == "x":
            position += (previous_length + length) / 2 if placed else 0.0
            jitter = rng.normal(0, 0.12)
            vehicle.start = (position, lane.offset - vehicle.model.width / 2 + jitter)
            vehicle.velocity = (velocity, 0.0)
            vehicle.extent = ("x", low - length, high + length)
        else:
            jitter = rng.normal(0, 0.15)
            vehicle.start = (lane.offset + jitter, position)
            vehicle.velocity = (0.0, velocity)
            vehicle.extent = ("z", -math.inf, high)
            position += length
        placed.append(vehicle)
        previous_length = length
        position += lane.min_gap + rng.exponential(lane.gap)
    return placed


def _plan_events(rng, spec, layout):
    """Chooses the black, frozen and empty stretches of a video.

    Black frames come in videos whose (index + seed) is 0 mod 3, frozen ones
    in those 1 mod 3; an empty stretch wherever the vantage allows it (no
    parked vehicles). Videos shorter than 20 frames get none.
    """
    frames = spec.frames
    states = ["ok"] * frames
    frozen_source = {}
    empty_window = None
    if frames < 20:
        return states, frozen_source, empty_window
    taken = np.zeros(frames, dtype=bool)
    if layout.allows_empty:
        # At the start: the road is empty, then traffic arrives (an empty
        # stretch mid-video would need a gap as long as a vehicle takes to
        # cross the view, emptying most of a short video).
        length = max(int(round(frames * rng.uniform(0.1, 0.16))), 5)
        empty_window = (0, length)
        taken[: length + 2] = True
    kind = (spec.index + spec.seed) % 3
    if kind in (0, 1):
        length = max(int(round(frames * rng.uniform(0.05, 0.1))), 3)
        for _ in range(50):
            first = int(rng.integers(1, frames - length))
            if not taken[first - 1 : first + length + 1].any():
                break
        else:
            return states, frozen_source, empty_window
        for index in range(first, first + length):
            states[index] = "black" if kind == 0 else "frozen"
            if kind == 1:
                frozen_source[index] = first - 1
    return states, frozen_source, empty_window


def _box_in_view(camera, vehicle, times, with_boxes=False):
    """Per time, whether the vehicle's 3D box projects into the image (a
    conservative test: a few pixels of margin); optionally also the boxes."""
    times = np.asarray(times, dtype=np.float64)
    if vehicle.view == "side":
        half_x, low_z, high_z = vehicle.model.length / 2, 0.0, vehicle.model.width
    else:
        half_x, low_z, high_z = vehicle.model.width / 2, 0.0, vehicle.model.length
    x = vehicle.start[0] + vehicle.velocity[0] * times
    z = vehicle.start[1] + vehicle.velocity[1] * times
    inside = np.ones(len(times), dtype=bool)
    if vehicle.extent is not None:
        axis, low, high = vehicle.extent
        coordinate = x if axis == "x" else z
        inside = (coordinate >= low) & (coordinate <= high)
    height = vehicle.model.height + 0.5
    offsets = np.array(
        [(dx, dy, dz) for dx in (-half_x, half_x) for dy in (0.0, height) for dz in (low_z, high_z)]
    )
    corners = np.stack([x, np.zeros_like(x), z], axis=-1)[:, None, :] + offsets[None]
    pixels, depth = camera.project(corners)
    in_front = depth > geometry.NEAR
    margin = 4.0
    low = np.where(in_front[..., None], pixels, np.inf).min(axis=1)
    high = np.where(in_front[..., None], pixels, -np.inf).max(axis=1)
    # Too small to show MIN_VISIBLE_PIXELS pixels: not in view.
    big_enough = (high[:, 0] - low[:, 0]) * (high[:, 1] - low[:, 1]) >= 3.0
    visible = (
        inside
        & big_enough
        & in_front.any(axis=1)
        & (high[:, 0] > -margin)
        & (high[:, 1] > -margin)
        & (low[:, 0] < camera.width + margin)
        & (low[:, 1] < camera.height + margin)
    )
    if with_boxes:
        return visible, np.concatenate([low, high], axis=1)
    return visible
