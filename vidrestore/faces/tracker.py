"""Face tracking with detection reuse: stable ids, Kalman-smoothed landmarks, optical flow in between.

The detector runs on a frame when it is due (frame indices divisible by `detect_every`, and any
frame `detect_every` after the last run; indices count from `first_index`, so a tracker started
mid-stream, as an archive chunk's is, detects on the frames a one-pass tracker would), at a scene cut (a cheap thumbnail difference), and whenever a track is lost or uncertain (optical flow
failed, the filter's uncertainty grew too large, a new track awaits confirmation, or a track was
missed). Due frames of a chunk are detected in one batched call. Between detections each track's
landmarks follow pyramidal Lucas-Kanade flow on the landmark points and the Kalman filter smooths
them. Detections are matched to tracks by an optimal assignment (IoU and landmark distance).
With `lag` 0 (live mode) everything is causal: the result for a frame depends only on that frame
and earlier ones, and `process` returns one result per frame given. With `lag` L > 0 (file mode)
each frame's landmarks are fixed-lag smoothed over the next L frames of its track (faces/lag.py):
`process` returns the frames that are complete (L frames late, in order) and `flush` the rest.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import cv2
import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from vidrestore.faces.detector import FaceDetector
from vidrestore.faces.smoothing import LandmarkKalman, SmoothingConfig
from vidrestore.faces.lag import FixedLagBuffer
from vidrestore.faces.types import Detection, FrameFaces, TrackedFace, eye_distance, landmark_frame

log = logging.getLogger(__name__)

THUMB_SIZE = (64, 36)
NO_MATCH = 1e6
FLOW_GRID = 6
MIN_FLOW_POINTS = 8
LK_PARAMS = dict(winSize=(21, 21), maxLevel=3, criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 20, 0.03))


@dataclass(frozen=True)
class TrackerConfig:
    """Detection reuse, track life cycle, matching gates, scene-cut and flow settings."""

    detect_every: int = 5
    min_hits: int = 2
    max_misses: int = 2
    match_iou: float = 0.3
    match_landmark_distance: float = 0.5
    scene_cut_threshold: float = 20.0
    use_flow: bool = True
    flow_size: int = 640
    flow_fb_error: float = 0.05
    max_uncertainty: float = 0.08
    lag: int = 0  # frames of look-ahead (file mode); 0 = causal (live mode)
    lag_sigma: float = 1.5  # frames, the centred Gaussian after the fixed-lag RTS pass
    smoothing: SmoothingConfig = field(default_factory=SmoothingConfig)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of x1y1x2y2 boxes."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=-1)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=-1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=-1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def frame_thumbnail(frame: np.ndarray) -> np.ndarray:
    """A tiny gray thumbnail (36x64 float32) for the scene-cut test."""
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    return cv2.resize(gray, THUMB_SIZE, interpolation=cv2.INTER_AREA).astype(np.float32)


def is_scene_cut(previous: np.ndarray | None, current: np.ndarray, threshold: float) -> bool:
    """A cut when the mean absolute difference of consecutive thumbnails exceeds `threshold` gray levels."""
    return previous is not None and float(np.abs(current - previous).mean()) > threshold


def find_scene_cuts(frames: Iterable[np.ndarray], threshold: float = TrackerConfig.scene_cut_threshold) -> list[int]:
    """Indices of frames that start a new scene (the first frame is not counted)."""
    cuts, previous = [], None
    for index, frame in enumerate(frames):
        thumb = frame_thumbnail(np.asarray(frame))
        if is_scene_cut(previous, thumb, threshold):
            cuts.append(index)
        previous = thumb
    return cuts


def _grid_points(box: np.ndarray, steps: int = FLOW_GRID) -> np.ndarray:
    """A steps x steps grid of points over the central 80% of a face box."""
    x1, y1, x2, y2 = box
    xs = np.linspace(x1 + 0.1 * (x2 - x1), x2 - 0.1 * (x2 - x1), steps)
    ys = np.linspace(y1 + 0.1 * (y2 - y1), y2 - 0.1 * (y2 - y1), steps)
    return np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)


def _fit_motion(p0: np.ndarray, p1: np.ndarray, size: float, scale: float) -> np.ndarray | None:
    """RANSAC similarity between flow-image point sets, returned in frame pixels; None if too few inliers."""
    if len(p0) < MIN_FLOW_POINTS:
        return None
    matrix, inliers = cv2.estimateAffinePartial2D(
        p0, p1, method=cv2.RANSAC, ransacReprojThreshold=max(0.03 * size, 0.5), refineIters=10
    )
    if matrix is None or int(inliers.sum()) < MIN_FLOW_POINTS:
        return None
    matrix[:, 2] /= scale
    return matrix


class Track:
    """One face followed over frames: id, Kalman filter, box shape relative to the landmarks, life counters."""

    def __init__(
        self, track_id: int, detection: Detection, confirmed: bool, smoothing: SmoothingConfig, record: bool = False
    ) -> None:
        self.track_id = track_id
        self.kalman = LandmarkKalman(detection.landmarks, smoothing, record)
        self.hits = 1
        self.misses = 0
        self.confirmed = confirmed
        self.score = detection.score
        self.flow_failed = False
        self._set_box_shape(detection)

    def _set_box_shape(self, detection: Detection) -> None:
        """Store the detection box in the face's own coordinates, to carry it along between detections."""
        center, radius = landmark_frame(detection.landmarks)
        self.box_shape = (detection.box.reshape(2, 2) - center) / radius

    def box(self) -> np.ndarray:
        """The box [x1,y1,x2,y2] that goes with the current smoothed landmarks."""
        center, radius = landmark_frame(self.kalman.landmarks)
        return (self.box_shape * radius + center).reshape(-1)

    def hit(self, detection: Detection, noise: float) -> None:
        """Update with a matched detection."""
        self.kalman.update(detection.landmarks, noise)
        self.hits += 1
        self.misses = 0
        self.score = detection.score
        self._set_box_shape(detection)

    def to_face(self, raw: np.ndarray | None) -> TrackedFace:
        """The track's state as this frame's TrackedFace."""
        landmarks = self.kalman.landmarks
        return TrackedFace(self.track_id, self.box(), self.score, landmarks, raw)


class FaceTracker:
    """Stateful face analysis of consecutive frames: `process(chunk)` returns FrameFaces in order (see `lag`)."""

    def __init__(self, detector: FaceDetector, config: TrackerConfig | None = None, first_index: int = 0) -> None:
        self.detector = detector
        self.config = config or TrackerConfig()
        self._ids = itertools.count(1)
        self.frames_seen = first_index  # the absolute index of the next frame
        self.detected_frames = 0
        self._lagged = FixedLagBuffer(self.config.lag, self.config.lag_sigma) if self.config.lag > 0 else None
        self._held_steps: dict[int, list] = {}
        self.reset()

    def reset(self) -> None:
        """Forget all tracks (ids keep counting up, so a reused tracker never repeats an id)."""
        self.tracks: list[Track] = []
        self._last_detection = -(10**9)
        self._prev_thumb: np.ndarray | None = None
        self._prev_gray: np.ndarray | None = None
        self._since_cut = 0

    def process(self, frames: Sequence[np.ndarray | torch.Tensor]) -> list[FrameFaces]:
        """Analyse the next frames of the stream (due detections in one batch); returns the frames complete."""
        frames = [f.cpu().numpy() if isinstance(f, torch.Tensor) else np.asarray(f) for f in frames]
        thumbs = [frame_thumbnail(f) for f in frames]
        cuts = self._chunk_cuts(thumbs)
        due = self._due_frames(cuts)
        batch = dict(zip(due, self.detector.detect([frames[k] for k in due]))) if due else {}
        results = [self._step(frames[k], thumbs[k], cuts[k], batch.get(k)) for k in range(len(frames))]
        if self._lagged is None:
            return results
        return [ready for result, cut in zip(results, cuts) for ready in self._hold(result, cut)]

    def flush(self) -> list[FrameFaces]:
        """The frames still held for look-ahead (none without lag); call at the end of the stream."""
        return self._lagged.flush() if self._lagged is not None else []

    def _hold(self, result: FrameFaces, cut: bool) -> list[FrameFaces]:
        """Pass a frame through the fixed-lag buffer; a scene cut first releases everything before it."""
        released = self._lagged.flush() if cut else []
        return released + self._lagged.push(result, self._held_steps.pop(result.index))

    def _chunk_cuts(self, thumbs: list[np.ndarray]) -> list[bool]:
        """Scene-cut flags of the chunk's frames."""
        previous = [self._prev_thumb] + thumbs[:-1]
        return [is_scene_cut(p, t, self.config.scene_cut_threshold) for p, t in zip(previous, thumbs)]

    def _due_frames(self, cuts: list[bool]) -> list[int]:
        """Chunk positions where detection is due by schedule or at a cut (assuming no extra runs)."""
        due, last = [], self._last_detection
        for k, cut in enumerate(cuts):
            index = self.frames_seen + k
            if cut or self._scheduled(index, last):
                due.append(k)
                last = index
        return due

    def _scheduled(self, index: int, last: int) -> bool:
        """Detection due by schedule: at absolute indices divisible by detect_every, or that long after the last."""
        every = self.config.detect_every
        return index % every == 0 or index - last >= every

    def _step(
        self, frame: np.ndarray, thumb: np.ndarray, cut: bool, detections: list[Detection] | None
    ) -> FrameFaces:
        """Advance every track by one frame, detecting when due or needed."""
        index = self.frames_seen
        if cut:
            log.debug("scene cut at frame %d: %d track(s) end", index, len(self.tracks))
            self.tracks = []
            self._since_cut = 0
        gray = self._flow_image(frame)
        self._predict(gray, frame.shape[1])
        if detections is None and self._detection_needed(index):
            detections = self.detector.detect([frame])[0]
        raw: dict[int, np.ndarray] = {}
        if detections is not None:
            raw = self._associate(detections)
            self._last_detection = index
            self.detected_frames += 1
        self._drop_dead_tracks(frame.shape)
        self._prev_thumb, self._prev_gray = thumb, gray
        self.frames_seen += 1
        self._since_cut += 1
        faces = [t.to_face(raw.get(t.track_id)) for t in self.tracks if t.confirmed]
        if self._lagged is not None:
            self._held_steps[index] = [(t.kalman.history, t.kalman.position) for t in self.tracks if t.confirmed]
        return FrameFaces(index=index, detected=detections is not None, faces=faces)

    def _detection_needed(self, index: int) -> bool:
        """Detect off schedule when a track is lost, uncertain, unconfirmed or recently missed."""
        limit = self.config.max_uncertainty
        return self._scheduled(index, self._last_detection) or any(
            t.flow_failed or not t.confirmed or t.misses > 0 or t.kalman.uncertainty > limit for t in self.tracks
        )

    def _flow_image(self, frame: np.ndarray) -> np.ndarray | None:
        """The gray, downscaled frame optical flow runs on (None when flow is off)."""
        if not self.config.use_flow:
            return None
        gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        scale = self._flow_scale(frame.shape)
        if scale < 1.0:
            gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        return gray

    def _flow_scale(self, shape: tuple[int, ...]) -> float:
        """Downscale factor of the flow image."""
        return min(1.0, self.config.flow_size / max(shape[:2]))

    def _predict(self, gray: np.ndarray | None, frame_width: int) -> None:
        """Kalman predict every track, then correct it with the face's rigid motion from optical flow."""
        motions: list[np.ndarray | None] = [None] * len(self.tracks)
        flow_ready = gray is not None and self._prev_gray is not None and gray.shape == self._prev_gray.shape
        if flow_ready and self.tracks:
            landmarks = [t.kalman.landmarks for t in self.tracks]
            boxes = [t.box() for t in self.tracks]
            motions = self._face_motions(self._prev_gray, gray, landmarks, boxes, gray.shape[1] / frame_width)
        for track, motion in zip(self.tracks, motions):
            track.flow_failed = flow_ready and motion is None
            if motion is None:
                track.kalman.predict()
            else:
                start = track.kalman.estimate
                track.kalman.move(start @ motion[:, :2].T + motion[:, 2] - start)

    def _face_motions(
        self, previous: np.ndarray, current: np.ndarray, landmarks: list, boxes: list, scale: float
    ) -> list[np.ndarray | None]:
        """Per track, the similarity (2x3, frame pixels) that moves its face from the previous frame, or None.

        Points are the 5 landmarks and a grid over the face box, followed by forward-backward
        Lucas-Kanade flow; a RANSAC similarity fit on the points that hold ignores non-rigid parts
        (blinks, lips), so the crop follows the head, not the expression.
        """
        points = [np.concatenate([lm, _grid_points(box)]) for lm, box in zip(landmarks, boxes)]
        counts = [len(p) for p in points]
        p0 = (np.concatenate(points) * scale).astype(np.float32).reshape(-1, 1, 2)
        p1, st1, _ = cv2.calcOpticalFlowPyrLK(previous, current, p0, None, **LK_PARAMS)
        back, st2, _ = cv2.calcOpticalFlowPyrLK(current, previous, p1, None, **LK_PARAMS)
        fb_error = np.linalg.norm((p0 - back).reshape(-1, 2), axis=1)
        ok = (st1.reshape(-1) == 1) & (st2.reshape(-1) == 1)
        motions: list[np.ndarray | None] = []
        for lo, hi, lm in zip(np.cumsum([0] + counts[:-1]), np.cumsum(counts), landmarks):
            size = eye_distance(lm) * scale
            good = ok[lo:hi] & (fb_error[lo:hi] < max(self.config.flow_fb_error * size, 0.5))
            motions.append(_fit_motion(p0[lo:hi, 0][good], p1[lo:hi, 0][good], size, scale))
        return motions

    def _associate(self, detections: list[Detection]) -> dict[int, np.ndarray]:
        """Match detections to tracks, update, count misses and start new tracks; returns raw landmarks by id."""
        matches = self._match(detections)
        matched_tracks = {t for t, _ in matches}
        matched_dets = {d for _, d in matches}
        raw: dict[int, np.ndarray] = {}
        noise = self.config.smoothing.detection_noise
        for t, d in matches:
            track = self.tracks[t]
            track.hit(detections[d], noise)
            track.confirmed = track.confirmed or track.hits >= self.config.min_hits
            raw[track.track_id] = detections[d].landmarks
        for t, track in enumerate(self.tracks):
            if t not in matched_tracks:
                track.misses += 1
        for d, detection in enumerate(detections):
            if d not in matched_dets:
                track = self._new_track(detection)
                raw[track.track_id] = detection.landmarks
        return raw

    def _new_track(self, detection: Detection) -> Track:
        """Start a track; right after a start or a cut it is confirmed at once (as SORT does)."""
        confirmed = self._since_cut < self.config.min_hits
        track = Track(next(self._ids), detection, confirmed, self.config.smoothing, self.config.lag > 0)
        self.tracks.append(track)
        return track

    def _match(self, detections: list[Detection]) -> list[tuple[int, int]]:
        """Optimal assignment on (1 - IoU) + landmark distance in eye distances, with gates."""
        if not self.tracks or not detections:
            return []
        iou = box_iou(np.stack([t.box() for t in self.tracks]), np.stack([d.box for d in detections]))
        predicted = np.stack([t.kalman.estimate for t in self.tracks])[:, None]
        measured = np.stack([d.landmarks for d in detections])[None]
        sizes = np.array([max(d.eye_distance, 1.0) for d in detections])[None]
        distance = np.linalg.norm(predicted - measured, axis=-1).mean(axis=-1) / sizes
        cost = (1.0 - iou) + distance
        gated = (iou < self.config.match_iou) & (distance > self.config.match_landmark_distance)
        cost[gated] = NO_MATCH
        rows, cols = linear_sum_assignment(cost)
        return [(int(r), int(c)) for r, c in zip(rows, cols) if cost[r, c] < NO_MATCH]

    def _drop_dead_tracks(self, shape: tuple[int, ...]) -> None:
        """Remove tracks past their miss budget, unconfirmed tracks that missed, and tracks out of the frame."""
        height, width = shape[:2]

        def alive(track: Track) -> bool:
            x1, y1, x2, y2 = track.box()
            inside = x2 > 0 and y2 > 0 and x1 < width and y1 < height
            budget = self.config.max_misses if track.confirmed else 0
            return inside and track.misses <= budget

        self.tracks = [t for t in self.tracks if alive(t)]


def analyze_frames(
    frames: Iterable[np.ndarray | torch.Tensor], tracker: FaceTracker, chunk: int = 16
) -> Iterator[FrameFaces]:
    """Run a tracker over a stream of frames in chunks (batched detection), yielding FrameFaces in order."""
    buffer: list[np.ndarray | torch.Tensor] = []
    for frame in frames:
        buffer.append(frame)
        if len(buffer) >= chunk:
            yield from tracker.process(buffer)
            buffer = []
    if buffer:
        yield from tracker.process(buffer)
    yield from tracker.flush()
