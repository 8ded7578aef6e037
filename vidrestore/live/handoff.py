"""The hand-off between the live runner and a sink's own thread: bounded, never blocking, newest kept."""

from __future__ import annotations

import threading
from collections import deque
from typing import Any


class Closed:
    """What `NewestQueue.get` returns once the queue is closed and empty."""


CLOSED = Closed()


class NewestQueue:
    """A bounded queue whose `put` never waits: when full it drops the oldest item and counts it.

    Items put with `keep` (a recording's audio packets) are never dropped and do not count towards
    the bound; they keep their place in the order. The sink's caller (the live runner) puts, the
    sink's thread gets; `close` wakes the getter.
    """

    def __init__(self, size: int) -> None:
        self._items: deque[tuple[Any, bool]] = deque()  # (item, kept)
        self._droppable = 0  # items not put with `keep`
        self._size = max(1, size)
        self._cond = threading.Condition()
        self._closed = False
        self.dropped = 0

    def put(self, item: Any, keep: bool = False) -> bool:
        """Queue `item`; False when an older item had to be dropped to make room (or the queue is closed).

        With `keep` the item is queued whatever the bound, and never dropped later."""
        with self._cond:
            if self._closed:
                return False
            room = keep or self._droppable < self._size
            if not room:
                self._drop_oldest()
            self._items.append((item, keep))
            self._droppable += not keep
            self._cond.notify()
            return room

    def _drop_oldest(self) -> None:
        """Remove the oldest item that was not put with `keep` (the caller holds the lock)."""
        for position, (_, kept) in enumerate(self._items):
            if not kept:
                del self._items[position]
                self._droppable -= 1
                self.dropped += 1
                return

    def get(self, timeout: float | None = None) -> Any:
        """The oldest item; None after `timeout` seconds without one; CLOSED once closed and empty."""
        with self._cond:
            self._cond.wait_for(lambda: self._items or self._closed, timeout)
            if self._items:
                item, kept = self._items.popleft()
                self._droppable -= not kept
                return item
            return CLOSED if self._closed else None

    def close(self, discard: bool = False) -> None:
        """No more items: the getter takes what is queued (nothing with `discard`), then CLOSED."""
        with self._cond:
            self._closed = True
            if discard:
                self._items.clear()
                self._droppable = 0
            self._cond.notify_all()

    def __len__(self) -> int:
        """Items waiting."""
        with self._cond:
            return len(self._items)


class QueuedSink:
    """Base of the sinks that work in a thread of their own behind a NewestQueue: `write` never waits,
    and an error that stops the thread is raised by the caller's next `write` or `idle`."""

    name: str
    thread_name: str

    def _start_worker(self, queue_size: int) -> None:
        """Create the queue and start the thread (`_work` is its body)."""
        self._error: BaseException | None = None
        self._reported = False
        self._queue = NewestQueue(queue_size)
        self._thread = threading.Thread(target=self._work, name=self.thread_name, daemon=True)
        self._thread.start()

    @property
    def dropped(self) -> int:
        """Frames dropped because the sink's thread was behind."""
        return self._queue.dropped

    def _enqueue(self, item: Any) -> bool:
        """Hand an item to the thread (after raising its error, if it stopped); False when one was dropped."""
        self._raise_failure()
        return self._queue.put(item)

    def _stop_worker(self) -> None:
        """Let the thread finish what is queued and join it."""
        self._queue.close()
        self._thread.join()

    def _fail(self, exc: BaseException) -> None:
        """From the thread: stop taking items; the caller gets `exc` at its next call."""
        self._error = exc
        self._queue.close(discard=True)

    def _raise_failure(self) -> None:
        """Raise the thread's error as the sink's own (on every call, so that the run stops)."""
        if self._error is not None:
            self._reported = True
            raise self._describe(self._error)

    def _work(self) -> None:
        """The thread's body."""
        raise NotImplementedError

    def _describe(self, exc: BaseException) -> BaseException:
        """The error the caller sees for the thread's `exc`."""
        return exc
