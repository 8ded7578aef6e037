"""Chunk workers: the interface every backend implements, and the local one (worker processes).

THE INTERFACE (a Ray backend implements the same function in vidrestore/archive/ray_backend.py):

    run_chunks(plan, tasks, settings, on_done, on_frames=None) -> list[ChunkResult]

- `plan` (ArchivePlan): the whole job's plan (input path, frame count, chunks).
- `tasks` (Sequence[ChunkTask]): the chunks still to do, already sorted longest first; a backend hands
  them out in that order, each worker taking the next one when it finishes its last.
- `settings` (WorkerSettings): the RestoreOptions, one device per worker (`devices`, None = the options'
  own), the number of tries per chunk (3) and, for Ray, the cluster address.
- A worker is a `ChunkWorker(options, device)` (vidrestore.archive.chunk): it loads the model once in
  its constructor; `worker.restore(task, on_frame=None) -> ChunkResult` restores one chunk into
  `task.path` (temporary name, renamed when complete, frame count checked: ChunkShort otherwise).
  A Ray actor is just `ray.remote(num_gpus=...)(ChunkWorker)`.
- `on_done(result)` is called in the caller's process for each finished chunk, as it finishes (the job
  writes the done-record and moves the progress bar there); `on_frames(n)` may be called with frames
  restored so far inside running chunks (optional: a backend may report nothing until a chunk is done).
- A chunk whose worker raises, dies or comes out short is retried (on any worker) until it has had
  `settings.tries` tries; `ChunkResult.tries` says how many it took. After the last failed try the
  backend stops the other workers and raises `ChunkFailed(index, tries, reason)`.
- Returns the results of all tasks (any order). The caller's process never loads the model.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Callable, Protocol, Sequence

from vidrestore.archive.plan import ArchivePlan, ChunkTask
from vidrestore.errors import VidrestoreError, error_line
from vidrestore.pipeline.options import RestoreOptions

log = logging.getLogger(__name__)

DEFAULT_TRIES = 3


@dataclass(frozen=True)
class ChunkResult:
    """What restoring one chunk did: frames written, faces restored, seconds, which worker, how many tries."""

    index: int
    frames: int
    faces: int
    seconds: float
    worker: str
    tries: int = 1


@dataclass(frozen=True)
class WorkerSettings:
    """How the chunks are run: options, one device per worker, tries per chunk, Ray's address."""

    options: RestoreOptions
    devices: tuple[str | None, ...] = (None,)
    tries: int = DEFAULT_TRIES
    ray_address: str | None = None

    @property
    def workers(self) -> int:
        """Number of workers (processes or actors)."""
        return len(self.devices)


class ChunkFailed(VidrestoreError):
    """A chunk failed on its last try: the job stops and names it."""

    def __init__(self, index: int, tries: int, reason: str) -> None:
        super().__init__(f"chunk {index} failed after {tries} tries: {reason}")
        self.index, self.tries, self.reason = index, tries, reason


DoneFn = Callable[[ChunkResult], None]
FramesFn = Callable[[int], None]


class ChunkBackend(Protocol):
    """The signature of `run_chunks`, for the local processes and the Ray backend alike."""

    def __call__(self, plan: ArchivePlan, tasks: Sequence[ChunkTask], settings: WorkerSettings,
                 on_done: DoneFn, on_frames: FramesFn | None = None) -> list[ChunkResult]: ...


# --- the local backend: worker processes on this machine -----------------------------------------


def worker_threads() -> int:
    """CPU threads each local worker uses: as many as one process would (torch's default here), whatever
    the number of workers, because torch's CPU kernels split their sums by thread count and another
    count gives other pixels: N workers must give the frames of one."""
    import torch

    return torch.get_num_threads()


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent: int) -> None:
    """Have the kernel kill this process when its parent dies (Linux), so a `kill -9` of the command leaves
    no worker restoring on, holding its chunk's temporary file; exit now if the parent is already gone."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


def worker_main(conn: Connection, options: RestoreOptions, device: str | None, threads: int, parent: int) -> None:
    """A worker process: load the model once, then restore each task the parent sends until told to stop."""
    die_with_parent(parent)
    import torch

    from vidrestore.archive.chunk import ChunkWorker

    torch.set_num_threads(threads)
    try:
        worker = ChunkWorker(options, device)
    except Exception as exc:  # noqa: BLE001 - reported to the parent as one line
        conn.send(("failed", error_line(exc)))
        return
    conn.send(("ready", worker.name))
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return  # the parent is gone
        if message is None:
            return
        task, tries = message
        try:
            result = worker.restore(task, on_frame=lambda: conn.send(("frame",)), tries=tries)
        except (BrokenPipeError, EOFError):
            return
        except Exception as exc:  # noqa: BLE001 - the parent retries the chunk
            conn.send(("error", task.index, error_line(exc)))
            continue
        conn.send(("done", result))


@dataclass(eq=False)
class LocalWorker:
    """A worker process, its end of the pipe and the task it holds."""

    process: BaseProcess
    conn: Connection
    device: str | None
    ready: bool = False
    task: ChunkTask | None = None


class LocalPool:
    """Worker processes (spawned: CUDA and threads do not survive fork), started and stopped together."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.context = multiprocessing.get_context("spawn")
        self.workers: list[LocalWorker] = []
        for device in settings.devices:
            self.start(device)

    def start(self, device: str | None) -> LocalWorker:
        """Start one worker process for `device`."""
        parent, child = self.context.Pipe()
        process = self.context.Process(target=worker_main, name="vidrestore-archive-worker", daemon=True,
                                       args=(child, self.settings.options, device, worker_threads(), os.getpid()))
        process.start()
        child.close()
        worker = LocalWorker(process, parent, device)
        self.workers.append(worker)
        return worker

    def replace(self, worker: LocalWorker) -> None:
        """A dead worker out, a new one for its device in."""
        self.workers.remove(worker)
        worker.conn.close()
        worker.process.join()
        self.start(worker.device)

    def stop(self) -> None:
        """Tell every worker to stop; kill those that do not."""
        for worker in self.workers:
            try:
                worker.conn.send(None)
            except OSError:
                pass
        for worker in self.workers:
            worker.process.join(timeout=10)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.conn.close()


class Dispatcher:
    """Hands tasks to idle workers longest first, collects results, retries what failed."""

    def __init__(self, tasks: Sequence[ChunkTask], settings: WorkerSettings, on_done: DoneFn,
                 on_frames: FramesFn | None) -> None:
        self.pending: deque[ChunkTask] = deque(sorted(tasks, key=lambda t: -t.frames))
        self.settings = settings
        self.tries: dict[int, int] = {}
        self.on_done = on_done
        self.on_frames = on_frames or (lambda n: None)
        self.results: list[ChunkResult] = []
        self.idle_deaths = 0  # workers that died holding no chunk (before or between chunks)

    def assign(self, pool: LocalPool) -> None:
        """Give the next pending task to each idle, ready worker."""
        for worker in pool.workers:
            if worker.ready and worker.task is None and self.pending:
                task = self.pending.popleft()
                self.tries[task.index] = self.tries.get(task.index, 0) + 1
                worker.task = task
                worker.conn.send((task, self.tries[task.index]))

    def failed(self, task: ChunkTask, reason: str) -> None:
        """Retry a chunk first in line, or raise ChunkFailed after its last try."""
        tries = self.tries[task.index]
        if tries >= self.settings.tries:
            raise ChunkFailed(task.index, tries, reason)
        log.warning("chunk %d failed (try %d of %d): %s; retrying", task.index, tries, self.settings.tries, reason)
        self.pending.appendleft(task)

    def handle(self, pool: LocalPool, worker: LocalWorker) -> None:
        """Act on one message of a worker (or on its death)."""
        try:
            message = worker.conn.recv()
        except (EOFError, OSError):
            task = worker.task
            pool.replace(worker)
            reason = f"worker process died (exit code {worker.process.exitcode})"
            if task is not None:
                self.failed(task, reason)
                return
            self.idle_deaths += 1
            if self.idle_deaths >= self.settings.tries:
                raise VidrestoreError(f"{reason}, {self.idle_deaths} times without holding a chunk: giving up")
            log.warning("%s before taking a chunk; starting another", reason)
            return
        kind = message[0]
        if kind == "frame":
            self.on_frames(1)
        elif kind == "ready":
            worker.ready = True
        elif kind == "failed":
            raise VidrestoreError(message[1])
        elif kind == "error":
            task, worker.task = worker.task, None
            self.failed(task, message[2])
        elif kind == "done":
            worker.task = None
            self.results.append(message[1])
            self.on_done(message[1])

    def busy(self, pool: LocalPool) -> bool:
        """Whether work is left: pending tasks or tasks held by workers."""
        return bool(self.pending) or any(w.task is not None for w in pool.workers)


def run_chunks(plan: ArchivePlan, tasks: Sequence[ChunkTask], settings: WorkerSettings, on_done: DoneFn,
               on_frames: FramesFn | None = None) -> list[ChunkResult]:
    """The local backend of the interface above: `settings.workers` processes on this machine."""
    if not tasks:
        return []
    dispatcher = Dispatcher(tasks, settings, on_done, on_frames)
    pool = LocalPool(settings)
    try:
        while dispatcher.busy(pool):
            dispatcher.assign(pool)
            by_conn = {w.conn: w for w in pool.workers}
            for conn in wait(list(by_conn)):
                dispatcher.handle(pool, by_conn[conn])
    finally:
        pool.stop()
    return dispatcher.results
