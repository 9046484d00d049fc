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
