"""Batched face restoration with a loaded GFP-GAN: normalise, run in chunks, clamp.

Crops arrive as aligned RGB tensors (N, 3, S, S), uint8 or float in [0, 1], already on the model's
device; they leave as float in [0, 1] on the same device, so warps and blends before and after stay
on the GPU. Noise is fixed (stored buffers) so the same face gives the same output in every frame.
When a chunk does not fit in GPU memory the chunk size is halved and the work retried.
"""

from __future__ import annotations

import logging

import torch

from vidrestore.errors import VidrestoreError
from vidrestore.models.gfpgan import GFPGAN
from vidrestore.models.precision import autocast, check_precision, default_precision, prepare_for_inference

log = logging.getLogger(__name__)


def default_batch_size(device: torch.device, face_size: int = 512) -> int:
    """Faces per forward pass: 16 on a GPU (throughput); on a CPU one full-size face at a time.

    On the CPU the convolutions are compute- and memory-bound whatever the batch: measured on the
    2-core machine, 512px faces ran at 0.40 faces/s at batch 1, 0.38 at 2 and 0.33 at 4
    (benchmarks/model.md). Small test models still gain from a few faces per call.
    """
    if device.type == "cuda":
        return 16
    return 1 if face_size >= 256 else 4


class BatchRestorer:
    """Runs a GFP-GAN over any number of aligned face crops, `batch_size` at a time."""

    def __init__(
        self,
        model: GFPGAN,
        device: torch.device,
        *,
        precision: str | None = None,
        batch_size: int | None = None,
    ) -> None:
        self.device = device
        self.precision = check_precision(precision or default_precision(device))
        self.face_size = model.out_size
        self.batch_size = max(1, batch_size or default_batch_size(device, self.face_size))
        self.model = prepare_for_inference(model, device)

    @torch.inference_mode()
    def restore(self, crops: torch.Tensor) -> torch.Tensor:
        """Restore (N, 3, S, S) crops; returns float (N, 3, S, S) in [0, 1] on the same device."""
        if crops.ndim != 4 or crops.shape[1] != 3 or crops.shape[2:] != (self.face_size, self.face_size):
            raise VidrestoreError(
                f"restorer expects crops of shape (N, 3, {self.face_size}, {self.face_size}), got {tuple(crops.shape)}"
            )
        if crops.shape[0] == 0:
            return crops.new_zeros(crops.shape, dtype=torch.float32)
        x = crops.float() / 255.0 if crops.dtype == torch.uint8 else crops.float()
        outputs = []
        start = 0
        while start < x.shape[0]:
            chunk = x[start : start + self.batch_size]
            try:
                outputs.append(self._forward(chunk))
            except torch.OutOfMemoryError:
                if self.batch_size == 1:
                    raise VidrestoreError("one face does not fit in GPU memory; use --device cpu") from None
                self.batch_size = max(1, self.batch_size // 2)
                log.warning("GPU memory full: restoring %d faces per batch from now on", self.batch_size)
                torch.cuda.empty_cache()
                continue
            start += chunk.shape[0]
        return torch.cat(outputs)

    def _forward(self, chunk: torch.Tensor) -> torch.Tensor:
        """[0,1] -> [-1,1] -> model (fixed noise) -> clamp -> [0,1], in float32."""
        x = chunk * 2 - 1
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.precision):
            image, _ = self.model(x, return_rgb=False, randomize_noise=False)
        return (image.float().clamp_(-1, 1) + 1) / 2
