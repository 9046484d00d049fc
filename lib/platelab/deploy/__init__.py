"""Stage 08 (deploy): a trained detector exported, measured and run on video.

Notebook ``08_deploy``; its commands are ``platelab export`` and ``platelab
video`` (the stage has no ``platelab deploy`` verb: exporting a model and
annotating a video are two different jobs with their own arguments). Two
modules do the work:

* :mod:`~platelab.deploy.export`: SavedModel (NMS inside), TFLite
  fp32/fp16/int8 and ONNX exports with model cards, and :func:`load_predictor`,
  which runs any of them; its :func:`platelab.deploy.export.export` keeps its
  module's name, so it is not re-exported here;
* :mod:`~platelab.deploy.video`: :func:`annotate_video` (decode, detect, track,
  draw, encode, in three threads) and the notebook's player.

This package re-exports the main public names of both.
"""

from platelab.deploy.export import (
    FORMATS,
    QUANTIZATIONS,
    ExportError,
    KerasPredictor,
    OnnxPredictor,
    Predictor,
    SavedModelPredictor,
    TFLitePredictor,
    load_predictor,
    read_card,
)
from platelab.deploy.video import (
    IouTracker,
    VideoResult,
    annotate_video,
    choose_detect_every,
    draw_frame,
    player,
    time_model,
)
from platelab.model import postprocess_numpy

__all__ = [
    # export
    "FORMATS",
    "QUANTIZATIONS",
    "ExportError",
    "Predictor",
    "KerasPredictor",
    "SavedModelPredictor",
    "TFLitePredictor",
    "OnnxPredictor",
    "load_predictor",
    "read_card",
    "postprocess_numpy",
    # video
    "VideoResult",
    "IouTracker",
    "annotate_video",
    "choose_detect_every",
    "draw_frame",
    "time_model",
    "player",
]
