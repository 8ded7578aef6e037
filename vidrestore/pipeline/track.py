"""The `vidrestore track` job: the main job's decode and analyse stages, then the track JSON (and a drawn video).

Frames are decoded and analysed exactly as `vidrestore IN OUT` does (same source, same analysis view,
same chunks and tracker settings, and on interlaced sources the same fields), so the landmarks written
are the ones the main job aligns faces with. The drawn video goes through VideoSink (same timing, atomic). The JSON is the format of
DESIGN.md section 6 and is written atomically (temporary file, then os.replace).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import cv2
import numpy as np

from vidrestore.atomic import atomic_path
from vidrestore.device import resolve_device
from vidrestore.faces.detector import DetectorConfig
from vidrestore.faces.types import TrackedFace
from vidrestore.pipeline.job import analysis_pipeline, expected_frames, face_tracker, open_video, progress_bar
from vidrestore.pipeline.options import RestoreOptions
from vidrestore.pipeline.picture import output_info, picture_plan
from vidrestore.pipeline.restorer_api import load_detector
from vidrestore.pipeline.stages import AnalysedFrame, StageFn
from vidrestore.video import EncoderSettings, Frame, VideoInfo, VideoSink, read_frames

log = logging.getLogger(__name__)

DRAW_SETTINGS = EncoderSettings(codec="libx264", quality=23, preset="veryfast")


def read_video(path: Path, limit: int | None = None) -> Iterator[Frame]:
    """Decoded RGB frames of the video, in order, with their timing; at most `limit` of them."""
    frames = read_frames(path)
    return frames if limit is None else itertools.islice(frames, limit)


def frame_record(item: AnalysedFrame) -> dict:
    """One picture of the track JSON (DESIGN.md section 6): a frame, or a field of one ("field": 0 for
    the first in time, 1 for the second; its pts in the fields' time base)."""
    frame = item.frame
    record = {"index": frame.index, "pts": frame.pts, "detected": item.detected,
              "faces": [face.to_dict() for face in item.faces]}
    if frame.field_of is not None:
        record["field"] = frame.field_of.number
    return record


def tracks_document(info: VideoInfo, frames: list[dict], field_order: str = "progressive") -> dict:
    """The track JSON document (DESIGN.md section 6); `info`: the pictures analysed (fields at field rate
    on an interlaced source, whose field order the video then names)."""
    video = {"width": info.width, "height": info.height, "time_base": str(info.time_base), "frames": len(frames)}
    if field_order != "progressive":
        video["field_order"] = field_order
    return {"video": video, "frames": frames}


def write_json_atomic(document: dict, path: Path) -> None:
    """Write JSON to a temporary file beside `path`, then rename it into place."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(document, separators=(",", ":")))


def _track_color(track_id: int) -> tuple[int, int, int]:
    """A stable, distinct RGB colour per track id."""
    hue = (track_id * 47) % 180
    bgr = cv2.cvtColor(np.uint8([[[hue, 220, 255]]]), cv2.COLOR_HSV2RGB)[0, 0]
    return int(bgr[0]), int(bgr[1]), int(bgr[2])


def draw_faces(rgb: np.ndarray, faces: Sequence[TrackedFace], detected: bool) -> np.ndarray:
    """A copy of the frame with boxes, smoothed landmarks (dots), raw landmarks (crosses) and ids."""
    out = np.ascontiguousarray(rgb.copy())
    for face in faces:
        color = _track_color(face.track_id)
        x1, y1, x2, y2 = (int(round(v)) for v in face.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), color, 2)
        cv2.putText(out, str(face.track_id), (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.6, color, 2)
        for x, y in face.landmarks:
            cv2.circle(out, (int(round(x)), int(round(y))), 2, color, -1)
        for x, y in face.raw_landmarks if face.raw_landmarks is not None else ():
            cv2.drawMarker(out, (int(round(x)), int(round(y))), (255, 255, 255), cv2.MARKER_CROSS, 6, 1)
    if detected:
        cv2.putText(out, "D", (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 0, 0), 2)
    return out


def record_stage(records: list[dict], drawing: VideoSink | None, on_frame: Callable[[], None]) -> StageFn:
    """Sink stage: each analysed frame becomes a JSON record (and a drawn frame); its pixels are let go."""

    def record(items: Iterable[AnalysedFrame]) -> Iterator[None]:
        for item in items:
            records.append(frame_record(item))
            if drawing is not None:
                item.frame.image = draw_faces(item.frame.image, item.faces, item.detected)
                drawing.write(item.frame)
            on_frame()
        yield from ()

    return record


def frames_to_expect(info: VideoInfo, limit: int | None) -> int | None:
    """The progress bar's total: the job's estimate of the frame count, at most `limit`."""
    expected = expected_frames(info)
    if limit is None:
        return expected
    return limit if expected is None else min(limit, expected)


def run_track(
    source: Path,
    json_path: Path,
    options: RestoreOptions,
    *,
    conf_threshold: float = DetectorConfig.conf_threshold,
    draw_path: Path | None = None,
    limit: int | None = None,
    progress: bool = True,
) -> dict:
    """Track the faces of a video as the main job does with these options; write the JSON (and the
    drawn video) and return the JSON document."""
    tracker = face_tracker(options, load_detector(options, resolve_device(options.device), conf_threshold))
    records: list[dict] = []
    with open_video(source, options) as video:
        plan = picture_plan(video.info, options)
        info = output_info(video.info, plan.field_order, deinterlace=True)  # the pictures: fields at field rate
        pictures = None if limit is None else limit * (2 if plan.fields else 1)
        drawing = VideoSink(draw_path, info, DRAW_SETTINGS, copy_streams=False) if draw_path else None
        with drawing or contextlib.nullcontext(), \
                progress_bar(frames_to_expect(info, pictures), source.name, progress) as bar:
            pipeline = analysis_pipeline(video, tracker, options, frames=limit, plan=plan)
            pipeline.add("record", record_stage(records, drawing, bar.update)).run()
    document = tracks_document(info, records, plan.field_order)
    write_json_atomic(document, json_path)
    log.info(
        "%d frames, detector ran on %d, %d track(s)",
        len(records),
        tracker.detected_frames,
        len({face["track"] for record in records for face in record["faces"]}),
    )
    return document
