"""Video metadata, dead-feed analysis and live recording (platelab.collect.probe)."""

import os
import shutil
import socket
import subprocess
import time

import pytest

from platelab.collect import probe
from platelab.ffmpeg import ffmpeg_exe

SIZE = "320x240"


def ffmpeg(*arguments):
    subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *map(str, arguments)],
        check=True,
    )


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """Small test videos made with ffmpeg's lavfi sources (a few seconds to build)."""
    folder = tmp_path_factory.mktemp("probe-media")
    source = f"testsrc2=size={SIZE}:rate=25"
    files = {name: folder / name for name in ("plain.mp4", "rotated.mp4", "vfr.mp4")}
    ffmpeg(
        "-f", "lavfi", "-i", f"{source}:duration=3", "-f", "lavfi", "-i", "sine=duration=3",
        "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", files["plain.mp4"],
    )  # fmt: skip
    ffmpeg(
        "-display_rotation:v:0", 90, "-i", files["plain.mp4"], "-c", "copy", files["rotated.mp4"]
    )
    ffmpeg(
        "-f", "lavfi", "-i", f"testsrc2=size={SIZE}:rate=30:duration=4",
        "-vf", "settb=1/100,setpts='if(lt(N,50),N*4,200+(N-50)*10)'", "-fps_mode", "vfr",
        "-enc_time_base:v", "1/100",
        "-c:v", "libx264", "-pix_fmt", "yuv420p", files["vfr.mp4"],
    )  # fmt: skip
    files["hevc10.mp4"] = folder / "hevc10.mp4"
    ffmpeg(
        "-f", "lavfi", "-i", f"{source}:duration=2", "-c:v", "libx265", "-pix_fmt", "yuv420p10le",
        "-x265-params", "log-level=none", files["hevc10.mp4"],
    )  # fmt: skip
    files["audio.m4a"] = folder / "audio.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac", files["audio.m4a"])
    files["zero.mp4"] = folder / "zero.mp4"
    files["zero.mp4"].write_bytes(b"")
    files["text.mp4"] = folder / "text.mp4"
    files["text.mp4"].write_text("this is not a video\n")
    files["truncated.mp4"] = folder / "truncated.mp4"
    files["truncated.mp4"].write_bytes(files["plain.mp4"].read_bytes()[:20000])
    # moov first, then cut: the start stays readable
    faststart = folder / "faststart.mp4"
    ffmpeg("-i", files["plain.mp4"], "-c", "copy", "-movflags", "+faststart", faststart)
    data = faststart.read_bytes()
    files["tail-cut.mp4"] = folder / "tail-cut.mp4"
    files["tail-cut.mp4"].write_bytes(data[: len(data) * 6 // 10])
    # garbage in the middle of the media data: the decoder reports corrupt frames
    files["damaged.mp4"] = folder / "damaged.mp4"
    ffmpeg(
        "-f", "lavfi", "-i", f"{source}:duration=6", "-c:v", "libx264", "-g", "50",
        "-pix_fmt", "yuv420p", "-movflags", "+faststart", files["damaged.mp4"],
    )  # fmt: skip
    damaged = bytearray(files["damaged.mp4"].read_bytes())
    middle = len(damaged) // 2
    damaged[middle : middle + 3000] = bytes((index * 97 + 13) % 251 for index in range(3000))
    files["damaged.mp4"].write_bytes(bytes(damaged))
    files["dead.mp4"] = folder / "dead.mp4"
    make_dead_feed_video(files["dead.mp4"])
    return files


def make_dead_feed_video(path):
    """14 s at 25 fps: live 0-2, black 2-4, live 4-5, frozen 5-7, live 7-8, static (still
    picture with sensor noise) 8-10, live 10-11, uniform grey 11-12, live 12-13, a 0.2 s
    black blip at 13.0, live to 14."""
    live = f"testsrc2=size={SIZE}:rate=25:duration=14,noise=alls=6:allf=t"
    graph = ";".join(
        [
            "[0:v]split=8[a][b][c][d][e][f][g][h]",
            "[a]trim=0:2,setpts=PTS-STARTPTS[s1]",
            "[1:v]trim=0:2,setpts=PTS-STARTPTS[s2]",
            "[b]trim=4:5,setpts=PTS-STARTPTS[s3]",
            "[c]trim=start_frame=125:end_frame=126,loop=loop=49:size=1,setpts=N/25/TB[s4]",
            "[d]trim=7:8,setpts=PTS-STARTPTS[s5]",
            "[e]trim=start_frame=200:end_frame=201,format=yuv420p,loop=loop=49:size=1,"
            "setpts=N/25/TB,noise=alls=8:allf=t[s6]",
            "[f]trim=10:11,setpts=PTS-STARTPTS[s7]",
            "[2:v]trim=0:1,setpts=PTS-STARTPTS[s8]",
            "[g]trim=12:13,setpts=PTS-STARTPTS[s9]",
            "[1:v]trim=0:0.2,setpts=PTS-STARTPTS[s10]",
            "[h]trim=13.2:14,setpts=PTS-STARTPTS[s11]",
            "[s1][s2][s3][s4][s5][s6][s7][s8][s9][s10][s11]concat=n=11:v=1:a=0,format=yuv420p[out]",
        ]
    )
    ffmpeg(
        "-f", "lavfi", "-i", live,
        "-f", "lavfi", "-i", f"color=black:size={SIZE}:rate=25:duration=14",
        "-f", "lavfi", "-i", f"color=gray:size={SIZE}:rate=25:duration=14",
        "-filter_complex", graph, "-map", "[out]", "-c:v", "libx264", "-preset", "veryfast",
        "-g", "50", path,
    )  # fmt: skip


@pytest.fixture(params=["ffprobe", "ffmpeg"])
def probe_path(request, monkeypatch):
    """Runs a test with ffprobe and with the ffmpeg-only fallback."""
    if request.param == "ffprobe" and not shutil.which("ffprobe"):
        pytest.skip("no ffprobe on this machine")
    if request.param == "ffmpeg":
        monkeypatch.setattr(probe.shutil, "which", lambda name: None)
    return request.param


def test_probe_describes_videos(media, probe_path):
    plain = probe.probe(media["plain.mp4"])
    assert plain["probed_with"] == probe_path
    assert (plain["codec"], plain["width"], plain["height"]) == ("h264", 320, 240)
    assert plain["pixel_format"] == "yuv420p" and plain["bit_depth"] == 8
    assert plain["fps"] == pytest.approx(25) and plain["frame_count"] == 75
    assert plain["duration"] == pytest.approx(3.0, abs=0.05)
    assert plain["rotation"] == 0 and not plain["variable_frame_rate"] and plain["has_audio"]
    assert plain["video_start"] == 0.0 and plain["end_time"] == pytest.approx(3.0, abs=0.05)
    rotated = probe.probe(media["rotated.mp4"])
    assert rotated["rotation"] == 90
    assert (rotated["display_width"], rotated["display_height"]) == (240, 320)
    vfr = probe.probe(media["vfr.mp4"])
    assert vfr["variable_frame_rate"] and vfr["frame_count"] == 120
    assert vfr["frame_interval_min"] == pytest.approx(0.04, abs=0.002)
    assert vfr["frame_interval_max"] == pytest.approx(0.1, abs=0.002)
    assert vfr["duration"] == pytest.approx(9.0, abs=0.05)
    hevc = probe.probe(media["hevc10.mp4"])
    assert (hevc["codec"], hevc["pixel_format"], hevc["bit_depth"]) == ("hevc", "yuv420p10le", 10)
    assert hevc["profile"] == "Main 10"


def test_probe_paths_agree(media, monkeypatch):
    if not shutil.which("ffprobe"):
        pytest.skip("no ffprobe on this machine")
    keys = ("codec", "width", "height", "rotation", "display_width", "pixel_format", "bit_depth")
    keys += ("frame_count", "variable_frame_rate", "has_audio", "stream_index", "truncated")
    keys += ("video_start", "end_time")
    for name in ("plain.mp4", "rotated.mp4", "vfr.mp4", "hevc10.mp4", "tail-cut.mp4"):
        with_ffprobe = probe.probe(media[name])
        with monkeypatch.context() as patch:
            patch.setattr(probe.shutil, "which", lambda name: None)
            with_ffmpeg = probe.probe(media[name])
        assert {key: with_ffprobe[key] for key in keys} == {key: with_ffmpeg[key] for key in keys}
        assert with_ffprobe["fps"] == pytest.approx(with_ffmpeg["fps"], rel=0.01)
        assert with_ffprobe["duration"] == pytest.approx(with_ffmpeg["duration"], abs=0.05)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("zero.mp4", "empty file (0 bytes)"),
        ("truncated.mp4", "truncated or incomplete MP4/MOV file"),
        ("text.mp4", "not a video (it is a text file)"),
        ("audio.m4a", "no video stream (only audio)"),
        ("missing.mp4", "no such file"),
    ],
)
def test_probe_rejects_unreadable_files(media, probe_path, name, problem):
    path = media.get(name, media["plain.mp4"].with_name(name))
    with pytest.raises(probe.MediaError) as caught:
        probe.probe(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and problem in message
    assert "\n" not in message and caught.value.problem in message


def test_probe_flags_a_cut_off_end(media, probe_path):
    info = probe.probe(media["tail-cut.mp4"])
    assert info["truncated"] and info["frame_count"] < 75
    assert info["duration"] == pytest.approx(3.0, abs=0.05)


def test_bit_depth_from_pixel_format_names():
    depths = {"yuv420p": 8, "yuv420p10le": 10, "yuv444p12be": 12, "gray16le": 16, "p010le": 10}
    depths |= {"rgb48be": 16, "nv12": 8, "rgb24": 8, "rgb565le": 8, None: 8}
    assert {name: probe.bit_depth(name) for name in depths} == depths


def test_analyze_finds_black_frozen_and_uniform_stretches(media):
    result = probe.analyze(media["dead.mp4"])
    reasons = [
        (segment["reason"], segment["start"], segment["end"]) for segment in result["segments"]
    ]
    # boundaries fall on analysis frames (every 0.24 s here); cuts err towards cutting
    expected = [("black", 2.0, 4.0), ("frozen", 5.0, 7.0), ("corrupt", 11.0, 12.0)]
    assert [reason for reason, _start, _end in reasons] == [reason for reason, *_ in expected]
    for (reason, start, end), (_reason, true_start, true_end) in zip(
        reasons, expected, strict=True
    ):
        assert true_start - 0.3 <= start <= true_start + 0.05, reason
        assert true_end - 0.05 <= end <= true_end + 0.3, reason
    assert result["kept"][0] == [0.0, result["segments"][0]["start"]]
    total = sum(end - start for start, end in result["kept"])
    total += sum(segment["end"] - segment["start"] for segment in result["segments"])
    assert total == pytest.approx(result["duration"]) == pytest.approx(14.0, abs=0.05)
    with_static = probe.analyze(media["dead.mp4"], cut_static=True)
    static = [segment for segment in with_static["segments"] if segment["reason"] == "static"]
    assert static and all(segment["start"] >= 7.7 and segment["end"] <= 10.3 for segment in static)
    assert sum(segment["end"] - segment["start"] for segment in static) >= 1.5
    assert with_static["analysis"]["samples"] == result["analysis"]["samples"] > 50


def test_analyze_minimum_duration_and_manual_ranges(media):
    result = probe.analyze(media["dead.mp4"], min_duration=2.5)
    assert result["segments"] == []
    manual = {"keep": [[2.5, 3.0]], "cut": [[0.5, 1.0], [12.5, 20.0]]}
    result = probe.analyze(media["dead.mp4"], manual=manual)
    segments = [
        (segment["reason"], segment["start"], segment["end"]) for segment in result["segments"]
    ]
    assert ("manual", 0.5, 1.0) in segments and ("manual", 12.5, 14.0) in segments
    black = [segment for segment in result["segments"] if segment["reason"] == "black"]
    assert len(black) == 2 and black[0]["end"] == 2.5 and black[1]["start"] == 3.0
    assert [2.5, 3.0] in result["kept"]
    with pytest.raises(ValueError, match="start < end"):
        probe.analyze(media["dead.mp4"], manual={"cut": [[3, 1]]})


def test_analyze_flags_decoder_corruption_and_missing_end(media):
    damaged = probe.analyze(media["damaged.mp4"])
    assert damaged["decode"]["corrupt_frames"] >= 1
    corrupt = [segment for segment in damaged["segments"] if segment["reason"] == "corrupt"]
    assert corrupt and all(segment["end"] - segment["start"] >= 0.5 for segment in corrupt)
    cut_off = probe.analyze(media["tail-cut.mp4"])
    tail = cut_off["segments"][-1]
    assert tail["reason"] == "corrupt" and tail["end"] == pytest.approx(3.0, abs=0.05)
    assert tail["start"] == pytest.approx(cut_off["decode"]["decoded_until"], abs=0.05)


def test_classify_rules():
    quiet = probe._Measure(black=False, uniform=False, frozen=False, quiet=True, static=True)
    frozen = probe._Measure(black=False, uniform=False, frozen=True, quiet=True, static=True)
    live = probe._Measure(black=False, uniform=False, frozen=False, quiet=False, static=False)
    black = probe._Measure(black=True, uniform=False, frozen=True, quiet=True, static=True)
    times = [index * 0.25 for index in range(16)]
    measures = [live, quiet, frozen, frozen, quiet, frozen, frozen, live]
    measures += [black, black, live, live, black, live, live, live]
    segments = probe._classify(times, measures, [[3.6, 3.8]], 4.0, (False, 0.5, 0.04, 0.0))
    # a quiet sample between frozen ones and one just before them join the frozen stretch;
    # a lone black sample (0.25 s) and a 0.2 s corrupt interval are too short to cut
    assert segments == [
        {"start": 0.04, "end": 1.75, "reason": "frozen"},
        {"start": 1.79, "end": 2.5, "reason": "black"},
    ]


def test_record_from_a_local_http_stream(media, tmp_path):
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        port = probe_socket.getsockname()[1]
    url = f"http://127.0.0.1:{port}/live.ts"
    server = subprocess.Popen(
        [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-re", "-i", media["plain.mp4"]]
        + ["-c", "copy", "-f", "mpegts", "-listen", "1", url],
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not _listening(port):
            assert time.monotonic() < deadline and server.poll() is None, "server did not start"
            time.sleep(0.05)
        recording = probe.record(url, 1.5, tmp_path / "clips" / "live.mp4")
    finally:
        server.kill()
        server.wait(timeout=10)
    info = probe.probe(recording)
    assert recording == tmp_path / "clips" / "live.mp4" and info["codec"] == "h264"
    assert info["duration"] == pytest.approx(1.5, abs=0.5) and info["has_audio"]
    assert [path.name for path in recording.parent.iterdir()] == ["live.mp4"]


def test_record_reports_an_unreachable_source(tmp_path):
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        port = probe_socket.getsockname()[1]
    with pytest.raises(probe.MediaError, match="cannot record") as caught:
        probe.record(f"http://127.0.0.1:{port}/none", 1, tmp_path / "none.mp4", timeout=20)
    assert "\n" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def _listening(port):
    """Whether a local TCP port is in the LISTEN state (without connecting to it)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        with open(table) as handle:
            for line in handle.readlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                    return True
    return False
