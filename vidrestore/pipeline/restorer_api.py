"""`Restorer`: the restoration of single frames and images, for callers that bring their own pixels.

    restorer = vidrestore.Restorer(RestoreOptions(model="GFPGANv1.4"))
    out_rgb = restorer.restore_frame(rgb)          # H x W x 3 RGB uint8 in, a new array out
    results = restorer.restore_frames([a, b, c])   # several images, one batched model call; .image, .faces
    report = restorer.restore_image("photo.png", "out.png")  # alpha kept; report.faces: faces restored

With `upscale` above 1 the pictures come back that many times larger: the background upsampled
(Lanczos or Real-ESRGAN) and the restored faces pasted at that size; faces are in output pixels.
"""

from __future__ import annotations

import dataclasses
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
from vidrestore.models.face_parser import FaceParser
from vidrestore.models.loading import load_restorer
from vidrestore.models.parsenet import load_parsenet
from vidrestore.models.restorer import BatchRestorer
from vidrestore.models.upsampler import (
    Background,
    TiledUpsampler,
    lanczos_resize,
    load_realesrgan,
)
from vidrestore.pipeline.image_io import (
    ImagePixels,
    check_image_output,
    read_image_file,
    write_image_file,
)
from vidrestore.pipeline.options import RestoreOptions
from vidrestore.pipeline.stages import select_faces
from vidrestore.video.patch import is_grey_rgb, keep_chroma_where_changed
from vidrestore.video.types import VideoInfo

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

    # restoring needs the detector's (the parser's, Real-ESRGAN's) files too: fetched together, one error
    # names them all (load_upsampler then finds its file here)
    wanted = [(options.model, "restorer"), (options.detector, "detector")]
    if options.mask == "parse":
        wanted.append((options.parser, "parser"))
    if (bg_model := bg_model_of(options)) is not None:
        wanted.append((bg_model, "upsampler"))
    paths = find_all_weights(wanted, offline=options.offline)
    model = load_restorer(paths[0])
    batch = BatchRestorer(model, device, precision=options.precision, batch_size=options.batch_size)
    log.info("restorer %s (%dx%d faces) on %s, %s, %d faces per batch", Path(paths[0]).name, model.out_size,
             model.out_size, device, batch.precision, batch.batch_size)
    parser = None
    if options.mask == "parse":
        parser = FaceParser(load_parsenet(paths[2], device), device, precision=batch.precision)
        log.info("face parser %s: paste-back masks follow face and hair", Path(paths[2]).name)
    return CropRestorer(batch, options.blend, parser)


def default_bg_model(factor: float) -> str:
    """The Real-ESRGAN checkpoint for a factor: x2plus up to 2x (GFPGAN's default), x4plus above."""
    return "RealESRGAN_x2plus" if factor <= 2 else "RealESRGAN_x4plus"


def bg_model_of(options: RestoreOptions) -> str | None:
    """The Real-ESRGAN weights (name or path) the options' background needs; None for a Lanczos one."""
    if not options.upscales or options.background != "realesrgan":
        return None
    return options.bg_model or default_bg_model(options.upscale)


def load_upsampler(options: RestoreOptions, device: torch.device) -> TiledUpsampler | None:
    """The background network of the options (Real-ESRGAN in tiles); None for a Lanczos background."""
    bg_model = bg_model_of(options)
    if bg_model is None:
        return None
    from vidrestore.weights import find_weights

    path = find_weights(bg_model, kind="upsampler", offline=options.offline)
    network = TiledUpsampler(load_realesrgan(path), device, tile=options.bg_tile, precision=options.precision)
    if device.type == "cpu":
        log.warning("Real-ESRGAN runs on the CPU here: seconds per frame (--bg-upsampler lanczos is fast)")
    log.info("background upsampler %s (x%d) on %s, %s, tiles of %d px", Path(path).name, network.scale,
             device, network.precision, options.bg_tile)
    return network


def background_for(options: RestoreOptions, network: TiledUpsampler | None,
                   info: VideoInfo | None = None) -> Background | None:
    """How frames of a video (`info`) or of any images (None) are brought to the output size; None at 1x."""
    if not options.upscales:
        return None
    if info is None:
        return Background(options.upscale, network)
    out = options.output_info(info)
    return Background(options.upscale, network, size=(out.width, out.height))


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
        self.network = load_upsampler(self.options, self.device)
        self.background = background_for(self.options, self.network)

    def derive(self, *, blend: float, only_center_face: bool, restores: bool = True,
               upscale: float | None = None, bg_upsampler: str | None = None, mask: str | None = None) -> Restorer:
        """A Restorer with other per-request options that shares this one's loaded detector and models.

        `restores=False` gives one that hands back unchanged copies (`model=none`), upscaled if asked.
        A Real-ESRGAN background or a parsing mask can only be asked of a Restorer that loaded one.
        """
        overrides = {"blend": blend, "only_center_face": only_center_face, "upscale": upscale,
                     "bg_upsampler": bg_upsampler, "mask": mask}
        derived = object.__new__(type(self))
        derived.options = self.options.with_overrides(overrides)
        parser = self.engine.parser if self.engine is not None else None
        if derived.options.mask == "parse" and restores and parser is None:
            raise VidrestoreError("no face parser is loaded here (start with --mask parse)")
        derived.device = self.device
        derived.engine = None
        if restores and self.engine is not None:
            derived.engine = self.engine.with_blend(blend, parser if derived.options.mask == "parse" else None)
        derived.detector = self.detector
        derived.network = self.network if derived.options.background == "realesrgan" else None
        if derived.options.upscales and derived.options.background == "realesrgan" and derived.network is None:
            raise VidrestoreError("no Real-ESRGAN background upsampler is loaded here (start with "
                                  "--bg-upsampler realesrgan)")
        derived.background = background_for(derived.options, derived.network)
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
            return [RestoredImage(out, []) for out in self._upscaled(outs)]
        found = [select_faces(faces, *out.shape[:2], only_center=self.options.only_center_face,
                              largest=self.options.largest_face)
                 for faces, out in zip(self.detector.detect(outs), outs)]
        face_frame = np.array([k for k, faces in enumerate(found) for _ in faces], dtype=np.int64)
        sources, outs = outs, self._upscaled(outs)
        if len(face_frame):
            landmarks = np.stack([np.asarray(f.landmarks, dtype=np.float64) for faces in found for f in faces])
            crops, matrices = self.engine.restore(sources, face_frame, landmarks)
            if self.background is not None:
                matrices = self.background.paste_matrices(matrices, face_frame, sources, outs)
            # the pictures at the output size before pasting, where only the restored luma goes in
            unpasted = [out.copy() if self.keeps_chroma(rgb) else None for out, rgb in zip(outs, images)]
            self.engine.paste(outs, face_frame, crops, matrices)
            for out, before in zip(outs, unpasted):
                if before is not None:
                    keep_chroma_where_changed(out, before)
            log.debug("restored %d face(s) in %d image(s)", len(face_frame), len(outs))
        return [RestoredImage(out, _in_output_pixels(faces, src, out))
                for out, faces, src in zip(outs, found, sources)]

    def _upscaled(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """The pictures at the output size (themselves at 1x)."""
        return images if self.background is None else self.background.upscale(images)

    def keeps_chroma(self, rgb: np.ndarray) -> bool:
        """Whether only the restored luma goes into this picture: --colour source, or auto on a grey picture."""
        return self.options.colour == "source" or (self.options.colour == "auto" and is_grey_rgb(rgb))

    def restore_image(self, input: str | os.PathLike, output: str | os.PathLike) -> ImageReport:
        """Restore the faces of an image file into another image file (its alpha channel kept)."""
        check_image_output(output, input)
        pixels = read_image_file(input)
        result = self.restore_frames([pixels.rgb])[0]
        written = write_image_file(output, ImagePixels(result.image, resized_alpha(pixels.alpha, result.image)), input)
        return ImageReport(Path(input), written, len(result.faces))


def resized_alpha(alpha, image: np.ndarray):
    """The alpha channel (a Pillow image, or None) at the size of the restored picture, by the background's resize."""
    if alpha is None or alpha.size == (image.shape[1], image.shape[0]):
        return alpha
    from PIL import Image

    return Image.fromarray(lanczos_resize(np.asarray(alpha), image.shape[1], image.shape[0]))


def _in_output_pixels(faces: list[Detection], source: np.ndarray, out: np.ndarray) -> list[Detection]:
    """Detections of the source picture in the output picture's pixels (the same at 1x)."""
    if source.shape == out.shape:
        return faces
    sy, sx = out.shape[0] / source.shape[0], out.shape[1] / source.shape[1]
    scale = np.array([sx, sy])
    return [dataclasses.replace(face, box=(np.asarray(face.box[:4]).reshape(2, 2) * scale).reshape(4),
                                landmarks=np.asarray(face.landmarks) * scale) for face in faces]
