"""The main job: `restore_video(IN, OUT, options)` runs decode -> analyse -> restore -> composite ->
encode in threads and returns a JobReport; `restore_image` is the same for a single picture.

Outputs (and the optional before/after comparison) are written to temporary files and renamed
into place only when everything succeeded: an error or Ctrl-C leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from vidrestore.device import resolve_device
from vidrestore.errors import VidrestoreError
from vidrestore.faces.detector import FaceDetector
from vidrestore.faces.tracker import FaceTracker, TrackerConfig
from vidrestore.models.crop_restorer import CropRestorer
from vidrestore.models.upsampler import Background
from vidrestore.pipeline.image_io import check_image_output
from vidrestore.pipeline.options import RestoreOptions
from vidrestore.pipeline.picture import PicturePlan, picture_plan
from vidrestore.pipeline.restorer_api import (
    ImageReport,
    Restorer,
    background_for,
    is_image_path,
    load_crop_restorer,
    load_detector,
    load_upsampler,
)
from vidrestore.pipeline.runner import Pipeline, StageFn, StageTiming
from vidrestore.pipeline.stages import (
    JobCounters,
    analyse_stage,
    composite_stage,
    decode_stage,
    encode_stage,
    fields_stage,
    restore_stage,
    weave_stage,
)
from vidrestore.video.codecs import EncoderSettings
from vidrestore.video.paths import check_input, check_output
from vidrestore.video.sink import VideoSink
from vidrestore.video.source import VideoSource
from vidrestore.video.transcode import open_sink
from vidrestore.video.types import VideoInfo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobReport:
    """What a job did: frames, faces, wall time, time in each stage, frames the decoder lost."""

    input: Path
    output: Path
    frames: int
    faces: int
    frames_with_faces: int
    seconds: float
    stages: tuple[StageTiming, ...]
    lost_frames: int = 0
    compare: Path | None = None
    picture: str = ""  # how the source's picture was treated (fields, colour), as logged

    @property
    def fps(self) -> float:
        """Frames per second end to end."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        """A short table: totals, then busy seconds and share of wall time per stage."""
        lines = [f"{self.frames} frames ({self.frames_with_faces} with faces, {self.faces} faces) in "
                 f"{self.seconds:.2f} s: {self.fps:.1f} fps" + (f", {self.lost_frames} lost" if self.lost_frames else "")]
        for t in self.stages:
            share = 100.0 * t.busy_seconds / self.seconds if self.seconds > 0 else 0.0
            lines.append(f"  {t.name:<10} {t.busy_seconds:8.2f} s busy ({share:5.1f}% of wall), {t.items} items")
        return "\n".join(lines)


def encoder_settings(options: RestoreOptions) -> EncoderSettings:
    """The encoder settings the options ask for."""
    return EncoderSettings(codec=options.codec, quality=options.crf, preset=options.preset)


def expected_frames(info: VideoInfo) -> int | None:
    """Frame count estimate for the progress bar (duration x average rate), None when unknown."""
    if info.duration and info.average_rate:
        return max(1, round(info.duration * float(info.average_rate)))
    return None


def progress_bar(total: int | None, name: str, enabled: bool) -> tqdm:
    """The frames progress bar of a job: with a total (and so an ETA) when the frame count is known."""
    return tqdm(total=total, unit="frame", desc=name, disable=not enabled, dynamic_ncols=True)


def face_tracker(options: RestoreOptions, detector: FaceDetector | None, first_index: int = 0) -> FaceTracker | None:
    """The tracker of the job's analysis (detection reuse, smoothing lag), counting frames from
    `first_index` (an archive chunk's first primed frame); None without a detector."""
    if detector is None:
        return None
    config = TrackerConfig(detect_every=options.detect_every, lag=options.smoothing_lag)
    return FaceTracker(detector, config, first_index=first_index)


def open_video(input: Path, options: RestoreOptions) -> VideoSource:
    """The job's decoder: frames stay decoded pictures until a stage reads their pixels."""
    return VideoSource(input, passthrough=True, queue_size=options.queue_size)


def _first_items(stage: StageFn, count: int) -> StageFn:
    """The stage cut off after its first `count` items."""
    return lambda items: itertools.islice(stage(items), count)


def add_fields(pipeline: Pipeline, plan: PicturePlan | None, info: VideoInfo) -> Pipeline:
    """The fields stage after decoding, for a source restored field by field."""
    if plan is None or not plan.fields:
        return pipeline
    return pipeline.add("fields", fields_stage(info, plan.field_order, plan.weaving))


def add_weave(pipeline: Pipeline, plan: PicturePlan, counters: JobCounters) -> Pipeline:
    """The weave stage before encoding, for restored fields that go back into interlaced frames (counted there)."""
    return pipeline.add("weave", weave_stage(counters)) if plan.weaving else pipeline


def analysis_pipeline(source: VideoSource, tracker: FaceTracker | None, options: RestoreOptions,
                      frames: int | None = None, plan: PicturePlan | None = None) -> Pipeline:
    """decode -> [fields] -> analyse (at most `frames` frames): the job's first stages, which `vidrestore
    track` runs too, so that its landmarks are the ones the job aligns faces with."""
    decode = decode_stage(source)
    pipeline = Pipeline(options.queue_size).add("decode", decode if frames is None else _first_items(decode, frames))
    return add_fields(pipeline, plan, source.info).add(
        "analyse", analyse_stage(tracker, options.analysis_chunk, only_center=options.only_center_face,
                                 largest=options.largest_face, long_side=options.det_size))


def compare_info(info: VideoInfo) -> VideoInfo:
    """The comparison video's info: the source's timing and tags, twice as wide."""
    return dataclasses.replace(info, width=info.width * 2)


class _Outputs:
    """The main output and the optional comparison: opened, finished or aborted together."""

    def __init__(self, output: Path, compare: Path | None, info: VideoInfo, options: RestoreOptions) -> None:
        settings = encoder_settings(options)
        self.sink = open_sink(output, info, settings, backend=options.backend)
        self.compare: VideoSink | None = None
        if compare is not None:
            try:
                self.compare = open_sink(compare, compare_info(info), settings, backend=options.backend)
            except BaseException:
                self.sink.abort()
                raise

    def close(self) -> None:
        """Finish both files; if either fails, neither is left behind."""
        try:
            if self.compare is not None:
                self.compare.close()
            self.sink.close()
        except BaseException:
            self.abort()
            if self.compare is not None:
                self.compare.out_path.unlink(missing_ok=True)
            raise

    def abort(self) -> None:
        """Stop both encoders and delete their temporary files."""
        self.sink.abort()
        if self.compare is not None:
            self.compare.abort()


ProgressFn = Callable[[int, "int | None"], None]


def _models(options: RestoreOptions, restorer: Restorer | None) -> tuple:
    """(restoration core or None, detector or None, background network or None): the loaded restorer's,
    or loaded for the options."""
    if restorer is not None:
        network = restorer.network if options.background == "realesrgan" else None
        return restorer.engine, restorer.detector if options.tracks else None, network
    device = resolve_device(options.device)
    engine = load_crop_restorer(options, device)
    return engine, load_detector(options, device) if options.tracks else None, load_upsampler(options, device)


def add_restoration(pipeline: Pipeline, engine: CropRestorer | None, background: Background | None,
                    counters: JobCounters, max_frames: int, **composite: bool) -> Pipeline:
    """restore -> composite (upscaling first, when the output is larger): the stages every mode runs."""
    max_faces = engine.restorer.batch_size if engine is not None else 1
    pipeline.add("restore", restore_stage(engine, max_faces, max_frames))
    return pipeline.add("composite", composite_stage(engine, counters, background, **composite))


def restore_video(input: str | os.PathLike, output: str | os.PathLike, options: RestoreOptions | None = None,
                  *, compare: str | os.PathLike | None = None, progress: bool = True,
                  on_progress: ProgressFn | None = None, cancel: threading.Event | None = None,
                  restorer: Restorer | None = None) -> JobReport:
    """Restore the faces of a video into `output` (timing, audio and untouched pixels kept).

    `on_progress(frames_done, frames_expected_or_None)` is called after each encoded frame; setting
    `cancel` stops the job (JobCancelled) and leaves no output behind. A loaded `restorer` lends its
    model and detector (a server loads them once for all jobs); otherwise the options' are loaded.
    """
    options = options or RestoreOptions()
    input, output = Path(check_input(input)), Path(output)
    check_output(output, input)
    if compare is not None:
        check_output(compare, input)
        if Path(compare).resolve() == output.resolve():
            raise VidrestoreError(f"--compare must name another file than the output: {compare}")
    engine, detector, network = _models(options, restorer)
    tracker = face_tracker(options, detector)  # with --model none too: faces are found and counted
    started = time.perf_counter()
    counters = JobCounters()
    with open_video(input, options) as source:
        plan = picture_plan(source.info, options)
        outputs = _Outputs(output, Path(compare) if compare else None, options.output_info(plan.output), options)
        background = background_for(options, network, source.info)
        try:  # from the moment the outputs exist: whatever stops the job, no temporary file stays
            total = expected_frames(plan.output)
            with progress_bar(total, input.name, progress) as bar:

                def frame_done() -> None:
                    counters.encoded += 1
                    bar.update(1)
                    if on_progress is not None:
                        on_progress(counters.encoded, total)

                pipeline = add_restoration(analysis_pipeline(source, tracker, options, plan=plan), engine,
                                           background, counters, options.max_batch_frames,
                                           keep_before=compare is not None, luma_only=plan.luma_only)
                pipeline = add_weave(pipeline, plan, counters).add(
                    "encode", encode_stage(outputs.sink, outputs.compare, frame_done))
                pipeline.run(cancel)
        except BaseException:
            outputs.abort()
            raise
        outputs.close()
        lost = source.stats.lost_frames
    report = JobReport(input, output, counters.frames, counters.faces, counters.frames_with_faces,
                       time.perf_counter() - started, tuple(pipeline.timings), lost,
                       Path(compare) if compare else None, plan.describe())
    log.info("%s", report.summary())
    return report


def restore_image(input: str | os.PathLike, output: str | os.PathLike,
                  options: RestoreOptions | None = None) -> ImageReport:
    """Restore the faces of an image file (jpg, png, ...) into another image file, alpha kept."""
    check_input(input)
    check_image_output(output, input)  # before the models load
    report = Restorer(options).restore_image(input, output)
    log.info("%s", report.summary())
    return report


def restore_file(input: str | os.PathLike, output: str | os.PathLike, options: RestoreOptions | None = None,
                 *, compare: str | os.PathLike | None = None, progress: bool = True,
                 on_progress: ProgressFn | None = None, cancel: threading.Event | None = None) -> JobReport | ImageReport:
    """The main job for any input: images go to `restore_image`, everything else to `restore_video`."""
    if is_image_path(input):
        if compare is not None:
            raise VidrestoreError("--compare is for videos; an image has no side-by-side output")
        return restore_image(input, output, options)
    return restore_video(input, output, options, compare=compare, progress=progress, on_progress=on_progress,
                         cancel=cancel)
