"""The benchmarks of `vidrestore bench gpu`, each a function of one gpu_worker.Task, run in the worker process.

Each records its figures as it goes (table rows, headline figures against DESIGN.md section 7, skips
with their reason) and checks its budget before each point. They build on the `vidrestore bench`
modules: model (restorer points, CUDA graphs), pipeline and live (clips made from samples/, end-to-end
and live runs), video (hardware decoding), server and degrade (training). Nothing is read from outside
the checkout but the detector weights (by name through the weights lookup, or a path).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import importlib.util
import math
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import torch

from vidrestore.bench import degrade as degrade_bench
from vidrestore.bench import live as live_bench
from vidrestore.bench import pipeline as pipeline_bench
from vidrestore.bench import server as server_bench
from vidrestore.bench.gpu_worker import Task, one_line
from vidrestore.bench.model import (BenchPoint, auto_iters, build_bench_model, precision_error, save_bench_checkpoint,
                                    time_point)
from vidrestore.bench.video import decode_seconds, machine as cpu_description
from vidrestore.device import resolve_device
from vidrestore.errors import VidrestoreError
from vidrestore.models import prepare_for_inference

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
PACKAGES = ("numpy", "opencv-python-headless", "opencv-python", "av", "facexlib", "filterpy", "ffmpeg-python",
            "fastapi", "starlette", "uvicorn", "pydantic", "torchcodec", "triton")
TARGET_FACES_S, TARGET_FPS, TARGET_P95_MS = 1000.0, 120.0, 50.0


@dataclass(frozen=True)
class Settings:
    """What each benchmark measures: the full run on a GPU, or tiny versions of the same steps."""

    model: str  # bench checkpoint configuration: "full" (v1.4) or "small"
    clip_size: tuple[int, int]
    fps: int
    clip_seconds: float
    live_seconds: float
    batches: tuple[int, ...]
    compile_backend: str
    compile_min_s: float
    presets: tuple[str, ...]  # x264 presets beside veryfast, one face
    baseline_frames: int
    server_clients: tuple[int, ...]
    server_requests: int
    server_max_batch: int
    train_config: str
    train_steps: int
    loader_images: int
    device_batches: int
    face_images: int
    point_s: float  # time one point needs at least
    light_training: bool = False  # no VGG/ArcFace/component losses, no R1: the quick run's training steps


FULL = Settings("full", (1920, 1080), 30, 4.0, 6.0, (1, 2, 4, 8, 16, 32, 64, 128), "inductor", 60.0,
                ("ultrafast", "superfast", "faster", "medium"), 60, (1, 8, 32), 64, 32, "train_gfpgan.yaml", 10, 24,
                4, 8, 3.0)
QUICK = Settings("small", (320, 180), 10, 1.0, 1.0, (2,), "eager", 1.0, ("ultrafast",), 3, (1, 2), 4, 4,
                 "train_small.yaml", 1, 2, 1, 4, 0.5, light_training=True)


def settings(task: Task) -> Settings:
    return QUICK if task.options.get("quick") else FULL


def device(task: Task) -> torch.device:
    return resolve_device(task.options.get("device", "auto"))


def work(task: Task, name: str) -> Path:
    """A folder of the run's work area (removed when the run ends)."""
    folder = Path(task.options["work"]) / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def checkpoint(task: Task) -> Path:
    """The random-weight restorer of the run's configuration, saved once for every benchmark."""
    path = Path(task.options["work"]) / f"{settings(task).model}.pth"
    if not path.is_file():
        task.recorder.doing(f"saving the {settings(task).model} random-weight checkpoint")
        save_bench_checkpoint(path.parent, settings(task).model)
    return path


def fits(task: Task, seconds: float, what: str) -> bool:
    """Whether `what` still fits in the budget; records it as skipped when not."""
    if task.budget.allows(seconds):
        return True
    task.recorder.skip(what, f"benchmark budget spent ({max(task.budget.left(), 0):.0f} s left)", budget=True)
    return False


def sample_faces(folder: Path, count: int) -> Path:
    """`count` 512x512 PNG faces cut from samples/astronaut.mp4 (square centre crops, the face inside)."""
    if any(folder.glob("*.png")):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    with av.open(str(pipeline_bench.SAMPLE)) as container:
        pictures = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    for k in range(count):
        picture = pictures[k * len(pictures) // count]
        h, w = picture.shape[:2]
        side = min(h, w)
        crop = picture[(h - side) // 2:(h + side) // 2, (w - side) // 2:(w + side) // 2]
        cv2.imwrite(str(folder / f"{k:02d}.png"), cv2.resize(crop, (512, 512), interpolation=cv2.INTER_CUBIC))
    return folder


# --- environment ---------------------------------------------------------------------------------


def machine(task: Task) -> None:
    """What the figures were measured on: GPU, driver, torch and CUDA, CPU, FFmpeg, package versions."""
    rows: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "torch CUDA": torch.version.cuda, "cuDNN": torch.backends.cudnn.version(),
                            "CPU": cpu_description()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        rows.update({"GPU": props.name, "GPU memory GiB": round(props.total_memory / 2**30, 1),
                     "GPU multiprocessors": props.multi_processor_count, "GPU driver": _driver_version()})
    else:
        rows["GPU"] = "none (CUDA not available)"
    from av.codec.hwaccel import hwdevices_available

    rows.update({"PyAV": f"{av.__version__} (FFmpeg {getattr(av, 'ffmpeg_version_info', '?')})",
                 "PyAV hardware devices": ", ".join(hwdevices_available()) or "none"})
    rows.update({f"package {name}": version for name in PACKAGES if (version := _version(name))})
    for item, value in rows.items():
        task.recorder.row("machine", {"item": item, "value": value})


def _driver_version() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=False).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out or None


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


# --- restorer ------------------------------------------------------------------------------------


def _point_row(p: BenchPoint) -> dict[str, Any]:
    return {"path": p.path, "variant": p.variant, "precision": p.precision, "batch": p.batch,
            "ms_per_batch": p.seconds_per_batch * 1000, "faces_per_s": p.faces_per_second, "peak_gpu_mib": p.peak_mib}


def _time(task: Task, model: Any, dev: torch.device, what: str, **kwargs: Any) -> BenchPoint | None:
    """One restorer point recorded as a row; None when it does not fit in the budget or in memory."""
    if not fits(task, settings(task).point_s, what):
        return None
    iters, warmup = auto_iters(dev)
    task.recorder.doing(what)
    try:
        point = time_point(model, dev, kwargs.pop("precision", "bf16"), kwargs.pop("batch", 1), iters, warmup,
                           **kwargs)
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        task.recorder.skip(what, "out of GPU memory")
        return None
    except Exception as exc:  # noqa: BLE001 - one point that cannot run (a capture, a compiler) is reported
        task.recorder.skip(what, f"failed: {one_line(exc)}")
        return None
    task.recorder.row("restorer points", _point_row(point))
    return point


def restorer(task: Task) -> None:
    """faces/s and peak memory: batched bf16 1..128, grouped batch 1, CUDA graphs, torch.compile, fp32."""
    s, dev = settings(task), device(task)
    model = prepare_for_inference(build_bench_model(s.model, None), dev)
    torch.backends.cudnn.benchmark = dev.type == "cuda"
    task.recorder.note(f"{s.model} configuration, random weights, {model.out_size} px faces, fixed noise; "
                       f"{auto_iters(dev)[0]} timed calls after {auto_iters(dev)[1]} warm-up per point")
    eager = [p for b in s.batches if (p := _time(task, model, dev, f"batched bf16 batch {b}", batch=b))]
    for precision in ("bf16", "fp32"):
        _time(task, model, dev, f"grouped {precision} batch 1", path="grouped", precision=precision)
    points = list(eager)
    if dev.type == "cuda":
        points += [p for b in s.batches
                   if (p := _time(task, model, dev, f"CUDA graph bf16 batch {b}", batch=b, graph=True))]
    else:
        task.recorder.skip("CUDA graph replays", "CUDA graphs need a CUDA device")
    best = max(eager, key=lambda p: p.faces_per_second).batch if eager else 16
    for b in sorted({best, 16} & set(s.batches)):
        _time(task, model, dev, f"batched fp32 batch {b}", batch=b, precision="fp32")
    if fits(task, s.point_s, "bf16 vs fp32 output difference"):
        task.recorder.row("bf16 autocast vs fp32 (same weights and input)", precision_error(model, dev))
    _restorer_headline(task, points, "")
    compiled = _compiled(task, model, dev, sorted({best, min(16, max(s.batches))}, reverse=True))
    if compiled and max(p.faces_per_second for p in compiled) > max((p.faces_per_second for p in points), default=0):
        _restorer_headline(task, compiled, ", torch.compile")


def _restorer_headline(task: Task, points: list[BenchPoint], label: str) -> None:
    """The best point's faces/s against the >= 1000 target."""
    if points:
        top = max(points, key=lambda p: p.faces_per_second)
        task.recorder.headline(f"restorer faces/s, {settings(task).model} config bf16{label}, best ({top.variant}, "
                               f"batch {top.batch})", top.faces_per_second, "faces/s", f">= {TARGET_FACES_S:.0f}",
                               top.faces_per_second >= TARGET_FACES_S)


def _compiled(task: Task, model: Any, dev: torch.device, batches: list[int]) -> list[BenchPoint]:
    """torch.compile'd points (fixed shapes: one compilation per batch size), and their CUDA graphs."""
    s = settings(task)
    compiled = torch.compile(model, backend=s.compile_backend, dynamic=False)
    label = "compiled" if s.compile_backend == "inductor" else f"compiled ({s.compile_backend} backend)"
    task.recorder.note(f"torch.compile backend {s.compile_backend}, dynamic=False (each batch size compiles "
                       "once, inside its warm-up)")
    points = []
    for b in batches:
        if not fits(task, s.compile_min_s, f"{label} points at batch {b} (compiling takes a while)"):
            break
        points += [p for p in [_time(task, compiled, dev, f"{label} bf16 batch {b}", batch=b, variant=label)] if p]
        if dev.type == "cuda":
            points += [p for p in [_time(task, compiled, dev, f"{label} + CUDA graph bf16 batch {b}", batch=b,
                                         graph=True, variant=f"{label} + cuda graph")] if p]
    return points


# --- pipeline ------------------------------------------------------------------------------------


def _clip(task: Task, faces: int, seconds: float) -> tuple[Path, int]:
    """The run's clip with 1 face or 4 (2x2), made once from the sample; (path, frames)."""
    s = settings(task)
    path = work(task, "clips") / f"{s.clip_size[1]}p{s.fps}_{faces}face_{seconds:g}s.mp4"
    frames = int(seconds * s.fps)
    if not path.is_file():
        task.recorder.doing(f"making the {path.name} clip")
        frames = live_bench.make_live_clip(path, s.clip_size, seconds, s.fps, faces)
    return path, frames


def _job_row(task: Task, label: str, faces: int, encoder: str, report: Any) -> dict[str, Any]:
    s = settings(task)
    row = {"clip": f"{s.clip_size[1]}p{s.fps}, {faces} face(s)", "run": label, "encoder": encoder,
           "frames": report.frames, "fps": report.fps, "x_real_time": report.fps / s.fps}
    row.update({f"{name}_busy_s": seconds for name, seconds in pipeline_bench.stage_seconds(report).items()})
    return row


def pipeline(task: Task) -> None:
    """End-to-end fps and busy time per stage, 1 and 4 faces, x264 presets and FFV1; decoding with NVDEC."""
    from vidrestore.pipeline.job import restore_video
    from vidrestore.pipeline.options import RestoreOptions
    from vidrestore.pipeline.restorer_api import Restorer

    s, dev, out = settings(task), device(task), work(task, "pipeline")
    base = RestoreOptions(model=str(checkpoint(task)), detector=task.options["detector"], device=str(dev),
                          preset="veryfast", offline=True)
    task.recorder.doing("loading the restorer and the detector")
    loaded = Restorer(base)
    one, _ = _clip(task, 1, s.clip_seconds)
    if dev.type == "cuda":
        task.recorder.doing("warm-up job (not counted)")
        restore_video(one, out / "warmup.mp4", base, progress=False, restorer=loaded)
    task.recorder.note("fps from the job's own clock (model loading excluded; the model is loaded once); "
                       "the pipeline decodes in software (PyAV threads); encoding runs on the CPU cores")
    runs: list[tuple[str, int, Any, str]] = [("pipeline", 1, base, "libx264 veryfast"),
                                             ("`--model none` (I/O + face analysis)", 1,
                                              dataclasses.replace(base, model="none"), "libx264 veryfast"),
                                             ("pipeline", 4, base, "libx264 veryfast")]
    runs += [("pipeline", 1, dataclasses.replace(base, preset=p), f"libx264 {p}") for p in s.presets]
    runs += [("pipeline", 1, dataclasses.replace(base, codec="ffv1", preset=None), "ffv1 (.mkv)")]
    fps_by_encoder: dict[str, float] = {}
    for label, faces, options, encoder in runs:
        what = f"{label}, {faces} face(s), {encoder}"
        if not fits(task, s.point_s * 2, what):
            continue
        clip, _ = _clip(task, faces, s.clip_seconds)
        target = out / ("out.mkv" if options.codec == "ffv1" else "out.mp4")
        task.recorder.doing(what)
        report = restore_video(clip, target, options, progress=False, restorer=loaded if options.restores else None)
        task.recorder.row("end to end", _job_row(task, label, faces, encoder, report))
        if label == "pipeline" and faces == 1:
            fps_by_encoder[encoder] = report.fps
    _pipeline_floors(task, one)
    _decoding(task, one)
    _summary(task, fps_by_encoder)


def _pipeline_floors(task: Task, clip: Path) -> None:
    """The plain PyAV transcode (the I/O floor) and the per-frame loop GFPGAN's own inference runs."""
    s, dev, out = settings(task), device(task), work(task, "pipeline")
    if fits(task, s.point_s, "plain PyAV decode + encode"):
        task.recorder.doing("plain PyAV decode + encode")
        frames, seconds = pipeline_bench.timed(lambda: pipeline_bench.plain_transcode(clip, out / "plain.mp4",
                                                                                      "veryfast"))
        task.recorder.row("floors and baseline", {"run": "plain PyAV decode + encode", "encoder": "libx264 veryfast",
                                                  "frames": frames, "fps": frames / seconds})
    if fits(task, s.point_s * 2, "per-frame baseline (GFPGAN's own loop)"):
        task.recorder.doing("per-frame baseline")
        frames, seconds = pipeline_bench.timed(lambda: pipeline_bench.per_frame_baseline(
            clip, out / "base.mp4", checkpoint(task), task.options["detector"], dev, "veryfast", s.baseline_frames))
        task.recorder.row("floors and baseline", {"run": "per-frame baseline (model loading included)",
                                                  "encoder": "libx264 veryfast", "frames": frames,
                                                  "fps": frames / seconds})


def _decoding(task: Task, clip: Path) -> None:
    """Decoding fps of the 1-face clip: software to RGB, NVDEC to RGB, NVDEC with frames left on the GPU."""
    from av.codec.hwaccel import hwdevices_available

    runs = [("software (PyAV threads) to RGB", None, False)]
    if device(task).type != "cuda":
        task.recorder.skip("NVDEC decoding", "NVDEC needs a CUDA device")
    elif "cuda" not in hwdevices_available():
        task.recorder.skip("NVDEC decoding", "unavailable: PyAV's FFmpeg offers no cuda hwaccel")
    else:
        runs += [("NVDEC (cuda hwaccel) to RGB", "cuda", False), ("NVDEC, frames kept on the GPU", "cuda", True)]
    for label, hwaccel, keep in runs:
        if not fits(task, settings(task).point_s, f"decoding: {label}"):
            return
        task.recorder.doing(f"decoding: {label}")
        try:
            frames, seconds = decode_seconds(clip, hwaccel, keep)
        except (av.FFmpegError, OSError, VidrestoreError, ValueError, RuntimeError) as exc:
            task.recorder.skip(f"decoding: {label}", f"unavailable: {one_line(exc)}")
            continue
        task.recorder.row("decoding", {"decoder": label, "frames": frames, "fps": frames / seconds})


def _summary(task: Task, fps_by_encoder: dict[str, float]) -> None:
    """The headline figure and which x264 presets keep the target rate."""
    s = settings(task)
    if "libx264 veryfast" in fps_by_encoder:
        fps = fps_by_encoder["libx264 veryfast"]
        task.recorder.headline(f"end to end fps, {s.clip_size[1]}p{s.fps}, 1 face, libx264 veryfast", fps, "fps",
                               f">= {TARGET_FPS:.0f}", fps >= TARGET_FPS)
    keeping = [e for e, fps in fps_by_encoder.items() if fps >= TARGET_FPS]
    task.recorder.note(f"encoders keeping >= {TARGET_FPS:.0f} fps with 1 face: {', '.join(keeping) or 'none'}")


# --- live ----------------------------------------------------------------------------------------


def live(task: Task) -> None:
    """Live mode on the clip played at its own rate: fps shown, drops, added latency p50/p95, 1 and 4 faces."""
    s, dev = settings(task), device(task)
    options = live_bench.live_options(checkpoint(task), task.options["detector"], dev)
    task.recorder.note(f"source: a {s.live_seconds:g} s {s.clip_size[1]}p{s.fps} clip played at its own rate; "
                       "latency from when the source was due to show a frame to when the sink got it")
    if dev.type == "cuda":
        warm, warm_frames = _clip(task, 1, 1.0)
        task.recorder.doing("live warm-up (not counted)")
        live_bench.measure(warm, warm_frames, s.fps, options, "warm-up", "warm-up", 1)
    for faces in (1, 4):
        if not fits(task, s.live_seconds + s.point_s * 2, f"live, {faces} face(s)"):
            continue
        clip, frames = _clip(task, faces, s.live_seconds)
        task.recorder.doing(f"live, {faces} face(s)")
        row = live_bench.measure(clip, frames, s.fps, options, s.model, f"{s.clip_size[1]}p{s.fps}", faces)
        task.recorder.row("live", {"clip": row.clip, "faces": faces, "frames_sent": row.sent, "frames_shown": row.shown,
                                   "dropped": row.dropped, "fps_shown": row.fps, "p50_ms": row.p50 * 1000,
                                   "p95_ms": row.p95 * 1000})
        target = (f"<= {TARGET_P95_MS:.0f}", row.p95 * 1000 <= TARGET_P95_MS) if faces == 1 else (None, None)
        task.recorder.headline(f"live added latency p95, {row.clip}, {faces} face(s)", row.p95 * 1000, "ms", *target)


# --- server --------------------------------------------------------------------------------------


def server(task: Task) -> None:
    """images/s and p50/p95 of POST /v1/images:restore at 1, 8, 32 clients, batching on and off."""
    s, dev = settings(task), device(task)
    faces = sample_faces(work(task, "faces512"), s.face_images)
    args = argparse.Namespace(detector=task.options["detector"], device=str(dev), max_batch=s.server_max_batch,
                              rounds=1, requests=s.server_requests)
    task.recorder.note(f"{s.face_images} 512x512 PNG faces cut from the sample; {s.server_requests} timed requests "
                       f"per point (at least 4 per client) after a warm-up; batching on is --max-batch "
                       f"{s.server_max_batch}; both servers up at once")

    def record(point: server_bench.Point) -> None:
        task.recorder.row("server", {"batching": "on" if point.max_batch > 1 else "off", "clients": point.clients,
                                     "requests": len(point.latencies), "images_per_s": point.rps,
                                     "p50_ms": point.percentile(50), "p95_ms": point.percentile(95),
                                     "images_per_model_call": point.images_per_call})

    task.recorder.doing("starting two servers (batching on and off)")
    points = server_bench.measure_points(args, str(checkpoint(task)), server_bench.face_images(faces),
                                         list(s.server_clients), work(task, "server"),
                                         keep_going=lambda: task.budget.allows(s.point_s * 2), on_point=record)
    done = {(p.max_batch > 1, p.clients) for p in points}
    for on in (True, False):
        for clients in s.server_clients:
            if (on, clients) not in done:
                task.recorder.skip(f"server, batching {'on' if on else 'off'}, {clients} clients",
                                   "benchmark budget spent", budget=True)
    for p in points:
        if p.clients == max(s.server_clients):
            task.recorder.headline(f"server images/s, {p.clients} clients, batching {'on' if p.max_batch > 1 else 'off'}",
                                   p.rps, "images/s")


# --- training ------------------------------------------------------------------------------------


def train_config(task: Task) -> Any:
    """The training config of the run with random-weight networks (no pretrained files: the same speed)."""
    from vidrestore.train.trainer import TrainConfig

    cfg = TrainConfig.from_yaml(CONFIGS / settings(task).train_config)
    cfg.data.train = str(sample_faces(work(task, "faces512"), settings(task).face_images))
    cfg.data.landmarks = cfg.data.val_gt = cfg.data.val_lq = None
    cfg.network_g = dataclasses.replace(cfg.network_g, decoder=None, pretrained=None)  # a frozen GFPGANConfig
    cfg.losses.vgg_weights = cfg.losses.arcface_weights = None
    cfg.run.tensorboard, cfg.run.bf16 = False, True
    if settings(task).light_training:
        cfg.losses.perceptual_weight = cfg.losses.style_weight = cfg.losses.identity_weight = 0
        cfg.losses.use_components, cfg.losses.r1_every, cfg.run.batch_size = False, 1000, 1
    return cfg


def training(task: Task) -> None:
    """Iterations/s (bf16 autocast) with LQ made in the loader or on the device, and both degradation paths."""
    from vidrestore.train.trainer import Trainer

    s, dev, cfg = settings(task), device(task), train_config(task)
    b = cfg.run.batch_size
    losses = ("pixel, pyramid and GAN losses only (quick)" if s.light_training else
              "every loss on; generator, decoder prior, VGG19 and ArcFace with random weights (same cost)")
    task.recorder.note(f"{s.train_config}: {cfg.network_g.out_size} px, batch {b}, bf16 autocast on CUDA; {losses}")
    dataset, faces = degrade_bench.load_faces(cfg)
    task.recorder.doing("degradations in the loader (cv2, one core)")
    loader_ms = degrade_bench.time_loader_path(faces, cfg, s.loader_images)
    task.recorder.row("degradations", {"path": "loader (cv2, one worker)", "ms_per_image": loader_ms,
                                       "ms_per_batch": loader_ms * b})
    task.recorder.doing("building the trainer")
    trainer = Trainer(cfg, device=dev)
    ms = _iterations(task, trainer, dataset, "LQ made in the loader")
    if ms is not None:
        task.recorder.note(f"loader workers needed to keep up: {math.ceil(loader_ms * b / ms)} "
                           f"(config: {cfg.data.num_workers})")
    if _device_degradations(task, cfg, faces, dev):
        _iterations(task, trainer, degrade_bench.load_faces(cfg, in_loader=False)[0],
                    "LQ made on the device (inside the step)")


def _iterations(task: Task, trainer: Any, dataset: Any, label: str) -> float | None:
    """ms per training iteration on this data, recorded with its iterations/s; None when it does not fit."""
    s, cfg = settings(task), trainer.cfg
    if not fits(task, s.point_s * (s.train_steps + 1), f"training iterations, {label}"):
        return None
    task.recorder.doing(f"training iterations, {label}")
    ms = degrade_bench.time_train_step(trainer, dataset, s.train_steps)
    task.recorder.row("iterations", {"iteration": label, "ms_per_iteration": ms, "iterations_per_s": 1000 / ms})
    task.recorder.headline(f"training iterations/s, {cfg.network_g.out_size} px bf16 batch {cfg.run.batch_size}, "
                           f"{label}", 1000 / ms, "it/s")
    return ms


def _device_degradations(task: Task, cfg: Any, faces: list[np.ndarray], dev: torch.device) -> bool:
    """Time degrade_batch on the device and record which JPEG codec ran; False when it cannot run here."""
    from vidrestore.train import degradations_torch

    task.recorder.doing("degradations on the device")
    try:
        ms = degrade_bench.time_device_path(degrade_bench.gt_batch(faces, cfg.run.batch_size, dev), cfg,
                                            settings(task).device_batches)
    except Exception as exc:  # noqa: BLE001 - e.g. no usable torchcodec here: reported, the rest goes on
        task.recorder.skip("degradations on the device (and iterations with them)", f"unavailable: {one_line(exc)}")
        return False
    # degradations_torch sets this flag once the device's JPEG codec failed and the CPU codec took over
    fell_back = degradations_torch._device_codec_failed
    codec = "CPU" if dev.type == "cpu" else "CPU, the device codec failed" if fell_back else "on the device"
    task.recorder.row("degradations", {"path": f"device (torch on {dev}; JPEG: {codec})", "ms_per_image": ms,
                                       "ms_per_batch": ms * cfg.run.batch_size})
    return True


# --- archive -------------------------------------------------------------------------------------


def archive(task: Task) -> None:
    """Archive mode, 1 vs 2 workers on the one GPU: vidrestore.bench.archive.gpu_benchmark(task) once it exists."""
    if importlib.util.find_spec("vidrestore.bench.archive") is None:
        task.recorder.skip("archive mode, 1 vs 2 workers on the one GPU", "archive mode not built")
        return
    from vidrestore.bench import archive as archive_bench

    archive_bench.gpu_benchmark(task)


# --- picture -------------------------------------------------------------------------------------


def picture(task: Task) -> None:
    """Interlaced 576i: field-correct restoration against progressive (vidrestore.bench.picture)."""
    from vidrestore.bench import picture as picture_bench

    picture_bench.gpu_benchmark(task)
# --- upscale -------------------------------------------------------------------------------------


def upscale(task: Task) -> None:
    """Background upsampling 2x at 720p: Lanczos, and Real-ESRGAN small and full in bf16 tiles."""
    from vidrestore.bench import upscale as upscale_bench

    upscale_bench.gpu_benchmark(task)
