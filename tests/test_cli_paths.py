"""Every ``platelab`` path argument is relative to the current directory, not the project root.

Each command runs from a folder outside the (stand-in) project root with
relative paths; what it reads and writes must be under that folder, and
nothing may appear in the project root. Where the real work would take long
(training, a model), the library function is replaced by one that records
the paths it was given.
"""

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import PROJECT_ROOT, write_notebook
from platelab import analyze, cli, detector, paths, runner, train
from platelab.deploy import export, video


class Recorded(Exception):
    """Raised by a stand-in after recording its arguments."""


@pytest.fixture
def here(tmp_path, monkeypatch):
    """The current directory, outside the project root (replaced by an empty stand-in)."""
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.setattr(paths, "PROJECT_ROOT", project)
    folder = tmp_path / "elsewhere" / "here"
    folder.mkdir(parents=True)
    monkeypatch.chdir(folder)
    yield folder
    assert not list(project.iterdir()), "something was written into the project root"


def _main(*argv):
    return cli.main([str(item) for item in argv])


def _image(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    cv2.imwrite(str(path), pixels)
    return path


def _voc(folder, names=("a", "b")):
    for seed, name in enumerate(names):
        _image(folder / "JPEGImages" / f"{name}.png", seed)
        (folder / "Annotations").mkdir(parents=True, exist_ok=True)
        (folder / "Annotations" / f"{name}.xml").write_text(
            f"<annotation><filename>{name}.png</filename><size><width>64</width>"
            "<height>48</height></size><object><name>car</name><bndbox><xmin>2</xmin>"
            "<ymin>4</ymin><xmax>40</xmax><ymax>30</ymax></bndbox></object></annotation>"
        )
    return folder


def test_from_cwd():
    assert paths.from_cwd("data/x") == paths.Path.cwd() / "data" / "x"
    assert paths.from_cwd("/abs/x") == paths.Path("/abs/x")
    assert paths.from_cwd("~/x") == paths.Path.home() / "x"
    assert paths.from_cwd("../x") == paths.Path.cwd() / ".." / "x"  # left for the system


def test_train_from_another_folder_names_the_folder_there(tmp_path):
    """The issue's case, as a shell user meets it: a separate process, run from elsewhere."""
    folder = tmp_path / "mine"
    folder.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "platelab", "train", "--data", "emptyd", "--out", "r"],
        capture_output=True,
        text=True,
        cwd=folder,
        env=dict(os.environ),
        timeout=300,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == f"platelab: error: {folder / 'emptyd'}: no such dataset folder"
    assert not (PROJECT_ROOT / "emptyd").exists() and not (PROJECT_ROOT / "r").exists()
    assert list(folder.iterdir()) == []


def test_train_paths(here, monkeypatch):
    calls = []

    def fake_train(data, out, values, **kwargs):
        calls.append((data, out, values))
        raise Recorded("recorded")

    monkeypatch.setattr(train, "train", fake_train)
    (here / "p.yaml").write_text("06_train:\n  steps: 3\n")
    (here / "weights.h5").write_bytes(b"")
    assert (
        _main(
            "train", "--data", "d", "--out", "runs/x", "--params", "p.yaml", "--init", "weights.h5"
        )
        == 2
    )
    data, out, values = calls[0]
    assert (data, out) == (here / "d", here / "runs" / "x")
    assert values["steps"] == 3  # read from ./p.yaml
    assert values["init"] == str(here / "weights.h5")
    calls.clear()
    assert _main("train", "--data", "d", "--out", "r", "--init", "auto") == 2
    assert calls[0][2]["init"] == "auto"


def test_run_and_stages_paths(here, monkeypatch, capsys):
    notebooks = here / "nb"
    notebooks.mkdir()
    write_notebook(
        notebooks / "00_data.ipynb",
        ["pass"],
        'workspace: str = "w"  # a folder\nreport_dir: str = ""  # set by the runner\n',
    )
    (here / "p.yaml").write_text("common:\n  workspace: w\n")

    def fake_stage(stage, stage_dir, parameters, kernel_name):
        # As the notebook does, run from the project root: report_dir must already be absolute.
        from platelab import reports

        reports.save_metrics(str(stage_dir), stage.name, {"done": 1})
        return None

    monkeypatch.setattr(runner, "_execute_stage", fake_stage)
    status = _main(
        "run", "--params", "p.yaml", "--notebooks", "nb", "--reports", "rep", "--run-id", "x"
    )
    assert status == 0, capsys.readouterr()
    assert (here / "rep" / "x" / "index.html").is_file()
    assert (here / "rep" / "x" / "00_data" / "metrics.json").is_file()
    capsys.readouterr()
    assert _main("stages", "--notebooks", "nb") == 0
    assert capsys.readouterr().out.splitlines()[0] == "00_data"


def test_synth_sample_curate_paths(here, capsys):
    assert (
        _main(
            "synth",
            "--out",
            "vids",
            "--videos",
            1,
            "--seconds",
            1,
            "--fps",
            2,
            "--size",
            "64x48",
            "--quiet",
        )
        == 0
    )
    assert (here / "vids" / "manifest.json").is_file()
    _image(here / "photos" / "one.png", 1)
    _image(here / "photos" / "two.png", 2)
    assert _main("sample", "vids/videos", "photos/*.png", "--out", "frames", "--quiet") == 0
    manifest = json.loads((here / "frames" / "manifest.json").read_text())
    assert len(manifest["sources"]) == 3 and not manifest["problems"]
    assert _main("curate", "frames", "--out", "curated", "--quiet") == 0
    assert (here / "curated" / "curated.json").is_file()
    printed = capsys.readouterr().out
    assert f"to {here / 'vids'}" in printed and f"to {here / 'frames'}" in printed


def test_merge_paths(here, capsys):
    _voc(here / "batches" / "task_1")
    (here / "aliases.yaml").write_text("vehicle: [car]\n")
    (here / "index.json").write_text('{"images": []}')
    status = _main(
        "merge",
        "batches",
        "--out",
        "ds",
        "--aliases",
        "aliases.yaml",
        "--index",
        "index.json",
        "--no-tfrecords",
        "--quiet",
    )
    assert status == 0, capsys.readouterr().err
    assert (here / "ds" / "dataset.json").is_file()
    assert f"into {here / 'ds'}" in capsys.readouterr().out


def test_predict_and_evaluate_paths(here, monkeypatch, capsys):
    _voc(here / "voc")
    (here / "aliases.yaml").write_text("vehicle: [car]\n")
    (here / "preds.json").write_text(
        json.dumps([{"image": "a.png", "label": "car", "score": 0.9, "bbox": [2, 4, 40, 30]}])
    )
    status = _main(
        "evaluate",
        "--predictions",
        "preds.json",
        "--data",
        "voc",
        "--out",
        "out/metrics.json",
        "--aliases",
        "aliases.yaml",
    )
    assert status == 0, capsys.readouterr().err
    metrics = json.loads((here / "out" / "metrics.json").read_text())
    assert metrics["num_images"] == 2 and metrics["data"] == [str(here / "voc")]

    loaded = []

    class FakeDetector:
        labels = ["vehicle", "license_plate"]

        def predict(self, images, score_threshold=None):
            return [{"boxes": [[2, 4, 40, 30]], "scores": [0.8], "labels": ["vehicle"]}] * len(
                images
            )

    def fake_load(path, *args, **kwargs):
        loaded.append(path)
        return FakeDetector()

    monkeypatch.setattr(detector, "load", fake_load)
    status = _main(
        "evaluate",
        "--model",
        "run",
        "--data",
        "voc",
        "--out",
        "m2.json",
        "--save-predictions",
        "saved.json",
    )
    assert status == 0, capsys.readouterr().err
    assert loaded == [here / "run"]
    assert (here / "m2.json").is_file() and (here / "saved.json").is_file()

    folders = []

    def fake_predict_folder(model, images_dir, **kwargs):
        folders.append(images_dir)
        return [], [], []

    monkeypatch.setattr(detector, "predict_folder", fake_predict_folder)
    loaded.clear()
    assert _main("predict", "--model", "run", "--images", "voc/JPEGImages", "--out", "p.json") == 0
    assert loaded == [here / "run"] and folders == [here / "voc" / "JPEGImages"]
    assert json.loads((here / "p.json").read_text()) == []


def test_export_and_video_paths(here, monkeypatch):
    calls = []

    def fake_export(model, format, out, **kwargs):
        calls.append((model, out, kwargs.get("representative")))
        raise Recorded("recorded")

    monkeypatch.setattr(export, "export", fake_export)
    assert (
        _main(
            "export",
            "--model",
            "run",
            "--format",
            "tflite",
            "--out",
            "exports/t",
            "--representative",
            "ds",
        )
        == 2
    )
    assert calls == [(here / "run", here / "exports" / "t", here / "ds")]

    (here / "in.mp4").write_bytes(b"")
    (here / "out").mkdir()
    predictors = []

    def fake_load_predictor(model, **kwargs):
        predictors.append(model)
        return object()

    def fake_annotate(predictor, input_path, output_path, **kwargs):
        calls.append((input_path, output_path))
        raise Recorded("recorded")

    monkeypatch.setattr(export, "load_predictor", fake_load_predictor)
    monkeypatch.setattr(video, "annotate_video", fake_annotate)
    assert (
        _main("video", "--model", "exports/t", "--input", "in.mp4", "--output", "out/annotated.mp4")
        == 2
    )
    assert predictors == [here / "exports" / "t"]
    assert calls[-1] == (here / "in.mp4", here / "out" / "annotated.mp4")


CHECK_PARAMS = "import sys, pathlib; sys.exit(0 if pathlib.Path(sys.argv[1]).is_file() else 3)"


def test_sweep_paths(here, monkeypatch, capsys):
    notebooks = here / "nb"
    notebooks.mkdir()
    parameters = 'workspace: str = ""  # a folder\nseed: int = 0  # a seed\n'
    write_notebook(notebooks / "00_data.ipynb", ["pass"], parameters)
    (here / "grids").mkdir()
    (here / "grids" / "base.yaml").write_text("common:\n  workspace: w\n  seed: 0\n")
    (here / "grids" / "grid.yaml").write_text("base: base.yaml\ngrid:\n  common.seed: [1, 2]\n")
    commands = []

    def fake_command(params_file, run_id, reports_dir, stages=None):
        # The sweep starts each run from the project root: the parameter file must be absolute.
        commands.append(params_file)
        return [sys.executable, "-c", CHECK_PARAMS, str(params_file)]

    monkeypatch.setattr(analyze, "default_sweep_command", fake_command)
    status = _main(
        "sweep", "--params-grid", "grids/grid.yaml", "--reports", "rep", "--notebooks", "nb"
    )
    assert status == 0, capsys.readouterr()
    assert len(commands) == 2
    assert all(path.is_relative_to(here / "rep") for path in commands)
    (sweep_dir,) = (here / "rep").iterdir()
    assert (sweep_dir / "sweep.json").is_file()
