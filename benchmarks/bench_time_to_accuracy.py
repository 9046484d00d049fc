"""Accuracy per CPU-minute: held-out AP50 after fixed training budgets, one change at a time.

Usage::

    python benchmarks/bench_time_to_accuracy.py [--data DIR] [--budgets 7] [--rows all]
        [--starter DIR] [--heldout-seed 4242] [--heldout-videos 12] [--out DIR]

On the default profile's merged dataset (``data/default/processed/dataset``, written by
``make run``), each row trains a detector from random weights for each budget in
minutes (``max_minutes``; the learning rate anneals to zero at the budget), then scores
its best model on frames of synthetic videos rendered with a generator seed that no
training video used (all six vantage points; plates from 8 px high and vehicles from
16 px high are scored, smaller ones are ignored, see ``platelab.synth``). Rows run one
after the other, never two trainings at once.

The rows form an ablation ladder from the earlier recipe to today's default:

* ``seed``: the square 320 px input that squashes 16:9 frames, anchors fitted to the
  training boxes, SSD IoU matching, hard-negative mining, Huber box loss, peak
  learning rate 0.002;
* ``crops``: letterboxed whole frames at long side 960 for inference, training on
  320 px crops at native scale (zoom-in and zoom-out), generic anchors;
* ``atss``: + ATSS assignment;
* ``focal``: + focal loss instead of hard-negative mining;
* ``giou``: + GIoU box loss;
* ``lr``: + peak learning rate 0.006;
* ``crop256``: + 256 px training crops instead of 320 (more images a second);
* ``crop192``: + 192 px crops (today's default);

and rows off the ladder, each today's recipe with one change:

* ``whole``: trained on whole letterboxed frames instead of crops;
* ``crop128``: 128 px crops instead of 192 (vehicles over 128 px are cut);
* ``ema``: + an exponential moving average of the weights;
* ``mosaic``: half the training images 2x2 mosaics of four crops (on 320 px crops);
* ``batch8``: 8 images a step instead of 16 (on 320 px crops);

and the starter (``models/starter``, issue 14's goal: at least 0.90 / 0.80 after the
default profile's 7 minutes):

* ``starter``: today's recipe fine-tuning the starter instead of random weights;
* ``starter-lr002``, ``starter-lr001``, ``starter-lr0003``: the same at peak learning
  rate 0.002, 0.001 (the default profile's), 0.0003;
* ``starter-lr0003-320``: at 0.0003 on 320 px crops (whole large vehicles in view);
* ``starter-wide``: at 0.0003 on the starter's second-stage crops (320 px, scales from
  0.4): the fine-tune sees large vehicles whole, as that stage did;
* ``starter-s04``: at 0.0003 on 192 px crops with scales from 0.4 (instead of 0.6);
* ``starter-lr0001``: at 0.0001;
* ``starter-frozenbn``: at 0.0003 with every batch-norm layer frozen (inference mode);
* ``starter-replay``: at 0.0003 with 108 frames of the starter's own pretraining corpus
  (``data/pretrain/corpus/dataset``, written by ``platelab pretrain``) mixed into the
  108 training frames, as rehearsal (``replay``);
* ``starter-zoom``: at 0.001 with half the crops zoomed out (whole large vehicles)
  instead of a fifth;
* ``starter-ema``: at 0.001 with an exponential moving average of the weights;
* ``starter-head``: at 0.001 with the backbone frozen throughout (only the heads train);
* ``starter-visible``: at 0.0003 with boxes a crop cuts to less than half their area
  ignored (``min_visible`` 0.5, today's default) instead of kept as positives;
* ``zeroshot``: the starter as shipped, no training (the budget does not apply).
* ``starter-default``: the default profile's stage 06 as it stands: ``starter-visible``
  with frames drawn like the starter's corpus replayed among the training frames, as
  many as they (``replay: starter``, rendered once into ``--out``);

and, from random weights, ``visible``: today's recipe with ``min_visible`` 0.5, and
``visible-replay``: the same with the default profile's rehearsal (``replay: starter``,
as many frames of the starter's kind of corpus as the dataset has: more scenes, no
weights); ``visible-replay300``: 300 such frames (one a scene, of 51 generator seeds;
the most ``replay: starter`` mixes in by itself) instead of 108. Every other row keeps
``min_visible`` 0 (cut boxes stay positives) and no replay, as it was measured.

``--starter DIR`` puts another starter folder (a candidate, before it is shipped) in
the starter rows' place.

Prints one table row per (row, budget): held-out AP50 per class (on all the held-out
videos, and on the first six: the set stage 07 scores with its default
``heldout_videos``), steps reached and training images/s, plus each row's ratio to the ``seed`` row (the reference run of
this benchmark, measured in the same invocation). Results go to ``--out`` as JSON.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import yaml
from choices import chosen

from platelab import goals, paths, pretrain, starter, train

REPLAY_CORPUS = pretrain.work_dir() / "corpus" / "dataset"
"""The starter's pretraining corpus (``platelab pretrain``), replayed by ``starter-replay``."""

ROWS = {
    "seed": dict(
        infer_size=0,
        crop_training=False,
        anchors="fit",
        assigner="iou",
        class_loss="ohem",
        box_loss="huber",
        scale_min=1.0,
        scale_max=1.8,
        zoom_out=0.0,
        object_crops=0.0,
        min_object_px=0.0,
        learning_rate=0.002,
        input_size=320,
    ),
    "crops": dict(
        assigner="iou", class_loss="ohem", box_loss="huber", learning_rate=0.002, input_size=320
    ),
    "atss": dict(class_loss="ohem", box_loss="huber", learning_rate=0.002, input_size=320),
    "focal": dict(box_loss="huber", learning_rate=0.002, input_size=320),
    "giou": dict(learning_rate=0.002, input_size=320),
    "lr": dict(input_size=320),
    "crop256": dict(input_size=256),
    "crop192": dict(input_size=192),
    "crop128": dict(input_size=128),
    "whole": dict(crop_training=False),
    "ema": dict(ema=0.99),
    "mosaic": dict(mosaic=0.5, input_size=320),
    "batch8": dict(batch_size=8, input_size=320),
    "starter": dict(init="starter"),
    "starter-lr002": dict(init="starter", learning_rate=0.002),
    "starter-lr001": dict(init="starter", learning_rate=0.001),
    "starter-lr0003": dict(init="starter", learning_rate=0.0003),
    "starter-lr0003-320": dict(init="starter", learning_rate=0.0003, input_size=320),
    "starter-wide": dict(init="starter", learning_rate=0.0003, input_size=320, scale_min=0.4),
    "starter-s04": dict(init="starter", learning_rate=0.0003, scale_min=0.4),
    "starter-lr0001": dict(init="starter", learning_rate=0.0001),
    "starter-frozenbn": dict(init="starter", learning_rate=0.0003, freeze_bn=True),
    "starter-replay": dict(
        init="starter", learning_rate=0.0003, replay=str(REPLAY_CORPUS), replay_frames=108
    ),
    "starter-zoom": dict(init="starter", learning_rate=0.001, zoom_out=0.5),
    "starter-ema": dict(init="starter", learning_rate=0.001, ema=0.99),
    "starter-head": dict(init="starter", learning_rate=0.001, freeze_steps=100000),
    "starter-visible": dict(init="starter", learning_rate=0.0003, min_visible=0.5),
    "visible": dict(min_visible=0.5),
    "visible-replay": dict(min_visible=0.5, replay="starter", replay_frames=0),
    "visible-replay300": dict(min_visible=0.5, replay="starter", replay_frames=300),
    "starter-default": dict(
        init="starter", learning_rate=0.0003, min_visible=0.5, replay="starter", replay_frames=0
    ),
    "zeroshot": dict(init="starter", max_minutes=0),
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        default=str(paths.processed_dir("default") / "dataset"),
        help="merged dataset folder (default: data/default/processed/dataset)",
    )
    parser.add_argument("--budgets", default="7", help="training minutes, comma-separated (7)")
    parser.add_argument("--rows", default="all", help=f"rows, comma-separated: {', '.join(ROWS)}")
    parser.add_argument(
        "--starter",
        default=None,
        help="a starter folder for the starter rows (default models/starter): a candidate "
        "measured before it is shipped",
    )
    parser.add_argument("--heldout-seed", type=int, default=4242, help="held-out generator seed")
    parser.add_argument("--heldout-videos", type=int, default=12, help="held-out videos (12)")
    parser.add_argument(
        "--set", action="append", default=[], help="KEY=VALUE for every row (after the row's own)"
    )
    parser.add_argument(
        "--out",
        default=str(paths.PROJECT_ROOT / "data" / "bench" / "time_to_accuracy"),
        help="folder for run folders, held-out videos and results.json",
    )
    args = parser.parse_args(argv)
    if not (Path(args.data) / "tfrecords" / "train.tfrecord").is_file():
        sys.exit(f"{args.data}: no merged dataset with TFRecords (run `make run` first)")
    rows = chosen(args.rows, ROWS)
    replays_corpus = any(ROWS[name].get("replay") == str(REPLAY_CORPUS) for name in rows)
    if replays_corpus and not REPLAY_CORPUS.is_dir():
        sys.exit(f"{REPLAY_CORPUS}: no pretraining corpus to replay (run `platelab pretrain`)")
    budgets = [float(value) for value in args.budgets.split(",")]
    extra = {}
    for item in args.set:
        key, _, value = item.partition("=")
        extra[key] = yaml.safe_load(value)

    profile = yaml.safe_load((paths.PROJECT_ROOT / "params" / "default.yaml").read_text())
    base = train.config_values(profile["06_train"])
    # The ladder trains from random weights at the peak learning rate it was measured with.
    base.update(seed=profile["common"]["seed"], init="none", steps=100000, learning_rate=0.006)
    # Every row but the *visible* ones as it was measured: boxes a crop cuts stay positives;
    # and without the rehearsal the default profile added later (``starter-default`` has it).
    base.update(min_visible=0.0, replay="", replay_frames=0)
    training = goals.training_video_parameters("default") or {}
    if int(training.get("seed", -1)) == args.heldout_seed:
        sys.exit(f"held-out seed {args.heldout_seed} is the training videos' seed")
    size = training.get("size", [960, 540])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else []

    for budget in budgets:
        for name in rows:
            values = dict(base, **ROWS[name], **extra)
            if args.starter and values.get("init") == "starter":
                values["init"] = str(Path(args.starter).resolve())
            values["max_minutes"] = 0 if name == "zeroshot" else budget
            run_dir = out / f"{name}-{budget:g}min"
            if run_dir.exists():
                import shutil

                shutil.rmtree(run_dir)
            began = time.perf_counter()
            if name == "zeroshot":
                state, model = {"step": 0}, starter.load(args.starter).detector()
            else:
                state = train.train(
                    args.data, run_dir, values, progress=False, echo=lambda line: None
                )
                model = run_dir
            seconds = time.perf_counter() - began
            heldout = goals.evaluate_heldout_videos(
                model,
                out / f"heldout-{args.heldout_seed}",
                seed=args.heldout_seed,
                videos=args.heldout_videos,
                size=tuple(size),
                training_seed=training.get("seed"),
                progress=False,
            )
            per_class = heldout.metrics["per_class"]
            row = {
                "row": name,
                "budget_min": budget,
                "steps": state["step"],
                "images_per_s": round(state["step"] * values["batch_size"] / (60 * budget), 2),
                "wall_s": round(seconds, 1),
                "AP50_vehicle": per_class["vehicle"]["AP50"],
                "AP50_license_plate": per_class["license_plate"]["AP50"],
                "frames": heldout.frames,
                "first6": _first_videos_ap50(heldout, 6),
                "extra": extra,
                "starter": args.starter or "models/starter",
            }
            results.append(row)
            results_path.write_text(json.dumps(results, indent=2))
            print(_format(row, results), flush=True)


def _first_videos_ap50(heldout, count):
    """AP50 per class on the frames of the first ``count`` held-out videos (stage 07's set)."""
    from platelab import evaluate

    stems = tuple(video["source_id"] + "/" for video in heldout.videos[:count])
    truth = [item for item in heldout.ground_truth if item["image"].startswith(stems)]
    kept = {item["image"] for item in truth}
    predictions = [item for item in heldout.predictions if item["image"] in kept]
    metrics = evaluate.evaluate_detections(
        truth,
        predictions,
        classes=["vehicle", "license_plate"],
        score_threshold=heldout.score_threshold,
    )
    return {
        "frames": len(truth),
        **{label: metrics["per_class"][label]["AP50"] for label in ("vehicle", "license_plate")},
    }


def _format(row, results):
    reference = next(
        (
            item
            for item in reversed(results)
            if item["row"] == "seed" and item["budget_min"] == row["budget_min"]
        ),
        None,
    )
    text = (
        f"{row['row']:>6} {row['budget_min']:>4g} min: steps {row['steps']:>5}, "
        f"{row['images_per_s']:5.1f} img/s, AP50 vehicle {row['AP50_vehicle']:.3f}, "
        f"plate {row['AP50_license_plate']:.3f} ({row['frames']} held-out frames)"
    )
    first = row.get("first6")
    if first:
        text += (
            f"; first six videos ({first['frames']} frames, stage 07's set): vehicle "
            f"{first['vehicle']:.3f}, plate {first['license_plate']:.3f}"
        )
    if reference and reference is not row:
        text += (
            f"; vs seed: vehicle {row['AP50_vehicle'] / max(reference['AP50_vehicle'], 1e-9):.2f}x,"
            f" plate {row['AP50_license_plate'] / max(reference['AP50_license_plate'], 1e-9):.2f}x"
        )
    return text


if __name__ == "__main__":
    main()
