"""Video jobs through the HTTP API: upload, progress, download with Range, cancel, queue bound, retention."""

from __future__ import annotations

import threading
from pathlib import Path

import av
import httpx
import numpy as np
import pytest

from pipeline_support import cut_clip, make_tiny_restorer, rgb_frames, test_options
from server_support import assert_error, live_server, state_of, wait_for
import vidrestore.pipeline.job as pipeline_job
from vidrestore.errors import MediaError
from vidrestore.pipeline.restorer_api import Restorer
from vidrestore.server.jobs import Job, client_message

CLIP = "retalking_face_1.mp4"  # 700x700, about 22 fps, AAC audio
FRAMES = 10
LONG_FRAMES = 70  # about 3 s: over the servers' 2 s limit


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory, media_dir: Path) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("server_videos")
    short, long = folder / "short.mp4", folder / "long.mp4"
    cut_clip(media_dir / "videos" / CLIP, short, FRAMES)
    cut_clip(media_dir / "videos" / CLIP, long, LONG_FRAMES)
    return {"short": short, "long": long}


@pytest.fixture(scope="module")
def restorer(tmp_path_factory: pytest.TempPathFactory, detector_weights: Path) -> Restorer:
    tiny = make_tiny_restorer(tmp_path_factory.mktemp("server_model") / "tiny.pth")
    return Restorer(test_options(tiny, detector_weights))


@pytest.fixture(scope="module")
def api(restorer: Restorer):
    with live_server(restorer, max_video_seconds=2.0) as running:
        yield running


def submit(client: httpx.Client, clip: Path, **params: str) -> httpx.Response:
    """Upload a clip as the `file` part of a form."""
    with clip.open("rb") as f:
        return client.post("/v1/videos", params=params, files={"file": (clip.name, f, "video/mp4")})


def wait_until_done(client: httpx.Client, job_id: str) -> dict:
    """Poll the job until it has ended; its last state."""
    states: list[dict] = []

    def ended() -> bool:
        states.append(client.get(f"/v1/jobs/{job_id}").json())
        return states[-1]["state"] in ("done", "failed", "cancelled")

    wait_for(ended, f"job {job_id} to end")
    return states[-1]


def test_video_job_runs_and_downloads_with_range(api, clips: dict[str, Path], tmp_path: Path, monkeypatch) -> None:
    server, client = api

    def no_second_copy(*args, **kwargs):
        raise AssertionError("a video job loaded its own model or detector")

    monkeypatch.setattr(pipeline_job, "load_crop_restorer", no_second_copy)  # jobs use the server's loaded ones
    monkeypatch.setattr(pipeline_job, "load_detector", no_second_copy)
    response = submit(client, clips["short"])
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["state"] in ("queued", "running") and response.headers["location"] == f"/v1/jobs/{job['id']}"
    folder = state_of(server).jobs.root / job["id"]
    assert folder.is_dir()
    done = wait_until_done(client, job["id"])
    assert done["state"] == "done", done
    assert done["frames"] == FRAMES and done["faces"] >= FRAMES - 2 and done["progress"]["fraction"] == 1.0
    result = client.get(done["result"])
    assert result.status_code == 200 and result.headers["content-type"] == "video/mp4"
    assert result.headers["accept-ranges"] == "bytes"
    out = tmp_path / "restored.mp4"
    out.write_bytes(result.content)
    with av.open(str(out)) as container:
        assert len(container.streams.audio) == 1  # the sound track came through
    before, after = rgb_frames(clips["short"]), rgb_frames(out)
    assert len(after) == len(before) == FRAMES
    assert np.abs(after[0].astype(int) - before[0]).mean() > 0.1  # the face was restored
    part = client.get(done["result"], headers={"range": "bytes=100-1099"})
    assert part.status_code == 206 and part.content == result.content[100:1100]
    assert part.headers["content-range"] == f"bytes 100-1099/{len(result.content)}"
    assert client.delete(f"/v1/jobs/{job['id']}").status_code == 204
    assert_error(client.get(f"/v1/jobs/{job['id']}"), 404, "unknown_job")
    assert_error(client.get(done["result"]), 404, "unknown_job")
    assert not folder.exists()


def test_raw_upload_options_and_container(api, clips: dict[str, Path]) -> None:
    _, client = api
    response = client.post("/v1/videos", params={"model": "none", "format": "mkv"},
                           content=clips["short"].read_bytes(), headers={"content-type": "video/mp4"})
    assert response.status_code == 202, response.text
    done = wait_until_done(client, response.json()["id"])
    assert done["state"] == "done" and done["frames"] == FRAMES
    result = client.get(done["result"])
    assert result.headers["content-type"] == "video/x-matroska"
    assert "restored-" in result.headers["content-disposition"]
    client.delete(f"/v1/jobs/{done['id']}")


def test_bad_videos_are_refused(api, clips: dict[str, Path]) -> None:
    server, client = api
    assert_error(client.post("/v1/videos", content=b"not a video at all" * 100), 400, "not_a_video")
    playlist = b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n"
    assert_error(client.post("/v1/videos", content=playlist), 400, "not_a_video")  # never handed to FFmpeg
    data = clips["short"].read_bytes()
    assert_error(client.post("/v1/videos", content=data[:2000]), 400, "not_a_video")  # truncated
    assert_error(submit(client, clips["long"]), 413, "video_too_long")
    assert_error(submit(client, clips["short"], blend="x"), 422, "invalid_parameter")
    assert not list(state_of(server).jobs.root.iterdir())  # refused uploads leave nothing behind


def test_delete_cancels_a_running_job(api, clips: dict[str, Path]) -> None:
    server, client = api
    state = state_of(server)
    entered, release = threading.Event(), threading.Event()
    with state.device_lock:  # the job waits for the model while the test watches its progress
        job_id = submit(client, clips["short"]).json()["id"]
        job = state.jobs.get(job_id)
        original = job.on_progress

        def held_progress(done: int, total: int | None) -> None:
            original(done, total)
            entered.set()
            release.wait(60)

        job.on_progress = held_progress  # type: ignore[method-assign]
        assert_error(client.get(f"/v1/jobs/{job_id}/result"), 409, "not_ready")
    assert entered.wait(120)
    assert client.get(f"/v1/jobs/{job_id}").json()["state"] == "running"
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 204
    release.set()
    wait_for(lambda: job.finished is not None and not job.folder.exists(), "the job to stop and be removed")
    assert job.state.value == "cancelled"


def test_queue_bound_and_retention(restorer: Restorer, clips: dict[str, Path]) -> None:
    threads_before = set(threading.enumerate())
    with live_server(restorer, max_queued_jobs=1, retention_s=1.0, token="t") as (server, client):
        client.headers["authorization"] = "Bearer t"
        state = state_of(server)
        with state.device_lock:  # the worker cannot start: the first job stays queued
            first = submit(client, clips["short"])
            assert first.status_code == 202
            full = submit(client, clips["short"])
            assert_error(full, 429, "queue_full")
            assert "retry-after" in full.headers
            job_id = first.json()["id"]
            job = state.jobs.get(job_id)
        wait_for(lambda: job.finished is not None, "the job to run")
        assert job.state.value == "done", job.error
        # ended jobs are removed with their files once the retention time has passed
        wait_for(lambda: client.get(f"/v1/jobs/{job_id}").status_code == 404, "the finished job to expire")
        assert not (state.jobs.root / job_id).exists()
    # the server stopped: its worker threads ended and its temporary work folder is gone
    assert not [t.name for t in set(threading.enumerate()) - threads_before if t.name.startswith("vidrestore-server")]
    assert not state.work_dir.exists()


def test_failed_job_messages_do_not_show_server_folders(tmp_path: Path) -> None:
    folder = tmp_path / "jobs" / "0123456789abcdef0123456789abcdef"
    job = Job("0123456789abcdef0123456789abcdef", folder, folder / "input.mp4", folder / "result.mp4")
    error = MediaError(f"cannot open {folder / 'input.mp4'}: invalid data; see {folder}")
    assert client_message(error, job) == "cannot open input.mp4: invalid data; see the job folder"
