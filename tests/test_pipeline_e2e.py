"""End to end: `restore_video` on real clips with the real detector and a tiny random restorer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline_support import (cut_clip, encode_rgb_lossless, files_in, make_tiny_restorer, pipeline_threads,
                              rgb_frames, test_options)
from videogen import decoded_planes, other_packets, video_pts
from vidrestore.faces.detector import DetectorConfig, FaceDetector
from vidrestore.errors import VidrestoreError
from vidrestore.pipeline.job import restore_video

CLIP = "retalking_face_1.mp4"  # 700x700, variable frame rate, AAC audio, no B-frames
FRAMES = 24


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory, media_dir: Path) -> dict[str, Path]:
    """A remuxed real clip with audio, its lossless RGB version, and a tiny restorer checkpoint."""
    folder = tmp_path_factory.mktemp("pipeline")
    clip, lossless = folder / "clip.mp4", folder / "clip_rgb.mkv"
    cut_clip(media_dir / "videos" / CLIP, clip, FRAMES)
    encode_rgb_lossless(media_dir / "videos" / CLIP, lossless, FRAMES)
    return {"clip": clip, "lossless": lossless, "model": make_tiny_restorer(folder / "tiny.pth")}


@pytest.fixture(scope="module")
def lossless_run(work: dict[str, Path], detector_weights: Path, tmp_path_factory: pytest.TempPathFactory):
    """The lossless clip restored into a lossless file (shared by the pixel tests)."""
    out = tmp_path_factory.mktemp("lossless") / "out.mkv"
    report = restore_video(work["lossless"], out, test_options(work["model"], detector_weights, codec="ffv1",
                                                               preset=None), progress=False)
    return out, report


def test_frames_timestamps_and_audio_are_kept(work: dict[str, Path], detector_weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    report = restore_video(work["clip"], out, test_options(work["model"], detector_weights), progress=False)
    pts_in, tb_in = video_pts(work["clip"])
    pts_out, tb_out = video_pts(out)
    assert len(pts_out) == len(pts_in) == FRAMES == report.frames
    assert [p * tb_out for p in pts_out] == [p * tb_in for p in pts_in]
    audio_in = other_packets(work["clip"])
    assert audio_in and audio_in[0]
    assert other_packets(out) == audio_in
    assert report.faces >= FRAMES - 2  # one face in (nearly) every frame
    assert {t.name for t in report.stages} == {"decode", "analyse", "restore", "composite", "encode"}


def test_background_is_exact_and_faces_change(work: dict[str, Path], detector_weights: Path, lossless_run) -> None:
    out, report = lossless_run
    before, after = rgb_frames(work["lossless"]), rgb_frames(out)
    assert len(after) == len(before) == report.frames
    detector = FaceDetector(detector_weights, "cpu", DetectorConfig(det_size=320))
    box = detector.detect_one(before[0])[0].box
    centre, size = (box[:2] + box[2:]) / 2, max(box[2:] - box[:2])
    h, w = before[0].shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    far = np.maximum(abs(xx - centre[0]), abs(yy - centre[1])) > 1.1 * size
    assert far.mean() > 0.1
    near = np.maximum(abs(xx - centre[0]), abs(yy - centre[1])) < 0.3 * size
    for b, a in zip(before, after):
        assert np.array_equal(a[far], b[far])
    changed = [np.abs(a[near].astype(int) - b[near]).mean() for b, a in zip(before, after)]
    assert min(changed) > 1.0


def _yuv420_planes(path: Path) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Y, U, V of every frame of a 4:2:0 video, as decoded (no colour conversion)."""
    out = []
    for a in decoded_planes(path, "yuv420p"):
        h = a.shape[0] * 2 // 3
        w = a.shape[1]
        chroma = a[h:].reshape(2, h // 2, w // 2)
        out.append((a[:h], chroma[0], chroma[1]))
    return out


def test_yuv_background_is_bit_exact_and_faces_change(work: dict[str, Path], detector_weights: Path,
                                                      tmp_path: Path) -> None:
    """On a YUV source, only the pasted regions are converted back: every other sample stays as decoded."""
    out = tmp_path / "yuv.mkv"
    report = restore_video(work["clip"], out, test_options(work["model"], detector_weights, codec="ffv1",
                                                           preset=None), progress=False)
    assert report.frames_with_faces >= FRAMES - 2
    before, after = _yuv420_planes(work["clip"]), _yuv420_planes(out)
    detector = FaceDetector(detector_weights, "cpu", DetectorConfig(det_size=320))
    box = detector.detect_one(rgb_frames(work["clip"])[0])[0].box
    centre, size = (box[:2] + box[2:]) / 2, max(box[2:] - box[:2])
    h, w = before[0][0].shape
    yy, xx = np.mgrid[0:h, 0:w]
    far = np.maximum(abs(xx - centre[0]), abs(yy - centre[1])) > 1.1 * size
    near = np.maximum(abs(xx - centre[0]), abs(yy - centre[1])) < 0.3 * size
    far_chroma = far[::2, ::2] & far[1::2, 1::2]
    assert far.mean() > 0.1
    for (yb, ub, vb), (ya, ua, va) in zip(before, after):
        assert np.array_equal(ya[far], yb[far])
        assert np.array_equal(ua[far_chroma], ub[far_chroma]) and np.array_equal(va[far_chroma], vb[far_chroma])
    assert min(np.abs(a[0][near].astype(int) - b[0][near]).mean() for b, a in zip(before, after)) > 1.0


def test_same_input_gives_the_same_output(work: dict[str, Path], detector_weights: Path, lossless_run,
                                          tmp_path: Path) -> None:
    first, _ = lossless_run
    second = tmp_path / "again.mkv"
    restore_video(work["lossless"], second, test_options(work["model"], detector_weights, codec="ffv1", preset=None),
                  progress=False)
    assert all(np.array_equal(a, b) for a, b in zip(decoded_planes(first), decoded_planes(second)))


def test_model_none_changes_no_pixel(work: dict[str, Path], detector_weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "none.mkv"
    report = restore_video(work["clip"], out, test_options("none", detector_weights, codec="ffv1", preset=None),
                           progress=False)
    assert report.frames == FRAMES and report.frames_with_faces == FRAMES  # faces tracked, none touched
    assert report.faces >= FRAMES
    planes_in, planes_out = decoded_planes(work["clip"], "yuv420p"), decoded_planes(out, "yuv420p")
    assert len(planes_out) == len(planes_in) and all(np.array_equal(a, b) for a, b in zip(planes_in, planes_out))
    (pts_in, tb_in), (pts_out, tb_out) = video_pts(work["clip"]), video_pts(out)
    steps = [[round((p - pts[0]) * tb * 1000) for p in pts] for pts, tb in ((pts_in, tb_in), (pts_out, tb_out))]
    assert steps[0] == steps[1]  # same frame timing (Matroska: 1 ms units, start shifted by the audio delay)
    payloads = [[[data for _, data in stream] for stream in other_packets(f)] for f in (work["clip"], out)]
    assert payloads[0] == payloads[1]


def test_model_none_without_detector_is_a_pure_io_run(work: dict[str, Path], detector_weights: Path,
                                                      tmp_path: Path) -> None:
    out = tmp_path / "io.mkv"
    report = restore_video(work["clip"], out, test_options("none", "none", codec="ffv1", preset=None), progress=False)
    assert report.frames == FRAMES and report.faces == 0
    assert all(np.array_equal(a, b) for a, b in zip(decoded_planes(work["clip"], "yuv420p"),
                                                    decoded_planes(out, "yuv420p")))
    with pytest.raises(VidrestoreError, match="--detector none"):
        test_options(work["model"], "none")


def test_compare_writes_a_side_by_side_video(work: dict[str, Path], detector_weights: Path, tmp_path: Path) -> None:
    out, side = tmp_path / "out.mp4", tmp_path / "side.mp4"
    restore_video(work["clip"], out, test_options(work["model"], detector_weights), compare=side, progress=False)
    frames = rgb_frames(side)
    assert len(frames) == FRAMES
    assert frames[0].shape[1] == 2 * rgb_frames(out)[0].shape[1]
    assert files_in(tmp_path) == ["out.mp4", "side.mp4"]
    assert not pipeline_threads()
