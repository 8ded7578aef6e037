"""The command line a new user meets: `vidrestore track` runs the main job's analysis, `vidrestore probe`
names what a file holds, and an image keeps its alpha channel and says how many faces it restored."""

from __future__ import annotations

import ctypes
import dataclasses
import json
import logging
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from pipeline_support import cut_clip, files_in, make_tiny_restorer, test_options
from videogen import make_video
from vidrestore.cli import main
from vidrestore.pipeline import stages
from vidrestore.pipeline.job import restore_video
from vidrestore.video.probe import (
    COLOR_PRIMARIES_NAMES,
    COLOR_RANGE_NAMES,
    COLOR_SPACE_NAMES,
    COLOR_TRANSFER_NAMES,
)

CLIP = "retalking_face_1.mp4"  # 700x700, no B-frames, one face
FRAMES = 24


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory, media_dir: Path) -> dict[str, Path]:
    """A short real clip (remuxed, with its audio) and a tiny restorer checkpoint."""
    folder = tmp_path_factory.mktemp("track")
    clip = folder / "clip.mp4"
    cut_clip(media_dir / "videos" / CLIP, clip, FRAMES)
    return {"clip": clip, "model": make_tiny_restorer(folder / "tiny.pth")}


def _track_args(video: Path, out: Path, detector: Path, *extra: str) -> list[str]:
    """`vidrestore track` with the settings of `test_options`: detector at 320, detection every 5 frames."""
    return ["track", str(video), "--json", str(out), "--detector", str(detector), "--det-size", "320",
            "--detect-every", "5", "--device", "cpu", *extra]


# --- track ---------------------------------------------------------------------------------------


def _record_aligned_landmarks(monkeypatch: pytest.MonkeyPatch) -> dict[int, np.ndarray]:
    """Frame index -> (faces, 5, 2) landmarks the restore stage aligns crops with, recorded as it runs."""
    aligned: dict[int, np.ndarray] = {}
    real = stages.landmarks_of

    def recording(items):
        face_frame, landmarks = real(items)
        for k, item in enumerate(items):
            aligned[item.frame.index] = landmarks[face_frame == k]
        return face_frame, landmarks

    monkeypatch.setattr(stages, "landmarks_of", recording)
    return aligned


def test_track_landmarks_are_the_ones_the_main_job_aligns_with(work, detector_weights, tmp_path, monkeypatch):
    aligned = _record_aligned_landmarks(monkeypatch)
    report = restore_video(work["clip"], tmp_path / "out.mp4", test_options(work["model"], detector_weights),
                           progress=False)
    assert report.frames == FRAMES and report.faces >= FRAMES - 2 and sorted(aligned) == list(range(FRAMES))
    out = tmp_path / "tracks.json"
    assert main(["-q", *_track_args(work["clip"], out, detector_weights)]) == 0
    frames = json.loads(out.read_text())["frames"]
    assert [f["index"] for f in frames] == list(range(FRAMES))
    for frame in frames:
        tracked = [face["landmarks"] for face in frame["faces"]]
        assert tracked == np.round(aligned[frame["index"]], 2).tolist()  # the JSON's own rounding, exactly


def test_the_analysis_view_is_the_det_size(work, detector_weights, tmp_path, monkeypatch):
    """--det-size sets the long side the tracker sees (it was fixed at 640, so a larger det-size did nothing)."""
    sizes: set[int] = set()
    real = stages.analysis_view
    monkeypatch.setattr(stages, "analysis_view", lambda frame, long_side: sizes.add(long_side) or real(frame, long_side))
    for det_size in (320, 960):
        options = dataclasses.replace(test_options(work["model"], detector_weights), det_size=det_size)
        restore_video(work["clip"], tmp_path / f"out{det_size}.mp4", options, progress=False)
    assert sizes == {320, 960}


def test_track_progress_bar_has_a_total(work, detector_weights, tmp_path, capsys):
    out = tmp_path / "tracks.json"
    assert main(_track_args(work["clip"], out, detector_weights, "--limit", "6", "--lag", "0")) == 0
    err = capsys.readouterr().err
    assert "100%" in err and "6/6" in err  # a total, so a percentage and an ETA
    assert json.loads(out.read_text())["video"]["frames"] == 6


# --- probe ---------------------------------------------------------------------------------------


def test_probe_names_colour_tags_and_lists_every_stream(tmp_path, capsys):
    src = tmp_path / "tagged.mp4"
    make_video(src, frames=6, audio_languages=("fra",), subtitle=True, color=(1, 1, 1, 1))
    assert main(["probe", str(src)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["color"] == {"primaries": "bt709", "transfer": "bt709", "matrix": "bt709", "range": "tv"}
    streams = info["streams"]
    assert [(s["index"], s["type"], s["codec"]) for s in streams] == [
        (0, "video", "h264"), (1, "audio", "aac"), (2, "subtitle", "mov_text")]
    assert (streams[0]["width"], streams[0]["height"], streams[0]["pix_fmt"]) == (96, 64, "yuv420p")
    assert (streams[1]["language"], streams[1]["sample_rate"], streams[1]["layout"]) == ("fra", 16000, "mono")
    assert (info["frames"], info["frames_from"]) == (6, "container")


def _transport_stream_with_data(path: Path, frames: int) -> None:
    """An MPEG-TS file (no frame count in the container) with a video and a KLV data stream."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=30, options={"preset": "ultrafast"})
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        data = out.add_data_stream("klv")
        for i in range(frames):
            picture = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 20, np.uint8), format="rgb24")
            picture.pts = i
            for packet in video.encode(picture):
                out.mux(packet)
            packet = av.Packet(b"klv%d" % i)
            packet.stream, packet.time_base = data, Fraction(1, 90000)
            packet.pts = packet.dts = i * 3000
            out.mux(packet)
        for packet in video.encode():
            out.mux(packet)


def test_probe_counts_packets_when_the_container_has_no_count(tmp_path, capsys):
    src = tmp_path / "data.ts"
    _transport_stream_with_data(src, frames=7)
    assert main(["probe", str(src)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert [(s["type"], s["codec"]) for s in info["streams"]] == [("video", "h264"), ("data", "klv")]
    assert (info["frames"], info["frames_from"]) == (7, "packets")


def _libavutil() -> ctypes.CDLL:
    """The libavutil PyAV runs on (the wheel's own copy)."""
    libs = sorted((Path(av.__file__).parent.parent / "av.libs").glob("libavutil*"))
    if not libs:
        pytest.skip("PyAV's bundled libavutil not found (not a wheel install)")
    return ctypes.CDLL(str(libs[0]))


@pytest.mark.parametrize("function, table", [
    ("av_color_range_name", COLOR_RANGE_NAMES),
    ("av_color_primaries_name", COLOR_PRIMARIES_NAMES),
    ("av_color_transfer_name", COLOR_TRANSFER_NAMES),
    ("av_color_space_name", COLOR_SPACE_NAMES),
])
def test_colour_names_are_ffmpegs(function, table):
    name_of = getattr(_libavutil(), function)
    name_of.restype, name_of.argtypes = ctypes.c_char_p, [ctypes.c_int]
    ffmpeg = {value: name_of(value).decode() for value in range(1024) if name_of(value)}
    assert table == ffmpeg


# --- images --------------------------------------------------------------------------------------


@pytest.fixture
def rgba_photo(media_dir: Path, tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A real photo of two faces saved as an RGBA PNG with a gradient alpha, and that alpha."""
    rgb = np.asarray(Image.open(media_dir / "photos" / "facerec_two_people.jpg").convert("RGB"))
    alpha = np.tile(np.linspace(0, 255, rgb.shape[1]).round().astype(np.uint8), (rgb.shape[0], 1))
    path = tmp_path / "faces.png"
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(path)
    return path, alpha


def _image_args(src: Path, out: Path, model: Path, detector: Path) -> list[str]:
    return [str(src), str(out), "--model", str(model), "--detector", str(detector), "--device", "cpu",
            "--det-size", "640"]


def test_rgba_png_keeps_its_alpha_and_says_how_many_faces(work, detector_weights, rgba_photo, tmp_path, caplog):
    src, alpha = rgba_photo
    out = tmp_path / "restored.png"
    with caplog.at_level(logging.INFO, logger="vidrestore.pipeline.job"):
        assert main(_image_args(src, out, work["model"], detector_weights)) == 0
    restored = Image.open(out)
    assert restored.mode == "RGBA"
    assert np.array_equal(np.asarray(restored.getchannel("A")), alpha)
    before = np.asarray(Image.open(src).convert("RGB"), dtype=int)
    assert np.abs(np.asarray(restored.convert("RGB"), dtype=int) - before).max() > 0  # faces changed
    assert any("2 face(s) restored" in message for message in caplog.messages)


def _truncated(src: Path) -> Path:
    """The first half of the PNG file."""
    cut = src.with_name("cut.png")
    data = src.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    return cut


def _not_an_image(src: Path) -> Path:
    """A file with an image's name that holds text."""
    fake = src.with_name("fake.png")
    fake.write_text("not a picture")
    return fake


@pytest.mark.parametrize("make_input, output, words", [
    (lambda src: src, "restored.mp4", ("restored.mp4", ".png")),  # checked before any model loads
    (_truncated, "restored.png", ("cut.png", "truncated")),
    (_not_an_image, "restored.png", ("fake.png", "not a JPEG")),
])
def test_bad_image_is_one_line_and_writes_nothing(work, detector_weights, rgba_photo, tmp_path, capsys,
                                                  make_input, output, words):
    src = make_input(rgba_photo[0])
    before = files_in(tmp_path)
    assert main(_image_args(src, tmp_path / output, work["model"], detector_weights)) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and all(word in err for word in words), err
    assert files_in(tmp_path) == before
