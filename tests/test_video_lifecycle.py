"""Threads and files: interruption leaves nothing, early close ends the decode thread, errors
from either thread reach the caller, memory stays bounded by the queue."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from videogen import leftovers, make_video
from vidrestore.errors import MediaError
from vidrestore.video import EncoderSettings, VideoSink, VideoSource, open_sink

FAST = EncoderSettings(preset="ultrafast")
BACKENDS = ["pyav", "ffmpeg"]
WAIT_S = 30.0  # a failure guard: the longest a test waits for a thread to reach a point (far less is needed)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    make_video(path, frames=60, audio_languages=("eng",))
    return path


def video_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("vidrestore-")]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_interrupted_write_leaves_nothing(clip, tmp_path, backend, exc):
    out = tmp_path / "out.mp4"
    with pytest.raises(exc):
        with VideoSource(clip) as src, open_sink(out, src.info, FAST, backend=backend) as sink:
            for frame in src:
                sink.write(frame)
                if frame.index == 20:
                    raise exc("stop")
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    assert video_threads() == []


def test_output_appears_only_when_complete(clip, tmp_path):
    out = tmp_path / "out.mp4"
    with VideoSource(clip) as src, VideoSink(out, src.info, FAST) as sink:
        for frame in src:
            sink.write(frame)
            assert not out.exists()
            assert len(leftovers(tmp_path)) == 1
            assert leftovers(tmp_path)[0].startswith(".out.mp4.vidrestore-tmp-")
            assert leftovers(tmp_path)[0].endswith(".mp4")
    assert out.exists() and leftovers(tmp_path) == []


def test_existing_output_is_replaced_only_on_success(clip, tmp_path):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with VideoSource(clip) as src, VideoSink(out, src.info, FAST) as sink:
            sink.write(next(iter(src)))
            raise RuntimeError("stop")
    assert out.read_bytes() == b"old"


def test_source_closed_early_ends_its_thread(clip):
    with VideoSource(clip, queue_size=2) as src:
        it = iter(src)
        next(it)
        assert video_threads()
    assert video_threads() == []


def test_source_break_out_of_loop(clip):
    src = VideoSource(clip)
    for frame in src:
        if frame.index == 3:
            break
    src.close()
    assert video_threads() == []


def test_abandoned_iteration_ends_the_thread(clip):
    src = VideoSource(clip, queue_size=2)
    it = iter(src)
    next(it)
    it.close()  # what a `for` loop's `break` does once the generator is dropped
    assert video_threads() == []


def wait_until(condition) -> bool:
    """Poll `condition` until it holds (True) or WAIT_S pass (False)."""
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_decode_queue_is_bounded(clip):
    src = VideoSource(clip, queue_size=3)
    with src:
        it = iter(src)
        next(it)
        # from now on: held with one frame taken (the decode thread's channel full, the next frame waiting)
        assert wait_until(lambda: len(src._chan) == 3), "the decoder never had to wait for room in its queue"
        time.sleep(0.2)  # a decoder that did not wait would run on meanwhile
        ahead = src.stats.frames
    assert ahead == 1 + 3 + 1  # taken + queued + the one waiting to be put


def test_wrong_frame_size_surfaces_as_media_error(clip, tmp_path):
    out = tmp_path / "out.mp4"
    with pytest.raises(MediaError, match="does not match"):
        with VideoSource(clip) as src, VideoSink(out, src.info, FAST) as sink:
            for frame in src:
                frame.image = np.zeros((10, 10, 3), np.uint8)
                sink.write(frame)
    assert not out.exists() and leftovers(tmp_path) == []
    assert video_threads() == []


def test_decoder_error_reaches_consumer(clip, monkeypatch):
    src = VideoSource(clip)

    def boom(stream):
        raise MediaError("decoder exploded")
        yield  # pragma: no cover

    monkeypatch.setattr(src, "_decode", boom)
    with pytest.raises(MediaError, match="exploded"):
        with src:
            list(src)
    assert video_threads() == []


def test_no_frames_is_not_a_finished_output(clip, tmp_path):
    out = tmp_path / "out.mp4"
    with pytest.raises(MediaError, match="no frames"):
        with VideoSource(clip) as src, VideoSink(out, src.info, FAST):
            pass
    assert not out.exists() and leftovers(tmp_path) == []


def test_missing_pts_are_filled_not_dropped(clip, tmp_path):
    out = tmp_path / "out.mp4"
    with VideoSource(clip) as src, VideoSink(out, src.info, FAST) as sink:
        for frame in src:
            if frame.index == 5:
                frame.pts = None
            sink.write(frame)
    assert sink.stats.retimed == 1 and sink.stats.frames == 60
