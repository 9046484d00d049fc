"""Stage 06 (train): transfer-learns the SSDLite MobileNetV2 detector on a merged dataset.

:func:`train` reads the TFRecords written by stage 05 (``tfrecords/{train,val}.tfrecord``
in the merged dataset folder), derives anchors from the training boxes, builds the
model (:func:`platelab.model.build_ssd`), and trains it with a custom loop under a
``tf.distribute`` strategy. The run folder::

    config.json        model configuration and every training parameter
    labels.txt         the class labels, one per line, in class-id order (1-based)
    checkpoints/       tf.train.Checkpoint: model, optimizer (its step drives the schedule),
                       step, best validation mAP and its step
    best.keras         the best model by validation mAP (keras.models.load_model)
    last.keras         the model at the last step
    metrics.csv        loss parts every ``log_every`` steps; validation loss and COCO
                       metrics every ``eval_every`` steps (see :data:`METRICS_COLUMNS`)
    tensorboard/       the same scalars for TensorBoard
    state.json         status (running, finished, early_stopped, nan_stopped), step,
                       best step and mAP
    metrics.json       the final figures (for the report index)

**Resume.** Rerunning the same command on the same run folder continues from the last
checkpoint: the model, the optimizer (and with it the learning-rate schedule), the step
and the best mAP come back from the checkpoint, and the data order and augmentation are
functions of (seed, step) alone (:func:`batch_indices`, stateless random ops), so a
resumed run sees exactly the batches the uninterrupted run would have seen.

**Loss.** SSD's: softmax cross-entropy with hard-negative mining (``neg_pos_ratio``
negatives per positive, the ones with the highest loss) plus a Huber loss on the box
deltas of positive anchors, both divided by the number of positive anchors. Anchors
matched to a *difficult* box (plates only a few pixels high) are ignored, neither
positive nor negative.

TensorFlow is imported inside functions: importing it takes seconds.
"""

import contextlib
import csv
import dataclasses
import io
import json
import logging
import math
import os
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from platelab import detector, metadata
from platelab import model as model_lib
from platelab.atomic import atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)

SPLIT_FILES = {"train": "train.tfrecord", "val": "val.tfrecord", "test": "test.tfrecord"}
BASE_COLUMNS = (
    "step",
    "epoch",
    "elapsed_s",
    "lr",
    "loss",
    "class_loss",
    "box_loss",
    "val_loss",
    "val_class_loss",
    "val_box_loss",
    "mAP",
    "AP50",
    "AP75",
    "precision",
    "recall",
    "F1",
)
PER_CLASS_METRICS = ("AP50", "AP", "precision", "recall")
CHECKPOINT_DIR = "checkpoints"
IGNORE = -1
THROUGHPUT_GOAL = 0.9
"""Training images/s through the input pipeline over the bare train step's, at least."""


class TrainingError(RuntimeError):
    """Training cannot start or go on (one-line message naming the cause)."""


@dataclasses.dataclass
class TrainConfig:
    """Every training parameter (stored in the run's ``config.json``).

    Attributes:
        input_size: side of the square model input in pixels (a multiple of 32)
        width: MobileNetV2 width multiplier
        levels: feature-level strides (8 is the small-plate level)
        anchors_per_level: anchor shapes per level, derived from the training boxes
        init: ``imagenet``, ``auto`` (ImageNet where the weights can be had, else random),
            ``none``, a MobileNetV2 weights file, or a previous run folder
        batch_size: images per step (over all replicas)
        steps: training steps at most
        learning_rate: peak learning rate (after warm-up), cosine decay to 0 at ``steps``
        warmup_steps: linear learning-rate warm-up
        freeze_steps: steps with the backbone frozen (then it trains too)
        weight_decay: AdamW weight decay
        log_every: steps between training-loss rows in metrics.csv
        eval_every: steps between validation rows (loss and COCO metrics)
        checkpoint_every: steps between checkpoints (also at every evaluation)
        patience_steps: early stop when validation mAP has not improved for this many
            steps (0: never)
        seed: seed of initialisation, data order and augmentation
        augment: scale-and-crop, flips, colour, blur and JPEG noise on training images
        neg_pos_ratio: hard negatives per positive anchor
        match_iou: IoU from which an anchor is positive for a box
        score_threshold: operating threshold (precision/recall, and the deployed default)
        nms_iou: non-maximum suppression IoU
        max_detections: detections per image
        strategy: ``auto`` (MultiWorkerMirrored with TF_CONFIG, Mirrored with several
            GPUs, else one device), ``default``, ``mirrored`` or ``multi_worker``
        bn_momentum: momentum of every batch-norm layer's moving statistics (Keras's
            MobileNetV2 uses 0.999, too slow for short fine-tuning runs)
        max_minutes: stop (evaluated and saved, status ``time_limited``) once training
            has run this long in all; 0 for no limit. Keeps a profile within its time
            budget on a slow machine, at the price of a machine-dependent last step.
    """

    input_size: int = 320
    width: float = 0.5
    levels: tuple = (8, 16, 32, 64)
    anchors_per_level: int = 3
    init: str = "imagenet"
    batch_size: int = 16
    steps: int = 2000
    learning_rate: float = 2e-3
    warmup_steps: int = 100
    freeze_steps: int = 0
    weight_decay: float = 1e-4
    log_every: int = 200
    eval_every: int = 500
    checkpoint_every: int = 500
    patience_steps: int = 0
    seed: int = 0
    augment: bool = True
    neg_pos_ratio: float = 3.0
    match_iou: float = 0.5
    score_threshold: float = 0.5
    nms_iou: float = 0.5
    max_detections: int = 100
    strategy: str = "auto"
    max_minutes: float = 0.0
    bn_momentum: float = 0.9

    @classmethod
    def from_dict(cls, values):
        """Builds a config from a dict; unknown keys are an error naming them."""
        known = {item.name for item in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise TrainingError(f"unknown training parameter(s): {', '.join(unknown)}")
        config = cls(**values)
        config.levels = tuple(int(value) for value in config.levels)
        config.validate()
        return config

    def validate(self):
        """Raises TrainingError for a value out of range."""
        if self.input_size % 32 or self.input_size < 64:
            raise TrainingError(
                f"input_size must be a multiple of 32 from 64, got {self.input_size}"
            )
        for name in ("batch_size", "steps", "log_every", "eval_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise TrainingError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.learning_rate > 0:
            raise TrainingError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.strategy not in ("auto", "default", "mirrored", "multi_worker"):
            raise TrainingError(f"unknown strategy {self.strategy!r}")


@dataclasses.dataclass
class SplitData:
    """One split in memory: images resized to a square, boxes padded.

    Attributes:
        images: ``(N, S, S, 3)`` uint8 RGB
        boxes: ``(N, G, 4)`` float32 ``[xmin, ymin, xmax, ymax]`` fractions (padding zeros)
        classes: ``(N, G)`` int32 class ids, 1-based; 0 padding
        difficult: ``(N, G)`` bool
        names: image names (``image/source_id``)
        sizes: ``(N, 2)`` original width and height
        info: per image dict of vantage, lighting, group
        skipped: one line per record that could not be used
        unknown_labels: label -> count of boxes with a label the model does not know
    """

    images: np.ndarray
    boxes: np.ndarray
    classes: np.ndarray
    difficult: np.ndarray
    names: list
    sizes: np.ndarray
    info: list
    skipped: list
    unknown_labels: dict

    def __len__(self):
        return len(self.names)

    def ground_truth(self):
        """The split's boxes in the evaluation engine's format (pixels of the original image)."""
        return [
            _ground_truth_entry(self, index, self.labels_list) for index in range(len(self.names))
        ]

    labels_list: tuple = ()


# --------------------------------------------------------------------------------------
# Data


def read_labels(dataset_dir):
    """The dataset's class labels in id order, from ``dataset.json`` or ``label_map.pbtxt``.

    Args:
        dataset_dir: a merged dataset folder (stage 05)

    Returns:
        a list of labels; label ``i`` has class id ``i + 1``

    Raises:
        TrainingError: naming the folder when it holds no label map
    """
    dataset_dir = Path(dataset_dir)
    document_path = dataset_dir / "dataset.json"
    if document_path.is_file():
        try:
            document = json.loads(document_path.read_text(encoding="utf-8"))
        except ValueError as error:
            raise TrainingError(f"{document_path}: unreadable ({error})") from None
        label_map = document.get("label_map")
        if isinstance(label_map, dict) and label_map:
            return [label for label, _ in sorted(label_map.items(), key=lambda item: item[1])]
        if isinstance(label_map, list) and label_map:
            return list(label_map)
    pbtxt = dataset_dir / "label_map.pbtxt"
    if pbtxt.is_file():
        import re

        text = pbtxt.read_text(encoding="utf-8")
        pairs = re.findall(r"id:\s*(\d+)\s*name:\s*['\"]([^'\"]+)['\"]", text)
        if pairs:
            return [name for _, name in sorted(pairs, key=lambda pair: int(pair[0]))]
    raise TrainingError(f"{dataset_dir}: no label map (dataset.json or label_map.pbtxt)")


def load_split(dataset_dir, split, labels, size, progress=False, workers=None):
    """Reads one split's TFRecord into memory, images resized to ``size`` x ``size``.

    A record whose image cannot be decoded is skipped and listed; a box whose label is
    not in ``labels`` is dropped and counted.

    Args:
        dataset_dir: a merged dataset folder (stage 05)
        split: ``train``, ``val`` or ``test``
        labels: the model's labels
        size: side of the stored square images
        progress: show a progress bar
        workers: decoding threads

    Returns:
        a :class:`SplitData`

    Raises:
        TrainingError: the split's file is missing or unreadable
    """
    tf = model_lib._import_tensorflow()
    import cv2
    from tqdm.auto import tqdm

    path = Path(dataset_dir) / "tfrecords" / SPLIT_FILES[split]
    if not path.is_file():
        raise TrainingError(f"{path}: no such file (run stage 05 merge with write_tfrecords)")
    try:
        raw_records = [record.numpy() for record in tf.data.TFRecordDataset(str(path))]
    except tf.errors.OpError as error:
        raise TrainingError(f"{path}: not a readable TFRecord file ({error.message})") from None
    label_ids = {label: index + 1 for index, label in enumerate(labels)}

    def parse(raw):
        example = tf.train.Example.FromString(raw)
        feature = example.features.feature

        def values(name):
            if name not in feature:
                return []
            item = feature[name]
            kind = item.WhichOneof("kind")
            return list(getattr(item, kind).value) if kind else []

        def text(name):
            found = values(name)
            return found[0].decode("utf-8") if found else ""

        name = text("image/source_id") or text("image/filename")
        encoded = values("image/encoded")
        if not encoded:
            return None, f"{path.name}: record {name}: no image/encoded"
        array = cv2.imdecode(np.frombuffer(encoded[0], np.uint8), cv2.IMREAD_COLOR)
        if array is None:
            return None, f"{path.name}: record {name}: image cannot be decoded (skipped)"
        height, width = array.shape[:2]
        resized = cv2.cvtColor(array, cv2.COLOR_BGR2RGB)
        resized = model_lib.resize_image(resized, size).astype(np.uint8)
        boxes = np.stack(
            [values(f"image/object/bbox/{key}") for key in ("xmin", "ymin", "xmax", "ymax")],
            axis=-1,
        ).reshape(-1, 4)
        texts = [value.decode("utf-8") for value in values("image/object/class/text")]
        difficult = values("image/object/difficult") or [0] * len(texts)
        return (
            {
                "name": name,
                "image": resized,
                "size": (width, height),
                "boxes": boxes.astype(np.float32),
                "labels": texts,
                "difficult": np.asarray(difficult, dtype=bool),
                "info": {
                    "vantage": text("image/vantage"),
                    "lighting": text("image/lighting"),
                    "group": text("image/group"),
                },
            },
            None,
        )

    items, skipped, unknown = [], [], {}
    with ThreadPoolExecutor(workers or min(4, os.cpu_count() or 1)) as pool:
        results = pool.map(parse, raw_records)
        for item, problem in tqdm(
            results, total=len(raw_records), desc=f"load {split}", disable=not progress
        ):
            if problem:
                skipped.append(problem)
                logger.warning(problem)
                continue
            keep = []
            for label in item["labels"]:
                known = label in label_ids
                keep.append(known)
                if not known:
                    unknown[label] = unknown.get(label, 0) + 1
            keep = np.asarray(keep, dtype=bool)
            item["boxes"] = item["boxes"][keep] if len(keep) else item["boxes"]
            item["difficult"] = item["difficult"][keep] if len(keep) else item["difficult"]
            item["classes"] = np.asarray(
                [label_ids[label] for label in item["labels"] if label in label_ids], np.int32
            )
            items.append(item)
    if unknown:
        logger.warning(
            "%s: boxes with labels the model does not know were dropped: %s", path, unknown
        )
    most = max([len(item["classes"]) for item in items] + [1])
    count = len(items)
    boxes = np.zeros((count, most, 4), np.float32)
    classes = np.zeros((count, most), np.int32)
    difficult = np.zeros((count, most), bool)
    for index, item in enumerate(items):
        found = len(item["classes"])
        boxes[index, :found] = item["boxes"]
        classes[index, :found] = item["classes"]
        difficult[index, :found] = item["difficult"]
    data = SplitData(
        images=np.stack([item["image"] for item in items])
        if items
        else np.zeros((0, size, size, 3), np.uint8),
        boxes=boxes,
        classes=classes,
        difficult=difficult,
        names=[item["name"] for item in items],
        sizes=np.asarray([item["size"] for item in items], np.int64).reshape(-1, 2),
        info=[item["info"] for item in items],
        skipped=skipped,
        unknown_labels=unknown,
    )
    data.labels_list = tuple(labels)
    return data


def anchor_boxes(data):
    """The box sizes anchors are fitted to: ``(M, 2)`` widths and heights (fractions).

    Difficult boxes (plates a few pixels high) are left out where others exist: training
    ignores them, so an anchor shape spent on them would be wasted.
    """
    chosen = (data.classes > 0) & ~data.difficult
    if not chosen.any():
        chosen = data.classes > 0
    boxes = data.boxes[chosen]
    wh = np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], 1)
    return wh[(wh[:, 0] > 0) & (wh[:, 1] > 0)]


def cache_size_for(config):
    """Side of the square training images kept in memory: 1.5x the input with augmentation
    (crops zoom in without losing detail), else the input size."""
    if not config.augment:
        return config.input_size
    return int(round(config.input_size * 1.5 / 32) * 32)


def batch_indices(step, batch_size, count, seed):
    """The training images of a step: a fresh seeded permutation of the images per epoch.

    A pure function of its arguments, so a resumed run draws the same batches.

    Args:
        step: the 0-based step
        batch_size: images per step
        count: images in the training split
        seed: the run's seed

    Returns:
        ``(batch_size,)`` int64 image indices
    """
    positions = np.arange(step * batch_size, (step + 1) * batch_size, dtype=np.int64)
    epochs, offsets = np.divmod(positions, count)
    result = np.empty(batch_size, np.int64)
    for epoch in np.unique(epochs):
        order = np.random.default_rng([seed, int(epoch)]).permutation(count)
        mask = epochs == epoch
        result[mask] = order[offsets[mask]]
    return result


def make_train_dataset(data, anchors, config, start_step, global_batch):
    """The training ``tf.data`` pipeline from ``start_step`` on (infinite).

    Image indices come from :func:`batch_indices`; each image's augmentation is drawn
    with stateless random ops seeded by (seed, step, position in the batch); targets
    are encoded inside the pipeline, which maps in parallel and prefetches.

    Args:
        data: the training :class:`SplitData` (images at the cache size)
        anchors: ``(N, 4)`` anchors
        config: the :class:`TrainConfig`
        start_step: the first step to produce
        global_batch: images per step over all replicas

    Returns:
        a ``tf.data.Dataset`` of ``(images, class_targets, box_targets)`` batches
    """
    tf = model_lib._import_tensorflow()
    count = len(data)
    images = tf.constant(data.images)
    boxes = tf.constant(data.boxes)
    classes = tf.constant(data.classes)
    difficult = tf.constant(data.difficult)
    anchors = tf.constant(anchors)
    size = config.input_size
    seed = config.seed

    def indices(step):
        return tf.numpy_function(
            lambda value: batch_indices(int(value), global_batch, count, seed),
            [step],
            tf.int64,
            stateful=False,
        )

    def expand(step):
        batch = indices(step)
        batch.set_shape([global_batch])
        steps = tf.fill([global_batch], step)
        return tf.data.Dataset.from_tensor_slices(
            (steps, tf.range(global_batch, dtype=tf.int64), batch)
        )

    def prepare(step, position, index):
        image = tf.gather(images, index)
        image_boxes = tf.gather(boxes, index)
        image_classes = tf.gather(classes, index)
        image_difficult = tf.gather(difficult, index)
        image = tf.cast(image, tf.float32)
        if config.augment:
            stateless_seed = tf.stack([tf.cast(seed, tf.int64) * 1000003 + step, position])
            image, image_boxes, image_classes, image_difficult = augment(
                image, image_boxes, image_classes, image_difficult, stateless_seed, size
            )
        else:
            image = tf.image.resize(image, (size, size))
        class_targets, box_targets = encode_with_ignore(
            image_boxes, image_classes, image_difficult, anchors, config.match_iou
        )
        return image, class_targets, box_targets

    dataset = tf.data.Dataset.range(start_step, 2**62)
    dataset = dataset.flat_map(expand)
    dataset = dataset.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.batch(global_batch, drop_remainder=True)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    options.deterministic = True
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


def augment(image, boxes, classes, difficult, seed, size):
    """Random scale-and-crop, horizontal flip, colour, blur and JPEG noise, boxes kept consistent.

    Args:
        image: ``(S, S, 3)`` float32 pixels 0-255
        boxes: ``(G, 4)`` fractions; classes ``(G,)`` (0 padding); difficult ``(G,)``
        seed: ``(2,)`` int64 stateless seed
        size: output side in pixels

    Returns:
        ``(image, boxes, classes, difficult)``: the image ``(size, size, 3)`` float32;
        boxes whose centre left the crop get class 0 (padding)
    """
    tf = model_lib._import_tensorflow()
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 8)
    # Scale and crop: a window of 55-100 % of the side (zoom in on small plates), anywhere.
    scale = tf.random.stateless_uniform([], seeds[0], 0.55, 1.0)
    aspect = tf.exp(tf.random.stateless_uniform([], seeds[1], -0.2, 0.2))
    crop_w = tf.minimum(scale * tf.sqrt(aspect), 1.0)
    crop_h = tf.minimum(scale / tf.sqrt(aspect), 1.0)
    offset = tf.random.stateless_uniform([2], seeds[2], 0.0, 1.0)
    x0 = offset[0] * (1.0 - crop_w)
    y0 = offset[1] * (1.0 - crop_h)
    use_crop = tf.random.stateless_uniform([], seeds[3]) < 0.6
    x0 = tf.where(use_crop, x0, 0.0)
    y0 = tf.where(use_crop, y0, 0.0)
    crop_w = tf.where(use_crop, crop_w, 1.0)
    crop_h = tf.where(use_crop, crop_h, 1.0)
    image = tf.image.crop_and_resize(
        image[None], [[y0, x0, y0 + crop_h, x0 + crop_w]], [0], [size, size]
    )[0]
    centre_x = (boxes[:, 0] + boxes[:, 2]) / 2
    centre_y = (boxes[:, 1] + boxes[:, 3]) / 2
    inside = (centre_x > x0) & (centre_x < x0 + crop_w) & (centre_y > y0) & (centre_y < y0 + crop_h)
    boxes = tf.stack(
        [
            (boxes[:, 0] - x0) / crop_w,
            (boxes[:, 1] - y0) / crop_h,
            (boxes[:, 2] - x0) / crop_w,
            (boxes[:, 3] - y0) / crop_h,
        ],
        axis=-1,
    )
    boxes = tf.clip_by_value(boxes, 0.0, 1.0)
    classes = tf.where(inside, classes, 0)
    # Horizontal flip.
    flip = tf.random.stateless_uniform([], seeds[4]) < 0.5
    image = tf.cond(flip, lambda: tf.reverse(image, axis=[1]), lambda: image)
    boxes = tf.where(
        flip, tf.stack([1 - boxes[:, 2], boxes[:, 1], 1 - boxes[:, 0], boxes[:, 3]], -1), boxes
    )
    # Colour: brightness, contrast, then saturation and hue in one 3x3 colour matrix.
    colour = tf.random.stateless_uniform([4], seeds[5], -1.0, 1.0)
    image = image / 255.0
    image = tf.image.adjust_brightness(image, 0.15 * colour[0])
    image = tf.image.adjust_contrast(image, 1.0 + 0.3 * colour[1])
    matrix = _chroma_matrix(1.0 + 0.4 * colour[2], 0.03 * colour[3])
    image = tf.reshape(tf.reshape(image, [-1, 3]) @ matrix, tf.shape(image))
    image = tf.clip_by_value(image, 0.0, 1.0)
    # Blur (a 3x3 box blur on a quarter of the images) and JPEG noise (a third).
    blur = tf.random.stateless_uniform([], seeds[6]) < 0.25
    image = tf.cond(blur, lambda: tf.nn.avg_pool2d(image[None], 3, 1, "SAME")[0], lambda: image)
    jpeg_draw = tf.random.stateless_uniform([2], seeds[7])
    quality = tf.cast(40 + 50 * jpeg_draw[1], tf.int32)
    image = tf.cond(
        jpeg_draw[0] < 0.33,
        lambda: tf.image.adjust_jpeg_quality(image, quality),
        lambda: image,
    )
    image = tf.reshape(image * 255.0, [size, size, 3])
    return image, boxes, classes, difficult


def encode_with_ignore(boxes, classes, difficult, anchors, match_iou):
    """Training targets with anchors on difficult boxes ignored (class target -1).

    Args:
        boxes: ``(G, 4)`` fractions; classes ``(G,)`` 1-based (0 padding); difficult ``(G,)``
        anchors: ``(N, 4)`` anchors
        match_iou: IoU from which an anchor is positive

    Returns:
        ``(class_targets, box_targets)``: ``(N,)`` int32 (0 background, -1 ignored) and
        ``(N, 4)`` float32
    """
    tf = model_lib._import_tensorflow()
    classes = tf.cast(classes, tf.int32)
    # Padding rows (and boxes the crop left) cost IoU work for nothing: match the rest.
    kept = classes > 0
    boxes = tf.boolean_mask(boxes, kept)
    classes = tf.boolean_mask(classes, kept)
    difficult = tf.boolean_mask(tf.cast(difficult, tf.bool), kept)
    easy = tf.where(difficult, 0, classes)
    hard = tf.where(difficult, classes, 0)
    class_targets, box_targets = model_lib.encode_targets(boxes, easy, anchors, match_iou)
    # The second matching only where the image has a difficult box (most have none).
    hard_targets = tf.cond(
        tf.reduce_any(hard > 0),
        lambda: model_lib.encode_targets(boxes, hard, anchors, match_iou)[0],
        lambda: tf.zeros_like(class_targets),
    )
    ignored = (hard_targets > 0) & (class_targets == 0)
    class_targets = tf.where(ignored, IGNORE, class_targets)
    return class_targets, box_targets


# --------------------------------------------------------------------------------------
# Loss


def detection_loss(class_targets, box_targets, class_logits, box_deltas, neg_pos_ratio=3.0):
    """SSD loss: cross-entropy with hard-negative mining plus Huber on positive boxes.

    Args:
        class_targets: ``(B, N)`` int class ids (0 background, -1 ignored)
        box_targets: ``(B, N, 4)`` encoded deltas
        class_logits: ``(B, N, C + 1)`` model logits
        box_deltas: ``(B, N, 4)`` model deltas
        neg_pos_ratio: hard negatives per positive (at least 8 per image)

    Returns:
        ``(class_loss, box_loss)`` scalars, each summed over the batch and divided by the
        number of positive anchors (at least 1)
    """
    tf = model_lib._import_tensorflow()
    class_targets = tf.cast(class_targets, tf.int32)
    class_logits = tf.cast(class_logits, tf.float32)
    box_deltas = tf.cast(box_deltas, tf.float32)
    positive = class_targets > 0
    negative = tf.equal(class_targets, 0)
    cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.maximum(class_targets, 0), logits=class_logits
    )
    positives_per_image = tf.reduce_sum(tf.cast(positive, tf.int32), axis=1)
    negatives_available = tf.reduce_sum(tf.cast(negative, tf.int32), axis=1)
    wanted = tf.cast(tf.cast(positives_per_image, tf.float32) * neg_pos_ratio, tf.int32)
    wanted = tf.minimum(tf.maximum(wanted, 8), negatives_available)
    negative_loss = tf.where(negative, cross_entropy, -1.0)
    order = tf.argsort(negative_loss, axis=1, direction="DESCENDING", stable=True)
    rank = tf.argsort(order, axis=1, stable=True)
    hard_negative = negative & (rank < wanted[:, None])
    selected = tf.cast(positive | hard_negative, tf.float32)
    normaliser = tf.maximum(tf.cast(tf.reduce_sum(positives_per_image), tf.float32), 1.0)
    class_loss = tf.reduce_sum(cross_entropy * selected) / normaliser
    difference = tf.abs(tf.cast(box_targets, tf.float32) - box_deltas)
    huber = tf.where(difference < 1.0, 0.5 * difference**2, difference - 0.5)
    box_loss = (
        tf.reduce_sum(tf.reduce_sum(huber, axis=-1) * tf.cast(positive, tf.float32)) / normaliser
    )
    return class_loss, box_loss


# --------------------------------------------------------------------------------------
# Training


def train(dataset_dir, run_dir, config=None, progress=True, echo=None, stop_after=None):
    """Trains (or resumes training of) a detector.

    Args:
        dataset_dir: a merged dataset folder (stage 05) with TFRecords
        run_dir: the run folder; when it holds a checkpoint of the same configuration,
            training resumes from it
        config: a :class:`TrainConfig` or a dict of its fields
        progress: show a progress bar
        echo: a function receiving one line per log row (default: logger.info)
        stop_after: stop (as if killed) after this many steps of this call (tests)

    Returns:
        the final state dict (also in ``state.json``)

    Raises:
        TrainingError: bad data, a run folder of another configuration, an init run of
            another backbone, out of memory (with a smaller batch size suggested)
    """
    tf = model_lib._import_tensorflow()
    keras = model_lib._import_keras()
    from tqdm.auto import tqdm

    if config is None:
        config = TrainConfig()
    elif isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    config.validate()
    echo = echo or logger.info
    dataset_dir = Path(dataset_dir)
    run_dir = Path(run_dir)
    if not dataset_dir.is_dir():
        raise TrainingError(f"{dataset_dir}: no such dataset folder")
    labels = read_labels(dataset_dir)
    # MultiWorkerMirroredStrategy must exist before TensorFlow runs any op.
    strategy = make_strategy(config.strategy)
    keras.utils.set_random_seed(config.seed)

    cache_size = cache_size_for(config)
    train_data = load_split(dataset_dir, "train", labels, cache_size, progress=progress)
    val_data = load_split(dataset_dir, "val", labels, config.input_size, progress=progress)
    if len(train_data) == 0:
        raise TrainingError(f"{dataset_dir}: the train split is empty (no usable image)")
    if len(val_data) == 0:
        raise TrainingError(
            f"{dataset_dir}: the val split is empty: validation loss, mAP and early stop need it "
            "(merge with a val fraction that gives it at least one group)"
        )
    wh = anchor_boxes(train_data)
    if len(wh) == 0:
        raise TrainingError(f"{dataset_dir}: the train split has no boxes")
    anchor_spec = model_lib.anchors_from_boxes(
        wh, config.input_size, config.levels, config.anchors_per_level, seed=config.seed
    )
    model_config = {
        "input_size": config.input_size,
        "width": config.width,
        "levels": list(config.levels),
        "anchors": anchor_spec,
        "labels": list(labels),
        "score_threshold": config.score_threshold,
        "nms_iou": config.nms_iou,
        "max_detections": config.max_detections,
    }
    run_config = {
        **model_config,
        "training": dataclasses.asdict(config),
        "dataset": str(dataset_dir),
        "dataset_fingerprint": _dataset_fingerprint(dataset_dir),
        "anchor_fit": model_lib.anchor_fit(wh, anchor_spec),
        "train_images": len(train_data),
        "val_images": len(val_data),
        "skipped_images": train_data.skipped + val_data.skipped,
        "unknown_labels": _merge_counts(train_data.unknown_labels, val_data.unknown_labels),
    }
    run_config["training"]["levels"] = list(config.levels)
    resuming = _check_resume(run_dir, run_config)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resuming:
        atomic_write_json(run_dir / detector.CONFIG_FILENAME, run_config)
        atomic_write_text(run_dir / "labels.txt", "".join(label + "\n" for label in labels))

    chief = _is_chief(strategy)
    echo(
        f"strategy {type(strategy).__name__}: replicas {strategy.num_replicas_in_sync}"
        + ("" if chief else " (this worker is not the chief: it writes no run files)")
    )
    anchors = model_lib.generate_anchors(anchor_spec, config.input_size)
    with strategy.scope():
        net = _build_model(config, anchor_spec, len(labels), resuming, echo)
        schedule = keras.optimizers.schedules.CosineDecay(
            0.0,
            decay_steps=max(config.steps - config.warmup_steps, 1),
            warmup_target=config.learning_rate,
            warmup_steps=config.warmup_steps,
        )
        optimizer = keras.optimizers.AdamW(
            learning_rate=schedule, weight_decay=config.weight_decay, global_clipnorm=10.0
        )
        optimizer.build(net.trainable_variables)
        step_variable = tf.Variable(0, dtype=tf.int64, name="step")
        best_map = tf.Variable(-1.0, dtype=tf.float64, name="best_map")
        best_step = tf.Variable(-1, dtype=tf.int64, name="best_step")
    checkpoint = tf.train.Checkpoint(
        model=net, optimizer=optimizer, step=step_variable, best_map=best_map, best_step=best_step
    )
    checkpoint_dir = run_dir / CHECKPOINT_DIR if chief else run_dir / f".worker-{_task_id()}"
    manager = tf.train.CheckpointManager(checkpoint, str(checkpoint_dir), max_to_keep=2)
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).expect_partial()
        echo(f"resumed from {manager.latest_checkpoint} at step {int(step_variable.numpy())}")
    start_step = int(step_variable.numpy())
    if chief:
        _truncate_metrics(run_dir / "metrics.csv", start_step)

    state = {
        "status": "running",
        "step": start_step,
        "best_step": int(best_step.numpy()),
        "best_map": float(best_map.numpy()),
        "steps": config.steps,
    }
    if start_step >= config.steps or _finished_early(run_dir, config):
        state = detector.read_state(run_dir) or dict(state, status="finished")
        echo(f"{run_dir}: already {state.get('status', 'finished')} at step {state.get('step')}")
        return state
    if chief:
        atomic_write_json(run_dir / detector.STATE_FILENAME, state)

    global_batch = config.batch_size
    dataset = make_train_dataset(train_data, anchors, config, start_step, global_batch)
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    backbone = net.get_layer("backbone")

    frozen = None
    step_function = None
    writer = tf.summary.create_file_writer(str(run_dir / "tensorboard")) if chief else None
    metrics_path = run_dir / "metrics.csv"
    evaluation_columns = _metric_columns(labels)
    began = time.perf_counter()
    elapsed_before = _last_elapsed(metrics_path)
    window = {"class_loss": [], "box_loss": []}
    status = "running"
    last_good = manager.latest_checkpoint
    bar = tqdm(
        total=config.steps, initial=start_step, desc="train", disable=not progress or not chief
    )
    steps_this_call = 0
    step = start_step
    try:
        while step < config.steps:
            want_frozen = step < config.freeze_steps
            if want_frozen != frozen:
                backbone.trainable = not want_frozen
                frozen = want_frozen
                step_function = make_train_step(net, optimizer, strategy, config)
                if step > start_step or want_frozen:
                    echo(f"step {step}: backbone {'frozen' if frozen else 'trainable'}")
            class_loss, box_loss = step_function(next(iterator))
            class_loss, box_loss = float(class_loss), float(box_loss)
            step += 1
            steps_this_call += 1
            step_variable.assign(step)
            bar.update(1)
            if not (math.isfinite(class_loss) and math.isfinite(box_loss)):
                status = "nan_stopped"
                echo(
                    f"loss became NaN at step {step}: training stopped; the last good checkpoint "
                    f"({last_good or 'none'}) and best.keras are kept (try a lower learning_rate)"
                )
                break
            window["class_loss"].append(class_loss)
            window["box_loss"].append(box_loss)
            out_of_time = bool(
                config.max_minutes
                and elapsed_before + time.perf_counter() - began >= 60 * config.max_minutes
            )
            row = None
            if step % config.log_every == 0 or step == config.steps or out_of_time:
                row = {
                    "step": step,
                    "epoch": round(step * global_batch / len(train_data), 3),
                    "lr": float(schedule(step)),
                    "class_loss": float(np.mean(window["class_loss"])),
                    "box_loss": float(np.mean(window["box_loss"])),
                }
                row["loss"] = row["class_loss"] + row["box_loss"]
                window = {"class_loss": [], "box_loss": []}
            evaluate_now = step % config.eval_every == 0 or step == config.steps or out_of_time
            if evaluate_now:
                row = row or {
                    "step": step,
                    "epoch": round(step * global_batch / len(train_data), 3),
                    "lr": float(schedule(step)),
                }
                evaluation = evaluate_split(net, val_data, anchors, labels, config, progress=False)
                row.update(_evaluation_row(evaluation, labels))
                current = evaluation["metrics"].get("AP")
                current = -1.0 if current is None else float(current)
                if current > float(best_map.numpy()) + 1e-9:
                    best_map.assign(current)
                    best_step.assign(step)
                    if chief:
                        _save_keras(net, run_dir / detector.BEST_MODEL_FILENAME)
            if row is not None:
                row["elapsed_s"] = round(elapsed_before + time.perf_counter() - began, 2)
                if chief:
                    _append_metrics(metrics_path, row, evaluation_columns)
                    with writer.as_default(step=step):
                        for key, value in row.items():
                            if key not in ("step", "epoch") and value is not None:
                                tf.summary.scalar(key, value)
                    writer.flush()
                echo(_format_row(row))
            if evaluate_now or step % config.checkpoint_every == 0 or step == config.steps:
                last_good = manager.save(checkpoint_number=step)
                if chief:
                    _save_keras(net, run_dir / detector.LAST_MODEL_FILENAME)
                    state.update(
                        step=step,
                        best_step=int(best_step.numpy()),
                        best_map=float(best_map.numpy()),
                    )
                    atomic_write_json(run_dir / detector.STATE_FILENAME, state)
            if (
                config.patience_steps
                and evaluate_now
                and int(best_step.numpy()) >= 0
                and step - int(best_step.numpy()) >= config.patience_steps
            ):
                status = "early_stopped"
                echo(
                    f"early stop at step {step}: validation mAP has not improved for "
                    f"{step - int(best_step.numpy())} steps (best {float(best_map.numpy()):.4f} "
                    f"at step {int(best_step.numpy())})"
                )
                break
            if out_of_time:
                status = "time_limited"
                echo(
                    f"time limit: stopped at step {step} of {config.steps} after "
                    f"{config.max_minutes:g} minutes (max_minutes)"
                )
                break
            if stop_after is not None and steps_this_call >= stop_after:
                bar.close()
                return dict(state, step=step)
    except tf.errors.ResourceExhaustedError:
        raise TrainingError(
            f"out of memory at batch size {global_batch}: try --batch-size "
            f"{max(1, global_batch // 2)} (the notebook measures memory per batch size)"
        ) from None
    finally:
        bar.close()
    if status == "running":
        status = "finished"
    if status != "nan_stopped" and manager.latest_checkpoint != last_good:
        manager.save(checkpoint_number=step)
    state.update(
        status=status,
        step=step if status != "nan_stopped" else state["step"],
        best_step=int(best_step.numpy()),
        best_map=float(best_map.numpy()),
        finished_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
    )
    if chief:
        if not (run_dir / detector.BEST_MODEL_FILENAME).is_file() and status != "nan_stopped":
            _save_keras(net, run_dir / detector.BEST_MODEL_FILENAME)
        atomic_write_json(run_dir / detector.STATE_FILENAME, state)
    return state


def make_train_step(net, optimizer, strategy, config):
    """A ``tf.function`` running one training step on a distributed batch.

    The trainable variables are read when this is called: call it again after
    freezing or unfreezing the backbone.

    Args:
        net: the Keras model (built in ``strategy``'s scope)
        optimizer: its optimizer
        strategy: the ``tf.distribute`` strategy
        config: the :class:`TrainConfig`

    Returns:
        a function ``step(batch) -> (class_loss, box_loss)`` (mean over replicas)
    """
    tf = model_lib._import_tensorflow()
    variables = net.trainable_variables
    replicas = strategy.num_replicas_in_sync

    def step_fn(images, class_targets, box_targets):
        with tf.GradientTape() as tape:
            outputs = net(images, training=True)
            class_loss, box_loss = detection_loss(
                class_targets,
                box_targets,
                outputs["class_logits"],
                outputs["box_deltas"],
                config.neg_pos_ratio,
            )
            total = (class_loss + box_loss) / replicas
        gradients = tape.gradient(total, variables)
        # Backbone layers past the last level with anchors get no gradient: leave them be.
        optimizer.apply_gradients(
            [
                (gradient, variable)
                for gradient, variable in zip(gradients, variables, strict=True)
                if gradient is not None
            ]
        )
        return class_loss, box_loss

    @tf.function
    def step(batch):
        class_loss, box_loss = strategy.run(step_fn, args=batch)
        return (
            strategy.reduce("MEAN", class_loss, axis=None),
            strategy.reduce("MEAN", box_loss, axis=None),
        )

    return step


def evaluate_split(net, data, anchors, labels, config, batch_size=16, progress=False):
    """Validation loss and COCO metrics of a model on one split held in memory.

    Args:
        net: the Keras model
        data: a :class:`SplitData` with images at the model's input size
        anchors: ``(N, 4)`` anchors
        labels: the model's labels
        config: the :class:`TrainConfig` (thresholds)
        batch_size: images per forward pass
        progress: show a progress bar

    Returns:
        dict with ``loss``, ``class_loss``, ``box_loss``, ``metrics`` (the evaluation
        engine's dict) and ``predictions`` (the flat list it scored)
    """
    tf = model_lib._import_tensorflow()
    from tqdm.auto import tqdm

    from platelab import evaluate

    forward = _forward_function(net)
    predictions, class_losses, box_losses, weights = [], [], [], []
    for start in tqdm(range(0, len(data), batch_size), desc="evaluate", disable=not progress):
        stop = min(start + batch_size, len(data))
        images = tf.image.resize(
            tf.constant(data.images[start:stop], tf.float32), [config.input_size] * 2
        )
        outputs = forward(images)
        targets = [
            encode_with_ignore(
                data.boxes[index],
                data.classes[index],
                data.difficult[index],
                anchors,
                config.match_iou,
            )
            for index in range(start, stop)
        ]
        class_loss, box_loss = detection_loss(
            tf.stack([item[0] for item in targets]),
            tf.stack([item[1] for item in targets]),
            outputs["class_logits"],
            outputs["box_deltas"],
            config.neg_pos_ratio,
        )
        class_losses.append(float(class_loss))
        box_losses.append(float(box_loss))
        weights.append(stop - start)
        decoded = model_lib.postprocess(
            outputs["class_logits"],
            outputs["box_deltas"],
            anchors,
            score_threshold=0.05,
            iou_threshold=config.nms_iou,
            max_detections=config.max_detections,
        )
        for offset, index in enumerate(range(start, stop)):
            width, height = data.sizes[index]
            for box, score, class_id in zip(
                decoded["boxes"][offset, : decoded["num_detections"][offset]],
                decoded["scores"][offset],
                decoded["classes"][offset],
                strict=False,
            ):
                predictions.append(
                    {
                        "image": data.names[index],
                        "label": labels[int(class_id) - 1],
                        "score": float(score),
                        "bbox": [
                            float(box[0] * width),
                            float(box[1] * height),
                            float(box[2] * width),
                            float(box[3] * height),
                        ],
                    }
                )
    metrics = evaluate.evaluate_detections(
        data.ground_truth(),
        predictions,
        classes=list(labels),
        score_threshold=config.score_threshold,
    )
    class_loss = float(np.average(class_losses, weights=weights))
    box_loss = float(np.average(box_losses, weights=weights))
    return {
        "loss": class_loss + box_loss,
        "class_loss": class_loss,
        "box_loss": box_loss,
        "metrics": metrics,
        "predictions": predictions,
    }


def make_strategy(name="auto"):
    """The ``tf.distribute`` strategy for a name.

    ``auto``: MultiWorkerMirroredStrategy when ``TF_CONFIG`` names a cluster,
    MirroredStrategy with several GPUs, else the default (one device).
    """
    tf = model_lib._import_tensorflow()
    if name == "auto":
        cluster = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}").get("cluster", {})
        if sum(len(value) for value in cluster.values()) > 1:
            name = "multi_worker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def metrics_columns(labels):
    """The header of ``metrics.csv`` for a label set."""
    return list(BASE_COLUMNS) + _metric_columns(labels)


def read_metrics(run_dir):
    """Reads a run's ``metrics.csv`` as a list of dicts (numbers as floats, blanks as None)."""
    path = Path(run_dir) / "metrics.csv"
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [
        {key: (float(value) if value not in ("", None) else None) for key, value in row.items()}
        for row in rows
    ]


# --------------------------------------------------------------------------------------
# Private helpers


def _build_model(config, anchor_spec, num_classes, resuming, echo):
    """Builds the model and applies ``init`` (unless resuming: the checkpoint wins)."""
    init = str(config.init or "none")
    weights = None
    init_run = None
    if not resuming:
        if init == "imagenet":
            weights = "imagenet"
        elif init.lower() in ("none", "auto"):
            weights = None
        else:
            path = Path(init).expanduser()
            if path.is_dir():
                init_run = path
            elif path.is_file():
                weights = str(path)
            else:
                raise TrainingError(f"init {init!r}: no such weights file or run folder")
    if init == "auto" and not resuming:
        weights = "imagenet" if config.width in model_lib.IMAGENET_WIDTHS else None

    def build(weights):
        return model_lib.build_ssd(
            num_classes=num_classes,
            input_size=config.input_size,
            width=config.width,
            anchors=anchor_spec,
            weights=weights,
            levels=config.levels,
        )

    try:
        net = build(weights)
    except RuntimeError as error:
        if init != "auto":
            raise TrainingError(str(error)) from None
        echo(f"init auto: no ImageNet weights ({error}); starting from random weights")
        weights = None
        net = build(None)
    if init == "auto" and not resuming:
        init = "imagenet" if weights == "imagenet" else "none (auto: no ImageNet weights)"
    # Keras's MobileNetV2 keeps batch-norm statistics with momentum 0.999: after a few
    # hundred steps they still mostly hold their initial values (or ImageNet's), and the
    # model in inference mode sees other activations than in training. 0.9 follows
    # the data within tens of steps.
    for layer in _all_layers(net):
        if hasattr(layer, "momentum") and "BatchNormalization" in type(layer).__name__:
            layer.momentum = config.bn_momentum
    if init_run is not None:
        _init_from_run(net, init_run, config, echo)
    elif not resuming:
        echo(f"init: {init}")
    return net


def _init_from_run(net, init_run, config, echo):
    """Copies weights from a previous run's best model, layer by layer where shapes match."""
    other = detector.read_config(init_run)
    if float(other["width"]) != float(config.width):
        raise TrainingError(
            f"init run {init_run} has a MobileNetV2 of width {other['width']}, this run "
            f"{config.width}: the backbones differ"
        )
    source = detector.load(init_run, allow_unfinished=True).model
    copied, reset = 0, []
    source_layers = {layer.name: layer for layer in _all_layers(source)}
    for layer in _all_layers(net):
        if not layer.weights or layer.name not in source_layers:
            continue
        theirs = source_layers[layer.name].get_weights()
        mine = layer.get_weights()
        if len(theirs) == len(mine) and all(
            a.shape == b.shape for a, b in zip(theirs, mine, strict=True)
        ):
            layer.set_weights(theirs)
            copied += 1
        else:
            reset.append(layer.name)
    echo(
        f"init: {copied} layers from {init_run}"
        + (f"; {len(reset)} layers re-initialised (other classes or anchors)" if reset else "")
    )


def _all_layers(net):
    for layer in net.layers:
        if hasattr(layer, "layers") and layer.layers:
            yield from layer.layers
        else:
            yield layer


def _check_resume(run_dir, run_config):
    """True when run_dir holds a checkpoint of the same model; refuses another model's."""
    if not (run_dir / CHECKPOINT_DIR).is_dir():
        return False
    try:
        existing = detector.read_config(run_dir)
    except detector.ModelError as error:
        raise TrainingError(f"cannot resume: {error}") from None
    differences = detector.config_mismatch(existing, run_config)
    # Anything that changes what the run computes must match; how often it logs,
    # evaluates, saves or stops may change between a run and its resumption.
    free_keys = {
        "log_every",
        "eval_every",
        "checkpoint_every",
        "patience_steps",
        "max_minutes",
        "strategy",
        "init",
    }
    training_keys = sorted(
        (set(run_config["training"]) | set(existing.get("training", {})))
        - free_keys
        - set(detector.MODEL_CONFIG_KEYS)
    )
    for key in training_keys:
        mine = run_config["training"].get(key)
        theirs = existing.get("training", {}).get(key)
        if mine != theirs:
            differences.append(f"{key}: {theirs} != {mine}")
    theirs = [item.get("sha256") for item in existing.get("dataset_fingerprint", [])]
    mine = [item.get("sha256") for item in run_config.get("dataset_fingerprint", [])]
    if theirs != mine:
        differences.append("the dataset's TFRecords changed")
    if differences:
        raise TrainingError(
            f"{run_dir} holds a run of another configuration ({'; '.join(differences)}): "
            "use a new run folder, or the same parameters to resume"
        )
    return True


def _finished_early(run_dir, config):
    """Whether the run in ``run_dir`` has ended for good under ``config``.

    A time-limited run goes on when the limit is raised past the time it has trained
    (or removed): the same command with a larger ``max_minutes`` continues it.
    """
    state = detector.read_state(run_dir)
    status = state.get("status")
    if status == "time_limited":
        trained = _last_elapsed(run_dir / "metrics.csv")
        return bool(config.max_minutes) and trained >= 60 * config.max_minutes
    return status in ("early_stopped", "finished", "nan_stopped")


def _is_chief(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker" and resolver.task_id == 0
    )


def _task_id():
    return json.loads(os.environ.get("TF_CONFIG", "{}") or "{}").get("task", {}).get("index", 0)


def _forward_function(net):
    """The network's inference pass as one ``tf.function`` per network (traced once, not
    at every evaluation: TensorFlow warns about retracing otherwise)."""
    forward = _FORWARD_FUNCTIONS.get(net)
    if forward is None:
        tf = model_lib._import_tensorflow()
        network = weakref.ref(net)  # a strong one here would keep the dict entry forever
        forward = tf.function(
            lambda images: network()(images, training=False), reduce_retracing=True
        )
        _FORWARD_FUNCTIONS[net] = forward
    return forward


_FORWARD_FUNCTIONS = weakref.WeakKeyDictionary()


def _metric_columns(labels):
    return [f"{metric}/{label}" for label in labels for metric in PER_CLASS_METRICS]


def _evaluation_row(evaluation, labels):
    metrics = evaluation["metrics"]
    row = {
        "val_loss": evaluation["loss"],
        "val_class_loss": evaluation["class_loss"],
        "val_box_loss": evaluation["box_loss"],
        "mAP": metrics.get("AP"),
        "AP50": metrics.get("AP50"),
        "AP75": metrics.get("AP75"),
        "precision": metrics.get("precision"),
        "recall": metrics.get("recall"),
        "F1": metrics.get("F1"),
    }
    for label in labels:
        per_class = metrics.get("per_class", {}).get(label, {})
        for metric in PER_CLASS_METRICS:
            row[f"{metric}/{label}"] = per_class.get(metric)
    return row


def _append_metrics(path, row, evaluation_columns):
    columns = list(BASE_COLUMNS) + evaluation_columns
    new = not path.is_file() or path.stat().st_size == 0
    with open(path, "a", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow({key: _csv_value(row.get(key)) for key in columns})
        handle.flush()
        os.fsync(handle.fileno())


def _csv_value(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def _truncate_metrics(path, step):
    """Drops the rows after ``step`` (written after the checkpoint a resume starts from)."""
    if not path.is_file():
        return
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    if not lines:
        return
    kept = [lines[0]]
    for line in lines[1:]:
        if not line.endswith("\n"):
            break  # a row cut by a kill
        try:
            row_step = int(float(line.split(",", 1)[0]))
        except ValueError:
            break
        if row_step <= step:
            kept.append(line)
    if kept != lines:
        atomic_write_text(path, "".join(kept))


def _last_elapsed(path):
    if not path.is_file():
        return 0.0
    try:
        rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
        return float(rows[-1]["elapsed_s"]) if rows else 0.0
    except (ValueError, KeyError, OSError):
        return 0.0


def _format_row(row):
    parts = [f"step {row['step']}"]
    if row.get("loss") is not None:
        parts.append(
            f"loss {row['loss']:.4f} (class {row['class_loss']:.4f}, box {row['box_loss']:.4f})"
        )
    if row.get("val_loss") is not None:
        parts.append(f"val loss {row['val_loss']:.4f}")
    if row.get("mAP") is not None:
        parts.append(f"mAP {row['mAP']:.4f} AP50 {row['AP50']:.4f}")
    parts.append(f"lr {row['lr']:.2e}")
    return "; ".join(parts)


def _save_keras(net, path):
    """Saves the model as ``.keras`` under a temporary name, then renames it into place."""
    path = Path(path)
    temporary = path.with_name(f".{path.stem}.tmp-{os.getpid()}.keras")
    try:
        net.save(temporary)
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def _dataset_fingerprint(dataset_dir):
    files = sorted((Path(dataset_dir) / "tfrecords").glob("*.tfrecord"))
    return [metadata.fingerprint(path) for path in files]


def _merge_counts(first, second):
    merged = dict(first)
    for key, value in second.items():
        merged[key] = merged.get(key, 0) + value
    return merged


def _ground_truth_entry(data, index, labels):
    found = data.classes[index] > 0
    width, height = data.sizes[index]
    boxes = data.boxes[index][found] * np.array([width, height, width, height], np.float32)
    return {
        "image": data.names[index],
        "width": int(width),
        "height": int(height),
        "boxes": boxes,
        "labels": [labels[value - 1] for value in data.classes[index][found]],
        "ignore": [bool(value) for value in data.difficult[index][found]],
    }


def config_values(parameters):
    """The training parameters among a stage's notebook parameters (same names as TrainConfig).

    Args:
        parameters: a dict of ``06_train`` notebook parameters

    Returns:
        the dict of those that are :class:`TrainConfig` fields (``levels`` as a tuple
        from a comma-separated string)
    """
    fields = {item.name for item in dataclasses.fields(TrainConfig)}
    values = {key: value for key, value in parameters.items() if key in fields}
    if isinstance(values.get("levels"), str):
        values["levels"] = tuple(int(part) for part in values["levels"].split(",") if part.strip())
    return values


def measure_memory(batch_sizes, config=None, steps=2, timeout=300):
    """Peak memory of training at several batch sizes, each measured in a fresh process.

    Each probe builds the model of ``config`` (random weights), runs ``steps`` training
    steps on a random batch and reports the process's peak resident memory
    (``ru_maxrss``); the same probe with no step gives the baseline (model, TensorFlow).

    Args:
        batch_sizes: batch sizes to measure
        config: a :class:`TrainConfig` (input size, width, levels); default: the defaults
        steps: training steps per probe
        timeout: seconds per probe

    Returns:
        a list of dicts ``batch_size``, ``peak_mib``, ``status`` (``ok``, ``out of memory``
        or the error's last line); the first row is the baseline with ``batch_size`` 0
    """
    import subprocess
    import sys

    config = config or TrainConfig()
    rows = []
    for batch_size in [0, *batch_sizes]:
        argument = json.dumps(
            {
                "input_size": config.input_size,
                "width": config.width,
                "levels": list(config.levels),
                "batch_size": batch_size,
                "steps": steps,
            }
        )
        command = [
            sys.executable,
            "-c",
            f"from platelab.train import _memory_probe; _memory_probe({argument!r})",
        ]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            rows.append({"batch_size": batch_size, "peak_mib": None, "status": "timed out"})
            continue
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode == 0 and lines:
            result = json.loads(lines[-1])
            rows.append({"batch_size": batch_size, "peak_mib": result["peak_mib"], "status": "ok"})
        else:
            text = (done.stderr or done.stdout).strip().splitlines()
            reason = text[-1] if text else f"exit status {done.returncode}"
            if "ResourceExhausted" in (done.stderr or "") or done.returncode in (-9, 137):
                reason = "out of memory"
            rows.append({"batch_size": batch_size, "peak_mib": None, "status": reason})
    return rows


def measure_input_throughput(data, config, steps=20, rounds=3, echo=None):
    """Does the ``tf.data`` pipeline keep the train step fed? Images/s with and without it.

    Builds the model of ``config`` (random weights) and the real training pipeline, then
    times, alternating round by round in this one process (machines are shared and
    noisy: both see the same conditions):

    * **bare**: the train step on ``steps`` batches taken from the pipeline beforehand
      and held as tensors (no input work at all);
    * **real**: the same train step fed by the pipeline (index draw, augmentation,
      target encoding, batching, prefetch) as :func:`train` runs it.

    Args:
        data: the training :class:`SplitData`, images at :func:`cache_size_for` ``config``
        config: a :class:`TrainConfig` (input size, width, levels, batch size, augment)
        steps: timed steps per round
        rounds: alternating rounds; the best round of each is compared
        echo: called with one line per round (e.g. ``print``)

    Returns:
        a dict: ``bare_images_per_s`` and ``real_images_per_s`` (best rounds), ``ratio``
        (real / bare; the goal is at least :data:`THROUGHPUT_GOAL`), ``rounds`` (each
        round's two figures), ``steps``, ``batch_size``

    Raises:
        TrainingError: the split is empty, or ``steps`` or ``rounds`` is below 1
    """
    if len(data) == 0:
        raise TrainingError("the training split is empty: nothing to measure")
    if steps < 1 or rounds < 1:
        raise TrainingError(f"steps and rounds must be at least 1, got {steps} and {rounds}")
    import time

    labels = data.labels_list or ("vehicle", "license_plate")
    spec = model_lib.anchors_from_boxes(
        anchor_boxes(data), config.input_size, config.levels, config.anchors_per_level
    )
    anchors = model_lib.generate_anchors(spec, config.input_size)
    step = _probe_train_step(config, spec, len(labels))
    iterator = iter(make_train_dataset(data, anchors, config, 0, config.batch_size))
    cached = [next(iterator) for _ in range(steps)]
    for batch in cached[: min(3, steps)]:  # trace and warm up
        step(batch)

    def timed(batches):
        begin = time.perf_counter()
        for batch in batches:
            float(step(batch)[0])
        return time.perf_counter() - begin

    images = steps * config.batch_size
    measured = []
    for index in range(rounds):
        bare = images / timed(cached)
        real = images / timed(next(iterator) for _ in range(steps))
        measured.append({"bare_images_per_s": bare, "real_images_per_s": real})
        if echo:
            echo(f"round {index + 1}: bare {bare:6.1f} images/s, real {real:6.1f} images/s")
    best_bare = max(row["bare_images_per_s"] for row in measured)
    best_real = max(row["real_images_per_s"] for row in measured)
    return {
        "bare_images_per_s": best_bare,
        "real_images_per_s": best_real,
        "ratio": best_real / best_bare,
        "rounds": measured,
        "steps": steps,
        "batch_size": config.batch_size,
    }


def _memory_probe(argument):
    """Runs in a child process for :func:`measure_memory`; prints one JSON line."""
    import resource

    values = json.loads(argument)
    tf = model_lib._import_tensorflow()
    config = TrainConfig(
        input_size=values["input_size"], width=values["width"], levels=tuple(values["levels"])
    )
    spec = model_lib.default_anchor_spec(config.input_size, config.levels)
    anchors = model_lib.generate_anchors(spec, config.input_size)
    batch_size = values["batch_size"]
    if not batch_size:  # the baseline: the model alone
        model_lib.build_ssd(
            2, config.input_size, config.width, spec, weights=None, levels=config.levels
        )
    else:
        step = _probe_train_step(config, spec, 2)
        rng = np.random.default_rng(0)
        images = tf.constant(
            rng.uniform(0, 255, (batch_size, config.input_size, config.input_size, 3)), tf.float32
        )
        class_targets = tf.constant(rng.integers(0, 3, (batch_size, len(anchors))), tf.int32)
        box_targets = tf.constant(rng.normal(0, 1, (batch_size, len(anchors), 4)), tf.float32)
        for _ in range(values["steps"]):
            float(step((images, class_targets, box_targets))[0])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_mib": round(peak, 1)}))


def _probe_train_step(config, anchor_spec, num_classes):
    """A train step on a fresh model of ``config`` (random weights), for measurements."""
    tf = model_lib._import_tensorflow()
    keras = model_lib._import_keras()
    net = model_lib.build_ssd(
        num_classes, config.input_size, config.width, anchor_spec, weights=None,
        levels=config.levels,
    )  # fmt: skip
    optimizer = keras.optimizers.AdamW(1e-4)
    optimizer.build(net.trainable_variables)
    return make_train_step(net, optimizer, tf.distribute.get_strategy(), config)


def _chroma_matrix(saturation, hue):
    """A ``(3, 3)`` matrix for RGB rows: chroma scaled by ``saturation``, hue turned by ``hue``.

    In YIQ, luma stays and the (I, Q) chroma plane is scaled and rotated (``hue`` is a
    fraction of the full circle, as in ``tf.image.adjust_hue``). One matrix product
    instead of two RGB-HSV round trips (about 0.3 ms instead of 4.8 ms at 320 px).
    """
    tf = model_lib._import_tensorflow()
    saturation = tf.cast(saturation, tf.float32)
    angle = -2.0 * np.pi * tf.cast(hue, tf.float32)  # YIQ turns the other way round
    cos, sin = saturation * tf.cos(angle), saturation * tf.sin(angle)
    one, zero = tf.ones([]), tf.zeros([])
    chroma = tf.stack([[one, zero, zero], [zero, cos, -sin], [zero, sin, cos]])
    # Rows of RGB values: rgb @ to_yiq.T @ chroma.T @ inv(to_yiq).T
    return tf.transpose(_YIQ_TO_RGB @ chroma @ _RGB_TO_YIQ)


_RGB_TO_YIQ = np.array(
    [
        [0.299, 0.587, 0.114],
        [0.595716, -0.274453, -0.321263],
        [0.211456, -0.522591, 0.311135],
    ],
    np.float32,
)
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ).astype(np.float32)
