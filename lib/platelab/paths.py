"""Project paths, in one place.

Every stage reads from earlier folders and writes to its own:

    data/<workspace>/raw/         immutable inputs (stage 00 writes its synthetic videos here)
    data/<workspace>/interim/     frames, curated lists, annotation batches
    data/<workspace>/processed/   merged, split, training-ready datasets
    data/<workspace>/models/      training runs
    reports/<run-id>/             executed notebooks, HTML reports, metrics.json, index.html

``PLATELAB_ROOT`` overrides the project root, ``PLATELAB_DATA_DIR`` and
``PLATELAB_REPORTS_DIR`` the two output trees (tests point them at temporary
folders).

Two rules for relative paths: a notebook parameter (or a parameter file's
value) is relative to the project root (:func:`resolve`); a ``platelab``
command-line argument is relative to the current directory (:func:`from_cwd`).
"""

import os
import re
from pathlib import Path

PROJECT_ROOT = Path(os.environ.get("PLATELAB_ROOT", Path(__file__).resolve().parents[2]))
NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
PARAMS_DIR = PROJECT_ROOT / "params"
DATA_DIR = Path(os.environ.get("PLATELAB_DATA_DIR", PROJECT_ROOT / "data"))
REPORTS_DIR = Path(os.environ.get("PLATELAB_REPORTS_DIR", PROJECT_ROOT / "reports"))
FIFTYONE_DB_DIR = DATA_DIR / "fiftyone-db"


def resolve(path):
    """Resolves a path given in parameters (notebooks, parameter files).

    Relative paths are taken relative to the project root, so that a notebook
    means the same folder whether it runs in JupyterLab (cwd ``notebooks/``)
    or under ``platelab run``. Command-line paths use :func:`from_cwd` instead.

    Args:
        path: a str or Path

    Returns:
        an absolute Path
    """
    path = Path(path).expanduser()
    return path if path.is_absolute() else (PROJECT_ROOT / path).resolve()


def from_cwd(path):
    """Resolves a path given on the command line: relative to the current directory.

    What a shell user means by ``platelab train --data mydata``: ``./mydata``,
    wherever the project is. Used as the ``type`` of every ``platelab`` path
    argument, so that nothing downstream (a notebook run from the project
    root, :func:`resolve`) can take it for another folder. ``..`` and links
    are left for the system to follow, as the shell would.

    Args:
        path: a str or Path (``~`` is expanded)

    Returns:
        an absolute Path
    """
    path = Path(path).expanduser()
    return path if path.is_absolute() else Path.cwd() / path


def display(path):
    """A path as reports and messages show it: relative to the project root when inside it.

    Args:
        path: a str or Path

    Returns:
        a POSIX str: ``data/default/models/ssd`` for a folder of the project, the
        absolute path for one outside it
    """
    try:
        return Path(path).resolve().relative_to(PROJECT_ROOT.resolve()).as_posix()
    except (ValueError, OSError):
        return str(path)


def relative_text(text):
    """Free text (a notebook's output, a message) with the project root's absolute path taken out.

    ``/home/me/platelab/data/default`` becomes ``data/default`` and the root alone
    becomes ``.``, so that a report reads the same on every machine.

    Args:
        text: a str

    Returns:
        the str with every occurrence of the project root rewritten
    """
    for root in {str(PROJECT_ROOT).rstrip("/"), str(PROJECT_ROOT.resolve()).rstrip("/")}:
        if not root or root not in text:
            continue
        # Only the root as a whole path: not inside /mnt<root>, <root>-old or <root>.bak.
        before, name = r"(?<![\w./-])", re.escape(root)
        text = re.sub(before + name + r"/(?=[\w.-])", "", text)
        text = re.sub(before + name + r"(?![\w.-])", ".", text)
    return text


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(name, fallback="batch"):
    """A name made safe as one file or folder name (a batch's folder, say).

    Each run of characters other than ASCII letters, digits, ``.``, ``_`` and
    ``-`` becomes one ``_`` (``"day 1/a"`` -> ``"day_1_a"``).

    Args:
        name: the name (anything; ``str()`` is taken)
        fallback: returned where the name is empty

    Returns:
        the safe name
    """
    return _UNSAFE.sub("_", str(name)) or fallback


def safe_file_name(name, fallback="image"):
    """A relative path (an image's name inside a batch) flattened to one safe file name.

    Unlike :func:`safe_name`, each ``/`` becomes ``__`` first (so that
    ``"a/b.png"`` and ``"a_b.png"`` stay apart: ``"a__b.png"``), and leading
    or trailing dots and underscores are stripped (no hidden files, no ``..``).

    Args:
        name: the name (anything; ``str()`` is taken)
        fallback: returned where nothing is left

    Returns:
        the safe file name
    """
    return _UNSAFE.sub("_", str(name).replace("/", "__")).strip("._") or fallback


def workspace_dir(workspace):
    """Returns the data folder of a workspace (``data/<workspace>``).

    Args:
        workspace: a workspace name (e.g. the profile's name) or a path

    Returns:
        an absolute Path
    """
    candidate = Path(workspace)
    if candidate.is_absolute() or len(candidate.parts) > 1:
        return resolve(candidate)
    return DATA_DIR / workspace


def raw_dir(workspace):
    """Returns ``data/<workspace>/raw``."""
    return workspace_dir(workspace) / "raw"


def interim_dir(workspace):
    """Returns ``data/<workspace>/interim``."""
    return workspace_dir(workspace) / "interim"


def processed_dir(workspace):
    """Returns ``data/<workspace>/processed``."""
    return workspace_dir(workspace) / "processed"


def models_dir(workspace):
    """Returns ``data/<workspace>/models``."""
    return workspace_dir(workspace) / "models"
