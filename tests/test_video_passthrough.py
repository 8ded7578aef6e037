"""Pass-through on generated media: frame count, PTS list, copied packets, tags, lossless pixels."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from videogen import (TB, decoded_planes, leftovers, make_video, other_packets, stream_tags,
                      video_pts)
from vidrestore.video import EncoderSettings, VideoSink, VideoSource, passthrough, probe

FAST = EncoderSettings(preset="ultrafast")
MOV_TEXT_EMPTY = b"\x00\x00"  # mov_text gap filler the mp4 muxer writes by itself


def text_packets(packets: list[tuple[int | None, bytes]]) -> list[tuple[int | None, bytes]]:
    """Subtitle packets that carry text."""
    return [p for p in packets if p[1] != MOV_TEXT_EMPTY]


@pytest.fixture(scope="module")
def rich_mp4(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int]]:
    """VFR with irregular gaps, B-frames, rotation, colour tags, two audio tracks, a subtitle track,
    chapters and a title."""
    path = tmp_path_factory.mktemp("rich") / "rich.mp4"
    pts = make_video(path, rotation=90, audio_languages=("fra", "deu"), subtitle=True, title="Rich",
                     chapters=True, color=(1, 1, 1, 1), bframes=3)
    return path, pts


@pytest.mark.parametrize("native", [True, False], ids=["native", "rgb"])
def test_vfr_pts_and_count_survive(rich_mp4, tmp_path, native):
    src, pts = rich_mp4
    out = tmp_path / "out.mp4"
    result = passthrough(src, out, FAST, native=native)
    got, tb = video_pts(out)
    assert video_pts(src) == (pts, TB)
    assert (got, tb) == (pts, TB)
    assert result.decoded.frames == result.written.frames == len(pts)
    assert result.decoded.lost_frames == 0
    assert leftovers(tmp_path) == []


def test_audio_and_subtitle_packets_identical(rich_mp4, tmp_path):
    src, _ = rich_mp4
    out = tmp_path / "out.mp4"
    passthrough(src, out, FAST)
    a, b = other_packets(src), other_packets(out)
    assert len(a[0]) > 10 and a[:2] == b[:2]  # both audio tracks: same bytes, same pts
    assert text_packets(a[2]) == text_packets(b[2]) != []


def test_tags_rotation_colour_chapters_preserved(rich_mp4, tmp_path):
    src, _ = rich_mp4
    out = tmp_path / "out.mp4"
    passthrough(src, out, FAST)
    before, after = probe(src), probe(out)
    assert after.rotation == before.rotation == 90
    assert after.color == before.color
    assert after.color.primaries == 1 and after.color.range == 1
    assert after.metadata["title"] == "Rich"
    tags = stream_tags(out)
    assert ("audio", "fra") in tags and ("audio", "deu") in tags and ("subtitle", "eng") in tags
    assert [s.language for s in after.streams if s.type == "audio"] == ["fra", "deu"]
    with av.open(str(src)) as a, av.open(str(out)) as b:
        strip = [[(c["start"], c["end"], c["metadata"]) for c in x.chapters()] for x in (a, b)]
    assert strip[0] == strip[1] and len(strip[0]) == 2


def test_mkv_subrip_and_chapters(tmp_path):
    src = tmp_path / "sub.mkv"
    make_video(src, subtitle=True, audio_languages=("eng",), chapters=True)
    out = tmp_path / "out.mkv"
    passthrough(src, out, FAST)
    assert video_pts(out) == video_pts(src)
    assert other_packets(out) == other_packets(src)
    assert other_packets(out)[1] == [(100, b"first line"), (500, b"second line")]


def test_ffv1_lossless_pixels_exact_native(tmp_path):
    src = tmp_path / "src.mp4"
    make_video(src, frames=12)
    out = tmp_path / "out.mkv"
    passthrough(src, out, EncoderSettings(codec="ffv1"))
    a, b = decoded_planes(src), decoded_planes(out)
    assert len(a) == len(b) == 12
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_ffv1_lossless_rgb_path_exact(tmp_path):
    """Frames that went through RGB (the model path) come back bit-exact with an RGB FFV1 output."""
    src = tmp_path / "src.mp4"
    make_video(src, frames=8)
    out = tmp_path / "out.mkv"
    passthrough(src, out, EncoderSettings(codec="ffv1", pix_fmt="bgr0"), native=False)
    a, b = decoded_planes(src, "rgb24"), decoded_planes(out, "rgb24")
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) and len(a) == len(b) == 8


def test_ten_bit_keeps_depth(tmp_path):
    src = tmp_path / "ten.mkv"
    make_video(src, frames=8, codec="ffv1", pix_fmt="yuv420p10le")
    info = probe(src)
    assert info.bit_depth == 10
    with VideoSource(src, pixel_format="auto") as source:
        frames = list(source)
    assert frames[0].image.dtype == np.uint16 and frames[0].image.shape == (64, 96, 3)
    out = tmp_path / "out.mkv"
    passthrough(src, out, EncoderSettings(codec="ffv1"))
    assert probe(out).pix_fmt == "yuv420p10le"
    assert all(np.array_equal(x, y) for x, y in zip(decoded_planes(src), decoded_planes(out)))
    out2 = tmp_path / "out264.mp4"
    with VideoSource(src, pixel_format="auto") as source, VideoSink(out2, source.info, FAST) as sink:
        for f in source:
            sink.write(f)
    assert probe(out2).bit_depth == 10
    assert seconds(out2) == seconds(src)  # mp4 raises a 1/1000 time base; the instants stay exact


def seconds(path: Path) -> list:
    """Exact presentation times (Fractions) of every frame."""
    pts, tb = video_pts(path)
    return [p * tb for p in pts]


def test_frames_carry_timing(rich_mp4):
    src, pts = rich_mp4
    with VideoSource(src) as source:
        frames = list(source)
    assert [f.index for f in frames] == list(range(len(pts)))
    assert [f.pts for f in frames] == pts
    assert all(f.time_base == TB for f in frames)
    assert frames[0].image.dtype == np.uint8 and frames[0].image.shape == (64, 96, 3)
    assert frames[3].duration == 256


def test_modified_pixels_are_encoded(tmp_path):
    src = tmp_path / "src.mp4"
    make_video(src, frames=6, bframes=0)
    out = tmp_path / "out.mkv"
    with VideoSource(src, passthrough=True) as source:
        with VideoSink(out, source.info, EncoderSettings(codec="ffv1", pix_fmt="bgr0")) as sink:
            for f in source:
                f.image = np.full_like(f.image, 77)
                sink.write(f)
    assert all((x == 77).all() for x in decoded_planes(out, "rgb24"))


@pytest.mark.parametrize("codec,ext", [("libx265", "mp4"), ("prores_ks", "mov")])
def test_other_codecs(tmp_path, codec, ext):
    src = tmp_path / "src.mp4"
    pts = make_video(src, frames=6, audio_languages=("eng",))
    out = tmp_path / f"out.{ext}"
    passthrough(src, out, EncoderSettings(codec=codec, preset="ultrafast" if codec == "libx265" else None))
    assert video_pts(out)[0] == pts
    assert other_packets(out) == other_packets(src)
