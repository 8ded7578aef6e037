"""Checks on input and output paths, and the temporary file that becomes the output atomically."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from vidrestore.atomic import commit_temp, create_temp, discard_temp  # noqa: F401 - commit_temp for the writers
from vidrestore.errors import MediaError, error_line

log = logging.getLogger(__name__)


def is_url(source: str | os.PathLike) -> bool:
    """True for a URL or device spec FFmpeg opens by itself (rtsp://, http://, /dev/video0 is a path)."""
    return "://" in str(source)


def check_input(path: str | os.PathLike) -> str:
    """Fail early, naming the file, if a local input is missing, empty or unreadable."""
    if is_url(path):
        return str(path)
    p = Path(path)
    if not p.exists():
        raise MediaError(f"input not found: {p}")
    if p.is_dir():
        raise MediaError(f"input is a folder, not a video: {p}")
    if not os.access(p, os.R_OK):
        raise MediaError(f"input is not readable: {p}")
    if p.is_file() and p.stat().st_size == 0:
        raise MediaError(f"input is an empty file (0 bytes): {p}")
    return str(p)


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when two paths name the same file (symlinks and hard links resolved)."""
    pa, pb = Path(a), Path(b)
    if pa.exists() and pb.exists():
        return os.path.samefile(pa, pb)
    return pa.resolve() == pb.resolve()


def check_output(path: str | os.PathLike, input_path: str | os.PathLike | None = None) -> Path:
    """Fail early, naming the file, if the output cannot be written or would overwrite the input."""
    out = Path(path)
    if input_path is not None and not is_url(input_path) and same_file(out, input_path):
        raise MediaError(f"output is the same file as the input: {out}")
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.exists():
        raise MediaError(f"output folder does not exist: {folder}")
    if not folder.is_dir():
        raise MediaError(f"output folder is not a folder: {folder}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise MediaError(f"output folder is not writable: {folder}")
    if out.is_dir():
        raise MediaError(f"output is a folder: {out}")
    if not out.suffix:
        raise MediaError(f"output has no file extension to choose a container from: {out}")
    return out


def make_temp(out: Path, suffix: str | None = None) -> Path:
    """Create an empty hidden temp file beside `out`, locked by this process, keeping its extension
    so the muxer is right; leftovers of dead runs writing `out` are removed first."""
    try:
        return create_temp(out, suffix)
    except OSError as exc:
        folder = out.parent if str(out.parent) else Path(".")
        raise MediaError(f"cannot write into the output folder {folder}: {error_line(exc, os_reason=True)}") from None


def remove_quietly(path: Path | None) -> None:
    """Delete a temp file if it is there and release its lock; never raises."""
    if path is None:
        return
    try:
        discard_temp(path)
    except OSError as exc:
        log.warning("could not remove temporary file %s: %s", path, exc)
