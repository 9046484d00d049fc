"""A CVAT-style PASCAL VOC export with good items and hostile or broken members, built for tests.

:func:`build` writes the zip and returns what a loader should make of it:
the items that come out, and for each skipped item the member it names and
the words of its one-line message.
"""

import stat
import zipfile

import cv2
import numpy as np

GOOD = ["good1", "good2", "good3", "good4", "good5"]
NEGATIVE = "negative"  # listed in ImageSets/Main/default.txt, no XML: kept without objects
KEPT_WITH_A_FIX = ["bad_coordinates", "unknown_label", "wrong_size"]
"""Items kept with one line saying what was fixed (a box dropped, the image's own size)."""

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE annotation [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<annotation><filename>bomb.png</filename><object><name>&lol9;</name></object></annotation>
"""


def image_bytes(seed, size=(64, 48)):
    """A small PNG whose pixels depend on ``seed``."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    ok, data = cv2.imencode(".png", pixels)
    assert ok
    return data.tobytes()


def voc_xml(name, objects, size=(64, 48)):
    """A CVAT-style VOC annotation; objects: (label, (xmin, ymin, xmax, ymax)) with str or float values."""
    body = "".join(
        f"<object><name>{label}</name><truncated>0</truncated><occluded>0</occluded>"
        f"<difficult>0</difficult><bndbox><xmin>{box[0]}</xmin><ymin>{box[1]}</ymin>"
        f"<xmax>{box[2]}</xmax><ymax>{box[3]}</ymax></bndbox></object>"
        for label, box in objects
    )
    return (
        f"<annotation><folder></folder><filename>{name}.png</filename>"
        f"<size><width>{size[0]}</width><height>{size[1]}</height><depth></depth></size>"
        f"<segmented>0</segmented>{body}</annotation>"
    )


PLATE = ("license plate", (10.25, 20.5, 30.75, 28.0))
CAR = ("car", (2.0, 4.0, 60.0, 44.0))


def build(path, outside):
    """Writes the mixed export to ``path``.

    Args:
        path: the zip to write
        outside: a folder outside any extraction folder; the absolute-path
            member and the external entity point into it

    Returns:
        a dict: ``kept`` (item names that come out, sorted), ``objects``
        (item -> number of boxes kept), ``skipped`` (member as named in
        messages -> the words its one line holds), ``fixed`` (member ->
        words of the line saying what was fixed), ``unknown_label`` (the
        member with a box of unknown label)
    """
    secret = outside / "secret.txt"
    secret.write_text("not for annotation\n")
    absolute = (outside / "abs_escape.txt").as_posix()
    members = []  # (ZipInfo or name, data)

    def add(name, data):
        members.append((name, data))

    for seed, name in enumerate(GOOD, start=1):
        add(f"Annotations/{name}.xml", voc_xml(name, [PLATE, CAR]))
        add(f"JPEGImages/{name}.png", image_bytes(seed))
    add(f"JPEGImages/{NEGATIVE}.png", image_bytes(10))
    # Unsafe members.
    add("../../escape_rel.txt", "escaped by a parent path")
    add(absolute, "escaped by an absolute path")
    link = zipfile.ZipInfo("JPEGImages/link.png")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    add(link, str(secret))
    add("Annotations/link.xml", voc_xml("link", [PLATE]))
    add("Annotations/huge.xml", voc_xml("huge", [PLATE]))
    add("JPEGImages/huge.png", b"\0" * (40 * 1024 * 1024))
    # Broken XML.
    add("Annotations/bomb.xml", BILLION_LAUGHS)
    add("JPEGImages/bomb.png", image_bytes(11))
    add(
        "Annotations/xxe.xml",
        f'<?xml version="1.0"?>\n<!DOCTYPE annotation [<!ENTITY xxe SYSTEM "file://{secret}">]>\n'
        "<annotation><filename>&xxe;</filename></annotation>",
    )
    add("JPEGImages/xxe.png", image_bytes(12))
    add("Annotations/malformed.xml", "<annotation><object><name>car</name></annotation>")
    add("JPEGImages/malformed.png", image_bytes(13))
    # Broken items.
    add("Annotations/missing_image.xml", voc_xml("missing_image", [PLATE]))
    add("Annotations/not_an_image.xml", voc_xml("not_an_image", [PLATE]))
    add("JPEGImages/not_an_image.png", "this is text, not a PNG")
    add("JPEGImages/notes.txt", "a stray text file")
    # Items kept with a fix.
    add(
        "Annotations/bad_coordinates.xml",
        voc_xml("bad_coordinates", [PLATE, ("car", ("left", 4, 60, 44))]),
    )
    add("JPEGImages/bad_coordinates.png", image_bytes(14))
    add("Annotations/wrong_size.xml", voc_xml("wrong_size", [PLATE], size=(640, 480)))
    add("JPEGImages/wrong_size.png", image_bytes(15))
    add("Annotations/unknown_label.xml", voc_xml("unknown_label", [PLATE, ("tree", (1, 1, 9, 9))]))
    add("JPEGImages/unknown_label.png", image_bytes(16))
    listed = [
        *GOOD,
        NEGATIVE,
        "link",
        "huge",
        "bomb",
        "xxe",
        "malformed",
        "missing_image",
        "not_an_image",
        *KEPT_WITH_A_FIX,
    ]
    add("ImageSets/Main/default.txt", "\n".join(listed) + "\n")
    add(
        "labelmap.txt",
        "# label:color_rgb:parts:actions\nbackground:0,0,0::\nlicense plate:250,50,83::\n"
        "car:0,0,255::\n",
    )
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return {
        "kept": sorted([*GOOD, NEGATIVE, *KEPT_WITH_A_FIX]),
        "objects": {
            **{name: 2 for name in GOOD},
            NEGATIVE: 0,
            "bad_coordinates": 1,
            "unknown_label": 1,
            "wrong_size": 1,
        },
        "skipped": {
            "member '../../escape_rel.txt'": ["points outside the archive (parent path '..')"],
            f"member {absolute!r}": ["has an absolute path"],
            "member 'JPEGImages/link.png'": ["is a symbolic link"],
            "member 'JPEGImages/huge.png'": ["is too large", "zip bomb?"],
            "Annotations/bomb.xml": ["refused unsafe XML"],
            "Annotations/xxe.xml": ["refused unsafe XML"],
            "Annotations/malformed.xml": ["malformed XML"],
            "Annotations/missing_image.xml": ["its image (missing_image.png) is missing"],
            "JPEGImages/not_an_image.png": ["unreadable image"],
            "JPEGImages/notes.txt": ["not an image file"],
        },
        "fixed": {
            "Annotations/bad_coordinates.xml": ["object 2 (car) has a non-numeric box"],
            "Annotations/wrong_size.xml": ["<size> says 640x480 but the image is 64x48"],
        },
        "unknown_label": "Annotations/unknown_label.xml",
        "escapes": [outside / "abs_escape.txt"],
    }
