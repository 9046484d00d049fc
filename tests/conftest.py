"""Shared fixtures. Tests never touch the project's data/, reports/ or FiftyOne database."""

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# FiftyOne reads its configuration at import: give the whole test session (and the
# notebook kernels it starts, which inherit the environment) a database of its own.
_TEST_ROOT = Path(tempfile.mkdtemp(prefix="platelab-tests-"))
if os.environ.get("FIFTYONE_DATABASE_URI"):
    os.environ.setdefault("FIFTYONE_DATABASE_NAME", f"platelab-test-{os.getpid()}")
else:
    os.environ["FIFTYONE_DATABASE_DIR"] = str(_TEST_ROOT / "fiftyone-db")
os.environ["FIFTYONE_DO_NOT_TRACK"] = "true"
os.environ["FIFTYONE_DATABASE_VALIDATION"] = "false"
os.environ["PLATELAB_DATA_DIR"] = str(_TEST_ROOT / "data")
os.environ["PLATELAB_REPORTS_DIR"] = str(_TEST_ROOT / "reports")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


HEAVY_FIRST = (
    "test_train.py",
    "test_deploy_export.py",
    "test_notebooks.py",
    "test_cli_model.py",
    "test_pretrain.py",
    "test_review.py",
    "test_error_analysis.py",
    "test_starter.py",
)
"""The longest test files (``--durations``), run first: ``make test`` spreads whole files
over two processes (pytest-xdist, ``--dist loadfile``), and a long file started last
would leave one process alone at the end."""


def pytest_collection_modifyitems(session, config, items):
    rank = {name: position for position, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: file order kept


def pytest_sessionfinish(session, exitstatus):
    # FiftyOne stops the mongod it started when the process exits.
    shutil.rmtree(_TEST_ROOT / "data", ignore_errors=True)
    shutil.rmtree(_TEST_ROOT / "reports", ignore_errors=True)


@pytest.fixture
def shared_data():
    """The real CVAT exports in ../shared/data; skips where the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not present")
    return SHARED_DATA


def write_notebook(path, cells, parameters=None):
    """Writes a small notebook: ``cells`` are code sources; ``parameters`` the tagged cell."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    notebook = new_notebook()
    notebook.metadata["kernelspec"] = {
        "display_name": "Python 3",
        "language": "python",
        "name": "python3",
    }
    notebook.cells.append(new_markdown_cell(f"# {Path(path).stem}\n\nA test notebook."))
    if parameters is not None:
        cell = new_code_cell(parameters)
        cell.metadata["tags"] = ["parameters"]
        notebook.cells.append(cell)
    notebook.cells.extend(new_code_cell(source) for source in cells)
    nbformat.write(notebook, str(path))
    return Path(path)


def words_of_a_process_leaving_no_temp(script, *arguments, tmpdir):
    """Runs ``python -c script arguments`` with ``TMPDIR`` at a new folder ``tmpdir``;
    asserts that it succeeds and leaves that folder empty (its exit removed what it made
    there), and returns the words it printed."""
    import subprocess
    import sys

    Path(tmpdir).mkdir()
    done = subprocess.run(
        [sys.executable, "-c", script, *map(str, arguments)],
        capture_output=True,
        text=True,
        env={**os.environ, "TMPDIR": str(tmpdir)},
    )
    assert done.returncode == 0, done.stderr
    assert list(Path(tmpdir).iterdir()) == []
    return done.stdout.split()


def read_json(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def assert_re_exports(package, homes):
    """Every public name defined in the modules ``homes`` is in ``package.__all__``, the same object."""
    import ast
    import importlib
    import inspect

    for home in homes:
        module = importlib.import_module(f"platelab.{home}")
        for node in ast.parse(inspect.getsource(module)).body:
            if isinstance(node, ast.Assign):
                names = [target.id for target in node.targets if isinstance(target, ast.Name)]
            else:
                names = [getattr(node, "name", None)]
            for name in names:
                if name and not name.startswith("_") and name != "logger":
                    assert name in package.__all__, f"platelab.{home}.{name}"
                    assert getattr(package, name) is getattr(module, name), name
    assert sorted(package.__all__) == sorted(set(package.__all__))
    assert all(hasattr(package, name) for name in package.__all__)
