"""Landmarks at archive chunk boundaries: what one pass gives, within the smoothing's own deviation."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import pytest
from archive_media import make_archive_clip
from pipeline_support import make_tiny_restorer, test_options

from vidrestore.archive.chunk import ChunkWorker
from vidrestore.archive.plan import ChunkTask, chunk_task, make_plan, read_frame_index
from vidrestore.pipeline.job import analysis_pipeline, face_tracker, open_video
from vidrestore.pipeline.options import RestoreOptions
from vidrestore.pipeline.picture import picture_plan
from vidrestore.pipeline.restorer_api import load_detector
from vidrestore.pipeline.stages import AnalysedFrame
from vidrestore.video.source import VideoSource

Landmarks = dict[int, np.ndarray]  # absolute frame index -> (5, 2) landmarks of the frame's one face


def collect(into: Landmarks, raw: Landmarks) -> Callable[[Iterable[AnalysedFrame]], Iterator[None]]:
    """A last stage keeping each frame's face landmarks (smoothed, and the detector's where it ran)."""

    def stage(items: Iterable[AnalysedFrame]) -> Iterator[None]:
        for item in items:
            if len(item.faces) == 1:
                into[item.frame.index] = item.faces[0].landmarks
                if item.faces[0].raw_landmarks is not None:
                    raw[item.frame.index] = item.faces[0].raw_landmarks
            yield from ()

    return stage


def one_pass(clip: Path, options: RestoreOptions) -> tuple[Landmarks, Landmarks]:
    """Landmarks of the file-mode analysis over the whole clip."""
    smoothed, raw = {}, {}
    tracker = face_tracker(options, load_detector(options, "cpu"))
    with open_video(clip, options) as source:
        analysis_pipeline(source, tracker, options).add("collect", collect(smoothed, raw)).run()
    return smoothed, raw


def chunked(tasks: list[ChunkTask], worker: ChunkWorker) -> Landmarks:
    """Landmarks of each chunk's analysis (primed, looking ahead), joined."""
    smoothed: Landmarks = {}
    for task in tasks:
        with VideoSource(task.input, passthrough=True, seek_ts=task.seek_ts) as source:
            plan = picture_plan(source.info, worker.options)
            worker.analysis_pipeline(source, task, plan).add("collect", collect(smoothed, {})).run()
    return smoothed


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, detector_weights: Path):
    work = tmp_path_factory.mktemp("archive_tracking")
    clip = make_archive_clip(work / "clip.mkv", frames=144)
    options = test_options(make_tiny_restorer(work / "tiny.pth"), detector_weights)
    plan = make_plan(clip.path, options, 1.0, ".mkv")
    index = read_frame_index(clip.path)
    tasks = [chunk_task(plan, index, k, work / f"{k}.mkv", options) for k in range(plan.chunks)]
    return clip, plan, tasks, one_pass(clip.path, options), chunked(tasks, ChunkWorker(options))


def mean_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean distance between corresponding landmarks, in pixels."""
    return float(np.linalg.norm(a - b, axis=-1).mean())


def second_differences(landmarks: Landmarks, frames: Iterable[int]) -> dict[int, float]:
    """Per frame k, the landmarks' mean |x[k+1] - 2 x[k] + x[k-1]|: the jitter a viewer sees."""
    return {k: mean_distance(landmarks[k + 1] - landmarks[k], landmarks[k] - landmarks[k - 1])
            for k in frames if k - 1 in landmarks and k + 1 in landmarks}


def test_chunk_boundaries_give_the_one_pass_landmarks_within_the_smoothings_deviation(runs) -> None:
    clip, plan, _, (whole, raw), parts = runs
    assert plan.chunks >= 5 and sorted(parts) == sorted(whole) == list(range(clip.frames))
    # the smoothing's own deviation: how far its landmarks sit from the detector's, where it ran
    deviation = np.sqrt(np.mean([mean_distance(whole[k], raw[k]) ** 2 for k in raw]))
    worst = max(mean_distance(whole[k], parts[k]) for k in whole)
    assert worst <= deviation, f"chunked landmarks differ by {worst:.3f} px, the smoothing deviates {deviation:.3f} px"


def test_no_jump_at_a_chunk_boundary_larger_than_the_jitter_inside_chunks(runs) -> None:
    clip, plan, _, _, parts = runs
    boundaries = set(plan.boundaries[1:-1])
    near = {b + d for b in boundaries for d in (-1, 0)}  # the second differences that span a boundary
    across_cuts = {c + d for c in clip.scene_cuts for d in (-1, 0)}  # a new shot is a jump of its own
    jitter = second_differences(parts, range(1, clip.frames - 1))
    inside = max(v for k, v in jitter.items() if k not in near | across_cuts)
    at_boundaries = max(jitter[k] for k in near - across_cuts)
    assert at_boundaries <= inside, f"{at_boundaries:.3f} px at boundaries, at most {inside:.3f} px inside chunks"
