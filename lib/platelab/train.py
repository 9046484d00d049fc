"""Stage 06 (train): transfer-learns the SSDLite MobileNetV2 detector on a merged dataset.

:func:`train` reads the TFRecords written by stage 05 (``tfrecords/{train,val}.tfrecord``
in the merged dataset folder), derives anchors from the training boxes, builds the
model (:func:`platelab.model.build_ssd`), and trains it with a custom loop under a
``tf.distribute`` strategy. The run folder::

    config.json        model configuration and every training parameter
    labels.txt         the class labels, one per line, in class-id order (1-based)
    checkpoints/       tf.train.Checkpoint: model, optimizer (its step drives the schedule),
                       step, the kept step and its validation mAP and ``keep`` metric
    best.keras         the kept model (keras.models.load_model): by default the best
                       validation mAP; ``keep`` ``ap50`` the best validation AP50,
                       ``last`` the last evaluation
    last.keras         the model at the last step
    metrics.csv        loss parts every ``log_every`` steps; validation loss and COCO
                       metrics every ``eval_every`` steps (see :data:`METRICS_COLUMNS`)
    tensorboard/       the same scalars for TensorBoard
    state.json         status (running, finished, early_stopped, nan_stopped), step,
                       kept (best) step, its validation mAP, ``keep``
    metrics.json       the final figures (for the report index)

**Resume.** Rerunning the same command on the same run folder continues from the last
checkpoint: the model, the optimizer (and with it the learning-rate schedule), the step
and the best mAP come back from the checkpoint, and the data order and augmentation are
functions of (seed, step) alone (:func:`batch_indices`, stateless random ops), so a
resumed run sees exactly the batches the uninterrupted run would have seen.

**Geometry.** Frames are inferred whole, letterboxed (aspect kept) into an input whose
long side is ``infer_size`` (:class:`platelab.model.InputGeometry`). Training sees the
same pixels: crops of ``input_size`` x ``input_size`` cut from the letterboxed frames,
at scales jittered around 1.0 (and zoomed out now and then, so that close-ups still
teach small objects), most of them centred on an object. ``crop_training`` False
trains on the whole letterboxed frame instead; ``infer_size`` 0 gives a square
input that squashes the frame.

**Loss.** :class:`platelab.head.DetectionHead`'s: by default ATSS assignment, focal
cross-entropy over every anchor and a GIoU loss on the decoded boxes (SSD's IoU
matching, hard-negative mining and Huber loss remain as options). Anchors on a
*difficult* box (plates too small to read) are ignored, neither positive nor negative.

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

from platelab import config as config_lib
from platelab import detector, metadata
from platelab import head as head_lib
from platelab import model as model_lib
from platelab import starter as starter_lib
from platelab import tta as tta_lib
from platelab.atomic import atomic_write_json, atomic_write_text
from platelab.exceptions import PlatelabError
from platelab.tfimport import import_keras, import_tensorflow

logger = logging.getLogger(__name__)

REPLAY_DIR = "replay-starter"
"""``replay: starter``'s corpus folder, beside the run folder (shared by a workspace's runs)."""
REPLAY_STARTER_FRAMES = 300
"""``replay: starter`` with ``replay_frames: 0`` mixes in as many frames as the dataset's
own train split has, at most this many (each is rendered: 0.4-0.65 s of one core)."""
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


class TrainingError(PlatelabError, RuntimeError):
    """Training cannot start or go on (one-line message naming the cause)."""


class RunMismatchError(TrainingError):
    """The run folder holds a run of another configuration or dataset: it cannot be resumed."""


EARLIER_BEHAVIOUR = {"min_visible": 0.0, "keep": "map", "infer_margin": 0}
"""Training keys whose default changed when they were added: the value that reproduces
runs made before them (a key missing from such a run's ``config.json``). Every other
newer key defaults to the earlier behaviour."""


FINE_TUNE_LEARNING_RATE = 3e-4
"""Peak learning rate from a detector (the starter; ``bench_time_to_accuracy``: 0.0003
kept the starter's held-out AP50 best of 0.0003, 0.001 and 0.006)."""

RANDOM_INIT_LEARNING_RATE = 0.006
"""Peak learning rate from random weights or an ImageNet backbone
(``bench_time_to_accuracy``'s ``lr`` row: 0.340 / 0.256 held-out against 0.239 / 0.043
at 0.002)."""


def default_learning_rate(init):
    """The peak learning rate an ``init`` trains at unless one is given.

    Args:
        init: ``TrainConfig.init``

    Returns:
        :data:`FINE_TUNE_LEARNING_RATE` where training starts from a detector (the
        starter, a starter or run folder), else :data:`RANDOM_INIT_LEARNING_RATE`
    """
    from platelab.goals import detection_pretrained

    if detection_pretrained(init):
        return FINE_TUNE_LEARNING_RATE
    return RANDOM_INIT_LEARNING_RATE


def earlier_values(training):
    """The values of the keys a stored run's ``training`` dict lacks, as it was trained.

    Args:
        training: the ``training`` dict of a run's ``config.json``

    Returns:
        ``{key: value}`` for every :class:`TrainConfig` field missing from ``training``
    """
    values = {item.name: item.default for item in dataclasses.fields(TrainConfig)}
    values.update(EARLIER_BEHAVIOUR)
    return {key: value for key, value in values.items() if key not in training}


@dataclasses.dataclass
class TrainConfig:
    """Every training parameter (stored in the run's ``config.json``).

    Attributes:
        input_size: side of the square training crops in pixels (a multiple of 64); with
            ``infer_size`` 0, the side of the square (squashed) model input
        infer_size: long side of the inference input in pixels (a multiple of 64):
            frames are letterboxed into it whole; 0 for a square input
        infer_margin: padding in network pixels around the letterboxed frame (twice it
            a multiple of the largest stride; the input grows by ``2 * infer_margin``
            each way): training crops see a frame's edge against padding, and so does
            inference then (:class:`platelab.model.InputGeometry`); 0 with
            ``infer_size`` 0
        infer_max_scale: the largest letterbox scale at inference (network pixels per
            image pixel; 0 for none): with 1.0 an image smaller than the input is
            placed at its own size, not enlarged (``max_scale`` of
            :class:`platelab.model.InputGeometry`). Only inference uses it, like
            ``tta``: training and its validation see the images as before, and a run
            resumes with another value. 0 with ``infer_size`` 0
        crop_training: train on ``input_size`` crops of the letterboxed frames (False:
            on the whole letterboxed frame)
        scale_min: smallest scale of a training crop (network pixels per frame pixel at
            the inference geometry)
        scale_max: largest such scale
        zoom_out: share of crops drawn at a scale from ``zoom_out_min`` to
            ``scale_min``: the frame shrunk onto a larger canvas
        zoom_out_min: smallest zoom-out scale
        object_crops: share of crops centred on an object (the rest anywhere)
        mosaic: share of training images made of four quarter-size crops of four
            images (2x2), each drawn as a crop is: four times the objects in the pixels
            of one image
        min_object_px: boxes fewer pixels high than this at the network input (after
            the crop's scaling) are ignored in training
        min_visible: boxes a training crop cuts to less than this share of their area
            are ignored in training (0: every cut box is a positive, as before)
        anchors: ``generic`` (every scale on every level,
            :func:`platelab.model.generic_anchor_spec`) or ``fit`` (k-means on the
            training boxes)
        assigner: ``atss`` or ``iou`` (see :class:`platelab.head.HeadConfig`)
        class_loss: ``focal`` or ``ohem``
        box_loss: ``giou`` or ``huber``
        ema: decay of an exponential moving average of the weights used for evaluation
            and the saved models (0: none)
        width: MobileNetV2 width multiplier
        levels: feature-level strides (8 is the small-plate level)
        anchors_per_level: anchor shapes per level (``anchors: fit``)
        init: ``starter`` (the shipped starter, :mod:`platelab.starter`), ``imagenet``,
            ``auto`` (ImageNet where the weights can be had, else random), ``none``, a
            MobileNetV2 weights file, a starter folder, or a previous run folder
        batch_size: images per step (over all replicas)
        steps: training steps at most
        learning_rate: peak learning rate (after warm-up), cosine decay to 0 at ``steps``
            or at ``max_minutes``, whichever comes first; 0 (the default): by ``init``
            (:func:`default_learning_rate`: 0.0003 fine-tunes a detector such as the
            starter, 0.006 suits random weights or an ImageNet backbone)
        warmup_steps: linear learning-rate warm-up
        freeze_steps: steps with the backbone frozen (then it trains too)
        weight_decay: AdamW weight decay
        log_every: steps between training-loss rows in metrics.csv
        eval_every: steps between validation rows (loss and COCO metrics)
        checkpoint_every: steps between checkpoints (also at every evaluation)
        patience_steps: early stop when the ``keep`` metric has not improved for this
            many steps (0: never)
        keep: which evaluated weights ``best.keras`` keeps: ``map`` (the best validation
            COCO mAP), ``ap50`` (the best validation AP50, the mean over classes: the
            metric the held-out goals use) or ``last`` (the last evaluation, as the TF
            Object Detection API exports its last checkpoint). A small validation split
            makes the best of a noisy metric an early step by chance; ``last`` suits
            fine-tuning with a learning rate that decays to 0
        seed: seed of initialisation, data order and augmentation
        augment: scale-and-crop, flips, colour, blur and JPEG noise on training images
        neg_pos_ratio: hard negatives per positive anchor
        match_iou: IoU from which an anchor is positive for a box
        score_threshold: operating threshold (precision/recall, and the deployed default)
        nms_iou: non-maximum suppression IoU
        max_detections: detections per image
        tta: test-time augmentation of the run's detector (:mod:`platelab.tta`,
            stored in ``config.json`` with the thresholds): ``none``, or ``flip`` (each
            image also detected mirrored, the two fused; a second forward pass). Only
            inference uses it: validation during training (and so ``keep``) scores one
            pass, and a run resumes with another ``tta``
        strategy: ``auto`` (MultiWorkerMirrored with TF_CONFIG, Mirrored with several
            GPUs, else one device), ``default``, ``mirrored`` or ``multi_worker``
        freeze_bn: keep every batch-norm layer in inference mode (its statistics and
            scale and offset as the init left them), as the TF Object Detection API's
            ``freeze_batchnorm`` does for fine-tuning with small batches
        bn_momentum: momentum of every batch-norm layer's moving statistics (Keras's
            MobileNetV2 uses 0.999, too slow for short fine-tuning runs)
        max_minutes: stop (evaluated and saved, status ``time_limited``) once training
            has run this long in all; 0 for no limit. Keeps a profile within its time
            budget on a slow machine, at the price of a machine-dependent last step.
        replay: a merged dataset folder (stage 05's layout, e.g. a pretraining corpus)
            whose train images are mixed into the training images, as rehearsal: a
            fine-tune on a few scenes then keeps seeing the varied data its init learnt
            from; ``starter``: a corpus drawn like the starter's own, with the
            vantage points its provenance records (the starter ``init`` names, else
            the shipped one; :func:`platelab.pretrain.replay_corpus`), rendered once into
            :data:`REPLAY_DIR` beside the run folder; '' for none. Validation stays on
            the dataset's own val split.
        replay_frames: how many of the replay set's train images are mixed in, drawn
            with ``seed``; 0: all of a folder's, and for ``starter`` as many as the
            dataset's own train images (at most :data:`REPLAY_STARTER_FRAMES`), an
            even mix
        negatives: copies of each of the dataset's own train images with synthetic
            hard negatives pasted in (:func:`platelab.synth.negatives.paste`: make and
            model lettering, stickers and company lettering, lit lamps, time stamps,
            clear of every box and never annotated), mixed into the training images;
            drawn with ``seed``. For fine-tunes on real close-ups whose only writing
            is the plate (openalpr-br), which otherwise learn that any writing is a
            plate; 0 for none
        plate_swaps: copies of each of the dataset's own train images that hold a
            ``license_plate`` box, with a synthetic US or EU plate drawn over each
            plate (:func:`platelab.synth.swaps.swap`), its box the new plate's; drawn
            with ``seed``. For fine-tunes on close-ups of one country's plates, which
            otherwise know other countries' plates only at the corpus' small sizes
            (on openalpr-br it lifts real EU close-ups and costs real US traffic-camera
            frames: README); 0 for none
    """

    input_size: int = 192
    infer_size: int = 960
    infer_margin: int = 32
    infer_max_scale: float = 0.0
    crop_training: bool = True
    scale_min: float = 0.6
    scale_max: float = 1.6
    zoom_out: float = 0.2
    zoom_out_min: float = 0.25
    object_crops: float = 0.8
    mosaic: float = 0.0
    min_object_px: float = 6.0
    min_visible: float = 0.5
    width: float = 0.5
    levels: tuple = (8, 16, 32, 64)
    anchors: str = "generic"
    anchors_per_level: int = 3
    assigner: str = "atss"
    class_loss: str = "focal"
    box_loss: str = "giou"
    ema: float = 0.0
    init: str = "starter"
    batch_size: int = 16
    steps: int = 2000
    learning_rate: float = 0.0
    warmup_steps: int = 100
    freeze_steps: int = 0
    weight_decay: float = 1e-4
    log_every: int = 200
    eval_every: int = 500
    checkpoint_every: int = 500
    patience_steps: int = 0
    keep: str = "map"
    seed: int = 0
    augment: bool = True
    neg_pos_ratio: float = 3.0
    match_iou: float = 0.5
    score_threshold: float = 0.5
    nms_iou: float = 0.5
    max_detections: int = 100
    tta: str = "none"
    strategy: str = "auto"
    max_minutes: float = 0.0
    bn_momentum: float = 0.9
    freeze_bn: bool = False
    replay: str = ""
    replay_frames: int = 0
    negatives: int = 0
    plate_swaps: int = 0

    @classmethod
    def from_dict(cls, values):
        """Builds a config from a dict; unknown keys are an error naming them."""
        config_lib.check_fields(cls, values, TrainingError, "training")
        config = cls(**values)
        config.levels = tuple(int(value) for value in config.levels)
        config.validate()
        return config

    def validate(self):
        """Raises TrainingError for a value out of range.

        A ``learning_rate`` of 0 becomes :func:`default_learning_rate`'s for ``init``
        first, so that the run's ``config.json`` holds the rate it trained at.
        """
        if self.learning_rate == 0:
            self.learning_rate = default_learning_rate(self.init)
        largest = max(self.levels) if self.levels else 64
        multiple = largest if self.infer_size else 32
        if self.input_size % multiple or self.input_size < 64:
            raise TrainingError(
                f"input_size must be a multiple of {multiple} from 64, got {self.input_size}"
            )
        if self.infer_size:
            try:
                model_lib.check_input_side(self.infer_size, largest)
            except ValueError as error:
                raise TrainingError(f"infer_size: {error}") from None
        if self.infer_margin < 0 or (2 * self.infer_margin) % largest:
            raise TrainingError(
                f"infer_margin must be 0 or a multiple of {largest // 2} (half the largest "
                f"stride), got {self.infer_margin}"
            )
        self.infer_max_scale = float(self.infer_max_scale or 0.0)  # None reads as none
        if self.infer_max_scale < 0:
            raise TrainingError(
                f"infer_max_scale must be 0 (none) or above, got {self.infer_max_scale:g}"
            )
        if not self.infer_size:
            self.infer_margin = 0  # a square, squashed input has no letterbox to pad
            self.infer_max_scale = 0.0
        if not 0 < self.scale_min <= self.scale_max:
            raise TrainingError(
                f"scale_min and scale_max must satisfy 0 < min <= max, got "
                f"{self.scale_min}, {self.scale_max}"
            )
        shares = (self.zoom_out, self.object_crops, self.mosaic, self.min_visible)
        if not all(0 <= value <= 1 for value in shares):
            raise TrainingError(
                "zoom_out, object_crops, mosaic and min_visible are shares from 0 to 1"
            )
        if self.mosaic and self.input_size % 2:
            raise TrainingError(f"mosaic needs an even input_size, got {self.input_size}")
        if self.anchors not in ("generic", "fit"):
            raise TrainingError(f"anchors must be generic or fit, got {self.anchors!r}")
        if not 0 <= self.ema < 1:
            raise TrainingError(f"ema must be from 0 to below 1, got {self.ema}")
        if int(self.negatives) != self.negatives or self.negatives < 0:
            raise TrainingError(f"negatives must be a whole number from 0, got {self.negatives}")
        if int(self.plate_swaps) != self.plate_swaps or self.plate_swaps < 0:
            raise TrainingError(
                f"plate_swaps must be a whole number from 0, got {self.plate_swaps}"
            )
        try:
            self.head_config()
        except ValueError as error:
            raise TrainingError(str(error)) from None
        for name in ("batch_size", "steps", "log_every", "eval_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise TrainingError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.learning_rate > 0:
            raise TrainingError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.strategy not in ("auto", "default", "mirrored", "multi_worker"):
            raise TrainingError(f"unknown strategy {self.strategy!r}")
        try:
            self.tta = tta_lib.check_mode(self.tta)
        except ValueError as error:
            raise TrainingError(str(error)) from None
        if self.keep not in detector.KEEP_METRICS:
            raise TrainingError(
                f"keep must be one of {', '.join(detector.KEEP_METRICS)}, got {self.keep!r}"
            )
        if self.keep == "last" and self.patience_steps:
            raise TrainingError(
                "patience_steps needs keep map or ap50: with keep last every evaluation is "
                "the best, so training would never stop early"
            )

    def head_config(self):
        """The :class:`platelab.head.HeadConfig` of these parameters."""
        return head_lib.HeadConfig(
            assigner=self.assigner,
            match_iou=self.match_iou,
            class_loss=self.class_loss,
            neg_pos_ratio=self.neg_pos_ratio,
            box_loss=self.box_loss,
        )

    def geometry(self, frame_width, frame_height):
        """The :class:`platelab.model.InputGeometry` training prepares frames of this
        size with (the inference one less ``infer_max_scale``:
        :meth:`inference_geometry`)."""
        if not self.infer_size:
            return model_lib.InputGeometry(self.input_size, self.input_size, "squash")
        return model_lib.InputGeometry.for_frames(
            frame_width, frame_height, self.infer_size, max(self.levels), self.infer_margin
        )

    def inference_geometry(self, frame_width, frame_height):
        """The run's detector's :class:`platelab.model.InputGeometry` for frames of this
        size: :meth:`geometry` with the scale capped at ``infer_max_scale``."""
        geometry = self.geometry(frame_width, frame_height)
        return geometry.capped(self.infer_max_scale or None) if self.infer_size else geometry

    def train_shape(self, geometry):
        """``(height, width)`` of the training images: the crop, or the whole input."""
        if self.crop_training and self.infer_size:
            return (self.input_size, self.input_size)
        return geometry.shape


@dataclasses.dataclass
class SplitData:
    """One split in memory: images at the network's input geometry, boxes padded.

    Attributes:
        images: ``(N, H, W, 3)`` uint8 RGB, each image as :attr:`geometry` prepares it
            (letterboxed, or squashed for a square-input run)
        boxes: ``(N, G, 4)`` float32 ``[xmin, ymin, xmax, ymax]`` fractions of the
            network input (padding zeros)
        classes: ``(N, G)`` int32 class ids, 1-based; 0 padding
        difficult: ``(N, G)`` bool
        names: image names (``image/source_id``)
        sizes: ``(N, 2)`` original width and height
        info: per image dict of vantage, lighting, group
        skipped: one line per record that could not be used
        unknown_labels: label -> count of boxes with a label the model does not know
        geometry: the :class:`platelab.model.InputGeometry` the images were prepared with
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
    geometry: object = None

    def __len__(self):
        return len(self.names)

    def ground_truth(self):
        """The split's boxes in the evaluation engine's format (pixels of the original image)."""
        return [
            _ground_truth_entry(self, index, self.labels_list) for index in range(len(self.names))
        ]

    def heights_px(self):
        """Box heights in network-input pixels per class id: ``{class_id: (M,) array}``
        (difficult boxes included; see :func:`object_heights`)."""
        heights = (self.boxes[..., 3] - self.boxes[..., 1]) * self.images.shape[1]
        return {
            int(class_id): heights[self.classes == class_id]
            for class_id in np.unique(self.classes[self.classes > 0])
        }

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


def load_split(dataset_dir, split, labels, size, progress=False, workers=None, pick=None, seed=0):
    """Reads one split's TFRecord into memory, images prepared for the network.

    A record whose image cannot be decoded is skipped and listed; a box whose label is
    not in ``labels`` is dropped and counted.

    Args:
        dataset_dir: a merged dataset folder (stage 05)
        split: ``train``, ``val`` or ``test``
        labels: the model's labels
        size: an :class:`platelab.model.InputGeometry`, or the side of a square
            (the whole image squashed into it)
        progress: show a progress bar
        workers: decoding threads
        pick: read only this many records, drawn with ``seed`` (None: all)
        seed: the draw's seed

    Returns:
        a :class:`SplitData`

    Raises:
        TrainingError: the split's file is missing or unreadable
    """
    tf = import_tensorflow()
    import cv2
    from tqdm.auto import tqdm

    path = Path(dataset_dir) / "tfrecords" / SPLIT_FILES[split]
    if not path.is_file():
        raise TrainingError(f"{path}: no such file (run stage 05 merge with write_tfrecords)")
    try:
        raw_records = [record.numpy() for record in tf.data.TFRecordDataset(str(path))]
    except tf.errors.OpError as error:
        raise TrainingError(f"{path}: not a readable TFRecord file ({error.message})") from None
    if pick is not None and int(pick) < len(raw_records):
        chosen = np.random.default_rng([int(seed), 29]).choice(len(raw_records), int(pick), False)
        raw_records = [raw_records[index] for index in np.sort(chosen)]
    label_ids = {label: index + 1 for index, label in enumerate(labels)}
    geometry = (
        size
        if isinstance(size, model_lib.InputGeometry)
        else model_lib.InputGeometry(size, size, "squash")
    )

    def parse(raw):
        return _parse_record(tf, cv2, raw, path, geometry)

    items, skipped, unknown = [], [], {}
    # One array filled in place: a list of images then np.stack would hold them twice.
    images = np.empty((len(raw_records), geometry.height, geometry.width, 3), np.uint8)
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
            images[len(items)] = item.pop("image")
            items.append(item)
    del raw_records
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
        images=images[:count] if count < len(images) else images,
        boxes=boxes,
        classes=classes,
        difficult=difficult,
        names=[item["name"] for item in items],
        sizes=np.asarray([item["size"] for item in items], np.int64).reshape(-1, 2),
        info=[item["info"] for item in items],
        skipped=skipped,
        unknown_labels=unknown,
        geometry=geometry,
    )
    data.labels_list = tuple(labels)
    return data


def _parse_record(tf, cv2, raw, path, geometry):
    """One TFRecord example as a split item (image at ``geometry``), or ``(None, problem)``."""
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
    resized = geometry.prepare(array[:, :, ::-1]).astype(np.uint8)
    boxes = np.stack(
        [values(f"image/object/bbox/{key}") for key in ("xmin", "ymin", "xmax", "ymax")],
        axis=-1,
    ).reshape(-1, 4)
    boxes = geometry.to_network(boxes * np.float32([width, height] * 2), width, height)
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


def join_splits(first, second):
    """Two :class:`SplitData` of one geometry as one (boxes padded to the larger count).

    Returns:
        a :class:`SplitData`: ``first``'s images, then ``second``'s
    """
    if first.geometry.shape != second.geometry.shape:
        raise TrainingError(
            f"cannot join splits of {first.geometry} and {second.geometry} (other geometries)"
        )
    most = max(first.boxes.shape[1], second.boxes.shape[1])

    def padded(array, fill_shape):
        extra = most - array.shape[1]
        if not extra:
            return array
        return np.concatenate([array, np.zeros((len(array), extra, *fill_shape), array.dtype)], 1)

    data = SplitData(
        images=np.concatenate([first.images, second.images]),
        boxes=np.concatenate([padded(first.boxes, (4,)), padded(second.boxes, (4,))]),
        classes=np.concatenate([padded(first.classes, ()), padded(second.classes, ())]),
        difficult=np.concatenate([padded(first.difficult, ()), padded(second.difficult, ())]),
        names=list(first.names) + list(second.names),
        sizes=np.concatenate([first.sizes, second.sizes]),
        info=list(first.info) + list(second.info),
        skipped=list(first.skipped) + list(second.skipped),
        unknown_labels=_merge_counts(first.unknown_labels, second.unknown_labels),
        geometry=first.geometry,
    )
    data.labels_list = getattr(first, "labels_list", None)
    return data


NEGATIVES_STREAM = 7300
"""Mixed with the run's seed into the generator of :func:`with_negatives`."""


def with_negatives(data, copies, seed, progress=False):
    """Copies of a split's images with synthetic hard negatives pasted in.

    Each copy gets :func:`platelab.synth.negatives.paste`'s distractors inside the
    image's own part of the network input (not the letterbox padding), clear of every
    box of the image; the boxes, classes and difficult flags are the original's.

    Args:
        data: a :class:`SplitData`
        copies: copies of each image
        seed: the run's seed (the generator is ``[seed, NEGATIVES_STREAM]``)
        progress: show a progress bar

    Returns:
        a :class:`SplitData` of ``copies * len(data)`` images, named ``NAME~negN``
    """
    from tqdm.auto import tqdm

    from platelab.synth import negatives

    rng = np.random.default_rng([int(seed), NEGATIVES_STREAM])
    order = np.tile(np.arange(len(data)), int(copies))
    images = data.images[order]  # fancy indexing: a new array, pasted into in place
    scale, corner = _content_pixels(data.geometry, images)
    for index in tqdm(range(len(order)), desc="negatives", disable=not progress):
        source = order[index]
        real = data.classes[source] > 0
        content = data.geometry.content(images[index], *data.sizes[source])
        negatives.paste(rng, content, data.boxes[source][real] * scale - corner)
    return _copies(data, order, images, data.boxes[order], "neg", len(data))


def _content_pixels(geometry, images):
    """``(scale, corner)``, float32 ``(4,)`` each: a box in fractions of the network input
    times ``scale``, less ``corner``, is in pixels of the image's own part of it
    (:meth:`platelab.model.InputGeometry.content`, the letterbox padding cut off)."""
    height, width = images.shape[1:3]
    offset = geometry.margin if geometry.mode == "letterbox" else 0
    return (
        np.array([width, height, width, height], np.float32),
        np.array([offset] * 4, np.float32),
    )


def _copies(data, order, images, boxes, tag, per_round):
    """A :class:`SplitData` of ``data``'s images in ``order`` (their drawn-into ``images``
    and ``boxes``; classes, flags and sizes the originals'), named ``NAME~{tag}N`` with
    N the index over ``per_round``."""
    copied = SplitData(
        images=images,
        boxes=boxes,
        classes=data.classes[order],
        difficult=data.difficult[order],
        names=[
            f"{data.names[source]}~{tag}{index // max(1, per_round)}"
            for index, source in enumerate(order)
        ],
        sizes=data.sizes[order],
        info=[data.info[source] for source in order],
        skipped=[],
        unknown_labels={},
        geometry=data.geometry,
    )
    copied.labels_list = tuple(getattr(data, "labels_list", None) or ())
    return copied


SWAPS_STREAM = 7400
"""Mixed with the run's seed into the generator of :func:`with_plate_swaps`."""


def with_plate_swaps(data, copies, seed, progress=False, negatives=False):
    """Copies of a split's images with a synthetic US or EU plate over each plate.

    Only images holding a ``license_plate`` box are copied. Each copy gets
    :func:`platelab.synth.swaps.swap`'s plates over its plate boxes, inside the image's
    own part of the network input; those boxes become the new plates' (in network
    fractions, as :class:`SplitData` keeps them), every other box is the original's.
    With ``negatives``, each copy also gets :func:`platelab.synth.negatives.paste`'s
    distractors, clear of every box (the new plates' included), so that the new plates
    and the distractors are seen side by side.

    Args:
        data: a :class:`SplitData` (its ``labels_list`` names the classes)
        copies: copies of each image with plates
        seed: the run's seed (the generators are ``[seed, SWAPS_STREAM]`` and, for the
            distractors, ``[seed, SWAPS_STREAM, 1]``)
        progress: show a progress bar
        negatives: paste hard negatives into each copy too

    Returns:
        a :class:`SplitData` of ``copies`` times the images with plates, named
        ``NAME~swapN``; empty where the split has no plate
    """
    from tqdm.auto import tqdm

    from platelab.synth import negatives as negatives_lib
    from platelab.synth import swaps

    labels = tuple(getattr(data, "labels_list", None) or ())
    plate = labels.index("license_plate") + 1 if "license_plate" in labels else -1
    with_plates = np.flatnonzero((data.classes == plate).any(axis=1))
    rng = np.random.default_rng([int(seed), SWAPS_STREAM])
    distractors = np.random.default_rng([int(seed), SWAPS_STREAM, 1])
    order = np.tile(with_plates, int(copies))
    images = data.images[order]  # fancy indexing: a new array, drawn into in place
    boxes = data.boxes[order].copy()
    scale, corner = _content_pixels(data.geometry, images)
    for index in tqdm(range(len(order)), desc="plate swaps", disable=not progress):
        source = order[index]
        rows = np.flatnonzero(data.classes[source] == plate)
        content = data.geometry.content(images[index], *data.sizes[source])
        pixels = data.boxes[source][rows] * scale - corner
        boxes[index, rows] = (swaps.swap(rng, content, pixels) + corner) / scale
        if negatives:
            real = data.classes[source] > 0
            negatives_lib.paste(distractors, content, boxes[index][real] * scale - corner)
    return _copies(data, order, images, boxes, "swap", len(with_plates))


def frame_size(dataset_dir, split="train"):
    """The most common ``(width, height)`` of a split's images, read from its TFRecord.

    Raises:
        TrainingError: the split's file is missing or holds no image size
    """
    tf = import_tensorflow()
    path = Path(dataset_dir) / "tfrecords" / SPLIT_FILES[split]
    if not path.is_file():
        raise TrainingError(f"{path}: no such file (run stage 05 merge with write_tfrecords)")
    counts = {}
    try:
        for record in tf.data.TFRecordDataset(str(path)):
            feature = tf.train.Example.FromString(record.numpy()).features.feature
            size = (
                feature["image/width"].int64_list.value[:1],
                feature["image/height"].int64_list.value[:1],
            )
            if size[0] and size[1]:
                key = (int(size[0][0]), int(size[1][0]))
                counts[key] = counts.get(key, 0) + 1
    except tf.errors.OpError as error:
        raise TrainingError(f"{path}: not a readable TFRecord file ({error.message})") from None
    if not counts:
        raise TrainingError(f"{path}: no image sizes (image/width, image/height)")
    return max(counts, key=lambda key: (counts[key], key))


def anchor_boxes(data):
    """The box sizes anchors are fitted to: ``(M, 2)`` widths and heights in network pixels.

    Difficult boxes (plates a few pixels high) are left out where others exist: training
    ignores them, so an anchor shape spent on them would be wasted.
    """
    chosen = (data.classes > 0) & ~data.difficult
    if not chosen.any():
        chosen = data.classes > 0
    boxes = data.boxes[chosen]
    height, width = data.images.shape[1:3]
    wh = np.stack([(boxes[:, 2] - boxes[:, 0]) * width, (boxes[:, 3] - boxes[:, 1]) * height], 1)
    return wh[(wh[:, 0] > 0) & (wh[:, 1] > 0)]


def crop_advice(config, wh, share=0.05):
    """A line when many training boxes never fit whole in a training crop, else ''.

    A box wider or taller than ``input_size / scale_min`` network pixels is cut by every
    crop but the zoomed-out ones (``zoom_out``), and a cut box is ignored
    (``min_visible``): close-up photos (openalpr-br's plates are 115-350 px wide at
    960 px) then teach their largest objects from a fifth of the crops only.

    Args:
        config: the :class:`TrainConfig`
        wh: ``(M, 2)`` training box widths and heights in network pixels
            (:func:`anchor_boxes`)
        share: the share of boxes from which to speak

    Returns:
        the advice, or '' (also without crops)
    """
    if not (config.crop_training and config.infer_size) or len(wh) == 0:
        return ""
    largest = np.asarray(wh, np.float64).max(axis=1)
    limit = config.input_size / config.scale_min
    over = float(np.mean(largest > limit))
    if over < share:
        return ""
    return (
        f"crops: {over:.0%} of the training boxes are larger than a {config.input_size} px "
        f"crop holds even at scale_min {config.scale_min:g} (over {limit:.0f} px; the "
        f"largest {largest.max():.0f} px): only zoom-out crops ({config.zoom_out:.0%}) show "
        "them whole; a larger input_size or a smaller scale_min shows them more often"
    )


def make_anchor_spec(config, data):
    """The run's anchor spec (in network pixels): generic, or fitted to ``data``'s boxes.

    Raises:
        TrainingError: ``anchors: fit`` and the split has no boxes
    """
    if config.anchors == "generic":
        return model_lib.generic_anchor_spec(config.levels)
    wh = anchor_boxes(data)
    if len(wh) == 0:
        raise TrainingError("the train split has no boxes to fit anchors to")
    spec = model_lib.anchors_from_boxes(
        wh, 1, config.levels, config.anchors_per_level, seed=config.seed
    )
    return dict(spec, unit="px")


def object_heights(data, labels):
    """Box heights at the network input, per label, for the plate-size histogram.

    Args:
        data: a :class:`SplitData`
        labels: the model's labels

    Returns:
        ``{label: (M,) float array of heights in network pixels}`` (difficult boxes
        included: they show what the geometry leaves unreadable)
    """
    heights = data.heights_px()
    return {label: heights.get(index + 1, np.zeros(0)) for index, label in enumerate(labels)}


def split_table(splits, labels):
    """What each loaded split holds, for the notebook's data table.

    Args:
        splits: ``{split name: SplitData}``, e.g. ``{"train": ..., "val": ...}``
        labels: the model's labels in class-id order (id 1 first)

    Returns:
        ``{split name: {"images": int, "<label> boxes": int per label,
        "difficult boxes": int, "skipped images": int, "unknown-label boxes": int}}``
        (``pd.DataFrame`` of it: one column per split)
    """
    return {
        name: {
            "images": len(data),
            **{
                f"{label} boxes": int((data.classes == index + 1).sum())
                for index, label in enumerate(labels)
            },
            "difficult boxes": int((data.difficult & (data.classes > 0)).sum()),
            "skipped images": len(data.skipped),
            "unknown-label boxes": sum(data.unknown_labels.values()),
        }
        for name, data in splits.items()
    }


def anchor_table(anchor_spec):
    """The anchor shapes of a spec, one row per shape, finest stride first.

    Args:
        anchor_spec: :func:`make_anchor_spec`'s dict: ``levels`` (strides) and
            ``shapes`` (per level, ``(width, height)`` pairs in network-input pixels)

    Returns:
        a list of dicts ``stride``, ``anchor (w x h px at input)`` (``"12.0 x 6.0"``),
        ``aspect (w/h)`` (rounded to 2 places)
    """
    return [
        {
            "stride": stride,
            "anchor (w x h px at input)": f"{w:.1f} x {h:.1f}",
            "aspect (w/h)": round(w / h, 2),
        }
        for stride, shapes in zip(anchor_spec["levels"], anchor_spec["shapes"], strict=True)
        for w, h in shapes
    ]


HEIGHT_BINS = (8, 16, 32)
"""Edges (network-input pixels) of the box-height bins: under 8 px a plate cannot be read."""


def height_bins(heights, edges=HEIGHT_BINS):
    """Boxes per height bin and class, for the plate-size table beside the histogram.

    Args:
        heights: :func:`object_heights`' ``{label: (M,) heights in network pixels}``
        edges: increasing bin edges in pixels (default :data:`HEIGHT_BINS`)

    Returns:
        ``{label: {"boxes": M, "under 8 px": n, "8-16 px": n, "16-32 px": n,
        "32 px and up": n}}`` (for the default edges; counts are ints, each box in
        exactly one bin; ``pd.DataFrame.from_dict(..., orient="index")``: one row per label)
    """
    table = {}
    for label, values in heights.items():
        values = np.asarray(values, dtype=np.float64)
        row = {"boxes": len(values), f"under {edges[0]} px": int((values < edges[0]).sum())}
        for low, high in zip(edges, edges[1:], strict=False):
            row[f"{low}-{high} px"] = int(((values >= low) & (values < high)).sum())
        row[f"{edges[-1]} px and up"] = int((values >= edges[-1]).sum())
        table[label] = row
    return table


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


def make_train_dataset(data, head, config, start_step, global_batch):
    """The training ``tf.data`` pipeline from ``start_step`` on (infinite).

    Image indices come from :func:`batch_indices`; each image's crop and augmentation
    are drawn with stateless random ops seeded by (seed, step, position in the batch);
    targets are encoded inside the pipeline (:meth:`platelab.head.DetectionHead.encode`),
    which maps in parallel and prefetches.

    Args:
        data: the training :class:`SplitData` (images at the inference geometry)
        head: the :class:`platelab.head.DetectionHead`
        config: the :class:`TrainConfig`
        start_step: the first step to produce
        global_batch: images per step over all replicas

    Returns:
        a ``tf.data.Dataset`` of ``(images, class_targets, box_targets)`` batches, images
        ``(batch, height, width, 3)`` at :meth:`TrainConfig.train_shape`
    """
    tf = import_tensorflow()
    count = len(data)
    # The images stay in their NumPy array: a tf.constant captured by the pipeline's
    # functions is copied (three times over, measured), while fetching one image
    # through tf.numpy_function copies only that image.
    images = _ImageSource(tf, data.images)
    boxes = tf.constant(data.boxes)
    classes = tf.constant(data.classes)
    difficult = tf.constant(data.difficult)
    shape = config.train_shape(data.geometry)
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
        stateless_seed = tf.stack([tf.cast(seed, tf.int64) * 1000003 + step, position])
        image, image_boxes, image_classes, image_difficult = augment(
            tf.cast(images(index), tf.float32),
            tf.gather(boxes, index),
            tf.gather(classes, index),
            tf.gather(difficult, index),
            stateless_seed,
            shape,
            config,
            split=(images, boxes, classes, difficult),
        )
        class_targets, box_targets = head.encode(image_boxes, image_classes, image_difficult, shape)
        return image, class_targets, box_targets

    dataset = tf.data.Dataset.range(start_step, 2**62)
    dataset = dataset.flat_map(expand)
    dataset = dataset.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.batch(global_batch, drop_remainder=True)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    options.deterministic = True
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


class _ImageSource:
    """A split's ``(N, H, W, 3)`` uint8 images read one at a time inside ``tf.data``.

    Calling it with an int64 index gives that ``(H, W, 3)`` uint8 image tensor.
    """

    def __init__(self, tf, array):
        self.tf, self.array, self.count = tf, array, len(array)

    def __call__(self, index):
        array = self.array
        image = self.tf.numpy_function(
            lambda value: array[int(value)], [index], self.tf.uint8, stateful=False
        )
        image.set_shape(array.shape[1:])
        return image


def augment(image, boxes, classes, difficult, seed, shape, config, split=None):
    """A training image: a scaled crop (or a mosaic), then flip, colour, blur and JPEG noise.

    With ``config.augment`` False only the crop is taken, at scale 1 (crop training) or
    none at all (whole-frame training). With ``config.mosaic`` and ``split`` given, that
    share of images is a 2x2 mosaic (:func:`_mosaic`): this image and three drawn from
    ``split``, each a crop of a quarter of ``shape``. The box arrays then have ``4 * G``
    rows either way, so that both kinds batch together.

    Args:
        image: ``(H, W, 3)`` float32 pixels 0-255, at the inference geometry
        boxes: ``(G, 4)`` fractions of it; classes ``(G,)`` (0 padding); difficult ``(G,)``
        seed: ``(2,)`` int64 stateless seed
        shape: ``(height, width)`` of the output
        config: the :class:`TrainConfig`
        split: ``(images, boxes, classes, difficult)`` of the whole training split,
            ``(N, H, W, 3)`` uint8, ``(N, G, 4)``, ``(N, G)``, ``(N, G)``: where mosaic
            partners come from (None: no mosaic)

    Returns:
        ``(image, boxes, classes, difficult)``: the image ``(height, width, 3)`` float32;
        boxes whose centre left the crop get class 0 (padding); boxes under
        ``config.min_object_px`` high become difficult
    """
    tf = import_tensorflow()
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 8)
    out_h, out_w = shape
    scale = _draw_scale(tf, seeds[0], config) if config.augment else tf.constant(1.0)
    whole = tuple(shape) == tuple(image.shape[:2]) and not config.augment
    if config.augment and config.mosaic > 0 and split is not None:
        mosaic_seed = tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), 7)
        use = tf.random.stateless_uniform([], mosaic_seed) < config.mosaic
        single = boxes.shape[0]

        def one():
            crop = _scaled_crop(
                tf, image, boxes, classes, difficult, scale, seeds[1], shape, config
            )
            return (crop[0], *_pad_rows(tf, crop[1:], 3 * single))

        image, boxes, classes, difficult = tf.cond(
            use,
            lambda: _mosaic(
                tf, image, boxes, classes, difficult, split, mosaic_seed, shape, config
            ),
            one,
        )
        boxes.set_shape([4 * single, 4])
    elif not whole:
        image, boxes, classes, difficult = _scaled_crop(
            tf, image, boxes, classes, difficult, scale, seeds[1], shape, config
        )
    height_px = (boxes[:, 3] - boxes[:, 1]) * out_h
    difficult = tf.cast(difficult, tf.bool) | (height_px < config.min_object_px)
    if not config.augment:
        return tf.reshape(image, [out_h, out_w, 3]), boxes, classes, difficult
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
    image = tf.reshape(image * 255.0, [out_h, out_w, 3])
    return image, boxes, classes, difficult


def _pad_rows(tf, arrays, rows):
    """Each array with ``rows`` more rows of zeros (padding boxes: class 0)."""
    return tuple(
        tf.concat([array, tf.zeros(tf.concat([[rows], tf.shape(array)[1:]], 0), array.dtype)], 0)
        for array in arrays
    )


def _mosaic(tf, image, boxes, classes, difficult, split, seed, shape, config):
    """A 2x2 mosaic: this image and three others of the split, a scaled crop in each quarter.

    Each quarter is ``shape / 2`` and drawn as :func:`_scaled_crop` draws a crop (its own
    scale, centred near one of its objects ``config.object_crops`` of the time), so one
    training image holds the objects of four at the same cost: more positives per step,
    which is what a short CPU run lacks.

    Args:
        image: ``(H, W, 3)`` float32; boxes ``(G, 4)`` fractions; classes, difficult ``(G,)``
        split: ``(images, boxes, classes, difficult)`` of the training split (partners);
            ``images`` a ``(N, H, W, 3)`` uint8 tensor or the pipeline's image source
        seed: ``(2,)`` int64 stateless seed
        shape: ``(height, width)`` of the output (even)
        config: the :class:`TrainConfig`

    Returns:
        ``(image, boxes, classes, difficult)``: ``(height, width, 3)`` float32, then
        ``(4G, 4)`` boxes as fractions of the mosaic, ``(4G,)`` classes and difficult
    """
    images, all_boxes, all_classes, all_difficult = split
    seeds = tf.random.experimental.stateless_split(seed, 9)
    if isinstance(images, _ImageSource):
        count, fetch = tf.constant(images.count, tf.int64), images
    else:
        count = tf.shape(images, out_type=tf.int64)[0]
        fetch = lambda index: tf.gather(images, index)  # noqa: E731 - one line
    partners = tf.random.stateless_uniform([3], seeds[0], 0, count, dtype=tf.int64)
    half = (shape[0] // 2, shape[1] // 2)
    parts = [(image, boxes, classes, difficult)] + [
        (
            tf.cast(fetch(partners[k]), tf.float32),
            tf.gather(all_boxes, partners[k]),
            tf.gather(all_classes, partners[k]),
            tf.gather(all_difficult, partners[k]),
        )
        for k in range(3)
    ]
    tiles, out_boxes, out_classes, out_difficult = [], [], [], []
    for k, (part_image, part_boxes, part_classes, part_difficult) in enumerate(parts):
        scale = _draw_scale(tf, seeds[1 + 2 * k], config)
        tile, tile_boxes, tile_classes, tile_difficult = _scaled_crop(
            tf, part_image, part_boxes, part_classes, part_difficult, scale,
            seeds[2 + 2 * k], half, config,
        )  # fmt: skip
        offset = tf.constant([k % 2, k // 2, k % 2, k // 2], tf.float32) * 0.5
        tiles.append(tile)
        out_boxes.append(tile_boxes * 0.5 + offset)
        out_classes.append(tile_classes)
        out_difficult.append(tf.cast(tile_difficult, difficult.dtype))
    mosaic = tf.concat([tf.concat(tiles[:2], axis=1), tf.concat(tiles[2:], axis=1)], axis=0)
    return (
        tf.reshape(mosaic, [shape[0], shape[1], 3]),
        tf.concat(out_boxes, 0),
        tf.concat(out_classes, 0),
        tf.concat(out_difficult, 0),
    )


def _draw_scale(tf, seed, config):
    """A crop's scale: log-uniform in [scale_min, scale_max], or a zoom-out below it."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    draw = tf.random.stateless_uniform([2], seeds[0])
    low, high = math.log(config.scale_min), math.log(config.scale_max)
    usual = tf.exp(low + (high - low) * draw[0])
    out_low = math.log(min(config.zoom_out_min, config.scale_min))
    zoomed = tf.exp(out_low + (low - out_low) * draw[1])
    zoom = tf.random.stateless_uniform([], seeds[1]) < config.zoom_out
    return tf.where(zoom, zoomed, usual)


def _scaled_crop(tf, image, boxes, classes, difficult, scale, seed, shape, config):
    """Cuts a window of ``shape / scale`` pixels and resizes it to ``shape``.

    The window is centred near a random object (``config.object_crops`` of the time) or
    placed anywhere; where it leaves the image the canvas is padding (zoom-out).
    Shrinking is an area resize, as at inference (:func:`platelab.model.resize_image`),
    so that small plates look the same; enlarging is bilinear.

    A box the window cuts keeps only its visible part. When that part is less than
    ``config.min_visible`` of the box's area, the box becomes *difficult* (ignored):
    the side of a bus filling a small crop is not what a whole vehicle looks like
    (taught as one, fine-tuning the starter on 192 px crops cost held-out vehicles
    128-256 px high 0.93 -> 0.88 AP50; 0.92 with ``min_visible`` 0.5). The TF Object
    Detection API's random crop drops boxes it cuts below ``overlap_thresh``, and
    Ultralytics' ``box_candidates`` those left with under a tenth of their area; here
    they are ignored rather than made background, since they are real objects.

    Args:
        image: ``(H, W, 3)`` float32; boxes ``(G, 4)`` fractions of it, ``[xmin, ymin,
            xmax, ymax]``; classes ``(G,)`` (0 padding); difficult ``(G,)`` bool
        scale: network pixels per image pixel
        seed: ``(2,)`` int64 stateless seed
        shape: ``(out_h, out_w)`` of the output
        config: the :class:`TrainConfig` (``object_crops``, ``min_visible``)

    Returns:
        ``(image, boxes, classes, difficult)``: ``(out_h, out_w, 3)`` float32, boxes as
        fractions of the output (clipped), classes 0 for boxes whose centre left the
        window, difficult also for boxes cut below ``min_visible``
    """
    seeds = tf.random.experimental.stateless_split(seed, 3)
    out_h, out_w = shape
    in_h = tf.cast(tf.shape(image)[0], tf.float32)
    in_w = tf.cast(tf.shape(image)[1], tf.float32)
    window = tf.stack([out_w / scale, out_h / scale])  # x, y in input pixels
    size = tf.stack([in_w, in_h])
    anywhere = tf.random.stateless_uniform([2], seeds[0]) * (size - window)
    real = classes > 0
    logits = tf.where(real, 0.0, -1e9)[None, :]
    pick = tf.random.stateless_categorical(logits, 1, seeds[1])[0, 0]
    box = tf.gather(boxes, pick) * tf.concat([size, size], 0)
    centre = (box[:2] + box[2:]) / 2
    offset = 0.15 + 0.7 * tf.random.stateless_uniform([2], seeds[2])
    near_object = centre - offset * window
    use_object = tf.logical_and(
        tf.reduce_any(real),
        tf.random.stateless_uniform([], tf.reverse(seeds[2], [0])) < config.object_crops,
    )
    origin = tf.floor(tf.where(use_object, near_object, anywhere))
    # The part of the window inside the image, resized, then placed on the canvas.
    inner_start = tf.clip_by_value(origin, 0.0, size)
    inner_end = tf.clip_by_value(origin + window, 0.0, size)
    start_i = tf.cast(inner_start, tf.int32)
    end_i = tf.maximum(tf.cast(tf.math.ceil(inner_end), tf.int32), start_i + 1)
    end_i = tf.minimum(end_i, tf.cast(size, tf.int32))
    start_i = tf.minimum(start_i, end_i - 1)
    patch = image[start_i[1] : end_i[1], start_i[0] : end_i[0]]
    place = tf.cast(tf.round((tf.cast(start_i, tf.float32) - origin) * scale), tf.int32)
    place = tf.clip_by_value(place, 0, tf.constant([out_w - 1, out_h - 1]))
    target = tf.cast(tf.round(tf.cast(end_i - start_i, tf.float32) * scale), tf.int32)
    target = tf.clip_by_value(target, 1, tf.constant([out_w, out_h]) - place)
    resized = tf.cond(
        scale < 1.0,
        lambda: tf.image.resize(patch, [target[1], target[0]], method="area"),
        lambda: tf.image.resize(patch, [target[1], target[0]], method="bilinear"),
    )
    canvas = (
        tf.pad(
            resized - model_lib.PAD_VALUE,
            [
                [place[1], out_h - place[1] - target[1]],
                [place[0], out_w - place[0] - target[0]],
                [0, 0],
            ],
        )
        + model_lib.PAD_VALUE
    )
    canvas = tf.reshape(canvas, [out_h, out_w, 3])
    # Boxes: input pixels to output fractions.
    box_px = boxes * tf.concat([size, size], 0)
    origin4 = tf.concat([origin, origin], 0)
    out4 = tf.constant([out_w, out_h, out_w, out_h], tf.float32)
    moved = (box_px - origin4) * scale / out4
    centre_x = (moved[:, 0] + moved[:, 2]) / 2
    centre_y = (moved[:, 1] + moved[:, 3]) / 2
    inside = (centre_x > 0) & (centre_x < 1) & (centre_y > 0) & (centre_y < 1)
    clipped = tf.clip_by_value(moved, 0.0, 1.0)
    cut = _area(tf, clipped) < config.min_visible * _area(tf, moved)
    difficult = tf.cast(difficult, tf.bool) | (cut & (classes > 0))
    return canvas, clipped, tf.where(inside, classes, 0), difficult


def _area(tf, boxes):
    """``(G,)`` areas of ``(G, 4)`` boxes ``[xmin, ymin, xmax, ymax]`` (0 when empty)."""
    width = tf.maximum(boxes[:, 2] - boxes[:, 0], 0.0)
    return width * tf.maximum(boxes[:, 3] - boxes[:, 1], 0.0)


# --------------------------------------------------------------------------------------
# Training


def train(
    dataset_dir,
    run_dir,
    config=None,
    progress=True,
    echo=None,
    stop_after=None,
    pause_after_minutes=None,
):
    """Trains (or resumes training of) a detector.

    The loop itself is short: a step, then the side jobs, each a named piece
    (:class:`MetricsLog`, :class:`Validator`, :class:`Checkpointer`,
    :class:`EarlyStopping`, :class:`TimeLimit`), in the manner of Ultralytics' trainer.

    Args:
        dataset_dir: a merged dataset folder (stage 05) with TFRecords
        run_dir: the run folder; when it holds a checkpoint of the same configuration,
            training resumes from it
        config: a :class:`TrainConfig` or a dict of its fields
        progress: show a progress bar
        echo: a function receiving one line per log row (default: logger.info)
        stop_after: stop (as if killed) after this many steps of this call (tests)
        pause_after_minutes: end this call after this many minutes of training,
            evaluated and saved with status ``paused``; the same call again continues
            the run (pretraining's chunks). Unlike ``max_minutes`` it does not change
            the learning-rate schedule

    Returns:
        the final state dict (also in ``state.json``)

    Raises:
        TrainingError: bad data, a run folder of another configuration, an init run of
            another backbone, out of memory (with a smaller batch size suggested)
    """
    from tqdm.auto import tqdm

    setup = _TrainingSetup.prepare(dataset_dir, run_dir, config, progress, echo)
    config, run_dir, echo = setup.config, setup.run_dir, setup.echo
    if setup.done is not None:
        return setup.done
    iterator = iter(
        setup.strategy.experimental_distribute_dataset(
            make_train_dataset(
                setup.train_data, setup.head, config, setup.start_step, config.batch_size
            )
        )
    )
    log = MetricsLog(run_dir, setup.labels, setup.chief, echo)
    validator = Validator(setup, echo)
    checkpointer = Checkpointer(setup)
    stopper = EarlyStopping(config.patience_steps, config.keep)
    time_limit = TimeLimit(config.max_minutes, _last_elapsed(run_dir / "metrics.csv"))
    pause = TimeLimit(pause_after_minutes or 0, 0.0)
    step_function = _FreezeSchedule(setup, echo)
    bar = tqdm(
        total=config.steps, initial=setup.start_step, desc="train",
        disable=not progress or not setup.chief,
    )  # fmt: skip
    status, step = "running", setup.start_step
    try:
        while step < config.steps:
            setup.progress.assign(max(step / config.steps, time_limit.fraction()))
            losses = step_function(step)(next(iterator))
            step += 1
            bar.update(1)
            setup.step_variable.assign(step)
            if not all(math.isfinite(float(value)) for value in losses):
                status = "nan_stopped"
                echo(
                    f"loss became NaN at step {step}: training stopped; the last good checkpoint "
                    f"({checkpointer.last_good or 'none'}) and best.keras are kept "
                    "(try a lower learning_rate)"
                )
                break
            log.add(losses)
            out_of_time = time_limit.reached()
            paused = pause.reached() and not out_of_time
            last = step == config.steps or out_of_time or paused
            row = log.training_row(step, setup) if step % config.log_every == 0 or last else None
            evaluated = step % config.eval_every == 0 or last
            if evaluated:
                row = row or log.base_row(step, setup)
                row.update(validator(step))
            log.write(row, time_limit.elapsed())
            if evaluated or step % config.checkpoint_every == 0 or last:
                checkpointer.save(step)
            if evaluated and stopper(step, setup):
                status = "early_stopped"
                echo(stopper.message(step, setup))
                break
            if out_of_time:
                status = "time_limited"
                echo(
                    f"time limit: stopped at step {step} of {config.steps} after "
                    f"{config.max_minutes:g} minutes (max_minutes)"
                )
                break
            if paused and step < config.steps:
                status = "paused"
                echo(f"paused at step {step} after {pause_after_minutes:g} minutes of this call")
                break
            if stop_after is not None and step - setup.start_step >= stop_after:
                return dict(checkpointer.state, step=step)
    except setup.tf.errors.ResourceExhaustedError:
        raise TrainingError(
            f"out of memory at batch size {config.batch_size}: try --batch-size "
            f"{max(1, config.batch_size // 2)} (the notebook measures memory per batch size)"
        ) from None
    finally:
        bar.close()
    return checkpointer.finish(step, "finished" if status == "running" else status)


def move_aside(run_dir):
    """Moves a run folder to ``<run_name>.previous``, replacing an earlier one there.

    Args:
        run_dir: the run folder (it must exist)

    Returns:
        the Path it now lies at
    """
    import shutil

    run_dir = Path(run_dir)
    previous = run_dir.with_name(run_dir.name + ".previous")
    if previous.exists():
        shutil.rmtree(previous)
    run_dir.rename(previous)
    return previous


def train_or_restart(dataset_dir, run_dir, config=None, *, resume=True, echo=None, **options):
    """Trains, resuming the run folder when it can and starting afresh when it cannot.

    The notebook's way (``platelab train`` refuses instead): a run folder is moved aside
    to ``<run_name>.previous`` (see :func:`move_aside`) before training when ``resume``
    is False, or when :func:`train` raises :class:`RunMismatchError` (the folder holds
    a run of other data or another configuration); then training starts afresh.

    Args:
        dataset_dir: a merged dataset folder (stage 05)
        run_dir: the run folder
        config: a :class:`TrainConfig` or a dict of its fields
        resume: False: never resume, always move an existing folder aside
        echo: a function receiving each line said (default: logger.info)
        **options: further :func:`train` arguments (default ``progress=False``)

    Returns:
        ``(state, previous)``: :func:`train`'s final state dict, and the Path the old
        run folder was moved to (``None`` where nothing was moved)

    Raises:
        TrainingError: as :func:`train`, other than a run mismatch
    """
    echo = echo or logger.info
    options.setdefault("progress", False)
    run_dir = Path(run_dir)
    previous = None
    if not resume and run_dir.exists():
        previous = move_aside(run_dir)
        echo(f"started afresh; the old run folder is {previous}")
    try:
        return train(dataset_dir, run_dir, config, echo=echo, **options), previous
    except RunMismatchError as error:
        # A batch rerun after the data or parameters changed: keep the old run, train afresh.
        previous = move_aside(run_dir)
        echo(str(error))
        echo(f"the old run folder is now {previous}; training afresh")
    return train(dataset_dir, run_dir, config, echo=echo, **options), previous


class _TrainingSetup:
    """Everything a training loop needs, prepared: data, head, model, optimizer, checkpoint.

    :meth:`prepare` reads the data, writes (or checks, when resuming) the run's
    ``config.json``, builds the model under the ``tf.distribute`` strategy and restores
    the last checkpoint. ``done`` is the final state when the run has already ended.
    """

    @classmethod
    def prepare(cls, dataset_dir, run_dir, config, progress, echo):
        self = cls()
        self.tf = import_tensorflow()
        keras = import_keras()
        if config is None:
            config = TrainConfig()
        elif isinstance(config, dict):
            config = TrainConfig.from_dict(config)
        config.validate()
        self.config, self.echo = config, echo or logger.info
        dataset_dir, self.run_dir = Path(dataset_dir), Path(run_dir)
        if not dataset_dir.is_dir():
            raise TrainingError(f"{dataset_dir}: no such dataset folder")
        self.labels = labels = read_labels(dataset_dir)
        # MultiWorkerMirroredStrategy must exist before TensorFlow runs any op.
        self.strategy = make_strategy(config.strategy)
        keras.utils.set_random_seed(config.seed)
        self.geometry = config.geometry(*frame_size(dataset_dir))
        self.train_data = load_split(dataset_dir, "train", labels, self.geometry, progress=progress)
        self.val_data = load_split(dataset_dir, "val", labels, self.geometry, progress=progress)
        if len(self.train_data) == 0:
            raise TrainingError(f"{dataset_dir}: the train split is empty (no usable image)")
        if len(self.val_data) == 0:
            raise TrainingError(
                f"{dataset_dir}: the val split is empty: validation loss, mAP and early stop "
                "need it (merge with a val fraction that gives it at least one group)"
            )
        wh = anchor_boxes(self.train_data)
        if len(wh) == 0:
            raise TrainingError(f"{dataset_dir}: the train split has no boxes")
        advice = crop_advice(config, wh)
        if advice:
            self.echo(advice)
        anchor_spec = make_anchor_spec(config, self.train_data)
        self.head = head_lib.DetectionHead(anchor_spec, len(labels), config.head_config())
        self.train_shape = config.train_shape(self.geometry)
        self.replay_data = self._load_replay(progress)
        run_config = self._run_config(dataset_dir, anchor_spec, wh)
        own_data = self.train_data
        if config.negatives:
            pasted = with_negatives(own_data, config.negatives, config.seed, progress)
            self.train_data = join_splits(self.train_data, pasted)
            run_config["negatives_images"] = len(pasted)
            self.echo(
                f"negatives: {len(pasted)} copies of the {len(own_data)} train images with "
                "synthetic lettering, stickers, lamps and time stamps pasted in (never "
                "annotated)"
            )
        if config.plate_swaps:
            swapped = with_plate_swaps(
                own_data,
                config.plate_swaps,
                config.seed,
                progress,
                negatives=bool(config.negatives),
            )
            if len(swapped):
                self.train_data = join_splits(self.train_data, swapped)
            run_config["plate_swaps_images"] = len(swapped)
            self.echo(
                f"plate swaps: {len(swapped)} copies of the {len(own_data)} train images' "
                "photos with plates, a synthetic US or EU plate drawn over each plate"
                + (" and hard negatives pasted in" if config.negatives else "")
            )
        if self.replay_data is not None:
            own = len(self.train_data)
            self.train_data = join_splits(self.train_data, self.replay_data)
            self.echo(
                f"replay: {len(self.replay_data)} train images of {config.replay} mixed into "
                f"the {own} of the dataset ({len(self.replay_data) / len(self.train_data):.0%} "
                "of the training images)"
            )
        resuming = _check_resume(self.run_dir, run_config)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not resuming:
            atomic_write_json(self.run_dir / detector.CONFIG_FILENAME, run_config)
            atomic_write_text(
                self.run_dir / "labels.txt", "".join(label + "\n" for label in labels)
            )
        self.chief = _is_chief(self.strategy)
        self.echo(
            f"strategy {type(self.strategy).__name__}: replicas "
            f"{self.strategy.num_replicas_in_sync}"
            + ("" if self.chief else " (this worker is not the chief: it writes no run files)")
        )
        self.echo(
            f"geometry: inference {self.geometry.capped(self.config.infer_max_scale or None)}, "
            "training on "
            f"{self.train_shape[1]}x{self.train_shape[0]} "
            + ("crops" if self.train_shape != self.geometry.shape else "whole frames")
        )
        self._build(keras, anchor_spec, resuming)
        self.done = self._already_done()
        return self

    def _load_replay(self, progress):
        """The replay set's train images at this run's geometry (None without ``replay``)."""
        config = self.config
        if not config.replay:
            return None
        pick = int(config.replay_frames) or None
        if config.replay == "starter":
            from platelab import pretrain

            pick = pick or min(len(self.train_data), REPLAY_STARTER_FRAMES)
            source = starter_lib.resolve(config.init) or starter_lib.STARTER_DIR
            try:
                vantages = starter_lib.corpus_vantages(source)
                details = starter_lib.corpus_details(source)
            except starter_lib.StarterError as error:
                raise TrainingError(f"replay: starter: {error}") from None
            with_details = f"; with {', '.join(details)}" if details else ""
            self.echo(
                f"replay: a corpus like the starter's ({source.name}: "
                f"{', '.join(vantages)}{with_details}), {pick} frames"
            )
            folder = pretrain.replay_corpus(
                self.run_dir.parent / REPLAY_DIR, pick, vantages, progress=progress,
                details=details,
            )  # fmt: skip
        else:
            folder = Path(config.replay)
        if not folder.is_dir():
            raise TrainingError(f"replay {folder}: no such dataset folder")
        self.replay_dir = folder
        data = load_split(
            folder,
            "train",
            self.labels,
            self.geometry,
            progress=progress,
            pick=pick,
            seed=config.seed,
        )
        if len(data) == 0 or not (data.classes > 0).any():
            raise TrainingError(f"replay {folder}: its train split has no usable image with boxes")
        return data

    def _run_config(self, dataset_dir, anchor_spec, wh):
        config, geometry = self.config, self.geometry
        model_config = {
            "input_size": config.input_size,
            "infer_size": [geometry.width, geometry.height],
            "resize": geometry.mode,
            "infer_margin": geometry.margin,
            "infer_max_scale": config.infer_max_scale or None,
            "width": config.width,
            "levels": list(config.levels),
            "anchors": anchor_spec,
            "head": self.head.config.to_dict(),
            "labels": list(self.labels),
            "score_threshold": config.score_threshold,
            "nms_iou": config.nms_iou,
            "max_detections": config.max_detections,
            "tta": config.tta,
        }
        run_config = {
            **model_config,
            "training": dataclasses.asdict(config),
            "dataset": str(dataset_dir),
            "dataset_fingerprint": _dataset_fingerprint(dataset_dir),
            "anchor_fit": model_lib.anchor_fit(wh, anchor_spec),
            "train_images": len(self.train_data),
            "val_images": len(self.val_data),
            "skipped_images": self.train_data.skipped + self.val_data.skipped,
            "unknown_labels": _merge_counts(
                self.train_data.unknown_labels, self.val_data.unknown_labels
            ),
        }
        if self.replay_data is not None:
            run_config["replay_fingerprint"] = _dataset_fingerprint(self.replay_dir)
            run_config["replay_images"] = len(self.replay_data)
        run_config["training"]["levels"] = list(config.levels)
        return run_config

    def _build(self, keras, anchor_spec, resuming):
        tf, config = self.tf, self.config
        with self.strategy.scope():
            self.net = _build_model(config, anchor_spec, self.labels, resuming, self.echo)
            self.progress = tf.Variable(0.0, trainable=False, dtype=tf.float32, name="progress")
            self.schedule = _warmup_cosine(keras, tf, config, self.progress)
            self.optimizer = keras.optimizers.AdamW(
                learning_rate=self.schedule,
                weight_decay=config.weight_decay,
                global_clipnorm=10.0,
                use_ema=config.ema > 0,
                ema_momentum=config.ema or 0.99,
            )
            self.optimizer.build(self.net.trainable_variables)
            self.step_variable = tf.Variable(0, dtype=tf.int64, name="step")
            # best_map: validation mAP at best_step; best_value: the ``keep`` metric there
            self.best_map = tf.Variable(-1.0, dtype=tf.float64, name="best_map")
            self.best_value = tf.Variable(-1.0, dtype=tf.float64, name="best_value")
            self.best_step = tf.Variable(-1, dtype=tf.int64, name="best_step")
        self.checkpoint = tf.train.Checkpoint(
            model=self.net,
            optimizer=self.optimizer,
            step=self.step_variable,
            best_map=self.best_map,
            best_value=self.best_value,
            best_step=self.best_step,
        )
        folder = (
            self.run_dir / CHECKPOINT_DIR if self.chief else self.run_dir / f".worker-{_task_id()}"
        )
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(folder), max_to_keep=2)
        if self.manager.latest_checkpoint:
            self.checkpoint.restore(self.manager.latest_checkpoint).expect_partial()
            if float(self.best_value.numpy()) < 0:
                # A checkpoint from before best_value: it kept by mAP (keep "map").
                self.best_value.assign(self.best_map)
            self.echo(
                f"resumed from {self.manager.latest_checkpoint} at step "
                f"{int(self.step_variable.numpy())}"
            )
        self.start_step = int(self.step_variable.numpy())
        if self.chief:
            _truncate_metrics(self.run_dir / "metrics.csv", self.start_step)

    def _already_done(self):
        if self.start_step >= self.config.steps or _finished_early(self.run_dir, self.config):
            state = detector.read_state(self.run_dir) or {
                "status": "finished",
                "step": self.start_step,
            }
            self.echo(
                f"{self.run_dir}: already {state.get('status', 'finished')} at step "
                f"{state.get('step')}"
            )
            return state
        return None

    def epoch(self, step):
        return round(step * self.config.batch_size / len(self.train_data), 3)


class _FreezeSchedule:
    """The train step for a step: rebuilt when the backbone is frozen or unfrozen."""

    def __init__(self, setup, echo):
        self.setup, self.echo = setup, echo
        self.frozen, self.function = None, None

    def __call__(self, step):
        setup = self.setup
        want_frozen = step < setup.config.freeze_steps
        if want_frozen != self.frozen:
            setup.net.get_layer("backbone").trainable = not want_frozen
            if setup.config.freeze_bn:
                _freeze_batch_norm(setup.net)
            self.function = make_train_step(
                setup.net, setup.optimizer, setup.strategy, setup.head, setup.train_shape
            )
            if self.frozen is not None or want_frozen:
                self.echo(f"step {step}: backbone {'frozen' if want_frozen else 'trainable'}")
            self.frozen = want_frozen
        return self.function


def _freeze_batch_norm(net):
    """Puts every batch-norm layer in inference mode (Keras 3: ``trainable = False``)."""
    for layer in model_lib.batch_norm_layers(net):
        layer.trainable = False


class MetricsLog:
    """Training-loss rows, validation rows: ``metrics.csv``, TensorBoard and one echoed line."""

    def __init__(self, run_dir, labels, chief, echo):
        self.path = Path(run_dir) / "metrics.csv"
        self.columns = _metric_columns(labels)
        self.chief, self.echo = chief, echo
        self.writer = None
        if chief:
            tf = import_tensorflow()
            self.writer = tf.summary.create_file_writer(str(Path(run_dir) / "tensorboard"))
        self.window = {"class_loss": [], "box_loss": []}

    def add(self, losses):
        self.window["class_loss"].append(float(losses[0]))
        self.window["box_loss"].append(float(losses[1]))

    def base_row(self, step, setup):
        return {"step": step, "epoch": setup.epoch(step), "lr": float(setup.schedule(step))}

    def training_row(self, step, setup):
        row = self.base_row(step, setup)
        row["class_loss"] = float(np.mean(self.window["class_loss"]))
        row["box_loss"] = float(np.mean(self.window["box_loss"]))
        row["loss"] = row["class_loss"] + row["box_loss"]
        self.window = {"class_loss": [], "box_loss": []}
        return row

    def write(self, row, elapsed):
        if row is None:
            return
        tf = import_tensorflow()
        row["elapsed_s"] = round(elapsed, 2)
        if self.chief:
            _append_metrics(self.path, row, self.columns)
            with self.writer.as_default(step=row["step"]):
                for key, value in row.items():
                    if key not in ("step", "epoch") and value is not None:
                        tf.summary.scalar(key, value)
            self.writer.flush()
        self.echo(_format_row(row))


class Validator:
    """Validation loss and COCO metrics; keeps ``best.keras`` by ``config.keep``.

    ``keep`` ``map`` keeps the weights of the best validation mAP, ``ap50`` those of the
    best validation AP50 (mean over classes) and ``last`` every evaluation's (so the
    last). With ``ema`` the moving-average weights are evaluated and saved (and the
    training weights put back afterwards).
    """

    def __init__(self, setup, echo):
        self.setup, self.echo = setup, echo

    def __call__(self, step):
        setup = self.setup
        with _ema_weights(setup):
            evaluation = evaluate_split(
                setup.net, setup.val_data, setup.head, setup.labels, setup.config
            )
            metrics = evaluation["metrics"]
            current = kept_value(setup.config.keep, metrics, step)
            if current > float(setup.best_value.numpy()) + 1e-9:
                setup.best_value.assign(current)
                setup.best_map.assign(-1.0 if metrics.get("AP") is None else metrics["AP"])
                setup.best_step.assign(step)
                if setup.chief:
                    _save_keras(setup.net, setup.run_dir / detector.BEST_MODEL_FILENAME)
        return _evaluation_row(evaluation, setup.labels)


def kept_value(keep, metrics, step):
    """The value ``best.keras`` is kept by (higher is better).

    Args:
        keep: ``TrainConfig.keep``: ``map``, ``ap50`` or ``last``
        metrics: :func:`evaluate_split`'s metrics (``AP``, ``AP50``; None without boxes)
        step: the step evaluated

    Returns:
        validation mAP or AP50 (-1 where undefined), or the step for ``last``
    """
    if keep == "last":
        return float(step)
    value = metrics.get("AP50" if keep == "ap50" else "AP")
    return -1.0 if value is None else float(value)


class Checkpointer:
    """Checkpoints (to resume), ``last.keras`` and ``state.json``."""

    def __init__(self, setup):
        self.setup = setup
        self.last_good = setup.manager.latest_checkpoint
        self.state = {
            "status": "running",
            "step": setup.start_step,
            "best_step": int(setup.best_step.numpy()),
            "best_map": float(setup.best_map.numpy()),
            "keep": setup.config.keep,
            "steps": setup.config.steps,
        }
        if setup.chief:
            atomic_write_json(setup.run_dir / detector.STATE_FILENAME, self.state)

    def save(self, step):
        setup = self.setup
        self.last_good = setup.manager.save(checkpoint_number=step)
        if setup.chief:
            with _ema_weights(setup):
                _save_keras(setup.net, setup.run_dir / detector.LAST_MODEL_FILENAME)
            self.state.update(
                step=step,
                best_step=int(setup.best_step.numpy()),
                best_map=float(setup.best_map.numpy()),
            )
            atomic_write_json(setup.run_dir / detector.STATE_FILENAME, self.state)

    def finish(self, step, status):
        """The final checkpoint and state (a NaN stop keeps the last good one)."""
        setup = self.setup
        if status != "nan_stopped" and setup.manager.latest_checkpoint != self.last_good:
            setup.manager.save(checkpoint_number=step)
        self.state.update(
            status=status,
            step=step if status != "nan_stopped" else self.state["step"],
            best_step=int(setup.best_step.numpy()),
            best_map=float(setup.best_map.numpy()),
            finished_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
        )
        if setup.chief:
            best = setup.run_dir / detector.BEST_MODEL_FILENAME
            if not best.is_file() and status != "nan_stopped":
                with _ema_weights(setup):
                    _save_keras(setup.net, best)
            atomic_write_json(setup.run_dir / detector.STATE_FILENAME, self.state)
        return self.state


class EarlyStopping:
    """Stops when the ``keep`` metric has not improved for ``patience_steps`` (0: never)."""

    def __init__(self, patience_steps, keep="map"):
        self.patience = int(patience_steps)
        self.metric = detector.KEEP_METRICS[keep]

    def __call__(self, step, setup):
        best_step = int(setup.best_step.numpy())
        return bool(self.patience and best_step >= 0 and step - best_step >= self.patience)

    def message(self, step, setup):
        best_step = int(setup.best_step.numpy())
        return (
            f"early stop at step {step}: {self.metric} has not improved for "
            f"{step - best_step} steps (best {float(setup.best_value.numpy()):.4f} at step "
            f"{best_step})"
        )


class TimeLimit:
    """``max_minutes`` of training in all, counting the time before a resume."""

    def __init__(self, max_minutes, elapsed_before):
        self.limit_s = 60.0 * float(max_minutes or 0)
        self.before = float(elapsed_before)
        self.began = time.perf_counter()

    def elapsed(self):
        return self.before + time.perf_counter() - self.began

    def reached(self):
        return bool(self.limit_s) and self.elapsed() >= self.limit_s

    def fraction(self):
        """How much of the limit is spent (0 without a limit)."""
        return min(self.elapsed() / self.limit_s, 1.0) if self.limit_s else 0.0


def _warmup_cosine(keras, tf, config, progress):
    """Linear warm-up over ``warmup_steps``, then cosine decay to 0 as ``progress`` goes to 1.

    ``progress`` (a variable the loop sets before each step) is the larger of the
    share of ``steps`` done and the share of ``max_minutes`` spent: a run stopped by its
    time limit has annealed its learning rate by then, instead of stopping at a high
    one halfway down a schedule planned for more steps than the machine could do.
    """

    class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            step = tf.cast(step, tf.float32)
            peak = tf.constant(config.learning_rate, tf.float32)
            warm = peak * tf.minimum((step + 1.0) / max(config.warmup_steps, 1), 1.0)
            start = config.warmup_steps / max(config.steps, 1)
            done = tf.clip_by_value((progress - start) / max(1.0 - start, 1e-6), 0.0, 1.0)
            decay = 0.5 * (1.0 + tf.cos(np.pi * done))
            return tf.where(step < config.warmup_steps, warm, peak * decay)

        def get_config(self):
            return {}

    return WarmupCosine()


@contextlib.contextmanager
def _ema_weights(setup):
    """The moving-average weights in the model for the block's duration (with ``ema``)."""
    if not setup.config.ema:
        yield
        return
    variables = setup.net.trainable_variables
    saved = [variable.numpy() for variable in variables]
    setup.optimizer.finalize_variable_values(variables)
    try:
        yield
    finally:
        for variable, value in zip(variables, saved, strict=True):
            variable.assign(value)


def make_train_step(net, optimizer, strategy, head, shape):
    """A ``tf.function`` running one training step on a distributed batch.

    The trainable variables are read when this is called: call it again after
    freezing or unfreezing the backbone.

    Args:
        net: the Keras model (built in ``strategy``'s scope)
        optimizer: its optimizer
        strategy: the ``tf.distribute`` strategy
        head: the :class:`platelab.head.DetectionHead` (loss)
        shape: ``(height, width)`` of the training images

    Returns:
        a function ``step(batch) -> (class_loss, box_loss)`` (mean over replicas)
    """
    tf = import_tensorflow()
    variables = net.trainable_variables
    replicas = strategy.num_replicas_in_sync

    def step_fn(images, class_targets, box_targets):
        with tf.GradientTape() as tape:
            outputs = net(images, training=True)
            class_loss, box_loss = head.loss(
                class_targets, box_targets, outputs["class_logits"], outputs["box_deltas"], shape
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


def evaluate_split(net, data, head, labels, config, batch_size=8, progress=False):
    """Validation loss and COCO metrics of a model on one split held in memory.

    Args:
        net: the Keras model
        data: a :class:`SplitData` (images at the inference geometry)
        head: the :class:`platelab.head.DetectionHead`
        labels: the model's labels
        config: the :class:`TrainConfig` (thresholds)
        batch_size: images per forward pass
        progress: show a progress bar

    Returns:
        dict with ``loss``, ``class_loss``, ``box_loss``, ``metrics`` (the evaluation
        engine's dict) and ``predictions`` (the flat list it scored, image pixels)
    """
    tf = import_tensorflow()
    from tqdm.auto import tqdm

    from platelab import evaluate

    forward = _forward_function(net)
    shape = data.images.shape[1:3]
    predictions, class_losses, box_losses, weights = [], [], [], []
    for start in tqdm(range(0, len(data), batch_size), desc="evaluate", disable=not progress):
        stop = min(start + batch_size, len(data))
        outputs = forward(tf.constant(data.images[start:stop], tf.float32))
        targets = [
            head.encode(data.boxes[index], data.classes[index], data.difficult[index], shape)
            for index in range(start, stop)
        ]
        class_loss, box_loss = head.loss(
            tf.stack([item[0] for item in targets]),
            tf.stack([item[1] for item in targets]),
            outputs["class_logits"],
            outputs["box_deltas"],
            shape,
        )
        class_losses.append(float(class_loss))
        box_losses.append(float(box_loss))
        weights.append(stop - start)
        decoded = head.decode(
            outputs["class_logits"],
            outputs["box_deltas"],
            shape,
            score_threshold=0.05,
            iou_threshold=config.nms_iou,
            max_detections=config.max_detections,
        )
        for offset, index in enumerate(range(start, stop)):
            width, height = (int(value) for value in data.sizes[index])
            count = int(decoded["num_detections"][offset])
            boxes = data.geometry.to_image(decoded["boxes"][offset, :count], width, height)
            for box, score, class_id, on_image in zip(
                boxes,
                decoded["scores"][offset],
                decoded["classes"][offset],
                data.geometry.on_image(boxes),
                strict=False,
            ):
                if not on_image:
                    continue
                predictions.append(
                    {
                        "image": data.names[index],
                        "label": labels[int(class_id) - 1],
                        "score": float(score),
                        "bbox": [float(value) for value in box],
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
    tf = import_tensorflow()
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


def _build_model(config, anchor_spec, labels, resuming, echo):
    """Builds the model and applies ``init`` (unless resuming: the checkpoint wins)."""
    init = str(config.init or "none")
    weights = None
    init_run = None
    starter_dir = None if resuming else starter_lib.resolve(init)
    if not resuming and starter_dir is None:
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
        net = model_lib.build_ssd(
            num_classes=len(labels),
            input_size=None if config.infer_size else config.input_size,
            width=config.width,
            anchors=anchor_spec,
            weights=weights,
            levels=config.levels,
        )
        if config.class_loss == "focal":
            head_lib.set_background_prior(net, len(labels))
        return net

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
    for layer in model_lib.batch_norm_layers(net):
        layer.momentum = config.bn_momentum
    if starter_dir is not None:
        try:
            starter = starter_lib.load(starter_dir)
            starter_lib.apply(net, starter, labels, config.width, config.levels, echo)
        except starter_lib.StarterError as error:
            raise TrainingError(f"init {init}: {error}") from None
    elif init_run is not None:
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
    copied, reset = model_lib.copy_layer_weights(
        net,
        {
            layer.name: layer.get_weights()
            for layer in model_lib.all_layers(source)
            if layer.weights
        },
    )
    echo(
        f"init: {copied} layers from {init_run}"
        + (f"; {len(reset)} layers re-initialised (other classes or anchors)" if reset else "")
    )


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
    # evaluates, saves or stops, and its inference (tta), may change between a run and
    # its resumption.
    free_keys = {
        "log_every",
        "eval_every",
        "checkpoint_every",
        "patience_steps",
        "max_minutes",
        "strategy",
        "init",
        "tta",
        "infer_max_scale",
    }
    training_keys = sorted(
        (set(run_config["training"]) | set(existing.get("training", {})))
        - free_keys
        - set(detector.MODEL_CONFIG_KEYS)
    )
    # A key newer than the run takes the value that reproduces how the run was trained.
    earlier = earlier_values(existing.get("training", {}))
    for key in training_keys:
        mine = run_config["training"].get(key)
        theirs = existing.get("training", {}).get(key, earlier.get(key))
        if mine != theirs:
            differences.append(f"{key}: {theirs} != {mine}")
    theirs = [item.get("sha256") for item in existing.get("dataset_fingerprint", [])]
    mine = [item.get("sha256") for item in run_config.get("dataset_fingerprint", [])]
    if theirs != mine:
        differences.append("the dataset's TFRecords changed")
    theirs = [item.get("sha256") for item in existing.get("replay_fingerprint", [])]
    mine = [item.get("sha256") for item in run_config.get("replay_fingerprint", [])]
    if theirs != mine:
        differences.append("the replay set's TFRecords changed")
    if differences:
        raise RunMismatchError(
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
        tf = import_tensorflow()
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
    width, height = (int(value) for value in data.sizes[index])
    boxes = data.geometry.to_image(data.boxes[index][found], width, height)
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


def measure_memory(batch_sizes, config=None, steps=2, timeout=300, shape=None):
    """Peak memory of training at several batch sizes, each measured in a fresh process.

    Each probe builds the model of ``config`` (random weights), runs ``steps`` training
    steps on a random batch and reports the process's peak resident memory
    (``ru_maxrss``); the same probe with no step gives the baseline (model, TensorFlow).

    Args:
        batch_sizes: batch sizes to measure
        config: a :class:`TrainConfig` (input size, width, levels); default: the defaults
        steps: training steps per probe
        timeout: seconds per probe
        shape: ``(height, width)`` of the training images (default: the square crop)

    Returns:
        a list of dicts ``batch_size``, ``peak_mib``, ``status`` (``ok``, ``out of memory``
        or the error's last line); the first row is the baseline with ``batch_size`` 0
    """
    import subprocess
    import sys

    config = config or TrainConfig()
    rows = []
    for batch_size in [0, *batch_sizes]:
        fields = dataclasses.asdict(config)
        fields["levels"] = list(config.levels)
        argument = json.dumps(
            {
                "config": fields,
                "shape": list(shape or (config.input_size, config.input_size)),
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
        data: the training :class:`SplitData`, images at the inference geometry
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
    spec = make_anchor_spec(config, data)
    head = head_lib.DetectionHead(spec, len(labels), config.head_config())
    shape = config.train_shape(data.geometry)
    step = _probe_train_step(config, spec, len(labels), shape)
    iterator = iter(make_train_dataset(data, head, config, 0, config.batch_size))
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


def memory_table(batch_sizes, config=None, **options):
    """:func:`measure_memory` for the notebook's comma-separated batch sizes.

    Args:
        batch_sizes: ``"4,8,16"``-style text (empty: nothing measured) or a list of ints
        config: a :class:`TrainConfig`
        **options: further :func:`measure_memory` arguments

    Returns:
        :func:`measure_memory`'s rows (baseline first), or ``[]`` where no batch size
        was asked for
    """
    if isinstance(batch_sizes, str):
        batch_sizes = [int(part) for part in batch_sizes.split(",") if part.strip()]
    return measure_memory(batch_sizes, config, **options) if batch_sizes else []


def memory_verdict(rows, batch_size):
    """One line on :func:`measure_memory`'s rows: the memory one more image costs.

    Args:
        rows: :func:`measure_memory`'s dicts ``batch_size``, ``peak_mib``, ``status``
        batch_size: the run's batch size

    Returns:
        ``"about 41 MiB more per image in the batch; batch 16 chosen"`` (slope of a
        straight line through the measured batch sizes), or why there is none
    """
    if not rows:
        return "memory_batch_sizes is empty: not measured"
    fitting = [row for row in rows if row["batch_size"] > 0 and row["status"] == "ok"]
    if len(fitting) < 2:
        return f"fewer than two batch sizes measured: no slope; batch {batch_size} chosen"
    slope = np.polyfit(
        [row["batch_size"] for row in fitting], [row["peak_mib"] for row in fitting], 1
    )[0]
    return f"about {slope:.0f} MiB more per image in the batch; batch {batch_size} chosen"


def throughput_line(throughput):
    """One line on :func:`measure_input_throughput`'s result against :data:`THROUGHPUT_GOAL`.

    Args:
        throughput: its dict (``bare_images_per_s``, ``real_images_per_s``, ``ratio``),
            or ``None`` where it was not measured
    """
    if not throughput:
        return "throughput_steps is 0: not measured"
    return (
        f"bare train step {throughput['bare_images_per_s']:.1f} images/s, real training "
        f"{throughput['real_images_per_s']:.1f} images/s: ratio {throughput['ratio']:.3f} "
        f"(goal >= {THROUGHPUT_GOAL})"
    )


VALIDATION_TABLE_KEYS = (
    "AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "precision", "recall", "F1",
)  # fmt: skip
"""The figures of the notebook's table of the best model on the val split."""


def run_summary(
    run_dir, state, config, geometry, *, val_metrics, anchor_fit, memory, throughput,
    map_trend, starter_table,
):  # fmt: skip
    """The run's ``metrics.json`` (stage 06's figures; stage 07 adds its own).

    Args:
        run_dir: the run folder
        state: :func:`train`'s final state dict
        config: the :class:`TrainConfig`
        geometry: the :class:`platelab.model.InputGeometry` of the run
        val_metrics: :func:`evaluate_split`'s metrics of the best model on the val split
        anchor_fit: mean best IoU of a training box with an anchor shape
        memory: :func:`measure_memory`'s rows (``[]``: not measured)
        throughput: :func:`measure_input_throughput`'s dict, or ``None``
        map_trend: :func:`platelab.goals.map_trend`'s dict, or ``None``
        starter_table: :func:`platelab.goals.starter_rows`' rows (``[]``: none)

    Returns:
        a JSON-ready dict ``run_dir``, ``init``, ``state``, ``val_metrics``, ``anchor_fit``,
        ``geometry`` (``infer_size`` ``[width, height]``, ``resize``, ``infer_margin``,
        ``infer_max_scale`` (None: none), ``train_shape`` ``[height, width]``), ``memory``, ``throughput``, ``map_trend``, ``starter_table``
    """
    return {
        "run_dir": str(run_dir),
        "init": config.init,
        "state": state,
        "val_metrics": val_metrics,
        "anchor_fit": anchor_fit,
        "geometry": {
            "infer_size": [geometry.width, geometry.height],
            "resize": geometry.mode,
            "infer_margin": geometry.margin,
            "infer_max_scale": config.infer_max_scale or None,
            "train_shape": list(config.train_shape(geometry)),
        },
        "memory": list(memory),
        "throughput": throughput,
        "map_trend": map_trend,
        "starter_table": list(starter_table),
    }


def key_figures(summary, elapsed_s=None):
    """Stage 06's few figures for the report index, from :func:`run_summary`'s dict.

    Args:
        summary: :func:`run_summary`'s dict
        elapsed_s: seconds of training (``analyze.Run.elapsed_s``), or ``None``

    Returns:
        a flat dict ``status``, ``steps``, ``best step``, ``val mAP``, ``val AP50``,
        ``val AP50 <label>`` per class, ``first val mAP`` (NaN without an evaluation),
        ``mAP rising`` (``"n/a"`` fine-tuned from a detector), ``input ratio``, ``minutes``
        (figures rounded; ``None`` unknown)
    """
    from platelab.goals import rising_figure

    state, metrics = summary["state"], summary["val_metrics"]
    trend, throughput = summary["map_trend"], summary["throughput"]

    def rounded(value, places=4):
        return round(value, places) if value is not None else None

    first = trend["first"] if trend is not None and trend["first"] is not None else math.nan
    return {
        "status": state["status"],
        "steps": state["step"],
        "best step": state.get("best_step"),
        "val mAP": rounded(metrics.get("AP")),
        "val AP50": rounded(metrics.get("AP50")),
        **{
            f"val AP50 {label}": rounded(values.get("AP50"))
            for label, values in metrics["per_class"].items()
        },
        "first val mAP": round(first, 4),
        "mAP rising": rising_figure(trend, summary.get("init")),
        "input ratio": round(throughput["ratio"], 3) if throughput else None,
        "minutes": round(elapsed_s / 60, 1) if elapsed_s else None,
    }


def _memory_probe(argument):
    """Runs in a child process for :func:`measure_memory`; prints one JSON line."""
    import resource

    values = json.loads(argument)
    tf = import_tensorflow()
    config = TrainConfig.from_dict(values["config"])
    shape = tuple(values["shape"])
    spec = model_lib.generic_anchor_spec(config.levels)
    anchors = model_lib.generate_anchors(spec, shape)
    batch_size = values["batch_size"]
    if not batch_size:  # the baseline: the model alone
        model_lib.build_ssd(2, None, config.width, spec, weights=None, levels=config.levels)
    else:
        step = _probe_train_step(config, spec, 2, shape)
        rng = np.random.default_rng(0)
        images = tf.constant(rng.uniform(0, 255, (batch_size, *shape, 3)), tf.float32)
        class_targets = tf.constant(rng.integers(0, 3, (batch_size, len(anchors))), tf.int32)
        box_targets = tf.constant(rng.normal(0, 1, (batch_size, len(anchors), 4)), tf.float32)
        for _ in range(values["steps"]):
            float(step((images, class_targets, box_targets))[0])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_mib": round(peak, 1)}))


def _probe_train_step(config, anchor_spec, num_classes, shape):
    """A train step on a fresh model of ``config`` (random weights), for measurements."""
    tf = import_tensorflow()
    keras = import_keras()
    net = model_lib.build_ssd(
        num_classes, None, config.width, anchor_spec, weights=None, levels=config.levels
    )
    optimizer = keras.optimizers.AdamW(1e-4)
    optimizer.build(net.trainable_variables)
    head = head_lib.DetectionHead(anchor_spec, num_classes, config.head_config())
    return make_train_step(net, optimizer, tf.distribute.get_strategy(), head, shape)


def _chroma_matrix(saturation, hue):
    """A ``(3, 3)`` matrix for RGB rows: chroma scaled by ``saturation``, hue turned by ``hue``.

    In YIQ, luma stays and the (I, Q) chroma plane is scaled and rotated (``hue`` is a
    fraction of the full circle, as in ``tf.image.adjust_hue``). One matrix product
    instead of two RGB-HSV round trips, which take many times longer.
    """
    tf = import_tensorflow()
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
