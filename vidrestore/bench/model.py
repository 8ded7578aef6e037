"""`vidrestore bench model`: restorer throughput (faces/s) per batch size, precision and conv path.

The grouped path at batch 1 is what the official GFPGAN inference does (one face at a time, one
grouped convolution per modulated layer); the batched path is ours. Both run in the same process on
the same weights, so the ratio between them is the gain of batching.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import logging
import platform
import time
from pathlib import Path
from typing import Callable

import torch

from vidrestore.bench import comma_list, publish
from vidrestore.device import resolve_device
from vidrestore.errors import VidrestoreError
from vidrestore.models import GFPGAN, autocast, load_restorer, prepare_for_inference
from vidrestore.models.precision import check_precision

log = logging.getLogger(__name__)

SMALL_CONFIG = dict(out_size=64, num_style_feat=64, channel_multiplier=1, num_mlp=2, narrow=0.25)


@dataclasses.dataclass(frozen=True)
class BenchPoint:
    """One measured configuration."""

    path: str  # "grouped" (official, per face) or "batched"
    precision: str
    batch: int
    seconds_per_batch: float
    variant: str = "eager"  # eager, cuda graph, compiled, compiled + cuda graph
    peak_mib: float | None = None  # peak GPU memory allocated during the point (CUDA only)

    @property
    def faces_per_second(self) -> float:
        return self.batch / self.seconds_per_batch


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], object], device: torch.device, iters: int, warmup: int) -> float:
    """Mean wall-clock seconds of one call of fn after `warmup` untimed calls (device synchronised)."""
    for _ in range(warmup):
        fn()
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    _synchronize(device)
    return (time.perf_counter() - start) / iters


def time_forward(model: GFPGAN, x: torch.Tensor, precision: str, iters: int, warmup: int) -> float:
    """Mean wall-clock seconds of one forward pass (fixed noise, no pyramid outputs)."""
    with torch.inference_mode(), autocast(x.device, precision):
        return time_calls(lambda: model(x, return_rgb=False, randomize_noise=False), x.device, iters, warmup)


def capture_graph(model: GFPGAN, x: torch.Tensor, precision: str) -> Callable[[], torch.Tensor]:
    """One forward pass on the fixed input `x` recorded as a CUDA graph; the callable replays it.

    The batch shape is fixed by the capture, so each batch size needs its own graph.
    """
    device = x.device
    graph = torch.cuda.CUDAGraph()
    with torch.inference_mode(), autocast(device, precision):
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):  # warm-up outside the graph: cuDNN autotuning and lazy set-up
            for _ in range(3):
                model(x, return_rgb=False, randomize_noise=False)
        torch.cuda.current_stream(device).wait_stream(side)
        with torch.cuda.graph(graph):
            output = model(x, return_rgb=False, randomize_noise=False)[0]

    def replay() -> torch.Tensor:
        graph.replay()
        return output

    return replay


def _reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_memory_mib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def time_point(model: GFPGAN, device: torch.device, precision: str, batch: int, iters: int, warmup: int, *,
               path: str = "batched", graph: bool = False, variant: str | None = None) -> BenchPoint:
    """One configuration: grouped or batched path, eager calls or CUDA-graph replays, with peak GPU memory."""
    model.set_grouped_modconv(path == "grouped")
    x = _make_input(batch, model.out_size, device)
    _reset_peak_memory(device)
    if graph:
        seconds = time_calls(capture_graph(model, x, precision), device, iters, warmup)
    else:
        seconds = time_forward(model, x, precision, iters, warmup)
    label = variant or ("cuda graph" if graph else "eager")
    return BenchPoint(path, precision, batch, seconds, label, _peak_memory_mib(device))


def auto_iters(device: torch.device) -> tuple[int, int]:
    """(iterations, warm-up) per point: a few on the slow CPU, enough to be stable on a GPU."""
    return (20, 5) if device.type == "cuda" else (2, 1)


def _make_input(batch: int, size: int, device: torch.device) -> torch.Tensor:
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(batch)) * 2 - 1
    x = x.to(device)
    return x.contiguous(memory_format=torch.channels_last) if device.type == "cuda" else x


def measure(
    model: GFPGAN, device: torch.device, precisions: list[str], batch_sizes: list[int], iters: int, warmup: int,
    graphs: bool = False,
) -> list[BenchPoint]:
    """Grouped batch-1 reference and batched path at each batch size (and its CUDA graph), for each precision."""
    points = []
    for precision in precisions:
        points.append(time_point(model, device, precision, 1, iters, warmup, path="grouped"))
        log.info("grouped %s batch 1: %.2f faces/s", precision, points[-1].faces_per_second)
        for batch in batch_sizes:
            for graph in (False, True) if graphs else (False,):
                try:
                    points.append(time_point(model, device, precision, batch, iters, warmup, graph=graph))
                except torch.OutOfMemoryError:
                    log.warning("batch %d does not fit in memory; stopping at the previous size", batch)
                    torch.cuda.empty_cache()
                    return points
                log.info("batched %s %s batch %d: %.2f faces/s", points[-1].variant, precision, batch,
                         points[-1].faces_per_second)
    return points


def precision_error(model: GFPGAN, device: torch.device, batch: int = 2) -> dict[str, float]:
    """How far bf16 autocast output is from fp32 output on the same input (batched path)."""
    x = _make_input(batch, model.out_size, device)
    with torch.inference_mode():
        reference = model(x, return_rgb=False, randomize_noise=False)[0].float()
        with autocast(device, "bf16"):
            low = model(x, return_rgb=False, randomize_noise=False)[0].float()
    diff = (low - reference).abs()
    # On the [-1, 1] output scale the pipeline uses (clamped), in 8-bit gray levels.
    clamped = (low.clamp(-1, 1) - reference.clamp(-1, 1)).abs() * 127.5
    return {
        "max_abs": diff.max().item(),
        "mean_abs": diff.mean().item(),
        "mean_rel": (diff.mean() / reference.abs().mean()).item(),
        "mean_gray_levels_clamped": clamped.mean().item(),
        "max_gray_levels_clamped": clamped.max().item(),
    }


def machine_description(device: torch.device) -> str:
    """What the numbers were measured on."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (torch {torch.__version__})"
    cpu = _cpu_model_name() or platform.processor() or "CPU"
    return f"{cpu}, {torch.get_num_threads()} threads (torch {torch.__version__})"


def _cpu_model_name() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def format_table(points: list[BenchPoint], title: str) -> str:
    """A Markdown table with faces/s and the speed-up over the grouped batch-1 fp32 path."""
    baseline = next((p for p in points if p.path == "grouped" and p.precision == "fp32"), points[0])
    lines = [
        title,
        "",
        "| path | variant | precision | batch | ms / batch | faces/s | x grouped b1 fp32 | peak GPU MiB |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for p in points:
        peak = f"{p.peak_mib:.0f}" if p.peak_mib is not None else "—"
        lines.append(
            f"| {p.path} | {p.variant} | {p.precision} | {p.batch} | {p.seconds_per_batch * 1000:.1f} | "
            f"{p.faces_per_second:.2f} | {p.faces_per_second / baseline.faces_per_second:.2f} | {peak} |"
        )
    best = max(points, key=lambda p: p.faces_per_second)
    lines += ["", f"Best: {best.faces_per_second:.2f} faces/s ({best.path}, {best.variant}, {best.precision}, "
              f"batch {best.batch})."]
    return "\n".join(lines)


def _parse_precisions(text: str, device: torch.device) -> list[str]:
    if text == "auto":
        return ["fp32", "bf16"] if device.type == "cuda" else ["fp32"]
    return comma_list(text, check_precision)


def save_bench_checkpoint(folder: Path, size: str) -> Path:
    """A random-weight checkpoint of the `small` or `full` configuration, saved as the official code does."""
    path = Path(folder) / f"{size}.pth"
    torch.save({"params_ema": build_bench_model(size, None).state_dict()}, path)
    return path


def bench_checkpoints(folder: Path, full: bool) -> dict[str, Path]:
    """The restorers the end-to-end benchmarks run, by label: small, and full v1.4 when asked."""
    labels = {"small": "small (random weights)", "full": "full v1.4 (random weights)"}
    return {labels[size]: save_bench_checkpoint(folder, size) for size in ["small"] + (["full"] if full else [])}


def build_bench_model(size: str, checkpoint: str | None) -> GFPGAN:
    """The released v1.4 configuration with random weights (speed does not depend on the values)."""
    if checkpoint:
        return load_restorer(checkpoint)
    torch.manual_seed(0)
    return GFPGAN(**SMALL_CONFIG) if size == "small" else GFPGAN()


def run_cli(args: argparse.Namespace) -> int:
    """Entry point of `vidrestore bench model`."""
    device = resolve_device(args.device)
    precisions = _parse_precisions(args.precisions, device)
    batch_sizes = comma_list(args.batch_sizes, int)
    model = prepare_for_inference(build_bench_model(args.size, args.checkpoint), device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if args.compile:
        model = torch.compile(model)  # type: ignore[assignment]
    iters, warmup = auto_iters(device)
    if args.iters:
        iters = args.iters
    config = "checkpoint " + args.checkpoint if args.checkpoint else f"{args.size} config, random weights"
    title = (
        f"Restorer throughput, {config}, {getattr(model, 'out_size', 512)}px faces, on {machine_description(device)}, "
        f"{dt.date.today().isoformat()}; {iters} timed iterations after {warmup} warm-up per point"
    )
    if args.cuda_graphs and device.type != "cuda":
        raise VidrestoreError("--cuda-graphs needs a CUDA device")
    points = measure(model, device, precisions, batch_sizes, iters, warmup, graphs=args.cuda_graphs)
    text = format_table(points, title)
    if not args.skip_precision_check:
        error = precision_error(model, device)
        text += (
            "\n\nbf16 autocast vs fp32, same weights and input: "
            + ", ".join(f"{k} {v:.4g}" for k, v in error.items())
        )
    return publish(text, args.output)
