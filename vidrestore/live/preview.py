"""PreviewServer: the live frames as an MJPEG stream over HTTP, for any browser on the network.

Routes: `/` a page with the stream and the statistics, `/stream.mjpg` the stream
(multipart/x-mixed-replace), `/snapshot.jpg` the newest frame, `/stats` the statistics as JSON.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import cv2
import numpy as np

from vidrestore.errors import VidrestoreError, error_line
from vidrestore.live.overlay import draw_stats, no_signal_picture
from vidrestore.live.types import LiveOutput, LiveStats

log = logging.getLogger(__name__)

BOUNDARY = "vidrestoreframe"
CLIENT_TIMEOUT_S = 10.0  # a client that takes no data for this long is dropped
SNAPSHOT_WAIT_S = 2.0  # how long /snapshot.jpg waits for the newest frame to be encoded
WAITING_SIZE = (640, 360)  # the card shown before the first frame

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>vidrestore live</title>
<style>
body {{ margin: 0; background: #111; color: #ddd; font: 14px sans-serif; }}
#stream {{ display: block; max-width: 100%; margin: 0 auto; }}
#stats {{ padding: 8px 12px; white-space: pre; font-family: monospace; }}
</style></head>
<body>
<img id="stream" src="/stream.mjpg" alt="live stream">
<div id="stats">waiting for statistics...</div>
<script>
async function refreshStats() {{
  try {{
    const stats = await (await fetch("/stats", {{cache: "no-store"}})).json();
    document.getElementById("stats").textContent =
      Object.entries(stats).map(([key, value]) => key + ": " + value).join("\\n") || "no statistics";
  }} catch (err) {{
    document.getElementById("stats").textContent = "preview server unreachable";
  }}
}}
refreshStats();
setInterval(refreshStats, {refresh_ms});
</script>
</body></html>
"""


class PreviewServer:
    """A LiveSink serving the newest frame as MJPEG at `url` (port 0 picks a free port).

    `write` only stores the frame; one encoder thread makes at most one JPEG per new frame (and at most
    `fps` per second), only while someone watches, and every client gets that same newest JPEG: a slow
    client skips frames, nothing queues up per client. The statistics are drawn into the frames;
    `idle` shows the last frame darkened with the message.
    """

    name = "preview"

    def __init__(self, host: str = "127.0.0.1", port: int = 8090, stats: LiveStats | None = None,
                 fps: float = 15.0, quality: int = 80) -> None:
        if fps <= 0:
            raise VidrestoreError(f"preview fps must be positive, not {fps}")
        if not 1 <= quality <= 100:
            raise VidrestoreError(f"preview JPEG quality must be 1 to 100, not {quality}")
        self.stats = stats
        self.fps = fps
        self.quality = quality
        self._cond = threading.Condition()
        self._frame: np.ndarray | None = None  # the newest frame written
        self._message: str | None = None  # set while the source is down
        self._version = 0  # +1 at every write and idle
        self._jpeg = self._encode_jpeg(no_signal_picture(*WAITING_SIZE, "waiting for the first frame", None))
        self._jpeg_version = 0
        self._demand = 0  # clients waiting for fresh JPEGs (streams and snapshots)
        self._closing = False
        self._http = PreviewHTTPServer(host, port, self)
        self.host = host
        self.port: int = self._http.server_address[1]
        self._threads = [
            threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.2},
                             name="vidrestore-preview-http", daemon=True),
            threading.Thread(target=self._encode_loop, name="vidrestore-preview-encode", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        log.info("live preview at %s", self.url)

    @property
    def url(self) -> str:
        """The page's address (a wildcard host is shown as localhost)."""
        host = "localhost" if self.host in ("", "0.0.0.0", "::") else self.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}/"

    # --- LiveSink --------------------------------------------------------------------------------

    def write(self, output: LiveOutput) -> None:
        """Keep the frame as the newest (the encoder thread picks it up when someone watches)."""
        with self._cond:
            self._frame, self._message = output.image, None
            self._version += 1
            self._cond.notify_all()

    def idle(self, message: str) -> None:
        """Show the last frame darkened (or a gray card) with `message`."""
        with self._cond:
            self._message = message
            self._version += 1
            self._cond.notify_all()

    def close(self) -> None:
        """Stop serving, disconnect the clients and join every thread (idempotent)."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._cond.notify_all()
        self._http.shutdown()
        self._http.disconnect_clients()
        for thread in self._threads:
            thread.join()
        self._http.join_clients()
        self._http.server_close()

    # --- JPEGs shared by all clients -------------------------------------------------------------

    def _encode_loop(self) -> None:
        """Thread body: encode the newest picture when it changed and someone wants it, at most `fps` a second."""
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closing or (self._demand and self._version != self._jpeg_version))
                if self._closing:
                    return
                frame, message, version = self._frame, self._message, self._version
            jpeg = self._encode_jpeg(self._picture(frame, message))
            with self._cond:
                self._jpeg, self._jpeg_version = jpeg, version
                self._cond.notify_all()
                self._cond.wait_for(lambda: self._closing, timeout=1 / self.fps)

    def _picture(self, frame: np.ndarray | None, message: str | None) -> np.ndarray:
        """What the clients see: the frame or the 'no signal' picture, with the statistics drawn in."""
        if message is not None or frame is None:
            height, width = frame.shape[:2] if frame is not None else WAITING_SIZE[::-1]
            picture = no_signal_picture(width, height, message or "no signal", frame)
        else:
            picture = frame
        return draw_stats(picture, self.stats.snapshot()) if self.stats is not None else picture

    def _encode_jpeg(self, picture: np.ndarray) -> bytes:
        """RGB picture -> JPEG bytes."""
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR),
                                [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise VidrestoreError("the preview could not encode a JPEG")
        return data.tobytes()

    def next_jpeg(self, seen: int) -> tuple[bytes, int] | None:
        """For a stream client: wait for a JPEG newer than version `seen`; None once closing."""
        with self._cond:
            self._cond.wait_for(lambda: self._closing or self._jpeg_version != seen)
            return None if self._closing else (self._jpeg, self._jpeg_version)

    def newest_jpeg(self) -> bytes:
        """For a snapshot: the JPEG of the newest picture (waits briefly for it to be encoded)."""
        with self.watching(), self._cond:
            self._cond.wait_for(lambda: self._closing or self._jpeg_version == self._version,
                                timeout=SNAPSHOT_WAIT_S)
            return self._jpeg

    def watching(self) -> "_Watching":
        """A context in which the encoder keeps JPEGs fresh for one more client."""
        return _Watching(self)

    def _add_demand(self, count: int) -> None:
        """One more (or one fewer) client waiting for fresh JPEGs; wakes the encoder."""
        with self._cond:
            self._demand += count
            self._cond.notify_all()

    def stats_json(self) -> bytes:
        """The statistics snapshot as JSON ({} without statistics)."""
        return json.dumps(self.stats.snapshot() if self.stats is not None else {}).encode()

    def page(self) -> bytes:
        """The HTML page: the stream and the statistics, refreshed every second."""
        return PAGE.format(refresh_ms=1000).encode()


class _Watching:
    """Counts a client as wanting fresh JPEGs while the block runs."""

    def __init__(self, preview: PreviewServer) -> None:
        self.preview = preview

    def __enter__(self) -> None:
        self.preview._add_demand(1)

    def __exit__(self, *exc: object) -> None:
        self.preview._add_demand(-1)


class PreviewHTTPServer(ThreadingHTTPServer):
    """One daemon thread per client, each tracked so that `close` can disconnect and join them."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, host: str, port: int, preview: PreviewServer) -> None:
        self.preview = preview
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._clients: dict[threading.Thread, socket.socket] = {}
        self._clients_lock = threading.Lock()
        try:
            super().__init__((host, port), PreviewHandler)
        except OSError as exc:
            raise VidrestoreError(f"cannot serve the preview on {host}:{port}: {error_line(exc, os_reason=True)}") from None

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve the client in its own thread, remembered until it ends."""
        thread = threading.Thread(target=self._serve_client, args=(request, client_address),
                                  name="vidrestore-preview-client", daemon=True)
        with self._clients_lock:
            self._clients[thread] = request
        thread.start()

    def _serve_client(self, request: Any, client_address: Any) -> None:
        """Thread body: handle one connection, then forget it."""
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._clients_lock:
                self._clients.pop(threading.current_thread(), None)

    def disconnect_clients(self) -> None:
        """Shut the clients' sockets, so that a thread blocked on a slow client returns at once."""
        with self._clients_lock:
            sockets = list(self._clients.values())
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already gone

    def join_clients(self) -> None:
        """Wait for every client thread to end."""
        with self._clients_lock:
            threads = list(self._clients)
        for thread in threads:
            thread.join()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client's failure is logged quietly; it never stops the server."""
        log.debug("preview client %s failed", client_address, exc_info=True)


class PreviewHandler(BaseHTTPRequestHandler):
    """The four routes of the preview."""

    server: PreviewHTTPServer
    timeout = CLIENT_TIMEOUT_S
    server_version = "vidrestore-preview"

    def do_GET(self) -> None:
        """Route a GET; a client that goes away mid-response is only logged (debug)."""
        preview = self.server.preview
        path = self.path.split("?", 1)[0]
        try:
            if path == "/stream.mjpg":
                self._stream(preview)
            elif path == "/snapshot.jpg":
                self._send(200, "image/jpeg", preview.newest_jpeg())
            elif path == "/stats":
                self._send(200, "application/json", preview.stats_json())
            elif path in ("/", "/index.html"):
                self._send(200, "text/html; charset=utf-8", preview.page())
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found\n")
        except OSError as exc:  # the client went away (broken pipe, reset, timeout)
            log.debug("preview client %s left: %s", self.client_address, exc)

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        """A complete, uncached response."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, preview: PreviewServer) -> None:
        """multipart/x-mixed-replace: every new JPEG as one part, until the client or the server leaves.

        The boundary goes out right after each JPEG, so browsers show a frame as soon as it is complete.
        """
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(f"--{BOUNDARY}\r\n".encode())
        seen = -1
        with preview.watching():
            while (item := preview.next_jpeg(seen)) is not None:
                jpeg, seen = item
                self.wfile.write(f"Content-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode())
                self.wfile.write(jpeg)
                self.wfile.write(f"\r\n--{BOUNDARY}\r\n".encode())
                self.wfile.flush()

    def log_message(self, format: str, *args: Any) -> None:
        """Requests go to the debug log, not stderr."""
        log.debug("preview %s: " + format, self.client_address[0], *args)
