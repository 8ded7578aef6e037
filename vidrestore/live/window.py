"""WindowSink: the live frames in an OpenCV window on the local desktop.

OpenCV's HighGUI (the Qt build) binds itself to the first thread that uses it, for the life of the
process: a second window opened later from another thread would hang. So the window lives in a small
child process (`python -m vidrestore.live.window TITLE`) whose main thread does every cv2.imshow and
cv2.waitKey; the sink sends it the pictures through a pipe and hears back when the user quits. A
display that cannot be opened then fails the child, not the live run.

Known upstream problem: opencv-python's Qt build now and then leaves a new window mapped but never
painted (opencv/opencv-python#362; seen on Xvfb for a few windows in a hundred). Closing and opening
the window again is the remedy.
"""

from __future__ import annotations

import logging
import os
import struct
import subprocess
import sys
import tempfile
import threading
from typing import IO, TYPE_CHECKING, Any, Callable

import cv2
import numpy as np

from vidrestore.channel import CLOSED, Channel
from vidrestore.errors import VidrestoreError
from vidrestore.live.overlay import draw_stats, no_signal_picture

if TYPE_CHECKING:  # the child process needs neither these nor PyAV, which they would load
    from vidrestore.live.types import LiveOutput, LiveStats

log = logging.getLogger(__name__)

HEADER = struct.Struct("<1sII")  # kind (F: a BGR picture follows, C: close), width, height
FRAME, CLOSE = b"F", b"C"
READY, QUIT = "ready", "quit"  # what the child says on its stdout
QUIT_KEYS = {ord("q"), ord("Q"), 27}  # q or Esc
WAIT_KEY_MS = 20  # HighGUI handles window events only inside waitKey
SETTLE_ROUNDS = 5  # event rounds for a new window to be mapped and painted before frames come
START_TIMEOUT_S = 20.0  # for the child to open its window
STOP_TIMEOUT_S = 5.0  # for the child to close it
WAITING_SIZE = (640, 360)


def check_display() -> None:
    """VidrestoreError when there is no display to open a window on (DISPLAY unset on Linux)."""
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
        raise VidrestoreError("no display for the live window: DISPLAY is not set "
                              "(run on a desktop session, or watch the MJPEG preview instead)")


class WindowSink:
    """Show the frames in a window titled `title`, with the statistics drawn in; 'q', Esc or closing
    the window calls `on_quit` (from the sink's thread, once). `idle` shows the last frame darkened
    with the message. Pictures are prepared and sent by the sink's own thread (newest kept)."""

    name = "window"

    def __init__(self, title: str = "vidrestore", stats: LiveStats | None = None,
                 on_quit: Callable[[], None] | None = None) -> None:
        check_display()
        self.title = title
        self.stats = stats
        self.on_quit = on_quit
        self.shown = 0  # pictures sent to the window
        self.quit = threading.Event()  # set when the user quit (q, Esc, closed the window)
        self._last_image: np.ndarray | None = None
        self._queue: Channel[Any] = Channel(1, "newest")
        self._answered = threading.Event()  # the child said it is ready, or ended
        self._opened = False  # the child said it is ready
        self._closing = False
        self._stderr = tempfile.TemporaryFile()
        self._child = subprocess.Popen([sys.executable, "-m", "vidrestore.live.window", title],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr)
        self._listener = threading.Thread(target=self._listen, name="vidrestore-live-window-events", daemon=True)
        self._listener.start()
        self._wait_ready()
        self._sender = threading.Thread(target=self._send_loop, name="vidrestore-live-window", daemon=True)
        self._sender.start()

    # --- LiveSink --------------------------------------------------------------------------------

    def write(self, output: LiveOutput) -> None:
        """Keep the frame for the window (an older one not yet shown is dropped)."""
        self._queue.put(output)

    def idle(self, message: str) -> None:
        """Show the last frame darkened (or a gray card) with `message`."""
        self._queue.put(message)

    def close(self) -> None:
        """Close the window, end the child and join the threads."""
        self._closing = True
        self._queue.close()
        self._sender.join(STOP_TIMEOUT_S)
        if self._sender.is_alive():  # stuck writing to a hung child: its pipe breaks when it is killed
            self._child.kill()
            self._sender.join()
        self._stop_child()
        self._listener.join()
        self._stderr.close()

    # --- the child process -----------------------------------------------------------------------

    def _wait_ready(self) -> None:
        """Wait until the child has opened its window; VidrestoreError with its reason if it could not."""
        self._answered.wait(START_TIMEOUT_S)
        if self._opened:
            return
        self._stop_child()
        self._listener.join()
        detail = self._child_error() or f"no window after {START_TIMEOUT_S:.0f} s"
        self._stderr.close()
        raise VidrestoreError(f"cannot open the live window on display {os.environ.get('DISPLAY')!r}: {detail}")

    def _child_error(self) -> str:
        """Why the child failed, from its stderr: Qt's 'could not connect to display' line, else the last line."""
        self._stderr.seek(0)
        lines = [line.strip() for line in self._stderr.read().decode(errors="replace").splitlines() if line.strip()]
        reasons = [line for line in lines if "could not connect" in line] or lines[-1:]
        return reasons[0] if reasons else ""

    def _listen(self) -> None:
        """Thread body: read the child's messages until it ends; a quit calls `on_quit` once."""
        for line in self._child.stdout:
            message = line.decode(errors="replace").strip()
            if message == READY:
                self._opened = True
                self._answered.set()
            elif message == QUIT and not self.quit.is_set():
                log.info("the live window was closed")
                self.quit.set()
                if self.on_quit is not None:
                    self.on_quit()
        self._answered.set()  # the child ended: nobody waits for it any longer
        if self._opened and not self.quit.is_set() and not self._closing:
            log.warning("the live window closed by itself (its process ended with status %s: %s)",
                        self._child.wait(), self._child_error() or "no message")

    def _send_loop(self) -> None:
        """Thread body: turn the newest frame (or idle message) into a picture and send it to the child."""
        try:
            while (item := self._queue.get()) is not CLOSED:
                if not self.quit.is_set():
                    send_picture(self._child.stdin, self._picture(item))
                    self.shown += 1
            self._child.stdin.write(HEADER.pack(CLOSE, 0, 0))
            self._child.stdin.flush()
        except (BrokenPipeError, ValueError, OSError) as exc:  # the child is gone
            log.debug("the live window's process ended: %s", exc)

    def _picture(self, item: LiveOutput | str) -> np.ndarray:
        """The frame, or the 'no signal' picture for an idle message, with the statistics drawn in."""
        if isinstance(item, str):
            height, width = self._last_image.shape[:2] if self._last_image is not None else WAITING_SIZE[::-1]
            picture = no_signal_picture(width, height, item, self._last_image)
        else:
            picture = self._last_image = item.image
        return draw_stats(picture, self.stats.snapshot()) if self.stats is not None else picture

    def _stop_child(self) -> None:
        """Let the child finish (its stdin closes), or kill it if it does not."""
        try:
            self._child.stdin.close()
        except OSError:
            pass  # a broken pipe: the child is gone already
        try:
            self._child.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.warning("the live window did not close; killing it")
            self._child.kill()
            self._child.wait()


def send_picture(pipe: IO[bytes], picture: np.ndarray) -> None:
    """One RGB picture to the child, as BGR (HighGUI's order)."""
    height, width = picture.shape[:2]
    pipe.write(HEADER.pack(FRAME, width, height))
    pipe.write(memoryview(np.ascontiguousarray(cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))))
    pipe.flush()


# --- the child: python -m vidrestore.live.window TITLE -------------------------------------------


def read_pictures(pipe: IO[bytes], pictures: Channel[np.ndarray]) -> None:
    """Child's reader thread: pictures from the parent into `pictures` (newest kept) until CLOSE or EOF."""
    while len(header := pipe.read(HEADER.size)) == HEADER.size:
        kind, width, height = HEADER.unpack(header)
        if kind != FRAME:
            break
        data = pipe.read(width * height * 3)
        if len(data) < width * height * 3:
            break
        pictures.put(np.frombuffer(data, np.uint8).reshape(height, width, 3))
    pictures.close()


def run_window(title: str) -> None:
    """Child's main thread: open the window, show the newest picture, report 'q'/Esc/closing as quit."""
    pictures: Channel[np.ndarray] = Channel(1, "newest")
    reader = threading.Thread(target=read_pictures, args=(sys.stdin.buffer, pictures), daemon=True)
    open_window(title)
    print(READY, flush=True)
    reader.start()
    shown_shape = WAITING_SIZE[::-1] + (3,)
    while (picture := pictures.get(timeout=0)) is not CLOSED:
        if picture is not None:
            if picture.shape != shown_shape:  # the window takes each new frame size (the user may resize it)
                cv2.resizeWindow(title, picture.shape[1], picture.shape[0])
                shown_shape = picture.shape
            cv2.imshow(title, picture)
        key = cv2.waitKey(WAIT_KEY_MS)
        if window_closed(title) or (key != -1 and key & 0xFF in QUIT_KEYS):
            print(QUIT, flush=True)
            break
    cv2.destroyAllWindows()
    cv2.waitKey(1)


def open_window(title: str) -> None:
    """Open the window showing the waiting card, and let it settle on the screen before any frame."""
    card = no_signal_picture(*WAITING_SIZE, "waiting for the first frame", None)
    cv2.namedWindow(title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL)
    cv2.resizeWindow(title, *WAITING_SIZE)
    cv2.imshow(title, card)
    for _ in range(SETTLE_ROUNDS):
        cv2.waitKey(WAIT_KEY_MS)


def window_closed(title: str) -> bool:
    """True once the user closed the window."""
    try:
        return cv2.getWindowProperty(title, cv2.WND_PROP_VISIBLE) < 1
    except cv2.error:  # Qt: closing the last window took HighGUI's receiver with it
        return True


if __name__ == "__main__":
    run_window(sys.argv[1] if len(sys.argv) > 1 else "vidrestore")
    sys.stdout.flush()
    os._exit(0)  # the reader thread may still wait on stdin: do not wait for it
