"""The HTTP API's image route, health, metrics and OpenAPI, against a real server on 127.0.0.1."""

from __future__ import annotations

import base64
import io
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from pipeline_support import make_tiny_restorer, test_options
from server_support import FACE, assert_error, decode, live_server, state_of, wait_for
from vidrestore.errors import VidrestoreError
from vidrestore.pipeline.restorer_api import Restorer
from vidrestore.server.settings import ServerSettings, is_loopback


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_restorer(tmp_path_factory.mktemp("server") / "tiny.pth")


@pytest.fixture(scope="module")
def restorer(tiny: Path, detector_weights: Path) -> Restorer:
    return Restorer(test_options(tiny, detector_weights))


@pytest.fixture(scope="module")
def api(restorer: Restorer):
    with live_server(restorer, max_image_bytes=1_000_000, max_pixels=1_000_000) as running:
        yield running


@pytest.fixture(scope="module")
def client(api) -> httpx.Client:
    return api[1]


@pytest.fixture(scope="module")
def faces(media_dir: Path) -> list[bytes]:
    """Four aligned 512x512 face PNGs."""
    paths = [media_dir / "faces" / FACE, *sorted((media_dir / "faces").glob("codeformer_0*.png"))[:3]]
    return [p.read_bytes() for p in paths]


def metric(client: httpx.Client, name: str, **labels: str) -> float:
    """One sample of the Prometheus text at /metrics (0 when absent)."""
    text = client.get("/metrics").text
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        if head == name or (wanted and head.startswith(name + "{") and all(w in head for w in wanted)):
            return float(value)
    return 0.0


def test_image_restored_from_a_raw_body(client: httpx.Client, faces: list[bytes]) -> None:
    response = client.post("/v1/images:restore", content=faces[0], headers={"content-type": "image/png"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-faces-found"] == "1"
    before, after = decode(faces[0]), decode(response.content)
    assert after.shape == before.shape
    assert np.abs(after.astype(int) - before).mean() > 0.5  # the face was restored (random weights: changed)


def test_form_fields_json_variant_and_output_format(client: httpx.Client, faces: list[bytes]) -> None:
    response = client.post("/v1/images:restore", params={"response": "json"},
                           files={"file": ("face.png", faces[0], "image/png")}, data={"format": "jpeg", "blend": "0.5"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["media_type"] == "image/jpeg" and (body["width"], body["height"]) == (512, 512)
    [face] = body["faces"]
    x1, y1, x2, y2 = face["box"]
    assert 0 <= x1 < x2 <= 512 and 0 <= y1 < y2 <= 512 and 0 < face["score"] <= 1 and len(face["landmarks"]) == 5
    image = Image.open(io.BytesIO(base64.b64decode(body["image"])))
    assert image.format == "JPEG" and image.size == (512, 512)


def test_blend_and_model_none(client: httpx.Client, faces: list[bytes]) -> None:
    before = decode(faces[0])
    full = decode(client.post("/v1/images:restore", content=faces[0]).content)
    half = decode(client.post("/v1/images:restore", params={"blend": 0.5}, content=faces[0]).content)
    assert 0 < np.abs(half.astype(int) - before).sum() < np.abs(full.astype(int) - before).sum()
    # form fields win over query parameters; model=none hands the pixels back untouched
    none = client.post("/v1/images:restore", params={"model": "tiny"}, files={"file": ("f.png", faces[0])},
                       data={"model": "none"})
    assert none.status_code == 200 and none.headers["x-faces-found"] == "0"
    assert np.array_equal(decode(none.content), before)


def test_same_format_and_alpha_kept(client: httpx.Client, faces: list[bytes]) -> None:
    rgb = decode(faces[1])
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=90)
    jpeg = client.post("/v1/images:restore", content=buffer.getvalue())
    assert jpeg.status_code == 200 and jpeg.headers["content-type"] == "image/jpeg"
    alpha = np.tile(np.arange(512, dtype=np.uint8)[None, :] // 2, (512, 1))
    rgba = Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    buffer = io.BytesIO()
    rgba.save(buffer, format="PNG")
    out = client.post("/v1/images:restore", params={"format": "webp"}, content=buffer.getvalue())
    assert out.headers["content-type"] == "image/webp"
    restored = Image.open(io.BytesIO(client.post("/v1/images:restore", content=buffer.getvalue()).content))
    assert restored.mode == "RGBA" and np.array_equal(np.asarray(restored)[..., 3], alpha)
    grey16 = (rgb.mean(axis=2) * 257).astype(np.uint16)  # a 16-bit grey PNG: scaled to 8 bits, not clipped
    buffer = io.BytesIO()
    Image.fromarray(grey16).save(buffer, format="PNG")
    deep = decode(client.post("/v1/images:restore", content=buffer.getvalue()).content)
    corner = np.round(grey16[:24, :24] / 257.0).astype(int)
    assert np.array_equal(deep[:24, :24, 0], corner) and np.array_equal(deep[:24, :24, 2], corner)
    buffer = io.BytesIO()  # a camera JPEG with a second picture inside (MPO) comes back as a JPEG
    Image.fromarray(rgb).save(buffer, format="MPO", save_all=True, append_images=[Image.fromarray(rgb)])
    mpo = client.post("/v1/images:restore", content=buffer.getvalue())
    assert mpo.status_code == 200 and mpo.headers["content-type"] == "image/jpeg"


def test_concurrent_requests_share_one_model_call(api, faces: list[bytes], restorer: Restorer) -> None:
    server, client = api
    state = state_of(server)
    expected = [r.image for r in restorer.restore_frames([decode(f) for f in faces])]
    batches_before = metric(client, "vidrestore_image_batch_size_count")
    results: dict[int, httpx.Response] = {}

    def send(k: int) -> None:
        results[k] = client.post("/v1/images:restore", content=faces[k])

    with state.device_lock:  # the model is busy: the requests queue up behind it
        threads = [threading.Thread(target=send, args=(k,)) for k in range(len(faces))]
        for t in threads:
            t.start()
        wait_for(lambda: state.batcher.pending == len(faces), "all requests to reach the image worker")
    for t in threads:
        t.join()
    assert all(results[k].status_code == 200 for k in range(len(faces)))
    for k, image in enumerate(expected):  # batched with the others or alone: the same restoration
        assert np.abs(decode(results[k].content).astype(int) - image).max() <= 1
    batches = metric(client, "vidrestore_image_batch_size_count") - batches_before
    assert 1 <= batches < len(faces)  # fewer model calls than requests


def test_metrics_health_and_openapi(client: httpx.Client, faces: list[bytes]) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    client.post("/v1/images:restore", content=faces[0])
    client.get("/v1/jobs/0123")
    assert metric(client, "vidrestore_http_requests_total", route="/v1/images:restore", status="200") >= 1
    assert metric(client, "vidrestore_http_requests_total", route="/v1/jobs/{job_id}", status="404") >= 1
    assert metric(client, "vidrestore_http_request_duration_seconds_count", route="/v1/images:restore") >= 1
    assert metric(client, "vidrestore_faces_restored_total", kind="image") >= 1
    text = client.get("/metrics").text
    for line in ('vidrestore_queue_depth{queue="images"}', 'vidrestore_queue_depth{queue="videos"}',
                 'vidrestore_jobs{state="running"}'):
        assert line in text
    spec = client.get("/openapi.json").json()
    assert {"/v1/images:restore", "/v1/videos", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/result", "/healthz",
            "/metrics"} <= set(spec["paths"])
    assert "multipart/form-data" in spec["paths"]["/v1/images:restore"]["post"]["requestBody"]["content"]
    assert "swagger" in client.get("/docs").text.lower()


def test_bad_images_are_400(client: httpx.Client, faces: list[bytes]) -> None:
    assert_error(client.post("/v1/images:restore", content=b"GIF89a not really"), 400, "not_an_image")
    assert_error(client.post("/v1/images:restore", content=b"%PDF-1.4\n" + bytes(500)), 400, "not_an_image")
    assert_error(client.post("/v1/images:restore", content=faces[0][: len(faces[0]) // 2]), 400, "bad_image")
    buffer = io.BytesIO()
    Image.fromarray(decode(faces[0])).save(buffer, format="JPEG")
    assert_error(client.post("/v1/images:restore", content=buffer.getvalue()[:3000]), 400, "bad_image")
    assert_error(client.post("/v1/images:restore", content=b""), 400, "empty_upload")


def test_bad_forms_and_parameters(client: httpx.Client, faces: list[bytes]) -> None:
    two = [("file", ("a.png", faces[0])), ("file", ("b.png", faces[1]))]
    assert_error(client.post("/v1/images:restore", files=two), 400, "bad_multipart")
    assert_error(client.post("/v1/images:restore", files={"note": (None, b"text")}), 400, "missing_file")
    broken = b"--xyz\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n" + faces[0][:1000]
    assert_error(client.post("/v1/images:restore", content=broken,
                             headers={"content-type": "multipart/form-data; boundary=xyz"}), 400, "bad_multipart")
    assert_error(client.post("/v1/images:restore", params={"blend": 2}, content=faces[0]), 422, "invalid_parameter")
    assert_error(client.post("/v1/images:restore", params={"format": "gif"}, content=faces[0]), 422,
                 "invalid_parameter")
    assert_error(client.post("/v1/images:restore", files={"file": ("f.png", faces[0])}, data={"colour": "red"}),
                 422, "invalid_parameter")
    assert_error(client.post("/v1/images:restore", params={"model": "GFPGANv1.3"}, content=faces[0]), 400,
                 "unknown_model")


def test_size_limits(client: httpx.Client) -> None:
    assert_error(client.post("/v1/images:restore", content=bytes(1_000_001)), 413, "upload_too_large")

    def chunks():  # no Content-Length: the limit holds while the body streams in
        for _ in range(100):
            yield bytes(65536)

    assert_error(client.post("/v1/images:restore", content=chunks()), 413, "upload_too_large")
    bomb = io.BytesIO()
    Image.new("1", (2000, 2000)).save(bomb, format="PNG")  # 4 megapixels in a few kilobytes
    assert len(bomb.getvalue()) < 20_000
    assert_error(client.post("/v1/images:restore", content=bomb.getvalue()), 413, "too_many_pixels")


def test_unknown_routes_jobs_and_methods_are_json(client: httpx.Client) -> None:
    assert_error(client.get("/v1/jobs/0123456789abcdef0123456789abcdef"), 404, "unknown_job")
    assert_error(client.get("/v1/jobs/nope/result"), 404, "unknown_job")
    assert_error(client.delete("/v1/jobs/nope"), 404, "unknown_job")
    assert_error(client.get("/v2/anything"), 404, "not_found")
    assert_error(client.get("/v1/images:restore"), 405, "method_not_allowed")


@pytest.fixture(scope="module")
def strict(restorer: Restorer):
    """A server with a token that lets one web origin call it."""
    with live_server(restorer, token="s3cret", cors_origins=("https://app.example",)) as running:
        yield running


def test_token_is_required_on_v1_and_metrics(strict, faces: list[bytes]) -> None:
    _, client = strict
    assert client.get("/healthz").status_code == 200
    assert_error(client.post("/v1/images:restore", content=faces[0]), 401, "unauthorized")
    wrong = client.get("/v1/jobs/x", headers={"authorization": "Bearer s3cre"})
    assert_error(wrong, 401, "unauthorized")
    assert wrong.headers["www-authenticate"] == "Bearer"
    assert_error(client.get("/metrics", headers={"authorization": "Basic s3cret"}), 401, "unauthorized")
    right = {"authorization": "Bearer s3cret"}
    assert_error(client.get("/v1/jobs/x", headers=right), 404, "unknown_job")
    assert client.get("/metrics", headers=right).status_code == 200
    assert client.post("/v1/images:restore", content=faces[0], headers=right).status_code == 200


def test_web_pages_of_allowed_origins_may_call(strict) -> None:
    _, client = strict
    preflight = client.options("/v1/images:restore", headers={
        "origin": "https://app.example", "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    answer = client.get("/v1/jobs/x", headers={"origin": "https://app.example", "authorization": "Bearer s3cret"})
    assert answer.headers["access-control-allow-origin"] == "https://app.example"
    other = client.get("/v1/jobs/x", headers={"origin": "https://evil.example", "authorization": "Bearer s3cret"})
    assert "access-control-allow-origin" not in other.headers


def test_busy_model_timeouts_and_slow_uploads(restorer: Restorer, faces: list[bytes]) -> None:
    with live_server(restorer, max_pending_images=1, request_timeout_s=1.0, upload_timeout_s=1.0) as (server, client):
        state = state_of(server)
        first: list[httpx.Response] = []
        with state.device_lock:  # the model is busy longer than the request timeout
            sender = threading.Thread(target=lambda: first.append(client.post("/v1/images:restore",
                                                                              content=faces[0])))
            sender.start()
            wait_for(lambda: state.batcher.pending == 1, "the first image to reach the worker")
            assert_error(client.post("/v1/images:restore", content=faces[1]), 429, "busy")
            sender.join()
        assert_error(first[0], 504, "timeout")

        def trickle():
            for _ in range(4):
                threading.Event().wait(0.5)
                yield b"\x89PNG"

        assert_error(client.post("/v1/images:restore", content=trickle()), 408, "upload_timeout")
        wait_for(lambda: state.pending_images == 0 and state.batcher.pending == 0, "the server to be idle")
        assert not list(state.uploads.iterdir())  # no upload left behind


def test_settings_from_the_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from vidrestore import cli
    from vidrestore.server.command import settings_from_args

    monkeypatch.setenv("VIDRESTORE_TOKEN", "from-env")
    args = cli.build_parser().parse_args(["serve", "--host", "0.0.0.0", "--max-image-mb", "0.5", "--max-batch", "4",
                                          "--allow-origin", "https://a.example", "--retention", "90"])
    settings = settings_from_args(args)
    assert settings.token == "from-env" and settings.max_image_bytes == 512 * 1024 and settings.max_batch == 4
    assert settings.cors_origins == ("https://a.example",) and settings.retention_s == 90.0
    settings.check_exposure()  # an open address is fine with a token
    for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"):
        assert is_loopback(host)
    for host in ("0.0.0.0", "::", "192.168.1.2", "example.com"):
        assert not is_loopback(host)
    with pytest.raises(VidrestoreError, match="max-batch must be positive"):
        ServerSettings(max_batch=0)


def test_serve_refuses_an_open_address_without_a_token(capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from vidrestore import cli

    monkeypatch.delenv("VIDRESTORE_TOKEN", raising=False)
    assert cli.main(["serve", "--host", "0.0.0.0", "--model", "none"]) == 2
    assert "without a token" in capsys.readouterr().err


def test_serve_command_starts_and_stops(tiny: Path, detector_weights: Path, faces: list[bytes], tmp_path: Path) -> None:
    work = tmp_path / "work"
    command = [sys.executable, "-m", "vidrestore.cli", "serve", "--port", "0", "--model", str(tiny), "--detector",
               str(detector_weights), "--device", "cpu", "--det-size", "320", "--work-dir", str(work)]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        for line in process.stderr:  # the log names the address once the model is loaded
            found = re.search(r"serving on (http://\S+)", line)
            if found:
                url = found.group(1)
                break
        assert url, "the server did not start"
        with httpx.Client(base_url=url, timeout=60) as client:
            wait_for(lambda: client.get("/healthz").status_code == 200, "the server to answer")
            response = client.post("/v1/images:restore", content=faces[0])
            assert response.status_code == 200 and response.headers["x-faces-found"] == "1"
    finally:
        process.send_signal(signal.SIGINT)
        _, log = process.communicate(timeout=60)
    assert process.returncode == 130  # Ctrl-C, after a graceful shutdown
    assert "Application shutdown complete" in log
    assert sorted(p.name for p in work.rglob("*")) == ["jobs", "uploads"]  # nothing left in them
