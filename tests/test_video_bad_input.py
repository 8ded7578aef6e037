"""Bad and awkward input and output: each gives a clear outcome and leaves nothing behind."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import pytest

from videogen import leftovers, make_audio_only, make_video, video_pts
from vidrestore.errors import MediaError
from vidrestore.video import EncoderSettings, VideoSink, VideoSource, passthrough, probe

FAST = EncoderSettings(preset="ultrafast")


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("good") / "good.mp4"
    make_video(path, frames=12, audio_languages=("eng",))
    return path


def assert_no_output(folder: Path, out: Path) -> None:
    assert not out.exists()
    assert leftovers(folder) == []


def test_zero_byte_file(tmp_path):
    src = tmp_path / "empty.mp4"
    src.touch()
    with pytest.raises(MediaError, match="empty.*empty.mp4|0 bytes"):
        probe(src)


def test_missing_file(tmp_path):
    with pytest.raises(MediaError, match="not found"):
        VideoSource(tmp_path / "nope.mp4")


def test_not_a_video(tmp_path):
    src = tmp_path / "notes.mp4"
    src.write_text("this is not a video\n" * 100)
    with pytest.raises(MediaError, match="notes.mp4"):
        probe(src)


def test_audio_only(tmp_path):
    src = tmp_path / "voice.m4a"
    make_audio_only(src)
    with pytest.raises(MediaError, match="no video stream.*voice.m4a.*audio"):
        VideoSource(src)


def test_truncated_mp4_without_index(tmp_path, good):
    src = tmp_path / "cut.mp4"
    data = good.read_bytes()
    src.write_bytes(data[: len(data) // 2])  # the index (moov) is at the end: nothing can be read
    out = tmp_path / "out.mp4"
    with pytest.raises(MediaError, match="cut.mp4"):
        passthrough(src, out, FAST)
    assert_no_output(tmp_path, out)


def test_truncated_mkv_keeps_what_is_there(tmp_path):
    full = tmp_path / "full.mkv"
    make_video(full, frames=40, bframes=0)
    src = tmp_path / "cut.mkv"
    data = full.read_bytes()
    src.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out.mkv"
    result = passthrough(src, out, FAST)
    assert 0 < result.decoded.frames < 40
    assert result.decoded.truncated
    assert video_pts(out)[0] == video_pts(src)[0]


def corrupt_copy(src: Path, dst: Path, bad: set[int]) -> int:
    """Copy `src` with the payload of the video packets numbered in `bad` replaced by noise."""
    rng = np.random.default_rng(0)
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        ost = out.add_stream_from_template(inp.streams.video[0])
        n = 0
        for i, pkt in enumerate(p for p in inp.demux(inp.streams.video[0]) if p.size):
            if i in bad:
                noise = av.Packet(rng.integers(0, 256, pkt.size, dtype=np.uint8).tobytes())
                noise.pts, noise.dts, noise.duration, noise.time_base = pkt.pts, pkt.dts, pkt.duration, pkt.time_base
                pkt = noise
            pkt.stream = ost
            out.mux(pkt)
            n += 1
    return n


def test_corrupt_packets_in_the_middle(tmp_path):
    clean = tmp_path / "clean.mkv"
    make_video(clean, frames=40, bframes=0, options={"g": "10"})
    src = tmp_path / "damaged.mkv"
    assert corrupt_copy(clean, src, {12, 13, 14}) == 40
    out = tmp_path / "out.mkv"
    result = passthrough(src, out, FAST)
    assert result.decoded.lost_frames == 3
    assert result.decoded.frames == result.written.frames == 37
    assert len(video_pts(out)[0]) == 37
    kept = video_pts(out)[0]
    assert kept == sorted(kept) and set(kept) <= set(video_pts(clean)[0])


def test_odd_dimensions(tmp_path):
    src = tmp_path / "odd.mkv"
    pts = make_video(src, frames=6, size=(65, 49), codec="ffv1", pix_fmt="yuv444p")
    out = tmp_path / "out.mp4"
    passthrough(src, out, FAST)  # 4:2:0 cannot hold 65x49: the sink picks 4:4:4
    info = probe(out)
    assert (info.width, info.height) == (65, 49) and info.pix_fmt == "yuv444p"
    got, tb = video_pts(out)
    assert [p * tb for p in got] == [p * video_pts(src)[1] for p in video_pts(src)[0]] and len(got) == len(pts)


def test_missing_output_folder(tmp_path, good):
    out = tmp_path / "no" / "such" / "out.mp4"
    with pytest.raises(MediaError, match="folder does not exist"):
        VideoSink(out, probe(good), FAST)


def test_output_folder_is_a_file(tmp_path, good):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(MediaError, match="not a folder"):
        VideoSink(blocker / "out.mp4", probe(good), FAST)


def test_unwritable_output_folder(tmp_path, good):
    if os.geteuid() == 0:  # root ignores permission bits; /sys refuses new files even to root
        with pytest.raises(MediaError, match="output folder"):
            VideoSink(Path("/sys") / "out.mp4", probe(good), FAST)
        return
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(MediaError, match="not writable"):
            VideoSink(folder / "out.mp4", probe(good), FAST)
    finally:
        folder.chmod(0o755)


def test_output_equals_input(tmp_path):
    src = tmp_path / "same.mp4"
    make_video(src, frames=4)
    before = src.read_bytes()
    with pytest.raises(MediaError, match="same file as the input"):
        passthrough(src, src, FAST)
    link = tmp_path / "link.mp4"
    link.symlink_to(src)
    with pytest.raises(MediaError, match="same file as the input"):
        passthrough(src, link, FAST)
    with pytest.raises(MediaError, match="same file as the input"):
        passthrough(src, tmp_path / "." / "same.mp4", FAST)
    assert src.read_bytes() == before and leftovers(tmp_path) == []


@pytest.mark.parametrize("codec,name,match", [
    ("prores_ks", "out.mp4", "cannot hold"),
    ("libx264", "out.webm", "cannot hold"),
    ("no_such_encoder", "out.mp4", "not available"),
    ("libx264", "out.unknownext", "no muxer"),
])
def test_bad_codec_or_container_fails_before_work(tmp_path, good, codec, name, match):
    out = tmp_path / name
    with pytest.raises(MediaError, match=match):
        VideoSink(out, probe(good), EncoderSettings(codec=codec))
    assert_no_output(tmp_path, out)


def test_copied_stream_the_container_cannot_hold(tmp_path):
    src = tmp_path / "sub.mkv"
    make_video(src, frames=4, subtitle=True)
    out = tmp_path / "out.webm"
    with pytest.raises(MediaError, match="cannot hold"):
        VideoSink(out, probe(src), EncoderSettings(codec="libvpx-vp9"))
    assert_no_output(tmp_path, out)


def test_quality_on_lossless_codec_is_refused(tmp_path, good):
    with pytest.raises(MediaError, match="ffv1 is lossless: leave out --crf"):
        VideoSink(tmp_path / "out.mkv", probe(good), EncoderSettings(codec="ffv1", quality=10))
    assert leftovers(tmp_path) == []
