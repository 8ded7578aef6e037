"""The output's faces over time for `vidrestore qc`: landmark jitter and identity drift.

Faces are re-detected with RetinaFace on every output frame (and every source frame, for the baseline)
and linked frame to frame into chains by box IoU (at least LINK_IOU, best first).

Landmark jitter of a chain at frame t is the mean over the 5 landmarks of |L[t+1] - 2 L[t] + L[t-1]|
divided by the eye distance |L_left_eye[t] - L_right_eye[t]|: the second difference removes steady
motion (a face moving at constant speed scores 0) and the eye distance makes it independent of the
face's size. The video's jitter is the mean over every chain and every frame with both neighbours in
its chain. Detector noise alone gives the source a jitter above 0; the output's is read against it.

Identity drift, with ArcFace (the released arcface_resnet18 weights, when present): embeddings of the
output face aligned to the 128-pixel FFHQ template, and of the source through the same alignment; the
cosine distance (1 - cosine similarity) between consecutive frames of a chain, and to the source face
of the same frame. Without the weights both are reported as absent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from vidrestore.faces.align import estimate_similarity, face_template, warp_faces
from vidrestore.faces.tracker import box_iou
from vidrestore.faces.types import Detection

log = logging.getLogger(__name__)

LINK_IOU = 0.3
IDENTITY_SIZE = 128


def link(previous: list[Detection], current: list[Detection]) -> dict[int, int]:
    """For faces of the current frame, the face of the previous frame each continues: {current: previous}."""
    if not previous or not current:
        return {}
    iou = box_iou(np.stack([d.box for d in current]), np.stack([d.box for d in previous]))
    links: dict[int, int] = {}
    for flat in np.argsort(-iou, axis=None):
        c, p = (int(v) for v in np.unravel_index(flat, iou.shape))
        if iou[c, p] < LINK_IOU:
            break
        if c not in links and p not in links.values():
            links[c] = p
    return links


def second_difference(before: np.ndarray, now: np.ndarray, after: np.ndarray) -> float:
    """Mean landmark magnitude of after - 2 now + before (5,2 each), in eye distances of `now`."""
    eye = max(float(np.linalg.norm(now[0] - now[1])), 1.0)
    return float(np.linalg.norm(after - 2 * now + before, axis=1).mean() / eye)


@dataclass
class LandmarkJitter:
    """Landmark jitter of a video's re-detected faces (see the module's docstring), fed frame by frame."""

    values: list[float] = field(default_factory=list)
    _faces: list[Detection] = field(default_factory=list, repr=False)
    _before: dict[int, np.ndarray] = field(default_factory=dict, repr=False)  # current face -> landmarks at t-1

    def add(self, faces: list[Detection]) -> dict[int, int]:
        """The next frame's faces; returns their links to the previous frame's ({current: previous})."""
        links = link(self._faces, faces)
        before: dict[int, np.ndarray] = {}
        for c, p in links.items():
            if p in self._before:  # p had a predecessor: a full triple, centred on p's frame
                self.values.append(second_difference(self._before[p], self._faces[p].landmarks, faces[c].landmarks))
            before[c] = self._faces[p].landmarks
        self._faces, self._before = list(faces), before
        return links

    def reset(self) -> None:
        """Break every chain (a scene cut, or a frame the output lacks)."""
        self._faces, self._before = [], {}

    @property
    def jitter(self) -> float | None:
        return float(np.mean(self.values)) if self.values else None


def _cosine_distance(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    return (1.0 - torch.nn.functional.cosine_similarity(a, b, dim=1)).cpu().numpy()


@dataclass
class IdentityDrift:
    """Cosine distances of ArcFace embeddings: output to output one frame before, and output to source."""

    net: torch.nn.Module
    consecutive: list[float] = field(default_factory=list)
    to_source: list[float] = field(default_factory=list)
    _previous: torch.Tensor | None = field(default=None, repr=False)

    @torch.inference_mode()
    def add(self, source: np.ndarray, output: np.ndarray, faces: list[Detection], links: dict[int, int]) -> None:
        """One frame pair (H,W,3 uint8), the output's faces and their links to the previous frame's faces."""
        from vidrestore.train.arcface import gray_for_identity

        if not faces:
            self._previous = None
            return
        device = next(self.net.parameters()).device
        matrices = estimate_similarity(np.stack([f.landmarks for f in faces]), face_template(IDENTITY_SIZE))
        crops = warp_faces([source, output], np.repeat([0, 1], len(faces)), np.concatenate([matrices, matrices]),
                           IDENTITY_SIZE, device)
        embeddings = self.net(gray_for_identity(crops / 127.5 - 1.0))
        src, out = embeddings[: len(faces)], embeddings[len(faces):]
        self.to_source += _cosine_distance(out, src).tolist()
        if self._previous is not None and links:
            now, before = zip(*sorted(links.items()))
            self.consecutive += _cosine_distance(out[list(now)], self._previous[list(before)]).tolist()
        self._previous = out

    def reset(self) -> None:
        self._previous = None

    def to_json(self) -> dict[str, Any]:
        mean = lambda xs: float(np.mean(xs)) if xs else None
        return {"status": "measured", "consecutive_mean": mean(self.consecutive),
                "consecutive_max": max(self.consecutive, default=None), "to_source_mean": mean(self.to_source),
                "to_source_max": max(self.to_source, default=None)}


ABSENT = {"status": "absent", "reason": "arcface_resnet18.pth not found (vidrestore weights download arcface_resnet18)"}
