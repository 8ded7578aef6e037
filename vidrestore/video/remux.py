"""Copies the source's audio, subtitle and data streams, metadata and chapters into an output,
packet by packet, interleaved with the video the sink writes."""

from __future__ import annotations

import logging
from fractions import Fraction

import av

from vidrestore.errors import MediaError
from vidrestore.video.codecs import check_container_holds
from vidrestore.video.probe import clean_tags, open_input
from vidrestore.video.types import AV_FIELD_ORDER, VideoInfo

log = logging.getLogger(__name__)

# Container tags the muxer derives by itself.
DERIVED_CONTAINER_TAGS = {"major_brand", "minor_version", "compatible_brands", "encoder", "ENCODER"}
# Muxers that can store timestamps a little below zero (Matroska: blocks of the first cluster may sit
# up to 32.767 s before it) but by default shift every stream so that none starts below zero.
UNSHIFTED_MUXERS = {"matroska", "webm"}
MAX_UNSHIFTED_LEAD = Fraction(30)  # seconds before zero a stream may start and still be kept unshifted


class StreamCopier:
    """Adds the source's other streams to `out` and copies their packets, in time order, on demand.

    Built in the caller's thread (before the header is written); `copy_until`/`copy_rest` run in
    the thread that muxes the video.
    """

    def __init__(self, info: VideoInfo, out: av.container.OutputContainer, out_name: str, copy_streams: bool = True) -> None:
        self.info = info
        self.out = out
        self.copied: dict[int, int] = {}
        self._inp = open_input(info.path)
        self._map: dict[int, av.stream.Stream] = {}
        self._pending: av.Packet | None = None
        out.metadata.update({k: v for k, v in info.metadata.items() if k not in DERIVED_CONTAINER_TAGS})
        self._keep_source_timestamps()
        self._copy_chapters()
        if copy_streams:
            self._add_streams(out_name)
        self._packets = (self._inp.demux([self._inp.streams[i] for i in self._map])
                         if self._map else iter(()))

    def _keep_source_timestamps(self) -> None:
        """Write every stream at the source's timestamps where the muxer would shift them all.

        AAC starts one priming frame before zero (about 23 ms); Matroska would move the whole file
        later by that much. MP4 keeps negative times in its edit lists and needs nothing.
        """
        starts = [s.start_time * s.time_base for s in self._inp.streams
                  if s.start_time is not None and s.time_base]
        if self.out.format.name in UNSHIFTED_MUXERS and min(starts, default=0) > -MAX_UNSHIFTED_LEAD:
            self.out.options["avoid_negative_ts"] = "disabled"

    def _copy_chapters(self) -> None:
        """Carry chapters over (their times are in their own time base)."""
        try:
            chapters = self._inp.chapters()
            if chapters:
                self.out.set_chapters(chapters)
        except (AttributeError, ValueError, av.FFmpegError) as exc:
            log.warning("%s: chapters not copied: %s", self.info.path, exc)

    def _add_streams(self, out_name: str) -> None:
        """One output stream per copyable source stream, same codec parameters and tags."""
        wanted = {s.index for s in self.info.streams}
        for s in self._inp.streams:
            if s.index not in wanted:
                continue
            codec = s.codec_context.name if s.codec_context is not None else None
            if not codec:
                # No codec: a QuickTime chapter track (chapters are copied above) or a timecode
                # track (the muxer rebuilds it from the video stream's `timecode` tag).
                log.info("%s: %s stream #%d has no codec; not copied", self.info.path, s.type, s.index)
                continue
            check_container_holds(self.out, codec, out_name, what=f"{s.type} stream #{s.index}")
            try:
                o = self.out.add_stream_from_template(s)
            except (av.FFmpegError, ValueError) as exc:
                raise MediaError(f"{out_name}: cannot copy {s.type} stream #{s.index} "
                                 f"({codec}) from {self.info.path}: {exc}") from exc
            o.metadata.update(clean_tags(dict(s.metadata)))
            o.disposition = s.disposition
            if s.time_base:
                o.time_base = s.time_base
            self._map[s.index] = o
            self.copied[s.index] = 0

    def _next(self) -> av.Packet | None:
        """Next real packet of the copied streams, or None at the end."""
        if self._pending is not None:
            pkt, self._pending = self._pending, None
            return pkt
        for pkt in self._packets:
            if pkt.size == 0 and pkt.dts is None:
                continue  # demuxer flush marker
            return pkt
        return None

    def copy_until(self, t: Fraction | None) -> None:
        """Mux copied packets whose decode time is at or before `t` seconds (None: all)."""
        while True:
            pkt = self._next()
            if pkt is None:
                return
            ts = pkt.dts if pkt.dts is not None else pkt.pts
            if t is not None and ts is not None and ts * pkt.time_base > t:
                self._pending = pkt
                return
            src_index = pkt.stream.index
            pkt.stream = self._map[src_index]
            self.out.mux(pkt)
            self.copied[src_index] += 1

    def close(self) -> None:
        """Release the source file."""
        self._inp.close()


def packet_time(pkt: av.Packet) -> Fraction | None:
    """Decode time of a packet in seconds (exact), None when unknown."""
    ts = pkt.dts if pkt.dts is not None else pkt.pts
    return None if ts is None else ts * pkt.time_base


def set_video_tags(stream: av.VideoStream, info: VideoInfo) -> None:
    """Carry rotation, sample aspect ratio, colour tags, field order and stream tags to an output video stream."""
    cc = stream.codec_context
    cc.field_order = AV_FIELD_ORDER[info.field_order]
    if info.rotation:
        stream.set_display_rotation(info.rotation)
    if info.sample_aspect_ratio:
        cc.sample_aspect_ratio = info.sample_aspect_ratio
    c = info.color
    cc.color_primaries, cc.color_trc, cc.colorspace, cc.color_range = (
        c.primaries, c.transfer, c.matrix, c.range)
    stream.metadata.update(info.video_metadata)
