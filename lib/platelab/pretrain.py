"""Pretraining the starter: a large synthetic corpus, trained in resumable chunks.

The starter (:mod:`platelab.starter`) is the detector every fine-tune begins from
(``init: starter``). It is made here, in three steps:

1. :func:`build_corpus` renders the corpus: :attr:`PretrainConfig.videos` short videos
   from many generator batch seeds (``seed``, ``seed + 1``, ... six videos each, one
   per vantage point), at 960x540, 1280x720 and 1920x1080, day, dusk and night, US and
   EU plates, every frame kept (frozen and black feed dropped), saved as JPEG of
   varied quality and merged into a training dataset by stage 05's
   :func:`platelab.merge.merge`. No corpus seed may be one that evaluation uses
   (:mod:`platelab.synth.seeds`): they are all checked before anything is rendered.
2. :func:`run_chunk` trains on it for at most ``chunk_minutes``, then scores the
   model so far on the held-out synthetic set (seed 4242) and appends the chunk to
   ``chunks.json``. Each chunk continues from the last checkpoint, in a new process or
   on another day; ``hours`` is the plan, and the learning rate anneals over it.
   :func:`extend` adds hours to a finished plan (``platelab pretrain --continue``):
   the cosine schedule then restarts part-way up, as in a warm restart.
3. :func:`platelab.starter.ship` writes ``models/starter/`` from the run.

A plan whose ``training`` sets ``init`` to a starter folder is a further stage of that
starter (for example larger crops, so that whole large vehicles are seen): the starter
is checked and copied into the work folder (``parent-starter/``) when the plan starts,
every chunk trains from that copy, and the shipped starter's provenance carries the
parent's, so the lineage and the CPU-hours add up.

Work folder (``data/pretrain/`` by default)::

    pretrain.json         the plan (a PretrainConfig) and the corpus' fingerprint
    corpus/voc/           the rendered frames in CVAT's VOC layout (stage 03's format)
    corpus/dataset/       the merged dataset with its TFRecords (stage 05's format)
    run/                  the training run (checkpoints, metrics.csv, best.keras)
    heldout-4242/         the held-out videos scored after each chunk
    chunks.json           one entry per chunk: steps, images seen, CPU seconds, AP50
    parent-starter/       the starter this plan continues (``training.init``), if any
"""

import concurrent.futures
import dataclasses
import hashlib
import json
import logging
import math
import multiprocessing
import os
import shutil
import time
from pathlib import Path

from platelab import config as config_lib
from platelab import paths
from platelab.atomic import atomic_dir, atomic_write_json
from platelab.exceptions import PlatelabError
from platelab.synth import seeds as seeds_lib
from platelab.synth.scene import DETAILS, EXTRA_VANTAGES, check_details, check_vantages
from platelab.synth.scene import VANTAGES as DEFAULT_VANTAGES

logger = logging.getLogger(__name__)

CORPUS_FORMAT = "platelab-pretrain-corpus/1"
SIZES = ((960, 540), (1280, 720), (1920, 1080))
"""Frame sizes of the corpus; shard ``i`` renders at ``SIZES[SIZE_CYCLE[i % 5]]``."""
SIZE_CYCLE = (0, 1, 0, 1, 2)
"""40 % 960x540, 40 % 1280x720, 20 % 1920x1080."""
PARENT_DIR = "parent-starter"
"""The copy of the starter a plan continues from (``training.init``), in its work folder."""
DEAD_FEED = ("black", "frozen")
"""Frame states left out of the corpus (stage 02 drops them from user data too)."""

PRETRAIN_TRAINING = {
    "input_size": 192,
    "infer_size": 960,
    "width": 0.5,
    "batch_size": 16,
    "steps": 1_000_000,
    "learning_rate": 0.006,
    "warmup_steps": 300,
    "log_every": 100,
    "eval_every": 500,
    "checkpoint_every": 250,
    "init": "auto",
    "seed": 7,
}
"""The pretraining run's :class:`platelab.train.TrainConfig` values: the default
profile's architecture and recipe (so the starter fits it), with a step count no plan
reaches: the schedule anneals over ``hours`` (``max_minutes``) instead."""


class PretrainError(PlatelabError):
    """A pretraining work folder or plan that cannot be used (one-line message)."""


@dataclasses.dataclass
class PretrainConfig:
    """The plan of a pretraining.

    Attributes:
        videos: corpus videos (rounded up to whole shards, one video per vantage)
        seconds: length of each corpus video
        fps: frames rendered (and all kept) per second of video
        seed: the first corpus batch seed; shard ``i`` uses ``seed + i``
        jpeg_quality: lowest and highest JPEG quality of the saved frames
        val_fraction: share of the corpus videos held for validation (mAP, best model)
        hours: the training plan in hours of training; the learning rate anneals to 0
            over it
        heldout_seed: the held-out synthetic set scored after every chunk (an
            evaluation seed)
        heldout_videos: its videos (the vantage points cycled; 5 s, 10 frames scored each)
        training: :class:`platelab.train.TrainConfig` values over
            :data:`PRETRAIN_TRAINING`
        vantages: the vantage points of each shard, in order (default the six of
            :data:`platelab.synth.VANTAGES`; add ``traffic_camera`` for elevated
            narrow-lens views). Shard ``i`` is the batch ``seed + i`` with these
            vantages, so its first six videos are the same scenes with or without an
            extra one
        details: optional scene details of :data:`platelab.synth.scene.DETAILS` drawn
            in every corpus video (default none): ``osd`` (a fixed camera's on-screen
            time stamp), ``badges`` (make and model lettering on vehicles) and
            ``fences`` (fences and sliding gates of steel bars, chain-link fences),
            ``lamps`` (rear lamps with LED insides, lit when braking) and ``stickers``
            (bumper stickers, window lettering, work vehicles' telephone numbers, buses'
            fleet numbers), hard negatives never annotated, and ``plates`` (real
            plates' looks); the scenes are otherwise those rendered without them (the
            details draw from random generators of their own)
    """

    videos: int = 600
    seconds: float = 3.0
    fps: float = 2.0
    seed: int = 20_000
    jpeg_quality: tuple = (70, 95)
    val_fraction: float = 0.02
    hours: float = 2.0
    heldout_seed: int = 4242
    heldout_videos: int = 12
    training: dict = dataclasses.field(default_factory=dict)
    vantages: tuple = DEFAULT_VANTAGES
    details: tuple = ()

    @property
    def shards(self):
        return math.ceil(self.videos / len(self.vantages))

    def corpus_seeds(self):
        """The corpus' batch seeds, in order."""
        return [self.seed + index for index in range(self.shards)]

    def check(self):
        """Raises PretrainError on a bad value and ReservedSeedError naming a reserved seed."""
        if self.videos < 6 or self.seconds <= 0 or self.fps <= 0 or self.hours <= 0:
            raise PretrainError(
                "videos (at least 6), seconds, fps and hours must be positive, got "
                f"{self.videos}, {self.seconds}, {self.fps}, {self.hours}"
            )
        try:
            check_vantages(self.vantages)
            known = True
        except ValueError:
            known = False
        if not known or not self.vantages or len(set(self.vantages)) < len(self.vantages):
            raise PretrainError(
                f"vantages must be distinct names of {', '.join(DEFAULT_VANTAGES + EXTRA_VANTAGES)}"
                f", got {', '.join(self.vantages) or 'none'}"
            )
        try:
            check_details(self.details)
            known = True
        except ValueError:
            known = False
        if not known or len(set(self.details)) < len(self.details):
            raise PretrainError(
                f"details must be distinct names of {', '.join(DETAILS)}, got "
                f"{', '.join(map(str, self.details))}"
            )
        if not 0 < self.val_fraction < 0.5:
            raise PretrainError(
                f"val_fraction must be above 0 and below 0.5, got {self.val_fraction}"
            )
        for seed in self.corpus_seeds():
            seeds_lib.check_seed(seed, "training")
        seeds_lib.check_seed(self.heldout_seed, "evaluation")
        if not seeds_lib.is_evaluation_seed(self.heldout_seed):
            raise PretrainError(
                f"heldout_seed {self.heldout_seed} is not reserved for evaluation: a corpus "
                "could use it"
            )

    def train_config(self, folder=None):
        """The pretraining run's :class:`platelab.train.TrainConfig`.

        Args:
            folder: the work folder; where it holds a parent starter (:data:`PARENT_DIR`)
                the run starts from that copy instead of ``training.init``; where its
                run began before a recipe key whose default has changed, the run keeps
                the earlier value (:data:`platelab.train.EARLIER_BEHAVIOUR`)
        """
        from platelab import train

        values = {**PRETRAIN_TRAINING, **self.training, "max_minutes": 60.0 * self.hours}
        if folder is not None and (Path(folder) / PARENT_DIR).is_dir():
            values["init"] = str(Path(folder) / PARENT_DIR)
        if folder is not None:
            values.update(_begun_as(Path(folder) / "run", self.training))
        try:
            return train.TrainConfig.from_dict(values)
        except (PlatelabError, TypeError, ValueError) as error:
            raise PretrainError(f"training: {error}") from None

    def corpus_parameters(self):
        """What fixes the corpus' content (its files are a function of these)."""
        parameters = {
            "format": CORPUS_FORMAT,
            "videos": self.shards * len(self.vantages),
            "seconds": float(self.seconds),
            "fps": float(self.fps),
            "seeds": [self.seed, self.seed + self.shards - 1],
            "sizes": [list(SIZES[SIZE_CYCLE[index % len(SIZE_CYCLE)]]) for index in range(5)],
            "jpeg_quality": list(self.jpeg_quality),
            "val_fraction": float(self.val_fraction),
        }
        if tuple(self.vantages) != DEFAULT_VANTAGES:  # corpora from before keep their marker
            parameters["vantages"] = list(self.vantages)
        if self.details:  # so do those without details
            parameters["details"] = [name for name in DETAILS if name in self.details]
        return parameters

    @classmethod
    def from_dict(cls, values):
        config_lib.check_fields(cls, values, PretrainError, "pretraining")
        config = cls(**values)
        config.jpeg_quality = tuple(config.jpeg_quality)
        config.vantages = tuple(config.vantages)
        config.details = tuple(config.details or ())
        return config


@dataclasses.dataclass
class ChunkResult:
    """One chunk of pretraining.

    Attributes:
        chunk: its number (1 for the first)
        steps: the run's step count after it
        images_seen: training images (crops) seen in all, after it
        minutes: training minutes in all, after it (``elapsed_s`` of metrics.csv)
        cpu_seconds: CPU seconds this chunk's process spent (user + system)
        status: the run's status (``paused``, ``time_limited``: the plan is done)
        heldout: AP50 per class on the held-out set, and the frames scored
    """

    chunk: int
    steps: int
    images_seen: int
    minutes: float
    cpu_seconds: float
    status: str
    heldout: dict
    finished_at: str = ""


def replay_corpus(folder, frames, vantages=DEFAULT_VANTAGES, progress=True, details=()):
    """A small corpus drawn like the starter's pretraining corpus, for rehearsal.

    ``replay: starter`` (:class:`platelab.train.TrainConfig`) mixes it into a
    fine-tune's training images, so the fine-tune keeps seeing the data the starter
    learnt from. It uses the pretraining corpus' own seeds (:attr:`PretrainConfig.seed`
    on, never an evaluation seed), vantages, sizes and JPEG qualities, but renders one
    frame of each video (its first), so that a few frames still span many scenes: 108
    frames come from 19 seeds and 114 scenes (six vantages), where whole videos would
    give 3 seeds.
    Rendering costs 0.4-0.65 s a frame on one core (the scene, not the frame, is the
    cost). Built once and reused while its parameters match (:func:`build_corpus`).

    Args:
        folder: where to build it (its ``corpus/`` subfolder)
        frames: at least this many frames in its train split (one shard more than
            ``frames / len(vantages)`` covers the videos held for val and any dead feed)
        vantages: the starter corpus' vantage points, one video each a shard
            (:func:`platelab.starter.corpus_vantages`); the default six keep the
            corpus that replay rendered before ``traffic_camera``
        progress: show progress bars
        details: the starter corpus' scene details (:func:`platelab.starter.corpus_details`)

    Returns:
        the merged dataset folder
    """
    config = PretrainConfig(vantages=tuple(vantages), details=tuple(details))
    config.check()
    per_shard = len(config.vantages)
    shards = math.ceil(max(int(frames), 1) / per_shard) + 1
    one_frame = dataclasses.replace(config, videos=per_shard * shards, seconds=1.0 / config.fps)
    return build_corpus(folder, one_frame, progress=progress)


def work_dir(path=None):
    """The pretraining work folder (default ``data/pretrain``)."""
    return Path(path) if path else paths.DATA_DIR / "pretrain"


def load_plan(folder):
    """The :class:`PretrainConfig` saved in a work folder, or None."""
    path = Path(folder) / "pretrain.json"
    if not path.is_file():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        return PretrainConfig.from_dict(document["plan"])
    except (ValueError, KeyError, TypeError) as error:
        raise PretrainError(f"{path}: not a pretraining plan ({error})") from None


def save_plan(folder, config):
    atomic_write_json(Path(folder) / "pretrain.json", {"plan": dataclasses.asdict(config)})


def build_corpus(folder, config, workers=None, progress=True):
    """Renders and merges the corpus into ``folder/corpus`` (reused when already built).

    Args:
        folder: the work folder
        config: a :class:`PretrainConfig`
        workers: rendering processes (default: min(2, CPU count))
        progress: show progress bars

    Returns:
        the merged dataset folder (``folder/corpus/dataset``)

    Raises:
        ReservedSeedError: a corpus seed is reserved for evaluation (before rendering)
    """
    from tqdm.auto import tqdm

    from platelab import annotate, merge

    config.check()
    corpus = Path(folder) / "corpus"
    dataset = corpus / "dataset"
    marker = corpus / "corpus.json"
    wanted = config.corpus_parameters()
    if (dataset / "dataset.json").is_file() and _marker_parameters(marker) == wanted:
        logger.info("%s: corpus up to date, reused", corpus)
        return dataset
    corpus.mkdir(parents=True, exist_ok=True)
    voc_dir = corpus / "voc"
    workers = max(1, min(int(workers or min(2, os.cpu_count() or 1)), config.shards))
    images, review = [], {}
    with atomic_dir(corpus / "frames") as staging:
        jobs = [(index, config, str(staging)) for index in range(config.shards)]
        bar = tqdm(total=len(jobs), desc="corpus shards", disable=not progress)
        try:
            if workers == 1:
                results = map(_render_shard, jobs)
                for result in results:
                    _collect(result, images, review)
                    bar.update(1)
            else:
                context = multiprocessing.get_context("spawn")
                with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
                    for result in pool.map(_render_shard, jobs):
                        _collect(result, images, review)
                        bar.update(1)
        finally:
            bar.close()
    frames_dir = corpus / "frames"
    for image in images:
        image.image_path = frames_dir / Path(image.image_path).name
    annotate.write_voc(images, voc_dir, form="folder", labels=["vehicle", "license_plate"])
    fractions = (1.0 - config.val_fraction, config.val_fraction, 0.0)
    merge.merge(
        [voc_dir],
        dataset,
        progress=progress,
        fractions=fractions,
        seed=config.seed,
        review=review,
    )
    atomic_write_json(
        marker,
        {
            "parameters": wanted,
            "frames": len(images),
            "objects": _count_objects(images),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        },
    )
    return dataset


def run_chunk(folder, minutes, progress=True, echo=None):
    """Trains one chunk (at most ``minutes``), scores it on held-out video and logs it.

    Args:
        folder: the work folder (with its plan, see :func:`start`)
        minutes: this chunk's training minutes at most (the plan's end comes first)
        progress: show progress bars
        echo: receives one line per log row (default: logger.info)

    Returns:
        the :class:`ChunkResult` (also appended to ``chunks.json``), or None when the
        plan was already done (nothing trained)
    """
    from platelab import goals, train

    folder = Path(folder)
    config = load_plan(folder)
    if config is None:
        raise PretrainError(f"{folder}: no pretraining plan here (start one first)")
    dataset = build_corpus(folder, config, progress=progress)
    train_config = config.train_config(folder)
    before = os.times()
    state = train.train(
        dataset,
        folder / "run",
        train_config,
        progress=progress,
        echo=echo,
        pause_after_minutes=float(minutes),
    )
    after = os.times()
    if state.get("status") not in ("paused", "time_limited"):
        raise PretrainError(f"{folder / 'run'}: training ended with status {state.get('status')}")
    chunks = load_chunks(folder)
    trained = train.read_metrics(folder / "run")
    if chunks and trained and chunks[-1].steps == int(state["step"]):
        return None
    heldout = goals.evaluate_heldout_videos(
        folder / "run",
        folder / f"heldout-{config.heldout_seed}",
        seed=config.heldout_seed,
        videos=config.heldout_videos,
        progress=progress,
    )
    per_class = heldout.metrics["per_class"]
    result = ChunkResult(
        chunk=len(chunks) + 1,
        steps=int(state["step"]),
        images_seen=int(state["step"]) * train_config.batch_size,
        minutes=round(float(trained[-1]["elapsed_s"]) / 60.0, 2) if trained else 0.0,
        cpu_seconds=round(
            (after.user - before.user)
            + (after.system - before.system)
            + (after.children_user - before.children_user)
            + (after.children_system - before.children_system),
            1,
        ),
        status=str(state.get("status")),
        heldout={
            "seed": config.heldout_seed,
            "frames": heldout.frames,
            "ap50": {label: _round(values.get("AP50")) for label, values in per_class.items()},
        },
        finished_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
    )
    chunks.append(result)
    atomic_write_json(folder / "chunks.json", [dataclasses.asdict(item) for item in chunks])
    return result


def run_chunk_in_process(folder, minutes, progress=True):
    """:func:`run_chunk` in a fresh process, so that each chunk's memory is returned.

    A chunk holds the corpus in memory (about 6 GB for the default corpus) and
    TensorFlow keeps part of what one training built; chunk after chunk in one process
    would add up until the system kills it.

    Returns:
        the chunk's :class:`ChunkResult`, or None when nothing was trained

    Raises:
        PretrainError: the chunk's process failed (its exit status named)
    """
    before = len(load_chunks(folder))
    context = multiprocessing.get_context("spawn")
    process = context.Process(
        target=_chunk_process, args=(str(folder), float(minutes), bool(progress))
    )
    process.start()
    process.join()
    if process.exitcode != 0:
        raise PretrainError(
            f"{folder}: the chunk's process ended with status {process.exitcode} "
            "(rerun to continue from the last checkpoint)"
        )
    chunks = load_chunks(folder)
    return chunks[-1] if len(chunks) > before else None


def _chunk_process(folder, minutes, progress):
    logging.basicConfig(level=logging.WARNING)
    run_chunk(folder, minutes, progress=progress, echo=print)


def start(folder, config):
    """Saves a plan in a new work folder, or checks it against the one already there.

    Returns:
        the plan in force

    Raises:
        PretrainError: the folder holds a plan with another corpus or recipe
    """
    config.check()
    config.train_config()
    folder = Path(folder)
    existing = load_plan(folder)
    if existing is None:
        folder.mkdir(parents=True, exist_ok=True)
        _copy_parent(folder, config.training.get("init"))
        save_plan(folder, config)
        return config
    if existing.corpus_parameters() != config.corpus_parameters() or (
        existing.training != config.training
    ):
        raise PretrainError(
            f"{folder} holds a pretraining of another corpus or recipe: use another "
            "--work folder, or --continue to add hours to it"
        )
    if existing.hours != config.hours:
        existing.hours = config.hours
        save_plan(folder, existing)
    return existing


def extend(folder, hours):
    """Adds ``hours`` of training to the plan in ``folder`` (``--continue``).

    Returns:
        the extended plan
    """
    existing = load_plan(folder)
    if existing is None:
        raise PretrainError(f"{folder}: no pretraining to continue")
    if not hours > 0:
        raise PretrainError(f"--hours must be positive, got {hours}")
    existing.hours = round(existing.hours + float(hours), 4)
    save_plan(folder, existing)
    return existing


def load_chunks(folder):
    """The :class:`ChunkResult` list of ``chunks.json`` (empty when absent)."""
    path = Path(folder) / "chunks.json"
    if not path.is_file():
        return []
    return [ChunkResult(**item) for item in json.loads(path.read_text(encoding="utf-8"))]


def plan_done(folder):
    """Whether the run has trained all the hours of its plan."""
    from platelab import detector

    state = detector.read_state(Path(folder) / "run") if (Path(folder) / "run").is_dir() else {}
    if state.get("status") != "time_limited":
        return False
    config = load_plan(folder)
    chunks = load_chunks(folder)
    return bool(chunks) and chunks[-1].minutes >= 60.0 * config.hours - 0.05


# --------------------------------------------------------------------------------------
# Private helpers


def _render_shard(job):
    """Renders one shard (a video per vantage) into JPEGs; returns (VocImage, review info)
    pairs."""
    import cv2
    import numpy as np

    from platelab import synth
    from platelab.annotate import VocImage

    index, config, out = job
    seed = config.seed + index
    size = SIZES[SIZE_CYCLE[index % len(SIZE_CYCLE)]]
    rng = np.random.default_rng([seed, 17])
    low, high = config.jpeg_quality
    found = []
    vantages = list(config.vantages)
    specs = synth.video_specs(
        len(vantages), config.seconds, config.fps, size, seed, vantages, details=config.details
    )
    for spec in specs:
        for image_bgr, truth in synth.render_video(spec):
            if truth["state"] in DEAD_FEED:
                continue
            name = f"{spec.source_id}_t{int(round(truth['time'] * 1000)):08d}"
            quality = int(rng.integers(low, high + 1))
            ok, encoded = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if not ok:
                raise PretrainError(f"{name}: JPEG encoding failed")
            data = encoded.tobytes()
            path = Path(out) / f"{name}.jpg"
            path.write_bytes(data)
            objects = [_voc_object(item) for item in truth["objects"]]
            found.append(
                (
                    VocImage(name, path, size[0], size[1], objects),
                    hashlib.sha256(data).hexdigest(),
                    {
                        "source_id": spec.source_id,
                        "vantage": spec.vantage,
                        "lighting": spec.lighting,
                        "tags": [],
                    },
                )
            )
    return found


def _begun_as(run_dir, training):
    """Training values a run begun before they existed keeps (a plan goes on as it began).

    Args:
        run_dir: the pretraining run folder (may not exist yet)
        training: the plan's own training values (always kept)

    Returns:
        ``{key: value}`` of :data:`platelab.train.EARLIER_BEHAVIOUR` keys missing from
        the run's ``config.json`` and not set by the plan
    """
    from platelab import detector, train

    if not (Path(run_dir) / detector.CONFIG_FILENAME).is_file():
        return {}
    stored = detector.read_config(run_dir).get("training", {})
    earlier = train.earlier_values(stored)
    return {
        key: earlier[key]
        for key in train.EARLIER_BEHAVIOUR
        if key in earlier and key not in training
    }


def _copy_parent(folder, init):
    """Copies the starter ``init`` names (if it names one) into ``folder/parent-starter``.

    Raises:
        StarterError: a starter that is incomplete or fails its SHA-256 check
    """
    from platelab import starter

    source = starter.resolve(init) if init is not None else None
    if source is None:
        return
    loaded = starter.load(source)
    with atomic_dir(Path(folder) / PARENT_DIR) as staging:
        for name in (starter.WEIGHTS_FILE, starter.CONFIG_FILE, starter.PROVENANCE_FILE):
            shutil.copy2(Path(source) / name, staging / name)
    logger.info("%s: continues the starter %s (SHA-256 %s)", folder, source, loaded.sha256[:12])


def _marker_parameters(marker):
    try:
        return json.loads(Path(marker).read_text(encoding="utf-8")).get("parameters")
    except (OSError, ValueError, AttributeError):
        return None


def _collect(result, images, review):
    for image, digest, info in result:
        images.append(image)
        review[digest] = info


def _voc_object(item):
    return {
        "label": item["label"],
        "bbox": [float(value) for value in item["box"]],
        "difficult": bool(item.get("difficult")),
        "truncated": float(item.get("truncated") or 0.0) >= 0.5,
        "occluded": float(item.get("occluded") or 0.0) >= 0.5,
    }


def _count_objects(images):
    counts = {}
    for image in images:
        for item in image.objects:
            counts[item["label"]] = counts.get(item["label"], 0) + 1
    return counts


def _round(value):
    return None if value is None else round(float(value), 4)
