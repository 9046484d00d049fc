"""A trained detector, loaded from a training run folder, ready to predict on images.

A training run (see :mod:`platelab.train`) leaves in its folder::

    config.json      model configuration (input_size, infer_size, resize, width, levels,
                     anchors, head, labels, score_threshold, nms_iou, max_detections,
                     tta) and the training parameters
    best.keras       the best model by validation mAP (``keras.models.load_model``)
    last.keras       the model at the last step
    state.json       where the run stands: status ("running", "finished", "early_stopped", "time_limited",
                     "nan_stopped"), step, best_step, best_map

:func:`load` reads one; :meth:`Detector.predict` turns RGB ``uint8`` images of any
size into boxes in the images' own pixels. Preprocessing is the run's
:class:`platelab.model.InputGeometry`: the whole image letterboxed (aspect kept) into
``infer_size``, or, for runs from before rectangular inputs, squashed to the square
``input_size``.
"""

import json
import logging
from pathlib import Path

import numpy as np

from platelab import model as model_lib
from platelab import tta
from platelab.exceptions import PlatelabError
from platelab.tfimport import import_keras, import_tensorflow

logger = logging.getLogger(__name__)

CONFIG_FILENAME = "config.json"
STATE_FILENAME = "state.json"
BEST_MODEL_FILENAME = "best.keras"
LAST_MODEL_FILENAME = "last.keras"
MODEL_CONFIG_KEYS = ("input_size", "width", "levels", "anchors", "labels")
KEEP_METRICS = {
    "map": "validation mAP",
    "ap50": "validation AP50",
    "last": "the last evaluation",
}
"""What a run's ``best.keras`` is kept by (``TrainConfig.keep``; ``state.json``'s
``keep``), in words."""


class ModelError(PlatelabError, ValueError):
    """A model folder that cannot be used (missing, unfinished, or another configuration)."""


class Detector:
    """A Keras SSD model with its anchors, labels and post-processing.

    Args:
        keras_model: the model from :func:`platelab.model.build_ssd`
        config: the run's model configuration (see the module docstring)
    """

    def __init__(self, keras_model, config):
        self.model = keras_model
        self.config = dict(config)
        self.labels = list(config["labels"])
        self.input_size = int(config["input_size"])
        self.geometry = model_lib.InputGeometry.from_config(config)
        from platelab import head as head_lib

        self.head = head_lib.DetectionHead(
            model_lib.anchor_spec_in_pixels(config["anchors"], self.input_size),
            len(self.labels),
            config.get("head"),
        )
        self.anchors = self.head.anchors(self.geometry.shape)
        self.score_threshold = float(config.get("score_threshold", 0.3))
        self.nms_iou = float(config.get("nms_iou", 0.5))
        self.max_detections = int(config.get("max_detections", 100))
        self.tta = tta.check_mode(config.get("tta"))
        self._forward = None

    def preprocess(self, images):
        """RGB images as the network's input (:meth:`platelab.model.InputGeometry.prepare`).

        Args:
            images: a list of ``(H, W, 3)`` ``uint8`` RGB arrays (sizes may differ)

        Returns:
            ``(batch, height, width, 3)`` float32 pixels 0-255 at the run's geometry
        """
        return np.stack([self.geometry.prepare(image) for image in images])

    def raw_outputs(self, batch):
        """The model's ``class_logits`` and ``box_deltas`` for a preprocessed batch (NumPy)."""
        tf = import_tensorflow()
        if self._forward is None:
            self._forward = tf.function(
                lambda x: self.model(x, training=False), reduce_retracing=True
            )
        outputs = self._forward(tf.convert_to_tensor(batch, tf.float32))
        return outputs["class_logits"].numpy(), outputs["box_deltas"].numpy()

    def predict(self, images, score_threshold=None, batch_size=8):
        """Detects objects in RGB images.

        Args:
            images: a list of ``(H, W, 3)`` ``uint8`` RGB arrays
            score_threshold: lowest score kept (default: the run's ``score_threshold``)
            batch_size: images per forward pass

        Returns:
            one dict per image: ``boxes`` ``(n, 4)`` float ``[xmin, ymin, xmax, ymax]`` in
            the image's pixels, ``scores`` ``(n,)``, ``classes`` ``(n,)`` 1-based ids and
            ``labels`` (list of n names), highest score first; with the run's ``tta``
            (``flip``), each image's detections and its mirror image's, fused
            (:mod:`platelab.tta`)
        """
        threshold = self.score_threshold if score_threshold is None else float(score_threshold)
        merged = []
        for start in range(0, len(images), batch_size):
            originals = images[start : start + batch_size]
            sizes = [(image.shape[1], image.shape[0]) for image in originals]
            views = self.preprocess(tta.augment(originals, self.tta))
            # A mirror image has its image's size.
            results = self.detect_prepared(views, sizes * tta.views(self.tta), threshold)
            merged += tta.merge(results, sizes, self.tta, self.nms_iou, self.max_detections)
        return merged

    def detect_prepared(self, batch, sizes, score_threshold):
        """One forward pass over inputs already prepared (:meth:`preprocess`), no ``tta``.

        Args:
            batch: ``(n, height, width, 3)`` float32 network inputs
            sizes: ``(width, height)`` of each input's image
            score_threshold: lowest score kept

        Returns:
            one dict per image (see :meth:`predict`); nothing from the letterbox padding
        """
        return self.decode(*self.raw_outputs(batch), sizes, score_threshold)

    def decode(self, class_logits, box_deltas, sizes, score_threshold):
        """The model's raw outputs as detections in each image's pixels.

        Args:
            class_logits: ``(n, anchors, classes + 1)`` raw class outputs
            box_deltas: ``(n, anchors, 4)`` raw box outputs
            sizes: ``(width, height)`` of each input's image
            score_threshold: lowest score kept

        Returns:
            one dict per image (see :meth:`predict`); nothing from the letterbox padding
        """
        decoded = model_lib.postprocess(
            class_logits,
            box_deltas,
            self.anchors,
            score_threshold=score_threshold,
            iou_threshold=self.nms_iou,
            max_detections=self.max_detections,
        )
        results = []
        for index, (width, height) in enumerate(sizes):
            count = int(decoded["num_detections"][index])
            boxes = self.geometry.to_image(decoded["boxes"][index, :count], width, height)
            kept = self.geometry.on_image(boxes)
            classes = decoded["classes"][index, :count][kept].astype(np.int64)
            results.append(
                {
                    "boxes": boxes[kept].astype(np.float32),
                    "scores": decoded["scores"][index, :count][kept].astype(np.float32),
                    "classes": classes,
                    "labels": [self.labels[value - 1] for value in classes],
                }
            )
        return results


def load(path, which="best", allow_unfinished=False):
    """Loads a detector from a training run folder (or a ``.keras`` file inside one).

    A starter folder (:mod:`platelab.starter`, ``models/starter``), or ``starter`` for
    the shipped one, loads the starter as it is (zero-shot).

    Args:
        path: the run folder, one of its ``.keras`` files, or a starter folder
        which: ``"best"`` (the kept model: by default the best validation mAP, see
            ``TrainConfig.keep``) or ``"last"``
        allow_unfinished: accept a run whose ``state.json`` says it is still running
            (or that was killed); the best model so far is used

    Returns:
        a :class:`Detector`

    Raises:
        ModelError: naming the folder and the problem (no run there, no model yet,
            an unfinished run)
    """
    from platelab import starter as starter_lib

    starter_dir = starter_lib.resolve(path)
    if starter_dir is not None:
        try:
            return starter_lib.load(starter_dir).detector()
        except starter_lib.StarterError as error:
            raise ModelError(str(error)) from None
    keras = import_keras()
    path = Path(path)
    if path.is_file() and path.suffix == ".keras":
        model_path, run_dir = path, path.parent
    else:
        run_dir = path
        model_path = run_dir / (BEST_MODEL_FILENAME if which == "best" else LAST_MODEL_FILENAME)
    config = read_config(run_dir)
    state = read_state(run_dir)
    if not allow_unfinished and state.get("status") == "running":
        raise ModelError(
            f"{run_dir}: the training run is unfinished (state.json says running at step "
            f"{state.get('step')}); resume it, or pass allow_unfinished to use its best model so far"
        )
    if not model_path.is_file():
        raise ModelError(f"{run_dir}: no {model_path.name} (the run saved no model yet)")
    try:
        keras_model = keras.models.load_model(model_path, compile=False)
    except Exception as error:  # noqa: BLE001 - any load failure is the file's problem
        raise ModelError(f"{model_path}: cannot load the model ({error})") from None
    return Detector(keras_model, config)


def read_config(run_dir):
    """Reads a run folder's ``config.json``; raises :class:`ModelError` when absent or invalid."""
    path = Path(run_dir) / CONFIG_FILENAME
    if not Path(run_dir).is_dir():
        raise ModelError(f"{run_dir}: no such model folder")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{run_dir}: not a training run folder (no {CONFIG_FILENAME})") from None
    except (OSError, ValueError) as error:
        raise ModelError(f"{path}: unreadable ({error})") from None
    missing = [key for key in MODEL_CONFIG_KEYS if key not in config]
    if missing:
        raise ModelError(f"{path}: missing {', '.join(missing)}")
    return config


def read_state(run_dir):
    """Reads a run folder's ``state.json`` (an empty dict when absent)."""
    path = Path(run_dir) / STATE_FILENAME
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise ModelError(f"{path}: unreadable ({error})") from None


def config_mismatch(first, second, keys=MODEL_CONFIG_KEYS):
    """Names the model-configuration keys on which two configs differ (empty list: same model).

    Args:
        first, second: model configurations
        keys: the keys that define the model's shape

    Returns:
        a list of ``"key: a != b"`` strings
    """
    differences = []
    for key in keys:
        a, b = first.get(key), second.get(key)
        if json.dumps(a, sort_keys=True) != json.dumps(b, sort_keys=True):
            shown_a = a if key != "anchors" else "(anchor spec)"
            shown_b = b if key != "anchors" else "(another anchor spec)"
            differences.append(f"{key}: {shown_a} != {shown_b}")
    return differences


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def flat_predictions(names, results):
    """:meth:`Detector.predict` results as one flat list, the evaluation engine's format.

    Args:
        names: one image name per result
        results: :meth:`Detector.predict`'s per-image dicts

    Returns:
        a list of ``{"image", "label", "score", "bbox": [xmin, ymin, xmax, ymax]}``
        (pixels, Python floats)
    """
    return [
        {
            "image": name,
            "label": label,
            "score": float(score),
            "bbox": [float(value) for value in box],
        }
        for name, result in zip(names, results, strict=True)
        for box, score, label in zip(
            result["boxes"], result["scores"], result["labels"], strict=True
        )
    ]


def predict_folder(predictor, images_dir, score_threshold=None, batch_size=8, progress=True):
    """Runs a detector over every image under a folder.

    Unreadable images are skipped, each with a one-line warning naming it.

    Args:
        predictor: a :class:`Detector` (or any object with its ``predict``)
        images_dir: a folder of images (searched recursively)
        score_threshold: lowest score kept (default: the detector's)
        batch_size: images per forward pass
        progress: show a progress bar

    Returns:
        ``(predictions, skipped, images)``: the flat list of ``{"image": path relative to
        images_dir, "label", "score", "bbox": [xmin, ymin, xmax, ymax]}`` (pixels) and
        the list of problems, and every image read (relative paths, sorted)
    """
    import cv2
    from tqdm.auto import tqdm

    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise ValueError(f"{images_dir}: no such image folder")
    files = sorted(
        path
        for path in images_dir.rglob("*")
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
    )
    if not files:
        raise ValueError(f"{images_dir}: no images ({', '.join(IMAGE_SUFFIXES)})")
    predictions, skipped, read = [], [], []
    with tqdm(total=len(files), desc="predict", disable=not progress) as bar:
        for start in range(0, len(files), batch_size):
            chunk, names = [], []
            for path in files[start : start + batch_size]:
                image = cv2.imread(str(path), cv2.IMREAD_COLOR)
                if image is None:
                    skipped.append(f"{path}: cannot be decoded (skipped)")
                    logger.warning(skipped[-1])
                    continue
                chunk.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
                names.append(path.relative_to(images_dir).as_posix())
                read.append(names[-1])
            if chunk:
                results = predictor.predict(chunk, score_threshold=score_threshold)
                predictions += [
                    dict(
                        prediction,
                        score=round(prediction["score"], 6),
                        bbox=[round(value, 2) for value in prediction["bbox"]],
                    )
                    for prediction in flat_predictions(names, results)
                ]
            bar.update(len(files[start : start + batch_size]))
    return predictions, skipped, read
