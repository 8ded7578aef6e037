"""Running the API under uvicorn: in the foreground (`vidrestore serve`) or in a thread (tests, benchmarks).

The listening socket is bound before uvicorn starts, so port 0 (any free port) works and the port
is known at once; the model is loaded before the socket is bound, so a missing checkpoint is a
one-line error, not a failed server.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from types import TracebackType

import uvicorn
from fastapi import FastAPI

from vidrestore.errors import VidrestoreError, error_line
from vidrestore.pipeline.options import RestoreOptions
from vidrestore.pipeline.restorer_api import Restorer
from vidrestore.server.app import create_app
from vidrestore.server.settings import ServerSettings

log = logging.getLogger(__name__)

KEEP_ALIVE_S = 5
START_TIMEOUT_S = 120.0


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (IPv4 or IPv6); VidrestoreError when the address is not usable."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except (OSError, IndexError) as exc:
        raise VidrestoreError(f"cannot listen on {host}:{port}: {exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise VidrestoreError(f"cannot listen on {host}:{port}: {error_line(exc, os_reason=True)}") from None
    return sock


def uvicorn_server(app: FastAPI, settings: ServerSettings, access_log: bool = True) -> uvicorn.Server:
    """A uvicorn server for the app that keeps our logging setup and the connection limit."""
    config = uvicorn.Config(app, log_config=None, access_log=access_log, lifespan="on", server_header=False,
                            limit_concurrency=settings.max_connections, timeout_keep_alive=KEEP_ALIVE_S)
    return uvicorn.Server(config)


def url_of(sock: socket.socket) -> str:
    """The base URL of a listening socket."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(settings: ServerSettings, options: RestoreOptions) -> None:
    """Load the model, listen, and serve until interrupted (Ctrl-C or SIGTERM)."""
    settings.check_exposure()
    restorer = Restorer(options)
    sock = bind_socket(settings.host, settings.port)
    server = uvicorn_server(create_app(settings, options, restorer), settings)
    log.info("serving on %s (OpenAPI at /openapi.json, docs at /docs)%s", url_of(sock),
             "" if settings.token else "; no token, loopback only")
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    if not server.started:
        raise VidrestoreError("the server did not start (see the log above)")


class ServerThread:
    """The app served by uvicorn in a background thread on 127.0.0.1 (a random free port by default).

        with ServerThread(create_app(settings, options)) as server:
            httpx.get(server.url + "/healthz")
    """

    def __init__(self, app: FastAPI, settings: ServerSettings | None = None) -> None:
        self.settings = settings or ServerSettings(port=0)
        self.settings.check_exposure()
        self.app = app
        self.url = ""
        self._sock: socket.socket | None = None
        self._server = uvicorn_server(app, self.settings, access_log=False)
        self._thread = threading.Thread(target=self._run, name="vidrestore-server-uvicorn", daemon=True)

    def __enter__(self) -> "ServerThread":
        self._sock = bind_socket(self.settings.host, self.settings.port)
        self.url = url_of(self._sock)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise VidrestoreError("the server thread did not start (see the log)")
            time.sleep(0.02)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=60)
        if self._sock is not None:
            self._sock.close()

    def _run(self) -> None:
        assert self._sock is not None
        self._server.run(sockets=[self._sock])
