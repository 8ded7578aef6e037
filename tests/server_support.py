"""Helpers of the HTTP API tests: a real uvicorn server on 127.0.0.1 in a thread, a real HTTP client."""

from __future__ import annotations

import contextlib
import io
import time
from typing import Callable, Iterator

import httpx
import numpy as np
from PIL import Image

from vidrestore.pipeline.restorer_api import Restorer
from vidrestore.server.app import create_app
from vidrestore.server.runner import ServerThread
from vidrestore.server.settings import ServerSettings
from vidrestore.server.state import ServerState

FACE = "gfpgan_Adele_crop.png"  # an aligned 512x512 face


@contextlib.contextmanager
def live_server(restorer: Restorer, **limits: object) -> Iterator[tuple[ServerThread, httpx.Client]]:
    """The API with these limits served on a free port of 127.0.0.1, and a client for it."""
    settings = ServerSettings(port=0, **limits)  # type: ignore[arg-type]
    with ServerThread(create_app(settings, restorer=restorer), settings) as server:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            yield server, client


def state_of(server: ServerThread) -> ServerState:
    """The running server's state (its device lock, job store and folders)."""
    return server.app.state.server


def decode(data: bytes) -> np.ndarray:
    """Image bytes as an RGB array."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def wait_for(condition: Callable[[], bool], what: str, limit_s: float = 120.0) -> None:
    """Poll until the condition holds (a safety limit against hangs, not a timing check)."""
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    """The response is the JSON error shape with this status and code."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code and body["error"]["message"]
