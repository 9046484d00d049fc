"""Test-split evaluation and error review (platelab.error_analysis), and notebook 07 on bad run folders."""

import matplotlib

matplotlib.use("Agg")

import json
import shutil

import numpy as np
import pytest

from platelab import detector, error_analysis, evaluate, train, tta
from train_helpers import TINY_TRAINING, make_dataset


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("errors")
    dataset = make_dataset(folder / "dataset", counts=(16, 6, 6))
    run_dir = folder / "run"
    train.train(dataset, run_dir, dict(TINY_TRAINING, steps=8), progress=False)
    return dataset, run_dir


@pytest.mark.slow
def test_evaluate_run_agrees_with_the_engine_and_breaks_down(trained):
    dataset, run_dir = trained
    evaluation = error_analysis.evaluate_run(run_dir, dataset, split="test", score_threshold=0.3)
    assert len(evaluation.ground_truth) == 6 and evaluation.score_threshold == 0.3
    again = evaluate.evaluate_detections(
        evaluation.ground_truth, evaluation.predictions, evaluation.labels, score_threshold=0.3
    )
    assert again["AP"] == evaluation.metrics["AP"]
    by_vantage = error_analysis.breakdown(evaluation, "vantage")
    assert list(by_vantage["vantage"]) == ["overpass"] and by_vantage["images"].sum() == 6
    styles = error_analysis.plate_style_recall(evaluation)
    aspects = [
        (box[2] - box[0]) / (box[3] - box[1])
        for gt in evaluation.ground_truth
        for box, label in zip(gt["boxes"], gt["labels"], strict=True)
        if label == "license_plate"
    ]
    counted = styles.set_index("style")["plates"]
    assert counted["EU (aspect >= 3.3)"] == sum(aspect >= 3.3 for aspect in aspects)
    assert counted.sum() == len(aspects)
    for figure in (
        error_analysis.plot_pr_curves(evaluation),
        error_analysis.plot_f1_threshold(evaluation)[0],
    ):
        axis = figure.axes[0]
        assert axis.get_xlabel() and axis.get_ylabel()
    _, matrix, names = error_analysis.plot_confusion(evaluation)
    assert names[-1] == "background"
    truth = sum(len(gt["labels"]) for gt in evaluation.ground_truth)
    assert matrix[:-1].sum() == truth  # every true box is somewhere in its row
    images, titles = error_analysis.error_examples(evaluation, "missed_plates", count=3)
    assert len(images) == len(titles) <= 3
    assert all(image.ndim == 3 for image in images)
    with pytest.raises(ValueError, match="unknown error kind"):
        error_analysis.error_examples(evaluation, "nonsense")
    # The index page's frames: spread over the split, each its stretch's busiest,
    # with what the model missed drawn in red over the original.
    frames = error_analysis.verdict_frames(evaluation, count=2)
    assert len(frames) == 2
    originals = sorted(evaluation.ground_truth, key=lambda gt: gt["image"])
    busiest = max(originals[:3], key=lambda gt: len(gt["boxes"]))
    original = error_analysis._read_original(evaluation, busiest["image"])
    assert frames[0].shape == original.shape and (frames[0] != original).any()
    matched = evaluate.match_detections(
        evaluation.ground_truth,
        evaluation.predictions,
        classes=evaluation.labels,
        score_threshold=0.3,
    )
    index = evaluation.ground_truth.index(busiest)
    if any(item["status"] == "missed" for item in matched["ground_truth"][index]):
        red = (frames[0][:, :, 2] == 220) & (frames[0][:, :, 1] == 40) & (frames[0][:, :, 0] == 40)
        assert red.any()


@pytest.mark.slow
def test_evaluate_run_applies_the_runs_tta(trained, tmp_path):
    """With ``tta: flip`` the stored inputs' mirrors are scored too and fused, as
    ``Detector.predict`` fuses an image's and its mirror image's detections
    (``test_the_mirror_of_a_prepared_input_is_the_prepared_mirror_image``: the same
    inputs)."""
    dataset, run_dir = trained
    flip = tmp_path / "flip"
    shutil.copytree(run_dir, flip)
    config = json.loads((flip / "config.json").read_text())
    (flip / "config.json").write_text(json.dumps(dict(config, tta="flip")))
    evaluation = error_analysis.evaluate_run(flip, dataset, split="test", min_score=0.0)
    plain = error_analysis.evaluate_run(run_dir, dataset, split="test", min_score=0.0)
    assert evaluation.predictions != plain.predictions
    model = detector.load(flip)
    data = evaluation.data
    assert len(data) <= 8  # one batch, as evaluate_run runs it
    sizes = [tuple(int(value) for value in size) for size in data.sizes]
    stored = data.images.astype(np.float32)
    mirrors = np.stack(
        [model.geometry.mirror(image, *size) for image, size in zip(stored, sizes, strict=True)]
    )
    passes = model.detect_prepared(stored, sizes, 0.0) + model.detect_prepared(mirrors, sizes, 0.0)
    fused = tta.merge(passes, sizes, "flip", model.nms_iou, model.max_detections)
    expected = detector.flat_predictions(data.names, fused)
    assert len(evaluation.predictions) == len(expected) > 0
    for ours, theirs in zip(evaluation.predictions, expected, strict=True):
        assert (ours["image"], ours["label"]) == (theirs["image"], theirs["label"])
        assert ours["score"] == pytest.approx(theirs["score"], abs=1e-6)
        np.testing.assert_allclose(ours["bbox"], theirs["bbox"], atol=1e-3)


@pytest.mark.slow
def test_notebook_07_reports_bad_run_folders_without_failing(tmp_path, trained):
    from platelab import config, runner

    dataset, run_dir = trained
    empty = tmp_path / "empty_run"
    empty.mkdir()
    truncated = tmp_path / "truncated_run"
    truncated.mkdir()
    text = (run_dir / "metrics.csv").read_text()
    (truncated / "metrics.csv").write_text(text[: len(text) - 7])
    (truncated / "config.json").write_text((run_dir / "config.json").read_text())
    stage = next(stage for stage in config.discover_stages() if stage.name == "07_analyze")
    for name, folder in (("empty", empty), ("truncated", truncated)):
        params = tmp_path / f"{name}.yaml"
        params.write_text(
            json.dumps(
                {
                    "common": {"workspace": str(tmp_path / "work")},
                    "07_analyze": {
                        "run_name": str(folder),
                        "dataset": str(dataset),
                        "compare_runs": [str(run_dir)],
                    },
                }
            )
        )
        run = runner.run_chain(
            params_file=params,
            stages=stage.number,
            reports_dir=tmp_path / "reports",
            run_id=name,
            echo=print,
        )
        assert run["status"] == "ok", run["stages"]
        report = (tmp_path / "reports" / name / "07_analyze" / "report.html").read_text()
        assert "problem:" in report and "Traceback" not in report
        if name == "truncated":
            assert "truncated" in report
