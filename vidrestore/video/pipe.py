"""A bounded, cancellable hand-off between a worker thread and its caller (backpressure, no hangs)."""

from __future__ import annotations

import queue
import threading
from typing import Any

POLL_S = 0.1


class _End:
    """Marks the end of the stream."""


class _Failure:
    """Carries an exception from the worker to the consumer."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


END = _End()


class Channel:
    """Bounded queue whose put and get give up once `stop` is set, so neither side waits forever."""

    def __init__(self, maxsize: int) -> None:
        self._q: queue.Queue[Any] = queue.Queue(maxsize=max(1, maxsize))
        self.stop = threading.Event()

    def put(self, item: Any) -> bool:
        """Block until there is room; False when the channel was stopped meanwhile."""
        while not self.stop.is_set():
            try:
                self._q.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def get(self, alive: threading.Thread | None = None) -> Any:
        """Block until an item arrives; END when stopped or when the producer thread died silently."""
        while True:
            try:
                return self._q.get(timeout=POLL_S)
            except queue.Empty:
                if self.stop.is_set() or (alive is not None and not alive.is_alive()):
                    try:
                        return self._q.get_nowait()
                    except queue.Empty:
                        return END

    def fail(self, exc: BaseException) -> None:
        """Hand an exception to the consumer (best effort if the channel is full and stopped)."""
        self.put(_Failure(exc))

    def drain(self) -> None:
        """Drop whatever is queued (frees frames when a side stops early)."""
        while True:
            try:
                self._q.get_nowait()
            except queue.Empty:
                return


def raise_if_failure(item: Any) -> None:
    """Re-raise an exception carried through a Channel."""
    if isinstance(item, _Failure):
        raise item.exc
