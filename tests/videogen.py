"""Small test videos made with PyAV in tmp_path (never committed), and readers to compare them."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence

import av
import numpy as np

VFR_GAPS = (512, 512, 1024, 256, 2048, 512, 768, 512)  # irregular, in 1/15360 s
TB = Fraction(1, 15360)


def picture(i: int, w: int, h: int) -> np.ndarray:
    """A moving gradient with a frame-number stripe, so frames differ and compress."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([(x * 4 + i * 7) % 256, (y * 4 + i * 3) % 256, (x + y + i * 11) % 256], -1)
    img[: max(1, h // 8), : (i * 3) % w + 1] = 255
    return img.astype(np.uint8)


def _audio(out: Any, rate: int, seconds: float, language: str) -> tuple[Any, list[Any]]:
    """An AAC stream and the frames of a tone to feed it."""
    st = out.add_stream("aac", rate=rate)
    st.layout = "mono"
    st.metadata["language"] = language
    frames = []
    n = int(seconds * rate) // 1024
    for i in range(n):
        t = (np.arange(1024) + i * 1024) / rate
        af = av.AudioFrame.from_ndarray((0.2 * np.sin(2 * np.pi * 440 * t))[None].astype(np.float32),
                                        format="fltp", layout="mono")
        af.sample_rate, af.pts, af.time_base = rate, i * 1024, Fraction(1, rate)
        frames.append(af)
    return st, frames


def make_video(path: Path, *, frames: int = 24, size: tuple[int, int] = (96, 64),
               codec: str = "libx264", pix_fmt: str = "yuv420p", gaps: Sequence[int] = VFR_GAPS,
               rotation: int = 0, audio_languages: Sequence[str] = (), audio_seconds: float | None = None,
               subtitle: bool = False, bframes: int = 2, title: str | None = None,
               chapters: bool = False, color: tuple[int, int, int, int] | None = None,
               options: dict[str, str] | None = None, sar: Fraction | None = None) -> list[int]:
    """Write a video with the given features; returns the PTS list of its frames (in 1/15360)."""
    w, h = size
    out = av.open(str(path), "w")
    if title:
        out.metadata["title"] = title
    opts = dict(options or {})
    if codec == "libx264":
        opts.setdefault("bf", str(bframes))
        opts.setdefault("preset", "ultrafast" if bframes == 0 else "veryfast")
    v = out.add_stream(codec, rate=30, options=opts)
    v.width, v.height, v.pix_fmt = w, h, pix_fmt
    v.time_base = TB
    v.codec_context.time_base = TB
    if rotation:
        v.set_display_rotation(rotation)
    if sar:
        v.codec_context.sample_aspect_ratio = sar
    if color:
        cc = v.codec_context
        cc.color_primaries, cc.color_trc, cc.colorspace, cc.color_range = color
    pts_list, pts = [], 0
    for i in range(frames):
        pts_list.append(pts)
        pts += gaps[i % len(gaps)]
    seconds = audio_seconds if audio_seconds is not None else float(pts * TB)
    tracks = [_audio(out, 16000, seconds, lang) for lang in audio_languages]
    sub = None
    if subtitle:
        sub = out.add_mux_stream("mov_text" if path.suffix in (".mp4", ".mov") else "subrip")
        sub.metadata["language"] = "eng"
        sub.time_base = Fraction(1, 1000)
    hi = "10" in pix_fmt or "16" in pix_fmt
    for i, p in enumerate(pts_list):
        img = picture(i, w, h)
        vf = av.VideoFrame.from_ndarray(img.astype(np.uint16) * 257 if hi else img,
                                        format="rgb48le" if hi else "rgb24")
        vf.pts, vf.time_base = p, TB
        for pkt in v.encode(vf):
            out.mux(pkt)
    for pkt in v.encode():
        out.mux(pkt)
    for st, afs in tracks:
        for af in afs:
            for pkt in st.encode(af):
                out.mux(pkt)
        for pkt in st.encode():
            out.mux(pkt)
    if sub is not None:
        for k, text in enumerate([b"first line", b"second line"]):
            data = len(text).to_bytes(2, "big") + text if path.suffix in (".mp4", ".mov") else text
            pkt = av.Packet(data)
            pkt.stream, pkt.time_base = sub, Fraction(1, 1000)
            pkt.pts = pkt.dts = 100 + 400 * k
            pkt.duration = 300
            out.mux(pkt)
    if chapters:
        out.set_chapters([{"id": 1, "start": 0, "end": 500, "time_base": Fraction(1, 1000),
                           "metadata": {"title": "Intro"}},
                          {"id": 2, "start": 500, "end": 1000, "time_base": Fraction(1, 1000),
                           "metadata": {"title": "Main"}}])
    out.close()
    return pts_list


def make_audio_only(path: Path) -> None:
    """An AAC file with no video stream."""
    out = av.open(str(path), "w")
    st, afs = _audio(out, 16000, 0.5, "eng")
    for af in afs:
        for pkt in st.encode(af):
            out.mux(pkt)
    for pkt in st.encode():
        out.mux(pkt)
    out.close()


def video_pts(path: Path) -> tuple[list[int], Fraction]:
    """PTS of every decoded frame and the stream time base."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return [f.pts for f in c.decode(s)], s.time_base


def other_packets(path: Path) -> list[list[tuple[int | None, bytes]]]:
    """Per non-video stream: (pts, payload) of every real packet."""
    with av.open(str(path)) as c:
        streams = [s for s in c.streams if s.type != "video"]
        result: list[list[tuple[int | None, bytes]]] = [[] for _ in streams]
        pos = {s.index: k for k, s in enumerate(streams)}
        if streams:
            for pkt in c.demux(streams):
                if pkt.size:
                    result[pos[pkt.stream.index]].append((pkt.pts, bytes(pkt)))
        return result


def stream_tags(path: Path) -> list[tuple[str, str | None]]:
    """(type, language) of every stream."""
    with av.open(str(path)) as c:
        return [(s.type, s.metadata.get("language")) for s in c.streams]


def decoded_planes(path: Path, fmt: str | None = None) -> list[np.ndarray]:
    """Every frame's pixels (native planes concatenated, or converted to `fmt`)."""
    with av.open(str(path)) as c:
        out = []
        for f in c.decode(video=0):
            if fmt:
                out.append(f.to_ndarray(format=fmt))
            else:
                out.append(np.concatenate([np.frombuffer(bytes(p), np.uint8) for p in f.planes]))
        return out


def leftovers(folder: Path) -> list[str]:
    """Temp files the sink may have left in a folder."""
    return sorted(p.name for p in folder.iterdir() if ".vidrestore-tmp-" in p.name)
