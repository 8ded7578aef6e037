"""Join: the chunks' video packets into the output container at the source's timestamps, with the
source's audio, subtitle and data streams, tags and chapters copied as file mode does (StreamCopier).
The output is written under a temporary name and renamed into place when complete."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import av

from vidrestore.errors import MediaError, error_line
from vidrestore.video.codecs import PRESETS, canonical_encoder
from vidrestore.video.paths import commit_temp, make_temp, remove_quietly
from vidrestore.video.probe import open_input, video_stream
from vidrestore.video.remux import StreamCopier, packet_time, set_video_tags
from vidrestore.video.sink import MP4_LIKE
from vidrestore.video.types import VideoInfo

log = logging.getLogger(__name__)

def rescaled(value: int | None, source: Fraction, target: Fraction) -> int | None:
    """A timestamp from one time base in another (rounded)."""
    return None if value is None else round(value * source / target)


def chunk_packets(path: Path, first_pts: int, time_base: Fraction) -> Iterator[av.Packet]:
    """A chunk file's video packets in decode order, at the source's time base, shifted so its first
    frame has the source's PTS `first_pts` (undoing any shift the chunk's muxer made)."""
    with open_input(str(path)) as container:
        stream = video_stream(container, str(path))
        packets = [p for p in container.demux(stream) if p.size]
        if not packets:
            raise MediaError(f"chunk file {path} holds no video")
        tb = stream.time_base
        shift = first_pts - min(rescaled(p.pts, tb, time_base) for p in packets)
        if any(p.dts is None for p in packets):
            fill_decode_times(packets)
        for packet in packets:
            packet.pts = rescaled(packet.pts, tb, time_base) + shift
            packet.dts = rescaled(packet.dts, tb, time_base) + shift
            packet.duration = rescaled(packet.duration, tb, time_base) or 0
            packet.time_base = time_base
            yield packet


def fill_decode_times(packets: Sequence[av.Packet]) -> None:
    """Decode times for packets a demuxer gave none (Matroska keeps only PTS): the sorted PTS shifted
    by the smallest reorder delay that keeps every DTS at or before its packet's PTS."""
    order = sorted(p.pts for p in packets)
    delay = 0
    while any(order[i - delay] > p.pts for i, p in enumerate(packets) if i >= delay):
        delay += 1
    for i, packet in enumerate(packets):
        packet.dts = order[i - delay] if i >= delay else order[0] - (delay - i)


class DtsGuard:
    """Keeps DTS strictly increasing across chunk boundaries (each chunk's encoder starts its own)."""

    def __init__(self) -> None:
        self.last: int | None = None

    def fix(self, packet: av.Packet) -> None:
        """Raise a DTS that does not follow the last one, as far as the packet's PTS allows."""
        if packet.dts is not None and self.last is not None and packet.dts <= self.last:
            if self.last + 1 > packet.pts:
                raise MediaError(f"chunk boundary at pts {packet.pts}: decode times overlap")
            packet.dts = self.last + 1
        if packet.dts is not None:
            self.last = packet.dts


def add_video_stream(out: av.container.OutputContainer, template: Path, info: VideoInfo) -> av.stream.Stream:
    """The output's video stream, from the first chunk's codec parameters, with the source's tags and time base."""
    with open_input(str(template)) as container:
        chunk = video_stream(container, str(template))
        stream = out.add_stream_from_template(chunk)
        encoder = canonical_encoder(chunk.codec_context.name)  # the decoder's name (hevc) -> the encoder's preset
    stream.time_base = info.time_base
    set_video_tags(stream, info)
    preset = PRESETS.get(encoder)
    if preset and preset.mp4_tag and out.format.name in MP4_LIKE:
        stream.codec_context.codec_tag = preset.mp4_tag
    return stream


def join_chunks(input: Path, output: Path, chunks: Sequence[Path], first_pts: Sequence[int], info: VideoInfo) -> int:
    """Write `output` from the chunk files (in order; `first_pts`: each one's first source PTS) and the
    input's other streams; `info`: the video as the chunks hold it (the input's, with its field order
    as restored); returns the video packets written."""
    temp = make_temp(output)
    written = 0
    try:
        with av.open(str(temp), "w") as out:
            stream = add_video_stream(out, chunks[0], info)
            copier = StreamCopier(info, out, str(output))
            guard = DtsGuard()
            try:
                for path, pts in zip(chunks, first_pts):
                    for packet in chunk_packets(path, pts, info.time_base):
                        guard.fix(packet)
                        copier.copy_until(packet_time(packet))
                        packet.stream = stream
                        out.mux(packet)
                        written += 1
                copier.copy_until(None)
            finally:
                copier.close()
        commit_temp(temp, output)
    except av.FFmpegError as exc:
        remove_quietly(temp)
        raise MediaError(f"joining the chunks into {output} failed: {error_line(exc, os_reason=True)}") from exc
    except BaseException:
        remove_quietly(temp)
        raise
    return written
