"""The archive tests' multi-chunk clip: real faces, irregular VFR, B-frames, an open-GOP stretch, two audio
tracks and subtitles in one Matroska file, with the facts measured back from the written file."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence

import av
import numpy as np

from conftest import SHARED

FACE_SOURCES = ("retalking_face_1.mp4", "sadtalker_WDA_KatieHill_000.mp4")  # the switch is a scene cut
GAPS_MS = (40, 40, 80, 20, 60, 40, 33, 47, 100, 27)  # irregular frame durations, in 1/1000 s
MS = Fraction(1, 1000)
SUBTITLES = ((200, 900, "first line"), (2500, 1200, "second line"), (5000, 800, "third line"))


@dataclass(frozen=True)
class ClipFacts:
    """What the written clip holds, read back from the file (presentation order throughout)."""

    path: Path
    frames: int
    pts: list[int]
    time_base: Fraction
    size: tuple[int, int]
    audio_streams: int
    subtitle_streams: int
    audio_codecs: tuple[str, ...]
    languages: tuple[str | None, ...]
    keyframes: list[int]  # frame indices of keyframe packets
    open_gop_keyframes: list[int]  # keyframes whose leading pictures reference the GOP before
    b_frames: int
    scene_cuts: list[int]  # first frame index of each new shot
    subtitle_pts: list[int] = field(default_factory=list)

    @property
    def duration(self) -> float:
        """Seconds from the first frame's start to the last frame's end (its gap as the last duration)."""
        return float((self.pts[-1] - self.pts[0] + GAPS_MS[(self.frames - 1) % len(GAPS_MS)]) * self.time_base)


@functools.lru_cache(maxsize=4)
def _source_pictures(name: str, size: tuple[int, int], count: int) -> tuple[np.ndarray, ...]:
    """The first `count` frames of a shared face video, scaled to `size` (cached: tests reuse them)."""
    pictures = []
    with av.open(str(SHARED / "media" / "videos" / name)) as c:
        for frame in c.decode(video=0):
            pictures.append(frame.reformat(width=size[0], height=size[1], format="rgb24").to_ndarray())
            if len(pictures) == count:
                break
    return tuple(pictures)


def face_pictures(frames: int, size: tuple[int, int], scene_cut: int) -> list[np.ndarray]:
    """`frames` pictures of real faces: the first shot up to `scene_cut`, the second after (looped if short)."""
    first = _source_pictures(FACE_SOURCES[0], size, scene_cut)
    second = _source_pictures(FACE_SOURCES[1], size, frames - scene_cut)
    shots = [first[i % len(first)] for i in range(scene_cut)]
    return shots + [second[i % len(second)] for i in range(frames - scene_cut)]


def _x264_options(keyint: int, bframes: int) -> dict[str, str]:
    """Open GOPs with B-frames, deterministic (one thread), forced frames become IDRs (the closed stretch)."""
    params = f"open-gop=1:keyint={keyint}:min-keyint={keyint}:scenecut=0:bframes={bframes}:b-pyramid=normal"
    return {"preset": "veryfast", "threads": "1", "x264-params": params, "forced-idr": "1"}


def _add_audio(out: Any, codec: str, layout: str, language: str, seconds: float, tone: float) -> tuple[Any, list[Any]]:
    """An audio stream and the 48 kHz tone frames that fill `seconds`."""
    st = out.add_stream(codec, rate=48000)
    st.layout = layout
    st.metadata["language"] = language
    channels = 2 if layout == "stereo" else 1
    size = 960 if codec == "libopus" else 1024
    frames = []
    for i in range(int(seconds * 48000) // size):
        t = (np.arange(size) + i * size) / 48000
        wave = (0.2 * np.sin(2 * np.pi * tone * t)).astype(np.float32)
        af = av.AudioFrame.from_ndarray(np.repeat(wave[None], channels, 0), format="fltp", layout=layout)
        af.sample_rate, af.pts, af.time_base = 48000, i * size, Fraction(1, 48000)
        frames.append(af)
    return st, frames


def _encode_audio(out: Any, st: Any, frames: Sequence[Any]) -> None:
    """Encode and mux one audio track, flushing the encoder."""
    for af in frames:
        for pkt in st.encode(af):
            out.mux(pkt)
    for pkt in st.encode():
        out.mux(pkt)


def _add_subtitles(out: Any) -> Any:
    """A SubRip stream (added before the first packet: the header is written then)."""
    sub = out.add_mux_stream("subrip")
    sub.metadata["language"] = "eng"
    sub.time_base = MS
    return sub


def _mux_subtitles(out: Any, sub: Any) -> None:
    """A few cues spread over the clip."""
    for start, duration, text in SUBTITLES:
        pkt = av.Packet(text.encode())
        pkt.stream, pkt.time_base = sub, MS
        pkt.pts = pkt.dts = start
        pkt.duration = duration
        out.mux(pkt)


def make_archive_clip(path: Path, *, frames: int = 144, size: tuple[int, int] = (160, 160),
                      scene_cut: int | None = None, closed_until: int | None = None, keyint: int = 24,
                      bframes: int = 3, gaps_ms: Sequence[int] = GAPS_MS) -> ClipFacts:
    """Write the issue's archive test clip (.mkv) and return its measured facts.

    Frames before `closed_until` (default: a third) sit in closed GOPs (IDR every `keyint`), the rest in open
    GOPs; the picture switches face video at `scene_cut` (default: the middle)."""
    scene_cut = frames // 2 if scene_cut is None else scene_cut
    closed_until = frames // 3 if closed_until is None else closed_until
    pts_list = [sum(gaps_ms[i % len(gaps_ms)] for i in range(k)) for k in range(frames)]
    seconds = float((pts_list[-1] + gaps_ms[(frames - 1) % len(gaps_ms)]) * MS)
    out = av.open(str(path), "w", format="matroska", options={"fflags": "+bitexact"})  # no random UIDs
    out.metadata["title"] = "archive test clip"
    v = out.add_stream("libx264", rate=25, options=_x264_options(keyint, bframes))
    v.width, v.height, v.pix_fmt = size[0], size[1], "yuv420p"
    v.time_base = v.codec_context.time_base = MS
    v.metadata["language"] = "eng"
    tracks = [_add_audio(out, "aac", "stereo", "eng", seconds, 440.0),
              _add_audio(out, "libopus", "mono", "fra", seconds, 660.0)]
    sub = _add_subtitles(out)
    for i, (img, pts) in enumerate(zip(face_pictures(frames, size, scene_cut), pts_list)):
        vf = av.VideoFrame.from_ndarray(img, format="rgb24")
        vf.pts, vf.time_base = pts, MS
        if i < closed_until and i % keyint == 0:
            vf.pict_type = av.video.frame.PictureType.I
        for pkt in v.encode(vf):
            out.mux(pkt)
    for pkt in v.encode():
        out.mux(pkt)
    for st, afs in tracks:
        _encode_audio(out, st, afs)
    _mux_subtitles(out, sub)
    out.close()
    return read_clip_facts(path, scene_cuts=[scene_cut])


def _gop_facts(packets: list[tuple[int, bool, bool]], pts_order: list[int]) -> tuple[list[int], list[int], int]:
    """Keyframe indices, open-GOP keyframe indices and the B-frame count from (pts, key, is_b) in decode order."""
    index = {p: k for k, p in enumerate(pts_order)}
    keyframes, open_gop = [], []
    for pos, (pts, key, _) in enumerate(packets):
        if not key:
            continue
        keyframes.append(index[pts])
        following = []
        for later_pts, later_key, _ in packets[pos + 1:]:
            if later_key:
                break
            following.append(later_pts)
        if any(p < pts for p in following):
            open_gop.append(index[pts])
    return sorted(keyframes), sorted(open_gop), sum(1 for *_, is_b in packets if is_b)


def read_clip_facts(path: Path, scene_cuts: Sequence[int] = ()) -> ClipFacts:
    """Measure a clip: frames and PTS in presentation order, GOP structure, streams and tags."""
    with av.open(str(path)) as c:
        vs, subs = c.streams.video[0], c.streams.subtitles
        packets, sub_pts, b_pts = [], [], set()
        for pkt in c.demux(vs, *subs):
            if pkt.size and pkt.pts is not None:
                if pkt.stream.type == "video":
                    packets.append((pkt.pts, pkt.is_keyframe, False))
                else:
                    sub_pts.append(pkt.pts)
        c.seek(0)
        decoded = []
        for frame in c.decode(vs):
            decoded.append(frame.pts)
            if frame.pict_type == av.video.frame.PictureType.B:
                b_pts.add(frame.pts)
        packets = [(p, key, p in b_pts) for p, key, _ in packets]
        keyframes, open_gop, b_frames = _gop_facts(packets, decoded)
        return ClipFacts(path=path, frames=len(decoded), pts=decoded, time_base=vs.time_base,
                         size=(vs.codec_context.width, vs.codec_context.height),
                         audio_streams=len(c.streams.audio), subtitle_streams=len(subs),
                         audio_codecs=tuple(s.codec_context.name for s in c.streams.audio),
                         languages=tuple(s.metadata.get("language") for s in c.streams),
                         keyframes=keyframes, open_gop_keyframes=open_gop, b_frames=b_frames,
                         scene_cuts=list(scene_cuts), subtitle_pts=sub_pts)
