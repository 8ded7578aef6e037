"""The live sinks against real parts: recordings decoded with PyAV, the MJPEG preview over real HTTP,
re-streams read back over UDP and through an RTSP server, the window on a virtual X display."""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import av
import cv2
import numpy as np
import pytest
from live_support import (
    close_window,
    free_port,
    grab_screen,
    identify,
    live_output,
    numbered_frame,
    open_when_published,
    press_key,
    rtsp_server,  # noqa: F401 - a fixture
    window_geometry,
    xvfb_display,  # noqa: F401 - a fixture
)

from vidrestore.errors import MediaError, VidrestoreError
from vidrestore.live.preview import PreviewServer
from vidrestore.live.record import RecordingSink, Timeline
from vidrestore.live.restream import RestreamSink
from vidrestore.live.types import LiveStats
from vidrestore.live.window import WindowSink
from vidrestore.video.codecs import EncoderSettings

TB = Fraction(1, 90000)
STEP = 3000  # one frame at 30 fps in TB ticks
NO_DROPS = 100  # a recording queue longer than any test's frames: what is written is what is recorded
WAIT_S = 20.0  # the longest any test waits for something to happen (it normally takes far less)


def wait_for(condition: Callable[[], object], what: str, timeout: float = WAIT_S) -> None:
    """Return once `condition()` is true; fail naming `what` if it never becomes so."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def sink_threads() -> list[str]:
    """Names of the live sinks' threads still running."""
    return [t.name for t in threading.enumerate() if t.name.startswith("vidrestore-")]


def decoded(path: Path) -> list[tuple[Fraction, bool, np.ndarray]]:
    """Every frame of a video file: presentation time in seconds, keyframe flag, RGB pixels."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [(frame.pts * stream.time_base, frame.key_frame, frame.to_ndarray(format="rgb24"))
                for frame in container.decode(stream)]


def assert_same_picture(picture: np.ndarray, expected: np.ndarray, tolerance: float = 8.0) -> None:
    """The picture shows `expected` (lossy coding allowed for)."""
    difference = float(np.abs(picture.astype(np.int16) - expected.astype(np.int16)).mean())
    assert difference < tolerance, f"picture differs from the expected frame by {difference:.1f} on average"


class FrameFeeder:
    """Writes numbered frames to a sink from a thread, at about `fps`, until stopped; remembers what it sent."""

    def __init__(self, sink: object, fps: float = 25.0, size: tuple[int, int] = (320, 240)) -> None:
        self.sink, self.interval, self.size = sink, 1 / fps, size
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-feeder")

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sink.write(live_output(numbered_frame(self.sent, *self.size), self.sent, self.sent * STEP))
            self.sent += 1

    def __enter__(self) -> "FrameFeeder":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# --- recording -----------------------------------------------------------------------------------


def test_recording_rebases_timestamps_and_continues_after_a_reconnect(tmp_path: Path) -> None:
    sink = RecordingSink(tmp_path / "rec.mp4", rate_hint=Fraction(30), queue_frames=NO_DROPS)
    for i in range(12):  # the first connection starts at an arbitrary time
        sink.write(live_output(numbered_frame(i, 160, 120), i, pts=7_200_000 + i * STEP, connection=1))
    for i in range(12, 24):  # the source reconnected: its timestamps start again from 0
        sink.write(live_output(numbered_frame(i, 160, 120), i, pts=(i - 12) * STEP, connection=2))
    sink.close()

    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec.mp4"]  # no temporary file left
    got = decoded(tmp_path / "rec.mp4")
    assert [t for t, _, _ in got] == [Fraction(i, 30) for i in range(24)]
    assert got[0][1], "the recording starts with a keyframe"
    assert [identify(picture) for _, _, picture in got] == list(range(24))  # every frame, in order
    assert sink.dropped == 0 and sink.frames == 24


def test_recording_takes_its_frame_step_from_the_sources_rate(tmp_path: Path) -> None:
    sink = RecordingSink(tmp_path / "rec.mkv", queue_frames=NO_DROPS)  # no rate given: the source's
    fifty = Fraction(50)
    sink.write(live_output(numbered_frame(0, 160, 120), 0, pts=90_000, connection=1, rate=fifty))
    # a reconnect after one frame: no interval seen yet, so the next frame comes one nominal step later
    sink.write(live_output(numbered_frame(1, 160, 120), 1, pts=0, connection=2, rate=fifty))
    sink.close()
    assert [t for t, _, _ in decoded(tmp_path / "rec.mkv")] == [0, Fraction(1, 50)]


def test_restream_takes_the_sources_rate_unless_one_is_given() -> None:
    port = free_port(socket.SOCK_DGRAM)  # nobody listens: UDP sends regardless
    follows = RestreamSink(f"udp://127.0.0.1:{port}")
    fixed = RestreamSink(f"udp://127.0.0.1:{port}", rate=Fraction(30))
    try:
        for i in range(3):
            for sink in (follows, fixed):
                sink.write(live_output(numbered_frame(i), i, pts=i * 1800, rate=Fraction(50)))
            for sink in (follows, fixed):  # each frame sent before the next is written: none is dropped
                wait_for(lambda sink=sink, i=i: sink.sent > i, f"frame {i} to be sent to {sink.url}")
    finally:
        follows.close()
        fixed.close()
    assert follows.rate == 50 and follows.settings.options["g"] == "50" and follows.sent == 3
    assert fixed.rate == 30 and fixed.settings.options["g"] == "30" and fixed.sent == 3


def test_timeline_never_goes_back() -> None:
    timeline = Timeline(TB, Fraction(30))

    def place(pts: int | None, connection: int = 1, arrival: float = 0.0) -> int:
        return timeline.place(live_output(np.zeros((2, 2, 3), np.uint8), 0, pts, connection, arrival=arrival))

    assert [place(1000 + k * STEP) for k in range(5)] == [k * STEP for k in range(5)]  # rebased to 0
    assert place(1000 + 6 * STEP) == 6 * STEP  # a gap in the source's timestamps (a lost frame) is kept
    assert place(500) == 7 * STEP  # back in time within a connection: one frame step on
    assert place(500 + STEP) == 8 * STEP  # ... and followed from there
    assert place(90000 * 3600) == 9 * STEP  # a jump of an hour is a discontinuity, not a gap
    assert place(0, connection=2) == 10 * STEP  # a reconnect: timestamps restart, time goes on
    assert place(None, arrival=10.0) == 10 * STEP + 90000 * 10  # no timestamps: spaced by arrival
    assert place(None, arrival=10.0) == 10 * STEP + 90000 * 10 + 1  # never the same time twice
    assert timeline.discontinuities == 2


def test_recording_segments_each_play_alone(tmp_path: Path) -> None:
    sink = RecordingSink(tmp_path / "cam.mp4", segment_seconds=0.5, rate_hint=Fraction(30),
                         queue_frames=NO_DROPS)
    for i in range(50):
        sink.write(live_output(numbered_frame(i, 160, 120), i, pts=i * STEP))
    sink.close()

    names = [f"cam_{n:05d}.mp4" for n in range(4)]
    assert sorted(p.name for p in tmp_path.iterdir()) == names
    assert [s.start for s in sink.segments] == [0, Fraction(1, 2), 1, Fraction(3, 2)]
    first = 0
    for name, segment in zip(names, sink.segments):
        got = decoded(tmp_path / name)
        assert len(got) == segment.frames
        assert got[0][1], f"{name} starts with a keyframe"
        assert [t for t, _, _ in got] == [Fraction(i, 30) for i in range(len(got))]  # each starts at 0
        assert [identify(picture) for _, _, picture in got] == list(range(first, first + len(got)))
        first += len(got)
    assert first == 50 and [s.frames for s in sink.segments] == [15, 15, 15, 5]


def test_recording_segment_is_finalised_while_the_source_is_down(tmp_path: Path) -> None:
    sink = RecordingSink(tmp_path / "cam.mp4", segment_seconds=60, rate_hint=Fraction(30),
                         queue_frames=NO_DROPS)
    for i in range(5):
        sink.write(live_output(numbered_frame(i, 160, 120), i, pts=i * STEP))
    sink.idle("connection lost")
    wait_for(lambda: (tmp_path / "cam_00000.mp4").exists(), "the open segment to be finalised")
    assert len(decoded(tmp_path / "cam_00000.mp4")) == 5  # complete while the recording goes on
    for i in range(5, 8):
        sink.write(live_output(numbered_frame(i, 160, 120), i, pts=(i - 5) * STEP, connection=2))
    sink.close()
    assert [s.start for s in sink.segments] == [0, Fraction(5, 30)]
    assert len(decoded(tmp_path / "cam_00001.mp4")) == 3


def test_recording_frame_size_change_starts_a_new_file(tmp_path: Path) -> None:
    sink = RecordingSink(tmp_path / "rec.mkv", rate_hint=Fraction(30), queue_frames=NO_DROPS)
    for i in range(6):
        sink.write(live_output(numbered_frame(i, 160, 120), i, pts=i * STEP))
    for i in range(6, 10):
        sink.write(live_output(numbered_frame(i, 192, 144), i, pts=i * STEP))
    sink.close()

    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec.mkv", "rec_00001.mkv"]
    first, second = decoded(tmp_path / "rec.mkv"), decoded(tmp_path / "rec_00001.mkv")
    assert [identify(picture) for _, _, picture in first] == list(range(6))
    assert [identify(picture) for _, _, picture in second] == list(range(6, 10))
    assert first[0][2].shape == (120, 160, 3) and second[0][2].shape == (144, 192, 3) and second[0][1]
    assert sink.segments[1].start == Fraction(6, 30)


def test_recording_write_never_waits_and_accounts_for_every_frame(tmp_path: Path) -> None:
    sink = RecordingSink(tmp_path / "rec.mp4", rate_hint=Fraction(30))
    frame = numbered_frame(0, 640, 480)
    for i in range(120):  # far faster than the encoder: the oldest queued frames are dropped
        sink.write(live_output(frame, i, pts=i * STEP))
    sink.close()
    got = decoded(tmp_path / "rec.mp4")
    assert sink.frames + sink.dropped == 120
    assert len(got) == sink.frames
    times = [t for t, _, _ in got]
    assert times == sorted(set(times))


def test_recording_refuses_unwritable_outputs_at_once(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="folder does not exist"):
        RecordingSink(tmp_path / "missing" / "rec.mp4")
    with pytest.raises(MediaError):
        RecordingSink(tmp_path / "rec.unknownext")
    assert list(tmp_path.iterdir()) == []
    assert not sink_threads()


# --- MJPEG preview -------------------------------------------------------------------------------


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


def jpeg_image(data: bytes) -> np.ndarray:
    """JPEG bytes -> RGB array."""
    picture = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert picture is not None, "not a JPEG"
    return cv2.cvtColor(picture, cv2.COLOR_BGR2RGB)


def mjpeg_parts(preview: PreviewServer) -> Iterator[bytes]:
    """The JPEG parts of /stream.mjpg, parsed from the multipart body as they arrive."""
    connection = http.client.HTTPConnection("127.0.0.1", preview.port, timeout=10)
    try:
        connection.request("GET", "/stream.mjpg")
        response = connection.getresponse()
        assert response.status == 200
        boundary = response.headers["Content-Type"].split("boundary=")[1]
        assert response.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        assert response.fp.readline().strip() == f"--{boundary}".encode()
        while True:
            headers = {}
            while (line := response.fp.readline().strip()):
                key, value = line.decode().split(":", 1)
                headers[key.lower()] = value.strip()
            assert headers["content-type"] == "image/jpeg"
            yield response.fp.read(int(headers["content-length"]))
            assert response.fp.readline() == b"\r\n"
            assert response.fp.readline().strip() == f"--{boundary}".encode()
    finally:
        connection.close()


def test_preview_serves_page_stats_and_snapshot() -> None:
    stats = LiveStats()
    stats.frame_in(time.monotonic())
    preview = PreviewServer(port=0, stats=stats)
    try:
        assert preview.url == f"http://127.0.0.1:{preview.port}/"
        page = get(preview.url).decode()
        assert '<img id="stream" src="/stream.mjpg"' in page and "/stats" in page
        snapshot = json.loads(get(preview.url + "stats"))
        assert snapshot["frames_in"] == 1 and "latency_p95_ms" in snapshot and snapshot["source_up"] is False
        assert jpeg_image(get(preview.url + "snapshot.jpg")).shape == (360, 640, 3)  # waiting card

        frame = numbered_frame(7)
        preview.write(live_output(frame, 7))
        picture = jpeg_image(get(preview.url + "snapshot.jpg"))
        assert picture.shape == frame.shape
        assert identify(picture, rows=slice(120, None)) == 7  # below the statistics
        assert np.abs(picture[:40, :100].astype(int) - frame[:40, :100]).mean() > 20  # the statistics box

        preview.idle("camera unplugged")
        darkened = jpeg_image(get(preview.url + "snapshot.jpg"))
        assert darkened.shape == frame.shape and darkened[120:].mean() < frame[120:].mean() * 0.6
        with pytest.raises(urllib.error.HTTPError) as missing:
            get(preview.url + "nothing-here")
        assert missing.value.code == 404
    finally:
        preview.close()
    assert not sink_threads()


def test_preview_stream_shows_new_frames_and_survives_a_client_leaving(caplog: pytest.LogCaptureFixture) -> None:
    preview = PreviewServer(port=0, fps=30)
    try:
        with FrameFeeder(preview):
            leaving, staying = mjpeg_parts(preview), mjpeg_parts(preview)
            assert jpeg_image(next(leaving)).shape[2] == 3 and jpeg_image(next(staying)).shape[2] == 3
            wait_for(lambda: client_threads() == 2, "both clients being served")
            leaving.close()  # goes away mid-stream
            wait_for(lambda: client_threads() == 1, "the server to let the client that left go")
            seen = distinct_indices(staying, 4)
            assert seen == sorted(seen) and len(set(seen)) == 4  # new frames, in order
            again = mjpeg_parts(preview)  # the server still takes new clients, and gives them the newest frame
            assert identify_jpeg(next(again)) >= seen[-1]
            again.close()
            staying.close()
    finally:
        preview.close()
    assert not sink_threads()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def client_threads() -> int:
    """The preview's client threads running."""
    return sum(t.name == "vidrestore-preview-client" for t in threading.enumerate())


def identify_jpeg(data: bytes) -> int:
    """Which numbered frame a JPEG part shows."""
    return identify(jpeg_image(data))


def distinct_indices(parts: Iterator[bytes], count: int) -> list[int]:
    """The frame numbers of the next `count` parts that show a different frame from the previous."""
    found: list[int] = []
    while len(found) < count:
        index = identify_jpeg(next(parts))
        if not found or index != found[-1]:
            found.append(index)
    return found


def test_preview_refuses_a_port_in_use() -> None:
    first = PreviewServer(port=0)
    try:
        with pytest.raises(VidrestoreError, match="cannot serve the preview"):
            PreviewServer(port=first.port)
    finally:
        first.close()
    assert not sink_threads()


# --- re-stream -----------------------------------------------------------------------------------


class StreamReader:
    """Decodes a stream in a thread until it has `count` frames (or the stream ends)."""

    def __init__(self, open_stream: Callable[[], object], count: int) -> None:
        self.open_stream, self.count = open_stream, count
        self.frames: list[np.ndarray] = []
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="test-reader")
        self._thread.start()

    def _run(self) -> None:
        try:
            with self.open_stream() as container:
                for frame in container.decode(video=0):
                    self.frames.append(frame.to_ndarray(format="rgb24"))
                    if len(self.frames) >= self.count:
                        return
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def join(self) -> None:
        self._thread.join()


def feed_until(sink: RestreamSink, reader: StreamReader, first: int = 0, size: tuple[int, int] = (320, 240)) -> int:
    """Write numbered frames at about 25 fps until the reader is done; the next frame number."""
    index = first
    deadline = time.monotonic() + WAIT_S
    while not reader.done and time.monotonic() < deadline:
        sink.write(live_output(numbered_frame(index, *size), index))
        index += 1
        time.sleep(0.04)
    reader.join()
    return index


def check_restreamed(frames: list[np.ndarray], count: int) -> None:
    """Enough frames arrived, of the stream's size, each showing one of the frames sent."""
    assert len(frames) >= count
    for picture in frames:
        assert picture.shape == (240, 320, 3)
        identify(picture)


def test_restream_udp_mpegts() -> None:
    port = free_port(socket.SOCK_DGRAM)
    sink = RestreamSink(f"udp://127.0.0.1:{port}", rate=Fraction(25))
    assert sink.format == "mpegts"
    try:  # packets sent before the reader listens are lost: it starts at the next keyframe (1 s GOP)
        reader = StreamReader(lambda: av.open(f"udp://127.0.0.1:{port}?timeout=10000000", format="mpegts",
                                              timeout=10), count=15)
        feed_until(sink, reader)
    finally:
        sink.close()
    assert reader.error is None, reader.error
    check_restreamed(reader.frames, 15)
    assert sink.connections == 1 and sink.sent >= 15
    assert not sink_threads()


def test_restream_rtsp_reconnects_after_the_server_restarts(rtsp_server) -> None:  # noqa: F811
    options = {"rtsp_transport": "udp"}
    sink = RestreamSink(rtsp_server.publish_url("out"), options=options, rate=Fraction(25))
    assert sink.format == "rtsp"
    try:
        reader = StreamReader(lambda: open_when_published(rtsp_server.read_url("out"), options), count=10)
        next_index = feed_until(sink, reader)
        assert reader.error is None, reader.error
        check_restreamed(reader.frames, 10)

        rtsp_server.restart()  # the publishing connection breaks; the sink reconnects on its own
        reader = StreamReader(lambda: open_when_published(rtsp_server.read_url("out"), options), count=10)
        feed_until(sink, reader, first=next_index)
        assert reader.error is None, reader.error
        check_restreamed(reader.frames, 10)
        assert max(identify(picture) for picture in reader.frames) >= next_index
        assert sink.connections >= 2
    finally:
        sink.close()
    assert not sink_threads()


def test_restream_refuses_unknown_formats_and_encoders() -> None:
    with pytest.raises(VidrestoreError, match="no 'nosuchformat' muxer"):
        RestreamSink("udp://127.0.0.1:9", format="nosuchformat")
    with pytest.raises(VidrestoreError, match="cannot re-stream with"):
        RestreamSink("udp://127.0.0.1:9", settings=EncoderSettings(codec="nosuchencoder"))
    assert not sink_threads()


# --- window --------------------------------------------------------------------------------------


def find_on_screen(screen: np.ndarray, frame: np.ndarray) -> tuple[tuple[int, int], float]:
    """Where the lower half of `frame` best matches the screen (top-left of the frame) and how well."""
    lower = frame[frame.shape[0] // 2:]
    scores = cv2.matchTemplate(screen, lower, cv2.TM_SQDIFF)
    low, _, (x, y), _ = cv2.minMaxLoc(scores)
    return (x, y - frame.shape[0] // 2), low / lower.size


WINDOW_ATTEMPTS = 3


def window_showing(display: str, frame: np.ndarray, **options: object) -> tuple[WindowSink, int, int]:
    """A WindowSink that shows `frame`, and the frame's top-left corner on the screen.

    opencv-python's Qt build now and then leaves a new window unpainted (opencv/opencv-python#362; here,
    on Xvfb, a window mapped whose first paint never comes, up to one in six when the machine is busy):
    then another window is opened. A sink that never shows its frames still fails.
    """
    for _ in range(WINDOW_ATTEMPTS):
        window = WindowSink(**options)
        window.write(live_output(frame, 0))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            (x, y), difference = find_on_screen(grab_screen(display), frame)
            if difference < 4:
                return window, x, y
            time.sleep(0.1)
        window.close()
    pytest.fail(f"none of {WINDOW_ATTEMPTS} windows showed the frame")


def test_window_shows_frames_with_statistics_and_no_signal(xvfb_display: str,  # noqa: F811
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPLAY", xvfb_display)
    frame = numbered_frame(5)
    window, x, y = window_showing(xvfb_display, frame, stats=LiveStats())
    try:
        shown = grab_screen(xvfb_display)[y:y + 240, x:x + 320]
        assert_same_picture(shown[120:], frame[120:], tolerance=2)
        assert np.abs(shown[:40, :100].astype(int) - frame[:40, :100]).mean() > 20  # statistics drawn in
        following = numbered_frame(6)
        window.write(live_output(following, 6))
        wait_for(lambda: find_on_screen(grab_screen(xvfb_display), following)[1] < 4, "the next frame")
        window.idle("connection lost")
        wait_for(lambda: grab_screen(xvfb_display)[y + 120:y + 240, x:x + 320].mean() < frame[120:].mean() * 0.6,
                 "the darkened 'no signal' picture")
        assert not window.quit.is_set()
    finally:
        window.close()
    assert not sink_threads()


@pytest.mark.parametrize("action", ["q", "Escape", "close"])
def test_window_quits_on_q_escape_or_close(action: str, xvfb_display: str,  # noqa: F811
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPLAY", xvfb_display)
    quit = threading.Event()
    title = f"vidrestore test {action}"
    window = WindowSink(title=title, on_quit=quit.set)
    try:
        window.write(live_output(numbered_frame(1), 1))
        wait_for(lambda: (window_geometry(xvfb_display, title) or (0, 0, 0, 0))[2:] == (320, 240),
                 "the window at the frame's size")
        x, y, width, height = window_geometry(xvfb_display, title)
        if action == "close":
            assert close_window(xvfb_display, title)
        else:
            press_key(xvfb_display, action, at=(x + width // 2, y + height // 2))
        assert quit.wait(WAIT_S), f"{action} did not call on_quit"
        assert window.quit.is_set()
        window.write(live_output(numbered_frame(2), 2))  # after quitting, frames are taken and ignored
    finally:
        window.close()
    assert not sink_threads()


def test_window_without_a_display_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    with pytest.raises(VidrestoreError, match="DISPLAY is not set"):
        WindowSink()
    unused = next(n for n in range(90, 200) if not os.path.exists(f"/tmp/.X11-unix/X{n}"))
    monkeypatch.setenv("DISPLAY", f":{unused}")
    with pytest.raises(VidrestoreError, match="could not connect to display"):
        WindowSink()
    assert not sink_threads()
