"""The Ray backend of archive mode: the same chunk workers as Ray actors, on a local Ray or a cluster.

One actor per device (`num_gpus=1` on a GPU, `num_cpus=1` on a CPU) loads the model once and takes chunk
after chunk, longest first. A chunk whose actor raises or dies goes back to the front of the queue for the
next free actor (a dead actor is replaced by a fresh one), until it has had `settings.tries` tries. Ray is an
optional extra (`pip install vidrestore[ray]`): it is imported here only, when the job runs.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Sequence

from vidrestore.archive.plan import ArchivePlan, ChunkTask
from vidrestore.archive.workers import ChunkFailed, ChunkResult, DoneFn, FramesFn, WorkerSettings
from vidrestore.errors import VidrestoreError
from vidrestore.pipeline.options import RestoreOptions

log = logging.getLogger(__name__)

LOCAL_OBJECT_STORE_BYTES = 100 * 1024 * 1024  # chunk tasks and results are small: keep /dev/shm use low


@dataclass
class _Slot:
    """One actor and the chunk it is working on (None when idle)."""

    name: str
    device: str
    gpu: bool
    actor: Any
    task: ChunkTask | None = None


def import_ray() -> Any:
    """The ray module, or one clear error saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise VidrestoreError("--ray needs Ray: pip install 'vidrestore[ray]'") from exc
    return ray


def _requested_device(settings: WorkerSettings, device: str | None) -> str:
    """The device a worker asks for: its own, else the options' one."""
    return device or str(settings.options.device or "auto")


def _local_cpu_only(settings: WorkerSettings) -> bool:
    """True when every worker runs on a CPU here (a local Ray then gets exactly one CPU per worker)."""
    import torch

    wanted = [_requested_device(settings, d) for d in settings.devices]
    return all(d == "cpu" or (d == "auto" and not torch.cuda.is_available()) for d in wanted)


def connect(ray: Any, settings: WorkerSettings) -> bool:
    """Join the cluster at settings.ray_address, or start a local Ray; True when this call started it."""
    if ray.is_initialized():
        return False
    common = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
    if settings.ray_address:
        log.info("joining the Ray cluster at %s", settings.ray_address)
        ray.init(address=settings.ray_address, **common)
    elif _local_cpu_only(settings):
        log.info("starting a local Ray with %d CPUs", settings.workers)
        ray.init(num_cpus=settings.workers, object_store_memory=LOCAL_OBJECT_STORE_BYTES, **common)
    else:
        log.info("starting a local Ray")
        ray.init(object_store_memory=LOCAL_OBJECT_STORE_BYTES, **common)
    return True


def _actor_device(ray: Any, settings: WorkerSettings, device: str | None) -> tuple[str, bool]:
    """(device inside the actor, whether it takes a GPU); Ray's CUDA_VISIBLE_DEVICES makes its GPU cuda:0."""
    wanted = _requested_device(settings, device)
    if wanted == "auto":
        wanted = "cuda" if ray.cluster_resources().get("GPU", 0) > 0 else "cpu"
    gpu = wanted.startswith("cuda")
    return ("cuda" if gpu else wanted), gpu


class RayChunkWorker:
    """The actor: a ChunkWorker with the driver's torch thread count (CPU results depend on it, and Ray
    would set one thread per CPU it grants), so chunks come out as one local worker makes them."""

    def __init__(self, options: RestoreOptions, device: str, torch_threads: int) -> None:
        import torch

        from vidrestore.archive.chunk import ChunkWorker

        torch.set_num_threads(torch_threads)
        self.worker = ChunkWorker(options, device)

    def restore(self, task: ChunkTask) -> ChunkResult:
        """Restore one chunk into task.path (see ChunkWorker.restore)."""
        return self.worker.restore(task)


def _start_actor(ray: Any, settings: WorkerSettings, name: str, device: str, gpu: bool) -> _Slot:
    """An actor that loads the model once (in its constructor, on the node that runs it)."""
    import torch

    resources = {"num_gpus": 1} if gpu else {"num_cpus": 1}
    actor_class = ray.remote(max_restarts=0, max_task_retries=0, **resources)(RayChunkWorker)
    options = dataclasses.replace(settings.options, device=device)
    return _Slot(name, device, gpu, actor_class.remote(options, device, torch.get_num_threads()))


def _failure_reason(error: BaseException) -> str:
    """One line saying why a try failed: the worker's own exception, or that the actor died."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {str(cause).strip().splitlines()[0] if str(cause).strip() else ''}"
    first = str(error).strip().splitlines()
    return f"{type(error).__name__}: {first[0] if first else 'worker died'}"


class _Dispatcher:
    """Hands chunks to free actors in queue order, collects results, retries failed chunks."""

    def __init__(self, ray: Any, settings: WorkerSettings, tasks: Sequence[ChunkTask], on_done: DoneFn,
                 on_frames: FramesFn | None) -> None:
        self.ray, self.settings, self.on_done, self.on_frames = ray, settings, on_done, on_frames
        self.queue: collections.deque[ChunkTask] = collections.deque(tasks)
        self.tries: dict[int, int] = collections.Counter()
        self.results: list[ChunkResult] = []
        self.running: dict[Any, _Slot] = {}
        self.slots: list[_Slot] = []
        for k, device in enumerate(settings.devices):
            actor_device, gpu = _actor_device(ray, settings, device)
            self.slots.append(_start_actor(ray, settings, f"ray-{k}", actor_device, gpu))

    def run(self) -> list[ChunkResult]:
        """Keep every actor busy until the queue is empty and all chunks are back."""
        self._hand_out()
        while self.running:
            ready, _ = self.ray.wait(list(self.running), num_returns=1)
            self._collect(ready[0])
            self._hand_out()
        return self.results

    def stop(self) -> None:
        """Kill every actor (after the job, or when a chunk failed for good)."""
        for slot in self.slots:
            self.ray.kill(slot.actor, no_restart=True)

    def _hand_out(self) -> None:
        """Give the next queued chunk to each idle actor."""
        for slot in self.slots:
            if slot.task is None and self.queue:
                slot.task = self.queue.popleft()
                self.tries[slot.task.index] += 1
                self.running[slot.actor.restore.remote(slot.task)] = slot

    def _collect(self, ref: Any) -> None:
        """Record one finished try: a result goes to on_done, a failure back to the queue (or ends the job)."""
        slot = self.running.pop(ref)
        task, slot.task = slot.task, None
        assert task is not None
        try:
            result = self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:
            self._retry_or_fail(slot, task, exc)
            return
        result = dataclasses.replace(result, worker=f"{slot.name}/{result.worker}", tries=self.tries[task.index])
        self.results.append(result)
        if self.on_frames is not None:
            self.on_frames(result.frames)
        self.on_done(result)

    def _retry_or_fail(self, slot: _Slot, task: ChunkTask, error: BaseException) -> None:
        """Requeue a failed chunk at the front (any actor may take it); after the last try, stop with ChunkFailed."""
        reason = _failure_reason(error)
        tries = self.tries[task.index]
        log.warning("chunk %d failed on %s (try %d of %d): %s", task.index, slot.name, tries, self.settings.tries,
                    reason)
        if isinstance(error, self.ray.exceptions.RayActorError):
            self._replace(slot)
        if tries >= self.settings.tries:
            raise ChunkFailed(task.index, tries, reason)
        self.queue.appendleft(task)

    def _replace(self, slot: _Slot) -> None:
        """A fresh actor in place of a dead one (it loads the model again)."""
        self.ray.kill(slot.actor, no_restart=True)
        fresh = _start_actor(self.ray, self.settings, slot.name, slot.device, slot.gpu)
        slot.actor = fresh.actor


def run_chunks(plan: ArchivePlan, tasks: Sequence[ChunkTask], settings: WorkerSettings, on_done: DoneFn,
               on_frames: FramesFn | None = None) -> list[ChunkResult]:
    """Restore `tasks` on Ray actors (see the module docstring); on_frames gets each finished chunk's frames."""
    ray = import_ray()
    started = connect(ray, settings)
    dispatcher: _Dispatcher | None = None
    try:
        dispatcher = _Dispatcher(ray, settings, tasks, on_done, on_frames)
        log.info("%d chunks of %s on %d Ray actors", len(tasks), plan.input, settings.workers)
        return dispatcher.run()
    finally:
        if dispatcher is not None:
            dispatcher.stop()
        if started:
            ray.shutdown()
