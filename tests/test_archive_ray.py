"""The Ray backend on a real local Ray (2 CPUs): same chunks as one worker, a killed actor's chunk retried."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Iterator

import pytest

ray = pytest.importorskip("ray")

from archive_media import make_archive_clip  # noqa: E402
from pipeline_support import make_tiny_restorer, test_options  # noqa: E402
from videogen import decoded_planes  # noqa: E402
from vidrestore.archive import ray_backend  # noqa: E402
from vidrestore.archive.chunk import ChunkWorker  # noqa: E402
from vidrestore.archive.plan import ArchivePlan, ChunkTask, chunk_task, make_plan, read_frame_index  # noqa: E402
from vidrestore.archive.workers import ChunkFailed, ChunkResult, WorkerSettings  # noqa: E402
from vidrestore.pipeline.options import RestoreOptions  # noqa: E402

RESTORING = "ray::RayChunkWorker.restore"  # the title Ray gives an actor process while it runs restore()


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory, detector_weights: Path) -> tuple[ArchivePlan, RestoreOptions, Path]:
    """A 4-chunk plan of the archive clip with the tiny restorer."""
    work = tmp_path_factory.mktemp("archive_ray")
    clip = make_archive_clip(work / "clip.mkv", frames=96)
    options = test_options(make_tiny_restorer(work / "tiny.pth"), detector_weights, device="cpu")
    plan = make_plan(clip.path, options, 1.0, "matroska")
    assert plan.chunks >= 4
    return plan, options, work


def tasks_into(job: tuple[ArchivePlan, RestoreOptions, Path], folder: str) -> list[ChunkTask]:
    """The plan's chunk tasks writing into work/folder, longest first."""
    plan, options, work = job
    index = read_frame_index(plan.input)
    tasks = [chunk_task(plan, index, k, work / folder / f"chunk{k:04d}.mkv", options) for k in range(plan.chunks)]
    return sorted(tasks, key=lambda t: -t.frames)


@pytest.fixture(scope="module")
def one_worker_frames(job: tuple[ArchivePlan, RestoreOptions, Path]) -> dict[int, list[bytes]]:
    """Each chunk's decoded planes as one in-process worker writes them."""
    worker = ChunkWorker(job[1])
    return {t.index: frame_bytes(worker.restore(t) and t.path) for t in tasks_into(job, "one")}


@pytest.fixture(scope="module")
def local_ray(job: tuple[ArchivePlan, RestoreOptions, Path]) -> Iterator[None]:
    """One local Ray for the module, started the way the backend starts it (2 CPUs for 2 CPU workers)."""
    settings = WorkerSettings(job[1], devices=("cpu", "cpu"))
    assert ray_backend.connect(ray, settings)
    try:
        assert ray.cluster_resources()["CPU"] == 2 and "GPU" not in ray.cluster_resources()
        yield
    finally:
        ray.shutdown()


def frame_bytes(path: Path) -> list[bytes]:
    """Every decoded frame of a chunk file, as bytes (comparable with ==)."""
    return [planes.tobytes() for planes in decoded_planes(path)]


def restoring_pids() -> list[int]:
    """Processes of Ray actors in the middle of restoring a chunk."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            except OSError:
                continue
            if title.startswith(RESTORING):
                pids.append(int(entry.name))
    return pids


def test_two_actors_give_the_frames_of_one_worker(job, one_worker_frames, local_ray) -> None:
    plan, options, _ = job
    done: list[ChunkResult] = []
    results = ray_backend.run_chunks(plan, tasks_into(job, "ray"), WorkerSettings(options, ("cpu", "cpu")), done.append)
    assert sorted(r.index for r in results) == list(range(plan.chunks)) and results == done
    assert len({r.worker.split("/")[0] for r in results}) == 2, "both actors took chunks"
    assert all(r.tries == 1 and r.frames == plan.chunk_range(r.index)[1] - plan.chunk_range(r.index)[0]
               for r in results)
    for task in tasks_into(job, "ray"):
        assert frame_bytes(task.path) == one_worker_frames[task.index]
    assert restoring_pids() == [] and ray.util.list_named_actors() == []


def test_an_actor_killed_mid_chunk_has_its_chunk_retried(job, one_worker_frames, local_ray) -> None:
    plan, options, _ = job
    killed: list[int] = []

    def kill_one_busy_actor(result: ChunkResult) -> None:
        """As a chunk comes back, the other actor is mid-chunk: kill -9 it (once)."""
        busy = restoring_pids()
        if not killed and busy:
            os.kill(busy[0], signal.SIGKILL)
            killed.append(busy[0])

    tasks = tasks_into(job, "killed")
    results = ray_backend.run_chunks(plan, tasks, WorkerSettings(options, ("cpu", "cpu")), kill_one_busy_actor)
    assert killed, "an actor was caught mid-chunk"
    assert sorted(r.index for r in results) == list(range(plan.chunks))
    assert sorted(r.tries for r in results) == [1] * (plan.chunks - 1) + [2]
    for task in tasks:
        assert frame_bytes(task.path) == one_worker_frames[task.index]


def test_a_chunk_failing_every_try_stops_the_job_naming_it(job, local_ray, tmp_path: Path) -> None:
    plan, options, _ = job
    good = tasks_into(job, "failing")
    bad = ChunkTask(**{**good[0].__dict__, "index": 99, "input": tmp_path / "gone.mkv"})
    with pytest.raises(ChunkFailed, match=r"chunk 99 failed after 3 tries") as failure:
        ray_backend.run_chunks(plan, [bad], WorkerSettings(options, ("cpu",)), lambda result: None)
    assert failure.value.tries == 3 and "gone.mkv" in failure.value.reason
    assert not any(tmp_path.iterdir())
