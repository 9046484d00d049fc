"""Synthetic traffic-camera videos with exact ground truth (stage 00).

Stand-ins for the videos a user would film: six vantage points (highway
overpass, high and low street views, parking lot, shop fronts, dashboard
camera) and a seventh rendered only when named (``traffic_camera``: a narrow
lens on a pole over the lanes, plates 40-90 px wide at 1280x720, as elevated
static traffic and plate-reading cameras see them), sedans, trucks and buses
seen from the front, rear and side, US and EU license plates from readable
to a few pixels high, day, dusk and night, motion blur, noise, compression
artefacts, plate-like distractors (speed signs, shop signs, billboards, house
numbers) and stretches to cut (black and frozen feed, empty road). Every frame comes with the tight boxes of the
visible vehicles and plates, computed from the rendered pixels.

Public API::

    VANTAGES                      # overpass, street_high, street_low, parking, storefront, dashcam
    EXTRA_VANTAGES                # traffic_camera: only when named in ``vantages``
    DETAILS                       # osd, badges, plates, fences, lamps, stickers: optional details
    synthesize(out_dir, videos=6, seconds=10.0, fps=10.0, size=(960, 540), seed=0,
               vantages=None, workers=None, progress=True,
               purpose="training")   # -> manifest dict
    check_seed(seed, purpose)     # ReservedSeedError: an evaluation seed for training data
    video_specs(videos, seconds, fps, size, seed, vantages=None, details=())  # -> [VideoSpec]
    parse_vantages("overpass,traffic_camera")  # -> names (None for ""); ValueError if unknown
    parse_details("osd,badges")   # -> names (() for ""); ValueError if unknown
    render_video(spec)            # -> iterator of (frame BGR, frame truth), in memory
    build_scene(spec)             # -> Scene
    render_frame(scene, index, exclude_ids=(), effects=True)  # -> (image, objects, id_map)
    draw_boxes(image_bgr, objects, thickness=2)               # -> annotated copy

Ground-truth objects: ``id`` (track id, stable across frames), ``label``
(``vehicle`` or ``license_plate``), ``box`` ``[xmin, ymin, xmax, ymax]`` in
integer pixel-edge coordinates with ``xmax``/``ymax`` exclusive (the tight box
of the visible pixels), ``occluded`` and ``truncated`` (fractions hidden by
other things and cut by the frame edge), ``difficult``; vehicles also
``type`` (sedan, truck, bus), ``variant``, ``view`` (front, rear, side),
``parked``; plates ``style`` (us, eu), ``text``, ``region``, ``vehicle_id``.
Frames carry ``state``: ``ok``, ``black``, ``frozen`` or ``empty``.

Optional scene details (``details=``, none by default, never annotated: hard negatives
for a plate detector): ``osd``, a fixed camera's on-screen time stamp (and name) in a
corner, on every vantage but the dashcam (which has its own overlay); ``badges``, make
and model lettering on vehicles' rears and fronts; ``plates``, plates with the looks of
real ones (graphic backgrounds, script state names, dealer frames, dirt; the same plates
and boxes); ``fences``, fences and sliding gates of steel bars and chain-link fences at
the edges of the fixed cameras' scenes (parking lots, shop fronts and yards, streets,
motorway verges), mostly behind the traffic; what stands behind one is hidden by its bars
in the truth too; ``lamps``, rear lamps with LED bars, rows and rings behind their
lenses, light bars and third brake lamps, lit when braking (in daylight too); ``stickers``,
bumper stickers, rear-window lettering, work vehicles' names, telephone, web and DOT
numbers, buses' fleet numbers. They draw from generators of their own: without them every frame and its truth are as they were before they existed.

Modules: scene.py (plans, scenes, traffic), layouts.py and town.py (the
vantage points), props.py (scenery and distractors), vehicles.py (vehicle
models), sprites.py (drawing them), plates.py, osd.py, badges.py, fences.py, lamps.py and
stickers.py (the optional details), geometry.py (camera and rasteriser), render.py (frames, effects, ground truth), pipeline.py (files), seeds.py (the
seeds reserved for evaluation), annotator.py (stage 03's simulated CVAT annotator: exports
of the ground truth, with label drift and injected mistakes; not imported here, as it
builds on :mod:`platelab.annotate`, which re-exports its names on first use).
"""

from platelab.synth.pipeline import load_current_manifest, synthesize, synthesize_or_reuse
from platelab.synth.render import draw_boxes, render_frame, render_video, scene_frames
from platelab.synth.scene import (
    DETAILS,
    EXTRA_VANTAGES,
    LIGHTINGS,
    STATES,
    VANTAGES,
    Scene,
    VideoSpec,
    build_scene,
    parse_details,
    parse_vantages,
    video_specs,
)
from platelab.synth.seeds import (
    EVALUATION_SEED_FLOOR,
    EVALUATION_SEEDS,
    ReservedSeedError,
    check_seed,
    is_evaluation_seed,
)

__all__ = [
    "DETAILS",
    "EXTRA_VANTAGES",
    "LIGHTINGS",
    "STATES",
    "VANTAGES",
    "Scene",
    "VideoSpec",
    "build_scene",
    "parse_details",
    "parse_vantages",
    "draw_boxes",
    "render_frame",
    "render_video",
    "scene_frames",
    "synthesize",
    "synthesize_or_reuse",
    "load_current_manifest",
    "video_specs",
    "EVALUATION_SEEDS",
    "EVALUATION_SEED_FLOOR",
    "ReservedSeedError",
    "check_seed",
    "is_evaluation_seed",
]
