"""Does the tf.data input pipeline keep the training step fed?

Usage::

    python benchmarks/bench_train_input.py [--data DIR] [--steps 20] [--rounds 3]
        [--width 0.5] [--input-size 320] [--batch-size 16] [--no-augment]

On the merged dataset (default: ``data/default/processed/dataset``, written by
``make run``), builds the model and the real training pipeline of
:mod:`platelab.train`, then times, alternating round by round in this one process:

* **bare step**: the train step on ``--steps`` batches taken from the pipeline
  beforehand and held as tensors (no input work at all);
* **real training**: the same train step fed by the pipeline (index draw,
  augmentation, target encoding, batching, prefetch) as ``platelab train`` runs it.

Prints images/s of both and their ratio; the goal is real / bare >= 0.9 on the
2-core machine. The best round of each is compared (the machines are shared).
"""

import argparse
import os
import sys
import time
from pathlib import Path

from platelab import model as model_lib
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
    parser.add_argument("--input-size", type=int, default=320, help="model input (320)")
    parser.add_argument("--batch-size", type=int, default=16, help="images per step (16)")
    parser.add_argument("--no-augment", action="store_true", help="pipeline without augmentation")
    args = parser.parse_args(argv)
    if not (Path(args.data) / "tfrecords" / "train.tfrecord").is_file():
        sys.exit(f"{args.data}: no merged dataset with TFRecords (run `make run` first)")

    tf = model_lib._import_tensorflow()
    keras = model_lib._import_keras()
    config = train.TrainConfig(
        input_size=args.input_size,
        width=args.width,
        batch_size=args.batch_size,
        init="none",
        augment=not args.no_augment,
        seed=0,
    )
    labels = train.read_labels(args.data)
    cache_size = train.cache_size_for(config)
    data = train.load_split(args.data, "train", labels, cache_size)
    boxes = data.boxes[data.classes > 0]
    wh = (boxes[:, 2:] - boxes[:, :2]).clip(1e-4)
    spec = model_lib.anchors_from_boxes(wh, config.input_size, config.levels, 3)
    anchors = model_lib.generate_anchors(spec, config.input_size)
    strategy = tf.distribute.get_strategy()
    net = model_lib.build_ssd(len(labels), config.input_size, config.width, spec, weights=None)
    optimizer = keras.optimizers.AdamW(1e-4)
    optimizer.build(net.trainable_variables)
    step = train.make_train_step(net, optimizer, strategy, config)
    dataset = train.make_train_dataset(data, anchors, config, 0, config.batch_size)
    iterator = iter(dataset)
    cached = [next(iterator) for _ in range(args.steps)]
    for batch in cached[:3]:  # trace and warm up
        step(batch)

    def bare():
        begin = time.perf_counter()
        for batch in cached:
            float(step(batch)[0])
        return time.perf_counter() - begin

    def real():
        begin = time.perf_counter()
        for _ in range(args.steps):
            float(step(next(iterator))[0])
        return time.perf_counter() - begin

    images = args.steps * config.batch_size
    bare_times, real_times = [], []
    for round_index in range(args.rounds):
        bare_times.append(bare())
        real_times.append(real())
        print(
            f"round {round_index + 1}: bare {images / bare_times[-1]:6.1f} images/s, "
            f"real {images / real_times[-1]:6.1f} images/s"
        )
    best_bare = images / min(bare_times)
    best_real = images / min(real_times)
    print(
        f"width {config.width:g}, input {config.input_size}, batch {config.batch_size}, "
        f"augment {config.augment}, {os.cpu_count()} CPUs"
    )
    print(f"bare train step on cached tensors: {best_bare:6.1f} images/s (best round)")
    print(f"real training through tf.data:     {best_real:6.1f} images/s (best round)")
    print(f"ratio real / bare: {best_real / best_bare:.3f} (goal >= 0.9)")


if __name__ == "__main__":
    main()
