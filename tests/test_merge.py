"""Stage 05 (platelab.merge): merging annotation batches, splitting by group, writing the dataset."""

import argparse
import contextlib
import hashlib
import io
import json
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import words_of_a_process_leaving_no_temp
from platelab import annotations, merge, tfrecords
from platelab.metadata import sha256_file

OBJECT = """  <object>
    <name>{label}</name><truncated>0</truncated><occluded>0</occluded><difficult>{difficult}</difficult>
    <bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox>
    <attributes><attribute><name>text</name><value>{text}</value></attribute></attributes>
  </object>
"""
PLATE = ("license plate", (10.25, 20.5, 30.75, 28.0))
CAR = ("car", (2.0, 4.0, 60.0, 44.0))


def _write_image(path, seed, size=(64, 48), compression=3):
    """A small PNG whose pixels depend on ``seed`` (distinct seeds, distinct content)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), pixels, [cv2.IMWRITE_PNG_COMPRESSION, compression])
    return path


def _xml(filename, objects, size=(64, 48)):
    body = "".join(
        OBJECT.format(
            label=label, x0=box[0], y0=box[1], x1=box[2], y1=box[3], difficult=0, text="ABC1234"
        )
        for label, box in objects
    )
    return (
        f"<annotation><folder></folder><filename>{filename}</filename>"
        f"<size><width>{size[0]}</width><height>{size[1]}</height><depth></depth></size>"
        f"<segmented>0</segmented>\n{body}</annotation>"
    )


def _batch(folder, images, image_sets=True):
    """Writes a CVAT-like VOC folder: images {name: (seed, objects or None for no XML)}."""
    (folder / "Annotations").mkdir(parents=True)
    names = []
    for name, (seed, objects) in images.items():
        _write_image(folder / "JPEGImages" / f"{name}.png", seed)
        names.append(name)
        if objects is not None:
            (folder / "Annotations" / f"{name}.xml").write_text(_xml(f"{name}.png", objects))
    if image_sets:
        (folder / "ImageSets" / "Main").mkdir(parents=True)
        (folder / "ImageSets" / "Main" / "default.txt").write_text("\n".join(names) + "\n")
    (folder / "labelmap.txt").write_text(
        "# label:color_rgb:parts:actions\nbackground:0,0,0::\nlicense plate:250,50,83::\n"
    )
    return folder


def _tree_digest(folder):
    digest = hashlib.sha256()
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(folder).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


def _video_batches(root, sources=24, frames=5, vantages=("overpass", "parking", "dashcam")):
    """Batches of stage-01 style frames ``<source>_t<ms>``; returns (batch folders, index dict)."""
    index = {"images": []}
    folders = []
    per_batch = max(1, sources // 4)
    for batch_number in range(0, sources, per_batch):
        images = {}
        for source in range(batch_number, min(sources, batch_number + per_batch)):
            for frame in range(frames):
                images[f"video{source:03d}_t{frame * 500:08d}"] = (
                    source * 1000 + frame,
                    [PLATE] if frame % 2 else [CAR, PLATE],
                )
        folder = _batch(root / f"task_{batch_number:03d}", images)
        folders.append(folder)
        for name in images:
            source = int(name[5:8])
            index["images"].append(
                {
                    "name": f"{name}.png",
                    "sha256": sha256_file(folder / "JPEGImages" / f"{name}.png"),
                    "source_id": f"video{source:03d}",
                    "vantage": vantages[source % len(vantages)],
                    "lighting": "day",
                    "time": 0.5 * int(name[-8:]) / 500,
                }
            )
    return folders, index


# ---------------------------------------------------------------- collisions, duplicates


def test_name_collisions_are_renamed_deterministically_and_keep_their_origin(tmp_path):
    first = _batch(tmp_path / "task_1", {"frame_000000": (1, [PLATE]), "only_a": (2, [CAR])})
    second = _batch(tmp_path / "task_2", {"frame_000000": (3, [CAR])})
    result = merge.merge_batches([first, second], progress=False)
    names = {sample.name: sample for sample in result.samples}
    assert sorted(names) == ["only_a", "task_1__frame_000000", "task_2__frame_000000"]
    assert names["task_2__frame_000000"].original_name == "frame_000000"
    assert names["task_2__frame_000000"].batch == "task_2"
    assert names["task_1__frame_000000"].objects[0]["label"] == "license_plate"
    assert result.collisions == [
        {
            "name": "frame_000000",
            "samples": [
                {
                    "batch": "task_1",
                    "original_name": "frame_000000",
                    "renamed_to": "task_1__frame_000000",
                },
                {
                    "batch": "task_2",
                    "original_name": "frame_000000",
                    "renamed_to": "task_2__frame_000000",
                },
            ],
        }
    ]
    again = merge.merge_batches([first, second], progress=False)
    assert [sample.name for sample in again.samples] == [sample.name for sample in result.samples]


def test_case_only_collisions_are_renamed_too(tmp_path):
    first = _batch(tmp_path / "a", {"Frame": (1, [PLATE])})
    second = _batch(tmp_path / "b", {"frame": (2, [PLATE])})
    result = merge.merge_batches([first, second], progress=False)
    assert sorted(sample.name for sample in result.samples) == ["a__Frame", "b__frame"]


def test_same_image_twice_later_batch_wins_and_conflict_is_listed(tmp_path):
    moved_plate = ("license_plate", (40.0, 30.0, 60.0, 40.0))
    first = _batch(tmp_path / "first", {"x": (7, [PLATE])})
    second = _batch(tmp_path / "second", {"y": (7, [moved_plate, CAR])})  # same pixels, same bytes
    result = merge.merge_batches([first, second], progress=False)
    (sample,) = result.samples
    assert sample.batch == "second" and sample.original_name == "y"
    assert sorted(item["label"] for item in sample.objects) == ["license_plate", "vehicle"]
    assert [(member["batch"], member["name"]) for member in sample.members] == [
        ("first", "x"),
        ("second", "y"),
    ]
    assert sample.members[0]["sha256"] == sample.sha256 == sha256_file(second / "JPEGImages/y.png")
    (duplicate,) = result.duplicates
    assert duplicate["conflict"] and duplicate["kept"] == "second" and duplicate["name"] == "y"
    (difference,) = duplicate["differences"]
    assert difference == (
        "first/x vs second/y: 1 license_plate only in second/y, 1 vehicle only in second/y, "
        "1 license_plate only in first/x"
    )

    earlier = merge.merge_batches([first, second], policy="earlier", progress=False)
    assert [item["bbox"] for item in earlier.samples[0].objects] == [list(PLATE[1])]

    union = merge.merge_batches([first, second], policy="union", progress=False)
    labels = Counter(item["label"] for item in union.samples[0].objects)
    assert labels == {"license_plate": 2, "vehicle": 1}  # the plates do not overlap: both kept


def test_union_drops_a_box_overlapping_the_later_one(tmp_path):
    nudged = ("license_plate", (10.75, 20.5, 31.25, 28.0))  # IoU ~0.95 with PLATE
    first = _batch(tmp_path / "first", {"x": (7, [PLATE, CAR])})
    second = _batch(tmp_path / "second", {"x": (7, [nudged])})
    result = merge.merge_batches([first, second], policy="union", progress=False)
    boxes = {item["label"]: item["bbox"] for item in result.samples[0].objects}
    assert boxes == {"license_plate": list(nudged[1]), "vehicle": list(CAR[1])}
    assert result.duplicates[0]["conflict"]  # the car is missing in the second copy


def test_identical_copies_are_one_sample_without_conflict(tmp_path):
    first = _batch(tmp_path / "first", {"x": (7, [PLATE])})
    second = _batch(tmp_path / "second", {"x": (7, [PLATE])})
    result = merge.merge_batches([first, second], progress=False)
    assert len(result.samples) == 1 and result.collisions == []
    assert result.duplicates[0]["conflict"] is False
    assert result.duplicates[0]["differences"] == []


def test_pixel_hash_finds_a_losslessly_reencoded_copy(tmp_path):
    first = _batch(tmp_path / "first", {"x": (5, [PLATE])})
    second = _batch(tmp_path / "second", {"y": (5, [PLATE])})
    _write_image(second / "JPEGImages" / "y.png", 5, compression=9)  # same pixels, other bytes
    assert sha256_file(first / "JPEGImages/x.png") != sha256_file(second / "JPEGImages/y.png")
    by_bytes = merge.merge_batches([first, second], progress=False)
    by_pixels = merge.merge_batches([first, second], hash_mode="pixels", progress=False)
    assert len(by_bytes.samples) == 2 and len(by_pixels.samples) == 1
    assert by_pixels.duplicates[0]["conflict"] is False
    # The task index knows the first copy's file (by its bytes' SHA-256): the kept copy gets its source.
    index = {
        "images": [
            {
                "sha256": sha256_file(first / "JPEGImages/x.png"),
                "source_id": "cam1",
                "vantage": "parking",
            }
        ]
    }
    (sample,) = merge.merge_batches(
        [first, second], hash_mode="pixels", index=index, progress=False
    ).samples
    assert (sample.original_name, sample.group, sample.vantage) == ("y", "cam1", "parking")


# ---------------------------------------------------------------- labels and bad input


def test_aliases_unknown_labels_are_listed_never_silently_dropped(tmp_path):
    bike = ("bicycle", (1.0, 1.0, 20.0, 20.0))
    folder = _batch(tmp_path / "batch", {"a": (1, [PLATE, CAR, ("Plate", (30, 30, 50, 40)), bike])})
    result = merge.merge_batches([folder], progress=False)
    labels = Counter(item["label"] for item in result.samples[0].objects)
    assert labels == {"license_plate": 2, "vehicle": 1}
    assert result.unknown_labels == {"bicycle": 1}
    assert result.unknown_objects == [
        {"file": str(folder / "Annotations" / "a.xml"), "label": "bicycle"}
    ]
    assert any("a.xml: unknown label 'bicycle'" in line for line in result.problems)

    kept = merge.merge_batches([folder], unknown_labels="keep", progress=False)
    assert kept.label_map == ["vehicle", "license_plate", "bicycle"]
    assert Counter(item["label"] for item in kept.samples[0].objects)["bicycle"] == 1

    aliases = tmp_path / "aliases.yaml"
    aliases.write_text("vehicle: [bicycle]\nmotorcycle: [motorbike]\n")
    mapped = merge.merge_batches([folder], aliases=aliases, progress=False)
    assert mapped.unknown_labels == {}
    assert mapped.label_map == ["vehicle", "license_plate", "motorcycle"]
    assert Counter(item["label"] for item in mapped.samples[0].objects)["vehicle"] == 2


def test_alias_file_can_move_a_spelling_to_a_class_of_its_own(tmp_path):
    folder = _batch(tmp_path / "batch", {"a": (1, [("truck", (1, 1, 30, 30)), CAR])})
    aliases = tmp_path / "aliases.yaml"
    aliases.write_text("truck: [lorry]\n")
    result = merge.merge_batches([folder], aliases=aliases, progress=False)
    assert sorted(item["label"] for item in result.samples[0].objects) == ["truck", "vehicle"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("vehicle: [car\n", "not valid YAML at line"),
        ("- car\n- truck\n", "expected a mapping"),
        ("vehicle: {car: 1}\n", "must be a list of strings"),
        ("vehicle: [plate]\nlicense_plate: [plate]\n", "maps to both"),
    ],
)
def test_bad_alias_files_name_the_file(tmp_path, text, message):
    path = tmp_path / "aliases.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as caught:
        merge.merge_batches([], aliases=path, progress=False)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_duplicate_boxes_are_listed_and_deduplicated(tmp_path):
    twice = ("license_plate", (10.3, 20.5, 30.75, 28.0))  # IoU > 0.95 with PLATE
    near = ("license_plate", (12.0, 20.5, 32.0, 28.0))  # IoU ~0.8: a second object
    folder = _batch(tmp_path / "batch", {"a": (1, [PLATE, twice, near])})
    result = merge.merge_batches([folder], progress=False)
    assert len(result.samples[0].objects) == 2
    (listed,) = result.duplicate_objects
    assert listed["bbox"] == list(twice[1]) and listed["iou"] > 0.95
    assert any("a.xml: duplicate license_plate box" in line for line in result.problems)


def test_missing_image_negative_and_unreadable_image_the_rest_goes_on(tmp_path):
    folder = _batch(tmp_path / "batch", {"good": (1, [PLATE]), "negative": (2, None)})
    (folder / "Annotations" / "ghost.xml").write_text(_xml("ghost.png", [PLATE]))
    (folder / "JPEGImages" / "broken.png").write_bytes(b"not an image at all")
    (folder / "Annotations" / "broken.xml").write_text(_xml("broken.png", [PLATE]))
    before = _tree_digest(folder)
    result = merge.merge_batches([folder, tmp_path / "nowhere.zip"], progress=False)
    assert sorted(sample.name for sample in result.samples) == ["good", "negative"]
    assert next(sample for sample in result.samples if sample.name == "negative").objects == []
    lines = "\n".join(result.problems)
    assert (
        f"{folder / 'Annotations' / 'ghost.xml'}: its image (ghost.png) is missing; skipped"
        in lines
    )
    assert f"{folder / 'JPEGImages' / 'broken.png'}: unreadable image" in lines
    assert f"{tmp_path / 'nowhere.zip'}: not found; skipped" in lines
    assert all("\n" not in line for line in result.problems)
    assert _tree_digest(folder) == before


def test_nothing_to_merge_is_a_clear_error(tmp_path):
    empty = tmp_path / "empty"
    (empty / "Annotations").mkdir(parents=True)
    with pytest.raises(ValueError, match="nothing to merge"):
        merge.merge([empty], tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_find_batches_expands_a_folder_of_exports(tmp_path):
    exports = tmp_path / "exports"
    _batch(exports / "task_002_voc", {"a": (1, [PLATE])})
    _batch(exports / "task_001_voc", {"b": (2, [PLATE])})
    (exports / "exports.json").write_text("{}")
    batches, problems = merge.find_batches([exports, tmp_path / "missing"])
    assert [path.name for path in batches] == ["task_001_voc", "task_002_voc"]
    assert problems == [f"{tmp_path / 'missing'}: not found; skipped"]


def _problem_lines(text):
    prefix = "platelab: problem: "
    return [line[len(prefix) :] for line in text.splitlines() if line.startswith(prefix)]


def _one_line_each(lines, expected, source):
    """Each expected item is named by exactly one line, holding the given words; returns the rest."""
    rest = list(lines)
    for item, words in expected.items():
        named = [
            line for line in rest if f"{source}: {item} " in line or f"{source}/{item}:" in line
        ]
        assert len(named) == 1, (item, named)
        assert all(word in named[0] for word in words), (item, named[0])
        rest.remove(named[0])
    return rest


def test_hostile_archive_keeps_its_good_items_and_names_each_bad_one_once(tmp_path, monkeypatch):
    from hostile_archive import build

    from platelab import cli

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # extraction lands under tmp_path
    outside = tmp_path / "outside"
    outside.mkdir()
    archive = tmp_path / "in" / "task_7_voc.zip"
    archive.parent.mkdir()
    expected = build(archive, outside)
    before = archive.read_bytes()
    work = tmp_path / "work" / "deep"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    printed = io.StringIO()
    with contextlib.redirect_stderr(printed):
        status = cli.main(["merge", str(archive), "--out", "dataset", "--no-tfrecords", "--quiet"])
    assert status == 0, printed.getvalue()
    document = merge.load_dataset(work / "dataset")
    samples = {sample["name"]: sample for sample in document["samples"]}
    assert sorted(samples) == expected["kept"]
    assert {name: len(sample["objects"]) for name, sample in samples.items()} == expected["objects"]
    assert (
        sorted(path.stem for path in (work / "dataset" / "JPEGImages").iterdir())
        == (expected["kept"])
    )
    lines = _problem_lines(printed.getvalue())
    assert all("\n" not in line for line in lines)
    rest = _one_line_each(lines, {**expected["skipped"], **expected["fixed"]}, archive)
    assert rest == [
        f"{archive}/{expected['unknown_label']}: unknown label 'tree' (not in the label map or "
        "aliases); box dropped"
    ]
    assert archive.read_bytes() == before  # the input is unchanged
    for escape in expected["escapes"]:
        assert not escape.exists()
    assert not list(tmp_path.rglob("escape_rel.txt")) and not list(tmp_path.rglob("*escape*"))
    assert not list(scratch.iterdir())  # the extraction folder is gone
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "in",
        "outside",
        "scratch",
        "work",
    ]
    assert sorted(path.name for path in outside.iterdir()) == ["secret.txt"]


def test_links_pointing_outside_a_batch_folder_are_skipped(tmp_path, capsys):
    outside = tmp_path / "outside"
    _write_image(outside / "stolen.png", 50)
    (outside / "stolen.xml").write_text(_xml("stolen.png", [PLATE]))
    _write_image(outside / "pictures" / "far.png", 51)
    exports = tmp_path / "exports"
    folder = _batch(exports / "task_1", {"good": (1, [PLATE]), "negative": (2, None)})
    (folder / "JPEGImages" / "stolen.png").symlink_to(outside / "stolen.png")
    (folder / "Annotations" / "stolen.xml").symlink_to(outside / "stolen.xml")
    (folder / "JPEGImages" / "sub").symlink_to(outside / "pictures", target_is_directory=True)
    (folder / "Annotations" / "ghost.xml").write_text(_xml("../../outside/stolen.png", [PLATE]))
    (folder / "JPEGImages" / "alias.png").symlink_to(folder / "JPEGImages" / "good.png")
    (folder / "Annotations" / "alias.xml").write_text(_xml("alias.png", [CAR]))
    (exports / "task_2").symlink_to(outside, target_is_directory=True)
    before = _tree_digest(exports), _tree_digest(outside)
    out = tmp_path / "dataset"
    status = merge.run_merge_command(
        _parse([str(exports), "--out", str(out), "--no-tfrecords", "--quiet"])
    )
    assert status == 0
    document = merge.load_dataset(out)
    # A link inside the batch is followed: 'alias' is the same image as 'good' (one sample).
    assert sorted(sample["name"] for sample in document["samples"]) == ["good", "negative"]
    assert document["counts"]["duplicate_images"] == 1
    lines = _problem_lines(capsys.readouterr().err)
    assert lines == [
        f"{exports / 'task_2'}: a link to {outside}, outside {exports}; skipped",
        f"{folder / 'JPEGImages' / 'stolen.png'}: a link to {outside / 'stolen.png'}, outside "
        f"{folder}; skipped",
        f"{folder / 'JPEGImages' / 'sub'}: a link to {outside / 'pictures'}, outside {folder}; "
        "skipped",
        f"{folder / 'Annotations' / 'stolen.xml'}: a link to {outside / 'stolen.xml'}, outside "
        f"{folder}; skipped",
        f"{folder / 'Annotations' / 'ghost.xml'}: its image (../../outside/stolen.png) is "
        "missing; skipped",
    ]
    assert (_tree_digest(exports), _tree_digest(outside)) == before


# ---------------------------------------------------------------- review and metadata


def test_review_excludes_tagged_images_and_gives_metadata(tmp_path):
    folder = _batch(tmp_path / "batch", {"a": (1, [PLATE]), "b": (2, [PLATE]), "c": (3, [CAR])})
    digest = {name: sha256_file(folder / "JPEGImages" / f"{name}.png") for name in "abc"}
    review = {
        digest["a"]: {"tags": ["exclude"]},
        digest["b"]: {"tags": ["fix"], "source_id": "cam7", "vantage": "parking"},
        digest["c"]: {"tags": ["ok"]},
    }
    result = merge.merge_batches([folder], review=review, progress=False)
    assert sorted(sample.name for sample in result.samples) == ["b", "c"]
    assert result.excluded == [
        {
            "batch": "batch",
            "name": "a",
            "sha256": digest["a"],
            "reason": "tagged 'exclude' in the review",
        }
    ]
    sample_b = next(sample for sample in result.samples if sample.name == "b")
    assert (sample_b.group, sample_b.vantage) == ("cam7", "parking")
    assert any("still tagged 'fix'" in line for line in result.warnings)


@pytest.mark.fiftyone
def test_review_from_a_fiftyone_dataset(tmp_path):
    from platelab.fiftyone_setup import import_fiftyone

    fo = import_fiftyone()
    folder = _batch(tmp_path / "batch", {"a": (1, [PLATE]), "b": (2, [PLATE])})
    dataset = fo.Dataset()
    try:
        excluded = fo.Sample(filepath=str(folder / "JPEGImages" / "a.png"), tags=["exclude"])
        excluded["vantage"] = "dashcam"
        kept = fo.Sample(filepath=str(folder / "JPEGImages" / "b.png"), tags=["ok"])
        kept["vantage"] = "overpass"
        dataset.add_samples([excluded, kept])
        result = merge.merge_batches([folder], review=dataset.name, progress=False)
    finally:
        dataset.delete()
    assert [sample.name for sample in result.samples] == ["b"]
    assert result.samples[0].vantage == "overpass"
    assert [item["name"] for item in result.excluded] == ["a"]
    with pytest.raises(ValueError, match="does not exist"):
        merge.load_review("platelab-no-such-review-dataset")


@pytest.mark.fiftyone
def test_merged_dataset_in_fiftyone_and_splits_back_into_the_review(tmp_path):
    from platelab.fiftyone_setup import import_fiftyone

    fo = import_fiftyone()
    folders, index = _video_batches(tmp_path / "in", sources=10, frames=2)
    out = tmp_path / "dataset"
    merge.merge(folders, out, index=index, tfrecords=False, progress=False)
    document = merge.load_dataset(out)
    dataset = merge.to_fiftyone(out, name=f"platelab-test-merged-{tmp_path.name}")
    try:
        expected = Counter(sample["split"] for sample in document["samples"])
        assert len(dataset) == 20 and dataset.count_sample_tags() == expected
        sample = dataset.match(fo.ViewField("original_name") == "video004_t00000000").first()
        assert sorted(item.label for item in sample.ground_truth.detections) == [
            "license_plate",
            "vehicle",
        ]
        assert sample.group == "video004" and sample.vantage == "parking"
        assert {"train", "val", "test"} <= set(dataset.list_saved_views())
    finally:
        dataset.delete()
    review = fo.Dataset()
    try:
        chosen = document["samples"][:3]
        review.add_samples(
            [
                fo.Sample(filepath=str(out / "JPEGImages" / item["file"]), sha256=item["sha256"])
                for item in chosen
            ]
            + [fo.Sample(filepath=str(tmp_path / "other.png"), sha256="0" * 64)]
        )
        assert merge.record_splits(review, document) == 3
        assert review.values("split") == [item["split"] for item in chosen] + [None]
    finally:
        review.delete()


def test_task_index_gives_groups_and_strata(tmp_path):
    folders, index = _video_batches(tmp_path, sources=8, frames=3)
    index_path = tmp_path / "index.json"
    index_path.write_text(json.dumps({"format": "platelab.cvat.tasks/1", **index}))
    result = merge.merge_batches(folders, index=index_path, progress=False)
    sample = next(sample for sample in result.samples if sample.name == "video005_t00000500")
    assert (sample.group, sample.vantage, sample.lighting) == ("video005", "dashcam", "day")
    assert sample.time == 0.5
    assert len(result.groups) == 8
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    for path, message in ((broken, "not valid JSON"), (tmp_path / "none.json", "cannot read")):
        with pytest.raises(ValueError, match=message) as caught:
            merge.merge_batches(folders, index=path, progress=False)
        assert str(path) in str(caught.value)


def test_groups_without_metadata_come_from_names(tmp_path):
    folder = _batch(
        tmp_path / "task_9",
        {
            "street_t00001000": (1, [PLATE]),
            "street_t00002000": (2, [PLATE]),
            "frame_000001": (3, [PLATE]),
            "frame_000002": (4, [PLATE]),
            "holiday": (5, [PLATE]),
        },
    )
    result = merge.merge_batches([folder], progress=False)
    groups = {sample.name: sample.group for sample in result.samples}
    assert groups["street_t00001000"] == groups["street_t00002000"] == "street"
    assert groups["frame_000001"] == groups["frame_000002"] == "task:task_9"
    assert groups["holiday"].startswith("photo:")


# ---------------------------------------------------------------- split


def _groups(count, seed=0, vantages=6):
    rng = np.random.default_rng(seed)
    return {
        f"g{number:04d}": {"images": int(rng.integers(1, 40)), "stratum": f"v{number % vantages}"}
        for number in range(count)
    }


def test_split_is_reproducible_and_matches_the_fractions_per_vantage():
    groups = _groups(300)
    first, warnings = merge.split_groups(groups, (0.8, 0.1, 0.1), seed=3)
    second, _ = merge.split_groups(groups, "0.8,0.1,0.1", seed=3)
    other, _ = merge.split_groups(groups, (0.8, 0.1, 0.1), seed=4)
    assert first == second and first != other and warnings == []
    assert set(first) == set(groups)
    total = sum(info["images"] for info in groups.values())
    images = Counter()
    per_vantage = defaultdict(Counter)
    for group, split in first.items():
        images[split] += groups[group]["images"]
        per_vantage[groups[group]["stratum"]][split] += groups[group]["images"]
    for split, fraction in zip(merge.SPLITS, (0.8, 0.1, 0.1), strict=True):
        assert abs(images[split] / total - fraction) < 0.01
        for counts in per_vantage.values():
            assert abs(counts[split] / sum(counts.values()) - fraction) < 0.08


def test_no_group_straddles_splits_through_the_merge(tmp_path):
    folders, index = _video_batches(tmp_path, sources=40, frames=4)
    first = merge.merge_batches(folders, index=index, seed=1, progress=False)
    second = merge.merge_batches(folders, index=index, seed=1, progress=False)
    splits_of = defaultdict(set)
    for sample in first.samples:
        splits_of[sample.group].add(sample.split)
    assert len(splits_of) == 40 and all(len(splits) == 1 for splits in splits_of.values())
    assert [(sample.name, sample.split) for sample in first.samples] == [
        (sample.name, sample.split) for sample in second.samples
    ]
    counts = Counter(sample.split for sample in first.samples)
    assert counts == {"train": 128, "val": 16, "test": 16}


def test_few_groups_still_fill_every_split():
    groups = {f"video{number}": {"images": 50, "stratum": f"v{number}"} for number in range(6)}
    assignment, warnings = merge.split_groups(groups, (0.8, 0.1, 0.1), seed=0)
    assert Counter(assignment.values()) == {"train": 4, "val": 1, "test": 1}
    assert warnings == []
    # Three videos of unequal length: the longest goes to train, whatever the order met.
    groups = {"a": {"images": 9, "stratum": "x"}, "b": {"images": 10, "stratum": "y"}}
    groups["c"] = {"images": 8, "stratum": "z"}
    for seed in range(5):
        assignment, _ = merge.split_groups(groups, (0.6, 0.2, 0.2), seed=seed)
        assert assignment["b"] == "train" and sorted(assignment.values()) == [
            "test",
            "train",
            "val",
        ]


def test_fewer_groups_than_splits_warns_clearly(tmp_path):
    groups = {"a": {"images": 10, "stratum": "x"}, "b": {"images": 10, "stratum": "x"}}
    assignment, warnings = merge.split_groups(groups, (0.8, 0.1, 0.1))
    assert sorted(assignment.values()) == ["train", "val"]
    (warning,) = warnings
    assert "test" in warning and "got no images" in warning and "only 2 group(s)" in warning
    assignment, warnings = merge.split_groups(groups, (0.5, 0.5, 0.0))
    assert sorted(assignment.values()) == ["train", "val"] and warnings == []


@pytest.mark.parametrize("text", ["0.8,0.1", "0.8,0.1,0.2", "a,b,c", "0.9,-0.1,0.2", "nan,0.5,0.5"])
def test_bad_fractions_are_refused(text):
    with pytest.raises(ValueError, match="invalid split"):
        merge.parse_fractions(text)


# ---------------------------------------------------------------- output


def test_output_layout_voc_tfrecords_and_summary(tmp_path):
    folders, index = _video_batches(tmp_path / "in", sources=12, frames=3)
    negative = _batch(tmp_path / "in" / "photos", {"frame_000000": (99, None)})
    sources = [*folders, negative]
    before = [_tree_digest(folder) for folder in sources]
    out = tmp_path / "dataset"
    result = merge.merge(sources, out, index=index, seed=2, progress=False)
    document = merge.load_dataset(out)
    assert [_tree_digest(folder) for folder in sources] == before  # inputs untouched
    assert sorted(path.name for path in out.iterdir()) == [
        "Annotations",
        "ImageSets",
        "JPEGImages",
        "dataset.json",
        "label_map.pbtxt",
        "labelmap.txt",
        "tfrecords",
    ]
    assert (out / "labelmap.txt").read_text().splitlines() == [
        "# label:color_rgb:parts:actions",
        "background:0,0,0::",
        "vehicle:40,160,255::",
        "license_plate:255,220,40::",
    ]
    assert document["counts"]["images"] == 37 and document["counts"]["negatives"] == 1
    # The VOC folder reads back with the same boxes, float coordinates kept.
    batch = annotations.load_batch(out)
    assert batch.problems == [] and len(batch.records) == 37
    record = next(item for item in batch.records if item.name == "video003_t00000500")
    assert record.objects == [
        {
            "label": "license_plate",
            "bbox": [10.25, 20.5, 30.75, 28.0],
            "difficult": False,
            "truncated": False,
            "occluded": False,
            "attributes": {"text": "ABC1234"},
        }
    ]
    for split in merge.SPLITS:
        listed = (out / "ImageSets" / "Main" / f"{split}.txt").read_text().split()
        expected = [sample["name"] for sample in document["samples"] if sample["split"] == split]
        assert listed == expected and document["splits"][split]["images"] == len(expected)
        examples = tfrecords.read_examples(
            out / "tfrecords" / f"{split}.tfrecord", with_images=True
        )
        assert [example["image/source_id"] for example in examples] == expected
    examples = tfrecords.read_examples(out / "tfrecords" / "train.tfrecord", with_images=True)
    by_name = {example["image/source_id"]: example for example in examples}
    train_sample = next(
        sample for sample in result.samples if sample.split == "train" and sample.objects
    )
    example = by_name[train_sample.name]
    assert example["image/encoded"] == train_sample.image_path.read_bytes()
    assert example["image/format"] == "png"
    assert (example["image/width"], example["image/height"]) == (64, 48)
    assert example["image/vantage"] == train_sample.vantage
    assert example["image/group"] == train_sample.group
    assert example["image/object/class/text"] == [item["label"] for item in train_sample.objects]
    assert example["image/object/class/label"] == [
        result.label_map.index(item["label"]) + 1 for item in train_sample.objects
    ]
    expected_xmin = [item["bbox"][0] / 64 for item in train_sample.objects]
    assert np.allclose(example["image/object/bbox/xmin"], expected_xmin)
    assert document["fingerprints"]["content_sha256"]
    assert {item["path"] for item in document["fingerprints"]["outputs"]} >= {
        "tfrecords/train.tfrecord"
    }


def test_interrupted_write_keeps_the_previous_dataset(tmp_path, monkeypatch):
    folder = _batch(tmp_path / "batch", {f"img{number}": (number, [PLATE]) for number in range(8)})
    out = tmp_path / "out" / "dataset"
    merge.merge([folder], out, progress=False)
    previous = _tree_digest(out)
    real_encode = merge.encode_example
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise OSError("disk full (simulated)")
        return real_encode(*args, **kwargs)

    monkeypatch.setattr(merge, "encode_example", failing)
    with pytest.raises(OSError, match="simulated"):
        merge.merge([folder], out, seed=5, progress=False)
    assert _tree_digest(out) == previous
    assert sorted(path.name for path in out.parent.iterdir()) == ["dataset"]


def test_output_inside_an_input_is_refused(tmp_path):
    folder = _batch(tmp_path / "batch", {"a": (1, [PLATE])})
    before = _tree_digest(folder)
    with pytest.raises(ValueError, match="must lie outside the input"):
        merge.merge([folder], folder / "merged", progress=False)
    with pytest.raises(ValueError, match="must lie outside the input"):
        merge.merge([folder], tmp_path, progress=False)
    assert _tree_digest(folder) == before


# ---------------------------------------------------------------- command line


def _parse(argv):
    return merge.add_merge_arguments(argparse.ArgumentParser()).parse_args(argv)


def test_run_merge_command(tmp_path, capsys):
    first = _batch(
        tmp_path / "task_1", {"frame_000000": (1, [PLATE]), "frame_000001": (5, [PLATE])}
    )
    second = _batch(tmp_path / "task_2", {"frame_000000": (2, [PLATE]), "copy": (5, [CAR])})
    out = tmp_path / "out"
    args = _parse([str(first), str(second), "--out", str(out), "--split", "1,0,0", "--quiet"])
    assert args.handler is merge.run_merge_command
    assert merge.run_merge_command(args) == 0
    printed = capsys.readouterr().out
    assert f"merged 3 images from 2 batch(es) into {out}: train 3, val 0, test 0" in printed
    assert "1 duplicate(s) (1 conflicting), 2 renamed" in printed
    assert (out / "tfrecords" / "train.tfrecord").is_file()
    with pytest.raises(ValueError, match="invalid split '0.8,0.3'"):
        merge.run_merge_command(_parse([str(first), "--out", str(out), "--split", "0.8,0.3"]))


def test_stand_alone_entry_prints_one_line_errors(tmp_path):
    folder = _batch(tmp_path / "batch", {"a": (1, [PLATE])})
    out = tmp_path / "out"
    command = [sys.executable, "-m", "platelab.merge", str(folder), "--out", str(out)]
    done = subprocess.run(
        [*command, "--no-tfrecords", "--quiet", "--seed", "3"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "merged 1 images from 1 batch(es)" in done.stdout
    assert not (out / "tfrecords" / "train.tfrecord").exists()
    failed = subprocess.run([*command, "--split", "1,2"], capture_output=True, text=True)
    assert failed.returncode == 2
    assert failed.stderr.strip().startswith("platelab: error: invalid split '1,2'")
    assert len(failed.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------- the real exports


@pytest.mark.shared
def test_real_cvat_exports_merge(shared_data, tmp_path):
    zips = sorted((shared_data / "openalpr-br").glob("*.zip"))
    result = merge.merge_batches(zips, work_dir=tmp_path / "work", progress=False)
    assert len(result.samples) == 114 and result.unknown_labels == {}
    assert {item["label"] for sample in result.samples for item in sample.objects} == {
        "license_plate"
    }
    lines = "\n".join(result.problems)
    assert f"{zips[1]}/Annotations/PAG5219.xml: <size> says 50719x212" in lines
    assert f"{zips[1]}/Annotations/PJT2905.xml: license_plate box [-1.0" in lines
    assert len(result.groups) == 114  # one group per photo
    counts = Counter(sample.split for sample in result.samples)
    assert abs(counts["train"] - 91) <= 2 and counts["val"] >= 10 and counts["test"] >= 10


def test_extracted_zips_stay_until_the_process_exits_and_then_go(tmp_path):
    """Without a work_dir, zips are extracted to a scratch folder the samples point into,
    which is removed when the process exits (none left behind in the temporary folder)."""
    import shutil

    batch = _batch(tmp_path / "batch", {"a": (1, [PLATE])})
    archive = shutil.make_archive(str(tmp_path / "batch"), "zip", batch)
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from platelab import merge\n"
        "result = merge.merge_batches([sys.argv[1]], progress=False)\n"
        "path = Path(result.samples[0].image_path)\n"
        "print(path.is_file(), any(p.name.startswith('platelab-merge-') for p in path.parents))\n"
    )
    printed = words_of_a_process_leaving_no_temp(script, archive, tmpdir=tmp_path / "scratch")
    assert printed == ["True", "True"]
