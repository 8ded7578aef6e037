"""Background upsampling for `--upscale N`: Lanczos, or Real-ESRGAN (RRDBNet) in overlapping tiles.

`Background` makes the output-size picture the faces are pasted into. Its one resize is
`lanczos_resize` (OpenCV's Lanczos-4, the resize facexlib gives every background); Real-ESRGAN runs
first where asked, and its output is brought to the exact size by the same resize when the network's
scale is not the factor (x4plus for 3x, say).

Real-ESRGAN checkpoints (RealESRGAN_x2plus, x4plus: BasicSR's RRDBNet under `params_ema`) are read by
the project's safe reader and built by spandrel, the maintained loader of these files. The network
runs on tiles of `tile` pixels with `TILE_PAD` pixels of context on each side (cut off again after the
network, so tile seams are not seen), all tiles of all frames of a batch stacked into few calls; in
bfloat16 on CUDA, fp32 on the CPU. On CUDA a call holds as many tiles as CUDA_OUTPUT_PIXELS of output
allows (the network's activations grow with its output: x4plus tiles take four times x2plus's), and
a call that runs out of GPU memory is retried with half as many tiles.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from vidrestore.errors import CheckpointError, VidrestoreError
from vidrestore.models.precision import autocast
from vidrestore.models.state_dict import GENERATOR_KEYS, read_state_dict

log = logging.getLogger(__name__)

UNSHUFFLE = {1: 4, 2: 2, 4: 1}  # Real-ESRGAN x1/x2 pixel-unshuffle their input by 4/2 (48/12 channels)
TILE_PAD = 10  # pixels of context around each tile, as Real-ESRGAN's tile_pad
TILE_MULTIPLE = 4  # tile sides are multiples of this: the x2/x1 RRDBNets pixel-unshuffle by 2/4
DEFAULT_TILE = 400
FRAMES_PER_CALL = 4  # frames whose tiles go through the network together: bounds the float copies of them
CUDA_OUTPUT_PIXELS = 16 * 840 * 840  # output pixels of one call on CUDA: 16 x2 tiles of 420 px, 4 x4 ones


def lanczos_resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """The picture (H,W,C) resized to (height, width) with Lanczos-4: every background resize is this one."""
    if image.shape[1] == width and image.shape[0] == height:
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LANCZOS4)


def realesrgan_layout(scale: int, num_feat: int = 64, num_block: int = 23,
                      num_grow_ch: int = 32) -> dict[str, tuple[int, ...]]:
    """Key -> shape of BasicSR's RRDBNet state dict, the layout of RealESRGAN_x2plus/x4plus.pth (defaults):
    conv_first, `num_block` RRDBs of 3 dense blocks of 5 convs, conv_body, two x2 upsampling convs, conv_hr,
    conv_last; all 3x3 with bias."""
    convs = {"conv_first": (num_feat, 3 * UNSHUFFLE[scale] ** 2)}
    for block in range(num_block):
        for rdb in (1, 2, 3):
            for k in range(1, 6):
                convs[f"body.{block}.rdb{rdb}.conv{k}"] = (num_grow_ch if k < 5 else num_feat,
                                                           num_feat + (k - 1) * num_grow_ch)
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        convs[name] = (num_feat, num_feat)
    convs["conv_last"] = (3, num_feat)
    shapes: dict[str, tuple[int, ...]] = {}
    for name, (cout, cin) in convs.items():
        shapes[f"{name}.weight"] = (cout, cin, 3, 3)
        shapes[f"{name}.bias"] = (cout,)
    return shapes


def random_realesrgan_state(scale: int, num_feat: int = 64, num_block: int = 23, num_grow_ch: int = 32,
                            seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights in the released layout (fan-in scaled, so activations stay in range): for tests and benchmarks."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in realesrgan_layout(scale, num_feat, num_block, num_grow_ch).items():
        scale_by = 1 / math.sqrt(math.prod(shape[1:])) if key.endswith(".weight") else 0.01
        state[key] = torch.randn(shape, generator=generator) * scale_by
    return state


def realesrgan_from_state_dict(state: dict[str, torch.Tensor], source: str = "state dict") -> Any:
    """A Real-ESRGAN RRDBNet for `state` (BasicSR's or old ESRGAN key names) as a spandrel ImageModelDescriptor."""
    try:
        import spandrel
    except ImportError:
        raise VidrestoreError("--bg-upsampler realesrgan needs spandrel: pip install 'vidrestore[upscale]'") from None
    try:
        descriptor = spandrel.ModelLoader().load_from_state_dict(state)
    except Exception as exc:  # noqa: BLE001 - spandrel raises its own errors for layouts it does not know
        raise CheckpointError(f"{source} is not a Real-ESRGAN checkpoint spandrel can load: "
                              f"{str(exc).splitlines()[0][:200]}") from None
    if not isinstance(descriptor, spandrel.ImageModelDescriptor) or descriptor.architecture.id != "ESRGAN":
        raise CheckpointError(f"{source} is a {descriptor.architecture.name} model, not a Real-ESRGAN RRDBNet")
    return descriptor.eval()


def load_realesrgan(path: str | os.PathLike) -> Any:
    """A Real-ESRGAN checkpoint file (`params_ema`, else `params`, else bare) as a spandrel descriptor, in eval mode."""
    descriptor = realesrgan_from_state_dict(read_state_dict(path, GENERATOR_KEYS), str(path))
    log.debug("loaded %s: RRDBNet x%d (%s)", path, descriptor.scale, ", ".join(descriptor.tags))
    return descriptor


@dataclass(frozen=True)
class TileGrid:
    """How frames (H, W) are cut: rows x cols tiles of (th, tw) pixels, each with `pad` pixels of context."""

    rows: int
    cols: int
    th: int
    tw: int
    pad: int

    @classmethod
    def for_size(cls, height: int, width: int, tile: int, pad: int = TILE_PAD) -> TileGrid:
        """Equal tiles of at most about `tile` pixels (0: one tile), sides rounded up to TILE_MULTIPLE."""
        tile = tile if tile > 0 else max(height, width)
        rows, cols = math.ceil(height / tile), math.ceil(width / tile)

        def side(total: int, count: int) -> int:
            return math.ceil(total / count / TILE_MULTIPLE) * TILE_MULTIPLE

        return cls(rows, cols, side(height, rows), side(width, cols), pad)

    def cut(self, x: torch.Tensor) -> torch.Tensor:
        """Frames (N,3,H,W) -> tiles with context (N*rows*cols, 3, th+2p, tw+2p); edges replicated."""
        c, h, w = x.shape[1:]
        right, bottom = self.cols * self.tw - w, self.rows * self.th - h
        padded = F.pad(x, (self.pad, self.pad + right, self.pad, self.pad + bottom), mode="replicate")
        tiles = padded.unfold(2, self.th + 2 * self.pad, self.th).unfold(3, self.tw + 2 * self.pad, self.tw)
        return tiles.permute(0, 2, 3, 1, 4, 5).reshape(-1, c, self.th + 2 * self.pad, self.tw + 2 * self.pad)

    def join(self, tiles: torch.Tensor, count: int, scale: int, height: int, width: int) -> torch.Tensor:
        """Upscaled tiles (N*rows*cols, 3, s(th+2p), s(tw+2p)) -> frames (N,3,sH,sW), context cut off."""
        p = scale * self.pad
        core = tiles[:, :, p : p + scale * self.th, p : p + scale * self.tw]
        c = core.shape[1]
        grid = core.reshape(count, self.rows, self.cols, c, scale * self.th, scale * self.tw)
        frames = grid.permute(0, 3, 1, 4, 2, 5).reshape(count, c, self.rows * scale * self.th,
                                                         self.cols * scale * self.tw)
        return frames[:, :, : scale * height, : scale * width]


def tiles_per_call(grid: TileGrid, scale: int, budget: int = CUDA_OUTPUT_PIXELS) -> int:
    """How many tiles of `grid` one call takes so that its output stays within `budget` pixels (at least 1)."""
    tile_pixels = (grid.th + 2 * grid.pad) * (grid.tw + 2 * grid.pad) * scale * scale
    return max(1, budget // tile_pixels)


class TiledUpsampler:
    """A super-resolution network run over frames in overlapping tiles, `batch_size` tiles per call
    (default: one on the CPU, `tiles_per_call` on CUDA)."""

    def __init__(self, descriptor: Any, device: torch.device, *, tile: int = DEFAULT_TILE,
                 precision: str | None = None, batch_size: int | None = None) -> None:
        self.device = device
        self.scale = int(descriptor.scale)
        self.tile = tile
        self.precision = precision or ("bf16" if device.type == "cuda" else "fp32")
        self.batch_size = batch_size
        self.model = descriptor.model.to(device).eval().requires_grad_(False)
        if device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def upscale(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Same-size RGB frames (H,W,3; uint8 or uint16) -> frames (sH,sW,3) of the same type, upscaled
        by the network's scale."""
        if not images:
            return []
        height, width = images[0].shape[:2]
        dtype = images[0].dtype
        peak = float(np.iinfo(dtype).max)
        grid = TileGrid.for_size(height, width, self.tile)
        stacked = np.stack(images).astype(np.int32) if dtype == np.uint16 else np.stack(images)
        frames = torch.from_numpy(stacked).to(self.device).permute(0, 3, 1, 2).float() / peak
        tiles = grid.cut(frames)
        out = self._forward_tiles(tiles, self.tiles_per_call(grid))
        result = grid.join(out, len(images), self.scale, height, width)
        wire = torch.uint8 if dtype == np.uint8 else torch.int32  # the smallest copy back torch can make
        pixels = (result.clamp_(0, 1) * peak).round_().to(wire).permute(0, 2, 3, 1).cpu().numpy()
        return list(pixels.astype(dtype, copy=False))

    def tiles_per_call(self, grid: TileGrid) -> int:
        """Tiles of `grid` per network call: the batch size given, else one on the CPU, the budget's on CUDA."""
        if self.batch_size is not None:
            return self.batch_size
        return tiles_per_call(grid, self.scale) if self.device.type == "cuda" else 1

    def _forward_tiles(self, tiles: torch.Tensor, per_call: int) -> torch.Tensor:
        """The network on every tile, `per_call` at a time; halved (down to one) while the GPU runs out of memory."""
        while True:
            try:
                return torch.cat([self._forward(chunk) for chunk in tiles.split(per_call)])
            except torch.cuda.OutOfMemoryError:
                if per_call == 1:
                    raise
                per_call //= 2
                self.batch_size = per_call  # later calls start from what fitted
                torch.cuda.empty_cache()
                log.warning("background upsampler out of GPU memory: %d tiles per call from now on", per_call)

    def _forward(self, chunk: torch.Tensor) -> torch.Tensor:
        """One call of the network on a stack of tiles, in float32 out."""
        if self.device.type == "cuda":
            chunk = chunk.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.precision):
            return self.model(chunk).float()


class Background:
    """The output-size background of frames: the upsampler network (if any), then Lanczos to the exact size."""

    def __init__(self, factor: float, network: TiledUpsampler | None = None,
                 size: tuple[int, int] | None = None) -> None:
        self.factor = factor
        self.network = network
        self.size = size  # fixed output (width, height) of a video; None: from each picture's size

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """(width, height) of the output for a picture of this size."""
        if self.size is not None:
            return self.size
        return max(1, round(width * self.factor)), max(1, round(height * self.factor))

    def upscale(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Each picture at the output size (runs of same-size pictures share the network's calls)."""
        out: list[np.ndarray] = []
        start = 0
        while start < len(images):
            stop = start + 1
            while stop < len(images) and images[stop].shape == images[start].shape:
                stop += 1
            out.extend(self._upscale_same_size(images[start:stop]))
            start = stop
        return out

    def _upscale_same_size(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        height, width = images[0].shape[:2]
        out_w, out_h = self.output_size(height, width)
        upscaled = images
        if self.network is not None:
            upscaled = [out for start in range(0, len(images), FRAMES_PER_CALL)
                        for out in self.network.upscale(images[start : start + FRAMES_PER_CALL])]
        return [lanczos_resize(image, out_w, out_h) for image in upscaled]

    @staticmethod
    def scale_matrices(matrices: np.ndarray, in_hw: tuple[int, int], out_hw: tuple[int, int]) -> np.ndarray:
        """Frame->crop matrices (N,2,3) for the resized frame: pixel centres map as the resize maps them."""
        sy, sx = out_hw[0] / in_hw[0], out_hw[1] / in_hw[1]
        out_to_in = np.array([[1 / sx, 0.0, 0.5 / sx - 0.5], [0.0, 1 / sy, 0.5 / sy - 0.5], [0.0, 0.0, 1.0]])
        return np.asarray(matrices, dtype=np.float64) @ out_to_in

    def paste_matrices(self, matrices: np.ndarray, face_frame: np.ndarray, before: Sequence[np.ndarray],
                       after: Sequence[np.ndarray]) -> np.ndarray:
        """Each face's frame->crop matrix (N,2,3) for its frame's output picture (frames of any sizes)."""
        scaled = np.asarray(matrices, dtype=np.float64).reshape(-1, 2, 3).copy()
        for k in np.unique(face_frame):
            faces = face_frame == k
            scaled[faces] = self.scale_matrices(scaled[faces], before[k].shape[:2], after[k].shape[:2])
        return scaled
