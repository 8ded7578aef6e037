"""Fixed-lag smoothing (file mode): frames come out complete, in order, ids unchanged, closer to the true
motion than the causal filter, and never smoothed across a scene cut; live mode stays causal."""

from __future__ import annotations

import numpy as np
import pytest

from faces_support import read_frames
from test_faces_tracking import _apply, _path_matrix, _relative, detector, synthetic_clip  # noqa: F401
from vidrestore.faces.detector import DetectorConfig, FaceDetector
from vidrestore.faces.lag import FILE_MODE_LAG, FixedLagBuffer
from vidrestore.faces.smoothing import LandmarkKalman
from vidrestore.faces.tracker import FaceTracker, TrackerConfig, analyze_frames
from vidrestore.faces.types import FrameFaces, TrackedFace
from vidrestore.pipeline.options import RestoreOptions, load_options


def _ids(results: list[FrameFaces]) -> list[list[int]]:
    return [[f.track_id for f in r.faces] for r in results]


def _error_without_bias(landmarks: np.ndarray, truth: np.ndarray) -> float:
    """Mean point error once the constant offset is removed (the truth is known up to the first detection's error)."""
    error = landmarks - truth
    return float(np.linalg.norm(error - error.mean(axis=0), axis=-1).mean())


def test_lagged_tracker_is_complete_in_order_and_closer_to_the_true_motion(detector, synthetic_clip):
    first = detector.detect_one(synthetic_clip[0])[0]
    truth = np.stack([_apply(_relative(_path_matrix(t), _path_matrix(0)), first.landmarks) for t in range(60)])
    causal = list(analyze_frames(synthetic_clip, FaceTracker(detector)))
    lagged = list(analyze_frames(synthetic_clip, FaceTracker(detector, TrackerConfig(lag=FILE_MODE_LAG))))
    assert [r.index for r in lagged] == list(range(60))
    assert _ids(lagged) == _ids(causal) and [r.detected for r in lagged] == [r.detected for r in causal]
    causal_points = np.stack([r.faces[0].landmarks for r in causal])
    lagged_points = np.stack([r.faces[0].landmarks for r in lagged])
    assert _error_without_bias(lagged_points, truth) < _error_without_bias(causal_points, truth)
    assert np.abs(np.diff(lagged_points, n=2, axis=0)).mean() < np.abs(np.diff(causal_points, n=2, axis=0)).mean()
    for r in lagged:
        assert np.all(r.faces[0].box[:2] < r.faces[0].landmarks.min(axis=0))


def test_chunks_hold_frames_back_by_the_lag_and_flush_returns_the_rest(detector, synthetic_clip):
    tracker = FaceTracker(detector, TrackerConfig(lag=4))
    out = tracker.process(synthetic_clip[:10])
    assert [r.index for r in out] == list(range(6))
    out += tracker.process(synthetic_clip[10:12]) + tracker.flush()
    assert [r.index for r in out] == list(range(12)) and tracker.flush() == []


def test_no_smoothing_across_a_scene_cut(detector_weights, media_dir):
    """Frames before a cut come out the same whether or not the frames after it exist."""
    clip = read_frames(media_dir / "videos" / "facerec_short_hamilton_clip.mp4", 30)
    cut = 20  # the clip's first cut (test_scene_cuts_start_new_tracks finds it)
    detector = FaceDetector(detector_weights, "cpu", DetectorConfig(det_size=480))
    config = TrackerConfig(lag=FILE_MODE_LAG)
    whole = list(analyze_frames(clip, FaceTracker(detector, config)))
    before = list(analyze_frames(clip[:cut], FaceTracker(detector, config)))
    assert [r.index for r in whole] == list(range(30))
    assert _ids(whole[:cut]) == _ids(before)
    for a, b in zip(whole[:cut], before):
        for fa, fb in zip(a.faces, b.faces):
            np.testing.assert_allclose(fa.landmarks, fb.landmarks, atol=1e-6)
    assert not {i for ids in _ids(whole[:cut]) for i in ids} & {i for ids in _ids(whole[cut:]) for i in ids}


def _face(index: int, landmarks: np.ndarray) -> FrameFaces:
    box = np.concatenate([landmarks.min(axis=0) - 10, landmarks.max(axis=0) + 10])
    return FrameFaces(index, index % 5 == 0, [TrackedFace(1, box, 0.9, landmarks)])


@pytest.mark.parametrize("lag", [1, 3, FILE_MODE_LAG])
def test_buffer_smooths_a_noisy_constant_velocity_track_and_forgets_old_steps(lag):
    rng = np.random.default_rng(0)
    base = np.array([[40.0, 50], [80, 50], [60, 70], [45, 90], [75, 90]])
    truth = [base + [0.8 * t, 0.3 * t] for t in range(80)]
    kalman = LandmarkKalman(truth[0], record=True)
    buffer, causal, out = FixedLagBuffer(lag, sigma=1.5), [], []
    for t, points in enumerate(truth):
        if t:
            kalman.predict()
        kalman.update(points + rng.normal(0, 1.0, points.shape), noise=0.05)
        causal.append(kalman.landmarks)
        out += buffer.push(_face(t, kalman.landmarks), [(kalman.history, kalman.position)])
        assert len(kalman.history.steps) <= lag + 6
    out += buffer.flush()
    assert [r.index for r in out] == list(range(80))
    error = lambda points: np.mean([np.linalg.norm(p - g, axis=1).mean() for p, g in zip(points[10:], truth[10:])])  # noqa: E731
    assert error([r.faces[0].landmarks for r in out]) < error(causal)


def test_file_mode_defaults_to_the_lag_and_live_mode_stays_causal():
    assert RestoreOptions().smoothing_lag == FILE_MODE_LAG == load_options().smoothing_lag
    assert load_options("live").smoothing_lag == 0
    assert TrackerConfig().lag == 0
