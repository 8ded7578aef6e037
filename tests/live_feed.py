"""Live-feed helpers of the live-mode tests: stamped test clips, a real RTSP server and its publisher.

    clip = make_stamped_clip(path, face_image, frames=150, fps=25)
    with RtspFeed(clip) as feed:          # live_support.RtspServer on free ports + ffmpeg publishing the clip
        feed.url                          # rtsp://127.0.0.1:<port>/live (RTP over UDP only)
        feed.restart()                    # stop and start server and publisher: a feed that drops
"""

from __future__ import annotations

import shutil
import subprocess
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import imageio_ffmpeg
import numpy as np

from live_support import RTSP_SERVER as RTSP_SERVER_NAME
from live_support import RtspServer
from vidrestore.bench.stamp import stamp_number

RTSP_SERVER = shutil.which(RTSP_SERVER_NAME)  # None when the package is missing (the RTSP tests skip)

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
    """A real RTSP server (live_support.RtspServer) fed by the ffmpeg binary playing a file in a loop at its own rate."""

    def __init__(self, clip: Path, name: str = "live") -> None:
        self.clip = clip
        self.name = name
        self.server = RtspServer()
        self.publisher: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return self.server.read_url(self.name)

    def __enter__(self) -> "RtspFeed":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start the server, then publish the clip to it."""
        self.server.start()
        self.publisher = subprocess.Popen(
            [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(self.clip),
             "-an", "-c", "copy", "-f", "rtsp", "-rtsp_transport", "udp", self.server.publish_url(self.name)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        """Stop publisher and server (what a dropped feed looks like to a viewer)."""
        if self.publisher is not None and self.publisher.poll() is None:
            self.publisher.terminate()
            try:
                self.publisher.wait(5)
            except subprocess.TimeoutExpired:
                self.publisher.kill()
                self.publisher.wait()
        self.publisher = None
        self.server.stop()

    def restart(self, pause: float = 1.0) -> None:
        """Drop the feed for `pause` seconds, then bring it back on the same ports."""
        self.stop()
        time.sleep(pause)
        self.start()
