"""Uploaded videos: the container sniffed from its first bytes, then probed and held to the limits.

FFmpeg guesses formats by content and some of its demuxers follow references (HLS and concat
playlists name other files and URLs). An upload is only handed to FFmpeg when its first bytes are
those of a self-contained container (MP4/MOV, Matroska/WebM, AVI, MPEG-TS, FLV, Ogg); text files
never reach it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from vidrestore.errors import VidrestoreError
from vidrestore.server.errors import ApiError
from vidrestore.server.images import too_many_pixels
from vidrestore.video.probe import probe
from vidrestore.video.types import VideoInfo

log = logging.getLogger(__name__)

TS_PACKET = 188
# result suffix -> media type
RESULT_TYPES = {"mp4": "video/mp4", "mkv": "video/x-matroska", "mov": "video/quicktime"}
MP4_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip")


def sniff_container(head: bytes) -> str | None:
    """The container family of a file from its first bytes, None for anything else."""
    if len(head) >= 8 and head[4:8] in MP4_BOXES:
        return "mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "avi"
    if head.startswith(b"FLV"):
        return "flv"
    if head.startswith(b"OggS"):
        return "ogg"
    if len(head) >= 3 * TS_PACKET and all(head[k * TS_PACKET] == 0x47 for k in range(3)):
        return "mpegts"
    return None


def result_suffix(family: str) -> str:
    """The result container for an input family: MP4 for MP4/MOV, Matroska (which holds any stream) otherwise."""
    return "mp4" if family == "mp4" else "mkv"


def check_video(path: Path, max_pixels: int, max_seconds: float) -> tuple[str, VideoInfo]:
    """(container family, probe) of an uploaded video within the limits; 400 or 413 ApiError otherwise."""
    with path.open("rb") as f:
        family = sniff_container(f.read(3 * TS_PACKET))
    if family is None:
        raise ApiError(400, "not_a_video", "the upload is not an MP4, MOV, Matroska, WebM, AVI, MPEG-TS, FLV or "
                       "Ogg video")
    try:
        info = probe(path)
    except VidrestoreError:
        raise ApiError(400, "not_a_video", "the upload is not a readable video (no decodable video frame)") from None
    except Exception:  # noqa: BLE001 - whatever the demuxer makes of client bytes is bad input
        log.debug("probing an upload failed", exc_info=True)
        raise ApiError(400, "not_a_video", "the upload is not a readable video") from None
    if info.width * info.height > max_pixels:
        raise too_many_pixels(info.width, info.height, max_pixels)
    if info.duration is None:
        raise ApiError(400, "unknown_duration", "the video's duration cannot be read from the file")
    if info.duration > max_seconds:
        raise ApiError(413, "video_too_long", f"the video lasts {info.duration:.1f} s; the limit is {max_seconds:g} s")
    return family, info
