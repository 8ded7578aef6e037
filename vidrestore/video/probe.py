"""Probe a video without trusting container headers: what is decoded is what counts."""

from __future__ import annotations

import logging
import os
from fractions import Fraction
from typing import Any

import av

from vidrestore.errors import MediaError, error_line
from vidrestore.video.paths import check_input, is_url
from vidrestore.video.types import FIELD_ORDER_NAMES, ColorInfo, StreamInfo, VideoInfo

log = logging.getLogger(__name__)

COPYABLE_TYPES = ("audio", "subtitle", "data")
# Per-stream tags the muxer writes by itself; copying them would carry stale values.
DERIVED_TAGS = {"DURATION", "duration", "encoder", "ENCODER", "NUMBER_OF_FRAMES", "NUMBER_OF_BYTES",
                "_STATISTICS_TAGS", "_STATISTICS_WRITING_APP", "_STATISTICS_WRITING_DATE_UTC", "BPS"}

# The names FFmpeg gives the colour tags (libavutil av_color_*_name, what ffprobe prints), by enum value.
COLOR_RANGE_NAMES = {0: "unknown", 1: "tv", 2: "pc"}
COLOR_PRIMARIES_NAMES = {0: "reserved", 1: "bt709", 2: "unknown", 3: "reserved", 4: "bt470m", 5: "bt470bg",
                         6: "smpte170m", 7: "smpte240m", 8: "film", 9: "bt2020", 10: "smpte428", 11: "smpte431",
                         12: "smpte432", 22: "ebu3213", 256: "vgamut"}
COLOR_TRANSFER_NAMES = {0: "reserved", 1: "bt709", 2: "unknown", 3: "reserved", 4: "bt470m", 5: "bt470bg",
                        6: "smpte170m", 7: "smpte240m", 8: "linear", 9: "log100", 10: "log316", 11: "iec61966-2-4",
                        12: "bt1361e", 13: "iec61966-2-1", 14: "bt2020-10", 15: "bt2020-12", 16: "smpte2084",
                        17: "smpte428", 18: "arib-std-b67", 256: "vlog"}
COLOR_SPACE_NAMES = {0: "gbr", 1: "bt709", 2: "unknown", 3: "reserved", 4: "fcc", 5: "bt470bg", 6: "smpte170m",
                     7: "smpte240m", 8: "ycgco", 9: "bt2020nc", 10: "bt2020c", 11: "smpte2085",
                     12: "chroma-derived-nc", 13: "chroma-derived-c", 14: "ictcp", 15: "ipt-c2", 16: "ycgco-re",
                     17: "ycgco-ro"}


def open_input(path: str | os.PathLike, options: dict[str, str] | None = None) -> av.container.InputContainer:
    """Open a file or URL with PyAV; any failure becomes a MediaError naming it."""
    src = check_input(path)
    try:
        return av.open(src, "r", options=options or {})
    except av.FFmpegError as exc:
        raise MediaError(f"cannot open {src}: not a readable media file ({error_line(exc, os_reason=True)})") from exc
    except OSError as exc:
        raise MediaError(f"cannot open {src}: {exc}") from exc


def codec_name(stream: av.stream.Stream) -> str | None:
    """FFmpeg's name of a stream's codec; data streams (no codec context) included."""
    if stream.codec_context is not None:
        return stream.codec_context.name
    return getattr(stream, "name", None)


def video_stream(container: av.container.InputContainer, path: str) -> av.VideoStream:
    """The main video stream (cover art excluded); MediaError when there is none."""
    for s in container.streams.video:
        if not s.disposition & av.stream.Disposition.attached_pic:
            return s
    kinds = ", ".join(sorted({s.type for s in container.streams})) or "no streams"
    raise MediaError(f"no video stream in {path} (found: {kinds})")


def bit_depth(pix_fmt: str | None) -> int:
    """Bits per component of a pixel format (8 when unknown)."""
    if not pix_fmt:
        return 8
    try:
        return max(c.bits for c in av.VideoFormat(pix_fmt).components)
    except (ValueError, AttributeError):
        return 8


def clean_tags(tags: dict[str, str]) -> dict[str, str]:
    """Tags worth carrying to the output (muxer-written statistics dropped)."""
    return {k: v for k, v in tags.items() if k not in DERIVED_TAGS}


def _duration(container: av.container.InputContainer, stream: av.VideoStream) -> float | None:
    """Stream duration, else its DURATION tag (Matroska), else the container's, else None."""
    if stream.duration is not None and stream.time_base:
        return float(stream.duration * stream.time_base)
    tag = stream.metadata.get("DURATION")
    if tag:
        try:
            h, m, s = tag.split(":")
            return int(h) * 3600 + int(m) * 60 + float(s)
        except ValueError:
            pass
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _first_frame(container: av.container.InputContainer, stream: av.VideoStream) -> av.VideoFrame | None:
    """Decode the first picture (for rotation, real pixel format and colour); None if none decodes."""
    for packet in container.demux(stream):
        try:
            for frame in packet.decode():
                return frame
        except av.error.InvalidDataError:
            continue
    return None


def field_order_of(stream: av.VideoStream, first: av.VideoFrame) -> str:
    """tff, bff or progressive: the stream's field order where it names one, else "tff" for an
    interlaced first frame (the common order; --field-order corrects it), else progressive."""
    named = FIELD_ORDER_NAMES.get(int(stream.codec_context.field_order or 0))
    if named is not None and (named != "progressive" or not first.interlaced_frame):
        return named
    return "tff" if first.interlaced_frame else "progressive"


TIMECODE_TAGS = ("timecode", "reel_name")


def _with_timecode_tags(tags: dict[str, str], others: tuple[StreamInfo, ...]) -> dict[str, str]:
    """The video stream's tags with the timecode and reel name of a timecode track added where it lacks
    them: the QuickTime muxer rebuilds that track from these tags of the video stream it refers to."""
    tags = dict(tags)
    for stream in others:
        if stream.type == "data" and stream.codec is None:
            for key in TIMECODE_TAGS:
                if key in stream.metadata and key not in tags:
                    tags[key] = stream.metadata[key]
    return tags


def probe_container(container: av.container.InputContainer, path: str) -> VideoInfo:
    """Build a VideoInfo from an open input container; decodes one frame, then rewinds."""
    vs = video_stream(container, path)
    cc = vs.codec_context
    others = tuple(
        StreamInfo(index=s.index, type=s.type, codec=codec_name(s), time_base=s.time_base,
                   language=s.language, metadata=clean_tags(dict(s.metadata)))
        for s in container.streams if s.index != vs.index and s.type in COPYABLE_TYPES
    )
    first = None
    try:
        first = _first_frame(container, vs)
    except av.FFmpegError as exc:
        log.warning("%s: first frame did not decode: %s", path, error_line(exc, os_reason=True))
    if first is None:
        raise MediaError(f"no decodable video frame in {path}")
    try:
        container.seek(0)
    except av.FFmpegError:
        pass  # not seekable (pipes, live): the source reopens instead
    pix_fmt = first.format.name or cc.pix_fmt or "yuv420p"
    tags = first
    color = ColorInfo(primaries=int(tags.color_primaries), transfer=int(tags.color_trc),
                      matrix=int(tags.colorspace), range=int(tags.color_range))
    time_base = vs.time_base or Fraction(1, 90000)
    return VideoInfo(
        path=path, container=container.format.name, codec=cc.name,
        width=first.width, height=first.height,
        time_base=time_base, pix_fmt=pix_fmt, bit_depth=bit_depth(pix_fmt),
        average_rate=vs.average_rate or vs.guessed_rate, duration=_duration(container, vs),
        rotation=round(first.rotation) % 360,
        sample_aspect_ratio=vs.sample_aspect_ratio or None, color=color, video_index=vs.index,
        first_pts=first.pts, streams=others,
        metadata=dict(container.metadata), video_metadata=_with_timecode_tags(clean_tags(dict(vs.metadata)), others),
        field_order=field_order_of(vs, first), profile=cc.profile or None, bit_rate=cc.bit_rate or vs.bit_rate or None,
    )


def probe(path: str | os.PathLike) -> VideoInfo:
    """Probe a file or URL: size, timing, pixel format, rotation, colour and the other streams."""
    src = str(path)
    container = open_input(src)
    try:
        return probe_container(container, src)
    finally:
        container.close()


def sampled_pictures(path: str, count: int) -> list[av.VideoFrame]:
    """Up to `count` decoded pictures spread evenly over a file (the first picture at or after each
    time, decoded on from the seek point before it); only the first for a stream that cannot seek or
    whose length is unknown."""
    container = open_input(path)
    pictures: list[av.VideoFrame] = []
    try:
        stream = video_stream(container, path)
        duration = _duration(container, stream)
        spots = [duration * k / count for k in range(count)] if duration and stream.time_base else [0.0]
        for seconds in spots:
            target = round(seconds / stream.time_base) + (stream.start_time or 0)
            if seconds:
                container.seek(target, stream=stream, backward=True)
            picture = _picture_from(container, stream, target)
            if picture is not None:
                pictures.append(picture)
    except av.FFmpegError as exc:
        log.info("%s: sampling frames stopped after %d: %s", path, len(pictures), error_line(exc, os_reason=True))
    finally:
        container.close()
    return pictures


def _picture_from(container: av.container.InputContainer, stream: av.VideoStream, pts: int) -> av.VideoFrame | None:
    """The first decoded picture at or after `pts` (a seek lands on the keyframe before it), the last
    one when the stream ends first; None if none decodes."""
    last = None
    for packet in container.demux(stream):
        try:
            for frame in packet.decode():
                if frame.pts is None or frame.pts >= pts:
                    return frame
                last = frame
        except av.error.InvalidDataError:
            continue
    return last


# --- the report of `vidrestore probe` ------------------------------------------------------------


def color_names(color: ColorInfo) -> dict[str, str]:
    """The colour tags by the names FFmpeg gives them ("bt709", "tv"; "unknown" when not specified)."""
    return {"primaries": COLOR_PRIMARIES_NAMES.get(color.primaries, "unknown"),
            "transfer": COLOR_TRANSFER_NAMES.get(color.transfer, "unknown"),
            "matrix": COLOR_SPACE_NAMES.get(color.matrix, "unknown"),
            "range": COLOR_RANGE_NAMES.get(color.range, "unknown")}


def stream_entry(stream: av.stream.Stream) -> dict[str, Any]:
    """One stream of any type as `vidrestore probe` lists it: index, type, codec, language and its format."""
    entry: dict[str, Any] = {"index": stream.index, "type": stream.type, "codec": codec_name(stream),
                             "language": stream.language}
    cc = stream.codec_context
    if stream.type == "video":
        entry.update(width=cc.width, height=cc.height, pix_fmt=cc.pix_fmt,
                     cover_art=bool(stream.disposition & av.stream.Disposition.attached_pic))
    elif stream.type == "audio":
        entry.update(sample_rate=cc.sample_rate, channels=cc.channels, layout=cc.layout.name)
    return entry


def count_packets(path: str, index: int) -> int:
    """The packets of one stream, counted by demuxing the whole file (nothing is decoded)."""
    container = open_input(path)
    count = 0
    try:
        for packet in container.demux(container.streams[index]):
            count += bool(packet.size)
    except av.FFmpegError as exc:
        log.warning("%s: counting stopped at a read error after %d packets: %s", path, count,
                    error_line(exc, os_reason=True))
    finally:
        container.close()
    return count


def video_frame_count(path: str, index: int, declared: int) -> tuple[int | None, str]:
    """(frames of the video stream, where the number comes from): the container's count when it has
    one, else its packets counted ("packets"); a stream (URL) is not read to its end ("unknown")."""
    if declared > 0:
        return declared, "container"
    if is_url(path):
        return None, "unknown"
    return count_packets(path, index), "packets"


def probe_report(path: str | os.PathLike) -> dict[str, Any]:
    """What `vidrestore probe` prints: the probe as JSON, with the colour tags by name, every stream
    (video, audio, subtitle, data) and the video's frame count."""
    src = str(path)
    container = open_input(src)
    try:
        info = probe_container(container, src)
        streams = [stream_entry(s) for s in container.streams]
        declared = container.streams[info.video_index].frames
    finally:
        container.close()
    report = info.to_json()
    report["color"] = color_names(info.color)
    report["streams"] = streams
    report["frames"], report["frames_from"] = video_frame_count(src, info.video_index, declared)
    return report
