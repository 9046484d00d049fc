"""Fingerprints, git info and atomic writes (platelab.metadata, platelab.atomic)."""

import pytest

from platelab import atomic, metadata


def test_fingerprint_tracks_content_names_and_membership(tmp_path):
    folder = tmp_path / "tree"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("a")
    (folder / "sub" / "b.txt").write_text("b")
    first = metadata.fingerprint(folder, tmp_path)
    assert first["files"] == 2 and first["bytes"] == 2 and first["path"] == "tree"
    assert metadata.fingerprint(folder)["sha256"] == first["sha256"]
    (folder / "a.txt").write_text("A")
    edited = metadata.fingerprint(folder)["sha256"]
    assert edited != first["sha256"]
    (folder / "a.txt").rename(folder / "c.txt")
    assert metadata.fingerprint(folder)["sha256"] not in (first["sha256"], edited)
    single = metadata.fingerprint(folder / "c.txt")
    assert single["files"] == 1 and len(single["sha256"]) == 64


def test_git_info_outside_a_repository(tmp_path):
    info = metadata.git_info(tmp_path)
    assert info == {"commit": None, "branch": None, "dirty": None}


def test_package_versions():
    versions = metadata.package_versions()
    assert versions["python"] and versions["numpy"] and versions["papermill"]


def test_atomic_dir_keeps_previous_result_on_failure(tmp_path):
    target = tmp_path / "out"
    with atomic.atomic_dir(target) as staging:
        (staging / "result.txt").write_text("first")
    with pytest.raises(RuntimeError), atomic.atomic_dir(target) as staging:
        (staging / "result.txt").write_text("half")
        raise RuntimeError("interrupted")
    assert (target / "result.txt").read_text() == "first"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out"]
    with atomic.atomic_dir(target) as staging:
        (staging / "result.txt").write_text("second")
    assert (target / "result.txt").read_text() == "second"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out"]


def test_atomic_write_leaves_no_temporary(tmp_path):
    path = tmp_path / "x.json"
    atomic.atomic_write_json(path, {"a": 1})
    atomic.atomic_write_json(path, {"a": 2})
    assert path.read_text().strip().endswith("}")
    assert [item.name for item in tmp_path.iterdir()] == ["x.json"]


def test_sha256_file(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"abc")
    expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert metadata.sha256_file(path) == expected
    assert metadata.sha256_file(path, chunk_size=1) == expected


def test_json_default_writes_paths_and_numpy_values(tmp_path):
    import json
    from pathlib import Path

    import numpy as np

    document = {
        "path": Path("a/b"),
        "count": np.int64(3),
        "share": np.float32(0.5),
        "flag": np.bool_(True),
        "one": np.array([7]),
    }
    text = json.dumps(document, default=atomic.json_default)
    assert json.loads(text) == {"path": "a/b", "count": 3, "share": 0.5, "flag": True, "one": 7}
    with pytest.raises(TypeError, match="not JSON serializable: object"):
        json.dumps({"x": object()}, default=atomic.json_default)
    atomic.atomic_write_json(tmp_path / "doc.json", {"n": np.int32(2), "p": Path("q")})
    assert json.loads((tmp_path / "doc.json").read_text()) == {"n": 2, "p": "q"}
