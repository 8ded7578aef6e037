"""Pass-through of the real test videos: frame count, PTS list, audio bytes and tags survive."""

from __future__ import annotations

from pathlib import Path

import pytest

from videogen import leftovers, other_packets, video_pts
from vidrestore.video import EncoderSettings, VideoSource, passthrough, probe

FAST = EncoderSettings(preset="ultrafast")
REAL = {
    "vfr": "retalking_face_1.mp4",
    "mpeg4_part2": "sadtalker_WDA_KatieHill_000.mp4",
    "odd_388x512": "keep_real_1.mp4",
    "odd_390x512": "keep_real_3.mp4",
    "audio_longer": "facerec_short_hamilton_clip.mp4",
}


@pytest.fixture
def video(media_dir: Path, request: pytest.FixtureRequest) -> Path:
    path = media_dir / "videos" / REAL[request.param]
    if not path.exists():
        pytest.skip(f"{path} missing")
    return path


@pytest.mark.parametrize("video", list(REAL), indirect=True)
def test_real_passthrough_keeps_frames_pts_audio(video, tmp_path):
    out = tmp_path / "out.mp4"
    result = passthrough(video, out, FAST)
    src_pts, out_pts = video_pts(video), video_pts(out)
    assert out_pts == src_pts
    assert result.decoded.frames == result.written.frames == len(src_pts[0])
    assert other_packets(out) == other_packets(video)
    a, b = probe(video), probe(out)
    assert (b.width, b.height) == (a.width, a.height)
    assert b.sample_aspect_ratio == a.sample_aspect_ratio
    assert b.color == a.color
    assert [s.language for s in b.streams] == [s.language for s in a.streams]
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("video", ["vfr"], indirect=True)
def test_real_vfr_is_really_variable(video):
    pts, _ = video_pts(video)
    gaps = {b - a for a, b in zip(pts, pts[1:])}
    assert len(gaps) > 1  # the fixture is what it claims; the pass-through test keeps every gap


@pytest.mark.parametrize("video", ["audio_longer"], indirect=True)
def test_audio_longer_than_video_is_kept_whole(video, tmp_path):
    out = tmp_path / "out.mp4"
    passthrough(video, out, FAST)
    import av

    with av.open(str(out)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        assert float(a.duration * a.time_base) > float(v.duration * v.time_base) + 0.5
        assert float(a.duration * a.time_base) == pytest.approx(10.01, abs=0.02)


@pytest.mark.parametrize("video", ["odd_388x512"], indirect=True)
def test_rgb_frames_of_odd_size(video):
    with VideoSource(video) as src:
        first = next(iter(src))
    assert first.image.shape == (512, 388, 3)
