"""Throughput of the synthetic video generator (platelab.synth).

Usage::

    python benchmarks/bench_synth.py [--frames N] [--sizes 960x540,1920x1080] [--workers 2]

For each frame size it renders N frames spread over the six vantages and
prints frames per second for:

* render: rendering alone, in this process (one core);
* render+encode: ``synthesize()`` end to end (render, H.264 encode, ground
  truth, manifest) with ``--workers`` processes;
* encode (reference): ffmpeg encoding the already rendered frames alone, with
  the same settings, measured in the same run.

``ratio`` divides render+encode by the encode reference: the machine's load
affects both alike, so the ratio moves less than the raw numbers. ``cpu
ms/frame`` is the processor time render+encode spent per frame (all worker
and ffmpeg processes), and ``idle fps`` what that allows on this many idle
cores: both hold up when other programs share the machine.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2

from platelab.synth import VANTAGES, render_video, synthesize, video_specs
from platelab.synth.pipeline import encode_video

FPS = 10.0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=240, help="frames per size (240)")
    parser.add_argument(
        "--sizes", default="960x540,1920x1080", help="frame sizes WxH, comma-separated"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="processes for render+encode",
    )
    args = parser.parse_args(argv)
    if args.frames < len(VANTAGES):
        parser.error(f"--frames must be at least {len(VANTAGES)}")
    seconds = args.frames / len(VANTAGES) / FPS
    rows = []
    for text in args.sizes.split(","):
        width, height = (int(value) for value in text.lower().split("x"))
        specs = video_specs(len(VANTAGES), seconds, FPS, (width, height), 0)
        frames_total = sum(spec.frames for spec in specs)
        cv2.setNumThreads(1)
        started = time.perf_counter()
        frames = []
        for spec in specs:
            frames.extend(frame for frame, _ in render_video(spec))
        render_fps = frames_total / (time.perf_counter() - started)
        cv2.setNumThreads(0)
        with tempfile.TemporaryDirectory(prefix="bench_synth_") as folder:
            started = time.perf_counter()
            encode_video(iter(frames), Path(folder) / "reference.mp4", width, height, FPS)
            encode_fps = frames_total / (time.perf_counter() - started)
            children_before = _children_cpu()
            started = time.perf_counter()
            synthesize(
                Path(folder) / "out",
                videos=len(VANTAGES),
                seconds=seconds,
                fps=FPS,
                size=(width, height),
                seed=0,
                workers=args.workers,
                progress=False,
            )
            end_to_end_fps = frames_total / (time.perf_counter() - started)
            cpu_ms = (_children_cpu() - children_before) * 1000.0 / frames_total
        rows.append(
            (f"{width}x{height}", frames_total, render_fps, end_to_end_fps, encode_fps, cpu_ms)
        )
    print(
        f"platelab.synth throughput ({os.cpu_count()} CPUs, {args.workers} worker(s) for render+encode)"
    )
    cores = os.cpu_count() or 1
    header = (
        f"{'size':>10} {'frames':>7} {'render fps':>11} {'render+encode fps':>18} "
        f"{'encode fps (ref)':>17} {'ratio':>6} {'cpu ms/frame':>13} {'idle fps':>9}"
    )
    print(header)
    print("-" * len(header))
    for size, frames_total, render_fps, end_to_end_fps, encode_fps, cpu_ms in rows:
        print(
            f"{size:>10} {frames_total:>7d} {render_fps:>11.1f} {end_to_end_fps:>18.1f} "
            f"{encode_fps:>17.1f} {end_to_end_fps / encode_fps:>6.2f} {cpu_ms:>13.1f} "
            f"{cores * 1000.0 / cpu_ms:>9.1f}"
        )
    return 0


def _children_cpu():
    """Processor seconds of the finished child processes (and their children)."""
    times = os.times()
    return times.children_user + times.children_system


if __name__ == "__main__":
    sys.exit(main())
