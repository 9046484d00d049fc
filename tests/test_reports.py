"""The run index page (platelab.reports), looked at in a real browser where one is installed."""

import subprocess

import numpy as np
import pytest

from platelab import doctor, reports


def _run_record():
    return {
        "run_id": "r1",
        "profile": "default",
        "description": "test <run>",
        "started_at": "2026-01-01T00:00:00",
        "status": "failed",
        "parameters": {"00_a": {"seed": 1}},
        "stages": [
            {
                "name": "00_a",
                "status": "ok",
                "duration_s": 1.5,
                "key_figures": {"frames": 600, "fps": 31.25},
                "report": "00_a/report.html",
            },
            {
                "name": "01_b",
                "status": "failed",
                "duration_s": 0.4,
                "error": "ValueError: <bad> input",
                "report": "01_b/report.html",
            },
            {"name": "02_c", "status": "skipped"},
        ],
        "metadata": {
            "git": {"commit": "abc123", "dirty": True},
            "versions": {"numpy": "2"},
            "inputs": [{"path": "params/default.yaml", "sha256": "f" * 64, "files": 1}],
        },
    }


def test_index_shows_status_figures_and_errors(tmp_path):
    reports.write_index(tmp_path, _run_record())
    page = (tmp_path / "index.html").read_text()
    assert "<a href='00_a/report.html'>00_a</a>" in page
    assert "31.25" in page and "600" in page
    assert "ValueError: &lt;bad&gt; input" in page  # escaped
    assert "class='status skipped'" in page
    assert "abc123" in page and "uncommitted changes" in page
    assert (tmp_path / "run.json").is_file()


def test_save_metrics_interactive_default(tmp_path, monkeypatch):
    monkeypatch.setattr(reports.paths, "REPORTS_DIR", tmp_path)
    path = reports.save_metrics("", "00_x", {"a": 1})
    assert path == tmp_path / "interactive" / "00_x" / "metrics.json"
    assert reports.load_metrics(path.parent)["key_figures"] == {"a": 1}


@pytest.mark.browser
def test_index_renders_in_headless_chromium(tmp_path):
    chromium = doctor.find_chromium()
    if chromium is None:
        pytest.skip("chromium not installed (scripts/setup.sh installs it when run as root)")
    reports.write_index(tmp_path, _run_record())
    screenshot = tmp_path / "shot.png"
    profile = tmp_path / "profile"
    profile.mkdir()
    subprocess.run(
        [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", "--window-size=1200,800", f"--screenshot={screenshot}",
            (tmp_path / "index.html").as_uri(),
        ],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    import cv2

    image = cv2.imread(str(screenshot))
    assert image is not None and image.shape[:2] == (800, 1200)
    # The page drew something: not one flat colour, and the red 'failed' badge is there.
    assert image.std() > 10
    red = (image[:, :, 2] > 120) & (image[:, :, 1] < 60) & (image[:, :, 0] < 60)
    assert red.sum() > 20
    assert np.mean(image > 200) > 0.5  # mostly light page


def _write_stage(run_dir, name, details):
    reports.save_metrics(str(run_dir / name), name, {}, details=details)


def _finished_run(goals_met):
    stages = [
        {"name": name, "status": "ok", "report": f"{name}/report.html"}
        for name in ("06_train", "07_analyze", "08_deploy")
    ]
    return {**_run_record(), "status": "ok", "stages": stages}


def _write_finished_stages(run_dir, *, vehicle, zero_shot_vehicle, tracks, plates_small_ap):
    _write_stage(
        run_dir,
        "06_train",
        {
            "state": {"status": "time_limited"},
            "map_trend": {"rising": False},
            "starter_table": [
                {
                    "model": "starter, zero-shot",
                    "vehicle": zero_shot_vehicle,
                    "license_plate": 0.80,
                },
                {"model": "this run (fine-tuned)", "vehicle": vehicle, "license_plate": 0.85},
            ],
        },
    )
    _write_stage(
        run_dir,
        "07_analyze",
        {
            "goals": [
                {"goal": "held-out AP50 vehicle (default profile)", "measured": f"{vehicle}",
                 "target": ">= 0.9", "met": vehicle >= 0.9},
                {"goal": "held-out AP50 license_plate (default profile)", "measured": "0.85",
                 "target": ">= 0.8", "met": True},
            ],
            "heldout": {"plate_heights": [{"bin": "8-16 px", "low": 8.0, "num_gt": 40, "AP50": plates_small_ap}]},
            "overfitting": {"overfitting": False},
            "verdict_frames": ["verdict_01.jpg"],
        },
    )  # fmt: skip
    _write_stage(
        run_dir,
        "08_deploy",
        {"video": {"tracks": {"vehicle": tracks, "license_plate": 5}, "true_counts": {"vehicle": 13, "license_plate": 5}}},
    )  # fmt: skip


def test_track_goal_rows_say_where_the_counts_come_from(tmp_path):
    _write_finished_stages(
        tmp_path, vehicle=0.93, zero_shot_vehicle=0.90, tracks=14, plates_small_ap=0.9
    )
    video = {"tracks": {"vehicle": 14, "license_plate": 4}, "true_counts": {"vehicle": 13, "license_plate": 3}}  # fmt: skip
    video["breakdown"] = {
        "vehicle": {"tracks": 14, "objects": 13, "missed": 1, "fragments": 2, "false": 0, "ignored": 0},
        "license_plate": {"tracks": 4, "objects": 3, "missed": 1, "fragments": 0, "false": 1, "ignored": 1},
    }  # fmt: skip
    _write_stage(tmp_path, "08_deploy", {"video": video})
    verdict = reports.run_verdict(tmp_path, _finished_run(True))
    vehicles, plates = verdict.goals[-2:]
    assert vehicles["measured"] == (
        "14 against 13 true (+8%): 12 followed, 1 missed, 2 extra, 0 on nothing, "
        "0 on vehicles too small to count"
    )
    assert vehicles["met"] is True
    assert plates["measured"].startswith("4 against 3 true (+33%): 2 followed, 1 missed")
    assert plates["met"] is False
    # The advice follows the causes: a track on nothing and one on a plate too small to
    # count, not tracks breaking up.
    steps = " | ".join(verdict.next_steps)
    assert "over-counts license plates: 1 track(s) on nothing" in steps
    assert "1 track(s) follow license plates the truth does not count" in steps
    assert "tracks break up" not in steps


def test_verdict_says_what_missed_and_what_to_do(tmp_path):
    _write_finished_stages(
        tmp_path, vehicle=0.825, zero_shot_vehicle=0.834, tracks=22, plates_small_ap=0.7
    )
    verdict = reports.run_verdict(tmp_path, _finished_run(False))
    assert verdict.headline == "2 of 4 goals met."
    tracked = verdict.goals[2]
    assert tracked["measured"] == "22 against 13 true (+69%)" and tracked["met"] is False
    assert (
        verdict.goals[3]["measured"] == "5 against 5 true (+0%)" and verdict.goals[3]["met"] is True
    )
    assert verdict.frames == ["07_analyze/verdict_01.jpg"]
    steps = " | ".join(verdict.next_steps)
    assert "lost held-out accuracy against the starter as is (vehicle 0.834 -> 0.825)" in steps
    assert "over-counts vehicles" in steps
    assert "Train longer" not in steps  # time-limited, but validation mAP was not rising
    assert "under 16 px" not in steps  # the plate goal was met


def test_small_plate_advice_only_when_the_small_bin_is_below_the_goal(tmp_path):
    for small_ap, advised in ((0.6, True), (0.95, False)):
        _write_finished_stages(
            tmp_path, vehicle=0.93, zero_shot_vehicle=0.9, tracks=13, plates_small_ap=small_ap
        )
        details = reports.load_metrics(tmp_path / "07_analyze")["details"]
        details["goals"][1].update(measured="0.75", met=False)
        _write_stage(tmp_path, "07_analyze", details)
        steps = reports.run_verdict(tmp_path, _finished_run(False)).next_steps
        assert any("under 16 px" in step for step in steps) is advised, small_ap


def test_a_broken_stage_metrics_file_does_not_stop_the_index(tmp_path):
    (tmp_path / "07_analyze").mkdir()
    (tmp_path / "07_analyze" / "metrics.json").write_text('{"details": {"goals": [1, 2]}}')
    reports.write_index(tmp_path, _finished_run(False))
    assert (
        "No verdict: a stage&#x27;s metrics could not be read."
        in (tmp_path / "index.html").read_text()
    )


def test_verdict_when_every_goal_is_met_and_when_a_stage_failed(tmp_path):
    _write_finished_stages(
        tmp_path, vehicle=0.93, zero_shot_vehicle=0.90, tracks=14, plates_small_ap=0.9
    )
    verdict = reports.run_verdict(tmp_path, _finished_run(True))
    assert verdict.headline == "All 4 goals met."
    assert verdict.next_steps == [
        "The detector is ready to deploy: stage 08's exports carry their model cards."
    ]
    # A plate never tracked is a miss, not a missing row; the page written while 08 still
    # runs does not call the detector ready.
    _write_stage(tmp_path, "08_deploy", {"video": {"tracks": {"vehicle": 13}, "true_counts": {"vehicle": 13, "license_plate": 3}}})  # fmt: skip
    running = _finished_run(True)
    assert (
        reports.run_verdict(tmp_path, running).goals[-1]["measured"] == "0 against 3 true (-100%)"
    )
    _write_stage(tmp_path, "08_deploy", {"video": {"tracks": {"vehicle": 13}, "true_counts": {"vehicle": 13}}})  # fmt: skip
    running["stages"][2]["status"] = "running"
    assert not any(
        "ready to deploy" in step for step in reports.run_verdict(tmp_path, running).next_steps
    )
    failed = reports.run_verdict(tmp_path / "none", _run_record())
    assert failed.headline == "The run failed at 01_b."
    assert failed.goals == [] and "ValueError: <bad> input" in failed.next_steps[0]


def test_index_opens_with_the_verdict_and_relative_paths(tmp_path, monkeypatch):
    monkeypatch.setattr(reports.paths, "PROJECT_ROOT", tmp_path)
    _write_finished_stages(
        tmp_path, vehicle=0.825, zero_shot_vehicle=0.834, tracks=22, plates_small_ap=0.7
    )
    run = _finished_run(False)
    run["stages"][0]["key_figures"] = {"run": str(tmp_path / "data" / "default" / "models" / "ssd")}
    reports.write_index(tmp_path, run)
    page = (tmp_path / "index.html").read_text()
    assert page.index("2 of 4 goals met.") < page.index("<h2>Stages</h2>")
    assert "<img src='07_analyze/verdict_01.jpg'" in page
    assert "data/default/models/ssd" in page and str(tmp_path) not in page
    assert str(tmp_path) not in (tmp_path / "run.json").read_text()


def test_clean_outputs_takes_library_lines_out_of_red_blocks(monkeypatch, tmp_path):
    import nbformat

    monkeypatch.setattr(reports.paths, "PROJECT_ROOT", tmp_path)
    stderr = (
        "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
        "fully_quantize: 0, inference_type: 6, input_inference_type: UINT8\n"
        "W0000 00:00:1765000000.123456   12 tf_tfl_flatbuffer_helpers.cc:364] Ignored output_format.\n"
        "INFO:tensorflow:Assets written to: x\n"
        "Traceback: something real\n"
    )
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell(
            "x",
            outputs=[
                nbformat.v4.new_output("stream", name="stderr", text=stderr),
                nbformat.v4.new_output(
                    "stream", name="stdout", text=f"wrote {tmp_path}/data/a.json\n"
                ),
                nbformat.v4.new_output("display_data", data={"text/plain": f"{tmp_path}/models"}),
            ],
        )
    ]
    outputs = reports.clean_outputs(notebook).cells[0].outputs
    assert [(item.output_type, item.get("name")) for item in outputs] == [
        ("stream", "stdout"), ("stream", "stderr"), ("stream", "stdout"), ("display_data", None),
    ]  # fmt: skip
    assert outputs[0].text.startswith("W0000") and "XNNPACK" not in str(outputs)
    assert outputs[1].text == "Traceback: something real\n"
    assert outputs[2].text == "wrote data/a.json\n"
    assert outputs[3].data["text/plain"] == "models"


def test_verdict_does_not_count_goals_that_do_not_apply(tmp_path):
    _write_finished_stages(
        tmp_path, vehicle=0.93, zero_shot_vehicle=0.90, tracks=14, plates_small_ap=0.9
    )
    details = reports.load_metrics(tmp_path / "07_analyze")["details"]
    details["goals"].append({"goal": "validation mAP rising (default profile)", "measured": "x",
                             "target": "n/a: fine-tuned from a detector", "met": None})  # fmt: skip
    _write_stage(tmp_path, "07_analyze", details)
    verdict = reports.run_verdict(tmp_path, _finished_run(True))
    assert verdict.headline == "All 4 goals met." and len(verdict.goals) == 5
    page = reports._index_html(_finished_run(True), verdict)
    assert "<td class='na'>&ndash; n/a</td>" in page
