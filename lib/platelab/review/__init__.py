"""Stage 04 (review): annotation QA and likely mistakes, reviewed in FiftyOne.

Every annotation batch (CVAT "PASCAL VOC 1.1" exports as
:func:`platelab.annotate.import_exports` loads them) goes into **one persistent
FiftyOne dataset**, reloaded idempotently: a sample per batch image, its file
copied out of the temporary extraction folder to a stable place
(``data/<workspace>/interim/review/images/<batch>/<name>.<ext>``), and review
tags (``fix``, ``ok``, ``exclude``) kept across reloads.

* **Labels** are normalised through an alias map (``params/aliases.yaml``,
  default :data:`platelab.annotations.DEFAULT_ALIASES`) with FiftyOne's
  ``map_labels``. Unknown labels keep their spelling, are flagged
  (``unknown_label`` attribute) and listed; nothing is dropped.
* **QA checks** (:data:`QA_CHECKS`), each a saved view and a count: boxes
  outside the image or degenerate, tiny boxes, duplicate boxes, plates outside
  every vehicle, images without labels, unknown labels.
* **Likely mistakes**: :func:`rank_images` scores every image by model-free
  evidence (see :mod:`platelab.review.ranking`): duplicate boxes, plates
  outside any vehicle, objects of the neighbouring frames of the same video
  found in the image (template matching) without their box or beside a
  shifted one, and boxes whose shape and look fit the other class (a
  classifier learnt out of fold from the batch itself) unless the
  neighbouring frames agree. With a detector's predictions,
  :func:`compute_prediction_mistakenness` adds FiftyOne Brain's mistakenness
  and missing-box candidates.
* **Review**: the App (:func:`launch_app`), the ipywidgets panel in
  :mod:`platelab.review_widgets`, and :func:`export_tags` /
  :func:`tagged_images` for stage 05.

Sample fields of the dataset: ``filepath``, ``tags``, ``metadata``
(width, height), ``batch``, ``image_name``, ``source_id``, ``vantage``,
``lighting``, ``time``, ``frame_index``, ``split`` (None until stage 05),
``sha256``, ``ground_truth`` (Detections, relative coordinates; attributes
``original_label``, ``unknown_label``, ``difficult``, ``occluded``,
``truncated``, ``text``, ``vehicle_type``, ``qa_flags``, ``evidence``), ``qa_flags``
(list of the checks the image fails), ``suspicion`` (the model-free ranking
score), ``suspicion_reasons`` (one line per piece of evidence) and, with
predictions, ``predictions`` and ``mistakenness``.

The modules, in the order the stage runs them (every public name is
importable from ``platelab.review`` itself):

* :mod:`~platelab.review.records`: :class:`ReviewImage`, :class:`ReviewError`, box geometry
* :mod:`~platelab.review.load`: annotation batches -> images; aliases and the label table
* :mod:`~platelab.review.qa`: the QA checks, class balance and box shapes
* :mod:`~platelab.review.evidence`: the ranking's thresholds (:class:`RankingThresholds`)
  and :class:`Evidence`
* :mod:`~platelab.review.ranking`: :func:`rank_images` and the ranking's table and gallery,
  with its steps in :mod:`~platelab.review.tracking` (neighbouring frames) and
  :mod:`~platelab.review.outliers` (label classifier)
* :mod:`~platelab.review.quality`: how many injected mistakes a ranking's top holds
* :mod:`~platelab.review.dataset`: the FiftyOne dataset, its views, predictions, App and tags
* :mod:`~platelab.review.summary`: the summary file ``review.json``
"""

from platelab.review.dataset import (
    LIKELY_MISTAKES_VIEW,
    MISSING_CANDIDATES_VIEW,
    MISTAKENNESS_VIEW,
    REVIEW_TAGS,
    add_predictions,
    build_dataset,
    compute_prediction_mistakenness,
    export_tags,
    launch_app,
    save_views,
    set_tag,
    tagged_images,
)
from platelab.review.evidence import (
    AMBIGUITY,
    APPEARANCE_SIZE,
    DEFAULT_THRESHOLDS,
    EVIDENCE_KINDS,
    EVIDENCE_WEIGHTS,
    HIDDEN_FACTOR,
    MATCH_MIN_TEMPLATE,
    MATCH_NCC,
    MATCH_SAME_PLACE,
    MATCH_TEMPLATE_AREA,
    MATCH_TEXTURE,
    SINGLE_NEIGHBOUR,
    TRACK_MAX_GAP,
    VEHICLE_SIZES,
    Evidence,
    RankingThresholds,
)
from platelab.review.load import (
    default_dataset_name,
    find_batches,
    label_table,
    load_aliases,
    load_images,
    review_dir,
    stage_image,
    unknown_labels,
)
from platelab.review.qa import (
    DUPLICATE_IOU,
    ENCLOSED_FRACTION,
    QA_CHECKS,
    TINY_BOX_PIXELS,
    box_shapes,
    class_balance,
    plot_box_shapes,
    plot_class_balance,
    run_qa_checks,
)
from platelab.review.quality import mistake_key, plot_review_curve, review_curve, review_quality
from platelab.review.ranking import mistakes_gallery, rank_images, ranking_table
from platelab.review.records import ReviewError, ReviewImage
from platelab.review.summary import SUMMARY_FORMAT, SUMMARY_NAME, write_summary

__all__ = [
    # records
    "ReviewError",
    "ReviewImage",
    # loading
    "default_dataset_name",
    "find_batches",
    "label_table",
    "load_aliases",
    "load_images",
    "review_dir",
    "stage_image",
    "unknown_labels",
    # QA
    "DUPLICATE_IOU",
    "ENCLOSED_FRACTION",
    "QA_CHECKS",
    "TINY_BOX_PIXELS",
    "box_shapes",
    "class_balance",
    "plot_box_shapes",
    "plot_class_balance",
    "run_qa_checks",
    # the ranking
    "AMBIGUITY",
    "APPEARANCE_SIZE",
    "DEFAULT_THRESHOLDS",
    "EVIDENCE_KINDS",
    "EVIDENCE_WEIGHTS",
    "HIDDEN_FACTOR",
    "MATCH_MIN_TEMPLATE",
    "MATCH_NCC",
    "MATCH_SAME_PLACE",
    "MATCH_TEMPLATE_AREA",
    "MATCH_TEXTURE",
    "SINGLE_NEIGHBOUR",
    "TRACK_MAX_GAP",
    "VEHICLE_SIZES",
    "Evidence",
    "RankingThresholds",
    "mistakes_gallery",
    "rank_images",
    "ranking_table",
    # its quality
    "mistake_key",
    "plot_review_curve",
    "review_curve",
    "review_quality",
    # the FiftyOne dataset
    "LIKELY_MISTAKES_VIEW",
    "MISSING_CANDIDATES_VIEW",
    "MISTAKENNESS_VIEW",
    "REVIEW_TAGS",
    "add_predictions",
    "build_dataset",
    "compute_prediction_mistakenness",
    "export_tags",
    "launch_app",
    "save_views",
    "set_tag",
    "tagged_images",
    # the summary
    "SUMMARY_FORMAT",
    "SUMMARY_NAME",
    "write_summary",
]
