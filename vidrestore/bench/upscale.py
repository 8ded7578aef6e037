"""`vidrestore bench upscale`: background upsampling fps, 720p -> 1440p, Lanczos beside Real-ESRGAN.

Each point brings frames to twice their size as the job's composite does before pasting (`Background.upscale`:
the network in tiles of `--tile` pixels, then the Lanczos resize to the exact size): Lanczos alone, a
small RRDBNet (32 features, 4 blocks) and the released x2plus configuration (64 features, 23 blocks),
random weights in the released layout. The full network costs about 0.7 TMAC per 400-pixel tile; on a
CPU the networks are timed on `--cpu-tiles` tiles only and the frame rate computed from the tiles per
frame (the tiles of a frame are independent calls of the same size, so the time per tile is the measure).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time

import numpy as np
import torch

from vidrestore.bench import publish
from vidrestore.bench.model import machine_description
from vidrestore.device import resolve_device
from vidrestore.models.upsampler import (
    Background,
    TiledUpsampler,
    TileGrid,
    random_realesrgan_state,
    realesrgan_from_state_dict,
)

log = logging.getLogger(__name__)

SIZES = {"720p": (1280, 720), "1080p": (1920, 1080), "quick": (160, 96)}
CONFIGS = {"small": (32, 4), "full": (64, 23)}  # (features, RRDB blocks); full is RealESRGAN_x2plus


@dataclasses.dataclass(frozen=True)
class Point:
    """One measured upsampler configuration."""

    upsampler: str
    config: str
    params: int
    precision: str
    tiles_per_frame: int
    tiles_timed: int
    seconds_per_frame: float

    @property
    def fps(self) -> float:
        return 1.0 / self.seconds_per_frame if self.seconds_per_frame > 0 else 0.0


def sample_frames(count: int, width: int, height: int) -> list[np.ndarray]:
    """Smooth frames with some texture (an upsampler's cost does not depend on content; Lanczos' neither)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = []
    for k in range(count):
        base = 127 + 60 * np.sin(xx / (17 + k)) * np.cos(yy / 23) + 40 * np.sin((xx + yy) / 5)
        frames.append(np.stack([base, base[::-1], base[:, ::-1]], axis=-1).clip(0, 255).astype(np.uint8))
    return frames


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def network(config: str, device: torch.device, tile: int, batch_size: int | None) -> TiledUpsampler:
    """A random-weight Real-ESRGAN x2 of the named configuration, in tiles on the device."""
    features, blocks = CONFIGS[config]
    descriptor = realesrgan_from_state_dict(random_realesrgan_state(2, features, blocks), f"random {config}")
    return TiledUpsampler(descriptor, device, tile=tile, batch_size=batch_size)


def time_lanczos(frames: list[np.ndarray]) -> Point:
    """Lanczos-4 to twice the size, frame by frame, as the composite stage runs it."""
    background = Background(2.0)
    background.upscale(frames[:1])
    start = time.perf_counter()
    background.upscale(frames)
    seconds = (time.perf_counter() - start) / len(frames)
    return Point("lanczos", "-", 0, "-", 0, 0, seconds)


def time_network(config: str, frames: list[np.ndarray], device: torch.device, tile: int,
                 max_tiles: int | None, batch_size: int | None) -> Point:
    """Real-ESRGAN then Lanczos to the size (whole frames), or `max_tiles` tiles of one frame timed alone."""
    up = network(config, device, tile, batch_size)
    params = sum(p.numel() for p in up.model.parameters())
    height, width = frames[0].shape[:2]
    grid = TileGrid.for_size(height, width, tile)
    per_frame = grid.rows * grid.cols
    if max_tiles is not None and max_tiles < per_frame:
        x = torch.from_numpy(frames[0]).to(device).permute(2, 0, 1)[None].float() / 255.0
        tiles = grid.cut(x)[:max_tiles]
        with torch.inference_mode():
            up._forward(tiles[:1, :, :64, :64])  # warm-up (lazy set-up), on a corner: the full tile is slow
            _synchronize(device)
            start = time.perf_counter()
            for chunk in tiles.split(up.tiles_per_call(grid)):
                up._forward(chunk)
            _synchronize(device)
        seconds = (time.perf_counter() - start) / len(tiles) * per_frame
        return Point("realesrgan", config, params, up.precision, per_frame, len(tiles), seconds)
    background = Background(2.0, up)
    background.upscale(frames[:1])  # warm-up (cuDNN autotuning, lazy set-up)
    _synchronize(device)
    start = time.perf_counter()
    background.upscale(frames)
    _synchronize(device)
    seconds = (time.perf_counter() - start) / len(frames)
    return Point("realesrgan", config, params, up.precision, per_frame, per_frame * len(frames), seconds)


def measure(device: torch.device, size: tuple[int, int], frames: int, tile: int, max_tiles: int | None,
            batch_size: int | None = None, configs: tuple[str, ...] = ("small", "full")) -> list[Point]:
    """Lanczos and each network configuration on the same frames (networks on `max_tiles` tiles when given)."""
    pictures = sample_frames(frames, *size)
    points = [time_lanczos(pictures)]
    log.info("lanczos: %.1f fps", points[-1].fps)
    for config in configs:
        points.append(time_network(config, pictures, device, tile, max_tiles, batch_size))
        log.info("realesrgan %s: %.3f fps", config, points[-1].fps)
    return points


def table(points: list[Point], device: torch.device, size: tuple[int, int], tile: int) -> str:
    """The Markdown report of a run."""
    w, h = size
    setup = f"device: {device}, {machine_description(device)}; tiles of {tile} px with 10 px of context"
    lines = [f"# Background upsampling, {w}x{h} -> {2 * w}x{2 * h}", "", setup, "",
             "| upsampler | config | params | precision | tiles/frame | tiles timed | s/frame | fps |",
             "|---|---|---:|---|---:|---:|---:|---:|"]
    for p in points:
        lines.append(f"| {p.upsampler} | {p.config} | {p.params / 1e6:.2f} M | {p.precision} | {p.tiles_per_frame} "
                     f"| {p.tiles_timed} | {p.seconds_per_frame:.3f} | {p.fps:.3f} |")
    lines += ["", ("Points timed on fewer tiles than a frame has are that time per tile times the "
                   "tiles per frame.")]
    return "\n".join(lines)


def run_cli(args: argparse.Namespace) -> int:
    """Entry point of `vidrestore bench upscale`."""
    device = resolve_device(args.device)
    size = SIZES.get(args.size) or tuple(int(x) for x in args.size.split("x"))
    max_tiles = None if device.type == "cuda" else args.cpu_tiles
    points = measure(device, size, args.frames, args.tile, max_tiles)  # type: ignore[arg-type]
    return publish(table(points, device, size, args.tile), args.output)  # type: ignore[arg-type]


def gpu_benchmark(task: object) -> None:
    """The upscale rows of `vidrestore bench gpu`: 720p -> 1440p, Lanczos and both networks, bf16."""
    quick = bool(task.options.get("quick"))
    dev = resolve_device(str(task.options.get("device", "cuda")))
    size = SIZES["quick" if quick else "720p"]
    task.recorder.doing("background upsampling 2x")
    points = measure(dev, size, 1 if quick else 8, 400, 1 if dev.type != "cuda" else None,
                     configs=("small",) if quick else ("small", "full"))
    for p in points:
        task.recorder.row("upscale", {"upsampler": p.upsampler, "config": p.config, "size": f"{size[0]}x{size[1]}",
                                      "precision": p.precision, "fps": p.fps, "s_per_frame": p.seconds_per_frame})
