"""platelab.annotate.openalpr: OpenALPR benchmark annotations read into VOC."""

import cv2
import numpy as np
import pytest

from platelab import annotations
from platelab.annotate import openalpr


def _photo(folder, name, width=320, height=180):
    image = np.full((height, width, 3), 90, dtype=np.uint8)
    cv2.imwrite(str(folder / name), image)


@pytest.fixture
def benchmark_folder(tmp_path):
    folder = tmp_path / "us"
    folder.mkdir()
    _photo(folder, "car1.jpg")
    (folder / "car1.txt").write_text("car1.jpg\t100\t60\t40\t20\tABC1234\n")
    _photo(folder, "car2.jpg")
    (folder / "car2.txt").write_text("car2.jpg 300 170 60 30 XYZ\n")  # runs off the photo
    _photo(folder, "broken.jpg")
    (folder / "broken.txt").write_text("broken.jpg 10 ten 40 20 AB\n")
    (folder / "nophoto.txt").write_text("nophoto.jpg 10 10 40 20 AB\n")
    return folder


def test_reads_boxes_and_text_and_reports_bad_files(benchmark_folder):
    images, problems = openalpr.read_openalpr_folder(benchmark_folder)
    assert [image.name for image in images] == ["car1", "car2"]
    first = images[0]
    assert (first.width, first.height) == (320, 180)
    assert first.objects == [
        {
            "label": "license_plate",
            "bbox": [100.0, 60.0, 140.0, 80.0],
            "attributes": {"text": "ABC1234"},
        }
    ]
    assert images[1].objects[0]["bbox"] == [300.0, 170.0, 320.0, 180.0]  # clipped
    assert len(problems) == 2
    assert any("broken.txt" in problem and "line 1" in problem for problem in problems)
    assert any("nophoto.jpg" in problem and "missing" in problem for problem in problems)
    assert all("\n" not in problem for problem in problems)


def test_box_outside_the_photo_and_two_photos_in_one_file(tmp_path):
    folder = tmp_path / "eu"
    folder.mkdir()
    _photo(folder, "a.jpg")
    (folder / "a.txt").write_text("a.jpg 500 500 40 20 X\n")
    _photo(folder, "b.jpg")
    (folder / "b.txt").write_text("b.jpg 1 1 40 20 X\nc.jpg 1 1 40 20 Y\n")
    images, problems = openalpr.read_openalpr_folder(folder)
    assert images == []
    assert any("outside the 320x180 photo" in problem for problem in problems)
    assert any("names two photos" in problem for problem in problems)


def test_written_voc_loads_and_the_source_is_untouched(benchmark_folder, tmp_path):
    before = {path.name: path.read_bytes() for path in benchmark_folder.iterdir()}
    destination = tmp_path / "voc"
    images, problems = openalpr.write_openalpr_voc(benchmark_folder, destination)
    assert len(images) == 2 and len(problems) == 2
    batch = annotations.load_batch(destination)
    boxes = {record.name: [item["bbox"] for item in record.objects] for record in batch.records}
    assert boxes == {"car1": [[100.0, 60.0, 140.0, 80.0]], "car2": [[300.0, 170.0, 320.0, 180.0]]}
    assert {item["label"] for record in batch.records for item in record.objects} == {
        "license_plate"
    }
    assert {path.name: path.read_bytes() for path in benchmark_folder.iterdir()} == before


def test_missing_folder_and_empty_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        openalpr.read_openalpr_folder(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no annotated OpenALPR photos"):
        openalpr.write_openalpr_voc(tmp_path / "empty", tmp_path / "voc")
