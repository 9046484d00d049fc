"""Writing outputs so that an interrupted step leaves the previous result intact.

Files are written to a temporary name beside their destination and renamed
into place (``os.replace`` is atomic on one filesystem); folders are built in
a temporary sibling and swapped in at the end. Scratch folders that outlive the
call making them (extracted zips whose images a result points into) are removed
when the process exits.
"""

import atexit
import contextlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)


def atomic_write_bytes(path, data):
    """Writes bytes to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def atomic_write_text(path, text):
    """Writes UTF-8 text to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, document):
    """Writes a JSON document (indented, keys in insertion order) atomically."""
    atomic_write_text(path, json.dumps(document, indent=2, default=json_default) + "\n")


@contextlib.contextmanager
def atomic_dir(path):
    """Builds a folder in a temporary sibling and swaps it into place on success.

    Example::

        with atomic_dir("data/default/raw/synthetic") as staging:
            (staging / "manifest.json").write_text("{}")

    On an exception the staging folder is removed and ``path`` is untouched.

    Args:
        path: the destination folder

    Yields:
        the staging folder (a Path)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    os.chmod(staging, 0o755)
    previous = None
    if path.exists():
        previous = path.with_name(f".{path.name}.old-{os.getpid()}")
        os.replace(path, previous)
    try:
        os.replace(staging, path)
    except BaseException:
        if previous is not None:
            os.replace(previous, path)
        raise
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)


def process_temp_dir(prefix, dir=None):
    """A new temporary folder, removed (with what it holds) when the process exits.

    For files a returned result keeps pointing into, such as the images of an
    extracted zip, where a ``with tempfile.TemporaryDirectory()`` block would end too
    early and a bare ``tempfile.mkdtemp`` would never be removed.

    Args:
        prefix: the folder name's prefix
        dir: the parent folder (default: the system's temporary folder)

    Returns:
        the folder's ``Path``
    """
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=dir))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def json_default(value):
    """``json.dumps``'s ``default``: what platelab's documents hold beyond plain JSON.

    Example: ``json.dumps(document, default=json_default)``.

    Args:
        value: an object ``json`` cannot write itself

    Returns:
        a Path as its text; anything with ``.item()`` (a NumPy scalar, or a
        one-element array) as that Python number; else anything with
        ``.tolist()`` as that list

    Raises:
        TypeError: anything else (a NumPy array of several elements raises
            NumPy's ValueError from ``.item()``)
    """
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):  # e.g. array.array, memoryview
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
