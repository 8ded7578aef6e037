"""Real servers and screens for the live-mode tests: an RTSP server, a virtual X display, frames.

RTSP server (Debian's rtsp-server-perl; RTP over UDP only, so publish and read with rtsp_transport udp):

    from live_support import RtspServer, rtsp_server    # rtsp_server is a fixture: import it by name

    def test_feed(rtsp_server):                          # a started server on free ports (skips if missing)
        publish_to = rtsp_server.publish_url("cam")      # rtsp://127.0.0.1:P2/cam, sources publish here
        read_from = rtsp_server.read_url("cam")          # rtsp://127.0.0.1:P1/cam, viewers read here
        ...
        rtsp_server.stop()                               # the feed drops (publishers and viewers cut off)
        rtsp_server.start()                              # back on the same ports: the same URLs work again

    with RtspServer() as server: ...                     # the same without pytest (start on enter, stop on exit)

Read with `av.open(url, options={"rtsp_transport": "udp"}, timeout=10)`; a viewer gets 404 until a
publisher has announced the stream, so retry the open (see `open_when_published`). Server quirks: a
publisher that drops before its RECORD leaves the path taken (403 to the next ANNOUNCE) until the server
restarts; the server log is at `server.log_path` while it runs.

Virtual display (Xvfb): the fixture `xvfb_display` yields a display name such as ":3" (skips when Xvfb
is missing); set it with `monkeypatch.setenv("DISPLAY", xvfb_display)`. `grab_screen`, `window_geometry`,
`press_key` and `close_window` look at and drive that display (through libX11/libXtst, no xdotool needed).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import select
import shutil
import socket
import subprocess
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator

import av
import cv2
import numpy as np
import pytest

from vidrestore.live.types import LiveOutput

RTSP_SERVER = "rtsp-server-perl"
# /usr/bin/rtsp-server-perl, except that the RTP ports also stay ours after the server's housekeeping,
# which otherwise resets them to 20000 whenever no stream is mounted (two servers would then collide).
RTSP_SERVER_SCRIPT = """
use strict; use warnings; use AnyEvent; use RTSP::Server;
$RTSP::Server::RTP_START_PORT = shift @ARGV;
my $server = RTSP::Server->new_with_options();
$server->listen;
my $done = AnyEvent->condvar;
$SIG{INT} = $SIG{TERM} = sub { $done->send };
$done->recv;
"""
START_TIMEOUT_S = 15.0


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port of 127.0.0.1 that nothing listens on now (TCP by default, SOCK_DGRAM for UDP)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_udp_pair() -> int:
    """An even UDP port whose successor is free too (an RTP/RTCP pair)."""
    for _ in range(50):
        port = free_port(socket.SOCK_DGRAM) & ~1
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a, \
                    socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no free UDP port pair")


def wait_until_listening(port: int, process: subprocess.Popen, what: str) -> None:
    """Return once 127.0.0.1:`port` accepts TCP connections; RuntimeError if `process` ends or time runs out."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port} within {START_TIMEOUT_S:.0f} s")


class RtspServer:
    """rtsp-server-perl's server on 127.0.0.1 (run from RTSP_SERVER_SCRIPT), with its TCP and RTP ports
    chosen once, so that a restart keeps the URLs valid and concurrent servers do not collide."""

    def __init__(self) -> None:
        if shutil.which(RTSP_SERVER) is None:
            raise RuntimeError(f"{RTSP_SERVER} is not installed (Debian package rtsp-server-perl)")
        self.client_port = free_port()
        self.source_port = free_port()
        self.rtp_start_port = free_udp_pair()
        self.log_path = Path(tempfile.mkstemp(prefix="rtsp-server-", suffix=".log")[1])
        self._process: subprocess.Popen | None = None

    def publish_url(self, name: str) -> str:
        """Where a source publishes the stream `name` (rtsp_transport udp)."""
        return f"rtsp://127.0.0.1:{self.source_port}/{name}"

    def read_url(self, name: str) -> str:
        """Where viewers read the stream `name` (rtsp_transport udp)."""
        return f"rtsp://127.0.0.1:{self.client_port}/{name}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> "RtspServer":
        """Start the server (on the same ports as before) and wait until both ports listen."""
        if self.running:
            return self
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                ["perl", "-e", RTSP_SERVER_SCRIPT, "--", str(self.rtp_start_port),
                 "--clientport", str(self.client_port), "--serverport", str(self.source_port),
                 "--client_listen_address", "127.0.0.1", "--source_listen_address", "127.0.0.1",
                 "--rtp_start_port", str(self.rtp_start_port)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            for port in (self.source_port, self.client_port):
                wait_until_listening(port, self._process, f"{RTSP_SERVER} (log: {self.log_path})")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server: every publisher and viewer is cut off."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def restart(self) -> None:
        """Stop and start again on the same ports."""
        self.stop()
        self.start()

    def __enter__(self) -> "RtspServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.log_path.unlink(missing_ok=True)


@pytest.fixture
def rtsp_server() -> Iterator[RtspServer]:
    """A started RTSP server on free ports of 127.0.0.1 (skips when rtsp-server-perl is missing)."""
    if shutil.which(RTSP_SERVER) is None:
        pytest.skip(f"{RTSP_SERVER} is not installed (Debian package rtsp-server-perl; .ci/run installs it)")
    with RtspServer() as server:
        yield server


def open_when_published(url: str, options: dict[str, str], give_up_s: float = 20.0) -> Any:
    """av.open(url) for reading, retried until the stream is there (an RTSP server answers 404 before)."""
    deadline = time.monotonic() + give_up_s
    while True:
        try:
            return av.open(url, options=options, timeout=10)
        except av.FFmpegError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


# --- a virtual X display -------------------------------------------------------------------------


@contextlib.contextmanager
def virtual_display(width: int = 1024, height: int = 768) -> Iterator[str]:
    """Run Xvfb on a free display number (it picks one and tells us) and yield its name, e.g. ':3'."""
    read_end, write_end = os.pipe()
    process = subprocess.Popen(["Xvfb", "-displayfd", str(write_end), "-screen", "0", f"{width}x{height}x24",
                                "-nolisten", "tcp"], pass_fds=(write_end,),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], START_TIMEOUT_S)
        number = os.read(read_end, 64).decode().strip() if ready else ""
        if not number:
            raise RuntimeError("Xvfb did not start")
        yield f":{number}"
    finally:
        os.close(read_end)
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def xvfb_display() -> Iterator[str]:
    """The name of a running Xvfb display (skips when Xvfb is missing)."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (Debian package xvfb; .ci/run installs it)")
    with virtual_display() as display:
        yield display


def grab_screen(display: str) -> np.ndarray:
    """The whole screen of `display` as RGB."""
    from PIL import ImageGrab

    return np.array(ImageGrab.grab(xdisplay=display).convert("RGB"))


class XClientMessageEvent(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("serial", ctypes.c_ulong), ("send_event", ctypes.c_int),
                ("display", ctypes.c_void_p), ("window", ctypes.c_ulong), ("message_type", ctypes.c_ulong),
                ("format", ctypes.c_int), ("data", ctypes.c_long * 5)]


class XEvent(ctypes.Union):
    _fields_ = [("xclient", XClientMessageEvent), ("pad", ctypes.c_long * 24)]


CLIENT_MESSAGE = 33  # the X event type of a ClientMessage


@contextlib.contextmanager
def x_connection(display: str) -> Iterator[tuple[Any, ctypes.c_void_p]]:
    """libX11 and an open connection to `display`."""
    x11 = ctypes.CDLL(ctypes.util.find_library("X11") or "libX11.so.6")
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x11.XDefaultRootWindow.restype = ctypes.c_ulong
    x11.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
    x11.XInternAtom.restype = ctypes.c_ulong
    x11.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    x11.XKeysymToKeycode.restype = ctypes.c_ubyte
    x11.XKeysymToKeycode.argtypes = [ctypes.c_void_p, ctypes.c_ulong]
    x11.XQueryTree.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.POINTER(ctypes.c_ulong),
                               ctypes.POINTER(ctypes.c_ulong), ctypes.POINTER(ctypes.POINTER(ctypes.c_ulong)),
                               ctypes.POINTER(ctypes.c_uint)]
    x11.XFetchName.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.POINTER(ctypes.c_char_p)]
    x11.XSendEvent.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_long,
                               ctypes.POINTER(XEvent)]
    x11.XGetGeometry.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.POINTER(ctypes.c_ulong)] + \
        [ctypes.POINTER(ctypes.c_int)] * 2 + [ctypes.POINTER(ctypes.c_uint)] * 4
    x11.XFlush.argtypes = x11.XCloseDisplay.argtypes = x11.XFree.argtypes = [ctypes.c_void_p]
    connection = x11.XOpenDisplay(display.encode())
    if not connection:
        raise RuntimeError(f"cannot open X display {display}")
    try:
        yield x11, connection
    finally:
        x11.XCloseDisplay(connection)


def find_window(x11: Any, connection: Any, title: str) -> int | None:
    """The top-level window named `title` (no window manager: top-levels are the root's children)."""
    root_return, parent, children, count = ctypes.c_ulong(), ctypes.c_ulong(), ctypes.POINTER(ctypes.c_ulong)(), \
        ctypes.c_uint()
    x11.XQueryTree(connection, x11.XDefaultRootWindow(connection), ctypes.byref(root_return),
                   ctypes.byref(parent), ctypes.byref(children), ctypes.byref(count))
    try:
        for i in range(count.value):
            name = ctypes.c_char_p()
            if x11.XFetchName(connection, children[i], ctypes.byref(name)) and name.value:
                found = name.value.decode(errors="replace") == title
                x11.XFree(name)
                if found:
                    return children[i]
    finally:
        if children:
            x11.XFree(children)
    return None


KEYSYMS = {"Escape": 0xFF1B}


def window_geometry(display: str, title: str) -> tuple[int, int, int, int] | None:
    """x, y, width and height on the screen of the window named `title`; None when there is none."""
    with x_connection(display) as (x11, connection):
        window = find_window(x11, connection, title)
        if window is None:
            return None
        root, x, y = ctypes.c_ulong(), ctypes.c_int(), ctypes.c_int()
        width, height, border, depth = ctypes.c_uint(), ctypes.c_uint(), ctypes.c_uint(), ctypes.c_uint()
        x11.XGetGeometry(connection, window, ctypes.byref(root), ctypes.byref(x), ctypes.byref(y),
                         ctypes.byref(width), ctypes.byref(height), ctypes.byref(border), ctypes.byref(depth))
        return x.value, y.value, width.value, height.value


def press_key(display: str, key: str, at: tuple[int, int]) -> None:
    """Press and release `key` (a character, or "Escape") with the pointer at screen position `at` (XTest).

    Without a window manager the keyboard focus follows the pointer, so the window under `at` gets it.
    """
    xtst = ctypes.CDLL(ctypes.util.find_library("Xtst") or "libXtst.so.6")
    xtst.XTestFakeMotionEvent.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_ulong]
    xtst.XTestFakeKeyEvent.argtypes = [ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_ulong]
    with x_connection(display) as (x11, connection):
        keycode = x11.XKeysymToKeycode(connection, KEYSYMS.get(key) or ord(key))
        xtst.XTestFakeMotionEvent(connection, 0, at[0], at[1], 0)
        x11.XFlush(connection)
        time.sleep(0.2)  # let the focus follow the pointer
        xtst.XTestFakeKeyEvent(connection, keycode, 1, 0)
        xtst.XTestFakeKeyEvent(connection, keycode, 0, 0)
        x11.XFlush(connection)


def close_window(display: str, title: str) -> bool:
    """Ask the window named `title` to close, as a window manager's close button does (WM_DELETE_WINDOW).

    False when no such window is there.
    """
    with x_connection(display) as (x11, connection):
        window = find_window(x11, connection, title)
        if window is None:
            return False
        event = XEvent()
        event.xclient.type = CLIENT_MESSAGE
        event.xclient.window = window
        event.xclient.message_type = x11.XInternAtom(connection, b"WM_PROTOCOLS", 0)
        event.xclient.format = 32
        event.xclient.data[0] = x11.XInternAtom(connection, b"WM_DELETE_WINDOW", 0)
        x11.XSendEvent(connection, window, 0, 0, ctypes.byref(event))
        x11.XFlush(connection)
        return True


# --- frames --------------------------------------------------------------------------------------


BARCODE_BITS = 10  # numbered frames carry their number (below 1024) as a strip of black and white cells


def numbered_frame(index: int, width: int = 320, height: int = 240) -> np.ndarray:
    """An RGB frame that carries its number: a white block moving along a gray ramp whose blue level
    changes with the index, the number drawn in, and the number in binary as a strip of cells along the
    bottom (read back by `frame_number`, robust to JPEG and H.264)."""
    image = np.empty((height, width, 3), np.uint8)
    image[...] = np.linspace(40, 200, width, dtype=np.uint8)[None, :, None]
    image[..., 2] = (index * 37) % 256
    block = width // 8
    x = (index * block) % (width - block)
    image[height // 2: height * 5 // 6, x:x + block] = 255
    cv2.putText(image, str(index), (8, height // 2 - 10), cv2.FONT_HERSHEY_SIMPLEX, 2.0, (0, 0, 0), 4)
    cell = width // BARCODE_BITS
    for bit in range(BARCODE_BITS):
        image[height * 5 // 6:, bit * cell:(bit + 1) * cell] = 255 if index >> bit & 1 else 0
    return image


def frame_number(picture: np.ndarray) -> int:
    """The number a `numbered_frame` carries in its bottom strip (read at the middle of each cell)."""
    height, width = picture.shape[:2]
    cell = width / BARCODE_BITS
    row = picture[height * 11 // 12].astype(np.float64).mean(axis=1)
    return sum(1 << bit for bit in range(BARCODE_BITS) if row[int((bit + 0.5) * cell)] > 128)


def live_output(image: np.ndarray, index: int, pts: int | None = None, connection: int = 1,
                time_base: Fraction = Fraction(1, 90000), arrival: float | None = None,
                rate: Fraction | None = None) -> LiveOutput:
    """A LiveOutput as the live runner hands it to the sinks."""
    return LiveOutput(image=image, pts=pts, time_base=time_base,
                      arrival=time.monotonic() if arrival is None else arrival, sequence=index,
                      connection=connection, faces=0, restored=True, rate=rate)


def identify(picture: np.ndarray, rows: slice = slice(None), tolerance: float = 8.0) -> int:
    """Which `numbered_frame` the picture shows: its number, once the picture (or the `rows` compared,
    e.g. those below a statistics box) is seen to look like that frame."""
    number = frame_number(picture)
    expected = numbered_frame(number, picture.shape[1], picture.shape[0])
    difference = float(np.abs(picture[rows].astype(np.int16) - expected[rows].astype(np.int16)).mean())
    assert difference < tolerance, f"the picture is not numbered frame {number} ({difference:.1f} apart)"
    return number
