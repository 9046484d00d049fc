"""Writing synthetic videos, their ground truth and the manifest to disk.

Layout of the output folder::

    videos/<source_id>.mp4          H.264, yuv420p, byte-identical for the same arguments
    ground_truth/<source_id>.json   per-frame objects (one frame per line)
    manifest.json                   the videos, their counts and sha256, the parameters

The folder is built in a temporary sibling and swapped into place at the end
(``platelab.atomic.atomic_dir``), so an interrupted run leaves the previous
result intact.
"""

import concurrent.futures
import json
import logging
import multiprocessing
import os
import subprocess
from pathlib import Path

from tqdm.auto import tqdm

from platelab import LABELS, __version__
from platelab.atomic import atomic_dir
from platelab.ffmpeg import FFmpegError, ffmpeg_exe
from platelab.metadata import sha256_file
from platelab.synth import seeds
from platelab.synth.render import scene_frames
from platelab.synth.scene import build_scene, video_specs

logger = logging.getLogger(__name__)

BOX_FORMAT = "xyxy: [xmin, ymin, xmax, ymax] integer pixel edges, xmax and ymax exclusive"
MANIFEST_FORMAT = 1


def synthesize(
    out_dir,
    *,
    videos=6,
    seconds=10.0,
    fps=10.0,
    size=(960, 540),
    seed=0,
    vantages=None,
    workers=None,
    progress=True,
    purpose="training",
):
    """Renders synthetic traffic videos with ground truth into a folder.

    Writes ``out_dir/videos/<source_id>.mp4``, ``out_dir/ground_truth/<source_id>.json``
    and ``out_dir/manifest.json``; the folder is built beside ``out_dir`` and
    renamed into place, replacing what was there only on success.

    Args:
        out_dir: the output folder
        videos: number of videos
        seconds: length of each video
        fps: frame rate
        size: (width, height), even numbers
        seed: the batch seed (same arguments give byte-identical files)
        vantages: vantage names cycled over the videos (default: all six, in order)
        workers: worker processes, one video per task (default: min(2, CPU count));
            1 renders in this process. The workers are started with ``spawn``:
            a script calling this with several workers needs the usual
            ``if __name__ == "__main__":`` guard (notebooks and the CLI are fine)
        progress: whether to show a progress bar over the videos
        purpose: ``training`` (refuses the seeds reserved for evaluation, see
            :mod:`platelab.synth.seeds`) or ``evaluation``; recorded in the manifest

    Returns:
        the manifest (the dict written to manifest.json)

    Raises:
        ReservedSeedError: an evaluation seed asked for training data
        ValueError: on a bad argument
        FFmpegError: if encoding fails
    """
    seeds.check_seed(seed, purpose)
    specs = video_specs(videos, seconds, fps, size, seed, vantages)
    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    workers = max(1, min(int(workers), len(specs)))
    out_dir = Path(out_dir)
    logger.info("rendering %d videos into %s with %d worker(s)", len(specs), out_dir, workers)
    with atomic_dir(out_dir) as staging:
        (staging / "videos").mkdir()
        (staging / "ground_truth").mkdir()
        summaries = []
        bar = tqdm(total=len(specs), desc="videos", unit="video", disable=not progress)
        try:
            if workers == 1:
                for spec in specs:
                    summaries.append(write_video(spec, staging))
                    bar.update(1)
            else:
                context = multiprocessing.get_context("spawn")
                with concurrent.futures.ProcessPoolExecutor(
                    workers, mp_context=context, initializer=_worker_setup
                ) as pool:
                    futures = [pool.submit(write_video, spec, staging) for spec in specs]
                    try:
                        for future in concurrent.futures.as_completed(futures):
                            summaries.append(future.result())
                            bar.update(1)
                    except BaseException:
                        for future in futures:
                            future.cancel()
                        raise
        finally:
            bar.close()
        summaries.sort(key=lambda summary: summary["index"])
        manifest = _manifest(specs, summaries, videos, seconds, fps, size, seed, vantages)
        manifest["purpose"] = purpose
        _write_text(staging / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    return manifest


def synthesize_or_reuse(out_dir, **kwargs):
    """Like :func:`synthesize`, but reuses ``out_dir`` when it already holds the same set.

    The set is reused when its manifest was written by this generator
    version with the same parameters and every file still has the SHA-256
    the manifest records; otherwise it is rendered again.

    Args:
        out_dir: the output folder
        **kwargs: the arguments of :func:`synthesize`

    Returns:
        the manifest
    """
    seeds.check_seed(kwargs.get("seed", 0), kwargs.get("purpose", "training"))
    out_dir = Path(out_dir)
    existing = load_current_manifest(out_dir, **kwargs)
    if existing is not None:
        logger.info("%s is up to date: reusing it", out_dir)
        return existing
    return synthesize(out_dir, **kwargs)


def load_current_manifest(out_dir, **kwargs):
    """Returns the manifest of ``out_dir`` if it matches the arguments and its files are intact, else None."""
    try:
        manifest = json.loads((Path(out_dir) / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    size = kwargs.get("size", (960, 540))
    vantages = kwargs.get("vantages")
    wanted = {
        "videos": int(kwargs.get("videos", 6)),
        "seconds": float(kwargs.get("seconds", 10.0)),
        "fps": float(kwargs.get("fps", 10.0)),
        "size": [int(size[0]), int(size[1])],
        "seed": int(kwargs.get("seed", 0)),
        "vantages": list(vantages) if vantages else None,
        "difficult_below_px": _difficult_heights(),
    }
    if manifest.get("generator_version") != __version__ or manifest.get("parameters") != wanted:
        return None
    for video in manifest.get("videos", []):
        for key in ("video", "ground_truth"):
            path = Path(out_dir) / video[key]
            if not path.is_file() or sha256_file(path) != video["sha256"][key]:
                return None
    return manifest


def write_video(spec, folder):
    """Renders one video and writes its mp4 and ground-truth JSON into a folder.

    Args:
        spec: a VideoSpec
        folder: the output folder (with ``videos/`` and ``ground_truth/``)

    Returns:
        the video's manifest entry (with an ``index`` key used for sorting)
    """
    folder = Path(folder)
    video_path = folder / "videos" / f"{spec.source_id}.mp4"
    truth_path = folder / "ground_truth" / f"{spec.source_id}.json"
    frames = []
    scene = build_scene(spec)

    def frames_and_truth():
        for frame, truth in scene_frames(scene):
            frames.append(truth)
            yield frame

    encode_video(frames_and_truth(), video_path, spec.width, spec.height, spec.fps)
    document = {
        "source_id": spec.source_id,
        "vantage": spec.vantage,
        "variant": scene.variant,
        "lighting": spec.lighting,
        "fps": spec.fps,
        "width": spec.width,
        "height": spec.height,
        "seed": spec.seed,
        "video_index": spec.index,
        "plate_style": spec.plate_style,
        "labels": list(LABELS),
        "box_format": BOX_FORMAT,
        "frames": frames,
    }
    _write_text(truth_path, _truth_json(document))
    states = {state: 0 for state in ("ok", "black", "frozen", "empty")}
    objects = {label: 0 for label in LABELS}
    tracks = {label: set() for label in LABELS}
    for frame in frames:
        states[frame["state"]] += 1
        for item in frame["objects"]:
            objects[item["label"]] += 1
            tracks[item["label"]].add(item["id"])
    return {
        "index": spec.index,
        "source_id": spec.source_id,
        "video": f"videos/{video_path.name}",
        "ground_truth": f"ground_truth/{truth_path.name}",
        "vantage": spec.vantage,
        "variant": scene.variant,
        "lighting": spec.lighting,
        "plate_style": spec.plate_style,
        "fps": spec.fps,
        "width": spec.width,
        "height": spec.height,
        "frames": len(frames),
        "states": states,
        "objects": objects,
        "tracks": {label: len(ids) for label, ids in tracks.items()},
        "sha256": {"video": sha256_file(video_path), "ground_truth": sha256_file(truth_path)},
    }


def encode_command(path, width, height, fps):
    """The ffmpeg command encoding raw BGR frames from stdin to an H.264 mp4.

    The flags keep the output byte-identical from run to run.
    """
    return [
        ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
        "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{width}x{height}", "-r", f"{fps:g}", "-i", "-",
        "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p",
        "-threads", "2", "-fflags", "+bitexact", "-flags:v", "+bitexact", "-map_metadata", "-1",
        "-movflags", "+faststart", "-f", "mp4", str(path),
    ]  # fmt: skip


def encode_video(frames, path, width, height, fps):
    """Encodes BGR frames to an mp4, written to a temporary name then renamed.

    Args:
        frames: iterable of uint8 arrays (height x width x 3)
        path: destination .mp4 path
        width: frame width
        height: frame height
        fps: frame rate

    Raises:
        FFmpegError: if ffmpeg fails
        ValueError: if a frame has the wrong shape
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp")
    command = encode_command(temporary, width, height, fps)
    error_log = path.with_name(f".{path.name}.log")
    with open(error_log, "wb") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log
        )
        try:
            for frame in frames:
                if frame.shape != (height, width, 3):
                    raise ValueError(f"frame of shape {frame.shape}, expected {(height, width, 3)}")
                process.stdin.write(frame.tobytes())
            process.stdin.close()
            code = process.wait()
        except BrokenPipeError:
            code = process.wait()
        except BaseException:
            process.kill()
            process.wait()
            temporary.unlink(missing_ok=True)
            error_log.unlink(missing_ok=True)
            raise
    message = error_log.read_text(errors="replace").strip()
    error_log.unlink(missing_ok=True)
    if code != 0:
        temporary.unlink(missing_ok=True)
        raise FFmpegError(f"ffmpeg failed encoding {path.name} (exit {code}): {message[-500:]}")
    os.replace(temporary, path)


def _worker_setup():
    """Worker processes: one OpenCV thread each (the processes share the cores)."""
    import cv2

    cv2.setNumThreads(1)


def _manifest(specs, summaries, videos, seconds, fps, size, seed, vantages):
    totals = {label: sum(summary["objects"][label] for summary in summaries) for label in LABELS}
    entries = [
        {key: value for key, value in summary.items() if key != "index"} for summary in summaries
    ]
    return {
        "generator": "platelab.synth",
        "generator_version": __version__,
        "format": MANIFEST_FORMAT,
        "parameters": {
            "videos": int(videos),
            "seconds": float(seconds),
            "fps": float(fps),
            "size": [int(size[0]), int(size[1])],
            "seed": int(seed),
            "vantages": list(vantages) if vantages else None,
            "difficult_below_px": _difficult_heights(),
        },
        "labels": list(LABELS),
        "box_format": BOX_FORMAT,
        "frames": sum(summary["frames"] for summary in summaries),
        "objects": totals,
        "videos": entries,
    }


def _difficult_heights():
    """Box heights (pixels) under which the ground truth marks an object difficult."""
    from platelab.synth import render

    return {
        "vehicle": render.DIFFICULT_VEHICLE_HEIGHT,
        "license_plate": render.DIFFICULT_PLATE_HEIGHT,
    }


def _truth_json(document):
    """JSON with the header fields on their own lines and one line per frame."""
    lines = ["{"]
    for key, value in document.items():
        if key == "frames":
            continue
        lines.append(f"  {json.dumps(key)}: {json.dumps(value)},")
    lines.append('  "frames": [')
    frames = document["frames"]
    for number, frame in enumerate(frames):
        comma = "," if number < len(frames) - 1 else ""
        lines.append("    " + json.dumps(frame, separators=(",", ":")) + comma)
    lines.append("  ]")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _write_text(path, text):
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
