"""`Restorer`: the restoration of single frames and images, for callers that bring their own pixels.

    restorer = vidrestore.Restorer(RestoreOptions(model="GFPGANv1.4"))
    out_rgb = restorer.restore_frame(rgb)          # H x W x 3 RGB uint8 in, a new array out
    restorer.restore_image("photo.jpg", "out.png")
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np
import torch

from vidrestore.device import resolve_device
from vidrestore.errors import MediaError, VidrestoreError
from vidrestore.faces.detector import DetectorConfig, FaceDetector
from vidrestore.models.loading import load_restorer
from vidrestore.models.restorer import BatchRestorer
from vidrestore.pipeline.options import RestoreOptions
from vidrestore.pipeline.stages import CropRestorer, select_faces
from vidrestore.video.paths import check_input, check_output, make_temp, remove_quietly

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def is_image_path(path: str | os.PathLike) -> bool:
    """True for a file name with an image extension (the image path of the main job)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def load_crop_restorer(options: RestoreOptions, device: torch.device) -> CropRestorer | None:
    """The restoration core for the options' model; None for `--model none`."""
    if not options.restores:
        return None
    from vidrestore.weights import find_weights

    path = find_weights(options.model, offline=options.offline)
    model = load_restorer(path)
    batch = BatchRestorer(model, device, precision=options.precision, batch_size=options.batch_size)
    log.info("restorer %s (%dx%d faces) on %s, %s, %d faces per batch", Path(path).name, model.out_size,
             model.out_size, device, batch.precision, batch.batch_size)
    return CropRestorer(batch, options.blend)


def load_detector(options: RestoreOptions, device: torch.device) -> FaceDetector:
    """The face detector of the options (name or weights path), at their detection size."""
    return FaceDetector(options.detector, device, DetectorConfig(det_size=options.det_size))


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image file as RGB uint8 (H, W, 3); MediaError naming the file when it cannot be read."""
    check_input(path)
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise MediaError(f"cannot read image {path}: not an image file or an unsupported format")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def write_image(path: str | os.PathLike, rgb: np.ndarray, input_path: str | os.PathLike | None = None) -> Path:
    """Write an RGB image atomically (temporary file, then rename); the format follows the extension."""
    out = check_output(path, input_path)
    ok, data = cv2.imencode(out.suffix, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise MediaError(f"cannot encode an image as {out.suffix}: {out}")
    tmp = make_temp(out)
    try:
        tmp.write_bytes(data.tobytes())
        os.replace(tmp, out)
    except BaseException:
        remove_quietly(tmp)
        raise
    return out


class Restorer:
    """Restores the faces of single frames or images with the options' detector and model."""

    def __init__(self, options: RestoreOptions | None = None, **overrides: object) -> None:
        self.options = (options or RestoreOptions()).with_overrides(overrides)
        self.device = resolve_device(self.options.device)
        self.engine = load_crop_restorer(self.options, self.device)
        self.detector = load_detector(self.options, self.device) if self.engine is not None else None

    def restore_frame(self, rgb: np.ndarray) -> np.ndarray:
        """A copy of the RGB uint8 frame with its faces restored (unchanged when there is none)."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise VidrestoreError(f"restore_frame expects an H x W x 3 uint8 RGB array, got {rgb.dtype} {rgb.shape}")
        out = np.array(rgb, copy=True)
        if self.engine is None or self.detector is None:
            return out
        faces = select_faces(self.detector.detect_one(out), *out.shape[:2],
                             only_center=self.options.only_center_face, largest=self.options.largest_face)
        if not faces:
            return out
        face_frame = np.zeros(len(faces), dtype=np.int64)
        landmarks = np.stack([np.asarray(f.landmarks, dtype=np.float64) for f in faces])
        crops, matrices = self.engine.restore([out], face_frame, landmarks)
        self.engine.paste([out], face_frame, crops, matrices)
        log.info("restored %d face(s)", len(faces))
        return out

    def restore_image(self, input: str | os.PathLike, output: str | os.PathLike) -> Path:
        """Restore the faces of an image file into another image file."""
        check_output(output, input)
        return write_image(output, self.restore_frame(read_image(input)), input)
