"""The archive test clip holds what its facts claim: VFR, B-frames, an open-GOP stretch, streams, faces."""

from __future__ import annotations

from pathlib import Path

import av
import pytest

from archive_media import ClipFacts, make_archive_clip, read_clip_facts
from vidrestore.faces.detector import DetectorConfig, FaceDetector


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> ClipFacts:
    return make_archive_clip(tmp_path_factory.mktemp("archive_media") / "clip.mkv")


def test_frames_and_irregular_vfr_timestamps(clip: ClipFacts) -> None:
    assert clip.frames == len(clip.pts) == 144
    gaps = [b - a for a, b in zip(clip.pts, clip.pts[1:])]
    assert min(gaps) > 0, "presentation order is strictly increasing"
    assert len(set(gaps)) >= 5, "frame durations vary irregularly"
    assert clip.time_base == av.open(str(clip.path)).streams.video[0].time_base
    assert 6.0 <= clip.duration <= 8.0


def test_b_frames_and_both_gop_kinds(clip: ClipFacts) -> None:
    assert clip.b_frames >= clip.frames // 4
    assert len(clip.keyframes) >= 4
    assert clip.open_gop_keyframes, "some keyframe has leading pictures from the GOP before (open GOP)"
    closed = [k for k in clip.keyframes if k not in clip.open_gop_keyframes and k > 0]
    assert closed and min(closed) < min(clip.open_gop_keyframes), "a closed stretch comes before the open one"


def test_decode_order_differs_from_presentation_order(clip: ClipFacts) -> None:
    with av.open(str(clip.path)) as c:
        decode_order = [p.pts for p in c.demux(c.streams.video[0]) if p.size]
    assert sorted(decode_order) == clip.pts
    assert decode_order != clip.pts


def test_two_audio_tracks_and_subtitles_with_tags(clip: ClipFacts) -> None:
    assert clip.audio_streams == 2 and clip.audio_codecs == ("aac", "opus")
    assert clip.subtitle_streams == 1 and len(clip.subtitle_pts) == 3
    assert clip.languages == ("eng", "eng", "fra", "eng")
    with av.open(str(clip.path)) as c:
        assert c.metadata["title"] == "archive test clip"
        for audio in c.streams.audio:
            assert float(audio.duration * audio.time_base if audio.duration else c.duration / 1e6) > 6.0


def test_facts_are_reproducible_from_the_file(clip: ClipFacts, tmp_path: Path) -> None:
    again = make_archive_clip(tmp_path / "again.mkv")
    assert read_clip_facts(clip.path, clip.scene_cuts) == ClipFacts(**{**again.__dict__, "path": clip.path})
    assert (tmp_path / "again.mkv").read_bytes() == clip.path.read_bytes(), "the clip is bit-exact reproducible"


def test_real_faces_on_both_sides_of_the_scene_cut(clip: ClipFacts, detector_weights: Path) -> None:
    detector = FaceDetector(detector_weights, "cpu", DetectorConfig(det_size=160))
    cut = clip.scene_cuts[0]
    wanted = {0, cut - 1, cut, clip.frames - 1}
    with av.open(str(clip.path)) as c:
        pictures = [f.to_ndarray(format="rgb24") for k, f in enumerate(c.decode(video=0)) if k in wanted]
    assert all(len(faces) == 1 for faces in detector.detect(pictures))
