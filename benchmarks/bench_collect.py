"""Frame sampling speed (stage 01, collect): ``platelab sample`` (alias of ``platelab collect``) against the seed's own ffmpeg command.

The seed sampled frames with ``ffmpeg -i VIDEO -r 2 -q:v 1 image_name_%4d.png``,
with Debian's ffmpeg (``/usr/bin/ffmpeg``, 5.1 on Debian 12; ``apt-get install
ffmpeg``). This benchmark times both as a user runs them, as whole processes
(``.venv/bin/platelab sample VIDEO --out DIR``, Python start-up included),
on a 60 s 1080p30 H.264 video, in alternating order for several rounds; it
prints every wall time, the median ratio (goal: at most 0.8), the CPU seconds
of each, checks that every frame ``platelab sample`` wrote is pixel-identical to
the seed's PNG of the same output frame, and then shows where platelab's
seconds go (start-up, checks and probe, the decode pass, PNG encoding) beside
the decoding floor (``ffmpeg -f null``).

The video (testsrc2 with temporal noise, so PNG encoding costs what it does
on camera footage) is generated once into ``benchmarks/.cache/``.

Usage::

    .venv/bin/python benchmarks/bench_collect.py [--rounds 5] [--seconds 60] [--analysis]
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from platelab.collect import frames
from platelab.ffmpeg import ffmpeg_exe
from platelab.metadata import sha256_file

CACHE_DIR = Path(__file__).resolve().parent / ".cache"
GOAL = 0.8
SEED_FFMPEG = "/usr/bin/ffmpeg"
PLATELAB = Path(sys.executable).parent / "platelab"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="runs of each command")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the test video")
    parser.add_argument("--fps", type=float, default=2.0, help="sampling rate")
    parser.add_argument(
        "--noise",
        type=int,
        default=4,
        help="temporal noise strength of the test video (0: clean, PNGs compress easily)",
    )
    parser.add_argument(
        "--seed-ffmpeg", default=SEED_FFMPEG, help=f"the seed's ffmpeg ({SEED_FFMPEG})"
    )
    parser.add_argument(
        "--analysis",
        action="store_true",
        help="also time the analysis alone: numpy pipe vs ffmpeg blackdetect/freezedetect",
    )
    arguments = parser.parse_args()
    seed_ffmpeg = arguments.seed_ffmpeg
    if not Path(seed_ffmpeg).is_file():
        sys.exit(f"{seed_ffmpeg}: no such file; install Debian's ffmpeg: apt-get install ffmpeg")
    if not PLATELAB.is_file():
        sys.exit(f"{PLATELAB}: no such file; run this with the project's .venv/bin/python")
    print(f"load average (1, 5, 15 min): {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print(f"CPU cores: {len(os.sched_getaffinity(0))}")
    print(f"seed ffmpeg: {seed_ffmpeg} ({_ffmpeg_version(seed_ffmpeg)})")
    print(f"platelab's ffmpeg: {ffmpeg_exe()} ({_ffmpeg_version(ffmpeg_exe())})")
    video = make_video(arguments.seconds, arguments.noise)
    print(
        f"video: {video.name} ({video.stat().st_size / 1e6:.1f} MB), {frames.probe(video)['codec']}"
    )
    times = {"seed": [], "sample": []}
    cpu = {"seed": [], "sample": []}
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-sample-") as scratch:
        scratch = Path(scratch)
        for repeat in range(arguments.rounds):
            order = ("seed", "sample") if repeat % 2 == 0 else ("sample", "seed")
            for which in order:
                folder = scratch / which
                shutil.rmtree(folder, ignore_errors=True)
                if which == "seed":
                    command = seed_command(seed_ffmpeg, video, folder, arguments.fps)
                    folder.mkdir()
                else:
                    command = [str(PLATELAB), "sample", str(video), "--out", str(folder)]
                    command += ["--fps", f"{arguments.fps:g}"]
                seconds, cpu_used = run_timed(command)
                times[which].append(seconds)
                cpu[which].append(cpu_used)
                if which == "sample":
                    manifest = json.loads((folder / frames.MANIFEST_NAME).read_text())
                    runs.append((seconds, manifest))
                print(
                    f"  round {repeat + 1} {which:>6}: {seconds:6.2f} s  (CPU {cpu_used:5.1f} s)",
                    flush=True,
                )
            if repeat == 0:
                checked = verify(manifest, scratch / "sample", scratch / "seed")
        seed, ours = statistics.median(times["seed"]), statistics.median(times["sample"])
        ratio = ours / seed
        ratios = [
            mine / theirs for mine, theirs in zip(times["sample"], times["seed"], strict=True)
        ]
        print(f"seed ffmpeg -r {arguments.fps:g} (median of {arguments.rounds}): {seed:6.2f} s")
        print(f"platelab sample   (median of {arguments.rounds}): {ours:6.2f} s")
        print(f"ratio per round: {', '.join(f'{value:.2f}' for value in ratios)}")
        print(f"pixel identity: {checked} frames identical to the seed's")
        print(
            f"CPU seconds (medians): seed {statistics.median(cpu['seed']):.1f}, platelab "
            f"{statistics.median(cpu['sample']):.1f} (ratio "
            f"{statistics.median(cpu['sample']) / statistics.median(cpu['seed']):.2f})"
        )
        median_run = sorted(runs, key=lambda item: item[0])[len(runs) // 2]
        breakdown(video, median_run, seed_ffmpeg, scratch)
    verdict = "MET" if ratio <= GOAL else "NOT MET"
    print(f"RATIO platelab sample / seed (medians) = {ratio:.2f} (goal <= {GOAL}: {verdict})")
    if arguments.analysis:
        time_analysis(video)
    return 0


def seed_command(seed_ffmpeg, video, folder, fps):
    """The seed's command line, as it was typed (its log goes nowhere here)."""
    return [seed_ffmpeg, "-i", str(video), "-r", f"{fps:g}", "-q:v", "1"] + [
        str(folder / "image_name_%4d.png")
    ]


def run_timed(command):
    """Runs a command to its end; returns its wall seconds and CPU seconds (its children's too)."""
    before = cpu_seconds(children_only=True)
    started = time.perf_counter()
    result = subprocess.run(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        message = result.stderr.decode("utf-8", "replace").strip().splitlines()
        sys.exit(f"FAIL: {command[0]} exited {result.returncode}: {message[-1:] or ''}")
    return seconds, cpu_seconds(children_only=True) - before


def breakdown(video, median_run, seed_ffmpeg, scratch):
    """Where the median ``platelab sample`` run's seconds go, beside the decoding floor."""
    wall, manifest = median_run
    source = manifest["sources"][0]
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import platelab.cli as c; c._build_parser(); import platelab.collect.frames",
        ],
        check=True,
    )
    start_up = time.perf_counter() - started
    decode = {}
    for name, binary in (("seed's", seed_ffmpeg), ("platelab's", ffmpeg_exe())):
        decode[name] = run_timed(
            [binary, "-hide_banner", "-nostdin", "-i", str(video), "-f", "null", "-"]
        )
    picture = cv2.imread(str(scratch / "seed" / "image_name_0001.png"))
    rgb = np.ascontiguousarray(picture[:, :, ::-1])
    png = {}
    for name, encode in (
        ("isal", lambda: frames._png_bytes(rgb)),
        ("opencv", lambda: frames._cv2_png(picture, Path("x.png"))),
    ):
        if name == "isal" and frames.isal_zlib is None:
            continue
        clock = time.perf_counter()
        for _ in range(10):
            encode()
        png[name] = (time.perf_counter() - clock) / 10
    clock = time.perf_counter()
    sha256_file(video)
    hashing = time.perf_counter() - clock
    clock = time.perf_counter()
    frames.probe(video)
    probing = time.perf_counter() - clock
    count = len(manifest["frames"])
    pass_seconds = source.get("elapsed_s", 0.0)
    print(f"where the median platelab sample run's {wall:.2f} s go:")
    print(f"  outside the decode pass: {wall - pass_seconds:5.2f} s, of which (each timed alone)")
    print(f"    Python start-up and imports: {start_up:5.2f} s")
    print(f"    SHA-256 of the video (reruns skip unchanged inputs): {hashing:5.2f} s")
    print(f"    probe (ffprobe-like header read): {probing:5.2f} s")
    print(f"  the decode pass, PNG writes overlapped: {pass_seconds:5.2f} s")
    for name, (seconds, cpu_used) in decode.items():
        print(
            f"    decoding alone ({name} ffmpeg -f null): {seconds:5.2f} s wall, {cpu_used:4.1f} s CPU"
        )
    for name, seconds in png.items():
        print(
            f"    PNG encoding ({name}): {seconds * 1e3:5.1f} ms a frame, {count} frames: "
            f"{seconds * count:4.1f} s CPU"
        )
    floor = min(seconds for seconds, _cpu in decode.values())
    print(f"  above decoding alone: {wall - floor:5.2f} s")


def cpu_seconds(children_only=False):
    """User plus system CPU time of this process (unless children_only) and its waited children."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = children.ru_utime + children.ru_stime
    if not children_only:
        own = resource.getrusage(resource.RUSAGE_SELF)
        total += own.ru_utime + own.ru_stime
    return total


def make_video(seconds, noise=4):
    """Generates (once) a 1080p30 H.264 test video, by default with temporal noise."""
    CACHE_DIR.mkdir(exist_ok=True)
    ignore = CACHE_DIR / ".gitignore"
    if not ignore.exists():
        ignore.write_text(
            "# Cached benchmark inputs, generated by the benchmarks.\n*\n!.gitignore\n"
        )
    name = f"testsrc2_noise_1080p30_{seconds:g}s.mp4" if noise == 4 else None
    path = CACHE_DIR / (name or f"testsrc2_noise{noise}_1080p30_{seconds:g}s.mp4")
    if path.exists():
        return path
    print(f"generating {path} (once, about a minute)...", flush=True)
    temporary = path.with_suffix(".tmp.mp4")
    source = f"testsrc2=size=1920x1080:rate=30:duration={seconds:g}"
    if noise:
        source += f",noise=alls={noise}:allf=t"
    subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", source]
        + ["-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p"]
        + [str(temporary)],
        check=True,
    )
    temporary.replace(path)
    return path


def verify(manifest, sample_dir, seed_dir):
    """Checks every sampled frame against the seed's PNG of the same output frame."""
    seed_count = len(list(seed_dir.glob("image_name_*.png")))
    source = manifest["sources"][0]
    listed = len(manifest["frames"]) + source.get("duplicates", 0) + source.get("frames_cut", 0)
    if listed != seed_count:
        sys.exit(f"FAIL: the seed wrote {seed_count} frames, sample() accounts for {listed}")
    for frame in manifest["frames"]:
        ours = cv2.imread(str(sample_dir / frame["image"]), cv2.IMREAD_UNCHANGED)
        seed = cv2.imread(str(seed_dir / f"image_name_{frame['sample_index'] + 1:04d}.png"))
        if (
            ours is None
            or seed is None
            or ours.shape != seed.shape
            or not np.array_equal(ours, seed)
        ):
            sys.exit(
                f"FAIL: {frame['image']} differs from the seed's frame {frame['sample_index'] + 1}"
            )
    return len(manifest["frames"])


def time_analysis(video):
    """Times the dead-feed analysis alone, two ways, on the same video."""
    started = time.perf_counter()
    frames.analyze(video)
    numpy_pipe = time.perf_counter() - started
    started = time.perf_counter()
    subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", str(video)]
        + ["-vf", "blackdetect=d=0.5,freezedetect=d=0.5", "-f", "null", "-"],
        check=True,
    )
    filters_full = time.perf_counter() - started
    started = time.perf_counter()
    subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", str(video)]
        + ["-vf", "fps=4,scale=160:-2,blackdetect=d=0.5,freezedetect=d=0.5", "-f", "null", "-"],
        check=True,
    )
    filters_low = time.perf_counter() - started
    print("analysis alone:")
    print(f"  frames.analyze (low-res grey pipe + numpy): {numpy_pipe:6.2f} s")
    print(f"  ffmpeg blackdetect+freezedetect, full res:  {filters_full:6.2f} s")
    print(f"  ffmpeg blackdetect+freezedetect, low res:   {filters_low:6.2f} s")


def _ffmpeg_version(binary):
    result = subprocess.run([binary, "-version"], capture_output=True, text=True)
    first = result.stdout.splitlines()[0] if result.stdout else "unknown version"
    return " ".join(first.split()[:3])


if __name__ == "__main__":
    sys.exit(main())
