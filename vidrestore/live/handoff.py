"""The base of the live sinks that work in a thread of their own: the live runner hands them frames
through a Channel that never blocks and keeps the newest (the oldest is dropped and counted)."""

from __future__ import annotations

import threading
from typing import Any

from vidrestore.channel import Channel


class QueuedSink:
    """Base of the sinks that work in a thread of their own behind a "newest" Channel: `write` never waits,
    and an error that stops the thread is raised by the caller's next `write` or `idle`."""

    name: str
    thread_name: str

    def _start_worker(self, queue_size: int) -> None:
        """Create the queue and start the thread (`_work` is its body)."""
        self._error: BaseException | None = None
        self._reported = False
        self._queue: Channel[Any] = Channel(queue_size, "newest")
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
