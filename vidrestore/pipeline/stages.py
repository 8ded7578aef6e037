"""The stages of the data path (DESIGN.md section 2) and the records that flow between them.

    decode -> [fields] -> analyse -> restore -> composite ([upscale], paste) -> [weave] -> encode
    Frame                 AnalysedFrame  RestoredBatch                         OutputFrame

Interlaced sources go through the bracketed stages: each frame becomes its two fields (full-height
pictures at double rate), faces are tracked and restored on those, and the restored fields are woven
back into one frame (video/fields.py). With `--upscale` the composite brings each batch to the output
size just before pasting into it: no queue between stages ever holds batches of output-size frames
(at 1080p x4 a queue of them would take gigabytes). Each stage function takes the iterable of items from the stage
before and yields its own, in order, so `Pipeline` can run it in a thread. Frames no face touched keep their decoded picture and go to
the encoder without any colour conversion (with `--model none` no frame is ever converted).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import cv2
import numpy as np
import torch

from vidrestore.errors import MediaError
from vidrestore.faces.align import paste_regions
from vidrestore.faces.tracker import FaceTracker
from vidrestore.faces.types import FrameFaces, TrackedFace
from vidrestore.models.crop_restorer import CropRestorer
from vidrestore.models.upsampler import Background
from vidrestore.video.fields import check_pair, field_frames, weave
from vidrestore.video.patch import (
    can_patch,
    keep_chroma_where_changed,
    patch_decoded_picture,
)
from vidrestore.video.sink import VideoSink
from vidrestore.video.source import VideoSource
from vidrestore.video.types import Frame, VideoInfo

log = logging.getLogger(__name__)

T = TypeVar("T")


# --- records between stages ----------------------------------------------------------------------


@dataclass(eq=False)
class AnalysedFrame:
    """A decoded frame and the faces to restore in it (after face selection); `detected`: the detector ran on it."""

    frame: Frame
    faces: list[TrackedFace] = field(default_factory=list)
    detected: bool = False


@dataclass(eq=False)
class RestoredBatch:
    """Consecutive frames and the restored crops of all their faces, ready to paste back."""

    items: list[AnalysedFrame]
    face_frame: np.ndarray  # position in `items` of each face's frame, (N,)
    crops: torch.Tensor | None = None  # restored (N,3,s,s) RGB 0..255, on the restorer's device
    matrices: np.ndarray | None = None  # frame -> crop similarity transforms (N,2,3)


@dataclass(eq=False)
class OutputFrame:
    """A finished frame for the encoder, with its pixels before restoration when a comparison is wanted;
    `faces`: the faces restored in it, `found`: the faces the analysis found (restored or not)."""

    frame: Frame
    faces: int
    before: np.ndarray | None = None
    found: int = 0


@dataclass
class JobCounters:
    """Counts the stages keep while they run, for the report."""

    frames: int = 0
    faces: int = 0
    frames_with_faces: int = 0
    encoded: int = 0

    def count(self, faces: int) -> None:
        """One frame of the output with `faces` faces in it."""
        self.frames += 1
        self.faces += faces
        self.frames_with_faces += faces > 0


# --- face selection ------------------------------------------------------------------------------


def select_faces(faces: Sequence[T], height: int, width: int, *, only_center: bool, largest: bool) -> list[T]:
    """All faces, or only the one nearest the centre / the largest (GFPGAN's only_center_face)."""
    if len(faces) <= 1 or not (only_center or largest):
        return list(faces)
    boxes = np.array([np.asarray(f.box, dtype=np.float64)[:4] for f in faces])
    if only_center:
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        key = -np.linalg.norm(centres - np.array([width / 2, height / 2]), axis=1)
    else:
        key = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    return [faces[int(np.argmax(key))]]


def landmarks_of(items: Sequence[AnalysedFrame]) -> tuple[np.ndarray, np.ndarray]:
    """(face_frame (N,), landmarks (N,5,2)) of all faces of the items, in order."""
    face_frame = np.array([k for k, item in enumerate(items) for _ in item.faces], dtype=np.int64)
    points = [np.asarray(face.landmarks, dtype=np.float64) for item in items for face in item.faces]
    return face_frame, (np.stack(points) if points else np.zeros((0, 5, 2)))


# --- helpers -------------------------------------------------------------------------------------


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of at most `size` items."""
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def gather_by_faces(items: Iterable[AnalysedFrame], max_faces: int, max_frames: int) -> Iterator[list[AnalysedFrame]]:
    """Consecutive frames grouped until they hold `max_faces` faces or `max_frames` frames."""
    group: list[AnalysedFrame] = []
    faces = 0
    for item in items:
        group.append(item)
        faces += len(item.faces)
        if faces >= max_faces or len(group) >= max_frames:
            yield group
            group, faces = [], 0
    if group:
        yield group


def frame_size(frame: Frame) -> tuple[int, int]:
    """Height and width of a frame, without converting its pixels."""
    native = frame.native
    return (native.height, native.width) if native is not None else frame.image.shape[:2]


def analysis_view(frame: Frame, long_side: int) -> tuple[np.ndarray, float]:
    """The frame as RGB uint8 with its long side at most `long_side`, and the scale used.

    From the decoded picture this is one swscale pass (scale and convert together); the frame's
    own full-size RGB copy is not made here, only later for frames whose faces are restored.
    """
    height, width = frame_size(frame)
    scale = min(1.0, long_side / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    native = frame.native
    if native is not None:
        image = native.to_ndarray(format="rgb24", width=size[0], height=size[1],
                                  interpolation="AREA", src_color_range=native.color_range)
    else:
        image = frame.image
        if image.dtype != np.uint8:
            image = (image >> 8).astype(np.uint8)
        if scale < 1.0:
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return image, (size[0] / width)


def scale_face(face: TrackedFace, factor: float) -> TrackedFace:
    """A tracked face with its box and landmarks multiplied by `factor`."""
    if factor == 1.0:
        return face
    raw = None if face.raw_landmarks is None else np.asarray(face.raw_landmarks) * factor
    return dataclasses.replace(face, box=np.asarray(face.box) * factor,
                               landmarks=np.asarray(face.landmarks) * factor, raw_landmarks=raw)


def upscale_batch(background: Background, batch: RestoredBatch) -> None:
    """Bring a batch's frames to the output size in place (the background upsampler batched over them),
    and the faces' matrices with them, so the restored crops (restored from the source's pixels) are
    pasted at the output size: faces keep the model's detail instead of losing it to a later resize."""
    sources = [item.frame.image for item in batch.items]
    outputs = background.upscale(sources)
    if batch.matrices is not None:
        batch.matrices = background.paste_matrices(batch.matrices, batch.face_frame, sources, outputs)
    for item, image in zip(batch.items, outputs):
        item.frame.replace_image(image)


def paste_keeping_originals(engine: CropRestorer, batch: RestoredBatch, *, write_back: bool = True,
                            luma_only: bool = False) -> tuple[np.ndarray, list[np.ndarray | None]]:
    """Paste a batch's restored faces into their frames; returns the boxes the paste may change and
    their pixels from before it where they are used: for the write-back into a decoded picture (so it
    rewrites only what really changed), or to keep the source's chroma. Upscaled frames have no decoded
    picture to write back into, so without `luma_only` nothing of theirs is copied."""
    images = [item.frame.image for item in batch.items]
    boxes = paste_regions(images, batch.face_frame, batch.matrices, batch.crops.shape[-1])
    kept = [luma_only or (write_back and can_patch(item.frame.decoded)) for item in batch.items]
    originals = [images[k][y0:y1, x0:x1].copy() if kept[k] else None
                 for k, (x0, y0, x1, y1) in zip(batch.face_frame, boxes)]
    engine.paste(images, batch.face_frame, batch.crops, batch.matrices)
    return boxes, originals


def keep_source_chroma(batch: RestoredBatch, boxes: np.ndarray, originals: list[np.ndarray]) -> None:
    """Put the source's chroma back into the pixels the paste changed, in frames whose planes cannot be
    patched one by one (the others keep it plane for plane in the write-back); the rest of each box
    stays as it was, not sent through a colour conversion and back."""
    for n, k in enumerate(batch.face_frame):
        frame = batch.items[k].frame
        if not can_patch(frame.decoded):
            x0, y0, x1, y1 = boxes[n]
            keep_chroma_where_changed(frame.image[y0:y1, x0:x1], originals[n])


def side_by_side(item: OutputFrame) -> Frame:
    """The before | after picture of a frame, with the frame's own timing (the frame itself is not converted)."""
    after = item.frame.rgb()
    before = after if item.before is None else item.before
    f = item.frame
    return Frame.from_rgb(np.concatenate([before, after], axis=1), f.index, f.pts, f.time_base, f.duration)


# --- the stages ----------------------------------------------------------------------------------

StageFn = Callable[[Iterable], Iterable]


def decode_stage(source: VideoSource) -> StageFn:
    """Source stage: the source decodes here, in the stage's own thread; the frames, in order."""

    def decode(_: Iterable[None]) -> Iterator[Frame]:
        yield from source.frames()

    return decode


def fields_stage(info: VideoInfo, field_order: str, weaving: bool = True) -> StageFn:
    """Fields: each interlaced frame as its two fields, first in time first (bwdif, each field's lines exact)."""
    return lambda frames: field_frames(frames, info, field_order, weaving=weaving)


def analyse_stage(tracker: FaceTracker | None, chunk: int, *, only_center: bool = False,
                  largest: bool = False, long_side: int = 640) -> StageFn:
    """Face analysis: track faces over chunks of frames (batched detection every K frames).

    The tracker sees each frame scaled to `long_side` (the detector and optical flow work at that
    size anyway), converted straight from the decoded picture; its results are scaled back.

    With a smoothing lag the tracker returns frames later than it gets them; frames wait here until
    their result comes, and the rest come out at the end of the stream.
    """

    def with_faces(item: tuple[Frame, float], result: FrameFaces) -> AnalysedFrame:
        """The frame with the faces selected from its analysis, in the frame's own pixels."""
        frame, scale = item
        faces = [scale_face(face, 1.0 / scale) for face in result.faces]
        height, width = frame_size(frame)
        selected = select_faces(faces, height, width, only_center=only_center, largest=largest)
        return AnalysedFrame(frame, selected, result.detected)

    def analyse(frames: Iterable[Frame]) -> Iterator[AnalysedFrame]:
        waiting: deque[tuple[Frame, float]] = deque()
        for group in chunked(frames, chunk):
            if tracker is None:
                yield from (AnalysedFrame(frame) for frame in group)
                continue
            views = [analysis_view(frame, long_side) for frame in group]
            waiting.extend((frame, scale) for frame, (_, scale) in zip(group, views))
            for result in tracker.process([image for image, _ in views]):
                yield with_faces(waiting.popleft(), result)
        for result in tracker.flush() if tracker is not None else ():
            yield with_faces(waiting.popleft(), result)

    return analyse


def restore_stage(engine: CropRestorer | None, max_faces: int, max_frames: int) -> StageFn:
    """Restoration: crops of the faces of several frames restored in one batched call."""

    def restore(items: Iterable[AnalysedFrame]) -> Iterator[RestoredBatch]:
        if engine is None:  # --model none: faces pass through, found but not restored
            yield from (RestoredBatch([item], landmarks_of([item])[0]) for item in items)
            return
        for group in gather_by_faces(items, max_faces, max_frames):
            face_frame, landmarks = landmarks_of(group)
            if len(face_frame) == 0:
                yield RestoredBatch(group, face_frame)
                continue
            crops, matrices = engine.restore([item.frame.image for item in group], face_frame, landmarks)
            yield RestoredBatch(group, face_frame, crops, matrices)

    return restore


def composite_stage(engine: CropRestorer | None, counters: JobCounters, background: Background | None = None,
                    keep_before: bool = False, write_back: bool = True, luma_only: bool = False) -> StageFn:
    """Composite: paste restored faces back into their frames; untouched frames keep their decoded picture.

    With a `background` each batch is first brought to the output size (`upscale_batch`), here rather
    than in a stage of its own, so at most one batch of output-size frames waits before the encoder's queue.

    With `write_back` the pasted regions go back into the decoded picture (for the encoder); without
    it the frame keeps its RGB pixels (live sinks show RGB). With `luma_only` only the restored luma
    goes in: the decoded picture's chroma planes stay as they are (`--colour source`).
    """

    def composite(batches: Iterable[RestoredBatch]) -> Iterator[OutputFrame]:
        for batch in batches:
            if background is not None:
                upscale_batch(background, batch)
            pasted = engine is not None and batch.crops is not None
            touched = set(batch.face_frame.tolist()) if pasted else set()
            before = {k: batch.items[k].frame.image.copy() for k in touched} if keep_before else {}
            boxes, originals = np.zeros((0, 4), dtype=np.int64), []
            if pasted:
                boxes, originals = paste_keeping_originals(engine, batch, write_back=write_back,
                                                             luma_only=luma_only)
                if luma_only:
                    keep_source_chroma(batch, boxes, originals)
            for k, item in enumerate(batch.items):
                if k not in touched:
                    item.frame.drop_pixels()  # nothing changed: the encoder takes the decoded picture
                elif write_back:
                    faces = np.flatnonzero(batch.face_frame == k)
                    patch_decoded_picture(item.frame, boxes[faces], [originals[n] for n in faces],
                                          luma_only=luma_only)
                if item.frame.field_of is None:  # fields are counted as the frames they are woven into
                    counters.count(len(item.faces))
                yield OutputFrame(item.frame, len(item.faces) if k in touched else 0, before.get(k), len(item.faces))

    return composite


def weave_stage(counters: JobCounters) -> StageFn:
    """Weave: the two restored fields of each frame back into one interlaced frame (each field's own
    lines from its picture; a frame neither field changed is its decoded picture, untouched). A frame
    counts the faces of the field that has more (a face is in both fields of a frame)."""

    def weave_fields(items: Iterable[OutputFrame]) -> Iterator[OutputFrame]:
        for pair in chunked(items, 2):
            if len(pair) != 2:
                raise MediaError(f"frame {pair[0].frame.index}: its second field never came")
            first, second = pair
            check_pair(first.frame, second.frame)
            parent = first.frame.field_of.parent
            before = parent.rgb() if first.before is not None or second.before is not None else None
            found = max(first.found, second.found)
            counters.count(found)
            yield OutputFrame(weave(first.frame, second.frame), first.faces + second.faces, before, found)

    return weave_fields


def encode_stage(sink: VideoSink, compare: VideoSink | None, on_frame: Callable[[], None]) -> StageFn:
    """Sink stage: the encoder runs here, in the stage's own thread, to the end of the stream (the
    comparison video is written by its sink's own thread); the files are renamed into place later."""

    def encode(items: Iterable[OutputFrame]) -> Iterator[None]:
        for item in items:
            if compare is not None:
                compare.write(side_by_side(item))
            sink.encode(item.frame)
            on_frame()
        sink.finish()
        yield from ()

    return encode
