"""Live-feed helpers of the live-mode tests: stamped test clips, a real RTSP server and its publisher.

    clip = make_stamped_clip(path, face_image, frames=150, fps=25)
    with RtspFeed(clip) as feed:          # rtsp-server-perl on free ports + ffmpeg publishing the clip
        feed.url                          # rtsp://127.0.0.1:<port>/live (RTP over UDP only)
        feed.restart()                    # stop and start server and publisher: a feed that drops
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import imageio_ffmpeg
import numpy as np

from vidrestore.bench.stamp import stamp_number

RTSP_SERVER = shutil.which("rtsp-server-perl")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_stamped_clip(path: Path, face: np.ndarray, frames: int, fps: int = 25, size: tuple[int, int] = (320, 240),
                      gop: int | None = None) -> Path:
    """An H.264 clip of a moving face with each frame's number stamped into its bottom-left corner."""
    width, height = size
    face = cv2.resize(face, (height // 2 * 2, height // 2 * 2), interpolation=cv2.INTER_AREA)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "crf": "20",
                                                              "g": str(gop or fps), "bf": "0"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for n in range(frames):
            image = np.full((height, width, 3), 60, np.uint8)
            x = int((width - face.shape[1]) / 2 + 20 * np.sin(n / 10))
            image[: face.shape[0], x: x + face.shape[1]] = face
            vf = av.VideoFrame.from_ndarray(stamp_number(image, n), format="rgb24")
            vf.pts, vf.time_base = n, Fraction(1, fps)
            out.mux(stream.encode(vf))
        out.mux(stream.encode(None))
    return path


class RtspFeed:
    """rtsp-server-perl on 127.0.0.1 fed by the ffmpeg binary playing a file in a loop at its own rate."""

    def __init__(self, clip: Path, name: str = "live") -> None:
        if RTSP_SERVER is None:
            raise RuntimeError("rtsp-server-perl is not installed (Debian package rtsp-server-perl)")
        self.clip = clip
        self.client_port, self.source_port = free_port(), free_port()
        self.name = name
        self.server: subprocess.Popen | None = None
        self.publisher: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.client_port}/{self.name}"

    def __enter__(self) -> "RtspFeed":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start the server, wait until it listens, then start publishing."""
        self.server = subprocess.Popen(
            [RTSP_SERVER, "--clientport", str(self.client_port), "--serverport", str(self.source_port),
             "--client_listen_address", "127.0.0.1", "--source_listen_address", "127.0.0.1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_listening(self.source_port)
        self.publisher = subprocess.Popen(
            [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(self.clip),
             "-an", "-c", "copy", "-f", "rtsp", "-rtsp_transport", "udp",
             f"rtsp://127.0.0.1:{self.source_port}/{self.name}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        """Stop publisher and server (what a dropped feed looks like to a viewer)."""
        for proc in (self.publisher, self.server):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.publisher = self.server = None

    def restart(self, pause: float = 1.0) -> None:
        """Drop the feed for `pause` seconds, then bring it back on the same ports."""
        self.stop()
        time.sleep(pause)
        self.start()


def _wait_listening(port: int, timeout: float = 10.0) -> None:
    """Wait until something accepts TCP connections on the port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")
