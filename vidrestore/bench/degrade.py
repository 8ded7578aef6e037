"""`vidrestore bench degrade`: is the degradation model the bottleneck of training, and where to run it.

For one training config it times, on real faces at the config's size:
- the loader path (cv2/numpy `apply_degradation`, one sample at a time, as one worker does it);
- the device path (`degrade_batch` on the training device, one call per batch);
- one training iteration (`Trainer.train_step` on a pre-degraded batch: G, EMA, D and component Ds),
  unless --steps 0 (e.g. when the config's weights files are not at hand).
The loader keeps up when batch x ms/image / num_workers is below the iteration time.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vidrestore.bench import publish
from vidrestore.bench.model import machine_description
from vidrestore.device import resolve_device
from vidrestore.train.dataset import FaceDataset, collate_samples
from vidrestore.train.degradations import (
    apply_degradation,
    sample_degradation,
    sample_rng,
)
from vidrestore.train.degradations_torch import degrade_batch
from vidrestore.train.trainer import TrainConfig, Trainer

log = logging.getLogger(__name__)


@dataclass
class DegradeTimings:
    """Milliseconds per image (degradations) and per iteration (training), for one config."""

    size: int
    batch: int
    workers: int
    loader_ms_per_image: float
    device_ms_per_image: float
    step_ms: float | None  # None when no iteration was timed

    @property
    def loader_ms_per_batch(self) -> float:
        """Wall time the loader needs per batch with its workers in parallel."""
        return self.loader_ms_per_image * self.batch / max(1, self.workers)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_loader_path(faces: list[np.ndarray], cfg: TrainConfig, count: int) -> float:
    """ms per image of draw + cv2 degradation on one core."""
    start = time.perf_counter()
    for i in range(count):
        params = sample_degradation(sample_rng(cfg.run.seed, i), cfg.degradation)
        apply_degradation(faces[i % len(faces)], params)
    return 1000 * (time.perf_counter() - start) / count


def time_device_path(gt: torch.Tensor, cfg: TrainConfig, batches: int) -> float:
    """ms per image of degrade_batch on gt's device (after one warm-up batch)."""
    b = gt.shape[0]
    draws = [[sample_degradation(sample_rng(cfg.run.seed, k * b + i), cfg.degradation) for i in range(b)]
             for k in range(batches + 1)]
    degrade_batch(gt, draws[0])
    _sync(gt.device)
    start = time.perf_counter()
    for params in draws[1:]:
        degrade_batch(gt, params)
    _sync(gt.device)
    return 1000 * (time.perf_counter() - start) / (batches * b)


def time_train_step(trainer: Trainer, dataset: FaceDataset, steps: int) -> float:
    """ms per training iteration on the trainer's device, data already degraded (after one warm-up)."""
    batch = collate_samples([dataset[(i, 0)] for i in range(trainer.cfg.run.batch_size)])
    trainer.train_step(batch)
    _sync(trainer.device)
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step(batch)
    _sync(trainer.device)
    return 1000 * (time.perf_counter() - start) / steps


def load_faces(cfg: TrainConfig, in_loader: bool = True) -> tuple[FaceDataset, list[np.ndarray]]:
    """The config's training faces (cached; LQ made in the loader, or drawn for the device) and up to 16 HQ images."""
    dataset = FaceDataset(cfg.data.train, cfg.network_g.out_size, cfg.degradation, seed=cfg.run.seed, cache=True,
                          degrade_in_loader=in_loader)
    return dataset, [dataset.hq(i) for i in range(min(len(dataset), 16))]


def gt_batch(faces: list[np.ndarray], batch: int, device: torch.device) -> torch.Tensor:
    """(batch, 3, H, W) RGB [0, 1] on the device from BGR HQ faces (repeated when there are fewer)."""
    gt = torch.from_numpy(np.stack([faces[i % len(faces)][:, :, ::-1] for i in range(batch)]).copy())
    return gt.permute(0, 3, 1, 2).to(device)


def run(cfg: TrainConfig, device: torch.device, images: int, batches: int, steps: int) -> DegradeTimings:
    """Time both degradation paths, and `steps` training iterations when steps > 0, for `cfg` on `device`."""
    cfg.data.degrade_on = "loader"
    dataset, faces = load_faces(cfg)
    b = cfg.run.batch_size
    log.info("timing the loader path (%d images)", images)
    loader = time_loader_path(faces, cfg, images)
    log.info("timing the device path (%d batches of %d)", batches, b)
    on_device = time_device_path(gt_batch(faces, b, device), cfg, batches)
    step = None
    if steps > 0:
        log.info("timing %d training iterations", steps)
        step = time_train_step(Trainer(cfg, device=device), dataset, steps)
    return DegradeTimings(cfg.network_g.out_size, b, cfg.data.num_workers, loader, on_device, step)


def report(t: DegradeTimings, config: Path, device: torch.device) -> str:
    """Markdown: the timings and what they mean for this config."""
    lines = [
        f"Machine: {machine_description(device)}; {datetime.date.today().isoformat()}.",
        f"Config {config} ({t.size}x{t.size}, batch {t.batch}, {t.workers} loader worker(s)).",
        "",
        "| what | ms / image | ms / batch |",
        "|---|---:|---:|",
        f"| degradation, loader path (cv2, one worker) | {t.loader_ms_per_image:.1f} | "
        f"{t.loader_ms_per_image * t.batch:.1f} ({t.loader_ms_per_batch:.1f} with {t.workers} workers) |",
        f"| degradation, device path (torch on {device}) | {t.device_ms_per_image:.1f} | "
        f"{t.device_ms_per_image * t.batch:.1f} |",
    ]
    if t.step_ms is not None:
        keeps_up = t.loader_ms_per_batch <= t.step_ms
        lines += [
            f"| one training iteration (G + EMA + D + component Ds) | | {t.step_ms:.1f} |",
            "",
            f"Loader path {'keeps up with' if keeps_up else 'is slower than'} training "
            f"({t.loader_ms_per_batch:.1f} vs {t.step_ms:.1f} ms per batch); the device path would add "
            f"{100 * t.device_ms_per_image * t.batch / t.step_ms:.1f}% to each iteration.",
        ]
    return "\n".join(lines + [""])


def run_cli(args: argparse.Namespace) -> int:
    """Run the benchmark for a training config and print (and optionally write) the report."""
    cfg = TrainConfig.from_yaml(args.config)
    if args.data:
        cfg.data.train = args.data
    if args.batch_size:
        cfg.run.batch_size = args.batch_size
    if args.workers is not None:
        cfg.data.num_workers = args.workers
    device = resolve_device(args.device)
    text = report(run(cfg, device, args.images, args.batches, args.steps), Path(args.config), device)
    return publish(text, args.output)
