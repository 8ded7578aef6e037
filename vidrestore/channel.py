"""The one hand-off between threads: a bounded channel with the two policies the product needs.

"block": `put` waits for room (backpressure: a slow consumer holds back its producer, memory stays
flat). "newest": `put` never waits; when full the oldest item is dropped and counted (live mode:
what waits is always recent). Either side gives up once the channel is closed or its `stop` event
is set, so no thread waits forever. Items put with `keep` are never dropped and do not count
towards the bound (a recording's audio packets).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Generic, Literal, TypeVar

T = TypeVar("T")
Policy = Literal["block", "newest"]
POLL_S = 0.1  # how often a waiting side looks at the stop event


class Closed:
    """What `Channel.get` returns once the channel is closed and empty, or stopped."""


CLOSED = Closed()


class Channel(Generic[T]):
    """A bounded, closable queue between one producer and one consumer thread."""

    def __init__(self, size: int, policy: Policy = "block", stop: threading.Event | None = None) -> None:
        self.size = max(1, size)
        self.policy = policy
        self.stop = stop or threading.Event()  # shared by a pipeline's channels: one stop ends them all
        self.dropped = 0  # items the "newest" policy dropped
        self.put_wait_seconds = 0.0  # time the producer spent waiting for room
        self.get_wait_seconds = 0.0  # time the consumer spent waiting for items
        self._items: deque[tuple[T, bool]] = deque()  # (item, kept)
        self._droppable = 0  # items not put with `keep`
        self._closed = False
        self._cond = threading.Condition()

    def put(self, item: T, keep: bool = False) -> bool:
        """Queue `item`. "block": waits for room, False when stopped or closed meanwhile. "newest": never
        waits, False when an older item was dropped to make room (or the channel is closed)."""
        with self._cond:
            room = keep or self._droppable < self.size
            if not room and self.policy == "block":
                room = self._wait(lambda: self._droppable < self.size, None, "put_wait_seconds")
                if not room:
                    return False
            if self._closed or self.stop.is_set():
                return False
            if not room:
                self._drop_oldest()
            self._items.append((item, keep))
            self._droppable += not keep
            self._cond.notify_all()
            return room

    def get(self, timeout: float | None = None) -> T | Closed | None:
        """The oldest item; None after `timeout` seconds without one; CLOSED once closed and empty, or at once
        when stopped (what is still queued is abandoned: a stopped run does no more work)."""
        with self._cond:
            if self.stop.is_set():
                return CLOSED
            if not self._wait(lambda: bool(self._items), timeout, "get_wait_seconds") and self.stop.is_set():
                return CLOSED
            if self._items:
                item, kept = self._items.popleft()
                self._droppable -= not kept
                self._cond.notify_all()
                return item
            return CLOSED if self._closed else None

    def close(self, discard: bool = False) -> None:
        """No more items: the consumer takes what is queued (nothing with `discard`), then CLOSED."""
        with self._cond:
            self._closed = True
            if discard:
                self._items.clear()
                self._droppable = 0
            self._cond.notify_all()

    @property
    def stopped(self) -> bool:
        """True once the stop event is set (the run ends early, not at the end of the stream)."""
        return self.stop.is_set()

    def __len__(self) -> int:
        """Items waiting."""
        with self._cond:
            return len(self._items)

    def _wait(self, ready: Any, timeout: float | None, counter: str) -> bool:
        """Wait (holding the lock) until `ready()`, the channel closes or stops, or `timeout` passes;
        the time waited is added to `counter`. True when ready."""
        if ready():
            return True
        started = time.perf_counter()
        deadline = None if timeout is None else started + timeout
        try:
            while not ready():
                if self._closed or self.stop.is_set():
                    return False
                left = POLL_S if deadline is None else min(POLL_S, deadline - time.perf_counter())
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True
        finally:
            setattr(self, counter, getattr(self, counter) + time.perf_counter() - started)

    def _drop_oldest(self) -> None:
        """Remove the oldest item that was not put with `keep` (the caller holds the lock)."""
        for position, (_, kept) in enumerate(self._items):
            if not kept:
                del self._items[position]
                self._droppable -= 1
                self.dropped += 1
                return
