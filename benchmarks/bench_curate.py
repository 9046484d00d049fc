"""Speed of curation (platelab.curate): signatures, exact and near duplicates, scaling.

Usage::

    python benchmarks/bench_curate.py [--sizes 2500,5000,10000] [--frames 48] [--no-fiftyone]

Prints:

* signatures at 1920x1080 on decoded frames in memory, as stage 01 computes
  them (grey conversion, thumbnail, difference hash; then with sharpness),
  on one thread and on a pool of two; and, for honesty, PNG decode plus
  signature per file as curate() does for images without cached signatures;
* near-duplicate search (find_duplicates) on synthetic signature sets of
  2.5k, 5k and 10k images, made from a few hundred thumbnails of the
  synthetic videos: each image is a base thumbnail with a pasted "vehicle"
  patch at a random place (a new scene state) or a noisy, flickered copy of
  the previous state (a duplicate). Times are the best of ``--repeats``; the
  ratio t(2n)/t(n) is shown beside 2 log(2n) / log(n), what n log n growth
  gives, with comparisons per image, and the pair precision and recall
  against the known states;
* curate() end to end on a stage-01 style folder of 10,000 frames with
  cached signatures (tiny stand-in PNG files: curate reads no pixels there,
  and hashes only files sharing size and signature with another);
* exact duplicates of real PNG files: curate's threaded SHA-256 against
  ``fiftyone.brain.compute_exact_duplicates`` (skipped with --no-fiftyone).

Wall times depend on what else runs on the machine; the CPU column is the
process time, which moves less.
"""

import argparse
import concurrent.futures
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from platelab import curate, signatures

THUMBNAIL_WIDTH, THUMBNAIL_HEIGHT = signatures.THUMBNAIL_SIZE


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2500,5000,10000", help="set sizes for the scaling")
    parser.add_argument("--frames", type=int, default=48, help="1080p frames for signature speed")
    parser.add_argument("--repeats", type=int, default=3, help="runs per size (best is shown)")
    parser.add_argument("--no-fiftyone", action="store_true", help="skip the FiftyOne comparison")
    args = parser.parse_args(argv)
    sizes = [int(value) for value in args.sizes.split(",")]
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    frames = _hd_frames(args.frames)
    with tempfile.TemporaryDirectory(prefix="bench-curate-") as folder:
        folder = Path(folder)
        _signature_speed(frames, folder)
        bases = _base_thumbnails()
        _scaling(bases, sizes, args.repeats)
        _end_to_end(bases, folder, max(sizes))
        if not args.no_fiftyone:
            _exact_duplicates(frames, folder)
    return 0


def _hd_frames(count):
    """1920x1080 BGR frames of the synthetic videos (random texture if synth is missing)."""
    try:
        from platelab import synth
    except ImportError:
        synth = None
    frames = []
    if synth is not None:
        specs = synth.video_specs(6, 1.0, 4.0, (1920, 1080), 0)
        per_video = max(1, math.ceil(min(count, 12) / len(specs)))
        for spec in specs:
            scene = synth.build_scene(spec)
            for index in range(min(per_video, spec.frames)):
                frames.append(synth.render_frame(scene, index)[0])
    else:
        rng = np.random.default_rng(0)
        for _ in range(12):
            small = rng.integers(0, 255, (34, 60, 3), dtype=np.uint8)
            frames.append(cv2.resize(small, (1920, 1080), interpolation=cv2.INTER_CUBIC))
    return [frames[index % len(frames)] for index in range(count)]


def _stage01_signature(frame, with_sharpness):
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    signature = signatures.compute_signature(gray)
    signatures.difference_hash(signature)
    if with_sharpness:
        signatures.sharpness(gray)
    return signature


def _signature_speed(frames, folder):
    print(f"\n== signatures at 1920x1080 ({len(frames)} frames)")
    print(f"{'what':48s} {'frames/s':>9s} {'ms/frame':>9s} {'CPU ms/frame':>13s}")
    for with_sharpness in (False, True):
        for threads in (1, 2):
            label = "in memory: grey + thumbnail + dHash" + (
                " + sharpness" if with_sharpness else ""
            )
            wall, cpu = _timed(
                lambda with_sharpness=with_sharpness, threads=threads: _map(
                    lambda frame: _stage01_signature(frame, with_sharpness), frames, threads
                )
            )
            _rate_row(f"{label}, {threads} thread(s)", len(frames), wall, cpu)
    png_folder = folder / "png1080"
    png_folder.mkdir()
    parameters = [cv2.IMWRITE_PNG_COMPRESSION, 1]
    records = []
    for index, frame in enumerate(frames):
        path = png_folder / f"{index:04d}.png"
        cv2.imwrite(str(path), frame, parameters)
        records.append({"path": str(path), "signature": None})
    size = sum(Path(record["path"]).stat().st_size for record in records) / len(records)
    for threads in (1, 2):
        wall, cpu = _timed(lambda threads=threads: _map(curate._scan_file, records, threads))
        _rate_row(
            f"PNG file: read + SHA-256 + decode + signature, {threads} thread(s)",
            len(records),
            wall,
            cpu,
        )
    print(f"(PNG files of {size / 1e6:.1f} MB each, zlib level 1 as stage 01 writes them)")


def _base_thumbnails():
    """A few hundred thumbnails of the synthetic videos (random smooth images without synth)."""
    try:
        from platelab import synth
    except ImportError:
        synth = None
    rows = []
    if synth is not None:
        for spec in synth.video_specs(6, 10.0, 5.0, (320, 180), 3):
            scene = synth.build_scene(spec)
            for index in range(spec.frames):
                rows.append(signatures.compute_signature(synth.render_frame(scene, index)[0]))
    else:
        rng = np.random.default_rng(1)
        for _ in range(300):
            small = rng.integers(0, 255, (5, 9), dtype=np.uint8)
            rows.append(
                cv2.resize(small, signatures.THUMBNAIL_SIZE, interpolation=cv2.INTER_CUBIC).reshape(
                    -1
                )
            )
    return np.stack(rows)


def _signature_set(bases, count, seed=0):
    """count signatures: new scene states (base + pasted patch) and noisy copies of them."""
    rng = np.random.default_rng(seed)
    rows, states, sources, times = [], [], [], []
    state = -1
    image = None
    while len(rows) < count:
        if image is None or rng.random() < 0.5:
            base = int(rng.integers(len(bases)))
            image = bases[base].reshape(THUMBNAIL_HEIGHT, THUMBNAIL_WIDTH).astype(np.float32)
            other = bases[int(rng.integers(len(bases)))].reshape(THUMBNAIL_HEIGHT, THUMBNAIL_WIDTH)
            height, width = int(rng.integers(2, 8)), int(rng.integers(2, 10))
            top, left = int(rng.integers(0, 36 - height)), int(rng.integers(0, 64 - width))
            source_top = int(rng.integers(0, 36 - height))
            source_left = int(rng.integers(0, 64 - width))
            patch = other[source_top : source_top + height, source_left : source_left + width]
            image[top : top + height, left : left + width] = patch.astype(np.float32) + 40.0
            state += 1
            source = f"video{base // 50}"
        gain = 1.0 + 0.02 * rng.standard_normal()
        noisy = image * gain + rng.normal(0.0, 0.7, image.shape) + rng.normal(0.0, 1.0)
        rows.append(np.clip(np.round(noisy), 0, 255).astype(np.uint8).reshape(-1))
        states.append(state)
        sources.append(source)
        times.append(float(len(rows)))
    return np.stack(rows), np.asarray(states), sources, times


def _scaling(bases, sizes, repeats):
    print(f"\n== near-duplicate search (find_duplicates, threshold {curate.DEFAULT_THRESHOLD})")
    print(
        f"{'images':>7s} {'seconds':>8s} {'CPU s':>7s} {'t(2n)/t(n)':>11s} {'CPU ratio':>10s}"
        f" {'2log(2n)/log(n)':>16s}"
        f" {'comparisons/image':>18s} {'full distances':>15s} {'groups':>7s} {'precision':>10s} {'recall':>7s}"
    )
    previous = None
    for count in sizes:
        rows, states, sources, times = _signature_set(bases, count)
        best = (math.inf, math.inf)
        for _ in range(repeats):
            wall, cpu = _timed(
                lambda rows=rows, sources=sources, times=times: curate.find_duplicates(
                    rows, sources=sources, times=times
                )
            )
            best = min(best, (wall, cpu))
        found = curate.find_duplicates(rows, sources=sources, times=times)
        precision, recall = _pair_scores(found.labels, states)
        ratio = cpu_ratio = expected = ""
        if previous is not None and count == 2 * previous[0]:
            ratio = f"{best[0] / previous[1]:.2f}"
            cpu_ratio = f"{best[1] / previous[2]:.2f}"
            expected = f"{2 * math.log(count) / math.log(count / 2):.2f}"
        print(
            f"{count:7d} {best[0]:8.2f} {best[1]:7.2f} {ratio:>11s} {cpu_ratio:>10s} {expected:>16s}"
            f" {found.comparisons / count:18.1f} {found.fine_comparisons:15d}"
            f" {found.labels.max() + 1:7d} {precision:10.4f} {recall:7.4f}"
        )
        previous = (count, best[0], best[1])
    print(
        f"(all pairs at {sizes[-1]} images would be {sizes[-1] * (sizes[-1] - 1) // 2:,} comparisons)"
    )


def _pair_scores(labels, states):
    """Pair precision and recall of predicted groups against the true scene states."""
    predicted = _pair_count(labels)
    actual = _pair_count(states)
    both = _pair_count(labels.astype(np.int64) * (states.max() + 1) + states)
    return both / max(predicted, 1), both / max(actual, 1)


def _pair_count(labels):
    sizes = np.bincount(np.unique(labels, return_inverse=True)[1])
    return int((sizes * (sizes - 1) // 2).sum())


def _end_to_end(bases, folder, count):
    print(f"\n== curate() on a stage-01 folder of {count} frames with cached signatures")
    rows, _, sources, times = _signature_set(bases, count, seed=5)
    frames_dir = folder / "frames"
    tiny = cv2.imencode(".png", np.zeros((2, 2), np.uint8))[1].tobytes()
    frames = []
    for index in range(count):
        relative = f"{sources[index]}/{index:06d}.png"
        (frames_dir / relative).parent.mkdir(parents=True, exist_ok=True)
        (frames_dir / relative).write_bytes(tiny)
        signature = rows[index]
        frames.append(
            {
                "image": relative,
                "source_id": sources[index],
                "time": times[index],
                "frame_index": index,
                "width": 1920,
                "height": 1080,
                "sharpness": float(index % 97),
                "dhash": f"{signatures.difference_hash(signature):016x}",
            }
        )
    (frames_dir / "manifest.json").write_text(json.dumps({"sources": [], "frames": frames}))
    np.save(frames_dir / "signatures.npy", rows)
    out_dir = folder / "curated"
    wall, cpu = _timed(lambda: curate.curate(frames_dir, out_dir, progress=False))
    result = curate.load_result(out_dir)
    counts = result["counts"]
    print(
        f"first run {wall:.2f} s (CPU {cpu:.2f} s): {counts['kept']} kept, "
        f"{counts['near_duplicate']} near and {counts['exact_duplicate']} exact duplicates; "
        f"{result['search']['comparisons']:,} comparisons"
    )
    wall, cpu = _timed(lambda: curate.curate(frames_dir, out_dir, progress=False))
    print(f"rerun, unchanged: {wall:.2f} s (CPU {cpu:.2f} s)")
    wall, cpu = _timed(lambda: curate.curate(frames_dir, out_dir, threshold=5, progress=False))
    print(f"rerun, new threshold (cache reused): {wall:.2f} s (CPU {cpu:.2f} s)")


def _exact_duplicates(frames, folder):
    print("\n== exact duplicates of PNG files: curate (threaded SHA-256) vs FiftyOne")
    png_folder = folder / "exact"
    png_folder.mkdir()
    paths = []
    for index in range(240):
        frame = cv2.resize(frames[index % 12 if len(frames) >= 12 else 0], (960, 540))
        if index % 3 == 0:
            frame = cv2.add(frame, np.full_like(frame, index % 7))
        path = png_folder / f"{index:04d}.png"
        cv2.imwrite(str(path), frame, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        paths.append(str(path))
    size = sum(os.path.getsize(path) for path in paths) / 1e6
    wall, cpu = _timed(lambda: _map(curate._hash_file, paths, 2))
    digests = _map(curate._hash_file, paths, 2)
    own_duplicates = len(paths) - len(set(digests))
    print(
        f"curate: {len(paths)} files ({size:.0f} MB) in {wall:.2f} s, {own_duplicates} duplicates"
    )
    try:
        from platelab.fiftyone_setup import import_fiftyone

        fo = import_fiftyone()
        import fiftyone.brain as fob
    except Exception as error:  # noqa: BLE001 - an optional comparison
        print(f"FiftyOne unavailable: {error}")
        return
    fo.list_datasets()  # start the database first: its start-up is not counted
    started = time.perf_counter()
    dataset = fo.Dataset()
    dataset.add_samples([fo.Sample(filepath=path) for path in paths], progress=False)
    loaded = time.perf_counter() - started
    try:
        wall, cpu = _timed(lambda: fob.compute_exact_duplicates(dataset, progress=False))
        duplicates = fob.compute_exact_duplicates(dataset, progress=False)
        count = sum(len(ids) for ids in duplicates.values())
        print(
            f"fiftyone.brain.compute_exact_duplicates: {wall:.2f} s (Python hash() of the bytes)"
            f" + {loaded:.2f} s to add the samples to its database; {count} duplicates"
        )
    finally:
        dataset.delete()


def _map(function, items, threads):
    if threads == 1:
        return [function(item) for item in items]
    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(function, items))


def _timed(function):
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    return time.perf_counter() - wall, time.process_time() - cpu


def _rate_row(label, count, wall, cpu):
    print(f"{label:48s} {count / wall:9.1f} {1000 * wall / count:9.2f} {1000 * cpu / count:13.2f}")


if __name__ == "__main__":
    sys.exit(main())
