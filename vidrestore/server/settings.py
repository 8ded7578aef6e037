"""ServerSettings: where the HTTP API listens and every limit it enforces, in one typed record."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, fields
from pathlib import Path

from vidrestore.errors import VidrestoreError

MIB = 1024 * 1024
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


@dataclass(frozen=True)
class ServerSettings:
    """Listening address, optional bearer token, work folder and the limits that hold under abuse."""

    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None  # bearer token for /v1 and /metrics; without one only loopback hosts are allowed
    work_dir: Path | None = None  # uploads and job files; None: a temporary folder removed at shutdown
    max_image_bytes: int = 32 * MIB  # request body of an image restore
    max_video_bytes: int = 1024 * MIB  # request body of a video upload
    max_pixels: int = 4096 * 4096  # width x height of an image or a video frame (decompression bombs)
    max_video_seconds: float = 600.0  # duration of an uploaded video
    upload_timeout_s: float = 300.0  # time to receive a whole request body (slow senders get 408)
    request_timeout_s: float = 60.0  # time an image restore may wait for and run on the model (then 504)
    max_queued_jobs: int = 8  # video jobs waiting (and uploads in progress) before 429
    max_pending_images: int = 32  # image requests in progress before 429
    max_batch: int = 8  # images from concurrent requests restored in one model call (1: no batching)
    batch_wait_ms: float = 2.0  # how long the image worker waits for more requests to fill a batch
    retention_s: float = 3600.0  # finished jobs and their files are removed this long after they end
    max_connections: int = 64  # open connections before uvicorn answers 503
    cors_origins: tuple[str, ...] = ()  # web origins whose pages may call the API from a browser

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "port" and isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 0:
                raise VidrestoreError(f"{f.name.replace('_', '-')} must be positive, not {value}")
        if not 0 <= self.port <= 65535:
            raise VidrestoreError(f"port must be between 0 and 65535, not {self.port}")
        if self.token is not None and not self.token.strip():
            raise VidrestoreError("the token must not be empty")

    def check_exposure(self) -> None:
        """VidrestoreError when the server would listen beyond this machine without a token."""
        if self.token is None and not is_loopback(self.host):
            raise VidrestoreError(
                f"refusing to listen on {self.host} without a token: set --token or VIDRESTORE_TOKEN, "
                "or listen on 127.0.0.1"
            )


def is_loopback(host: str) -> bool:
    """True for names and addresses that only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
