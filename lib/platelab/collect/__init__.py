"""Stage 01 (collect): from videos, photos and live streams to sampled frames with a manifest.

Notebook ``01_collect``, command ``platelab collect`` (``platelab sample`` is
kept as an alias). Two modules do the work:

* :mod:`~platelab.collect.frames`: :func:`sample`, one ffmpeg decode per video
  that writes lossless PNG frames and finds dead feed in the same pass, plus
  the tables and figures of the notebook (:func:`source_table`,
  :func:`plot_timeline`, :func:`contact_sheet`);
* :mod:`~platelab.collect.probe`: looking at videos (metadata, dead-feed
  analysis, live recording); its :func:`platelab.collect.probe.probe` keeps
  its module's name, so it is not re-exported here.

ffmpeg itself is found by :mod:`platelab.ffmpeg` (infrastructure, shared with
stage 08). This package re-exports :data:`platelab.collect.frames.__all__`
(less ``probe``) so that ``from platelab import collect; collect.sample(...)``
reads as the stage.
"""

from platelab.collect.frames import (
    MediaError,
    analyze,
    contact_sheet,
    find_inputs,
    plot_timeline,
    record,
    sample,
    source_table,
)

__all__ = [
    "MediaError",
    "analyze",
    "find_inputs",
    "plot_timeline",
    "record",
    "sample",
    "source_table",
    "contact_sheet",
]
