"""Test-split evaluation and error review (platelab.error_analysis), and notebook 07 on bad run folders."""

import matplotlib

matplotlib.use("Agg")

import json

import pytest

from platelab import error_analysis, evaluate, train
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
