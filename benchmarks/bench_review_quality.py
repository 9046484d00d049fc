"""Review quality of the model-free ranking (platelab.review.rank_images) across seeds.

Usage::

    python benchmarks/bench_review_quality.py [--seeds 301,...,308] [--rate 0.0025]
        [--injections 6] [--cache DIR]

Issue 4's goal: the top 10 % of the images by the ranking hold at least 80 %
of the injected mistakes (a mistake counts as found when its image is in the
top 10 %). For each seed, the chain's stages 00-03 at the default profile's
sizes (``params/default.yaml``: 6 videos of 10 s at 960x540 and 10 fps,
frames sampled at 2 fps, curated with threshold 3, tasks of 20 images), then
``--injections`` independent injections of mistakes by the simulated
annotator (injection k of seed s draws with seed s + 10000 k; k = 0 is what
the profile's ``common.seed`` would give), each loaded and ranked as stage 04
does. Prints per seed the mistakes found in the top 10 %, pooled over the
injections, per kind, and the ceiling (the most any ranking could put there:
with mistakes in more than 10 % of the images it is under 100 %); then the
mean and minimum over the seeds.

The rate: the default profile's 0.05 per object puts mistakes in about 45 %
of the images, where no ranking's top 10 % holds more than about half of
them (the ceiling); 0.0025 puts them in about 5 %, so the measure is the
ranking's. The ranking was developed on seeds 1-8 (held-out rounds on
101-108 and 201-208 were looked at only as totals, then development went on
on seeds 1-8); the default seeds 301-308 are held out (tests/test_review.py
checks the goal on seed 301).

Stages 00-03 are cached per seed under ``--cache`` (default
``$TMPDIR/platelab-review-quality``), so reruns time the ranking alone.
``--dump FILE`` pickles the loaded images and mistakes per (seed, injection)
for development.
"""

import argparse
import os
import pickle
import statistics
import sys
import tempfile
import time
from pathlib import Path

from platelab import annotate, curate, review, synth
from platelab.collect import frames

INJECTION_STRIDE = 10000

DEFAULT = {
    "videos": 6,
    "seconds": 10.0,
    "fps": 10.0,
    "size": (960, 540),
    "sample_fps": 2.0,
    "threshold": 3,
    "batch_size": 20,
}


def prepare(seed, rate, cache, injection=0, profile=None):
    """Stages 00-03 for one seed (cached): returns (tasks folder, exports folder, mistakes document).

    Injection ``k`` of seed ``s`` draws its mistakes with seed ``s + 10000 k``
    (injection 0: the profile's own, the same seed throughout).
    """
    profile = dict(DEFAULT, **(profile or {}))
    root = Path(cache) / f"seed{seed}"
    synthetic = root / "raw" / "synthetic"
    if not (synthetic / "manifest.json").is_file():
        synth.synthesize(
            synthetic,
            videos=profile["videos"],
            seconds=profile["seconds"],
            fps=profile["fps"],
            size=profile["size"],
            seed=seed,
            workers=1,
            progress=False,
        )
    frames_dir = root / "interim" / "frames"
    if not (frames_dir / "manifest.json").is_file():
        frames.sample(
            [synthetic / "videos"], frames_dir, fps=profile["sample_fps"], progress=False, workers=1
        )
    curated = root / "interim" / "curated"
    if not (curated / "curated.json").is_file():
        curate.curate(
            [frames_dir],
            curated,
            threshold=profile["threshold"],
            drop_empty=False,
            progress=False,
            workers=1,
        )
    tasks = root / "interim" / "cvat" / "tasks"
    if not (tasks / "index.json").is_file():
        annotate.export_tasks(curated, tasks, batch_size=profile["batch_size"], progress=False)
    injection_seed = seed + INJECTION_STRIDE * injection
    exports = root / "interim" / "cvat" / f"exports_{rate:g}_{injection_seed}"
    mistakes = annotate.load_mistakes(exports) if exports.is_dir() else None
    if mistakes is None:
        annotate.simulate_annotator(
            tasks, exports, inject_mistakes=rate, seed=injection_seed, progress=False
        )
        mistakes = annotate.load_mistakes(exports)
    return tasks, exports, mistakes


def measure(seed, rate, cache, fraction=0.1, injections=1, dump=None):
    """Loads, ranks and scores one seed's injections: a quality dict pooled over them.

    ``found``/``mistakes``/``by_kind`` add up over the injections;
    ``ceiling`` is the pooled best any ranking could do, ``images`` and
    ``reviewed`` are per injection, ``images_with_mistakes`` their mean.
    """
    pooled = {"found": 0, "mistakes": 0, "by_kind": {}, "rank_seconds": 0.0, "best": 0}
    with_mistakes = []
    for injection in range(injections):
        tasks, exports, mistakes = prepare(seed, rate, cache, injection)
        images, _, _ = review.load_images([exports], index=tasks, progress=False)
        if dump is not None:
            dump[(seed, injection)] = {"images": images, "mistakes": mistakes}
        started = time.perf_counter()
        ranking = review.rank_images(images, seed=seed)
        pooled["rank_seconds"] += time.perf_counter() - started
        quality = review.review_quality(ranking, mistakes, fraction=fraction)
        pooled["found"] += quality["found"]
        pooled["mistakes"] += quality["mistakes"]
        pooled["best"] += best_possible(mistakes, quality["reviewed"])
        pooled["images"], pooled["reviewed"] = quality["images"], quality["reviewed"]
        with_mistakes.append(quality["images_with_mistakes"])
        for kind, (found, total) in quality["by_kind"].items():
            counts = pooled["by_kind"].setdefault(kind, [0, 0])
            counts[0] += found
            counts[1] += total
    pooled["recall"] = pooled["found"] / pooled["mistakes"] if pooled["mistakes"] else None
    pooled["ceiling"] = pooled["best"] / pooled["mistakes"] if pooled["mistakes"] else None
    pooled["images_with_mistakes"] = statistics.mean(with_mistakes)
    return pooled


def best_possible(mistakes, reviewed):
    """The most mistakes any ranking can put in the top ``reviewed`` images (busiest images first)."""
    per_image = {}
    for record in mistakes.get("mistakes", []):
        key = review.mistake_key(record)
        per_image[key] = per_image.get(key, 0) + 1
    counts = sorted(per_image.values(), reverse=True)
    return sum(counts[:reviewed])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="301,302,303,304,305,306,307,308")
    parser.add_argument("--rate", type=float, default=0.0025, help="per-object mistake rate")
    parser.add_argument(
        "--injections", type=int, default=6, help="independent injections per seed, pooled"
    )
    parser.add_argument("--fraction", type=float, default=0.1, help="share of images reviewed")
    parser.add_argument(
        "--cache", default=str(Path(tempfile.gettempdir()) / "platelab-review-quality")
    )
    parser.add_argument("--dump", help="pickle the loaded images and mistakes here")
    args = parser.parse_args(argv)
    seeds = [int(value) for value in args.seeds.split(",") if value]
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; rate {args.rate:g}")
    dump = {} if args.dump else None
    shares = []
    kinds = {}
    for seed in seeds:
        quality = measure(seed, args.rate, args.cache, args.fraction, args.injections, dump)
        share = quality["recall"]
        shares.append(share)
        for kind, (found, total) in quality["by_kind"].items():
            kinds.setdefault(kind, [0, 0])
            kinds[kind][0] += found
            kinds[kind][1] += total
        by_kind = ", ".join(
            f"{kind} {found}/{total}" for kind, (found, total) in sorted(quality["by_kind"].items())
        )
        print(
            f"seed {seed}: {quality['found']}/{quality['mistakes']} = {share:.0%} in the top "
            f"{quality['reviewed']} of {quality['images']} images (mistakes in "
            f"{quality['images_with_mistakes']:.1f} images, ceiling {quality['ceiling']:.0%}); "
            f"{by_kind}; ranked in {quality['rank_seconds']:.1f} s",
            flush=True,
        )
    if shares:
        print(
            f"mean {statistics.mean(shares):.1%}, min {min(shares):.1%} over {len(shares)} seeds; "
            + ", ".join(f"{kind} {found}/{total}" for kind, (found, total) in sorted(kinds.items()))
        )
    if dump is not None:
        with open(args.dump, "wb") as handle:
            pickle.dump(dump, handle)


if __name__ == "__main__":
    main()
