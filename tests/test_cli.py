"""The shell commands of stages 00-02 (``platelab synth``, ``sample``, ``curate``)."""

import json
import os
import subprocess
import sys

import pytest

from conftest import PROJECT_ROOT


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "platelab", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env=dict(os.environ),
        timeout=600,
    )


@pytest.mark.slow
def test_synth_sample_curate_from_the_shell(tmp_path):
    videos = tmp_path / "synthetic"
    result = _cli(
        "synth",
        "--out",
        videos,
        "--videos",
        2,
        "--seconds",
        3,
        "--fps",
        5,
        "--size",
        "320x180",
        "--seed",
        5,
        "--quiet",
    )
    assert result.returncode == 0, result.stderr
    assert "wrote 2 videos, 30 frames" in result.stdout

    not_a_video = tmp_path / "inputs" / "notes.mp4"
    not_a_video.parent.mkdir()
    not_a_video.write_text("this is not a video")
    frames_dir = tmp_path / "frames"
    result = _cli(
        "sample", videos / "videos", not_a_video, "--out", frames_dir, "--fps", 2, "--quiet"
    )
    assert result.returncode == 0, result.stderr
    manifest = json.loads((frames_dir / "manifest.json").read_text())
    sampled = len(manifest["frames"])
    assert sampled >= 12  # 2 videos x 3 s x 2 fps, plus what ffmpeg's -r adds at the end
    assert f"wrote {sampled} frames from 2 source(s)" in result.stdout
    skipped = [line for line in result.stderr.splitlines() if line.startswith("skipped:")]
    assert len(skipped) == 1 and "notes.mp4" in skipped[0] and "Traceback" not in result.stderr
    assert not_a_video.read_text() == "this is not a video"

    curated_dir = tmp_path / "curated"
    result = _cli("curate", frames_dir, "--out", curated_dir, "--threshold", 3, "--quiet")
    assert result.returncode == 0, result.stderr
    curated = json.loads((curated_dir / "curated.json").read_text())
    assert len(curated["kept"]) + len(curated["dropped"]) == sampled
    assert f"kept {len(curated['kept'])} of {sampled} images" in result.stdout
    kept_lines = (curated_dir / "kept.txt").read_text().split()
    assert len(kept_lines) == len(curated["kept"])


def test_sample_reports_unusable_output_in_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = _cli("sample", tmp_path, "--out", blocker / "frames", "--quiet")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("platelab: error:"), result.stderr


def test_sample_of_a_folder_without_media_says_so(tmp_path):
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "notes.txt").write_text("x")
    result = _cli("sample", empty, "--out", tmp_path / "frames", "--quiet")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"platelab: error: {empty}: no video or image found in this folder"
    ), result.stderr
    assert "nothing to do" not in result.stdout + result.stderr
    assert not (tmp_path / "frames" / "manifest.json").exists()
