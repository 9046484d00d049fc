"""TFRecords in the TF Object Detection API's layout: writing and reading back.

One ``tf.train.Example`` per image, with the API's standard feature names:

    image/encoded                 the image file's bytes (not re-encoded)
    image/format                  b"jpeg" or b"png" (else the file extension)
    image/height, image/width     pixels (int64)
    image/filename                the image's file name in the dataset
    image/source_id               the image's unique name (the API's evaluators key images by it)
    image/key/sha256              the image's content hash
    image/object/bbox/xmin ymin xmax ymax   boxes normalised to [0, 1] (float)
    image/object/class/text       canonical labels
    image/object/class/label      label-map ids, 1-based (0 is background)
    image/object/difficult        0/1 per box
    image/object/truncated        0/1 per box

and platelab's own:

    image/object/occluded         0/1 per box
    image/object/text             the box's ``text`` attribute (plate text), "" if none
    image/group                   the split unit (source video, CVAT task or photo)
    image/video_source_id         the source video or photo id, "" if unknown
    image/vantage, image/lighting the camera's vantage point and lighting ("" if unknown)
    image/time                    seconds into the source video (absent if unknown)
    image/batch                   the annotation batch the boxes came from
    image/original_name           the image's name in that batch

TensorFlow is imported lazily (:func:`platelab.tfimport.import_tensorflow`):
importing it takes seconds.
"""

import logging
from pathlib import Path

from platelab.tfimport import import_tensorflow

logger = logging.getLogger(__name__)

INT_FEATURES = (
    "image/height",
    "image/width",
    "image/object/class/label",
    "image/object/difficult",
    "image/object/truncated",
    "image/object/occluded",
)
FLOAT_FEATURES = (
    "image/object/bbox/xmin",
    "image/object/bbox/ymin",
    "image/object/bbox/xmax",
    "image/object/bbox/ymax",
    "image/time",
)


def encode_example(tf, sample, data, label_ids):
    """Builds one ``tf.train.Example`` for an image and its boxes.

    Args:
        tf: the tensorflow module (see :func:`platelab.tfimport.import_tensorflow`)
        sample: a :class:`platelab.merge.Sample` (or an object with its attributes)
        data: the image file's bytes
        label_ids: label -> id (1-based)

    Returns:
        the Example
    """

    def ints(values):
        return tf.train.Feature(
            int64_list=tf.train.Int64List(value=[int(value) for value in values])
        )

    def floats(values):
        return tf.train.Feature(
            float_list=tf.train.FloatList(value=[float(value) for value in values])
        )

    def texts(values):
        return tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[str(value).encode("utf-8") for value in values])
        )

    width, height = float(sample.width), float(sample.height)
    objects = sample.objects
    feature = {
        "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[data])),
        "image/format": texts([image_format(sample.image_path)]),
        "image/height": ints([sample.height]),
        "image/width": ints([sample.width]),
        "image/filename": texts([sample.file_name]),
        "image/source_id": texts([sample.name]),
        "image/key/sha256": texts([sample.sha256]),
        "image/object/bbox/xmin": floats([_unit(item["bbox"][0] / width) for item in objects]),
        "image/object/bbox/ymin": floats([_unit(item["bbox"][1] / height) for item in objects]),
        "image/object/bbox/xmax": floats([_unit(item["bbox"][2] / width) for item in objects]),
        "image/object/bbox/ymax": floats([_unit(item["bbox"][3] / height) for item in objects]),
        "image/object/class/text": texts([item["label"] for item in objects]),
        "image/object/class/label": ints([label_ids[item["label"]] for item in objects]),
        "image/object/difficult": ints([bool(item.get("difficult")) for item in objects]),
        "image/object/truncated": ints([bool(item.get("truncated")) for item in objects]),
        "image/object/occluded": ints([bool(item.get("occluded")) for item in objects]),
        "image/object/text": texts(
            [(item.get("attributes") or {}).get("text") or "" for item in objects]
        ),
        "image/group": texts([sample.group]),
        "image/video_source_id": texts([sample.source_id or ""]),
        "image/vantage": texts([sample.vantage]),
        "image/lighting": texts([sample.lighting or ""]),
        "image/time": floats([] if sample.time is None else [sample.time]),
        "image/batch": texts([sample.batch]),
        "image/original_name": texts([sample.original_name]),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature))


def image_format(path):
    """The ``image/format`` value for an image file: jpeg, png, or its extension."""
    suffix = Path(path).suffix.lower().lstrip(".")
    return "jpeg" if suffix in ("jpg", "jpeg") else suffix


def read_examples(path, limit=None, with_images=False):
    """Reads a TFRecord file back as plain dicts (for checks and notebooks).

    Args:
        path: a ``.tfrecord`` file
        limit: read at most this many records
        with_images: keep ``image/encoded`` (bytes); left out by default

    Returns:
        a list of dicts feature name -> value: a list for per-box and float
        features, a scalar for the image's int and text features

    Raises:
        ValueError: naming the file, when it is not a readable TFRecord file
    """
    tf = import_tensorflow()
    records = []
    try:
        for raw in tf.data.TFRecordDataset(str(path)).take(-1 if limit is None else limit):
            example = tf.train.Example.FromString(raw.numpy())
            records.append(_as_dict(example, with_images))
    except tf.errors.OpError as error:
        raise ValueError(f"{path}: not a readable TFRecord file ({error.message})") from None
    return records


def count_records(path):
    """The number of records in a TFRecord file."""
    tf = import_tensorflow()
    return sum(1 for _ in tf.data.TFRecordDataset(str(path)))


def _as_dict(example, with_images):
    document = {}
    for name, feature in sorted(example.features.feature.items()):
        if name == "image/encoded" and not with_images:
            continue
        kind = feature.WhichOneof("kind")
        values = list(getattr(feature, kind).value) if kind else []
        if kind == "bytes_list" and name != "image/encoded":
            values = [value.decode("utf-8") for value in values]
        if name.startswith("image/object/") or name in FLOAT_FEATURES:
            document[name] = values
        else:
            document[name] = values[0] if values else None
    return document


def _unit(value):
    return min(1.0, max(0.0, value))
