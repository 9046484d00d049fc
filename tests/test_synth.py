"""Tests of the synthetic traffic-video generator (platelab.synth)."""

import json
import math
import re

import numpy as np
import pytest

from platelab import LABELS
from platelab.ffmpeg import run_ffmpeg
from platelab.metadata import sha256_file
from platelab.synth import (
    EXTRA_VANTAGES,
    VANTAGES,
    ReservedSeedError,
    build_scene,
    check_seed,
    draw_boxes,
    is_evaluation_seed,
    parse_vantages,
    pipeline,
    render_frame,
    render_video,
    synthesize,
    video_specs,
)

SMALL = (480, 270)
TINY = dict(videos=2, seconds=1.0, fps=5.0, size=(320, 180), seed=3, progress=False)


@pytest.fixture(scope="module")
def default_batch():
    """Ground truth of a default-like batch: 6 videos x 10 s x 10 fps (smaller frames)."""
    specs = video_specs(6, 10.0, 10.0, SMALL, 0)
    truths = {}
    for spec in specs:
        truths[spec.source_id] = (spec, [truth for _, truth in render_video(spec)])
    return truths


@pytest.mark.parametrize("vantage", VANTAGES + EXTRA_VANTAGES)
def test_boxes_match_rendered_pixels(vantage):
    """Leaving one object out changes only its own pixels, inside its box, and
    the box is tight around the pixels that change."""
    if vantage in VANTAGES:
        specs = video_specs(6, 6.0, 5.0, SMALL, 0)
    else:
        specs = video_specs(1, 6.0, 5.0, SMALL, 0, vantages=[vantage])
    spec = next(spec for spec in specs if spec.vantage == vantage)
    scene = build_scene(spec)
    plate_ids = {vehicle.id: vehicle.plate_id for vehicle in scene.vehicles if vehicle.plate_id}
    checked, loose = 0, []
    for index in (6, 23):
        image, objects, id_map = render_frame(scene, index, effects=False)
        vehicles = {item["id"]: item for item in objects if item["label"] == "vehicle"}
        for item in objects:
            if item["label"] == "license_plate":
                vehicle_box = vehicles[item["vehicle_id"]]["box"]
                assert _inside(item["box"], vehicle_box), (item, vehicle_box)
        for item in objects:
            without, _, _ = render_frame(scene, index, exclude_ids=[item["id"]], effects=False)
            changed = np.any(without != image, axis=2)
            own_ids = [item["id"]]
            if item["label"] == "vehicle" and item["id"] in plate_ids:
                own_ids.append(plate_ids[item["id"]])
            own = np.isin(id_map, own_ids)
            # The box is the extent of the object's pixels in the id map...
            own_rows, own_columns = np.nonzero(own)
            box = [own_columns.min(), own_rows.min(), own_columns.max() + 1, own_rows.max() + 1]
            assert box == item["box"], item
            # ...and only those pixels change when it is left out.
            assert not (changed & ~own).any(), item
            assert changed.sum() >= 0.3 * own.sum(), item
            rows, columns = np.nonzero(changed)
            x0, y0, x1, y1 = item["box"]
            assert columns.min() >= x0 and columns.max() < x1, item
            assert rows.min() >= y0 and rows.max() < y1, item
            # Tight: every edge of the box touches a changed pixel (1 px
            # tolerance); rarely an edge has exactly the colour of what lies
            # behind (a black car in front of a black car).
            if not (
                columns.min() <= x0 + 1
                and columns.max() >= x1 - 2
                and rows.min() <= y0 + 1
                and rows.max() >= y1 - 2
            ):
                loose.append(item)
            checked += 1
    assert checked > 0
    assert len(loose) <= max(1, 0.05 * checked), loose


def test_the_traffic_camera_sees_plates_at_plate_reader_sizes():
    """``traffic_camera``: a narrow lens over the lanes, plates 40-90 px wide at 1280x720
    (the real traffic-camera set's US plates are about 60x30 px); never in a default batch."""
    widths, lenses = {"us": [], "eu": []}, []
    for spec in video_specs(6, 6.0, 1.0, (1280, 720), 11, vantages=["traffic_camera"]):
        scene = build_scene(spec)
        lenses.append(math.degrees(2 * math.atan(spec.width / 2 / scene.camera.focal)))
        for index in range(spec.frames):
            for item in render_frame(scene, index, effects=False)[1]:
                if item["label"] == "license_plate" and not item["truncated"]:
                    widths[item["style"]].append(item["box"][2] - item["box"][0])
    assert all(16 <= lens <= 30 for lens in lenses), lenses
    assert len(widths["us"]) >= 5 and len(widths["eu"]) >= 5, widths
    assert 35 <= np.median(widths["us"]) <= 75, widths["us"]
    assert 55 <= np.median(widths["eu"]) <= 130, widths["eu"]  # EU plates are 1.7 times as wide
    default = {spec.vantage for spec in video_specs(14, 1.0, 1.0, SMALL, 11)}
    assert default == set(VANTAGES) and "traffic_camera" not in default


def test_render_frame_is_order_independent():
    spec = video_specs(6, 3.0, 10.0, SMALL, 0)[1]
    first_scene, second_scene = build_scene(spec), build_scene(spec)
    early_a, truth_early_a, _ = render_frame(first_scene, 5)
    late_a, truth_late_a, _ = render_frame(first_scene, 25)
    late_b, truth_late_b, _ = render_frame(second_scene, 25)
    early_b, truth_early_b, _ = render_frame(second_scene, 5)
    assert np.array_equal(early_a, early_b) and truth_early_a == truth_early_b
    assert np.array_equal(late_a, late_b) and truth_late_a == truth_late_b


def test_render_video_is_deterministic():
    spec = video_specs(6, 1.0, 10.0, (320, 180), 5)[3]
    first = list(render_video(spec))
    second = list(render_video(spec))
    assert len(first) == spec.frames
    for (frame_a, truth_a), (frame_b, truth_b) in zip(first, second, strict=True):
        assert np.array_equal(frame_a, frame_b)
        assert truth_a == truth_b
    other = video_specs(6, 1.0, 10.0, (320, 180), 6)[3]
    frame_other, _ = next(render_video(other))
    assert not np.array_equal(first[0][0], frame_other)


def test_synthesize_is_byte_identical(tmp_path):
    first = synthesize(tmp_path / "a", workers=1, **TINY)
    second = synthesize(tmp_path / "b", workers=2, **TINY)
    assert first == second
    for entry in first["videos"]:
        for key in ("video", "ground_truth"):
            assert sha256_file(tmp_path / "a" / entry[key]) == sha256_file(
                tmp_path / "b" / entry[key]
            )
            assert sha256_file(tmp_path / "a" / entry[key]) == entry["sha256"][key]
    assert (tmp_path / "a" / "manifest.json").read_bytes() == (
        tmp_path / "b" / "manifest.json"
    ).read_bytes()
    other = synthesize(tmp_path / "c", workers=1, **{**TINY, "seed": 4})
    assert {entry["sha256"]["video"] for entry in other["videos"]}.isdisjoint(
        {entry["sha256"]["video"] for entry in first["videos"]}
    )


def test_output_layout_and_mp4s_decode(tmp_path):
    manifest = synthesize(tmp_path / "out", workers=1, **TINY)
    out = tmp_path / "out"
    assert sorted(path.name for path in out.iterdir()) == [
        "ground_truth",
        "manifest.json",
        "videos",
    ]
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert manifest["parameters"]["size"] == [320, 180]
    assert len(manifest["videos"]) == 2
    for entry in manifest["videos"]:
        truth = json.loads((out / entry["ground_truth"]).read_text())
        assert truth["source_id"] == entry["source_id"]
        assert (truth["width"], truth["height"], truth["fps"]) == (320, 180, 5.0)
        assert len(truth["frames"]) == entry["frames"] == 5
        assert [frame["index"] for frame in truth["frames"]] == list(range(5))
        counted = {label: 0 for label in LABELS}
        for frame in truth["frames"]:
            for item in frame["objects"]:
                counted[item["label"]] += 1
        assert counted == entry["objects"]
        result = run_ffmpeg(["-i", out / entry["video"], "-f", "rawvideo", "-pix_fmt", "gray", "-"])
        assert len(result.stdout) == 320 * 180 * entry["frames"]
        stream = re.search(rb"Video: h264.*?(\d{2,5})x(\d{2,5})", result.stderr)
        assert stream and (int(stream.group(1)), int(stream.group(2))) == (320, 180)


def test_failed_run_keeps_previous_result(tmp_path, monkeypatch):
    out = tmp_path / "synthetic"
    synthesize(out, workers=1, **TINY)
    before = {path.relative_to(out): path.read_bytes() for path in out.rglob("*") if path.is_file()}

    def broken_encoder(*args, **kwargs):
        raise RuntimeError("encoder exploded")

    monkeypatch.setattr(pipeline, "encode_video", broken_encoder)
    with pytest.raises(RuntimeError, match="encoder exploded"):
        synthesize(out, workers=1, **{**TINY, "seed": 9})
    after = {path.relative_to(out): path.read_bytes() for path in out.rglob("*") if path.is_file()}
    assert after == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["synthetic"]


@pytest.mark.parametrize("seed", [4242, 987654, 1_000_000, 1_234_567])
def test_training_data_refuses_the_seeds_reserved_for_evaluation(tmp_path, seed):
    out = tmp_path / "synthetic"
    for call in (synthesize, pipeline.synthesize_or_reuse):
        with pytest.raises(ReservedSeedError, match=f"seed {seed} is reserved for evaluation"):
            call(out, workers=1, **{**TINY, "seed": seed})
    assert not out.exists()
    assert is_evaluation_seed(seed)
    check_seed(seed, "evaluation")  # held-out sets may use it


def test_the_cli_refuses_a_reserved_seed_for_training_in_one_line(tmp_path, capsys):
    from platelab import cli

    out = tmp_path / "synthetic"
    assert cli.main(["synth", "--out", str(out), "--seed", "987654", "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "seed 987654 is reserved for evaluation" in lines[0]
    assert not out.exists()


def test_the_cli_renders_the_vantages_named_and_refuses_an_unknown_one(tmp_path, capsys):
    from platelab import cli

    out = tmp_path / "synthetic"
    arguments = ["synth", "--out", str(out), "--videos", "2", "--seconds", "0.4", "--quiet"]
    assert cli.main([*arguments, "--vantages", "traffic_camera, dashcam"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert [video["vantage"] for video in manifest["videos"]] == ["traffic_camera", "dashcam"]
    with pytest.raises(SystemExit) as stopped:
        cli.main([*arguments, "--vantages", "traffic_camera,helicopter"])
    assert stopped.value.code == 2
    assert "unknown vantage(s) helicopter" in capsys.readouterr().err


def test_a_vantage_list_parses_and_names_what_it_does_not_know():
    assert parse_vantages("") is None and parse_vantages(" , ") is None
    assert parse_vantages("overpass, traffic_camera") == ["overpass", "traffic_camera"]
    with pytest.raises(ValueError, match="unknown vantage\\(s\\) blimp, kite: expected some of"):
        parse_vantages("blimp,dashcam,kite")


def test_evaluation_sets_may_use_reserved_seeds_and_say_so(tmp_path):
    manifest = synthesize(
        tmp_path / "heldout", workers=1, **{**TINY, "videos": 1, "seed": 4242}, purpose="evaluation"
    )
    assert manifest["purpose"] == "evaluation" and manifest["parameters"]["seed"] == 4242
    assert (
        synthesize(tmp_path / "train", workers=1, **{**TINY, "videos": 1})["purpose"] == "training"
    )
    for seed in (0, 1234, 4241, 4243, 999_999):
        assert not is_evaluation_seed(seed)
        check_seed(seed, "training")
    with pytest.raises(ValueError, match="purpose"):
        check_seed(5, "pretraining")


def test_coverage_of_a_default_batch(default_batch):
    vantages, lightings, states = set(), set(), set()
    types, views, styles = set(), set(), set()
    small_plates = truncated = occluded = difficult = parked = 0
    for spec, frames in default_batch.values():
        vantages.add(spec.vantage)
        lightings.add(spec.lighting)
        for frame in frames:
            states.add(frame["state"])
            views_by_id = {}
            for item in frame["objects"]:
                if item["label"] == "vehicle":
                    types.add(item["type"])
                    views.add(item["view"])
                    views_by_id[item["id"]] = item["view"]
                    parked += item["parked"]
                else:
                    styles.add(item["style"])
                    small_plates += item["box"][3] - item["box"][1] < 10
                truncated += item["truncated"] > 0.2
                occluded += item["occluded"] > 0.3
                difficult += item["difficult"]
            for item in frame["objects"]:
                if item["label"] == "license_plate":
                    assert views_by_id[item["vehicle_id"]] in ("front", "rear"), item
    assert vantages == set(VANTAGES)
    assert lightings == {"day", "dusk", "night"}
    assert states == {"ok", "black", "frozen", "empty"}
    assert types == {"sedan", "truck", "bus"}
    assert views == {"front", "rear", "side"}
    assert styles == {"us", "eu"}
    assert small_plates > 10 and truncated > 10 and occluded > 10 and difficult > 10 and parked > 10


def test_ground_truth_fields_and_states(default_batch):
    for spec, frames in default_batch.values():
        assert len(frames) == spec.frames == 100
        for frame in frames:
            assert frame["time"] == pytest.approx(frame["index"] / spec.fps)
            if frame["state"] == "black":
                assert frame["objects"] == []
            if frame["state"] == "empty":
                assert not any(item["label"] == "vehicle" for item in frame["objects"])
            for item in frame["objects"]:
                x0, y0, x1, y1 = item["box"]
                assert all(isinstance(value, int) for value in item["box"])
                assert 0 <= x0 < x1 <= spec.width and 0 <= y0 < y1 <= spec.height
                assert 0.0 <= item["occluded"] <= 1.0 and 0.0 <= item["truncated"] <= 1.0
                assert item["label"] in LABELS
                if item["label"] == "license_plate":
                    assert (
                        item["occluded"] <= 0.8 and item["text"] and item["style"] in ("us", "eu")
                    )
                else:
                    assert item["type"] in ("sedan", "truck", "bus") and item["view"] in (
                        "front",
                        "rear",
                        "side",
                    )


def test_black_and_frozen_frames():
    specs = video_specs(6, 4.0, 10.0, (320, 180), 0)
    black_spec, frozen_spec = specs[0], specs[1]  # (index + seed) % 3: 0 black, 1 frozen
    frames = list(render_video(black_spec))
    black = [frame for frame, truth in frames if truth["state"] == "black"]
    assert black and all(not frame.any() for frame in black)
    frames = list(render_video(frozen_spec))
    indices = [truth["index"] for _, truth in frames if truth["state"] == "frozen"]
    assert indices
    source = frames[indices[0] - 1]
    for index in indices:
        assert np.array_equal(frames[index][0], source[0])
        assert frames[index][1]["objects"] == source[1]["objects"]


def test_draw_boxes_leaves_the_input_alone():
    spec = video_specs(6, 1.0, 10.0, (320, 180), 0)[3]
    frame, truth = next(render_video(spec))
    original = frame.copy()
    drawn = draw_boxes(frame, truth["objects"])
    assert np.array_equal(frame, original)
    assert drawn.shape == frame.shape and not np.array_equal(drawn, frame)


def test_bad_arguments():
    with pytest.raises(ValueError):
        video_specs(2, 1.0, 5.0, (321, 180), 0)
    with pytest.raises(ValueError):
        video_specs(2, 1.0, 5.0, (320, 180), 0, vantages=["moon"])
    with pytest.raises(ValueError):
        video_specs(0, 1.0, 5.0, (320, 180), 0)
    assert [
        spec.vantage for spec in video_specs(3, 1.0, 5.0, (320, 180), 0, ["dashcam", "parking"])
    ] == [
        "dashcam",
        "parking",
        "dashcam",
    ]


def _inside(inner, outer):
    return (
        inner[0] >= outer[0]
        and inner[1] >= outer[1]
        and inner[2] <= outer[2]
        and inner[3] <= outer[3]
    )


def test_distinct_objects_counts_each_id_once_unless_always_difficult():
    from platelab import groundtruth

    truth = {
        "frames": [
            {"objects": [
                {"id": 1, "label": "vehicle", "difficult": False},
                {"id": 2, "label": "license_plate", "difficult": True},
                {"id": 3, "label": "license_plate", "difficult": True},
            ]},
            {"objects": [
                {"id": 1, "label": "vehicle", "difficult": False},
                {"id": 2, "label": "license_plate", "difficult": False},
                {"id": 4, "label": "vehicle"},
            ]},
        ]
    }  # fmt: skip
    assert groundtruth.distinct_objects(truth) == {"vehicle": 2, "license_plate": 1}
