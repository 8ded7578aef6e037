"""Face analysis: detection (RetinaFace), tracking with Kalman-smoothed landmarks, alignment and paste-back.

Frames come in as RGB uint8 (H, W, 3) numpy arrays or torch tensors; the API takes frames, not files.
"""

from vidrestore.faces.align import align_and_warp, estimate_similarity, face_template, paste_faces, warp_faces
from vidrestore.faces.detector import DetectorConfig, FaceDetector
from vidrestore.faces.smoothing import LandmarkKalman, SmoothingConfig
from vidrestore.faces.tracker import FaceTracker, TrackerConfig, analyze_frames, find_scene_cuts
from vidrestore.faces.types import Detection, FrameFaces, TrackedFace

__all__ = [
    "Detection",
    "DetectorConfig",
    "FaceDetector",
    "FaceTracker",
    "FrameFaces",
    "LandmarkKalman",
    "SmoothingConfig",
    "TrackedFace",
    "TrackerConfig",
    "align_and_warp",
    "analyze_frames",
    "estimate_similarity",
    "face_template",
    "find_scene_cuts",
    "paste_faces",
    "warp_faces",
]
