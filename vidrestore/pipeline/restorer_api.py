"""`Restorer`: the restoration of single frames and images, for callers that bring their own pixels.

    restorer = vidrestore.Restorer(RestoreOptions(model="GFPGANv1.4"))
    out_rgb = restorer.restore_frame(rgb)          # H x W x 3 RGB uint8 in, a new array out
    results = restorer.restore_frames([a, b, c])   # several images, one batched model call; .image, .faces
    report = restorer.restore_image("photo.png", "out.png")  # alpha kept; report.faces: faces restored
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from vidrestore.device import resolve_device
from vidrestore.errors import VidrestoreError
from vidrestore.faces.detector import DetectorConfig, FaceDetector
from vidrestore.faces.types import Detection
from vidrestore.models.crop_restorer import CropRestorer
from vidrestore.models.loading import load_restorer
from vidrestore.models.restorer import BatchRestorer
from vidrestore.pipeline.image_io import ImagePixels, check_image_output, read_image_file, write_image_file
from vidrestore.pipeline.options import RestoreOptions
from vidrestore.pipeline.stages import select_faces
from vidrestore.video.patch import is_grey_rgb, keep_chroma_where_changed

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def is_image_path(path: str | os.PathLike) -> bool:
    """True for a file name with an image extension (the image path of the main job)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def load_crop_restorer(options: RestoreOptions, device: torch.device) -> CropRestorer | None:
    """The restoration core for the options' model; None for `--model none`."""
    if not options.restores:
        return None
    from vidrestore.weights import find_all_weights

    # restoring needs the detector's file too: fetched together, one error names every missing file
    path, _ = find_all_weights([(options.model, "restorer"), (options.detector, "detector")],
                               offline=options.offline)
    model = load_restorer(path)
    batch = BatchRestorer(model, device, precision=options.precision, batch_size=options.batch_size)
    log.info("restorer %s (%dx%d faces) on %s, %s, %d faces per batch", Path(path).name, model.out_size,
             model.out_size, device, batch.precision, batch.batch_size)
    return CropRestorer(batch, options.blend)


def load_detector(options: RestoreOptions, device: torch.device,
                  conf_threshold: float = DetectorConfig.conf_threshold) -> FaceDetector:
    """The face detector of the options (name or weights path), at their detection size."""
    config = DetectorConfig(det_size=options.det_size, conf_threshold=conf_threshold)
    return FaceDetector(options.detector, device, config)


def check_rgb(rgb: np.ndarray) -> None:
    """VidrestoreError unless the array is an H x W x 3 uint8 RGB picture."""
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        shape = getattr(rgb, "shape", None)
        raise VidrestoreError(f"expected an H x W x 3 uint8 RGB array, got {getattr(rgb, 'dtype', type(rgb))} {shape}")


@dataclass(frozen=True)
class RestoredImage:
    """A restored picture and the faces found in it (boxes, scores and landmarks in its pixels)."""

    image: np.ndarray
    faces: list[Detection]


@dataclass(frozen=True)
class ImageReport:
    """What restoring an image file did: the files, and how many faces were restored."""

    input: Path
    output: Path
    faces: int

    def summary(self) -> str:
        """One line for the log, as the video job's report gives."""
        return f"{self.input.name}: {self.faces} face(s) restored -> {self.output}"


class Restorer:
    """Restores the faces of single frames or images with the options' detector and model."""

    def __init__(self, options: RestoreOptions | None = None, **overrides: object) -> None:
        self.options = (options or RestoreOptions()).with_overrides(overrides)
        self.device = resolve_device(self.options.device)
        self.engine = load_crop_restorer(self.options, self.device)
        self.detector = load_detector(self.options, self.device) if self.engine is not None else None

    def derive(self, *, blend: float, only_center_face: bool, restores: bool = True) -> Restorer:
        """A Restorer with other per-request options that shares this one's loaded detector and model.

        `restores=False` gives one that hands back unchanged copies (`model=none`).
        """
        derived = object.__new__(type(self))
        derived.options = self.options.with_overrides({"blend": blend, "only_center_face": only_center_face})
        derived.device = self.device
        derived.engine = self.engine.with_blend(blend) if restores and self.engine is not None else None
        derived.detector = self.detector
        return derived

    def restore_frame(self, rgb: np.ndarray) -> np.ndarray:
        """A copy of the RGB uint8 frame with its faces restored (unchanged when there is none)."""
        return self.restore_frames([rgb])[0].image

    def restore_frames(self, images: Sequence[np.ndarray]) -> list[RestoredImage]:
        """Restore the faces of several independent images with one batched model call (sizes may differ).

        This is how a server batches concurrent requests on one GPU: detection runs per same-size run
        of images, restoration over all their faces at once (chunked by the restorer's batch size).
        """
        for rgb in images:
            check_rgb(rgb)
        outs = [np.array(rgb, copy=True) for rgb in images]
        if self.engine is None or self.detector is None or not outs:
            return [RestoredImage(out, []) for out in outs]
        found = [select_faces(faces, *out.shape[:2], only_center=self.options.only_center_face,
                              largest=self.options.largest_face)
                 for faces, out in zip(self.detector.detect(outs), outs)]
        face_frame = np.array([k for k, faces in enumerate(found) for _ in faces], dtype=np.int64)
        if len(face_frame):
            landmarks = np.stack([np.asarray(f.landmarks, dtype=np.float64) for faces in found for f in faces])
            crops, matrices = self.engine.restore(outs, face_frame, landmarks)
            self.engine.paste(outs, face_frame, crops, matrices)
            for out, rgb in zip(outs, images):
                if self.keeps_chroma(rgb):
                    keep_chroma_where_changed(out, rgb)
            log.debug("restored %d face(s) in %d image(s)", len(face_frame), len(outs))
        return [RestoredImage(out, faces) for out, faces in zip(outs, found)]

    def keeps_chroma(self, rgb: np.ndarray) -> bool:
        """Whether only the restored luma goes into this picture: --colour source, or auto on a grey picture."""
        return self.options.colour == "source" or (self.options.colour == "auto" and is_grey_rgb(rgb))

    def restore_image(self, input: str | os.PathLike, output: str | os.PathLike) -> ImageReport:
        """Restore the faces of an image file into another image file (its alpha channel kept)."""
        check_image_output(output, input)
        pixels = read_image_file(input)
        result = self.restore_frames([pixels.rgb])[0]
        written = write_image_file(output, ImagePixels(result.image, pixels.alpha), input)
        return ImageReport(Path(input), written, len(result.faces))
