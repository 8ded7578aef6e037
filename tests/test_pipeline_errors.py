"""The main job under failure: a failing stage, Ctrl-C and bad input stop it cleanly, leaving nothing."""

from __future__ import annotations

import _thread
import threading
from pathlib import Path

import pytest
import torch

from pipeline_support import cut_clip, files_in, make_tiny_restorer, pipeline_threads, rgb_frames, test_options
from vidrestore import cli
from vidrestore.errors import JobCancelled
from vidrestore.pipeline.job import restore_video
from vidrestore.pipeline.runner import Pipeline
from vidrestore.pipeline.stages import CropRestorer

FRAMES = 16
WAIT_S = 60.0  # a failure guard: the longest a stage waits for the main thread (far less is needed)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory, media_dir: Path) -> dict[str, Path]:
    """A short real clip with audio and a tiny restorer checkpoint."""
    folder = tmp_path_factory.mktemp("errors")
    clip = folder / "clip.mp4"
    cut_clip(media_dir / "videos" / "retalking_face_1.mp4", clip, FRAMES)
    return {"clip": clip, "model": make_tiny_restorer(folder / "tiny.pth")}


def _cli_args(work: dict[str, Path], detector: Path, out: Path, *extra: str) -> list[str]:
    return [str(work["clip"]), str(out), "--model", str(work["model"]), "--detector", str(detector),
            "--device", "cpu", "--det-size", "320", "--preset", "ultrafast", "--no-progress", *extra]


def test_a_failing_stage_stops_the_job_and_leaves_nothing(work, detector_weights, tmp_path, monkeypatch) -> None:
    def broken(self, *args, **kwargs):
        raise RuntimeError("restorer exploded")

    monkeypatch.setattr(CropRestorer, "restore", broken)
    with pytest.raises(RuntimeError, match="restorer exploded"):
        restore_video(work["clip"], tmp_path / "out.mp4", test_options(work["model"], detector_weights),
                      compare=tmp_path / "side.mp4", progress=False)
    assert files_in(tmp_path) == []
    assert not pipeline_threads()


def test_cancel_event_stops_the_job_and_leaves_nothing(work, detector_weights, tmp_path) -> None:
    cancel = threading.Event()
    seen: list[tuple[int, int | None]] = []

    def progress(done: int, total: int | None) -> None:
        seen.append((done, total))
        if done == 3:
            cancel.set()

    with pytest.raises(JobCancelled):
        restore_video(work["clip"], tmp_path / "out.mp4", test_options(work["model"], detector_weights),
                      compare=tmp_path / "side.mp4", progress=False, on_progress=progress, cancel=cancel)
    assert seen[:3] == [(1, FRAMES), (2, FRAMES), (3, FRAMES)]
    assert files_in(tmp_path) == []
    assert not pipeline_threads()


def test_interrupt_inside_a_stage_exits_130_and_leaves_nothing(work, detector_weights, tmp_path, monkeypatch) -> None:
    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(CropRestorer, "restore", interrupted)
    assert cli.main(_cli_args(work, detector_weights, tmp_path / "out.mp4", "--compare", str(tmp_path / "s.mp4"))) == 130
    assert files_in(tmp_path) == []
    assert not pipeline_threads()


def test_ctrl_c_in_the_main_thread_exits_130_and_leaves_nothing(work, detector_weights, tmp_path, monkeypatch) -> None:
    restore, cancel = CropRestorer.restore, Pipeline.cancel
    cancelled = threading.Event()
    interrupted: list[bool] = []

    def cancel_and_tell(self) -> None:
        cancel(self)
        cancelled.set()

    def ctrl_c_then_wait_for_the_cancel(self, *args, **kwargs):
        if not interrupted:  # Ctrl-C once, at the first face: the job is surely running and not done
            interrupted.append(True)
            _thread.interrupt_main()  # what Ctrl-C does: KeyboardInterrupt in the main thread
            assert cancelled.wait(WAIT_S), "the main thread did not cancel the job after Ctrl-C"
        return restore(self, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "cancel", cancel_and_tell)
    monkeypatch.setattr(CropRestorer, "restore", ctrl_c_then_wait_for_the_cancel)
    assert cli.main(_cli_args(work, detector_weights, tmp_path / "out.mp4")) == 130
    assert files_in(tmp_path) == []
    assert not pipeline_threads()


def _expect_one_line_error(args: list[str], capsys: pytest.CaptureFixture, folder: Path, *words: str) -> None:
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vidrestore: error:"), err
    for word in words:
        assert word in err[0]
    assert files_in(folder) == []


def test_unknown_model_name_offline(work, detector_weights, tmp_path, capsys) -> None:
    args = _cli_args(work, detector_weights, tmp_path / "out.mp4")
    args[args.index("--model") + 1] = "GFPGANv9.9"
    _expect_one_line_error([*args, "--offline", "-q"], capsys, tmp_path, "GFPGANv9.9")


def test_weights_of_another_architecture(work, detector_weights, tmp_path, capsys) -> None:
    args = _cli_args(work, detector_weights, tmp_path / "out.mp4")
    args[args.index("--model") + 1] = str(detector_weights)
    _expect_one_line_error([*args, "-q"], capsys, tmp_path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda(work, detector_weights, tmp_path, capsys) -> None:
    args = _cli_args(work, detector_weights, tmp_path / "out.mp4")
    args[args.index("--device") + 1] = "cuda"
    _expect_one_line_error([*args, "-q"], capsys, tmp_path, "CUDA")


def test_missing_input_and_bad_options(work, detector_weights, tmp_path, capsys) -> None:
    _expect_one_line_error(["missing.mp4", str(tmp_path / "out.mp4"), "--model", "none", "-q"], capsys, tmp_path,
                           "missing.mp4")
    _expect_one_line_error([*_cli_args(work, detector_weights, tmp_path / "out.mp4"), "--blend", "1.5", "-q"],
                           capsys, tmp_path, "blend")
    _expect_one_line_error([*_cli_args(work, detector_weights, tmp_path / "out.mp4"), "--config", "nosuch", "-q"],
                           capsys, tmp_path, "nosuch")


def test_explicit_and_implicit_restore_command(work, detector_weights, tmp_path) -> None:
    out = tmp_path / "out.mp4"
    assert cli.main(["-q", "restore", *_cli_args(work, detector_weights, out)]) == 0
    assert len(rgb_frames(out)) == FRAMES
