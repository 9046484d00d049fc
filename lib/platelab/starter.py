"""The shipped starter: weights every fine-tune begins from (``init: starter``).

platelab's answer to a model zoo on an offline machine: a detector of the default
architecture, pretrained by :mod:`platelab.pretrain` on a large synthetic corpus, kept
in the repository under ``models/starter/``::

    weights.npz        the weights in float16, one array per layer weight, named
                       ``<layer>/<index>`` (read with NumPy, never unpickled)
    config.json        the model configuration (a run's config.json, model keys)
    provenance.json    how it was made: command, commit, corpus seeds and sizes, steps,
                       images seen, CPU-hours, held-out AP50 after every chunk, and the
                       weights' SHA-256
    MODEL_CARD.md      what it is for, what it was trained on, how well it does

:func:`load` checks the weights against the SHA-256 of ``provenance.json`` before
anything reads them. :func:`apply` copies them into a freshly built model layer by
layer: a starter of another backbone or other feature levels is refused, and where the
labels differ from the dataset's the class layers start afresh (the rest is loaded).
"""

import dataclasses
import json
import logging
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from platelab import detector, paths
from platelab import model as model_lib
from platelab.atomic import atomic_dir
from platelab.exceptions import PlatelabError

logger = logging.getLogger(__name__)

STARTER_DIR = paths.PROJECT_ROOT / "models" / "starter"
"""Where the shipped starter lives."""

WEIGHTS_FILE = "weights.npz"
CONFIG_FILE = "config.json"
PROVENANCE_FILE = "provenance.json"
CARD_FILE = "MODEL_CARD.md"
FORMAT = "platelab-starter/1"

ARCHITECTURE_KEYS = ("width", "levels")
"""What a model must share with the starter to start from it (the backbone and levels)."""

CHECK_SAMPLE = {"seed": 4242, "videos": 6, "seconds": 2.0, "fps": 10.0, "size": (960, 540)}
"""The small held-out sample whose AP50 ``provenance.json`` records and a test reproduces."""

CLASS_LAYER_SUFFIX = "_cls_out"
"""Layers whose outputs are per class (re-initialised when the labels differ)."""


class StarterError(PlatelabError):
    """A starter that cannot be used: corrupt, missing, or of another architecture."""


@dataclasses.dataclass
class Starter:
    """A loaded starter.

    Attributes:
        path: its folder
        config: its model configuration (``labels``, ``width``, ``levels``, ``anchors``...)
        weights: ``layer name -> [arrays]`` (float16 as stored)
        sha256: the weights file's SHA-256 (checked)
        provenance: ``provenance.json``
    """

    path: Path
    config: dict
    weights: dict
    sha256: str
    provenance: dict

    @property
    def labels(self):
        return list(self.config["labels"])

    def detector(self):
        """The starter as a :class:`platelab.detector.Detector` (zero-shot use)."""
        config = self.config
        net = model_lib.build_ssd(
            num_classes=len(config["labels"]),
            input_size=None if config.get("infer_size") else int(config["input_size"]),
            width=float(config["width"]),
            anchors=config["anchors"],
            weights=None,
            levels=tuple(config["levels"]),
        )
        _, missing = model_lib.copy_layer_weights(net, self.weights)
        if missing:
            raise StarterError(
                f"{self.path}: {len(missing)} layers of its own architecture have no weights "
                f"(first: {missing[0]})"
            )
        return detector.Detector(net, config)


def resolve(init):
    """The starter folder meant by an ``init`` value (``starter`` or a folder), or None."""
    if str(init) == "starter":
        return STARTER_DIR
    path = Path(str(init)).expanduser()
    if path.is_dir() and (path / WEIGHTS_FILE).is_file() and (path / PROVENANCE_FILE).is_file():
        return path
    return None


def load(folder=None):
    """Loads a starter, checking its weights against their recorded SHA-256.

    Args:
        folder: the starter folder (default :data:`STARTER_DIR`)

    Returns:
        a :class:`Starter`

    Raises:
        StarterError: a missing file, a corrupt or truncated weights file (the message
            names it and its expected SHA-256), or an unreadable configuration
    """
    folder = Path(folder) if folder else STARTER_DIR
    weights_path = folder / WEIGHTS_FILE
    provenance_path = folder / PROVENANCE_FILE
    for path in (weights_path, folder / CONFIG_FILE, provenance_path):
        if not path.is_file():
            raise StarterError(f"{path}: no such file (the starter is incomplete)")
    try:
        provenance = json.loads(provenance_path.read_text(encoding="utf-8"))
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        expected = provenance["weights"]["sha256"]
    except (ValueError, KeyError, TypeError) as error:
        raise StarterError(f"{provenance_path}: unreadable ({error})") from None
    actual = _sha256(weights_path)
    if actual != expected:
        raise StarterError(
            f"{weights_path}: SHA-256 {actual[:16]}... is not the expected {expected} "
            "(corrupt or truncated: restore it, e.g. git checkout -- models/starter)"
        )
    try:
        with np.load(weights_path, allow_pickle=False) as archive:
            weights = {}
            for key in archive.files:
                layer, _, index = key.rpartition("/")
                weights.setdefault(layer, {})[int(index)] = archive[key]
    except (OSError, ValueError) as error:
        raise StarterError(f"{weights_path}: cannot read the weights ({error})") from None
    weights = {layer: [found[i] for i in sorted(found)] for layer, found in weights.items()}
    return Starter(folder, config, weights, actual, provenance)


def apply(net, starter, labels, width, levels, echo=None):
    """Copies a starter's weights into a freshly built model.

    Args:
        net: a model from :func:`platelab.model.build_ssd`
        starter: a :class:`Starter`
        labels: the dataset's labels, in the model's order
        width: the model's MobileNetV2 width
        levels: the model's feature strides
        echo: receives one line saying what was loaded (default: logger.info)

    Raises:
        StarterError: the model's width or levels differ from the starter's (named)
    """
    echo = echo or logger.info
    mine = {"width": float(width), "levels": [int(value) for value in levels]}
    theirs = {
        "width": float(starter.config["width"]),
        "levels": [int(value) for value in starter.config["levels"]],
    }
    differences = [
        f"{key} {theirs[key]} != {mine[key]}" for key in mine if mine[key] != theirs[key]
    ]
    if differences:
        raise StarterError(
            f"{starter.path}: a starter of another architecture ({'; '.join(differences)}: "
            "starter != this model); train with init none, or use the starter's "
            + ", ".join(f"{key} {theirs[key]}" for key in ARCHITECTURE_KEYS)
        )
    labels = list(labels)
    weights = starter.weights
    if labels == starter.labels:
        how = "same"
    elif set(labels) <= set(starter.labels):
        how = "mapped"
        weights = _class_subset(weights, starter.labels, labels)
    else:
        how = "other"
    skip = (CLASS_LAYER_SUFFIX,) if how == "other" else ()
    copied, reset = model_lib.copy_layer_weights(net, weights, skip=skip)
    line = f"init: starter {starter.path} (sha256 {starter.sha256[:12]}): {copied} layers loaded"
    if how == "mapped":
        line += f"; the class layers keep the starter's {labels} outputs of {starter.labels}"
    if how == "other":
        line += (
            f"; its labels {starter.labels} differ from the dataset's {labels}: "
            f"{len(reset)} class layers re-initialised"
        )
    elif reset:
        line += f"; {len(reset)} layers re-initialised (other anchors)"
    echo(line)
    return copied, reset


def ship(work, out=None, command=None, progress=True, note=""):
    """Writes a starter from a pretraining work folder (see :mod:`platelab.pretrain`).

    The run's best model is stored in float16; the check sample
    (:data:`CHECK_SAMPLE`) is scored with the float32 and the float16 weights, and
    both figures go into ``provenance.json`` with the chunks' history.

    Args:
        work: the pretraining work folder
        out: the starter folder (default :data:`STARTER_DIR`), replaced atomically
        command: the command line that made it (default: this process's)
        progress: show progress bars
        note: anything else the provenance should say (recorded as ``note``)

    Returns:
        the starter folder
    """
    from platelab import pretrain

    work = Path(work)
    out = Path(out) if out else STARTER_DIR
    plan = pretrain.load_plan(work)
    chunks = pretrain.load_chunks(work)
    if plan is None or not chunks:
        raise StarterError(f"{work}: no pretraining with a finished chunk to ship")
    run = work / "run"
    model = detector.load(run, allow_unfinished=True)
    run_config = detector.read_config(run)
    config = {
        key: run_config[key]
        for key in (
            "input_size",
            "infer_size",
            "resize",
            "infer_margin",
            "width",
            "levels",
            "anchors",
            "head",
            "labels",
            "score_threshold",
            "nms_iou",
            "max_detections",
        )
        if key in run_config
    }
    corpus = json.loads((work / "corpus" / "corpus.json").read_text(encoding="utf-8"))
    parent = _parent(work / pretrain.PARENT_DIR)
    cpu_hours = round(sum(chunk.cpu_seconds for chunk in chunks) / 3600.0, 3)
    origin = "random weights" if parent is None else f"starter {parent['sha256']}"
    sample_dir = work / "check-sample"
    fp32 = _check_sample(model, sample_dir, progress)
    provenance = {
        "command": command or shlex.join(["platelab", *sys.argv[1:]]),
        "commit": _git_commit(),
        "corpus": {
            **corpus["parameters"],
            "frames": corpus["frames"],
            "objects": corpus["objects"],
            "purpose": "training",
            "evaluation_seeds_excluded": "4242, 987654 and every seed from 1,000,000",
        },
        "training": {
            "recipe": {
                **dataclasses.asdict(plan.train_config()),
                **({} if parent is None else {"init": origin}),
            },
            "hours_planned": plan.hours,
            "steps": chunks[-1].steps,
            "images_seen": chunks[-1].images_seen,
            "training_minutes": chunks[-1].minutes,
            "cpu_hours": cpu_hours,
            "cpu_hours_total": round(cpu_hours + (parent or {}).get("cpu_hours_total", 0.0), 3),
            "from": origin,
            "machine": f"{os.cpu_count()} CPU cores, no GPU",
        },
        "chunks": [dataclasses.asdict(chunk) for chunk in chunks],
        "parent": parent,
        "heldout": chunks[-1].heldout,
        "note": note,
    }
    return save(
        out, model.model, config, provenance, check_dir=sample_dir, float32_check=fp32,
        progress=progress,
    )  # fmt: skip


def save(out, net, config, provenance, check_dir=None, float32_check=None, progress=False):
    """Writes a starter folder (replaced atomically): float16 weights, config, provenance.

    Args:
        out: the starter folder
        net: the Keras model (:func:`platelab.model.build_ssd`)
        config: its model configuration (``labels``, ``width``, ``levels``, ``anchors``...)
        provenance: how it was made (``weights``, ``format`` and ``created_at`` are added)
        check_dir: where to render :data:`CHECK_SAMPLE`; when given, the float16 starter
            is scored on it and the figures recorded (``check_sample``), with the model
            card written
        float32_check: the float32 model's check-sample figures, recorded beside them
        progress: show progress bars

    Returns:
        the folder
    """
    out = Path(out)
    weights = {}
    for layer in model_lib.all_layers(net):
        for index, array in enumerate(layer.get_weights()):
            weights[f"{layer.name}/{index}"] = array.astype(np.float16)
    with atomic_dir(out) as staging:
        weights_path = staging / WEIGHTS_FILE
        np.savez_compressed(weights_path, **weights)
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        provenance = {
            "format": FORMAT,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            **provenance,
            "weights": {
                "file": WEIGHTS_FILE,
                "sha256": _sha256(weights_path),
                "bytes": weights_path.stat().st_size,
                "dtype": "float16",
                "parameters": int(sum(array.size for array in weights.values())),
            },
            "architecture": {key: config[key] for key in ("width", "levels", "labels")},
        }
        _write_json(staging / PROVENANCE_FILE, provenance)
        if check_dir is not None:
            fp16 = _check_sample(load(staging).detector(), check_dir, progress)
            provenance["check_sample"] = {
                **{
                    key: list(value) if isinstance(value, tuple) else value
                    for key, value in CHECK_SAMPLE.items()
                },
                "frames": fp16["frames"],
                "ap50": fp16["ap50"],
                "ap50_float32": (float32_check or {}).get("ap50"),
            }
            _write_json(staging / PROVENANCE_FILE, provenance)
            (staging / CARD_FILE).write_text(model_card(provenance, config), encoding="utf-8")
    return out


def check_sample(starter, folder, progress=False):
    """Scores a starter on :data:`CHECK_SAMPLE` (rendered into ``folder``).

    Returns:
        ``{"frames": n, "ap50": {label: AP50}}``
    """
    return _check_sample(starter.detector(), folder, progress)


def model_card(provenance, config):
    """The starter's model card (Markdown) from its provenance."""
    training = provenance["training"]
    corpus = provenance["corpus"]
    heldout = provenance["heldout"]
    check = provenance.get("check_sample", {})
    rows = "\n".join(
        f"| {chunk['chunk']} | {chunk['steps']} | {chunk['images_seen']} | "
        f"{chunk['minutes']:.1f} | {chunk['cpu_seconds'] / 3600:.2f} | "
        + " | ".join(str(chunk["heldout"]["ap50"].get(label)) for label in config["labels"])
        + " |"
        for chunk in provenance["chunks"]
    )
    labels = " | ".join(f"AP50 {label}" for label in config["labels"])
    lineage = _lineage(provenance)
    if lineage:
        lineage = (
            f"\n\nIt continues an earlier starter ({training.get('cpu_hours_total')} CPU-hours "
            f"in all, this stage included):\n\n{lineage}"
        )
    return f"""# platelab starter

A vehicle and license-plate detector to fine-tune from (`init: starter`, the default).
SSDLite head on a MobileNetV2 of width {config["width"]}, feature strides
{", ".join(map(str, config["levels"]))}, labels {", ".join(config["labels"])}; trained on
{config["input_size"]} px crops, inferred on whole frames letterboxed to
{"x".join(map(str, config.get("infer_size") or []))}.

## Intended use
The starting point of a fine-tune on your own annotated frames (notebook `06_train`,
`platelab train`). Zero-shot it already finds vehicles and plates in synthetic traffic
video; on real footage fine-tune it first.

## Training data
Synthetic only: {corpus["videos"]} videos of {corpus["seconds"]:g} s rendered by
`platelab.synth` with batch seeds {corpus["seeds"][0]} to {corpus["seeds"][1]} ({_corpus_vantages(corpus)}), at 960x540, 1280x720 and 1920x1080, day, dusk and night, US and EU plates;
{corpus["frames"]} frames ({", ".join(f"{count} {label}" for label, count in corpus["objects"].items())}).
No seed that evaluation uses ({corpus["evaluation_seeds_excluded"]}).

## Training
{training["steps"]} steps of {training["recipe"]["batch_size"]} crops
({training["images_seen"]} images seen) in {training["training_minutes"]:.1f} minutes of
training, {training["cpu_hours"]} CPU-hours, on {training["machine"]}, from
{training.get("from", "random weights")}. Command: `{_without_note(provenance["command"])}`, commit
`{provenance["commit"]}`.{lineage}

| chunk | steps | images seen | minutes | CPU-hours | {labels} |
| ---: | ---: | ---: | ---: | ---: | {" | ".join("---:" for _ in config["labels"])} |
{rows}

AP50 on held-out synthetic video (seed {heldout["seed"]}, {heldout["frames"]} frames at
960x540, plates scored from 8 px high), the run's float32 model. CPU-hours count the
chunk processes (user and system time).{(" " + provenance["note"]) if provenance.get("note") else ""}

## Weights
`{provenance["weights"]["file"]}`: {provenance["weights"]["parameters"]} parameters in
float16, {provenance["weights"]["bytes"]} bytes, SHA-256 `{provenance["weights"]["sha256"]}`.
On the check sample (seed {check.get("seed")}, {check.get("frames")} frames) float16 scores
AP50 {check.get("ap50")} against float32's {check.get("ap50_float32")}.

## Limitations
Trained on rendered scenes only: real cameras bring plate looks, fonts, lighting and
compression it has not seen. Fine-tune before trusting it on real video.
"""


def _without_note(command):
    """A recorded command line without its ``--note`` text (the card quotes the note once,
    after the chunks); the provenance keeps the command whole."""
    try:
        words = shlex.split(command)
    except ValueError:
        return command
    kept, skip = [], False
    for word in words:
        if skip:
            skip = False
        elif word == "--note":
            skip = True
        elif not word.startswith("--note="):
            kept.append(word)
    return shlex.join(kept) if len(kept) < len(words) else command


def corpus_vantages(folder=None):
    """The vantage points of a starter's pretraining corpus, read from its provenance.

    Args:
        folder: the starter folder (default :data:`STARTER_DIR`)

    Returns:
        a tuple of vantage names: the corpus' own, or the six of
        :data:`platelab.synth.VANTAGES` where it names none (corpora before
        ``traffic_camera``)

    Raises:
        StarterError: no readable ``provenance.json``, or vantages that are not a list
            of names (unknown names are refused where they are rendered)
    """
    from platelab.synth.scene import VANTAGES

    path = (Path(folder) if folder else STARTER_DIR) / PROVENANCE_FILE
    try:
        corpus = json.loads(path.read_text(encoding="utf-8")).get("corpus") or {}
        vantages = corpus.get("vantages") or VANTAGES
    except (OSError, ValueError, AttributeError) as error:
        raise StarterError(f"{path}: cannot read its corpus ({error})") from None
    if not isinstance(vantages, list | tuple) or not all(isinstance(v, str) for v in vantages):
        raise StarterError(f"{path}: its corpus' vantages are not a list of names: {vantages!r}")
    return tuple(vantages)


# --------------------------------------------------------------------------------------
# Private helpers


def corpus_details(folder=None):
    """The scene details of a starter's pretraining corpus, read from its provenance.

    Args:
        folder: the starter folder (default :data:`STARTER_DIR`)

    Returns:
        a tuple of names of :data:`platelab.synth.scene.DETAILS` (empty where the
        corpus names none: corpora before them)

    Raises:
        StarterError: no readable ``provenance.json``, or details that are not a list
            of names
    """
    path = (Path(folder) if folder else STARTER_DIR) / PROVENANCE_FILE
    try:
        corpus = json.loads(path.read_text(encoding="utf-8")).get("corpus") or {}
        details = corpus.get("details") or ()
    except (OSError, ValueError, AttributeError) as error:
        raise StarterError(f"{path}: cannot read its corpus ({error})") from None
    if not isinstance(details, list | tuple) or not all(isinstance(d, str) for d in details):
        raise StarterError(f"{path}: its corpus' details are not a list of names: {details!r}")
    return tuple(details)


def _corpus_vantages(corpus):
    """The model card's words for a corpus' vantage points (six unless it names them)
    and its scene details (none unless it names them)."""
    from platelab.synth.scene import VANTAGES

    names = {
        "overpass": "overpass",
        "street_high": "high street",
        "street_low": "low street",
        "parking": "parking",
        "storefront": "storefront",
        "dashcam": "dashcam",
        "traffic_camera": "a narrow-lens traffic camera",
    }
    vantages = corpus.get("vantages") or VANTAGES
    words = ", ".join(names.get(name, name) for name in vantages)
    details = {
        "osd": "on-screen time stamps of fixed cameras",
        "badges": "make and model lettering on vehicles",
        "plates": "plates with real plates' looks",
        "fences": "fences and sliding gates of steel bars",
        "lamps": "rear lamps lit when braking",
        "stickers": "stickers and work vehicles' lettering",
    }
    extra = ", ".join(details.get(name, name) for name in corpus.get("details") or ())
    extra = f"; with {extra} (unannotated)" if extra else ""
    return f"{len(vantages)} videos a seed, one per vantage point: {words}{extra}"


def _check_sample(model, folder, progress):
    from platelab import goals

    sample = CHECK_SAMPLE
    evaluation = goals.evaluate_heldout_videos(
        model,
        folder,
        seed=sample["seed"],
        videos=sample["videos"],
        seconds=sample["seconds"],
        fps=sample["fps"],
        size=sample["size"],
        progress=progress,
    )
    return {
        "frames": evaluation.frames,
        "ap50": {
            label: None if values.get("AP50") is None else round(float(values["AP50"]), 4)
            for label, values in evaluation.metrics["per_class"].items()
        },
    }


def _parent(folder):
    """What a starter made by continuing another keeps of that one (None: no parent).

    Returns:
        ``{"sha256", "cpu_hours_total", "provenance"}``: the parent's weights' SHA-256,
        the CPU-hours of its whole lineage, and its own ``provenance.json``
    """
    if not Path(folder).is_dir():
        return None
    loaded = load(folder)
    training = loaded.provenance.get("training", {})
    total = training.get("cpu_hours_total", training.get("cpu_hours", 0.0))
    return {
        "sha256": loaded.sha256,
        "cpu_hours_total": float(total or 0.0),
        "provenance": loaded.provenance,
    }


def _lineage(provenance):
    """Markdown lines, one per starter this one continues (newest first)."""
    lines, parent = [], provenance.get("parent")
    while parent:
        made = parent["provenance"]
        training = made.get("training", {})
        heldout = made.get("heldout", {}).get("ap50", {})
        lines.append(
            f"- `{parent['sha256'][:12]}`: {training.get('steps')} steps of "
            f"{training.get('recipe', {}).get('input_size')} px crops in "
            f"{training.get('training_minutes', 0):.1f} minutes "
            f"({training.get('cpu_hours')} CPU-hours), commit `{made.get('commit')}`; "
            f"held-out AP50 {', '.join(f'{k} {v}' for k, v in heldout.items())}"
        )
        parent = made.get("parent")
    return "\n".join(lines)


def _class_subset(weights, starter_labels, labels):
    """The starter's weights with each class layer cut to ``labels`` (background first).

    A class layer's outputs are ``anchors * (classes + 1)`` channels, anchor-major, each
    anchor's block ``[background, class 1, ...]`` in the starter's label order.
    """
    keep = [0] + [starter_labels.index(label) + 1 for label in labels]
    block = len(starter_labels) + 1
    subset = dict(weights)
    for name, arrays in weights.items():
        if not name.endswith(CLASS_LAYER_SUFFIX):
            continue
        channels = arrays[-1].shape[-1]
        if channels % block:
            continue
        order = np.asarray(
            [anchor * block + k for anchor in range(channels // block) for k in keep]
        )
        subset[name] = [array[..., order] for array in arrays]
    return subset


def _write_json(path, document):
    Path(path).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def _sha256(path):
    from platelab.metadata import sha256_file

    return sha256_file(path)


def _git_commit():
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=paths.PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
