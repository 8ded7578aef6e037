"""The structure check of `vidrestore qc`: the output holds every source frame at its timestamp and the
source's other streams, packets and tags unchanged.

Nothing is decoded here except one picture per file (the probe): frames are compared by their demuxed
packet timestamps, in seconds, to the coarser of the two time bases and never finer than a millisecond
(Matroska stores milliseconds; MP4 stores a stream's start offset in its movie time scale, 1/1000 as
FFmpeg writes it, so a source starting at 512/15360 s comes back at 507/15360 s); audio, subtitle and data
packets by their bytes and times. Checks run in a fixed
order and each names its first mismatch, so a batch script reads one line.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from vidrestore.archive.plan import FrameIndex, read_frame_index
from vidrestore.errors import MediaError, error_line
from vidrestore.video.probe import COPYABLE_TYPES, clean_tags, codec_name, open_input, probe, video_stream
from vidrestore.video.remux import DERIVED_CONTAINER_TAGS
from vidrestore.video.types import VideoInfo

log = logging.getLogger(__name__)

TIME_PRECISION = Fraction(1, 1000)  # seconds: what every container keeps of a timestamp

# AVFieldOrder: 0 unknown, 1 progressive, 2 tt, 3 bb, 4 tb, 5 bt; unknown is read as progressive
FIELD_ORDER_NAMES = {0: "progressive", 1: "progressive", 2: "tt", 3: "bb", 4: "tb", 5: "bt"}


@dataclass(frozen=True)
class Check:
    """One structural property compared: its name, whether it matches, and what differs (or what matched)."""

    name: str
    ok: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


@dataclass(frozen=True)
class StructureResult:
    """Every structural check, in order; the first failing one is the verdict."""

    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def first_failure(self) -> Check | None:
        return next((c for c in self.checks if not c.ok), None)

    def to_json(self) -> dict[str, Any]:
        failure = self.first_failure
        return {"ok": self.ok, "first_failure": None if failure is None else f"{failure.name}: {failure.detail}",
                "checks": [c.to_json() for c in self.checks]}


# --- frames --------------------------------------------------------------------------------------


def time_tolerance(a: Fraction, b: Fraction) -> Fraction:
    """Two times in these time bases are the same when they differ by less than this (seconds)."""
    return max(a, b, TIME_PRECISION)


def compare_frames(source: FrameIndex, output: FrameIndex) -> Check:
    """Every source frame at its time in the output, and no other frame; the first one missing or extra named."""
    step = time_tolerance(source.time_base, output.time_base)
    s_times = [p * source.time_base for p in source.pts]
    o_times = [p * output.time_base for p in output.pts]
    counts = f"the output has {len(o_times)} frames, the source {len(s_times)}"
    i = j = 0
    while i < len(s_times) and j < len(o_times) and abs(s_times[i] - o_times[j]) < step:
        i, j = i + 1, j + 1
    if i == len(s_times) and j == len(o_times):
        return Check("frames", True, f"{len(s_times)} frames, every one at its source timestamp")
    if j == len(o_times) or (i < len(s_times) and s_times[i] < o_times[j]):
        there = f"; the output's frame {j} is at t={float(o_times[j]):.3f} s" if j < len(o_times) else ""
        return Check("frames", False, f"source frame {i} (t={float(s_times[i]):.3f} s) is missing from the "
                     f"output ({counts}{there})")
    return Check("frames", False, f"output frame {j} (t={float(o_times[j]):.3f} s) is not in the source ({counts})")


# --- the video stream's properties ---------------------------------------------------------------


@dataclass(frozen=True)
class VideoProperties:
    """What a file says about its picture beyond the pixels: size, rotation, SAR, field order, timecode, colour."""

    size: str
    rotation: int
    sample_aspect_ratio: str
    field_order: str
    timecode: str | None
    color: str


def _timecode(container: av.container.InputContainer, stream: av.VideoStream) -> str | None:
    """The start timecode: the video stream's tag, a timecode (data) track's, or the container's."""
    for tags in (stream.metadata, *(s.metadata for s in container.streams if s.type == "data"), container.metadata):
        if tags.get("timecode"):
            return tags["timecode"]
    return None


def video_properties(path: Path, info: VideoInfo) -> VideoProperties:
    """The VideoProperties of a probed file."""
    with open_input(str(path)) as container:
        stream = video_stream(container, str(path))
        field_order = FIELD_ORDER_NAMES.get(int(stream.codec_context.field_order or 0), "unknown")
        timecode = _timecode(container, stream)
    sar = info.sample_aspect_ratio if info.sample_aspect_ratio and info.sample_aspect_ratio != 0 else Fraction(1)
    c = info.color
    return VideoProperties(f"{info.width}x{info.height}", info.rotation, f"{sar.numerator}:{sar.denominator}",
                           field_order, timecode,
                           f"primaries {c.primaries}, transfer {c.transfer}, matrix {c.matrix}, range {c.range}")


def compare_properties(source: VideoProperties, output: VideoProperties) -> list[Check]:
    """One check per property: equal in source and output."""
    checks = []
    for name, label in (("size", "size"), ("rotation", "rotation"), ("sample_aspect_ratio", "sample aspect ratio"),
                        ("field_order", "field order"), ("timecode", "timecode"), ("color", "colour tags")):
        a, b = getattr(source, name), getattr(output, name)
        a, b = ("none" if v is None else v for v in (a, b))
        detail = f"{a}" if a == b else f"the source has {a}, the output {b}"
        checks.append(Check(label, a == b, detail))
    return checks


# --- tags ----------------------------------------------------------------------------------------


def missing_tags(source: dict[str, str], output: dict[str, str]) -> list[str]:
    """Source tags the output lacks or holds with another value ("key=value"). Keys are compared without
    case (Matroska stores them upper-case); tags only the output has (muxer-written) are not compared,
    nor `language`, which is compared as the stream's property."""
    held = {k.lower(): v for k, v in output.items()}
    return [f"{k}={v!r}" for k, v in source.items() if k.lower() != "language" and held.get(k.lower()) != v]


def _language(stream: av.stream.Stream) -> str:
    """A stream's language, "und" (undetermined) when none is given."""
    return stream.language or "und"


def compare_container_tags(source: VideoInfo, output: VideoInfo) -> Check:
    """The source's container and video-stream tags, all in the output with the same values."""
    wanted = {k: v for k, v in source.metadata.items() if k not in DERIVED_CONTAINER_TAGS}
    lost = missing_tags(wanted, output.metadata)
    lost += [f"video {t}" for t in missing_tags(source.video_metadata, output.video_metadata)]
    if lost:
        return Check("tags", False, f"the output lacks or changed {', '.join(lost[:3])}"
                     + (f" and {len(lost) - 3} more" if len(lost) > 3 else ""))
    return Check("tags", True, f"{len(wanted) + len(source.video_metadata)} tag(s) kept")


# --- the other streams and their packets ---------------------------------------------------------


@dataclass(frozen=True)
class StreamPackets:
    """A copied stream of a file: its index, type, codec, language and tags, and per packet (time, digest)."""

    index: int
    type: str
    codec: str | None
    language: str | None
    tags: dict[str, str]
    packets: list[tuple[Fraction | None, bytes]]
    time_base: Fraction

    @property
    def label(self) -> str:
        return f"{self.type} stream #{self.index} ({self.codec})"


def copied_streams(path: Path) -> list[StreamPackets]:
    """The audio, subtitle and data streams the sink copies (those with a codec), with every packet's digest."""
    try:
        with open_input(str(path)) as container:
            streams = [s for s in container.streams if s.type in COPYABLE_TYPES and codec_name(s)]
            found = {s.index: StreamPackets(s.index, s.type, codec_name(s), _language(s), clean_tags(dict(s.metadata)),
                                            [], s.time_base or Fraction(1, 1000)) for s in streams}
            if streams:
                for pkt in container.demux(streams):
                    if not pkt.size:
                        continue
                    ts = pkt.pts if pkt.pts is not None else pkt.dts
                    time = None if ts is None else ts * pkt.time_base
                    found[pkt.stream.index].packets.append((time, hashlib.sha256(bytes(pkt)).digest()))
    except av.FFmpegError as exc:
        raise MediaError(f"cannot read the streams of {path}: {error_line(exc, os_reason=True)}") from exc
    return list(found.values())


def compare_stream(source: StreamPackets, output: StreamPackets) -> Check:
    """Codec, language, tags and every packet's bytes and time of one copied stream."""
    name = source.label
    if (source.type, source.codec, source.language) != (output.type, output.codec, output.language):
        return Check(name, False, f"the output's matching stream is {output.type} {output.codec} "
                     f"(language {output.language}), the source's {source.type} {source.codec} (language {source.language})")
    lost = missing_tags(source.tags, output.tags)
    if lost:
        return Check(name, False, f"the output lacks or changed the tag(s) {', '.join(lost[:3])}")
    step = time_tolerance(source.time_base, output.time_base)
    for k, ((s_time, s_hash), (o_time, o_hash)) in enumerate(zip(source.packets, output.packets)):
        at = "unknown time" if s_time is None else f"t={float(s_time):.3f} s"
        if s_hash != o_hash:
            return Check(name, False, f"packet {k} ({at}) differs from the source's (re-encoded?)")
        if (s_time is None) != (o_time is None) or (s_time is not None and abs(s_time - o_time) >= step):
            return Check(name, False, f"packet {k} ({at}) is at another time in the output "
                         f"({'unknown' if o_time is None else f'{float(o_time):.3f} s'})")
    if len(source.packets) != len(output.packets):
        return Check(name, False, f"the source has {len(source.packets)} packets, the output {len(output.packets)}")
    return Check(name, True, f"{len(source.packets)} packets identical")


def compare_streams(source: list[StreamPackets], output: list[StreamPackets]) -> list[Check]:
    """The copied streams paired in order; a missing or extra stream is a failure."""
    checks = [compare_stream(s, o) for s, o in zip(source, output)]
    for s in source[len(output):]:
        checks.append(Check(s.label, False, "missing from the output"))
    for o in output[len(source):]:
        checks.append(Check(f"output {o.label}", False, "is not in the source"))
    if not source and not output:
        checks.append(Check("streams", True, "no audio, subtitle or data streams"))
    return checks


def check_structure(source: Path, output: Path) -> StructureResult:
    """All structural checks of `output` against `source`, in order: frames, picture properties, tags, streams."""
    s_info, o_info = probe(source), probe(output)
    checks = [compare_frames(read_frame_index(source), read_frame_index(output))]
    checks += compare_properties(video_properties(source, s_info), video_properties(output, o_info))
    checks.append(compare_container_tags(s_info, o_info))
    checks += compare_streams(copied_streams(source), copied_streams(output))
    return StructureResult(tuple(checks))
