"""Looking at videos (stage 01, collect): metadata, dead feed, live recording.

:func:`probe` describes a video file: duration, frame rate (and whether it is
variable), resolution, codec, pixel format and bit depth, rotation metadata
and frame count. It uses ``ffprobe`` where it is on the ``PATH`` and falls
back to parsing ``ffmpeg -i`` otherwise (the ffmpeg from the
``imageio-ffmpeg`` wheel comes without ffprobe); frame timestamps come from
the packets, read without decoding, in both cases.

:func:`analyze` finds the unusable stretches of a video in one decode: a
low-resolution grey stream (about 4 frames a second, 160 pixels wide, piped
into numpy) gives black frames, frozen frames (identical to the previous
analysis frame, allowing for re-encoding drift), uniform "no picture" frames
and, optionally, stretches without motion; ffmpeg's decoder log
(``-debug_ts``) adds the frames the decoder flags as corrupt (up to the next
clean key frame) and holes in the timeline (missing frames, a truncated end).
Stretches shorter than a minimum duration are kept. :class:`DecodePass` and
:class:`Timeline` do the work; :mod:`platelab.collect.frames` runs the same pass with
the sampled frames as a second output.

A live scene with neither noise nor motion between analysis frames cannot be
told from a frozen feed and is cut as frozen.

:func:`record` saves a stretch of a live source (RTSP/HTTP URL, camera
device, anything ffmpeg can read) to an MP4 file, copying the streams where
the container allows it.

Anything wrong with an input raises :class:`MediaError`, whose message is one
line naming the file and the problem.
"""

import contextlib
import dataclasses
import functools
import json
import logging
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import unicodedata
from bisect import bisect_right
from collections import deque
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from platelab.exceptions import PlatelabError
from platelab.ffmpeg import FFmpegError, ffmpeg_exe

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset(
    (  # noqa: SIM905 - a word list reads better
        ".3gp .asf .avi .dav .flv .h264 .h265 .hevc .m2ts .m4v .mj2 .mjpeg .mkv .mov .mp4 .mpeg "
        ".mpg .mts .mxf .ogv .ts .vob .webm .wmv"
    ).split()
)
"""File extensions treated as videos (lower case)."""
PHOTO_EXTENSIONS = frozenset(
    ".bmp .dib .jpe .jpeg .jpg .jp2 .pbm .pgm .png .ppm .tif .tiff .webp".split()  # noqa: SIM905
)
"""File extensions treated as photos (lower case)."""
MIN_SEGMENT_SECONDS = 0.5
REASONS = ("black", "frozen", "corrupt", "static", "manual")
"""Why a stretch was cut; ``manual`` marks the user's own cut ranges."""

ANALYSIS_INTERVAL = 0.25
"""Seconds between analysis frames (at most; slower sources give every frame)."""
ANALYSIS_WIDTH = 160
BLACK_LEVEL = 24
"""Grey level (0-255) under which a pixel counts as black."""
BLACK_FRACTION = 0.995
"""A frame is black when at least this fraction of its pixels is black."""
UNIFORM_STD = 2.0
"""A non-black frame with a smaller grey standard deviation has no picture (corrupt)."""
FROZEN_MEAN_DIFFERENCE = 0.02
"""Mean absolute grey difference to the previous analysis frame under which a frame is frozen."""
MOTION_LEVEL = 10
"""Grey difference from which a pixel counts as moving."""
STATIC_MOTION_FRACTION = 0.0005
"""A frame with fewer moving pixels than this fraction shows no motion (static)."""
QUIET_MOTION_FRACTION = 0.002
QUIET_MEAN_DIFFERENCE = 3.0
"""Frames this quiet next to frozen ones (re-encoding drift) join the frozen stretch."""
GAP_SECONDS = 1.0
GAP_FRAMES = 4
"""A hole in the decoded timeline longer than both (seconds; frame intervals) is corrupt."""

QUEUED_FRAMES = 3
"""Full-resolution frames buffered between ffmpeg and the sampler, per video."""
SEPARATE_CONVERSION_FORMATS = frozenset(
    ("yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "gray")
)
"""Decoded formats whose sampled frames go to RGB in a second ffmpeg (see DecodePass)."""
VFR_TOLERANCE = 0.1
"""Frame intervals spread by more than this fraction of the median mean a variable frame rate."""
MINIMUM_FFMPEG = (6, 1)
"""Frame sampling needs ``-stats_enc_pre`` (ffmpeg 6.1 and later)."""


class MediaError(PlatelabError, ValueError):
    """An input file (or live source) that cannot be used.

    Attributes:
        path: the file or URL, as given
        problem: what is wrong with it, in a few words
    """

    def __init__(self, path, problem):
        self.path = str(path)
        self.problem = " ".join(str(problem).split())
        super().__init__(f"{self.path}: {self.problem}")


def probe(path):
    """Describes a video file.

    Args:
        path: a video file

    Returns:
        a dict with ``path``, ``container``, ``duration`` and ``start_time``
        (seconds), ``stream_index``, ``codec``, ``profile``, ``width`` and
        ``height`` (as coded), ``rotation`` (degrees counter-clockwise from
        the display matrix or the rotate tag, 0, 90, 180 or 270),
        ``display_width`` and ``display_height`` (after rotation: the size of
        the sampled frames), ``pixel_format``, ``bit_depth``, ``fps`` (the
        nominal rate, ``r_frame_rate``), ``avg_fps``, ``variable_frame_rate``,
        ``frame_count`` (video packets), ``frame_interval`` (median seconds
        between frames) with ``frame_interval_min`` and
        ``frame_interval_max``, ``has_audio``, ``truncated`` (packets missing
        at the end), ``warnings`` and ``probed_with`` (``ffprobe`` or
        ``ffmpeg``)

    Raises:
        MediaError: the file is missing, empty, unreadable, not a video, has
            no video stream or no frames
    """
    path = Path(path)
    _check_file(path)
    info = _probe_with_ffprobe(path) if shutil.which("ffprobe") else _probe_with_ffmpeg(path)
    info["frame_count"] = len(info.pop("_packet_times"))
    if info["frame_count"] == 0:
        raise MediaError(path, "no video frames (the video stream is empty)")
    logger.debug("probed %s: %s", path, info)
    return info


def analyze(path, cut_static=False, min_duration=MIN_SEGMENT_SECONDS, manual=None):
    """Finds the unusable stretches of one video in a single low-resolution decode.

    Args:
        path: a video file
        cut_static: also cut stretches without motion
        min_duration: shorter stretches are kept (seconds)
        manual: optional ``{"keep": [[start, end], ...], "cut": [[start, end], ...]}``
            (seconds); manual cuts are added (reason ``manual``) and manual
            keeps override automatic cuts

    Returns:
        a dict with ``path``, ``source_id``, ``duration``, ``segments`` (cut
        stretches: ``{"start", "end", "reason"}``, reason one of
        :data:`REASONS`), ``kept`` (``[[start, end], ...]``), ``analysis``
        (sample count and spacing), ``decode`` (warnings, corrupt frames) and
        ``probe``

    Raises:
        MediaError: the file is not a readable video
    """
    check_ffmpeg_version()
    path = Path(path)
    info = probe(path)
    ranges = normalise_manual(manual, path)
    timeline = Timeline(info, cut_static, min_duration)
    video_pass = DecodePass(path, info, timeline)
    try:
        video_pass.start()
        video_pass.finish()
    finally:
        video_pass.close()
    if not timeline.times:
        raise MediaError(path, f"no frame could be decoded ({video_pass.last_message()})")
    segments = apply_manual(timeline.segments(), ranges, info["end_time"])
    return {
        "path": str(path),
        "source_id": source_slug(path.stem),
        "duration": info["duration"],
        "start": info["video_start"],
        "end": info["end_time"],
        "segments": segments,
        "kept": complement(segments, info["end_time"], info["video_start"]),
        "analysis": {"samples": len(timeline.times), "interval": timeline.step},
        "decode": video_pass.decode_report(),
        "probe": info,
    }


def record(source_url, seconds, out_path, timeout=None):
    """Records a stretch of a live source to an MP4 file.

    The streams are copied (``-c copy``) where MP4 can hold them; otherwise
    (raw camera frames, codecs MP4 does not take) the video is encoded with
    libx264 (CRF 18) and the audio with AAC. The file is written under a
    temporary name and renamed when complete.

    Args:
        source_url: an RTSP/HTTP(S)/UDP URL, a camera device such as
            ``/dev/video0``, or any input ffmpeg can open
        seconds: how long to record
        out_path: the MP4 file to write (its folder is created)
        timeout: seconds to wait in all before giving up (default: the
            duration plus 60 s)

    Returns:
        the Path of the recording

    Raises:
        MediaError: the source cannot be opened or delivers no video
        OSError: the output file cannot be written
    """
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, not {seconds}")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    timeout = timeout or seconds + 60
    source = str(source_url)
    input_options = []
    if source.startswith("rtsp://"):
        input_options += ["-rtsp_transport", "tcp"]
    microseconds = str(int(min(timeout, 30) * 1e6))
    if source.startswith("rtsp://"):
        input_options += ["-timeout", microseconds]
    elif re.match(r"^(https?|tcp|rtmp)://", source):
        input_options += ["-rw_timeout", microseconds]
    if source.startswith("/dev/video"):
        input_options += ["-f", "v4l2"]
    attempts = [["-c", "copy"]]
    encode = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p"]
    attempts.append([*encode, "-c:a", "aac"])
    if source.startswith("/dev/video"):
        attempts = attempts[1:]
    handle, temporary = tempfile.mkstemp(
        prefix=f".{out_path.name}.", suffix=".tmp.mp4", dir=out_path.parent
    )
    os.close(handle)
    last_problem = "no video recorded"
    try:
        for codec_options in attempts:
            command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
            command += [*input_options, "-i", source, "-t", f"{seconds:.3f}"]
            command += ["-map", "0:v:0", "-map", "0:a:0?", *codec_options]
            command += ["-movflags", "+faststart", "-f", "mp4", temporary]
            try:
                result = subprocess.run(command, capture_output=True, timeout=timeout)
            except subprocess.TimeoutExpired:
                last_problem = f"no complete recording within {timeout:.0f} s"
                continue
            messages = result.stderr.decode("utf-8", "replace").strip().splitlines()
            if result.returncode == 0 and os.path.getsize(temporary) > 0:
                try:
                    info = probe(temporary)
                except MediaError as error:
                    last_problem = f"recording unreadable ({error.problem})"
                    continue
                os.replace(temporary, out_path)
                logger.info(
                    "recorded %.1f s of %s to %s (%s)",
                    info["duration"],
                    source,
                    out_path,
                    "stream copy" if codec_options[0] == "-c" else "re-encoded",
                )
                return out_path
            last_problem = _last_message(messages) or f"ffmpeg exited {result.returncode}"
            last_problem = last_problem.replace("Error opening input files: ", "")
            if _is_output_problem(last_problem):
                raise OSError(f"cannot write {out_path}: {last_problem}")
        raise MediaError(source, f"cannot record: {last_problem}")
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temporary)


def is_live_source(source):
    """Tells whether a source string is a URL or a capture device rather than a file."""
    text = str(source)
    return bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", text)) or text.startswith("/dev/video")


@functools.cache
def ffmpeg_version(executable=None):
    """Returns the (major, minor) version of an ffmpeg binary ((99, 0) for git builds)."""
    executable = executable or ffmpeg_exe()
    try:
        output = subprocess.run(
            [executable, "-hide_banner", "-version"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as error:
        raise FFmpegError(f"cannot run {executable}: {error}") from error
    match = re.search(r"ffmpeg version n?(\d+)\.(\d+)", output)
    if not match:
        return (99, 0)
    return int(match.group(1)), int(match.group(2))


def check_ffmpeg_version():
    """Raises FFmpegError if the ffmpeg binary is older than :data:`MINIMUM_FFMPEG`."""
    version = ffmpeg_version()
    if version < MINIMUM_FFMPEG:
        raise FFmpegError(
            f"{ffmpeg_exe()} is ffmpeg {version[0]}.{version[1]}; frame sampling needs "
            f"{MINIMUM_FFMPEG[0]}.{MINIMUM_FFMPEG[1]} or later (unset PLATELAB_FFMPEG to use "
            "the imageio-ffmpeg binary)"
        )


def bit_depth(pixel_format):
    """Returns the bits per sample of an ffmpeg pixel format name (8 when unknown)."""
    name = (pixel_format or "").lower()
    for prefix, depth in _BIT_DEPTH_PREFIXES:
        if name.startswith(prefix):
            return depth
    match = re.search(r"(\d{1,2})(le|be)$", name)
    if match and 9 <= int(match.group(1)) <= 32:
        return int(match.group(1))
    return 8


class DecodePass:
    """One ffmpeg decode feeding the analysis stream and, optionally, the sampled frames.

    The sampled frames are ffmpeg's ``-r FPS`` output. For the common 8-bit
    formats they leave the decoding ffmpeg in their decoded format (Matroska,
    which keeps the colour properties) and a second ffmpeg converts them to
    RGB, so only the sampled frames are converted (a plain ``ffmpeg -i VIDEO -r FPS``
    converts every decoded frame before ``-r`` drops most of them); the conversion is
    the same auto-inserted swscale conversion, so the pixels are the same.
    Other formats are converted to RGB in the decoding ffmpeg itself.
    """

    def __init__(self, path, info, timeline, sample_fps=None):
        self.path = Path(path)
        self.info = info
        self.timeline = timeline
        self.sample_fps = sample_fps
        self.separate_conversion = bool(sample_fps) and (
            info.get("pixel_format") in SEPARATE_CONVERSION_FORMATS
        )
        self.converter = None
        self.width = info["display_width"]
        self.height = info["display_height"]
        self.analysis_width = ANALYSIS_WIDTH
        self.analysis_height = max(2, 2 * round(ANALYSIS_WIDTH * self.height / self.width / 2))
        self.process = None
        self.threads_running = []
        self.full_frames = queue.Queue(maxsize=QUEUED_FRAMES)
        self.full_stats = queue.Queue()
        self.analysis_stats = queue.Queue()
        self.messages = deque(maxlen=8)
        self.warning_count = 0
        self.corrupt_frames = 0
        self.partial_bytes = 0
        self.closing = threading.Event()
        self.read_error = None

    def command(self, analysis_pipe, full_stats_pipe, analysis_stats_pipe, frames_pipe=None):
        """The ffmpeg command line: sampled frames (optional) and the analysis stream."""
        stream = f"0:{self.info['stream_index']}"
        command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats"]
        # level tags and the decoder's per-frame log (-debug_ts) locate corrupt frames
        command += ["-loglevel", "level+info", "-debug_ts", "-i", str(self.path)]
        stats = ["-stats_enc_pre_fmt", "{n} {ni} {ptsi} {tbi}", "-stats_enc_pre"]
        if self.sample_fps:
            # exactly ffmpeg's own "-r FPS" conversion, to raw RGB; "-stats_enc_pre" tells
            # which decoded frame each output frame is
            rate = Fraction(self.sample_fps).limit_denominator(100000)
            command += ["-map", stream, "-r", f"{rate.numerator}/{rate.denominator}"]
            if frames_pipe is None:
                command += ["-pix_fmt", "rgb24", "-f", "rawvideo"]
                command += [*stats, f"pipe:{full_stats_pipe}", "pipe:1"]
            else:
                command += ["-c:v", "rawvideo", "-f", "matroska"]
                command += [*stats, f"pipe:{full_stats_pipe}", f"pipe:{frames_pipe}"]
        spacing = ANALYSIS_INTERVAL - 0.01
        select = f"select='isnan(prev_selected_t)+gte(t-prev_selected_t,{spacing})'"
        size = f"{self.analysis_width}:{self.analysis_height}"
        command += ["-map", stream, "-vf", f"{select},scale={size}:flags=area,format=gray"]
        command += ["-fps_mode", "passthrough", "-f", "rawvideo"]
        command += [*stats, f"pipe:{analysis_stats_pipe}"]
        command.append(f"pipe:{analysis_pipe}" if self.sample_fps else "pipe:1")
        return command

    def start(self):
        """Starts ffmpeg and the threads reading its outputs."""
        analysis_stats = os.pipe()
        full_stats = os.pipe() if self.sample_fps else (None, None)
        analysis = os.pipe() if self.sample_fps else (None, None)
        frames = os.pipe() if self.separate_conversion else (None, None)
        pairs = [pair for pair in (analysis_stats, full_stats, analysis) if pair[0] is not None]
        write_ends = [write_end for _read_end, write_end in pairs]
        # the decoding ffmpeg writes the sampled frames into this pipe, the converter reads it
        frame_pipe = [frames[1]] if self.separate_conversion else []
        command = self.command(analysis[1], full_stats[1], analysis_stats[1], frames[1])
        logger.debug("ffmpeg pass: %s", subprocess.list2cmdline(command))
        try:
            if self.separate_conversion:
                self.converter = subprocess.Popen(
                    [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error"]
                    + ["-f", "matroska", "-i", "pipe:0", "-pix_fmt", "rgb24"]
                    + ["-fps_mode", "passthrough", "-f", "rawvideo", "pipe:1"],
                    stdin=frames[0],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL if self.separate_conversion else subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=write_ends + frame_pipe,
            )
        except BaseException:
            for read_end, _write_end in pairs:
                os.close(read_end)
            if self.converter is not None:
                self.converter.kill()
                self.converter.wait()
            raise
        finally:
            for descriptor in write_ends + frame_pipe + ([frames[0]] if frame_pipe else []):
                os.close(descriptor)
        analysis_stream = os.fdopen(analysis[0], "rb") if self.sample_fps else self.process.stdout
        readers = [
            (self._read_analysis, analysis_stream),
            (self._read_stats, os.fdopen(analysis_stats[0], "rb"), self.analysis_stats),
            (self._read_stderr, self.process.stderr),
        ]
        if self.sample_fps:
            frames_stream = self.converter.stdout if self.converter else self.process.stdout
            readers += [
                (self._read_full, frames_stream),
                (self._read_stats, os.fdopen(full_stats[0], "rb"), self.full_stats),
            ]
        if self.converter is not None:
            readers.append((self._read_converter_errors, self.converter.stderr))
        for target, *arguments in readers:
            thread = threading.Thread(target=target, args=arguments, daemon=True)
            thread.start()
            self.threads_running.append(thread)

    def sampled_frames(self):
        """Yields ``(sample_index, frame_index, time, rgb_bytes)`` for each output frame."""
        while True:
            buffer = self.full_frames.get()
            if buffer is None:
                return
            stats = self.full_stats.get()
            if stats is None:
                raise MediaError(self.path, "ffmpeg gave a frame without its timestamp")
            sample_index, frame_index, frame_time = stats
            if frame_time is None:  # no timestamp from the decoder: the output grid time
                frame_time = sample_index / self.sample_fps
            yield sample_index, frame_index, frame_time, buffer

    def finish(self):
        """Waits for ffmpeg and the readers; raises MediaError if nothing was decoded."""
        for thread in self.threads_running:
            thread.join()
        returncode = self.process.wait()
        if self.converter is not None and self.converter.wait() != 0 and returncode == 0:
            returncode = self.converter.returncode
        if self.read_error is not None:
            raise self.read_error
        if self.partial_bytes:
            raise MediaError(
                self.path,
                f"ffmpeg delivered a partial frame ({self.partial_bytes} bytes for "
                f"{self.width}x{self.height}): unexpected frame size",
            )
        if returncode != 0 and not self.timeline.times:
            raise MediaError(self.path, f"cannot decode ({self.last_message()})")
        if returncode != 0:
            logger.warning("%s: ffmpeg exited %d: %s", self.path, returncode, self.last_message())
        self.returncode = returncode

    def close(self):
        """Stops ffmpeg if it still runs and releases the pipes and threads."""
        self.closing.set()
        processes = [process for process in (self.process, self.converter) if process]
        for process in processes:
            if process.poll() is None:
                process.kill()
        for thread in self.threads_running:
            thread.join(timeout=10)
        for process in processes:
            for stream in (process.stdout, process.stderr):
                with contextlib.suppress(OSError, AttributeError):
                    stream.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)

    def last_message(self):
        """ffmpeg's last warning or error, for messages."""
        return self.messages[-1] if self.messages else "no message from ffmpeg"

    def decode_report(self):
        """Decoder warnings, corrupt frames and where decoding ended, for the manifest."""
        return {
            "warnings": self.warning_count,
            "corrupt_frames": self.corrupt_frames,
            "decoded_until": round(self.timeline.decoded_end(), 6),
            "messages": list(self.messages),
        }

    # ------------------------------------------------------------------ reader threads

    def _read_full(self, stream):
        size = self.width * self.height * 3
        try:
            while not self.closing.is_set():
                buffer = _read_exact(stream, size)
                if buffer is None:
                    break
                if len(buffer) < size:
                    self.partial_bytes = len(buffer)
                    break
                while not self.closing.is_set():
                    try:
                        self.full_frames.put(buffer, timeout=0.2)
                        break
                    except queue.Full:
                        continue
        except (OSError, ValueError) as error:
            if not self.closing.is_set():
                self.read_error = MediaError(
                    self.path, f"reading frames from ffmpeg failed: {error}"
                )
        finally:
            while True:
                try:
                    self.full_frames.put(None, timeout=0.2)
                    break
                except queue.Full:
                    if self.closing.is_set():
                        with contextlib.suppress(queue.Empty):
                            self.full_frames.get_nowait()

    def _read_analysis(self, stream):
        size = self.analysis_width * self.analysis_height
        try:
            with stream:
                while True:
                    buffer = _read_exact(stream, size)
                    if buffer is None or len(buffer) < size:
                        break
                    stats = self.analysis_stats.get()
                    if stats is None:
                        break
                    if stats[2] is None:
                        continue
                    gray = np.frombuffer(buffer, np.uint8).reshape(
                        self.analysis_height, self.analysis_width
                    )
                    self.timeline.add_sample(stats[2], gray)
        except (OSError, ValueError) as error:
            if not self.closing.is_set():
                self.read_error = MediaError(
                    self.path, f"reading the analysis stream failed: {error}"
                )
        finally:
            self.timeline.finish_analysis()

    def _read_stats(self, stream, target):
        try:
            with stream:
                for line in stream:
                    if line.strip():
                        target.put(_parse_stats(line))
        except (OSError, ValueError):
            pass
        finally:
            target.put(None)

    def _read_converter_errors(self, stream):
        with contextlib.suppress(OSError, ValueError), stream:
            for raw in stream:
                text = raw.decode("utf-8", "replace").strip()
                if text:
                    self.messages.append(re.sub(r"^(\[[^\]]*\]\s*)+", "", text))

    def _read_stderr(self, stream):
        corrupt_pending = False
        try:
            for raw in stream:
                line = raw.decode("utf-8", "replace").rstrip()
                if "[info] decoder -> " in line:
                    match = _DECODER_LINE.search(line)
                    if match:
                        frame_time = _timestamp(match.group(1), match.group(3))
                        if frame_time is not None:
                            if corrupt_pending:
                                self.corrupt_frames += 1
                            self.timeline.add_decoded(
                                frame_time, match.group(2) == "1", corrupt_pending
                            )
                    corrupt_pending = False
                    continue
                if "[info]" in line or "[debug]" in line or "[verbose]" in line:
                    continue
                if "corrupt decoded frame" in line:
                    corrupt_pending = True
                if "[warning]" in line or "[error]" in line or "[fatal]" in line:
                    self.warning_count += 1
                text = re.sub(r"^(\[[^\]]*\]\s*)+", "", line).strip()
                if text and not text.startswith("Last message repeated"):
                    self.messages.append(text)
        except (OSError, ValueError):
            pass
        finally:
            self.timeline.finish_decoder()


class Timeline:
    """Analysis frames and decoder events of one video, turned into cut segments.

    Sample ``k`` stands for ``[times[k], times[k + 1])``. Decisions for a
    sampled frame at ``t`` are final once the analysis (and the decoder log)
    reached ``t + lag``: stretches shorter than the minimum duration are
    kept, so ``lag`` covers the minimum duration plus a few samples.
    """

    def __init__(self, info, cut_static, min_duration):
        self.start = float(info.get("video_start") or 0.0)
        self.end = float(info.get("end_time") or info["duration"])
        self.frame_interval = float(info.get("frame_interval") or 0.0) or ANALYSIS_INTERVAL
        self.step = max(ANALYSIS_INTERVAL, self.frame_interval)
        self.gap = max(GAP_SECONDS, GAP_FRAMES * self.frame_interval)
        self.cut_static = cut_static
        self.min_duration = float(min_duration)
        self.lag = self.min_duration + 4 * self.step
        self.options = (cut_static, self.min_duration, self.frame_interval, self.start)
        self.lock = threading.Lock()
        self.times = []
        self.measures = []
        self.previous = None
        self.corrupt = []
        self.gaps = []
        self.corrupt_open = False
        self.last_decoded = None
        self.analysis_done = False
        self.decoder_done = False

    def add_sample(self, sample_time, gray):
        """Adds an analysis frame (grey, low resolution) shown at ``sample_time``."""
        measure = _measure(gray, self.previous)
        with self.lock:
            if self.times and sample_time <= self.times[-1]:
                return
            self.previous = gray
            self.times.append(sample_time)
            self.measures.append(measure)

    def add_decoded(self, frame_time, keyframe, corrupt):
        """Adds a decoded frame from the decoder log (time, key frame, flagged corrupt)."""
        with self.lock:
            if self.last_decoded is None:
                if frame_time - self.start > self.gap:
                    self.gaps.append([self.start, frame_time])
            elif frame_time - self.last_decoded > self.gap:
                self.gaps.append([self.last_decoded + self.frame_interval, frame_time])
            if corrupt or (self.corrupt_open and not keyframe):
                if self.corrupt_open:
                    self.corrupt[-1][1] = max(self.corrupt[-1][1], frame_time + self.frame_interval)
                else:
                    self.corrupt.append([frame_time, frame_time + self.frame_interval])
                self.corrupt_open = True
            elif self.corrupt_open:
                self.corrupt[-1][1] = max(self.corrupt[-1][1], frame_time)
                self.corrupt_open = False
            self.last_decoded = (
                frame_time if self.last_decoded is None else max(self.last_decoded, frame_time)
            )

    def finish_analysis(self):
        """Marks the end of the analysis stream."""
        with self.lock:
            self.analysis_done = True

    def finish_decoder(self):
        """Marks the end of the decoder log; adds a missing end as a hole."""
        with self.lock:
            if self.last_decoded is None and self.times:
                # no decoder log (an ffmpeg that prints none): holes from the samples
                previous = None
                for sample_time in self.times:
                    if previous is not None and sample_time - previous > self.gap:
                        self.gaps.append([previous + self.step, sample_time])
                    previous = sample_time
                self.last_decoded = self.times[-1]
            end = self.decoded_end()
            if self.last_decoded is not None and self.end - end > self.gap:
                self.gaps.append([end, self.end])
            self.decoder_done = True

    def decoded_end(self):
        """Where the decoded frames end (seconds)."""
        if self.last_decoded is None:
            return 0.0
        return self.last_decoded + self.frame_interval

    def covered(self, frame_time):
        """Tells (without waiting) whether the decision for a frame at this time is final."""
        horizon = frame_time + self.lag
        with self.lock:
            analysis = self.analysis_done or (self.times and self.times[-1] >= horizon)
            if self.last_decoded is None:
                # no decoder log yet: wait a little, then do without (an ffmpeg printing none)
                decoder = self.decoder_done or bool(self.times and self.times[-1] >= horizon + 5.0)
            else:
                decoder = self.decoder_done or self.last_decoded >= horizon
            return bool(analysis and decoder)

    def cut_reason(self, frame_time):
        """Returns why a frame at this time is cut (a reason) or None (kept)."""
        with self.lock:
            start_time = frame_time - self.min_duration - 6 * self.step
            first = max(0, bisect_right(self.times, start_time) - 1)
            done = self.analysis_done and self.decoder_done
            end = self.end if done else (self.times[-1] if self.times else frame_time)
            segments = _classify(
                self.times[first:],
                self.measures[first:],
                [*self.corrupt, *self.gaps],
                end,
                self.options,
                before=self.times[first - 1] if first else self.start - self.frame_interval,
            )
        for segment in segments:
            if segment["start"] <= frame_time < segment["end"]:
                return segment["reason"]
        return None

    def segments(self):
        """The cut segments of the whole video (call when both streams have ended)."""
        with self.lock:
            return _classify(
                self.times, self.measures, [*self.corrupt, *self.gaps], self.end, self.options
            )


def normalise_manual(value, name):
    """Checks and sorts one video's manual ranges: ``{"keep": [[a, b]], "cut": [[a, b]]}``."""
    if value is None:
        return {"keep": [], "cut": []}
    if not isinstance(value, dict) or set(value) - {"keep", "cut"}:
        raise ValueError(f"manual ranges for {name}: expected {{'keep': [...], 'cut': [...]}}")
    result = {}
    for key in ("keep", "cut"):
        ranges = []
        for item in value.get(key) or []:
            try:
                start, end = (float(number) for number in item)
            except (TypeError, ValueError):
                raise ValueError(
                    f"manual {key} range for {name} must be [start, end] in seconds, not {item!r}"
                ) from None
            if not 0 <= start < end:
                raise ValueError(
                    f"manual {key} range for {name}: need 0 <= start < end, got {item!r}"
                )
            ranges.append([start, end])
        result[key] = _union(ranges)
    return result


def in_ranges(value, ranges):
    return any(start <= value < end for start, end in ranges)


def apply_manual(segments, ranges, end_time):
    """Manual keeps remove automatic cuts, manual cuts are added; returns sorted segments."""
    overrides = _union(ranges["keep"] + ranges["cut"])
    result = []
    for segment in segments:
        for start, end in _subtract([segment["start"], segment["end"]], overrides):
            if end > start:
                result.append({"start": start, "end": end, "reason": segment["reason"]})
    for start, end in ranges["cut"]:
        end = min(end, end_time) if end_time else end
        if end > start:
            result.append({"start": start, "end": end, "reason": "manual"})
    return sorted(result, key=lambda segment: segment["start"])


def complement(segments, end_time, start_time=0.0):
    """The kept spans: [start_time, end_time] minus the segments."""
    span = [float(start_time), float(end_time)]
    kept = _subtract(span, [[segment["start"], segment["end"]] for segment in segments])
    return [[round(start, 6), round(end, 6)] for start, end in kept if end - start > 1e-6]


def source_slug(text):
    ascii_text = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", ascii_text).strip("._-")
    return slug or "source"


# --------------------------------------------------------------------------- private helpers


_BIT_DEPTH_PREFIXES = (
    ("rgb48", 16),
    ("bgr48", 16),
    ("rgba64", 16),
    ("bgra64", 16),
    ("ya16", 16),
    ("p010", 10),
    ("p012", 12),
    ("p016", 16),
    ("p210", 10),
    ("p216", 16),
    ("p410", 10),
    ("p416", 16),
    ("y210", 10),
    ("y212", 12),
    ("xv30", 10),
    ("xv36", 12),
    ("x2rgb10", 10),
    ("x2bgr10", 10),
)


def _check_file(path):
    if not path.exists():
        raise MediaError(path, "no such file")
    if path.is_dir():
        raise MediaError(path, "is a folder, not a file")
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError as error:
        raise MediaError(path, f"cannot read ({error.strerror or error})") from error
    if size == 0:
        raise MediaError(path, "empty file (0 bytes)")
    return head


def _open_failure(path, messages):
    """Turns ffmpeg's complaint about an input into a MediaError."""
    text = " ".join(messages)
    head = b""
    with contextlib.suppress(OSError), open(path, "rb") as handle:
        head = handle.read(4096)
    if "moov atom not found" in text and head[4:8] == b"ftyp":
        return MediaError(path, "truncated or incomplete MP4/MOV file (no moov atom)")
    if "Permission denied" in text:
        return MediaError(path, "cannot read (Permission denied)")
    if head and _looks_like_text(head):
        return MediaError(path, "not a video (it is a text file)")
    detail = _last_message([line.replace(f"{path}: ", "") for line in messages]) or "unknown format"
    return MediaError(path, f"not a video or an unsupported format ({detail})")


def _looks_like_text(head):
    try:
        decoded = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    printable = sum(character.isprintable() or character in "\r\n\t" for character in decoded)
    return printable >= 0.95 * max(1, len(decoded))


def _last_message(messages):
    useful = [
        re.sub(r"^\[[^\]]*\]\s*", "", line).strip()
        for line in messages
        if line.strip() and not line.startswith(("Error opening input", "At least one output"))
    ]
    useful = [line for line in useful if line]
    if not useful:
        return ""
    return useful[-1]


def _is_output_problem(message):
    return any(
        token in message
        for token in ("No space left", "Permission denied", "Not a directory", "Read-only file")
    )


def _probe_with_ffprobe(path):
    command = ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams"]
    command.append(str(path))
    result = subprocess.run(command, capture_output=True)
    messages = result.stderr.decode("utf-8", "replace").strip().splitlines()
    try:
        document = json.loads(result.stdout.decode("utf-8", "replace") or "{}")
    except json.JSONDecodeError:
        document = {}
    if result.returncode != 0 or "format" not in document:
        raise _open_failure(path, messages)
    streams = document.get("streams", [])
    video = _pick_video_stream(
        path,
        [
            {
                "index": stream["index"],
                "type": stream.get("codec_type"),
                "attached": bool(stream.get("disposition", {}).get("attached_pic")),
                "pixels": int(stream.get("width") or 0) * int(stream.get("height") or 0),
                "stream": stream,
            }
            for stream in streams
        ],
    )["stream"]
    rotation = 0.0
    for side_data in video.get("side_data_list", []) or []:
        if "rotation" in side_data:
            rotation = float(side_data["rotation"])
    if not rotation and "rotate" in video.get("tags", {}):
        rotation = float(video["tags"]["rotate"])
    container = document["format"]
    packet_command = ["ffprobe", "-v", "error", "-select_streams", str(video["index"])]
    packet_command += ["-show_entries", "packet=pts,dts", "-of", "csv=p=0", str(path)]
    packets = subprocess.run(packet_command, capture_output=True)
    times = []
    time_base = Fraction(video.get("time_base", "1/1"))
    for line in packets.stdout.decode("ascii", "replace").splitlines():
        fields = line.strip().split(",")
        value = fields[0] if fields and fields[0] not in ("", "N/A") else None
        if value is None and len(fields) > 1 and fields[1] not in ("", "N/A"):
            value = fields[1]
        if value is not None:
            times.append(int(value) * float(time_base))
    packet_messages = packets.stderr.decode("utf-8", "replace").strip().splitlines()
    declared_frames = int(video.get("nb_frames") or 0)
    return _assemble(
        path,
        container=container.get("format_name"),
        duration=_float(container.get("duration")) or _float(video.get("duration")),
        start_time=_float(container.get("start_time")) or 0.0,
        stream_index=video["index"],
        codec=video.get("codec_name"),
        profile=video.get("profile"),
        width=int(video.get("width") or 0),
        height=int(video.get("height") or 0),
        rotation=rotation,
        pixel_format=video.get("pix_fmt"),
        declared_bit_depth=_float(video.get("bits_per_raw_sample")),
        fps=_rate(video.get("r_frame_rate")),
        has_audio=any(stream.get("codec_type") == "audio" for stream in streams),
        packet_times=times,
        packet_messages=packet_messages,
        declared_frames=declared_frames,
        probed_with="ffprobe",
    )


_STREAM_LINE = re.compile(r"^\s*Stream #\d+:(\d+)(?:\[[^\]]*\])?(?:\([^)]*\))?: (\w+): (.*)$")


def _probe_with_ffmpeg(path):
    result = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)], capture_output=True
    )
    lines = result.stderr.decode("utf-8", "replace").splitlines()
    if not any(line.startswith("Input #") for line in lines):
        raise _open_failure(path, lines)
    container = ""
    duration = None
    start_time = 0.0
    streams = []
    for line in lines:
        match = re.match(r"^Input #\d+, (.+), from ", line)
        if match:
            container = match.group(1)
        match = re.search(r"Duration: (\d+):(\d+):([\d.]+)", line)
        if match:
            hours, minutes, secs = match.groups()
            duration = int(hours) * 3600 + int(minutes) * 60 + float(secs)
        match = re.search(r"start: (-?[\d.]+)", line)
        if match:
            start_time = float(match.group(1))
        match = _STREAM_LINE.match(line)
        if match:
            streams.append(
                {
                    "index": int(match.group(1)),
                    "type": match.group(2).lower(),
                    "details": match.group(3),
                    "attached": "(attached pic)" in match.group(3),
                    "extra": [],
                }
            )
        elif streams and line.startswith("    "):
            streams[-1]["extra"].append(line)
    for stream in streams:
        size = re.search(r"\b(\d{1,5})x(\d{1,5})\b", stream["details"])
        stream["pixels"] = int(size.group(1)) * int(size.group(2)) if size else 0
    chosen = _pick_video_stream(path, streams)
    parts = _split_top_level(chosen["details"])
    codec = parts[0].split()[0] if parts else None
    profile = re.search(r"\(([^)]*)\)", parts[0]) if parts else None
    pixel_format = None
    if len(parts) > 1:
        match = re.match(r"([a-z0-9_]+)", parts[1].strip())
        pixel_format = match.group(1) if match else None
    size = re.search(r"\b(\d{1,5})x(\d{1,5})\b", chosen["details"])
    fps = re.search(r"([\d.]+)(k?) tbr", chosen["details"]) or re.search(
        r"([\d.]+)(k?) fps", chosen["details"]
    )
    rotation = 0.0
    for line in chosen["extra"]:
        match = re.search(r"rotation of (-?[\d.]+) degrees", line)
        if match:
            rotation = float(match.group(1))
            break
        match = re.match(r"^\s+rotate\s+:\s+(-?[\d.]+)", line)
        if match:
            rotation = float(match.group(1))
    packet_times, packet_messages = _packet_times_with_ffmpeg(path, chosen["index"])
    return _assemble(
        path,
        container=container,
        duration=duration,
        start_time=start_time,
        stream_index=chosen["index"],
        codec=codec,
        profile=profile.group(1)
        if profile and not profile.group(1).startswith(codec or "")
        else None,
        width=int(size.group(1)) if size else 0,
        height=int(size.group(2)) if size else 0,
        rotation=rotation,
        pixel_format=pixel_format,
        declared_bit_depth=None,
        fps=float(fps.group(1)) * (1000 if fps.group(2) else 1) if fps else None,
        has_audio=any(stream["type"] == "audio" for stream in streams),
        packet_times=packet_times,
        packet_messages=packet_messages,
        declared_frames=0,
        probed_with="ffmpeg",
    )


def _packet_times_with_ffmpeg(path, stream_index):
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "warning", "-copyts"]
    command += ["-i", str(path), "-map", f"0:{stream_index}", "-c", "copy", "-f", "framecrc", "-"]
    result = subprocess.run(command, capture_output=True)
    time_base = 1.0
    times = []
    for line in result.stdout.decode("ascii", "replace").splitlines():
        if line.startswith("#tb 0:"):
            time_base = float(Fraction(line.split(":", 1)[1].strip()))
        elif line and not line.startswith("#"):
            fields = [field.strip() for field in line.split(",")]
            if len(fields) >= 3:
                times.append(int(fields[2]) * time_base)
    return times, result.stderr.decode("utf-8", "replace").strip().splitlines()


def _pick_video_stream(path, streams):
    """Picks the stream ffmpeg would: the largest video that is not cover art."""
    videos = [stream for stream in streams if stream["type"] == "video" and not stream["attached"]]
    if not videos:
        kinds = sorted({stream["type"] or "unknown" for stream in streams})
        what = f"only {', '.join(kinds)}" if kinds else "no streams at all"
        raise MediaError(path, f"no video stream ({what})")
    return max(videos, key=lambda stream: (stream["pixels"], -stream["index"]))


def _assemble(path, packet_times, packet_messages, declared_frames, declared_bit_depth, **fields):
    rotation = round(fields.pop("rotation") or 0.0) % 360
    width, height = fields["width"], fields["height"]
    if width <= 0 or height <= 0:
        raise MediaError(path, "video stream without a frame size (unsupported codec?)")
    times = np.sort(np.asarray(packet_times, dtype=np.float64))
    intervals = np.diff(times)
    intervals = intervals[intervals > 0]
    if intervals.size:
        median = float(np.median(intervals))
        smallest, largest = float(intervals.min()), float(intervals.max())
        variable = (largest - smallest) > VFR_TOLERANCE * median
    else:
        median = 1.0 / fields["fps"] if fields.get("fps") else 0.0
        smallest = largest = median
        variable = False
    warnings = sorted({_last_message([line]) for line in packet_messages if line.strip()} - {""})
    truncated = any("partial file" in line or "truncat" in line.lower() for line in packet_messages)
    if declared_frames and times.size < declared_frames:
        truncated = True
    # ffmpeg's timeline starts at the file's start time: the video may start later
    container_duration = fields.pop("duration")
    file_start = fields.get("start_time") or 0.0
    video_start = max(0.0, float(times[0]) - file_start) if times.size else 0.0
    end_time = float(container_duration or 0.0)
    if times.size and median:
        packet_end = float(times[-1]) - file_start + median
        end_time = max(end_time, packet_end) if truncated else packet_end
    duration = max(0.0, end_time - video_start)
    display_width, display_height = (height, width) if rotation in (90, 270) else (width, height)
    depth = bit_depth(fields.get("pixel_format"))
    if declared_bit_depth and declared_bit_depth > depth:
        depth = int(declared_bit_depth)
    fps = fields.pop("fps") or (1.0 / median if median else 0.0)
    info = {
        "path": str(path),
        **fields,
        "duration": round(duration, 6),
        "video_start": round(video_start, 6),
        "end_time": round(end_time, 6),
        "container_duration": round(float(container_duration), 6) if container_duration else None,
        "rotation": rotation,
        "display_width": display_width,
        "display_height": display_height,
        "bit_depth": depth,
        "fps": round(float(fps), 6),
        "avg_fps": round(times.size / duration, 6) if duration > 0 else 0.0,
        "variable_frame_rate": bool(variable),
        "frame_interval": round(median, 6),
        "frame_interval_min": round(smallest, 6),
        "frame_interval_max": round(largest, 6),
        "truncated": bool(truncated),
        "warnings": warnings[:5],
        "_packet_times": times,
    }
    return info


def _split_top_level(text):
    """Splits ``a (b, c), d`` at the commas outside parentheses and brackets."""
    parts, depth, current = [], 0, []
    for character in text:
        if character in "([":
            depth += 1
        elif character in ")]":
            depth = max(0, depth - 1)
        if character == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(character)
    if current:
        parts.append("".join(current).strip())
    return parts


def _float(value):
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if np.isfinite(result) else None


def _rate(text):
    if not text or text in ("0/0", "N/A"):
        return None
    try:
        value = float(Fraction(text))
    except (ValueError, ZeroDivisionError):
        return None
    return value or None


_DECODER_LINE = re.compile(r"decoder -> pts:(-?\d+|NOPTS)\b.*?keyframe:(\d).*?time_base:(\d+/\d+)")


@dataclasses.dataclass
class _Measure:
    black: bool
    uniform: bool
    frozen: bool
    quiet: bool
    static: bool


def _measure(gray, previous):
    """Measures one analysis frame against the previous one."""
    pixels = gray.size
    black = np.count_nonzero(gray > BLACK_LEVEL) <= (1.0 - BLACK_FRACTION) * pixels
    uniform = not black and float(gray.std()) < UNIFORM_STD
    if previous is None or previous.shape != gray.shape:
        return _Measure(black, uniform, frozen=False, quiet=False, static=False)
    difference = cv2.absdiff(gray, previous)
    mean_difference = float(difference.mean())
    moving = np.count_nonzero(difference > MOTION_LEVEL) / pixels
    static = moving <= STATIC_MOTION_FRACTION
    return _Measure(
        black,
        uniform,
        frozen=mean_difference <= FROZEN_MEAN_DIFFERENCE,
        quiet=moving <= QUIET_MOTION_FRACTION and mean_difference <= QUIET_MEAN_DIFFERENCE,
        static=static,
    )


def _classify(times, measures, corrupt_intervals, end, options, before=None):
    """Turns per-sample measures and corrupt intervals into cut segments.

    A stretch of flagged samples ``k..m`` is cut from just after the last
    clean sample before it (``times[k - 1]`` plus one frame interval: frames
    in between may already be dead) to the next clean sample
    ``times[m + 1]``.

    Args:
        times: analysis sample times (increasing)
        measures: one :class:`_Measure` per sample
        corrupt_intervals: ``[start, end]`` stretches the decoder flagged or
            that hold no frames
        end: where the last sample's stretch ends
        options: ``(cut_static, min_duration, frame_interval, video_start)``
        before: the time of the sample preceding ``times[0]`` (None at the start)

    Returns:
        sorted ``{"start", "end", "reason"}`` dicts, non-overlapping
    """
    cut_static, min_duration, frame_interval, video_start = options
    count = len(times)
    reasons = [None] * count
    for index, measure in enumerate(measures):
        if measure.uniform:
            reasons[index] = "corrupt"
        elif measure.black:
            reasons[index] = "black"
        elif measure.frozen:
            reasons[index] = "frozen"
        elif cut_static and measure.static:
            reasons[index] = "static"
    _close_frozen_runs(reasons, measures)
    pieces = []
    index = 0
    while index < count:
        reason = reasons[index]
        run_end = index
        while run_end + 1 < count and reasons[run_end + 1] == reason:
            run_end += 1
        if reason is not None:
            stop = times[run_end + 1] if run_end + 1 < count else max(end, times[run_end])
            previous = times[index - 1] if index else before
            start = (
                video_start if previous is None else min(times[index], previous + frame_interval)
            )
            pieces.append([start, stop, reason])
        index = run_end + 1
    corrupt = _union(
        [[start, stop] for start, stop, reason in pieces if reason == "corrupt"]
        + [[max(video_start, low), min(high, end)] for low, high in corrupt_intervals if high > low]
    )
    segments = [
        {"start": start, "end": stop, "reason": "corrupt"}
        for start, stop in corrupt
        if stop - start >= min_duration
    ]
    for start, stop, reason in pieces:
        if reason == "corrupt" or stop - start < min_duration:
            continue
        for piece_start, piece_end in _subtract([start, stop], corrupt):
            if piece_end - piece_start > 0:
                segments.append({"start": piece_start, "end": piece_end, "reason": reason})
    for segment in segments:
        segment["start"] = round(float(segment["start"]), 6)
        segment["end"] = round(float(segment["end"]), 6)
    return sorted(segments, key=lambda segment: segment["start"])


def _close_frozen_runs(reasons, measures):
    """Re-encoding drift inside a frozen stretch (a key frame re-encodes the still
    picture, the encoder refines it after the freeze starts) makes a few samples
    differ slightly: up to two quiet samples between frozen ones, or just before
    a frozen run, are frozen too."""
    count = len(reasons)

    def quiet(index):
        return reasons[index] in (None, "static") and measures[index].quiet

    index = 0
    while index < count:
        if not quiet(index):
            index += 1
            continue
        run_end = index
        while run_end < count and quiet(run_end):
            run_end += 1
        if run_end < count and reasons[run_end] == "frozen":
            first = max(index, run_end - 2)
            reasons[first:run_end] = ["frozen"] * (run_end - first)
        index = run_end


def _union(intervals):
    merged = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged


def _subtract(interval, removals):
    pieces = [list(interval)]
    for remove_start, remove_end in removals:
        next_pieces = []
        for start, end in pieces:
            if remove_end <= start or remove_start >= end:
                next_pieces.append([start, end])
                continue
            if remove_start > start:
                next_pieces.append([start, remove_start])
            if remove_end < end:
                next_pieces.append([remove_end, end])
        pieces = next_pieces
    return pieces


def _read_exact(stream, size):
    buffer = bytearray(size)
    view = memoryview(buffer)
    received = 0
    while received < size:
        count = stream.readinto(view[received:])
        if not count:
            break
        received += count
    if received == 0:
        return None
    return buffer if received == size else buffer[:received]


def _parse_stats(line):
    """Parses ``{n} {ni} {ptsi} {tbi}``; fields ffmpeg could not give are None."""
    fields = line.decode("ascii", "replace").split() + ["", "", "", ""]
    numbers = []
    for field in fields[:2]:
        try:
            numbers.append(int(field))
        except ValueError:
            numbers.append(None)
    return numbers[0], numbers[1], _timestamp(fields[2], fields[3])


def _timestamp(pts, time_base):
    try:
        value = int(pts)
        numerator, denominator = (int(part) for part in time_base.split("/"))
    except ValueError:
        return None
    if value in (-(2**63), 2**63 - 1) or denominator == 0:
        return None
    return value * numerator / denominator
