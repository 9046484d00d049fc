"""Stage 01 (collect): from videos and photos to sampled frames with a manifest.

The entry point is :func:`sample`. For each video it runs ONE ffmpeg decode
(:class:`platelab.collect.probe.DecodePass`) that feeds two outputs at once:

* the frames at the sampling rate (``-r FPS``, full resolution, rotation
  applied, RGB): the very pipeline of ``ffmpeg -i VIDEO -r 2 out_%4d.png``,
  so the PNGs are pixel-identical to that command's for the same output frame
  numbers; ffmpeg reports, for each output frame, the decoded frame it came
  from (``-stats_enc_pre``), which gives the names and times;
* a low-resolution grey analysis stream from which
  :class:`platelab.collect.probe.Timeline` finds dead feed (black, frozen, corrupt
  and, optionally, static stretches; see :func:`platelab.collect.probe.analyze`).

A sampled frame is held back until the analysis has seen a little past it
(the minimum segment duration plus a few analysis frames), then either
dropped (inside a cut segment) or PNG-encoded in a thread pool ('up' filter
and ISA-L's deflate, or OpenCV at zlib level 1 where isal is not installed:
lossless, many times faster than ffmpeg's serial PNG encoder) while the decode
goes on. Thumbnails, difference hashes and sharpness
(:mod:`platelab.signatures`) are computed from the in-memory frames, so
curation need not decode the PNGs again. Photos are decoded with OpenCV
(EXIF orientation applied) and normalised to 8-bit, 3-channel BGR.

Output folder::

    manifest.json         sources, cut segments, kept spans, frames (see sample())
    signatures.npy        N x SIGNATURE_LENGTH uint8, rows in the manifest's frame order
    <source_id>/<source_id>_t<milliseconds:08d>.png
    photos/<source_id>.png

Reruns on unchanged inputs with the same parameters do no work. Frames of
videos with more than 8 bits per sample are written as 8-bit RGB (a plain
``ffmpeg -i VIDEO -r 2 out_%4d.png`` writes 16-bit PNGs for those).
"""

import contextlib
import dataclasses
import errno
import glob
import io
import json
import logging
import os
import struct
import threading
import time
import zlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from platelab import signatures
from platelab.atomic import atomic_write_bytes, atomic_write_json, json_default
from platelab.collect.probe import (
    MIN_SEGMENT_SECONDS,
    PHOTO_EXTENSIONS,
    REASONS,
    VIDEO_EXTENSIONS,
    DecodePass,
    MediaError,
    Timeline,
    analyze,
    apply_manual,
    check_ffmpeg_version,
    complement,
    ffmpeg_version,
    in_ranges,
    is_live_source,
    normalise_manual,
    probe,
    record,
    source_slug,
)
from platelab.ffmpeg import FFmpegError
from platelab.metadata import sha256_file

try:  # ISA-L's deflate: PNG frames several times faster than zlib (OpenCV's encoder)
    from isal import isal_zlib
except ImportError:  # pragma: no cover - an install without isal: OpenCV's encoder
    isal_zlib = None

logger = logging.getLogger(__name__)

__all__ = [
    "MediaError",
    "analyze",
    "find_inputs",
    "plot_timeline",
    "probe",
    "record",
    "sample",
    "source_table",
    "contact_sheet",
]

MANIFEST_NAME = "manifest.json"
SIGNATURES_NAME = "signatures.npy"
PHOTOS_DIR = "photos"
MANIFEST_FORMAT = "platelab.frames/1"
ALGORITHM_VERSION = 1
"""Bump when the frames or cuts produced for a given input change (forces a redo)."""
DEFAULT_FPS = 2.0
PNG_PARAMETERS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY]
PNG_PARAMETERS += [cv2.IMWRITE_PNG_STRATEGY_RLE]
if hasattr(cv2, "IMWRITE_PNG_FILTER"):  # OpenCV 4.10 and later
    PNG_PARAMETERS += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP]
# Lossless PNG at a low zlib level with the 'up' filter: several times faster than
# ffmpeg's PNG encoder at its defaults, and the files come out smaller. The fallback
# where isal is not installed; with it, _png_bytes writes the same 'up'-filtered PNG
# several times faster, in slightly larger files.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def find_inputs(patterns):
    """Collects the video and photo files named by paths, folders and globs.

    Folders are searched recursively (hidden files and folders skipped);
    files are classified by extension (:data:`platelab.collect.probe.VIDEO_EXTENSIONS`,
    :data:`platelab.collect.probe.PHOTO_EXTENSIONS`). Each file is listed once.

    Args:
        patterns: a path, folder or glob (``**`` allowed), or a list of them

    Returns:
        ``(videos, photos, problems)``: two sorted lists of Paths and a list
        of one-line messages (missing paths, patterns matching nothing,
        folders holding no video or photo, explicitly named files of an
        unsupported type, live URLs)
    """
    if isinstance(patterns, (str, os.PathLike)):
        patterns = [patterns]
    videos, photos, problems = [], [], []
    seen = set()

    def add(path, explicit):
        """Lists a file; returns whether it is a video or a photo."""
        suffix = path.suffix.lower()
        if suffix not in VIDEO_EXTENSIONS and suffix not in PHOTO_EXTENSIONS:
            if explicit:
                problems.append(f"{path}: unsupported file type ({suffix or 'no extension'})")
            return False
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            (videos if suffix in VIDEO_EXTENSIONS else photos).append(path)
        return True

    for pattern in patterns:
        text = os.fspath(pattern)
        if is_live_source(text):
            problems.append(
                f"{text}: a live source; record it first with record(url, seconds, path)"
            )
            continue
        path = Path(text).expanduser()
        if path.is_dir():
            found = [add(item, explicit=False) for item in _walk(path)]
            if not any(found):
                problems.append(f"{text}: no video or image found in this folder")
        elif path.is_file():
            add(path, explicit=True)
        elif glob.has_magic(text):
            matches = sorted(glob.glob(os.path.expanduser(text), recursive=True))
            if not matches:
                problems.append(f"{text}: no files match")
            for match in matches:
                match = Path(match)
                if match.is_dir():
                    for item in _walk(match):
                        add(item, explicit=False)
                elif match.is_file():
                    add(match, explicit=False)
        else:
            problems.append(f"{text}: no such file or folder")
    return sorted(videos, key=str), sorted(photos, key=str), problems


def sample(
    inputs,
    out_dir,
    fps=DEFAULT_FPS,
    cut_static=False,
    manual=None,
    workers=None,
    progress=True,
    min_duration=MIN_SEGMENT_SECONDS,
):
    """Samples frames from videos (inside their kept spans) and normalises photos.

    Bad inputs never stop the batch: each is listed in ``problems`` (and in
    its source entry, ``status: "skipped"``). Output-side failures (disk
    full, permissions, an output path that is not a folder) stop the run with
    a one-line ``OSError``; the manifest on disk then lists only the frames
    of fully processed sources (it is rewritten after each video) and the
    interrupted video's frames are removed.

    Args:
        inputs: video/photo files, folders or globs (see :func:`find_inputs`)
        out_dir: the output folder (created)
        fps: frames sampled per second of video, as ``ffmpeg -r FPS``
        cut_static: also cut stretches without motion
        manual: ``{video: {"keep": [[a, b], ...], "cut": [[a, b], ...]}}``,
            the video named by source id, file stem, file name or path;
            manual ranges win over the automatic choice (cut over keep where
            they overlap)
        workers: CPU threads to use (default ``os.cpu_count()``); up to this
            many videos are decoded at once, sharing the threads
        progress: show a progress bar
        min_duration: shorter dead stretches are kept (seconds)

    Returns:
        the manifest (also written to ``out_dir/manifest.json``): ``format``,
        ``parameters``, ``ffmpeg``, ``sources`` (per source: ``source_id``,
        ``path``, ``kind`` video|photo, ``status`` ok|skipped, ``error``,
        ``fingerprint`` (sha256, bytes, mtime_ns), ``parameters``, ``probe``,
        ``segments``, ``kept``, ``frames``, ``problems``...), ``frames`` (per
        frame: ``image`` relative to ``out_dir``, ``source_id``, ``time``
        (seconds, None for photos), ``frame_index`` (decoded frame number in
        the source), ``sample_index`` (ffmpeg's output frame number: the
        seed command's ``%4d`` minus one), ``width``, ``height``,
        ``sharpness``, ``dhash`` (16 hex digits)), ``signatures``,
        ``problems`` (one-line messages) and, not written to disk, ``run``
        (what this call did: ``processed``, ``reused``, ``frames_written``...)

    Raises:
        OSError: the output folder cannot be created or written
        ValueError: bad parameters (fps, manual ranges), or no video or photo
            among the inputs (the message names each input and its problem)
    """
    started = time.monotonic()
    if not fps or fps <= 0:
        raise ValueError(f"fps must be positive, not {fps!r}")
    check_ffmpeg_version()
    out_dir = Path(out_dir)
    _prepare_output_dir(out_dir)
    videos, photos, problems = find_inputs(inputs)
    output_root = os.path.realpath(out_dir)
    if not videos and not photos:
        raise ValueError("; ".join(problems) or "no video or image among the inputs")
    videos = [path for path in videos if not _is_inside(path, output_root)]
    photos = [path for path in photos if not _is_inside(path, output_root)]
    if not videos and not photos:
        raise ValueError(f"no video or image found outside the output folder {out_dir}")
    source_ids = _assign_source_ids(videos + photos)
    manual_by_path = _match_manual(manual, videos, source_ids, problems)
    workers = max(1, int(workers or os.cpu_count() or 1))
    run = _Run(
        out_dir=out_dir,
        fps=float(fps),
        cut_static=bool(cut_static),
        min_duration=float(min_duration),
        workers=workers,
        input_problems=problems,
    )
    jobs = [
        _Job(
            path=path,
            kind="video",
            source_id=source_ids[path],
            parameters=run.video_parameters(manual_by_path.get(path)),
            manual=manual_by_path.get(path),
        )
        for path in videos
    ] + [
        _Job(
            path=path,
            kind="photo",
            source_id=source_ids[path],
            parameters={"algorithm": ALGORITHM_VERSION},
        )
        for path in photos
    ]
    return run.execute(jobs, progress, started)


def plot_timeline(results, title="Kept and cut stretches per video"):
    """Draws one row per video: kept spans and cut segments coloured by reason.

    Args:
        results: a manifest from :func:`sample`, or one or a list of
            :func:`analyze` results
        title: the figure title

    Returns:
        the matplotlib Figure
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    rows = _timeline_rows(results)
    figure, axes = plt.subplots(figsize=(11, 1.2 + 0.45 * max(1, len(rows))))
    colours = {
        "kept": "#59a14f",
        "black": "#222222",
        "frozen": "#4e79a7",
        "corrupt": "#e15759",
        "static": "#f28e2b",
        "manual": "#b07aa1",
    }
    totals = dict.fromkeys(REASONS, 0.0)
    kept_total = duration_total = 0.0
    for row, (_label, start_time, end_time, segments, kept) in enumerate(rows):
        spans = [(start, end - start) for start, end in kept]
        axes.broken_barh(spans, (row - 0.35, 0.7), facecolors=colours["kept"])
        for segment in segments:
            axes.broken_barh(
                [(segment["start"], segment["end"] - segment["start"])],
                (row - 0.35, 0.7),
                facecolors=colours.get(segment["reason"], "#999999"),
            )
            totals[segment["reason"]] = totals.get(segment["reason"], 0.0) + (
                segment["end"] - segment["start"]
            )
        kept_total += sum(end - start for start, end in kept)
        duration_total += end_time - start_time
    axes.set_yticks(range(len(rows)), [row[0] for row in rows])
    axes.set_ylim(len(rows) - 0.5, -0.5)
    axes.set_xlim(0, max([row[2] for row in rows] + [1.0]))
    axes.set_xlabel("time in the video (s)")
    axes.set_ylabel("video")
    axes.set_title(title)
    axes.grid(axis="x", alpha=0.3)
    handles = [Patch(color=colours["kept"], label="kept")] + [
        Patch(color=colours[reason], label=f"cut: {reason}") for reason in REASONS
    ]
    axes.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    cut_text = ", ".join(
        f"{reason} {seconds:.1f} s" for reason, seconds in totals.items() if seconds
    )
    share = 100.0 * kept_total / duration_total if duration_total else 0.0
    caption = (
        f"{len(rows)} video(s): {kept_total:.1f} s kept of {duration_total:.1f} s ({share:.0f}%); "
        f"cut: {cut_text or 'nothing'}. Frames are sampled only inside the green spans."
    )
    figure.text(0.01, 0.01, caption, fontsize=9, ha="left", va="bottom")
    figure.tight_layout(rect=(0, 0.06, 1, 1))
    return figure


# --------------------------------------------------------------------------- the run


def source_table(manifest):
    """Summarises a manifest's sources, one row per input.

    Args:
        manifest: the dict returned by :func:`sample`

    Returns:
        a pandas DataFrame indexed by source id with the kind, status, codec,
        resolution, frame rate, duration, seconds cut (by reason) and frames
        sampled; skipped sources carry their one-line error
    """
    import pandas as pd

    rows = []
    for source in manifest["sources"]:
        info = source.get("probe") or {}
        cut = {}
        for segment in source.get("segments") or []:
            reason = segment.get("reason", "cut")
            cut[reason] = cut.get(reason, 0.0) + segment["end"] - segment["start"]
        rows.append(
            {
                "source_id": source["source_id"],
                "kind": source["kind"],
                "status": source["status"],
                "codec": info.get("codec"),
                "size": f"{info['display_width']}x{info['display_height']}"
                if info.get("display_width")
                else None,
                "fps": round(info["fps"], 3) if info.get("fps") else None,
                "vfr": info.get("variable_frame_rate"),
                "rotation": info.get("rotation"),
                "seconds": round(info["duration"], 2) if info.get("duration") else None,
                "seconds cut": round(sum(cut.values()), 2),
                "cut reasons": ", ".join(
                    f"{reason} {value:.1f}s" for reason, value in sorted(cut.items())
                ),
                "frames": source.get("frames", 0),
                "error": source.get("error"),
            }
        )
    return pd.DataFrame(rows).set_index("source_id") if rows else pd.DataFrame()


def contact_sheet(out_dir, manifest, count=12, columns=4):
    """Shows evenly spaced sampled frames with their source and time.

    Args:
        out_dir: the frames folder
        manifest: the dict returned by :func:`sample`
        count: frames to show
        columns: frames per row

    Returns:
        the matplotlib Figure
    """
    from platelab import visualize

    frames = manifest["frames"]
    if not frames:
        return visualize.image_grid([], caption="No frames were sampled.")
    step = max(1, len(frames) // count)
    chosen = frames[::step][:count]
    images, titles = [], []
    for frame in chosen:
        image = cv2.imread(str(Path(out_dir) / frame["image"]), cv2.IMREAD_COLOR)
        if image is None:
            continue
        images.append(image)
        when = "photo" if frame.get("time") is None else f"t = {frame['time']:.2f} s"
        titles.append(f"{frame['source_id']} · {when}")
    return visualize.image_grid(
        images,
        titles,
        columns=columns,
        caption="Evenly spaced sampled frames (full-resolution PNGs, shown scaled): no black or frozen feed should appear.",
    )


@dataclasses.dataclass
class _Job:
    path: Path
    kind: str
    source_id: str
    parameters: dict
    manual: dict | None = None


@dataclasses.dataclass
class _Result:
    entry: dict
    frames: list
    signatures: np.ndarray


class _OutputFailure(OSError):
    """An output-side failure (raised from the writers; stops the run)."""


class _Stopped(Exception):
    """Another video hit an output failure: this one stops too."""


class _Run:
    """One call of :func:`sample`: reuse decisions, workers, manifest writes."""

    def __init__(self, out_dir, fps, cut_static, min_duration, workers, input_problems):
        self.out_dir = out_dir
        self.fps = fps
        self.cut_static = cut_static
        self.min_duration = min_duration
        self.workers = workers
        self.input_problems = list(input_problems)
        self.stop = threading.Event()
        self.progress_bar = None
        self.previous, self.previous_signatures = _load_previous(out_dir)
        self.written_lock = threading.Lock()
        self.frames_written = 0
        self.last_manifest = self.previous
        self.encoder = None
        self.in_flight = 2

    def video_parameters(self, manual):
        return {
            "fps": self.fps,
            "cut_static": self.cut_static,
            "min_duration": self.min_duration,
            "manual": manual,
            "algorithm": ALGORITHM_VERSION,
        }

    def execute(self, jobs, progress, started):
        results = {}
        to_do = []
        for job in jobs:
            reused = self._reuse(job)
            if reused is not None:
                results[job.source_id] = reused
            else:
                to_do.append(job)
        reused_count = len(results)
        if jobs and not to_do:
            message = f"{self.out_dir}: nothing to do, all {len(jobs)} source(s) unchanged"
            logger.info(message)
            if progress:
                tqdm.write(message)
        video_jobs = [job for job in to_do if job.kind == "video"]
        photo_jobs = [job for job in to_do if job.kind == "photo"]
        parallel = max(1, min(len(video_jobs), self.workers))
        # frames in the PNG encoders' queue, per video: the memory stays bounded
        self.in_flight = max(2, 2 * self.workers // parallel)
        self.progress_bar = tqdm(
            total=len(to_do), disable=not progress or not to_do, unit="source", desc="sampling"
        )
        failure = None
        try:
            with ThreadPoolExecutor(self.workers, thread_name_prefix="platelab-png") as encoder:
                self.encoder = encoder
                try:
                    failure = self._run_jobs(jobs, photo_jobs, video_jobs, parallel, results)
                except BaseException:
                    self.stop.set()  # interrupted: running videos stop and clean up
                    raise
        finally:
            self.progress_bar.close()
        if failure is not None:
            with contextlib.suppress(OSError):
                self._write(jobs, results, complete=False)
            raise OSError(failure.errno, failure.strerror) from None
        manifest = self._write(jobs, results, complete=True)
        removed = self._remove_stale(manifest)
        processed = len(results) - reused_count
        manifest["run"] = {
            "processed": processed,
            "reused": reused_count,
            "frames_written": self.frames_written,
            "frames_removed": removed,
            "workers": self.workers,
            "parallel_videos": parallel if video_jobs else 0,
            "elapsed_s": round(time.monotonic() - started, 3),
        }
        logger.info(
            "%s: %d frame(s) from %d source(s) (%d processed, %d unchanged)",
            self.out_dir,
            len(manifest["frames"]),
            len(results),
            processed,
            reused_count,
        )
        return manifest

    def _run_jobs(self, jobs, photo_jobs, video_jobs, parallel, results):
        """Processes the photos, then the videos; returns the first output failure or None."""
        failure = None
        futures = [(job, self.encoder.submit(self._photo, job)) for job in photo_jobs]
        for job, future in futures:
            try:
                results[job.source_id] = future.result()
            except _OutputFailure as error:
                failure = failure or error
        if failure is None and photo_jobs:
            failure = self._checkpoint(jobs, results)
        if failure is not None or not video_jobs:
            return failure
        with ThreadPoolExecutor(parallel, thread_name_prefix="platelab-video") as pool:
            futures = {pool.submit(self._video, job): job for job in video_jobs}
            try:
                for future in as_completed(futures):
                    try:
                        results[futures[future].source_id] = future.result()
                    except _Stopped:
                        continue
                    except _OutputFailure as error:
                        failure = failure or error
                        self.stop.set()
                        continue
                    if failure is None:
                        failure = self._checkpoint(jobs, results)
            except BaseException:
                self.stop.set()
                raise
        return failure

    def _checkpoint(self, jobs, results):
        """Writes the manifest so far; returns an output failure instead of raising it."""
        try:
            self._write(jobs, results, complete=False)
        except OSError as error:
            self.stop.set()
            return _OutputFailure(error.errno or errno.EIO, error.strerror or str(error))
        return None

    # ------------------------------------------------------------------ reuse

    def _reuse(self, job):
        if not self.previous:
            return None
        entries = {entry["source_id"]: entry for entry in self.previous.get("sources", [])}
        entry = entries.get(job.source_id)
        if entry is None or entry.get("path") != str(Path(job.path).resolve()):
            return None
        if entry.get("kind") != job.kind or entry.get("parameters") != job.parameters:
            return None
        try:
            stat = os.stat(job.path)
        except OSError:
            return None
        fingerprint = entry.get("fingerprint") or {}
        if fingerprint.get("bytes") != stat.st_size:
            return None
        if fingerprint.get("mtime_ns") != stat.st_mtime_ns:
            try:
                if sha256_file(job.path) != fingerprint.get("sha256"):
                    return None
            except OSError:
                return None
            entry = {**entry, "fingerprint": {**fingerprint, "mtime_ns": stat.st_mtime_ns}}
        frames = [
            frame
            for frame in self.previous.get("frames", [])
            if frame["source_id"] == job.source_id
        ]
        if len(frames) != entry.get("frames", 0):
            return None
        if not all((self.out_dir / frame["image"]).is_file() for frame in frames):
            return None
        rows = self._previous_rows(frames)
        if rows is None:
            return None
        return _Result(entry=entry, frames=frames, signatures=rows)

    def _previous_rows(self, frames):
        if not frames:
            return np.zeros((0, signatures.SIGNATURE_LENGTH), np.uint8)
        array = self.previous_signatures
        order = {frame["image"]: row for row, frame in enumerate(self.previous["frames"])}
        if array is None or array.shape != (len(order), signatures.SIGNATURE_LENGTH):
            return None
        return array[[order[frame["image"]] for frame in frames]]

    # ------------------------------------------------------------------ photos

    def _photo(self, job):
        entry = _entry(job)
        relative = f"{PHOTOS_DIR}/{job.source_id}.png"
        try:
            entry["fingerprint"] = _fingerprint(job.path)
            image, details = _load_photo(job.path)
        except MediaError as error:
            self._advance()
            return _skipped(entry, error)
        entry["probe"] = details
        folder = self.out_dir / PHOTOS_DIR
        _make_folder(folder)
        result = _encode_frame(image, None, self.out_dir / relative, self._count_written)
        result.update(
            image=relative,
            source_id=job.source_id,
            time=None,
            frame_index=0,
            sample_index=0,
        )
        signature = result.pop("signature")
        entry["frames"] = 1
        self._advance()
        return _Result(entry=entry, frames=[_frame_record(result)], signatures=signature[None, :])

    # ------------------------------------------------------------------ videos

    def _video(self, job):
        entry = _entry(job)
        written = []
        try:
            if self.stop.is_set():
                raise _Stopped()
            entry["fingerprint"] = _fingerprint(job.path)
            info = probe(job.path)
            entry["probe"] = info
            result = self._sample_video(job, entry, info, written)
        except BaseException as error:
            _remove_files(written)
            if isinstance(error, (MediaError, FFmpegError)):
                self._advance()
                return _skipped(entry, error)
            if isinstance(error, OSError) and not isinstance(error, _OutputFailure):
                self._advance()
                return _skipped(entry, MediaError(job.path, str(error)))
            raise
        self._advance()
        return result

    def _sample_video(self, job, entry, info, written):
        """Samples one probed video: one decode pass, frames held, cut or encoded as it goes.

        Args:
            job: the video's :class:`_Job`
            entry: its manifest entry, filled in here
            info: its :func:`platelab.collect.probe.probe` record
            written: a list to which each PNG path is added before it is written (so a
                failure can remove them)

        Returns:
            the video's :class:`_Result`
        """
        started = time.monotonic()
        folder = self.out_dir / job.source_id
        _make_folder(folder)
        ranges = job.manual or {"keep": [], "cut": []}
        timeline = Timeline(info, self.cut_static, self.min_duration)
        video_pass = DecodePass(job.path, info, timeline, sample_fps=self.fps)
        held = _VideoFrames(self, job, ranges, timeline, video_pass, written)
        last_index = None
        try:
            video_pass.start()
            for sample_index, frame_index, frame_time, buffer in video_pass.sampled_frames():
                if self.stop.is_set():
                    raise _Stopped()
                if frame_index is not None and frame_index == last_index:
                    held.counts["duplicates"] += 1
                    continue
                last_index = frame_index
                held.pending.append((sample_index, frame_index, frame_time, buffer))
                held.flush(final=False)
                held.collect(held.limit)
            video_pass.finish()
            held.flush(final=True)
            held.collect(0)
        finally:
            video_pass.close()
            held.cancel()
        if not timeline.times:
            raise MediaError(job.path, f"no frame could be decoded ({video_pass.last_message()})")
        segments = apply_manual(timeline.segments(), ranges, info["end_time"])
        frames, rows = _drop_inconsistent(held.frames, held.rows, segments, self.out_dir)
        entry.update(
            segments=segments,
            kept=complement(segments, info["end_time"], info["video_start"]),
            frames=len(frames),
            duplicates=held.counts["duplicates"],
            frames_cut=held.counts["cut"],
            decode=video_pass.decode_report(),
            elapsed_s=round(time.monotonic() - started, 3),
        )
        entry["problems"] = _video_problems(job.path, info, timeline, video_pass)
        logger.info(
            "%s: %d frame(s), %d cut segment(s), %.1f s",
            job.path,
            len(frames),
            len(segments),
            entry["elapsed_s"],
        )
        array = np.stack(rows) if rows else np.zeros((0, signatures.SIGNATURE_LENGTH), np.uint8)
        return _Result(entry=entry, frames=frames, signatures=array)

    def _count_written(self):
        with self.written_lock:
            self.frames_written += 1
            self.progress_bar.set_postfix_str(f"{self.frames_written} frames", refresh=False)

    def _advance(self):
        with self.written_lock:
            self.progress_bar.update(1)

    # ------------------------------------------------------------------ manifest

    def _write(self, jobs, results, complete):
        sources, frames, rows = [], [], []
        problems = list(self.input_problems)
        for job in jobs:
            result = results.get(job.source_id)
            if result is None:
                continue
            sources.append(result.entry)
            frames.extend(result.frames)
            rows.append(result.signatures)
            problems.extend(result.entry.get("problems", []))
        array = (
            np.concatenate(rows) if rows else np.zeros((0, signatures.SIGNATURE_LENGTH), np.uint8)
        ).astype(np.uint8)
        manifest = {
            "format": MANIFEST_FORMAT,
            "parameters": {
                "fps": self.fps,
                "cut_static": self.cut_static,
                "min_duration": self.min_duration,
            },
            "ffmpeg": ".".join(map(str, ffmpeg_version())),
            "sources": sources,
            "frames": frames,
            "signatures": {
                "file": SIGNATURES_NAME,
                "rows": int(array.shape[0]),
                "length": signatures.SIGNATURE_LENGTH,
                "thumbnail_size": list(signatures.THUMBNAIL_SIZE),
            },
            "problems": problems,
            "complete": complete,
        }
        document = json.loads(json.dumps(manifest, default=json_default))
        unchanged = (
            self.last_manifest == document
            and self.previous_signatures is not None
            and np.array_equal(self.previous_signatures, array)
        )
        if not unchanged:
            try:
                buffer = io.BytesIO()
                np.save(buffer, array, allow_pickle=False)
                atomic_write_bytes(self.out_dir / SIGNATURES_NAME, buffer.getvalue())
                atomic_write_json(self.out_dir / MANIFEST_NAME, document)
            except OSError as error:
                raise OSError(
                    error.errno, f"cannot write the manifest in {self.out_dir}: {error.strerror}"
                ) from None
            self.last_manifest = document
            self.previous_signatures = array
        return document

    def _remove_stale(self, manifest):
        if not self.previous:
            return 0
        current = {frame["image"] for frame in manifest["frames"]}
        stale = [
            self.out_dir / frame["image"]
            for frame in self.previous.get("frames", [])
            if frame["image"] not in current
        ]
        _remove_files(stale)
        for folder in {path.parent for path in stale}:
            with contextlib.suppress(OSError):
                folder.rmdir()
        if stale:
            logger.info(
                "%s: removed %d frame(s) no longer in the manifest", self.out_dir, len(stale)
            )
        self.previous = manifest
        return len(stale)


# --------------------------------------------------------------------------- frames and photos


class _VideoFrames:
    """One video's sampled frames between the decoder and their PNGs.

    A sampled frame waits in ``pending`` until the analysis has seen past it
    (:meth:`flush`), then is cut or handed to the encoder pool; its PNG's future
    waits in ``outstanding`` until done (:meth:`collect`), at most ``limit`` at a
    time, and its record and signature join ``frames`` and ``rows`` in order.

    Args:
        run: the :class:`_Run` (output folder, encoder pool, progress)
        job: the video's :class:`_Job`
        ranges: the video's manual ``{"keep": [...], "cut": [...]}`` time ranges
        timeline: the video's :class:`platelab.collect.probe.Timeline`
        video_pass: the video's :class:`platelab.collect.probe.DecodePass`
        written: a list to which each PNG path is added before it is written
    """

    def __init__(self, run, job, ranges, timeline, video_pass, written):
        self.run = run
        self.job = job
        self.ranges = ranges
        self.timeline = timeline
        self.video_pass = video_pass
        self.written = written
        self.pending = deque()
        self.outstanding = deque()
        self.frames, self.rows = [], []
        self.names = set()
        self.counts = {"duplicates": 0, "cut": 0}
        self.limit = run.in_flight

    def collect(self, block_until):
        """Takes the finished PNGs in order, waiting while more than ``block_until`` are out."""
        outstanding = self.outstanding
        while outstanding and (len(outstanding) > block_until or outstanding[0][1].done()):
            record, future = outstanding.popleft()
            result = future.result()
            signature = result.pop("signature")
            record.update(result)
            self.frames.append(_frame_record(record))
            self.rows.append(signature)

    def flush(self, final):
        """Cuts or encodes the held frames the analysis has seen past (all with ``final``)."""
        pending, ranges = self.pending, self.ranges
        while pending and (final or self.timeline.covered(pending[0][2])):
            sample_index, frame_index, frame_time, buffer = pending.popleft()
            reason = _manual_reason(frame_time, ranges)
            if reason is None and not in_ranges(frame_time, ranges["keep"]):
                reason = self.timeline.cut_reason(frame_time)
            if reason is not None:
                self.counts["cut"] += 1
                continue
            self._encode(self._record(sample_index, frame_index, frame_time), buffer)

    def cancel(self):
        """Cancels the PNGs not yet written and waits for those already being written."""
        for _record, future in self.outstanding:
            future.cancel()
        for _record, future in self.outstanding:
            with contextlib.suppress(BaseException):
                future.result()

    def _record(self, sample_index, frame_index, frame_time):
        """A kept frame's manifest record, named by its time (and frame index if taken)."""
        source_id = self.job.source_id
        name = f"{source_id}_t{round(frame_time * 1000):08d}"
        if name in self.names:
            name = f"{name}_f{frame_index}"
        self.names.add(name)
        return {
            "image": f"{source_id}/{name}.png",
            "source_id": source_id,
            "time": round(frame_time, 6),
            "frame_index": frame_index,
            "sample_index": sample_index,
        }

    def _encode(self, record, buffer):
        """Submits the frame's PNG to the encoder pool, once there is room."""
        path = self.run.out_dir / record["image"]
        self.written.append(path)
        self.collect(self.limit - 1)
        size = (self.video_pass.width, self.video_pass.height)
        future = self.run.encoder.submit(_encode_frame, buffer, size, path, self.run._count_written)
        self.outstanding.append((record, future))


def _encode_frame(image, rgb_size, path, on_written=None):
    """PNG-encodes one frame, writes it atomically and computes its signature.

    Args:
        image: a BGR uint8 array, or raw RGB bytes when ``rgb_size`` is given
        rgb_size: ``(width, height)`` of raw RGB bytes, or None
        path: the PNG to write
        on_written: called after the file is in place

    Returns:
        a dict with ``width``, ``height``, ``sharpness``, ``dhash`` and ``signature``

    Raises:
        _OutputFailure: the file cannot be written
    """
    if rgb_size is not None:
        width, height = rgb_size
        rgb = np.frombuffer(image, np.uint8).reshape(height, width, 3)
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        if isal_zlib is not None:
            encoded = _png_bytes(rgb)
        else:
            encoded = _cv2_png(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), path)
    else:
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        if isal_zlib is not None:
            encoded = _png_bytes(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        else:
            encoded = _cv2_png(image, path)
    try:
        _write_file(path, encoded)
    except OSError as error:
        raise _OutputFailure(
            error.errno or errno.EIO,
            f"cannot write frames to {path.parent}: {error.strerror or error} (at {path.name})",
        ) from None
    if on_written is not None:
        on_written()
    signature = signatures.compute_signature(gray)
    return {
        "width": int(gray.shape[1]),
        "height": int(gray.shape[0]),
        "sharpness": round(signatures.sharpness(gray), 4),
        "dhash": f"{signatures.difference_hash(signature):016x}",
        "signature": signature,
    }


def _png_bytes(rgb):
    """Encodes an RGB uint8 image as a lossless 8-bit PNG with ISA-L's deflate.

    Every row uses PNG's 'up' filter (the row above subtracted; the first row's
    "above" is zeros), which suits camera frames, in one IDAT chunk.

    Args:
        rgb: an ``(H, W, 3)`` uint8 array (any strides)

    Returns:
        the PNG file's bytes
    """
    height, width = rgb.shape[:2]
    rows = np.ascontiguousarray(rgb).reshape(height, width * 3)
    filtered = np.empty((height, width * 3 + 1), np.uint8)
    filtered[:, 0] = 2  # filter type 'up'
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"".join(
        [
            PNG_SIGNATURE,
            _png_chunk(b"IHDR", header),
            _png_chunk(b"IDAT", isal_zlib.compress(filtered, 1)),
            _png_chunk(b"IEND", b""),
        ]
    )


def _png_chunk(kind, data):
    crc = zlib.crc32(data, zlib.crc32(kind))
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _cv2_png(image_bgr, path):
    ok, encoded = cv2.imencode(".png", image_bgr, PNG_PARAMETERS)
    if not ok:
        raise _OutputFailure(errno.EIO, f"cannot encode {path.name} as PNG")
    return encoded


def _write_file(path, data):
    """Writes bytes under a temporary name beside ``path`` and renames it into place."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            handle.write(memoryview(data))
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _load_photo(path):
    """Decodes a photo to 8-bit BGR: EXIF orientation applied, alpha flattened on white.

    Returns:
        ``(image, details)``: the BGR array and a dict describing the original

    Raises:
        MediaError: the file is empty, unreadable or not a supported image
    """
    path = Path(path)
    try:
        data = np.fromfile(path, np.uint8)
    except OSError as error:
        raise MediaError(path, f"cannot read ({error.strerror or error})") from None
    if data.size == 0:
        raise MediaError(path, "empty file (0 bytes)")
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise MediaError(path, "unreadable image (corrupt or not a supported image format)")
    details = {
        "width": int(image.shape[1]),
        "height": int(image.shape[0]),
        "channels": 1 if image.ndim == 2 else int(image.shape[2]),
        "dtype": str(image.dtype),
        "orientation": _exif_orientation(path),
    }
    if image.dtype == np.uint16:
        image = ((image.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif image.dtype in (np.float32, np.float64):
        image = np.clip(np.nan_to_num(image) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise MediaError(path, f"unsupported image sample type ({image.dtype})")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 2:
        image = _flatten_alpha(cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2BGR), image[:, :, 1])
    elif image.shape[2] == 4:
        image = _flatten_alpha(image[:, :, :3], image[:, :, 3])
    image = _orient(image, details["orientation"])
    return np.ascontiguousarray(image), details


def _flatten_alpha(colour, alpha):
    weight = alpha.astype(np.float32)[:, :, None] / 255.0
    blended = colour.astype(np.float32) * weight + 255.0 * (1.0 - weight)
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def _exif_orientation(path):
    try:
        from PIL import Image

        with Image.open(path) as image:
            return int(image.getexif().get(0x0112, 1) or 1)
    except Exception:  # noqa: BLE001 - no EXIF (or a format PIL does not read): upright
        return 1


def _orient(image, orientation):
    """Applies an EXIF orientation (1-8) to an image."""
    if orientation == 2:
        return cv2.flip(image, 1)
    if orientation == 3:
        return cv2.rotate(image, cv2.ROTATE_180)
    if orientation == 4:
        return cv2.flip(image, 0)
    if orientation == 5:
        return cv2.transpose(image)
    if orientation == 6:
        return cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE)
    if orientation == 7:
        return cv2.rotate(cv2.transpose(image), cv2.ROTATE_180)
    if orientation == 8:
        return cv2.rotate(image, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return image


# --------------------------------------------------------------------------- small helpers


def _match_manual(manual, videos, source_ids, problems):
    if not manual:
        return {}
    if not isinstance(manual, dict):
        raise ValueError("manual must map a video (stem, name, source id or path) to its ranges")
    matched = {}
    for key, value in manual.items():
        hits = [
            path
            for path in videos
            if key in (source_ids[path], path.stem, path.name, str(path))
            or os.path.realpath(os.fspath(key)) == os.path.realpath(path)
        ]
        if not hits:
            problems.append(f"{key}: manual ranges given for a video not among the inputs")
            continue
        for path in hits:
            matched[path] = normalise_manual(value, key)
    return matched


def _manual_reason(frame_time, ranges):
    return "manual" if in_ranges(frame_time, ranges["cut"]) else None


def _walk(folder):
    for root, folders, files in os.walk(folder, followlinks=True):
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(root) / name


def _is_inside(path, root):
    real = os.path.realpath(path)
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def _assign_source_ids(paths):
    """Gives each input a file-system-safe id from its stem; clashes get a path hash."""
    import hashlib

    slugs = {path: source_slug(path.stem) for path in paths}
    counts = {}
    for slug in slugs.values():
        counts[slug.lower()] = counts.get(slug.lower(), 0) + 1
    ids = {}
    for path, slug in slugs.items():
        if counts[slug.lower()] > 1 or slug.lower() == PHOTOS_DIR:
            digest = hashlib.sha256(os.path.realpath(path).encode("utf-8", "replace")).hexdigest()
            slug = f"{slug}-{digest[:8]}"
        ids[path] = slug
    return ids


def _prepare_output_dir(out_dir):
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OSError(
            error.errno, f"cannot create the output folder {out_dir}: {error.strerror or error}"
        ) from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise OSError(errno.EACCES, f"cannot write in the output folder {out_dir}")


def _make_folder(folder):
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _OutputFailure(
            error.errno or errno.EIO, f"cannot create {folder}: {error.strerror or error}"
        ) from None


def _load_previous(out_dir):
    path = out_dir / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, None
    if manifest.get("format") != MANIFEST_FORMAT:
        return None, None
    try:
        array = np.load(out_dir / SIGNATURES_NAME, allow_pickle=False)
    except (OSError, ValueError):
        array = None
    return manifest, array


def _fingerprint(path):
    try:
        stat = os.stat(path)
        return {"sha256": sha256_file(path), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    except OSError as error:
        raise MediaError(path, f"cannot read ({error.strerror or error})") from None


def _entry(job):
    return {
        "source_id": job.source_id,
        "path": str(Path(job.path).resolve()),
        "kind": job.kind,
        "status": "ok",
        "error": None,
        "fingerprint": None,
        "parameters": job.parameters,
        "probe": None,
        "segments": [],
        "kept": [],
        "frames": 0,
        "problems": [],
    }


def _skipped(entry, error):
    message = str(error) if isinstance(error, MediaError) else f"{entry['path']}: {error}"
    entry.update(status="skipped", error=message, frames=0, segments=[], kept=[])
    entry["problems"] = [message]
    logger.info("skipped %s", message)
    return _Result(
        entry=entry, frames=[], signatures=np.zeros((0, signatures.SIGNATURE_LENGTH), np.uint8)
    )


def _remove_files(paths):
    for path in paths:
        with contextlib.suppress(OSError):
            os.unlink(path)
        with contextlib.suppress(OSError):
            for stale in Path(path).parent.glob(f".{Path(path).name}.*.tmp"):
                stale.unlink()


def _frame_record(record):
    keys = (
        "image",
        "source_id",
        "time",
        "frame_index",
        "sample_index",
        "width",
        "height",
        "sharpness",
        "dhash",
    )
    return {key: record.get(key) for key in keys}


def _drop_inconsistent(frames, rows, segments, out_dir):
    """Removes frames that ended up inside a final cut segment (should not happen)."""
    kept_frames, kept_rows = [], []
    for frame, row in zip(frames, rows, strict=True):
        if any(cut["start"] <= frame["time"] < cut["end"] for cut in segments):
            logger.warning("%s: inside a cut segment after all; removed", frame["image"])
            _remove_files([out_dir / frame["image"]])
            continue
        kept_frames.append(frame)
        kept_rows.append(row)
    return kept_frames, kept_rows


def _video_problems(path, info, timeline, video_pass):
    problems = []
    decoded = timeline.decoded_end()
    if info.get("truncated") or (info["end_time"] - decoded > timeline.gap):
        problems.append(
            f"{path}: truncated or damaged: decodable up to {decoded:.1f} s of "
            f"{info['end_time']:.1f} s; frames sampled from the readable part"
        )
    if video_pass.corrupt_frames:
        problems.append(
            f"{path}: {video_pass.corrupt_frames} corrupt frame(s) reported by the decoder; "
            "those stretches are cut"
        )
    return problems


def _timeline_rows(results):
    """``(label, start, end, segments, kept)`` per video of a manifest or analyze() results."""
    if isinstance(results, dict) and "sources" in results:
        return [
            (
                source["source_id"],
                float(source["probe"].get("video_start") or 0.0),
                float(source["probe"].get("end_time") or source["probe"]["duration"]),
                source.get("segments", []),
                source.get("kept", []),
            )
            for source in results["sources"]
            if source.get("kind") == "video" and source.get("status") == "ok"
        ]
    items = [results] if isinstance(results, dict) else list(results)
    return [
        (
            item.get("source_id") or Path(item["path"]).stem,
            float(item.get("start") or 0.0),
            float(item.get("end") or item["duration"]),
            item["segments"],
            item["kept"],
        )
        for item in items
    ]
