"""Cross-request batching: one worker thread restores the images of concurrent requests together.

Requests put their decoded picture on a queue and wait on a future. The worker takes the first one,
gathers whatever else is queued (waiting a few milliseconds for more, up to the batch limit), and
restores each group of images with the same options in one `Restorer.restore_frames` call: one
batched detector pass per image size and one batched model call for all their faces. The device lock
keeps image batches and video jobs from running the model at the same time.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from vidrestore.pipeline.restorer_api import RestoredImage
from vidrestore.server.restorers import SharedRestorer, Variant

log = logging.getLogger(__name__)


@dataclass
class _Item:
    """One request's picture and the future its handler waits on."""

    variant: Variant
    rgb: np.ndarray
    future: Future[RestoredImage] = field(default_factory=Future)


class ImageBatcher:
    """The image worker: gathers concurrent requests into batches and runs them under the device lock."""

    def __init__(self, restorers: SharedRestorer, device_lock: threading.Lock, max_batch: int, wait_s: float,
                 on_batch: Callable[[int], None] | None = None) -> None:
        self.restorers = restorers
        self.device_lock = device_lock
        self.max_batch = max_batch
        self.wait_s = wait_s
        self.on_batch = on_batch
        self._queue: queue.Queue[_Item | None] = queue.Queue()
        self._unfinished = 0
        self._count_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="vidrestore-server-images", daemon=True)

    @property
    def depth(self) -> int:
        """Images waiting for the model."""
        return self._queue.qsize()

    @property
    def pending(self) -> int:
        """Images submitted and not yet answered (queued or in the batch being restored)."""
        return self._unfinished

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Finish the batch in progress, fail what is still queued, end the thread."""
        self._queue.put(None)
        self._thread.join()

    def submit(self, variant: Variant, rgb: np.ndarray) -> Future[RestoredImage]:
        """Queue a picture; the future resolves to its restored image and faces (cancel it to withdraw)."""
        item = _Item(variant, rgb)
        with self._count_lock:
            self._unfinished += 1
        item.future.add_done_callback(self._answered)
        self._queue.put(item)
        return item.future

    def _answered(self, _: Future[RestoredImage]) -> None:
        with self._count_lock:
            self._unfinished -= 1

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                break
            batch, stop = self._gather(first)
            self._process(batch)
            if stop:
                break
        self._drain()

    def _gather(self, first: _Item) -> tuple[list[_Item], bool]:
        """The first item and what else arrives within the wait, up to the batch limit; True at a stop."""
        batch = [first]
        deadline = time.monotonic() + self.wait_s
        while len(batch) < self.max_batch:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _process(self, batch: list[_Item]) -> None:
        """Restore the still-wanted items, one model call per variant."""
        groups: dict[Variant, list[_Item]] = {}
        for item in batch:
            if item.future.set_running_or_notify_cancel():
                groups.setdefault(item.variant, []).append(item)
        for variant, items in groups.items():
            try:
                with self.device_lock:
                    results = self.restorers.restorer(variant).restore_frames([item.rgb for item in items])
            except Exception as exc:  # noqa: BLE001 - the requests get the error; the worker lives on
                log.exception("restoring a batch of %d image(s) failed", len(items))
                for item in items:
                    item.future.set_exception(exc)
                continue
            if self.on_batch is not None:
                self.on_batch(len(items))
            for item, result in zip(items, results):
                item.future.set_result(result)

    def _drain(self) -> None:
        """Cancel what is left at shutdown."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                item.future.cancel()
