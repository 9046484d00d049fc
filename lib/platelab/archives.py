"""Extracting zip archives safely.

Annotation exports arrive as zips. :func:`safe_extract` extracts what is safe
and skips, one by one, the members that are not: absolute paths, ``..``
components, drive letters, links and other special files, corrupt or
encrypted members, and members that expand too far. Each skipped member gets
one line naming it and why, and the rest of the archive is extracted. The
extracted size, the number of files and each member's compression ratio are
capped, counting the bytes actually written (a zip's headers can lie), so a
zip bomb stops early.
"""

import logging
import os
import shutil
import stat
import unicodedata
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from platelab.exceptions import PlatelabError

logger = logging.getLogger(__name__)

MAX_TOTAL_BYTES = 4 * 1024**3
MAX_FILES = 200_000
MAX_RATIO = 200
_CHUNK = 1 << 20


class ArchiveError(PlatelabError, ValueError):
    """An archive that cannot be extracted at all (one-line message naming it)."""


class Skipped(NamedTuple):
    """A member :func:`safe_extract` passed over.

    Attributes:
        member: the member's name as written in the archive
        path: its relative path (POSIX style) where it has a safe one, else None
        message: one line, ``<zip>: member '<name>' <why>; skipped``
    """

    member: str
    path: str | None
    message: str


class _SkipMember(Exception):
    """One member to skip; its text says why (e.g. "has an absolute path")."""


def safe_extract(
    zip_path,
    destination,
    max_total_bytes=MAX_TOTAL_BYTES,
    max_files=MAX_FILES,
    max_ratio=MAX_RATIO,
    skipped=None,
):
    """Extracts a zip archive into ``destination``, skipping each unsafe or broken member.

    The archive is extracted into a temporary sibling folder and renamed into
    place, so nothing is ever written outside ``destination`` and a refused
    archive leaves nothing behind. A skipped member gets one line,
    ``<zip>: member '<name>' <why>; skipped``, where why is one of: points
    outside the archive (parent path '..'), has an absolute path, is a
    symbolic link, is not a regular file, is too large (...), is corrupt,
    is encrypted, appears more than once, or cannot be written (...).

    Args:
        zip_path: the archive (only read)
        destination: the folder to create (must not exist yet)
        max_total_bytes: cap on the bytes written; a member that would pass
            it is skipped as too large
        max_files: cap on the number of members
        max_ratio: cap on a member's uncompressed / compressed size
        skipped: a list to which a :class:`Skipped` is appended per skipped
            member (default: each message is logged as a warning)

    Returns:
        the list of extracted relative paths (POSIX style)

    Raises:
        ArchiveError: naming the archive, when it is not a readable zip, has
            more members than ``max_files``, or ``destination`` exists
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
    written_total = 0
    extracted = []
    seen = set()
    try:
        with archive:
            members = archive.infolist()
            if len(members) > max_files:
                raise ArchiveError(
                    f"{zip_path}: {len(members)} members, more than the cap of {max_files}"
                )
            staging.mkdir(parents=True)
            for member in members:
                relative = None
                try:
                    relative = _safe_member_path(member)
                    if relative is None:
                        continue
                    _check_member_type(member)
                    target = staging.joinpath(*relative.parts)
                    if member.is_dir():
                        _make_folder(target)
                        continue
                    if relative in seen:
                        raise _SkipMember("appears more than once (the first copy kept)")
                    seen.add(relative)
                    written_total += _extract_member(
                        archive, member, target, max_total_bytes - written_total, max_ratio
                    )
                except _SkipMember as why:
                    message = f"{zip_path}: member {member.filename!r} {why}; skipped"
                    if skipped is None:
                        logger.warning("%s", message)
                    else:
                        path = relative.as_posix() if relative is not None else None
                        skipped.append(Skipped(member.filename, path, message))
                    continue
                extracted.append(relative.as_posix())
        os.replace(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return extracted


def _extract_member(archive, member, target, budget, max_ratio):
    """Writes one member to ``target``; returns the bytes written or raises _SkipMember."""
    if member.flag_bits & 0x1:
        raise _SkipMember("is encrypted")
    if member.file_size > budget:
        raise _SkipMember(
            f"is too large ({member.file_size} bytes, more than the {max(budget, 0)} "
            "left under the archive's size cap; zip bomb?)"
        )
    _make_folder(target.parent)
    limit_for_member = max(member.compress_size, 1) * max_ratio + _CHUNK
    written = 0
    try:
        with archive.open(member) as source, open(target, "xb") as sink:
            while chunk := source.read(_CHUNK):
                written += len(chunk)
                if written > budget:
                    raise _SkipMember(
                        "is too large (the archive would extract to more than its size cap; "
                        "zip bomb?)"
                    )
                if written > limit_for_member:
                    raise _SkipMember(f"is too large (expands more than {max_ratio}x; zip bomb?)")
                sink.write(chunk)
    except _SkipMember:
        target.unlink(missing_ok=True)
        raise
    except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError, RuntimeError) as error:
        target.unlink(missing_ok=True)
        raise _SkipMember(f"is corrupt or unsupported ({_one_line(error)})") from None
    except (FileExistsError, IsADirectoryError, NotADirectoryError) as error:
        raise _SkipMember(f"cannot be written ({error.strerror or error})") from None
    return written


def _make_folder(folder):
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as error:
        raise _SkipMember(
            f"cannot be written (a file is in the way: {error.strerror or error})"
        ) from None


def _safe_member_path(member):
    """Returns the member's safe relative path, None to pass it over, or raises _SkipMember."""
    name = member.filename
    if not (member.flag_bits & 0x800):
        # Not flagged UTF-8: zipfile decoded it as cp437; keep it, but normalise.
        name = unicodedata.normalize("NFC", name)
    name = name.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise _SkipMember("has an absolute path")
    path = PurePosixPath(name)
    if any(part == ".." for part in path.parts):
        raise _SkipMember("points outside the archive (parent path '..')")
    parts = [part for part in path.parts if part not in ("", ".")]
    if not parts or parts[0] == "__MACOSX":
        return None
    return PurePosixPath(*parts)


def _check_member_type(member):
    """Raises _SkipMember for a link or another special file (a device, pipe or socket)."""
    mode = member.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise _SkipMember("is a symbolic link")
    if mode and stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise _SkipMember("is not a regular file (a device, pipe or socket)")


def _one_line(error):
    return " ".join(str(error).split()) or type(error).__name__
