"""SSD detector with a MobileNetV2 backbone and SSDLite heads, plus its anchors and input geometry.

Conventions used throughout:

* Boxes are ``[xmin, ymin, xmax, ymax]`` as fractions of the network input (0 to 1),
  the layout of the TFRecords' ``image/object/bbox/*`` features. How an image maps
  onto the network input is its :class:`InputGeometry`: ``letterbox`` (aspect kept,
  the image at the top left, black padding right and below; the default) or
  ``squash`` (the whole image stretched to a square; runs with a square input).
* Class ids follow the label map: 0 is background, ``platelab.LABELS[i]`` is ``i + 1``.
* Anchors are listed level by level (finest stride first), then row by row, column
  by column, and anchor shape by anchor shape: the order of the model's outputs.

An *anchor spec* is a JSON-serialisable dict::

    {"levels": [8, 16, 32, 64],                # strides in input pixels
     "unit": "px",                              # shapes in network-input pixels
     "shapes": [[[w, h], ...], ...]}            # per level, anchor sizes

A spec without ``"unit"`` gives its shapes as fractions of a square input.
:func:`generic_anchor_spec` covers every scale on every level whatever the
training boxes (the default); :func:`anchors_from_boxes` fits shapes to training
boxes; :func:`generate_anchors` lays a spec out over the feature grids of an input
of any size.

TensorFlow and Keras are imported inside the functions that need them: importing
them takes seconds.
"""

import contextlib
import functools
import io
import logging
import math
import os
import sys
import warnings
from pathlib import Path

import numpy as np

from platelab.boxes import greedy_nms
from platelab.tfimport import import_keras, import_tensorflow

logger = logging.getLogger(__name__)

BOX_VARIANCE = (0.1, 0.1, 0.2, 0.2)
"""Scales of the (center y, center x, height, width) deltas, as in the original SSD."""

BACKBONE_LAYERS = {8: "block_6_expand_relu", 16: "block_13_expand_relu", 32: "out_relu"}
"""MobileNetV2 layers that give the stride-8, -16 and -32 features (as in SSDLite)."""

IMAGENET_WIDTHS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
"""Widths (alpha) Keras has ImageNet weights for."""

ANCHOR_SCALE = 4.0
"""A level's nominal anchor size in strides when fitting anchors to boxes."""

GENERIC_ANCHOR_SCALE = 3.0
"""A level's nominal anchor side in strides for :func:`generic_anchor_spec`: stride 8
gives 24 px, so that an 8 px high plate still overlaps a stride-8 anchor."""

GENERIC_ASPECT_RATIOS = (1.0, 2.0, 4.0)
"""Width / height of the generic anchors: square (vehicles), 2:1 (US plates, buses
side on) and 4:1 (EU plates)."""

PAD_VALUE = 0
"""Pixel value of the letterbox padding (training's zoom-out canvas uses the same)."""


def build_ssd(
    num_classes=2,
    input_size=320,
    width=1.0,
    anchors=None,
    weights="imagenet",
    levels=(8, 16, 32, 64),
):
    """Builds an SSDLite detector on a Keras MobileNetV2 backbone.

    The model takes ``(batch, height, width, 3)`` images with pixel values 0 to 255 (it
    rescales them itself) and returns a dict:

    * ``"class_logits"``: ``(batch, num_anchors, num_classes + 1)``, column 0 background
    * ``"box_deltas"``: ``(batch, num_anchors, 4)``, see :func:`decode_predictions`

    with ``num_anchors == len(generate_anchors(anchors, (height, width)))``. The network
    is fully convolutional: built with ``input_size=None`` it takes any height and width
    that are multiples of the largest stride (training on square crops, inference on
    whole 16:9 frames, see :class:`InputGeometry`). The backbone
    is the nested model named ``"backbone"`` (freeze it with
    ``model.get_layer("backbone").trainable = False``).

    Args:
        num_classes: object classes, background not counted
        input_size: side of the square input in pixels (a multiple of 32), a
            ``(height, width)`` pair, or None for any size
        width: MobileNetV2 width multiplier (alpha)
        anchors: an anchor spec (see the module docstring); None for
            :func:`default_anchor_spec` over ``levels``
        weights: ``"imagenet"`` (Keras's ImageNet weights, downloaded once into
            ``~/.keras/models``), None (random initialisation) or the path of a
            MobileNetV2 weights file of the same width (such as Keras's ``*_no_top.h5``)
        levels: strides of the feature levels: 8, 16, 32 come from the backbone,
            64, 128, ... from extra SSDLite blocks

    Returns:
        the uncompiled ``keras.Model``

    Raises:
        ValueError: bad sizes, levels or anchors, or a weights path that does not exist
        RuntimeError: the ImageNet weights could not be downloaded (the message says
            which file to place where)
    """
    keras = import_keras()
    from keras import layers

    levels = _check_levels(levels)
    shape = _input_shape(input_size)
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    if anchors is None:
        anchors = generic_anchor_spec(levels)
    _check_spec(anchors)
    if list(anchors["levels"]) != list(levels):
        raise ValueError(f"anchor spec levels {anchors['levels']} differ from levels {levels}")
    if weights is not None and weights != "imagenet":
        weights_path = Path(weights).expanduser()
        if not weights_path.is_file():
            raise ValueError(f"MobileNetV2 weights file {weights_path} does not exist")
        weights = str(weights_path)

    backbone = _mobilenet_v2(keras, shape, width, weights)
    wanted = [stride for stride in (8, 16, 32) if stride in levels or stride == 32]
    extractor = keras.Model(
        backbone.input,
        [backbone.get_layer(BACKBONE_LAYERS[stride]).output for stride in wanted],
        name="backbone",
    )

    inputs = keras.Input((*shape, 3), name="image")
    scaled = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="scale_pixels")(inputs)
    features = dict(zip(wanted, extractor(scaled), strict=True))
    feature = features[32]
    for stride in range(6, int(math.log2(max(levels))) + 1):
        feature = _extra_block(layers, feature, _channels(512 * width), f"extra_{2**stride}")
        features[2**stride] = feature

    class_logits, box_deltas = _heads(layers, features, levels, anchors, num_classes)
    model = keras.Model(
        inputs,
        {"class_logits": class_logits, "box_deltas": box_deltas},
        name=f"ssdlite_mobilenetv2_{width:g}_" + ("x".join(map(str, shape)) if shape[0] else "any"),
    )
    logger.info("built %s: %d parameters", model.name, model.count_params())
    return model


def _heads(layers, features, levels, anchors, num_classes):
    """SSDLite class and box heads on every level with anchors, flattened and joined.

    Returns:
        ``(class_logits, box_deltas)`` Keras tensors, ``(batch, anchors, classes + 1)``
        and ``(batch, anchors, 4)``, levels in order
    """
    class_outputs, box_outputs = [], []
    for level_index, stride in enumerate(levels):
        count = len(anchors["shapes"][level_index])
        if count == 0:
            continue
        name = f"level_{stride}"
        class_map = _ssdlite_head(
            layers, features[stride], count * (num_classes + 1), name + "_cls"
        )
        box_map = _ssdlite_head(layers, features[stride], count * 4, name + "_box")
        class_outputs.append(
            layers.Reshape((-1, num_classes + 1), name=name + "_cls_flat")(class_map)
        )
        box_outputs.append(layers.Reshape((-1, 4), name=name + "_box_flat")(box_map))
    if not class_outputs:
        raise ValueError("the anchor spec has no anchors on any level")
    if len(class_outputs) > 1:
        return (
            layers.Concatenate(axis=1, name="class_logits")(class_outputs),
            layers.Concatenate(axis=1, name="box_deltas")(box_outputs),
        )
    return (
        layers.Identity(name="class_logits")(class_outputs[0]),
        layers.Identity(name="box_deltas")(box_outputs[0]),
    )


def all_layers(net):
    """Yields a model's layers, those of nested models (the backbone) one by one."""
    for layer in net.layers:
        if hasattr(layer, "layers") and layer.layers:
            yield from layer.layers
        else:
            yield layer


def batch_norm_layers(net):
    """A model's batch-normalization layers, those of nested models included."""
    return [layer for layer in all_layers(net) if "BatchNormalization" in type(layer).__name__]


def copy_layer_weights(net, weights, skip=()):
    """Sets each layer's weights where ``weights`` has them in the same shapes.

    The one home for loading weights by layer name: a starter's
    (:func:`platelab.starter.apply`) and a previous run's (``init: <run folder>``).

    Args:
        net: the Keras model to fill (nested models' layers included, :func:`all_layers`)
        weights: ``layer name -> [arrays]`` in the layer's ``get_weights()`` order
        skip: layer-name suffixes never copied (e.g. class layers of other labels)

    Returns:
        ``(copied, reset)``: the number of layers set, and the names of the layers with
        weights left as built (absent, skipped, or of other shapes)
    """
    copied, reset = 0, []
    for layer in all_layers(net):
        if not layer.weights:
            continue
        theirs = weights.get(layer.name)
        mine = layer.get_weights()
        if (
            theirs is None
            or any(layer.name.endswith(suffix) for suffix in skip)
            or len(theirs) != len(mine)
            or any(a.shape != b.shape for a, b in zip(theirs, mine, strict=True))
        ):
            reset.append(layer.name)
            continue
        layer.set_weights([a.astype(b.dtype) for a, b in zip(theirs, mine, strict=True)])
        copied += 1
    return copied, reset


def default_anchor_spec(input_size, levels=(8, 16, 32, 64), aspect_ratios=(1.0, 2.0, 4.7)):
    """A generic anchor spec: each level gets ``aspect_ratios`` (width / height).

    Every anchor has the level's nominal area (``ANCHOR_SCALE`` strides squared).

    Args:
        input_size: side of the square model input in pixels
        levels: strides of the feature levels
        aspect_ratios: width / height of the anchors on every level

    Returns:
        the anchor spec
    """
    levels = _check_levels(levels)
    shapes = []
    for stride in levels:
        side = ANCHOR_SCALE * stride / input_size
        shapes.append(
            [[side * math.sqrt(ratio), side / math.sqrt(ratio)] for ratio in aspect_ratios]
        )
    return {"levels": list(levels), "shapes": shapes}


def anchors_from_boxes(boxes_wh, input_size, levels=(8, 16, 32, 64), per_level=3, seed=0):
    """Derives anchor shapes from training boxes.

    Each box goes to the level whose nominal size (``ANCHOR_SCALE`` strides) is
    nearest its size ``sqrt(w * h)`` on a log scale; each level's boxes are then
    clustered by k-means on ``(log w, log h)`` into at most ``per_level`` shapes (the
    cluster centres). A level that gets no box gets no anchors (and no head).

    Args:
        boxes_wh: ``(M, 2)`` box widths and heights as fractions of the image
        input_size: side of the square model input in pixels
        levels: strides of the feature levels
        per_level: anchor shapes per level, at most
        seed: seed of the k-means initialisation

    Returns:
        the anchor spec

    Raises:
        ValueError: no boxes, or boxes with a width or height that is not positive
    """
    levels = _check_levels(levels)
    boxes_wh = _check_boxes_wh(boxes_wh)
    if per_level < 1:
        raise ValueError(f"per_level must be at least 1, got {per_level}")
    log_size = 0.5 * np.log(boxes_wh[:, 0] * boxes_wh[:, 1] * input_size**2)
    nominal = np.log(ANCHOR_SCALE * np.asarray(levels, dtype=float))
    level_of_box = np.argmin(np.abs(log_size[:, None] - nominal[None, :]), axis=1)
    shapes = []
    for level_index, stride in enumerate(levels):
        level_boxes = np.log(boxes_wh[level_of_box == level_index])
        if len(level_boxes) == 0:
            shapes.append([])
            continue
        centres = _kmeans(level_boxes, per_level, seed)
        centres = centres[np.argsort(centres[:, 0] - centres[:, 1])]  # by aspect ratio
        shapes.append([[float(w), float(h)] for w, h in np.exp(centres)])
        logger.debug("level %d: %d boxes, %d anchor shapes", stride, len(level_boxes), len(centres))
    return {"levels": list(levels), "shapes": shapes}


def anchor_fit(boxes_wh, anchor_spec):
    """How well the anchor shapes fit the boxes, ignoring positions.

    Args:
        boxes_wh: ``(M, 2)`` box widths and heights as fractions of the image
        anchor_spec: an anchor spec

    Returns:
        the mean over boxes of the best IoU between the box and any anchor shape,
        both centred on the same point (1.0 is a perfect fit)
    """
    _check_spec(anchor_spec)
    boxes_wh = _check_boxes_wh(boxes_wh)
    shapes = np.asarray([shape for level in anchor_spec["shapes"] for shape in level], dtype=float)
    intersection = np.minimum(boxes_wh[:, None, 0], shapes[None, :, 0]) * np.minimum(
        boxes_wh[:, None, 1], shapes[None, :, 1]
    )
    union = (
        (boxes_wh[:, 0] * boxes_wh[:, 1])[:, None]
        + (shapes[:, 0] * shapes[:, 1])[None, :]
        - intersection
    )
    return float(np.mean(np.max(intersection / union, axis=1)))


def generic_anchor_spec(levels=(8, 16, 32, 64), aspect_ratios=GENERIC_ASPECT_RATIOS):
    """Anchors that cover every object scale on every level, whatever the training boxes.

    Each level gets one shape per aspect ratio (width / height), all of the nominal
    area ``(GENERIC_ANCHOR_SCALE * stride)`` squared, in network-input pixels. Because
    the shapes are pixels, not fractions, the same spec serves a 320x320 training crop
    and a 960x576 whole frame.

    Args:
        levels: strides of the feature levels
        aspect_ratios: width / height of the anchors on every level

    Returns:
        the anchor spec (``"unit": "px"``)
    """
    levels = _check_levels(levels)
    shapes = []
    for stride in levels:
        side = GENERIC_ANCHOR_SCALE * stride
        shapes.append(
            [[side * math.sqrt(ratio), side / math.sqrt(ratio)] for ratio in aspect_ratios]
        )
    return {"levels": list(levels), "unit": "px", "shapes": shapes}


def anchor_spec_in_pixels(anchor_spec, input_size):
    """An anchor spec with its shapes in network-input pixels.

    Args:
        anchor_spec: an anchor spec, in pixels already or in fractions of a square input
        input_size: the square input's side (used only for a spec in fractions)

    Returns:
        the spec with ``"unit": "px"``
    """
    _check_spec(anchor_spec)
    if anchor_spec.get("unit") == "px":
        return anchor_spec
    return {
        "levels": list(anchor_spec["levels"]),
        "unit": "px",
        "shapes": [
            [[w * input_size, h * input_size] for w, h in level] for level in anchor_spec["shapes"]
        ],
    }


def generate_anchors(anchor_spec, input_size):
    """Lays the anchor shapes out over each level's feature grid.

    A level's cell centres are at ``(i + 0.5) * stride`` pixels, which is where its
    stride-2 convolutions put them when the input's sides are multiples of the stride.

    Args:
        anchor_spec: an anchor spec (a spec in fractions needs a square input)
        input_size: the network input: the side of a square (a multiple of 32), or
            ``(height, width)``

    Returns:
        ``(N, 4)`` float32 anchors ``[xmin, ymin, xmax, ymax]`` (fractions of the
        input's width and height), in the model's output order
    """
    _check_spec(anchor_spec)
    height, width = _input_shape(input_size)
    if anchor_spec.get("unit") != "px":
        if height != width:
            raise ValueError(
                f"an anchor spec in fractions of a square input cannot serve a {width}x{height} input"
            )
        anchor_spec = anchor_spec_in_pixels(anchor_spec, height)
    all_anchors = []
    for stride, shapes in zip(anchor_spec["levels"], anchor_spec["shapes"], strict=True):
        if not shapes:
            continue
        rows, columns = _grid_size(height, stride), _grid_size(width, stride)
        centre_y, centre_x = np.meshgrid(
            (np.arange(rows, dtype=np.float64) + 0.5) / rows,
            (np.arange(columns, dtype=np.float64) + 0.5) / columns,
            indexing="ij",
        )
        shapes = np.asarray(shapes, dtype=np.float64)
        centre_x = centre_x[:, :, None]
        centre_y = centre_y[:, :, None]
        half_w = shapes[None, None, :, 0] / (2 * width)
        half_h = shapes[None, None, :, 1] / (2 * height)
        level = np.stack(
            np.broadcast_arrays(
                centre_x - half_w, centre_y - half_h, centre_x + half_w, centre_y + half_h
            ),
            axis=-1,
        )
        all_anchors.append(level.reshape(-1, 4))
    return np.concatenate(all_anchors).astype(np.float32)


def anchors_per_level(anchor_spec, input_size):
    """How many anchors each level contributes, in output order: ``[(stride, count), ...]``."""
    height, width = _input_shape(input_size)
    return [
        (stride, _grid_size(height, stride) * _grid_size(width, stride) * len(shapes))
        for stride, shapes in zip(anchor_spec["levels"], anchor_spec["shapes"], strict=True)
        if shapes
    ]


class InputGeometry:
    """How an image of any size becomes the network's input, and boxes come back.

    * ``letterbox``: the image is scaled by ``min((width - 2 * margin) / w, (height - 2 *
      margin) / h)`` (aspect kept), placed ``margin`` pixels from the top left of a
      ``height`` x ``width`` canvas and the rest padded with :data:`PAD_VALUE`. A box
      at network fractions ``(fx, fy)`` is at ``((fx * width - margin) / scale, (fy *
      height - margin) / scale)`` image pixels.
    * ``squash``: the whole image is resized to ``height`` x ``width`` (aspect not
      kept; runs with a square input).

    The margin is there because training crops are cut at native scale from the
    letterboxed frame and run past its edges onto padding: a vehicle the frame's edge
    cuts is learnt against padding. Without a margin, inference shows the frame's left,
    top and right edges at the input's border instead, and those vehicles scored lower
    (the session-15 ``full`` model on seeds 5151-5153, one pass: of the 497 vehicles the
    frame's left or right edge cut, 118 missed at the operating threshold, 92 with a
    32 px margin; vehicle AP50 0.930 without, 0.940 with).

    ``max_scale`` caps the letterbox scale: with 1.0 an image smaller than the input is
    placed at its own size, not enlarged (as YOLOv5's validation letterbox,
    ``scaleup=False``). A detector whose plates were learnt at traffic-camera sizes
    finds the plates of small close-ups at their own size, not enlarged past anything
    it saw (real EU close-ups of about 576x432, enlarged 1.67 times into a 1024 px
    input: AP50 0.866 uncapped, 0.971 capped at 1; README).

    Resizing is :func:`resize_image`'s (area averaging when shrinking).

    Args:
        width: network input width in pixels (a multiple of the largest stride)
        height: network input height in pixels
        mode: ``"letterbox"`` or ``"squash"``
        margin: padding in network pixels left of and above the image, and at least that
            much right of and below it (letterbox only)
        max_scale: the largest letterbox scale (network pixels per image pixel); None
            for none (letterbox only)
    """

    def __init__(self, width, height, mode="letterbox", margin=0, max_scale=None):
        if mode not in ("letterbox", "squash"):
            raise ValueError(f"unknown resize mode {mode!r} (letterbox or squash)")
        self.width, self.height, self.mode = int(width), int(height), mode
        self.margin = int(margin)
        self.max_scale = None if max_scale is None else float(max_scale)
        if self.margin and mode != "letterbox":
            raise ValueError("a margin needs the letterbox resize mode")
        if self.max_scale is not None and (mode != "letterbox" or not self.max_scale > 0):
            raise ValueError(
                f"max_scale {max_scale}: a largest scale needs the letterbox resize mode "
                "and must be above 0"
            )
        if self.margin < 0 or 2 * self.margin >= min(self.width, self.height):
            raise ValueError(
                f"margin {margin} does not fit a {self.width}x{self.height} input "
                "(0 up to below half its short side)"
            )

    def __repr__(self):
        margin = f", margin {self.margin}" if self.margin else ""
        cap = f", scale at most {self.max_scale:g}" if self.max_scale is not None else ""
        return f"InputGeometry({self.width}x{self.height}, {self.mode}{margin}{cap})"

    def __eq__(self, other):
        return isinstance(other, InputGeometry) and (
            self.width,
            self.height,
            self.mode,
            self.margin,
            self.max_scale,
        ) == (other.width, other.height, other.mode, other.margin, other.max_scale)

    def capped(self, max_scale):
        """This geometry with the letterbox scale capped at ``max_scale`` (None: none)."""
        return InputGeometry(self.width, self.height, self.mode, self.margin, max_scale)

    @property
    def shape(self):
        """``(height, width)`` of the network input."""
        return (self.height, self.width)

    @classmethod
    def from_config(cls, config):
        """The geometry of a run's model configuration.

        Today's runs store ``infer_size`` (``[width, height]``), ``resize``,
        ``infer_margin`` (0 where absent: runs from before it) and ``infer_max_scale``
        (none where absent or 0); older runs only ``input_size``: a square, squashed.
        """
        if config.get("infer_size"):
            width, height = config["infer_size"]
            return cls(
                width,
                height,
                config.get("resize", "letterbox"),
                int(config.get("infer_margin") or 0),
                config.get("infer_max_scale") or None,
            )
        size = int(config["input_size"])
        return cls(size, size, "squash")

    @classmethod
    def for_frames(cls, frame_width, frame_height, long_side, multiple=64, margin=0):
        """The letterbox geometry for frames of one size, their long side at ``long_side``.

        With a margin, the input is the image plus ``margin`` on every side, each side
        rounded up to a multiple of ``multiple`` (the largest stride); without, the
        long side is ``long_side`` and the short side rounded up.

        Args:
            frame_width, frame_height: the frames' size in pixels
            long_side: the image's long side in network pixels
            multiple: the largest stride
            margin: padding around the image in network pixels; ``2 * margin`` a
                multiple of ``multiple``, so that the image keeps exactly ``long_side``

        Raises:
            ValueError: ``long_side`` is not a positive multiple of ``multiple``, or
                ``2 * margin`` is not a multiple of it
        """
        check_input_side(long_side, multiple)
        margin = int(margin)
        if margin < 0 or (2 * margin) % multiple:
            raise ValueError(
                f"infer_margin {margin}: twice it must be a multiple of the largest stride "
                f"{multiple} (e.g. 0 or {multiple // 2})"
            )
        scale = long_side / max(frame_width, frame_height)
        short = math.ceil((min(frame_width, frame_height) * scale + 2 * margin) / multiple)
        long_total = long_side + 2 * margin
        if frame_width >= frame_height:
            return cls(long_total, short * multiple, margin=margin)
        return cls(short * multiple, long_total, margin=margin)

    def scale(self, image_width, image_height):
        """``(scale_x, scale_y)``: network pixels per image pixel."""
        if self.mode == "squash":
            return self.width / image_width, self.height / image_height
        inner = 2 * self.margin
        scale = min((self.width - inner) / image_width, (self.height - inner) / image_height)
        if self.max_scale is not None:
            scale = min(scale, self.max_scale)
        return scale, scale

    def prepare(self, image, out=None):
        """One RGB image as the network's input.

        The image is resized in its own dtype (a channel-reversed view, such as a BGR
        frame seen as RGB, is resized as the contiguous frame and reversed on the small
        result: no full-size copy) and written into the float32 input once, padding
        included.

        Args:
            image: ``(H, W, 3)`` uint8 (any strides)
            out: a ``(height, width, 3)`` float32 array to write into (for example one
                slot of a batch); None for a new one

        Returns:
            ``(height, width, 3)`` float32, whole values 0-255 (``out`` when given)
        """
        inner_w, inner_h = self.content_size(image.shape[1], image.shape[0])
        resized = resize_image(image, (inner_h, inner_w), dtype=None)
        if out is None:
            out = np.empty((self.height, self.width, resized.shape[2]), np.float32)
        top, bottom = self.margin, self.margin + inner_h
        left, right = self.margin, self.margin + inner_w
        out[top:bottom, left:right] = resized
        out[:top] = PAD_VALUE
        out[bottom:] = PAD_VALUE
        out[top:bottom, :left] = PAD_VALUE
        out[top:bottom, right:] = PAD_VALUE
        return out

    def content_size(self, image_width, image_height):
        """``(width, height)`` of the image inside the network input (the rest is
        letterbox padding; the whole input when squashed)."""
        if self.mode != "letterbox":
            return self.width, self.height
        scale, _ = self.scale(image_width, image_height)
        inner = 2 * self.margin
        return (
            min(self.width - inner, max(1, round(image_width * scale))),
            min(self.height - inner, max(1, round(image_height * scale))),
        )

    def content(self, prepared, image_width, image_height):
        """The image's part of a network input (:meth:`prepare`'s output), padding cut off.

        Args:
            prepared: ``(..., height, width, channels)`` network input(s)
            image_width, image_height: the image's size in pixels

        Returns:
            a view ``(..., inner_height, inner_width, channels)``
        """
        inner_w, inner_h = self.content_size(image_width, image_height)
        top, left = (self.margin, self.margin) if self.mode == "letterbox" else (0, 0)
        return np.asarray(prepared)[..., top : top + inner_h, left : left + inner_w, :]

    def mirror(self, prepared, image_width, image_height):
        """The network input of an image's mirror image, from the image's own input.

        Args:
            prepared: ``(height, width, 3)`` :meth:`prepare` output (or ``(n, height,
                width, 3)`` of images of one size)
            image_width, image_height: the image's size in pixels

        Returns:
            a new array: the image content flipped left to right, the padding kept
        """
        mirrored = np.array(prepared, copy=True)
        content = self.content(mirrored, image_width, image_height)
        content[...] = content[..., ::-1, :].copy()
        return mirrored

    def to_image(self, boxes, image_width, image_height):
        """Boxes in network fractions to the image's pixels, clipped to the image.

        Args:
            boxes: ``(n, 4)`` ``[xmin, ymin, xmax, ymax]`` fractions of the network input
            image_width, image_height: the image's size in pixels

        Returns:
            ``(n, 4)`` float32 pixels
        """
        scale_x, scale_y = self.scale(image_width, image_height)
        size = np.array([self.width, self.height] * 2, np.float32)
        factor = np.array([scale_x, scale_y] * 2, np.float32)
        boxes = (np.asarray(boxes, np.float32).reshape(-1, 4) * size - self.margin) / factor
        limit = np.array([image_width, image_height] * 2, np.float32)
        return np.clip(boxes, 0.0, limit).astype(np.float32)

    @staticmethod
    def on_image(boxes_px):
        """Which boxes (image pixels, clipped) still cover at least a pixel each way:
        a detection in the letterbox padding clips to nothing and is dropped."""
        boxes_px = np.asarray(boxes_px, np.float32).reshape(-1, 4)
        return (boxes_px[:, 2] - boxes_px[:, 0] >= 1.0) & (boxes_px[:, 3] - boxes_px[:, 1] >= 1.0)

    def to_network(self, boxes, image_width, image_height):
        """Boxes in image pixels to fractions of the network input (the inverse of
        :meth:`to_image`)."""
        scale_x, scale_y = self.scale(image_width, image_height)
        factor = np.array([scale_x, scale_y] * 2, np.float32)
        size = np.array([self.width, self.height] * 2, np.float32)
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4) * factor + self.margin
        return (boxes / size).astype(np.float32)

    def describe(self):
        """One sentence for model cards and reports."""
        if self.mode == "squash":
            return f"the whole image resized to {self.width}x{self.height}, aspect ratio not kept"
        cap = f", {self.max_scale:g}" if self.max_scale is not None else ""
        smaller = (
            f"; an image is never scaled by more than {self.max_scale:g}, so a smaller one "
            "gets more padding"
            if self.max_scale is not None
            else ""
        )
        if self.margin:
            inner = 2 * self.margin
            return (
                f"letterboxed into {self.width}x{self.height} with a margin: scaled by "
                f"min({self.width - inner}/w, {self.height - inner}/h{cap}) (aspect ratio "
                f"kept), placed {self.margin} px from the top left, padded with {PAD_VALUE} "
                "all round; frames of another aspect ratio get more padding right or below"
                f"{smaller}"
            )
        return (
            f"letterboxed into {self.width}x{self.height}: scaled by min({self.width}/w, "
            f"{self.height}/h{cap}) (aspect ratio kept), placed at the top left, padded with "
            f"{PAD_VALUE} to the right and below; frames of another aspect ratio get more "
            f"padding{smaller}"
        )


def check_input_side(side, multiple=64):
    """Refuses an input side that is not a positive multiple of the largest stride.

    Raises:
        ValueError: naming valid sizes near the one given
    """
    side = int(side)
    if side < multiple or side % multiple:
        low = max(multiple, side // multiple * multiple)
        raise ValueError(
            f"input size {side} is not a multiple of the largest stride {multiple}: "
            f"use {low} or {low + multiple} (valid: {', '.join(str(multiple * k) for k in range(5, 21, 3))}, ...)"
        )
    return side


def encode_targets(gt_boxes, gt_labels, anchors, iou_threshold=0.5):
    """Matches ground-truth boxes to anchors and encodes the training targets.

    An anchor is positive when its IoU with a box is at least ``iou_threshold``
    (it takes the box it overlaps most); each box's best anchor is positive for
    that box whatever the IoU, so tiny plates always get an anchor. Works on NumPy
    arrays and on tensors (inside ``tf.data`` too).

    Args:
        gt_boxes: ``(G, 4)`` boxes ``[xmin, ymin, xmax, ymax]`` (fractions); G may be 0
        gt_labels: ``(G,)`` class ids, 1-based; rows with a label of 0 or less are
            padding and ignored
        anchors: ``(N, 4)`` anchors from :func:`generate_anchors`
        iou_threshold: IoU from which an anchor is positive

    Returns:
        ``(class_targets, box_targets)``: ``(N,)`` int32 class ids (0 background) and
        ``(N, 4)`` float32 deltas (zeros for background anchors)
    """
    import_keras()
    from keras import ops
    from keras.utils import bounding_boxes

    anchors = ops.convert_to_tensor(anchors, "float32")
    gt_boxes = ops.reshape(ops.convert_to_tensor(gt_boxes, "float32"), (-1, 4))
    gt_labels = ops.reshape(ops.cast(ops.convert_to_tensor(gt_labels), "int32"), (-1,))
    # A padding row at the end keeps the arrays non-empty when there is no box.
    gt_boxes = ops.concatenate([gt_boxes, ops.zeros((1, 4), "float32")], axis=0)
    gt_labels = ops.concatenate([gt_labels, ops.zeros((1,), "int32")], axis=0)
    valid = gt_labels > 0

    iou = bounding_boxes.compute_iou(anchors, gt_boxes, bounding_box_format="xyxy")  # (N, G)
    iou = ops.where(valid[None, :], iou, -1.0)
    best_anchor = ops.argmax(iou, axis=0)  # (G,)
    forced = ops.logical_and(
        ops.equal(
            ops.arange(ops.shape(anchors)[0])[:, None], ops.cast(best_anchor, "int32")[None, :]
        ),
        valid[None, :],
    )
    iou = ops.where(forced, 2.0, iou)
    matched = ops.argmax(iou, axis=1)  # (N,)
    positive = ops.max(iou, axis=1) >= iou_threshold

    class_targets = ops.where(positive, ops.take(gt_labels, matched), 0)
    matched_boxes = ops.where(positive[:, None], ops.take(gt_boxes, matched, axis=0), anchors)
    box_targets = bounding_boxes.encode_box_to_deltas(
        anchors,
        matched_boxes,
        anchor_format="xyxy",
        box_format="xyxy",
        encoding_format="center_yxhw",
        variance=BOX_VARIANCE,
    )
    box_targets = ops.where(positive[:, None], box_targets, 0.0)
    return ops.cast(class_targets, "int32"), ops.cast(box_targets, "float32")


def decode_predictions(deltas, anchors):
    """Turns box deltas back into boxes.

    Args:
        deltas: ``(N, 4)`` or ``(batch, N, 4)`` deltas (the model's ``box_deltas``
            or :func:`encode_targets`' box targets)
        anchors: ``(N, 4)`` anchors from :func:`generate_anchors`

    Returns:
        boxes ``[xmin, ymin, xmax, ymax]`` (fractions), shaped like ``deltas``
    """
    import_keras()
    from keras import ops
    from keras.utils import bounding_boxes

    return bounding_boxes.decode_deltas_to_boxes(
        ops.convert_to_tensor(anchors, "float32"),
        ops.convert_to_tensor(deltas, "float32"),
        anchor_format="xyxy",
        box_format="xyxy",
        encoded_format="center_yxhw",
        variance=BOX_VARIANCE,
    )


def decode_numpy(deltas, anchors):
    """:func:`decode_predictions` in NumPy: ``(N, 4)`` deltas to ``(N, 4)`` xyxy boxes."""
    variance = np.asarray(BOX_VARIANCE, np.float32)
    anchors = np.asarray(anchors, np.float32)
    deltas = np.asarray(deltas, np.float32) * variance
    anchor_w = anchors[:, 2] - anchors[:, 0]
    anchor_h = anchors[:, 3] - anchors[:, 1]
    centre_x = anchors[:, 0] + anchor_w / 2.0
    centre_y = anchors[:, 1] + anchor_h / 2.0
    y = deltas[:, 0] * anchor_h + centre_y
    x = deltas[:, 1] * anchor_w + centre_x
    h = np.exp(deltas[:, 2]) * anchor_h
    w = np.exp(deltas[:, 3]) * anchor_w
    return np.stack([x - w / 2.0, y - h / 2.0, x + w / 2.0, y + h / 2.0], axis=-1)


def postprocess_numpy(
    class_logits, deltas, anchors, score_threshold=0.3, iou_threshold=0.5, max_detections=100
):
    """One image's softmax, box decoding and per-class NMS, in NumPy.

    The NMS of the TFLite and ONNX exports; the Keras model (:func:`postprocess`) and
    the SavedModel run the same rules in TensorFlow (:func:`nms_tf`), so that every
    format keeps the same boxes. A box is kept when its class score exceeds
    ``score_threshold``; within a class, boxes are taken by score, the highest first
    and equal scores in anchor order (anchors in uniform padding score exactly
    alike), and a box is dropped when its IoU with a kept box exceeds
    ``iou_threshold`` (:func:`platelab.boxes.greedy_nms`); at most ``max_detections``
    per class and in all, by score; boxes clipped to [0, 1] at the end.

    The softmax is computed only for the anchors that can pass: a class's score is
    at most ``exp(logit - background logit)``, so an anchor whose best class leads the
    background by no more than ``log(score_threshold)`` is skipped (most anchors of a
    frame). Only the anchors above the threshold are decoded.

    Args:
        class_logits: ``(N, num_classes + 1)`` logits
        deltas: ``(N, 4)`` box deltas
        anchors: ``(N, 4)`` anchors
        score_threshold: lowest score kept (exclusive)
        iou_threshold: NMS IoU
        max_detections: detections kept

    Returns:
        ``(boxes, scores, classes)``: ``(n, 4)`` normalised xyxy, ``(n,)`` scores and
        ``(n,)`` 1-based class ids, highest score first
    """
    logits = np.asarray(class_logits, np.float32)
    if score_threshold > 0:
        lead = logits[:, 1].copy()  # column by column: much faster than max(axis=1)
        for column in range(2, logits.shape[1]):
            np.maximum(lead, logits[:, column], out=lead)
        lead -= logits[:, 0]
        # 1e-3 of margin in log space covers float32 rounding of the softmax
        rows = np.flatnonzero(lead > np.log(score_threshold) - 1e-3)
        logits = logits[rows]
    else:
        rows = np.arange(len(logits))
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    scores = shifted[:, 1:] / shifted.sum(axis=1, keepdims=True)
    row_index, class_index = np.nonzero(scores > score_threshold)
    if len(row_index) == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    candidate_scores = scores[row_index, class_index]
    anchor_index = rows[row_index]
    candidate_boxes = decode_numpy(
        np.asarray(deltas)[anchor_index], np.asarray(anchors)[anchor_index]
    )
    kept = []
    for class_id in np.unique(class_index):
        members = np.flatnonzero(class_index == class_id)  # in anchor order
        order = members[np.argsort(-candidate_scores[members], kind="stable")]
        kept.extend(greedy_nms(candidate_boxes, order, iou_threshold, max_detections))
    kept = np.asarray(kept, np.int64)
    kept = kept[np.argsort(-candidate_scores[kept], kind="stable")][:max_detections]
    boxes = np.clip(candidate_boxes[kept], 0.0, 1.0).astype(np.float32)
    return boxes, candidate_scores[kept].astype(np.float32), class_index[kept].astype(np.int64) + 1


def postprocess(
    class_logits,
    deltas,
    anchors,
    score_threshold=0.3,
    iou_threshold=0.5,
    max_detections=100,
):
    """Scores, decodes and de-duplicates a batch of the model's outputs (per-class NMS).

    The NMS is :func:`nms_tf` (compiled once per shape), which keeps the same boxes as
    the exports' :func:`postprocess_numpy` and is ten times faster at evaluation's low
    thresholds: 5.6 against 54 ms an image at 0.01 with 40,800 anchors on this
    project's 2-core machine (``combined_non_max_suppression``, used before: 4.1).

    Args:
        class_logits: ``(batch, N, num_classes + 1)`` logits, or ``(N, num_classes + 1)``
        deltas: ``(batch, N, 4)`` box deltas, or ``(N, 4)``
        anchors: ``(N, 4)`` anchors from :func:`generate_anchors`
        score_threshold: lowest class probability kept
        iou_threshold: IoU above which a lower-scored box of the same class is dropped
        max_detections: detections kept per image (and per class)

    Returns:
        dict of NumPy arrays: ``boxes`` ``(batch, max_detections, 4)``
        ``[xmin, ymin, xmax, ymax]`` clipped to [0, 1], ``scores`` and ``classes``
        (1-based class ids) ``(batch, max_detections)``, ``num_detections``
        ``(batch,)``; rows past ``num_detections`` are zero. Without a batch axis in
        the inputs, none in the outputs.
    """
    tf = import_tensorflow()
    class_logits = tf.convert_to_tensor(class_logits, tf.float32)
    deltas = tf.convert_to_tensor(deltas, tf.float32)
    unbatched = len(class_logits.shape) == 2
    if unbatched:
        class_logits, deltas = class_logits[None], deltas[None]
    scores = tf.nn.softmax(class_logits, axis=-1)[..., 1:]
    boxes = tf.convert_to_tensor(decode_predictions(deltas, anchors))
    result = _compiled_nms()(
        boxes,
        scores,
        tf.constant(score_threshold, tf.float32),
        float(iou_threshold),
        int(max_detections),
    )
    output = {key: value.numpy() for key, value in result.items()}
    output["classes"] = output["classes"].astype(np.int64)
    output["num_detections"] = output["num_detections"].astype(np.int64)
    if unbatched:
        output = {key: value[0] for key, value in output.items()}
    return output


@functools.cache
def _compiled_nms():
    """:func:`nms_tf` as one ``tf.function`` (made on first use: TensorFlow loads late)."""
    return import_tensorflow().function(nms_tf, reduce_retracing=True)


def nms_tf(boxes, scores, score_threshold, iou_threshold, max_detections):
    """:func:`postprocess_numpy`'s NMS in a TensorFlow graph (the SavedModel's).

    Per class, ``tf.image.non_max_suppression``: by score, equal scores in anchor
    order, a box dropped when its IoU with a kept one exceeds ``iou_threshold``; then
    the kept boxes of every class by score (``tf.math.top_k``, which keeps equal
    scores in class order). ``tf.image.combined_non_max_suppression`` is not used:
    it sorts with no rule for equal scores, so it keeps other boxes than the
    exports' NumPy NMS where anchors in the padding score alike.

    Args:
        boxes: ``(batch, N, 4)`` float32 ``[xmin, ymin, xmax, ymax]``
        scores: ``(batch, N, num_classes)`` float32 class probabilities
        score_threshold: float32 scalar, lowest score kept (exclusive)
        iou_threshold: NMS IoU (a Python float)
        max_detections: detections kept per image (and per class)

    Returns:
        dict: ``boxes`` ``(batch, max_detections, 4)`` clipped to [0, 1], ``scores``
        ``(batch, max_detections)``, ``classes`` ``(batch, max_detections)`` int32
        1-based ids (0 past ``num_detections``) and ``num_detections`` ``(batch,)`` int32
    """
    tf = import_tensorflow()
    num_classes = int(scores.shape[-1])
    yxyx = tf.gather(boxes, [1, 0, 3, 2], axis=-1)

    def one_image(inputs):
        image_boxes, image_yxyx, image_scores = inputs
        kept_boxes, kept_scores, kept_classes = [], [], []
        for class_index in range(num_classes):
            class_scores = image_scores[:, class_index]
            selected = tf.image.non_max_suppression(
                image_yxyx,
                class_scores,
                max_detections,
                iou_threshold=iou_threshold,
                score_threshold=score_threshold,
            )
            kept_boxes.append(tf.gather(image_boxes, selected))
            kept_scores.append(tf.gather(class_scores, selected))
            kept_classes.append(tf.fill(tf.shape(selected), class_index + 1))
        every_box = tf.concat(kept_boxes, 0)
        every_score = tf.concat(kept_scores, 0)
        every_class = tf.concat(kept_classes, 0)
        count = tf.minimum(tf.shape(every_score)[0], max_detections)
        best = tf.math.top_k(every_score, count, sorted=True).indices
        padding = [[0, max_detections - count]]
        return (
            tf.pad(tf.clip_by_value(tf.gather(every_box, best), 0.0, 1.0), padding + [[0, 0]]),
            tf.pad(tf.gather(every_score, best), padding),
            tf.pad(tf.gather(every_class, best), padding),
            count,
        )

    result = tf.map_fn(
        one_image,
        (boxes, yxyx, scores),
        fn_output_signature=(
            tf.TensorSpec([max_detections, 4], tf.float32),
            tf.TensorSpec([max_detections], tf.float32),
            tf.TensorSpec([max_detections], tf.int32),
            tf.TensorSpec([], tf.int32),
        ),
    )
    return dict(zip(("boxes", "scores", "classes", "num_detections"), result, strict=True))


def resize_image(image, size, dtype=np.float32):
    """An image resized to ``size`` (a square side, or ``(height, width)``; aspect not kept).

    Shrinking (the usual case: frames are larger than the input) averages the source
    pixels each output pixel covers (``cv2.INTER_AREA``, rounded to whole grey
    levels): small plates stay visible instead of aliasing away. An image at least
    twice the input on both sides, with even sides and no whole scale factor, is
    first halved by averaging 2x2 blocks, repeatedly (OpenCV's faster whole-factor
    path). Every source pixel still counts; only pixels straddling an output pixel's
    edge are weighted slightly differently than in one area resize.
    Enlarging along either side is bilinear (``cv2.INTER_LINEAR``). Training,
    evaluation, every export's predictor and the SavedModel's in-graph resize
    (:func:`resize_images_tf`) use this.

    Args:
        image: ``(H, W, C)`` uint8 array (RGB or BGR; any strides)
        size: the output side in pixels, or ``(height, width)``
        dtype: the result's dtype; None keeps the image's (uint8: 4 times less memory
            to write than float32, the same values)

    Returns:
        ``(height, width, C)`` array of ``dtype`` with whole values 0-255 (contiguous)
    """
    import cv2

    if image.ndim == 3 and image.strides[2] < 0:
        # A channel-reversed view (BGR seen as RGB): resizing works channel by channel,
        # so resize the contiguous frame and reverse the small result (no 6 MB copy).
        resized = resize_image(image[:, :, ::-1], size, dtype=None)
        if resized.shape[2] == 3 and resized.dtype in (np.uint8, np.uint16, np.float32):
            resized = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)  # a plain channel swap
        else:
            resized = np.ascontiguousarray(resized[:, :, ::-1])
        return resized if dtype is None else resized.astype(dtype, copy=False)
    image = np.ascontiguousarray(image)
    out_h, out_w = _input_shape(size, check=False)
    height, width = image.shape[:2]
    while _halvable(height, width, out_h, out_w):
        height, width = height // 2, width // 2
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    shrink = height >= out_h and width >= out_w
    method = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    resized = cv2.resize(image, (out_w, out_h), interpolation=method)
    if resized.ndim == 2:
        resized = resized[:, :, None]
    return resized if dtype is None else resized.astype(dtype, copy=False)


def resize_images_tf(images, size):
    """:func:`resize_image` inside a TensorFlow graph, for a batch of same-sized images.

    The same halving of large images (2x2 block means); then TensorFlow's ``area``
    resize, rounded, equals ``cv2.INTER_AREA`` when shrinking (up to rounding ties);
    enlarging is TensorFlow's bilinear resize.
    """
    tf = import_tensorflow()
    out_h, out_w = _input_shape(size, check=False)
    return _resize_images_dynamic(tf, tf.cast(images, tf.float32), out_h, out_w)


def letterbox_images_tf(images, geometry):
    """:meth:`InputGeometry.prepare` inside a TensorFlow graph, for same-sized images.

    Args:
        images: ``(batch, H, W, 3)`` uint8 or float images (H and W may be dynamic)
        geometry: an :class:`InputGeometry`

    Returns:
        ``(batch, geometry.height, geometry.width, 3)`` float32
    """
    tf = import_tensorflow()
    if geometry.mode == "squash":
        return resize_images_tf(images, geometry.shape)
    shape = tf.shape(images)
    height, width = tf.cast(shape[1], tf.float64), tf.cast(shape[2], tf.float64)
    margin = geometry.margin
    room_h, room_w = geometry.height - 2 * margin, geometry.width - 2 * margin
    scale = _letterbox_scale_tf(tf, geometry, height, width)
    inner_h = tf.clip_by_value(tf.cast(tf.round(height * scale), tf.int32), 1, room_h)
    inner_w = tf.clip_by_value(tf.cast(tf.round(width * scale), tf.int32), 1, room_w)
    resized = _resize_images_dynamic(tf, tf.cast(images, tf.float32), inner_h, inner_w)
    canvas = tf.pad(
        resized - PAD_VALUE,
        [
            [0, 0],
            [margin, geometry.height - margin - inner_h],
            [margin, geometry.width - margin - inner_w],
            [0, 0],
        ],
    )
    return tf.ensure_shape(canvas + PAD_VALUE, [None, geometry.height, geometry.width, None])


def boxes_to_image_fractions_tf(boxes, geometry, images):
    """:meth:`InputGeometry.to_image` inside a TensorFlow graph, in fractions of the image.

    Args:
        boxes: ``(batch, N, 4)`` float32 ``[xmin, ymin, xmax, ymax]`` fractions of the
            network input
        geometry: the :class:`InputGeometry` that prepared ``images``
        images: the ``(batch, H, W, 3)`` images (only their shape is read)

    Returns:
        ``(batch, N, 4)`` float32 fractions of the images (not clipped); a squashed
        input's fractions are the image's already
    """
    tf = import_tensorflow()
    if geometry.mode != "letterbox":
        return boxes
    shape = tf.cast(tf.shape(images), tf.float32)
    height, width = shape[1], shape[2]
    scale = _letterbox_scale_tf(tf, geometry, height, width)
    network = tf.constant([geometry.width, geometry.height] * 2, tf.float32)
    image = tf.stack([width, height, width, height])
    return (boxes * network - float(geometry.margin)) / (scale * image)


def _letterbox_scale_tf(tf, geometry, height, width):
    """:meth:`InputGeometry.scale` of a letterbox for images ``height`` x ``width``
    (tensors; the result has their dtype)."""
    inner = 2 * geometry.margin
    scale = tf.minimum((geometry.width - inner) / width, (geometry.height - inner) / height)
    if geometry.max_scale is not None:
        scale = tf.minimum(scale, tf.cast(geometry.max_scale, scale.dtype))
    return scale


def _resize_images_dynamic(tf, images, out_h, out_w):
    """:func:`resize_images_tf` to a size given as numbers or as tensors of the graph."""

    def halvable(images):
        shape = tf.shape(images)
        return _halvable(shape[1], shape[2], out_h, out_w)

    def halve(images):  # 2x2 block means, rounded half up like cv2's uint8 result
        return (tf.floor(tf.nn.avg_pool2d(images, 2, 2, "VALID") + 0.5),)

    (images,) = tf.while_loop(
        halvable,
        halve,
        (images,),
        shape_invariants=(tf.TensorShape([None, None, None, images.shape[-1]]),),
    )
    shape = tf.shape(images)
    shrink = tf.logical_and(shape[1] >= out_h, shape[2] >= out_w)
    size = tf.stack([out_h, out_w])
    return tf.cond(
        shrink,
        lambda: tf.round(tf.image.resize(images, size, method="area")),
        lambda: tf.image.resize(images, size, method="bilinear"),
    )


def _halvable(height, width, out_h, out_w):
    """Whether :func:`resize_image` first halves an image of ``height`` x ``width``.

    Only where the area resize to ``out_h`` x ``out_w`` is fractional: a whole factor
    is OpenCV's fast path already (and halving first would then change the result).
    """
    large = (height >= 2 * out_h) & (width >= 2 * out_w)
    even = (height % 2 == 0) & (width % 2 == 0)
    return large & even & ((height % out_h != 0) | (width % out_w != 0))


def _input_shape(size, check=True):
    """``(height, width)`` from a square side, a ``(height, width)`` pair or None."""
    if size is None:
        return (None, None)
    if isinstance(size, (tuple, list)):
        height, width = (int(value) for value in size)
    else:
        height = width = int(size)
    if check and (height % 32 or width % 32 or height < 32 or width < 32):
        raise ValueError(f"input sides must be multiples of 32 (at least 32), got {width}x{height}")
    return height, width


def _mobilenet_v2(keras, shape, width, weights):
    """Keras's MobileNetV2 without its top; a failed ImageNet download becomes one clear error.

    ``shape`` is ``(height, width)``, either None for any size.
    """
    if weights == "imagenet" and width not in IMAGENET_WIDTHS:
        raise ValueError(f"ImageNet weights exist for widths {IMAGENET_WIDTHS}, not {width}")
    # Keras prints "Downloading data from ..." (and a progress bar) to stdout: shown once
    # the weights are here, not before a download that fails with the message below.
    said = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(said):
            # Without the top the ImageNet weights fit any input size; Keras warns anyway.
            warnings.filterwarnings("ignore", message=".*input_shape.*is undefined or non-square.*")
            backbone = keras.applications.MobileNetV2(
                input_shape=(*shape, 3),
                alpha=width,
                include_top=False,
                weights=weights,
            )
        sys.stdout.write(said.getvalue())
        return backbone
    except Exception as error:
        if weights != "imagenet":
            sys.stdout.write(said.getvalue())
            raise
        rows = shape[0] if shape[0] == shape[1] and shape[0] in (96, 128, 160, 192, 224) else 224
        name = f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(width)}_{rows}_no_top.h5"
        target = _keras_cache_dir() / "models" / name
        if target.is_file() and "URL fetch failure" not in str(error):
            raise
        url = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/" + name
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise RuntimeError(
            f"could not get the MobileNetV2 ImageNet weights ({reason}): download {url} and place it at {target}"
        ) from None


def _keras_cache_dir():
    """Where ``keras.utils.get_file`` keeps its downloads (``~/.keras`` or ``$KERAS_HOME``)."""
    from keras.src.backend import config

    base = Path(os.path.expanduser(config.keras_home()))
    return base if os.access(base, os.W_OK) else Path("/tmp/.keras")


def _extra_block(layers, feature, channels, name):
    """SSDLite extra level: 1x1 conv to half the channels, 3x3 depthwise stride 2, 1x1 conv."""
    feature = layers.Conv2D(channels // 2, 1, use_bias=False, name=name + "_reduce")(feature)
    feature = layers.BatchNormalization(name=name + "_reduce_bn")(feature)
    feature = layers.ReLU(6.0, name=name + "_reduce_relu")(feature)
    feature = layers.DepthwiseConv2D(
        3, strides=2, padding="same", use_bias=False, name=name + "_dw"
    )(feature)
    feature = layers.BatchNormalization(name=name + "_dw_bn")(feature)
    feature = layers.ReLU(6.0, name=name + "_dw_relu")(feature)
    feature = layers.Conv2D(channels, 1, use_bias=False, name=name + "_expand")(feature)
    feature = layers.BatchNormalization(name=name + "_expand_bn")(feature)
    return layers.ReLU(6.0, name=name + "_expand_relu")(feature)


def _ssdlite_head(layers, feature, outputs, name):
    """SSDLite prediction head: 3x3 depthwise conv, batch norm, ReLU6, then a 1x1 conv."""
    feature = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=name + "_dw")(feature)
    feature = layers.BatchNormalization(name=name + "_dw_bn")(feature)
    feature = layers.ReLU(6.0, name=name + "_dw_relu")(feature)
    return layers.Conv2D(outputs, 1, name=name + "_out")(feature)


def _channels(value):
    """A channel count rounded to a multiple of 8 (at least 16), as MobileNet does."""
    return max(16, int(value + 4) // 8 * 8)


def _grid_size(side, stride):
    """Feature-map side at ``stride``: halvings with "same" padding (ceil)."""
    size = side
    for _ in range(int(math.log2(stride))):
        size = math.ceil(size / 2)
    return size


def _check_levels(levels):
    levels = tuple(int(stride) for stride in levels)
    if not levels:
        raise ValueError("levels must name at least one stride")
    if list(levels) != sorted(set(levels)):
        raise ValueError(f"levels must be increasing strides, got {levels}")
    for stride in levels:
        if stride < 8 or stride & (stride - 1):
            raise ValueError(f"levels must be powers of two from 8 up, got {stride}")
    return levels


def _check_spec(anchor_spec):
    if (
        not isinstance(anchor_spec, dict)
        or "levels" not in anchor_spec
        or "shapes" not in anchor_spec
    ):
        raise ValueError("an anchor spec is a dict with 'levels' and 'shapes'")
    _check_levels(anchor_spec["levels"])
    if len(anchor_spec["levels"]) != len(anchor_spec["shapes"]):
        raise ValueError("an anchor spec needs one list of shapes per level")
    for shapes in anchor_spec["shapes"]:
        for shape in shapes:
            if len(shape) != 2 or not (shape[0] > 0 and shape[1] > 0):
                raise ValueError(f"anchor shapes are positive [width, height] pairs, got {shape}")


def _check_boxes_wh(boxes_wh):
    boxes_wh = np.asarray(boxes_wh, dtype=np.float64)
    if boxes_wh.ndim != 2 or boxes_wh.shape[1] != 2 or len(boxes_wh) == 0:
        raise ValueError(f"boxes_wh must be a non-empty (M, 2) array, got shape {boxes_wh.shape}")
    if not np.all(np.isfinite(boxes_wh)) or np.any(boxes_wh <= 0):
        raise ValueError("boxes_wh holds a width or height that is not a positive number")
    return boxes_wh


def _kmeans(points, clusters, seed, restarts=5, iterations=100):
    """Deterministic k-means (k-means++ starts, best of ``restarts``); returns the centres."""
    unique = np.unique(points, axis=0)
    clusters = min(clusters, len(unique))
    rng = np.random.default_rng(seed)
    best_centres, best_inertia = None, np.inf
    for _ in range(restarts):
        centres = [unique[rng.integers(len(unique))]]
        while len(centres) < clusters:
            distances = np.min(
                ((unique[:, None, :] - np.asarray(centres)[None]) ** 2).sum(-1), axis=1
            )
            centres.append(unique[rng.choice(len(unique), p=distances / distances.sum())])
        centres = np.asarray(centres)
        for _ in range(iterations):
            assignment = np.argmin(((points[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
            updated = np.asarray(
                [
                    points[assignment == k].mean(axis=0) if np.any(assignment == k) else centres[k]
                    for k in range(clusters)
                ]
            )
            if np.allclose(updated, centres):
                break
            centres = updated
        inertia = np.min(((points[:, None, :] - centres[None]) ** 2).sum(-1), axis=1).sum()
        if inertia < best_inertia:
            best_centres, best_inertia = centres, inertia
    return best_centres
