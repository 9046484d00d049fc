"""Locating and calling the ffmpeg binary.

platelab uses the static ffmpeg build that ships in the ``imageio-ffmpeg``
wheel, so that no system package is needed and every machine encodes with the
same binary (which keeps synthetic videos byte-identical across machines).
Set ``PLATELAB_FFMPEG`` to use another binary.
"""

import functools
import logging
import os
import shutil
import subprocess

from platelab.exceptions import PlatelabError

logger = logging.getLogger(__name__)


class FFmpegError(PlatelabError, RuntimeError):
    """Raised when ffmpeg is missing or a call to it fails."""


@functools.cache
def ffmpeg_exe():
    """Returns the path of the ffmpeg binary to use.

    Order: ``$PLATELAB_FFMPEG``, the ``imageio-ffmpeg`` binary, ``ffmpeg`` on
    the ``PATH``.

    Returns:
        the absolute path of an ffmpeg executable

    Raises:
        FFmpegError: if no ffmpeg binary can be found
    """
    override = os.environ.get("PLATELAB_FFMPEG")
    if override:
        return override
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as error:  # noqa: BLE001 - fall back to the system binary
        logger.debug("imageio-ffmpeg unavailable: %s", error)
    system = shutil.which("ffmpeg")
    if system:
        return system
    raise FFmpegError(
        "no ffmpeg found: install the imageio-ffmpeg wheel (pip install imageio-ffmpeg) "
        "or a system ffmpeg (apt-get install ffmpeg)"
    )


def run_ffmpeg(args, input_bytes=None, check=True):
    """Runs ffmpeg with the given arguments (without the binary name).

    Args:
        args: list of command-line arguments
        input_bytes: optional bytes written to ffmpeg's stdin
        check: whether to raise on a non-zero exit

    Returns:
        the ``subprocess.CompletedProcess``

    Raises:
        FFmpegError: if ``check`` and ffmpeg exits non-zero
    """
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", *map(str, args)]
    if input_bytes is not None:
        command.remove("-nostdin")
    result = subprocess.run(command, input=input_bytes, capture_output=True)
    if check and result.returncode != 0:
        message = result.stderr.decode("utf-8", "replace").strip().splitlines()
        raise FFmpegError(message[-1] if message else f"ffmpeg exited {result.returncode}")
    return result
