"""`vidrestore bench live`: added latency (p50/p95), sustained fps and drops of live mode.

The source is a clip made from the sample (720p/1080p, 1 or 4 faces, frame numbers stamped into the
pixels) played at its own rate; a measuring sink reads each frame's number, so latency is taken from
the moment the source was due to show that frame (first frame's arrival + number / fps) to the moment
the sink got it: decoding, queueing, analysis, restoration and compositing all count.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import torch

from vidrestore.bench import comma_list, publish
from vidrestore.bench.model import bench_checkpoints, machine_description
from vidrestore.bench.stamp import read_number, stamp_number
from vidrestore.bench.video import SIZES, machine
from vidrestore.device import resolve_device
from vidrestore.live.runner import LiveOptions, run_live
from vidrestore.live.source import LiveSource
from vidrestore.live.types import LiveOutput
from vidrestore.pipeline.options import RestoreOptions

log = logging.getLogger(__name__)

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "astronaut.mp4"


def make_live_clip(path: Path, size: tuple[int, int], seconds: float, fps: int, faces: int) -> int:
    """The sample's first frame tiled `faces` times (1 or a 2x2 grid), moving slightly, numbers stamped."""
    with av.open(str(SAMPLE)) as inp:
        picture = next(inp.decode(video=0)).to_ndarray(format="rgb24")
    grid = 1 if faces == 1 else 2
    tile = cv2.resize(picture, (size[0] // grid, size[1] // grid), interpolation=cv2.INTER_AREA)
    base = np.tile(tile, (grid, grid, 1))
    count = int(seconds * fps)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "crf": "20", "g": str(fps)})
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for n in range(count):
            image = np.roll(base, int(8 * np.sin(n / 8)), axis=1)
            vf = av.VideoFrame.from_ndarray(stamp_number(np.ascontiguousarray(image), n), format="rgb24")
            vf.pts, vf.time_base = n, Fraction(1, fps)
            out.mux(stream.encode(vf))
        out.mux(stream.encode(None))
    return count


class LatencySink:
    """Reads each frame's stamped number and keeps (number, seconds since it was due)."""

    name = "measure"

    def __init__(self, fps: int) -> None:
        self.fps = fps
        self.origin: float | None = None
        self.samples: list[tuple[int, float]] = []
        self.faces = 0

    def write(self, output: LiveOutput) -> None:
        now = time.monotonic()
        number = read_number(output.image)
        if self.origin is None:
            self.origin = output.arrival - number / self.fps
        self.samples.append((number, now - (self.origin + number / self.fps)))
        self.faces += output.faces

    def idle(self, message: str) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class Row:
    clip: str
    faces: int
    model: str
    sent: int
    shown: int
    dropped: int
    fps: float
    p50: float
    p95: float

    def markdown(self) -> str:
        return (f"| {self.clip} | {self.faces} | {self.model} | {self.sent} | {self.shown} | {self.dropped} | "
                f"{self.fps:.1f} | {self.p50 * 1000:.0f} | {self.p95 * 1000:.0f} |")


def measure(clip: Path, frames: int, fps: int, options: RestoreOptions, label: str, size: str, faces: int) -> Row:
    """One live run of the clip at its own rate; latency from the stamped numbers."""
    sink = LatencySink(fps)
    source = LiveSource(str(clip))
    started = time.monotonic()
    stats = run_live(source, [sink], options, LiveOptions(stats_interval=10))
    seconds = time.monotonic() - started
    latencies = np.array([lat for _, lat in sink.samples]) if sink.samples else np.zeros(1)
    return Row(size, faces, label, frames, len(sink.samples), stats.dropped, len(sink.samples) / seconds,
               float(np.percentile(latencies, 50)), float(np.percentile(latencies, 95)))


def live_options(model: Path, detector: str, device: torch.device) -> RestoreOptions:
    """The settings every live measurement uses: causal, detector every 5 frames at 480 px, one frame per batch."""
    return RestoreOptions(model=str(model), detector=detector, device=str(device), det_size=480, detect_every=5,
                          smoothing_lag=0, analysis_chunk=1, max_batch_frames=1, offline=True)


def run_cli(args: argparse.Namespace) -> int:
    """Entry point of `vidrestore bench live`."""
    device = resolve_device(args.device)
    torch.set_grad_enabled(False)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="vidrestore-bench-live-") as tmp:
        work = Path(tmp)
        models = bench_checkpoints(work, args.full)
        for size_name in comma_list(args.sizes, str):
            for faces in comma_list(args.faces, int):
                clip = work / f"live_{size_name}_{faces}.mp4"
                frames = make_live_clip(clip, SIZES[size_name], args.seconds, args.fps, faces)
                for label, path in models.items():
                    options = live_options(path, args.detector, device)
                    rows.append(measure(clip, frames, args.fps, options, label, size_name, faces))
                    log.info("%s", rows[-1].markdown())
    text = "\n".join([
        "# Live benchmark (`vidrestore bench live`)",
        "",
        f"- machine: {machine()}; torch device {machine_description(device)}",
        f"- date: {datetime.date.today().isoformat()}",
        f"- source: a {args.seconds:g} s clip at {args.fps} fps made from the sample (1 face, or 4 in a 2x2 grid), "
        "played at its own rate; policy drop; detector every 5 frames at 480 px; one frame per restoration batch",
        "- latency: from the moment the source was due to show a frame to the moment the sink got it (ms)",
        "",
        "| clip | faces | restorer | frames sent | frames shown | dropped | fps shown | p50 ms | p95 ms |",
        "|---|---|---|---|---|---|---|---|---|",
        *[row.markdown() for row in rows],
    ]) + "\n"
    return publish(text, args.output)
