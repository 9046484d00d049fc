"""Annotating videos with a detector: boxes, labels, scores and, optionally, track ids.

:func:`annotate_video` runs three stages at once, joined by small queues::

    decode thread   ffmpeg -i VIDEO -> raw BGR frames (pipe)
    main thread     preprocess -> infer -> postprocess -> track -> draw
    encode thread   raw BGR frames (pipe) -> ffmpeg libx264, yuv420p, mp4

so decoding and encoding (in ffmpeg processes) overlap with the model, and times
each stage (the :class:`VideoResult`'s ``timings``). The output is written to a
temporary name beside the target and renamed into place when complete; audio is
not copied. A video that ends early or is corrupt half-way gives an output of the
frames decoded and a ``warning`` saying where it stopped.

With ``track=True`` an :class:`IouTracker` links detections from frame to frame
(per class, greedy IoU matching) and the frames show each confirmed track's id and
the running count of unique vehicles and plates.

With ``detect_every=N`` the detector runs on every N-th frame only (frames 0, N,
2N, ...), as NVIDIA DeepStream's ``nvinfer`` ``interval`` does: on the frames in
between, the tracker carries the last detections forward at their tracks' velocity
(:meth:`IouTracker.carry`). ``detect_every="auto"`` times the model on the first
frame and starts from the smallest N that keeps up with the video's frame rate
(:func:`choose_detect_every`); then :class:`AutoInterval` watches the frame rate
reached, a second of video at a time, and raises or lowers N to stay a little ahead
of real time on a busy or an idle machine. The N used is stated in
:meth:`VideoResult.summary`.

ffmpeg is the imageio-ffmpeg binary (:func:`platelab.ffmpeg.ffmpeg_exe`).
"""

import argparse
import contextlib
import dataclasses
import logging
import math
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from fractions import Fraction
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from platelab import LABELS, visualize
from platelab.boxes import iou_matrix, overlap_matrix
from platelab.collect.probe import MediaError, probe
from platelab.ffmpeg import FFmpegError, ffmpeg_exe

logger = logging.getLogger(__name__)

CONTAINERS = {".mp4": "mp4", ".mov": "mov", ".m4v": "mp4", ".mkv": "matroska"}
"""Output suffixes and their ffmpeg muxers (H.264 in each)."""
STAGES = ("decode", "preprocess", "infer", "postprocess", "track", "draw", "encode")
QUEUED_FRAMES = 8
DETECT_EVERY_DEFAULT = "auto"
"""``platelab video``'s default: the detector on every N-th frame, N chosen to keep real time."""
MODEL_SHARE = 0.6
"""``detect_every="auto"``: the model may take this share of a frame's time, on average.

The rest goes to decoding, drawing and encoding, which share the CPUs: at 30 fps a
0.6 share leaves the model 20 ms a frame on average.
``benchmarks/bench_deploy.py --detect-every auto,1,2,3`` measures the frame rate each
choice gives (the README's "Measured here" table holds its figures).
"""
MAX_DETECT_EVERY = 8
"""``detect_every="auto"`` never skips more: a slower model gives a video below real time."""
REAL_TIME_MARGIN = 1.1
"""``detect_every="auto"`` aims at this multiple of the video's frame rate (33 fps at 30).

The start-up timing (:func:`time_model`) sees the model alone; during the video it
shares the CPUs with decoding and encoding, and with whatever else the machine runs.
:class:`AutoInterval` corrects N from the frame rate actually reached.
"""
AUTO_WINDOW_SECONDS = 1.0
""":class:`AutoInterval` reconsiders N after each such span of video (30 frames at 30 fps)."""
AUTO_MIN_MODEL_SHARE = 0.25
""":class:`AutoInterval` skips more frames only while the detector takes at least this
share of the time: when decoding or encoding is the bottleneck, skipping does not help."""
MODEL_TIMING_RUNS = 5
DEFAULT_PRESET = "ultrafast"
DEFAULT_CRF = 26
"""libx264 settings of the annotated video: a preview, written as fast as the model runs.

ultrafast takes much less encoding CPU than the slower presets, which leaves the
CPUs to the model; at CRF 26 its quality is about that of veryfast at CRF 23, in
larger files. ``platelab video --preset veryfast`` (or ``--crf``) trades speed for
size. ``benchmarks/bench_deploy.py --encoder-sweep`` measures presets and CRFs (the
README's "Measured here" table holds its figures).
"""
X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
)
COUNT_COLOR_BGR = (255, 255, 255)
_END = object()


@dataclasses.dataclass
class VideoResult:
    """What :func:`annotate_video` did.

    Attributes:
        input: the input video
        output: the annotated video written
        frames: frames read, annotated and written
        expected_frames: frames the input should have (from its header)
        width: frame width in pixels
        height: frame height in pixels
        fps: the input's (and output's) frame rate
        seconds: wall time of the whole run
        timings: seconds spent in each stage (:data:`STAGES`); the stages overlap, so
            they add up to more than ``seconds``
        detections: the detections drawn, per label, over the frames the detector ran on
            (with tracking, the weak ones of confirmed tracks included)
        tracks: with tracking, unique confirmed tracks per label (None otherwise)
        detect_every: the detector ran on every ``detect_every``-th frame (1: on all)
        detected_frames: frames the detector ran on
        detect_every_auto: ``detect_every`` was chosen by ``"auto"``; it is then the N
            that the most frames ran at
        model_seconds: with ``"auto"``, the model's time per frame measured at start-up
        intervals: with ``"auto"``, frames per N (``{2: 310, 3: 290}``: N changed as
            :class:`AutoInterval` followed the frame rate); None otherwise
        warning: why the output has fewer frames than expected (None when complete)
        stopped_at_frame: the frame index at which the input stopped early (or None)
        stopped_at_time: the same in seconds
        track_log: with ``log_tracks``, ``(frame index, track id, label, [x1, y1, x2,
            y2])`` for every box drawn with a track id, frames counted from 0 (for
            :func:`platelab.groundtruth.track_breakdown`); None otherwise
    """

    input: str
    output: str
    frames: int
    expected_frames: int
    width: int
    height: int
    fps: float
    seconds: float
    timings: dict
    detections: dict
    tracks: dict | None = None
    detect_every: int = 1
    detected_frames: int = 0
    detect_every_auto: bool = False
    model_seconds: float | None = None
    intervals: dict | None = None
    warning: str | None = None
    stopped_at_frame: int | None = None
    stopped_at_time: float | None = None
    track_log: list | None = None

    @property
    def processing_fps(self):
        """Frames annotated per second of wall time."""
        return self.frames / self.seconds if self.seconds else 0.0

    def inference(self):
        """One sentence: which frames the detector ran on, and why (for reports)."""
        used = sorted(self.intervals or {self.detect_every: self.frames})
        carried = "the tracker carried the boxes in between"
        if used == [1]:
            text = "detector on every frame"
        elif len(used) == 1:
            text = (
                f"detector on every {_ordinal(used[0])} frame only "
                f"({self.detected_frames} of {self.frames}; {carried})"
            )
        else:
            low, high = (_every(number) for number in (used[0], used[-1]))
            at = ", ".join(f"{number} {self.intervals[number]}" for number in used)
            text = (
                f"detector on {self.detected_frames} of {self.frames} frames, every {low} to "
                f"every {high} (frames at each interval: {at}; {carried})"
            )
        if self.detect_every_auto:
            text += (
                f", chosen by --detect-every auto: the model took {self.model_seconds * 1e3:.1f}"
                f" ms a frame at start-up against {1e3 / self.fps:.1f} ms a frame at "
                f"{self.fps:g} fps, and N followed the frame rate reached (aim: "
                f"{REAL_TIME_MARGIN * self.fps:g} fps)"
            )
        return text

    def summary(self):
        """One line: frames, speed, stage times, which frames were inferred, and counts."""
        parts = ", ".join(f"{stage} {self.timings.get(stage, 0.0):.1f}" for stage in STAGES)
        text = (
            f"annotated {self.frames} frames ({self.width}x{self.height}) to {self.output} in "
            f"{self.seconds:.1f} s ({self.processing_fps:.1f} fps; seconds per stage: {parts}); "
            f"{self.inference()}"
        )
        counts = self.tracks if self.tracks is not None else self.detections
        what = "unique tracks" if self.tracks is not None else "detections"
        if counts:
            text += f"; {what}: " + ", ".join(f"{label} {count}" for label, count in counts.items())
        return text


CLASS_IOU_THRESHOLD = {"license_plate": 0.1}
"""Labels :class:`IouTracker` matches from another IoU than its ``iou_threshold``."""


class IouTracker:
    """A simple multi-object tracker: per-class greedy IoU matching between frames.

    Each frame's detections are matched, class by class, to the live tracks of that
    class: the pair with the highest IoU first, then the next among the unmatched,
    down to ``iou_threshold``. A matched track takes the detection's box; an unmatched
    detection starts a new track; a track unmatched for more than ``max_age``
    consecutive frames ends (a box that comes back later gets a new id). Each track
    keeps a velocity (pixels a frame, from its last two matches, smoothed); when
    detections come every few frames (``update(..., frames=N)``), a track is matched
    where its velocity has moved it, and :meth:`carry` places the last detections on
    the frames in between (a new track has no velocity until its second match: an
    object that leaves its own box between the first two detector runs starts a new,
    unconfirmed track). A track is
    *confirmed* once matched in ``min_hits`` frames; only then does it get an id
    (ids count from 1, across classes) and count in :attr:`counts`, so one-frame false
    detections neither take ids nor inflate the counts.

    With scores (``update(..., scores=...)``) the matching is ByteTrack's (Zhang et al.,
    2022): detections scoring at least ``score_threshold`` are matched first; the tracks
    left over are then matched to the weaker detections (from ``low_score``), so that a
    track survives a frame where its object scored low; only a strong detection (at
    least ``birth_score``) starts a track, so that noise does not.

    A detector often finds a large vehicle twice, whole and in part (its front, its
    cab): the two boxes overlap too little for non-maximum suppression (IoU below 0.5)
    yet are one object. So a detection that lies mostly inside (or mostly over) a box
    its class tracks in this frame starts no track of its own (``birth_overlap``,
    intersection over the smaller box, :func:`platelab.boxes.overlap_matrix`).

    Small objects move several times their own size between frames (a plate 10 px wide
    on a car passing at 7 px a frame overlaps its last box by IoU 0.07), so boxes are
    matched with a buffer, as in C-BIoU (Yang et al., 2023): each side of both boxes is
    pushed out by ``buffer`` times the box's size, at least ``buffer_px``, before the
    IoU is taken.

    Plates are matched from a lower IoU than vehicles (``class_iou_threshold``): even
    buffered, a plate that moves its own width a frame overlaps its last box little,
    and a plate track that loses its plate comes back as a second plate.

    The defaults were chosen on a tuning set and checked on another, both rendered by
    ``benchmarks/bench_tracker.py`` (960x540, 15 fps, 6 s, all six vantage points;
    seeds no training or evaluation data uses), with the default profile's fine-tuned
    model; counts within 20 % of the truth, and the mean count error, against the
    matching before (``iou_threshold`` 0.3, no ``birth_overlap``, no buffer):

    - tuning set, seeds 31337-31339: vehicles within 20 % on 14 of 18 videos (7 before),
      error 0.19 (0.39); plates on 8 of 15 (5), error 0.24 (0.42);
    - check set, seeds 31340-31342: vehicles 13 of 17 (8), 0.26 (0.43); plates 9 of 15
      (4), 0.24 (0.59).

    Plates from IoU 0.1 instead of 0.2 (chosen on the tuning set, then checked, with
    another fine-tune of the same recipe): plates within 20 % on 10 of 15 tuning videos
    (8 from 0.2), error 0.14 (0.22); check set 11 of 15 (9), 0.20 (0.24). Vehicles from
    0.1 as well scored worse on the check set (error 0.28 against 0.25).

    ``min_hits`` 5 and ``max_age`` 30 came from four videos of seed 31337 before.

    ``coast`` (SORT's constant-velocity prediction, also with the detector on every
    frame) is off: with the default profile's model of 2026-12-06, for vehicles only it
    was better on the tuning set (vehicles within 20 % on 14 of 18 videos against 12,
    error 0.19 against 0.20) and worse on the check set (10 of 17 against 13, error
    0.30 against 0.23); for every label it cost plates on the tuning set (7 of 15
    against 10).

    Args:
        iou_threshold: lowest IoU that links a detection to a track
        class_iou_threshold: ``{label: lowest IoU}`` for the labels matched from
            another IoU than ``iou_threshold`` (default :data:`CLASS_IOU_THRESHOLD`:
            plates from 0.1); ``{}``: one threshold for every label
        max_age: frames a track survives without a match
        min_hits: matched frames (the first included) before a track is confirmed
        score_threshold: the score of a strong detection (default: set by
            :func:`annotate_video` to the drawing threshold)
        low_score: the lowest score of a weak detection that keeps a track alive
        birth_score: the lowest score that starts a track (default: ``score_threshold``
            + 0.1, at most 0.95, at least ``score_threshold``)
        buffer: each side of the boxes matched is pushed out by this share of the box's
            width (height) before the IoU is taken (C-BIoU's buffer)
        buffer_px: ... and by at least this many pixels (small boxes)
        birth_overlap: a detection matched to no track starts none where this share of
            it, or of a box its class tracks in this frame, lies inside the other (the
            smaller box's share); None: every strong unmatched detection starts one
        coast: the labels whose tracks, with the detector on every frame too, are looked
            for where their velocity carries them (SORT's constant-velocity prediction),
            after the frames their detections missed as well; True: every label; False
            or empty: none (where each was last seen)
    """

    def __init__(
        self,
        iou_threshold=0.2,
        class_iou_threshold=None,
        max_age=30,
        min_hits=5,
        score_threshold=None,
        low_score=0.2,
        birth_score=None,
        birth_overlap=0.6,
        buffer=0.1,
        buffer_px=8.0,
        coast=False,
    ):
        class_iou_threshold = dict(
            CLASS_IOU_THRESHOLD if class_iou_threshold is None else class_iou_threshold
        )
        for name, value in [("iou_threshold", iou_threshold), *class_iou_threshold.items()]:
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"IoU threshold of {name} must be in [0, 1], got {value}")
        if buffer < 0 or buffer_px < 0:
            raise ValueError(f"buffer and buffer_px must be >= 0, got {buffer}, {buffer_px}")
        if birth_overlap is not None and not 0.0 < birth_overlap <= 1.0:
            raise ValueError(f"birth_overlap must be in (0, 1] or None, got {birth_overlap}")
        if max_age < 0 or min_hits < 1:
            raise ValueError(f"max_age must be >= 0 and min_hits >= 1, got {max_age}, {min_hits}")
        self.iou_threshold = float(iou_threshold)
        self.class_iou_threshold = {
            label: float(value) for label, value in class_iou_threshold.items()
        }
        self.max_age = int(max_age)
        self.min_hits = int(min_hits)
        self.score_threshold = score_threshold
        self.low_score = float(low_score)
        self.birth_score = birth_score
        self.birth_overlap = None if birth_overlap is None else float(birth_overlap)
        self.buffer = float(buffer)
        self.buffer_px = float(buffer_px)
        self.coast = coast if isinstance(coast, bool) else frozenset(coast or ())
        self.tracks = []
        self.counts = Counter()
        self._next_id = 1
        self._last = []

    def update(self, boxes, labels, frames=1, scores=None):
        """Links one frame's detections to the tracks.

        Args:
            boxes: ``(n, 4)`` boxes ``[xmin, ymin, xmax, ymax]`` (any consistent units)
            labels: n labels
            frames: frames since the previous update (the detector's interval). With 1,
                tracks are matched where they were last seen; with more, where their
                velocity has moved them since
            scores: n scores, for ByteTrack's two-step matching (see the class); None:
                every detection is strong

        Returns:
            n track ids (int), in the detections' order; None for a detection whose
            track is not confirmed yet, or a weak one that matched no track

        Raises:
            ValueError: counts that differ, ``frames`` below 1, or scores without a
                ``score_threshold``
        """
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        labels = list(labels)
        if len(labels) != len(boxes):
            raise ValueError(f"{len(boxes)} boxes but {len(labels)} labels")
        frames = int(frames)
        if frames < 1:
            raise ValueError(f"frames since the previous update must be >= 1, got {frames}")
        strong, birth = self._strong(scores, len(boxes))
        assigned = [None] * len(boxes)
        matched_tracks = set()
        for label in dict.fromkeys(labels):
            detections = [index for index, value in enumerate(labels) if value == label]
            candidates = [track for track in self.tracks if track["label"] == label]
            first = [index for index in detections if strong[index]]
            least = self.class_iou_threshold.get(label, self.iou_threshold)
            self._match(candidates, first, boxes, frames, assigned, matched_tracks, least)
            left = [track for track in candidates if id(track) not in matched_tracks]
            weak = [index for index in detections if not strong[index]]
            self._match(left, weak, boxes, frames, assigned, matched_tracks, least)
            current = [track for track in candidates if id(track) in matched_tracks]
            for index in first:
                if assigned[index] is not None or not birth[index]:
                    continue
                if self._covered(boxes[index], current):
                    continue
                track = {
                    "label": label,
                    "box": boxes[index],
                    "velocity": np.zeros(4),
                    "hits": 1,
                    "missed": 0,
                    "id": None,
                }
                self.tracks.append(track)
                matched_tracks.add(id(track))
                assigned[index] = track
                current.append(track)
        for track in self.tracks:
            if id(track) not in matched_tracks:
                track["missed"] += frames
        self.tracks = [track for track in self.tracks if track["missed"] <= self.max_age]
        for track in assigned:
            if track is not None and track["id"] is None and track["hits"] >= self.min_hits:
                track["id"] = self._next_id
                self._next_id += 1
                self.counts[track["label"]] += 1
        # What carry() moves: each detection's track, or the detection itself, held.
        self._last = [
            track if track is not None else {"box": boxes[index], "velocity": np.zeros(4)}
            for index, track in enumerate(assigned)
        ]
        return [None if track is None else track["id"] for track in assigned]

    def _strong(self, scores, count):
        """Per detection: strong (matched first) and able to start a track."""
        if scores is None:
            return [True] * count, [True] * count
        scores = np.asarray(scores, np.float64).reshape(-1)
        if len(scores) != count:
            raise ValueError(f"{count} boxes but {len(scores)} scores")
        if self.score_threshold is None:
            raise ValueError("scores given but no score_threshold: set the tracker's")
        high = float(self.score_threshold)
        birth = max(high, min(high + 0.1, 0.95)) if self.birth_score is None else self.birth_score
        return list(scores >= high), list(scores >= birth)

    def _covered(self, box, tracks):
        """Whether ``box`` and one of ``tracks`` (their boxes this frame) are mostly one."""
        if self.birth_overlap is None or not tracks:
            return False
        overlap = overlap_matrix(box[None, :], np.stack([track["box"] for track in tracks]))
        return bool((overlap >= self.birth_overlap).any())

    def _match(self, candidates, detections, boxes, frames, assigned, matched_tracks, least):
        """Greedy IoU matching (from ``least``) of tracks to detections (indices into
        ``boxes``), in place."""
        if not candidates or not detections:
            return
        overlap = iou_matrix(
            _buffered(
                np.stack([self._expected(track, frames) for track in candidates]),
                self.buffer,
                self.buffer_px,
            ),
            _buffered(boxes[detections], self.buffer, self.buffer_px),
        )
        rows, columns = np.nonzero(overlap >= least)
        order = np.argsort(-overlap[rows, columns], kind="stable")
        used_tracks, used_detections = set(), set()
        for row, column in ((rows[k], columns[k]) for k in order):
            if row in used_tracks or column in used_detections:
                continue
            used_tracks.add(row)
            used_detections.add(column)
            track = candidates[row]
            box = boxes[detections[column]]
            moved = (box - track["box"]) / (track["missed"] + frames)
            if track["hits"] > 1:
                moved = 0.5 * track["velocity"] + 0.5 * moved
            track.update(box=box, velocity=moved, hits=track["hits"] + 1, missed=0)
            matched_tracks.add(id(track))
            assigned[detections[column]] = track

    def carry(self, frames):
        """Where the last update's detections are ``frames`` frames later.

        Each detection moves at its track's velocity (a new track stays put); nothing
        in the tracker changes. This draws the frames between two detector runs.

        Args:
            frames: frames since the last update

        Returns:
            ``(n, 4)`` boxes in the order of the last update's detections
        """
        if not self._last:
            return np.zeros((0, 4))
        return np.stack([track["box"] + track["velocity"] * frames for track in self._last])

    def _expected(self, track, frames):
        """Where a track is looked for after ``frames`` more frames."""
        coasts = self.coast if isinstance(self.coast, bool) else track["label"] in self.coast
        if frames == 1 and not coasts:
            return track["box"]
        return track["box"] + track["velocity"] * (track["missed"] + frames)


def _buffered(boxes, buffer, min_px=0.0):
    """``(n, 4)`` xyxy boxes, each side pushed out by ``buffer`` times the box's width
    (height), at least ``min_px`` pixels."""
    if not buffer and not min_px:
        return boxes
    size = np.concatenate([boxes[:, 2:] - boxes[:, :2]] * 2, axis=1)
    return boxes + np.maximum(buffer * size, min_px) * np.array([-1.0, -1.0, 1.0, 1.0])


def annotate_video(
    predictor,
    input_path,
    output_path,
    threshold=None,
    track=False,
    progress=True,
    tracker=None,
    crf=DEFAULT_CRF,
    preset=DEFAULT_PRESET,
    detect_every=1,
    log_tracks=False,
):
    """Draws a detector's boxes on every frame of a video.

    Args:
        predictor: a :class:`platelab.deploy.export.Predictor` (or anything with
            ``predict(images, score_threshold)``), or a path for
            :func:`platelab.deploy.export.load_predictor`
        input_path: the video to annotate
        output_path: the annotated video to write (``.mp4``, ``.mov``, ``.m4v`` or
            ``.mkv``; H.264, yuv420p); its folder must exist
        threshold: lowest score drawn (default: the predictor's operating threshold)
        track: link detections over frames and draw track ids and unique counts
        progress: show a progress bar
        tracker: the :class:`IouTracker` to use with ``track`` (default: a new one);
            its ``score_threshold``, when unset, becomes ``threshold``
        crf: libx264 quality (lower is better and bigger)
        preset: libx264 speed preset
        detect_every: run the detector on every N-th frame (frames 0, N, 2N, ...), the
            tracker carrying its boxes over the frames in between; ``"auto"``: first the
            smallest N that keeps up with the video, from the model's time on the first
            frame (:func:`choose_detect_every`), then N kept ahead of real time as the
            video goes (:class:`AutoInterval`); 1: every frame
        log_tracks: with ``track``, keep every tracked box drawn in the result's
            ``track_log`` (a few tuples a frame: for videos with a ground truth)

    Returns:
        a :class:`VideoResult` (its ``detect_every`` and ``intervals`` say which N ran)

    Raises:
        ValueError: the output's folder is missing, the output is the input, an
            unsupported output suffix, or ``detect_every`` is neither ``"auto"`` nor >= 1
        platelab.collect.probe.MediaError: the input is missing or not a readable video, or
            no frame of it could be decoded
        platelab.ffmpeg.FFmpegError: the encoder failed (the message is ffmpeg's)
    """
    started = time.perf_counter()
    input_path, output_path = Path(input_path), Path(output_path)
    muxer = _check_output(input_path, output_path)
    detect_every = parse_detect_every(detect_every)
    if isinstance(predictor, (str, os.PathLike)):
        from platelab.deploy.export import load_predictor

        predictor = load_predictor(predictor)
    info = probe(input_path)
    threshold = getattr(predictor, "score_threshold", 0.3) if threshold is None else threshold
    if track and tracker is None:
        tracker = IouTracker()
    if track and tracker.score_threshold is None:
        tracker.score_threshold = threshold
    loop = _FrameLoop(predictor, info, threshold, tracker, detect_every)
    loop.track_log = [] if track and log_tracks else None
    temporary = _temporary_beside(output_path)
    pipeline = _Pipeline(input_path, info, temporary, muxer, loop.fps, crf, preset)
    bar = tqdm(total=loop.expected, desc=input_path.name, unit="frame", disable=not progress)
    try:
        pipeline.start()
        loop.run(pipeline, bar)
        if loop.frames == 0:
            raise MediaError(input_path, f"no frame could be decoded ({pipeline.last_message()})")
        pipeline.finish()
        os.chmod(temporary, 0o644)
        os.replace(temporary, output_path)
    except BaseException:
        pipeline.close()
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    finally:
        bar.close()
    loop.add_pipeline_timings(pipeline)
    result = loop.result(input_path, output_path, time.perf_counter() - started)
    _warn_if_stopped(result, pipeline.problem())
    logger.info("%s", result.summary())
    return result


def _temporary_beside(output_path):
    """An empty temporary file beside the output (renamed into place when complete)."""
    handle, temporary = tempfile.mkstemp(
        prefix=f".{output_path.stem}.", suffix=f".tmp{output_path.suffix}", dir=output_path.parent
    )
    os.close(handle)
    return Path(temporary)


class _FrameLoop:
    """The main thread's work on each frame, its side jobs as named methods.

    Decoding and encoding run in the :class:`_Pipeline`'s threads, which time them;
    this loop times the rest, stage by stage, into ``timings`` (:data:`STAGES`):

    * :meth:`detect`: the detector (preprocess, infer, postprocess) and the tracker's
      update (track) on the frames the detector runs on;
    * :meth:`carry`: the tracker carrying the last detections (track) on the others;
    * :meth:`draw`: the boxes, labels and counts drawn (draw).

    Args:
        predictor: the detector (see :func:`annotate_video`)
        info: the input's :func:`platelab.collect.probe.probe` record
        threshold: lowest score drawn
        tracker: the :class:`IouTracker` whose ids are drawn, or None without tracking
        detect_every: the detector's interval in frames, or ``"auto"``
    """

    def __init__(self, predictor, info, threshold, tracker, detect_every):
        self.predictor = predictor
        self.threshold = threshold
        self.tracker = tracker
        # Without --track, a tracker of its own carries the boxes between detector runs.
        self.carrier = tracker if tracker is not None else IouTracker()
        self.width, self.height = int(info["display_width"]), int(info["display_height"])
        self.fps = float(info.get("fps") or info.get("avg_fps") or 25.0)
        self.expected = int(info["frame_count"])
        if info.get("truncated") and info.get("duration"):
            self.expected = max(self.expected, int(round(info["duration"] * self.fps)))
        self.auto = detect_every == "auto"
        self.interval = None if self.auto else detect_every
        self.control = None  # the AutoInterval of "auto", made on the first frame
        self.model_seconds = None
        self.timings = dict.fromkeys(STAGES, 0.0)
        self.detections = Counter()
        self.frames = self.detected = 0
        self.last_objects, self.last_detected = [], 0
        self.carried = []  # which of the tracker's last detections are drawn
        self.track_log = None  # a list: each tracked box drawn is logged in it

    def run(self, pipeline, bar):
        """Annotates every decoded frame and queues it for the encoder."""
        for frame in pipeline.frames():
            if self.auto and self.control is None:
                self.choose_interval(frame)
            detecting = self.frames == 0 or self.frames - self.last_detected >= self.interval
            clock = time.perf_counter()
            objects = self.detect(frame) if detecting else self.carry(frame)
            detector_seconds = time.perf_counter() - clock if detecting else None
            self.log(objects)
            pipeline.write(self.draw(frame, objects))
            self.frames += 1
            bar.update(1)
            if self.control is not None:
                self.interval = self.control.frame_done(detector_seconds)

    def choose_interval(self, frame):
        """``detect_every="auto"``: times the model on this (the first) frame and picks N.

        The :class:`AutoInterval` made here then adjusts N as the video goes.
        """
        self.model_seconds = time_model(self.predictor, frame, self.threshold)
        self.interval = choose_detect_every(self.model_seconds, self.fps)
        self.control = AutoInterval(self.interval, self.fps)
        logger.info("--detect-every auto: starting at %d", self.interval)

    def detect(self, frame):
        """Runs the detector on the frame and updates the tracker; returns the objects drawn.

        With tracking, the detector reports down to the tracker's ``low_score``: the
        weak detections only keep tracks alive (ByteTrack, see :class:`IouTracker`).
        Drawn are the detections at the threshold and the weak ones of confirmed tracks.
        """
        tracking = self.tracker is not None
        floor = min(self.threshold, self.tracker.low_score) if tracking else self.threshold
        objects = _detect(self.predictor, frame, floor, self.timings)
        with self.timed("track"):
            if tracking:
                ids = self.tracker.update(
                    [item["bbox"] for item in objects],
                    [item["label"] for item in objects],
                    frames=max(1, self.frames - self.last_detected),
                    scores=[item["score"] for item in objects],
                )
                for item, track_id in zip(objects, ids, strict=True):
                    item["track_id"] = track_id
                drawn = [
                    (index, item)
                    for index, item in enumerate(objects)
                    if item["score"] >= self.threshold or item["track_id"] is not None
                ]
                self.carried = [index for index, _ in drawn]
                objects = [item for _, item in drawn]
            elif self.interval > 1 or self.auto:  # "auto" may skip frames later
                self.carrier.update(
                    [item["bbox"] for item in objects],
                    [item["label"] for item in objects],
                    frames=max(1, self.frames - self.last_detected),
                )
                self.carried = list(range(len(objects)))
        self.detections.update(item["label"] for item in objects)
        self.last_objects, self.last_detected = objects, self.frames
        self.detected += 1
        return objects

    def log(self, objects):
        """Adds this frame's tracked boxes to ``track_log`` (when logging)."""
        if self.track_log is not None:
            self.track_log += [
                (self.frames, item["track_id"], item["label"], list(item["bbox"]))
                for item in objects
                if item.get("track_id") is not None
            ]

    def carry(self, frame):
        """The last detections, carried by the tracker to this frame (no detector run)."""
        with self.timed("track"):
            boxes = self.carrier.carry(self.frames - self.last_detected)
            return _carried(self.last_objects, boxes[self.carried], frame)

    def draw(self, frame, objects):
        """The frame with the objects (and, with tracking, the unique counts) drawn."""
        with self.timed("draw"):
            counts = self.tracker.counts if self.tracker is not None else None
            return draw_frame(frame, objects, counts)

    @contextlib.contextmanager
    def timed(self, stage):
        """Adds the wall time of the ``with`` block to the stage's timing."""
        clock = time.perf_counter()
        yield
        self.timings[stage] += time.perf_counter() - clock

    def add_pipeline_timings(self, pipeline):
        """Takes the decode and encode times measured in the pipeline's threads."""
        self.timings["decode"] = pipeline.decode_seconds
        self.timings["encode"] = pipeline.encode_seconds

    def result(self, input_path, output_path, seconds):
        """The :class:`VideoResult` of the loop (without the warning of an early stop)."""
        return VideoResult(
            input=str(input_path),
            output=str(output_path),
            frames=self.frames,
            expected_frames=self.expected,
            width=self.width,
            height=self.height,
            fps=self.fps,
            seconds=seconds,
            timings={stage: round(value, 3) for stage, value in self.timings.items()},
            detections=dict(self.detections.most_common()),
            tracks=dict(self.tracker.counts.most_common()) if self.tracker is not None else None,
            detect_every=self.control.most_used() if self.control else self.interval or 1,
            detected_frames=self.detected,
            detect_every_auto=self.auto,
            model_seconds=self.model_seconds,
            intervals=dict(sorted(self.control.frames_at.items())) if self.control else None,
            track_log=self.track_log,
        )


def _warn_if_stopped(result, problem):
    """Fills in (and logs) the result's warning when the input stopped early or had errors."""
    frames, expected, fps = result.frames, result.expected_frames, result.fps
    if frames < expected or problem:
        result.stopped_at_frame = frames if frames < expected else None
        result.stopped_at_time = round(frames / fps, 3) if frames < expected else None
        where = (
            f"the video stopped at frame {frames} ({frames / fps:.2f} s) of {expected} "
            f"({expected / fps:.2f} s)"
            if frames < expected
            else "the decoder reported errors"
        )
        reason = f": {problem}" if problem else ""
        result.warning = (
            f"{result.input}: {where}{reason}; the output holds the {frames} frames decoded"
        )
        logger.warning("%s", result.warning)


def model_threads():
    """CPU threads for the model while a video is annotated: all cores but one.

    The decoding and encoding ffmpeg processes need about one core at 1080p; a model
    that takes every core makes them wait (``benchmarks/bench_deploy.py
    --video-threads N`` runs the end-to-end video with N model threads).
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


def parse_detect_every(value):
    """``detect_every`` as given (``"auto"``, or a whole number >= 1, also as text).

    Raises:
        ValueError: anything else (one line)
    """
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        number = int(value)
        if number != float(value):
            raise ValueError
    except (TypeError, ValueError):
        number = 0
    if number < 1:
        raise ValueError(
            f"--detect-every must be 'auto' or a whole number of frames >= 1, not {value!r}"
        )
    return number


def choose_detect_every(model_seconds, fps, share=MODEL_SHARE, limit=MAX_DETECT_EVERY):
    """The smallest N for which the detector on every N-th frame keeps up with a video.

    The model's time, spread over N frames, must fit in ``share`` of a frame's time:
    ``model_seconds / N <= share / fps``.

    Args:
        model_seconds: the model's time for one frame (preprocess, infer, postprocess)
        fps: the video's frame rate
        share: the part of a frame's time the model may take (:data:`MODEL_SHARE`)
        limit: the largest N returned

    Returns:
        N, from 1 to ``limit``
    """
    budget = share / max(float(fps), 1e-6)
    return int(min(limit, max(1, math.ceil(model_seconds / budget - 1e-9))))


class AutoInterval:
    """``detect_every="auto"`` as the video goes: N kept so that the video stays ahead of real time.

    :func:`choose_detect_every` picks the first N from the model's start-up time alone.
    During the video the model shares the CPUs with decoding, drawing and encoding (and
    with whatever else the machine runs), so after each window of frames
    (:data:`AUTO_WINDOW_SECONDS` of video) this compares the wall time those frames took
    with the time allowed, ``1 / (margin * fps)`` a frame (:data:`REAL_TIME_MARGIN`):

    * slower than allowed, while the detector took at least
      :data:`AUTO_MIN_MODEL_SHARE` of the window: N + 1 (at most ``limit``);
    * in time, and N - 1 would be in time too (the window's time per frame plus what one
      more detector run per N - 1 frames costs, from the detector's runs so far): N - 1.

    The first frame (which holds the start-up timing) is not counted.

    Args:
        interval: the first N
        fps: the video's frame rate
        limit: the largest N (:data:`MAX_DETECT_EVERY`)
        margin: the multiple of ``fps`` aimed at
        clock: the wall clock, in seconds (``time.perf_counter``; tests pass their own)

    Attributes:
        interval: the N the next frame is scheduled by
        frames_at: frames per N, over the frames done
        model_seconds: the mean time of the detector's runs (None before the first)
    """

    def __init__(
        self,
        interval,
        fps,
        limit=MAX_DETECT_EVERY,
        margin=REAL_TIME_MARGIN,
        clock=time.perf_counter,
    ):
        self.interval = int(interval)
        self.limit = int(limit)
        self.allowed = 1.0 / (margin * max(float(fps), 1e-6))
        self.window = max(2, round(float(fps) * AUTO_WINDOW_SECONDS))
        self.clock = clock
        self.frames_at = Counter()
        self.model_seconds = None
        self._runs = 0
        self._started = None
        self._window_frames = 0
        self._window_model = 0.0

    def frame_done(self, detector_seconds=None):
        """Counts a finished frame (``detector_seconds``: the detector's time, if it ran).

        Returns:
            the N for the next frames
        """
        self.frames_at[self.interval] += 1
        now = self.clock()
        if detector_seconds is not None:
            self._runs += 1
            previous = self.model_seconds or 0.0
            self.model_seconds = previous + (detector_seconds - previous) / self._runs
        if self._started is None:
            self._started = now
            return self.interval
        self._window_frames += 1
        self._window_model += detector_seconds or 0.0
        if self._window_frames >= self.window:
            elapsed = max(now - self._started, 1e-9)
            self._adjust(elapsed / self._window_frames, self._window_model / elapsed)
            self._started, self._window_frames, self._window_model = now, 0, 0.0
        return self.interval

    def most_used(self):
        """The N that the most frames ran at (the first N before any frame)."""
        return self.frames_at.most_common(1)[0][0] if self.frames_at else self.interval

    def _adjust(self, per_frame, model_share):
        """Raises or lowers N from a window's seconds per frame and the detector's share."""
        before = self.interval
        if per_frame > self.allowed:
            if model_share >= AUTO_MIN_MODEL_SHARE:
                self.interval = min(self.limit, self.interval + 1)
        elif self.interval > 1 and self.model_seconds is not None:
            extra = self.model_seconds * (1.0 / (self.interval - 1) - 1.0 / self.interval)
            if per_frame + extra <= self.allowed:
                self.interval -= 1
        if self.interval != before:
            logger.info(
                "--detect-every auto: %d -> %d (%.1f ms a frame against %.1f allowed)",
                before,
                self.interval,
                per_frame * 1e3,
                self.allowed * 1e3,
            )


def time_model(predictor, frame_bgr, threshold, runs=MODEL_TIMING_RUNS):
    """The detector's time on one frame: the fastest of ``runs`` after a warm-up run.

    The fastest, not the median: at start-up the decoder fills its queue and other
    work may share the CPUs, and a single slow run must not make ``"auto"`` skip
    frames the model has time for.

    Args:
        predictor: what :func:`annotate_video` runs
        frame_bgr: a frame of the video
        threshold: the score threshold

    Returns:
        seconds per frame (preprocess, infer and postprocess)
    """
    _detect(predictor, frame_bgr, threshold, dict.fromkeys(STAGES, 0.0))
    seconds = []
    for _ in range(runs):
        clock = time.perf_counter()
        _detect(predictor, frame_bgr, threshold, dict.fromkeys(STAGES, 0.0))
        seconds.append(time.perf_counter() - clock)
    return min(seconds)


def draw_frame(frame_bgr, objects, counts=None):
    """Draws detections (and track ids, and running counts) on a copy of a frame.

    Args:
        frame_bgr: ``(H, W, 3)`` uint8 BGR frame
        objects: dicts with ``label``, ``bbox`` (pixels), ``score`` and optionally
            ``track_id``
        counts: label -> unique tracks so far, written in the top-left corner (None:
            nothing written)

    Returns:
        the annotated copy
    """
    tracked = any("track_id" in item for item in objects)
    canvas = visualize.draw_objects(frame_bgr, objects, show_labels=not tracked)
    scale = max(0.35, min(canvas.shape[:2]) / 1400)
    if tracked:
        for item in objects:
            x0, y0, _x1, y1 = (int(round(value)) for value in item["bbox"])
            text = item["label"].replace("license_plate", "plate")
            if item.get("track_id") is not None:
                text += f" #{item['track_id']}"
            text += f" {item['score']:.2f}"
            color = visualize.LABEL_COLORS_BGR.get(item["label"], visualize.DEFAULT_COLOR_BGR)
            visualize.draw_label(canvas, text, x0, y0, y1, color, scale)
    if counts is not None:
        text = "  ".join(
            f"{label.replace('license_plate', 'plates').replace('vehicle', 'vehicles')}: {count}"
            for label, count in sorted(counts.items(), key=_label_order)
        )
        visualize.draw_label(canvas, text or "no tracks yet", 0, 0, 0, COUNT_COLOR_BGR, scale * 1.2)
    return canvas


def contact_sheet(video, count=6, columns=3, caption=None):
    """Shows evenly spaced frames of an (annotated) video, for reports.

    Args:
        video: a :class:`VideoResult` or a video path
        count: frames shown
        columns: frames per row
        caption: the line under the grid (default: what to look for)

    Returns:
        the matplotlib Figure
    """
    path = Path(video.output if isinstance(video, VideoResult) else video)
    total = video.frames if isinstance(video, VideoResult) else int(probe(path)["frame_count"])
    fps = video.fps if isinstance(video, VideoResult) else None
    chosen = np.unique(np.linspace(0, max(total - 1, 0), max(1, min(count, total))).round())
    images, titles = [], []
    for index in chosen.astype(int):
        try:
            images.append(visualize.read_video_frame(path, int(index)))
        except ValueError:
            continue
        titles.append(f"frame {index}" + (f" · t = {index / fps:.2f} s" if fps else ""))
    return visualize.image_grid(
        images,
        titles,
        columns=columns,
        caption=caption
        or "Evenly spaced annotated frames: every vehicle and plate should carry one box.",
    )


def add_video_arguments(parser):
    """Adds the ``platelab video`` arguments to an argparse (sub)parser and sets its handler.

    Usage: ``add_video_arguments(commands.add_parser("video", help=...))``; the parsed
    namespace's ``handler`` is :func:`run_video_command`.
    """
    parser.description = (
        "Annotate a video with a detector's boxes, labels and scores (and track ids with "
        "--track); writes H.264 MP4."
    )
    parser.add_argument(
        "--model",
        required=True,
        metavar="MODEL",
        help="an export folder (platelab export), a .tflite/.onnx file in one, or a training "
        "run folder",
    )
    parser.add_argument("--input", required=True, metavar="VIDEO", help="the video to annotate")
    parser.add_argument("--output", required=True, metavar="VIDEO", help="the video to write")
    parser.add_argument("--threshold", type=float, help="lowest score drawn (default: the model's)")
    parser.add_argument(
        "--track", action="store_true", help="draw track ids and count unique objects"
    )
    parser.add_argument(
        "--max-age",
        type=int,
        default=30,
        metavar="FRAMES",
        help="with --track: frames a track survives unseen (30)",
    )
    parser.add_argument(
        "--threads", type=int, help="CPU threads for the model (default: all cores but one)"
    )
    parser.add_argument(
        "--detect-every",
        default=DETECT_EVERY_DEFAULT,
        metavar="N",
        help="run the detector on every N-th frame, the tracker carrying its boxes in "
        "between (1: every frame); 'auto' (the default) times the model on the first "
        "frame, starts from the smallest N that keeps up with the video, then raises or "
        "lowers N each second to stay 10%% ahead of real time; the summary says which N ran",
    )
    parser.add_argument(
        "--preset",
        default=DEFAULT_PRESET,
        choices=X264_PRESETS,
        metavar="PRESET",
        help=f"x264 speed preset ({DEFAULT_PRESET}; slower presets make smaller files)",
    )
    parser.add_argument(
        "--crf",
        type=int,
        default=DEFAULT_CRF,
        metavar="CRF",
        help=f"x264 quality, 0-51, lower is better and bigger ({DEFAULT_CRF})",
    )
    parser.set_defaults(handler=run_video_command)
    return parser


def run_video_command(args):
    """Runs ``platelab video`` from parsed arguments; prints a summary line.

    Returns:
        the exit status: 0 (also when the input stopped early: a warning says where)

    Raises:
        ValueError: bad arguments or input (the CLI prints it as one line)
    """
    from platelab.deploy.export import load_predictor

    _check_output(Path(args.input), Path(args.output))
    if not 0 <= args.crf <= 51:
        raise ValueError(f"--crf must be between 0 and 51, not {args.crf}")
    detect_every = parse_detect_every(args.detect_every)
    predictor = load_predictor(args.model, threads=args.threads or model_threads())
    tracker = IouTracker(max_age=args.max_age) if args.track else None
    result = annotate_video(
        predictor,
        args.input,
        args.output,
        threshold=args.threshold,
        track=args.track,
        tracker=tracker,
        crf=args.crf,
        preset=args.preset,
        detect_every=detect_every,
    )
    print(result.summary())
    if result.warning:
        print(f"platelab: warning: {result.warning}", file=sys.stderr)
    return 0


def main_video(argv=None):
    """``python -m platelab.deploy.video``: the ``platelab video`` command on its own."""
    parser = add_video_arguments(argparse.ArgumentParser(prog="platelab video"))
    args = parser.parse_args(argv)
    return args.handler(args)


# ---------------------------------------------------------------------------- helpers


class _Pipeline:
    """The decoding and encoding ffmpeg processes and the threads feeding them."""

    def __init__(self, input_path, info, output_path, muxer, fps, crf, preset):
        self.input_path = input_path
        self.info = info
        self.output_path = output_path
        self.muxer = muxer
        self.fps = fps
        self.crf = crf
        self.preset = preset
        self.width = int(info["display_width"])
        self.height = int(info["display_height"])
        self.decoded = queue.Queue(maxsize=QUEUED_FRAMES)
        self.annotated = queue.Queue(maxsize=QUEUED_FRAMES)
        self.closing = threading.Event()
        self.decoder = self.encoder = None
        self.threads = []
        self.decode_messages = deque(maxlen=6)
        self.encode_messages = deque(maxlen=6)
        self.decode_seconds = 0.0
        self.encode_seconds = 0.0
        self.partial_bytes = 0
        self.encode_error = None

    def start(self):
        rate = Fraction(self.fps).limit_denominator(100000)
        decode = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error"]
        decode += ["-i", str(self.input_path), "-map", f"0:{self.info['stream_index']}"]
        decode += ["-an", "-sn", "-dn", "-fps_mode", "passthrough"]
        decode += ["-f", "rawvideo", "-pix_fmt", "bgr24", "pipe:1"]
        encode = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y"]
        encode += ["-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{self.width}x{self.height}"]
        encode += ["-framerate", f"{rate.numerator}/{rate.denominator}", "-i", "pipe:0"]
        if self.width % 2 or self.height % 2:  # yuv420p needs even sides
            encode += ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"]
        encode += ["-an", "-c:v", "libx264", "-preset", self.preset, "-crf", str(self.crf)]
        encode += ["-pix_fmt", "yuv420p"]
        if self.muxer in ("mp4", "mov"):
            encode += ["-movflags", "+faststart"]
        encode += ["-f", self.muxer, str(self.output_path)]
        logger.debug("decode: %s", subprocess.list2cmdline(decode))
        logger.debug("encode: %s", subprocess.list2cmdline(encode))
        self.decoder = subprocess.Popen(
            decode, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            self.encoder = subprocess.Popen(
                encode, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
        except BaseException:
            self.decoder.kill()
            self.decoder.wait()
            raise
        for target, arguments in (
            (self._read_frames, ()),
            (self._write_frames, ()),
            (self._read_messages, (self.decoder.stderr, self.decode_messages)),
            (self._read_messages, (self.encoder.stderr, self.encode_messages)),
        ):
            thread = threading.Thread(target=target, args=arguments, daemon=True)
            thread.start()
            self.threads.append(thread)

    def frames(self):
        """Yields decoded BGR frames (writable arrays) until the input ends."""
        while True:
            try:
                frame = self.decoded.get(timeout=0.5)
            except queue.Empty:
                self._raise_encode_error()
                continue
            if frame is _END:
                return
            yield frame

    def write(self, frame):
        """Queues an annotated frame for the encoder."""
        while True:
            self._raise_encode_error()
            try:
                self.annotated.put(frame, timeout=0.5)
                return
            except queue.Full:
                continue

    def finish(self):
        """Ends the encoding, waits for both processes; raises FFmpegError if encoding failed."""
        self.write(_END)
        for thread in self.threads:
            thread.join()
        self.decoder.wait()
        clock = time.perf_counter()
        returncode = self.encoder.wait()
        self.encode_seconds += time.perf_counter() - clock
        self._raise_encode_error()
        if returncode != 0:
            message = self.encode_messages[-1] if self.encode_messages else f"exit {returncode}"
            raise FFmpegError(f"encoding {self.output_path.name} failed: {message}")

    def close(self):
        """Stops everything after a failure."""
        self.closing.set()
        for process in (self.decoder, self.encoder):
            if process is not None and process.poll() is None:
                process.kill()
        for pending in (self.decoded, self.annotated):
            with contextlib.suppress(queue.Empty):
                while True:
                    pending.get_nowait()
        with contextlib.suppress(queue.Full):
            self.annotated.put_nowait(_END)  # wakes the encoder thread
        for thread in self.threads:
            thread.join(timeout=10)
        for process in (self.decoder, self.encoder):
            if process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=10)

    def problem(self):
        """What went wrong while decoding (None when nothing did)."""
        if self.partial_bytes:
            return f"the last frame was cut short ({self.partial_bytes} bytes)"
        if self.decoder is not None and self.decoder.returncode:
            return self.last_message()
        return self.decode_messages[-1] if self.decode_messages else None

    def last_message(self):
        return self.decode_messages[-1] if self.decode_messages else "no message from ffmpeg"

    def _raise_encode_error(self):
        if self.encode_error is not None:
            message = self.encode_messages[-1] if self.encode_messages else self.encode_error
            raise FFmpegError(f"encoding {self.output_path.name} failed: {message}")

    def _read_frames(self):
        size = self.width * self.height * 3
        stream = self.decoder.stdout
        try:
            while not self.closing.is_set():
                frame = np.empty((self.height, self.width, 3), np.uint8)
                clock = time.perf_counter()
                got = _read_into(stream, memoryview(frame).cast("B"))
                self.decode_seconds += time.perf_counter() - clock
                if got < size:
                    self.partial_bytes = got
                    break
                self._put(self.decoded, frame)
        except (OSError, ValueError) as error:
            if not self.closing.is_set():
                self.decode_messages.append(f"reading frames from ffmpeg failed: {error}")
        finally:
            with contextlib.suppress(OSError, ValueError):
                stream.close()
            self._put(self.decoded, _END)

    def _write_frames(self):
        stream = self.encoder.stdin
        try:
            while True:
                frame = self.annotated.get()
                if frame is _END:
                    break
                clock = time.perf_counter()
                stream.write(memoryview(np.ascontiguousarray(frame)).cast("B"))
                self.encode_seconds += time.perf_counter() - clock
        except (OSError, ValueError) as error:
            if not self.closing.is_set():
                self.encode_error = str(error)
        finally:
            clock = time.perf_counter()
            with contextlib.suppress(OSError, ValueError):
                stream.close()
            self.encode_seconds += time.perf_counter() - clock

    def _put(self, target, item):
        while not self.closing.is_set():
            try:
                target.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    @staticmethod
    def _read_messages(stream, messages):
        with contextlib.suppress(OSError, ValueError):
            for raw in stream:
                text = re.sub(r"^(\[[^\]]*\]\s*)+", "", raw.decode("utf-8", "replace").strip())
                if text:
                    messages.append(" ".join(text.split()))


def _detect(predictor, frame_bgr, threshold, timings):
    """Runs the predictor on one BGR frame (stage by stage when it can), timing each stage."""
    height, width = frame_bgr.shape[:2]
    rgb = frame_bgr[:, :, ::-1]
    if hasattr(predictor, "infer"):
        clock = time.perf_counter()
        batch = predictor.preprocess([rgb])
        now = time.perf_counter()
        timings["preprocess"] += now - clock
        raw = predictor.infer(batch, threshold)
        clock = time.perf_counter()
        timings["infer"] += clock - now
        result = predictor.postprocess(raw, [(width, height)], threshold)[0]
        timings["postprocess"] += time.perf_counter() - clock
    else:
        clock = time.perf_counter()
        result = predictor.predict([np.ascontiguousarray(rgb)], score_threshold=threshold)[0]
        timings["infer"] += time.perf_counter() - clock
    return [
        {"label": label, "bbox": [float(value) for value in box], "score": float(score)}
        for box, score, label in zip(
            np.asarray(result["boxes"]).reshape(-1, 4),
            np.asarray(result["scores"]),
            result["labels"],
            strict=True,
        )
    ]


def _carried(objects, boxes, frame):
    """The last detections at the boxes the tracker carried them to, clipped to the frame."""
    height, width = frame.shape[:2]
    carried = []
    for item, box in zip(objects, boxes, strict=True):
        x0, x1 = np.clip(box[[0, 2]], 0, width)
        y0, y1 = np.clip(box[[1, 3]], 0, height)
        if x1 - x0 >= 1 and y1 - y0 >= 1:  # a box carried off the frame is not drawn
            carried.append({**item, "bbox": [float(x0), float(y0), float(x1), float(y1)]})
    return carried


def _ordinal(number):
    """2 -> '2nd', 3 -> '3rd', 11 -> '11th'."""
    suffix = {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{'th' if 10 <= number % 100 <= 20 else suffix}"


def _every(number):
    """1 -> 'frame', 3 -> '3rd frame' (after 'every')."""
    return "frame" if number == 1 else f"{_ordinal(number)} frame"


def _check_output(input_path, output_path):
    """Checks the output path; returns its muxer. Raises ValueError (one line) when unusable."""
    if output_path.suffix.lower() not in CONTAINERS:
        raise ValueError(
            f"{output_path}: unsupported output type {output_path.suffix or '(none)'}: use "
            + ", ".join(CONTAINERS)
        )
    if not output_path.parent.is_dir():
        raise ValueError(
            f"{output_path}: the output folder {output_path.parent} does not exist (create it first)"
        )
    if output_path.is_dir():
        raise ValueError(f"{output_path}: is a folder; give the output video's file name")
    with contextlib.suppress(OSError):
        if input_path.exists() and output_path.exists() and input_path.samefile(output_path):
            raise ValueError(f"{output_path}: the output would overwrite the input")
    return CONTAINERS[output_path.suffix.lower()]


def _label_order(item):
    label = item[0]
    return (LABELS.index(label) if label in LABELS else len(LABELS), label)


def _read_into(stream, view):
    """Fills ``view`` from a stream; returns the bytes read (fewer only at the end)."""
    total = 0
    while total < len(view):
        got = stream.readinto(view[total:])
        if not got:
            break
        total += got
    return total


if __name__ == "__main__":
    sys.exit(main_video())


def player(predictor, video_path, threshold=None, track_frames=None):
    """An ipywidgets player for JupyterLab: a frame slider and a confidence slider.

    Each frame is read from ``video_path`` and run through ``predictor`` on demand;
    detections at or above the confidence slider are drawn.

    Args:
        predictor: anything with ``predict(images_rgb, score_threshold)`` (a
            :class:`platelab.deploy.export.Predictor` or :class:`platelab.detector.Detector`)
        video_path: the (novel) video
        threshold: the confidence slider's start (default: the predictor's threshold)
        track_frames: frames offered by the slider (default: all)

    Returns:
        the widget (a ``VBox``); display it in a notebook
    """
    import cv2
    import ipywidgets as widgets

    total = int(probe(video_path)["frame_count"]) if track_frames is None else int(track_frames)
    start = float(
        threshold if threshold is not None else getattr(predictor, "score_threshold", 0.5)
    )
    frame_slider = widgets.IntSlider(
        0, 0, max(total - 1, 0), description="frame", continuous_update=False
    )
    confidence = widgets.FloatSlider(
        start, min=0.05, max=0.95, step=0.05, description="confidence", continuous_update=False
    )
    picture = widgets.Image(format="jpeg")
    status = widgets.Label()
    cache = {}

    def show(*_):
        index = frame_slider.value
        if index not in cache:
            frame = visualize.read_video_frame(video_path, index)
            result = predictor.predict(
                [cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)], score_threshold=0.05
            )[0]
            cache.clear()
            cache[index] = (frame, result)
        frame, result = cache[index]
        keep = result["scores"] >= confidence.value
        objects = [
            {"label": label, "bbox": box.tolist(), "score": float(score)}
            for box, score, label, kept in zip(
                result["boxes"], result["scores"], result["labels"], keep, strict=True
            )
            if kept
        ]
        picture.value = cv2.imencode(".jpg", draw_frame(frame, objects))[1].tobytes()
        counts = {}
        for item in objects:
            counts[item["label"]] = counts.get(item["label"], 0) + 1
        status.value = (
            f"frame {index}: "
            + (", ".join(f"{count} {label}" for label, count in counts.items()) or "no detection")
            + f" at confidence >= {confidence.value:.2f}"
        )

    frame_slider.observe(show, names="value")
    confidence.observe(show, names="value")
    show()
    return widgets.VBox([widgets.HBox([frame_slider, confidence]), picture, status])
