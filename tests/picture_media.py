"""Archive-style test clips made by the ffmpeg binary from the shared talking heads: interlaced (tff,
bff, telecined), monochrome, ProRes, DNxHR and FFV1; small and short so the tests stay fast.

The interlaced clips show a still picture that moves at field rate: each field sees the face FIELD_STEP pixels
further right than the one before, so the woven frames comb on every vertical edge of the face.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import av
import imageio_ffmpeg
import numpy as np

from conftest import SHARED

FACE_VIDEO = SHARED / "media" / "videos" / "retalking_face_1.mp4"
SIZE = (352, 288)  # CIF: small, and 4:2:0 fields of whole chroma lines (height a multiple of 4)
FIELD_STEP = 8  # pixels the face moves per field
TIMECODE = "10:00:00:00"
REEL = "TAPE_042"


def ffmpeg(*args: str | Path) -> None:
    """Run the ffmpeg binary (errors only); CalledProcessError with its message when it fails."""
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-nostdin", "-y", *map(str, args)],
                   check=True, capture_output=True)


def still_picture(dst: Path) -> Path:
    """The first frame of the shared talking head as a PNG."""
    if not dst.exists():
        ffmpeg("-i", FACE_VIDEO, "-frames:v", "1", dst)
    return dst


def _face_view(width: int, height: int, fields: int = 0) -> str:
    """Filters that fit the square face video into width x height, with room to move sideways for `fields` fields."""
    return f"scale={height}:{height},pad={width + fields * FIELD_STEP}:{height}:(ow-iw)/2:0"


def interlaced_clip(dst: Path, field_order: str, frames: int = 12, pix_fmt: str = "yuv420p") -> Path:
    """H.264 with interlaced coding (FFV1 for pixel formats H.264 lacks, yuv411p), `field_order` (tff or bff)
    tagged, 25 frames/s of two fields each: a still face that moves FIELD_STEP pixels to the right every field."""
    width, height = SIZE
    weave = "interleave_top" if field_order == "tff" else "interleave_bottom"
    still = still_picture(dst.with_name("still.png"))
    codec = (("libx264", "-preset", "ultrafast", "-flags", "+ildct+ilme", "-x264-params", f"{field_order}=1:threads=1")
             if pix_fmt == "yuv420p" else ("ffv1",))
    ffmpeg("-loop", "1", "-framerate", "50", "-i", still,
           "-vf", f"{_face_view(width, height, 2 * frames)},crop={width}:{height}:x='n*{FIELD_STEP}':y=0,"
           f"tinterlace={weave},setfield={field_order},format={pix_fmt}",
           "-frames:v", frames, "-c:v", *codec, dst)
    return dst


def telecined_clip(dst: Path, frames: int = 15) -> Path:
    """23.976p film telecined 3:2 to 29.97i (tff, interlaced coding): the face video as film."""
    width, height = SIZE
    ffmpeg("-i", FACE_VIDEO, "-vf", f"fps=24000/1001,{_face_view(width, height)},crop={width}:{height},"
           "telecine=first_field=top:pattern=23,setfield=tff,format=yuv420p",
           "-frames:v", frames, "-c:v", "libx264", "-preset", "ultrafast", "-flags", "+ildct+ilme",
           "-x264-params", "tff=1:threads=1", "-an", dst)
    return dst


def face_clip(dst: Path, *, grey: bool = False, frames: int = 12, codec: tuple[str, ...] = ("libx264",),
              pix_fmt: str = "yuv420p", black: int = 0, speck: bool = False) -> Path:
    """The talking head at SIZE, in colour or as a grey picture stored in `pix_fmt`, encoded with `codec`;
    the first `black` frames black (a leader), and with `speck` a small red square in a corner (a logo:
    16 of the 25344 chroma samples of each plane)."""
    width, height = SIZE
    grey_filter = "format=gray," if grey else ""
    leader = f"drawbox=x=0:y=0:w=iw:h=ih:color=black:t=fill:enable='lt(n,{black})'," if black else ""
    logo = "format=yuv420p,drawbox=x=0:y=0:w=8:h=8:color=red:t=fill," if speck else ""
    ffmpeg("-i", FACE_VIDEO, "-vf", f"scale={height}:{height},pad={width}:{height}:(ow-iw)/2:0,"
           f"{grey_filter}{leader}{logo}format={pix_fmt}", "-frames:v", frames, "-c:v", *codec, "-an", dst)
    return dst


def mezzanine_clip(dst: Path, kind: str, frames: int = 8) -> Path:
    """A short mezzanine file with a timecode (and, in QuickTime, a reel name): prores (422 HQ 10-bit,
    mov), dnxhr (DNxHR HQ 8-bit 4:2:2, mov) or ffv1 (version 3 with slice CRCs, 10-bit 4:2:2, mkv)."""
    codec, pix_fmt = {
        "prores": (("prores_ks", "-profile:v", "3"), "yuv422p10le"),
        "dnxhr": (("dnxhd", "-profile:v", "dnxhr_hq"), "yuv422p"),
        "ffv1": (("ffv1", "-level", "3", "-slicecrc", "1", "-g", "1"), "yuv422p10le"),
    }[kind]
    width, height = SIZE
    ffmpeg("-i", FACE_VIDEO, "-vf", f"scale={height}:{height},pad={width}:{height}:(ow-iw)/2:0,format={pix_fmt}",
           "-frames:v", frames, "-c:v", *codec, "-timecode", TIMECODE, "-metadata:s:v:0", f"reel_name={REEL}",
           "-an", dst)
    return dst


def dnxhd_clip(dst: Path, rate: str, field_order: str = "progressive", frames: int = 3) -> Path:
    """DNxHD (its own profile, not DNxHR) at 1920x1080, the only size it has at these rates: 220 Mb/s
    8-bit progressive at 30000/1001, 175 Mb/s 8-bit at 24000/1001, or 220 Mb/s 10-bit interlaced
    (`field_order` tff) at 30000/1001; with a timecode, in QuickTime."""
    bit_rate, pix_fmt = {("30000/1001", "progressive"): ("220M", "yuv422p"), ("24000/1001", "progressive"):
                         ("175M", "yuv422p"), ("30000/1001", "tff"): ("220M", "yuv422p10le")}[(rate, field_order)]
    fields = [] if field_order == "progressive" else ["-flags", "+ildct"]
    setfield = "" if field_order == "progressive" else f"setfield={field_order},"
    ffmpeg("-i", FACE_VIDEO, "-vf", f"fps={rate},scale=1080:1080,pad=1920:1080:(ow-iw)/2:0,{setfield}format={pix_fmt}",
           "-frames:v", frames, "-c:v", "dnxhd", "-profile:v", "dnxhd", "-b:v", bit_rate, *fields,
           "-timecode", TIMECODE, "-an", dst)
    return dst


def prores_frame(dst: Path, profile: int) -> Path:
    """One tiny ProRes frame written by prores_ks with `profile` (0 Proxy .. 5 XQ), 4:4:4 for 4444 and XQ."""
    pix_fmt = "yuv444p10le" if profile >= 4 else "yuv422p10le"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=25", "-frames:v", 1, "-pix_fmt", pix_fmt,
           "-c:v", "prores_ks", "-profile:v", profile, dst)
    return dst


def tagged_fields_clip(dst: Path, field_order: str) -> Path:
    """Two tiny FFV1 frames flagged `field_order` (tff or bff) by setfield, as the ffmpeg binary tags them
    (TB for top field first, BT for bottom)."""
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=25", "-frames:v", 2, "-vf", f"setfield={field_order}",
           "-c:v", "ffv1", dst)
    return dst


# --- reading back --------------------------------------------------------------------------------


def planes_of(path: Path) -> list[list[np.ndarray]]:
    """Every frame of a video as its planes (luma, then chroma), copied out of the decoder."""
    from vidrestore.video.patch import plane_array, sample_dtype

    with av.open(str(path)) as container:
        return [[plane_array(p, sample_dtype(f)).copy() for p in f.planes] for f in container.decode(video=0)]


def field_flags(path: Path) -> list[str]:
    """Per decoded frame, what the ffmpeg binary's showinfo says of it: T (top field first), B or P."""
    result = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path),
                             "-vf", "showinfo", "-f", "null", "-"], capture_output=True, text=True, check=True)
    return [line.split(" i:")[1][0] for line in result.stderr.splitlines() if "Parsed_showinfo" in line and " i:" in line]


def video_facts(path: Path) -> dict[str, object]:
    """The video stream as a decoder sees it: codec, profile, pixel format, field order, timing, tags."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        cc = stream.codec_context
        pts = [f.pts for f in container.decode(stream)]
        tags = {k.lower(): v for m in (container.metadata, *(s.metadata for s in container.streams)) for k, v in m.items()}
        return {"codec": cc.name, "profile": cc.profile, "pix_fmt": cc.pix_fmt, "field_order": cc.field_order,
                "time_base": stream.time_base, "pts": pts, "timecode": tags.get("timecode"),
                "reel_name": tags.get("reel_name"), "extradata": bytes(cc.extradata or b""),
                "sar": stream.sample_aspect_ratio, "bit_rate": cc.bit_rate or stream.bit_rate}
