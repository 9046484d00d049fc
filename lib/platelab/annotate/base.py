"""What the stage-03 CVAT modules share: the error, the label set and the folders.

:class:`CvatError` (one-line messages naming the file or URL at fault),
:data:`LABEL_SET` (the fixed label set in CVAT's label-constructor JSON) and
its colours, the folders under ``data/<workspace>/interim/cvat/`` and
``raw/annotations/``, and :func:`check_writable`, which every writer calls
before it starts. The other modules of :mod:`platelab.annotate` and
:mod:`platelab.synth.annotator` import from here; nothing here imports them.
"""

import os
import tempfile
from pathlib import Path

from platelab import paths
from platelab.exceptions import PlatelabError

LABEL_COLORS = {"vehicle": "#33ddff", "license_plate": "#fa3253"}
"""CVAT label colours (``license_plate``'s is the one in the real exports' labelmap)."""
FALLBACK_COLORS = ("#34d1b7", "#ff007c", "#ddff33", "#24b353", "#b83df5", "#66ff66", "#32b7fa")

_FLAG_ATTRIBUTES = [
    {
        "name": "difficult",
        "mutable": False,
        "input_type": "checkbox",
        "default_value": "false",
        "values": ["false"],
    },
    {
        "name": "truncated",
        "mutable": False,
        "input_type": "checkbox",
        "default_value": "false",
        "values": ["false"],
    },
]
LABEL_SET = [
    {
        "name": "vehicle",
        "color": LABEL_COLORS["vehicle"],
        "type": "rectangle",
        "attributes": [
            {
                "name": "type",
                "mutable": False,
                "input_type": "select",
                "default_value": "sedan",
                "values": ["sedan", "truck", "bus"],
            },
            *_FLAG_ATTRIBUTES,
        ],
    },
    {
        "name": "license_plate",
        "color": LABEL_COLORS["license_plate"],
        "type": "rectangle",
        "attributes": [
            {
                "name": "text",
                "mutable": False,
                "input_type": "text",
                "default_value": "",
                "values": [""],
            },
            *_FLAG_ATTRIBUTES,
        ],
    },
]
"""The fixed label set in CVAT's label-constructor ("Raw") JSON. ``difficult``
and ``truncated`` are checkbox attributes because CVAT's VOC export writes
those two elements from attributes of those names; ``occluded`` is CVAT's own
shape flag."""


class CvatError(PlatelabError, ValueError):
    """A problem that stops an exchange with CVAT (one-line message naming the file or URL)."""


# --------------------------------------------------------------------------- folders


def cvat_dir(workspace):
    """Returns ``data/<workspace>/interim/cvat``."""
    return paths.interim_dir(workspace) / "cvat"


def tasks_dir(workspace):
    """Returns ``data/<workspace>/interim/cvat/tasks``."""
    return cvat_dir(workspace) / "tasks"


def exports_dir(workspace):
    """Returns ``data/<workspace>/interim/cvat/exports`` (the simulated annotator's exports)."""
    return cvat_dir(workspace) / "exports"


def downloads_dir(workspace):
    """Returns ``data/<workspace>/interim/cvat/downloads`` (annotations fetched from a server)."""
    return cvat_dir(workspace) / "downloads"


def user_exports_dir(workspace):
    """Returns ``data/<workspace>/raw/annotations``: put your own CVAT exports here."""
    return paths.raw_dir(workspace) / "annotations"


# --------------------------------------------------------------------------- helpers


def check_writable(out_dir):
    """Checks, before any work, that a folder can be created beside and renamed to ``out_dir``.

    Creates the parent folders where missing.

    Raises:
        CvatError: naming the folder and why it cannot be written (a file in
            the way, no permission...)
    """
    out_dir = Path(out_dir)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        probe = tempfile.mkdtemp(prefix=f".{out_dir.name}.probe-", dir=out_dir.parent)
        os.rmdir(probe)
    except OSError as error:
        reason = error.strerror or str(error)
        blocking = next((parent for parent in out_dir.parents if parent.exists()), None)
        if blocking is not None and not blocking.is_dir():
            reason = f"{blocking} is a file, not a folder"
        raise CvatError(f"{out_dir}: output folder cannot be written ({reason})") from None
    if out_dir.exists() and not out_dir.is_dir():
        raise CvatError(f"{out_dir}: output folder is a file")


def _one_line(error):
    """The first line of an error's message (its type's name where it has none)."""
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
