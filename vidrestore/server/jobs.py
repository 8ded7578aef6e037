"""Video jobs: a bounded registry of jobs in generated folders, one worker thread, and a cleanup thread.

A job's files live in `<work>/jobs/<id>/` (input and result under fixed names; the id is a random
uuid, nothing the client chose). Uploads reserve a queue slot before their body is read, so the
bound on queued jobs also bounds concurrent uploads (429 when full). The worker runs one job at a time
under the device lock; DELETE cancels a running job through restore_video's cancel event, and the
worker removes its folder when the job has stopped. Finished jobs are removed after the retention time.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
import os
import queue
import re
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from vidrestore.errors import JobCancelled, VidrestoreError
from vidrestore.pipeline.job import JobReport, restore_video
from vidrestore.pipeline.restorer_api import Restorer
from vidrestore.pipeline.options import RestoreOptions
from vidrestore.server.errors import ApiError

log = logging.getLogger(__name__)

GENERATED_NAME = re.compile(r"^[0-9a-f]{32}(\.[a-z0-9]+)?$")


class JobState(str, enum.Enum):
    """Where a job is in its life."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_STATES = (JobState.DONE, JobState.FAILED, JobState.CANCELLED)


def new_name() -> str:
    """A fresh random name for a job or an upload (32 hex digits)."""
    return uuid.uuid4().hex


def iso_time(seconds: float | None) -> str | None:
    """A Unix time as an ISO 8601 UTC string."""
    if seconds is None:
        return None
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).isoformat(timespec="seconds")


def remove_tree(path: Path) -> None:
    """Remove a folder and what it holds; a folder already gone is fine."""
    shutil.rmtree(path, ignore_errors=True)


@dataclass
class Job:
    """One video job: its folder and files, options, state, progress and outcome."""

    id: str
    folder: Path
    input: Path
    output: Path
    options: RestoreOptions | None = None
    restorer: Restorer | None = None  # the server's loaded model and detector, shared by all jobs
    state: JobState = JobState.QUEUED
    created: float = field(default_factory=time.time)
    finished: float | None = None
    frames_done: int = 0
    frames_total: int | None = None
    frames: int | None = None
    faces: int | None = None
    error: str | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    removed: bool = False

    def on_progress(self, done: int, total: int | None) -> None:
        """restore_video's progress callback."""
        self.frames_done, self.frames_total = done, total

    def to_json(self) -> dict[str, object]:
        """The job as the API shows it."""
        total = self.frames if self.state is JobState.DONE else self.frames_total
        fraction = 1.0 if self.state is JobState.DONE else (
            min(1.0, self.frames_done / total) if total else None)
        return {
            "id": self.id,
            "state": self.state.value,
            "progress": {"frames_done": self.frames_done, "frames_total": total, "fraction": fraction},
            "created_at": iso_time(self.created),
            "finished_at": iso_time(self.finished),
            "frames": self.frames,
            "faces": self.faces,
            "error": {"code": "job_failed", "message": self.error} if self.error else None,
            "result": f"/v1/jobs/{self.id}/result" if self.state is JobState.DONE else None,
        }


class JobStore:
    """The registry of jobs: reservation of queue slots, lookup, deletion, retention."""

    def __init__(self, root: Path, max_queued: int, retention_s: float) -> None:
        self.root = root
        self.max_queued = max_queued
        self.retention_s = retention_s
        self._jobs: dict[str, Job] = {}
        self._reserved = 0
        self._lock = threading.Lock()
        root.mkdir(parents=True, exist_ok=True)

    def counts(self) -> dict[JobState, int]:
        """How many jobs are in each state."""
        with self._lock:
            counts = {state: 0 for state in JobState}
            for job in self._jobs.values():
                counts[job.state] += 1
            return counts

    def waiting(self) -> int:
        """Jobs queued plus uploads holding a slot."""
        with self._lock:
            return self._waiting()

    def _waiting(self) -> int:
        return self._reserved + sum(job.state is JobState.QUEUED for job in self._jobs.values())

    def reserve(self) -> Job:
        """A new job folder and a queue slot for an upload; 429 when the queue is full."""
        with self._lock:
            if self._waiting() >= self.max_queued:
                raise ApiError(429, "queue_full", f"{self.max_queued} video jobs are already waiting; retry later",
                               {"Retry-After": "30"})
            self._reserved += 1
        job_id = new_name()
        folder = self.root / job_id
        folder.mkdir()
        return Job(job_id, folder, folder / "input", folder / "result.mp4")

    def release(self, job: Job) -> None:
        """Give back the slot of an upload that did not become a job, and remove its folder."""
        with self._lock:
            self._reserved -= 1
        remove_tree(job.folder)

    def submit(self, job: Job) -> None:
        """Turn a reservation into a queued job."""
        with self._lock:
            self._reserved -= 1
            self._jobs[job.id] = job

    def get(self, job_id: str) -> Job:
        """The job with this id; 404 when there is none (never existed, deleted or expired)."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise ApiError(404, "unknown_job", f"no job {job_id!r} (unknown, deleted or expired)")
        return job

    def delete(self, job_id: str) -> Job:
        """Forget a job, cancel it if it runs, and remove its files (the worker does it for a running job)."""
        with self._lock:
            job = self._jobs.pop(job_id, None)
            if job is None:
                raise ApiError(404, "unknown_job", f"no job {job_id!r} (unknown, deleted or expired)")
            job.removed = True
            job.cancel.set()
            running = job.state is JobState.RUNNING
        if not running:
            remove_tree(job.folder)
        log.info("job %s deleted (%s)", job.id, job.state.value)
        return job

    def begin(self, job: Job) -> bool:
        """Mark a job running; False when it was cancelled or deleted while it waited."""
        with self._lock:
            if job.removed or job.cancel.is_set():
                return False
            job.state = JobState.RUNNING
            return True

    def finish(self, job: Job, state: JobState, error: str | None = None, report: JobReport | None = None) -> None:
        """Record how a job ended; keep only the result of a finished job, nothing of the others."""
        with self._lock:
            job.state, job.error, job.finished = state, error, time.time()
            if report is not None:
                job.frames, job.faces = report.frames, report.faces
            removed = job.removed
        if removed or state is not JobState.DONE:
            remove_tree(job.folder)
        else:
            job.input.unlink(missing_ok=True)

    def expire(self, now: float | None = None) -> list[str]:
        """Delete the jobs that ended more than the retention time ago; their ids."""
        cutoff = (time.time() if now is None else now) - self.retention_s
        with self._lock:
            old = [job.id for job in self._jobs.values() if job.finished is not None and job.finished < cutoff]
        for job_id in old:
            try:
                self.delete(job_id)
            except ApiError:
                pass  # deleted meanwhile
        return old

    def cancel_all(self) -> None:
        """Ask every job to stop (shutdown)."""
        with self._lock:
            for job in self._jobs.values():
                job.cancel.set()


def client_message(exc: Exception, job: Job) -> str:
    """An error's message with the server's folders taken out (the client sees its file names only)."""
    return str(exc).replace(str(job.folder) + os.sep, "").replace(str(job.folder), "the job folder")


class VideoWorker:
    """The one thread that runs video jobs, in order, each under the device lock."""

    def __init__(self, store: JobStore, device_lock: threading.Lock,
                 on_finished: Callable[[Job], None] | None = None) -> None:
        self.store = store
        self.device_lock = device_lock
        self.on_finished = on_finished
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="vidrestore-server-videos", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Cancel the jobs, let the running one stop, end the thread."""
        self.store.cancel_all()
        self._queue.put(None)
        self._thread.join()

    def enqueue(self, job: Job) -> None:
        """Queue a submitted job for the worker."""
        self._queue.put(job)

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            self._run_job(job)

    def _run_job(self, job: Job) -> None:
        with self.device_lock:
            if not self.store.begin(job):
                self.store.finish(job, JobState.CANCELLED)
                return
            log.info("job %s running", job.id)
            try:
                report = restore_video(job.input, job.output, job.options, progress=False,
                                       on_progress=job.on_progress, cancel=job.cancel, restorer=job.restorer)
            except JobCancelled:
                self.store.finish(job, JobState.CANCELLED)
            except VidrestoreError as exc:
                self.store.finish(job, JobState.FAILED, client_message(exc, job))
            except Exception:  # noqa: BLE001 - a failed job is reported, the worker lives on
                log.exception("job %s failed", job.id)
                self.store.finish(job, JobState.FAILED, "internal error while restoring (logged on the server)")
            else:
                self.store.finish(job, JobState.DONE, report=report)
        log.info("job %s %s", job.id, job.state.value)
        if self.on_finished is not None:
            self.on_finished(job)


class Janitor:
    """A thread that removes expired jobs and stale uploads every `interval_s` seconds."""

    def __init__(self, store: JobStore, uploads: Path, interval_s: float) -> None:
        self.store = store
        self.uploads = uploads
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vidrestore-server-janitor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            expired = self.store.expire()
            stale = remove_generated(self.uploads, time.time() - self.store.retention_s)
            if expired or stale:
                log.info("removed %d expired job(s) and %d stale upload(s)", len(expired), stale)


def remove_generated(folder: Path, older_than: float | None = None) -> int:
    """Remove the entries of a folder that have generated names (and are older than a time); the count."""
    removed = 0
    for entry in folder.iterdir() if folder.is_dir() else ():
        if not GENERATED_NAME.match(entry.name):
            continue
        try:
            if older_than is not None and entry.stat().st_mtime >= older_than:
                continue
        except FileNotFoundError:
            continue
        if entry.is_dir():
            remove_tree(entry)
        else:
            entry.unlink(missing_ok=True)
        removed += 1
    return removed
