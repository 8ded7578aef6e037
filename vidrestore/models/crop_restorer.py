"""`CropRestorer`: the restoration core, from frames and landmarks to restored crops and back.

Faces of many frames are aligned to the FFHQ template (faces/align.py), restored in one batched
call of a `BatchRestorer`, blended with the original crop by the fidelity `blend`, and pasted back
through a feathered box, or with a `FaceParser` through a face-and-hair mask of each restored crop.
Variants with another blend share the loaded models (`with_blend`), so a server keeps one in memory.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from vidrestore.faces.align import align_and_warp, paste_faces, paste_regions
from vidrestore.models.face_parser import FaceParser
from vidrestore.models.restorer import BatchRestorer


class CropRestorer:
    """Aligns faces, restores their crops in one batched call, blends with the original crop, pastes back."""

    def __init__(self, restorer: BatchRestorer, blend: float = 1.0, parser: FaceParser | None = None) -> None:
        self.restorer = restorer
        self.blend = blend
        self.parser = parser
        self.face_size = restorer.face_size
        self.device = restorer.device

    def with_blend(self, blend: float, parser: FaceParser | None | bool = True) -> CropRestorer:
        """The same loaded model with another fidelity blend (this one unchanged); `parser` None pastes
        through the box, True keeps this one's parser."""
        parser = self.parser if parser is True else parser
        if blend == self.blend and parser is self.parser:
            return self
        return CropRestorer(self.restorer, blend, parser)

    def restore(self, images: Sequence[np.ndarray], face_frame: np.ndarray,
                landmarks: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        """Restored crops (N,3,s,s) RGB 0..255 and their matrices for faces of many frames at once."""
        crops, matrices = align_and_warp(images, face_frame, landmarks, self.face_size, self.device)
        restored = self.restorer.restore(crops / 255.0) * 255.0
        if self.blend < 1.0:
            restored = torch.lerp(crops, restored, self.blend)  # fidelity: 0 = original crop
        return restored, matrices

    def paste(self, images: Sequence[np.ndarray], face_frame: np.ndarray, crops: torch.Tensor,
              matrices: np.ndarray) -> np.ndarray:
        """Blend restored crops back into their frames in place; returns the (N,4) boxes that may have changed."""
        images = list(images)
        masks = self.parser.masks(crops) if self.parser is not None and len(crops) else None
        paste_faces(images, face_frame, crops, matrices, masks)
        return paste_regions(images, face_frame, matrices, crops.shape[-1])
