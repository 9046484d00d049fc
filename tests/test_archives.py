"""Safe zip extraction (platelab.archives)."""

import stat
import zipfile

import pytest

from platelab.archives import ArchiveError, safe_extract


def _zip(path, members):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_extracts_normal_archive(tmp_path):
    archive = _zip(
        tmp_path / "a.zip",
        {"Annotations/x.xml": "<a/>", "JPEGImages/x.jpg": b"\xff\xd8", "dir/": ""},
    )
    names = safe_extract(archive, tmp_path / "out")
    assert sorted(names) == ["Annotations/x.xml", "JPEGImages/x.jpg"]
    assert (tmp_path / "out" / "Annotations" / "x.xml").read_text() == "<a/>"
    assert not list(tmp_path.glob(".*extracting"))


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../evil.txt", "points outside the archive"),
        ("a/../../evil.txt", "points outside the archive"),
        ("/etc/evil.txt", "absolute path"),
        ("C:/evil.txt", "absolute path"),
        ("..\\evil.txt", "points outside the archive"),
    ],
)
def test_refuses_paths_outside(tmp_path, name, message):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("ok.txt", "fine")
        info = zipfile.ZipInfo(name)
        handle.writestr(info, "evil")
    with pytest.raises(ArchiveError, match=message) as error:
        safe_extract(archive, tmp_path / "work" / "out")
    assert str(archive) in str(error.value)
    assert not (tmp_path / "work" / "out").exists()
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "work" / "evil.txt").exists()
    assert not list((tmp_path / "work").iterdir())


def test_refuses_symlink(tmp_path):
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        info = zipfile.ZipInfo("link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        handle.writestr(info, "/etc/passwd")
    with pytest.raises(ArchiveError, match="symbolic link"):
        safe_extract(archive, tmp_path / "out")


def test_caps_zip_bomb(tmp_path):
    archive = _zip(tmp_path / "bomb.zip", {"zeros.bin": b"\0" * (50 * 1024 * 1024)})
    assert archive.stat().st_size < 200_000
    with pytest.raises(ArchiveError, match="zip bomb"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(ArchiveError, match="more than 1000 bytes"):
        safe_extract(
            _zip(tmp_path / "big.zip", {"a": "x" * 600, "b": "y" * 600}),
            tmp_path / "out",
            max_total_bytes=1000,
            max_ratio=10**6,
        )


def test_not_a_zip(tmp_path):
    fake = tmp_path / "fake.zip"
    fake.write_text("hello")
    with pytest.raises(ArchiveError, match="not a readable zip"):
        safe_extract(fake, tmp_path / "out")
