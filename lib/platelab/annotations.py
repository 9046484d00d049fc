"""PASCAL VOC annotations as CVAT exports them, read safely.

CVAT's "PASCAL VOC 1.1" export is a zip of ``Annotations/<name>.xml``,
``ImageSets/Main/<subset>.txt``, ``JPEGImages/<name>.jpg`` and
``labelmap.txt``. Its real quirks are handled here: float coordinates, an
empty ``<depth>``, an ``<attributes>`` block per object, and images without
any object, which get no XML at all and appear only in ``ImageSets`` (they are
kept, as negatives). Other sources often re-zip just ``Annotations/`` and
``JPEGImages/``; that form loads too.

XML is parsed with ``defusedxml`` (no entity expansion, no external entities).
Every problem with one file becomes a one-line message naming the file; the
rest of the batch goes on.
"""

import logging
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import defusedxml.ElementTree as SafeElementTree
from defusedxml import DefusedXmlException

from platelab import archives
from platelab.exceptions import PlatelabError
from platelab.paths import safe_name

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

DEFAULT_ALIASES = {
    "vehicle": ["vehicle", "vehicles", "car", "cars", "truck", "trucks", "bus", "buses", "sedan", "sedans"],
    "license_plate": [
        "license_plate", "license_plates", "license plate", "license plates", "licence",
        "licence plate", "licence_plate", "plate", "plates", "number_plate", "number plate",
    ],
}  # fmt: skip
"""Canonical label -> the spellings that mean it (compared case-insensitively)."""


class AnnotationError(PlatelabError, ValueError):
    """A problem with one annotation file (one-line message naming it)."""


@dataclass
class ImageRecord:
    """One image of an annotation batch and its boxes.

    Attributes:
        name: the image's stem, unique within its batch
        image_path: the image file (None where the XML names a missing image)
        xml_path: the annotation file (None for a negative without XML)
        width: image width in pixels (from the XML or the image)
        height: image height in pixels
        objects: dicts with ``label`` (as written), ``bbox`` ([xmin, ymin,
            xmax, ymax] floats, pixels), ``difficult``, ``truncated``,
            ``occluded`` and ``attributes``
        subsets: the ``ImageSets/Main`` lists naming the image
        problems: one-line messages about this image
    """

    name: str
    image_path: Path | None = None
    xml_path: Path | None = None
    width: int | None = None
    height: int | None = None
    objects: list = field(default_factory=list)
    subsets: list = field(default_factory=list)
    problems: list = field(default_factory=list)


@dataclass
class Batch:
    """An annotation batch as loaded.

    Attributes:
        name: the batch's name (the zip's or folder's stem)
        root: the folder holding ``Annotations/`` etc. (extracted if a zip)
        records: the images, by name order
        labels: the label map's labels (without ``background``), if any
        problems: one-line messages about files that could not be used
    """

    name: str
    root: Path
    records: list = field(default_factory=list)
    labels: list = field(default_factory=list)
    problems: list = field(default_factory=list)


def build_alias_map(aliases=None):
    """Turns canonical -> spellings into a lookup of lower-cased spelling -> canonical.

    Args:
        aliases: a dict like :data:`DEFAULT_ALIASES` (default: that one)

    Returns:
        a dict

    Raises:
        ValueError: if one spelling maps to two canonical labels
    """
    lookup = {}
    for canonical, spellings in (aliases or DEFAULT_ALIASES).items():
        for spelling in [canonical, *spellings]:
            key = _label_key(spelling)
            if lookup.get(key, canonical) != canonical:
                raise ValueError(
                    f"label alias '{spelling}' maps to both {lookup[key]} and {canonical}"
                )
            lookup[key] = canonical
    return lookup


def read_alias_file(path):
    """Reads a label-alias YAML file: canonical label -> list of spellings, as written.

    Example::

        vehicle: [car, truck, bus, van]
        license_plate: [plate, "license plate", placa]
        motorcycle: [motorbike]        # a class of its own

    Args:
        path: the YAML file

    Returns:
        a dict canonical -> list of spellings

    Raises:
        AnnotationError: naming the file, when it cannot be read, is not such
            a mapping, or maps one spelling to two labels
    """
    import yaml

    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AnnotationError(f"{path}: alias file not found") from None
    except OSError as error:
        raise AnnotationError(
            f"{path}: cannot read the alias file ({error.strerror or error})"
        ) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise AnnotationError(f"{path}: not valid YAML{where}") from None
    if not isinstance(document, dict) or not document:
        raise AnnotationError(f"{path}: expected a mapping of canonical label -> list of spellings")
    aliases = {}
    for canonical, spellings in document.items():
        if isinstance(spellings, str):
            spellings = [spellings]
        if spellings is None:
            spellings = []
        if not isinstance(canonical, str) or not canonical.strip():
            raise AnnotationError(f"{path}: label {canonical!r} is not a non-empty string")
        if not isinstance(spellings, list) or not all(isinstance(item, str) for item in spellings):
            raise AnnotationError(
                f"{path}: the spellings of {canonical!r} must be a list of strings"
            )
        aliases[canonical.strip()] = [item for item in spellings if item.strip()]
    try:
        build_alias_map(aliases)
    except ValueError as error:
        raise AnnotationError(f"{path}: {error}") from None
    return aliases


def extend_aliases(aliases=None):
    """Returns :data:`DEFAULT_ALIASES` extended by ``aliases``; a spelling given there leaves its default.

    Args:
        aliases: canonical -> spellings (e.g. from :func:`read_alias_file`), or None

    Returns:
        a new dict canonical -> spellings
    """
    if not aliases:
        return {canonical: list(spellings) for canonical, spellings in DEFAULT_ALIASES.items()}
    user_lookup = build_alias_map(aliases)
    combined = {}
    for canonical, spellings in DEFAULT_ALIASES.items():
        combined[canonical] = [
            spelling
            for spelling in spellings
            if normalize_label(spelling, user_lookup) in (None, canonical)
        ]
    for canonical, spellings in aliases.items():
        combined.setdefault(canonical, [])
        combined[canonical] = list(dict.fromkeys(combined[canonical] + list(spellings)))
    build_alias_map(combined)
    return combined


def normalize_label(label, lookup):
    """Returns the canonical label for a spelling, or None when it is unknown."""
    return lookup.get(_label_key(label))


def parse_voc_xml(xml_path):
    """Parses one PASCAL VOC annotation file.

    Args:
        xml_path: the file

    Returns:
        a dict with ``filename``, ``width``, ``height``, ``depth`` (None where
        absent or empty) and ``objects`` (see :class:`ImageRecord`), plus
        ``problems`` for objects that had to be skipped

    Raises:
        AnnotationError: for malformed XML, entity tricks, or a file that is
            not a VOC annotation
    """
    xml_path = Path(xml_path)
    try:
        root = SafeElementTree.parse(str(xml_path), forbid_dtd=True).getroot()
    except DefusedXmlException as error:
        raise AnnotationError(f"{xml_path}: refused unsafe XML ({type(error).__name__})") from None
    except SafeElementTree.ParseError as error:
        raise AnnotationError(f"{xml_path}: malformed XML ({error})") from None
    except OSError as error:
        raise AnnotationError(f"{xml_path}: cannot read ({error.strerror or error})") from None
    if root.tag != "annotation":
        raise AnnotationError(f"{xml_path}: not a VOC annotation (root element <{root.tag}>)")
    size = root.find("size")
    parsed = {
        "filename": _text(root, "filename"),
        "width": _int_or_none(size, "width") if size is not None else None,
        "height": _int_or_none(size, "height") if size is not None else None,
        "depth": _int_or_none(size, "depth") if size is not None else None,
        "objects": [],
        "problems": [],
    }
    for index, element in enumerate(root.findall("object")):
        label = _text(element, "name")
        box = element.find("bndbox")
        if not label or box is None:
            parsed["problems"].append(
                f"{xml_path}: object {index + 1} has no name or no <bndbox>; skipped"
            )
            continue
        try:
            bbox = [float(_text(box, key)) for key in ("xmin", "ymin", "xmax", "ymax")]
        except (TypeError, ValueError):
            parsed["problems"].append(
                f"{xml_path}: object {index + 1} ({label}) has a non-numeric box; skipped"
            )
            continue
        attributes = {}
        for attribute in element.findall("attributes/attribute"):
            name = _text(attribute, "name")
            if name:
                attributes[name] = _text(attribute, "value")
        parsed["objects"].append(
            {
                "label": label,
                "bbox": bbox,
                "difficult": _flag(element, "difficult"),
                "truncated": _flag(element, "truncated"),
                "occluded": _flag(element, "occluded"),
                "attributes": attributes,
            }
        )
    return parsed


def load_batch(source, work_dir=None, read_image_size=None):
    """Loads a CVAT "PASCAL VOC 1.1" export, zipped or not, or a zip of Annotations/ and JPEGImages/.

    Each unusable item is skipped with one line in the batch's problems, and
    the rest is loaded: a zip member that is unsafe (a ``..`` or absolute
    path, a link, too large) or corrupt (see
    :func:`platelab.archives.safe_extract`), a link inside a folder that
    leads outside it, an XML file that is malformed or refused (entities),
    an annotation whose image is missing. An image whose own XML or image
    member was skipped is left out without a second line.

    Args:
        source: a ``.zip`` or a folder (only read)
        work_dir: where a zip is extracted (default: a new temporary folder);
            a folder already extracted there is reused (its skipped members
            were named when it was extracted)
        read_image_size: a function path -> (width, height) or None, used
            where the XML has no size and to check sizes (default: reads the
            image header with OpenCV)

    Returns:
        a :class:`Batch`; its records and problems say what was found

    Raises:
        AnnotationError: if the source is missing or holds no VOC layout
        archives.ArchiveError: for a zip that cannot be read at all
    """
    source = Path(source)
    if not source.exists():
        raise AnnotationError(f"{source}: not found")
    name = source.stem if source.is_file() else source.name
    skipped = []
    folder = _batch_folder(source, name, work_dir, skipped)
    problems = [item.message for item in skipped]
    guard = _LinkGuard(folder, problems)
    root = _find_layout_root(folder, guard)
    if root is None:
        for message in problems:
            logger.warning("%s", message)
        raise AnnotationError(f"{source}: no Annotations/ or JPEGImages/ folder (not a VOC export)")
    read_image_size = read_image_size or image_size
    batch = Batch(name=name, root=root, problems=problems)
    images_dir = root / "JPEGImages"
    annotations_dir = root / "Annotations"
    # Items already named once (a skipped member, a link, a refused XML): no second line.
    named = set()
    for item in skipped:
        if item.path is not None:
            named.add(_item_key(folder / item.path, images_dir, annotations_dir))
    labelmap = root / "labelmap.txt"
    if labelmap.is_file() and guard.allows(labelmap):
        batch.labels = _read_labelmap(labelmap)

    images = _find_images(images_dir, annotations_dir, guard, batch, named)
    image_sets = root / "ImageSets" / "Main"
    subsets = _read_image_sets(image_sets, batch, guard) if guard.allows(image_sets) else {}
    parsed_files = _parse_annotations(annotations_dir, images_dir, guard, batch, named)
    records = _annotated_records(parsed_files, images, images_dir, guard, batch, named)
    for key, path in images.items():
        if key in records or key in named:
            continue
        record = ImageRecord(name=key, image_path=path)
        if key not in subsets:
            record.problems.append(
                f"{path}: no annotation XML and not listed in ImageSets; kept as an image without objects"
            )
        records[key] = record
    for key in subsets:
        if key not in records and key not in images and key not in named:
            batch.problems.append(
                f"{root / 'ImageSets' / 'Main'}: lists {key}, which has no image; skipped"
            )
    for key in sorted(records):
        record = records[key]
        record.subsets = sorted(subsets.get(key, []))
        _check_record(record, read_image_size)
        batch.records.append(record)
    return batch


def _batch_folder(source, name, work_dir, skipped):
    """The batch's folder: the source folder itself, or a zip extracted under ``work_dir``.

    Args:
        source: the batch's ``.zip`` or folder (it exists)
        name: the batch's name (the extracted folder's, made safe)
        work_dir: where a zip is extracted (default: a new temporary folder)
        skipped: a list receiving the zip members skipped while extracting

    Returns:
        the folder to read

    Raises:
        AnnotationError: a file that is not a ``.zip``
    """
    if not source.is_file():
        return source
    if source.suffix.lower() != ".zip":
        raise AnnotationError(f"{source}: expected a .zip or a folder")
    work_dir = Path(work_dir or tempfile.mkdtemp(prefix="platelab-batch-"))
    extracted = work_dir / safe_name(name)
    if not extracted.exists():
        archives.safe_extract(source, extracted, skipped=skipped)
    return extracted


def _find_images(images_dir, annotations_dir, guard, batch, named):
    """The batch's images under JPEGImages/, by item key; links refused are added to ``named``."""
    images = {}
    if images_dir.is_dir() and guard.allows(images_dir):
        for path in sorted(images_dir.rglob("*")):
            if path.name.startswith("."):
                continue
            if not guard.allows(path):
                named.add(_item_key(path, images_dir, annotations_dir))
                continue
            if not path.is_file():
                continue
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                batch.problems.append(f"{path}: not an image file (by its extension); skipped")
                continue
            images.setdefault(path.relative_to(images_dir).with_suffix("").as_posix(), path)
    return images


def _parse_annotations(annotations_dir, images_dir, guard, batch, named):
    """Each readable XML under Annotations/, parsed: item key -> (path, :func:`parse_voc_xml`)."""
    parsed_files = {}
    if annotations_dir.is_dir() and guard.allows(annotations_dir):
        for xml_path in sorted(annotations_dir.rglob("*.xml")):
            key = _item_key(xml_path, images_dir, annotations_dir)
            if not guard.allows(xml_path):
                named.add(key)
                continue
            try:
                parsed_files[key] = (xml_path, parse_voc_xml(xml_path))
            except AnnotationError as error:
                batch.problems.append(f"{error}; skipped")
                named.add(key)
    return parsed_files


def _annotated_records(parsed_files, images, images_dir, guard, batch, named):
    """An :class:`ImageRecord` per parsed XML whose image is found, by item key.

    The image is the one with the XML's item key, else the one its
    ``<filename>`` names inside JPEGImages/; an XML with neither is skipped
    with a problem line (and its key added to ``named``).
    """
    records = {}
    for key, (xml_path, parsed) in parsed_files.items():
        if key in named:
            continue
        record = ImageRecord(name=key, xml_path=xml_path)
        record.problems.extend(parsed["problems"])
        record.objects = parsed["objects"]
        record.width, record.height = parsed["width"], parsed["height"]
        record.image_path = images.get(key)
        if record.image_path is None and parsed["filename"]:
            candidate = _inside_path(images_dir, parsed["filename"])
            if candidate is not None and candidate.is_file() and guard.allows(candidate):
                record.image_path = candidate
        if record.image_path is None:
            batch.problems.append(
                f"{xml_path}: its image ({parsed['filename'] or key}) is missing; skipped"
            )
            named.add(key)
            continue
        records[key] = record
    return records


def image_size(path):
    """Returns (width, height) of an image, or None where it cannot be read."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        return None
    return image.shape[1], image.shape[0]


def _check_record(record, read_image_size):
    """Checks sizes and boxes against the real image; clips, swaps or drops with a message."""
    actual = read_image_size(record.image_path)
    where = record.xml_path or record.image_path
    if actual is None:
        record.problems.append(f"{record.image_path}: unreadable image; skipped")
        record.image_path = None
        return
    width, height = actual
    if record.width is None or record.height is None:
        if record.xml_path is not None:
            record.problems.append(f"{where}: no <size>; read {width}x{height} from the image")
    elif (record.width, record.height) != (width, height):
        record.problems.append(
            f"{where}: <size> says {record.width}x{record.height} but the image is {width}x{height}; "
            "using the image's size"
        )
    record.width, record.height = width, height
    kept = []
    for item in record.objects:
        x0, y0, x1, y1 = item["bbox"]
        fixed = []
        if x0 > x1 or y0 > y1:
            x0, x1 = min(x0, x1), max(x0, x1)
            y0, y1 = min(y0, y1), max(y0, y1)
            fixed.append("inverted corners swapped")
        clipped = [
            min(max(x0, 0.0), width),
            min(max(y0, 0.0), height),
            min(max(x1, 0.0), width),
            min(max(y1, 0.0), height),
        ]
        if clipped != [x0, y0, x1, y1]:
            fixed.append("clipped to the image")
        if clipped[2] - clipped[0] < 1 or clipped[3] - clipped[1] < 1:
            record.problems.append(
                f"{where}: {item['label']} box {item['bbox']} is empty inside the image; dropped"
            )
            continue
        if fixed:
            record.problems.append(
                f"{where}: {item['label']} box {item['bbox']}: {', '.join(fixed)}"
            )
        item = dict(item, bbox=clipped)
        kept.append(item)
    record.objects = kept


class _LinkGuard:
    """Passes over links inside a batch folder that lead outside it, each named once."""

    def __init__(self, base, problems):
        self.base = Path(base)
        self.real = self.base.resolve()
        self.problems = problems
        self.reported = set()

    def allows(self, path):
        """True when no link on the way from the batch folder to ``path`` leads outside it."""
        current = self.base
        for part in Path(path).relative_to(self.base).parts:
            current = current / part
            if current.is_symlink() and not current.resolve().is_relative_to(self.real):
                if current not in self.reported:
                    self.reported.add(current)
                    self.problems.append(
                        f"{current}: a link to {current.resolve()}, outside {self.base}; skipped"
                    )
                return False
        return True


def _item_key(path, images_dir, annotations_dir):
    """The item (image stem, relative to its folder) a file under JPEGImages/ or Annotations/ stands for."""
    for folder in (images_dir, annotations_dir):
        if Path(path).is_relative_to(folder) and Path(path) != folder:
            return Path(path).relative_to(folder).with_suffix("").as_posix()
    return None


def _inside_path(folder, name):
    """``folder / name`` where ``name`` is a plain relative path, else None."""
    relative = Path(name.replace("\\", "/"))
    if relative.is_absolute() or relative.drive or ".." in relative.parts:
        return None
    return folder / relative


def _find_layout_root(folder, guard):
    for candidate in [folder, *sorted(path for path in folder.rglob("*") if path.is_dir())]:
        has_layout = (candidate / "Annotations").is_dir() or (candidate / "JPEGImages").is_dir()
        if has_layout and (candidate == folder or guard.allows(candidate)):
            return candidate
    return None


def _read_image_sets(folder, batch, guard):
    subsets = {}
    if not folder.is_dir():
        return subsets
    for path in sorted(folder.glob("*.txt")):
        if not guard.allows(path):
            continue
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            batch.problems.append(f"{path}: cannot read ({error})")
            continue
        for line in lines:
            key = line.strip().split(" ")[0] if line.strip() else ""
            if key:
                subsets.setdefault(key, []).append(path.stem)
    return subsets


def _read_labelmap(path):
    labels = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        label = line.split(":")[0].strip()
        if label and label != "background":
            labels.append(label)
    return labels


def _text(element, path):
    found = element.find(path)
    if found is None or found.text is None:
        return None
    return found.text.strip()


def _int_or_none(element, path):
    text = _text(element, path)
    if not text:
        return None
    try:
        return int(float(text))
    except ValueError:
        return None


def _flag(element, path):
    text = _text(element, path)
    return text in ("1", "true", "True")


def _label_key(label):
    return re.sub(r"[\s_\-]+", " ", str(label).strip().lower())
