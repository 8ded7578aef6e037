"""RetinaFace face detection: batched over frames, on a downscaled copy, on the CPU or the GPU.

The network is facexlib's RetinaFace (mobilenet0.25 by default, resnet50 for quality). Frames are
RGB uint8 (H, W, 3) numpy arrays or torch tensors; they are moved to the device as uint8 (the
cheapest copy), downscaled there so that the long side is `det_size`, and the boxes and landmarks
are scaled back to frame pixels. Decoding and NMS run on the device for the whole batch at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

from vidrestore.device import resolve_device
from vidrestore.errors import CheckpointError
from vidrestore.faces.types import Detection
from vidrestore.models.state_dict import read_state_dict

log = logging.getLogger(__name__)

DETECTOR_NAMES = {"retinaface_mobile0.25": "mobile0.25", "retinaface_resnet50": "resnet50"}
DEFAULT_DETECTOR = "retinaface_mobile0.25"
BGR_MEAN = (104.0, 117.0, 123.0)
PRIOR_MIN_SIZES = ((16, 32), (64, 128), (256, 512))
PRIOR_STEPS = (8, 16, 32)
VARIANCES = (0.1, 0.2)

Frame = np.ndarray | torch.Tensor


@dataclass(frozen=True)
class DetectorConfig:
    """Detection settings: working resolution, thresholds and batch size."""

    det_size: int = 640
    conf_threshold: float = 0.8
    nms_threshold: float = 0.4
    eye_dist_threshold: float = 5.0
    batch_size: int = 8


def resolve_detector_weights(name_or_path: str | Path) -> Path:
    """An existing file is used as is; a known name goes through the weights manager."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    if str(name_or_path) not in DETECTOR_NAMES:
        raise CheckpointError(
            f"detector '{name_or_path}' is neither a file nor one of {', '.join(sorted(DETECTOR_NAMES))}"
        )
    from vidrestore.weights import find_weights

    return Path(find_weights(str(name_or_path)))


def _network_name(state: dict[str, torch.Tensor]) -> str:
    """mobile0.25 or resnet50, told apart by the backbone's parameter names."""
    if any(k.startswith("body.stage1") for k in state):
        return "mobile0.25"
    if any(k.startswith("body.layer1") for k in state):
        return "resnet50"
    raise CheckpointError("weights are not a RetinaFace mobilenet0.25 or resnet50 checkpoint")


def load_retinaface(path: Path, device: torch.device) -> torch.nn.Module:
    """facexlib's RetinaFace network with the checkpoint's weights, in eval mode on `device`."""
    from facexlib.detection.retinaface import RetinaFace

    state = read_state_dict(path, nested=("state_dict",))
    model = RetinaFace(network_name=_network_name(state), device=torch.device("cpu"))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"detector weights {path} do not fit RetinaFace: {exc}") from None
    return model.eval().to(device)


@lru_cache(maxsize=16)
def _priors_cpu(height: int, width: int) -> torch.Tensor:
    """RetinaFace anchors (cx, cy, w, h) in pixels for an input of this size, in the network's order."""
    parts = []
    for step, sizes in zip(PRIOR_STEPS, PRIOR_MIN_SIZES):
        rows, cols = -(-height // step), -(-width // step)
        cy, cx = torch.meshgrid(
            (torch.arange(rows, dtype=torch.float32) + 0.5) * step,
            (torch.arange(cols, dtype=torch.float32) + 0.5) * step,
            indexing="ij",
        )
        centers = torch.stack([cx, cy], dim=-1).reshape(-1, 1, 2).expand(-1, len(sizes), 2)
        wh = torch.tensor(sizes, dtype=torch.float32).reshape(1, -1, 1).expand(centers.shape[0], -1, 2)
        parts.append(torch.cat([centers, wh], dim=-1).reshape(-1, 4))
    return torch.cat(parts)


def detection_size(height: int, width: int, det_size: int) -> tuple[int, int]:
    """The (h, w) the detector sees: long side at most det_size, never upscaled."""
    scale = min(1.0, det_size / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def frames_to_tensor(frames: Sequence[Frame], device: torch.device) -> torch.Tensor:
    """Stack RGB uint8 HWC frames into one (N, H, W, 3) uint8 tensor on `device`."""
    if all(isinstance(f, torch.Tensor) for f in frames):
        return torch.stack([f.to(device) for f in frames])
    return torch.from_numpy(np.stack([np.asarray(f) for f in frames])).to(device)


class FaceDetector:
    """RetinaFace over batches of frames; `detect(frames)` returns one list of Detection per frame."""

    def __init__(
        self,
        weights: str | Path = DEFAULT_DETECTOR,
        device: str | torch.device = "auto",
        config: DetectorConfig | None = None,
    ) -> None:
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.config = config or DetectorConfig()
        self.weights_path = resolve_detector_weights(weights)
        self.model = load_retinaface(self.weights_path, self.device)
        self.mean = torch.tensor(BGR_MEAN, device=self.device).view(1, 3, 1, 1)
        log.debug("detector %s on %s, det_size %d", self.weights_path.name, self.device, self.config.det_size)

    def detect(self, frames: Sequence[Frame]) -> list[list[Detection]]:
        """Faces of each frame (frames of any sizes; same-size runs are batched)."""
        results: list[list[Detection]] = []
        start = 0
        while start < len(frames):
            shape = tuple(frames[start].shape)
            stop = start + 1
            while stop < len(frames) and stop - start < self.config.batch_size and tuple(frames[stop].shape) == shape:
                stop += 1
            results.extend(self._detect_batch(frames[start:stop]))
            start = stop
        return results

    def detect_one(self, frame: Frame) -> list[Detection]:
        """Faces of a single frame (a photo)."""
        return self.detect([frame])[0]

    @torch.inference_mode()
    def _detect_batch(self, frames: Sequence[Frame]) -> list[list[Detection]]:
        """Detections of same-size frames in one network call."""
        batch = frames_to_tensor(frames, self.device)
        height, width = batch.shape[1:3]
        net_input, (sy, sx) = self._prepare(batch)
        loc, conf, landm = self.model(net_input)
        priors = _priors_cpu(*net_input.shape[2:]).to(self.device)
        boxes, landmarks = _decode(loc, landm, priors)
        scale = torch.tensor([sx, sy], device=self.device)
        boxes = boxes * scale.repeat(2)
        landmarks = landmarks * scale
        return self._select(boxes, conf[..., 1], landmarks, len(frames))

    def _prepare(self, batch: torch.Tensor) -> tuple[torch.Tensor, tuple[float, float]]:
        """uint8 RGB NHWC to the network's BGR mean-subtracted NCHW input at detection size."""
        height, width = batch.shape[1:3]
        dh, dw = detection_size(height, width, self.config.det_size)
        x = batch.permute(0, 3, 1, 2).flip(1).float()
        if (dh, dw) != (height, width):
            x = F.interpolate(x, size=(dh, dw), mode="bilinear", antialias=True, align_corners=False)
        return x - self.mean, (height / dh, width / dw)

    def _select(
        self, boxes: torch.Tensor, scores: torch.Tensor, landmarks: torch.Tensor, count: int
    ) -> list[list[Detection]]:
        """Threshold, batched NMS and eye-distance filter, then numpy Detections per frame."""
        keep = scores > self.config.conf_threshold
        frame_idx = torch.arange(count, device=self.device).unsqueeze(1).expand_as(scores)[keep]
        boxes, scores, landmarks = boxes[keep], scores[keep], landmarks[keep]
        nms_keep = torchvision.ops.batched_nms(boxes, scores, frame_idx, self.config.nms_threshold)
        eye = (landmarks[nms_keep, 0] - landmarks[nms_keep, 1]).norm(dim=-1)
        nms_keep = nms_keep[eye >= self.config.eye_dist_threshold]
        rows = zip(
            frame_idx[nms_keep].tolist(),
            boxes[nms_keep].cpu().numpy(),
            scores[nms_keep].tolist(),
            landmarks[nms_keep].cpu().numpy(),
        )
        per_frame: list[list[Detection]] = [[] for _ in range(count)]
        for index, box, score, points in rows:
            per_frame[index].append(Detection(box=box, score=score, landmarks=points))
        return per_frame


def _decode(loc: torch.Tensor, landm: torch.Tensor, priors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Network offsets to boxes (N, A, 4) x1y1x2y2 and landmarks (N, A, 5, 2) in network-input pixels."""
    centers, sizes = priors[:, :2], priors[:, 2:]
    box_c = centers + loc[..., :2] * VARIANCES[0] * sizes
    box_wh = sizes * torch.exp(loc[..., 2:] * VARIANCES[1])
    boxes = torch.cat([box_c - box_wh / 2, box_c + box_wh / 2], dim=-1)
    points = landm.reshape(*landm.shape[:-1], 5, 2)
    landmarks = centers.unsqueeze(1) + points * VARIANCES[0] * sizes.unsqueeze(1)
    return boxes, landmarks
