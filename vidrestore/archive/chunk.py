"""One chunk of an archive job: frame-exact decode, the file-mode stages, a closed-GOP encode of its own.

Decoding starts at the keyframe before the tracker's priming frames and drops every frame before
them (so open GOPs, B-frames and VFR cut exactly); the tracker sees the priming frames and the
look-ahead past the chunk's end, the restorer and encoder only the chunk's own frames. A fresh
encoder per chunk starts with a keyframe and references nothing outside the chunk. The file is
written under a temporary name, renamed when complete, and its packets counted against the plan.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator

import av

from vidrestore.archive.plan import ChunkTask
from vidrestore.archive.workers import ChunkResult
from vidrestore.device import resolve_device
from vidrestore.errors import MediaError, error_line
from vidrestore.pipeline.job import add_fields, add_restoration, add_weave, encoder_settings, face_tracker
from vidrestore.pipeline.options import RestoreOptions
from vidrestore.pipeline.picture import PicturePlan, check_chunkable, picture_plan
from vidrestore.pipeline.restorer_api import background_for, load_crop_restorer, load_detector, load_upsampler
from vidrestore.pipeline.runner import Pipeline
from vidrestore.pipeline.stages import (
    AnalysedFrame,
    JobCounters,
    analyse_stage,
    encode_stage,
)
from vidrestore.video.probe import open_input, video_stream
from vidrestore.video.source import VideoSource
from vidrestore.video.transcode import open_sink
from vidrestore.video.types import Frame

log = logging.getLogger(__name__)

FrameFn = Callable[[], None]


class ChunkShort(MediaError):
    """A chunk's file holds fewer (or more) frames than the plan says."""


def chunk_frames(path: Path) -> int:
    """Video packets in a chunk file (one per frame); 0 when it is missing or unreadable."""
    try:
        with open_input(str(path)) as container:
            stream = video_stream(container, str(path))
            return sum(1 for p in container.demux(stream) if p.size)
    except (OSError, MediaError, av.FFmpegError) as exc:
        log.info("%s: cannot count its frames (%s)", path, error_line(exc, os_reason=True))
        return 0


def check_chunk(task: ChunkTask) -> None:
    """ChunkShort when the chunk's file does not hold exactly the plan's frames."""
    found = chunk_frames(task.path)
    if found != task.frames:
        raise ChunkShort(f"chunk {task.index} ({task.path.name}) holds {found} frames, the plan says {task.frames}")


def window_frames(source: VideoSource, task: ChunkTask) -> Iterator[Frame]:
    """The decoded frames [prime_start, lookahead_end) of the task, by PTS; MediaError when one is missing."""
    wanted = {pts: k for k, pts in enumerate(task.pts)}
    expected = 0
    for frame in source.frames():
        position = wanted.get(frame.pts)
        if position is None or position < expected:
            continue  # before the priming frames (the GOP the seek landed in, open-GOP leading pictures)
        if position != expected:
            raise MediaError(f"chunk {task.index}: frame {task.prime_start + expected} did not decode "
                             f"(the next was {task.prime_start + position})")
        frame.index = task.prime_start + position
        yield frame
        expected += 1
        if expected == len(task.pts):
            return
    if expected != len(task.pts):
        raise MediaError(f"chunk {task.index}: the input ended at frame {task.prime_start + expected}, "
                         f"before frame {task.lookahead_end}")


def decode_window_stage(source: VideoSource, task: ChunkTask) -> Callable[[Iterable[None]], Iterator[Frame]]:
    """Source stage: the task's window of frames, decoded in the stage's thread."""
    return lambda _: window_frames(source, task)


def keep_chunk_stage(task: ChunkTask) -> Callable[[Iterable[AnalysedFrame]], Iterator[AnalysedFrame]]:
    """Drop the priming and look-ahead frames once the tracker has seen them."""

    def keep(items: Iterable[AnalysedFrame]) -> Iterator[AnalysedFrame]:
        for item in items:
            if task.start <= item.frame.index < task.end:
                yield item

    return keep


class ChunkWorker:
    """Restores chunk after chunk with one loaded model: what a worker process or a Ray actor holds."""

    def __init__(self, options: RestoreOptions, device: str | None = None) -> None:
        if device is not None:
            options = dataclasses.replace(options, device=device)
        self.options = options
        resolved = resolve_device(options.device)
        self.engine = load_crop_restorer(options, resolved)
        self.detector = load_detector(options, resolved) if options.tracks else None
        self.network = load_upsampler(options, resolved)
        self.name = f"{os.uname().nodename}:{os.getpid()}:{options.device}"

    def restore(self, task: ChunkTask, on_frame: FrameFn | None = None, tries: int = 1) -> ChunkResult:
        """Restore one chunk into `task.path` (temp name, renamed when complete, frames counted)."""
        started = time.perf_counter()
        counters = JobCounters()
        task.path.parent.mkdir(parents=True, exist_ok=True)
        with VideoSource(task.input, passthrough=True, queue_size=self.options.queue_size,
                         seek_ts=task.seek_ts) as source:
            plan = picture_plan(source.info, self.options)
            check_chunkable(plan)
            sink = open_sink(task.path, self.options.output_info(plan.output), encoder_settings(self.options),
                             backend=self.options.backend, copy_streams=False)
            try:
                self._pipeline(source, task, sink, counters, on_frame, plan).run()
                sink.close()
            except BaseException:
                sink.abort()
                raise
        check_chunk(task)
        return ChunkResult(task.index, counters.frames, counters.faces, time.perf_counter() - started,
                           self.name, tries)

    def analysis_pipeline(self, source: VideoSource, task: ChunkTask, plan: PicturePlan) -> Pipeline:
        """decode window -> [fields] -> analyse -> keep the chunk's frames: the chunk's landmarks, as one
        pass has them. The tracker counts pictures (frames, or fields at twice the rate) from the window's
        first absolute index, so its detection schedule is the one-pass tracker's; it is primed on the
        frames before the chunk and looks past its end."""
        options = self.options
        first = task.prime_start * (2 if plan.fields else 1)
        tracker = face_tracker(options, self.detector, first_index=first)
        pipeline = add_fields(Pipeline(options.queue_size).add("decode", decode_window_stage(source, task)),
                              plan, source.info)
        return (
            pipeline
            .add("analyse", analyse_stage(tracker, options.analysis_chunk, only_center=options.only_center_face,
                                          largest=options.largest_face, long_side=options.det_size))
            .add("keep", keep_chunk_stage(task))
        )

    def _pipeline(self, source: VideoSource, task: ChunkTask, sink, counters: JobCounters,
                  on_frame: FrameFn | None, plan: PicturePlan) -> Pipeline:
        """The chunk's analysis -> restore -> composite ([upscale], paste) -> [weave] -> encode."""
        background = background_for(self.options, self.network, source.info)
        pipeline = add_restoration(self.analysis_pipeline(source, task, plan), self.engine, background, counters,
                                   self.options.max_batch_frames, luma_only=plan.luma_only)
        return add_weave(pipeline, plan, counters).add("encode", encode_stage(sink, None, on_frame or (lambda: None)))
