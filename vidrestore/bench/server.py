"""`vidrestore bench server`: requests/s and p50/p95 latency of `POST /v1/images:restore`.

The real server (`vidrestore serve`) is started in its own process on 127.0.0.1, once with
cross-request batching (`--max-batch N`) and once without (`--max-batch 1`), and 512x512 face images
are sent by 1, 4 and 16 concurrent clients (threads with their own keep-alive connection). The server's
own metrics give the images per model call, which shows whether batching took place.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import logging
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import httpx
import numpy as np
from PIL import Image

from vidrestore.bench import comma_list, publish
from vidrestore.bench.model import save_bench_checkpoint
from vidrestore.bench.video import machine

log = logging.getLogger(__name__)

DEFAULT_FACES = Path(__file__).resolve().parents[2].parent / "shared" / "media" / "faces"
FACE_SIZE = (512, 512)
START_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Point:
    """One measured configuration: batching on or off, concurrent clients, and what came out."""

    max_batch: int
    clients: int
    latencies: tuple[float, ...]
    seconds: float
    images_per_call: float

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, q: float) -> float:
        """A latency percentile in milliseconds."""
        return float(np.percentile(np.array(self.latencies), q)) * 1000.0

    def markdown(self, reference: "Point | None") -> str:
        gain = f"{self.rps / reference.rps:.2f}x" if reference is not None and reference.rps > 0 else ""
        mode = f"on (max {self.max_batch})" if self.max_batch > 1 else "off"
        return (f"| {mode} | {self.clients} | {len(self.latencies)} | {self.rps:.2f} | {self.percentile(50):.0f} | "
                f"{self.percentile(95):.0f} | {self.images_per_call:.2f} | {gain} |")


def face_images(folder: Path, limit: int = 16) -> list[bytes]:
    """The encoded bytes of up to `limit` 512x512 images of a folder."""
    found = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in (".png", ".jpg", ".jpeg"):
            with Image.open(path) as image:
                if image.size == FACE_SIZE:
                    found.append(path.read_bytes())
        if len(found) == limit:
            break
    if not found:
        raise SystemExit(f"no 512x512 face images in {folder} (give --faces DIR)")
    return found


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_server(args: argparse.Namespace, model: str, max_batch: int, log_path: Path) -> Iterator[str]:
    """`vidrestore serve` in a child process with this batching; its base URL once it answers."""
    port = free_port()
    command = [sys.executable, "-m", "vidrestore.cli", "-q", "serve", "--port", str(port), "--model", model,
               "--detector", args.detector, "--device", args.device, "--max-batch", str(max_batch),
               "--max-pending-images", "256", "--request-timeout", "600"]
    with log_path.open("w") as log_file:
        process = subprocess.Popen(command, stderr=log_file, stdout=log_file)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, process, log_path)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=60)


def wait_until_up(url: str, process: subprocess.Popen, log_path: Path) -> None:
    """Poll /healthz until the server answers; SystemExit with its log when it dies first."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited: {log_path.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit("the server did not start in time")


def batch_counts(url: str) -> tuple[float, float]:
    """(images restored, model calls) so far, from the server's metrics."""
    values = {}
    for line in httpx.get(url + "/metrics", timeout=30).text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("vidrestore_image_batch_size_sum", "vidrestore_image_batch_size_count"):
            values[name] = float(value)
    return values.get("vidrestore_image_batch_size_sum", 0.0), values.get("vidrestore_image_batch_size_count", 0.0)


def send_all(url: str, images: list[bytes], clients: int, requests: int) -> tuple[list[float], float]:
    """`requests` restorations sent by `clients` threads; (latency of each, wall seconds)."""
    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(requests))
    failures: list[str] = []

    def client_loop() -> None:
        with httpx.Client(base_url=url, timeout=600) as client:
            while True:
                with lock:
                    k = next(counter, None)
                if k is None:
                    return
                started = time.perf_counter()
                response = client.post("/v1/images:restore", content=images[k % len(images)])
                elapsed = time.perf_counter() - started
                with lock:
                    if response.status_code == 200:
                        latencies.append(elapsed)
                    else:
                        failures.append(f"{response.status_code} {response.text[:200]}")

    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    if failures:
        raise SystemExit(f"{len(failures)} request(s) failed, e.g. {failures[0]}")
    return latencies, wall


def measure(url: str, images: list[bytes], max_batch: int, clients: int, requests: int) -> Point:
    """One point: a short warm-up, then the timed requests."""
    send_all(url, images, clients, clients)
    before = batch_counts(url)
    latencies, wall = send_all(url, images, clients, requests)
    after = batch_counts(url)
    calls = after[1] - before[1]
    per_call = (after[0] - before[0]) / calls if calls else 0.0
    log.info("max batch %d, %d clients: %.2f req/s", max_batch, clients, len(latencies) / wall)
    return Point(max_batch, clients, tuple(latencies), wall, per_call)


def report(points: list[Point], args: argparse.Namespace, model_text: str, image_count: int) -> str:
    """The Markdown table: every point, with the gain of batching over no batching at the same load."""
    off = {p.clients: p for p in points if p.max_batch == 1}
    lines = [
        f"Machine: {machine()}; device {args.device}; date {datetime.date.today().isoformat()}.",
        f"Model: {model_text}; detector {Path(args.detector).name}; {image_count} distinct 512x512 face images, "
        f"sent as PNG; {args.requests} timed requests per point (at least 4 per client) after a warm-up; "
        f"both servers up at once, points on/off interleaved, best of {args.rounds} round(s).",
        "",
        "| batching | clients | requests | req/s | p50 ms | p95 ms | images per model call | req/s vs off |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [p.markdown(off.get(p.clients) if p.max_batch > 1 else None) for p in points]
    return "\n".join(lines) + "\n"


def measure_points(args: argparse.Namespace, model: str, images: list[bytes], concurrency: list[int], work: Path,
                   keep_going: Callable[[], bool] = lambda: True,
                   on_point: Callable[[Point], None] | None = None) -> list[Point]:
    """Best of args.rounds per (batching on/off, clients), both servers up at once; stops when keep_going() is False."""
    best: dict[tuple[int, int], Point] = {}
    modes = (args.max_batch, 1)
    with contextlib.ExitStack() as stack:
        urls = {b: stack.enter_context(running_server(args, model, b, work / f"server_{b}.log")) for b in modes}
        for point in _rounds(args, urls, images, concurrency, keep_going):
            key = (point.max_batch, point.clients)
            if key not in best or point.rps > best[key].rps:
                best[key] = point
            if on_point is not None:
                on_point(point)
    return [best[(b, c)] for b in modes for c in concurrency if (b, c) in best]


def _rounds(args: argparse.Namespace, urls: dict[int, str], images: list[bytes], concurrency: list[int],
            keep_going: Callable[[], bool]) -> Iterator[Point]:
    """Every point of every round, on and off interleaved (a change in the machine's load hits both)."""
    for _ in range(args.rounds):
        for clients in concurrency:
            for max_batch in urls:
                if not keep_going():
                    return
                yield measure(urls[max_batch], images, max_batch, clients, max(args.requests, 4 * clients))


def run_cli(args: argparse.Namespace) -> int:
    """Entry point of `vidrestore bench server`."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would drown the table
    images = face_images(Path(args.faces) if args.faces else DEFAULT_FACES)
    concurrency = comma_list(args.clients, int)
    with tempfile.TemporaryDirectory(prefix="vidrestore-bench-server-") as tmp:
        model = args.model or str(save_bench_checkpoint(Path(tmp), "small"))
        model_text = args.model or "small random-weight GFP-GAN (64x64 faces, `bench model --size small` config)"
        points = measure_points(args, model, images, concurrency, Path(tmp))
    text = report(points, args, model_text, len(images))
    return publish(text, args.output)
