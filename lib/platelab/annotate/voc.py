"""CVAT's "PASCAL VOC 1.1" layout, written and read back.

:class:`VocImage` is one image with its boxes; :func:`voc_xml` and
:func:`labelmap_text` render CVAT's exact ``Annotations/<name>.xml`` and
``labelmap.txt``; :func:`write_voc` writes a whole export in each of the forms
met in practice (:data:`EXPORT_FORMS`), as byte-reproducible zips (see
:func:`write_zip`) or a folder; :func:`read_voc_annotations` reads just the
boxes of an export back (e.g. a pre-annotation zip without images). Loading
full exports, with their images and problems, is
:func:`platelab.annotations.load_batch`'s job.
"""

import contextlib
import dataclasses
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

from platelab import annotations, archives
from platelab.annotate.base import FALLBACK_COLORS, LABEL_COLORS, CvatError
from platelab.atomic import atomic_dir

EXPORT_FORMS = ("zip", "folder", "zip_two_folders")
"""The forms an export arrives in: CVAT's zip as exported, the same unzipped,
and a zip of just ``Annotations/`` and ``JPEGImages/`` (how other sources re-zip it)."""

_ZIP_DATE = (2024, 1, 1, 0, 0, 0)
_ZIP_MODE = 0o600 << 16  # as in CVAT's exports


@dataclasses.dataclass
class VocImage:
    """One image of a VOC export as written.

    Attributes:
        name: the stem, unique in the export (``Annotations/<name>.xml``)
        image_path: the image file, copied to ``JPEGImages/<name><suffix>``
        width: image width in pixels
        height: image height in pixels
        objects: dicts with ``label`` (as written), ``bbox`` ([xmin, ymin,
            xmax, ymax] pixels, floats or ints), optionally ``difficult``,
            ``truncated``, ``occluded`` (bools or 0/1) and ``attributes`` (a dict)
    """

    name: str
    image_path: Path
    width: int
    height: int
    objects: list = dataclasses.field(default_factory=list)

    @property
    def file_name(self):
        """The image's file name in the export (the name plus the source file's suffix)."""
        return f"{self.name}{Path(self.image_path).suffix}"


def voc_xml(image):
    """Returns the ``Annotations/<name>.xml`` text CVAT writes for one image.

    Two-space indentation, no XML declaration, an empty ``<folder>`` and
    ``<depth>``, ``Unknown`` source fields, ``<segmented>0``, per object
    ``truncated``/``occluded``/``difficult`` as 0/1, float coordinates and an
    ``<attributes>`` block when the object has attributes.

    Args:
        image: a :class:`VocImage`
    """
    lines = [
        "<annotation>",
        "  <folder></folder>",
        f"  <filename>{escape(image.file_name)}</filename>",
        "  <source>",
        "    <database>Unknown</database>",
        "    <annotation>Unknown</annotation>",
        "    <image>Unknown</image>",
        "  </source>",
        "  <size>",
        f"    <width>{int(image.width)}</width>",
        f"    <height>{int(image.height)}</height>",
        "    <depth></depth>",
        "  </size>",
        "  <segmented>0</segmented>",
    ]
    for item in image.objects:
        lines += [
            "  <object>",
            f"    <name>{escape(str(item['label']))}</name>",
            f"    <truncated>{int(bool(item.get('truncated')))}</truncated>",
            f"    <occluded>{int(bool(item.get('occluded')))}</occluded>",
            f"    <difficult>{int(bool(item.get('difficult')))}</difficult>",
            "    <bndbox>",
        ]
        for key, value in zip(("xmin", "ymin", "xmax", "ymax"), item["bbox"], strict=True):
            lines.append(f"      <{key}>{_coordinate(value)}</{key}>")
        lines.append("    </bndbox>")
        attributes = item.get("attributes") or {}
        if attributes:
            lines.append("    <attributes>")
            for name, value in attributes.items():
                lines += [
                    "      <attribute>",
                    f"        <name>{escape(str(name))}</name>",
                    f"        <value>{escape(_attribute_text(value))}</value>",
                    "      </attribute>",
                ]
            lines.append("    </attributes>")
        lines.append("  </object>")
    lines.append("</annotation>")
    return "\n".join(lines) + "\n"


def labelmap_text(labels):
    """Returns CVAT's ``labelmap.txt`` for a list of label spellings.

    Header ``# label:color_rgb:parts:actions``, then ``background:0,0,0::``
    and one ``label:r,g,b::`` line per label (canonical colours for every
    spelling of a known label).
    """
    lookup = annotations.build_alias_map()
    lines = ["# label:color_rgb:parts:actions", "background:0,0,0::"]
    spare = iter(FALLBACK_COLORS * (len(labels) // len(FALLBACK_COLORS) + 1))
    for label in labels:
        canonical = annotations.normalize_label(label, lookup)
        color = LABEL_COLORS.get(canonical) or next(spare)
        red, green, blue = (int(color[index : index + 2], 16) for index in (1, 3, 5))
        lines.append(f"{label}:{red},{green},{blue}::")
    return "\n".join(lines) + "\n"


def write_voc(images, destination, form="zip", labels=None, include_images=True):
    """Writes images and boxes in CVAT's "PASCAL VOC 1.1" layout.

    Forms (see :data:`EXPORT_FORMS`):

    * ``zip``: as CVAT exports it: ``labelmap.txt``, then per image
      ``JPEGImages/<name><suffix>`` and, if it has boxes,
      ``Annotations/<name>.xml``, then ``ImageSets/Main/default.txt`` listing
      every image (images without boxes have no XML and appear only there);
    * ``folder``: the same files, unzipped, in the folder ``destination``;
    * ``zip_two_folders``: a zip of just ``Annotations/`` and ``JPEGImages/``.

    Zips carry fixed timestamps, so the same input gives the same bytes. The
    output is written to a temporary name and renamed into place.

    Args:
        images: :class:`VocImage` objects (names unique)
        destination: the ``.zip`` file (zip forms) or the folder (``folder``)
        form: one of :data:`EXPORT_FORMS`
        labels: the label spellings for ``labelmap.txt``, in order (default:
            those used, in order of first use)
        include_images: False leaves ``JPEGImages/`` out (annotations to
            upload into an existing task)

    Returns:
        the destination Path

    Raises:
        ValueError: for an unknown form or duplicate or unsafe names
        OSError: if an image cannot be read or the destination written
    """
    if form not in EXPORT_FORMS:
        raise ValueError(f"unknown export form {form!r} (known: {', '.join(EXPORT_FORMS)})")
    images = list(images)
    names = [image.name for image in images]
    if len(set(names)) != len(names):
        raise ValueError("image names must be unique within an export")
    for name in names:
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise ValueError(f"unsafe image name {name!r} in an export")
    if labels is None:
        labels = list(dict.fromkeys(item["label"] for image in images for item in image.objects))
    members = _voc_members(images, form, labels, include_images)
    destination = Path(destination)
    if form == "folder":
        with atomic_dir(destination) as staging:
            for relative, content in members:
                target = staging / relative
                if content is None:
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                if isinstance(content, Path):
                    shutil.copyfile(content, target)
                else:
                    target.write_bytes(content)
        return destination
    write_zip(destination, members)
    return destination


def read_voc_annotations(source):
    """Reads just the boxes of a VOC export, images or not (e.g. a pre-annotation zip).

    Unlike :func:`platelab.annotations.load_batch`, nothing is checked
    against the images, so annotations meant for upload into an existing
    CVAT task can be read back.

    Args:
        source: a zip or a folder with ``Annotations/``

    Returns:
        a dict: image name (the XML's stem) -> objects (see
        :class:`platelab.annotations.ImageRecord`)

    Raises:
        CvatError: for a missing source, an unreadable zip or a malformed XML
            file (unsafe members of a zip are skipped, each logged as a warning)
    """
    source = Path(source)
    with tempfile.TemporaryDirectory(prefix="platelab-voc-") as scratch:
        folder = source
        if source.is_file():
            folder = Path(scratch) / "export"
            try:
                archives.safe_extract(source, folder)
            except archives.ArchiveError as error:
                raise CvatError(str(error)) from None
        elif not source.is_dir():
            raise CvatError(f"{source}: not found")
        annotations_folder = folder / "Annotations"
        found = {}
        for xml_path in sorted(annotations_folder.rglob("*.xml")):
            try:
                parsed = annotations.parse_voc_xml(xml_path)
            except annotations.AnnotationError as error:
                raise CvatError(f"{source}: {error}") from None
            found[xml_path.relative_to(annotations_folder).with_suffix("").as_posix()] = parsed[
                "objects"
            ]
    return found


# --------------------------------------------------------------------------- zip writing


def write_zip(destination, members, compression=zipfile.ZIP_DEFLATED):
    """Writes a zip with fixed timestamps and modes, through a temporary file.

    The same members give the same bytes (CVAT's file modes, a fixed date);
    the zip is written beside ``destination`` and renamed into place.

    Args:
        destination: the ``.zip`` file to write
        members: ``(relative path, content)`` pairs, in order: content is
            bytes, a Path to read, or None for a folder entry (``name/``)
        compression: the :mod:`zipfile` compression of the files

    Raises:
        OSError: if a member cannot be read or the zip written
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent
    )
    os.close(handle)
    try:
        with zipfile.ZipFile(temporary, "w") as archive:
            for relative, content in members:
                info = zipfile.ZipInfo(relative, date_time=_ZIP_DATE)
                info.create_system = 3
                if content is None:
                    info.external_attr = (0o40700 << 16) | 0x10
                    archive.writestr(info, b"")
                    continue
                info.compress_type = compression
                info.external_attr = _ZIP_MODE
                data = content.read_bytes() if isinstance(content, Path) else content
                archive.writestr(info, data)
        os.chmod(temporary, 0o644)
        os.replace(temporary, destination)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _voc_members(images, form, labels, include_images):
    """The (relative path, bytes | Path | None for a folder) members of an export, in CVAT's order."""
    members = []
    if form == "zip_two_folders":
        members.append(("Annotations/", None))
        for image in images:
            if image.objects:
                members.append((f"Annotations/{image.name}.xml", voc_xml(image).encode("utf-8")))
        if include_images:
            members.append(("JPEGImages/", None))
            for image in images:
                members.append((f"JPEGImages/{image.file_name}", Path(image.image_path)))
        return members
    members.append(("labelmap.txt", labelmap_text(labels).encode("utf-8")))
    for image in images:
        if include_images:
            members.append((f"JPEGImages/{image.file_name}", Path(image.image_path)))
        if image.objects:
            members.append((f"Annotations/{image.name}.xml", voc_xml(image).encode("utf-8")))
    listing = "".join(f"{image.name}\n" for image in images)
    members.append(("ImageSets/Main/default.txt", listing.encode("utf-8")))
    return members


def _coordinate(value):
    return repr(round(float(value), 2))


def _attribute_text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)
