"""SIGTERM stops every command as cleanly as Ctrl-C, and a run killed outright (kill -9) leaves nothing
that a later run writing the same output keeps: real `vidrestore` processes, real clips, real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import av
import pytest

from pipeline_support import cut_clip, files_in, make_tiny_restorer
from train_support import SMALL_CONFIG
from vidrestore import cli

CLIP = "retalking_face_1.mp4"  # 700x700, no B-frames, one face
FRAMES = 24  # seconds of work on CPU after the output's temporary file appears: time to send a signal
POLL_S = 0.02
POLLS = 6000  # 120 s at most: a guard against a hang, not a timing check
TMP_MARK = ".vidrestore-tmp-"


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory, media_dir: Path) -> dict[str, Path]:
    """A short real clip and a tiny random-weight restorer."""
    folder = tmp_path_factory.mktemp("signals")
    cut_clip(media_dir / "videos" / CLIP, folder / "clip.mp4", FRAMES)
    return {"clip": folder / "clip.mp4", "model": make_tiny_restorer(folder / "tiny.pth")}


def model_args(work: dict[str, Path], detector: Path) -> list[str]:
    """The tiny restorer and the real detector at a small size, on the CPU, nothing downloaded."""
    return ["--model", str(work["model"]), "--detector", str(detector), "--device", "cpu", "--det-size", "320",
            "--offline"]


class Run:
    """A `vidrestore` process whose log goes to a file (a full pipe could stall it)."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.log_path = log
        with open(log, "wb") as sink:
            self.process = subprocess.Popen([sys.executable, "-m", "vidrestore.cli", *args], stderr=sink,
                                            stdout=subprocess.DEVNULL)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_until(self, condition: Callable[[], bool], what: str) -> None:
        """Poll until `condition` holds while the process runs; fail if it ends first or never gets there."""
        for _ in range(POLLS):
            if condition():
                return
            if self.process.poll() is not None:
                pytest.fail(f"vidrestore ended (status {self.process.returncode}) before {what}:\n{self.log()}")
            time.sleep(POLL_S)
        self.stop(signal.SIGKILL)
        pytest.fail(f"gave up waiting for {what}:\n{self.log()}")

    def stop(self, sig: int) -> int:
        """Send `sig` and wait for the process to end; its exit status."""
        self.process.send_signal(sig)
        return self.process.wait(timeout=POLLS * POLL_S)


def temps_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if TMP_MARK in p.name)


def frame_count(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def test_a_later_run_removes_the_temporary_files_of_dead_runs_only(work, detector_weights, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "r.mp4"
    args = [str(work["clip"]), str(out), *model_args(work, detector_weights), "--preset", "ultrafast", "-q"]

    killed = Run(args, tmp_path / "killed.log")
    killed.wait_until(lambda: temps_in(out_dir), "its temporary file appeared")
    assert killed.stop(signal.SIGKILL) == -signal.SIGKILL
    [left] = temps_in(out_dir)  # nothing can clean up after kill -9 ...
    assert f"{TMP_MARK}{killed.process.pid}-" in left.name  # ... but the name says whose it was

    paused = Run(args, tmp_path / "paused.log")
    paused.wait_until(lambda: temps_in(out_dir) != [left], "the second run's temporary file appeared")
    paused.process.send_signal(signal.SIGSTOP)  # alive, not writing: its file must survive the next run
    [live] = temps_in(out_dir)  # the later run removed the dead run's leftover before it made its own
    assert live != left and f"{TMP_MARK}{paused.process.pid}-" in live.name
    try:
        assert cli.main(args) == 0  # a third run, to completion, writing the same output
        assert temps_in(out_dir) == [live]  # the live run's file kept
        assert frame_count(out) == FRAMES
        paused.process.send_signal(signal.SIGTERM)  # pending until it runs again: it cannot finish first
    finally:
        paused.process.send_signal(signal.SIGCONT)
    assert paused.process.wait(timeout=POLLS * POLL_S) == cli.EXIT_TERMINATED
    assert "stopped (SIGTERM)" in paused.log() and "Traceback" not in paused.log()
    assert files_in(out_dir) == ["r.mp4"]  # its own temporary file removed, the finished output untouched
    assert frame_count(out) == FRAMES


def test_sigterm_stops_track_and_live_like_ctrl_c(work, detector_weights, tmp_path):
    """track (its annotated video) and live (its recording): SIGTERM exits 143 and leaves no temporary file."""
    commands = {
        "track": ["track", str(work["clip"]), "--json", str(tmp_path / "t.json"), "--draw",
                  str(tmp_path / "boxes.mp4"), "--detector", str(detector_weights), "--device", "cpu",
                  "--det-size", "320", "-q", "--offline"],
        "live": ["live", str(work["clip"]), "--loop", "--record", str(tmp_path / "rec.mp4"),
                 *model_args(work, detector_weights), "-q"],
    }
    for name, args in commands.items():
        run = Run(args, tmp_path / f"{name}.log")
        run.wait_until(lambda: temps_in(tmp_path), f"the temporary file of {name} appeared")
        assert run.stop(signal.SIGTERM) == cli.EXIT_TERMINATED, run.log()
        assert "Traceback" not in run.log()
        assert temps_in(tmp_path) == [], name
    assert not (tmp_path / "t.json").exists() and not (tmp_path / "boxes.mp4").exists()  # track: nothing half-done
    if (tmp_path / "rec.mp4").exists():  # live keeps what it recorded, as on Ctrl-C: a whole, playable file
        assert frame_count(tmp_path / "rec.mp4") > 0


def test_sigterm_shuts_serve_down_gracefully(tmp_path):
    work_dir = tmp_path / "work"
    run = Run(["serve", "--port", "0", "--model", "none", "--detector", "none", "--work-dir", str(work_dir)],
              tmp_path / "serve.log")
    run.wait_until(lambda: "Application startup complete" in run.log(), "the server started")
    assert run.stop(signal.SIGTERM) == cli.EXIT_TERMINATED
    assert "Application shutdown complete" in run.log() and "Traceback" not in run.log()
    assert sorted(p.name for p in work_dir.rglob("*")) == ["jobs", "uploads"]


def test_sigterm_stops_training_with_a_checkpoint(media_dir, tmp_path):
    """train keeps its own SIGTERM handling: finish the iteration, save latest.pth (resumable), exit 0."""
    config = tmp_path / "endless.yaml"
    text = SMALL_CONFIG.read_text().replace("../shared/media/faces_hq/ffhq", str(media_dir / "faces_hq" / "ffhq"))
    config.write_text(text.replace("total_iter: 4", "total_iter: 100000").replace("val_every: 2", "val_every: 0")
                      .replace("save_every: 2", "save_every: 0"))
    out_dir = tmp_path / "run"
    run = Run(["train", str(config), "--out-dir", str(out_dir)], tmp_path / "train.log")
    run.wait_until(lambda: "iter 1 " in run.log(), "the first iteration")
    assert run.stop(signal.SIGTERM) == 0, run.log()
    assert "stopped at iteration" in run.log()
    assert files_in(out_dir) == ["latest.pth"]
    assert os.path.getsize(out_dir / "latest.pth") > 0
