"""Run metadata: fingerprints of inputs, the git commit and package versions."""

import hashlib
import importlib.metadata
import logging
import os
import platform
import subprocess
import sys
from pathlib import Path

from platelab import paths

logger = logging.getLogger(__name__)

TRACKED_PACKAGES = (
    "platelab",
    "numpy",
    "opencv-python-headless",
    "tensorflow-cpu",
    "keras",
    "fiftyone",
    "papermill",
    "nbconvert",
    "matplotlib",
    "imageio-ffmpeg",
)


def sha256_file(path, chunk_size=1 << 20):
    """Returns the hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint(path, root=None):
    """Fingerprints a file or a folder tree.

    A folder's fingerprint is the SHA-256 of the sorted list of its files'
    relative paths and SHA-256s, so it changes when any file is added,
    removed, renamed or edited.

    Args:
        path: a file or folder
        root: if given, the returned ``path`` is relative to it

    Returns:
        a dict with ``path``, ``sha256``, ``files`` and ``bytes``
    """
    path = Path(path)
    shown = _relative(path, root)
    if path.is_file():
        return {
            "path": shown,
            "sha256": sha256_file(path),
            "files": 1,
            "bytes": path.stat().st_size,
        }
    digest = hashlib.sha256()
    files = 0
    size = 0
    for item in sorted(path.rglob("*")):
        if not item.is_file():
            continue
        relative = item.relative_to(path).as_posix()
        digest.update(f"{relative}\0{sha256_file(item)}\n".encode())
        files += 1
        size += item.stat().st_size
    return {"path": shown, "sha256": digest.hexdigest(), "files": files, "bytes": size}


def git_info(root=None):
    """Returns the commit, branch and dirtiness of the project checkout.

    Returns:
        a dict with ``commit``, ``branch`` and ``dirty`` (None where git or the
        repository is missing)
    """
    root = Path(root or paths.PROJECT_ROOT)

    def git(*args):
        try:
            result = subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return result.stdout.strip() if result.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "commit": commit,
        "branch": git("rev-parse", "--abbrev-ref", "HEAD") if commit else None,
        "dirty": None if status is None else bool(status),
    }


def package_versions(names=TRACKED_PACKAGES):
    """Returns the installed versions of the named distributions (None if absent)."""
    versions = {"python": sys.version.split()[0]}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def machine_info():
    """Returns a short description of the machine a run ran on."""
    return {
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpu_count": os.cpu_count(),
    }


def _relative(path, root):
    if root is None:
        return str(path)
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return str(path)
