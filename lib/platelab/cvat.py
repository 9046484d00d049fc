"""Deprecated: the former name of :mod:`platelab.annotate`, kept for one release.

Stage 03's home is :mod:`platelab.annotate` (its CVAT client is
:mod:`platelab.annotate.client`). ``from platelab import cvat`` still gives
every public name of :mod:`platelab.annotate` (the very same objects), with a
:class:`DeprecationWarning`; write ``from platelab import annotate`` instead.
"""

import warnings

from platelab import annotate as _annotate

warnings.warn(
    "platelab.cvat is deprecated and will be removed in the next release: "
    "import platelab.annotate instead",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = list(_annotate.__all__)
globals().update({_name: getattr(_annotate, _name) for _name in __all__})
