"""Tracking on real clips and synthetic motion: smoothing beats raw detection, ids hold, detection is reused,
scene cuts start new tracks; the `vidrestore track` command writes the DESIGN.md JSON."""

from __future__ import annotations

import json

import av
import cv2
import numpy as np
import pytest

from faces_support import read_frames, read_rgb
from vidrestore.cli import main
from vidrestore.faces.detector import DetectorConfig, FaceDetector
from vidrestore.faces.smoothing import LandmarkKalman, SmoothingConfig
from vidrestore.faces.tracker import FaceTracker, TrackerConfig, analyze_frames, find_scene_cuts


@pytest.fixture(scope="module")
def detector(detector_weights) -> FaceDetector:
    return FaceDetector(detector_weights, device="cpu", config=DetectorConfig(det_size=480))


def _path_matrix(t: int) -> np.ndarray:
    """The known sub-pixel motion of frame t: a slow drift, a sway and a small rotation about the face."""
    angle = 2.0 * np.sin(2 * np.pi * t / 50)
    matrix = cv2.getRotationMatrix2D((200.0, 160.0), angle, 1.0 + 0.03 * np.sin(2 * np.pi * t / 70))
    matrix[:, 2] += [0.37 * t + 12 * np.sin(2 * np.pi * t / 40), 6 * np.cos(2 * np.pi * t / 33)]
    return matrix


@pytest.fixture(scope="module")
def synthetic_clip(media_dir):
    """A photo face moved along a known path: frames and the true landmarks of every frame."""
    photo = read_rgb(media_dir / "photos" / "facerec_two_people.jpg")[0:320, 150:550]
    frames = [cv2.warpAffine(photo, _path_matrix(t), (400, 320), borderMode=cv2.BORDER_REFLECT) for t in range(60)]
    return frames


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def _relative(matrix_t: np.ndarray, matrix_0: np.ndarray) -> np.ndarray:
    """The map from frame 0 to frame t."""
    full = lambda m: np.vstack([m, [0, 0, 1]])  # noqa: E731
    return (full(matrix_t) @ np.linalg.inv(full(matrix_0)))[:2]


def test_smoothed_landmarks_are_closer_to_the_truth_than_raw_detections(detector, synthetic_clip):
    first = detector.detect_one(synthetic_clip[0])
    assert len(first) == 1
    truth = [_apply(_relative(_path_matrix(t), _path_matrix(0)), first[0].landmarks) for t in range(60)]
    raw = detector.detect(synthetic_clip)
    results = list(analyze_frames(synthetic_clip, FaceTracker(detector)))
    assert all(len(r.faces) == 1 for r in results) and len({r.faces[0].track_id for r in results}) == 1
    size = first[0].eye_distance
    raw_error = np.mean([np.linalg.norm(r[0].landmarks - g, axis=1).mean() for r, g in zip(raw[1:], truth[1:])])
    smooth_error = np.mean(
        [np.linalg.norm(r.faces[0].landmarks - g, axis=1).mean() for r, g in zip(results[1:], truth[1:])]
    )
    assert smooth_error < raw_error
    assert smooth_error < 0.05 * size
    raw_jitter = np.abs(np.diff([r[0].landmarks for r in raw], n=2, axis=0)).mean()
    smooth_jitter = np.abs(np.diff([r.faces[0].landmarks for r in results], n=2, axis=0)).mean()
    assert smooth_jitter < 0.6 * raw_jitter


def test_kalman_keeps_a_still_face_still_and_follows_a_moving_one():
    rng = np.random.default_rng(1)
    base = np.array([[100.0, 100], [160, 100], [130, 130], [105, 160], [155, 160]])
    noise = 0.02 * 60
    config = SmoothingConfig(process_noise=0.001, correction_frames=1)
    still = LandmarkKalman(base, config)
    outputs = []
    for _ in range(100):
        still.predict()
        outputs.append(still.update(base + rng.normal(0, noise, base.shape), 0.02))
    assert np.std(np.array(outputs[20:]) - base) < 0.5 * noise
    moving = LandmarkKalman(base, config)
    velocity = np.array([3.0, -1.0])
    for t in range(1, 60):
        moving.predict()
        estimate = moving.update(base + velocity * t + rng.normal(0, noise, base.shape), 0.02)
    assert np.abs(estimate - (base + velocity * 59)).mean() < noise  # not dragged behind


@pytest.mark.parametrize("name, frames", [("livepo_d3.mp4", 90), ("sadtalker_WDA_KatieHill_000.mp4", 60)])
def test_talking_head_keeps_one_id_and_reuses_detection(detector, media_dir, name, frames):
    clip = read_frames(media_dir / "videos" / name, frames)
    tracker = FaceTracker(detector, TrackerConfig(detect_every=5))
    results = list(analyze_frames(clip, tracker, chunk=16))
    assert [r.index for r in results] == list(range(frames))
    assert all(len(r.faces) == 1 for r in results)
    assert len({r.faces[0].track_id for r in results}) == 1
    assert tracker.detected_frames <= frames / 4
    assert sum(r.detected for r in results) == tracker.detected_frames
    for r in results:
        assert (r.faces[0].raw_landmarks is not None) == r.detected


def test_frame_by_frame_equals_chunked(detector, media_dir):
    """The tracker is causal: live mode (one frame at a time) gives what file mode (chunks) gives."""
    clip = read_frames(media_dir / "videos" / "keep_real_3.mp4", 30)
    chunked = list(analyze_frames(clip, FaceTracker(detector), chunk=16))
    live = list(analyze_frames(clip, FaceTracker(detector), chunk=1))
    for a, b in zip(chunked, live):
        assert a.detected == b.detected and [f.track_id for f in a.faces] == [f.track_id for f in b.faces]
        for fa, fb in zip(a.faces, b.faces):
            np.testing.assert_allclose(fa.landmarks, fb.landmarks, atol=0.05)


def test_scene_cuts_start_new_tracks(detector_weights, media_dir):
    clip = read_frames(media_dir / "videos" / "facerec_short_hamilton_clip.mp4", 100)
    cuts = find_scene_cuts(clip)
    assert cuts and all(0 < c < 100 for c in cuts)
    detector = FaceDetector(detector_weights, "cpu", DetectorConfig(det_size=640))
    results = list(analyze_frames(clip, FaceTracker(detector)))
    checked = 0
    for cut in cuts:
        assert results[cut].detected
        before = {f.track_id for r in results[max(0, cut - 3) : cut] for f in r.faces}
        after = {f.track_id for r in results[cut : cut + 3] for f in r.faces}
        assert not before & after  # no track survives a cut
        if after:
            assert min(after) > max(before | {0})  # new ids
            checked += 1
    assert checked >= 1


def test_track_cli_writes_design_json(tmp_path, media_dir, detector_weights):
    video = media_dir / "videos" / "retalking_face_1.mp4"
    out, drawn = tmp_path / "tracks.json", tmp_path / "drawn.mp4"
    argv = ["track", str(video), "--json", str(out), "--draw", str(drawn), "--limit", "24"]
    argv += ["--detector", str(detector_weights), "--det-size", "320", "--device", "cpu"]
    assert main(["-q", *argv]) == 0
    document = json.loads(out.read_text())
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        expected_pts = [f.pts for _, f in zip(range(24), container.decode(stream))]
        assert document["video"] == {
            "width": stream.width,
            "height": stream.height,
            "time_base": str(stream.time_base),
            "frames": 24,
        }
    frames = document["frames"]
    assert [f["index"] for f in frames] == list(range(24))
    assert [f["pts"] for f in frames] == expected_pts
    assert frames[0]["detected"] and frames[0]["faces"]
    for frame in frames:
        for face in frame["faces"]:
            assert set(face) == {"track", "box", "score", "landmarks", "raw_landmarks"}
            assert len(face["box"]) == 4 and np.array(face["landmarks"]).shape == (5, 2)
            assert (face["raw_landmarks"] is not None) == frame["detected"]
    with av.open(str(drawn)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 24
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind
