"""Extracting zip archives safely.

Annotation exports arrive as zips. :func:`safe_extract` refuses members with
absolute paths, ``..`` components, drive letters or links, and caps the
extracted size, the number of files and the compression ratio, counting the
bytes actually written (a zip's headers can lie), so a zip bomb stops early.
"""

import logging
import os
import shutil
import stat
import unicodedata
import zipfile
from pathlib import Path, PurePosixPath

logger = logging.getLogger(__name__)

MAX_TOTAL_BYTES = 4 * 1024**3
MAX_FILES = 200_000
MAX_RATIO = 200
_CHUNK = 1 << 20


class ArchiveError(ValueError):
    """An archive that cannot be extracted safely (one-line message naming it)."""


def safe_extract(
    zip_path, destination, max_total_bytes=MAX_TOTAL_BYTES, max_files=MAX_FILES, max_ratio=MAX_RATIO
):
    """Extracts a zip archive into ``destination``, refusing anything unsafe.

    The archive is extracted into a temporary sibling folder and renamed into
    place, so a refused archive leaves nothing behind.

    Args:
        zip_path: the archive
        destination: the folder to create (must not exist yet)
        max_total_bytes: cap on the bytes written
        max_files: cap on the number of members
        max_ratio: cap on a member's uncompressed / compressed size

    Returns:
        the list of extracted relative paths (POSIX style)

    Raises:
        ArchiveError: naming the archive and the offending member
    """
    zip_path = Path(zip_path)
    destination = Path(destination)
    if destination.exists():
        raise ArchiveError(f"{destination}: already exists")
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as error:
        raise ArchiveError(f"{zip_path}: not a readable zip archive ({error})") from None
    staging = destination.with_name(f".{destination.name}.extracting")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    written_total = 0
    extracted = []
    try:
        with archive:
            members = archive.infolist()
            if len(members) > max_files:
                raise ArchiveError(
                    f"{zip_path}: {len(members)} members, more than the cap of {max_files}"
                )
            for member in members:
                relative = _safe_member_path(zip_path, member)
                if relative is None:
                    continue
                target = staging.joinpath(*relative.parts)
                if member.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                written = 0
                limit_for_member = max(member.compress_size, 1) * max_ratio + _CHUNK
                try:
                    with archive.open(member) as source, open(target, "wb") as sink:
                        while chunk := source.read(_CHUNK):
                            written += len(chunk)
                            written_total += len(chunk)
                            if written_total > max_total_bytes:
                                raise ArchiveError(
                                    f"{zip_path}: extracts to more than {max_total_bytes} bytes (zip bomb?)"
                                )
                            if written > limit_for_member:
                                raise ArchiveError(
                                    f"{zip_path}: member {member.filename!r} expands more than "
                                    f"{max_ratio}x (zip bomb?)"
                                )
                            sink.write(chunk)
                except (zipfile.BadZipFile, EOFError, zlib_error()) as error:
                    raise ArchiveError(
                        f"{zip_path}: member {member.filename!r} is corrupt ({error})"
                    ) from None
                extracted.append(relative.as_posix())
        os.replace(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return extracted


def zlib_error():
    """Returns zlib's error class (raised for corrupt deflate streams)."""
    import zlib

    return zlib.error


def _safe_member_path(zip_path, member):
    """Returns the member's safe relative path, None to skip it, or raises ArchiveError."""
    name = member.filename
    if not (member.flag_bits & 0x800):
        # Not flagged UTF-8: zipfile decoded it as cp437; keep it, but normalise.
        name = unicodedata.normalize("NFC", name)
    name = name.replace("\\", "/")
    mode = member.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise ArchiveError(f"{zip_path}: member {member.filename!r} is a symbolic link")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise ArchiveError(f"{zip_path}: member {member.filename!r} has an absolute path")
    path = PurePosixPath(name)
    if any(part == ".." for part in path.parts):
        raise ArchiveError(
            f"{zip_path}: member {member.filename!r} points outside the archive ('..')"
        )
    parts = [part for part in path.parts if part not in ("", ".")]
    if not parts or parts[0] == "__MACOSX":
        return None
    return PurePosixPath(*parts)
