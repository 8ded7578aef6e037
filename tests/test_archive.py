"""Archive mode end to end: real files through PyAV, real worker processes, the real command line."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from archive_media import make_archive_clip

from vidrestore.archive.chunk import chunk_frames
from vidrestore.archive.plan import chunk_task, make_plan, read_frame_index
from vidrestore.archive.workers import WorkerSettings, run_chunks
from vidrestore.cli import archive_devices, build_parser
from vidrestore.errors import VidrestoreError
from vidrestore.pipeline.options import RestoreOptions

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


def decoded_equal(a: Path, b: Path) -> bool:
    """Same frames (timestamps and pixels) in both files."""
    ours, theirs = decoded(a), decoded(b)
    return len(ours) == len(theirs) and all(p == q and np.array_equal(x, y) for (p, x), (q, y) in zip(ours, theirs))


def streams(path: Path) -> list[tuple]:
    """(type, codec, language) of every stream, and the container tags."""
    with av.open(str(path)) as c:
        return [(s.type, s.codec_context.name if s.codec_context else None, s.language) for s in c.streams]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The issue's multi-chunk clip: VFR, B-frames, an open-GOP stretch, two audio tracks, subtitles."""
    return make_archive_clip(tmp_path_factory.mktemp("clip") / "clip.mkv").path


@pytest.fixture(scope="module")
def one_pass_ffv1(clip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`vidrestore IN OUT` of the clip, lossless: the frames every archive run must give."""
    out = tmp_path_factory.mktemp("one_pass") / "one.mkv"
    done = vidrestore(clip, out, *PASS_THROUGH, "--codec", "ffv1")
    assert done.returncode == 0, done.stderr
    return out


def test_output_has_the_source_frames_timestamps_and_streams(clip: Path, tmp_path: Path) -> None:
    report = archive(clip, tmp_path / "out.mkv")
    source, output = read_frame_index(clip), read_frame_index(tmp_path / "out.mkv")
    assert report["plan"]["boundaries"][-1] == source.frames and len(report["plan"]["boundaries"]) > 3
    assert output.pts == source.pts and output.time_base == source.time_base
    assert streams(tmp_path / "out.mkv") == streams(clip)
    assert report["verification"]["ok"] and report["restored"] == list(range(len(report["chunks"])))


def test_lossless_frames_equal_file_mode(clip: Path, one_pass_ffv1: Path, tmp_path: Path) -> None:
    one = archive(clip, tmp_path / "out.mkv", "--codec", "ffv1")
    assert len({c["worker"] for c in one["chunks"]}) == 1
    assert decoded_equal(tmp_path / "out.mkv", one_pass_ffv1)


def test_two_workers_give_the_frames_of_one(clip: Path, one_pass_ffv1: Path, tmp_path: Path) -> None:
    two = archive(clip, tmp_path / "two.mkv", "--codec", "ffv1", "--workers", "2")
    # which of the two workers takes which chunk depends on how fast each starts: only the bound is certain
    assert len({c["worker"] for c in two["chunks"]}) <= 2
    assert decoded_equal(tmp_path / "two.mkv", one_pass_ffv1)


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


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pids: list[int], polls: int = 600) -> list[int]:
    """The processes still alive after polling for them to go (the kernel kills them with their parent)."""
    for _ in range(polls):
        if not any(alive(p) for p in pids):
            return []
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


def test_kill_9_mid_job_then_the_same_command_keeps_the_finished_chunks(clip: Path, one_pass_ffv1: Path,
                                                                        tmp_path: Path) -> None:
    out, pids = tmp_path / "out.mkv", tmp_path / "pids"
    args = ["archive", clip, out, *PASS_THROUGH, "--chunk-seconds", CHUNK_SECONDS, "--codec", "ffv1"]
    killed = subprocess.run([sys.executable, Path(__file__).with_name("archive_kill.py"), "2", pids, *map(str, args)],
                            capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    work = tmp_path / "out.mkv.archive"
    recorded = sorted(int(p.stem) for p in (work / "done").glob("*.json"))
    assert len(recorded) == 2 and not out.exists()
    assert wait_gone([int(p) for p in pids.read_text().split()]) == [], "workers die with the command"
    files = {k: (work / "chunks" / f"{k:05d}.mkv").stat() for k in recorded}
    report = archive(clip, out, "--codec", "ffv1")
    assert report["kept"] == recorded and report["verification"]["ok"]
    assert sorted(report["kept"] + report["restored"]) == list(range(len(report["chunks"])))
    for k, before in files.items():  # a kept chunk is the same file, not restored again
        after = (work / "chunks" / f"{k:05d}.mkv").stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert not [p for p in work.rglob("*") if "vidrestore-tmp" in p.name], "the killed run's temporary files go"
    assert decoded_equal(out, one_pass_ffv1)


def test_a_worker_killed_mid_chunk_has_its_chunk_retried(clip: Path, tmp_path: Path) -> None:
    options = RestoreOptions(model="none", detector="none", codec="ffv1")
    plan = make_plan(clip, options, float(CHUNK_SECONDS), ".mkv")
    index = read_frame_index(clip)
    tasks = [chunk_task(plan, index, k, tmp_path / f"{k}.mkv", options) for k in range(plan.chunks)]
    killed: list[int] = []

    def kill_the_worker_on_its_first_frame(frames: int) -> None:
        """The worker has just restored the first frame of its first chunk: kill -9 it (once)."""
        if not killed:
            (worker,) = multiprocessing.active_children()
            os.kill(worker.pid, signal.SIGKILL)
            killed.append(worker.pid)

    results = run_chunks(plan, tasks, WorkerSettings(options), lambda result: None, kill_the_worker_on_its_first_frame)
    assert killed and sorted(r.index for r in results) == list(range(plan.chunks))
    first = max(tasks, key=lambda t: t.frames).index  # the longest is taken first: the one killed
    assert {r.index: r.tries for r in results} == {k: 2 if k == first else 1 for k in range(plan.chunks)}
    assert all(chunk_frames(t.path) == t.frames for t in tasks)
    assert len({r.worker for r in results}) == 1 and f":{killed[0]}:" not in results[0].worker


@pytest.mark.parametrize("out_name, codec, says", [
    ("out.mkv", "no_such_encoder", "no_such_encoder"),  # no such encoder
    ("out.mp4", "libx264", "cannot hold subtitle"),  # the clip's SRT subtitles do not fit into MP4
])
def test_a_bad_codec_or_container_is_refused_before_any_chunk(clip: Path, tmp_path: Path, out_name: str, codec: str,
                                                              says: str) -> None:
    done = vidrestore("archive", clip, tmp_path / out_name, *PASS_THROUGH, "--codec", codec)
    errors = [line for line in done.stderr.splitlines() if "error" in line]
    assert done.returncode == 2 and len(errors) == 1 and says in errors[0] and "chunk" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_gpus_without_cuda_is_one_error_before_any_work(clip: Path, tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    done = vidrestore("archive", clip, tmp_path / "out.mkv", *PASS_THROUGH, "--gpus", "0,1")
    assert done.returncode == 2 and "cuda:0" in done.stderr and "CUDA is not available" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_gpus_give_one_worker_per_gpu() -> None:
    parser = build_parser()
    args = parser.parse_args(["archive", "in.mkv", "out.mkv", "--gpus", "0,1"])
    assert archive_devices(args) == ("cuda:0", "cuda:1")
    with pytest.raises(VidrestoreError, match="GPU numbers"):
        archive_devices(parser.parse_args(["archive", "in.mkv", "out.mkv", "--gpus", "first"]))


@pytest.mark.slow  # a local Ray starting in the command's process; the Ray backend itself: test_archive_ray.py
def test_ray_from_the_command_line_gives_the_frames_of_one_pass(clip: Path, one_pass_ffv1: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    on_ray = archive(clip, tmp_path / "ray.mkv", "--codec", "ffv1", "--ray", "--workers", "2")
    assert on_ray["verification"]["ok"] and len({c["worker"] for c in on_ray["chunks"]}) <= 2
    assert decoded_equal(tmp_path / "ray.mkv", one_pass_ffv1)
