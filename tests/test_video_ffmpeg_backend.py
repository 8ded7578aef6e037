"""The ffmpeg-binary backend keeps the same guarantees: frame count, PTS list, packets, tags."""

from __future__ import annotations


import pytest

from videogen import TB, leftovers, make_video, other_packets, stream_tags, video_pts
from vidrestore.errors import MediaError
from vidrestore.video import EncoderSettings, passthrough, probe
from vidrestore.video.ffmpeg_backend import FfmpegSink, binary_encoders, decode_timestamps, ffmpeg_exe

FAST = EncoderSettings(preset="ultrafast")


def test_decode_timestamps_maps_reordered_packets():
    # presentation order 0..4 encoded as I P B B P (decode order ranks 0 3 1 2 4)
    ranks, dts = decode_timestamps([0, 30, 10, 20, 40], [100, 250, 300, 700, 800])
    assert ranks == [0, 3, 1, 2, 4]
    assert dts == sorted(dts) and len(set(dts)) == 5
    assert all(d <= [100, 250, 300, 700, 800][r] for d, r in zip(dts, ranks))


def test_rich_vfr_file(tmp_path):
    src = tmp_path / "rich.mp4"
    pts = make_video(src, rotation=270, audio_languages=("fra", "deu"), title="Rich",
                     color=(1, 1, 1, 1), bframes=3)
    out = tmp_path / "out.mp4"
    result = passthrough(src, out, FAST, backend="ffmpeg")
    assert video_pts(out) == (pts, TB)
    assert result.written.frames == len(pts)
    assert other_packets(out) == other_packets(src)
    assert stream_tags(out) == stream_tags(src)
    info = probe(out)
    assert info.rotation == 270 and info.color == probe(src).color and info.metadata["title"] == "Rich"
    assert leftovers(tmp_path) == []


def test_real_vfr(media_dir, tmp_path):
    src = media_dir / "videos" / "retalking_face_1.mp4"
    out = tmp_path / "out.mp4"
    result = passthrough(src, out, FAST, backend="ffmpeg")
    assert video_pts(out) == video_pts(src)
    assert result.written.frames == 135
    assert other_packets(out) == other_packets(src)


def test_real_vfr_to_matroska(media_dir, tmp_path):
    """Matroska counts milliseconds and cannot start below zero: the AAC priming (-23 ms) makes the
    muxer shift every stream by the same amount; the gaps between frames stay the source's."""
    src = media_dir / "videos" / "retalking_face_1.mp4"
    out = tmp_path / "out.mkv"
    passthrough(src, out, FAST, backend="ffmpeg")
    (a, ta), (b, tb) = video_pts(src), video_pts(out)
    ms_a = [round(p * ta * 1000) for p in a]
    ms_b = [p * tb * 1000 for p in b]
    shift = ms_b[0] - ms_a[0]
    assert len(a) == len(b) and 0 <= shift <= 30
    assert all(abs(y - x - shift) <= 1 for x, y in zip(ms_a, ms_b))
    assert [x[1] for x in other_packets(out)[0]] == [x[1] for x in other_packets(src)[0]]


def test_encoder_missing_from_binary(tmp_path):
    src = tmp_path / "src.mp4"
    make_video(src, frames=4)
    with pytest.raises(MediaError, match="not available"):
        FfmpegSink(tmp_path / "out.mp4", probe(src), EncoderSettings(codec="no_such_encoder"))
    assert leftovers(tmp_path) == []


def test_encoder_failing_at_runtime_leaves_nothing(tmp_path):
    if "h264_nvenc" not in binary_encoders(ffmpeg_exe()):
        pytest.skip("this ffmpeg has no NVENC")
    src = tmp_path / "src.mp4"
    make_video(src, frames=4)
    out = tmp_path / "out.mp4"
    try:
        passthrough(src, out, EncoderSettings(codec="h264_nvenc"), backend="ffmpeg")
    except MediaError as exc:
        assert "out.mp4" in str(exc)
        assert not out.exists()
    else:  # a machine with an NVIDIA GPU: the guarantees hold there too
        assert video_pts(out) == video_pts(src)
    assert leftovers(tmp_path) == []
