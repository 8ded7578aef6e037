"""The archive plan: a keyframe index of the input and chunks of frames cut at scene changes where near.

Frames are numbered in presentation order from the demuxed video packets (no decoding): frame i is
the packet with the i-th smallest PTS. A chunk is a range [start, end) of those frames; its task says
which keyframe to seek to (the last at or before the tracker's priming frames) and how far past the
end the tracker looks ahead, so a chunk boundary is invisible in the landmarks. The plan is keyed by
the input's identity and the options that change pixels, and saved as JSON in the work folder.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterable, Sequence

import av

from vidrestore.atomic import atomic_path
from vidrestore.errors import MediaError, error_line
from vidrestore.pipeline.options import RestoreOptions
from vidrestore.video.probe import open_input, video_stream

log = logging.getLogger(__name__)

PLAN_VERSION = 1
HASHED_BYTES = 1 << 20  # head and tail of the input hashed into its identity
PRIME_FRAMES = 32  # frames the tracker sees before a chunk (aligned down to the analysis chunk)
SCENE_WINDOW_SECONDS = 2.0  # a boundary moves to a scene cut at most this far away
# Options that change no pixel: left out of the plan's key, so changing them keeps the finished chunks.
NON_PIXEL_OPTIONS = frozenset({"device", "queue_size", "offline"})


@dataclass(frozen=True)
class FrameIndex:
    """The input's video frames in presentation order: PTS (stream time base) and keyframe seek points."""

    pts: tuple[int, ...]
    time_base: Fraction
    keyframes: tuple[int, ...]  # frame indices of keyframes, ascending
    seek_ts: tuple[int, ...]  # per keyframe: the timestamp (DTS, else PTS) to seek to it

    @property
    def frames(self) -> int:
        """Number of frames."""
        return len(self.pts)

    def seek_point(self, frame: int) -> int | None:
        """The seek timestamp of the last keyframe at or before `frame` (None: decode from the start)."""
        k = bisect.bisect_right(self.keyframes, frame) - 1
        return None if k <= 0 else self.seek_ts[k]


@dataclass(frozen=True)
class ChunkTask:
    """One chunk to restore: frames [start, end) of `input`, written to `path`.

    Decoding seeks to `seek_ts` (None: from the start) and drops frames before `prime_start`; the
    tracker sees frames [prime_start, lookahead_end), the encoder only [start, end). `pts` maps
    absolute frame index - prime_start to the frame's source PTS.
    """

    index: int
    input: Path
    path: Path
    start: int
    end: int
    prime_start: int
    lookahead_end: int
    seek_ts: int | None
    pts: tuple[int, ...]

    @property
    def frames(self) -> int:
        """Frames the chunk writes."""
        return self.end - self.start


@dataclass(frozen=True)
class ArchivePlan:
    """The job's plan: the input's identity and frames, the pixel options' key and the chunks' frame ranges."""

    input: Path
    key: str
    frames: int
    time_base: Fraction
    chunk_seconds: float
    boundaries: tuple[int, ...]  # 0 = b0 < b1 < ... < bn = frames: chunk k is [b_k, b_k+1)
    scene_cuts: tuple[int, ...] = ()

    @property
    def chunks(self) -> int:
        """Number of chunks."""
        return len(self.boundaries) - 1

    def chunk_range(self, index: int) -> tuple[int, int]:
        """(start, end) frames of chunk `index`."""
        return self.boundaries[index], self.boundaries[index + 1]

    def to_json(self) -> dict[str, Any]:
        """The plan as a JSON-ready mapping."""
        data = dataclasses.asdict(self)
        data.update(version=PLAN_VERSION, input=str(self.input), time_base=str(self.time_base),
                    boundaries=list(self.boundaries), scene_cuts=list(self.scene_cuts))
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ArchivePlan":
        """The plan a `to_json` mapping describes (KeyError/ValueError when it is not one)."""
        if data.get("version") != PLAN_VERSION:
            raise ValueError(f"plan version {data.get('version')}")
        return cls(Path(data["input"]), data["key"], int(data["frames"]), Fraction(data["time_base"]),
                   float(data["chunk_seconds"]), tuple(data["boundaries"]), tuple(data.get("scene_cuts", ())))


# --- identity ------------------------------------------------------------------------------------


def input_identity(path: Path) -> dict[str, Any]:
    """Size, modification time and a hash of the head and tail: what says the input is unchanged."""
    stat = path.stat()
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        digest.update(f.read(HASHED_BYTES))
        f.seek(max(0, stat.st_size - HASHED_BYTES))
        digest.update(f.read(HASHED_BYTES))
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256_head_tail": digest.hexdigest()}


def pixel_options(options: RestoreOptions) -> dict[str, Any]:
    """The options that change the output's pixels (all but device, queue size and offline)."""
    return {k: v for k, v in dataclasses.asdict(options).items() if k not in NON_PIXEL_OPTIONS}


def plan_key(input: Path, options: RestoreOptions, chunk_seconds: float, container: str) -> str:
    """The hash that names a plan: input identity, pixel options, chunk length and output container."""
    blob = json.dumps({"input": input_identity(input), "options": pixel_options(options),
                       "chunk_seconds": chunk_seconds, "container": container}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# --- the frame index -----------------------------------------------------------------------------


class UnindexableVideo(MediaError):
    """A video whose frames cannot be indexed by timestamp; `problem` says what, without the path."""

    def __init__(self, message: str, problem: str) -> None:
        super().__init__(message)
        self.problem = problem


def read_frame_index(path: Path) -> FrameIndex:
    """The video packets' PTS and keyframes, demuxed without decoding; MediaError for what cannot be cut."""
    try:
        with open_input(str(path)) as container:
            stream = video_stream(container, str(path))
            packets = [(p.pts, p.dts, p.is_keyframe) for p in container.demux(stream)
                       if p.size and not p.is_discard]
            time_base = stream.time_base
    except av.FFmpegError as exc:
        raise MediaError(f"cannot index {path}: {error_line(exc, os_reason=True)}") from exc
    return index_from_packets(packets, time_base, path)


def index_from_packets(packets: Sequence[tuple[int | None, int | None, bool]], time_base: Fraction,
                       path: Path) -> FrameIndex:
    """Frames in PTS order and their keyframes' seek timestamps, from (pts, dts, key) in decode order."""
    if not packets:
        raise UnindexableVideo(f"{path} has no video frames", "has no video frames")
    if any(pts is None for pts, _, _ in packets):
        raise UnindexableVideo(f"{path}: video packets without timestamps cannot be cut frame-exactly "
                               "(remux it into .mkv or .mp4 first)", "has video packets without timestamps")
    order = sorted(pts for pts, _, _ in packets)
    if len(set(order)) != len(order):
        raise UnindexableVideo(f"{path}: two video frames share a timestamp; it cannot be cut frame-exactly",
                               "has two video frames that share a timestamp")
    position = {pts: k for k, pts in enumerate(order)}
    keys = sorted((position[pts], pts if dts is None else dts) for pts, dts, key in packets if key)
    if not keys or keys[0][0] != 0:
        keys.insert(0, (0, order[0]))
    return FrameIndex(tuple(order), time_base, tuple(k for k, _ in keys), tuple(ts for _, ts in keys))


# --- chunk boundaries ----------------------------------------------------------------------------


def nominal_boundaries(index: FrameIndex, chunk_seconds: float) -> list[int]:
    """Frames where chunks of about `chunk_seconds` would start (by timestamps, so VFR is handled)."""
    step = Fraction(chunk_seconds) / index.time_base
    first = index.pts[0]
    marks, target = [], first + step
    for k, pts in enumerate(index.pts):
        if pts >= target:
            marks.append(k)
            while target <= pts:
                target += step
    if marks and index.frames - marks[-1] < marks[0] / 2:
        marks.pop()  # a last chunk shorter than half the others joins the one before
    return marks


def snap_to_cuts(marks: Iterable[int], cuts: Sequence[int], window: int) -> list[int]:
    """Each boundary moved to the nearest scene cut within `window` frames; order kept, none repeated."""
    snapped: list[int] = []
    for mark in marks:
        near = [c for c in cuts if abs(c - mark) <= window]
        best = min(near, key=lambda c: (abs(c - mark), c)) if near else mark
        if best > (snapped[-1] if snapped else 0):
            snapped.append(best)
    return snapped


def scene_cuts_near(path: Path, index: FrameIndex, marks: Sequence[int], window: int) -> list[int]:
    """Scene cuts (the tracker's thumbnail test) in the `window` frames around each boundary."""
    from vidrestore.faces.tracker import find_scene_cuts

    cuts: list[int] = []
    for mark in marks:
        first, last = max(1, mark - window), min(index.frames, mark + window + 1)
        thumbs = decode_range(path, index, first - 1, last)
        cuts.extend(first - 1 + c for c in find_scene_cuts(thumbs) if c > 0)
    return sorted(set(cuts))


def decode_range(path: Path, index: FrameIndex, first: int, end: int) -> list:
    """RGB thumbnails-to-be (small RGB arrays) of frames [first, end), decoded from the keyframe before."""
    wanted = {index.pts[k]: k for k in range(first, end)}
    pictures: dict[int, Any] = {}
    with open_input(str(path)) as container:
        stream = video_stream(container, str(path))
        seek = index.seek_point(first)
        if seek is not None:
            container.seek(seek, stream=stream, backward=True)
        for frame in container.decode(stream):
            if frame.pts in wanted:
                pictures[wanted[frame.pts]] = frame.to_ndarray(format="rgb24", width=128, height=72)
            if frame.pts is not None and frame.pts >= index.pts[end - 1]:
                break
    return [pictures[k] for k in sorted(pictures)]


def make_plan(input: Path, options: RestoreOptions, chunk_seconds: float, container: str,
              index: FrameIndex | None = None) -> ArchivePlan:
    """Index the input and cut it into chunks of about `chunk_seconds`, at scene cuts where near."""
    index = index or read_frame_index(input)
    marks = nominal_boundaries(index, chunk_seconds)
    rate = index.frames / max(Fraction(1, 1000), (index.pts[-1] - index.pts[0] + 1) * index.time_base)
    window = max(1, min(round(SCENE_WINDOW_SECONDS * float(rate)), round(chunk_seconds * float(rate) / 4)))
    cuts = scene_cuts_near(input, index, marks, window) if marks else []
    bounds = [0, *snap_to_cuts(marks, cuts, window), index.frames]
    key = plan_key(input, options, chunk_seconds, container)
    return ArchivePlan(input, key, index.frames, index.time_base, chunk_seconds, tuple(bounds), tuple(cuts))


def chunk_task(plan: ArchivePlan, index: FrameIndex, number: int, path: Path, options: RestoreOptions) -> ChunkTask:
    """The task of chunk `number`: its frames, the tracker's priming and look-ahead, the seek point."""
    start, end = plan.chunk_range(number)
    align = max(1, options.analysis_chunk)
    prime_start = max(0, (start - PRIME_FRAMES) // align * align)
    lookahead = end + options.smoothing_lag
    lookahead_end = min(plan.frames, prime_start + -(-(lookahead - prime_start) // align) * align)
    return ChunkTask(number, plan.input, path, start, end, prime_start, lookahead_end,
                     index.seek_point(prime_start), index.pts[prime_start:lookahead_end])


def save_plan(plan: ArchivePlan, path: Path) -> None:
    """Write the plan as JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(plan.to_json(), indent=1))


def load_plan(path: Path) -> ArchivePlan | None:
    """The plan saved at `path`, None when there is none or it cannot be read."""
    try:
        return ArchivePlan.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("%s cannot be read (%s): planning again", path, exc)
        return None
