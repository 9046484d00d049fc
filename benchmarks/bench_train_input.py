"""Does the tf.data input pipeline keep the training step fed?

Usage::

    python benchmarks/bench_train_input.py [--data DIR] [--steps 20] [--rounds 3]
        [--width 0.5] [--input-size 320] [--infer-size 960] [--batch-size 16]
        [--no-augment] [--set KEY=VALUE ...]

On the merged dataset (default: ``data/default/processed/dataset``, written by
``make run``), builds the model and the real training pipeline of
:mod:`platelab.train`, then times, alternating round by round in this one process:

* **bare step**: the train step on ``--steps`` batches taken from the pipeline
  beforehand and held as tensors (no input work at all);
* **real training**: the same train step fed by the pipeline (index draw,
  augmentation, target encoding, batching, prefetch) as ``platelab train`` runs it.

Prints images/s of both and their ratio (:func:`platelab.train.measure_input_throughput`);
the goal is real / bare >= 0.9 on the 2-core machine. The best round of each is compared
(the machines are shared).
"""

import argparse
import os
import sys
from pathlib import Path

from platelab import paths, train


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        default=str(paths.processed_dir("default") / "dataset"),
        help="merged dataset folder (default: data/default/processed/dataset)",
    )
    parser.add_argument("--steps", type=int, default=20, help="steps per timed round (20)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (3)")
    parser.add_argument("--width", type=float, default=0.5, help="MobileNetV2 width (0.5)")
    parser.add_argument("--input-size", type=int, default=320, help="training crops (320)")
    parser.add_argument(
        "--infer-size", type=int, default=960, help="inference long side (960; 0: square input)"
    )
    parser.add_argument("--set", action="append", default=[], help="more KEY=VALUE parameters")
    parser.add_argument("--batch-size", type=int, default=16, help="images per step (16)")
    parser.add_argument("--no-augment", action="store_true", help="pipeline without augmentation")
    args = parser.parse_args(argv)
    if not (Path(args.data) / "tfrecords" / "train.tfrecord").is_file():
        sys.exit(f"{args.data}: no merged dataset with TFRecords (run `make run` first)")

    import yaml

    extra = {
        key: yaml.safe_load(value) for key, _, value in (item.partition("=") for item in args.set)
    }
    config = train.TrainConfig.from_dict(
        dict(
            input_size=args.input_size,
            infer_size=args.infer_size,
            width=args.width,
            batch_size=args.batch_size,
            init="none",
            augment=not args.no_augment,
            seed=0,
            **extra,
        )
    )
    labels = train.read_labels(args.data)
    geometry = config.geometry(*train.frame_size(args.data))
    data = train.load_split(args.data, "train", labels, geometry)
    result = train.measure_input_throughput(
        data, config, steps=args.steps, rounds=args.rounds, echo=print
    )
    print(
        f"width {config.width:g}, training images {config.train_shape(geometry)}, inference "
        f"{geometry}, batch {config.batch_size}, augment {config.augment}, {os.cpu_count()} CPUs"
    )
    print(
        f"bare train step on cached tensors: {result['bare_images_per_s']:6.1f} images/s"
        " (best round)"
    )
    print(
        f"real training through tf.data:     {result['real_images_per_s']:6.1f} images/s"
        " (best round)"
    )
    print(f"ratio real / bare: {result['ratio']:.3f} (goal >= {train.THROUGHPUT_GOAL})")


if __name__ == "__main__":
    main()
