"""The generator's optional scene details (platelab.synth, ``details=``): on-screen time
stamps (osd.py), make and model lettering (badges.py) and steel fences and gates
(fences.py), rear lamps lit when braking (lamps.py) and stickers and work vehicles'
lettering (stickers.py), hard negatives never annotated, and plates with real plates' looks."""

import hashlib
import json
import re

import cv2
import numpy as np
import pytest

from platelab.synth import (
    DETAILS,
    badges,
    build_scene,
    fences,
    lamps,
    layouts,
    osd,
    parse_details,
    plates,
    render_frame,
    render_video,
    sprites,
    stickers,
    vehicles,
    video_specs,
)
from platelab.synth.scene import Lighting

BEFORE_DETAILS_FRAMES = "cfdadbb1c07365b54ffaf7d5b4024f0776958e756a0ece7c6418c3e6e42faa81"
"""SHA-256 of the frames of ``video_specs(2, 1.0, 2, (320, 192), 5, vantages=["parking",
"overpass"])``, their bytes concatenated in order, computed before details existed."""
BEFORE_DETAILS_TRUTH = "644f2ab199a5b2514c7adbc17595861b7acdec9b5408e539bf3b5fc7a2c41747"
"""SHA-256 of the same frames' truths, each ``json.dumps(truth, sort_keys=True)``."""

SIZE = (384, 216)


def _hashes(specs):
    frames, truths = hashlib.sha256(), hashlib.sha256()
    for spec in specs:
        for image, truth in render_video(spec):
            frames.update(image.tobytes())
            truths.update(json.dumps(truth, sort_keys=True, default=str).encode())
    return frames.hexdigest(), truths.hexdigest()


def test_without_details_the_frames_are_those_rendered_before_details_existed():
    """Evaluation sets come from fixed seeds: no detail asked for, nothing changes."""
    arguments = (2, 1.0, 2, (320, 192), 5)
    plain = video_specs(*arguments, vantages=["parking", "overpass"])
    assert all(spec.details == frozenset() for spec in plain)
    assert _hashes(plain) == (BEFORE_DETAILS_FRAMES, BEFORE_DETAILS_TRUTH)
    assert video_specs(*arguments, vantages=["parking", "overpass"], details=()) == plain


def test_details_change_the_pixels_but_not_the_truth():
    arguments = (2, 1.0, 2, SIZE, 24)
    vantages = ["parking", "traffic_camera"]
    plain = video_specs(*arguments, vantages=vantages)
    lettered = video_specs(*arguments, vantages=vantages, details=("badges",))
    both = video_specs(*arguments, vantages=vantages, details=("osd", "badges"))
    assert lettered[0].details == frozenset({"badges"})
    assert both[0].details == frozenset({"osd", "badges"})
    changed, stamped = 0, 0
    for plain_spec, lettered_spec, both_spec in zip(plain, lettered, both, strict=True):
        scene_osd = build_scene(both_spec).osd
        for (image, truth), (lettered_image, lettered_truth), (both_image, both_truth) in zip(
            render_video(plain_spec),
            render_video(lettered_spec),
            render_video(both_spec),
            strict=True,
        ):
            # Lettering lies inside its face: the truth is the same to the last field.
            assert lettered_truth == truth
            changed += not np.array_equal(lettered_image, image)
            # The OSD hides what lies beneath it; everything else is as it was.
            covered = []
            if scene_osd is not None:
                blank = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
                covered = scene_osd.draw(blank, np.zeros(SIZE[::-1], np.int32), truth["time"])
                stamped += 1
                assert not np.array_equal(both_image, image)
            away = [item for item in truth["objects"] if not _touches(item["box"], covered)]
            assert all(item in both_truth["objects"] for item in away)
            assert {item["id"] for item in both_truth["objects"]} <= {
                item["id"] for item in truth["objects"]
            }
    assert changed >= 2 and stamped >= 2


def test_the_osd_is_a_time_stamp_in_a_corner_and_the_dashcam_keeps_its_own():
    specs = video_specs(3, 1.0, 2, SIZE, 24, vantages=["parking"], details=("osd",))
    plain = video_specs(3, 1.0, 2, SIZE, 24, vantages=["parking"])
    width, height = SIZE
    for spec, plain_spec in ((specs[0], plain[0]), (specs[2], plain[2])):
        scene, plain_scene = build_scene(spec), build_scene(plain_spec)
        assert scene.osd is not None
        for index in (0, 1):
            image, _, id_map = render_frame(scene, index, effects=False)
            bare, _, _ = render_frame(plain_scene, index, effects=False)
            boxes = scene.osd.draw(image.copy(), id_map.copy(), index / spec.fps)
            changed = np.any(image != bare, axis=2)
            inside = np.zeros_like(changed)
            for x0, y0, x1, y1 in boxes:
                inside[y0:y1, x0:x1] = True
                # In a corner, a margin of 1-3 % off its edges, a few lines high.
                assert x0 <= 0.03 * width + 1 or x1 >= 0.97 * width - 1, boxes
                assert y0 <= 0.03 * height + 1 or y1 >= 0.97 * height - 1, boxes
                assert y1 - y0 <= 0.25 * height, boxes
            assert changed.any() and not (changed & ~inside).any()
        first, later = scene.osd.blocks(0.0), scene.osd.blocks(1.0)
        assert first != later  # the clock runs
        text = " ".join(line for _, lines in first for line in lines)
        assert re.search(r"\d\d:\d\d:\d\d", text), text
        assert re.search(r"\d{4}|\d\d-[A-Z]{3}-\d{4}", text), text
    # A dashcam has its overlay already: the same seeds draw no other.
    for index in (0, 2):
        dashcam = video_specs(3, 0.5, 2, SIZE, 24, vantages=["dashcam"], details=("osd",))
        bare = video_specs(3, 0.5, 2, SIZE, 24, vantages=["dashcam"])
        assert build_scene(dashcam[index]).osd is None
        for (image, truth), (other, other_truth) in zip(
            render_video(dashcam[index]), render_video(bare[index]), strict=True
        ):
            assert np.array_equal(image, other) and truth == other_truth


def test_osd_looks_vary_and_some_cameras_show_none():
    drawn = [osd.random_osd(np.random.default_rng((seed, 7001)), 1280, 720) for seed in range(200)]
    shown = [item for item in drawn if item is not None]
    assert 0.7 * len(drawn) <= len(shown) <= 0.9 * len(drawn)
    assert {item.style for item in shown} == set(osd.STYLES)
    assert {item.corner for item in shown} == set(osd.CORNERS)
    assert {item.font for item in shown} == set(osd.FONTS)
    assert {item.two_lines for item in shown} == {True, False}
    assert any(item.name for item in shown) and not all(item.name for item in shown)
    dates = {
        osd._format_date(shown[0].start.replace(2014, 5, 13), form) for form in osd.DATE_FORMATS
    }
    assert {"2014-05-13", "05/13/2014", "13.05.2014", "13-MAY-2014"} <= dates
    heights = []
    for item in shown[:40]:
        frame = np.zeros((720, 1280, 3), np.uint8)
        ids = np.ones((720, 1280), np.int32)
        boxes = item.draw(frame, ids, 0.0)
        inside = np.zeros(ids.shape, bool)
        for x0, y0, x1, y1 in boxes:
            inside[y0:y1, x0:x1] = True
        # The id map is cleared under the text (objects there count as occluded), and
        # only in the OSD's boxes.
        text = frame.max(axis=2) > 128
        assert text.any() and not ids[text].any() and ids[~inside].all()
        heights.append(cv2.getTextSize("0", item.font, item.scale, item.thickness)[0][1])
    assert min(heights) >= 7 and max(heights) <= 25, heights
    assert sum(height <= 12 for height in heights) >= 10  # small, as real cameras write


def test_lettering_never_touches_the_plate_and_stays_on_its_face():
    count, slots, texts = 0, set(), set()
    for seed in range(300):
        rng = np.random.default_rng(seed)
        kind = vehicles.VEHICLE_TYPES[seed % 3]
        model = vehicles.random_model(rng, kind)
        view = ("rear", "front")[seed % 2]
        design = plates.random_plate(rng, plates.PLATE_STYLES[seed // 2 % 2])
        corners = vehicles.plate_corners(model, view, design.size)
        faces = {position: badges.end_face(model, position) for position in ("front", "rear")}
        added = badges.add_badges(np.random.default_rng((seed, 7002)), model, {view: corners})
        for badge in added:
            count += 1
            slots.add((model.variant, badge.slot))
            texts.add(badge.text)
            face = faces[badge.position]
            quads = (
                [corners]
                if badge.position == view
                else [
                    vehicles.plate_corners(model, badge.position, size)
                    for size in plates.PLATE_SIZES.values()
                ]
            )
            for quad in quads:
                assert not _intersect(badge.corners, quad), (seed, badge)
            u0, u1, y0, y1 = badge.rect
            assert -face.half <= u0 < u1 <= face.half and face.bottom <= y0 < y1 <= face.top
            outward = 1.0 if badge.position == "rear" else -1.0
            assert np.allclose(badge.corners[:, 0], face.a + badges._OFFSET * outward)
            assert np.isclose(-outward * badge.corners[0, 1], u0)  # top-left seen from outside
    assert count >= 200
    assert {"make", "model", "trim", "wide", "grille"} <= {slot for _, slot in slots}
    assert {"box_truck", "city_bus", "pickup", "sedan", "suv", "hatchback"} <= {
        variant for variant, _ in slots
    }
    assert not {slot for variant, slot in slots if variant == "box_truck"} - {"grille"}
    assert len(texts) >= 40


def test_lettering_leaves_the_outline_and_the_plate_alone_when_drawn():
    light = Lighting.named("day")
    checked = 0
    for seed in range(40):
        view = ("rear", "front")[seed % 2]
        models = []
        for _ in range(2):
            rng = np.random.default_rng(seed)
            model = vehicles.random_model(rng, vehicles.VEHICLE_TYPES[seed % 3])
            design = plates.random_plate(rng, "us")
            models.append((model, vehicles.plate_corners(model, view, design.size)))
        lettered, corners = models[1]
        added = badges.add_badges(np.random.default_rng((seed, 7002)), lettered, {view: corners})
        if not any(badge.position == view for badge in added):
            continue
        drawn = [
            sprites.render_sprite(model, view, 0.2, 0.1, 12.0, 120.0, light, plate=(view, quad))
            for model, quad in models
        ]
        plain, with_badges = drawn
        assert np.array_equal(plain.mask, with_badges.mask)
        assert np.allclose(plain.plate_quad, with_badges.plate_quad)
        changed = np.any(plain.image != with_badges.image, axis=2)
        plate_pixels = np.zeros(changed.shape, np.uint8)
        cv2.fillPoly(plate_pixels, [np.round(plain.plate_quad).astype(np.int32)], 1)
        assert changed.any() and not (changed & plate_pixels.astype(bool)).any(), seed
        checked += 1
    assert checked >= 10


def test_unknown_details_are_refused_naming_them():
    assert parse_details("osd, badges") == ("osd", "badges")
    assert parse_details("") == () and parse_details(" , ") == ()
    with pytest.raises(ValueError, match=r"unknown scene detail\(s\) fog: expected some of osd"):
        parse_details("osd,fog")
    with pytest.raises(ValueError, match=r"unknown scene detail\(s\) rain, fog"):
        video_specs(1, 1.0, 2, SIZE, 0, details=["rain", "fog"])
    with pytest.raises(ValueError, match="a list of names"):
        video_specs(1, 1.0, 2, SIZE, 0, details="osd")


def _touches(box, covered):
    return any(
        box[0] < x1 and x0 < box[2] and box[1] < y1 and y0 < box[3] for x0, y0, x1, y1 in covered
    )


def _intersect(badge_corners, plate_corners):
    """Whether two quads on an end face overlap (in millimetres of (b, y))."""
    first = (badge_corners[:, 1:] * 1000).astype(np.float32)
    second = (plate_corners[:, 1:] * 1000).astype(np.float32)
    area, _ = cv2.intersectConvexConvex(
        cv2.convexHull(first).reshape(-1, 2), cv2.convexHull(second).reshape(-1, 2)
    )
    return area > 0


def test_plates_with_real_looks_change_the_plates_pixels_but_not_the_truth():
    arguments = (2, 1.0, 2, SIZE, 24)
    vantages = ["parking", "traffic_camera"]
    plain = video_specs(*arguments, vantages=vantages)
    looked = video_specs(*arguments, vantages=vantages, details=("plates",))
    assert set(DETAILS) == {"osd", "badges", "plates", "fences", "lamps", "stickers"}
    changed = plates_seen = 0
    for plain_spec, looked_spec in zip(plain, looked, strict=True):
        scene = build_scene(looked_spec)
        assert all(
            vehicle.plate is None or vehicle.plate.look is not None for vehicle in scene.vehicles
        )
        plates_seen += sum(vehicle.plate is not None for vehicle in scene.vehicles)
        for (image, truth), (looked_image, looked_truth) in zip(
            render_video(plain_spec), render_video(looked_spec), strict=True
        ):
            assert looked_truth == truth
            changed += not np.array_equal(looked_image, image)
    assert plates_seen >= 2 and changed >= 2


FIXED = ("parking", "storefront", "street_high", "street_low", "traffic_camera", "overpass")


def _fences_of(spec):
    """The layout of a spec with its fences (as build_scene draws them) and the fences."""
    lighting = Lighting.named(spec.lighting)
    layout = layouts.build_layout(spec, lighting, np.random.default_rng((spec.seed, spec.index)))
    rng = np.random.default_rng((spec.seed, spec.index, 7004))
    return layout, fences.add_fences(layout, spec, lighting, rng)


def test_fences_hide_only_what_stands_behind_them():
    seen = hidden = 0
    # A driveway gate before a parked car (storefront, seed 8), a lot's fences (parking).
    for vantage, seed in (("storefront", 8), ("storefront", 6), ("parking", 7), ("parking", 2)):
        spec = video_specs(1, 1.0, 2, SIZE, seed, vantages=[vantage], details=("fences",))[0]
        plain = video_specs(1, 1.0, 2, SIZE, seed, vantages=[vantage])[0]
        _, drawn = _fences_of(spec)
        scene, plain_scene = build_scene(spec), build_scene(plain)
        assert len(scene.props) == len(plain_scene.props) + len(drawn)
        assert drawn, (vantage, seed)
        nearest = min(fence.depth for fence in drawn)
        for index in range(spec.frames):
            image, objects, ids = render_frame(scene, index, effects=False)
            bare, plain_objects, plain_ids = render_frame(plain_scene, index, effects=False)
            seen += not np.array_equal(image, bare)
            # A fence only takes pixels from what stands behind it, where it shows.
            taken = ids != plain_ids
            assert not ids[taken].any()
            assert np.any(image != bare, axis=2)[taken].all()
            before = {item["id"]: item for item in plain_objects}
            assert {item["id"] for item in objects} <= set(before)
            for vehicle in scene.vehicles:
                if vehicle.id not in before or vehicle.track["z"][index] >= nearest:
                    continue
                # In front of every fence: its truth (and its plate's) is as it was.
                mine = [
                    item for item in objects if vehicle.id in (item["id"], item.get("vehicle_id"))
                ]
                theirs = [
                    item
                    for item in plain_objects
                    if vehicle.id in (item["id"], item.get("vehicle_id"))
                ]
                assert mine == theirs
            for item in objects:
                if item != before[item["id"]]:
                    hidden += 1
                    assert item["occluded"] > before[item["id"]]["occluded"]
    assert seen >= 4 and hidden >= 1


def test_fences_stand_off_every_lane_and_parking_spot():
    with_fences = 0
    for seed in range(3):
        specs = video_specs(
            len(FIXED), 2.0, 2, (320, 192), seed, vantages=FIXED, details=("fences",)
        )
        for spec in specs:
            layout, drawn = _fences_of(spec)
            with_fences += bool(drawn)
            scene = build_scene(spec)
            assert len(scene.props) == len(layout.props)
            times = np.arange(spec.frames) / spec.fps
            for fence in drawn:
                assert fence.kind in fences.KINDS and 1.0 <= fence.height <= 2.3
                assert fences.seen(fence, scene.camera)
                (x0, z0), (x1, z1) = fence.start, fence.end
                low_x, high_x = min(x0, x1) - 0.05, max(x0, x1) + 0.05
                low_z, high_z = min(z0, z1) - 0.05, max(z0, z1) + 0.05
                for vehicle in scene.vehicles:
                    for index in np.flatnonzero(vehicle.track["active"]):
                        vx0, vx1, vz0, vz1 = vehicle.bounds(times[index])
                        overlaps = vx0 < high_x and low_x < vx1 and vz0 < high_z and low_z < vz1
                        assert not overlaps, (spec.source_id, fence, vehicle.id, index)
    assert with_fences >= 8


def test_fences_are_deterministic_and_the_dashcam_has_none():
    spec = video_specs(2, 1.0, 2, SIZE, 6, vantages=["storefront"], details=("fences",))[0]
    assert _fences_of(spec)[1]
    assert _hashes([spec]) == _hashes([spec])
    for index in range(3):
        dashcam = video_specs(3, 0.5, 2, SIZE, 24, vantages=["dashcam"], details=("fences",))
        bare = video_specs(3, 0.5, 2, SIZE, 24, vantages=["dashcam"])
        assert not _fences_of(dashcam[index])[1]
        assert _hashes([dashcam[index]]) == _hashes([bare[index]])


def _lamped(seed, kind, lights_on=False):
    """A vehicle model, its US plate's rear corners, and the lamps added to a copy."""
    models = []
    for _ in range(2):
        rng = np.random.default_rng(seed)
        model = vehicles.random_model(rng, kind)
        design = plates.random_plate(rng, "us")
        models.append((model, vehicles.plate_corners(model, "rear", design.size)))
    (plain, corners), (lamped, _) = models
    added = lamps.add_lamps(
        np.random.default_rng((seed, 7005)), lamped, lights_on=lights_on, plates={"rear": corners}
    )
    return plain, lamped, corners, added


def test_lamps_stay_inside_the_outline_and_off_the_plate():
    kinds, lit, bars = set(), 0, 0
    for seed in range(60):
        kind = ("sedan", "truck", "bus")[seed % 3]
        plain, lamped, corners, added = _lamped(seed, kind)
        for lamp in added:
            kinds.add((lamped.variant, lamp.kind))
            lit += lamp.lit
            if lamp.kind == "bar":
                bars += 1
                for size in plates.PLATE_SIZES.values():
                    quad = vehicles.plate_corners(lamped, "rear", size)
                    assert not _intersect(lamp.corners, quad), seed
        if not added:
            continue
        _assert_rear_changed_off_plate_and_outline(plain, lamped, corners, seed)
    assert {("sedan", "tail"), ("city_bus", "tail"), ("pickup", "chmsl")} <= kinds
    assert {kind for _, kind in kinds} == {"tail", "bar", "chmsl"}
    assert 10 <= lit <= 50 and bars >= 1  # about 40 % of the vehicles brake


def test_lit_lamps_glow_at_their_own_brightness_and_unlit_ones_take_the_light():
    found = 0
    for seed in range(40):
        _, lamped, corners, added = _lamped(seed, "sedan")
        tails = [lamp for lamp in added if lamp.kind == "tail"]
        if not tails:
            continue
        lit = tails[0].lit
        drawn = {
            name: sprites.render_sprite(
                lamped, "rear", 0.0, 0.0, 12.0, 200.0, Lighting.named(name), plate=("rear", corners)
            )
            for name in ("day", "night")
        }
        # The brightest red of the lamps, by day and at night.
        reds = {}
        for name, sprite in drawn.items():
            image = sprite.image.astype(np.int32)
            reds[name] = int((image[..., 2] - image[..., 1]).max())
        if lit:
            assert reds["night"] >= 0.9 * reds["day"] > 100, (seed, reds)
        else:
            assert reds["night"] < 0.8 * reds["day"], (seed, reds)
        found += 1
    assert found >= 10


@pytest.mark.parametrize("detail", ["lamps", "stickers"])
def test_lamps_and_stickers_leave_the_truth_as_it_was_and_draw_the_same_again(detail):
    arguments = (2, 1.0, 2, SIZE, 24)
    vantages = ["traffic_camera", "street_high"]
    plain = video_specs(*arguments, vantages=vantages)
    lamped = video_specs(*arguments, vantages=vantages, details=(detail,))
    changed = 0
    for plain_spec, lamped_spec in zip(plain, lamped, strict=True):
        first = list(render_video(lamped_spec))
        again = list(render_video(lamped_spec))
        for (image, truth), (lamped_image, lamped_truth), (again_image, _) in zip(
            render_video(plain_spec), first, again, strict=True
        ):
            assert lamped_truth == truth
            assert np.array_equal(lamped_image, again_image)
            changed += not np.array_equal(lamped_image, image)
    assert changed >= 2


def test_stickers_stay_inside_the_outline_and_off_the_plate():
    kinds, texts, checked = set(), set(), 0
    for seed in range(90):
        plain, marked, corners, _ = _lamped(seed, ("sedan", "truck", "bus")[seed % 3])
        badges.add_badges(np.random.default_rng((seed, 7002)), marked, {"rear": corners})
        added = stickers.add_stickers(
            np.random.default_rng((seed, 7006)), marked, {"rear": corners}
        )
        for sticker in added:
            kinds.add((marked.variant, sticker.kind))
            texts.add(sticker.text)
            if sticker.kind != "window":  # on the rear face, beside the plate
                assert not _intersect(sticker.corners, corners), (seed, sticker.text)
        if not added:
            continue
        _assert_rear_changed_off_plate_and_outline(plain, marked, corners, seed)
        checked += 1
    assert {kind for _, kind in kinds} == {"bumper", "window", "work", "fleet"}
    assert {("box_truck", "work"), ("city_bus", "fleet")} <= kinds
    assert any(re.search(r"\d{3}[-.]\d{4}", text) for text in texts)  # telephone numbers
    assert checked >= 30 and len(texts) >= 30


def _assert_rear_changed_off_plate_and_outline(plain, marked, corners, seed):
    """The marked model's rear differs from the plain one's, but neither in its outline
    (sprite mask) nor on its plate."""
    day = Lighting.named("day")
    drawn = [
        sprites.render_sprite(model, "rear", 0.2, 0.1, 12.0, 160.0, day, plate=("rear", corners))
        for model in (plain, marked)
    ]
    assert np.array_equal(drawn[0].mask, drawn[1].mask), seed
    assert np.allclose(drawn[0].plate_quad, drawn[1].plate_quad)
    changed = np.any(drawn[0].image != drawn[1].image, axis=2)
    plate_pixels = np.zeros(changed.shape, np.uint8)
    cv2.fillPoly(plate_pixels, [np.round(drawn[0].plate_quad).astype(np.int32)], 1)
    assert changed.any() and not (changed & plate_pixels.astype(bool)).any(), seed
