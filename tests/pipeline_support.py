"""Helpers of the pipeline tests: short clips cut from the shared videos, a tiny random restorer."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import av
import numpy as np
import torch

from vidrestore.models import GFPGAN
from vidrestore.pipeline.options import RestoreOptions
from vidrestore.video import EncoderSettings, VideoSink, VideoSource


def make_tiny_restorer(path: Path) -> Path:
    """A small random-weight GFP-GAN (64x64 faces) saved as an official-style checkpoint."""
    torch.manual_seed(0)
    model = GFPGAN(out_size=64, num_style_feat=64, channel_multiplier=1, num_mlp=1, narrow=0.125)
    torch.save({"params_ema": model.state_dict()}, path)
    return path


def cut_clip(src: Path, dst: Path, frames: int) -> None:
    """The first `frames` video packets of `src` and the audio up to them, remuxed (no re-encoding).

    Works for sources without B-frames (decode order == presentation order)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        streams = [vin, *inp.streams.audio]
        mapping = {s.index: out.add_stream_from_template(s) for s in streams}
        end: float | None = None
        count = 0
        for pkt in inp.demux(streams):
            if pkt.dts is None or not pkt.size:
                continue
            t = float(pkt.pts * pkt.time_base)
            if pkt.stream.index == vin.index:
                if count >= frames:
                    end = t if end is None else end
                    continue
                count += 1
            elif end is not None and t >= end:
                continue
            pkt.stream = mapping[pkt.stream.index]
            out.mux(pkt)


def encode_rgb_lossless(src: Path, dst: Path, frames: int) -> None:
    """The first frames of `src` re-encoded as FFV1 in RGB (bgr0) with their timing, so RGB pixels survive exactly."""
    with VideoSource(src) as source, VideoSink(dst, source.info, EncoderSettings("ffv1", pix_fmt="bgr0"),
                                               copy_streams=False) as sink:
        for frame in itertools.islice(source, frames):
            sink.write(frame)


def rgb_frames(path: Path) -> list[np.ndarray]:
    """All frames of a video as RGB uint8 arrays."""
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def test_options(model: Path | str, detector: Path, **overrides: object) -> RestoreOptions:
    """Options for fast CPU tests: tiny restorer, real detector at a small size, fast encoder."""
    values = dict(model=str(model), detector=str(detector), device="cpu", det_size=320, preset="ultrafast",
                  detect_every=5, offline=True)
    values.update(overrides)
    return RestoreOptions(**values)


test_options.__test__ = False  # a helper, not a test


def pipeline_threads() -> list[str]:
    """Names of live threads the pipeline or the video I/O started."""
    return [t.name for t in threading.enumerate() if t.name.startswith("vidrestore-")]


def files_in(folder: Path) -> list[str]:
    """Names of the files in a folder (to check that nothing was left behind)."""
    return sorted(p.name for p in folder.iterdir())
