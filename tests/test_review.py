"""Stage 04: review dataset, label normalisation, QA checks, likely mistakes, App and panel (platelab.review)."""

import shutil
import socket
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from platelab import LABELS, annotate, curate, metadata, paths, review, synth
from platelab.collect import frames

CHROMIUM = Path("/usr/bin/chromium")


# --------------------------------------------------------------------------- fixtures


def _picture(path, value, size=(96, 64)):
    rng = np.random.default_rng(value)
    image = np.full((size[1], size[0], 3), value, np.uint8)
    image[::7] = rng.integers(0, 255, (len(image[::7]), size[0], 3), np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image)
    return path


def _crafted_batch(folder):
    """A VOC export (folder form) with one of each QA problem, by image."""
    pictures = folder.parent / f"{folder.name}_pictures"
    vehicle = {"label": "car", "bbox": [10, 10, 60, 50]}
    plate = {"label": "license plate", "bbox": [30, 38, 44, 44], "attributes": {"text": "AB 123"}}
    images = [
        annotate.VocImage("clean", _picture(pictures / "clean.png", 10), 96, 64, [vehicle, plate]),
        annotate.VocImage(
            "outside",
            _picture(pictures / "outside.png", 20),
            96,
            64,
            [{"label": "truck", "bbox": [-5, 10, 40, 50]}],
        ),
        annotate.VocImage(
            "tiny",
            _picture(pictures / "tiny.png", 30),
            96,
            64,
            [{"label": "sedan", "bbox": [5, 5, 9, 9]}],
        ),
        annotate.VocImage(
            "duplicate",
            _picture(pictures / "duplicate.png", 40),
            96,
            64,
            [vehicle, {"label": "vehicles", "bbox": [10.5, 10, 60, 50.5]}],
        ),
        annotate.VocImage(
            "lonely_plate",
            _picture(pictures / "lonely_plate.png", 50),
            96,
            64,
            [{"label": "number_plate", "bbox": [70, 50, 90, 58]}],
        ),
        annotate.VocImage("empty", _picture(pictures / "empty.png", 60), 96, 64, []),
        annotate.VocImage(
            "unknown",
            _picture(pictures / "unknown.png", 70),
            96,
            64,
            [vehicle, {"label": "Motorbike", "bbox": [60, 20, 80, 40]}],
        ),
    ]
    annotate.write_voc(images, folder, form="folder")
    return folder


@pytest.fixture
def batches(tmp_path):
    """Two crafted batches (one zipped), a folder that is not VOC, and an XML whose image vanished."""
    inputs = tmp_path / "inputs"
    first = _crafted_batch(inputs / "batch_a")
    second_folder = _crafted_batch(tmp_path / "staging" / "batch_b")
    shutil.make_archive(str(inputs / "batch_b"), "zip", second_folder)
    (inputs / "not_voc").mkdir()
    (inputs / "not_voc" / "notes.txt").write_text("hello")
    (first / "JPEGImages" / "tiny.png").unlink()  # the image disappeared; its XML stays
    return inputs


def _digests(folder):
    return {
        path.relative_to(folder).as_posix(): metadata.sha256_file(path)
        for path in sorted(Path(folder).rglob("*"))
        if path.is_file()
    }


# --------------------------------------------------------------------------- loading, labels, QA


def test_aliases_defaults_and_yaml_file(tmp_path):
    defaults = review.load_aliases()
    assert "car" in defaults["vehicle"] and "license plate" in defaults["license_plate"]
    project_file = review.load_aliases(Path(paths.PARAMS_DIR) / "aliases.yaml")
    for spelling in ("car", "cars", "vehicles", "truck", "bus", "sedan"):
        assert spelling in project_file["vehicle"]
    for spelling in ("license plate", "license_plates", "licence", "plate", "number_plate"):
        assert spelling in project_file["license_plate"]
    extra = tmp_path / "aliases.yaml"
    extra.write_text("vehicle: [van, Motorbike]\nlicense_plate: placa\n")
    merged = review.load_aliases(extra)
    assert "Motorbike" in merged["vehicle"] and "placa" in merged["license_plate"]
    broken = tmp_path / "broken.yaml"
    broken.write_text("vehicle: [van\n")
    with pytest.raises(review.ReviewError, match=r"broken\.yaml: not valid YAML") as caught:
        review.load_aliases(broken)
    assert "\n" not in str(caught.value)


def test_load_images_reports_bad_input_and_keeps_going(batches, tmp_path):
    before = _digests(batches)
    images_dir = tmp_path / "review" / "images"
    images, problems, spellings = review.load_images(
        [batches], images_dir=images_dir, progress=False
    )
    assert _digests(batches) == before, "inputs must not change"
    keys = {image.key for image in images}
    # 7 images per batch, less batch_a's vanished one; the non-VOC folder is one problem line.
    assert len(images) == 13 and "batch_a/tiny" not in keys and "batch_b/tiny" in keys
    assert any("not_voc" in line and "\n" not in line for line in problems)
    assert any("tiny" in line and "missing" in line for line in problems)
    # Stable copies, one folder per batch; the temporary extraction is gone.
    for image in images:
        assert image.image_path.parent == images_dir / image.batch
        assert metadata.sha256_file(image.image_path) == image.sha256
    # Unknown labels: kept as written, listed, never dropped.
    assert review.unknown_labels(spellings) == ["Motorbike"]
    unknown = [obj for image in images for obj in image.objects if not obj["known"]]
    assert len(unknown) == 2 and {obj["label"] for obj in unknown} == {"Motorbike"}
    table = review.label_table(spellings)
    assert table.loc["car", "canonical"] == "vehicle"
    assert table.loc["number_plate", "canonical"] == "license_plate"
    assert table.index[0] == "Motorbike" and not table.loc["Motorbike", "known"]
    # Reloading finds the stable copies in place (same content, not rewritten).
    again, _, _ = review.load_images([batches], images_dir=images_dir, progress=False)
    assert [image.image_path for image in again] == [image.image_path for image in images]


def test_load_images_of_a_hostile_export_keeps_its_good_items(tmp_path):
    from hostile_archive import build

    outside = tmp_path / "outside"
    outside.mkdir()
    exports = tmp_path / "exports"
    exports.mkdir()
    archive = exports / "task_3_voc.zip"
    expected = build(archive, outside)
    (exports / "linked_voc").symlink_to(outside, target_is_directory=True)
    before = archive.read_bytes()
    images_dir = tmp_path / "review" / "images"
    images, problems, spellings = review.load_images(
        [exports], images_dir=images_dir, work_dir=tmp_path / "work", progress=False
    )
    assert sorted(image.name for image in images) == expected["kept"]
    assert {image.name: len(image.objects) for image in images} == {
        **expected["objects"],
        "unknown_label": 2,  # the review keeps unknown labels, flagged
    }
    rest = list(problems)
    for item, words in {**expected["skipped"], **expected["fixed"]}.items():
        named = [
            line for line in rest if f"{archive}: {item} " in line or f"{archive}/{item}:" in line
        ]
        assert len(named) == 1 and all(word in named[0] for word in words), (item, named)
        rest.remove(named[0])
    assert rest == [
        f"{exports / 'linked_voc'}: a link to {outside}, outside {exports}; skipped",
        f"{archive}: label 'tree' is not a known spelling of vehicle or license_plate",
    ]
    assert review.unknown_labels(spellings) == ["tree"]
    assert archive.read_bytes() == before
    assert not list(tmp_path.rglob("*escape*"))
    assert sorted(path.name for path in outside.iterdir()) == ["secret.txt"]
    assert sorted(path.name for path in images_dir.iterdir()) == ["task_3_voc"]


def test_qa_checks_count_each_problem(batches, tmp_path):
    images, _, _ = review.load_images([batches / "batch_b.zip"], progress=False)
    table = review.run_qa_checks(images)
    by_name = {image.name: image for image in images}
    assert table.loc["qa_outside_or_degenerate", "images"] == 1
    assert by_name["outside"].qa_flags == ["qa_outside_or_degenerate"]
    assert "qa_tiny_boxes" in by_name["tiny"].qa_flags and table.loc["qa_tiny_boxes", "boxes"] == 1
    assert (
        table.loc["qa_duplicate_boxes", "images"] == 1
        and table.loc["qa_duplicate_boxes", "boxes"] == 2
    )
    assert table.loc["qa_plate_outside_vehicle", "images"] == 1
    assert "qa_plate_outside_vehicle" in by_name["lonely_plate"].qa_flags
    assert "qa_plate_outside_vehicle" not in by_name["clean"].qa_flags
    assert (
        by_name["empty"].qa_flags == ["qa_no_labels"] and table.loc["qa_no_labels", "images"] == 1
    )
    assert table.loc["qa_unknown_labels", "boxes"] == 1
    balance = review.class_balance(images, by="batch")
    assert balance.loc["batch_b", "images"] == 7
    assert balance.loc["batch_b", "vehicle"] == 6 and balance.loc["batch_b", "(unknown label)"] == 1


# --------------------------------------------------------------------------- the FiftyOne dataset


@pytest.mark.fiftyone
def test_dataset_reloads_idempotently_and_keeps_tags(batches, tmp_path):
    from platelab.fiftyone_setup import import_fiftyone

    fo = import_fiftyone()
    images_dir = tmp_path / "images"
    images, _, spellings = review.load_images([batches], images_dir=images_dir, progress=False)
    review.run_qa_checks(images)
    ranking = review.rank_images(images)
    name = "platelab-test-review"
    dataset, problems = review.build_dataset(images, name, ranking=ranking, progress=False)
    try:
        assert len(dataset) == 13 and not problems
        labels = dataset.count_values("ground_truth.detections.label")
        assert set(labels) == {*LABELS, "Motorbike"}
        originals = set(dataset.distinct("ground_truth.detections.original_label"))
        assert {"car", "truck", "license plate", "number_plate", "Motorbike"} <= originals
        views = dataset.list_saved_views()
        assert set(review.QA_CHECKS) | {review.LIKELY_MISTAKES_VIEW} <= set(views)
        assert len(dataset.load_saved_view("qa_unknown_labels")) == 2
        assert len(dataset.load_saved_view("qa_no_labels")) == 2
        assert len(dataset.load_saved_view("qa_duplicate_boxes")) == 2
        first = dataset.first()
        assert first["sha256"] and first["batch"] and first["split"] is None
        assert first.metadata.width == 96
        # Tag, reload: same samples, tag kept, labels not doubled.
        boxes = dataset.count("ground_truth.detections")
        review.set_tag(dataset, first.id, "exclude")
        review.set_tag(dataset, first.id, "fix")  # replaces the other review tag
        again, _ = review.build_dataset(images, name, ranking=ranking, progress=False)
        assert len(again) == 13 and again.count("ground_truth.detections") == boxes
        assert again[first.id].tags == ["fix"]
        exported = review.export_tags(again)
        assert exported[first["sha256"]]["tags"] == ["fix"]
        assert [item["filepath"] for item in review.tagged_images(again, "fix")] == [first.filepath]
        with pytest.raises(review.ReviewError, match="not a review tag"):
            review.set_tag(again, first.id, "maybe")
        # An image that left the batches leaves the dataset, with a message.
        fewer, problems = review.build_dataset(images[1:], name, progress=False)
        assert len(fewer) == 12 and "1 sample(s) no longer in any batch" in problems[0]
    finally:
        fo.delete_dataset(name)


@pytest.mark.fiftyone
def test_prediction_mistakenness_and_missing_candidates(batches, tmp_path):
    from platelab.fiftyone_setup import import_fiftyone

    fo = import_fiftyone()
    images, _, _ = review.load_images(
        [batches / "batch_b.zip"], images_dir=tmp_path / "i", progress=False
    )
    review.run_qa_checks(images)
    dataset, _ = review.build_dataset(images, "platelab-test-predictions", progress=False)
    try:
        # Made-up detector output: the truth, plus a confident box nobody annotated, and a
        # confident disagreement on one label.
        predictions = {}
        for image in images:
            found = [
                {"label": obj["label"], "score": 0.95, "bbox": obj["bbox"]}
                for obj in image.objects
                if obj["known"]
            ]
            if image.name == "empty":
                found.append({"label": "vehicle", "score": 0.97, "bbox": [20, 10, 70, 50]})
            if image.name == "clean":
                found[0]["label"] = "license plate"
            predictions[image.key] = found
        assert review.add_predictions(dataset, predictions, progress=False) > 0
        table = review.compute_prediction_mistakenness(dataset)
        assert table.iloc[0]["image"] == "batch_b/clean"
        missing = dataset.load_saved_view(review.MISSING_CANDIDATES_VIEW)
        assert missing.values("image_name") == ["empty"]
        assert review.MISTAKENNESS_VIEW in dataset.list_saved_views()
    finally:
        fo.delete_dataset("platelab-test-predictions")


@pytest.mark.fiftyone
def test_review_panel_steps_and_tags_without_a_browser(batches, tmp_path):
    from platelab import review_widgets
    from platelab.fiftyone_setup import import_fiftyone

    fo = import_fiftyone()
    images, _, _ = review.load_images(
        [batches / "batch_b.zip"], images_dir=tmp_path / "i", progress=False
    )
    review.run_qa_checks(images)
    dataset, _ = review.build_dataset(images, "platelab-test-panel", progress=False)
    try:
        panel = review_widgets.ReviewPanel(dataset, view="qa_no_labels")
        assert len(panel.sample_ids) == 1 and bytes(panel.image.value).startswith(b"\x89PNG")
        assert "1 / 1" in panel.info.value
        panel.view_picker.value = ""  # all images
        assert len(panel.sample_ids) == 7 and panel.position == 0
        panel.next_button.click()
        panel.next_button.click()
        panel.previous_button.click()
        assert panel.position == 1
        tagged = panel.sample_ids[1]
        panel.tag_buttons["exclude"].click()
        assert panel.position == 2  # moved on
        assert dataset[tagged].tags == ["exclude"]
        panel.step(-1)
        panel.tag_buttons["ok"].click()
        assert fo.load_dataset("platelab-test-panel")[tagged].tags == ["ok"]
        assert "review tag: <b>none</b>" in panel.info.value
        panel.step(-1)
        assert "review tag: <b>ok</b>" in panel.info.value
    finally:
        fo.delete_dataset("platelab-test-panel")


def _free_port():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        return listener.getsockname()[1]


@pytest.mark.fiftyone
@pytest.mark.browser
@pytest.mark.slow
def test_app_shows_the_dataset_in_headless_chromium(batches, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("no chromium")
    from platelab.fiftyone_setup import import_fiftyone

    fo = import_fiftyone()
    images, _, _ = review.load_images(
        [batches / "batch_b.zip"], images_dir=tmp_path / "i", progress=False
    )
    review.run_qa_checks(images)
    name = "platelab-test-app"
    dataset, _ = review.build_dataset(images, name, progress=False)
    port = _free_port()
    session = review.launch_app(dataset, port=port)
    try:
        assert session.url.startswith(f"http://127.0.0.1:{port}")
        # On a loaded machine the App's first render can outlast a short virtual-time
        # budget: try again with a longer one before calling the page wrong.
        for attempt, budget in enumerate((15000, 30000, 60000)):
            profile = tmp_path / f"chromium-profile-{attempt}"
            profile.mkdir()
            result = subprocess.run(
                [
                    str(CHROMIUM),
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    f"--user-data-dir={profile}",
                    f"--virtual-time-budget={budget}",
                    "--window-size=1400,900",
                    "--dump-dom",
                    session.url,
                ],
                capture_output=True,
                text=True,
                timeout=180,
            )
            assert result.returncode == 0, result.stderr[-500:]
            dom = result.stdout
            if name in dom:
                break
        assert name in dom, "the App page does not name the dataset"
        for field in ("ground_truth", "vantage", "sha256"):
            assert field in dom, f"the App's sidebar does not list {field}"
    finally:
        session.close() if hasattr(session, "close") else None
        fo.delete_dataset(name)


# --------------------------------------------------------------------------- likely mistakes


REVIEW_GOAL = 0.8
"""Issue 4: the top 10 % of images by the ranking hold at least this share of the injected mistakes."""

GOAL_SYNTH_SEED = 301
"""The synthetic set of the review-quality test: one the ranking was not developed on.

The ranking was developed on synthetic seeds 1-8 only;
``benchmarks/bench_review_quality.py`` measures it on the held-out seeds
301-308, this one among them."""
GOAL_INJECTIONS = 3
"""Independent injections into that set, pooled (seed 301 + 10000 k, as the benchmark draws them)."""
GOAL_RATE = 0.0025
"""Per-object mistake rate: mistakes in about 5 % of the images, so the top 10 % can hold them all.

The default profile's 0.05 puts mistakes in about 45 % of the images: there
no ranking's top 10 % can hold more than about half of them."""


def _textured(rng, height, width, smooth=5):
    noise = rng.integers(0, 255, (height, width, 3), np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), smooth)


def _object(label, bbox, **extra):
    return {
        "label": label,
        "original_label": label,
        "known": True,
        "bbox": [float(value) for value in bbox],
        "raw_bbox": [float(value) for value in bbox],
        "difficult": False,
        "occluded": False,
        "truncated": False,
        "attributes": extra,
    }


def _video_frames(folder, written):
    """Three frames of one video (0.5 s apart): a static textured street, a car driving right.

    ``written(frame, car, plate)`` gives the boxes the annotator wrote for a frame.
    """
    rng = np.random.default_rng(7)
    background = _textured(rng, 120, 200)
    car = _textured(rng, 30, 48, smooth=1)
    car[22:28, 17:31] = 235  # the plate: a bright rectangle
    car[24:26, 19:29:3] = 20  # with dark characters
    images = []
    for frame in range(3):
        pixels = background.copy()
        x0, y0 = 40 + 12 * frame, 50
        pixels[y0 : y0 + 30, x0 : x0 + 48] = car
        path = folder / f"video_a_t{500 * frame:06d}.png"
        cv2.imwrite(str(path), pixels)
        image = review.ReviewImage(
            batch="batch",
            name=path.stem,
            image_path=path,
            width=200,
            height=120,
            source_id="video_a",
            time=0.5 * frame,
        )
        car_box = [x0, y0, x0 + 48, y0 + 30]
        plate_box = [x0 + 17, y0 + 22, x0 + 31, y0 + 28]
        image.objects = written(frame, car_box, plate_box)
        images.append(image)
    return images


@pytest.mark.parametrize("mistake", ["missing", "shifted", "wrong_label"])
def test_neighbouring_frames_reveal_a_mistake_in_the_middle_frame(tmp_path, mistake):
    def written(frame, car, plate):
        objects = [_object("vehicle", car), _object("license_plate", plate, text="AB 123")]
        if frame == 1 and mistake == "missing":
            del objects[0]
        if frame == 1 and mistake == "shifted":
            objects[0]["bbox"] = [car[0] + 19, car[1] - 12, car[2] + 19, car[3] - 12]
        if frame == 1 and mistake == "wrong_label":
            objects[0]["label"] = "license_plate"
        return objects

    images = _video_frames(tmp_path, written)
    ranking = review.rank_images(images)
    assert ranking[0]["key"] == images[1].key, [item["key"] for item in ranking]
    expected = {"missing": "track_gap", "shifted": "track_jump", "wrong_label": "label_outlier"}
    evidence = [item for item in ranking[0]["evidence"] if item["kind"] == expected[mistake]]
    assert len(evidence) == 1, ranking[0]["evidence"]
    evidence = evidence[0]
    assert evidence["strength"] >= 0.5 and "both neighbouring frames" in evidence["message"]
    if mistake != "missing":
        assert evidence["object"] == 0
    assert all(item["score"] < 0.3 for item in ranking[1:]), ranking  # the neighbours look clean


def test_a_clean_video_gives_no_track_evidence(tmp_path):
    images = _video_frames(
        tmp_path,
        lambda frame, car, plate: [_object("vehicle", car), _object("license_plate", plate)],
    )
    assert all(item["score"] == 0 for item in review.rank_images(images))


@pytest.fixture(scope="module")
def synthetic_tasks(tmp_path_factory):
    """Stages 00-03 at the default profile's sizes (params/default.yaml) on synthetic seed 301.

    6 videos of 10 s at 960x540 and 10 fps, frames sampled at 2 fps, curated
    with threshold 3, tasks of 20 images.
    """
    root = tmp_path_factory.mktemp("review-workspace")
    synthetic = root / "raw" / "synthetic"
    synth.synthesize(
        synthetic,
        videos=6,
        seconds=10.0,
        fps=10.0,
        size=(960, 540),
        seed=GOAL_SYNTH_SEED,
        workers=1,
        progress=False,
    )
    frames_dir = root / "interim" / "frames"
    frames.sample([synthetic / "videos"], frames_dir, fps=2.0, progress=False, workers=1)
    curated = root / "interim" / "curated"
    curate.curate([frames_dir], curated, threshold=3, drop_empty=False, progress=False, workers=1)
    tasks = root / "interim" / "cvat" / "tasks"
    annotate.export_tasks(curated, tasks, batch_size=20, progress=False)
    return root, tasks


def test_duplicates_and_plates_outside_vehicles_rank_first(batches):
    images, _, _ = review.load_images([batches / "batch_b.zip"], progress=False)
    ranking = review.rank_images(images)
    top_two = {item["key"] for item in ranking[:2]}
    assert top_two == {"batch_b/duplicate", "batch_b/lonely_plate"}
    assert ranking[0]["evidence"] and ranking[0]["score"] > ranking[-1]["score"]


@pytest.mark.slow
def test_ranking_finds_injected_mistakes(synthetic_tasks):
    """Review quality (issue 4): the top 10 % of images by the model-free ranking hold >= 80 % of the mistakes.

    A mistake counts as found when its image is in the top 10 %. Measured on
    a synthetic set the ranking was not developed on (:data:`GOAL_SYNTH_SEED`),
    :data:`GOAL_INJECTIONS` independent injections pooled (35 mistakes);
    measured 28/35 = 80 % when written: the goal holds here, but only just.
    On the held-out seeds 301-308 (six injections each) the ranking measured
    82 % on average, 65-94 % per seed (``benchmarks/bench_review_quality.py``):
    the goal is met on average, not on every seed.
    """
    root, tasks = synthetic_tasks
    found = total = 0
    shares = []
    for injection in range(GOAL_INJECTIONS):
        seed = GOAL_SYNTH_SEED + 10000 * injection
        exports = root / "interim" / "cvat" / f"exports_{seed}"
        document = annotate.simulate_annotator(
            tasks, exports, inject_mistakes=GOAL_RATE, seed=seed, progress=False
        )
        images, problems, _ = review.load_images([exports], index=tasks, progress=False)
        assert len(images) >= 100
        ranking = review.rank_images(images, seed=GOAL_SYNTH_SEED)
        quality = review.review_quality(ranking, document["mistakes"], fraction=0.1)
        assert quality["unmatched"] == 0 and quality["mistakes"] > 0
        shares.append(quality["images_with_mistakes"] / quality["images"])
        found += quality["found"]
        total += quality["mistakes"]
        print(
            f"injection {seed}: {quality['found']}/{quality['mistakes']} in the top "
            f"{quality['reviewed']} of {quality['images']} ({quality['by_kind']})"
        )
    print(f"review quality: {found}/{total} = {found / total:.0%}")
    # Rare mistakes, as the goal presumes: a perfect ranking's top 10 % would hold (nearly) all.
    assert 0.02 <= sum(shares) / len(shares) <= 0.12, shares
    assert found / total >= REVIEW_GOAL


@pytest.mark.shared
def test_real_cvat_exports_normalise_and_flag_the_bad_box(shared_data, tmp_path):
    exports = sorted((shared_data / "openalpr-br").glob("*.zip"))
    images, problems, spellings = review.load_images(
        exports, images_dir=tmp_path / "images", progress=False
    )
    assert len(images) == 114
    assert {info["canonical"] for info in spellings.values()} == {"license_plate"}
    assert {"license plate", "license_plate"} <= set(spellings)
    assert any("<size>" in line for line in problems), "the XML with a wrong size is reported"
    table = review.run_qa_checks(images)
    assert table.loc["qa_outside_or_degenerate", "boxes"] == 1  # the box written with x = -1
    assert table.loc["qa_unknown_labels", "boxes"] == 0
    # Plates only, no vehicles annotated: the plate-outside-vehicle evidence stays out of the ranking.
    ranking = review.rank_images(images)
    assert not any(
        entry["kind"] == "plate_outside_vehicle" for item in ranking for entry in item["evidence"]
    )
