"""Reading CVAT "PASCAL VOC 1.1" exports (platelab.annotations)."""

import hashlib
import zipfile

import cv2
import numpy as np
import pytest

from platelab import annotations
from platelab.annotations import AnnotationError

OBJECT = """  <object>
    <name>{label}</name><truncated>0</truncated><occluded>0</occluded><difficult>0</difficult>
    <bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox>
    <attributes><attribute><name>text</name><value>ABC1234</value></attribute></attributes>
  </object>
"""


def _xml(filename, objects, size=(64, 48)):
    size_xml = (
        ""
        if size is None
        else f"<size><width>{size[0]}</width><height>{size[1]}</height><depth></depth></size>"
    )
    body = "".join(
        OBJECT.format(label=label, x0=b[0], y0=b[1], x1=b[2], y1=b[3]) for label, b in objects
    )
    return f"<annotation><folder></folder><filename>{filename}</filename>{size_xml}<segmented>0</segmented>\n{body}</annotation>"


def _export(folder, images, xmls, image_sets=None):
    """Writes a CVAT-like export: images {stem: (w, h)}, xmls {stem: text}."""
    (folder / "Annotations").mkdir(parents=True)
    (folder / "JPEGImages").mkdir()
    for stem, (width, height) in images.items():
        cv2.imwrite(
            str(folder / "JPEGImages" / f"{stem}.jpg"), np.full((height, width, 3), 127, np.uint8)
        )
    for stem, text in xmls.items():
        (folder / "Annotations" / f"{stem}.xml").write_text(text)
    if image_sets is not None:
        (folder / "ImageSets" / "Main").mkdir(parents=True)
        (folder / "ImageSets" / "Main" / "default.txt").write_text("\n".join(image_sets) + "\n")
    (folder / "labelmap.txt").write_text(
        "# label:color_rgb:parts:actions\nbackground:0,0,0::\nlicense plate:250,50,83::\n"
    )
    return folder


def _tree_digest(folder):
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(folder).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


def test_cvat_quirks_float_coordinates_attributes_and_negatives(tmp_path):
    folder = _export(
        tmp_path / "batch",
        {"a": (64, 48), "b": (64, 48)},
        {"a": _xml("a.jpg", [("license plate", (10.5, 20.25, 30.75, 28.0))])},
        image_sets=["a", "b"],
    )
    batch = annotations.load_batch(folder)
    assert batch.labels == ["license plate"]
    assert batch.problems == []
    first, second = batch.records
    assert first.objects[0]["bbox"] == [10.5, 20.25, 30.75, 28.0]
    assert first.objects[0]["attributes"] == {"text": "ABC1234"}
    assert (first.width, first.height) == (64, 48) and first.problems == []
    assert second.name == "b" and second.objects == [] and second.xml_path is None
    assert second.problems == []  # listed in ImageSets: a real negative


def test_zip_and_zip_of_two_folders_load_alike(tmp_path):
    folder = _export(
        tmp_path / "src", {"a": (64, 48)}, {"a": _xml("a.jpg", [("car", (1, 2, 30, 40))])}
    )
    archive = tmp_path / "task.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for path in folder.rglob("*"):
            if path.is_file() and path.name != "labelmap.txt":
                handle.write(path, path.relative_to(folder).as_posix())
    before = _tree_digest(tmp_path / "src")
    batch = annotations.load_batch(archive, work_dir=tmp_path / "work")
    assert [record.name for record in batch.records] == ["a"]
    assert batch.records[0].objects[0]["label"] == "car"
    assert _tree_digest(tmp_path / "src") == before  # inputs untouched


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<annotation><object></annotation>", "malformed XML"),
        ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
         "<annotation><filename>&lol2;</filename></annotation>", "refused unsafe XML"),
        ('<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
         "<annotation><filename>&xxe;</filename></annotation>", "refused unsafe XML"),
        ("<html></html>", "not a VOC annotation"),
    ],
)  # fmt: skip
def test_bad_xml_is_one_message_and_the_rest_goes_on(tmp_path, text, message):
    folder = _export(
        tmp_path / "batch",
        {"good": (64, 48), "bad": (64, 48)},
        {"good": _xml("good.jpg", [("plate", (1, 1, 20, 10))]), "bad": text},
        image_sets=["good", "bad"],
    )
    batch = annotations.load_batch(folder)
    assert any(message in problem and "bad.xml" in problem for problem in batch.problems), (
        batch.problems
    )
    assert [record.name for record in batch.records if record.objects] == ["good"]
    assert all("\n" not in problem for problem in batch.problems)


def test_box_and_size_problems_are_fixed_or_dropped_with_messages(tmp_path):
    objects = [
        ("plate", (-5, -3, 20, 10)),  # negative: clipped
        ("plate", (30, 20, 10, 5)),  # inverted: swapped
        ("car", (50, 40, 90, 70)),  # beyond the image: clipped
        ("car", (70, 60, 80, 65)),  # entirely outside: dropped
    ]
    folder = _export(
        tmp_path / "batch",
        {"a": (64, 48), "nosize": (64, 48), "wrongsize": (64, 48)},
        {
            "a": _xml("a.jpg", objects),
            "nosize": _xml("nosize.jpg", [("plate", (1, 1, 5, 5))], size=None),
            "wrongsize": _xml("wrongsize.jpg", [("plate", (1, 1, 5, 5))], size=(640, 480)),
        },
    )
    records = {record.name: record for record in annotations.load_batch(folder).records}
    boxes = [item["bbox"] for item in records["a"].objects]
    assert boxes == [[0.0, 0.0, 20.0, 10.0], [10.0, 5.0, 30.0, 20.0], [50.0, 40.0, 64.0, 48.0]]
    text = " | ".join(records["a"].problems)
    assert (
        "clipped to the image" in text and "inverted corners swapped" in text and "dropped" in text
    )
    assert "no <size>; read 64x48" in records["nosize"].problems[0]
    assert (records["nosize"].width, records["nosize"].height) == (64, 48)
    assert "says 640x480 but the image is 64x48" in records["wrongsize"].problems[0]


def test_missing_image_and_image_without_xml(tmp_path):
    folder = _export(
        tmp_path / "batch",
        {"orphan": (64, 48)},
        {"ghost": _xml("ghost.jpg", [("plate", (1, 1, 5, 5))])},
    )
    batch = annotations.load_batch(folder)
    assert any(
        "ghost.xml: its image (ghost.jpg) is missing" in problem for problem in batch.problems
    )
    (orphan,) = batch.records
    assert orphan.name == "orphan" and orphan.objects == []
    assert "no annotation XML and not listed in ImageSets" in orphan.problems[0]


def test_non_utf8_names_in_zip(tmp_path):
    folder = _export(
        tmp_path / "src",
        {"caf\u00e9 1": (64, 48)},
        {"caf\u00e9 1": _xml("caf\u00e9 1.jpg", [("plate", (1, 1, 9, 9))])},
    )
    archive = tmp_path / "cp437.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for path in folder.rglob("*"):
            if path.is_file():
                info = zipfile.ZipInfo(path.relative_to(folder).as_posix())
                handle.writestr(info, path.read_bytes())
    batch = annotations.load_batch(archive, work_dir=tmp_path / "work")
    assert [len(record.objects) for record in batch.records] == [1]


def test_alias_map():
    lookup = annotations.build_alias_map()
    for spelling in ("car", "Cars", "vehicles", "truck", "bus", "sedan"):
        assert annotations.normalize_label(spelling, lookup) == "vehicle"
    for spelling in (
        "license plate",
        "license_plates",
        "licence",
        "plate",
        "number_plate",
        "License-Plate",
    ):
        assert annotations.normalize_label(spelling, lookup) == "license_plate"
    assert annotations.normalize_label("tree", lookup) is None
    with pytest.raises(ValueError, match="maps to both"):
        annotations.build_alias_map({"vehicle": ["plate"], "license_plate": ["plate"]})


def test_not_a_voc_source(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(AnnotationError, match="no Annotations/ or JPEGImages/"):
        annotations.load_batch(tmp_path / "empty")
    with pytest.raises(AnnotationError, match="not found"):
        annotations.load_batch(tmp_path / "nope.zip")


@pytest.mark.shared
def test_real_cvat_exports(shared_data, tmp_path):
    lookup = annotations.build_alias_map()
    problems = {}
    for archive, spelling in (
        ("br_task_1_voc.zip", "license plate"),
        ("br_task_2_voc.zip", "license_plate"),
    ):
        batch = annotations.load_batch(shared_data / "openalpr-br" / archive, work_dir=tmp_path)
        assert len(batch.records) == 57 and batch.problems == []
        assert batch.labels == [spelling]
        for record in batch.records:
            assert len(record.objects) == 1
            problems.update({record.name: record.problems} if record.problems else {})
            item = record.objects[0]
            assert annotations.normalize_label(item["label"], lookup) == "license_plate"
            assert item["attributes"].get("text")
            x0, y0, x1, y1 = item["bbox"]
            assert 0 <= x0 < x1 <= record.width and 0 <= y0 < y1 <= record.height
    # The real exports carry two real mistakes: a <size> far from the image's, and a box at x=-1.
    assert sorted(problems) == ["PAG5219", "PJT2905"]
    assert "says 50719x212 but the image is 1280x720" in problems["PAG5219"][0]
    assert "[-1.0, 574.0, 269.0, 661.0]: clipped to the image" in problems["PJT2905"][0]
