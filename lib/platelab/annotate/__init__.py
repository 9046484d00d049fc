"""Stage 03 (annotate): the modules that exchange images and annotations with CVAT.

:mod:`~platelab.annotate.base` (the error, the label set, the folders),
:mod:`~platelab.annotate.voc` (CVAT's "PASCAL VOC 1.1" writer and reader),
:mod:`~platelab.annotate.tasks` (task batches and pre-annotations),
:mod:`~platelab.annotate.exports` (importing exports in every form) and
:mod:`~platelab.annotate.client` (a real CVAT server through FiftyOne). The
simulated annotator that plays CVAT on synthetic data lives with the
synthetic data, in :mod:`platelab.synth.annotator`, and builds on these
modules. :mod:`platelab.cvat` gathers the public names of all of them in one
namespace: import from there. This package imports nothing on its own, so
that :mod:`platelab.synth.annotator` can import its modules while
:mod:`platelab.cvat` imports it, without a cycle.
"""
