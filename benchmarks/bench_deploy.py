"""Deployment speed: each export format's model alone, then 1080p videos end to end.

Builds an SSDLite MobileNetV2 detector (random weights: speed does not depend on
them; width 0.5 and whole 1080p frames letterboxed into 960x576, as the default
profile trains and infers; ``--infer-size 0`` for the earlier square ``--input-size``
input), exports it to every format (:func:`platelab.deploy.export.export`: SavedModel,
TFLite float32/float16/int8, ONNX) and times, in one process, side by side:

* **model alone**: one preprocessed image per call (batch 1), ``--threads`` CPU
  threads, in frames per second, with the ratio to the Keras model; the SavedModel
  row includes its in-graph decoding and NMS (they cannot be split off). The goal
  (set for the earlier 320 px square input): the default export (TFLite float32) at
  150 FPS or more.
* **per frame**: the whole :meth:`Predictor.predict` on a 1080p frame (resize from
  1920x1080, model, decoding, NMS).
* **end to end**: ``platelab video`` run as a user runs it (a whole process, the
  default export or ``--model``, the command's own encoder settings and model
  threads) on two generated 1080p30 H.264 clips, cached in ``benchmarks/.cache/``:
  a high-detail one (testsrc2 with temporal noise) and a synthetic traffic one
  (``platelab synth``). Each round also runs the no-model pipeline (decode, draw,
  encode with the same settings, in this process) as the reference, and the
  command twice: as a user runs it (``--detect-every auto``: the detector on every
  N-th frame, N chosen by the command and printed here) and with ``--detect-every 1``
  (the detector on every frame). Printed per clip: the FPS the command reports (its
  goal: 30 or more), its whole-process wall time, the reference's FPS, the seconds per
  stage and the model alone's milliseconds per frame at the video's thread count.
  ``--encoder-sweep`` also
  measures x264 presets and CRFs on the clips (encoding speed, size, SSIM to the
  clip): the measurement behind :data:`platelab.deploy.video.DEFAULT_PRESET` and
  :data:`platelab.deploy.video.DEFAULT_CRF`.

The machine's load average is printed first: other work on the CPUs slows every
row alike, so read the ratios.

Usage::

    .venv/bin/python benchmarks/bench_deploy.py [--infer-size 960] [--input-size 320] [--width 0.5]
        [--threads 2] [--iterations 50] [--seconds 20] [--rounds 2]
        [--formats tflite,onnx] [--model EXPORT_DIR] [--video-threads N]
        [--preset ultrafast] [--crf 26] [--encoder-sweep]
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from bench_collect import CACHE_DIR, make_video

from platelab import LABELS
from platelab import model as model_lib
from platelab.collect.probe import probe
from platelab.deploy import export, video
from platelab.ffmpeg import ffmpeg_exe
from platelab.tfimport import import_tensorflow

GOAL_FPS = 150.0
GOAL_VIDEO_FPS = 30.0
PLATELAB = Path(sys.executable).parent / "platelab"
SWEEP = (
    ("veryfast", 23),
    ("superfast", 23),
    ("superfast", 26),
    ("ultrafast", 23),
    ("ultrafast", 26),
    ("ultrafast", 28),
)
DEFAULT_EXPORT = ("tflite", "none")
VARIANTS = (
    ("saved_model", "none", None),
    ("tflite", "none", None),
    ("tflite", "float16", None),
    ("tflite", "int8", None),
    ("onnx", "none", "opencv"),
    ("onnx", "none", "onnxruntime"),
)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--input-size",
        type=int,
        default=320,
        help="training crop side; with --infer-size 0 the square model input (320)",
    )
    parser.add_argument(
        "--infer-size",
        type=int,
        default=960,
        help="long side of the letterboxed 1080p input (960: 960x576); 0: the square input",
    )
    parser.add_argument("--width", type=float, default=0.5, help="MobileNetV2 width (0.5)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads per model (2)")
    parser.add_argument("--iterations", type=int, default=50, help="timed calls per format")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the 1080p clips")
    parser.add_argument("--rounds", type=int, default=2, help="end-to-end runs per clip")
    parser.add_argument(
        "--detect-every",
        default="auto,1",
        help="platelab video --detect-every values run end to end, comma-separated (auto,1)",
    )
    parser.add_argument(
        "--model",
        metavar="EXPORT_DIR",
        help="time this export (platelab export) instead of exporting a random-weights model",
    )
    parser.add_argument(
        "--preset", default=video.DEFAULT_PRESET, help="x264 preset of the end-to-end runs"
    )
    parser.add_argument(
        "--crf", type=int, default=video.DEFAULT_CRF, help="x264 CRF of the end-to-end runs"
    )
    parser.add_argument(
        "--encoder-sweep",
        action="store_true",
        help="also measure x264 presets and CRFs on the clips (speed, size, SSIM)",
    )
    parser.add_argument(
        "--formats",
        default="saved_model,tflite,onnx",
        help="formats to export and time (comma-separated; keras is always the reference)",
    )
    parser.add_argument("--no-video", action="store_true", help="skip the end-to-end run")
    parser.add_argument(
        "--video-threads",
        type=int,
        help="model threads in the end-to-end run (default: platelab video's, all cores but one)",
    )
    arguments = parser.parse_args()
    tf = import_tensorflow()
    tf.config.threading.set_intra_op_parallelism_threads(arguments.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    wanted = {item.strip() for item in arguments.formats.split(",") if item.strip()}
    print(f"load average (1, 5, 15 min): {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print(f"CPU cores: {os.cpu_count()}; threads per model: {arguments.threads}")
    clip = make_video(arguments.seconds, noise=4)
    frame = _first_frame(clip)
    video_threads = arguments.video_threads or video.model_threads()
    with tempfile.TemporaryDirectory(prefix="bench-deploy-") as scratch:
        scratch = Path(scratch)
        if arguments.model:
            default = Path(arguments.model)
            rows = [
                time_predictor(
                    export.load_predictor(default, threads=threads), frame, arguments.iterations
                )
                for threads in sorted({arguments.threads, video_threads})
            ]
            report_model(rows, default, sorted({arguments.threads, video_threads}))
        else:
            default = export_formats(scratch, clip, frame, wanted, arguments)
        if not arguments.no_video:
            clips = {"testsrc2": clip, "traffic": make_traffic_clip(arguments.seconds)}
            if arguments.encoder_sweep:
                encoder_sweep(clips, scratch)
            model_ms = time_predictor(
                export.load_predictor(default, threads=video_threads), frame, arguments.iterations
            )["model_s"]
            end_to_end(default, clips, scratch, video_threads, arguments, model_ms)
    return 0


def export_formats(scratch, clip, frame, wanted, arguments):
    """Exports a random-weights model to each wanted format, times them; returns the default."""
    run_dir = make_run(scratch / "run", arguments.input_size, arguments.width, arguments.infer_size)
    calibration = _video_frames(clip, 32)
    predictors = [export.load_predictor(run_dir)]
    sizes = {predictors[0].name: (run_dir / "best.keras").stat().st_size}
    for fmt, quantize, backend in VARIANTS:
        if fmt not in wanted:
            continue
        out = scratch / f"{fmt}-{quantize}"
        if not out.exists():
            started = time.perf_counter()
            card = export.export(
                run_dir, fmt, out, quantize=quantize, representative=calibration, progress=False
            )
            print(
                f"exported {fmt} ({quantize}) in {time.perf_counter() - started:.0f} s, "
                f"{card['export']['size_bytes'] / 1e6:.1f} MB"
            )
        if backend == "onnxruntime" and not export._has_module("onnxruntime"):
            print("onnxruntime not installed: its row is skipped")
            continue
        predictor = export.load_predictor(out, backend=backend, threads=arguments.threads)
        predictors.append(predictor)
        sizes[predictor.name] = export.read_card(out)["export"]["size_bytes"]
    rows = [time_predictor(predictor, frame, arguments.iterations) for predictor in predictors]
    report(rows, sizes, arguments)
    default = scratch / "-".join(DEFAULT_EXPORT)
    if not default.exists():
        export.export(
            run_dir, DEFAULT_EXPORT[0], default, quantize=DEFAULT_EXPORT[1], progress=False
        )
    return default


def make_run(folder, input_size, width, infer_size=0):
    """A finished training-run folder around a random-weights model.

    With ``infer_size``, the default profile's geometry: generic anchors in pixels and
    1080p frames letterboxed whole (960: 960x576); else a square ``input_size`` input.
    """
    if infer_size:
        geometry = model_lib.InputGeometry.for_frames(1920, 1080, infer_size)
        spec = model_lib.generic_anchor_spec()
        net_input = None
    else:
        spec = model_lib.default_anchor_spec(input_size)
        net_input = input_size
    net = model_lib.build_ssd(
        num_classes=len(LABELS), input_size=net_input, width=width, anchors=spec, weights=None
    )
    # Random weights give every anchor the same scores, far above any threshold, and an
    # NMS over all of them: a background bias makes the outputs look like a trained
    # model's (a handful of candidates), so the per-frame figures are realistic.
    for layer in net.layers:
        if layer.name.endswith("_cls_out"):
            kernel, bias = layer.get_weights()
            bias = bias.reshape(-1, len(LABELS) + 1)
            bias[:, 0] = 8.0
            layer.set_weights([kernel, bias.reshape(-1)])
    folder.mkdir(parents=True)
    net.save(folder / "best.keras")
    config = {
        "input_size": input_size,
        "width": width,
        "levels": spec["levels"],
        "anchors": spec,
        "labels": list(LABELS),
        "score_threshold": 0.3,
        "nms_iou": 0.5,
        "max_detections": 100,
        "dataset": "none (random weights, for speed only)",
    }
    if infer_size:
        config.update(infer_size=[geometry.width, geometry.height], resize="letterbox")
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "state.json").write_text(json.dumps({"status": "finished", "step": 0}))
    return folder


def time_predictor(predictor, frame_bgr, iterations):
    """Model-alone and whole-frame timings of one predictor (medians of 5 blocks)."""
    rgb = np.ascontiguousarray(frame_bgr[:, :, ::-1])
    if isinstance(predictor, export.SavedModelPredictor):
        # Its model cannot be run without the in-graph resize and NMS: feed the input size.
        batch = predictor.preprocess([cv2.resize(rgb, predictor.geometry.shape[::-1])])
    else:
        batch = predictor.preprocess([rgb])
    threshold = predictor.score_threshold
    for _ in range(5):
        predictor.infer(batch, threshold)
    block = max(1, iterations // 5)
    model_times = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(block):
            predictor.infer(batch, threshold)
        model_times.append((time.perf_counter() - started) / block)
    frame_times = []
    for _ in range(max(3, block // 2)):
        started = time.perf_counter()
        predictor.predict([rgb])
        frame_times.append(time.perf_counter() - started)
    return {
        "name": predictor.name,
        "model_s": statistics.median(model_times),
        "frame_s": statistics.median(frame_times),
    }


def report(rows, sizes, arguments):
    keras = rows[0]["model_s"]
    print()
    geometry = (
        model_lib.InputGeometry.for_frames(1920, 1080, arguments.infer_size)
        if arguments.infer_size
        else model_lib.InputGeometry(arguments.input_size, arguments.input_size, "squash")
    )
    print(
        f"model alone, batch 1, input {geometry.width}x{geometry.height} ({geometry.mode}), "
        f"width {arguments.width:g}, {arguments.threads} threads (medians):"
    )
    print(
        f"  {'format':<32} {'MB':>6} {'model FPS':>10} {'ms':>7} {'x Keras':>8} "
        f"{'1080p frame FPS':>16}"
    )
    for row in rows:
        size = sizes.get(row["name"], 0) / 1e6
        print(
            f"  {row['name']:<32} {size:6.1f} {1 / row['model_s']:10.1f} "
            f"{row['model_s'] * 1e3:7.2f} {keras / row['model_s']:8.2f} {1 / row['frame_s']:16.1f}"
        )
    print("  (saved_model: model time includes its in-graph decoding and NMS)")
    default_name = "tflite (tflite)"
    default = next((row for row in rows if row["name"] == default_name), None)
    if default is not None and arguments.infer_size:
        print(
            f"  (the {GOAL_FPS:g} FPS goal was set for the 320 px square input: "
            "--infer-size 0 checks it; at this size the figures are reported)"
        )
    elif default is not None:
        fps = 1 / default["model_s"]
        verdict = "MET" if fps >= GOAL_FPS else "NOT MET"
        print(
            f"GOAL default export ({default_name}) >= {GOAL_FPS:g} FPS: {verdict} ({fps:.1f} FPS)"
        )


def report_model(rows, model_dir, thread_counts):
    """Model-alone figures of a given export, at each thread count."""
    print()
    print(f"model alone, {model_dir}, batch 1 (medians):")
    for threads, row in zip(thread_counts, rows, strict=True):
        print(
            f"  {row['name']:<24} {threads} thread(s): {1 / row['model_s']:7.1f} FPS, "
            f"{row['model_s'] * 1e3:6.2f} ms a frame; whole 1080p frame "
            f"{row['frame_s'] * 1e3:6.2f} ms"
        )


def make_traffic_clip(seconds):
    """Generates (once) a synthetic 1080p30 traffic clip with ``platelab synth``."""
    path = CACHE_DIR / f"traffic_1080p30_{seconds:g}s.mp4"
    if path.exists():
        return path
    from platelab import synth

    print(f"generating {path} (once, a few minutes)...", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-traffic-", dir=CACHE_DIR) as folder:
        synth.synthesize(
            Path(folder) / "synth",
            videos=1,
            seconds=seconds,
            fps=30.0,
            size=(1920, 1080),
            seed=11,
            workers=1,
            progress=False,
        )
        rendered = next((Path(folder) / "synth" / "videos").glob("*.mp4"))
        temporary = path.with_suffix(".tmp.mp4")
        shutil.copyfile(rendered, temporary)
        temporary.replace(path)
    return path


class NoDetections:
    """A predictor that finds nothing: the pipeline's own cost (decode, draw, encode).

    It has the stage methods (``preprocess``, ``infer``, ``postprocess``), so that
    :func:`platelab.deploy.video.annotate_video` hands it the frame without the RGB copy
    that ``predict`` gets.
    """

    score_threshold = 0.3

    def preprocess(self, images):
        return images

    def infer(self, batch, score_threshold):
        return batch

    def postprocess(self, raw, sizes, score_threshold):
        empty = np.zeros((0, 4), np.float32)
        return [{"boxes": empty, "scores": empty[:, 0], "labels": []} for _ in sizes]

    def predict(self, images, score_threshold=None):
        return self.postprocess(images, [image.shape[1::-1] for image in images], score_threshold)


SUMMARY = re.compile(r"in ([0-9.]+) s \(([0-9.]+) fps; seconds per stage: ([^)]*)\)")
INTERVAL = re.compile(
    r"detector on (?:every (?:frame|(\d+)\w\w frame only)|\d+ of \d+ frames, every .*?"
    r"frames at each interval: ([^;]*);)"
)


def run_video_command(model_dir, clip, output, threads, preset, crf, detect_every=None):
    """Runs ``platelab video`` as a process; returns its reported figures and wall time.

    ``detect_every`` None runs the command's default (``auto``); the N it ran is read
    from its summary line (``auto`` may change N as it goes: then frames per N, such as
    ``2:310 3:290``).
    """
    command = [str(PLATELAB), "video", "--model", str(model_dir), "--input", str(clip)]
    command += ["--output", str(output), "--threads", str(threads)]
    command += ["--preset", preset, "--crf", str(crf)]
    if detect_every is not None:
        command += ["--detect-every", str(detect_every)]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    match = SUMMARY.search(result.stdout)
    interval = INTERVAL.search(result.stdout)
    if result.returncode != 0 or match is None or interval is None:
        sys.exit(f"FAIL: platelab video exited {result.returncode}: {result.stderr.strip()[-500:]}")
    stages = {}
    for part in match.group(3).split(","):
        name, value = part.split()
        stages[name] = float(value)
    return {
        "seconds": float(match.group(1)),
        "fps": float(match.group(2)),
        "wall": wall,
        "stages": stages,
        "size": output.stat().st_size,
        "detect_every": _intervals_ran(interval),
        "summary": result.stdout.strip().splitlines()[-1],
    }


def _intervals_ran(match):
    """The N a run's summary states: ``"2"``, or frames per N (``"2:310 3:290"``)."""
    if match.group(2):
        return " ".join(":".join(part.split()) for part in match.group(2).split(", "))
    return str(match.group(1) or 1)


def end_to_end(model_dir, clips, scratch, threads, arguments, model_s):
    """``platelab video`` on each clip beside the no-model pipeline, alternately; medians.

    Each round runs the reference, then the command once per ``--detect-every`` value;
    for ``auto`` the N the command chose (printed in its summary) is shown per round.
    """
    intervals = [item.strip() for item in arguments.detect_every.split(",") if item.strip()]
    print()
    print(
        f"end to end, platelab video --model {model_dir} ({threads} model thread(s)), "
        f"x264 preset {arguments.preset}, CRF {arguments.crf}; medians of "
        f"{arguments.rounds} rounds; model alone at {threads} thread(s): "
        f"{model_s * 1e3:.2f} ms a frame"
    )
    verdicts = []
    for name, clip in clips.items():
        references, runs = [], {value: [] for value in intervals}
        output = scratch / f"{name}.mp4"
        for _ in range(arguments.rounds):
            references.append(
                video.annotate_video(
                    NoDetections(),
                    clip,
                    output,
                    progress=False,
                    preset=arguments.preset,
                    crf=arguments.crf,
                )
            )
            args = (model_dir, clip, output, threads, arguments.preset, arguments.crf)
            for value in intervals:
                runs[value].append(run_video_command(*args, detect_every=value))
        reference_fps = statistics.median(item.processing_fps for item in references)
        frames = references[0].frames
        print(f"  {name} ({clip.name}, {frames} frames):")
        print(f"    no model (decode, draw, encode): {reference_fps:6.1f} FPS")
        for value in intervals:
            results = runs[value]
            chosen = "/".join(str(item["detect_every"]) for item in results)
            label = f"--detect-every {value}" + (f" (ran {chosen})" if value == "auto" else "")
            fps = statistics.median(item["fps"] for item in results)
            wall = statistics.median(item["wall"] for item in results)
            print(
                f"    {label:<28}: {fps:6.1f} FPS ({fps / reference_fps:.2f} x the no-model "
                f"pipeline); the whole process {wall:.1f} s with start-up and model loading "
                f"({frames / wall:.1f} FPS); output "
                f"{statistics.median(item['size'] for item in results) / 1e6:.1f} MB"
            )
            stage_ms = {
                stage: statistics.median(item["stages"].get(stage, 0.0) for item in results)
                / max(frames, 1)
                * 1e3
                for stage in video.STAGES
            }
            print("      milliseconds per frame by stage (they overlap in threads and processes):")
            print("      " + ", ".join(f"{stage} {ms:.2f}" for stage, ms in stage_ms.items()))
            if value == "auto":
                for item in results:
                    print(f"      the command said: {item['summary'].split('); ', 1)[-1]}")
            verdicts.append((name, fps, label))
    for name, fps, label in verdicts:
        verdict = "MET" if fps >= GOAL_VIDEO_FPS else "NOT MET"
        print(
            f"GOAL 1080p30 end to end >= {GOAL_VIDEO_FPS:g} FPS on {name} ({label}): "
            f"{verdict} ({fps:.1f} FPS)"
        )


def encoder_sweep(clips, scratch):
    """x264 presets and CRFs on each clip: the encoder's own speed, output size, SSIM to the clip.

    The clip is decoded to bgr24 by one ffmpeg and piped into the encoding ffmpeg, as
    ``platelab video`` does; the CPU seconds are the encoding process's alone.
    """
    print()
    print("x264 on the clips' frames (bgr24 piped in, as platelab video does):")
    print(
        f"  {'clip':<10} {'preset':<10} {'CRF':>4} {'enc CPU ms/frame':>17} {'MB':>6} "
        f"{'SSIM':>7} {'PSNR dB':>8}"
    )
    for name, clip in clips.items():
        info = probe(clip)
        size = f"{info['display_width']}x{info['display_height']}"
        for preset, crf in SWEEP:
            output = scratch / "sweep.mp4"
            decode = [ffmpeg_exe(), "-v", "error", "-i", str(clip), "-f", "rawvideo"]
            decode += ["-pix_fmt", "bgr24", "pipe:1"]
            encode = [ffmpeg_exe(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24"]
            encode += ["-s", size, "-framerate", "30", "-i", "pipe:0"]
            encode += ["-c:v", "libx264", "-preset", preset, "-crf", str(crf)]
            encode += ["-pix_fmt", "yuv420p", str(output)]
            decoder = subprocess.Popen(decode, stdout=subprocess.PIPE)
            encoder = subprocess.Popen(encode, stdin=decoder.stdout)
            decoder.stdout.close()
            _pid, status, usage = os.wait4(encoder.pid, 0)
            encoder.returncode = os.waitstatus_to_exitcode(status)
            decoder.wait()
            if encoder.returncode or decoder.returncode:
                sys.exit(f"FAIL: encoding {clip.name} with {preset}/{crf} failed")
            compared = subprocess.run(
                [ffmpeg_exe(), "-i", str(output), "-i", str(clip)]
                + ["-lavfi", "[0:v][1:v]ssim;[0:v][1:v]psnr", "-f", "null", "-"],
                capture_output=True,
                text=True,
            ).stderr
            ssim = re.search(r"All:([0-9.]+)", compared)
            psnr = re.search(r"average:([0-9.]+)", compared)
            frames = info["frame_count"]
            cpu_ms = (usage.ru_utime + usage.ru_stime) / frames * 1e3
            print(
                f"  {name:<10} {preset:<10} {crf:>4} {cpu_ms:17.1f} "
                f"{output.stat().st_size / 1e6:6.1f} "
                f"{float(ssim.group(1)) if ssim else float('nan'):7.4f} "
                f"{float(psnr.group(1)) if psnr else float('nan'):8.2f}"
            )


def _first_frame(path):
    frames = _video_frames(path, 1)
    if not frames:
        sys.exit(f"FAIL: cannot read a frame of {path}")
    return cv2.cvtColor(frames[0], cv2.COLOR_RGB2BGR)


def _video_frames(path, count):
    """``count`` RGB frames spread over the first seconds of a video."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    try:
        while len(frames) < count:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            for _ in range(4):
                capture.grab()
    finally:
        capture.release()
    return frames


if __name__ == "__main__":
    sys.exit(main())
