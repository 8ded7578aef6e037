"""Detection on photos with known face counts, FFHQ alignment, batched warp and paste-back round trip."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from faces_support import read_rgb
from vidrestore.faces import align
from vidrestore.faces.detector import DetectorConfig, FaceDetector


@pytest.fixture(scope="module")
def detector(detector_weights) -> FaceDetector:
    return FaceDetector(detector_weights, device="cpu", config=DetectorConfig(det_size=640))


@pytest.fixture(scope="module")
def two_people(media_dir) -> np.ndarray:
    return read_rgb(media_dir / "photos" / "facerec_two_people.jpg")


@pytest.mark.parametrize(
    "name, count, det_size",
    [
        ("facerec_two_people.jpg", 2, 640),
        ("gfpgan_Blake_Lively.jpg", 2, 640),
        ("gfpgan_10045.png", 3, 640),
        ("gpen_Solvay_conference_1927.png", 29, 1400),
    ],
)
def test_face_counts_on_photos(detector_weights, media_dir, name, count, det_size):
    detector = FaceDetector(detector_weights, device="cpu", config=DetectorConfig(det_size=det_size))
    faces = detector.detect_one(read_rgb(media_dir / "photos" / name))
    assert len(faces) == count
    for face in faces:
        x1, y1, x2, y2 = face.box
        assert x1 < face.landmarks[:, 0].mean() < x2 and y1 < face.landmarks[:, 1].mean() < y2


def test_batched_detection_matches_single_and_full_resolution(detector_weights, detector, two_people):
    batched = detector.detect([two_people, two_people[:, ::-1].copy(), two_people])
    single = detector.detect_one(two_people)
    assert [len(b) for b in batched] == [2, 2, 2]
    for a, b in zip(sorted(batched[2], key=lambda d: d.box[0]), sorted(single, key=lambda d: d.box[0])):
        np.testing.assert_allclose(a.landmarks, b.landmarks, atol=1e-3)
    full = FaceDetector(detector_weights, device="cpu", config=DetectorConfig(det_size=10_000)).detect_one(two_people)
    for a, b in zip(sorted(single, key=lambda d: d.box[0]), sorted(full, key=lambda d: d.box[0])):
        assert _iou(a.box, b.box) > 0.9  # boxes scaled back to frame pixels
        assert np.linalg.norm(a.landmarks.mean(0) - b.landmarks.mean(0)) < 0.1 * b.eye_distance


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_thresholds_filter_detections(detector_weights, two_people):
    strict = FaceDetector(detector_weights, "cpu", DetectorConfig(det_size=640, eye_dist_threshold=1000.0))
    assert strict.detect_one(two_people) == []


def test_template_scales_with_out_size():
    np.testing.assert_allclose(align.face_template(64), align.FFHQ_TEMPLATE_512 / 8)
    np.testing.assert_allclose(align.face_template(512), align.FFHQ_TEMPLATE_512)


def test_similarity_matches_opencv_on_exact_points():
    rng = np.random.default_rng(0)
    angle, scale, shift = 0.3, 0.7, np.array([40.0, -12.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    template = align.face_template(64)
    landmarks = (template - shift) @ np.linalg.inv(rot).T + rng.normal(0, 0, (5, 2))
    ours = align.estimate_similarity(landmarks[None], template)[0]
    cv_matrix = cv2.estimateAffinePartial2D(landmarks, template, method=cv2.LMEDS)[0]
    np.testing.assert_allclose(ours, cv_matrix, atol=1e-4)
    np.testing.assert_allclose(ours[:, :2], rot, atol=1e-9)


def test_batched_warp_matches_cv2_warpaffine(detector, two_people):
    faces = detector.detect_one(two_people)
    landmarks = np.stack([f.landmarks for f in faces])
    frames = [two_people, two_people[::-1].copy()]
    index = [0, 1, 0]
    landmarks = np.concatenate([landmarks, landmarks[:1] * [1, -1] + [0, two_people.shape[0] - 1]])[[0, 2, 1]]
    for size in (512, 64):
        crops, matrices = align.align_and_warp(frames, index, landmarks, size)
        assert crops.shape == (3, 3, size, size)
        for n, i in enumerate(index):
            expected = cv2.warpAffine(
                frames[i], matrices[n], (size, size), borderMode=cv2.BORDER_CONSTANT, borderValue=align.BORDER_RGB
            )
            diff = np.abs(crops[n].permute(1, 2, 0).numpy() - expected)
            assert diff.mean() < 0.5 and diff.max() < 8


def test_warp_fills_outside_with_facexlib_gray():
    frame = np.zeros((40, 40, 3), np.uint8)
    matrix = np.array([[1.0, 0.0, 100.0], [0.0, 1.0, 100.0]])  # the crop lies fully outside the frame
    crop = align.warp_faces([frame], [0], matrix[None], 16)
    np.testing.assert_allclose(crop[0, :, 8, 8].numpy(), align.BORDER_RGB)


def test_identity_round_trip_changes_only_face_regions(detector, two_people):
    faces = detector.detect_one(two_people)
    landmarks = np.stack([f.landmarks for f in faces])
    crops, matrices = align.align_and_warp([two_people], [0, 0], landmarks, 512)
    out = [two_people.copy()]
    align.paste_faces(out, [0, 0], crops, matrices)
    footprint = np.zeros(two_people.shape[:2], bool)
    for m in matrices:
        inv = cv2.invertAffineTransform(m)
        footprint |= cv2.warpAffine(np.ones((512, 512), np.uint8), inv, two_people.shape[1::-1]) > 0
    diff = np.abs(out[0].astype(np.int16) - two_people)
    assert diff[footprint].mean() < 1.0
    assert diff[~footprint].max() == 0


def test_paste_on_torch_frames_matches_numpy(detector, two_people):
    faces = detector.detect_one(two_people)
    landmarks = np.stack([f.landmarks for f in faces])
    crops, matrices = align.align_and_warp([two_people], [0, 0], landmarks, 64)
    restored = 255 - crops  # a visible change, to check where it lands
    numpy_out = align.paste_faces([two_people.copy()], [0, 0], restored, matrices)[0]
    torch_frames = torch.from_numpy(two_people.copy()).unsqueeze(0)
    torch_out = align.paste_faces(torch_frames, [0, 0], restored, matrices)[0]
    assert np.array_equal(torch_out.numpy(), numpy_out)
    assert np.array_equal(torch_frames[0].numpy(), numpy_out)  # pasted in place
    assert (numpy_out != two_people).any()
    assert align.soft_square_mask(64)[0, 0, 0].abs().max() == 0
