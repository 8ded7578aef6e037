"""Archive mode end to end: real files through PyAV, real worker processes, the real command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from archive_media import make_archive_clip
from vidrestore.archive.plan import read_frame_index

CHUNK_SECONDS = "1.5"  # the 7 s clip in 5 chunks
PASS_THROUGH = ("--model", "none", "--detector", "none", "--no-progress")


def vidrestore(*args: str | Path) -> subprocess.CompletedProcess:
    """Run the command line in a process of its own."""
    return subprocess.run([sys.executable, "-m", "vidrestore.cli", *map(str, args)], capture_output=True, text=True)


def archive(clip: Path, out: Path, *extra: str | Path) -> dict:
    """`vidrestore archive` with the pass-through options; returns its report."""
    report = out.with_suffix(".json")
    done = vidrestore("archive", clip, out, *PASS_THROUGH, "--chunk-seconds", CHUNK_SECONDS, "--report", report,
                      *extra)
    assert done.returncode == 0, done.stderr
    return json.loads(report.read_text())


def decoded(path: Path) -> list[tuple[int, np.ndarray]]:
    """(pts, RGB pixels) of every frame."""
    with av.open(str(path)) as c:
        return [(f.pts, f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]


def streams(path: Path) -> list[tuple]:
    """(type, codec, language) of every stream, and the container tags."""
    with av.open(str(path)) as c:
        return [(s.type, s.codec_context.name if s.codec_context else None, s.language) for s in c.streams]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The issue's multi-chunk clip: VFR, B-frames, an open-GOP stretch, two audio tracks, subtitles."""
    return make_archive_clip(tmp_path_factory.mktemp("clip") / "clip.mkv").path


def test_output_has_the_source_frames_timestamps_and_streams(clip: Path, tmp_path: Path) -> None:
    report = archive(clip, tmp_path / "out.mkv")
    source, output = read_frame_index(clip), read_frame_index(tmp_path / "out.mkv")
    assert report["plan"]["boundaries"][-1] == source.frames and len(report["plan"]["boundaries"]) > 3
    assert output.pts == source.pts and output.time_base == source.time_base
    assert streams(tmp_path / "out.mkv") == streams(clip)
    assert report["verification"]["ok"] and report["restored"] == list(range(len(report["chunks"])))


def test_lossless_frames_equal_file_mode(clip: Path, tmp_path: Path) -> None:
    archive(clip, tmp_path / "out.mkv", "--codec", "ffv1")
    one_pass = vidrestore(clip, tmp_path / "one.mkv", *PASS_THROUGH, "--codec", "ffv1")
    assert one_pass.returncode == 0, one_pass.stderr
    ours, theirs = decoded(tmp_path / "out.mkv"), decoded(tmp_path / "one.mkv")
    assert [p for p, _ in ours] == [p for p, _ in theirs]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(ours, theirs))


def test_two_workers_give_the_frames_of_one(clip: Path, tmp_path: Path) -> None:
    one = archive(clip, tmp_path / "one.mkv", "--codec", "ffv1")
    two = archive(clip, tmp_path / "two.mkv", "--codec", "ffv1", "--workers", "2")
    # which of the two workers takes which chunk depends on how fast each starts: only the bound is certain
    assert len({c["worker"] for c in two["chunks"]}) <= 2 and len({c["worker"] for c in one["chunks"]}) == 1
    ours, theirs = decoded(tmp_path / "one.mkv"), decoded(tmp_path / "two.mkv")
    assert len(ours) == len(theirs) and all(
        a == c and np.array_equal(b, d) for (a, b), (c, d) in zip(ours, theirs))


def test_resume_keeps_finished_chunks_and_redoes_a_truncated_one(clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mkv"
    first = archive(clip, out)
    chunk = tmp_path / "out.mkv.archive" / "chunks" / "00002.mkv"
    chunk.write_bytes(chunk.read_bytes()[: chunk.stat().st_size // 2])
    again = archive(clip, out)
    chunks = len(first["chunks"])
    assert again["restored"] == [2] and again["kept"] == [k for k in range(chunks) if k != 2]
    assert again["verification"]["ok"]
    fresh = archive(clip, out, "--fresh")
    assert fresh["kept"] == [] and fresh["new_plan"]


def test_options_that_change_pixels_make_a_new_plan(clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mkv"
    archive(clip, out)
    again = vidrestore("archive", clip, out, *PASS_THROUGH, "--chunk-seconds", CHUNK_SECONDS, "--crf", "30")
    assert again.returncode == 0 and "planning anew" in again.stderr


def test_bad_input_gives_one_clear_error_and_leaves_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    done = vidrestore("archive", bad, tmp_path / "out.mkv", *PASS_THROUGH)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "bad.mp4" in errors[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.mp4"]
