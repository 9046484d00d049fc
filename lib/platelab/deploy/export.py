"""Exporting a trained detector (SavedModel, TFLite, ONNX) and running any export.

:func:`export` turns a training run folder (see :mod:`platelab.detector`) into one
deployable folder, written to a temporary sibling and renamed into place::

    saved_model   OUT/saved_model.pb, OUT/variables/     preprocessing, decoding, NMS inside
    tflite        OUT/model.tflite                       raw outputs (float32, float16 or int8)
    onnx          OUT/model.onnx                         raw outputs (float32; tf2onnx, opset 13)

and beside the model ``model_card.json`` (everything a program needs: labels, input
size, anchor spec, thresholds, input and output tensors, plus training data, metrics,
intended use and limits) and ``MODEL_CARD.md`` (the same for people).

**SavedModel**: a ``tf.Module`` whose signatures take a batch of same-sized RGB
``uint8`` images of any size (``images``: ``(batch, H, W, 3)``), resize them as training
did (:func:`platelab.model.resize_images_tf`: area averaging), run the network, decode
the boxes against the anchors (a constant in the graph) and run per-class NMS
(:func:`platelab.model.nms_tf`: the NumPy NMS's rules, equal scores in anchor order).
Outputs: ``boxes`` ``(batch, max_detections, 4)`` ``[xmin, ymin, xmax, ymax]``
**normalised** to [0, 1] (multiply by the image's width and height for pixels),
``scores``, ``classes`` (1-based class ids; 0 past ``num_detections``) and
``num_detections``. ``serving_default`` uses the run's operating threshold; ``detect``
also takes ``score_threshold`` (a float32 scalar).

**TFLite and ONNX: NMS outside.** These files hold the network only (input
``image`` ``(1, S, S, 3)`` float32 pixels 0-255, or uint8 for int8 TFLite; outputs
``class_logits`` and ``box_deltas``); the softmax, box decoding and NMS run in NumPy
(:func:`platelab.model.postprocess_numpy`: the rules of the Keras model's and the
SavedModel's :func:`platelab.model.nms_tf`, equal scores taken in anchor order).
Why: the raw network converts with TFLite's built-in ops only (no Flex/SELECT_TF_OPS
runtime, which ``tf.image.non_max_suppression`` would need, and no custom
``TFLite_Detection_PostProcess`` op, which only the Object Detection API's export
emits), int8 quantisation then covers the whole graph, OpenCV's DNN module reads the
ONNX file (it has no NonMaxSuppression op), and the NMS of the few boxes above the
threshold costs well under a millisecond in NumPy, far less than running it in the
graph on every anchor. The int8 TFLite model is full-integer (``TFLITE_BUILTINS_INT8``)
with a uint8 input and float32 outputs, calibrated on representative images from the
training split.

**Running an export.** :func:`load_predictor` opens any of them (or a run folder or
``.keras`` file) as a :class:`Predictor`, whose :meth:`Predictor.predict` returns what
:meth:`platelab.detector.Detector.predict` does. Every predictor resizes images as
training did (:func:`platelab.model.resize_image`: area averaging when shrinking), so
the formats differ only by their arithmetic.
"""

import argparse
import contextlib
import dataclasses
import datetime
import functools
import json
import logging
import re
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from platelab import __version__, paths, tta
from platelab import detector as detector_lib
from platelab import model as model_lib
from platelab.atomic import atomic_dir
from platelab.exceptions import PlatelabError
from platelab.metadata import sha256_file
from platelab.tfimport import import_tensorflow

logger = logging.getLogger(__name__)

FORMATS = ("saved_model", "tflite", "onnx")
QUANTIZATIONS = {
    "saved_model": ("none",),
    "tflite": ("none", "float16", "int8"),
    "onnx": ("none",),
}
MODEL_FILES = {"saved_model": "saved_model.pb", "tflite": "model.tflite", "onnx": "model.onnx"}
CARD_JSON = "model_card.json"
CARD_MARKDOWN = "MODEL_CARD.md"
CARD_FORMAT = "platelab.model_card/1"
ONNX_OPSET = 13
REPRESENTATIVE_COUNT = 100
"""Images used to calibrate int8 quantisation, at most."""
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
OUTPUT_NAMES = ("class_logits", "box_deltas")
INTENDED_USE = (
    "Detecting vehicles and license plates in fixed traffic-camera footage similar to the "
    "training data (vantage points, lighting, resolution), for research, counting and as a "
    "first stage before plate reading. Not for identifying people, for enforcement decisions "
    "without human review, or for footage unlike the training data."
)
LIMITATIONS = (
    "Knows only its training data (see Training data): synthetic footage or a few real cameras "
    "generalise poorly to new vantage points, weather, night or motion blur.",
    "Plates only a few pixels high at the model's input size are rarely found: resize the "
    "input or crop before detection for far-away vehicles.",
    "The whole frame is squeezed to a square input (aspect not kept), so very wide frames "
    "shrink objects horizontally.",
    "Scores are not calibrated probabilities; the operating threshold is the run's "
    "score_threshold: check precision and recall at it on data from the target cameras.",
)


class ExportError(PlatelabError, ValueError):
    """An export that cannot be done as asked (bad format, quantisation or inputs)."""


def export(
    run_dir,
    fmt,
    out,
    quantize="none",
    representative=None,
    which="best",
    force=False,
    representative_count=REPRESENTATIVE_COUNT,
    progress=True,
):
    """Exports a training run's model to a deployable format, with a model card.

    Args:
        run_dir: the training run folder (or a ``.keras`` file inside one)
        fmt: ``"saved_model"``, ``"tflite"`` or ``"onnx"``
        out: the folder to write (created with its parents; an earlier export there is
            replaced, any other non-empty folder is refused)
        quantize: ``"none"``; for TFLite also ``"float16"`` or ``"int8"``
        representative: int8 calibration images: a merged dataset folder (its
            ``tfrecords/train.tfrecord``), a ``.tfrecord`` file, a folder of images, or a
            list of RGB uint8 arrays; default: the run's training dataset
        which: ``"best"`` or ``"last"`` model of the run
        force: export a run that is still running (its model so far)
        representative_count: calibration images used, at most
        progress: show progress bars

    Returns:
        the model card (a dict; also in ``out/model_card.json``), with ``path``: the
        export folder, and ``model_path``: the model file or SavedModel folder

    Raises:
        ExportError: an unknown format, a quantisation the format does not offer, an
            empty or missing representative set, an output that is not a folder
        platelab.detector.ModelError: no run there, an unfinished run (without
            ``force``), an unloadable model
    """
    started = time.perf_counter()
    _check_format(fmt, quantize)
    out = Path(out)
    _check_output_folder(out)
    run_dir = Path(run_dir)
    run_folder = run_dir.parent if run_dir.is_file() else run_dir
    config = detector_lib.read_config(run_folder)
    state = detector_lib.read_state(run_folder)
    if state.get("status") == "running" and not force:
        raise detector_lib.ModelError(
            f"{run_folder}: the training run is unfinished (state.json says running at step "
            f"{state.get('step')}); let it finish or resume it, or pass force=True (--force) "
            "to export its model so far"
        )
    calibration = None
    if quantize == "int8":
        source = representative if representative is not None else _dataset_source(config)
        calibration = load_representative(
            source, model_lib.InputGeometry.from_config(config), representative_count, progress
        )
    keras_detector = detector_lib.load(run_dir, which=which, allow_unfinished=True)
    model_file = (
        run_dir if run_dir.is_file() else run_dir / f"{'best' if which == 'best' else 'last'}.keras"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(out) as staging, _quiet_tensorflow_info():
        if fmt == "saved_model":
            io_spec = _write_saved_model(keras_detector, staging)
        elif fmt == "tflite":
            io_spec = _write_tflite(keras_detector, staging, quantize, calibration)
        else:
            io_spec = _write_onnx(keras_detector, staging)
        card = _model_card(
            keras_detector, config, state, run_folder, model_file, fmt, quantize, io_spec
        )
        card["export"].update(_file_facts(staging, fmt))
        card["verification"] = _verify(keras_detector, staging, card, calibration)
        card["export"]["seconds"] = round(time.perf_counter() - started, 2)
        _write_card(staging, card)
    card["path"] = str(out)
    card["model_path"] = str(out if fmt == "saved_model" else out / MODEL_FILES[fmt])
    logger.info("exported %s (%s) to %s in %.1f s", fmt, quantize, out, card["export"]["seconds"])
    return card


def load_predictor(path, backend=None, threads=None, allow_unfinished=False):
    """Opens a model for prediction, whatever its format.

    Args:
        path: an export folder (with ``model_card.json``), a ``.tflite`` or ``.onnx`` file
            in one, a training run folder or a ``.keras`` file
        backend: for ONNX, ``"onnxruntime"`` (default where installed) or ``"opencv"``
            (OpenCV's DNN module)
        threads: CPU threads for TFLite, onnxruntime and OpenCV (default: their own);
            Keras and SavedModels use TensorFlow's process-wide setting
        allow_unfinished: accept a training run folder whose run is still going

    Returns:
        a :class:`Predictor`

    Raises:
        platelab.detector.ModelError: nothing usable at ``path`` (the message says what
            is missing)
    """
    path = Path(path)
    if not path.exists():
        raise detector_lib.ModelError(f"{path}: no such model file or folder")
    if path.is_dir() and (path / CARD_JSON).is_file():
        card = read_card(path)
        folder = path
    elif path.is_file() and path.suffix in (".tflite", ".onnx"):
        folder = path.parent
        if not (folder / CARD_JSON).is_file():
            raise detector_lib.ModelError(
                f"{path}: no {CARD_JSON} beside it (labels, anchors and thresholds come from "
                "it): use a folder written by platelab export"
            )
        card = read_card(folder)
    elif (path.is_dir() and (path / detector_lib.CONFIG_FILENAME).is_file()) or (
        path.is_file() and path.suffix == ".keras"
    ):
        return KerasPredictor(detector_lib.load(path, allow_unfinished=allow_unfinished))
    elif path.is_dir() and (path / "saved_model.pb").is_file():
        raise detector_lib.ModelError(
            f"{path}: a SavedModel without {CARD_JSON}: export it with platelab export"
        )
    else:
        raise detector_lib.ModelError(
            f"{path}: not a model (expected an export folder with {CARD_JSON}, a training "
            "run folder with config.json, or a .keras, .tflite or .onnx file)"
        )
    fmt = card["export"]["format"]
    model_path = folder if fmt == "saved_model" else folder / card["export"]["file"]
    if fmt == "saved_model":
        return SavedModelPredictor(card, model_path)
    if fmt == "tflite":
        return TFLitePredictor(card, model_path, threads=threads)
    if fmt == "onnx":
        return OnnxPredictor(card, model_path, backend=backend, threads=threads)
    raise detector_lib.ModelError(f"{folder / CARD_JSON}: unknown export format {fmt!r}")


def read_card(folder):
    """Reads an export folder's ``model_card.json``."""
    path = Path(folder) / CARD_JSON
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise detector_lib.ModelError(f"{path}: unreadable ({error})") from None
    if card.get("format") != CARD_FORMAT or "export" not in card or "model" not in card:
        raise detector_lib.ModelError(f"{path}: not a platelab model card")
    return card


def card_for_report(folder, depth=3):
    """An export folder's ``MODEL_CARD.md`` for showing inside a report.

    Its headings start at level ``depth`` (``#`` becomes ``###``), so that the card
    sits under the report's own headings instead of outranking them.

    Args:
        folder: an export folder (written by :func:`export`)
        depth: the level of the card's title

    Returns:
        Markdown text

    Raises:
        platelab.detector.ModelError: the card is missing or unreadable (one line)
    """
    path = Path(folder) / CARD_MARKDOWN
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise detector_lib.ModelError(f"{path}: unreadable ({error.strerror})") from None
    extra = "#" * max(0, int(depth) - 1)
    lines, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        lines.append(extra + line if not fenced and re.match(r"#{1,6} ", line) else line)
    return "\n".join(lines) + "\n"


class Predictor:
    """A detector in some format: preprocess, infer, postprocess.

    :meth:`predict` chains the three; they are public so that callers (the video
    annotator, benchmarks) can time each. Subclasses implement :meth:`infer`.

    Attributes:
        format: ``"keras"``, ``"saved_model"``, ``"tflite"`` or ``"onnx"``
        quantize: ``"none"``, ``"float16"`` or ``"int8"``
        backend: what runs the model (``"tensorflow"``, ``"tflite"``, ``"onnxruntime"``,
            ``"opencv"``)
        labels: class names, in class-id order (id = index + 1)
        input_size: side of the training crops (or of a square-input run's input)
        geometry: the :class:`platelab.model.InputGeometry` (letterbox or squash)
        score_threshold: the default (operating) threshold
        nms_iou: NMS IoU threshold
        max_detections: detections kept per image
        tta: test-time augmentation (:mod:`platelab.tta`): ``none``, or ``flip`` (each
            image is also run mirrored: :meth:`preprocess` returns two inputs an image,
            :meth:`postprocess` fuses their detections into one result)
        card: the model card (for a Keras run: its config)
    """

    format = "keras"
    backend = "tensorflow"

    def __init__(self, model_config, card=None, quantize="none"):
        self.card = card if card is not None else dict(model_config)
        self.quantize = quantize
        self.labels = list(model_config["labels"])
        self.input_size = int(model_config["input_size"])
        self.geometry = model_lib.InputGeometry.from_config(model_config)
        self.anchor_spec = model_lib.anchor_spec_in_pixels(model_config["anchors"], self.input_size)
        self.anchors = model_lib.generate_anchors(self.anchor_spec, self.geometry.shape)
        self.score_threshold = float(model_config.get("score_threshold", 0.3))
        self.nms_iou = float(model_config.get("nms_iou", 0.5))
        self.max_detections = int(model_config.get("max_detections", 100))
        self.tta = tta.check_mode(model_config.get("tta"))

    def __repr__(self):
        return (
            f"<{type(self).__name__} {self.format}/{self.quantize} via {self.backend}, "
            f"input {self.geometry.width}x{self.geometry.height}, labels {self.labels}>"
        )

    @property
    def name(self):
        """A short name: format, quantisation and backend (for tables)."""
        suffix = "" if self.quantize == "none" else f" {self.quantize}"
        return f"{self.format}{suffix} ({self.backend})"

    def preprocess(self, images):
        """RGB uint8 images as the model's input (:meth:`platelab.model.InputGeometry.prepare`).

        With ``tta`` ``flip`` the batch holds the images, then their mirror images.

        Returns:
            ``(batch, height, width, 3)`` float32 pixels 0-255 (see :meth:`_prepare`)
        """
        return self._prepare(tta.augment(images, self.tta))

    def _prepare(self, images):
        """The format's input batch; each image is written once into one float32 batch
        (no stacking copy)."""
        batch = np.empty((len(images), *self.geometry.shape, 3), np.float32)
        for slot, image in zip(batch, images, strict=True):
            self.geometry.prepare(image, out=slot)
        return batch

    def infer(self, batch, score_threshold):
        """Runs the model on a preprocessed batch; returns its raw outputs."""
        raise NotImplementedError

    def postprocess(self, raw, sizes, score_threshold):
        """Turns raw outputs into per-image detections in the images' pixels.

        Args:
            raw: :meth:`infer`'s result for :meth:`preprocess`'s batch
            sizes: ``(width, height)`` of each image (not of each view: with ``tta``
                ``flip``, the image's and its mirror's detections are fused into one)
            score_threshold: lowest score kept

        Returns:
            one dict per image (see :meth:`predict`)
        """
        results = self._decode(raw, list(sizes) * tta.views(self.tta), score_threshold)
        return tta.merge(results, list(sizes), self.tta, self.nms_iou, self.max_detections)

    def _decode(self, raw, sizes, score_threshold):
        """Per input of the batch: its detections in its image's pixels; ``raw`` is
        ``(class_logits, box_deltas)`` NumPy arrays."""
        class_logits, box_deltas = raw
        results = []
        for index, (width, height) in enumerate(sizes):
            boxes, scores, classes = model_lib.postprocess_numpy(
                class_logits[index],
                box_deltas[index],
                self.anchors,
                score_threshold,
                self.nms_iou,
                self.max_detections,
            )
            results.append(self._result(boxes, scores, classes, width, height))
        return results

    def predict(self, images, score_threshold=None, batch_size=8):
        """Detects objects in RGB images.

        Args:
            images: a list of ``(H, W, 3)`` uint8 RGB arrays (sizes may differ)
            score_threshold: lowest score kept (default: the operating threshold)
            batch_size: images per model call

        Returns:
            one dict per image: ``boxes`` ``(n, 4)`` float32 ``[xmin, ymin, xmax, ymax]``
            in the image's pixels, ``scores`` ``(n,)`` float32, ``classes`` ``(n,)``
            int64 1-based ids and ``labels`` (n names), highest score first
        """
        threshold = self.score_threshold if score_threshold is None else float(score_threshold)
        images = list(images)
        for image in images:
            _check_image(image)
        results = []
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            raw = self.infer(self.preprocess(chunk), threshold)
            sizes = [(image.shape[1], image.shape[0]) for image in chunk]
            results.extend(self.postprocess(raw, sizes, threshold))
        return results

    def _result(self, boxes, scores, classes, width, height, of_image=False):
        """One image's detections; ``boxes`` are fractions of the network input (or, with
        ``of_image``, of the image itself)."""
        classes = np.asarray(classes, np.int64)
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        if of_image:
            boxes = np.clip(boxes * _scale(width, height), 0.0, _scale(width, height))
        else:
            boxes = self.geometry.to_image(boxes, width, height)
        kept = self.geometry.on_image(boxes)  # nothing from the letterbox padding
        classes = classes[kept]
        return {
            "boxes": boxes[kept].astype(np.float32),
            "scores": np.asarray(scores, np.float32)[kept],
            "classes": classes,
            "labels": [self.labels[value - 1] for value in classes],
        }


class KerasPredictor(Predictor):
    """A :class:`platelab.detector.Detector` (the Keras model of a run) as a predictor.

    Its results equal ``Detector.predict``'s: same resize, same network, the NMS of
    :func:`platelab.model.postprocess`.
    """

    format = "keras"
    backend = "tensorflow"

    def __init__(self, keras_detector):
        super().__init__(keras_detector.config)
        self.detector = keras_detector
        self.score_threshold = keras_detector.score_threshold

    def infer(self, batch, score_threshold):
        return self.detector.raw_outputs(batch)

    def _decode(self, raw, sizes, score_threshold):
        return self.detector.decode(raw[0], raw[1], sizes, score_threshold)


class SavedModelPredictor(Predictor):
    """An exported SavedModel: resizing, decoding and NMS run inside the graph."""

    format = "saved_model"
    backend = "tensorflow"

    def __init__(self, card, path):
        super().__init__(card["model"], card)
        tf = import_tensorflow()
        try:
            self.module = tf.saved_model.load(str(path))
        except Exception as error:  # noqa: BLE001 - any load failure is the file's problem
            raise detector_lib.ModelError(f"{path}: cannot load the SavedModel ({error})") from None
        self._tf = tf

    def _prepare(self, images):
        """Nothing to do but make the arrays contiguous: the graph resizes."""
        return [np.ascontiguousarray(image) for image in images]

    def infer(self, batch, score_threshold):
        tf = self._tf
        outputs = []
        start = 0
        while start < len(batch):
            stop = start + 1
            while stop < len(batch) and batch[stop].shape == batch[start].shape:
                stop += 1
            result = self.module.detect(
                tf.constant(np.stack(batch[start:stop])), tf.constant(score_threshold, tf.float32)
            )
            result = {key: value.numpy() for key, value in result.items()}
            outputs.extend(
                {key: value[offset] for key, value in result.items()}
                for offset in range(stop - start)
            )
            start = stop
        return outputs

    def _decode(self, raw, sizes, score_threshold):
        results = []
        for output, (width, height) in zip(raw, sizes, strict=True):
            count = int(output["num_detections"])
            results.append(
                self._result(
                    output["boxes"][:count],
                    output["scores"][:count],
                    output["classes"][:count],
                    width,
                    height,
                    of_image=True,
                )
            )
        return results


class TFLitePredictor(Predictor):
    """An exported TFLite model (batch 1); decoding and NMS in NumPy."""

    format = "tflite"
    backend = "tflite"

    def __init__(self, card, path, threads=None):
        super().__init__(card["model"], card, card["export"].get("quantize", "none"))
        interpreter_class = _tflite_interpreter_class()
        try:
            self.interpreter = interpreter_class(model_path=str(path), num_threads=threads)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as error:
            raise detector_lib.ModelError(
                f"{path}: cannot load the TFLite model ({error})"
            ) from None
        self._input = self.interpreter.get_input_details()[0]
        outputs = self.interpreter.get_signature_runner().get_output_details()
        self._outputs = [outputs[name] for name in OUTPUT_NAMES]

    def infer(self, batch, score_threshold):
        logits, deltas = [], []
        dtype = self._input["dtype"]
        scale, zero_point = self._input["quantization"]
        for image in batch:
            if dtype in (np.uint8, np.int8):
                info = np.iinfo(dtype)
                image = np.clip(np.round(image / scale + zero_point), info.min, info.max)
            self.interpreter.set_tensor(self._input["index"], np.asarray(image[None], dtype))
            self.interpreter.invoke()
            values = [self._output(details) for details in self._outputs]
            logits.append(values[0][0])
            deltas.append(values[1][0])
        return np.stack(logits), np.stack(deltas)

    def _output(self, details):
        value = self.interpreter.get_tensor(details["index"])
        scale, zero_point = details["quantization"]
        if value.dtype != np.float32 and scale:
            value = (value.astype(np.float32) - zero_point) * scale
        return value


class OnnxPredictor(Predictor):
    """An exported ONNX model, run by onnxruntime or OpenCV's DNN module."""

    format = "onnx"

    def __init__(self, card, path, backend=None, threads=None):
        super().__init__(card["model"], card, card["export"].get("quantize", "none"))
        if backend is None:
            backend = "onnxruntime" if _has_module("onnxruntime") else "opencv"
        if backend not in ("onnxruntime", "opencv"):
            raise ValueError(f"ONNX backend must be onnxruntime or opencv, not {backend!r}")
        self.backend = backend
        try:
            if backend == "onnxruntime":
                import onnxruntime

                options = onnxruntime.SessionOptions()
                if threads:
                    options.intra_op_num_threads = int(threads)
                    options.inter_op_num_threads = 1
                options.log_severity_level = 3
                self.session = onnxruntime.InferenceSession(
                    str(path), options, providers=["CPUExecutionProvider"]
                )
                self._input_name = self.session.get_inputs()[0].name
            else:
                if threads:
                    cv2.setNumThreads(int(threads))
                self.net = cv2.dnn.readNetFromONNX(str(path))
        except ImportError:
            raise detector_lib.ModelError(
                "onnxruntime is not installed: pip install onnxruntime, or use backend='opencv'"
            ) from None
        except Exception as error:  # noqa: BLE001 - any load failure is the file's problem
            raise detector_lib.ModelError(
                f"{path}: {backend} cannot load the ONNX model ({' '.join(str(error).split())})"
            ) from None

    def infer(self, batch, score_threshold):
        batch = np.ascontiguousarray(batch, np.float32)
        if self.backend == "onnxruntime":
            logits, deltas = self.session.run(list(OUTPUT_NAMES), {self._input_name: batch})
            return logits, deltas
        logits, deltas = [], []
        for image in batch:
            self.net.setInput(image[None])
            values = self.net.forward(list(OUTPUT_NAMES))
            logits.append(values[0][0])
            deltas.append(values[1][0])
        return np.stack(logits), np.stack(deltas)


def resize_image(image, size):
    """Resizes an image to ``size x size`` as training did (:func:`platelab.model.resize_image`).

    Args:
        image: ``(H, W, C)`` uint8 array (any strides)
        size: the output side in pixels

    Returns:
        ``(size, size, C)`` float32
    """
    return model_lib.resize_image(image, size)


def detection_gaps(first, second):
    """How far two detection lists of the same classes are apart, whatever their order.

    Args:
        first, second: :meth:`Predictor.predict` results for one image, with the same
            multiset of classes

    Returns:
        ``(score_gap, box_gap)``: the largest difference between the sorted scores of a
        class, and the largest coordinate distance (pixels) from a box to the nearest
        box of its class in the other list
    """
    score_gap = box_gap = 0.0
    for class_id in np.unique(first["classes"]):
        ours = first["classes"] == class_id
        theirs = second["classes"] == class_id
        score_gap = max(
            score_gap,
            float(
                np.max(np.abs(np.sort(first["scores"][ours]) - np.sort(second["scores"][theirs])))
            ),
        )
        distances = np.abs(first["boxes"][ours][:, None, :] - second["boxes"][theirs][None, :, :])
        box_gap = max(box_gap, float(np.max(np.min(distances.max(axis=2), axis=1))))
    return score_gap, box_gap


def load_representative(source, geometry, count=REPRESENTATIVE_COUNT, progress=False):
    """Reads int8 calibration images, resized to the model input.

    Args:
        source: a merged dataset folder (``tfrecords/train.tfrecord``), a ``.tfrecord``
            file, a folder of images (searched recursively), or a list of RGB uint8 arrays
        geometry: the model's :class:`platelab.model.InputGeometry` (or a square side:
            the image squashed into it)
        count: images used, at most (evenly spaced over the source)
        progress: show a progress bar

    Returns:
        a list of ``(S, S, 3)`` float32 arrays (pixels 0-255)

    Raises:
        ExportError: the source is missing, unreadable, or holds no image
    """
    if isinstance(source, (list, tuple)):
        images = [np.asarray(image) for image in source]
        name = "the representative images"
    else:
        path = Path(source)
        name = str(path)
        if not path.exists():
            raise ExportError(f"{path}: no such representative data (file or folder)")
        record_file = path / "tfrecords" / "train.tfrecord" if path.is_dir() else path
        if record_file.is_file() and record_file.suffix == ".tfrecord":
            images = _tfrecord_images(record_file, count)
        elif path.is_dir():
            images = _folder_images(path, count)
        else:
            raise ExportError(
                f"{path}: representative data must be a merged dataset folder, a .tfrecord "
                "file or a folder of images"
            )
    if not isinstance(geometry, model_lib.InputGeometry):
        geometry = model_lib.InputGeometry(geometry, geometry, "squash")
    if not images:
        raise ExportError(
            f"{name}: the representative set is empty (no image): int8 calibration needs "
            "images like the ones the model will see (e.g. the merged dataset's train split)"
        )
    chosen = np.linspace(0, len(images) - 1, min(count, len(images))).round().astype(int)
    resized = []
    for index in tqdm(chosen, desc="representative images", disable=not progress, leave=False):
        _check_image(images[index])
        resized.append(geometry.prepare(images[index]))
    logger.info("int8 calibration on %d images from %s", len(resized), name)
    return resized


def add_export_arguments(parser):
    """Adds the ``platelab export`` arguments to an argparse (sub)parser and sets its handler.

    Usage: ``add_export_arguments(commands.add_parser("export", help=...))``; the parsed
    namespace's ``handler`` is :func:`run_export_command`.
    """
    parser.description = (
        "Export a trained detector (a training run folder) to a SavedModel, TFLite or ONNX "
        "folder with a model card."
    )
    parser.add_argument("--model", required=True, metavar="RUN_DIR", help="training run folder")
    parser.add_argument("--format", required=True, choices=FORMATS, help="export format")
    parser.add_argument(
        "--quantize",
        default="none",
        choices=("none", "float16", "int8"),
        help="TFLite only: float16 weights, or full-integer int8 (default: none, float32)",
    )
    parser.add_argument("--out", required=True, metavar="PATH", help="the folder to write")
    parser.add_argument(
        "--representative",
        metavar="PATH",
        help="int8 calibration images: merged dataset folder, .tfrecord file or image "
        "folder (default: the run's training dataset)",
    )
    parser.add_argument(
        "--representative-count",
        type=int,
        default=REPRESENTATIVE_COUNT,
        metavar="N",
        help=f"calibration images used, at most ({REPRESENTATIVE_COUNT})",
    )
    parser.add_argument(
        "--which", default="best", choices=("best", "last"), help="which model of the run"
    )
    parser.add_argument("--force", action="store_true", help="export a run that is still training")
    parser.set_defaults(handler=run_export_command)
    return parser


def run_export_command(args):
    """Runs ``platelab export`` from parsed arguments; prints where the export went.

    Returns:
        the exit status, 0

    Raises:
        ValueError: bad arguments or input (the CLI prints it as one line)
    """
    card = export(
        args.model,
        args.format,
        args.out,
        quantize=args.quantize,
        representative=args.representative,
        which=args.which,
        force=args.force,
        representative_count=args.representative_count,
    )
    size = card["export"]["size_bytes"] / 1e6
    check = card["verification"]
    print(
        f"exported {args.format} ({args.quantize}) to {card['model_path']}: {size:.1f} MB, "
        f"{card['export']['seconds']:.0f} s; detections "
        f"{'match' if check['same_detections'] else 'differ from'} the Keras model's "
        f"(largest score difference {check['max_abs_diff_scores']:.2g}); model card "
        f"{Path(card['path']) / CARD_MARKDOWN}"
    )
    return 0


def main_export(argv=None):
    """``python -m platelab.deploy.export``: the ``platelab export`` command on its own."""
    parser = add_export_arguments(argparse.ArgumentParser(prog="platelab export"))
    args = parser.parse_args(argv)
    return args.handler(args)


# ---------------------------------------------------------------------------- helpers


@dataclasses.dataclass
class _IoSpec:
    """What an export takes and returns (for the model card)."""

    inputs: dict
    outputs: dict
    nms: str
    tools: dict


def _check_format(fmt, quantize):
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if quantize not in QUANTIZATIONS[fmt]:
        offered = ", ".join(QUANTIZATIONS[fmt])
        hint = " (float16 and int8 are offered for tflite)" if fmt != "tflite" else ""
        raise ExportError(
            f"{fmt} export does not offer quantize={quantize!r}: choose {offered}{hint}"
        )


def _check_output_folder(out):
    if out.is_file():
        raise ExportError(f"{out}: is a file; the export output is a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / CARD_JSON).is_file():
        raise ExportError(
            f"{out}: the folder exists and is not an earlier export (no {CARD_JSON}); "
            "choose another --out or empty it"
        )


def _dataset_source(config):
    dataset = config.get("dataset")
    if dataset and (Path(dataset) / "tfrecords" / "train.tfrecord").is_file():
        return Path(dataset)
    raise ExportError(
        "int8 export needs representative images and the run's dataset "
        f"({dataset or 'not recorded'}) has no tfrecords/train.tfrecord: pass representative "
        "(--representative) a merged dataset folder, a .tfrecord file or a folder of images"
    )


def _tfrecord_images(path, count):
    tf = import_tensorflow()
    images = []
    total = sum(1 for _ in tf.data.TFRecordDataset(str(path)))
    wanted = set(np.linspace(0, total - 1, min(count, total)).round().astype(int).tolist())
    try:
        for index, raw in enumerate(tf.data.TFRecordDataset(str(path))):
            if index not in wanted:
                continue
            example = tf.train.Example.FromString(raw.numpy())
            encoded = example.features.feature["image/encoded"].bytes_list.value
            if not encoded:
                continue
            image = cv2.imdecode(np.frombuffer(encoded[0], np.uint8), cv2.IMREAD_COLOR)
            if image is not None:
                images.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    except tf.errors.OpError as error:
        raise ExportError(f"{path}: not a readable TFRecord file ({error.message})") from None
    return images


def _folder_images(folder, count):
    files = sorted(
        path
        for path in folder.rglob("*")
        if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS
    )
    if not files:
        return []
    chosen = np.linspace(0, len(files) - 1, min(count, len(files))).round().astype(int)
    images = []
    for index in sorted(set(chosen.tolist())):
        image = cv2.imread(str(files[index]), cv2.IMREAD_COLOR)
        if image is None:
            logger.warning("%s: unreadable image, left out of the representative set", files[index])
            continue
        images.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    return images


def _write_saved_model(keras_detector, staging):
    tf = import_tensorflow()
    module = _detection_module(tf, keras_detector)
    detect = module.detect.get_concrete_function()
    serve = module.serve.get_concrete_function()
    tf.saved_model.save(
        module, str(staging), signatures={"serving_default": serve, "detect": detect}
    )
    size = keras_detector.max_detections
    return _IoSpec(
        inputs={
            "images": {"dtype": "uint8", "shape": [None, None, None, 3], "layout": "NHWC RGB"},
            "score_threshold": {"dtype": "float32", "shape": [], "signature": "detect only"},
        },
        outputs={
            "boxes": {
                "dtype": "float32",
                "shape": [None, size, 4],
                "meaning": "[xmin, ymin, xmax, ymax] normalised to [0, 1]",
            },
            "scores": {"dtype": "float32", "shape": [None, size]},
            "classes": {"dtype": "int32", "shape": [None, size], "meaning": "1-based class ids"},
            "num_detections": {"dtype": "int32", "shape": [None]},
        },
        nms="inside the graph (platelab.model.nms_tf: tf.image.non_max_suppression per class)",
        tools={"tensorflow": tf.__version__},
    )


def _detection_module(tf, keras_detector):
    """The SavedModel's ``tf.Module``: uint8 images in, NMSed detections out."""
    geometry = keras_detector.geometry
    anchors = keras_detector.anchors
    iou = keras_detector.nms_iou
    max_detections = keras_detector.max_detections
    default_threshold = keras_detector.score_threshold
    images_spec = tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")
    threshold_spec = tf.TensorSpec([], tf.float32, name="score_threshold")

    class DetectionModule(tf.Module):
        def __init__(self, network):
            super().__init__(name="platelab_detector")
            self.network = network
            self.anchors = tf.constant(anchors)

        @tf.function(input_signature=[images_spec, threshold_spec])
        def detect(self, images, score_threshold):
            pixels = model_lib.letterbox_images_tf(images, geometry)
            outputs = self.network(pixels, training=False)
            scores = tf.nn.softmax(outputs["class_logits"], axis=-1)[..., 1:]
            boxes = model_lib.decode_predictions(outputs["box_deltas"], self.anchors)
            boxes = model_lib.boxes_to_image_fractions_tf(boxes, geometry, images)
            return model_lib.nms_tf(boxes, scores, score_threshold, iou, max_detections)

        @tf.function(input_signature=[images_spec])
        def serve(self, images):
            return self.detect(images, tf.constant(default_threshold, tf.float32))

    return DetectionModule(keras_detector.model)


def _write_tflite(keras_detector, staging, quantize, calibration):
    tf = import_tensorflow()
    height, width = keras_detector.geometry.shape
    with tempfile.TemporaryDirectory(prefix="platelab-export-") as scratch:
        raw_dir = Path(scratch) / "raw"
        _export_raw_saved_model(tf, keras_detector.model, (height, width), raw_dir)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(raw_dir))
        if quantize == "float16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        elif quantize == "int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: ([image[None]] for image in calibration)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.uint8
        try:
            flatbuffer = converter.convert()
        except Exception as error:  # noqa: BLE001 - the converter raises many kinds
            message = " ".join(str(error).split())[:500]
            raise ExportError(f"TFLite conversion ({quantize}) failed: {message}") from None
    (staging / MODEL_FILES["tflite"]).write_bytes(flatbuffer)
    input_dtype = "uint8" if quantize == "int8" else "float32"
    return _IoSpec(
        inputs={
            "image": {
                "dtype": input_dtype,
                "shape": [1, height, width, 3],
                "layout": "NHWC RGB, pixels 0-255",
            }
        },
        outputs=_raw_outputs_spec(keras_detector, batch=1),
        nms="outside the model (NumPy: platelab.model.postprocess_numpy)",
        tools={"tensorflow": tf.__version__},
    )


def _export_raw_saved_model(tf, network, shape, folder):
    """The network alone (fixed batch 1, fixed ``(height, width)``) as a SavedModel."""
    with contextlib.redirect_stdout(None):
        network.export(
            str(folder),
            format="tf_saved_model",
            verbose=False,
            input_signature=[tf.TensorSpec([1, *shape, 3], tf.float32, name="image")],
        )


def _write_onnx(keras_detector, staging):
    tf = import_tensorflow()
    try:
        import tf2onnx
    except ImportError:
        raise ExportError("ONNX export needs tf2onnx: pip install tf2onnx") from None
    height, width = keras_detector.geometry.shape
    network = keras_detector.model
    signature = (tf.TensorSpec([None, height, width, 3], tf.float32, name="image"),)

    @tf.function(input_signature=signature)
    def forward(image):
        outputs = network(image, training=False)
        return {name: outputs[name] for name in OUTPUT_NAMES}

    try:
        tf2onnx.convert.from_function(
            forward,
            input_signature=signature,
            opset=ONNX_OPSET,
            output_path=str(staging / MODEL_FILES["onnx"]),
        )
    except Exception as error:  # noqa: BLE001 - tf2onnx raises many kinds
        message = " ".join(str(error).split())[:500]
        raise ExportError(f"ONNX conversion with tf2onnx failed: {message}") from None
    import onnx

    return _IoSpec(
        inputs={
            "image": {
                "dtype": "float32",
                "shape": [None, height, width, 3],
                "layout": "NHWC RGB, pixels 0-255",
            }
        },
        outputs=_raw_outputs_spec(keras_detector, batch=None),
        nms="outside the model (NumPy: platelab.model.postprocess_numpy)",
        tools={
            "tensorflow": tf.__version__,
            "tf2onnx": tf2onnx.__version__,
            "onnx": onnx.__version__,
            "opset": ONNX_OPSET,
        },
    )


def _raw_outputs_spec(keras_detector, batch):
    anchors = len(keras_detector.anchors)
    classes = len(keras_detector.labels) + 1
    return {
        "class_logits": {
            "dtype": "float32",
            "shape": [batch, anchors, classes],
            "meaning": "logits, column 0 background; softmax gives the scores",
        },
        "box_deltas": {
            "dtype": "float32",
            "shape": [batch, anchors, 4],
            "meaning": "SSD deltas (centre y, centre x, log h, log w) / variances "
            f"{list(model_lib.BOX_VARIANCE)} against the anchors",
        },
    }


def _model_card(keras_detector, config, state, run_folder, model_file, fmt, quantize, io_spec):
    net = keras_detector.model
    now = datetime.datetime.now(datetime.timezone.utc)
    training_keys = ("steps", "batch_size", "learning_rate", "weight_decay", "seed", "augment")
    training = config.get("training") or {}
    metrics = _read_metrics(run_folder)
    return {
        "format": CARD_FORMAT,
        "name": net.name,
        "exported_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "platelab_version": __version__,
        "export": {
            "format": fmt,
            "quantize": quantize,
            "file": MODEL_FILES[fmt],
            "inputs": io_spec.inputs,
            "outputs": io_spec.outputs,
            "nms": io_spec.nms,
            "tools": io_spec.tools,
        },
        "model": {
            "architecture": "SSDLite, MobileNetV2 backbone",
            "width": config.get("width"),
            "input_size": keras_detector.input_size,
            "infer_size": [keras_detector.geometry.width, keras_detector.geometry.height],
            "resize": keras_detector.geometry.mode,
            "infer_margin": keras_detector.geometry.margin,
            "infer_max_scale": keras_detector.geometry.max_scale,
            "levels": config.get("levels"),
            "anchors": config["anchors"],
            "num_anchors": len(keras_detector.anchors),
            "labels": keras_detector.labels,
            "parameters": int(net.count_params()),
            "score_threshold": keras_detector.score_threshold,
            "nms_iou": keras_detector.nms_iou,
            "max_detections": keras_detector.max_detections,
            "tta": keras_detector.tta,
        },
        "preprocessing": (
            f"RGB uint8 image; {keras_detector.geometry.describe()}: "
            "area averaging when shrinking (cv2.INTER_AREA, rounded), bilinear when enlarging "
            "(platelab.model.InputGeometry.prepare), float32 "
            "pixels 0-255 (uint8 for int8 TFLite); the network rescales to [-1, 1] itself"
        ),
        "postprocessing": (
            "softmax over background + classes; boxes decoded from the deltas against the "
            "anchors; per-class NMS at IoU "
            f"{keras_detector.nms_iou:g}, at most {keras_detector.max_detections} detections; "
            f"NMS {io_spec.nms}"
            + (
                "; test-time augmentation (tta flip): each image is also run mirrored, the "
                "mirror's boxes flipped back and fused with the image's (platelab.tta.merge), "
                "two forward passes an image"
                if keras_detector.tta == "flip"
                else ""
            )
        ),
        "operating_threshold": keras_detector.score_threshold,
        "training": {
            "run_dir": paths.display(run_folder),
            "model_file": paths.display(model_file),
            "status": state.get("status"),
            "step": state.get("step"),
            "best_step": state.get("best_step"),
            "best_map": state.get("best_map"),
            "keep": state.get("keep", "map"),
            "dataset": paths.relative_text(str(config.get("dataset") or "")) or None,
            "dataset_fingerprint": config.get("dataset_fingerprint"),
            "train_images": config.get("train_images"),
            "val_images": config.get("val_images"),
            "parameters": {key: training[key] for key in training_keys if key in training},
        },
        "metrics": metrics,
        "intended_use": INTENDED_USE,
        "limitations": list(LIMITATIONS)
        + (
            ["int8 quantisation: scores and boxes differ slightly from the float model's."]
            if quantize == "int8"
            else []
        ),
    }


def _read_metrics(run_folder):
    path = Path(run_folder) / "metrics.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        logger.warning("%s: unreadable, left out of the model card (%s)", path, error)
        return None


def _file_facts(staging, fmt):
    if fmt == "saved_model":
        files = [path for path in staging.rglob("*") if path.is_file()]
        size = sum(path.stat().st_size for path in files)
        digest = sha256_file(staging / MODEL_FILES[fmt])
    else:
        size = (staging / MODEL_FILES[fmt]).stat().st_size
        digest = sha256_file(staging / MODEL_FILES[fmt])
    return {"size_bytes": size, "sha256": digest}


def _verify(keras_detector, staging, card, calibration):
    """Loads the fresh export and compares it with the Keras model on a few images.

    Returns:
        ``images``, ``backends``, ``same_detections`` (same count and classes at score
        0.05), ``max_abs_diff_scores``, ``max_abs_diff_boxes_px`` and, for raw-output
        formats, ``max_abs_diff_class_logits`` and ``max_abs_diff_box_deltas``
    """
    height, width = keras_detector.geometry.shape
    size = (width, height)
    if calibration:
        images = [np.round(image).astype(np.uint8) for image in calibration[:4]]
    else:
        rng = np.random.default_rng(0)
        base = cv2.GaussianBlur(
            rng.integers(0, 256, (height, width, 3)).astype(np.uint8), (0, 0), 2
        )
        images = [base, np.ascontiguousarray(255 - base)]
    fmt = card["export"]["format"]
    model_path = staging / MODEL_FILES[fmt]
    if fmt == "saved_model":
        predictors = [SavedModelPredictor(card, staging)]
    elif fmt == "tflite":
        predictors = [TFLitePredictor(card, model_path)]
    else:
        predictors = [OnnxPredictor(card, model_path, backend="opencv")]
        if _has_module("onnxruntime"):
            predictors.append(OnnxPredictor(card, model_path, backend="onnxruntime"))
    reference_predictor = KerasPredictor(keras_detector)
    outputs = keras_detector.model(reference_predictor.preprocess(images), training=False)
    reference_raw = tuple(np.asarray(outputs[name]) for name in OUTPUT_NAMES)
    reference = reference_predictor.postprocess(reference_raw, [size] * len(images), 0.05)
    result = {"images": len(images), "backends": [], "same_detections": True}
    worst = {"scores": 0.0, "boxes_px": 0.0, "class_logits": 0.0, "box_deltas": 0.0}
    for predictor in predictors:
        result["backends"].append(predictor.backend)
        raw = predictor.infer(predictor.preprocess(images), 0.05)
        if fmt != "saved_model":
            worst["class_logits"] = max(
                worst["class_logits"], float(np.max(np.abs(raw[0] - reference_raw[0])))
            )
            worst["box_deltas"] = max(
                worst["box_deltas"], float(np.max(np.abs(raw[1] - reference_raw[1])))
            )
        detections = predictor.postprocess(raw, [size] * len(images), 0.05)
        for ours, theirs in zip(detections, reference, strict=True):
            if sorted(ours["classes"]) != sorted(theirs["classes"]):
                result["same_detections"] = False
                continue
            score_gap, box_gap = detection_gaps(ours, theirs)
            worst["scores"] = max(worst["scores"], score_gap)
            worst["boxes_px"] = max(worst["boxes_px"], box_gap)
    for key, value in worst.items():
        if fmt != "saved_model" or key in ("scores", "boxes_px"):
            result[f"max_abs_diff_{key}"] = value
    return result


def _write_card(staging, card):
    (staging / CARD_JSON).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    (staging / CARD_MARKDOWN).write_text(_card_markdown(card), encoding="utf-8")


def _card_markdown(card):
    model, export_facts, training = card["model"], card["export"], card["training"]
    lines = [
        f"# Model card: {card['name']} ({export_facts['format']}, {export_facts['quantize']})",
        "",
        f"Exported {card['exported_at']} by platelab {card['platelab_version']} from "
        f"`{training['model_file']}`.",
        "",
        "## Model",
        "",
        f"- Architecture: {model['architecture']}, width {model['width']}, "
        f"{model['parameters']:,} parameters",
        f"- Input: RGB, {_input_text(model)}",
        f"- Labels (class id = position + 1): {', '.join(model['labels'])}",
        f"- Anchors: {model['num_anchors']} over strides {model['levels']}",
        f"- Operating threshold: {card['operating_threshold']:g} (score); NMS IoU "
        f"{model['nms_iou']:g}; at most {model['max_detections']} detections",
        "",
        "## Files and tensors",
        "",
        f"- Model: `{export_facts['file']}` ({export_facts['size_bytes'] / 1e6:.2f} MB, "
        f"sha256 `{export_facts['sha256'][:16]}...`)",
    ]
    for kind in ("inputs", "outputs"):
        for name, spec in export_facts[kind].items():
            meaning = f": {spec['meaning']}" if spec.get("meaning") else ""
            layout = f" {spec['layout']}" if spec.get("layout") else ""
            lines.append(f"- {kind[:-1]} `{name}` {spec['dtype']} {spec['shape']}{layout}{meaning}")
    lines += [
        f"- NMS: {export_facts['nms']}",
        f"- Tools: {', '.join(f'{key} {value}' for key, value in export_facts['tools'].items())}",
        "",
        "## Preprocessing",
        "",
        card["preprocessing"] + ".",
        "",
        "## Postprocessing",
        "",
        card["postprocessing"] + ".",
        "",
        "## Training data",
        "",
        f"- Dataset: {training.get('dataset') or 'not recorded'}",
        f"- Images: {training.get('train_images')} train, {training.get('val_images')} val",
        f"- Run: `{training['run_dir']}`, status {training.get('status')}, step "
        f"{training.get('step')}, kept step {training.get('best_step')} (by "
        f"{detector_lib.KEEP_METRICS.get(training.get('keep', 'map'), training.get('keep'))}; validation mAP "
        f"{_number(training.get('best_map'))})",
    ]
    if training.get("parameters"):
        lines.append(
            "- Training parameters: "
            + ", ".join(f"{key} {value}" for key, value in training["parameters"].items())
        )
    lines += ["", "## Metrics", ""]
    if model.get("tta") == "flip":
        lines += [
            "With `tta: flip`, stage 07's figures (`test_metrics`, `heldout_metrics`) fuse "
            "each image with its mirror, as this export does; `val_metrics` were scored "
            "during training, in one pass.",
            "",
        ]
    lines += _metrics_markdown(card.get("metrics"), model["labels"])
    check = card.get("verification") or {}
    if check:
        figures = ", ".join(
            f"{key.removeprefix('max_abs_diff_').replace('_', ' ')} {_number(check[key])}"
            for key in check
            if key.startswith("max_abs_diff_")
        )
        lines += [
            "",
            "## Export check",
            "",
            f"On {check['images']} images ({', '.join(check['backends'])}): "
            + (
                "the same detections as the Keras model at score 0.05"
                if check["same_detections"]
                else "some detections at score 0.05 differ from the Keras model's"
                + (
                    f" (expected with {export_facts['quantize']} quantisation)"
                    if export_facts["quantize"] != "none"
                    else ""
                )
            )
            + f"; largest differences: {figures}.",
        ]
    lines += ["", "## Intended use", "", card["intended_use"], "", "## Known limits", ""]
    lines += [f"- {item}" for item in card["limitations"]]
    return "\n".join(lines) + "\n"


def _metrics_markdown(metrics, labels):
    if not metrics:
        return ["No metrics.json in the run folder: evaluate the model (07_analyze) for figures."]
    blocks = _per_class_blocks(metrics)
    if not blocks:
        return ["metrics.json holds no per-class figures; see model_card.json for its content."]
    lines = []
    for name, block in blocks:
        lines += [
            f"{name} (operating point at score {block.get('score_threshold', 'n/a')}):",
            "",
            "| class | AP50 | AP | precision | recall | F1 | ground truth |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for label in [*labels, *(key for key in block["per_class"] if key not in labels)]:
            entry = block["per_class"].get(label)
            if entry is None:
                continue
            lines.append(
                f"| {label} | {_number(entry.get('AP50'))} | {_number(entry.get('AP'))} | "
                f"{_number(entry.get('precision'))} | {_number(entry.get('recall'))} | "
                f"{_number(entry.get('F1'))} | {entry.get('num_gt', '')} |"
            )
        lines += [
            f"| all | {_number(block.get('AP50'))} | {_number(block.get('AP'))} | "
            f"{_number(block.get('precision'))} | {_number(block.get('recall'))} | "
            f"{_number(block.get('F1'))} | {block.get('num_gt', '')} |",
            "",
        ]
    return lines[:-1]


def _per_class_blocks(metrics, name="metrics", depth=0):
    """The evaluation documents (dicts with ``per_class``) in a metrics.json, with their keys."""
    if not isinstance(metrics, dict) or depth > 3:
        return []
    if isinstance(metrics.get("per_class"), dict):
        return [(name, metrics)]
    blocks = []
    for key, value in metrics.items():
        blocks += _per_class_blocks(value, key, depth + 1)
    return blocks


def _number(value):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.3f}" if isinstance(value, float) else str(value)
    return "n/a" if value is None else str(value)


def _input_text(model):
    """The card's input size in words (letterboxed rectangle, or a squashed square)."""
    if model.get("infer_size"):
        width, height = model["infer_size"]
        margin = int(model.get("infer_margin") or 0)
        padded = f", a {margin} px margin round the frame" if margin else ""
        cap = model.get("infer_max_scale")
        capped = f", never scaled by more than {cap:g}" if cap is not None else ""
        return f"{width}x{height}, {model.get('resize', 'letterbox')}{padded}{capped}"
    return f"{model['input_size']}x{model['input_size']}, squash"


@functools.lru_cache(maxsize=64)
def _scale(width, height):
    return np.array([width, height, width, height], dtype=np.float32)


def _check_image(image):
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", type(image).__name__)
        raise ValueError(f"images must be (H, W, 3) uint8 RGB arrays, got {shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"images must be uint8 RGB arrays, got {image.dtype}")


def _has_module(name):
    import importlib.util

    return importlib.util.find_spec(name) is not None


@contextlib.contextmanager
def _quiet_tensorflow_info():
    """TensorFlow's INFO lines ("Assets written to: ...") kept out of logs and reports."""
    tf_logger = logging.getLogger("tensorflow")
    level = tf_logger.level
    tf_logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        tf_logger.setLevel(level)


def _tflite_interpreter_class():
    """LiteRT's interpreter where installed, else TensorFlow's (deprecated, still there)."""
    with contextlib.suppress(ImportError):
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter
    import warnings

    tf = import_tensorflow()
    warnings.filterwarnings("ignore", message=r"(?s).*tf\.lite\.Interpreter is deprecated")
    return tf.lite.Interpreter


if __name__ == "__main__":
    sys.exit(main_export())
