"""The structure check of `vidrestore qc`: the output holds every source frame at its timestamp and the
source's other streams, packets, chapters, attachments and tags unchanged.

Nothing is decoded here except one picture per file (the probe): frames are compared by their demuxed
packet timestamps (video/timestamps: in seconds, to the coarser time base, never finer than a
millisecond); audio, subtitle and data packets by their bytes and times. Checks run in a fixed order and
each names its first mismatch, so a batch script reads one line.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from vidrestore.archive.plan import FrameIndex, UnindexableVideo, read_frame_index
from vidrestore.errors import MediaError, error_line
from vidrestore.video.probe import COPYABLE_TYPES, clean_tags, codec_name, open_input, probe, video_stream
from vidrestore.video.remux import DERIVED_CONTAINER_TAGS
from vidrestore.video.timestamps import time_tolerance, timing_mismatch
from vidrestore.video.types import VideoInfo

log = logging.getLogger(__name__)


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


def compare_frames(source: FrameIndex, output: FrameIndex) -> Check:
    """Every source frame at its time in the output, and no other frame; the first one missing or extra named."""
    mismatch = timing_mismatch(source.pts, source.time_base, output.pts, output.time_base)
    if mismatch is None:
        return Check("frames", True, f"{source.frames} frames, every one at its source timestamp")
    return Check("frames", False, mismatch)


def check_frames(source: Path, output: Path) -> Check:
    """compare_frames of the two files' indexes; an output that cannot be indexed fails, named."""
    source_index = read_frame_index(source)
    try:
        output_index = read_frame_index(output)
    except UnindexableVideo as exc:
        return Check("frames", False, f"the output {exc.problem}")
    return compare_frames(source_index, output_index)


# --- the video stream's properties ---------------------------------------------------------------


@dataclass(frozen=True)
class VideoProperties:
    """What a file says about its picture beyond the pixels: size, pixel format and bit depth, rotation, SAR,
    field order, timecode, colour, language and disposition flags."""

    size: str
    pixel_format: str
    rotation: int
    sample_aspect_ratio: str
    field_order: str
    timecode: str | None
    color: str
    language: str
    disposition: str


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
        # the encoder writes the one video stream without the source's `default` flag (its disposition is not
        # part of the probed VideoInfo the sink gets); a player takes the only video stream either way
        language, disposition = _language(stream), disposition_names(stream, int(av.stream.Disposition.default))
    sar = info.sample_aspect_ratio if info.sample_aspect_ratio and info.sample_aspect_ratio != 0 else Fraction(1)
    c = info.color
    return VideoProperties(f"{info.width}x{info.height}", f"{info.pix_fmt} ({info.bit_depth}-bit)", info.rotation,
                           f"{sar.numerator}:{sar.denominator}", field_order, timecode,
                           f"primaries {c.primaries}, transfer {c.transfer}, matrix {c.matrix}, range {c.range}",
                           language, disposition)


def compare_properties(source: VideoProperties, output: VideoProperties) -> list[Check]:
    """One check per property: equal in source and output."""
    checks = []
    for name, label in (("size", "size"), ("pixel_format", "pixel format"), ("rotation", "rotation"),
                        ("sample_aspect_ratio", "sample aspect ratio"), ("field_order", "field order"),
                        ("timecode", "timecode"), ("color", "colour tags"), ("language", "video language"),
                        ("disposition", "video disposition")):
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


def disposition_names(stream: av.stream.Stream, ignored: int = 0) -> str:
    """A stream's disposition flags by name ("default+forced"), less `ignored`; "none" when none is left."""
    flags = av.stream.Disposition(int(stream.disposition) & ~ignored)
    return "+".join(f.name for f in av.stream.Disposition if f.value and f in flags) or "none"


def compare_container_tags(source: VideoInfo, output: VideoInfo) -> Check:
    """The source's container and video-stream tags, all in the output with the same values."""
    wanted = {k: v for k, v in source.metadata.items() if k not in DERIVED_CONTAINER_TAGS}
    lost = missing_tags(wanted, output.metadata)
    lost += [f"video {t}" for t in missing_tags(source.video_metadata, output.video_metadata)]
    if lost:
        return Check("tags", False, f"the output lacks or changed {', '.join(lost[:3])}"
                     + (f" and {len(lost) - 3} more" if len(lost) > 3 else ""))
    return Check("tags", True, f"{len(wanted) + len(source.video_metadata)} tag(s) kept")


# --- chapters and attachments --------------------------------------------------------------------


def chapters_of(path: Path) -> list[tuple[Fraction, Fraction, str]]:
    """A file's chapters: (start, end) in seconds and title ("" when untitled)."""
    with open_input(str(path)) as container:
        return [(Fraction(c["start"]) * c["time_base"], Fraction(c["end"]) * c["time_base"],
                 dict(c.get("metadata") or {}).get("title", "")) for c in container.chapters()]


def compare_chapters(source: list[tuple[Fraction, Fraction, str]],
                     output: list[tuple[Fraction, Fraction, str]]) -> Check:
    """The source's chapters in the output, same times (to TIME_PRECISION) and titles; the first differing named."""
    step = time_tolerance(Fraction(0), Fraction(0))
    for k, (s, o) in enumerate(zip(source, output)):
        if s[2] != o[2] or abs(s[0] - o[0]) >= step or abs(s[1] - o[1]) >= step:
            return Check("chapters", False, f"chapter {k} is {_chapter(o)} in the output, {_chapter(s)} in the source")
    if len(source) != len(output):
        return Check("chapters", False, f"the source has {len(source)} chapters, the output {len(output)}")
    return Check("chapters", True, f"{len(source)} chapter(s) kept")


def _chapter(chapter: tuple[Fraction, Fraction, str]) -> str:
    start, end, title = chapter
    return f"{title!r} {float(start):.3f}-{float(end):.3f} s"


def attachments_of(path: Path) -> list[str]:
    """A file's attachments (fonts, cover files of Matroska), each as "filename (mimetype)"."""
    with open_input(str(path)) as container:
        return [f"{s.metadata.get('filename', '?')} ({s.metadata.get('mimetype', '?')})"
                for s in container.streams if s.type == "attachment"]


def compare_attachments(source: list[str], output: list[str]) -> Check:
    """The source's attachments, all in the output."""
    lost = [a for a in source if a not in output]
    if lost:
        return Check("attachments", False, f"the output lacks {', '.join(lost[:3])}")
    return Check("attachments", True, f"{len(source)} attachment(s)")


# --- the other streams and their packets ---------------------------------------------------------


@dataclass(frozen=True)
class StreamPackets:
    """A copied stream of a file: its index, type, codec, language, disposition and tags, and per packet
    (time, digest)."""

    index: int
    type: str
    codec: str | None
    language: str | None
    disposition: str
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
            found = {s.index: StreamPackets(s.index, s.type, codec_name(s), _language(s), disposition_names(s),
                                            clean_tags(dict(s.metadata)),
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
    if source.disposition != output.disposition:
        return Check(name, False, f"the source's disposition is {source.disposition}, the output's {output.disposition}")
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
    checks = [check_frames(source, output)]
    checks += compare_properties(video_properties(source, s_info), video_properties(output, o_info))
    checks.append(compare_container_tags(s_info, o_info))
    checks.append(compare_chapters(chapters_of(source), chapters_of(output)))
    checks.append(compare_attachments(attachments_of(source), attachments_of(output)))
    checks += compare_streams(copied_streams(source), copied_streams(output))
    return StructureResult(tuple(checks))
