"""Tiny detectors and fake training-run folders for tests (no downloads, no real data).

``make_run_folder`` writes what :mod:`platelab.train` leaves in a run folder
(``config.json``, ``best.keras``, ``state.json``, optionally ``metrics.json``) around
a tiny model: random weights by default, or :func:`train_tiny_model`'s, which learns
the synthetic scenes of :func:`draw_scene` (blue "vehicles" carrying a white "plate")
in a few dozen steps, well enough for AP comparisons (AP50 about 0.9 on both classes).
"""

import json
import warnings
from pathlib import Path

import cv2
import numpy as np

from platelab import LABELS
from platelab import model as model_lib

INPUT_SIZE = 128
WIDTH = 0.35
LEVELS = (8, 16, 32)
_TRAINED = {}
_MODEL = object()


def draw_scene(rng, width=INPUT_SIZE, height=INPUT_SIZE, vehicles=None):
    """A synthetic RGB image with 1-2 vehicles, each with a plate, on dark noise.

    Args:
        rng: a ``numpy.random.Generator``
        width: image width in pixels
        height: image height in pixels
        vehicles: how many vehicles (default: 1 or 2 at random)

    Returns:
        ``(image, boxes, labels)``: ``(H, W, 3)`` uint8 RGB, ``(n, 4)`` float32 pixel
        boxes ``[xmin, ymin, xmax, ymax]`` (xmax/ymax exclusive) and n label names
    """
    image = rng.integers(0, 60, (height, width, 3)).astype(np.uint8)
    scale_x, scale_y = width / INPUT_SIZE, height / INPUT_SIZE
    boxes, labels = [], []
    for _ in range(int(rng.integers(1, 3)) if vehicles is None else vehicles):
        w = int(rng.integers(50, 76) * scale_x)
        h = int(rng.integers(30, 44) * scale_y)
        x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
        cv2.rectangle(image, (x, y), (x + w - 1, y + h - 1), (60, 120, 230), -1)
        boxes.append([x, y, x + w, y + h])
        labels.append(LABELS[0])
        plate_w, plate_h = max(2, int(18 * scale_x)), max(2, int(7 * scale_y))
        px, py = x + (w - plate_w) // 2, y + h - plate_h - int(3 * scale_y)
        cv2.rectangle(image, (px, py), (px + plate_w - 1, py + plate_h - 1), (250, 250, 250), -1)
        boxes.append([px, py, px + plate_w, py + plate_h])
        labels.append(LABELS[1])
    return image, np.asarray(boxes, np.float32).reshape(-1, 4), labels


def scene_set(count, seed, width=INPUT_SIZE, height=INPUT_SIZE):
    """``count`` scenes; returns ``(images, ground_truth)`` in :mod:`platelab.evaluate`'s layout."""
    rng = np.random.default_rng(seed)
    images, ground_truth = [], []
    for index in range(count):
        image, boxes, labels = draw_scene(rng, width, height)
        images.append(image)
        ground_truth.append(
            {
                "image": f"scene_{index:03d}",
                "width": width,
                "height": height,
                "boxes": boxes,
                "labels": labels,
            }
        )
    return images, ground_truth


def anchor_spec(input_size=INPUT_SIZE, levels=LEVELS):
    """Anchors derived from the synthetic scenes' boxes."""
    rng = np.random.default_rng(1)
    sizes = []
    for _ in range(64):
        _image, boxes, _labels = draw_scene(rng)
        sizes.append((boxes[:, 2:] - boxes[:, :2]) / INPUT_SIZE)
    return model_lib.anchors_from_boxes(np.concatenate(sizes), input_size, levels, per_level=2)


def tiny_model(input_size=INPUT_SIZE, width=WIDTH, spec=None, levels=LEVELS):
    """An untrained SSD (random weights); returns ``(model, anchor_spec)``."""
    spec = spec or anchor_spec(input_size, levels)
    net = model_lib.build_ssd(
        num_classes=len(LABELS),
        input_size=input_size,
        width=width,
        anchors=spec,
        weights=None,
        levels=levels,
    )
    return net, spec


def train_tiny_model(steps=80, seed=0):
    """Trains :func:`tiny_model` on 96 synthetic scenes (about 30 s of CPU on two cores).

    Returns:
        ``(model, anchor_spec)``
    """
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    net, spec = tiny_model()
    anchors = model_lib.generate_anchors(spec, INPUT_SIZE)
    images, ground_truth = scene_set(96, seed=seed)
    label_ids = {label: index + 1 for index, label in enumerate(LABELS)}
    targets = [
        model_lib.encode_targets(
            item["boxes"] / INPUT_SIZE, [label_ids[label] for label in item["labels"]], anchors
        )
        for item in ground_truth
    ]
    pixels = np.stack(images).astype(np.float32)
    class_targets = np.stack([np.asarray(item[0]) for item in targets])
    box_targets = np.stack([np.asarray(item[1]) for item in targets])
    # Batch statistics settle within the few steps taken.
    for layer in _all_layers(net):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    optimizer = keras.optimizers.Adam(3e-3)

    @tf.function
    def step(x, class_target, box_target):
        with tf.GradientTape() as tape:
            outputs = net(x, training=True)
            entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(
                class_target, outputs["class_logits"]
            )
            positive = tf.cast(class_target > 0, tf.float32)
            count = tf.maximum(tf.reduce_sum(positive), 1.0)
            negatives = tf.reshape(tf.where(class_target > 0, 0.0, entropy), [-1])
            hardest = tf.math.top_k(
                negatives, tf.minimum(tf.cast(3 * count, tf.int32), tf.size(negatives))
            ).values
            error = tf.abs(box_target - outputs["box_deltas"])
            huber = tf.where(error < 1.0, 0.5 * error**2, error - 0.5)
            loss = (
                tf.reduce_sum(entropy * positive)
                + tf.reduce_sum(hardest)
                + tf.reduce_sum(tf.reduce_sum(huber, -1) * positive)
            ) / count
        gradients = tape.gradient(loss, net.trainable_variables)
        optimizer.apply_gradients(zip(gradients, net.trainable_variables, strict=True))
        return loss

    order = np.random.default_rng(seed)
    with warnings.catch_warnings():
        # the stride-32 features feed no head (no anchors there): no gradients for them
        warnings.filterwarnings("ignore", message="Gradients do not exist")
        for _ in range(steps):
            chosen = order.choice(len(pixels), 16, replace=False)
            step(
                tf.constant(pixels[chosen]),
                tf.constant(class_targets[chosen]),
                tf.constant(box_targets[chosen]),
            )
    return net, spec


def make_run_folder(
    folder,
    net=None,
    spec=None,
    status="finished",
    score_threshold=0.3,
    metrics=None,
    dataset=None,
    infer_size=None,
    tta=None,
    infer_margin=0,
    infer_max_scale=None,
):
    """Writes a training-run folder as :mod:`platelab.train` leaves it.

    Args:
        folder: the run folder to create
        net: the Keras model (default: :func:`tiny_model`'s)
        spec: its anchor spec (needed with ``net``)
        status: ``state.json``'s status
        score_threshold: the run's operating threshold
        metrics: a ``metrics.json`` document to write (none by default)
        dataset: the dataset folder to record in ``config.json``
        infer_size: ``[width, height]`` of a letterboxed inference input (today's runs):
            the model is rebuilt for any input size with the same weights; None: an
            earlier run's square, squashed input
        tta: the run's test-time augmentation (``config.json``'s ``tta``); None: none
            recorded (an earlier run's)
        infer_margin: padding round the letterboxed frame (``config.json``'s
            ``infer_margin``; with ``infer_size``)
        infer_max_scale: the largest letterbox scale (``config.json``'s
            ``infer_max_scale``; with ``infer_size``); None: not recorded

    Returns:
        the folder (a Path)
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if net is None:
        net, spec = tiny_model()
    config = {
        "input_size": int(net.input_shape[1] or INPUT_SIZE),
        "width": WIDTH,
        "levels": list(spec["levels"]),
        "anchors": spec,
        "labels": list(LABELS),
        "score_threshold": score_threshold,
        "nms_iou": 0.5,
        "max_detections": 100,
        "training": {"steps": 80, "batch_size": 16, "learning_rate": 0.003, "seed": 0},
        "dataset": str(dataset) if dataset else "synthetic rectangles (tests/model_helpers.py)",
        "train_images": 96,
        "val_images": 0,
    }
    if tta is not None:
        config["tta"] = tta
    if infer_size is not None:
        spec = model_lib.anchor_spec_in_pixels(spec, INPUT_SIZE)
        dynamic = model_lib.build_ssd(
            len(LABELS), None, WIDTH, spec, weights=None, levels=tuple(spec["levels"])
        )
        dynamic.set_weights(net.get_weights())
        net = dynamic
        config.update(anchors=spec, input_size=INPUT_SIZE, infer_size=list(infer_size))
        config["resize"] = "letterbox"
        if infer_margin:
            config["infer_margin"] = int(infer_margin)
        if infer_max_scale is not None:
            config["infer_max_scale"] = float(infer_max_scale)
    net.save(folder / "best.keras")
    (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    state = {"status": status, "step": 80, "best_step": 80, "best_map": 0.6, "steps": 80}
    (folder / "state.json").write_text(json.dumps(state), encoding="utf-8")
    if metrics is not None:
        (folder / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    return folder


def trained_run_folder(folder, **options):
    """A run folder around :func:`train_tiny_model`'s model, trained once per process.

    Args:
        folder: the run folder to write (the first time for these options)
        options: :func:`make_run_folder`'s keyword arguments

    Returns:
        the run folder for these options: ``folder``, or the one an earlier call wrote
    """
    key = json.dumps(options, sort_keys=True, default=str)
    if key in _TRAINED and Path(_TRAINED[key]).is_dir():
        return _TRAINED[key]
    if _MODEL not in _TRAINED:
        _TRAINED[_MODEL] = train_tiny_model()
    net, spec = _TRAINED[_MODEL]
    _TRAINED[key] = make_run_folder(folder, net, spec, **options)
    return _TRAINED[key]


def _all_layers(layer):
    yield layer
    for child in getattr(layer, "layers", []):
        yield from _all_layers(child)
