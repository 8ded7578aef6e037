"""ServerState: what one running server holds (restorer, workers, job store, folders) and how it stops.

It is built once at startup, before the first request, and closed at shutdown: the workers stop,
running jobs are cancelled, and a temporary work folder is removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import anyio
import numpy as np

from vidrestore.pipeline.restorer_api import RestoredImage
from vidrestore.server.batcher import ImageBatcher
from vidrestore.server.errors import ApiError
from vidrestore.server.jobs import Janitor, Job, JobState, JobStore, VideoWorker, remove_generated
from vidrestore.server.metrics import ServerMetrics
from vidrestore.server.restorers import SharedRestorer, Variant
from vidrestore.server.settings import ServerSettings

log = logging.getLogger(__name__)

T = TypeVar("T")
DECODE_THREADS = 4  # images decoded or encoded at once (bounds memory with the pixel limit)
MAX_JANITOR_INTERVAL_S = 60.0


@dataclass
class ServerState:
    """The parts of a running server that requests share."""

    settings: ServerSettings
    restorers: SharedRestorer
    metrics: ServerMetrics
    work_dir: Path
    owns_work_dir: bool
    device_lock: threading.Lock = field(default_factory=threading.Lock)
    pending_images: int = 0

    def __post_init__(self) -> None:
        self.uploads = self.work_dir / "uploads"
        self.uploads.mkdir(parents=True, exist_ok=True)
        jobs_dir = self.work_dir / "jobs"
        for folder in (self.uploads, jobs_dir):
            removed = remove_generated(folder)  # left by an earlier run: their jobs are gone with it
            if removed:
                log.info("removed %d leftover file(s) in %s", removed, folder)
        wait_s = self.settings.batch_wait_ms / 1000.0
        self.batcher = ImageBatcher(self.restorers, self.device_lock, self.settings.max_batch, wait_s,
                                    on_batch=self.metrics.batch_size.observe)
        self.jobs = JobStore(jobs_dir, self.settings.max_queued_jobs, self.settings.retention_s)
        self.worker = VideoWorker(self.jobs, self.device_lock, on_finished=self._job_finished)
        interval = min(MAX_JANITOR_INTERVAL_S, self.settings.retention_s / 4)
        self.janitor = Janitor(self.jobs, self.uploads, interval)
        self.limiter = anyio.CapacityLimiter(DECODE_THREADS)
        self.metrics.watch("images", lambda: self.batcher.depth)
        self.metrics.watch("videos", lambda: self.jobs.waiting())
        self.metrics.watch_jobs([s.value for s in JobState], lambda s: self.jobs.counts()[JobState(s)])

    @classmethod
    def open(cls, settings: ServerSettings, restorers: SharedRestorer, metrics: ServerMetrics) -> "ServerState":
        """Make the work folder (a temporary one unless the settings name one) and start the threads."""
        owns = settings.work_dir is None
        work_dir = Path(tempfile.mkdtemp(prefix="vidrestore-serve-")) if owns else Path(settings.work_dir)
        work_dir.mkdir(parents=True, exist_ok=True)
        state = cls(settings, restorers, metrics, work_dir, owns)
        for part in (state.batcher, state.worker, state.janitor):
            part.start()
        log.info("work folder %s; model %s", work_dir, restorers.name)
        return state

    def close(self) -> None:
        """Stop the threads (running jobs are cancelled) and remove a temporary work folder."""
        for part in (self.janitor, self.worker, self.batcher):
            part.stop()
        if self.owns_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)
        else:  # the job registry ends with the process: its files are of no use to the next one
            remove_generated(self.uploads)
            remove_generated(self.jobs.root)

    def _job_finished(self, job: Job) -> None:
        if job.state is JobState.DONE and job.faces and job.options is not None and job.options.restores:
            self.metrics.faces.labels("video").inc(job.faces)

    @contextlib.contextmanager
    def image_slot(self) -> Iterator[None]:
        """Hold one of the image request slots; 429 when all are taken (event-loop only, no lock needed)."""
        if self.pending_images >= self.settings.max_pending_images:
            raise ApiError(429, "busy", f"{self.settings.max_pending_images} image requests are in progress; "
                           "retry later", {"Retry-After": "1"})
        self.pending_images += 1
        try:
            yield
        finally:
            self.pending_images -= 1

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run CPU work (decoding, encoding, probing) in a worker thread, a few at a time."""
        return await anyio.to_thread.run_sync(fn, *args, limiter=self.limiter)

    async def restore(self, variant: Variant, rgb: np.ndarray) -> RestoredImage:
        """Restore one picture through the batching worker; 504 when it takes longer than the request timeout."""
        future = self.batcher.submit(variant, rgb)
        timeout = self.settings.request_timeout_s
        try:
            with anyio.fail_after(timeout):
                return await asyncio.wrap_future(future)
        except TimeoutError:
            future.cancel()  # withdrawn if the worker has not taken it yet
            raise ApiError(504, "timeout",
                           f"the image was not restored within {timeout:g} s; the server is busy") from None
