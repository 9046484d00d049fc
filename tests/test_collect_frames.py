"""Stage 01 frame sampling (platelab.collect.frames): seed-identical frames, cuts, photos, bad inputs."""

import errno
import hashlib
import io
import json
import subprocess

import cv2
import numpy as np
import pytest

from platelab import signatures
from platelab.collect import frames, probe
from platelab.ffmpeg import ffmpeg_exe

SIZE = "320x240"


def ffmpeg(*arguments):
    subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *map(str, arguments)],
        check=True,
    )


def make_video(path, seconds=3, rate=25, extra=()):
    ffmpeg(
        "-f", "lavfi", "-i", f"testsrc2=size={SIZE}:rate={rate}:duration={seconds}",
        *extra, "-c:v", "libx264", "-pix_fmt", "yuv420p", path,
    )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """Videos and photos for the module (small; a few seconds to build)."""
    folder = tmp_path_factory.mktemp("frames-media")
    files = {"plain": make_video(folder / "plain.mp4")}
    files["ntsc"] = make_video(folder / "ntsc.mp4", seconds=2.5, rate="30000/1001")
    files["rotated"] = folder / "rotated.mp4"
    ffmpeg("-display_rotation:v:0", 90, "-i", files["plain"], "-c", "copy", files["rotated"])
    files["vfr"] = make_video(
        folder / "vfr.mp4",
        seconds=4,
        rate=30,
        extra=["-vf", "settb=1/100,setpts='if(lt(N,50),N*4,200+(N-50)*10)'"]
        + ["-fps_mode", "vfr", "-enc_time_base:v", "1/100"],
    )
    files["tagged"] = folder / "tagged.mov"  # full range, BT.709: the conversion must follow
    ffmpeg(
        "-f", "lavfi", "-i", f"testsrc2=size={SIZE}:rate=24:duration=2", "-c:v", "libx264",
        "-pix_fmt", "yuvj420p", "-colorspace", "bt709", "-color_primaries", "bt709",
        "-color_trc", "bt709", files["tagged"],
    )  # fmt: skip
    files["late"] = folder / "late.mp4"  # the audio starts 2 s before the video
    ffmpeg(
        "-f", "lavfi", "-i", f"testsrc2=size={SIZE}:rate=25:duration=3",
        "-f", "lavfi", "-i", "sine=duration=5", "-filter_complex", "[0:v]setpts=PTS+2/TB[v]",
        "-map", "[v]", "-map", "1:a", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac",
        files["late"],
    )  # fmt: skip
    files["hevc10"] = folder / "hevc10.mp4"
    ffmpeg(
        "-f", "lavfi", "-i", f"testsrc2=size={SIZE}:rate=25:duration=2", "-c:v", "libx265",
        "-pix_fmt", "yuv420p10le", "-x265-params", "log-level=none", files["hevc10"],
    )  # fmt: skip
    files["dead"] = folder / "dead.mp4"
    ffmpeg(
        "-f", "lavfi", "-i", f"testsrc2=size={SIZE}:rate=25:duration=2,noise=alls=6:allf=t",
        "-f", "lavfi", "-i", f"color=black:size={SIZE}:rate=25:duration=2",
        "-filter_complex", "[0:v][1:v][0:v]concat=n=3:v=1:a=0[out]", "-map", "[out]",
        "-c:v", "libx264", "-pix_fmt", "yuv420p", files["dead"],
    )  # fmt: skip
    return files


@pytest.fixture
def bad_batch(media, tmp_path):
    """A folder mixing good and bad inputs, with spaces and non-ASCII characters in names."""
    folder = tmp_path / "in put"
    folder.mkdir()
    (folder / "zero.mp4").write_bytes(b"")
    (folder / "truncated.mp4").write_bytes(media["plain"].read_bytes()[:20000])
    (folder / "notes.mp4").write_text("meeting notes, not a video\n")
    ffmpeg("-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac", folder / "audio only.mp4")
    (folder / "broken.jpg").write_bytes(bytes(range(256)) * 8)
    (folder / "rue de l'été.mp4").write_bytes(media["plain"].read_bytes())
    (folder / "hevc10.mp4").write_bytes(media["hevc10"].read_bytes())
    # moov first, then cut at 60%: the start stays readable
    ffmpeg("-i", media["plain"], "-c", "copy", "-movflags", "+faststart", folder / "full.mov")
    data = (folder / "full.mov").read_bytes()
    (folder / "full.mov").unlink()
    (folder / "cut short.mp4").write_bytes(data[: len(data) * 6 // 10])
    # garbage in the middle of the media data: the decoder reports corrupt frames
    make_video(folder / "damaged.mp4", seconds=6, extra=["-g", "50", "-movflags", "+faststart"])
    damaged = bytearray((folder / "damaged.mp4").read_bytes())
    middle = len(damaged) // 2
    damaged[middle : middle + 3000] = bytes((index * 97 + 13) % 251 for index in range(3000))
    (folder / "damaged.mp4").write_bytes(bytes(damaged))
    make_photos(folder)
    return folder


def make_photos(folder):
    from PIL import Image

    rgba = np.zeros((40, 60, 4), np.uint8)
    rgba[:, :30] = (0, 0, 255, 255)  # opaque red (BGRA) on the left, transparent on the right
    rgba[:, 30:] = (0, 255, 0, 0)
    cv2.imwrite(str(folder / "alpha.png"), rgba)
    gray = np.tile(np.arange(60, dtype=np.uint8) * 4, (40, 1))
    cv2.imwrite(str(folder / "gray.jpg"), gray, [cv2.IMWRITE_JPEG_QUALITY, 100])
    deep = np.full((40, 60, 3), 65535, np.uint16)
    deep[:, :30] = 257 * 100
    cv2.imwrite(str(folder / "deep.png"), deep)
    upright = np.zeros((40, 60, 3), np.uint8)
    upright[:20] = 255  # white top half, black bottom half (stored sideways below)
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(upright[:, :, ::-1], 1)))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    stored.save(folder / "sideways.jpg", exif=exif, quality=100)


def fingerprints(folder):
    return {
        path: (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def run_seed(video, folder):
    """The seed's own command: ffmpeg -i VIDEO -r 2 -q:v 1 image_name_%4d.png."""
    folder.mkdir(parents=True)
    ffmpeg("-i", video, "-r", 2, "-q:v", 1, folder / "image_name_%4d.png")
    return sorted(folder.glob("image_name_*.png"))


def test_find_inputs_collects_files_folders_and_globs(media, tmp_path):
    (tmp_path / "a" / ".hidden").mkdir(parents=True)
    (tmp_path / "a" / "clip.MP4").write_bytes(b"x")
    (tmp_path / "a" / "photo.jpg").write_bytes(b"x")
    (tmp_path / "a" / "readme.txt").write_text("x")
    (tmp_path / "a" / ".hidden" / "skip.mp4").write_bytes(b"x")
    (tmp_path / "b.webp").write_bytes(b"x")
    (tmp_path / "c.txt").write_text("x")
    videos, photos, problems = frames.find_inputs(
        [tmp_path / "a", str(tmp_path / "*.webp"), tmp_path / "a" / "clip.MP4"]
        + [tmp_path / "c.txt", tmp_path / "missing", str(tmp_path / "*.mkv"), "rtsp://cam/1"]
    )
    assert videos == [tmp_path / "a" / "clip.MP4"]
    assert photos == [tmp_path / "a" / "photo.jpg", tmp_path / "b.webp"]
    assert problems == [
        f"{tmp_path / 'c.txt'}: unsupported file type (.txt)",
        f"{tmp_path / 'missing'}: no such file or folder",
        f"{tmp_path / '*.mkv'}: no files match",
        "rtsp://cam/1: a live source; record it first with record(url, seconds, path)",
    ]
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "notes.txt").write_text("x")
    assert frames.find_inputs([tmp_path / "empty", tmp_path / "a"])[2] == [
        f"{tmp_path / 'empty'}: no video or image found in this folder"
    ]


@pytest.mark.parametrize(
    "name",
    [
        "plain",
        "ntsc",
        "rotated",
        "vfr",
        "late",
        "tagged",
        "rotated-direct",
        "vfr-direct",
        "plain-opencv",
        "rotated-opencv",
    ],
)
def test_frames_are_pixel_identical_to_the_seed_command(media, tmp_path, name, monkeypatch):
    if name.endswith("-opencv"):
        # OpenCV's PNG encoder, the one used where isal is not installed
        monkeypatch.setattr(frames, "isal_zlib", None)
        name = name.removesuffix("-opencv")
    if name.endswith("-direct"):
        # RGB conversion in the decoding ffmpeg (the path for less common pixel formats)
        monkeypatch.setattr(probe, "SEPARATE_CONVERSION_FORMATS", frozenset())
        name = name.removesuffix("-direct")
    manifest = frames.sample([media[name]], tmp_path / "out", progress=False)
    seed = run_seed(media[name], tmp_path / "seed")
    source = manifest["sources"][0]
    assert source["status"] == "ok" and source["segments"] == [] and not manifest["problems"]
    assert len(manifest["frames"]) + source["duplicates"] == len(seed)
    expected_size = (240, 320) if name == "rotated" else (320, 240)
    times = []
    folder = manifest["sources"][0]["source_id"]
    for frame in manifest["frames"]:
        ours = cv2.imread(str(tmp_path / "out" / frame["image"]), cv2.IMREAD_UNCHANGED)
        theirs = cv2.imread(str(seed[frame["sample_index"]]), cv2.IMREAD_UNCHANGED)
        assert ours.shape == theirs.shape == (expected_size[1], expected_size[0], 3)
        assert np.array_equal(ours, theirs), frame["image"]
        assert (frame["width"], frame["height"]) == expected_size
        assert frame["image"] == f"{folder}/{folder}_t{round(frame['time'] * 1000):08d}.png"
        times.append(frame["time"])
    assert times == sorted(times) and len(set(times)) == len(times)
    if name == "vfr":
        # the rate drops from 25 to 10 fps at 2 s: frames still come every 0.5 s
        assert times[-1] == pytest.approx(8.9, abs=0.11) and len(times) >= 18
    if name == "late":
        # the seed repeats the first picture over the 2 s without video; we keep it once
        assert source["kept"] == [[2.0, 5.0]] and times[0] == 2.0 and source["duplicates"] == 3


def test_isal_and_opencv_pngs_hold_the_same_pixels_and_signatures(media, tmp_path, monkeypatch):
    fast = frames.sample([media["plain"]], tmp_path / "isal", progress=False)
    monkeypatch.setattr(frames, "isal_zlib", None)
    slow = frames.sample([media["plain"]], tmp_path / "opencv", progress=False)
    assert fast["frames"] and fast["frames"] == slow["frames"]
    assert np.array_equal(
        np.load(tmp_path / "isal" / frames.SIGNATURES_NAME),
        np.load(tmp_path / "opencv" / frames.SIGNATURES_NAME),
    )
    for frame in fast["frames"]:
        ours = cv2.imread(str(tmp_path / "isal" / frame["image"]), cv2.IMREAD_UNCHANGED)
        theirs = cv2.imread(str(tmp_path / "opencv" / frame["image"]), cv2.IMREAD_UNCHANGED)
        assert ours is not None and np.array_equal(ours, theirs), frame["image"]


@pytest.mark.parametrize("shape", [(1, 1, 3), (2, 7, 3), (9, 4, 3), (240, 320, 3)])
def test_png_writer_is_lossless(shape):
    from PIL import Image

    rgb = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    data = frames._png_bytes(rgb[:, ::-1][:, ::-1])  # strided input is fine too
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert decoded.dtype == np.uint8 and np.array_equal(decoded[:, :, ::-1], rgb)
    with Image.open(io.BytesIO(data)) as image:  # Pillow checks every chunk's CRC
        image.load()
        assert image.mode == "RGB" and np.array_equal(np.asarray(image), rgb)


def test_sampling_rate_and_frame_indices(media, tmp_path):
    manifest = frames.sample(media["plain"], tmp_path / "out", fps=5, progress=False)
    found = manifest["frames"]
    assert manifest["parameters"]["fps"] == 5
    # ffmpeg -r 5 on 25 fps: frames 0 and 1, then every 5th frame from 4 (t >= (n - 1.3) / 5)
    assert [frame["frame_index"] for frame in found] == [0, 1, *range(4, 75, 5)]
    assert [frame["sample_index"] for frame in found] == list(range(17))
    for frame in found:
        assert frame["time"] == pytest.approx(frame["frame_index"] / 25)


def test_dead_feed_is_cut_and_manual_ranges_win(media, tmp_path):
    manifest = frames.sample([media["dead"]], tmp_path / "auto", progress=False)
    source = manifest["sources"][0]
    assert [segment["reason"] for segment in source["segments"]] == ["black"]
    black = source["segments"][0]
    assert 1.7 <= black["start"] <= 2.05 and 3.95 <= black["end"] <= 4.3
    times = [frame["time"] for frame in manifest["frames"]]
    assert times and not [time for time in times if black["start"] <= time < black["end"]]
    assert source["frames_cut"] >= 3 and len(times) + source["frames_cut"] >= 12
    for frame in manifest["frames"]:
        image = cv2.imread(str(tmp_path / "auto" / frame["image"]), cv2.IMREAD_GRAYSCALE)
        assert image.mean() > 40, f"{frame['image']} is black"
    manual = {"dead": {"keep": [[2.5, 3.2]], "cut": [[0.0, 1.0]]}}
    manifest = frames.sample([media["dead"]], tmp_path / "manual", manual=manual, progress=False)
    source = manifest["sources"][0]
    times = [frame["time"] for frame in manifest["frames"]]
    assert [2.5, 3.2] in source["kept"] and any(2.5 <= time < 3.2 for time in times)
    assert not [time for time in times if time < 1.0]
    assert {"start": 0.0, "end": 1.0, "reason": "manual"} in source["segments"]
    assert source["parameters"]["manual"] == {"keep": [[2.5, 3.2]], "cut": [[0.0, 1.0]]}


def test_bad_inputs_are_reported_and_the_batch_goes_on(bad_batch, tmp_path):
    before = fingerprints(bad_batch)
    manifest = frames.sample(bad_batch, tmp_path / "out", progress=True)
    assert fingerprints(bad_batch) == before, "inputs were modified"
    problems = manifest["problems"]
    expected = {
        "zero.mp4": "empty file (0 bytes)",
        "truncated.mp4": "truncated or incomplete MP4/MOV file",
        "notes.mp4": "not a video (it is a text file)",
        "audio only.mp4": "no video stream (only audio)",
        "broken.jpg": "unreadable image",
    }
    for name, problem in expected.items():
        lines = [line for line in problems if line.startswith(f"{bad_batch / name}: ")]
        assert len(lines) == 1 and problem in lines[0], (name, problems)
    damaged = [line for line in problems if line.startswith(f"{bad_batch / 'damaged.mp4'}: ")]
    assert len(damaged) == 1 and "corrupt frame(s) reported by the decoder" in damaged[0]
    cut_short = [line for line in problems if line.startswith(f"{bad_batch / 'cut short.mp4'}: ")]
    assert (
        len(cut_short) == 1
        and "truncated or damaged: decodable up to 1.8 s of 3.0 s" in cut_short[0]
    )
    assert all("\n" not in line for line in problems) and len(problems) == len(expected) + 2
    status = {source["source_id"]: source["status"] for source in manifest["sources"]}
    assert status == {
        "audio_only": "skipped",
        "cut_short": "ok",
        "damaged": "ok",
        "hevc10": "ok",
        "notes": "skipped",
        "rue_de_l_ete": "ok",
        "truncated": "skipped",
        "zero": "skipped",
        "alpha": "ok",
        "broken": "skipped",
        "deep": "ok",
        "gray": "ok",
        "sideways": "ok",
    }
    skipped = [source for source in manifest["sources"] if source["status"] == "skipped"]
    assert all(source["error"] in problems and source["frames"] == 0 for source in skipped)
    by_source = {}
    for frame in manifest["frames"]:
        by_source.setdefault(frame["source_id"], []).append(frame)
    assert len(by_source["rue_de_l_ete"]) == 8
    for source in manifest["sources"]:
        if source["source_id"] in ("damaged", "cut_short"):
            corrupt = [segment for segment in source["segments"] if segment["reason"] == "corrupt"]
            times = [frame["time"] for frame in by_source[source["source_id"]]]
            assert corrupt and times
            assert not [
                moment
                for moment in times
                for segment in corrupt
                if segment["start"] <= moment < segment["end"]
            ]
    assert manifest["sources"][3]["path"] == str((bad_batch / "hevc10.mp4").resolve())
    hevc = manifest["sources"][3]["probe"]
    assert (hevc["codec"], hevc["bit_depth"]) == ("hevc", 10)
    for frame in by_source["hevc10"]:
        image = cv2.imread(str(tmp_path / "out" / frame["image"]), cv2.IMREAD_UNCHANGED)
        assert image.dtype == np.uint8 and image.shape == (240, 320, 3)


def test_photos_are_normalised_to_8_bit_colour(bad_batch, tmp_path):
    photos = [bad_batch / name for name in ("alpha.png", "gray.jpg", "deep.png", "sideways.jpg")]
    manifest = frames.sample(photos, tmp_path / "out", progress=False)
    images = {}
    for frame in manifest["frames"]:
        assert frame["image"] == f"photos/{frame['source_id']}.png" and frame["time"] is None
        image = cv2.imread(str(tmp_path / "out" / frame["image"]), cv2.IMREAD_UNCHANGED)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        images[frame["source_id"]] = image
    assert tuple(images["alpha"][5, 5]) == (0, 0, 255)  # opaque red stays red
    assert tuple(images["alpha"][5, 50]) == (255, 255, 255)  # transparent becomes white
    gray = images["gray"]
    assert np.array_equal(gray[:, :, 0], gray[:, :, 2]) and abs(int(gray[20, 40, 1]) - 160) <= 2
    assert tuple(images["deep"][0, 0]) == (100, 100, 100) and tuple(images["deep"][0, 59]) == (
        255,
        255,
        255,
    )
    sideways = images["sideways"]
    assert sideways.shape == (40, 60, 3), "EXIF orientation not applied"
    assert sideways[5].mean() > 240 and sideways[35].mean() < 15
    sources = {source["source_id"]: source for source in manifest["sources"]}
    assert sources["sideways"]["probe"]["orientation"] == 6
    assert sources["deep"]["probe"]["dtype"] == "uint16"
    assert sources["alpha"]["probe"]["channels"] == 4


def test_manifest_and_signatures(media, tmp_path):
    out = tmp_path / "out"
    manifest = frames.sample([media["plain"], media["rotated"]], out, progress=False)
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == {key: value for key, value in manifest.items() if key != "run"}
    assert manifest["format"] == "platelab.frames/1" and manifest["complete"]
    array = np.load(out / "signatures.npy", allow_pickle=False)
    assert array.dtype == np.uint8 and array.shape == (16, signatures.SIGNATURE_LENGTH)
    assert manifest["signatures"]["rows"] == 16
    for row, frame in zip(array, manifest["frames"], strict=True):
        image = cv2.imread(str(out / frame["image"]))
        assert np.array_equal(row, signatures.compute_signature(image))
        assert frame["dhash"] == f"{signatures.difference_hash(row):016x}"
        assert frame["sharpness"] == pytest.approx(signatures.sharpness(image), rel=1e-3)
    source = manifest["sources"][1]
    assert source["kind"] == "video" and source["source_id"] == "rotated"
    assert source["probe"]["rotation"] == 90 and source["kept"] == [[0.0, 3.0]]
    assert len(source["fingerprint"]["sha256"]) == 64
    assert source["fingerprint"]["bytes"] == media["rotated"].stat().st_size
    assert [key for key in manifest["frames"][0]] == [
        "image",
        "source_id",
        "time",
        "frame_index",
        "sample_index",
        "width",
        "height",
        "sharpness",
        "dhash",
    ]
    assert not list(out.rglob("*.tmp")) and not list(out.rglob(".*"))


def test_rerun_on_unchanged_input_does_no_work(media, tmp_path):
    out = tmp_path / "out"
    first = frames.sample([media["plain"], media["vfr"]], out, workers=2, progress=False)
    assert first["run"]["processed"] == 2 and first["run"]["parallel_videos"] == 2
    written = {path: path.stat().st_mtime_ns for path in out.rglob("*")}
    second = frames.sample([media["plain"], media["vfr"]], out, workers=2, progress=False)
    assert second["run"]["processed"] == 0 and second["run"]["reused"] == 2
    assert second["run"]["frames_written"] == 0
    assert {path: path.stat().st_mtime_ns for path in out.rglob("*")} == written
    assert second["frames"] == first["frames"]
    third = frames.sample([media["plain"], media["vfr"]], out, fps=1, progress=False)
    assert third["run"]["processed"] == 2 and len(third["frames"]) < len(first["frames"])
    assert third["run"]["frames_removed"] > 0
    listed = {frame["image"] for frame in third["frames"]}
    assert {path.relative_to(out).as_posix() for path in out.rglob("*.png")} == listed
    fourth = frames.sample([media["plain"]], out, fps=1, progress=False)
    assert fourth["run"]["processed"] == 0 and not list(out.glob("vfr/*.png"))


def test_disk_full_stops_cleanly(media, tmp_path, monkeypatch):
    out = tmp_path / "out"
    before = fingerprints(media["plain"].parent)
    original = frames._write_file
    calls = []

    def write_until_full(path, data):
        calls.append(path)
        if len(calls) > 10:
            raise OSError(errno.ENOSPC, "No space left on device")
        original(path, data)

    monkeypatch.setattr(frames, "_write_file", write_until_full)
    with pytest.raises(OSError) as caught:
        frames.sample([media["plain"], media["rotated"]], out, workers=1, progress=False)
    message = str(caught.value)
    assert caught.value.errno == errno.ENOSPC and "No space left on device" in message
    assert "\n" not in message and str(out) in message
    manifest = json.loads((out / "manifest.json").read_text())
    assert not manifest["complete"] and [
        segment["source_id"] for segment in manifest["sources"]
    ] == ["plain"]
    listed = {frame["image"] for frame in manifest["frames"]}
    assert len(listed) == 8 and all((out / image).is_file() for image in listed)
    assert {path.relative_to(out).as_posix() for path in out.rglob("*.png")} == listed
    assert not [path for path in out.rglob("*") if path.name.endswith(".tmp")]
    assert np.load(out / "signatures.npy").shape[0] == 8
    assert fingerprints(media["plain"].parent) == before


def test_output_folder_that_cannot_be_created(media, tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a folder")
    with pytest.raises(OSError) as caught:
        frames.sample([media["plain"]], blocker / "frames", progress=False)
    assert str(blocker) in str(caught.value) and "\n" not in str(caught.value)
    assert blocker.read_text() == "a file, not a folder"


def test_outputs_inside_an_input_folder_are_not_inputs(media, tmp_path):
    (tmp_path / "clip.mp4").write_bytes(media["plain"].read_bytes())
    frames.sample(tmp_path, tmp_path / "frames", progress=False)
    again = frames.sample(tmp_path, tmp_path / "frames", progress=False)
    assert [source["source_id"] for source in again["sources"]] == ["clip"]
    assert again["run"]["processed"] == 0


def test_plot_timeline(media, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    manifest = frames.sample([media["dead"], media["plain"]], tmp_path / "out", progress=False)
    figure = plot_and_check(manifest)
    plt.close(figure)
    figure = plot_and_check([frames.analyze(media["dead"])])
    plt.close(figure)


def plot_and_check(results):
    figure = frames.plot_timeline(results)
    axes = figure.axes[0]
    assert "(s)" in axes.get_xlabel()
    labels = [text.get_text() for text in axes.get_legend().get_texts()]
    assert labels[0] == "kept" and "cut: black" in labels and "cut: frozen" in labels
    caption = " ".join(text.get_text() for text in figure.texts)
    assert "kept of" in caption and "black" in caption
    return figure
