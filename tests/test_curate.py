"""Stage 02 curation (platelab.curate): duplicates, empty frames, outputs and reports."""

import dataclasses
import hashlib
import itertools
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from platelab import curate, signatures

SIZE = (320, 180)


def _street(seed=0, vehicle_x=None, vehicle_y=110, size=SIZE):
    """A clean synthetic street: sky, buildings, road, and optionally a 'vehicle' box."""
    width, height = size
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.uint8)
    image[: height // 3] = (200, 160, 120)
    image[height // 3 :] = (90, 90, 95)
    for _ in range(6):
        x0 = int(rng.integers(0, width - 40))
        y0 = int(rng.integers(5, height // 3))
        colour = tuple(int(value) for value in rng.integers(40, 220, 3))
        cv2.rectangle(
            image, (x0, y0), (x0 + int(rng.integers(20, 60)), height // 3 + 10), colour, -1
        )
    cv2.line(image, (0, height - 30), (width, height - 60), (230, 230, 230), 3)
    if vehicle_x is not None:
        cv2.rectangle(
            image, (vehicle_x, vehicle_y), (vehicle_x + 40, vehicle_y + 24), (30, 40, 200), -1
        )
        cv2.rectangle(
            image,
            (vehicle_x + 8, vehicle_y + 4),
            (vehicle_x + 32, vehicle_y + 10),
            (20, 20, 20),
            -1,
        )
    return image


def _camera(image, seed, noise=2.0, gain=0.0, quality=None, blur=0.0):
    """Sensor noise, exposure flicker, optional blur and JPEG, as a camera would add."""
    rng = np.random.default_rng(seed)
    result = image.astype(np.float32) * (1.0 + gain)
    if blur:
        result = cv2.GaussianBlur(result, (0, 0), blur)
    result += rng.normal(0.0, noise, result.shape)
    result = np.clip(np.round(result), 0, 255).astype(np.uint8)
    if quality:
        result = cv2.imdecode(
            cv2.imencode(".jpg", result, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_COLOR
        )
    return result


def _write(folder, name, image):
    path = Path(folder) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return path


def _tree_state(folder):
    return {
        item.relative_to(folder).as_posix(): (
            hashlib.sha256(item.read_bytes()).hexdigest(),
            item.stat().st_mtime_ns,
        )
        for item in sorted(Path(folder).rglob("*"))
        if item.is_file()
    }


def _entries(result):
    return {Path(entry["path"]).name: entry for entry in [*result["kept"], *result["dropped"]]}


def _frames_dir(folder, images, source_id="cam1", fps=5.0):
    """A stage-01 style frames folder: PNGs, manifest.json and signatures.npy."""
    folder = Path(folder)
    frames, rows = [], []
    for index, image in enumerate(images):
        relative = f"frames/{source_id}/{index:05d}.png"
        _write(folder, relative, image)
        signature = signatures.compute_signature(image)
        rows.append(signature)
        frames.append(
            {
                "image": relative,
                "source_id": source_id,
                "time": round(index / fps, 3),
                "frame_index": index,
                "width": image.shape[1],
                "height": image.shape[0],
                "sharpness": signatures.sharpness(image),
                "dhash": f"{signatures.difference_hash(signature):016x}",
            }
        )
    manifest = {"sources": [{"source_id": source_id}], "frames": frames}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    np.save(folder / "signatures.npy", np.stack(rows))
    return folder


# -- distance and grouping ------------------------------------------------------------------------


def test_distance_ignores_noise_flicker_and_compression_but_not_a_moved_vehicle():
    scene = _street(1, vehicle_x=100)
    first = signatures.compute_signature(_camera(scene, 1, noise=3.0))
    flickered = signatures.compute_signature(_camera(scene, 2, noise=3.0, gain=0.05, quality=35))
    moved = signatures.compute_signature(_camera(_street(1, vehicle_x=112), 3, noise=3.0))
    assert curate.signature_distance(first, flickered) <= curate.DEFAULT_THRESHOLD
    assert curate.signature_distance(first, moved) > curate.DEFAULT_THRESHOLD
    assert curate.signature_distance(first, moved) == curate.signature_distance(moved, first)
    assert curate.signature_distance(first, first) == 0


def test_find_duplicates_groups_near_duplicates_and_keeps_moved_apart():
    scene = _street(2, vehicle_x=60)
    rows = [signatures.compute_signature(_camera(scene, seed, quality=50)) for seed in range(5)]
    rows += [
        signatures.compute_signature(_camera(_street(2, vehicle_x=x), 9, quality=50))
        for x in (80, 100, 120)
    ]
    found = curate.find_duplicates(np.stack(rows))
    assert found.groups == [[0, 1, 2, 3, 4]]
    assert len(set(found.labels[5:].tolist())) == 3
    assert found.comparisons < 8 * 7 // 2 + 10


def test_black_frames_collapse_without_quadratic_comparisons():
    rng = np.random.default_rng(0)
    count = 3000
    identical = np.zeros((count, curate.CELLS), np.uint8)
    found = curate.find_duplicates(identical)
    assert found.labels.max() == 0 and found.comparisons == 0
    noisy = rng.integers(0, 3, (count, curate.CELLS)).astype(np.uint8)
    found = curate.find_duplicates(noisy, sources=["cam"] * count, times=range(count))
    assert found.labels.max() == 0
    # All pairs would be 4.5 million comparisons; the leaders and windows need a few per frame.
    assert found.comparisons <= 10 * count


def test_threshold_curve_is_monotonic(tmp_path):
    rng = np.random.default_rng(3)
    rows = []
    for seed in range(12):
        scene = _street(seed, vehicle_x=int(rng.integers(10, 250)))
        for copy in range(int(rng.integers(1, 4))):
            rows.append(
                signatures.compute_signature(_camera(scene, 100 * seed + copy, gain=0.02 * copy))
            )
    curve = curate.threshold_curve(np.stack(rows), thresholds=[0, 1, 2, 3, 5, 8, 20, 50, 200, 2304])
    kept = curve["kept"].tolist()
    assert kept == sorted(kept, reverse=True)
    assert kept[0] <= len(rows) and kept[-1] == 1
    assert (curve["kept"] + curve["dropped"] == len(rows)).all()


# -- curate() on folders --------------------------------------------------------------------------


@pytest.fixture
def photos(tmp_path):
    """A folder of photos: exact and near duplicates, a moved vehicle, odd formats, a broken file."""
    folder = tmp_path / "photos"
    scene = _street(5, vehicle_x=90)
    _write(folder, "a_sharp.png", _camera(scene, 1))
    (folder / "b_copy.png").write_bytes((folder / "a_sharp.png").read_bytes())
    _write(folder, "c_compressed.jpg", _camera(scene, 2, quality=20))
    _write(folder, "d_flicker.png", _camera(scene, 3, gain=-0.04, quality=60))
    _write(folder, "e_moved.png", _camera(_street(5, vehicle_x=130), 4))
    grey = cv2.cvtColor(_camera(_street(6, vehicle_x=40), 5), cv2.COLOR_BGR2GRAY)
    _write(folder, "sub/f_grey.jpg", grey)
    alpha = cv2.cvtColor(_camera(_street(7, vehicle_x=200), 6), cv2.COLOR_BGR2BGRA)
    alpha[:, :, 3] = 128
    _write(folder, "sub/g_alpha.png", alpha)
    (folder / "h_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_curate_photos_end_to_end(photos, tmp_path):
    before = _tree_state(photos)
    out_dir = tmp_path / "curated"
    result = curate.curate(photos, out_dir, progress=False)
    entries = _entries(result)
    assert sorted(entries) == sorted(
        ["a_sharp.png", "b_copy.png", "c_compressed.jpg", "d_flicker.png", "e_moved.png"]
        + ["f_grey.jpg", "g_alpha.png", "h_broken.png"]
    )
    assert entries["b_copy.png"]["reason"] == "exact_duplicate"
    assert Path(entries["b_copy.png"]["representative"]).name == "a_sharp.png"
    assert entries["c_compressed.jpg"]["reason"] == "near_duplicate"
    assert entries["d_flicker.png"]["reason"] == "near_duplicate"
    # The sharpest of the group is kept; every member points to it.
    group = entries["a_sharp.png"]["group"]
    assert entries["a_sharp.png"].get("reason") is None
    assert entries["a_sharp.png"]["group_size"] == 4
    assert all(
        entries[name]["group"] == group
        for name in ("b_copy.png", "c_compressed.jpg", "d_flicker.png")
    )
    assert entries["e_moved.png"].get("reason") is None
    assert entries["e_moved.png"]["group"] != group
    assert entries["f_grey.jpg"].get("reason") is None
    assert entries["g_alpha.png"].get("reason") is None
    assert entries["f_grey.jpg"]["source_id"] == "photos/sub"
    broken = entries["h_broken.png"]
    assert broken["reason"] == "unreadable" and "decode" in broken["message"]
    assert any("h_broken.png" in line for line in result["problems"])
    assert result["counts"] == {
        "input": 8,
        "kept": 4,
        "exact_duplicate": 1,
        "near_duplicate": 2,
        "empty": 0,
        "unreadable": 1,
    }
    document = json.loads((out_dir / "curated.json").read_text())
    paths = [entry["path"] for entry in document["kept"] + document["dropped"]]
    assert len(paths) == len(set(paths)) == 8
    kept_lines = (out_dir / "kept.txt").read_text().splitlines()
    assert kept_lines == [entry["path"] for entry in document["kept"]]
    assert all(Path(line).is_file() for line in kept_lines)
    assert _tree_state(photos) == before
    with pytest.raises(ValueError, match="inside the input folder"):
        curate.curate(photos, photos / "curated", progress=False)


def test_rerun_is_idempotent_and_reuses_the_cache(photos, tmp_path, monkeypatch):
    out_dir = tmp_path / "curated"
    first = curate.curate(photos, out_dir, progress=False)
    stamp = (out_dir / "curated.json").stat().st_mtime_ns

    def no_work(*args, **kwargs):
        raise AssertionError("unchanged inputs must not be read again")

    monkeypatch.setattr(curate, "_scan_file", no_work)
    monkeypatch.setattr(curate, "find_duplicates", no_work)
    again = curate.curate(photos, out_dir, progress=False)
    assert again == first
    assert (out_dir / "curated.json").stat().st_mtime_ns == stamp
    monkeypatch.undo()
    # A new threshold regroups, but reads no image again (hashes and signatures are cached).
    monkeypatch.setattr(curate, "_scan_file", no_work)
    strict = curate.curate(photos, out_dir, threshold=0, progress=False)
    assert strict["parameters"]["threshold"] == 0
    assert strict["fingerprint"] != first["fingerprint"]
    assert curate.load_result(out_dir)["fingerprint"] == strict["fingerprint"]


def test_frames_folder_uses_cached_signatures_and_drops_empty_frames(tmp_path, monkeypatch):
    background = _street(8)
    images = []
    for index in range(12):
        if index < 8:
            images.append(_camera(_street(8, vehicle_x=10 + 25 * index), index))
        else:
            images.append(_camera(background, index))
    images.append(images[-1])  # a frozen feed: a byte-identical PNG
    frames = _frames_dir(tmp_path / "frames", images)
    photos = tmp_path / "photos"
    _write(photos, "other.png", _camera(_street(9, vehicle_x=50), 99))

    decoded = []
    original_scan = curate._scan_file

    def spy(record):
        decoded.append(Path(record["path"]).name)
        return original_scan(record)

    monkeypatch.setattr(curate, "_scan_file", spy)
    result = curate.curate([frames, photos], tmp_path / "out1", progress=False)
    assert decoded == ["other.png"]  # frames with cached signatures are not decoded
    entries = _entries(result)
    assert result["inputs"][0]["kind"] == "frames" and result["inputs"][1]["kind"] == "images"
    assert entries["00000.png"]["image"] == "frames/cam1/00000.png"
    assert entries["00000.png"]["time"] == 0.0
    # The four empty frames are near duplicates of one another.
    assert [entries[f"{index:05d}.png"]["group"] for index in range(8, 12)].count(
        entries["00008.png"]["group"]
    ) == 4
    assert result["counts"]["near_duplicate"] == 3
    assert entries["00012.png"]["reason"] == "exact_duplicate"
    assert entries["00012.png"]["sha256"] == entries["00011.png"]["sha256"] is not None
    assert entries["00001.png"]["sha256"] is None  # unique size and signature: never read
    emptied = curate.curate([frames, photos], tmp_path / "out2", drop_empty=True, progress=False)
    reasons = {name: entry.get("reason") for name, entry in _entries(emptied).items()}
    assert [reasons[f"{index:05d}.png"] for index in range(8)] == [None] * 8
    assert sorted(reasons[f"{index:05d}.png"] for index in range(8, 13)) == [
        "empty",
        "exact_duplicate",
        "near_duplicate",
        "near_duplicate",
        "near_duplicate",
    ]
    assert reasons["other.png"] is None  # a lone photo has no background to judge it by

    def detector(image):
        return [] if image.mean() > 120 else [{"label": "vehicle", "box": [0, 0, 1, 1]}]

    detected = curate.curate(photos, tmp_path / "out3", detector=detector, progress=False)
    assert detected["parameters"]["detector"].endswith("detector")
    assert len(detected["kept"]) + detected["counts"]["empty"] == 1


# -- reports --------------------------------------------------------------------------------------


def test_report_helpers(photos, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    result = curate.curate(photos, tmp_path / "curated", progress=False)
    table = curate.counts_by_source(result)
    assert table.loc["all", "input"] == 8 and table.loc["all", "kept"] == 4
    assert table.loc["photos", "exact_duplicate"] == 1
    gallery = curate.duplicate_gallery(result, max_groups=3)
    axis = gallery.axes[0]
    assert "group" in axis.get_ylabel() and "px" in axis.get_xlabel()
    assert any("KEPT" in item.get_title() for item in gallery.axes)
    assert gallery.texts and "kept" in gallery.texts[-1].get_text()
    curve = curate.threshold_curve(result)
    assert curve["kept"].tolist() == sorted(curve["kept"].tolist(), reverse=True)
    default_row = curve[curve["threshold"] == curate.DEFAULT_THRESHOLD].iloc[0]
    assert default_row["kept"] == len(result["kept"]) == 4  # 7 readable - 1 exact - 2 near
    figure = curate.plot_threshold_curve(curve, chosen=curate.DEFAULT_THRESHOLD)
    assert "cells" in figure.axes[0].get_xlabel() and "count" in figure.axes[0].get_ylabel()
    assert figure.texts
    plt.close("all")


@pytest.mark.fiftyone
@pytest.mark.slow
def test_fiftyone_dataset_has_group_fields(photos, tmp_path):
    result = curate.curate(photos, tmp_path / "curated", progress=False)
    dataset = curate.build_fiftyone_dataset(result, name="platelab-test-curate")
    try:
        assert len(dataset) == 7  # the unreadable file is left out
        schema = dataset.get_field_schema()
        for field in (
            "dup_group",
            "group_size",
            "kept",
            "reason",
            "sharpness",
            "source_id",
            "time",
        ):
            assert field in schema
        assert len(dataset.match_tags("kept")) == 4
        assert dataset.count_values("kept") == {True: 4, False: 3}
        assert "curate_signatures" in dataset.list_brain_runs()
        groups = curate.fiftyone_duplicate_groups(dataset)
        assert len(groups) == 1  # one dynamic group: the four copies of the street
        exact = curate.fiftyone_exact_duplicates(dataset)
        assert sum(len(ids) for ids in exact.values()) == 1
        index = curate.fiftyone_near_duplicates(dataset)
        assert index.neighbors_map is not None
    finally:
        dataset.delete()


# -- quality on the synthetic videos --------------------------------------------------------------


def _synthetic_pairs(tmp_path, size=(480, 270), seed=11, anchors=6):
    """Renders labelled frames from platelab.synth; returns (image paths, labelled pairs, ambiguous).

    For each anchor frame of each video: the frame under three different
    effect draws (noise, flicker, compression: true duplicates), the next
    frame and the frame 0.3 s later (vehicles moved, unless nothing moves),
    and the frame with one vehicle left out. Every image is re-encoded as a
    JPEG of random quality (as a video codec would). A pair is a duplicate
    when the clean renders are identical and the smoothed effect renders
    differ nowhere by more than 20 grey levels; it is not one when at least
    two thumbnail cells' worth of pixels changed; pairs in between are
    ambiguous and left out.
    """
    synth = pytest.importorskip("platelab.synth")
    specs = synth.video_specs(6, 6.0, 10.0, size, seed)
    rng = np.random.default_rng(seed)
    renders = []
    for spec in specs:
        scene = synth.build_scene(spec)
        variants = [scene] + [
            dataclasses.replace(scene, spec=dataclasses.replace(spec, seed=spec.seed + 1000 * k))
            for k in (1, 2)
        ]
        for index in np.linspace(0, spec.frames - 5, anchors).astype(int).tolist():
            plan = [
                (index, 0, ()),
                (index, 1, ()),
                (index, 2, ()),
                (index + 1, 0, ()),
                (index + 3, 1, ()),
            ]
            _, objects, _ = synth.render_frame(scene, index, effects=False)
            vehicles = [item for item in objects if item["label"] == "vehicle"]
            if vehicles:
                plan.append((index, 2, (vehicles[int(rng.integers(len(vehicles)))]["id"],)))
            for frame_index, variant, exclude in plan:
                image, _, _ = synth.render_frame(
                    variants[variant], frame_index, exclude_ids=exclude
                )
                clean, _, _ = synth.render_frame(
                    scene, frame_index, exclude_ids=exclude, effects=False
                )
                quality = int(rng.integers(40, 90))
                image = cv2.imdecode(
                    cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1],
                    cv2.IMREAD_COLOR,
                )
                grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
                path = _write(
                    tmp_path / "synthetic",
                    f"{spec.source_id}/{frame_index:03d}_{variant}_{len(exclude)}_{len(renders):04d}.png",
                    image,
                )
                renders.append(
                    {
                        "path": str(path),
                        "video": spec.index,
                        "vantage": spec.vantage,
                        "clean": cv2.cvtColor(clean, cv2.COLOR_BGR2GRAY).astype(np.float32),
                        "smooth": cv2.GaussianBlur(grey, (0, 0), 3),
                    }
                )
    cell_area = size[0] * size[1] / curate.CELLS
    pairs, ambiguous = [], 0
    for first, second in itertools.combinations(range(len(renders)), 2):
        a, b = renders[first], renders[second]
        if a["video"] != b["video"]:
            continue
        changed = _changed_pixels(a, b)
        if changed == 0:
            pairs.append((first, second, True))
        elif changed >= 2 * cell_area:
            pairs.append((first, second, False))
        else:
            ambiguous += 1
    return renders, pairs, ambiguous


def _changed_pixels(first, second):
    clean = int(np.count_nonzero(np.abs(first["clean"] - second["clean"]) > 20))
    x, y = first["smooth"], second["smooth"]
    gain = float(np.median(y) / np.median(x)) if np.median(x) > 8 else 1.0
    residual = y - gain * x
    residual -= np.median(residual)
    return max(clean, int(np.count_nonzero(np.abs(residual) > 20)))


@pytest.mark.slow
def test_duplicate_precision_and_recall_on_synthetic_videos(tmp_path):
    renders, pairs, ambiguous = _synthetic_pairs(tmp_path)
    result = curate.curate(tmp_path / "synthetic", tmp_path / "curated", progress=False)
    group_of = {entry["path"]: entry["group"] for entry in [*result["kept"], *result["dropped"]]}
    truth = np.array([label for _, _, label in pairs])
    predicted = np.array(
        [group_of[renders[a]["path"]] == group_of[renders[b]["path"]] for a, b, _ in pairs]
    )
    true_positives = int(np.count_nonzero(truth & predicted))
    precision = true_positives / max(int(np.count_nonzero(predicted)), 1)
    recall = true_positives / max(int(np.count_nonzero(truth)), 1)
    vantages = {renders[a]["vantage"] for a, _, label in pairs if label}
    print(
        f"\nsynthetic duplicate pairs: {int(truth.sum())} duplicates, {int((~truth).sum())} not, "
        f"{ambiguous} ambiguous left out; precision {precision:.3f}, recall {recall:.3f}"
    )
    assert truth.sum() >= 100 and (~truth).sum() >= 100
    assert len(vantages) == 6
    assert precision >= 0.95
    assert recall >= 0.95
