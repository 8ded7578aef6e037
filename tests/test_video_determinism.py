"""Same input and options, same output: the decoded frames bit for bit whatever the memory held before
(with the default encoder settings), and the source's timestamps in every container (Matroska too)."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import pytest

from pipeline_support import cut_clip, make_tiny_restorer
from videogen import video_pts
from vidrestore.video import EncoderSettings, VideoSink, VideoSource
from vidrestore.video.transcode import passthrough

CLIP = "retalking_face_1.mp4"  # 700x700 talking head, AAC audio starting one priming frame before zero
FRAMES = 12
# Odd macroblock counts, an odd chroma width, an odd width (4:4:4 out): the sizes the defect was seen at.
SIZES = [(590, 590), (390, 286), (719, 405)]
# glibc fills every fresh allocation with the complement of MALLOC_PERTURB_: an encoder that reads memory
# nobody wrote then gives different output in the two runs, instead of by chance now and then.
PERTURB = ("1", "170")


def scaled_clip(src: Path, dst: Path, size: tuple[int, int], frames: int) -> Path:
    """The first frames of `src` scaled to `size`, as lossless FFV1 (any size) with their own timing."""
    with VideoSource(src, passthrough=True) as source:
        info = dataclasses.replace(source.info, width=size[0], height=size[1])
        with VideoSink(dst, info, EncoderSettings("ffv1"), copy_streams=False) as sink:
            for frame in itertools.islice(source, frames):
                frame.set_picture(frame.native.reformat(width=size[0], height=size[1]))
                sink.write(frame)
    return dst


def frames_digest(path: Path) -> str:
    """SHA-256 of every decoded frame's pixels, in order."""
    digest = hashlib.sha256()
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            digest.update(frame.to_ndarray().tobytes())
    return digest.hexdigest()


def restore_in_fresh_process(clip: Path, out: Path, model: Path, detector: Path, perturb: str) -> None:
    """`vidrestore IN OUT` with the default encoder's settings, in a new process whose fresh memory holds
    `perturb` (--codec names it: the FFV1 clip would otherwise be written as FFV1 again)."""
    env = {**os.environ, "MALLOC_PERTURB_": perturb}
    args = [sys.executable, "-m", "vidrestore.cli", "-q", "--offline", str(clip), str(out), "--model", str(model),
            "--detector", str(detector), "--device", "cpu", "--det-size", "320", "--codec", "libx264"]
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory, media_dir: Path) -> dict:
    """Short clips of a real talking head at the odd sizes, and a tiny random restorer."""
    folder = tmp_path_factory.mktemp("determinism")
    clips = {size: scaled_clip(media_dir / "videos" / CLIP, folder / f"clip_{size[0]}x{size[1]}.mkv", size, FRAMES)
             for size in SIZES}
    return {"clips": clips, "model": make_tiny_restorer(folder / "tiny.pth"), "folder": folder}


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_restoring_twice_gives_the_same_frames(work: dict, detector_weights: Path, size: tuple[int, int]) -> None:
    clip = work["clips"][size]
    outputs = [work["folder"] / f"out_{size[0]}x{size[1]}_{perturb}.mp4" for perturb in PERTURB]
    for out, perturb in zip(outputs, PERTURB):
        restore_in_fresh_process(clip, out, work["model"], detector_weights, perturb)
    with av.open(str(outputs[0])) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.width, stream.height) == ("h264", *size)
        assert stream.frames == FRAMES
    assert frames_digest(outputs[0]) == frames_digest(outputs[1])


def packet_times(path: Path) -> dict[str, list[tuple[Fraction, Fraction]]]:
    """Per stream type: (presentation time in seconds, the stream's time base) of every packet, in time order."""
    times: dict[str, list[tuple[Fraction, Fraction]]] = {}
    with av.open(str(path)) as container:
        for packet in container.demux():
            if packet.size and packet.pts is not None:
                times.setdefault(packet.stream.type, []).append((packet.pts * packet.time_base, packet.time_base))
    return {kind: sorted(values) for kind, values in times.items()}


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_every_stream_keeps_the_source_timestamps(media_dir: Path, tmp_path: Path, suffix: str) -> None:
    clip, out = tmp_path / "clip.mp4", tmp_path / f"out{suffix}"
    cut_clip(media_dir / "videos" / CLIP, clip, FRAMES)
    passthrough(clip, out)
    source, written = packet_times(clip), packet_times(out)
    assert set(written) == set(source) == {"video", "audio"}
    assert source["audio"][0][0] < 0  # the AAC priming frame: Matroska used to move every stream later by it
    for kind in source:
        assert len(written[kind]) == len(source[kind])
        for (t_in, _), (t_out, time_base) in zip(source[kind], written[kind]):
            assert abs(t_out - t_in) <= time_base / 2  # exact up to the output's timestamp resolution
    (pts_in, tb_in), (pts_out, tb_out) = video_pts(clip), video_pts(out)
    assert abs(pts_out[0] * tb_out - pts_in[0] * tb_in) <= tb_out / 2


def test_libx264_always_gets_its_reproducible_mode_and_user_parameters_are_kept() -> None:
    assert EncoderSettings().encoder_options()["x264-params"] == "cpu-independent=1"
    given = EncoderSettings(options={"x264-params": "keyint=50:bframes=2"})
    assert given.encoder_options()["x264-params"] == "keyint=50:bframes=2:cpu-independent=1"
    chosen = EncoderSettings(options={"x264-params": "cpu-independent=0"})
    assert chosen.encoder_options()["x264-params"] == "cpu-independent=0"
    assert "x264-params" not in EncoderSettings("ffv1").encoder_options()
