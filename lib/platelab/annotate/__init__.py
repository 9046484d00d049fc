"""Stage 03 (annotate): exchanging images and annotations with CVAT.

Curated frames go to CVAT in tasks of a few dozen images, annotators draw
boxes (optionally correcting a detector's pre-annotations), and each task
comes back as a "PASCAL VOC 1.1" export, with label spellings that drift
from batch to batch. Notebook ``03_annotate``; the stage has no command of
its own. This package gathers the public names of its modules (and of the
simulated annotator) in one namespace, so that ``annotate.X`` finds them all;
:mod:`platelab.cvat` is its former name, kept as an alias for one release.

* :func:`export_tasks` (:mod:`platelab.annotate.tasks`) cuts stage 02's kept
  images into task batches: ``tasks/task_NNN/`` with the images (hard links
  or copies), a zip to upload when creating the CVAT task, ``labels.json``
  (CVAT's label-constructor format, the fixed label set :data:`LABEL_SET`)
  and, given a detector's predictions, pre-annotations as a CVAT-importable
  VOC zip; ``tasks/index.json`` maps every task image back to its source.
* :func:`write_voc` (:mod:`platelab.annotate.voc`) writes CVAT's exact
  "PASCAL VOC 1.1" layout in the three forms met in practice
  (:data:`EXPORT_FORMS`).
* :func:`simulate_annotator` (:mod:`platelab.synth.annotator`) plays the
  annotator on synthetic data: stage 00's ground truth for each task's
  frames, exported in rotating forms with label drift, CVAT's
  ``frame_NNNNNN`` renaming and, optionally, a known set of injected
  mistakes (``mistakes.json``) for stage 04 to find.
* :func:`import_exports` (:mod:`platelab.annotate.exports`) loads exports in
  every form (and the user's own, from ``data/<workspace>/raw/annotations/``)
  with :func:`platelab.annotations.load_batch` (the VOC reader shared with
  stages 04, 05 and 07), collecting one-line problems.
* :func:`write_openalpr_voc` (:mod:`platelab.annotate.openalpr`) reads real photos
  annotated in the OpenALPR benchmark format (``<name>.txt`` beside each photo) into
  this VOC layout, for ``platelab evaluate``.
* :func:`upload_tasks` / :func:`download_annotations`
  (:mod:`platelab.annotate.client`) talk to a real CVAT server through
  FiftyOne's CVAT annotation backend, when a URL is given.

:class:`CvatError`, the label set and the folders come from
:mod:`platelab.annotate.base`.

The simulated annotator's names are loaded on first use (module
``__getattr__``): :mod:`platelab.synth.annotator` builds on this package's
modules, so importing it here eagerly would make a cycle whenever it is
imported first.

On-disk layout (``data/<workspace>/interim/cvat/``)::

    tasks/index.json                      every task image -> its source (see export_tasks)
    tasks/labels.json                     the label set, CVAT label-constructor JSON
    tasks/task_NNN/images/<name>.png      the task's images (hard links or copies)
    tasks/task_NNN/task_NNN_images.zip    upload this when creating the CVAT task
    tasks/task_NNN/labels.json            the same label set (paste into "Raw")
    tasks/task_NNN/task_NNN_preannotations_voc.zip   optional: "Upload annotations", PASCAL VOC 1.1
    exports/task_NNN_voc.zip | task_NNN_voc/          one simulated export per task
    exports/exports.json                  what each export holds (form, batch, spellings...)
    exports/mistakes.json                 the injected mistakes (task, image, kind, boxes)
    downloads/task_NNN_voc/               annotations downloaded from a CVAT server
"""

from platelab.annotate.base import (
    FALLBACK_COLORS,
    LABEL_COLORS,
    LABEL_SET,
    CvatError,
    check_writable,
    cvat_dir,
    downloads_dir,
    exports_dir,
    tasks_dir,
    user_exports_dir,
)
from platelab.annotate.client import (
    check_server,
    download_annotations,
    fiftyone_label_schema,
    upload_tasks,
)
from platelab.annotate.exports import (
    ImportedExport,
    ImportResult,
    exports_table,
    gallery,
    import_exports,
)
from platelab.annotate.openalpr import read_openalpr_folder, write_openalpr_voc
from platelab.annotate.tasks import (
    DEFAULT_BATCH_SIZE,
    INDEX_FORMAT,
    INDEX_NAME,
    LABELS_NAME,
    export_tasks,
    find_source,
    load_index,
    load_predictions,
    preannotator,
    task_of,
    tasks_table,
)
from platelab.annotate.voc import (
    EXPORT_FORMS,
    VocImage,
    labelmap_text,
    read_voc_annotations,
    voc_xml,
    write_voc,
    write_zip,
)

_SIMULATED_ANNOTATOR = frozenset(
    {
        "DRIFT_SPELLINGS",
        "DUPLICATE_JITTER",
        "EXPORTS_FORMAT",
        "EXPORTS_NAME",
        "MISTAKE_KINDS",
        "MISTAKES_FORMAT",
        "MISTAKES_NAME",
        "OCCLUDED_FLAG",
        "SHIFT_RANGE",
        "TRUNCATED_FLAG",
        "batches_table",
        "load_exports_manifest",
        "load_mistakes",
        "mistakes_table",
        "plot_mistakes",
        "simulate_annotator",
    }
)
"""The names that live in :mod:`platelab.synth.annotator`, loaded on first use."""

__all__ = [
    # base: the error, the label set, the folders
    "CvatError",
    "LABEL_SET",
    "LABEL_COLORS",
    "FALLBACK_COLORS",
    "cvat_dir",
    "tasks_dir",
    "exports_dir",
    "downloads_dir",
    "user_exports_dir",
    "check_writable",
    # tasks: task batches and pre-annotations
    "INDEX_FORMAT",
    "INDEX_NAME",
    "LABELS_NAME",
    "DEFAULT_BATCH_SIZE",
    "export_tasks",
    "preannotator",
    "load_predictions",
    "load_index",
    "find_source",
    "task_of",
    "tasks_table",
    # voc: CVAT's "PASCAL VOC 1.1" writer and reader
    "EXPORT_FORMS",
    "VocImage",
    "voc_xml",
    "labelmap_text",
    "write_voc",
    "read_voc_annotations",
    "write_zip",
    # openalpr: real photos in the OpenALPR benchmark format
    "read_openalpr_folder",
    "write_openalpr_voc",
    # synth.annotator: the simulated annotator
    "EXPORTS_FORMAT",
    "MISTAKES_FORMAT",
    "EXPORTS_NAME",
    "MISTAKES_NAME",
    "DRIFT_SPELLINGS",
    "MISTAKE_KINDS",
    "OCCLUDED_FLAG",
    "TRUNCATED_FLAG",
    "SHIFT_RANGE",
    "DUPLICATE_JITTER",
    "simulate_annotator",
    "batches_table",
    "load_mistakes",
    "load_exports_manifest",
    "mistakes_table",
    "plot_mistakes",
    # exports: importing exports
    "ImportedExport",
    "ImportResult",
    "import_exports",
    "exports_table",
    "gallery",
    # client: a real CVAT server through FiftyOne
    "fiftyone_label_schema",
    "check_server",
    "upload_tasks",
    "download_annotations",
]


def __getattr__(name):
    """The simulated annotator's names (:mod:`platelab.synth.annotator`), imported on first use."""
    if name in _SIMULATED_ANNOTATOR:
        from platelab.synth import annotator

        return getattr(annotator, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _SIMULATED_ANNOTATOR)
