"""Tests for platelab.goals: held-out synthetic evaluation, goal rows, the mAP trend."""

import dataclasses
import math

import numpy as np
import pytest

import model_helpers
from platelab import goals, synth

HELDOUT = {"videos": 2, "seconds": 1.6, "fps": 5.0, "size": (192, 108), "sample_fps": 2.0}


class ContentMatchingModel:
    """Stands in for a detector: finds each image among the generator's own rendered
    frames (before H.264) by content, and 'detects' that frame's true objects."""

    def __init__(self, real_model, rendered, mistake=None):
        self.labels = real_model.labels
        self.score_threshold = real_model.score_threshold
        self.rendered = rendered  # [(frame BGR, objects)]
        self.mistake = mistake
        self.calls = 0

    def predict(self, images, score_threshold=None):
        results = []
        for image in images:
            self.calls += 1
            bgr = image[..., ::-1].astype(np.float32)
            errors = [np.abs(bgr - frame).mean() for frame, _ in self.rendered]
            _, objects = self.rendered[int(np.argmin(errors))]
            objects = [item for item in objects if item["label"] in self.labels]
            labels = [item["label"] for item in objects]
            if self.mistake == "swap":
                labels = [
                    "vehicle" if label == "license_plate" else "license_plate" for label in labels
                ]
            results.append(
                {
                    "boxes": np.asarray([item["box"] for item in objects], np.float32).reshape(
                        -1, 4
                    ),
                    "scores": np.linspace(0.99, 0.5, len(objects), dtype=np.float32),
                    "labels": labels,
                }
            )
        return results


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return model_helpers.make_run_folder(tmp_path_factory.mktemp("untrained") / "run")


@pytest.fixture(scope="module")
def rendered():
    frames = []
    for spec in synth.video_specs(
        HELDOUT["videos"], HELDOUT["seconds"], HELDOUT["fps"], HELDOUT["size"], seed=11
    ):
        frames += [
            (frame.astype(np.float32), truth["objects"])
            for frame, truth in synth.render_video(spec)
        ]
    return frames


def _evaluate(run_dir, out_dir, **extra):
    options = {key: value for key, value in HELDOUT.items()}
    options.update(extra)
    return goals.evaluate_heldout_videos(run_dir, out_dir, seed=11, progress=False, **options)


def test_heldout_frames_get_their_own_ground_truth(run_dir, rendered, tmp_path, monkeypatch):
    from platelab import detector

    real_load = detector.load
    models = []

    def load(path, **options):
        models.append(ContentMatchingModel(real_load(path, **options), rendered))
        return models[-1]

    monkeypatch.setattr(detector, "load", load)
    result = _evaluate(run_dir, tmp_path / "heldout")
    # 8 frames a video at 5 fps, every 2nd (2 a second of 5): frames 0, 2, 4, 6.
    assert result.frames == 2 * 4 == models[0].calls
    assert {video["vantage"] for video in result.videos} == set(synth.VANTAGES[:2])
    per_class = result.metrics["per_class"]
    scored = [label for label in ("vehicle", "license_plate") if per_class[label]["num_gt"] > 0]
    assert "vehicle" in scored
    for label in scored:
        assert per_class[label]["AP50"] == pytest.approx(1.0)
        assert per_class[label]["AP"] == pytest.approx(1.0)
    # The moving scenes make every frame's truth its own: a frame scored against the
    # truth of another would lose AP, and so do swapped labels.
    names = [entry["image"] for entry in result.ground_truth]
    assert len(set(names)) == len(names)

    monkeypatch.setattr(
        detector,
        "load",
        lambda path, **options: ContentMatchingModel(real_load(path), rendered, "swap"),
    )
    swapped = _evaluate(run_dir, tmp_path / "heldout")
    assert swapped.metrics["per_class"]["vehicle"]["AP50"] < 0.5


def test_heldout_with_a_real_model_and_reuse(run_dir, tmp_path):
    out_dir = tmp_path / "heldout"
    first = _evaluate(run_dir, out_dir)
    manifest = out_dir / "manifest.json"
    written = manifest.stat().st_mtime_ns
    second = _evaluate(run_dir, out_dir)
    assert manifest.stat().st_mtime_ns == written, (
        "the same held-out set is reused, not rendered again"
    )
    assert first.metrics == second.metrics
    assert set(first.metrics["per_class"]) == {"vehicle", "license_plate"}
    for prediction in first.predictions:
        x0, y0, x1, y1 = prediction["bbox"]
        assert 0 <= x0 <= x1 <= 192 and 0 <= y0 <= y1 <= 108
    rows = goals.goal_rows(first.metrics)
    assert [row["class"] for row in rows] == ["vehicle", "license_plate"]


def test_heldout_refuses_the_training_seed_and_bad_counts(run_dir, tmp_path):
    with pytest.raises(ValueError, match="training videos' seed"):
        _evaluate(run_dir, tmp_path / "heldout", training_seed=11)
    with pytest.raises(ValueError, match="must be positive"):
        _evaluate(run_dir, tmp_path / "heldout", sample_fps=0)
    assert not (tmp_path / "heldout").exists()


def test_goal_rows():
    metrics = {
        "per_class": {
            "vehicle": {"AP50": 0.96, "num_gt": 10},
            "license_plate": {"AP50": 0.89, "num_gt": 5},
        }
    }
    rows = {row["class"]: row for row in goals.goal_rows(metrics)}
    assert rows["vehicle"]["met"] is True and rows["vehicle"]["goal"] == 0.95
    assert rows["license_plate"]["met"] is False and rows["license_plate"]["AP50"] == 0.89
    metrics["per_class"]["license_plate"] = {"AP50": float("nan"), "num_gt": 0}
    rows = {row["class"]: row for row in goals.goal_rows(metrics)}
    assert rows["license_plate"]["met"] is None and rows["license_plate"]["AP50"] is None
    rows = goals.goal_rows({"per_class": {}}, goals={"vehicle": 0.5})
    assert rows == [{"class": "vehicle", "AP50": None, "goal": 0.5, "met": None}]


def test_map_trend():
    steps = [40, 80, 120, 160, 200, 240]
    rising = goals.map_trend(steps, [0.001, 0.004, 0.003, 0.01, 0.02, 0.024])
    assert rising["rising"] is True
    assert rising["first"] == 0.001 and rising["best"] == 0.024 and rising["evaluations"] == 6
    assert rising["correlation"] == pytest.approx(0.9428571, abs=1e-6)  # one swapped pair
    # A single lucky evaluation is no trend.
    assert goals.map_trend(steps, [0.01, 0.002, 0.03, 0.001, 0.002, 0.001])["rising"] is False
    # Steady but tiny: the best must be at least twice the first.
    assert goals.map_trend(steps, [0.10, 0.101, 0.102, 0.103, 0.104, 0.105])["rising"] is False
    flat = goals.map_trend(steps, [0.0] * 6)
    assert flat["correlation"] == 0.0 and flat["rising"] is False
    # NaN rows (training-loss rows of metrics.csv) are left out; under three: undecided.
    few = goals.map_trend([25, 40, 50, 80], [math.nan, 0.01, math.nan, 0.05])
    assert few["evaluations"] == 2 and few["rising"] is None and few["correlation"] is None
    assert goals.map_trend([], [])["first"] is None


def test_spearman_matches_scipy_on_ties():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    for _ in range(20):
        first = rng.integers(0, 5, 12).astype(float)
        second = rng.integers(0, 5, 12).astype(float)
        if first.std() == 0 or second.std() == 0:
            continue
        expected = scipy_stats.spearmanr(first, second).statistic
        assert goals._spearman(first, second) == pytest.approx(expected, abs=1e-12)


def test_goals_per_profile():
    assert goals.goals_for("default") == ("default", {"vehicle": 0.90, "license_plate": 0.80})
    assert goals.goals_for("full") == ("full", goals.HELDOUT_AP50_GOALS)
    assert goals.goals_for("my-workspace") == ("full", goals.HELDOUT_AP50_GOALS)


def _heldout(per_class, frames=6):
    return goals.HeldoutEvaluation(
        ground_truth=[], predictions=[], metrics={"AP": 0.5, "AP50": 0.75, "per_class": per_class},
        videos=[{"vantage": "overpass"}, {"vantage": "kerb"}, {"vantage": "kerb"}],
        frames=frames, seed=4242, score_threshold=0.5,
        plate_heights=[
            {"bin": "8-16 px", "low": 8, "high": 16, "num_gt": 4, "AP50": 0.41234},
            {"bin": "16-32 px", "low": 16, "high": 32, "num_gt": 0, "AP50": None},
        ],
    )  # fmt: skip


def test_goal_table_rows_per_goal_in_order():
    heldout = _heldout(
        {"vehicle": {"AP50": 0.93, "num_gt": 9}, "license_plate": {"AP50": 0.2, "num_gt": 0}}
    )
    trend = goals.map_trend([100, 200, 300, 400], [0.01, 0.03, 0.05, 0.1])
    throughput = {"real_images_per_s": 45.0, "bare_images_per_s": 50.0, "ratio": 0.9}
    rows = goals.goal_table(heldout, trend, throughput, "default")
    assert [row["goal"] for row in rows] == [
        "held-out AP50 vehicle (default profile)",
        "held-out AP50 license_plate (default profile)",
        "validation mAP rising (default profile)",
        "input pipeline throughput",
    ]
    assert rows[0] == {
        "goal": "held-out AP50 vehicle (default profile)",
        "measured": "0.9300",
        "target": ">= 0.9",
        "met": True,
    }
    assert rows[1]["measured"] == "no ground truth" and rows[1]["met"] is None
    assert rows[2]["measured"] == ("0.0100 -> 0.1000 over 4 evaluations, rank correlation 1.00")
    assert rows[2]["met"] is True
    assert rows[3] == {
        "goal": "input pipeline throughput",
        "measured": "45.0 / 50.0 images/s = 0.900",
        "target": ">= 0.9",
        "met": True,
    }
    # Another workspace is judged by the full profile; unmeasured goals are left out.
    full = goals.goal_table(heldout, None, None, "my-footage")
    assert [row["goal"] for row in full] == [
        "held-out AP50 vehicle (full profile)",
        "held-out AP50 license_plate (full profile)",
    ]
    assert full[0]["met"] is False
    two = goals.map_trend([1, 2], [0.1, 0.2])
    assert goals.goal_table(
        None, two, {"ratio": 0.5, "real_images_per_s": 1.0, "bare_images_per_s": 2.0}, "default"
    ) == [
        {
            "goal": "validation mAP rising (default profile)",
            "measured": "2 evaluation(s)",
            "target": "correlation >= 0.8, best >= 2x first",
            "met": None,
        },
        {
            "goal": "input pipeline throughput",
            "measured": "1.0 / 2.0 images/s = 0.500",
            "target": ">= 0.9",
            "met": False,
        },
    ]


def test_run_map_trend_and_trend_lines():
    import pandas as pd

    metrics = pd.DataFrame({"step": [50, 100, 150, 200], "mAP": [np.nan, 0.01, 0.02, 0.05]})
    trend = goals.run_map_trend(metrics)
    assert trend == goals.map_trend([100, 150, 200], [0.01, 0.02, 0.05])
    assert goals.run_map_trend(metrics.drop(columns="mAP")) is None
    assert goals.run_map_trend(metrics.iloc[:0]) is None and goals.run_map_trend(None) is None
    state = {"status": "finished", "step": 200, "best_step": 200}
    first, second = goals.trend_lines(trend, state)
    assert first == (
        "validation mAP 0.0100 at the first evaluation -> 0.0500 at best (step 200); "
        "status finished at step 200"
    )
    assert second.startswith(
        "rank correlation of validation mAP with step 1.00 over 3 evaluations: rising"
    )
    assert goals.trend_lines(None, state)[0].startswith(
        "validation mAP nan at the first evaluation -> nan"
    )
    assert len(goals.trend_lines(goals.map_trend([1, 2], [0.1, 0.2]), state)) == 1
    kept_by_ap50 = goals.trend_lines(trend, dict(state, keep="ap50", best_step=150))[0]
    assert kept_by_ap50 == (
        "validation mAP 0.0100 at the first evaluation -> 0.0500 at best; kept step 150 by "
        "validation AP50; status finished at step 200"
    )


def test_heldout_frame_size_line_and_plate_table():
    assert goals.heldout_frame_size("640X360", {"size": [320, 180]}) == (640, 360)
    assert goals.heldout_frame_size("", {"size": [320, 180]}) == (320, 180)
    assert goals.heldout_frame_size("", None) == (960, 540)
    heldout = _heldout({})
    assert goals.heldout_line(heldout, (320, 180)) == (
        "held-out seed 4242: 3 videos (kerb, overpass), 6 frames at 320x180; mAP 0.5000, AP50 0.7500"
    )
    table = goals.plate_height_table(heldout)
    assert list(table.index) == ["8-16 px", "16-32 px"] and table.index.name == "bin"
    assert list(table.columns) == ["plates", "plate AP50"]
    assert table.loc["8-16 px", "plate AP50"] == 0.412 and table.loc["8-16 px", "plates"] == 4
    assert np.isnan(table.loc["16-32 px", "plate AP50"])
    assert goals.plate_height_table(dataclasses.replace(heldout, plate_heights=[])).empty


def test_rising_map_is_not_judged_for_a_run_fine_tuned_from_a_detector():
    trend = goals.map_trend([100, 200, 300, 400], [0.38, 0.39, 0.385, 0.394])
    starter_rows = goals.goal_table(None, trend, None, "default", init="starter")
    assert starter_rows[0]["met"] is None
    assert starter_rows[0]["target"].startswith("n/a: fine-tuned from a detector (init starter)")
    backbone_rows = goals.goal_table(None, trend, None, "default", init="imagenet")
    assert backbone_rows[0]["met"] is False
    assert [goals.detection_pretrained(init) for init in (
        "starter", "models/starter", "data/default/models/ssd", "none", "auto", "imagenet",
        "weights/mobilenet_v2.h5", None,
    )] == [True, True, True, False, False, False, False, False]  # fmt: skip
