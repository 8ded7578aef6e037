"""`vidrestore qc`: a real restore passes; a dropped frame, re-encoded audio and a changed background pixel
fail with their message; noise in the faces raises the warping error; files are written atomically."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import av
import cv2
import imageio_ffmpeg
import numpy as np
import pytest
import torch

from pipeline_support import cut_clip, make_tiny_restorer, test_options
from videogen import leftovers

from vidrestore.archive.plan import ArchivePlan, save_plan
from vidrestore.cli import main
from vidrestore.faces.detector import DetectorConfig, FaceDetector
from vidrestore.pipeline.job import restore_video
from vidrestore.pipeline.track import run_track
from vidrestore.qc.command import QcSettings, run_qc
from vidrestore.qc.flicker import TemporalStability
from vidrestore.qc.regions import HeldRegions
from vidrestore.qc.report import write_markdown, write_plot
from vidrestore.train.arcface import ResNetArcFace
from vidrestore.video import EncoderSettings, VideoSink, VideoSource
from vidrestore.video.patch import patch_decoded_picture
from vidrestore.weights import locate, spec_for

CLIP = "retalking_face_1.mp4"
FRAMES = 10
DET_SIZE = "160"  # the detector sees 160x120 frames: the face is still 80 pixels tall
BACKGROUND_PIXEL = (300, 120)  # x, y: the face is scaled to 160x160 at the left of 320x240 frames


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory, media_dir: Path, detector_weights: Path) -> dict[str, Path]:
    """A small H.264 + AAC source with one face, its lossless restore (tiny model) and the source's tracks."""
    folder = tmp_path_factory.mktemp("qc")
    source = folder / "source.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(media_dir / "videos" / CLIP),
                    "-frames:v", str(FRAMES), "-vf", "scale=160:160,pad=320:240:0:40", "-c:v", "libx264",
                    "-preset", "ultrafast", "-bf", "0", "-c:a", "copy", str(source)], check=True)
    options = test_options(make_tiny_restorer(folder / "tiny.pth"), detector_weights, codec="ffv1", preset=None)
    restored = folder / "restored.mkv"
    restore_video(source, restored, options, progress=False)
    tracks = folder / "tracks.json"
    run_track(source, tracks, options, progress=False)
    return {"folder": folder, "source": source, "restored": restored, "tracks": tracks}


def qc(source: Path, restored: Path, detector: Path, *extra: str) -> int:
    return main(["qc", str(source), str(restored), "--detector", str(detector), "--device", "cpu",
                 "--det-size", DET_SIZE, *extra])


def rewrite(src: Path, dst: Path, change) -> None:
    """`src` re-encoded losslessly (FFV1 in its own pixel format) into `dst` with its timing and its other streams
    copied; change(index, rgb) returns the pixels of each frame, and only the samples under changed pixels are
    rewritten in the decoded picture (so the rest stays bit-exact)."""
    with VideoSource(src, passthrough=True) as source, VideoSink(dst, source.info, EncoderSettings("ffv1")) as sink:
        for frame in source:
            original = frame.rgb()
            image = change(frame.index, original.copy())
            ys, xs = np.nonzero(np.any(image != original, axis=2))
            if len(ys):
                frame.image = image
                box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
                assert patch_decoded_picture(frame, [box], [original[box[1]:box[3], box[0]:box[2]]])
            sink.write(frame)


def face_box(image: np.ndarray, detector_weights: Path) -> tuple[int, int, int, int]:
    box = FaceDetector(detector_weights, "cpu", DetectorConfig(det_size=int(DET_SIZE))).detect_one(image)[0].box
    return tuple(round(float(v)) for v in box)


def test_restored_clip_passes_structure_and_background(clips, detector_weights: Path, tmp_path: Path, capsys,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDRESTORE_WEIGHTS", str(tmp_path / "none"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    arcface_absent = locate(spec_for("arcface_resnet18")) is None
    files = {name: tmp_path / name for name in ("qc.md", "flicker.png", "worst.png")}
    pictures = ("--report", str(files["qc.md"]), "--plot", str(files["flicker.png"]), "--strip", str(files["worst.png"]))
    for extra in (pictures, ("--tracks", str(clips["tracks"]))):
        out = tmp_path / "qc.json"
        assert qc(clips["source"], clips["restored"], detector_weights, "--json", str(out), *extra) == 0
        result = json.loads(out.read_text())
        assert result["ok"] and result["first_failure"] is None
        checks = {c["name"]: c for c in result["structure"]["checks"]}
        assert checks["frames"]["ok"] and checks["frames"]["detail"].startswith(f"{FRAMES} frames")
        assert checks["audio stream #1 (aac)"]["ok"]
        assert result["background"]["verdict"] == "unchanged" and result["background"]["frames"] == FRAMES
        assert result["background"]["face_regions"] == ("tracks" if "--tracks" in extra else "re-detected")
        assert result["temporal"]["frames_measured"] == FRAMES - 1
        if arcface_absent:  # else the checkout's weights/ holds the file: drift is measured
            assert result["identity"]["status"] == "absent"
    assert "PASS" in capsys.readouterr().out
    assert files["flicker.png"].read_bytes()[:8] == files["worst.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = files["qc.md"].read_text()
    assert "**PASS**" in text and "(flicker.png)" in text and "(worst.png)" in text
    assert leftovers(tmp_path) == []


def test_a_lossy_restore_passes_on_its_background_psnr(clips, detector_weights: Path, tmp_path: Path) -> None:
    lossy = tmp_path / "restored.mp4"  # MP4 keeps the source's start (1/30 s) only to the millisecond
    restore_video(clips["source"], lossy, test_options(clips["folder"] / "tiny.pth", detector_weights), progress=False)
    out = tmp_path / "qc.json"
    assert qc(clips["source"], lossy, detector_weights, "--json", str(out)) == 0
    background = json.loads(out.read_text())["background"]
    assert background["verdict"] == "re-encoded" and not background["lossless_output"]
    assert 35.0 <= background["worst_frame_psnr_db"] <= background["psnr_db"] < 100
    assert qc(clips["source"], lossy, detector_weights, "--min-psnr", "99") == 1
    assert qc(clips["source"], lossy, detector_weights, "--lossless") == 1  # lossy pixels judged as lossless


def remux(src: Path, dst: Path, *, drop_frame: int | None = None, reencode_audio: bool = False) -> None:
    """`src` copied packet by packet at its own times, without video frame `drop_frame` (FFV1 frames are all
    key frames, so the others still decode), the audio re-encoded (AAC at 48 kb/s) when asked."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        out.options["avoid_negative_ts"] = "disabled"  # keep the times (AAC starts before zero)
        out.metadata.update(inp.metadata)
        video, audio = inp.streams.video[0], inp.streams.audio[0]
        mapping = {video.index: out.add_stream_from_template(video)}
        if reencode_audio:
            encoder = out.add_stream("aac", rate=audio.rate, options={"b": "48k"})
            encoder.layout = audio.layout.name
            encoder.disposition = audio.disposition
        else:
            mapping[audio.index] = out.add_stream_from_template(audio)
        for s in (video, audio):
            (mapping.get(s.index) or encoder).metadata.update(s.metadata)
        frames = itertools.count()
        for packet in inp.demux():
            if packet.dts is None:
                continue
            if packet.stream.index == audio.index and reencode_audio:
                for decoded in packet.decode():
                    out.mux(encoder.encode(decoded))
                continue
            if packet.stream.index == video.index and next(frames) == drop_frame:
                continue
            packet.stream = mapping[packet.stream.index]
            out.mux(packet)
        if reencode_audio:
            out.mux(encoder.encode(None))


def test_dropped_frame_fails_naming_it(clips, detector_weights: Path, tmp_path: Path, capsys) -> None:
    dropped = tmp_path / "dropped.mkv"
    remux(clips["restored"], dropped, drop_frame=5)
    assert qc(clips["source"], dropped, detector_weights) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("vidrestore: qc failed: structure: frames: source frame 5 (t=")
    assert "is missing from the output (the output has 9 frames, the source 10" in err[0]


def test_reencoded_audio_fails_naming_the_stream(clips, detector_weights: Path, tmp_path: Path, capsys) -> None:
    reencoded = tmp_path / "audio.mkv"
    remux(clips["restored"], reencoded, reencode_audio=True)
    assert qc(clips["source"], reencoded, detector_weights) == 1
    err = capsys.readouterr().err
    assert "qc failed: structure: audio stream #1 (aac): packet 0 (t=" in err and "differs from the source's" in err


def test_changed_background_pixel_fails_naming_it(clips, detector_weights: Path, tmp_path: Path, capsys) -> None:
    changed = tmp_path / "pixel.mkv"
    x, y = BACKGROUND_PIXEL

    def poke(index: int, rgb: np.ndarray) -> np.ndarray:
        if index == 3:
            rgb[y, x] = 255 - rgb[y, x]
        return rgb

    rewrite(clips["restored"], changed, poke)
    out = tmp_path / "qc.json"
    assert qc(clips["source"], changed, detector_weights, "--json", str(out)) == 1
    err = capsys.readouterr().err
    assert "background: frame 3 (t=" in err and f"the first at x={x}, y={y}" in err
    result = json.loads(out.read_text())
    assert result["structure"]["ok"] and result["background"]["verdict"] == "changed"
    assert result["background"]["changed_share"] > 0


def test_noise_in_the_faces_raises_the_warping_error(clips, detector_weights: Path, tmp_path: Path) -> None:
    noisy = tmp_path / "noisy.mkv"
    first = next(iter(VideoSource(clips["source"]))).image
    x0, y0, x1, y1 = face_box(first, detector_weights)
    rng = np.random.default_rng(0)

    def add_noise(index: int, rgb: np.ndarray) -> np.ndarray:
        region = rgb[y0:y1, x0:x1].astype(np.int16) + rng.integers(-12, 13, rgb[y0:y1, x0:x1].shape)
        rgb[y0:y1, x0:x1] = np.clip(region, 0, 255).astype(np.uint8)
        return rgb

    rewrite(clips["restored"], noisy, add_noise)
    settings = QcSettings(detector=str(detector_weights), device="cpu", det_size=int(DET_SIZE))
    clean = run_qc(clips["source"], clips["restored"], settings).stability
    flickering = run_qc(clips["source"], noisy, settings).stability
    assert len(flickering.frames) == len(clean.frames) == FRAMES - 1
    assert flickering.output_error > 2 * clean.output_error
    assert flickering.source_error == clean.source_error  # same flow, same pixels: only the output differs


def test_the_source_scores_the_same_as_itself(clips, detector_weights: Path, tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    save_plan(ArchivePlan(clips["source"], "key", FRAMES, av.open(str(clips["source"])).streams.video[0].time_base,
                          0.2, (0, 6, FRAMES)), plan)
    out = tmp_path / "self.json"
    assert qc(clips["source"], clips["source"], detector_weights, "--json", str(out), "--plan", str(plan)) == 0
    temporal = json.loads(out.read_text())["temporal"]
    assert temporal["warping_error_ratio"] == 1.0
    assert temporal["warping_error_output"] == temporal["warping_error_source"] > 0
    assert temporal["landmark_jitter_output"] == temporal["landmark_jitter_source"]
    result = json.loads(out.read_text())
    assert result["background"]["verdict"] == "unchanged" and result["chunk_boundaries"] == [6]


def test_identity_drift_with_arcface_weights(clips, detector_weights: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    weights = tmp_path / "arcface.pth"
    torch.save(ResNetArcFace().state_dict(), weights)
    short = tmp_path / "short.mp4"  # ArcFace takes about a second a frame on a CPU: a few frames show it
    cut_clip(clips["source"], short, 4)
    settings = QcSettings(detector=str(detector_weights), device="cpu", det_size=int(DET_SIZE), arcface=str(weights))
    identity = run_qc(short, short, settings).identity
    assert identity["status"] == "measured"
    assert identity["to_source_mean"] == pytest.approx(0.0, abs=1e-5)  # the same pixels through the same alignment
    assert identity["consecutive_mean"] > 0


def test_plot_and_report_are_written_atomically(clips, detector_weights: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.figure import Figure

    report = run_qc(clips["source"], clips["restored"], QcSettings(detector=str(detector_weights), device="cpu",
                                                                   det_size=int(DET_SIZE)))
    plot, markdown = tmp_path / "flicker.png", tmp_path / "qc.md"
    write_plot(report, plot)
    write_markdown(report, markdown, plot, None)
    before = plot.read_bytes(), markdown.read_text()

    def half_written(self, path, **kwargs) -> None:
        Path(path).write_bytes(b"\x89PNG half")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", half_written)
    with pytest.raises(OSError, match="disk full"):
        write_plot(report, plot)
    monkeypatch.setattr(Path, "write_text", lambda self, text: half_written(None, self))
    with pytest.raises(OSError, match="disk full"):
        write_markdown(report, markdown, plot, None)
    assert (plot.read_bytes(), markdown.read_text()) == before
    assert leftovers(tmp_path) == []


def test_a_missing_input_is_one_line(tmp_path: Path, detector_weights: Path, capsys) -> None:
    assert qc(tmp_path / "missing.mp4", tmp_path / "also.mkv", detector_weights) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vidrestore: error:")


def ffmpeg(*args: str) -> None:
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", *args], check=True)


@pytest.mark.parametrize("change, message", [
    (("-c", "copy", "-metadata:s:v:0", "language=eng"), "video language: the source has und, the output eng"),
    (("-c", "copy", "-map_chapters", "1"), "chapters: the source has 0 chapters, the output 1"),
], ids=["language", "chapters"])
def test_a_changed_property_fails_naming_it(clips, detector_weights: Path, tmp_path: Path, capsys, change,
                                             message: str) -> None:
    chapters = tmp_path / "chapters.txt"
    chapters.write_text(";FFMETADATA1\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=200\ntitle=one\n")
    changed = tmp_path / "changed.mkv"
    ffmpeg("-copyts", "-i", str(clips["restored"]), "-i", str(chapters), "-map", "0", *change,
           "-avoid_negative_ts", "disabled", str(changed))  # the times kept as they are
    assert qc(clips["source"], changed, detector_weights) == 1
    assert capsys.readouterr().err.strip() == f"vidrestore: qc failed: structure: {message}"


def test_another_pixel_format_fails_naming_it(clips, detector_weights: Path, tmp_path: Path, capsys) -> None:
    deeper = tmp_path / "10bit.mkv"  # the same frames and streams as 10-bit 4:2:2
    with VideoSource(clips["restored"]) as source, \
            VideoSink(deeper, source.info, EncoderSettings("ffv1", pix_fmt="yuv422p10le")) as sink:
        for frame in source:
            sink.write(frame)
    assert qc(clips["source"], deeper, detector_weights) == 1
    assert capsys.readouterr().err.strip() == ("vidrestore: qc failed: structure: pixel format: the source has "
                                               "yuv420p (8-bit), the output yuv422p10le (10-bit)")


def test_an_output_without_timestamps_fails_naming_it(clips, detector_weights: Path, tmp_path: Path, capsys) -> None:
    raw = tmp_path / "restored.h264"  # an Annex B stream: its packets carry no timestamps
    ffmpeg("-i", str(clips["restored"]), "-c:v", "libx264", "-preset", "ultrafast", "-an", str(raw))
    assert qc(clips["source"], raw, detector_weights) == 1
    err = capsys.readouterr().err.strip()
    assert err == "vidrestore: qc failed: structure: frames: the output has video packets without timestamps"


def test_tracks_of_another_clip_are_refused(clips, detector_weights: Path, tmp_path: Path, capsys) -> None:
    document = json.loads(clips["tracks"].read_text())
    document["frames"] = document["frames"][:-1]
    other = tmp_path / "other.json"
    other.write_text(json.dumps(document))
    assert qc(clips["source"], clips["restored"], detector_weights, "--tracks", str(other)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"vidrestore: error: --tracks: {other} describes {FRAMES - 1} frames, the source has {FRAMES}"]


def test_a_plot_without_matplotlib_is_refused_first(clips, tmp_path: Path, capsys,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what an environment without it imports
    missing = tmp_path / "no-detector.pth"  # never loaded: the refusal comes before the pass over the videos
    assert main(["qc", str(clips["source"]), str(clips["restored"]), "--detector", str(missing),
                 "--plot", str(tmp_path / "f.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["vidrestore: error: --plot needs matplotlib (pip install matplotlib)"]
    assert leftovers(tmp_path) == [] and not (tmp_path / "f.png").exists()


def test_the_warping_error_follows_the_source_motion() -> None:
    """A texture moving SHIFT pixels a frame: the source warps onto itself (error ~ 0), an output that stays
    still does not; with the flow taken the wrong way round both would be large."""
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.integers(0, 256, (160, 200, 3)).astype(np.float32), (0, 0), 3)
    texture = cv2.normalize(texture, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    faces = np.zeros((120, 120), bool)
    faces[30:90, 40:100] = True
    stability = TemporalStability()
    for t in range(4):
        source = np.ascontiguousarray(texture[20:140, SHIFT * t:SHIFT * t + 120])
        still = np.ascontiguousarray(texture[20:140, :120])
        stability.add(t, t / 25, source, still, faces)
    assert len(stability.frames) == 3
    assert stability.source_error < 0.02 * stability.output_error


SHIFT = 3


def test_re_detected_background_regions_hold_each_detection() -> None:
    """A face detected only in frame 3 keeps its box out of the background of frames 3-HOLD .. 3+HOLD."""
    hold, box = 2, np.array([[10, 10, 20, 20]])
    held = HeldRegions(hold)
    released = []
    for k in range(8):
        released += list(held.push(k, box if k == 3 else np.zeros((0, 4), np.int64)))
    released += list(held.flush())
    assert [k for k, _ in released] == list(range(8))
    assert [k for k, boxes in released if len(boxes)] == [1, 2, 3, 4, 5]
