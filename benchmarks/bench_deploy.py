"""Deployment speed: each export format's model alone, then a 1080p video end to end.

Builds an SSDLite MobileNetV2 detector (random weights: speed does not depend on
them; default input 320 and width 0.5, as the default profile trains), exports it to
every format (:func:`platelab.export.export`: SavedModel, TFLite float32/float16/int8,
ONNX) and
times, in one process, side by side:

* **model alone**: one preprocessed image per call (batch 1), ``--threads`` CPU
  threads, in frames per second, with the ratio to the Keras model; the SavedModel
  row includes its in-graph decoding and NMS (they cannot be split off). The goal:
  the default export (TFLite float32) at 150 FPS or more.
* **per frame**: the whole :meth:`Predictor.predict` on a 1080p frame (resize from
  1920x1080, model, decoding, NMS).
* **end to end**: :func:`platelab.video.annotate_video` on a generated 1080p30 H.264
  video (testsrc2 with noise, cached in ``benchmarks/.cache/``) with the default
  export and as many model threads as ``platelab video`` takes (all cores but one):
  frames per second and the seconds spent in each stage (the stages overlap in
  threads, so they add up to more than the wall time). The goal: 30 FPS or more.

The machine's load average is printed first: other work on the CPUs slows every
row alike, so read the ratios.

Usage::

    .venv/bin/python benchmarks/bench_deploy.py [--input-size 320] [--width 0.5]
        [--threads 2] [--iterations 50] [--seconds 10] [--formats tflite,onnx]
        [--video-threads N]
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from bench_sample import make_video

from platelab import LABELS, export, video
from platelab import model as model_lib

GOAL_FPS = 150.0
GOAL_VIDEO_FPS = 30.0
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
    parser.add_argument("--input-size", type=int, default=320, help="model input side (320)")
    parser.add_argument("--width", type=float, default=0.5, help="MobileNetV2 width (0.5)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads per model (2)")
    parser.add_argument("--iterations", type=int, default=50, help="timed calls per format")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the 1080p video")
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
    tf = model_lib._import_tensorflow()
    tf.config.threading.set_intra_op_parallelism_threads(arguments.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    wanted = {item.strip() for item in arguments.formats.split(",") if item.strip()}
    print(f"load average (1, 5, 15 min): {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print(f"CPU cores: {os.cpu_count()}; threads per model: {arguments.threads}")
    clip = make_video(arguments.seconds, noise=4)
    frame = _first_frame(clip)
    with tempfile.TemporaryDirectory(prefix="bench-deploy-") as scratch:
        scratch = Path(scratch)
        run_dir = make_run(scratch / "run", arguments.input_size, arguments.width)
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
        if not arguments.no_video:
            default = scratch / "-".join(DEFAULT_EXPORT)
            if not default.exists():
                export.export(run_dir, DEFAULT_EXPORT[0], default, quantize=DEFAULT_EXPORT[1])
            threads = arguments.video_threads or video.model_threads()
            end_to_end(
                export.load_predictor(default, threads=threads), clip, scratch / "out.mp4", threads
            )
    return 0


def make_run(folder, input_size, width):
    """A finished training-run folder around a random-weights model."""
    spec = model_lib.default_anchor_spec(input_size)
    net = model_lib.build_ssd(
        num_classes=len(LABELS), input_size=input_size, width=width, anchors=spec, weights=None
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
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "state.json").write_text(json.dumps({"status": "finished", "step": 0}))
    return folder


def time_predictor(predictor, frame_bgr, iterations):
    """Model-alone and whole-frame timings of one predictor (medians of 5 blocks)."""
    rgb = np.ascontiguousarray(frame_bgr[:, :, ::-1])
    size = predictor.input_size
    if isinstance(predictor, export.SavedModelPredictor):
        # Its model cannot be run without the in-graph resize and NMS: feed the input size.
        batch = predictor.preprocess([cv2.resize(rgb, (size, size))])
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
    print(
        f"model alone, batch 1, input {arguments.input_size}, width {arguments.width:g}, "
        f"{arguments.threads} threads (medians):"
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
    if default is not None:
        fps = 1 / default["model_s"]
        verdict = "MET" if fps >= GOAL_FPS else "NOT MET"
        print(
            f"GOAL default export ({default_name}) >= {GOAL_FPS:g} FPS: {verdict} ({fps:.1f} FPS)"
        )


class NoDetections:
    """A predictor that finds nothing: the pipeline's own cost (decode, draw, encode)."""

    score_threshold = 0.3

    def predict(self, images, score_threshold=None):
        empty = np.zeros((0, 4), np.float32)
        return [{"boxes": empty, "scores": empty[:, 0], "labels": []} for _ in images]


def end_to_end(predictor, clip, output, threads, repeats=2):
    """Annotates the clip with the predictor and with no model, alternately; best of each."""
    references, results = [], []
    for _ in range(repeats):
        references.append(video.annotate_video(NoDetections(), clip, output, progress=False))
        results.append(video.annotate_video(predictor, clip, output, progress=False))
    reference = max(references, key=lambda item: item.processing_fps)
    result = max(results, key=lambda item: item.processing_fps)
    print()
    print(
        f"end to end, {result.width}x{result.height} @ {result.fps:g} fps, {result.frames} frames "
        f"(best of {repeats}), {threads} model thread(s):"
    )
    print(
        f"  no model (decode + encode only): {reference.processing_fps:6.1f} FPS "
        f"({reference.seconds:.1f} s)"
    )
    print(
        f"  {predictor.name:<31}: {result.processing_fps:6.1f} FPS ({result.seconds:.1f} s), "
        f"{result.processing_fps / reference.processing_fps:.2f} x the no-model pipeline"
    )
    print("  seconds per stage (with the model):")
    for stage, seconds in result.timings.items():
        print(
            f"  {stage:<12} {seconds:7.2f} s  {seconds / max(result.frames, 1) * 1e3:7.2f} ms/frame"
        )
    bottleneck = max(result.timings, key=result.timings.get)
    print(f"  slowest stage: {bottleneck} (stages overlap in threads)")
    if result.warning:
        print(f"  warning: {result.warning}")
    verdict = "MET" if result.processing_fps >= GOAL_VIDEO_FPS else "NOT MET"
    print(
        f"GOAL 1080p30 end to end >= {GOAL_VIDEO_FPS:g} FPS: {verdict} "
        f"({result.processing_fps:.1f} FPS)"
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
