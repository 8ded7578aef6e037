"""The archive job: plan (or resume), restore the chunks on workers, join them, verify, report.

`archive_video(IN, OUT, options, settings)` is `vidrestore archive`: the same command again resumes
(finished chunks are kept, missing or short ones redone), options that change pixels make a new plan,
`fresh` starts over. One tqdm bar covers the whole job; `settings.report` gets a JSON report.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from vidrestore.archive.chunk import chunk_frames
from vidrestore.archive.join import join_chunks
from vidrestore.archive.plan import (
    ArchivePlan,
    ChunkTask,
    FrameIndex,
    chunk_task,
    load_plan,
    make_plan,
    plan_key,
    read_frame_index,
    save_plan,
)
from vidrestore.archive.state import WorkFolder, forget_done, read_done, write_done
from vidrestore.archive.workers import ChunkResult, WorkerSettings, run_chunks
from vidrestore.atomic import atomic_path
from vidrestore.device import resolve_device
from vidrestore.errors import VidrestoreError
from vidrestore.pipeline.job import encoder_settings
from vidrestore.pipeline.options import RestoreOptions
from vidrestore.pipeline.picture import check_chunkable, picture_plan, settled_options
from vidrestore.video.paths import check_input, check_output
from vidrestore.video.probe import probe
from vidrestore.video.timestamps import timing_mismatch
from vidrestore.video.transcode import open_sink
from vidrestore.video.types import VideoInfo

log = logging.getLogger(__name__)

DEFAULT_CHUNK_SECONDS = 30.0


@dataclass(frozen=True)
class ArchiveSettings:
    """How the archive job runs: chunk length, work folder, workers (devices) or Ray, report, fresh start."""

    chunk_seconds: float = DEFAULT_CHUNK_SECONDS
    work_dir: Path | None = None
    devices: tuple[str | None, ...] = (None,)
    ray: bool = False
    ray_address: str | None = None
    report: Path | None = None
    fresh: bool = False
    progress: bool = True


@dataclass(frozen=True)
class Verification:
    """The output against the source: frame counts and whether every frame's timestamp matches."""

    source_frames: int
    output_frames: int
    timestamps_match: bool

    @property
    def ok(self) -> bool:
        return self.source_frames == self.output_frames and self.timestamps_match


@dataclass(frozen=True)
class ArchiveReport:
    """What the job did: the plan, each chunk's result, which were kept from earlier runs, the verification."""

    input: Path
    output: Path
    plan: ArchivePlan
    chunks: tuple[ChunkResult, ...]
    kept: tuple[int, ...]
    restored: tuple[int, ...]
    seconds: float
    verification: Verification
    new_plan: bool
    phases: dict[str, float]  # seconds of each phase: plan (index and cuts), chunks, join, verify
    picture: str = ""  # how the source's picture was treated (fields, colour), as logged

    def to_json(self) -> dict[str, Any]:
        """The report as a JSON-ready mapping."""
        return {"input": str(self.input), "output": str(self.output), "plan": self.plan.to_json(),
                "new_plan": self.new_plan, "picture": self.picture, "seconds": self.seconds, "phases": self.phases,
                "kept": list(self.kept),
                "restored": list(self.restored), "chunks": [dataclasses.asdict(c) for c in self.chunks],
                "verification": {**dataclasses.asdict(self.verification), "ok": self.verification.ok}}


def work_folder(output: Path, settings: ArchiveSettings) -> WorkFolder:
    """The job's work folder: --work-dir, else OUT.archive beside the output."""
    root = settings.work_dir or output.with_name(output.name + ".archive")
    return WorkFolder(Path(root), output.suffix)


def current_plan(folder: WorkFolder, input: Path, index: FrameIndex, options: RestoreOptions,
                 settings: ArchiveSettings) -> tuple[ArchivePlan, bool]:
    """The saved plan when it still fits the input and options, else a new one (chunks cleared); and whether new."""
    key = plan_key(input, options, settings.chunk_seconds, folder.suffix)
    saved = load_plan(folder.plan_path)
    if saved is not None and saved.key == key:
        return saved, False
    if saved is not None:
        log.warning("the input or the options that change pixels differ from the saved plan: planning anew, "
                    "its finished chunks are dropped")
    folder.clear_chunks()
    plan = make_plan(input, options, settings.chunk_seconds, folder.suffix, index)
    save_plan(plan, folder.plan_path)
    return plan, True


def split_kept(folder: WorkFolder, tasks: list[ChunkTask]) -> tuple[dict[int, ChunkResult], list[ChunkTask]]:
    """Finished chunks (a done-record and a file with the plan's frames) and the tasks still to do."""
    kept: dict[int, ChunkResult] = {}
    todo: list[ChunkTask] = []
    for task in tasks:
        done = read_done(folder, task.index)
        if done is not None and chunk_frames(task.path) == task.frames:
            kept[task.index] = done
            continue
        if done is not None:
            log.warning("chunk %d: its file is missing or short; redoing it", task.index)
        forget_done(folder, task.index)
        todo.append(task)
    return kept, todo


def verify_output(output: Path, source: FrameIndex) -> Verification:
    """Frame count and timestamps of the output against the source (video/timestamps: the comparison qc uses)."""
    out = read_frame_index(output)
    same = timing_mismatch(source.pts, source.time_base, out.pts, out.time_base) is None
    return Verification(source.frames, out.frames, same)


def write_report(report: ArchiveReport, path: Path) -> None:
    """The JSON report, written atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(report.to_json(), indent=1, default=str))


def check_writable(output: Path, info: VideoInfo, options: RestoreOptions) -> None:
    """File mode's checks of encoder, container and copied streams, before any chunk runs: the output's
    sink is opened and dropped (its temporary file removed), so a bad --codec is one error, not N chunk failures."""
    open_sink(output, info, encoder_settings(options), backend=options.backend).abort()


def check_local_devices(settings: ArchiveSettings) -> None:
    """The local workers' devices (--gpus) exist here, before any worker starts; Ray's are its nodes' to check."""
    if not settings.ray:
        for device in settings.devices:
            if device is not None:
                resolve_device(device)


def chunk_runner(settings: ArchiveSettings):
    """run_chunks of the backend asked for: local processes, or Ray actors (imported only then)."""
    if settings.ray:
        from vidrestore.archive import ray_backend

        return ray_backend.run_chunks
    return run_chunks


def archive_video(input: str | os.PathLike, output: str | os.PathLike, options: RestoreOptions | None = None,
                  settings: ArchiveSettings | None = None) -> ArchiveReport:
    """Restore a long video chunk by chunk on workers, resumably, into `output`."""
    options, settings = options or RestoreOptions(), settings or ArchiveSettings()
    if settings.chunk_seconds <= 0:
        raise VidrestoreError(f"--chunk-seconds must be more than 0, not {settings.chunk_seconds}")
    started = time.perf_counter()
    input, output = Path(check_input(input)), Path(output)
    check_output(output, input)
    plan_of_picture = picture_plan(probe(input), options)  # bad input fails here, before the work folder exists
    check_chunkable(plan_of_picture)
    options = settled_options(options, plan_of_picture)  # every chunk's fields and colour as decided here, once
    check_writable(output, options.output_info(plan_of_picture.output), options)  # at the output size
    check_local_devices(settings)
    index = read_frame_index(input)
    folder = work_folder(output, settings)
    if settings.fresh:
        folder.remove()
    folder.create()
    plan, new_plan = current_plan(folder, input, index, options, settings)
    tasks = [chunk_task(plan, index, k, folder.chunk_path(k), options) for k in range(plan.chunks)]
    kept, todo = split_kept(folder, tasks)
    phases = {"plan": time.perf_counter() - started}
    results = dict(kept)
    log.info("%d chunks: %d kept from an earlier run, %d to restore", plan.chunks, len(kept), len(todo))
    with tqdm(total=plan.frames, initial=sum(tasks[k].frames for k in kept), unit="frame", desc=input.name,
              disable=not settings.progress, dynamic_ncols=True) as bar:
        bar.set_postfix(chunks=f"{len(results)}/{plan.chunks}", resumed=len(kept))

        def chunk_done(result: ChunkResult) -> None:
            write_done(folder, result)
            results[result.index] = result
            bar.set_postfix(chunks=f"{len(results)}/{plan.chunks}", resumed=len(kept))

        workers = WorkerSettings(options, settings.devices, ray_address=settings.ray_address)
        chunk_runner(settings)(plan, todo, workers, chunk_done, bar.update)
    phases["chunks"] = time.perf_counter() - started - sum(phases.values())
    written = join_chunks(input, output, [t.path for t in tasks], [index.pts[t.start] for t in tasks],
                          options.output_info(plan_of_picture.output))
    phases["join"] = time.perf_counter() - started - sum(phases.values())
    verification = verify_output(output, index)
    phases["verify"] = time.perf_counter() - started - sum(phases.values())
    if not verification.ok:
        log.warning("%s: %d frames written, the source has %d%s", output, written, index.frames,
                    "" if verification.timestamps_match else "; timestamps differ")
    report = ArchiveReport(input, output, plan, tuple(results[k] for k in sorted(results)), tuple(sorted(kept)),
                           tuple(sorted(set(results) - set(kept))), time.perf_counter() - started, verification,
                           new_plan, phases, plan_of_picture.describe())
    if settings.report is not None:
        write_report(report, settings.report)
    log.info("%s: %d frames in %d chunks (%d kept) in %.1f s", output, plan.frames, plan.chunks, len(kept),
             report.seconds)
    return report

