"""Stage 03: CVAT task batches, the VOC writer, the simulated annotator and import (platelab.annotate)."""

import json
import shutil
import socket
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from cvat_server import FakeCvatServer

from conftest import assert_re_exports, words_of_a_process_leaving_no_temp
from platelab import LABELS, annotate, annotations, curate, metadata, synth
from platelab.collect import frames

REAL_EXPORTS = ("br_task_1_voc.zip", "br_task_2_voc.zip")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A tiny real chain: stage 00 videos, stage 01 frames (plus one photo), stage 02 curated list."""
    root = tmp_path_factory.mktemp("workspace")
    synthetic = root / "raw" / "synthetic"
    synth.synthesize(
        synthetic,
        videos=2,
        seconds=2.0,
        fps=4.0,
        size=(320, 180),
        seed=5,
        workers=1,
        progress=False,
    )
    photos = root / "raw" / "photos"
    photos.mkdir(parents=True)
    rng = np.random.default_rng(0)
    cv2.imwrite(str(photos / "street_photo.jpg"), rng.integers(0, 255, (120, 160, 3), np.uint8))
    frames_dir = root / "interim" / "frames"
    frames.sample([synthetic / "videos", photos], frames_dir, fps=2.0, progress=False, workers=1)
    curated = curate.curate([frames_dir], root / "interim" / "curated", progress=False, workers=1)
    return {
        "root": root,
        "synthetic": synthetic,
        "frames": frames_dir,
        "curated": curated,
        "curated_dir": root / "interim" / "curated",
    }


@pytest.fixture(scope="module")
def tasks(workspace):
    out = workspace["root"] / "interim" / "cvat" / "tasks"
    index = annotate.export_tasks(workspace["curated_dir"], out, batch_size=2, progress=False)
    return out, index


def _image(path, size=(64, 48), value=90):
    cv2.imwrite(str(path), np.full((size[1], size[0], 3), value, np.uint8))
    return path


def _voc_images(folder):
    folder.mkdir(parents=True, exist_ok=True)
    return [
        annotate.VocImage(
            "street_a",
            _image(folder / "a.png", value=10),
            64,
            48,
            [
                {
                    "label": "car",
                    "bbox": [1.5, 2.25, 40.0, 30.0],
                    "difficult": True,
                    "truncated": False,
                    "occluded": True,
                    "attributes": {"type": "bus"},
                },
                {
                    "label": "license plate",
                    "bbox": [10, 20, 18, 24],
                    "attributes": {"text": "AB <12> & C"},
                },
            ],
        ),
        annotate.VocImage("street_b", _image(folder / "b.png", value=200), 64, 48, []),
        annotate.VocImage(
            "street_c",
            _image(folder / "c.png", value=40),
            64,
            48,
            [{"label": "car", "bbox": [0.0, 0.0, 64.0, 48.0]}],
        ),
    ]


def _digest(path):
    path = Path(path)
    if path.is_file():
        return metadata.sha256_file(path)
    return metadata.fingerprint(path)["sha256"]


def _closed_port():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        return listener.getsockname()[1]


# --------------------------------------------------------------------------- the VOC writer


@pytest.mark.shared
def test_writer_reproduces_real_cvat_export_byte_for_byte(shared_data, tmp_path):
    source = shared_data / "openalpr-br" / REAL_EXPORTS[0]
    with zipfile.ZipFile(source) as archive:
        real_members = archive.infolist()
        stems = [
            Path(member.filename).stem
            for member in real_members
            if member.filename.startswith("Annotations/")
        ][:5]
        images = []
        for stem in stems:
            for folder, suffix in (("Annotations", ".xml"), ("JPEGImages", ".jpg")):
                (tmp_path / folder).mkdir(exist_ok=True)
                (tmp_path / folder / f"{stem}{suffix}").write_bytes(
                    archive.read(f"{folder}/{stem}{suffix}")
                )
            parsed = annotations.parse_voc_xml(tmp_path / "Annotations" / f"{stem}.xml")
            image = annotate.VocImage(
                stem,
                tmp_path / "JPEGImages" / f"{stem}.jpg",
                parsed["width"],
                parsed["height"],
                parsed["objects"],
            )
            assert annotate.voc_xml(image).encode() == archive.read(f"Annotations/{stem}.xml")
            images.append(image)
        assert annotate.labelmap_text(["license plate"]).encode() == archive.read("labelmap.txt")
        real_listing = archive.read("ImageSets/Main/default.txt").decode().splitlines()
    # The same layout: labelmap first, image then XML per image, ImageSets last, modes alike.
    written = annotate.write_voc(images, tmp_path / "copy.zip", labels=["license plate"])
    with zipfile.ZipFile(written) as archive:
        ours = archive.infolist()
        expected = ["labelmap.txt"]
        for stem in stems:
            expected += [f"JPEGImages/{stem}.jpg", f"Annotations/{stem}.xml"]
        assert [member.filename for member in ours] == [*expected, "ImageSets/Main/default.txt"]
        assert [member.filename for member in real_members[: len(expected)]] == expected
        assert {(member.compress_type, member.external_attr) for member in ours} == {
            (member.compress_type, member.external_attr) for member in real_members
        }
        assert (
            archive.read("ImageSets/Main/default.txt").decode().splitlines()
            == (real_listing[: len(stems)])
        )
        assert archive.read(f"JPEGImages/{stems[0]}.jpg") == images[0].image_path.read_bytes()


def test_write_voc_round_trips_through_load_batch_in_every_form(tmp_path):
    images = _voc_images(tmp_path / "images")
    for form in annotate.EXPORT_FORMS:
        target = tmp_path / (f"export_{form}" if form == "folder" else f"export_{form}.zip")
        annotate.write_voc(images, target, form=form, labels=["car", "license plate"])
        batch = annotations.load_batch(target, work_dir=tmp_path / "work" / form)
        assert [record.name for record in batch.records] == ["street_a", "street_b", "street_c"]
        by_name = {record.name: record for record in batch.records}
        for image in images:
            record = by_name[image.name]
            assert [(item["label"], item["bbox"]) for item in record.objects] == [
                (item["label"], [float(value) for value in item["bbox"]]) for item in image.objects
            ], form
            assert [item["difficult"] for item in record.objects] == [
                bool(item.get("difficult")) for item in image.objects
            ]
        assert by_name["street_a"].objects[1]["attributes"] == {"text": "AB <12> & C"}
        assert by_name["street_a"].objects[0]["occluded"] is True
        assert not by_name["street_b"].objects  # the negative came back as an image without boxes
        if form == "zip_two_folders":
            with zipfile.ZipFile(target) as archive:
                assert {name.split("/")[0] for name in archive.namelist()} == {
                    "Annotations",
                    "JPEGImages",
                }
            assert any("no annotation XML" in problem for problem in by_name["street_b"].problems)
        else:
            assert batch.labels == ["car", "license plate"]
            assert by_name["street_b"].subsets == ["default"] and not by_name["street_b"].problems
            assert by_name["street_b"].xml_path is None  # negatives have no XML in CVAT's export


def test_write_voc_is_reproducible_and_refuses_bad_input(tmp_path):
    images = _voc_images(tmp_path / "images")
    first = _digest(annotate.write_voc(images, tmp_path / "one.zip"))
    second = _digest(annotate.write_voc(images, tmp_path / "two.zip"))
    assert first == second
    with pytest.raises(ValueError, match="unknown export form"):
        annotate.write_voc(images, tmp_path / "x.zip", form="coco")
    with pytest.raises(ValueError, match="unique"):
        annotate.write_voc(images + images[:1], tmp_path / "x.zip")
    images[0].name = "../escape"
    with pytest.raises(ValueError, match="unsafe image name"):
        annotate.write_voc(images, tmp_path / "x.zip")
    assert not (tmp_path / "x.zip").exists()


# --------------------------------------------------------------------------- task batches


def test_export_tasks_batches_links_labels_and_index(workspace, tasks):
    out, index = tasks
    kept = workspace["curated"]["kept"]
    assert index["problems"] == []
    assert [task["images"] for task in index["tasks"]] == [
        min(2, len(kept) - start) for start in range(0, len(kept), 2)
    ]
    labels = json.loads((out / "labels.json").read_text())
    assert [label["name"] for label in labels] == list(LABELS)
    assert all(label["type"] == "rectangle" and label["color"].startswith("#") for label in labels)
    plate = labels[1]["attributes"]
    assert {item["name"]: item["input_type"] for item in plate} == {
        "text": "text",
        "difficult": "checkbox",
        "truncated": "checkbox",
    }
    assert json.loads((out / "task_001" / "labels.json").read_text()) == labels
    by_path = {entry["path"]: entry for entry in kept}
    for entry in index["images"]:
        task_image = out / entry["task"] / "images" / entry["name"]
        original = Path(entry["path"])
        assert task_image.stat().st_ino == original.stat().st_ino  # a hard link, not a copy
        assert metadata.sha256_file(task_image) == entry["sha256"]
        assert entry["cvat_frame"] == f"frame_{entry['position']:06d}"
        assert entry["original"] == by_path[entry["path"]]["image"]
        if entry["kind"] == "frame":
            assert entry["vantage"] in synth.VANTAGES and entry["lighting"] in synth.LIGHTINGS
            assert entry["frame_index"] == by_path[entry["path"]]["frame_index"]
        else:
            assert entry["vantage"] is None and entry["frame_index"] is None
    assert sum(entry["kind"] == "photo" for entry in index["images"]) == 1
    with zipfile.ZipFile(out / "task_001" / "task_001_images.zip") as archive:
        names = archive.namelist()
        task_names = [entry["name"] for entry in index["images"] if entry["task"] == "task_001"]
        assert names == task_names
        assert archive.read(names[0]) == (out / "task_001" / "images" / names[0]).read_bytes()
    assert annotate.load_index(out) == json.loads((out / "index.json").read_text())
    table = annotate.tasks_table(index)
    assert table["images"].sum() == len(kept) and table["photos"].sum() == 1


def test_export_tasks_reports_bad_input_in_one_line(workspace, tmp_path):
    frames_before = _digest(workspace["frames"])
    curated = json.loads((workspace["curated_dir"] / "curated.json").read_text())
    vanished = tmp_path / "vanished.png"
    curated["kept"].insert(1, dict(curated["kept"][0], path=str(vanished), image="vanished.png"))
    index = annotate.export_tasks(
        curated, tmp_path / "tasks", batch_size=50, link_images=False, progress=False
    )
    assert len(index["problems"]) == 1
    assert str(vanished) in index["problems"][0] and "missing" in index["problems"][0]
    assert len(index["images"]) == len(curated["kept"]) - 1  # the rest went on
    copied = tmp_path / "tasks" / "task_001" / "images" / index["images"][0]["name"]
    assert copied.stat().st_ino != Path(index["images"][0]["path"]).stat().st_ino
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    for call, message in (
        (
            lambda: annotate.export_tasks(curated, blocker / "tasks", progress=False),
            r"tasks: output folder cannot be written \(.*a_file is a file, not a folder\)",
        ),
        (
            lambda: annotate.export_tasks(tmp_path / "nowhere", tmp_path / "t", progress=False),
            "no curated list",
        ),
        (lambda: annotate.export_tasks(curated, tmp_path / "t", batch_size=0), "batch_size"),
        (lambda: annotate.load_index(tmp_path / "nowhere"), "no task index"),
    ):
        with pytest.raises(annotate.CvatError, match=message) as error:
            call()
        assert "\n" not in str(error.value)
    assert _digest(workspace["frames"]) == frames_before  # inputs untouched


def test_preannotations_from_a_predictions_list_and_a_callable(workspace, tmp_path):
    kept = workspace["curated"]["kept"]
    first, second = kept[0], kept[1]
    predictions = [
        {"image": first["path"], "label": "car", "score": 0.9, "bbox": [10, 12, 60.5, 40]},
        {
            "image": Path(first["path"]).name,
            "label": "plate",
            "score": 0.8,
            "bbox": [20, 30, 28, 34],
        },
        {"image": second["image"], "label": "vehicle", "score": 0.2, "bbox": [1, 1, 30, 30]},
        {"image": second["image"], "label": "tree", "score": 0.9, "bbox": [1, 1, 30, 30]},
        {"image": "elsewhere.png", "label": "vehicle", "score": 0.9, "bbox": [1, 1, 30, 30]},
    ]
    index = annotate.export_tasks(
        workspace["curated_dir"],
        tmp_path / "tasks",
        batch_size=100,
        predictions=predictions,
        progress=False,
    )
    assert any("'tree'" in problem for problem in index["problems"])
    assert any(
        "elsewhere.png" in problem and "in no task" in problem for problem in index["problems"]
    )
    task = index["tasks"][0]
    assert task["preannotated_boxes"] == 2
    boxes = annotate.read_voc_annotations(tmp_path / "tasks" / task["preannotations"])
    stem = Path(index["images"][0]["name"]).stem
    assert [(item["label"], item["bbox"]) for item in boxes[stem]] == [
        ("vehicle", [10.0, 12.0, 60.5, 40.0]),
        ("license_plate", [20.0, 30.0, 28.0, 34.0]),
    ]
    with zipfile.ZipFile(tmp_path / "tasks" / task["preannotations"]) as archive:
        listed = archive.read("ImageSets/Main/default.txt").decode().split()
        assert len(listed) == len(index["images"])  # every task frame, so CVAT can match names
        assert not any(name.startswith("JPEGImages/") for name in archive.namelist())

    def detector(image_bgr):
        height, width = image_bgr.shape[:2]
        return [{"label": "license_plate", "score": 0.7, "bbox": [0, 0, width / 2, height / 2]}]

    index = annotate.export_tasks(
        workspace["curated_dir"],
        tmp_path / "tasks_callable",
        batch_size=100,
        predictions=detector,
        progress=False,
    )
    assert index["tasks"][0]["preannotated_boxes"] == len(index["images"])


# --------------------------------------------------------------------------- the simulated annotator


def test_simulated_annotator_writes_ground_truth_with_drift_forms_and_renaming(workspace, tasks):
    tasks_out, index = tasks
    out = workspace["root"] / "interim" / "cvat" / "exports"
    document = annotate.simulate_annotator(tasks_out, out, seed=3, progress=False)
    exports = document["exports"]
    task_count = len(index["tasks"])
    for item in exports:
        position = int(item["task"].removeprefix("task_")) - 1
        assert item["form"] == annotate.EXPORT_FORMS[position % 3]
        assert item["batch"] == position * 3 // task_count + 1
        assert item["spellings"] == annotate.DRIFT_SPELLINGS[item["batch"] - 1]
        assert item["frame_names"] == ("cvat" if position % 2 == 0 else "original")
    assert len({item["batch"] for item in exports}) == 3
    # The last task holds only the photo: no ground truth, so no export.
    assert [item["task"] for item in exports] == [task["task"] for task in index["tasks"][:-1]]
    assert document["mistakes"]["mistakes"] == [] and document["problems"] == []
    assert [item["image"] for item in document["without_truth"]] == [
        entry["name"] for entry in index["images"] if entry["kind"] == "photo"
    ]
    imported = annotate.import_exports(out, work_dir=workspace["root"] / "scratch", progress=False)
    assert len(imported.exports) == len(exports)
    renamed = [
        export
        for export in imported.exports
        if any(r.name == "frame_000000" for r in export.batch.records)
    ]
    assert len(renamed) >= 2  # two exports hold a frame_000000.png: merge must keep them apart
    truth_cache = {}
    difficult_seen = 0
    for export, record in imported.records():
        entry = annotate.find_source(
            index, task=export.task, name=record.name, image_path=record.image_path
        )
        assert entry is not None and entry["task"] == export.task
        assert (
            annotate.find_source(index, task=export.task, name=record.name) == entry
        )  # by name alone too
        truth_path = index["sources"][entry["source_id"]]["ground_truth"]
        truth = truth_cache.setdefault(truth_path, json.loads(Path(truth_path).read_text()))
        expected = truth["frames"][entry["frame_index"]]["objects"]
        assert sorted(
            (export.spellings[item["label"]], item["bbox"], item["difficult"])
            for item in record.objects
        ) == sorted(
            (item["label"], [float(value) for value in item["box"]], bool(item["difficult"]))
            for item in expected
        )
        difficult_seen += sum(item["difficult"] for item in record.objects)
    assert difficult_seen > 0
    photo_names = {item["image"] for item in document["without_truth"]}
    assert not any(record.image_path.name in photo_names for _, record in imported.records())
    again = annotate.simulate_annotator(
        tasks_out, workspace["root"] / "again", seed=3, progress=False
    )
    assert again["exports"] == exports
    assert _digest(out) == _digest(workspace["root"] / "again")  # same inputs and seed, same bytes
    shutil.rmtree(imported.work_dir)


def test_injected_mistakes_are_recorded_and_present_in_the_exports(workspace, tasks):
    tasks_out, index = tasks
    out = workspace["root"] / "mistaken"
    document = annotate.simulate_annotator(
        tasks_out, out, inject_mistakes=0.3, seed=11, progress=False
    )
    mistakes = annotate.load_mistakes(out)
    assert mistakes == document["mistakes"]
    records = mistakes["mistakes"]
    assert {record["kind"] for record in records} == set(annotate.MISTAKE_KINDS)
    assert sum(mistakes["counts"].values()) == len(records)
    assert 0.15 < len(records) / mistakes["objects"] < 0.45
    imported = annotate.import_exports(out, work_dir=workspace["root"] / "scratch", progress=False)
    boxes = {}
    for export, record in imported.records():
        boxes[(export.task, record.name)] = [
            (export.spellings[item["label"]], item["bbox"]) for item in record.objects
        ]
    for record in records:
        written = boxes.get((record["task"], record["image"]), [])
        true_entry = (record["label"], record["true_box"])
        if record["kind"] == "missing":
            assert true_entry not in written and record["written_box"] is None
        elif record["kind"] == "shifted":
            assert (record["label"], record["written_box"]) in written
            assert true_entry not in written and record["iou"] < 0.5
        elif record["kind"] == "wrong_label":
            other = [label for label in LABELS if label != record["label"]][0]
            assert (other, record["true_box"]) in written
        else:
            assert true_entry in written and (record["label"], record["written_box"]) in written
            assert record["iou"] > 0.5
    table = annotate.mistakes_table(mistakes)
    assert table.loc["all", "all"] == len(records)
    shutil.rmtree(imported.work_dir)


def test_simulated_annotator_bad_input_and_parameters(tasks, tmp_path):
    tasks_out, index = tasks
    copied = tmp_path / "tasks"
    shutil.copytree(tasks_out, copied)
    gone = copied / "task_001" / "images" / index["images"][0]["name"]
    gone.unlink()
    document = annotate.simulate_annotator(copied, tmp_path / "exports", progress=False)
    assert document["problems"] == [f"{gone}: task image is missing; left out"]
    assert document["exports"][0]["images"] == index["tasks"][0]["images"] - 1  # the rest went on
    for kwargs, message in (
        ({"forms": ["coco"]}, "export forms"),
        ({"inject_mistakes": 1.5}, "inject_mistakes"),
        ({"spellings": [{"vehicle": "car"}]}, "spell exactly"),
    ):
        with pytest.raises(annotate.CvatError, match=message):
            annotate.simulate_annotator(tasks_out, tmp_path / "out", progress=False, **kwargs)
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- import


def test_import_exports_every_form_user_exports_and_bad_input(tmp_path):
    images = _voc_images(tmp_path / "images")
    exports = tmp_path / "exports"
    annotate.write_voc(images, exports / "task_001_voc.zip", labels=["car", "license plate"])
    annotate.write_voc(images, exports / "task_002_voc", form="folder")
    annotate.write_voc(images, exports / "task_003_voc.zip", form="zip_two_folders")
    (exports / "exports.json").write_text("{}")  # a sidecar, not an export
    not_voc = exports / "coco_export.zip"
    with zipfile.ZipFile(not_voc, "w") as archive:
        archive.writestr("annotations/instances_default.json", "{}")
    (exports / "notes.docx").write_bytes(b"PK\x03\x04")
    unsafe = exports / "task_009_voc.zip"
    with zipfile.ZipFile(unsafe, "w") as archive:
        archive.writestr("Annotations/a.xml", "<annotation/>")
        archive.writestr("../escape.txt", "outside")
    workspace = tmp_path / "ws"
    user = annotate.user_exports_dir(workspace)
    annotate.write_voc(images[:1], user / "my_export", form="folder", labels=["vehicle", "tree"])
    before = _digest(exports)
    result = annotate.import_exports(
        [exports], workspace=workspace, work_dir=tmp_path / "work", progress=False
    )
    assert [(export.source.name, export.form, export.task) for export in result.exports] == [
        ("task_001_voc.zip", "zip", "task_001"),
        ("task_002_voc", "folder", "task_002"),
        ("task_003_voc.zip", "zip_two_folders", "task_003"),
        ("task_009_voc.zip", "zip_two_folders", "task_009"),  # its unsafe member skipped
        ("my_export", "folder", None),
    ]
    assert result.exports[3].batch.records == []
    assert result.exports[0].spellings == {"car": "vehicle", "license plate": "license_plate"}
    problems = "\n".join(result.problems)
    assert (
        f"{not_voc}: no Annotations/ or JPEGImages/ folder (not a VOC export); skipped" in problems
    )
    assert f"{exports / 'notes.docx'}: not a .zip or a folder" in problems
    assert f"{unsafe}: member '../escape.txt' points outside the archive" in problems
    assert [line for line in result.problems if line.startswith(str(unsafe))] == [
        f"{unsafe}: member '../escape.txt' points outside the archive (parent path '..'); skipped",
        f"{unsafe}/Annotations/a.xml: its image (a) is missing; skipped",
    ]
    assert not list(tmp_path.rglob("escape.txt"))  # nothing written outside the scratch folder
    assert "label 'tree' is not a known spelling" in problems
    assert "exports.json" not in problems
    assert all("\n" not in problem for problem in result.problems)
    table = annotate.exports_table(result)
    assert (
        table.loc["task_001_voc.zip", "vehicle"] == 2
        and table.loc["task_002_voc", "license_plate"] == 1
    )
    assert table.loc["task_003_voc.zip", "negatives"] == 1
    assert "car (2)" in table.loc["task_001_voc.zip", "spellings"]
    assert _digest(exports) == before  # inputs untouched
    pictures, titles = annotate.gallery(result, count=4)
    assert len(pictures) == len(titles) == 4 and pictures[0].shape == (48, 64, 3)
    assert not np.array_equal(pictures[0], cv2.imread(str(images[0].image_path)))


@pytest.mark.shared
def test_import_real_cvat_exports(shared_data, tmp_path):
    folder = shared_data / "openalpr-br"
    result = annotate.import_exports(
        [folder / name for name in REAL_EXPORTS], work_dir=tmp_path, progress=False
    )
    assert [export.form for export in result.exports] == ["zip", "zip"]
    assert [export.spellings for export in result.exports] == [
        {"license plate": "license_plate"},
        {"license_plate": "license_plate"},
    ]
    assert sum(len(export.batch.records) for export in result.exports) == 114
    # The real mistakes, named inside the zip they came from (not by the scratch folder).
    assert set(result.problems) == {
        f"{folder / REAL_EXPORTS[1]}/Annotations/PJT2905.xml: license_plate box "
        "[-1.0, 574.0, 269.0, 661.0]: clipped to the image",
        f"{folder / REAL_EXPORTS[1]}/Annotations/PAG5219.xml: <size> says 50719x212 but the "
        "image is 1280x720; using the image's size",
    }
    table = annotate.exports_table(result)
    assert table["license_plate"].tolist() == [57, 57] and table["vehicle"].sum() == 0


# --------------------------------------------------------------------------- CVAT server


def test_cvat_server_is_skipped_without_url_and_unreachable_in_one_line(tasks, tmp_path):
    tasks_out, _ = tasks
    assert annotate.upload_tasks(tasks_out, "") is None
    assert annotate.download_annotations(tasks_out, "", tmp_path / "downloads") is None
    url = f"http://127.0.0.1:{_closed_port()}"
    for call in (
        lambda: annotate.upload_tasks(tasks_out, url, timeout=2),
        lambda: annotate.download_annotations(tasks_out, url, tmp_path / "downloads", timeout=2),
    ):
        with pytest.raises(annotate.CvatError) as error:
            call()
        message = str(error.value)
        assert message.startswith(f"{url}: CVAT server unreachable") and "\n" not in message
    with pytest.raises(annotate.CvatError, match="not an http"):
        annotate.check_server("ftp://example.org")
    assert not (tmp_path / "downloads").exists()


@pytest.mark.fiftyone
@pytest.mark.slow
def test_cvat_server_round_trip_through_fiftyone(workspace, tmp_path):
    """Upload, annotate in "CVAT" (the stand-in of tests/cvat_server.py), download, import."""
    from platelab.fiftyone_setup import import_fiftyone

    fo = import_fiftyone()
    kept = workspace["curated"]["kept"]
    assert len(kept) >= 6  # three tasks of two images at least
    predictions = [
        {"image": kept[0]["path"], "label": "car", "score": 0.9, "bbox": [10, 12, 60, 40]},
        {"image": kept[0]["path"], "label": "plate", "score": 0.8, "bbox": [20, 30, 28, 34]},
        {"image": kept[2]["path"], "label": "vehicle", "score": 0.9, "bbox": [5, 6, 50, 45]},
        {"image": kept[4]["path"], "label": "vehicle", "score": 0.9, "bbox": [40, 40, 90, 80]},
        {"image": kept[4]["path"], "label": "vehicle", "score": 0.9, "bbox": [1, 2, 30, 20]},
    ]
    tasks_folder = tmp_path / "tasks"
    index = annotate.export_tasks(
        workspace["curated_dir"],
        tasks_folder,
        batch_size=2,
        predictions=predictions,
        progress=False,
    )
    task_names = [task["task"] for task in index["tasks"]]
    by_path = {entry["path"]: entry for entry in index["images"]}
    first, second, third, fifth = (by_path[kept[number]["path"]] for number in (0, 1, 2, 4))
    assert [first["task"], second["task"], third["task"], fifth["task"]] == [
        task_names[0],
        task_names[0],
        task_names[1],
        task_names[2],
    ]
    name = f"platelab-test-cvat-{uuid.uuid4().hex[:8]}"
    credentials = {"username": "annotator", "password": "s3cret"}
    downloads = tmp_path / "downloads"
    with FakeCvatServer(users={"annotator": "s3cret"}) as server:
        try:
            # First a wrong password: the failed upload must not count as uploaded later.
            with pytest.raises(annotate.CvatError) as error:
                annotate.upload_tasks(
                    tasks_folder, server.url, dataset_name=name, username="annotator", password="no"
                )
            message = str(error.value)
            assert message.startswith(f"{server.url}: uploading task_001 failed (")
            assert "/api/auth/login" in message and "\n" not in message
            assert server.task_names() == []

            uploaded = annotate.upload_tasks(
                tasks_folder, server.url, dataset_name=name, **credentials
            )
            assert uploaded == {"dataset": name, "uploaded": task_names, "already": []}
            assert server.task_names() == task_names
            for task in index["tasks"]:
                held = server.task(task["task"])
                entries = sorted(
                    (entry for entry in index["images"] if entry["task"] == task["task"]),
                    key=lambda entry: entry["position"],
                )
                assert [
                    (frame["name"], frame["width"], frame["height"], frame["sha256"])
                    for frame in held["frames"]
                ] == [
                    (entry["name"], entry["width"], entry["height"], entry["sha256"])
                    for entry in entries
                ]
                assert held["jobs"] == [(0, len(entries) - 1)]  # one job per task
                assert list(held["labels"]) == list(LABELS)
                vehicle, plate = held["labels"]["vehicle"], held["labels"]["license_plate"]
                assert vehicle["type"]["values"] == ["sedan", "truck", "bus"]
                assert vehicle["type"]["default_value"] == "sedan"
                assert plate["text"]["input_type"] == "text"
                assert plate["difficult"]["input_type"] == "checkbox"
                assert plate["difficult"]["default_value"] == "false"
                assert "occluded" not in vehicle  # CVAT's own flag, not an attribute
            held = server.task(first["task"])["shapes"]
            assert sorted((shape["frame"], shape["label"], shape["points"]) for shape in held) == [
                (first["name"], "license_plate", [20.0, 30.0, 28.0, 34.0]),
                (first["name"], "vehicle", [10.0, 12.0, 60.0, 40.0]),
            ]
            assert [len(server.task(task)["shapes"]) for task in task_names[1:]] == [1, 2] + [0] * (
                len(task_names) - 3
            )

            def correct_first_task(job):
                plate, vehicle = sorted(job.shapes(first["name"]), key=lambda shape: shape.label)
                vehicle.points = [12, 14, 70.5, 44]
                vehicle.occluded = True
                vehicle.attributes["type"] = "truck"
                plate.attributes["text"] = "0042"
                plate.attributes["difficult"] = True
                job.draw(second["name"], "vehicle", [100, 50, 180, 120], truncated=True)

            def correct_third_task(job):
                big, small = sorted(job.shapes(fifth["name"]), key=lambda shape: -shape.points[2])
                big.label = "license_plate"  # resets its attributes, as CVAT's editor does
                big.attributes["text"] = "1E5"
                job.delete(small)

            server.edit_task(first["task"], correct_first_task)
            server.edit_task(fifth["task"], correct_third_task)

            written = annotate.download_annotations(
                tasks_folder, server.url, downloads, dataset_name=name, **credentials
            )
            assert written == [downloads / f"{task}_voc" for task in task_names]
            result = annotate.import_exports(downloads, work_dir=tmp_path / "work", progress=False)
            assert [export.task for export in result.exports] == task_names
            assert result.problems == []
            found = {}
            for export, record in result.records():
                found[(export.task, record.name)] = sorted(
                    (
                        item["label"],
                        item["bbox"],
                        item["occluded"],
                        item["difficult"],
                        item["truncated"],
                        item["attributes"],
                    )
                    for item in record.objects
                )
            expected = {(entry["task"], Path(entry["name"]).stem): [] for entry in index["images"]}
            stem = {entry["name"]: Path(entry["name"]).stem for entry in index["images"]}
            expected[(first["task"], stem[first["name"]])] = [
                ("license_plate", [20.0, 30.0, 28.0, 34.0], False, True, False, {"text": "0042"}),
                ("vehicle", [12.0, 14.0, 70.5, 44.0], True, False, False, {"type": "truck"}),
            ]
            expected[(second["task"], stem[second["name"]])] = [
                ("vehicle", [100.0, 50.0, 180.0, 120.0], False, False, True, {"type": "sedan"}),
            ]
            expected[(third["task"], stem[third["name"]])] = [  # untouched
                ("vehicle", [5.0, 6.0, 50.0, 45.0], False, False, False, {}),
            ]
            expected[(fifth["task"], stem[fifth["name"]])] = [
                ("license_plate", [40.0, 40.0, 90.0, 80.0], False, False, False, {"text": "1E5"}),
            ]
            assert found == expected

            again = annotate.upload_tasks(
                tasks_folder, server.url, dataset_name=name, **credentials
            )
            assert again == {"dataset": name, "uploaded": [], "already": task_names}
            assert server.task_names() == task_names  # nothing uploaded twice
            assert fo.load_dataset(name).list_annotation_runs() == task_names
            # FiftyOne called nothing the stand-in does not serve; only the bad login failed.
            refused = [request for request in server.requests if request[2] >= 400]
            assert refused == [("POST", "/api/auth/login", 400)]
        finally:
            if fo.dataset_exists(name):
                fo.delete_dataset(name)


def test_label_schema_for_fiftyone_matches_the_label_set():
    schema = annotate.fiftyone_label_schema()["ground_truth"]
    assert schema["type"] == "detections"
    assert [entry["classes"] for entry in schema["classes"]] == [[label] for label in LABELS]
    assert schema["classes"][0]["attributes"]["type"]["values"] == ["sedan", "truck", "bus"]
    # CVAT 2.5+ wants values on every attribute: [] for a text, [True, False] for a checkbox.
    assert schema["classes"][1]["attributes"]["text"] == {"type": "text", "values": []}
    assert schema["classes"][1]["attributes"]["difficult"] == {
        "type": "checkbox",
        "values": [True, False],
        "default": False,
    }


@pytest.mark.parametrize("first", ["platelab.synth.annotator", "platelab.annotate"])
def test_annotate_and_the_simulated_annotator_import_in_either_order(first):
    # platelab.annotate re-exports platelab.synth.annotator, which builds on platelab.annotate
    code = (
        f"import {first}; import platelab.annotate as annotate; "
        "import platelab.synth.annotator as a; "
        "assert annotate.simulate_annotator is a.simulate_annotator"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_importing_synth_leaves_the_annotator_and_the_cvat_modules_alone():
    code = (
        "import sys, platelab.synth; "
        "loaded = [m for m in sys.modules if m.startswith(('platelab.annotate', 'platelab.cvat'))]; "
        "assert not loaded and 'platelab.synth.annotator' not in sys.modules, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_annotate_re_exports_each_public_name_of_its_modules():
    homes = ["annotate.base", "annotate.tasks", "annotate.voc", "annotate.exports"]
    homes += ["annotate.client", "synth.annotator"]
    assert_re_exports(annotate, homes)


def test_zips_imported_without_a_work_dir_stay_until_the_process_exits(tmp_path):
    """The records' images live in a scratch folder that the process's exit removes."""
    archive = annotate.write_voc(_voc_images(tmp_path / "images"), tmp_path / "batch.zip")
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from platelab import annotate\n"
        "result = annotate.import_exports([sys.argv[1]], progress=False)\n"
        "paths = [Path(record.image_path) for _, record in result.records()]\n"
        "print(len(paths), all(path.is_file() for path in paths))\n"
    )
    printed = words_of_a_process_leaving_no_temp(script, archive, tmpdir=tmp_path / "scratch")
    assert printed == ["3", "True"]
