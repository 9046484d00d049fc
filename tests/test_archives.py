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
        ("../evil.txt", "points outside the archive (parent path '..')"),
        ("a/../../evil.txt", "points outside the archive (parent path '..')"),
        ("/etc/evil.txt", "has an absolute path"),
        ("C:/evil.txt", "has an absolute path"),
        ("..\\evil.txt", "points outside the archive (parent path '..')"),
    ],
)
def test_skips_paths_outside(tmp_path, name, message):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("ok.txt", "fine")
        info = zipfile.ZipInfo(name)
        handle.writestr(info, "evil")
        handle.writestr("after.txt", "also fine")
    before = archive.read_bytes()
    skipped = []
    names = safe_extract(archive, tmp_path / "work" / "out", skipped=skipped)
    assert names == ["ok.txt", "after.txt"]
    assert skipped == [(name, None, f"{archive}: member {name!r} {message}; skipped")]
    assert sorted(path.name for path in (tmp_path / "work").rglob("*")) == [
        "after.txt",
        "ok.txt",
        "out",
    ]
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "work" / "evil.txt").exists()
    assert archive.read_bytes() == before


def test_skips_symlink_and_special_files(tmp_path):
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        info = zipfile.ZipInfo("link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        handle.writestr(info, "/etc/passwd")
        fifo = zipfile.ZipInfo("fifo")
        fifo.external_attr = (stat.S_IFIFO | 0o644) << 16
        handle.writestr(fifo, "")
        handle.writestr("kept.txt", "fine")
    skipped = []
    assert safe_extract(archive, tmp_path / "out", skipped=skipped) == ["kept.txt"]
    assert [item.message for item in skipped] == [
        f"{archive}: member 'link' is a symbolic link; skipped",
        f"{archive}: member 'fifo' is not a regular file (a device, pipe or socket); skipped",
    ]
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["kept.txt"]


def test_skipped_members_are_logged_without_a_list(tmp_path, caplog):
    archive = _zip(tmp_path / "a.zip", {"ok.txt": "fine", "../evil.txt": "evil"})
    assert safe_extract(archive, tmp_path / "out") == ["ok.txt"]
    assert [record.getMessage() for record in caplog.records] == [
        f"{archive}: member '../evil.txt' points outside the archive (parent path '..'); skipped"
    ]


def test_caps_zip_bomb(tmp_path):
    archive = _zip(
        tmp_path / "bomb.zip", {"zeros.bin": b"\0" * (50 * 1024 * 1024), "small.txt": "kept"}
    )
    assert archive.stat().st_size < 200_000
    skipped = []
    assert safe_extract(archive, tmp_path / "out", skipped=skipped) == ["small.txt"]
    assert [item.message for item in skipped] == [
        f"{archive}: member 'zeros.bin' is too large (expands more than 200x; zip bomb?); skipped"
    ]
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["small.txt"]
    # The total cap: a member that would pass it is skipped, later ones that fit still come.
    big = _zip(tmp_path / "big.zip", {"a": "x" * 600, "b": "y" * 600, "c": "z" * 300})
    skipped = []
    names = safe_extract(
        big, tmp_path / "out2", max_total_bytes=1000, max_ratio=10**6, skipped=skipped
    )
    assert names == ["a", "c"]
    assert [item.message for item in skipped] == [
        f"{big}: member 'b' is too large (600 bytes, more than the 400 left under the "
        "archive's size cap; zip bomb?); skipped"
    ]
    assert sum(path.stat().st_size for path in (tmp_path / "out2").iterdir()) == 900


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_corrupt_duplicate_and_clashing_members(tmp_path):
    archive = tmp_path / "mixed.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as handle:
        handle.writestr("broken.txt", "a" * 5000)
        handle.writestr("twice.txt", "first")
        handle.writestr("twice.txt", "second")
        handle.writestr("file", "a file")
        handle.writestr("file/inside.txt", "needs 'file' to be a folder")
        handle.writestr("good.txt", "fine")
    data = bytearray(archive.read_bytes())
    start = data.index(b"broken.txt") + len("broken.txt")  # the local header's name, then data
    data[start + 2 : start + 12] = b"\xff" * 10
    archive.write_bytes(bytes(data))
    skipped = []
    names = safe_extract(archive, tmp_path / "out", skipped=skipped)
    assert names == ["twice.txt", "file", "good.txt"]
    assert len(skipped) == 3
    assert [item.path for item in skipped] == ["broken.txt", "twice.txt", "file/inside.txt"]
    skipped = [item.message for item in skipped]
    assert skipped[0].startswith(f"{archive}: member 'broken.txt' is corrupt or unsupported (")
    assert skipped[1] == (
        f"{archive}: member 'twice.txt' appears more than once (the first copy kept); skipped"
    )
    assert skipped[2].startswith(f"{archive}: member 'file/inside.txt' cannot be written (")
    assert all(line.endswith("; skipped") and "\n" not in line for line in skipped)
    assert (tmp_path / "out" / "twice.txt").read_text() == "first"
    assert not (tmp_path / "out" / "broken.txt").exists()


def test_too_many_members_refuses_the_archive(tmp_path):
    archive = _zip(tmp_path / "many.zip", {f"{index}.txt": "x" for index in range(5)})
    with pytest.raises(ArchiveError, match="5 members, more than the cap of 4"):
        safe_extract(archive, tmp_path / "work" / "out", max_files=4)
    assert not (tmp_path / "work").exists() or not list((tmp_path / "work").iterdir())


def test_not_a_zip(tmp_path):
    fake = tmp_path / "fake.zip"
    fake.write_text("hello")
    with pytest.raises(ArchiveError, match="not a readable zip"):
        safe_extract(fake, tmp_path / "out")
