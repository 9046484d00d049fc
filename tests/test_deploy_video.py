"""Video annotation: the IoU tracker, the decode/infer/encode pipeline, broken inputs."""

import argparse
import subprocess
import time

import cv2
import numpy as np
import pytest

import model_helpers
from platelab import model as model_lib
from platelab.collect.probe import MediaError, probe
from platelab.deploy import export, video
from platelab.ffmpeg import ffmpeg_exe


class MovingBoxes:
    """A stand-in predictor: one vehicle and its plate moving ``step`` px right per call
    (4 px a frame when called on every frame; ``delay`` seconds a call)."""

    score_threshold = 0.3

    def __init__(self, step=4, delay=0.0):
        self.calls = 0
        self.step = step
        self.delay = delay

    def predict(self, images, score_threshold=None):
        results = []
        for _image in images:
            time.sleep(self.delay)
            x = 10 + self.step * self.calls
            self.calls += 1
            results.append(
                {
                    "boxes": np.array([[x, 20, x + 40, 50], [x + 12, 42, x + 28, 48]], np.float32),
                    "scores": np.array([0.9, 0.8], np.float32),
                    "classes": np.array([1, 2]),
                    "labels": ["vehicle", "license_plate"],
                }
            )
        return results


def _make_video(path, frames=30, size="160x120", faststart=True):
    command = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"]
    command += ["-i", f"testsrc2=size={size}:rate=30:duration={frames / 30:g}"]
    command += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    command += ["-movflags", "+faststart"] if faststart else []
    subprocess.run([*command, str(path)], check=True)
    return path


def _truncate(path, fraction=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


# ---------------------------------------------------------------------------- tracker


def test_tracker_keeps_the_id_of_a_moving_box():
    tracker = video.IouTracker(iou_threshold=0.3, max_age=2, min_hits=1)
    ids = []
    for step in range(10):
        x = 10 + 5 * step
        ids.append(tracker.update([[x, 10, x + 40, 30]], ["vehicle"])[0])
    assert ids == [1] * 10
    assert tracker.counts == {"vehicle": 1}


def test_tracker_gives_a_new_id_after_max_age():
    tracker = video.IouTracker(max_age=2, min_hits=1)
    box = [[10, 10, 50, 30]]
    assert tracker.update(box, ["vehicle"]) == [1]
    for _ in range(2):  # unseen for max_age frames: the track survives
        assert tracker.update([], []) == []
    assert tracker.update(box, ["vehicle"]) == [1]
    for _ in range(3):  # unseen for more than max_age frames: the track ends
        tracker.update([], [])
    assert tracker.update(box, ["vehicle"]) == [2]
    assert tracker.counts == {"vehicle": 2}


def test_tracker_counts_per_class_and_waits_for_min_hits():
    tracker = video.IouTracker(min_hits=3)
    boxes = [[0, 0, 40, 20], [10, 12, 22, 18], [100, 100, 140, 120]]
    labels = ["vehicle", "license_plate", "vehicle"]
    assert tracker.update(boxes, labels) == [None, None, None]
    assert tracker.update(boxes, labels) == [None, None, None]
    assert tracker.update(boxes, labels) == [1, 2, 3]
    # A one-frame false detection never gets an id nor a count.
    assert tracker.update([*boxes, [60, 60, 70, 70]], [*labels, "license_plate"])[3] is None
    assert tracker.counts == {"vehicle": 2, "license_plate": 1}
    # The same box under another class is another object.
    tracker = video.IouTracker(min_hits=1)
    assert tracker.update([[0, 0, 10, 10], [0, 0, 10, 10]], ["vehicle", "license_plate"]) == [1, 2]
    with pytest.raises(ValueError, match="2 boxes but 1 labels"):
        tracker.update([[0, 0, 1, 1], [1, 1, 2, 2]], ["vehicle"])


def test_tracker_keeps_tracks_alive_on_weak_detections_and_starts_them_on_strong_ones():
    tracker = video.IouTracker(min_hits=2, max_age=1, score_threshold=0.5, low_score=0.2)
    box = [[10, 10, 50, 30]]
    assert tracker.update(box, ["vehicle"], scores=[0.9]) == [None]
    assert tracker.update(box, ["vehicle"], scores=[0.8]) == [1]
    # Three frames of weak detections (0.3): without them the track would have ended
    # after max_age 1; with them it keeps its id.
    for _ in range(3):
        assert tracker.update(box, ["vehicle"], scores=[0.3]) == [1]
    assert tracker.update(box, ["vehicle"], scores=[0.9]) == [1]
    # A weak detection with no track starts nothing, nor does a strong one below the
    # birth score (threshold + 0.1); one at it does.
    other = [[200, 200, 240, 220]]
    assert tracker.update(other, ["vehicle"], scores=[0.3]) == [None]
    assert tracker.update(other, ["vehicle"], scores=[0.55]) == [None]
    assert all(track["hits"] >= 2 for track in tracker.tracks)  # nothing new started
    assert tracker.update(other, ["vehicle"], scores=[0.65]) == [None]
    assert tracker.update(other, ["vehicle"], scores=[0.65]) == [2]
    assert tracker.counts == {"vehicle": 2}
    # The strong detections are matched first: a weak box on the same track loses it.
    tracker = video.IouTracker(min_hits=1, score_threshold=0.5)
    assert tracker.update(box, ["vehicle"], scores=[0.9]) == [1]
    assert tracker.update([box[0], [12, 10, 52, 30]], ["vehicle"] * 2, scores=[0.3, 0.9]) == [
        None,
        1,
    ]
    with pytest.raises(ValueError, match="no score_threshold"):
        video.IouTracker().update(box, ["vehicle"], scores=[0.9])
    with pytest.raises(ValueError, match="1 boxes but 2 scores"):
        tracker.update(box, ["vehicle"], scores=[0.9, 0.1])


def test_tracker_starts_no_track_on_a_box_mostly_inside_or_over_a_tracked_one():
    whole, front = [0, 0, 200, 100], [0, 0, 90, 100]  # IoU 0.45: NMS at 0.5 keeps both
    elsewhere = [300, 0, 400, 100]
    tracker = video.IouTracker(min_hits=1)  # birth_overlap 0.6
    assert tracker.update([whole], ["vehicle"]) == [1]
    # The front half of the same vehicle: covered by the track, no second track.
    assert tracker.update([whole, front], ["vehicle"] * 2) == [1, None]
    # Another class over it (its plate) and a vehicle elsewhere still start tracks.
    assert tracker.update(
        [whole, [40, 60, 80, 80], elsewhere], ["vehicle", "license_plate", "vehicle"]
    ) == [1, 2, 3]
    # Within one frame too: of two untracked boxes, one over the other, the first
    # (the detector's order: by score) starts a track.
    assert tracker.update([[0, 300, 90, 400], [0, 300, 200, 400]], ["vehicle"] * 2) == [4, None]
    assert tracker.counts == {"vehicle": 3, "license_plate": 1}
    # Off (None): the half box starts a track of its own, as before.
    tracker = video.IouTracker(min_hits=1, birth_overlap=None)
    tracker.update([whole], ["vehicle"])
    assert tracker.update([whole, front], ["vehicle"] * 2) == [1, 2]
    with pytest.raises(ValueError, match="birth_overlap"):
        video.IouTracker(birth_overlap=1.5)


def test_tracker_follows_a_small_fast_box_through_its_buffer():
    # A plate 8 px wide moving 7 px a frame: IoU 0.07 with its last box, 0.55 once
    # both are pushed out by 8 px a side.
    def run(**options):
        tracker = video.IouTracker(min_hits=1, **options)
        return [
            tracker.update([[7 * step, 0, 7 * step + 8, 8]], ["license_plate"])[0]
            for step in range(6)
        ]

    assert run() == [1] * 6  # buffer 0.1, buffer_px 8
    assert run(buffer=0.0, buffer_px=0.0) == [1, 2, 3, 4, 5, 6]
    # Large boxes: 10 % of the size a side (a 100 px box 30 px on: IoU 0.54 -> 0.60).
    tracker = video.IouTracker(min_hits=1, iou_threshold=0.58)
    assert tracker.update([[0, 0, 100, 100]], ["vehicle"]) == [1]
    assert tracker.update([[30, 0, 130, 100]], ["vehicle"]) == [1]
    with pytest.raises(ValueError, match="buffer"):
        video.IouTracker(buffer=-0.1)


def test_tracker_coasts_a_missed_track_at_its_velocity():
    # A 40 px box moving 20 px a frame, unseen for 3 frames, comes back 80 px on: no
    # overlap with where it was last seen, an exact one with where it has coasted to.
    def ids(**options):
        tracker = video.IouTracker(min_hits=1, buffer=0.0, buffer_px=0.0, **options)
        seen = []
        for step in range(8):
            x = 20 * step
            visible = step not in (3, 4, 5)
            boxes = [[x, 0, x + 40, 20]] if visible else []
            result = tracker.update(boxes, ["vehicle"] * len(boxes))
            seen += result
        return seen

    assert ids() == [1, 1, 1, 2, 2]
    assert ids(coast=True) == [1, 1, 1, 1, 1]


def test_tracker_matches_plates_from_a_lower_iou_than_vehicles():
    # Two 10 px boxes 7 px apart (no buffer): IoU 30 / 170 = 0.18, under the vehicles'
    # 0.2 and over the plates' 0.1.
    def ids(label, **options):
        tracker = video.IouTracker(min_hits=1, buffer=0.0, buffer_px=0.0, **options)
        return [tracker.update([[x, 0, x + 10, 10]], [label])[0] for x in (0, 7)]

    assert video.CLASS_IOU_THRESHOLD == {"license_plate": 0.1}
    assert ids("license_plate") == [1, 1]
    assert ids("vehicle") == [1, 2]
    assert ids("license_plate", class_iou_threshold={}) == [1, 2]  # one threshold for all
    assert ids("vehicle", class_iou_threshold={"vehicle": 0.15}) == [1, 1]
    with pytest.raises(ValueError, match="IoU threshold of license_plate must be in"):
        video.IouTracker(class_iou_threshold={"license_plate": 1.5})


def test_tracker_matches_greedily_by_iou():
    tracker = video.IouTracker(iou_threshold=0.1, min_hits=1)
    assert tracker.update([[0, 0, 10, 10], [8, 0, 18, 10]], ["vehicle"] * 2) == [1, 2]
    # Both detections overlap track 1; the better overlap wins it, the other takes track 2.
    assert tracker.update([[7, 0, 17, 10], [1, 0, 11, 10]], ["vehicle"] * 2) == [2, 1]


def test_tracker_carries_detections_at_their_velocity_between_detector_runs():
    tracker = video.IouTracker(min_hits=1)
    assert tracker.update([[0, 0, 40, 20]], ["vehicle"]) == [1]
    np.testing.assert_allclose(tracker.carry(2), [[0, 0, 40, 20]])  # no velocity yet: held
    # Detections every 3 frames, 4 px a frame: 12 px apart, still overlapping.
    assert tracker.update([[12, 0, 52, 20]], ["vehicle"], frames=3) == [1]
    np.testing.assert_allclose(tracker.carry(1), [[16, 0, 56, 20]])
    np.testing.assert_allclose(tracker.carry(2), [[20, 0, 60, 20]])
    # 10 frames later it is 40 px on, no overlap with where it was: matched where its
    # velocity took it, so it keeps its id.
    assert tracker.update([[52, 0, 92, 20]], ["vehicle"], frames=10) == [1]
    assert tracker.counts == {"vehicle": 1}
    # Frame by frame, a track is looked for where it was last seen (as before); plain IoU
    # (no buffer), as the figures below.
    tracker = video.IouTracker(iou_threshold=0.1, min_hits=1, buffer=0.0, buffer_px=0.0)
    tracker.update([[0, 0, 40, 20]], ["vehicle"])
    assert tracker.update([[30, 0, 70, 20]], ["vehicle"], frames=3) == [1]  # 10 px a frame
    # IoU 0.18 with [40, 80], where its velocity would put it; 0.03 with [30, 70]
    assert tracker.update([[68, 0, 108, 20]], ["vehicle"]) == [2]
    # max_age counts frames, also when detections come every few frames.
    tracker = video.IouTracker(max_age=5, min_hits=1)
    tracker.update([[0, 0, 40, 20]], ["vehicle"])
    tracker.update([], [], frames=5)  # unseen for 5 frames: survives
    assert tracker.update([[0, 0, 40, 20]], ["vehicle"]) == [1]
    tracker.update([], [], frames=3)
    tracker.update([], [], frames=3)  # unseen for 6 frames: ends
    assert tracker.update([[0, 0, 40, 20]], ["vehicle"], frames=3) == [2]
    with pytest.raises(ValueError, match="frames since the previous update must be >= 1"):
        tracker.update([], [], frames=0)


def test_auto_picks_the_smallest_interval_that_keeps_real_time():
    assert video.MODEL_SHARE == 0.6  # of a frame's time: 20 ms at 30 fps
    assert video.choose_detect_every(0.010, 30) == 1
    assert video.choose_detect_every(0.6 / 30, 30) == 1
    assert video.choose_detect_every(0.025, 30) == 2
    assert video.choose_detect_every(0.036, 30) == 2
    assert video.choose_detect_every(0.045, 30) == 3
    assert video.choose_detect_every(0.036, 15) == 1
    assert video.choose_detect_every(5.0, 30) == video.MAX_DETECT_EVERY
    assert video.parse_detect_every("auto") == "auto" and video.parse_detect_every("3") == 3
    for bad in ("0", "-2", "1.5", "often"):
        with pytest.raises(ValueError, match="--detect-every must be 'auto' or a whole number"):
            video.parse_detect_every(bad)


def test_video_frames_prepare_as_their_rgb_copies():
    """The video hands the predictor BGR frames seen as RGB (a reversed view): the
    network input is the RGB copy's, written into a given array or a new one."""
    rng = np.random.default_rng(5)
    frame_bgr = rng.integers(0, 256, (1080, 1920, 3)).astype(np.uint8)
    geometry = model_lib.InputGeometry(960, 576)
    expected = geometry.prepare(np.ascontiguousarray(frame_bgr[:, :, ::-1]))
    assert expected[:540].max() > 200 and expected[540:].max() == model_lib.PAD_VALUE
    np.testing.assert_array_equal(geometry.prepare(frame_bgr[:, :, ::-1]), expected)
    slot = np.full((576, 960, 3), 77, np.float32)
    assert geometry.prepare(frame_bgr[:, :, ::-1], out=slot) is slot
    np.testing.assert_array_equal(slot, expected)


# ---------------------------------------------------------------------------- pipeline


def _drawn_objects(monkeypatch):
    """Records the objects drawn on each frame."""
    drawn = []
    draw = video.draw_frame

    def recording(frame, objects, counts=None):
        drawn.append([dict(item) for item in objects])
        return draw(frame, objects, counts)

    monkeypatch.setattr(video, "draw_frame", recording)
    return drawn


def test_detecting_every_frame_draws_each_frames_detections(tmp_path, monkeypatch):
    """--detect-every 1 is the annotation as it always was: every frame's detections,
    with the ids of a tracker fed every frame."""
    source = _make_video(tmp_path / "in.mp4", frames=12)
    drawn = _drawn_objects(monkeypatch)
    result = video.annotate_video(
        MovingBoxes(), source, tmp_path / "out.mp4", track=True, progress=False, detect_every=1
    )
    reference, tracker = MovingBoxes(), video.IouTracker()
    expected = []
    for _ in range(12):
        found = reference.predict([None])[0]
        ids = tracker.update(found["boxes"], found["labels"])
        expected.append(
            [
                {"label": label, "bbox": box.tolist(), "score": float(score), "track_id": ident}
                for box, score, label, ident in zip(
                    found["boxes"], found["scores"], found["labels"], ids, strict=True
                )
            ]
        )
    assert drawn == expected
    assert (result.detect_every, result.detected_frames, result.detect_every_auto) == (1, 12, False)
    assert "; detector on every frame" in result.summary()


def test_detecting_every_third_frame_carries_the_tracked_boxes(tmp_path, monkeypatch):
    source = _make_video(tmp_path / "in.mp4", frames=30)
    drawn = _drawn_objects(monkeypatch)
    predictor = MovingBoxes(step=6)  # called every 3rd frame: 2 px a frame
    result = video.annotate_video(
        predictor, source, tmp_path / "out.mp4", track=True, progress=False, detect_every=3
    )
    assert predictor.calls == 10 and len(drawn) == 30
    assert (result.detect_every, result.detected_frames) == (3, 10)
    assert result.detections == {"vehicle": 10, "license_plate": 10}
    assert result.tracks == {"vehicle": 1, "license_plate": 1}
    assert "detector on every 3rd frame only (10 of 30; the tracker carried" in result.summary()
    for index, objects in enumerate(drawn):
        vehicle = next(item for item in objects if item["label"] == "vehicle")
        assert len(objects) == 2 and vehicle["score"] == pytest.approx(0.9)
        # held until a second detection gives a velocity, then where the object is
        x = 10 if index < 3 else 10 + 2 * index
        assert vehicle["bbox"] == pytest.approx([x, 20, x + 40, 50]), index
        # confirmed at the fifth detection (frame 12; min_hits 5), the ids stay on the
        # carried boxes
        assert vehicle["track_id"] == (1 if index >= 12 else None), index
    assert result.track_log is None  # kept only when asked for

    # log_tracks keeps each tracked box drawn, on detected and carried frames alike.
    logged = video.annotate_video(
        MovingBoxes(step=6), source, tmp_path / "log.mp4", track=True, progress=False,
        detect_every=3, log_tracks=True,
    )  # fmt: skip
    assert [entry[0] for entry in logged.track_log] == [f for f in range(12, 30) for _ in (0, 1)]
    assert {(track, label) for _, track, label, _ in logged.track_log} == {
        (1, "vehicle"), (2, "license_plate")
    }  # fmt: skip
    assert logged.track_log[-2][3] == pytest.approx([68, 20, 108, 50])  # frame 29, carried

    # Without --track the boxes are carried the same, with no ids.
    drawn.clear()
    result = video.annotate_video(
        MovingBoxes(step=6), source, tmp_path / "plain.mp4", progress=False, detect_every=3
    )
    assert result.tracks is None and len(drawn) == 30
    assert all(len(objects) == 2 and "track_id" not in objects[0] for objects in drawn)
    assert drawn[29][0]["bbox"] == pytest.approx([68, 20, 108, 50])


class FadingVehicle(MovingBoxes):
    """A vehicle scoring 0.9 but 0.25 on calls 6-8, and a lone 0.25 box that is noise;
    like a real predictor, it returns only what scores at least ``score_threshold``."""

    score_threshold = 0.5

    def predict(self, images, score_threshold=None):
        results = []
        for _image in images:
            x = 10 + self.step * self.calls
            score = 0.25 if 6 <= self.calls <= 8 else 0.9
            self.calls += 1
            boxes = np.array([[x, 20, x + 40, 50], [100, 80, 140, 110]], np.float32)
            scores = np.array([score, 0.25], np.float32)
            keep = scores >= (score_threshold or 0.0)
            results.append(
                {
                    "boxes": boxes[keep],
                    "scores": scores[keep],
                    "classes": np.array([1, 1])[keep],
                    "labels": [
                        label for label, kept in zip(["vehicle"] * 2, keep, strict=True) if kept
                    ],
                }
            )
        return results


def test_tracking_draws_weak_detections_of_confirmed_tracks_only(tmp_path, monkeypatch):
    source = _make_video(tmp_path / "in.mp4", frames=12)
    drawn = _drawn_objects(monkeypatch)
    result = video.annotate_video(
        FadingVehicle(), source, tmp_path / "out.mp4", track=True, progress=False
    )
    # The vehicle's three weak frames are drawn, with its id; the lone weak box never.
    assert [len(objects) for objects in drawn] == [1] * 12
    assert [objects[0]["track_id"] for objects in drawn] == [None] * 4 + [1] * 8
    assert [round(objects[0]["score"], 2) for objects in drawn[6:9]] == [0.25] * 3
    assert result.tracks == {"vehicle": 1}
    # Without tracking only the threshold counts: the weak frames draw nothing.
    drawn.clear()
    video.annotate_video(FadingVehicle(), source, tmp_path / "plain.mp4", progress=False)
    assert [len(objects) for objects in drawn] == [1] * 6 + [0] * 3 + [1] * 3


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _simulate(control, clock, frames, other, model):
    """Frames taking ``other`` seconds each, plus ``model`` on those the detector runs on."""
    gap = None
    for _ in range(frames):
        detecting = gap is None or gap >= control.interval
        gap = 1 if detecting else gap + 1
        clock.now += other + (model if detecting else 0.0)
        control.frame_done(model if detecting else None)
    return dict(control.frames_at)


def test_auto_interval_follows_the_frame_rate_reached():
    # 30 fps, aim 33 fps (30.3 ms a frame); decisions after each 30 frames.
    # A busy machine: 14 ms a frame besides a 40 ms model. Every 2nd frame gives
    # 34 ms a frame: N goes to 3 (27.3 ms) and stays (back at 2 it would be 34 again).
    clock = FakeClock()
    busy = video.AutoInterval(2, 30, clock=clock)
    assert _simulate(busy, clock, 151, 0.014, 0.040) == {2: 31, 3: 120}
    # An idle machine: 5 ms besides the model. N=3 gives 18.3 ms, and every 2nd frame
    # would give 25 ms, in time: N goes to 2 and stays (every frame: 45 ms).
    clock = FakeClock()
    idle = video.AutoInterval(3, 30, clock=clock)
    assert _simulate(idle, clock, 151, 0.005, 0.040) == {3: 31, 2: 120}
    assert idle.most_used() == 2 and idle.model_seconds == pytest.approx(0.040)
    # Decoding or encoding is the bottleneck (40 ms a frame besides an 8 ms model):
    # skipping frames would not help, so N stays 1.
    clock = FakeClock()
    bound = video.AutoInterval(1, 30, clock=clock)
    assert _simulate(bound, clock, 151, 0.040, 0.008) == {1: 151}
    # A model far too slow: N rises once a window, never past the limit.
    clock = FakeClock()
    slow = video.AutoInterval(1, 10, limit=3, clock=clock)
    assert _simulate(slow, clock, 41, 0.010, 0.400) == {1: 11, 2: 10, 3: 20}


class SlowingBoxes(MovingBoxes):
    """Fast at start-up (the warm-up and timing runs), then 50 ms a call: a busy machine."""

    def predict(self, images, score_threshold=None):
        self.delay = 0.005 if self.calls < 1 + video.MODEL_TIMING_RUNS else 0.05
        return super().predict(images, score_threshold)


def test_auto_interval_rises_when_the_video_falls_behind(tmp_path):
    source = _make_video(tmp_path / "in.mp4", frames=45)
    result = video.annotate_video(
        SlowingBoxes(), source, tmp_path / "out.mp4", progress=False, detect_every="auto"
    )
    # Every frame at start-up (5 ms); 50 ms a frame is behind 30 fps, so after the
    # first window (frames 1-30) the detector skips frames.
    assert result.frames == 45 and result.intervals[1] == 31 and max(result.intervals) >= 2
    assert sum(result.intervals.values()) == 45 and result.detected_frames < 45
    assert result.detect_every == 1  # the N most frames ran at
    assert f"detector on {result.detected_frames} of 45 frames, every frame to every" in (
        result.summary()
    )
    assert "frames at each interval: 1 31, " in result.summary()


def test_auto_interval_is_chosen_from_the_model_time_and_stated(tmp_path, capsys):
    source = _make_video(tmp_path / "in.mp4", frames=12)
    slow = video.annotate_video(
        MovingBoxes(delay=0.025), source, tmp_path / "slow.mp4", progress=False, detect_every="auto"
    )
    # 25 ms a frame against 0.6 of a 30 fps frame (20 ms): every 2nd frame
    assert slow.detect_every_auto and slow.model_seconds >= 0.025
    assert slow.detect_every == video.choose_detect_every(slow.model_seconds, 30) == 2
    assert slow.detected_frames == 6
    assert "detector on every 2nd frame only (6 of 12" in slow.summary()
    assert "chosen by --detect-every auto: the model took" in slow.summary()
    fast = video.annotate_video(
        MovingBoxes(), source, tmp_path / "fast.mp4", progress=False, detect_every="auto"
    )
    assert (fast.detect_every, fast.detected_frames) == (1, 12)
    assert "detector on every frame, chosen by --detect-every auto" in fast.summary()

    parser = video.add_video_arguments(argparse.ArgumentParser())
    arguments = ["--model", str(tmp_path / "none"), "--input", str(source)]
    arguments += ["--output", str(tmp_path / "out.mp4")]
    assert parser.parse_args(arguments).detect_every == "auto"
    args = parser.parse_args([*arguments, "--detect-every", "0"])
    with pytest.raises(ValueError, match="--detect-every must be 'auto' or a whole") as raised:
        args.handler(args)
    assert "\n" not in str(raised.value)


def test_annotated_video_has_every_frame_as_h264(tmp_path):
    source = _make_video(tmp_path / "in.mp4", frames=30)
    result = video.annotate_video(
        MovingBoxes(), source, tmp_path / "out.mp4", track=True, progress=False
    )
    info = probe(tmp_path / "out.mp4")
    assert (info["codec"], info["pixel_format"]) == ("h264", "yuv420p")
    assert info["frame_count"] == result.frames == result.expected_frames == 30
    assert (info["display_width"], info["display_height"]) == (160, 120)
    assert result.warning is None and result.stopped_at_frame is None
    assert set(result.timings) == set(video.STAGES)
    # min_hits 5: both objects confirmed, one unique vehicle and one unique plate
    assert result.tracks == {"vehicle": 1, "license_plate": 1}
    assert result.detections == {"vehicle": 30, "license_plate": 30}
    assert "30 frames" in result.summary() and "unique tracks" in result.summary()
    # Boxes are drawn: the annotated frame differs from the source where the vehicle is.
    first = cv2.VideoCapture(str(tmp_path / "out.mp4")).read()[1]
    plain = cv2.VideoCapture(str(source)).read()[1]
    assert np.abs(first.astype(int) - plain.astype(int))[20:50, 10:50].max() > 100
    assert not list(tmp_path.glob(".*tmp*")), "temporary files left behind"

    figure = video.contact_sheet(result, count=4, columns=2)
    assert len([axis for axis in figure.axes if axis.images]) == 4


def _x264_options(path):
    """The settings x264 writes into its stream (an SEI message: '... options: cabac=0 ...')."""
    data = path.read_bytes()
    start = data.index(b"options: ")
    return dict(
        item.split("=", 1)
        for item in data[start + 9 : data.index(b"\x00", start)].decode().split()
        if "=" in item
    )


def test_encoder_settings_default_and_chosen(tmp_path):
    source = _make_video(tmp_path / "in.mp4", frames=10)
    video.annotate_video(MovingBoxes(), source, tmp_path / "default.mp4", progress=False)
    options = _x264_options(tmp_path / "default.mp4")
    assert (video.DEFAULT_PRESET, video.DEFAULT_CRF) == ("ultrafast", 26)
    assert options["crf"] == "26.0" and options["cabac"] == "0" and options["subme"] == "0"
    video.annotate_video(
        MovingBoxes(), source, tmp_path / "slow.mp4", progress=False, preset="veryfast", crf=23
    )
    options = _x264_options(tmp_path / "slow.mp4")
    assert options["crf"] == "23.0" and options["cabac"] == "1" and options["subme"] == "2"

    parser = video.add_video_arguments(argparse.ArgumentParser())
    arguments = ["--model", str(tmp_path / "none"), "--input", str(source)]
    arguments += ["--output", str(tmp_path / "out.mp4")]
    parsed = parser.parse_args(arguments)
    assert (parsed.preset, parsed.crf) == (video.DEFAULT_PRESET, video.DEFAULT_CRF)
    with pytest.raises(ValueError, match="--crf must be between 0 and 51"):
        parsed.handler(parser.parse_args([*arguments, "--crf", "60"]))
    with pytest.raises(SystemExit):
        parser.parse_args([*arguments, "--preset", "warp"])


def test_truncated_video_keeps_what_was_decoded(tmp_path):
    source = _truncate(_make_video(tmp_path / "in.mp4", frames=60, size="320x240"))
    result = video.annotate_video(MovingBoxes(), source, tmp_path / "out.mp4", progress=False)
    assert 0 < result.frames < 60
    assert result.expected_frames == 60
    assert result.stopped_at_frame == result.frames
    assert result.stopped_at_time == pytest.approx(result.frames / 30, abs=1e-3)
    assert f"stopped at frame {result.frames}" in result.warning
    assert probe(tmp_path / "out.mp4")["frame_count"] == result.frames


def test_unreadable_video_is_a_media_error(tmp_path):
    source = _truncate(_make_video(tmp_path / "in.mp4", faststart=False))  # no moov atom
    with pytest.raises(MediaError, match="in.mp4"):
        video.annotate_video(MovingBoxes(), source, tmp_path / "out.mp4", progress=False)
    with pytest.raises(MediaError):
        video.annotate_video(MovingBoxes(), tmp_path / "missing.mp4", tmp_path / "out.mp4")
    assert not (tmp_path / "out.mp4").exists()
    assert not list(tmp_path.glob(".*tmp*"))


def test_output_in_a_missing_folder_is_a_one_line_error(tmp_path):
    source = _make_video(tmp_path / "in.mp4", frames=3)
    target = tmp_path / "missing" / "out.mp4"
    with pytest.raises(ValueError, match="output folder .*missing does not exist") as raised:
        video.annotate_video(MovingBoxes(), source, target, progress=False)
    assert "\n" not in str(raised.value)
    with pytest.raises(ValueError, match="unsupported output type .avi"):
        video.annotate_video(MovingBoxes(), source, tmp_path / "out.avi", progress=False)
    with pytest.raises(ValueError, match="overwrite the input"):
        video.annotate_video(MovingBoxes(), source, source, progress=False)

    # The command checks the output before loading any model.
    parser = video.add_video_arguments(argparse.ArgumentParser())
    args = parser.parse_args(
        ["--model", str(tmp_path / "no-model"), "--input", str(source), "--output", str(target)]
    )
    with pytest.raises(ValueError, match="does not exist"):
        args.handler(args)


@pytest.mark.slow
def test_trained_model_counts_one_vehicle_and_one_plate(tmp_path, trained_run, capsys):
    """A synthetic vehicle crossing the frame: detected, tracked and counted once."""
    rng = np.random.default_rng(3)
    background = rng.integers(0, 60, (192, 256, 3)).astype(np.uint8)
    command = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo"]
    command += ["-pix_fmt", "rgb24", "-s", "256x192", "-framerate", "15", "-i", "pipe:0"]
    command += ["-c:v", "libx264", "-preset", "ultrafast", "-crf", "12", "-pix_fmt", "yuv420p"]
    frames = []
    for step in range(24):
        frame = background.copy()
        x = 20 + 5 * step
        cv2.rectangle(frame, (x, 60), (x + 109, 113), (60, 120, 230), -1)
        cv2.rectangle(frame, (x + 37, 100), (x + 72, 109), (250, 250, 250), -1)
        frames.append(frame.tobytes())
    subprocess.run([*command, str(tmp_path / "in.mp4")], input=b"".join(frames), check=True)
    parser = video.add_video_arguments(argparse.ArgumentParser())
    args = parser.parse_args(
        ["--model", str(trained_run), "--input", str(tmp_path / "in.mp4")]
        + ["--output", str(tmp_path / "out.mp4"), "--track", "--threshold", "0.5"]
    )
    assert args.handler(args) == 0
    line = capsys.readouterr().out
    assert "annotated 24 frames" in line
    assert "unique tracks: vehicle 1, license_plate 1" in line
    predictor = export.load_predictor(trained_run)
    result = video.annotate_video(predictor, tmp_path / "in.mp4", tmp_path / "again.mp4")
    assert result.detections["vehicle"] >= 20


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    return model_helpers.trained_run_folder(tmp_path_factory.mktemp("trained") / "run")
